"""The organisations enrolled on a node: their verified governance logs, and which key belongs to which.

An organisation is named on a node by the hash of its genesis entry (64 hex
digits), the one thing the node takes on trust, from the authority's ``enrol``
certificate. Everything after the genesis is verified here, entry by entry
(:meth:`harbour.governance.state.GovernanceLog.append`): each entry must be the
next one and signed by the admin quorum in force before it, so the log a node
holds is the organisation's whatever relayed it. A compromised authority can
enrol a genesis of its own making, but that is another organisation: it cannot
move a key bound to an existing one (:meth:`Organisations.bind` is only called by
a key ceremony, and a refresh or reshare certificate must name the key's org).

Kept in the node's encrypted store, so an edited entry does not decrypt:

- ``orgs/<org>``: the genesis entry (its :meth:`SignedEntry.encode` bytes);
- ``govlog/<org>.<seq>``: every later entry, one object each;
- ``bindings/<key id>``: the org a key belongs to (its hex name, ASCII).

At start every log is replayed from its genesis; an entry that no longer
verifies (or a gap) ends that log there, and the entries after it are dropped
(the coordinator pushes them again). The store cannot tell an older copy of
itself from the current one, so someone who can write the node's directory
can roll a log back to an earlier head (``docs/nodes.md``, Limits).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Final

from harbour.governance.fields import GovernanceError
from harbour.governance.log import SignedEntry
from harbour.governance.state import GovernanceLog
from harbour.node.staging import Refusal
from harbour.node.store import SecretStore, StoreError

log = logging.getLogger("harbour.node")

MAX_ORGS: Final = 64
"""Organisations one node serves: each costs its log in memory and a replay at every start."""
MAX_PUSH: Final = 256
"""Entries one ``push`` request may carry; a longer log is pushed in several requests."""
_ORG = re.compile(r"[0-9a-f]{64}")


def check_org(value: object) -> str:
    """An organisation's name on a node (its genesis hash, 64 lowercase hex digits), or Refusal."""
    if not isinstance(value, str) or not _ORG.fullmatch(value):
        raise Refusal(
            "bad-request", f"an organisation is named by its genesis hash, 64 lowercase hex digits, got {value!r:.80}"
        )
    return value


class Organisations:
    """The enrolled logs of one node, verified, in memory; the store is the record."""

    def __init__(self, store: SecretStore) -> None:
        self.store = store
        self.logs: dict[str, GovernanceLog] = {}
        self.bindings: dict[str, str] = {}

    @classmethod
    def load(cls, store: SecretStore) -> Organisations:
        """Replay every enrolled log from its genesis, and read the key bindings."""
        orgs = cls(store)
        for name in store.names("orgs/"):
            org = name.removeprefix("orgs/")
            try:
                genesis = SignedEntry.decode(store.get(name))
                if genesis.hash.hex() != org:
                    raise GovernanceError("malformed", f"it hashes to {genesis.hash.hex()}")
                governance = GovernanceLog(genesis)
            except GovernanceError as exc:
                raise StoreError("corrupt", f"the stored genesis of organisation {org} is unusable: {exc}") from None
            orgs.logs[org] = orgs._replay(org, governance)
        for name in store.names("bindings/"):
            org = store.get(name).decode("ascii", "replace")
            if not _ORG.fullmatch(org) or org not in orgs.logs:
                raise StoreError("corrupt", f"{name} names no enrolled organisation ({org[:80]!r})")
            orgs.bindings[name.removeprefix("bindings/")] = org
        return orgs

    def _replay(self, org: str, governance: GovernanceLog) -> GovernanceLog:
        stored = sorted(
            (int(name.rpartition(".")[2]), name)
            for name in self.store.names("govlog/")
            if name.startswith(f"govlog/{org}.") and name.rpartition(".")[2].isdigit()
        )
        for seq, name in stored:
            if seq != governance.state.seq + 1:
                self._drop(org, name, "a gap in the stored log")
                continue
            try:
                governance.append(SignedEntry.decode(self.store.get(name)))
            except GovernanceError as exc:
                self._drop(org, name, f"it no longer verifies ({exc.reason}: {exc})")
        return governance

    def _drop(self, org: str, name: str, why: str) -> None:
        log.warning("organisation %s: dropping stored entry %s, %s; push it again", org, name, why)
        self.store.delete(name)

    # -- lookups ---------------------------------------------------------------------------

    def log(self, org: str) -> GovernanceLog:
        governance = self.logs.get(check_org(org))
        if governance is None:
            raise Refusal("unknown-org", f"organisation {org} is not enrolled on this node")
        return governance

    def binding(self, key_id: str) -> str | None:
        """The organisation ``key_id`` belongs to, or None (a key of no organisation)."""
        return self.bindings.get(key_id)

    def claimants(self, key_id: str) -> list[str]:
        """The enrolled organisations whose log, as this node holds it, names ``key_id`` as one of their vaults.

        A key's binding is fixed at key generation by the authority's certificate;
        the ``vault.add`` that names it is signed by an organisation's admins. A key
        named by an organisation but bound elsewhere (or nowhere) was made outside
        that organisation's rules, so it is never signed for at all.
        """
        return sorted(org for org, governance in self.logs.items() if governance.state.vault_of_key(key_id))

    # -- changes -----------------------------------------------------------------------------

    def enrol(self, genesis: SignedEntry) -> GovernanceLog:
        """Start keeping the log of this genesis (verified); the same genesis again changes nothing."""
        org = genesis.hash.hex()
        if org in self.logs:
            return self.logs[org]
        self.room()
        governance = GovernanceLog(genesis)
        self.store.put(f"orgs/{org}", genesis.encode())
        self.logs[org] = governance
        return governance

    def room(self) -> None:
        """Refusal("busy") if the node serves as many organisations as it can."""
        if len(self.logs) >= MAX_ORGS:
            raise Refusal("busy", f"this node serves {MAX_ORGS} organisations already")

    def push(self, org: str, entries: Iterable[SignedEntry]) -> int:
        """Append ``entries`` in order, each verified and stored; how many were appended.

        The first entry refused ends the push: it and every entry after it are left
        out, and GovernanceError says why (replayed, forked, order, signer, quorum,
        signature, change, organisation). The entries before it stay appended.
        """
        governance = self.log(org)
        appended = 0
        for signed in entries:
            governance.append(signed)
            self.store.put(f"govlog/{org}.{signed.entry.seq}", signed.encode())
            appended += 1
        return appended

    def bind(self, key_id: str, org: str | None) -> None:
        """Record that ``key_id`` belongs to ``org`` (None: to no organisation); only key ceremonies call this."""
        name = f"bindings/{key_id}"
        if org is None:
            self.store.delete(name)
            self.bindings.pop(key_id, None)
            return
        self.log(org)  # enrolled
        self.store.put(name, org.encode("ascii"))
        self.bindings[key_id] = org
