"""Limits checked before JSON text reaches the decoder.

The chain libraries raise the interpreter's recursion limit (py-evm and web3 set it
to as much as 100000), and at that limit the C JSON decoder overflows the
thread's stack on ``[[[[...`` (a crash, not a RecursionError) long before any
sensible size limit. So nesting is measured first, linearly and without
recursion, and deep input is refused before ``json.loads`` sees it.
"""

from __future__ import annotations

import re
from typing import Final

MAX_DEPTH: Final = 32
_STRINGS: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS: Final = re.compile(r"[\[\]{}]")


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest, counting brackets outside strings."""
    deepest = depth = 0
    for bracket in _BRACKETS.findall(_STRINGS.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest
