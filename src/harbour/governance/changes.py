"""The changes a governance entry can make, each with its one CBOR form.

Everything the signer nodes decide with (who is an admin or an approver and
with which key, the policy, the address book and its whitelist, which key
belongs to which vault, which token contract is which asset, the admin quorum
itself) changes only through one of these, inside an entry the admin quorum
signed (:mod:`harbour.governance.log`). Each change is a map with an ``op`` and
exactly its fields; :func:`decode_change` refuses anything else. Whether a change
applies to the state before it is :mod:`harbour.governance.state`'s business.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from harbour.governance import amendments as am
from harbour.governance import committee, destinations
from harbour.governance import credential_terms as ct
from harbour.governance import fields as f
from harbour.governance.fields import GovernanceError
from harbour.governance.holding import MAX_HOLDERS, Holding
from harbour.governance.policy import Policy, PolicyError

ROLES: Final = ("admin", "approver", "auditor", "initiator", "viewer")
MAX_OTHERS: Final = 64
"""The most other admins a change may need: more would be a log nobody can extend."""
MAX_DECIMALS: Final = 36
MAX_POLICY_LEN: Final = 256 * 1024


def _roles(name: str, value: object) -> frozenset[str]:
    if not isinstance(value, list) or not value or len(value) > len(ROLES):
        raise GovernanceError("malformed", f"{name} must be a non-empty list of roles")
    if value != sorted(set(value)) or not all(isinstance(r, str) and r in ROLES for r in value):
        raise GovernanceError("malformed", f"{name} must be sorted, distinct roles of {', '.join(ROLES)}")
    return frozenset(value)


def _destination(address: str) -> str:
    why = destinations.reserved(address)
    if why is not None:
        raise GovernanceError("malformed", f"{address} is {why}: it cannot be an address-book entry")
    return address


def _optional_key(name: str, value: object) -> bytes | None:
    return None if value is None else f.public_key(name, value)


@dataclass(frozen=True)
class SetQuorum:
    """How many admins other than the proposer must sign every later entry (at least one)."""

    others: int
    op: ClassVar[str] = "quorum"

    def fields(self) -> dict[str, Any]:
        return {"others": self.others}


@dataclass(frozen=True)
class AddUser:
    id: str
    name: str
    roles: frozenset[str]
    approval_key: bytes | None
    op: ClassVar[str] = "user.add"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "roles": sorted(self.roles), "approval_key": self.approval_key}


@dataclass(frozen=True)
class SetRoles:
    id: str
    roles: frozenset[str]
    op: ClassVar[str] = "user.roles"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "roles": sorted(self.roles)}


@dataclass(frozen=True)
class SetKey:
    """Register, rotate or remove (``None``) a user's approval key."""

    id: str
    approval_key: bytes | None
    op: ClassVar[str] = "user.key"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "approval_key": self.approval_key}


@dataclass(frozen=True)
class DisableUser:
    id: str
    op: ClassVar[str] = "user.disable"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id}


@dataclass(frozen=True)
class EnableUser:
    id: str
    op: ClassVar[str] = "user.enable"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id}


@dataclass(frozen=True)
class IssueCredential:
    """An API credential for an admin: its id, the hash of its secret and its terms are in the log.

    The terms (:mod:`harbour.governance.credential_terms`) are optional keys,
    present only when they narrow something, so a change without them encodes as
    it did before they existed.
    """

    id: str
    user: str
    secret_hash: bytes
    terms: ct.CredentialTerms = ct.NO_TERMS
    op: ClassVar[str] = "credential.issue"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "user": self.user, "secret_hash": self.secret_hash, **self.terms.fields()}


@dataclass(frozen=True)
class SetPolicy:
    """The policy in force from this entry on, as its canonical JSON document."""

    document: str
    op: ClassVar[str] = "policy"

    def fields(self) -> dict[str, Any]:
        return {"document": self.document}

    def policy(self) -> Policy:
        return Policy.from_json(self.document)


@dataclass(frozen=True)
class AddAddress:
    id: str
    name: str
    address: str
    whitelisted: bool
    op: ClassVar[str] = "address.add"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "address": self.address, "whitelisted": self.whitelisted}


@dataclass(frozen=True)
class SetWhitelisted:
    id: str
    whitelisted: bool
    op: ClassVar[str] = "address.whitelist"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "whitelisted": self.whitelisted}


@dataclass(frozen=True)
class RemoveAddress:
    id: str
    op: ClassVar[str] = "address.remove"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id}


@dataclass(frozen=True)
class AddNode:
    """A signer node the organisation's vault keys may be held by, named by its identity key (Ed25519)."""

    name: str
    identity_key: bytes
    op: ClassVar[str] = "node.add"

    def fields(self) -> dict[str, Any]:
        return {"name": self.name, "identity_key": self.identity_key}


@dataclass(frozen=True)
class RemoveNode:
    """No new vault key may be held by this node (keys it holds already keep their committee)."""

    identity_key: bytes
    op: ClassVar[str] = "node.remove"

    def fields(self) -> dict[str, Any]:
        return {"identity_key": self.identity_key}


@dataclass(frozen=True)
class AddVault:
    """Binds a key the signer nodes hold to one of the organisation's vaults: a node signs only for such keys.

    It names the key's public key, chain code, threshold and committee
    (:class:`harbour.governance.holding.Holding`), and carries every holder's
    signed statement that it holds exactly that key for this organisation.
    """

    id: str
    name: str
    holding: Holding
    statements: tuple[bytes, ...]
    op: ClassVar[str] = "vault.add"

    @property
    def key_id(self) -> str:
        return self.holding.key_id

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, **self.holding.fields(), "statements": list(self.statements)}


@dataclass(frozen=True)
class AddAsset:
    """A symbol the policy names, and the token contract it is (``None``: the chain's native coin)."""

    id: str
    symbol: str
    contract: str | None
    decimals: int
    op: ClassVar[str] = "asset.add"

    def fields(self) -> dict[str, Any]:
        return {"id": self.id, "symbol": self.symbol, "contract": self.contract, "decimals": self.decimals}


Change = (
    SetQuorum
    | AddUser
    | SetRoles
    | SetKey
    | DisableUser
    | EnableUser
    | IssueCredential
    | SetPolicy
    | AddAddress
    | SetWhitelisted
    | RemoveAddress
    | AddNode
    | RemoveNode
    | AddVault
    | committee.ReshareVault
    | AddAsset
    | am.Amendment
)


def encode_change(change: Change) -> dict[str, Any]:
    return {"op": change.op, **change.fields()}


def _policy_document(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_POLICY_LEN:
        raise GovernanceError("malformed", f"a policy document is JSON text of at most {MAX_POLICY_LEN} characters")
    try:
        policy = Policy.from_json(value)
    except PolicyError as exc:
        raise GovernanceError("malformed", f"policy: {exc}") from None
    if policy.canonical_json().decode() != value:
        raise GovernanceError("malformed", "the policy document is not in its canonical form")
    return value


def policy_change(document: object) -> SetPolicy:
    """The change that puts this policy document (any valid form of it) in force; PolicyError if invalid."""
    return SetPolicy(Policy.from_document(document).canonical_json().decode())


def decode_change(obj: object) -> Change:
    """A change from its CBOR map, strictly: GovernanceError("malformed") for anything else."""
    if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
        raise GovernanceError("malformed", "a change is a map with an 'op'")
    op = obj["op"]
    rest = {k: v for k, v in obj.items() if k != "op"}

    def exact(*keys: str) -> dict[str, Any]:
        return f.exact_map(f"a {op} change", rest, frozenset(keys))

    change: Change
    if op == SetQuorum.op:
        change = SetQuorum(f.uint("others", exact("others")["others"], 1, MAX_OTHERS))
    elif op == AddUser.op:
        v = exact("id", "name", "roles", "approval_key")
        change = AddUser(
            f.text("user id", v["id"]),
            f.name("user name", v["name"]),
            _roles("roles", v["roles"]),
            _optional_key("approval_key", v["approval_key"]),
        )
    elif op == SetRoles.op:
        v = exact("id", "roles")
        change = SetRoles(f.text("user id", v["id"]), _roles("roles", v["roles"]))
    elif op == SetKey.op:
        v = exact("id", "approval_key")
        change = SetKey(f.text("user id", v["id"]), _optional_key("approval_key", v["approval_key"]))
    elif op == DisableUser.op:
        change = DisableUser(f.text("user id", exact("id")["id"]))
    elif op == EnableUser.op:
        change = EnableUser(f.text("user id", exact("id")["id"]))
    elif op == IssueCredential.op:
        base = frozenset({"id", "user", "secret_hash"})
        if not base <= set(rest) <= base | ct.KEYS:
            raise GovernanceError("malformed", f"a {op} change has {sorted(base)} and some of {sorted(ct.KEYS)}")
        change = IssueCredential(
            f.text("credential id", rest["id"]),
            f.text("user id", rest["user"]),
            f.digest("secret_hash", rest["secret_hash"]),
            ct.decode_terms({k: v for k, v in rest.items() if k in ct.KEYS}),
        )
    elif op == SetPolicy.op:
        change = SetPolicy(_policy_document(exact("document")["document"]))
    elif op == AddAddress.op:
        v = exact("id", "name", "address", "whitelisted")
        change = AddAddress(
            f.text("entry id", v["id"]),
            f.name("entry name", v["name"]),
            _destination(f.address("address", v["address"])),
            f.flag("whitelisted", v["whitelisted"]),
        )
    elif op == SetWhitelisted.op:
        v = exact("id", "whitelisted")
        change = SetWhitelisted(f.text("entry id", v["id"]), f.flag("whitelisted", v["whitelisted"]))
    elif op == RemoveAddress.op:
        change = RemoveAddress(f.text("entry id", exact("id")["id"]))
    elif op == AddNode.op:
        v = exact("name", "identity_key")
        name = f.text("node name", v["name"], f.MAX_NAME_LEN)
        change = AddNode(name, f.public_key("identity_key", v["identity_key"]))
    elif op == RemoveNode.op:
        change = RemoveNode(f.public_key("identity_key", exact("identity_key")["identity_key"]))
    elif op == AddVault.op:
        v = exact("id", "name", "org", "key_id", "public_key", "chain_code", "threshold", "holders", "statements")
        holders, statements = v["holders"], v["statements"]
        if not isinstance(holders, list) or not isinstance(statements, list) or len(statements) > MAX_HOLDERS:
            raise GovernanceError("malformed", f"holders and statements are lists (at most {MAX_HOLDERS})")
        if not all(type(s) is bytes for s in statements):
            raise GovernanceError("malformed", "a holding statement is bytes")
        change = AddVault(
            f.text("vault id", v["id"]),
            f.name("vault name", v["name"]),
            Holding(v["org"], v["key_id"], v["public_key"], v["chain_code"], v["threshold"], tuple(holders)),
            tuple(statements),
        )
    elif op == committee.ReshareVault.op:
        change = committee.decode(exact)
    elif op == AddAsset.op:
        v = exact("id", "symbol", "contract", "decimals")
        contract = v["contract"]
        change = AddAsset(
            f.text("asset id", v["id"]),
            f.text("symbol", v["symbol"], 16),
            None if contract is None else f.address("contract", contract),
            f.uint("decimals", v["decimals"], 0, MAX_DECIMALS),
        )
    elif op in am.DECODERS:
        change = am.DECODERS[op](exact)
    else:
        raise GovernanceError("malformed", f"unknown change {op!r:.40}")
    return change


def describe(change: Change) -> str:
    """One line an admin reads before signing: what the change does, in words."""
    if isinstance(change, SetQuorum):
        return f"every later change needs the proposer and {change.others} other admin(s)"
    if isinstance(change, AddUser):
        key = change.approval_key.hex() if change.approval_key else "no approval key"
        return f"add user {change.name!r} ({change.id}) as {', '.join(sorted(change.roles))}, key {key}"
    if isinstance(change, SetRoles):
        return f"user {change.id} now has the roles {', '.join(sorted(change.roles))}"
    if isinstance(change, SetKey):
        key = change.approval_key.hex() if change.approval_key else "none"
        return f"user {change.id}'s approval key becomes {key}"
    if isinstance(change, DisableUser):
        return f"disable user {change.id}"
    if isinstance(change, EnableUser):
        return f"re-enable user {change.id}"
    if isinstance(change, IssueCredential):
        terms = "" if change.terms == ct.NO_TERMS else f" ({change.terms.describe()})"
        return f"issue API credential {change.id} to admin {change.user}{terms}"
    if isinstance(change, SetPolicy):
        rules = json.loads(change.document)["rules"]
        return f"put in force a policy of {len(rules)} rule(s): {', '.join(r['name'] for r in rules)}"
    if isinstance(change, AddAddress):
        listed = "whitelisted" if change.whitelisted else "not whitelisted"
        return f"add {change.address} to the address book as {change.name!r} ({change.id}), {listed}"
    if isinstance(change, SetWhitelisted):
        return f"address-book entry {change.id} is {'now' if change.whitelisted else 'no longer'} whitelisted"
    if isinstance(change, RemoveAddress):
        return f"remove address-book entry {change.id}"
    if isinstance(change, AddNode):
        return f"signer node {change.name!r} (identity key {change.identity_key.hex()}) may hold vault keys"
    if isinstance(change, RemoveNode):
        return f"signer node with identity key {change.identity_key.hex()} may hold no new vault key"
    if isinstance(change, AddVault):
        h = change.holding
        return (
            f"key {h.key_id} (public key {h.public_key.hex()}) is vault {change.name!r} ({change.id}), "
            f"{h.threshold} of {len(h.holders)} node(s) sign with it, each stating it holds it for this organisation"
        )
    if isinstance(change, committee.ReshareVault):
        return committee.describe(change)
    if isinstance(change, am.Amendment):
        return am.describe(change)
    contract = change.contract or "the native coin"
    return f"asset {change.symbol} ({change.id}) is {contract}, {change.decimals} decimals"
