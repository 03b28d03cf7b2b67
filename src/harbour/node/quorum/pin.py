"""One set of approvals pays once: what a node records of each transaction id it signs for.

A node signs a transaction id again only for the same statement and chain nonce:
another fee for that nonce is a replacement (only one can be mined), another
nonce would be a second payment on the same approvals. The node keeps the
record (:func:`pin_value`) under :func:`pin_name`; this module only says what
they are and compares them.
"""

from __future__ import annotations

import hashlib
from typing import Final

import cbor2

from harbour.node.certificate import ApprovalError
from harbour.node.quorum.evidence import Evidence

_PIN_DOMAIN: Final = b"harbour/withdrawal-pin/v1\x00"


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
