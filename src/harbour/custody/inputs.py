"""The checks of caller-supplied values, each the one gate its kind of value passes.

A request's names, addresses, amounts, keys and notes come from the API or the
CLI as JSON; each is checked here (type, range, canonical form) before any
domain code or query sees it, and a bad one is :class:`~harbour.custody.errors.Invalid`
with a message that says what was expected.
"""

from __future__ import annotations

import re
from typing import Final

from harbour.chains.eip1559 import TransactionError, parse_address
from harbour.chains.ethereum import checksum_address
from harbour.custody.errors import Invalid
from harbour.governance import destinations
from harbour.node import quorum
from harbour.util import text

MAX_NOTE: Final = text.MAX_NOTE
_SYMBOL = re.compile(r"[A-Z0-9]{1,16}")
_IDEMPOTENCY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_HEX_SIGNATURE = re.compile(r"[0-9a-f]{128}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def name(value: object, what: str = "name") -> str:
    """A name in its one form (:func:`harbour.util.text.name`): what is stored, shown and signed.

    Every name a user, vault or address-book entry is created or renamed with passes here, so here a name
    that has the form of a UUID (compared as names are, so in any case or width) is refused: the CLI takes
    such a value as an id (:mod:`harbour.cli.names`) and a policy's resolution as a name when it is no id
    (:mod:`harbour.custody.policyrefs`), so it would name one thing to one and another to the other.
    """
    try:
        checked = text.name(value, what)
    except text.TextError as exc:
        raise Invalid(str(exc)) from None
    if _UUID.fullmatch(text.name_key(checked)):
        raise Invalid(f"{what} {checked!r} has the form of a UUID, as ids have: a name must not read as an id")
    return checked


def address(value: object, what: str = "address") -> str:
    """An address in its EIP-55 spelling (a mixed-case input must carry a valid checksum)."""
    if not isinstance(value, str):
        raise Invalid(f"{what} must be a string")
    try:
        return checksum_address(parse_address(value))
    except TransactionError as exc:
        raise Invalid(f"{what}: {exc}") from None


def destination(value: object, what: str = "destination") -> str:
    """An address a payment can reach: not the zero address or a precompile (:mod:`harbour.governance.destinations`)."""
    checked = address(value, what)
    why = destinations.reserved(checked)
    if why is not None:
        raise Invalid(f"{what} {checked} is {why}: funds sent there are lost")
    return checked


def amount(value: object) -> int:
    if type(value) is not int or value <= 0 or value >= 2**256:
        raise Invalid("amount must be a positive integer in base units (below 2^256)")
    return value


def symbol(value: object) -> str:
    if not isinstance(value, str) or not _SYMBOL.fullmatch(value):
        raise Invalid("symbol must be 1-16 upper-case letters or digits")
    return value


def idempotency_key(value: object) -> str | None:
    if value is not None and (not isinstance(value, str) or not _IDEMPOTENCY.fullmatch(value)):
        raise Invalid("idempotency key must be 1-128 characters of A-Z a-z 0-9 . _ : -")
    return value


def request_id(value: object) -> str | None:
    """A transaction id the initiator chose (a UUID, lower-case), or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise Invalid("id must be a UUID in lower-case hex with hyphens (8-4-4-4-12)")
    return value


def signature(value: object, what: str) -> bytes | None:
    """A 64-byte Ed25519 signature in lower-case hex, or None."""
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX_SIGNATURE.fullmatch(value):
        raise Invalid(f"{what} must be a 64-byte Ed25519 signature in lower-case hex")
    return bytes.fromhex(value)


def note(value: object) -> str | None:
    """A note in its one form (NFC, trimmed; None if empty), refused if it holds a control or format character."""
    if value is None:
        return None
    try:
        return text.note(value)
    except text.TextError as exc:
        raise Invalid(str(exc)) from None


def approval_key(value: object) -> str | None:
    """An approver's Ed25519 public key in lower-case hex, refused if signatures under it could be forged."""
    if value is None:
        return None
    if not isinstance(value, str) or not _HEX_KEY.fullmatch(value):
        raise Invalid("approval_key must be a 32-byte Ed25519 public key in lower-case hex")
    try:
        quorum.check_public_key(bytes.fromhex(value))
    except ValueError as exc:  # includes small-order points, under which signatures can be forged
        raise Invalid(f"approval_key is not usable: {exc}") from None
    return value


def is_signature_hex(value: object) -> bool:
    """Whether ``value`` is an Ed25519 signature written as 64 bytes of lower-case hex."""
    return isinstance(value, str) and _HEX_SIGNATURE.fullmatch(value) is not None
