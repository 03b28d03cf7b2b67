"""What a node answers about organisations: ``enrol``, ``push``, ``head`` and ``history`` (node/rpc.py).

- ``enrol`` starts keeping an organisation's log from its genesis, on the
  authority's ``enrol`` certificate naming the genesis hash. The genesis is
  verified first; enrolling the same one again changes nothing and spends
  nothing. Each enrolment (or refusal) is a line of the signing log.
- ``push`` appends entries to an enrolled log. It needs no certificate: an entry
  counts only if the organisation's admin quorum signed it, which the node checks
  (:meth:`harbour.governance.state.GovernanceLog.append`). The first entry refused
  ends the push, and the refusal's reason is the entry's fault (``replayed``,
  ``forked``, ``order``, ``signer``, ``quorum``, ``signature``, ``change``,
  ``malformed``, ``organisation``).
- ``head`` is how far the node's log goes, so a coordinator pushes only what is missing.
- ``history`` is the node's signed statement of its withdrawal record for one
  session (:mod:`harbour.node.orgs.statement`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harbour.governance.fields import GovernanceError
from harbour.governance.log import SignedEntry
from harbour.governance.state import GovernanceLog
from harbour.node import approval, nonces, signlog
from harbour.node.identity import NodeIdentity
from harbour.node.orgs import statement as statements
from harbour.node.orgs.history import History
from harbour.node.orgs.registry import Organisations
from harbour.node.staging import Refusal

log = logging.getLogger("harbour.node")


class OrgRequests:
    """The organisation requests of one node; holds references to the node's parts, no state of its own."""

    def __init__(
        self,
        *,
        orgs: Organisations,
        history: History,
        identity: NodeIdentity,
        sign_log: signlog.SignLog,
        trusted: Mapping[str, Ed25519PublicKey],
        ledger: nonces.NonceLedger,
        now: Callable[[], int],
    ) -> None:
        self.orgs = orgs
        self.records = history
        self.identity = identity
        self.log = sign_log
        self.trusted = trusted
        self.ledger = ledger
        self.now = now

    def enrol(self, genesis_data: bytes, certificate: bytes) -> dict[str, Any]:
        try:
            genesis = SignedEntry.decode(genesis_data)
            GovernanceLog(genesis)
        except GovernanceError as exc:
            raise Refusal(exc.reason, f"the genesis is refused ({exc.reason}): {exc}") from exc
        org = genesis.hash.hex()
        if org in self.orgs.logs:
            return _head(self.orgs.logs[org])
        self.orgs.room()  # before the certificate is spent
        try:
            approval.verify(
                certificate,
                self.trusted,
                now=self.now(),
                kind="enrol",
                key_id="",
                path="m",
                params={"org": org},
                ledger=self.ledger,
            )
        except approval.ApprovalError as exc:
            self._log_enrol(genesis, certificate, "refused", f"{exc.reason}: {exc}")
            raise Refusal("approval", f"approval refused ({exc.reason}): {exc}") from exc
        governance = self.orgs.enrol(genesis)
        self._log_enrol(genesis, certificate, "committed", f"enrolled organisation {genesis.entry.org!r} ({org})")
        return _head(governance)

    def _log_enrol(self, genesis: SignedEntry, certificate: bytes, outcome: str, reason: str) -> None:
        self.log.append(
            time=self.now(),
            kind="enrol",
            session_id=genesis.hash,
            key_id="",
            path="m",
            outcome=outcome,
            reason=reason[: signlog.MAX_REASON],
            certificate=certificate,
        )

    def push(self, org: str, entries: list[bytes]) -> dict[str, Any]:
        governance = self.orgs.log(org)
        before = governance.state.seq
        try:
            self.orgs.push(org, (SignedEntry.decode(e) for e in entries))
        except GovernanceError as exc:
            appended = governance.state.seq - before
            raise Refusal(
                exc.reason,
                f"entry {appended + 1} of the {len(entries)} pushed is refused ({exc.reason}): {exc}; "
                f"{appended} appended before it, the log's head is entry {governance.state.seq}",
            ) from exc
        if governance.state.seq != before:
            log.info("organisation %s: entries %d..%d appended", org, before + 1, governance.state.seq)
        return _head(governance) | {"appended": governance.state.seq - before}

    def head(self, org: str) -> dict[str, Any]:
        return _head(self.orgs.log(org))

    def history(self, org: str, session_id: bytes) -> dict[str, Any]:
        """This node's record of the organisation's withdrawals within its policy's longest window, signed."""
        state = self.orgs.log(org).state
        now = self.now()
        window = state.policy.max_window_seconds() if state.policy is not None else 0
        statement = statements.HistoryStatement(
            node=self.identity.node_id,
            session_id=session_id,
            org=org,
            head=state.head,
            records=tuple(self.records.window(org, now, window)),
        )
        return {"statement": statements.sign(self.identity, statement)}


def _head(governance: GovernanceLog) -> dict[str, Any]:
    return {"org": governance.genesis_hash.hex(), "seq": governance.state.seq, "head": governance.head}
