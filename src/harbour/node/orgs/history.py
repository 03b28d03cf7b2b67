"""A node's own record of the withdrawals it accepted to sign, per organisation, kept in its store.

Velocity and count limits (``"max 100 ETH a day per vault"``) are only as good
as the history they are counted against. The service keeps one, but a node
must not take the service's word for it, so each node keeps its own: every
withdrawal it accepts to sign for an organisation is recorded (:meth:`History.record`)
when its approval check passes, before the certificate is spent and before any
signing round. A withdrawal recorded and then not signed (a peer refused, the
session failed) still counts: the record errs on the side of refusing.

Each record is one object in the store, ``history/<org>.<n>``, ``n`` counting up
per organisation. :meth:`History.seq` (the highest ``n``) is what a node's history
statement is pinned to: if it grew since the statement was signed, the statement
is stale. The newest record is therefore never pruned, so ``n`` never goes back.

Bounded: records older than :data:`RETENTION` and than the policy's longest
window are pruned, and an organisation keeps at most :data:`MAX_RECORDS`. A
withdrawal that would need more (that many within the policy's window) is
refused, not counted short.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

import cbor2

from harbour.governance.fields import GovernanceError
from harbour.node.orgs.records import Record
from harbour.node.store import SecretStore, StoreError
from harbour.util import cbor

MAX_RECORDS: Final = 4096
"""Records one organisation keeps, and so the most a history statement carries."""
RETENTION: Final = 7 * 86_400
"""Records are kept this long even when no policy limit needs them, so a limit added later counts them."""


class HistoryFull(Exception):
    """The organisation has :data:`MAX_RECORDS` withdrawals within its policy's window: no more can be counted."""


class History:
    """One node's records, by organisation and number, loaded from the store at start."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store
        self.records: dict[str, dict[int, Record]] = {}

    @classmethod
    def load(cls, store: SecretStore) -> History:
        history = cls(store)
        for name in store.names("history/"):
            org, _, number = name.removeprefix("history/").rpartition(".")
            try:
                record = Record.from_cbor(cbor.loads_canonical(store.get(name)))
                n = int(number)
            except (GovernanceError, cbor.CborError, ValueError) as exc:
                raise StoreError("corrupt", f"withdrawal record {name} is unusable: {exc}") from None
            history.records.setdefault(org, {})[n] = record
        return history

    def seq(self, org: str) -> int:
        """The number of the newest record of ``org`` (0 before the first): it only grows."""
        return max(self.records.get(org, {}), default=0)

    def window(self, org: str, now: int, seconds: int) -> list[Record]:
        """The records of ``org`` within the last ``seconds`` (or later: a clock set back)."""
        return [r for r in self.records.get(org, {}).values() if r.at > now - seconds]

    def find(self, org: str, transaction_id: str) -> Record | None:
        return next((r for r in self.records.get(org, {}).values() if r.transaction_id == transaction_id), None)

    def record(self, org: str, record: Record, *, now: int, window: int) -> None:
        """Keep ``record`` (a transaction id already recorded is kept once); prune; HistoryFull if over the cap.

        ``window`` is the longest velocity or count window of the policy in force:
        records inside it are never pruned to make room.
        """
        if self.find(org, record.transaction_id) is not None:
            return
        mine = self.records.setdefault(org, {})
        keep = max(window, RETENTION)
        # The new record is the newest from here on: every older one may go.
        stale = [n for n, r in mine.items() if r.at <= now - keep]
        if len(mine) - len(stale) >= MAX_RECORDS:
            # Make room with the oldest outside the policy's window, never with one inside it.
            spare = sorted(
                (n for n, r in mine.items() if r.at <= now - window and n not in stale), key=lambda n: mine[n].at
            )
            stale += spare[: len(mine) - len(stale) - MAX_RECORDS + 1]
            if len(mine) - len(stale) >= MAX_RECORDS:
                raise HistoryFull(
                    f"this node holds {MAX_RECORDS} withdrawals of organisation {org} within its policy's "
                    f"longest window ({window} s), the most it counts: shorten the window"
                )
        number = self.seq(org) + 1
        self.store.put(f"history/{org}.{number}", bytes(cbor2.dumps(record.to_cbor(), canonical=True)))
        mine[number] = record
        self._forget(org, stale)

    def _forget(self, org: str, numbers: Iterable[int]) -> None:
        for n in numbers:
            self.store.delete(f"history/{org}.{n}")
            self.records[org].pop(n, None)
