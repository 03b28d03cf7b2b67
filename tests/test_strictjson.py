"""The nesting measure every JSON decoder of untrusted input relies on."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.strictjson import nesting_depth

TRICKY = st.text(alphabet=st.sampled_from(list('[]{}"\\ab\n✓😀\x00')), max_size=12)
VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TRICKY, inner, max_size=4),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(VALUES, st.booleans())
def test_depth_of_any_json_text_as_text_or_utf8(value: Any, ascii_only: bool) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    assert nesting_depth(text) == nesting_depth(text.encode()) == depth(value)


def test_brackets_in_strings_and_escapes_do_not_count() -> None:
    assert nesting_depth('"[[[[{{{{"') == 0
    assert nesting_depth(r'["\"[[[", "\\", ["\\\"]"]]') == 2
    assert nesting_depth(r'{"a\\": [[1]], "b": "]]]]]"}') == 3
    assert nesting_depth("") == nesting_depth("42") == nesting_depth("[]") - 1 == 0


def test_deep_input_is_measured_without_recursion() -> None:
    assert nesting_depth("[" * 1_000_000 + "]" * 1_000_000) == 1_000_000
    assert nesting_depth(b'{"a":' * 200_000 + b"1" + b"}" * 200_000) == 200_000
