"""The bytes an approver signs, built in one place for the service, the CLI, the demo and the tests.

Two kinds of transaction need approvals, and each has its statement:

- a **withdrawal**: the canonical CBOR of :func:`harbour.node.quorum.approval_statement`
  (organisation, transaction id, key and path paid from, and the intent), signed
  under :data:`harbour.node.quorum.APPROVAL_DOMAIN`, because the signer nodes
  re-check those signatures themselves;
- a **policy change**: :data:`POLICY_APPROVAL_DOMAIN` and a sorted JSON object
  naming the proposed document's digest, signed as it is (the service alone checks it).

The service builds a statement from its rows, an approver's client rebuilds it
from the approval request's fields and refuses to sign unless the two agree
byte for byte; both go through the subjects here, so they cannot drift apart.
This module imports no database, chain client or service code, so the CLI can
load it without loading the service.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harbour.node import quorum
from harbour.node.quorum import Decision

POLICY_APPROVAL_DOMAIN: Final = b"harbour/policy-approval/v1\x00"
WITHDRAWAL: Final = "withdrawal"
POLICY_CHANGE: Final = "policy_change"


def policy_statement(*, org: str, transaction_id: str, digest: str, decision: str = "approve") -> bytes:
    """What an admin signs to decide on a policy change: the proposed document's digest, bound to the change."""
    body = json.dumps(
        {"v": 1, "org": org, "transaction": transaction_id, "policy_digest": digest, "decision": decision},
        sort_keys=True,
    )
    return POLICY_APPROVAL_DOMAIN + body.encode()


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
class PolicyChangeApproval:
    """What admins decide on for one policy change: the digest of the proposed document."""

    org: str
    transaction_id: str
    digest: str

    def statement(self, decision: Decision = "approve") -> bytes:
        return policy_statement(org=self.org, transaction_id=self.transaction_id, digest=self.digest, decision=decision)

    def request_fields(self) -> dict[str, Any]:
        return {"policy_digest": self.digest}

    @staticmethod
    def sign(key: Ed25519PrivateKey, statement: bytes) -> bytes:
        return key.sign(statement)

    @staticmethod
    def verifies(public_key: bytes, signature: bytes, statement: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(public_key).verify(signature, statement)
        except (ValueError, InvalidSignature):
            return False
        return True


Subject = WithdrawalApproval | PolicyChangeApproval


def from_request(request: Mapping[str, Any], transaction_id: str) -> Subject:
    """The subject an approval request (``GET /v1/transactions/{id}/approval-request``) describes.

    Taken from the request's fields, never from its ``statement``: the caller
    compares the statement rebuilt from these with the one the server sent.
    KeyError or ValueError (EvidenceError) if the fields are missing or malformed.
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
    if kind == POLICY_CHANGE:
        return PolicyChangeApproval(
            org=str(request["org"]), transaction_id=transaction_id, digest=str(request["policy_digest"])
        )
    raise ValueError(f"no approval statement for a transaction of kind {kind!r}")


__all__ = [
    "POLICY_APPROVAL_DOMAIN",
    "PolicyChangeApproval",
    "Subject",
    "WithdrawalApproval",
    "from_request",
    "policy_statement",
]
