"""Canonical CBOR in: one encoding per value, so two readers never disagree on what bytes mean.

Every format Harbour signs or stores in CBOR (key-share headers, identities,
certificates, sealed messages, RPC requests, backups) is written in cbor2's
canonical mode (RFC 8949 4.2.1: shortest forms, sorted map keys, definite
lengths) and read back only if it is exactly that encoding. A second encoding
of the same value would let a signed or hashed blob be rewritten without
changing what it says, and trailing bytes would be data no check ever saw.

The check is "decode, re-encode canonically, compare": cbor2 has no strict
decoder, and the comparison also refuses trailing bytes. :func:`decode` gives
the value and the comparison separately, for formats that report a wrong
format or version before a non-canonical encoding; :func:`loads_canonical`
does both at once.

This module imports nothing from Harbour, so any layer may use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2


class CborError(ValueError):
    """Bytes that are not one canonical CBOR item."""


class InvalidCbor(CborError):
    """Not CBOR at all: truncated, malformed, or an item cbor2 cannot encode back."""


class NotCanonical(CborError):
    """Valid CBOR, but not the canonical encoding of its value, or followed by other bytes."""

    def __init__(self, trailing: int) -> None:
        self.trailing = trailing
        """How many bytes follow a canonical item (0 if the item itself is not canonical)."""
        if trailing:
            super().__init__(f"{trailing} unexpected bytes after the canonical CBOR item")
        else:
            super().__init__("not canonically encoded CBOR")


@dataclass(frozen=True)
class Decoded:
    """A decoded value beside the bytes it came from and its canonical encoding."""

    value: Any
    data: bytes
    encoded: bytes

    @property
    def canonical(self) -> bool:
        """Whether the input was exactly the canonical encoding of :attr:`value`, with nothing after it."""
        return self.encoded == self.data

    @property
    def trailing(self) -> int:
        """How many bytes follow a canonical encoding of the value (0 if none, or if the prefix differs)."""
        if len(self.data) > len(self.encoded) and self.data.startswith(self.encoded):
            return len(self.data) - len(self.encoded)
        return 0

    def canonical_value(self) -> Any:
        """:attr:`value`, or NotCanonical if the input was not its canonical encoding."""
        if not self.canonical:
            raise NotCanonical(self.trailing)
        return self.value


def decode(data: bytes | bytearray | memoryview) -> Decoded:
    """Decode ``data`` and encode the value back canonically; InvalidCbor if either fails.

    cbor2 raises many exception types on hostile input (and RecursionError on deep
    nesting); all of them mean the same here, so they become one.
    """
    raw = bytes(data)
    try:
        value = cbor2.loads(raw)
        encoded = cbor2.dumps(value, canonical=True)
    except Exception as exc:
        raise InvalidCbor(f"not valid CBOR: {exc}") from exc
    return Decoded(value, raw, encoded)


def loads_canonical(data: bytes | bytearray | memoryview) -> Any:
    """The value of ``data`` if it is one canonically encoded CBOR item; InvalidCbor or NotCanonical if not."""
    return decode(data).canonical_value()
