"""The bytes an approver signs, built in one place for the service, the CLI, the demo and the tests.

Two kinds of transaction need approvals, and each has its statement:

- a **withdrawal**: the canonical CBOR of :func:`harbour.node.quorum.approval_statement`
  (organisation, transaction id, key and path paid from, and the intent), signed
  under :data:`harbour.node.quorum.APPROVAL_DOMAIN`, because the signer nodes
  re-check those signatures themselves;
- a **governance change**: the proposed entry's own bytes
  (:class:`harbour.governance.log.Entry`), signed with
  :func:`harbour.governance.log.sign_entry` under its
  :data:`~harbour.governance.log.SIGNING_DOMAIN`, because the signatures are the
  entry's: they travel with it into the log, which the signer nodes replay. A
  rejection signs :data:`GOVERNANCE_REJECT_DOMAIN` and the entry's hash under the
  same domain; those bytes are no entry, so a rejection can never count as one.

The service builds a statement from its rows, an approver's client rebuilds it
from the approval request's fields and refuses to sign unless the two agree
byte for byte; both go through the subjects here, so they cannot drift apart.
This module imports no database, chain client or service code, so the CLI can
load it without loading the service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.governance import changes
from harbour.governance.log import Entry, entry_hash, sign_entry, verify_entry_signature
from harbour.node import quorum
from harbour.node.quorum import Decision

GOVERNANCE_REJECT_DOMAIN: Final = b"harbour/governance-reject/v1\x00"
WITHDRAWAL: Final = "withdrawal"
GOVERNANCE: Final = "governance"


@dataclass(frozen=True)
class WithdrawalApproval:
    """What approvers of one withdrawal decide on: its intent, paid from ``key_id`` at ``path``."""

    org: str
    transaction_id: str
    key_id: str
    path: str
    intent: quorum.Intent

    def statement(self, decision: Decision = "approve") -> bytes:
        """EvidenceError (a ValueError) if a field is not one a signer node accepts."""
        return quorum.approval_statement(
            org=self.org,
            transaction_id=self.transaction_id,
            key_id=self.key_id,
            path=self.path,
            intent=self.intent,
            decision=decision,
        )

    def request_fields(self) -> dict[str, Any]:
        """The fields of the approval request an approver's client rebuilds this from."""
        return {"key_id": self.key_id, "path": self.path, "intent": self.intent.to_json()}

    @staticmethod
    def sign(key: Ed25519PrivateKey, statement: bytes) -> bytes:
        return quorum.sign_approval(key, statement)

    @staticmethod
    def verifies(public_key: bytes, signature: bytes, statement: bytes) -> bool:
        return quorum.verify_approval(public_key, signature, statement)


@dataclass(frozen=True)
class GovernanceApproval:
    """What admins decide on for one governance change: the proposed entry, as its bytes.

    Built from the bytes, which are decoded strictly on construction
    (GovernanceError, a ValueError, if they are no entry): what is shown is what
    the bytes say, and what is signed is those bytes.
    """

    org: str
    transaction_id: str
    data: bytes
    entry: Entry = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entry", Entry.decode(self.data))

    def statement(self, decision: Decision = "approve") -> bytes:
        return self.data if decision == "approve" else GOVERNANCE_REJECT_DOMAIN + entry_hash(self.data)

    def changes(self) -> list[str]:
        """The entry's changes in words, one line each, from the bytes."""
        return [changes.describe(change) for change in self.entry.changes]

    def request_fields(self) -> dict[str, Any]:
        return {"entry": self.data.hex(), "changes": self.changes()}

    @staticmethod
    def sign(key: Ed25519PrivateKey, statement: bytes) -> bytes:
        return sign_entry(key, statement)

    @staticmethod
    def verifies(public_key: bytes, signature: bytes, statement: bytes) -> bool:
        return verify_entry_signature(public_key, signature, statement)


Subject = WithdrawalApproval | GovernanceApproval


def from_request(request: Mapping[str, Any], transaction_id: str) -> Subject:
    """The subject an approval request (``GET /v1/transactions/{id}/approval-request``) describes.

    Taken from the request's fields, never from its ``statement``: the caller
    compares the statement rebuilt from these with the one the server sent. A
    governance change is taken from its entry's bytes, and refused if the
    request's description of it is not what those bytes decode to.
    KeyError or ValueError (EvidenceError, GovernanceError) if the fields are
    missing or malformed.
    """
    kind = request["transaction"]["kind"]
    if kind == WITHDRAWAL:
        return WithdrawalApproval(
            org=str(request["org"]),
            transaction_id=transaction_id,
            key_id=str(request["key_id"]),
            path=str(request["path"]),
            intent=quorum.Intent.from_json(request["intent"]),
        )
    if kind == GOVERNANCE:
        subject = GovernanceApproval(
            org=str(request["org"]), transaction_id=transaction_id, data=bytes.fromhex(str(request["entry"]))
        )
        if subject.entry.org != subject.org:
            raise ValueError(f"the entry is for organisation {subject.entry.org!r}, not {subject.org!r}")
        if list(request["changes"]) != subject.changes():
            raise ValueError("the request's description of the changes is not what the entry's bytes say")
        return subject
    raise ValueError(f"no approval statement for a transaction of kind {kind!r}")


__all__ = [
    "GOVERNANCE_REJECT_DOMAIN",
    "GovernanceApproval",
    "Subject",
    "WithdrawalApproval",
    "from_request",
]
