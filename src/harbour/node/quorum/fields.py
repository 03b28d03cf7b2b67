"""The field checks the approvers' evidence encodings share, and their one error.

An intent, a statement, a quorum and the evidence are all read from bytes the
custody service chose. Every field of them passes one of these checks before
anything else looks at it, so a value has exactly one accepted form wherever it
appears (one EIP-55 spelling of an address, one encoding of a map, no small-order
key), and a refusal always raises :class:`EvidenceError`.
"""

from __future__ import annotations

from typing import Any, Final

import nacl.bindings as sodium

from harbour.chains.eip1559 import TransactionError, parse_address
from harbour.chains.ethereum import checksum_address
from harbour.util import cbor

PUBLIC_KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
MAX_ID_LEN: Final = 128


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
