"""The approval statement: the bytes an approver signs to decide on one transaction.

One canonical CBOR encoding (RFC 8949 section 4.2) binds the organisation, its
transaction id, the key and path paid from and the intent, and the signature is
Ed25519 (RFC 8032) under a domain prefix, so it verifies as nothing else. An
approver's client reads a statement back with :func:`parse_statement` before
showing it, and only the form :func:`approval_statement` makes is accepted.
"""

from __future__ import annotations

from typing import Any, Final, Literal, get_args

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harbour.node.certificate import MAX_EVIDENCE_LEN, MAX_KEY_ID_LEN, ApprovalError, canonical_path
from harbour.node.quorum.fields import (
    MAX_ID_LEN,
    SIGNATURE_LEN,
    EvidenceError,
    _canonical_cbor,
    _public_key,
    _text,
)
from harbour.node.quorum.intent import Intent

APPROVAL_DOMAIN: Final = b"harbour/transaction-approval/v1\x00"
"""Prefix of every message an approver signs: their signature verifies as nothing else."""
STATEMENT_TYPE: Final = "harbour-transaction-approval"
STATEMENT_VERSION: Final = 1

Decision = Literal["approve", "reject"]
DECISIONS: Final[tuple[str, ...]] = get_args(Decision)

_STATEMENT_KEYS: Final = frozenset({"version", "type", "decision", "org", "transaction_id", "key_id", "path", "intent"})


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
