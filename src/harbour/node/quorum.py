"""Approvers' evidence: what a signer node re-checks before it signs a withdrawal.

An approval certificate (:mod:`harbour.node.approval`) says that the authority
approved a digest. If the authority is a custody service, a compromised service
could approve anything, and its certificate alone would not show that any human
agreed. So each approver signs, with their own Ed25519 key (RFC 8032), an
**approval statement** naming the transaction's intent (chain, sender, recipient,
asset, amount), the organisation's transaction id and the key and path it is
paid from. The service puts into the sign certificate the unsigned transaction,
the quorum it claims the transaction needs and the approvers' signatures
(:class:`Evidence`), and each node checks, on its own (:func:`check_evidence`):

- the transaction is the digest being signed and carries out exactly the intent
  (an ETH payment, or an ERC-20 ``transfer`` with no ETH attached), from the
  address of the key being signed with, on the intent's chain;
- every approval signature is valid over this transaction's statement (one bad
  signature refuses the whole request), no approver is listed twice and the
  initiator does not approve their own transaction;
- the quorum holds among the approvers, every quorum member is an approver the
  node was configured to trust (if it was given a list), and at least the node's
  own minimum number of approvers signed.

The encodings are canonical CBOR (RFC 8949 section 4.2); anything that does not
re-encode to the same bytes is refused, so one evidence has one encoding and a
signature over a statement cannot be read as a signature over another.

Pure: no clock, no files. The node records which chain nonce a transaction id
was signed for (:func:`pin_value`), so one set of approvals pays once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence, Set
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

import cbor2
import nacl.bindings as sodium
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harbour.chains.eip1559 import Eip1559Transaction, TransactionError, erc20_transfer_data, parse_address
from harbour.chains.ethereum import address_from_public_key, checksum_address
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.node import matching
from harbour.node.certificate import MAX_EVIDENCE_LEN, MAX_KEY_ID_LEN, ApprovalError, canonical_path
from harbour.node.matching import COMBINES, Combine
from harbour.util import cbor

APPROVAL_DOMAIN: Final = b"harbour/transaction-approval/v1\x00"
"""Prefix of every message an approver signs: their signature verifies as nothing else."""
STATEMENT_TYPE: Final = "harbour-transaction-approval"
STATEMENT_VERSION: Final = 1
EVIDENCE_VERSION: Final = 1
ETH: Final = "ETH"

PUBLIC_KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
MAX_GROUPS: Final = 32
MAX_GROUP_MEMBERS: Final = 64
MAX_QUORUM_MEMBERS: Final = 256
"""Members summed over the groups: enough for any committee, small enough that the evidence stays bounded."""
MAX_APPROVALS: Final = 64
MAX_NAME_LEN: Final = 64
MAX_ID_LEN: Final = 128
UINT256_MAX: Final = 2**256 - 1
CHAIN_ID_MAX: Final = 2**64 - 1

Decision = Literal["approve", "reject"]
DECISIONS: Final[tuple[str, ...]] = get_args(Decision)

_STATEMENT_KEYS: Final = frozenset({"version", "type", "decision", "org", "transaction_id", "key_id", "path", "intent"})
_EVIDENCE_KEYS: Final = frozenset({"version", "org", "transaction_id", "intent", "transaction", "quorum", "approvals"})
_PIN_DOMAIN: Final = b"harbour/withdrawal-pin/v1\x00"


class EvidenceError(ValueError):
    """An intent, quorum, statement or evidence that is malformed (not one that fails its checks)."""


def _text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.isprintable():
        raise EvidenceError(f"{name} must be printable text of 1 to {limit} characters, got {value!r:.80}")
    return value


def _address(name: str, value: object) -> str:
    """An EIP-55 address, in that one spelling (so a statement has one encoding)."""
    try:
        raw = parse_address(value)  # type: ignore[arg-type]
    except TransactionError as exc:
        raise EvidenceError(f"{name}: {exc}") from None
    canonical = checksum_address(raw)
    if value != canonical:
        raise EvidenceError(f"{name} must be written in its EIP-55 form {canonical}, got {value!r}")
    return canonical


def _uint(name: str, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise EvidenceError(f"{name} must be an integer in {low}..{high}, got {value!r:.80}")
    return value


def _public_key(name: str, value: object) -> bytes:
    """A 32-byte Ed25519 key of the prime-order subgroup.

    Small-order keys are refused: against one, a signature can verify for messages
    its holder never saw, so it would be an approver who approves everything.
    """
    if type(value) is not bytes or len(value) != PUBLIC_KEY_LEN:
        raise EvidenceError(f"{name} must be a {PUBLIC_KEY_LEN}-byte Ed25519 public key")
    if not sodium.crypto_core_ed25519_is_valid_point(value):
        raise EvidenceError(f"{name} {value.hex()} is not a valid Ed25519 public key (off the curve or small order)")
    return value


def check_public_key(value: bytes) -> bytes:
    """``value`` if it is an acceptable approver key (for configuration), else EvidenceError."""
    return _public_key("approver key", value)


# -- the intent ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intent:
    """What a withdrawal does, as approvers see it: ``amount`` base units of ``asset`` from ``sender`` to ``recipient``.

    ``asset`` is ``"ETH"`` or the EIP-55 address of an ERC-20 token contract.
    Addresses are EIP-55 strings in exactly that spelling.
    """

    chain_id: int
    sender: str
    recipient: str
    asset: str
    amount: int

    def __post_init__(self) -> None:
        _uint("chain_id", self.chain_id, 1, CHAIN_ID_MAX)
        _address("sender", self.sender)
        _address("recipient", self.recipient)
        if self.asset != ETH:
            try:
                _address("asset", self.asset)
            except EvidenceError:
                raise EvidenceError(
                    f"asset must be {ETH!r} or a token's EIP-55 address, got {self.asset!r:.80}"
                ) from None
        _uint("amount", self.amount, 1, UINT256_MAX)

    @property
    def is_native(self) -> bool:
        return self.asset == ETH

    def to_json(self) -> dict[str, Any]:
        """``{"chain_id", "from", "to", "asset", "amount"}``, the amount as a decimal string (JSON loses precision)."""
        return {
            "chain_id": self.chain_id,
            "from": self.sender,
            "to": self.recipient,
            "asset": self.asset,
            "amount": str(self.amount),
        }

    @classmethod
    def from_json(cls, obj: object) -> Intent:
        keys = {"chain_id", "from", "to", "asset", "amount"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise EvidenceError(f"an intent is an object with exactly the fields {sorted(keys)}")
        amount = obj["amount"]
        if (
            not isinstance(amount, str)
            or not (amount.isascii() and amount.isdigit())
            or len(amount) > 78
            or (amount != "0" and amount[0] == "0")
        ):
            raise EvidenceError(f"amount must be a canonical decimal string, got {amount!r:.80}")
        return cls(
            chain_id=obj["chain_id"],
            sender=obj["from"],
            recipient=obj["to"],
            asset=obj["asset"],
            amount=int(amount),
        )


# -- the statement an approver signs -------------------------------------------------------------


def approval_statement(
    *,
    org: str,
    transaction_id: str,
    key_id: str,
    path: str,
    intent: Intent,
    decision: Decision = "approve",
) -> bytes:
    """The canonical CBOR an approver signs (after :data:`APPROVAL_DOMAIN`) to decide on one transaction.

    It binds the organisation and its transaction id (two equal payments are two
    approvals), the key and BIP-32 path paid from, and the intent. ``decision``
    keeps a signed rejection from ever counting as an approval: nodes only accept
    ``"approve"``.
    """
    if decision not in DECISIONS:
        raise EvidenceError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if not isinstance(intent, Intent):
        raise EvidenceError("intent must be an Intent")
    try:
        canonical_path(path)
    except ApprovalError as exc:
        raise EvidenceError(str(exc)) from None
    return bytes(
        cbor2.dumps(
            {
                "version": STATEMENT_VERSION,
                "type": STATEMENT_TYPE,
                "decision": decision,
                "org": _text("org", org, MAX_ID_LEN),
                "transaction_id": _text("transaction_id", transaction_id, MAX_ID_LEN),
                "key_id": _text("key_id", key_id, MAX_KEY_ID_LEN),
                "path": path,
                "intent": intent.to_json(),
            },
            canonical=True,
        )
    )


def parse_statement(data: bytes) -> dict[str, Any]:
    """The fields of a statement (for an approver's client to show before signing), strictly.

    Returns ``{"decision", "org", "transaction_id", "key_id", "path", "intent": Intent}``;
    EvidenceError unless ``data`` is exactly what :func:`approval_statement` makes.
    """
    obj = _canonical_cbor(data, "the statement", MAX_EVIDENCE_LEN)
    if not isinstance(obj, dict) or set(obj) != _STATEMENT_KEYS:
        raise EvidenceError(f"a statement is a map of exactly {sorted(_STATEMENT_KEYS)}")
    if obj["version"] != STATEMENT_VERSION or type(obj["version"]) is not int or obj["type"] != STATEMENT_TYPE:
        raise EvidenceError("not a version 1 Harbour transaction approval statement")
    fields = {
        "decision": obj["decision"],
        "org": obj["org"],
        "transaction_id": obj["transaction_id"],
        "key_id": obj["key_id"],
        "path": obj["path"],
        "intent": Intent.from_json(obj["intent"]),
    }
    if approval_statement(**fields) != data:
        raise EvidenceError("the statement is not in its canonical form")
    return fields


def sign_approval(private_key: Ed25519PrivateKey, statement: bytes) -> bytes:
    """The approver's Ed25519 signature over ``APPROVAL_DOMAIN || statement`` (64 bytes)."""
    return private_key.sign(APPROVAL_DOMAIN + bytes(statement))


def verify_approval(public_key: bytes, signature: bytes, statement: bytes) -> bool:
    """Whether ``signature`` is ``public_key``'s approval signature over ``statement``."""
    try:
        key = Ed25519PublicKey.from_public_bytes(_public_key("public key", public_key))
    except (EvidenceError, ValueError):
        return False
    if type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
        return False
    try:
        key.verify(signature, APPROVAL_DOMAIN + bytes(statement))
    except InvalidSignature:
        return False
    return True


# -- the quorum ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Group:
    """At least ``threshold`` of ``members`` (Ed25519 public keys) must approve.

    A group may have fewer members than its threshold, or none (a policy group
    whose users have no approval keys): it is then never met, which is not an
    error under ``"any"``.
    """

    name: str
    threshold: int
    members: frozenset[bytes]

    def __post_init__(self) -> None:
        _text("group name", self.name, MAX_NAME_LEN)
        object.__setattr__(self, "members", frozenset(self.members))
        if len(self.members) > MAX_GROUP_MEMBERS:
            raise EvidenceError(f"group {self.name!r} has more than {MAX_GROUP_MEMBERS} members")
        for member in self.members:
            _public_key(f"a member of group {self.name!r}", member)
        _uint(f"the threshold of group {self.name!r}", self.threshold, 1, MAX_GROUP_MEMBERS)

    def count(self, approvers: Set[bytes]) -> int:
        return len(self.members & approvers)


@dataclass(frozen=True)
class Quorum:
    """Which approvals a transaction needs: ``"all"`` groups satisfied, or ``"any"`` one of them.

    Under ``"all"`` an approver counts toward one group at most: "two of treasury
    and one of compliance" takes three different people even if someone is in both
    groups. The matcher is :mod:`harbour.node.matching`, the policy engine's too, so
    a node counts exactly as the service did. ``initiator`` is the initiator's
    approval key, if they have one: their approval never counts, and evidence that
    includes it is refused. No groups (with ``"all"``) means the service requires no approval; a
    node's ``min_approvals`` can still insist.
    """

    combine: Combine
    groups: tuple[Group, ...]
    initiator: bytes | None = None

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise EvidenceError(f"combine must be one of {', '.join(COMBINES)}, got {self.combine!r:.80}")
        groups = tuple(self.groups)
        if not all(isinstance(g, Group) for g in groups):
            raise EvidenceError("groups must be Group objects")
        if len(groups) > MAX_GROUPS:
            raise EvidenceError(f"at most {MAX_GROUPS} groups")
        if not groups and self.combine == "any":
            raise EvidenceError("'any' of no groups can never be satisfied; use 'all' of none for no approvals")
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise EvidenceError("two groups have the same name")
        if sum(len(g.members) for g in groups) > MAX_QUORUM_MEMBERS:
            raise EvidenceError(f"at most {MAX_QUORUM_MEMBERS} members over all groups")
        if self.initiator is not None:
            _public_key("initiator", self.initiator)
        object.__setattr__(self, "groups", tuple(sorted(groups, key=lambda g: g.name)))

    @property
    def members(self) -> frozenset[bytes]:
        return frozenset().union(*(g.members for g in self.groups))

    def satisfied(self, approvers: Set[bytes]) -> bool:
        """Whether these approvers (the initiator's key, if among them, is ignored) meet the quorum."""
        return matching.satisfied(self.combine, self.groups, approvers, self.initiator)

    def explain(self, approvers: Set[bytes]) -> str:
        eligible = frozenset(approvers) - {self.initiator}
        parts = [f"{g.name}: {g.count(eligible)} of {g.threshold}" for g in self.groups]
        rule = "all, each approver counting toward one group" if self.combine == "all" else "any"
        return f"{rule} of [{', '.join(parts)}]"

    def to_cbor(self) -> dict[str, Any]:
        return {
            "combine": self.combine,
            "groups": [{"name": g.name, "threshold": g.threshold, "members": sorted(g.members)} for g in self.groups],
            "initiator": self.initiator,
        }

    @classmethod
    def from_cbor(cls, obj: object) -> Quorum:
        if not isinstance(obj, dict) or set(obj) != {"combine", "groups", "initiator"}:
            raise EvidenceError("a quorum is a map of exactly 'combine', 'groups' and 'initiator'")
        groups = obj["groups"]
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
            raise EvidenceError(f"groups must be a list of at most {MAX_GROUPS}")
        parsed = []
        for g in groups:
            if not isinstance(g, dict) or set(g) != {"name", "threshold", "members"}:
                raise EvidenceError("a group is a map of exactly 'name', 'threshold' and 'members'")
            members = g["members"]
            if not isinstance(members, list) or len(members) > MAX_GROUP_MEMBERS:
                raise EvidenceError(f"members must be a list of at most {MAX_GROUP_MEMBERS} keys")
            if not all(type(m) is bytes for m in members):
                raise EvidenceError("members must be byte strings")
            parsed.append(Group(g["name"], g["threshold"], frozenset(members)))
        return cls(obj["combine"], tuple(parsed), obj["initiator"])


# -- the evidence --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Evidence:
    """What a sign certificate carries so that each node can re-check the approvals itself.

    ``approvals`` are ``(public key, signature)`` pairs over the statement of
    ``org``, ``transaction_id``, ``intent`` and the session's key and path.
    """

    org: str
    transaction_id: str
    intent: Intent
    transaction: Eip1559Transaction
    quorum: Quorum
    approvals: Sequence[tuple[bytes, bytes]]

    def __post_init__(self) -> None:
        _text("org", self.org, MAX_ID_LEN)
        _text("transaction_id", self.transaction_id, MAX_ID_LEN)
        if not isinstance(self.intent, Intent):
            raise EvidenceError("intent must be an Intent")
        if not isinstance(self.transaction, Eip1559Transaction):
            raise EvidenceError("transaction must be an Eip1559Transaction")
        if not isinstance(self.quorum, Quorum):
            raise EvidenceError("quorum must be a Quorum")
        approvals = tuple(self.approvals)
        if len(approvals) > MAX_APPROVALS:
            raise EvidenceError(f"at most {MAX_APPROVALS} approvals")
        for item in approvals:
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise EvidenceError("an approval is a (public key, signature) pair")
            _public_key("an approver's key", item[0])
            if type(item[1]) is not bytes or len(item[1]) != SIGNATURE_LEN:
                raise EvidenceError(f"an approval signature is {SIGNATURE_LEN} bytes")
        object.__setattr__(self, "approvals", tuple((bytes(k), bytes(s)) for k, s in approvals))

    def statement(self, *, key_id: str, path: str) -> bytes:
        """The statement every approval must be a signature over, for this key and path."""
        return approval_statement(
            org=self.org, transaction_id=self.transaction_id, key_id=key_id, path=path, intent=self.intent
        )

    def encode(self) -> bytes:
        """Canonical CBOR, what :func:`harbour.node.approval.issue` takes as ``evidence``."""
        data = bytes(
            cbor2.dumps(
                {
                    "version": EVIDENCE_VERSION,
                    "org": self.org,
                    "transaction_id": self.transaction_id,
                    "intent": self.intent.to_json(),
                    "transaction": self.transaction.to_json(),
                    "quorum": self.quorum.to_cbor(),
                    "approvals": [[k, s] for k, s in self.approvals],
                },
                canonical=True,
            )
        )
        if len(data) > MAX_EVIDENCE_LEN:
            raise EvidenceError(f"the evidence is {len(data)} bytes, more than the {MAX_EVIDENCE_LEN} allowed")
        return data

    @classmethod
    def decode(cls, data: bytes) -> Evidence:
        """Strictly: exact fields and types, bounded sizes, and the one canonical encoding."""
        obj = _canonical_cbor(data, "the evidence", MAX_EVIDENCE_LEN)
        if not isinstance(obj, dict) or set(obj) != _EVIDENCE_KEYS:
            raise EvidenceError(f"evidence is a map of exactly {sorted(_EVIDENCE_KEYS)}")
        if obj["version"] != EVIDENCE_VERSION or type(obj["version"]) is not int:
            raise EvidenceError(f"unsupported evidence version {obj['version']!r:.20} (this Harbour reads 1)")
        approvals = obj["approvals"]
        if not isinstance(approvals, list) or len(approvals) > MAX_APPROVALS:
            raise EvidenceError(f"approvals must be a list of at most {MAX_APPROVALS}")
        if not all(isinstance(a, list) and len(a) == 2 for a in approvals):
            raise EvidenceError("an approval is a [public key, signature] pair")
        try:
            transaction = Eip1559Transaction.from_json(obj["transaction"])
        except (TransactionError, TypeError) as exc:
            raise EvidenceError(f"transaction: {exc}") from None
        evidence = cls(
            org=obj["org"],
            transaction_id=obj["transaction_id"],
            intent=Intent.from_json(obj["intent"]),
            transaction=transaction,
            quorum=Quorum.from_cbor(obj["quorum"]),
            approvals=[(a[0], a[1]) for a in approvals],
        )
        if evidence.encode() != bytes(data):
            raise EvidenceError("the evidence is not in its canonical form (order of groups or members?)")
        return evidence


def _canonical_cbor(data: object, what: str, limit: int) -> Any:
    if not isinstance(data, bytes):
        raise EvidenceError(f"{what} must be bytes")
    if len(data) > limit:
        raise EvidenceError(f"{what} is {len(data)} bytes, more than the {limit} allowed")
    try:
        return cbor.loads_canonical(data)
    except cbor.InvalidCbor as exc:
        raise EvidenceError(f"{what} is not valid CBOR") from exc
    except cbor.NotCanonical:
        raise EvidenceError(f"{what} is not canonical CBOR (or has trailing bytes)") from None


# -- the node's check -----------------------------------------------------------------------------


def _carries_out(tx: Eip1559Transaction, intent: Intent) -> str | None:
    """Why ``tx`` does not do exactly what ``intent`` says, or None if it does."""
    recipient = parse_address(intent.recipient)
    if tx.chain_id != intent.chain_id:
        return f"the transaction is for chain {tx.chain_id}, the intent for chain {intent.chain_id}"
    if intent.is_native:
        if tx.to != recipient:
            return f"the transaction pays {checksum_address(tx.to)}, the intent {intent.recipient}"
        if tx.value != intent.amount:
            return f"the transaction sends {tx.value} wei, the intent {intent.amount}"
        if tx.data:
            return "an ETH payment carries no call data, and this transaction has some"
        return None
    token = parse_address(intent.asset)
    if tx.to != token:
        return f"the transaction calls {checksum_address(tx.to)}, not the token {intent.asset}"
    if tx.value != 0:
        return f"a token transfer sends no ETH, and this transaction sends {tx.value} wei"
    if tx.data != erc20_transfer_data(recipient, intent.amount):
        return f"the call data is not transfer({intent.recipient}, {intent.amount})"
    return None


def check_evidence(
    evidence: Evidence,
    *,
    key_id: str,
    path: str,
    digest: bytes,
    child_public_key: Secp256k1Point,
    trusted_approvers: frozenset[bytes] | None,
    min_approvals: int,
) -> None:
    """Accept the evidence for signing ``digest`` with the key ``key_id`` at ``path``, or raise ApprovalError.

    ``child_public_key`` is the node's own derivation of the key at ``path``;
    ``trusted_approvers`` the approver keys the node was configured with (None:
    take the quorum's members from the evidence); ``min_approvals`` the node's own
    floor of distinct approvers, whatever the quorum says. Reasons: ``transaction``
    (not this digest, or not this intent), ``intent`` (not this key's address),
    ``approvals`` (a bad, repeated or self-approval), ``quorum`` (not enough approvals
    by keys the node trusts: with a configured list, only those keys count).
    """
    if min_approvals < 0:
        raise ValueError("min_approvals is not negative")
    tx, intent = evidence.transaction, evidence.intent
    if tx.signing_hash() != digest:
        raise ApprovalError(
            "transaction",
            f"the evidence's transaction hashes to {tx.signing_hash().hex()}, not the digest {digest.hex()} signed",
        )
    problem = _carries_out(tx, intent)
    if problem is not None:
        raise ApprovalError("transaction", f"the transaction does not carry out the approved intent: {problem}")
    own = address_from_public_key(child_public_key)
    if intent.sender != own:
        raise ApprovalError(
            "intent", f"the intent pays from {intent.sender}, but key {key_id} at {path} is the account {own}"
        )

    statement = evidence.statement(key_id=key_id, path=path)
    seen: set[bytes] = set()
    for public, signature in evidence.approvals:
        if public in seen:
            raise ApprovalError("approvals", f"approver {public.hex()} is listed twice")
        seen.add(public)
        if public == evidence.quorum.initiator:
            raise ApprovalError(
                "approvals", f"the initiator ({public.hex()}) approved their own transaction; that never counts"
            )
        if not verify_approval(public, signature, statement):
            raise ApprovalError(
                "approvals",
                f"the approval by {public.hex()} is not a valid signature over this transaction's statement "
                f"(org {evidence.org!r}, transaction {evidence.transaction_id!r}, key {key_id}, path {path})",
            )

    members = evidence.quorum.members
    counted = seen & members
    strangers = sorted(counted - trusted_approvers) if trusted_approvers is not None else []
    if trusted_approvers is not None:
        # A key the node was not given never counts, whatever the service's quorum says; the
        # service cannot know the node's list, so naming one is not by itself a refusal.
        counted &= trusted_approvers
    if not evidence.quorum.satisfied(counted):
        ignored = f"; not counted, as this node does not trust them: {', '.join(k.hex() for k in strangers)}"
        raise ApprovalError(
            "quorum", f"the quorum is not met: {evidence.quorum.explain(counted)}{ignored if strangers else ''}"
        )
    if len(counted) < min_approvals:
        raise ApprovalError(
            "quorum", f"{len(counted)} approver(s) in the quorum approved; this node requires at least {min_approvals}"
        )


def verify_evidence(
    data: bytes,
    *,
    key_id: str,
    path: str,
    digest: bytes,
    child_public_key: Secp256k1Point,
    trusted_approvers: frozenset[bytes] | None,
    min_approvals: int,
) -> Evidence:
    """:meth:`Evidence.decode` then :func:`check_evidence`; ApprovalError("evidence") if malformed."""
    try:
        evidence = Evidence.decode(data)
    except EvidenceError as exc:
        raise ApprovalError("evidence", f"malformed approval evidence: {exc}") from None
    check_evidence(
        evidence,
        key_id=key_id,
        path=path,
        digest=digest,
        child_public_key=child_public_key,
        trusted_approvers=trusted_approvers,
        min_approvals=min_approvals,
    )
    return evidence


# -- one approval, one payment -----------------------------------------------------------------


def pin_name(evidence: Evidence) -> str:
    """A name (64 hex digits) for the organisation's transaction id, to record what it was signed as."""
    ident = cbor2.dumps([evidence.org, evidence.transaction_id], canonical=True)
    return hashlib.sha256(_PIN_DOMAIN + ident).hexdigest()


def pin_value(evidence: Evidence, *, key_id: str, path: str) -> bytes:
    """What a node records when it first signs for a transaction id: its statement and its chain nonce.

    A later request for the same transaction id must match: another fee for the
    same nonce is a replacement (only one of them can be mined), but another nonce
    would be a second payment on the same approvals.
    """
    statement = hashlib.sha256(evidence.statement(key_id=key_id, path=path)).digest()
    return bytes(cbor2.dumps({"statement": statement, "nonce": evidence.transaction.nonce}, canonical=True))


def check_pin(recorded: bytes, evidence: Evidence, *, key_id: str, path: str) -> None:
    """ApprovalError("reused") unless ``recorded`` (an earlier :func:`pin_value`) is this transaction's."""
    if recorded == pin_value(evidence, key_id=key_id, path=path):
        return
    try:
        nonce = cbor2.loads(recorded)["nonce"]
    except Exception:
        nonce = "?"
    raise ApprovalError(
        "reused",
        f"transaction {evidence.transaction_id!r} of {evidence.org!r} was signed before as chain nonce {nonce} "
        f"(or with another intent); its approvals pay once: nonce {evidence.transaction.nonce} needs new approvals",
    )
