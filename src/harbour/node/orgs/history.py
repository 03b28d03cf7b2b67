"""A node's own record of the withdrawals it accepted to sign, per organisation.

Velocity and count limits (``"max 100 ETH a day per vault"``) are only as good
as the history they are counted against. The service keeps one, but a node
must not take the service's word for it, so each node keeps its own: every
withdrawal it accepts to sign for an organisation is recorded (:meth:`History.record`)
when its approval check passes, before the certificate is spent and before any
signing round. A withdrawal recorded and then not signed (a peer refused, the
session failed) still counts: the record errs on the side of refusing.

The record is kept where the node already writes, and fsyncs, what it accepted:
the ``started`` entry of the session in its signing log (:mod:`harbour.node.signlog`)
carries it (:func:`log_reason`), so it costs no write of its own, it is in the
log's hash chain, and a starting node rebuilds its history from the log
(:meth:`History.restore`). A crash between the check and that entry loses the
record of a session that never started, which is nothing to count.

The same entry carries the withdrawal's pin (:mod:`harbour.node.quorum.pin`: the
statement's hash and the chain nonce a transaction id was first signed for),
and :attr:`History.pins` holds every one the log names, for as long as the node
runs: like the session ids a node remembers (:mod:`harbour.node.restart`), one
small entry per withdrawal ever, and no file to create on the way to signing.

Bounded: records older than :data:`RETENTION` and than the policy's longest
window are forgotten, and an organisation keeps at most :data:`MAX_RECORDS`. A
withdrawal that would need more (that many within the policy's window) is
refused, not counted short.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, Final

from harbour.governance.fields import GovernanceError
from harbour.node.orgs.nonces import NonceBook
from harbour.node.orgs.records import Record
from harbour.node.quorum.pin import pin_record

log = logging.getLogger("harbour.node")

MAX_RECORDS: Final = 4096
"""Records one organisation keeps, and so the most a history statement carries."""
RETENTION: Final = 7 * 86_400
"""Records are kept this long even when no policy limit needs them, so a limit added later counts them."""
LOG_PREFIX: Final = "governed "
"""How the signing log's ``started`` entry of a session for an organisation's key begins."""


class HistoryFull(Exception):
    """The organisation has :data:`MAX_RECORDS` withdrawals within its policy's window: no more can be counted."""


def log_reason(org: str, record: Record, **about: Any) -> str:
    """The ``started`` entry's reason for a withdrawal of ``org``: the record and ``about`` (for readers), as JSON."""
    body = {"org": org, "record": record.to_cbor(), **about}
    return LOG_PREFIX + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def parse_log_reason(reason: str) -> tuple[str, Record] | None:
    """``(org, record)`` from a reason :func:`log_reason` wrote; None for any other reason."""
    found = _log_body(reason)
    return None if found is None else (found[0], found[1])


def _log_body(reason: str) -> tuple[str, Record, dict[str, Any]] | None:
    if not reason.startswith(LOG_PREFIX):
        return None
    try:
        body = json.loads(reason[len(LOG_PREFIX) :])
        org = body["org"]
        if not isinstance(org, str):
            raise TypeError("org is not text")
        return org, Record.from_cbor(body["record"]), body
    except (ValueError, TypeError, KeyError, GovernanceError) as exc:
        log.warning("a signing-log entry names a withdrawal that cannot be read back (%s): %.200s", exc, reason)
        return None


class History:
    """One node's records (organisation -> transaction id -> record) and pins, in memory."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, Record]] = {}
        self.pins: dict[tuple[str, str], bytes] = {}
        """``(org, transaction id) -> pin_record(statement hash, nonce)`` of every withdrawal signed for."""
        self.nonces = NonceBook()
        """The transaction ids signed at each nonce of each account (:mod:`harbour.node.orgs.nonces`)."""

    def restore(self, entries: Iterable[Any], keep: Callable[[str], int], now: int) -> None:
        """Rebuild the records from a signing log's ``started`` entries, as of ``now`` (a node that starts).

        ``entries`` are :class:`harbour.node.signlog.Entry` objects in order; ``keep(org)``
        is how many seconds back that organisation's records still count.
        """
        self.records, self.pins, self.nonces = {}, {}, NonceBook()
        for entry in entries:
            if entry.outcome != "started" or entry.kind != "sign":
                continue
            found = _log_body(entry.reason)
            if found is None:
                continue
            org, record, body = found
            statement, nonce = body.get("statement"), body.get("nonce")
            if isinstance(statement, str) and len(statement) == 64 and type(nonce) is int:
                with contextlib.suppress(ValueError):
                    self.pins.setdefault((org, record.transaction_id), pin_record(bytes.fromhex(statement), nonce))
            sender = body.get("sender")
            if isinstance(sender, str) and type(nonce) is int:
                self.nonces.add(org, sender, nonce, record.transaction_id)
            if record.at > now - max(keep(org), RETENTION):
                self.records.setdefault(org, {}).setdefault(record.transaction_id, record)
        for mine in self.records.values():
            for tx_id in sorted(mine, key=lambda t: mine[t].at)[: max(0, len(mine) - MAX_RECORDS)]:
                del mine[tx_id]

    def window(self, org: str, now: int, seconds: int) -> list[Record]:
        """The records of ``org`` within the last ``seconds`` (or later: a clock set back)."""
        return [r for r in self.records.get(org, {}).values() if r.at > now - seconds]

    def find(self, org: str, transaction_id: str) -> Record | None:
        return self.records.get(org, {}).get(transaction_id)

    def record(self, org: str, record: Record, *, now: int, window: int) -> bool:
        """Keep ``record``, forgetting those past keeping; whether it is new; HistoryFull if over the cap.

        A transaction id already recorded is kept once (a retry of the same
        withdrawal). ``window`` is the longest velocity or count window of the
        policy in force: records inside it are never forgotten to make room.
        """
        mine = self.records.setdefault(org, {})
        if record.transaction_id in mine:
            return False
        keep = max(window, RETENTION)
        # Records were added in time order (near enough), so the stale ones are at the front: stop at the first
        # that still counts. One added out of order stays a little longer, which only counts more.
        stale = []
        for tx_id, kept in mine.items():
            if kept.at > now - keep:
                break
            stale.append(tx_id)
        for tx_id in stale:
            del mine[tx_id]
        if len(mine) >= MAX_RECORDS:
            spare = sorted((t for t, r in mine.items() if r.at <= now - window), key=lambda t: mine[t].at)
            for tx_id in spare[: len(mine) - MAX_RECORDS + 1]:
                del mine[tx_id]
            if len(mine) >= MAX_RECORDS:
                raise HistoryFull(
                    f"this node holds {MAX_RECORDS} withdrawals of organisation {org} within its policy's "
                    f"longest window ({window} s), the most it counts: shorten the window"
                )
        mine[record.transaction_id] = record
        return True
