"""An organisation's governance state, and the log that makes it: verified entry by entry from the genesis.

:class:`OrgState` is what the organisation's quorum-signed entries say now: its
users (roles, approval keys, disabled or not), the admin quorum, the policy, the
address book, the vaults' keys and the assets. It changes only by
:meth:`OrgState.apply` of an entry whose signatures :meth:`OrgState.admit`
accepted: the proposer's and at least ``quorum`` other admins', each an enabled
admin's current key *before* the entry. So a removed admin's signature never
counts, and an entry cannot vouch for the admins it adds.

:class:`GovernanceLog` is the chain from a genesis the verifier trusts (a signer
node is given it at enrolment; the service made it at bootstrap): it accepts the
next entry only, and names a replayed entry, a fork (a second entry on a parent
that has one) and an entry out of order as such. The genesis carries no
signatures: nothing before it says whose signature would count, so it is trusted
because the verifier was given its hash (a node pins it at enrolment; the service
made it at bootstrap and keeps its hash with the organisation). It names the
founding admins and the quorum, and every later entry is checked against them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from types import MappingProxyType
from typing import Final

from harbour.governance import amendments as am
from harbour.governance import changes as c
from harbour.governance import committee, holding
from harbour.governance.fields import GovernanceError, address_key
from harbour.governance.holding import Holding
from harbour.governance.log import SignedEntry, verify_entry_signature
from harbour.governance.policy import Policy
from harbour.util.text import name_key

MAX_USERS: Final = 10_000
MAX_NODES: Final = 256


@dataclass(frozen=True)
class User:
    id: str
    name: str
    roles: frozenset[str]
    approval_key: bytes | None
    disabled: bool = False

    @property
    def active_admin(self) -> bool:
        """An admin whose signature counts on governance entries."""
        return not self.disabled and "admin" in self.roles and self.approval_key is not None


@dataclass(frozen=True)
class AddressEntry:
    id: str
    name: str
    address: str
    whitelisted: bool


@dataclass(frozen=True)
class Vault:
    id: str
    name: str
    holding: Holding
    """The key: its public key, chain code, threshold and the nodes that hold it, as each of them stated."""
    archived: bool = False
    """No new withdrawal or address (``vault.archive``); its history stays and deposits are still credited."""

    @property
    def key_id(self) -> str:
        return self.holding.key_id


@dataclass(frozen=True)
class Asset:
    id: str
    symbol: str
    contract: str | None
    decimals: int
    disabled: bool = False
    """No withdrawal of it is signed (``asset.disable``) until ``asset.enable``."""


@dataclass(frozen=True)
class OrgState:
    """What the entries up to ``seq`` (whose hash is ``head``) put in force."""

    org: str
    genesis: bytes
    """The genesis entry's hash: the organisation's name on the signer nodes."""
    seq: int
    head: bytes
    quorum: int
    users: Mapping[str, User]
    policy: Policy | None
    address_book: Mapping[str, AddressEntry]
    vaults: Mapping[str, Vault]
    assets: Mapping[str, Asset]
    credentials: Mapping[str, str]
    """Admin credential id -> user id (their secrets' hashes stay in the log)."""
    nodes: Mapping[bytes, str]
    """Identity key -> name of each signer node that may hold the organisation's vault keys."""

    # -- lookups -------------------------------------------------------------------

    def admins(self) -> dict[bytes, str]:
        """Approval key -> user id of every admin whose signature counts now."""
        return {u.approval_key: u.id for u in self.users.values() if u.active_admin and u.approval_key}

    def user_by_key(self, key: bytes) -> User | None:
        for user in self.users.values():
            if user.approval_key == key:
                return user
        return None

    def vault_of_key(self, key_id: str) -> Vault | None:
        return self._vaults_by_key.get(key_id)

    @cached_property
    def _vaults_by_key(self) -> dict[str, Vault]:
        """The vaults by key id, built once per state: every signature, and every node's claimant scan, asks."""
        return {v.key_id: v for v in self.vaults.values()}

    def entry_for(self, address: str) -> AddressEntry | None:
        return self._entries_by_address.get(address_key(address))

    @cached_property
    def _entries_by_address(self) -> dict[str, AddressEntry]:
        """The address book by address, built once per state: every withdrawal looks its destination up."""
        return {address_key(e.address): e for e in self.address_book.values()}

    def asset_for(self, contract: str | None) -> Asset | None:
        wanted = None if contract is None else address_key(contract)
        for asset in self.assets.values():
            if (None if asset.contract is None else address_key(asset.contract)) == wanted:
                return asset
        return None

    def asset_by_symbol(self, symbol: str) -> Asset | None:
        return next((a for a in self.assets.values() if a.symbol == symbol), None)

    # -- admitting an entry -------------------------------------------------------------

    def admit(self, signed: SignedEntry) -> None:
        """Accept ``signed`` as the entry after this state, or raise GovernanceError naming why not."""
        entry = signed.entry
        if entry.org != self.org:
            raise GovernanceError("organisation", f"the entry is for organisation {entry.org!r}, not {self.org!r}")
        if entry.seq != self.seq + 1 or entry.prev != self.head:
            raise GovernanceError(
                "order",
                f"entry {entry.seq} names parent {entry.prev.hex()[:16]}; the next entry is {self.seq + 1} "
                f"on {self.head.hex()[:16]}",
            )
        admins = self.admins()
        signers: set[str] = set()
        for public, signature in signed.signatures:
            who = admins.get(public)
            if who is None:
                user = self.user_by_key(public)
                status = "not an admin's" if user is None else f"user {user.id}'s, who is not an enabled admin"
                raise GovernanceError(
                    "signer", f"entry {entry.seq} is signed by {public.hex()}, {status} key in force before it"
                )
            if not verify_entry_signature(public, signature, signed.data):
                raise GovernanceError(
                    "signature", f"the signature by {who} ({public.hex()}) on entry {entry.seq} is invalid"
                )
            signers.add(who)
        proposer = self.users.get(entry.proposer)
        if proposer is None or not proposer.active_admin:
            raise GovernanceError("signer", f"the proposer {entry.proposer!r} is not an enabled admin with a key")
        if entry.proposer not in signers:
            raise GovernanceError("quorum", f"the proposer {entry.proposer} did not sign entry {entry.seq}")
        others = len(signers - {entry.proposer})
        if others < self.quorum:
            raise GovernanceError(
                "quorum",
                f"entry {entry.seq} is signed by the proposer and {others} other admin(s); {self.quorum} are needed",
            )

    def apply(self, signed: SignedEntry) -> OrgState:
        """The state after ``signed`` (which :meth:`admit` accepted); GovernanceError("change") if it cannot apply."""
        state = _Builder(self).run(signed.entry.changes)
        after = replace(state, seq=signed.entry.seq, head=signed.hash)
        quorum_ok = len(after.admins()) >= after.quorum + 1
        if not quorum_ok:
            raise GovernanceError(
                "change",
                f"after entry {signed.entry.seq} only {len(after.admins())} admin(s) could sign, and every change "
                f"needs {after.quorum + 1}: an entry may not disable, demote or unkey the last admins of the quorum",
            )
        return after


def genesis_state(signed: SignedEntry) -> OrgState:
    """The state a genesis entry puts in force; the caller trusts it by its hash, so it carries no signatures.

    A signature on a genesis would prove nothing (no state says whose key counts
    before it) and would give one entry two encodings that both pass, so a
    genesis with any is refused.
    """
    entry = signed.entry
    if not entry.genesis:
        raise GovernanceError("order", f"entry {entry.seq} is not a genesis (seq 0)")
    if signed.signatures:
        raise GovernanceError(
            "malformed", "a genesis carries no signatures: it is trusted by its hash, which the verifier was given"
        )
    empty = OrgState(
        org=entry.org,
        genesis=signed.hash,
        seq=0,
        head=signed.hash,
        quorum=0,
        users={},
        policy=None,
        address_book={},
        vaults={},
        assets={},
        credentials={},
        nodes={},
    )
    if any(isinstance(ch, c.AddVault) for ch in entry.changes):
        raise GovernanceError(
            "change", "a vault is added after the genesis: its holders state the key is the organisation's by its hash"
        )
    state = _Builder(empty).run(entry.changes)
    if not any(isinstance(ch, c.SetQuorum) for ch in entry.changes):
        raise GovernanceError("change", "the genesis sets the admin quorum")
    admins = state.admins()
    if not admins:
        raise GovernanceError("change", "the genesis names at least one admin with an approval key")
    if entry.proposer not in admins.values():
        raise GovernanceError("change", f"the genesis proposer {entry.proposer!r} is not one of its admins")
    return replace(state, head=signed.hash)


class _Builder:
    """Applies one entry's changes to copies of a state's maps, checking each against what came before."""

    def __init__(self, state: OrgState) -> None:
        self.state = state
        self.quorum = state.quorum
        self.users = dict(state.users)
        self.policy = state.policy
        self.book = dict(state.address_book)
        self.vaults = dict(state.vaults)
        self.assets = dict(state.assets)
        self.credentials = dict(state.credentials)
        self.nodes = dict(state.nodes)
        self._address_keys: set[str] | None = None
        self._name_keys: dict[str, dict[str, str]] = {}

    def run(self, changes: Iterable[c.Change]) -> OrgState:
        for index, change in enumerate(changes):
            try:
                self._apply(change)
            except GovernanceError as exc:
                raise GovernanceError("change", f"changes[{index}] ({change.op}): {exc}") from None
        return replace(
            self.state,
            quorum=self.quorum,
            users=MappingProxyType(self.users),
            policy=self.policy,
            address_book=MappingProxyType(self.book),
            vaults=MappingProxyType(self.vaults),
            assets=MappingProxyType(self.assets),
            credentials=MappingProxyType(self.credentials),
            nodes=MappingProxyType(self.nodes),
        )

    def _addresses(self) -> set[str]:
        # Built once per entry, not once per address added: a log of many additions stays linear.
        if self._address_keys is None:
            self._address_keys = {address_key(e.address) for e in self.book.values()}
        return self._address_keys

    def _user(self, user_id: str) -> User:
        user = self.users.get(user_id)
        if user is None:
            raise GovernanceError("change", f"no user {user_id!r}")
        return user

    def _names(self, what: str) -> dict[str, str]:
        """Name key -> name of the users, vaults or address-book entries: built once per entry, like addresses."""
        names = self._name_keys.get(what)
        if names is None:
            rows: Iterable[User | Vault | AddressEntry]
            if what == "user":
                rows = self.users.values()
            elif what == "vault":
                rows = self.vaults.values()
            else:
                rows = self.book.values()
            names = self._name_keys[what] = {name_key(row.name): row.name for row in rows}
        return names

    def _claim_name(self, what: str, name: str) -> None:
        # Names compare as people read them: "Bob", "bob" and a fullwidth "ｂｏｂ" are one name, so no two
        # users, vaults or address-book entries can be told apart only by case or width.
        names, key = self._names(what), name_key(name)
        if key in names:
            raise GovernanceError("change", f"the {what} name {name!r} is taken (by {names[key]!r})")
        names[key] = name

    def _rename(self, what: str, old: str, new: str) -> None:
        """``old`` becomes ``new``: taken unless only case, width or spacing tell it from ``old`` itself."""
        names = self._names(what)
        names.pop(name_key(old), None)
        try:
            self._claim_name(what, new)
        except GovernanceError:
            names[name_key(old)] = old
            raise

    def _key_free(self, key: bytes | None, owner: str) -> None:
        # One key is one person: a key held twice would let one signature count as two admins or approvers.
        if key is not None and any(u.approval_key == key and u.id != owner for u in self.users.values()):
            raise GovernanceError("change", f"the approval key {key.hex()} belongs to another user")

    def _apply(self, change: c.Change) -> None:
        if isinstance(change, c.SetQuorum):
            self.quorum = change.others
        elif isinstance(change, c.AddUser):
            if change.id in self.users:
                raise GovernanceError("change", f"user {change.id!r} exists")
            if len(self.users) >= MAX_USERS:
                raise GovernanceError("change", f"at most {MAX_USERS} users")
            self._key_free(change.approval_key, change.id)
            self._claim_name("user", change.name)
            self.users[change.id] = User(change.id, change.name, change.roles, change.approval_key)
        elif isinstance(change, c.SetRoles):
            self.users[change.id] = replace(self._user(change.id), roles=change.roles)
        elif isinstance(change, c.SetKey):
            user = self._user(change.id)
            self._key_free(change.approval_key, change.id)
            self.users[change.id] = replace(user, approval_key=change.approval_key)
        elif isinstance(change, c.DisableUser | c.EnableUser):
            user = self._user(change.id)
            disable = isinstance(change, c.DisableUser)
            if user.disabled == disable:
                raise GovernanceError("change", f"user {change.id!r} is already {'disabled' if disable else 'enabled'}")
            self.users[change.id] = replace(user, disabled=disable)
        elif isinstance(change, c.IssueCredential):
            user = self._user(change.user)
            if "admin" not in user.roles or user.disabled:
                raise GovernanceError("change", f"user {change.user!r} is not an enabled admin")
            if change.id in self.credentials:
                raise GovernanceError("change", f"credential {change.id!r} exists")
            self.credentials[change.id] = change.user
        elif isinstance(change, c.SetPolicy):
            policy = change.policy()
            unknown = sorted(_named_users(policy) - set(self.users))
            if unknown:
                raise GovernanceError(
                    "change", f"the policy names users that do not exist (members are user ids): {', '.join(unknown)}"
                )
            self.policy = policy
        elif isinstance(change, c.AddAddress):
            if change.id in self.book:
                raise GovernanceError("change", f"address-book entry {change.id!r} exists")
            if address_key(change.address) in self._addresses():
                raise GovernanceError("change", f"{change.address} is already in the address book")
            self._claim_name("address-book", change.name)
            self.book[change.id] = AddressEntry(change.id, change.name, change.address, change.whitelisted)
            self._addresses().add(address_key(change.address))
        elif isinstance(change, c.SetWhitelisted):
            entry = self.book.get(change.id)
            if entry is None:
                raise GovernanceError("change", f"no address-book entry {change.id!r}")
            self.book[change.id] = replace(entry, whitelisted=change.whitelisted)
        elif isinstance(change, c.RemoveAddress):
            removed = self.book.pop(change.id, None)
            if removed is None:
                raise GovernanceError("change", f"no address-book entry {change.id!r}")
            self._addresses().discard(address_key(removed.address))
            self._names("address-book").pop(name_key(removed.name), None)
        elif isinstance(change, c.AddNode):
            if change.identity_key in self.nodes:
                raise GovernanceError("change", f"node {change.identity_key.hex()} is the organisation's already")
            if len(self.nodes) >= MAX_NODES:
                raise GovernanceError("change", f"at most {MAX_NODES} nodes")
            if change.name in self.nodes.values():
                raise GovernanceError("change", f"another node is named {change.name!r}")
            self.nodes[change.identity_key] = change.name
        elif isinstance(change, c.RemoveNode):
            if self.nodes.pop(change.identity_key, None) is None:
                raise GovernanceError("change", f"node {change.identity_key.hex()} is not one of the organisation's")
        elif isinstance(change, c.AddVault):
            if change.id in self.vaults or any(v.key_id == change.key_id for v in self.vaults.values()):
                raise GovernanceError("change", f"vault {change.id!r} or key {change.key_id!r} is already a vault")
            if change.holding.org != self.state.genesis:
                raise GovernanceError(
                    "change",
                    f"the vault's key is named for organisation {change.holding.org.hex()[:16]}, not this one "
                    f"({self.state.genesis.hex()[:16]})",
                )
            self._claim_name("vault", change.name)
            holding.check(change.statements, change.holding, self.nodes)
            self.vaults[change.id] = Vault(change.id, change.name, change.holding)
        elif isinstance(change, committee.ReshareVault):
            vault = self.vaults.get(change.id)
            if vault is None:
                raise GovernanceError("change", f"no vault {change.id!r}")
            committee.check(vault.holding, change, self.nodes)
            self.vaults[change.id] = replace(vault, holding=change.holding)
        elif isinstance(change, am.Amendment):
            self._amend(change)
        else:
            if change.id in self.assets or any(a.symbol == change.symbol for a in self.assets.values()):
                raise GovernanceError("change", f"asset {change.id!r} or symbol {change.symbol!r} exists")
            contract = None if change.contract is None else address_key(change.contract)
            if any((None if a.contract is None else address_key(a.contract)) == contract for a in self.assets.values()):
                raise GovernanceError("change", f"{change.contract or 'the native coin'} is already an asset")
            self.assets[change.id] = Asset(change.id, change.symbol, change.contract, change.decimals)

    def _amend(self, change: am.Amendment) -> None:
        # Each refuses a change that would change nothing: a log whose entries all do something reads plainly.
        if isinstance(change, am.RenameVault | am.ArchiveVault):
            vault = self.vaults.get(change.id)
            if vault is None:
                raise GovernanceError("change", f"no vault {change.id!r}")
            if isinstance(change, am.ArchiveVault):
                if vault.archived:
                    raise GovernanceError("change", f"vault {change.id!r} is archived already")
                self.vaults[change.id] = replace(vault, archived=True)
                return
            # Names are unique among the vaults (archived ones too: their history names them).
            if vault.name == change.name:
                raise GovernanceError("change", f"vault {change.id!r} is named {change.name!r} already")
            self._rename("vault", vault.name, change.name)
            self.vaults[change.id] = replace(vault, name=change.name)
        elif isinstance(change, am.DisableAsset | am.EnableAsset):
            asset = self.assets.get(change.id)
            if asset is None:
                raise GovernanceError("change", f"no asset {change.id!r}")
            disable = isinstance(change, am.DisableAsset)
            if asset.disabled == disable:
                raise GovernanceError(
                    "change", f"asset {change.id!r} is already {'disabled' if disable else 'enabled'}"
                )
            self.assets[change.id] = replace(asset, disabled=disable)
        else:
            entry = self.book.get(change.id)
            if entry is None:
                raise GovernanceError("change", f"no address-book entry {change.id!r}")
            if entry.name == change.name:
                raise GovernanceError("change", f"address-book entry {change.id!r} is named {change.name!r} already")
            self._rename("address-book", entry.name, change.name)
            self.book[change.id] = replace(entry, name=change.name)


def _named_users(policy: Policy) -> set[str]:
    named: set[str] = set()
    for rule in policy.rules:
        if rule.match.initiators:
            named |= rule.match.initiators
        if rule.approvals is not None:
            for group in rule.approvals.groups:
                named |= group.members
    return named


class GovernanceLog:
    """The verified chain from a trusted genesis: :meth:`append` takes the next entry only.

    It keeps each entry's hash, so an entry it already holds is named "replayed"
    and a different entry at a sequence number it holds is named "forked".
    """

    def __init__(self, genesis: SignedEntry) -> None:
        self.genesis = genesis
        self.state = genesis_state(genesis)
        self.hashes: list[bytes] = [genesis.hash]
        self.entries: list[SignedEntry] = [genesis]

    @property
    def genesis_hash(self) -> bytes:
        return self.hashes[0]

    @property
    def head(self) -> bytes:
        return self.hashes[-1]

    def append(self, signed: SignedEntry) -> OrgState:
        entry = signed.entry
        if entry.org == self.state.org and entry.seq < len(self.hashes):
            if self.hashes[entry.seq] == signed.hash:
                raise GovernanceError("replayed", f"entry {entry.seq} ({signed.hash.hex()[:16]}) is already in the log")
            raise GovernanceError(
                "forked",
                f"entry {entry.seq} ({signed.hash.hex()[:16]}) differs from the log's entry {entry.seq} "
                f"({self.hashes[entry.seq].hex()[:16]}): a second entry on the same parent",
            )
        self.state.admit(signed)
        self.state = self.state.apply(signed)
        self.hashes.append(signed.hash)
        self.entries.append(signed)
        return self.state

    def extend(self, entries: Iterable[SignedEntry]) -> OrgState:
        for signed in entries:
            self.append(signed)
        return self.state

    def since(self, seq: int) -> list[SignedEntry]:
        """The entries after ``seq`` (what a verifier at ``seq`` lacks)."""
        return self.entries[seq + 1 :]
