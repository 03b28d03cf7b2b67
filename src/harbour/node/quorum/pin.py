"""One set of approvals pays once: what a node records of each transaction id it signs for.

A node signs a transaction id again only for the same statement and chain nonce:
another fee for that nonce is a replacement (only one can be mined), another
nonce would be a second payment on the same approvals. The node keeps the
record (:func:`pin_value`) under :func:`pin_name`; this module only says what
they are and compares them. Both versions of the evidence pin alike: by the
organisation they name (its id in version 1, its genesis hash in version 2),
the transaction id, the approval statement and the nonce.
"""

from __future__ import annotations

import hashlib
from typing import Final

import cbor2

from harbour.node.certificate import ApprovalError

_PIN_DOMAIN: Final = b"harbour/withdrawal-pin/v1\x00"


def pin_name(org: str, transaction_id: str) -> str:
    """A name (64 hex digits) for the organisation's transaction id, to record what it was signed as."""
    ident = cbor2.dumps([org, transaction_id], canonical=True)
    return hashlib.sha256(_PIN_DOMAIN + ident).hexdigest()


def pin_value(statement: bytes, nonce: int) -> bytes:
    """What a node records when it first signs for a transaction id: its statement's hash and its chain nonce.

    A later request for the same transaction id must match: another fee for the
    same nonce is a replacement (only one of them can be mined), but another nonce
    would be a second payment on the same approvals.
    """
    return pin_record(hashlib.sha256(statement).digest(), nonce)


def pin_record(statement_hash: bytes, nonce: int) -> bytes:
    """:func:`pin_value` from the statement's hash (how a starting node restores a pin from its log)."""
    return bytes(cbor2.dumps({"statement": statement_hash, "nonce": nonce}, canonical=True))


def check_pin(recorded: bytes, *, org: str, transaction_id: str, statement: bytes, nonce: int) -> None:
    """ApprovalError("reused") unless ``recorded`` (an earlier :func:`pin_value`) is this transaction's."""
    if recorded == pin_value(statement, nonce):
        return
    try:
        earlier = cbor2.loads(recorded)["nonce"]
    except Exception:
        earlier = "?"
    raise ApprovalError(
        "reused",
        f"transaction {transaction_id!r} of {org!r} was signed before as chain nonce {earlier} "
        f"(or with another intent); its approvals pay once: nonce {nonce} needs new approvals",
    )
