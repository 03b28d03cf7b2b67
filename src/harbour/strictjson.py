"""Limits checked before JSON text reaches the decoder.

The chain libraries raise the interpreter's recursion limit (py-evm and web3 set it
to as much as 100000), and at that limit the C JSON decoder overflows the
thread's stack on ``[[[[...`` (a crash, not a RecursionError) long before any
sensible size limit. So nesting is measured first, in linear time and without
recursion, and deep input is refused before ``json.loads`` sees it. Every layer
that decodes JSON it did not write uses this: the JSON-RPC client (answers from
a node), the REST API (request bodies) and the policy parser (documents).

This module imports nothing from Harbour, so any layer may use it.
"""

from __future__ import annotations

import itertools
from typing import Final

MAX_DEPTH: Final = 32
"""Nesting allowed in request bodies and policy documents (a policy needs about six levels)."""

_NOT_MARKS: Final = bytes(sorted(set(range(256)) - set(b'[]{}"')))
_STEPS: Final = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


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
