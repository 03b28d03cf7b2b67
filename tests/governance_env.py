"""An organisation's governance log as the node tests build it: admins, approvers, an initiator, their keys.

:class:`Org` makes a genesis (unsigned: a verifier trusts it by its hash) naming
three admins with an admin quorum of one other, three approvers and an
initiator, the assets and address book given, and a policy; :meth:`Org.propose`
appends an entry signed by the proposer and the admins named, as the custody
service would after its approvals; :meth:`Org.entry` makes one without appending
it, for the tests that push forged, replayed or forked entries.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.governance import changes as c
from harbour.governance.log import GENESIS_PARENT, Entry, SignedEntry, signed
from harbour.governance.state import GovernanceLog

ADMINS = ("admin-a", "admin-b", "admin-c")
APPROVERS = ("alice", "bob", "carol")
INITIATOR = "ivan"


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def allow_all() -> dict[str, Any]:
    return {"rules": [{"name": "allow-all", "action": "allow"}]}


def velocity_policy(limit: int, window: int = 3600, per: str = "source") -> dict[str, Any]:
    """Block what takes the window's ETH total above ``limit``; allow the rest, with no human approval."""
    velocity = {"window_seconds": window, "max_amount": str(limit), "per": per, "asset": "ETH"}
    return {
        "rules": [
            {
                "name": "over-velocity",
                "match": {"velocity": velocity},
                "action": "block",
            },
            {"name": "allow-rest", "action": "allow"},
        ]
    }


def count_policy(limit: int, window: int = 3600) -> dict[str, Any]:
    return {
        "rules": [
            {
                "name": "over-count",
                "match": {"count": {"window_seconds": window, "max_count": limit, "per": "source"}},
                "action": "block",
            },
            {"name": "allow-rest", "action": "allow"},
        ]
    }


def whitelist_only() -> dict[str, Any]:
    return {
        "rules": [{"name": "whitelisted-only", "match": {"destination": {"kind": "whitelisted"}}, "action": "allow"}]
    }


def two_approvers() -> dict[str, Any]:
    return {
        "rules": [
            {
                "name": "two-of-three",
                "action": "require_approval",
                "approvals": {
                    "combine": "all",
                    "groups": [{"name": "approvers", "members": list(APPROVERS), "threshold": 2}],
                },
            }
        ]
    }


class Org:
    """One organisation: its people's Ed25519 keys and its verified log."""

    def __init__(
        self,
        name: str,
        *,
        policy: Mapping[str, Any],
        vaults: Mapping[str, str] = {},
        assets: Sequence[tuple[str, str, str | None]] = (("asset-eth", "ETH", None),),
        book: Sequence[tuple[str, str, bool]] = (),
    ) -> None:
        """``vaults``: vault id -> key id; ``assets``: (id, symbol, contract); ``book``: (id, address, whitelisted)."""
        self.name = name
        self.keys = {who: Ed25519PrivateKey.generate() for who in (*ADMINS, *APPROVERS, INITIATOR)}
        changes: list[c.Change] = [c.SetQuorum(1)]
        changes += [c.AddUser(a, a, frozenset({"admin"}), raw(self.keys[a])) for a in ADMINS]
        changes += [c.AddUser(a, a, frozenset({"approver"}), raw(self.keys[a])) for a in APPROVERS]
        changes.append(c.AddUser(INITIATOR, INITIATOR, frozenset({"initiator"}), raw(self.keys[INITIATOR])))
        changes += [c.AddAsset(i, symbol, contract, 18) for i, symbol, contract in assets]
        changes += [c.AddAddress(i, i, address, listed) for i, address, listed in book]
        changes += [c.AddVault(v, v, k) for v, k in vaults.items()]
        changes.append(c.policy_change(policy))
        entry = Entry(
            org=name, seq=0, prev=GENESIS_PARENT, proposer=ADMINS[0], at=int(time.time()), changes=tuple(changes)
        )
        self.genesis = SignedEntry(entry.encode(), ())
        self.log = GovernanceLog(self.genesis)

    @property
    def org(self) -> str:
        """The organisation's name on a node: its genesis hash in hex."""
        return self.log.genesis_hash.hex()

    def entry(
        self,
        *changes: c.Change,
        proposer: str = ADMINS[0],
        signers: Iterable[str] = ADMINS[:2],
        seq: int | None = None,
        prev: bytes | None = None,
    ) -> SignedEntry:
        """An entry after the log's head (or at ``seq`` on ``prev``), signed by ``signers``; not appended."""
        seq = self.log.state.seq + 1 if seq is None else seq
        prev = self.log.head if prev is None else prev
        entry = Entry(org=self.name, seq=seq, prev=prev, proposer=proposer, at=int(time.time()), changes=changes)
        return signed(entry, [self.keys[s] for s in signers])

    def propose(
        self, *changes: c.Change, proposer: str = ADMINS[0], signers: Iterable[str] = ADMINS[:2]
    ) -> SignedEntry:
        """An entry signed by the proposer and one other admin, appended to the log (verified)."""
        made = self.entry(*changes, proposer=proposer, signers=signers)
        self.log.append(made)
        return made
