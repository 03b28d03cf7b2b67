"""An organisation's governance log as the node tests build it: admins, approvers, an initiator, their keys.

:class:`Org` makes a genesis (unsigned: a verifier trusts it by its hash) naming
three admins with an admin quorum of one other, three approvers and an
initiator, the assets and address book given, and a policy; :meth:`Org.propose`
appends an entry signed by the proposer and the admins named, as the custody
service would after its approvals; :meth:`Org.entry` makes one without appending
it, for the tests that push forged, replayed or forked entries.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.governance import changes as c
from harbour.governance import holding
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


def bot_policy(initiator: str = INITIATOR, limit: int = 10**18) -> dict[str, Any]:
    """The initiator (a payments bot) may pay up to ``limit`` wei of ETH without approval; nobody else pays anything."""
    return {
        "rules": [
            {
                "name": "the bot pays small sums",
                "action": "allow",
                "match": {"initiators": [initiator], "assets": ["ETH"], "amount": {"max": str(limit)}},
            },
            {"name": "nobody else", "action": "block"},
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
    """One organisation: its people's Ed25519 keys and its verified log.

    ``nodes`` (name -> identity key) are the signer nodes the genesis names. Given,
    they are real nodes: each vault of ``vaults`` is added by :meth:`add_vault` once
    its key exists on them, with their statements. Not given, the organisation has
    three made-up nodes, and each vault is added at once with their statements.
    """

    def __init__(
        self,
        name: str,
        *,
        policy: Mapping[str, Any],
        vaults: Mapping[str, str] = {},
        assets: Sequence[tuple[str, str, str | None]] = (("asset-eth", "ETH", None),),
        book: Sequence[tuple[str, str, bool]] = (),
        nodes: Mapping[str, bytes] | None = None,
    ) -> None:
        """``vaults``: vault id -> key id; ``assets``: (id, symbol, contract); ``book``: (id, address, whitelisted)."""
        self.name = name
        self.keys = {who: Ed25519PrivateKey.generate() for who in (*ADMINS, *APPROVERS, INITIATOR)}
        made_up = signer_nodes() if nodes is None else {}
        named = {n: raw(k) for n, k in made_up.items()} if nodes is None else dict(nodes)
        changes: list[c.Change] = [c.SetQuorum(1)]
        changes += [c.AddNode(n, identity) for n, identity in named.items()]
        changes += [c.AddUser(a, a, frozenset({"admin"}), raw(self.keys[a])) for a in ADMINS]
        changes += [c.AddUser(a, a, frozenset({"approver"}), raw(self.keys[a])) for a in APPROVERS]
        changes.append(c.AddUser(INITIATOR, INITIATOR, frozenset({"initiator"}), raw(self.keys[INITIATOR])))
        changes += [c.AddAsset(i, symbol, contract, 18) for i, symbol, contract in assets]
        changes += [c.AddAddress(i, i, address, listed) for i, address, listed in book]
        changes.append(c.policy_change(policy))
        entry = Entry(
            org=name, seq=0, prev=GENESIS_PARENT, proposer=ADMINS[0], at=int(time.time()), changes=tuple(changes)
        )
        self.genesis = SignedEntry(entry.encode(), ())
        self.log = GovernanceLog(self.genesis)
        self.vaults = {key_id: vault_id for vault_id, key_id in vaults.items()}
        """Key id -> the vault it becomes (with real nodes, once :meth:`add_vault` has their statements)."""
        if made_up and vaults:
            self.propose(*(stated_vault(self.log.genesis_hash, v, k, made_up) for v, k in vaults.items()))

    def add_vault(self, key_id: str, statements: Sequence[bytes]) -> SignedEntry:
        """Propose the ``vault.add`` of ``key_id`` with its holders' statements (which say what the key is)."""
        stated, _, _ = holding.parse(statements[0])
        vault_id = self.vaults[key_id]
        return self.propose(c.AddVault(vault_id, vault_id, stated.holding, tuple(statements)))

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


def signer_nodes(count: int = 3) -> dict[str, Ed25519PrivateKey]:
    """Identity keys of ``count`` signer nodes, for tests that state holdings without running nodes."""
    return {f"node-{i}": Ed25519PrivateKey.generate() for i in range(1, count + 1)}


def node_adds(nodes: Mapping[str, Ed25519PrivateKey]) -> list[c.Change]:
    return [c.AddNode(name, raw(key)) for name, key in nodes.items()]


def stated_vault(
    genesis: bytes,
    vault_id: str,
    key_id: str,
    nodes: Mapping[str, Ed25519PrivateKey],
    *,
    threshold: int = 2,
    public_key: bytes | None = None,
) -> c.AddVault:
    """A ``vault.add`` of ``key_id`` held by ``nodes``, each node's statement signed with its identity key."""
    stated = holding.Holding(
        org=genesis,
        key_id=key_id,
        public_key=public_key or b"\x02" + hashlib.sha256(key_id.encode()).digest(),
        chain_code=hashlib.sha256(b"chain code " + key_id.encode()).digest(),
        threshold=threshold,
        holders=tuple(sorted(raw(k) for k in nodes.values())),
    )
    statements = tuple(holding.sign(raw(k), stated, k.sign) for k in nodes.values())
    return c.AddVault(vault_id, vault_id, stated, statements)
