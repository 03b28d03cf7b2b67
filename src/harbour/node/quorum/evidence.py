"""The evidence a sign certificate carries: transaction, intent, quorum and the approvals.

The custody service builds it and puts its encoding into the certificate
(:func:`harbour.node.approval.issue` takes it as ``evidence``); every node decodes
it on its own. The encoding is canonical CBOR and :meth:`Evidence.decode` refuses
anything that does not re-encode to the same bytes, so one evidence has one
encoding. Decoding checks form only; whether the evidence holds is
:func:`harbour.node.quorum.check.check_evidence`.
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
MAX_APPROVALS: Final = 64

_EVIDENCE_KEYS: Final = frozenset({"version", "org", "transaction_id", "intent", "transaction", "quorum", "approvals"})


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
