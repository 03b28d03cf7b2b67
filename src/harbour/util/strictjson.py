"""Strict JSON in: what RFC 8259 allows and nothing the decoder would quietly accept besides.

``json.loads`` keeps the last of two equal keys (so two readers of the same
document can disagree on a field), accepts ``NaN`` and ``Infinity`` (which are not
JSON), parses integers of thousands of digits, and nests as deep as the stack
lets it. :func:`loads_strict` refuses the first two always and the last two
when asked; every decoder of text Harbour did not write goes through it (node
descriptors, the secret store's header, REST request bodies, policy documents).

Nesting is measured before the decoder runs. The chain libraries raise the
interpreter's recursion limit (py-evm and web3 set it to as much as 100000), and
at that limit the C JSON decoder overflows the thread's stack on ``[[[[...`` (a
crash, not a RecursionError) long before any sensible size limit. So nesting is
measured first, in linear time and without recursion, and deep input is refused
before ``json.loads`` sees it. The JSON-RPC client uses :func:`nesting_depth`
alone, on answers from a node.

This module imports nothing from Harbour, so any layer may use it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any, Final

MAX_DEPTH: Final = 32
"""Nesting allowed in request bodies and policy documents (a policy needs about six levels)."""

_NOT_MARKS: Final = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


class StrictJsonError(ValueError):
    """Text that ``json.loads`` would accept but strict parsing refuses.

    A ValueError, like every other decoding failure, so a caller that does not care
    which rule was broken catches one type; one that words its own message catches
    the subclass and reads its attribute.
    """


class DuplicateKey(StrictJsonError):
    def __init__(self, key: str) -> None:
        super().__init__(f"duplicate key {key!r}")
        self.key = key


class NotJsonConstant(StrictJsonError):
    """``NaN``, ``Infinity`` or ``-Infinity``: Python writes and reads them, JSON has no such values."""

    def __init__(self, name: str) -> None:
        super().__init__(f"{name} is not JSON")
        self.name = name


class TooDeep(StrictJsonError):
    def __init__(self, max_depth: int) -> None:
        super().__init__(f"nested deeper than {max_depth} levels")
        self.max_depth = max_depth


class IntegerTooLong(StrictJsonError):
    def __init__(self, max_digits: int) -> None:
        super().__init__(f"an integer with more than {max_digits} digits")
        self.max_digits = max_digits


def nesting_depth(text: str | bytes) -> int:
    """How deeply the arrays and objects of JSON text nest; brackets inside strings do not count.

    ``bytes`` must be UTF-8 (RFC 8259 8.1): no byte of a multi-byte UTF-8 character
    is ASCII, so every ``[``, ``"`` and ``\\`` byte is that character. Exact for
    valid JSON; where the text stops being valid JSON the count may be wrong, but
    the decoder stops there too, so it never nests deeper than counted.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    unescaped = data.replace(b"\\\\", b"").replace(b'\\"', b"")  # no quote is escaped any more
    outside = b"".join(unescaped.translate(None, _NOT_MARKS).split(b'"')[::2])  # brackets between strings
    return max(itertools.accumulate(memoryview(outside.translate(_STEPS)).cast("b")), default=0)


def loads_strict(
    text: str | bytes,
    *,
    max_depth: int | None,
    max_int_digits: int | None = None,
    parse_float: Callable[[str], Any] | None = None,
) -> Any:
    """Decode JSON text, refusing duplicate keys and non-JSON constants, and optionally deep nesting and long integers.

    ``max_depth`` is required so that every caller decides: None only for text small
    enough (or trusted enough) that the decoder cannot be driven into the stack.
    ``bytes`` are decoded as ``json.loads`` decodes them (UTF-8, or UTF-16/32 told
    apart by the first bytes); a caller that takes UTF-8 only decodes first.

    Raises a :class:`StrictJsonError` for a broken rule, and otherwise what
    ``json.loads`` raises: ValueError (JSONDecodeError, UnicodeDecodeError) for text
    that is not JSON, and RecursionError if ``max_depth`` is None and the text nests
    past the interpreter's limit. ``parse_float`` reads a number written with a
    fraction or an exponent (default: a float).
    """
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode(json.detect_encoding(text), "surrogatepass")
    if max_depth is not None and nesting_depth(text) > max_depth:
        raise TooDeep(max_depth)
    parse_int = None if max_int_digits is None else _bounded_int(max_int_digits)
    return json.loads(
        text,
        object_pairs_hook=_unique_keys,
        parse_constant=_no_constant,
        parse_int=parse_int,
        parse_float=parse_float,
    )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKey(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise NotJsonConstant(name)


def _bounded_int(max_digits: int) -> Callable[[str], int]:
    def parse(digits: str) -> int:
        if len(digits.lstrip("-")) > max_digits:
            raise IntegerTooLong(max_digits)
        return int(digits)

    return parse
