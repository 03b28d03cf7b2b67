"""The field checks of governance entries, and their one error.

A governance entry is read from bytes that a custody service (perhaps a
compromised one) relayed, so every field passes one of these checks before
anything looks at it, and a value has exactly one accepted form. A refusal is a
:class:`GovernanceError` whose ``reason`` says which kind of fault it was, so a
node can report "forked" apart from "bad signature".
"""

from __future__ import annotations

import re
from typing import Any, Final, Literal

from nacl.bindings import crypto_core_ed25519_is_valid_point

from harbour.util import cbor
from harbour.util import text as free_text

PUBLIC_KEY_LEN: Final = 32
SIGNATURE_LEN: Final = 64
HASH_LEN: Final = 32
MAX_ID_LEN: Final = 128
MAX_NAME_LEN: Final = free_text.MAX_NAME

Reason = Literal[
    "malformed",  # not a well-formed entry, change or signature list
    "organisation",  # an entry of another organisation's log
    "order",  # not the next entry: a gap, or a parent that is not the head
    "replayed",  # an entry the log already holds
    "forked",  # a second entry on a parent that already has one
    "signature",  # a signature that does not verify
    "signer",  # a signature by a key that is not a current admin's
    "quorum",  # not enough admins signed
    "change",  # a change that does not apply to the state before it
    "facts",  # a request the state cannot describe (unknown vault key, asset, initiator)
    "policy",  # the policy in force blocks the request
    "initiator",  # the request is not signed by its initiator, and the policy depends on who initiated it
    "destination",  # the request pays an address nothing can be paid to (zero, a precompile, its own source)
]

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class GovernanceError(ValueError):
    """A governance entry, log or request that is refused; ``reason`` names the kind of fault."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def text(name: str, value: object, limit: int = MAX_ID_LEN) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= limit or not value.isprintable():
        raise GovernanceError(
            "malformed", f"{name} must be printable text of 1 to {limit} characters, got {value!r:.80}"
        )
    if value != value.strip():
        raise GovernanceError("malformed", f"{name} has leading or trailing whitespace: {value!r:.80}")
    return value


def name(what: str, value: object) -> str:
    """A person's or a thing's name, already in the one form :func:`harbour.util.text.name` gives it.

    The service writes every name in that form, so a name in any other form (a
    bidirectional control, a trailing space, a decomposed accent) was not written
    by it: refused, whatever else the entry says.
    """
    if not free_text.is_name(value):
        try:
            free_text.name(value, what)
        except free_text.TextError as exc:
            raise GovernanceError("malformed", str(exc)) from None
        raise GovernanceError("malformed", f"{what} is not in its normal form (NFC, trimmed, single spaces)")
    assert isinstance(value, str)
    return value


def uint(name: str, value: object, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise GovernanceError("malformed", f"{name} must be an integer in {low}..{high}, got {value!r:.80}")
    return value


def flag(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise GovernanceError("malformed", f"{name} must be true or false, got {value!r:.80}")
    return value


def digest(name: str, value: object) -> bytes:
    if type(value) is not bytes or len(value) != HASH_LEN:
        raise GovernanceError("malformed", f"{name} must be {HASH_LEN} bytes")
    return value


def acceptable_key(value: object) -> bool:
    """Whether ``value`` is a 32-byte Ed25519 public key of the prime-order subgroup.

    Small-order keys are refused: against one, a signature can verify for messages
    its holder never saw, so it would be an admin who signs everything.
    """
    return type(value) is bytes and len(value) == PUBLIC_KEY_LEN and bool(crypto_core_ed25519_is_valid_point(value))


def public_key(name: str, value: object) -> bytes:
    if not acceptable_key(value):
        shown = value.hex() if isinstance(value, bytes) else repr(value)[:80]
        raise GovernanceError("malformed", f"{name} must be a valid {PUBLIC_KEY_LEN}-byte Ed25519 key, got {shown}")
    assert isinstance(value, bytes)
    return value


def address(name: str, value: object) -> str:
    """An Ethereum address as 0x and 40 hex digits; compared case-insensitively (EIP-55 case is a checksum)."""
    if not isinstance(value, str) or not _HEX_ADDRESS.fullmatch(value):
        raise GovernanceError("malformed", f"{name} must be 0x and 40 hex digits, got {value!r:.80}")
    return value


def address_key(value: str) -> str:
    """The form addresses are looked up by."""
    return value.lower()


def exact_map(name: str, value: object, keys: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != keys:
        raise GovernanceError("malformed", f"{name} must be a map of exactly {sorted(keys)}")
    return value


def canonical(data: object, what: str, limit: int) -> Any:
    if not isinstance(data, bytes):
        raise GovernanceError("malformed", f"{what} must be bytes")
    if len(data) > limit:
        raise GovernanceError("malformed", f"{what} is {len(data)} bytes, more than the {limit} allowed")
    try:
        return cbor.loads_canonical(data)
    except cbor.InvalidCbor:
        raise GovernanceError("malformed", f"{what} is not valid CBOR") from None
    except cbor.NotCanonical:
        raise GovernanceError("malformed", f"{what} is not canonical CBOR (or has trailing bytes)") from None


def signed_envelope(data: object, what: str, limit: int) -> tuple[bytes, Any, bytes]:
    """``(body bytes, body decoded, signature)`` of canonical CBOR ``{"statement": <body>, "signature": <64>}``.

    The form every node statement takes (a key holding, a withdrawal history);
    nothing here verifies the signature. GovernanceError("malformed") otherwise.
    """
    outer = exact_map(what, canonical(data, what, limit), frozenset({"statement", "signature"}))
    body, signature = outer["statement"], outer["signature"]
    if type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
        raise GovernanceError("malformed", f"{what}'s signature is {SIGNATURE_LEN} bytes")
    return body, canonical(body, f"{what}'s body", limit), signature
