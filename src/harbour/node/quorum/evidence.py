"""The evidence a sign certificate carries: the transaction, its intent and the approvals, in two versions.

The custody service builds it and puts its encoding into the certificate
(:func:`harbour.node.approval.issue` takes it as ``evidence``); every node decodes
it on its own (:func:`decode_evidence`). The encoding is canonical CBOR and
decoding refuses anything that does not re-encode to the same bytes, so one
evidence has one encoding. Decoding checks form only; whether the evidence holds
is :mod:`harbour.node.quorum.check`'s business.

- Version 1 (:class:`Evidence`) carries the quorum the service says the
  transaction needs, which a node can only take or hold against a list of its
  own. It is for keys that belong to no organisation.
- Version 2 (:class:`GovernedEvidence`) carries no quorum: it names the
  organisation (the hash of its genesis), the head of its governance log the
  service decided at, and the initiator. A node holding that log decides the
  withdrawal itself, with the policy, users and keys the organisation's admins
  signed (:func:`harbour.governance.decide.judge`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import cbor2

from harbour.chains.eip1559 import Eip1559Transaction, TransactionError
from harbour.node.certificate import MAX_EVIDENCE_LEN
from harbour.node.quorum.fields import MAX_ID_LEN, SIGNATURE_LEN, EvidenceError, _canonical_cbor, _public_key, _text
from harbour.node.quorum.intent import Intent
from harbour.node.quorum.rule import Quorum
from harbour.node.quorum.statement import approval_statement

EVIDENCE_VERSION: Final = 1
GOVERNED_VERSION: Final = 2
MAX_APPROVALS: Final = 64
HEAD_LEN: Final = 32

_EVIDENCE_KEYS: Final = frozenset({"version", "org", "transaction_id", "intent", "transaction", "quorum", "approvals"})
_GOVERNED_KEYS: Final = frozenset(
    {"version", "org", "transaction_id", "intent", "transaction", "initiator", "initiation", "head", "approvals"}
)
_ORG_HEX: Final = frozenset("0123456789abcdef")


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
        _check_common(self.transaction_id, self.intent, self.transaction)
        if not isinstance(self.quorum, Quorum):
            raise EvidenceError("quorum must be a Quorum")
        object.__setattr__(self, "approvals", _approvals(self.approvals))

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
        evidence = decode_evidence(data)
        if not isinstance(evidence, Evidence):
            raise EvidenceError(f"version {GOVERNED_VERSION} evidence where version {EVIDENCE_VERSION} was expected")
        return evidence


@dataclass(frozen=True)
class GovernedEvidence:
    """Version 2: what a node needs to decide a withdrawal from an organisation's governance log itself.

    ``org`` is the hash of the organisation's genesis entry (64 lowercase hex
    digits), the name a node enrolled it under; ``head`` the hash of the log entry
    the service decided at, which must be the node's own head for that log;
    ``initiator`` the user id of who asked for the withdrawal, and ``initiation``
    their signature over the request when they signed one. There is no quorum:
    the node derives what the withdrawal needs from the policy in force at
    ``head``. ``approvals`` are ``(public key, signature)`` pairs over the approval
    statement (:func:`~harbour.node.quorum.statement.approval_statement`) naming
    the organisation's own id (the ``org`` of its log entries), the transaction
    id, the intent and the session's key and path: the statement approvers sign
    is the same for both versions.
    """

    org: str
    transaction_id: str
    intent: Intent
    transaction: Eip1559Transaction
    initiator: str
    head: bytes
    approvals: Sequence[tuple[bytes, bytes]]
    initiation: bytes = b""
    """The initiator's signature over the request (:mod:`harbour.governance.request`); empty if they signed none."""

    def __post_init__(self) -> None:
        if type(self.initiation) is not bytes or len(self.initiation) not in (0, SIGNATURE_LEN):
            raise EvidenceError(f"initiation is empty or a {SIGNATURE_LEN}-byte signature")
        if not isinstance(self.org, str) or len(self.org) != 2 * HEAD_LEN or not set(self.org) <= _ORG_HEX:
            raise EvidenceError(
                f"org must be the genesis hash of an organisation, 64 lowercase hex digits, got {self.org!r:.80}"
            )
        _check_common(self.transaction_id, self.intent, self.transaction)
        _text("initiator", self.initiator, MAX_ID_LEN)
        if type(self.head) is not bytes or len(self.head) != HEAD_LEN:
            raise EvidenceError(f"head must be the {HEAD_LEN}-byte hash of a governance log entry")
        object.__setattr__(self, "approvals", _approvals(self.approvals))

    def statement(self, *, org_name: str, key_id: str, path: str) -> bytes:
        """The statement every approval must be a signature over; ``org_name`` is the log's own ``org``."""
        return approval_statement(
            org=org_name, transaction_id=self.transaction_id, key_id=key_id, path=path, intent=self.intent
        )

    def encode(self) -> bytes:
        """Canonical CBOR, what :func:`harbour.node.approval.issue` takes as ``evidence``."""
        data = bytes(
            cbor2.dumps(
                {
                    "version": GOVERNED_VERSION,
                    "org": self.org,
                    "transaction_id": self.transaction_id,
                    "intent": self.intent.to_json(),
                    "transaction": self.transaction.to_json(),
                    "initiator": self.initiator,
                    "initiation": self.initiation,
                    "head": self.head,
                    "approvals": [[k, s] for k, s in self.approvals],
                },
                canonical=True,
            )
        )
        if len(data) > MAX_EVIDENCE_LEN:
            raise EvidenceError(f"the evidence is {len(data)} bytes, more than the {MAX_EVIDENCE_LEN} allowed")
        return data


def decode_evidence(data: bytes) -> Evidence | GovernedEvidence:
    """Either version, strictly: exact fields and types, bounded sizes, and the one canonical encoding."""
    obj = _canonical_cbor(data, "the evidence", MAX_EVIDENCE_LEN)
    if not isinstance(obj, dict):
        raise EvidenceError(
            f"evidence is a map of exactly {sorted(_GOVERNED_KEYS)} (version 2) or {sorted(_EVIDENCE_KEYS)}"
        )
    version = obj.get("version")
    if type(version) is not int or version not in (EVIDENCE_VERSION, GOVERNED_VERSION):
        raise EvidenceError(f"unsupported evidence version {version!r:.20} (this Harbour reads 1 and 2)")
    keys = _EVIDENCE_KEYS if version == EVIDENCE_VERSION else _GOVERNED_KEYS
    if set(obj) != keys:
        raise EvidenceError(f"version {version} evidence is a map of exactly {sorted(keys)}")
    approvals = obj["approvals"]
    if not isinstance(approvals, list) or len(approvals) > MAX_APPROVALS:
        raise EvidenceError(f"approvals must be a list of at most {MAX_APPROVALS}")
    if not all(isinstance(a, list) and len(a) == 2 for a in approvals):
        raise EvidenceError("an approval is a [public key, signature] pair")
    try:
        transaction = Eip1559Transaction.from_json(obj["transaction"])
    except (TransactionError, TypeError) as exc:
        raise EvidenceError(f"transaction: {exc}") from None
    pairs = [(a[0], a[1]) for a in approvals]
    evidence: Evidence | GovernedEvidence
    if version == EVIDENCE_VERSION:
        evidence = Evidence(
            org=obj["org"],
            transaction_id=obj["transaction_id"],
            intent=Intent.from_json(obj["intent"]),
            transaction=transaction,
            quorum=Quorum.from_cbor(obj["quorum"]),
            approvals=pairs,
        )
    else:
        evidence = GovernedEvidence(
            org=obj["org"],
            transaction_id=obj["transaction_id"],
            intent=Intent.from_json(obj["intent"]),
            transaction=transaction,
            initiator=obj["initiator"],
            head=obj["head"],
            approvals=pairs,
            initiation=obj["initiation"],
        )
    if evidence.encode() != bytes(data):
        raise EvidenceError("the evidence is not in its canonical form (order of groups or members?)")
    return evidence


def _check_common(transaction_id: object, intent: object, transaction: object) -> None:
    _text("transaction_id", transaction_id, MAX_ID_LEN)
    if not isinstance(intent, Intent):
        raise EvidenceError("intent must be an Intent")
    if not isinstance(transaction, Eip1559Transaction):
        raise EvidenceError("transaction must be an Eip1559Transaction")


def _approvals(approvals: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    items = tuple(approvals)
    if len(items) > MAX_APPROVALS:
        raise EvidenceError(f"at most {MAX_APPROVALS} approvals")
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise EvidenceError("an approval is a (public key, signature) pair")
        _public_key("an approver's key", item[0])
        if type(item[1]) is not bytes or len(item[1]) != SIGNATURE_LEN:
            raise EvidenceError(f"an approval signature is {SIGNATURE_LEN} bytes")
    return tuple((bytes(k), bytes(s)) for k, s in items)
