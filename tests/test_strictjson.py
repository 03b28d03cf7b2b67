"""Strict JSON: the nesting measure every decoder of untrusted input relies on, and the strict decoder."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.util.strictjson import (
    MAX_DEPTH,
    DuplicateKey,
    IntegerTooLong,
    NotJsonConstant,
    StrictJsonError,
    TooDeep,
    loads_strict,
    nesting_depth,
)

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


@settings(max_examples=300, deadline=None)
@given(VALUES, st.booleans(), st.sampled_from(["utf-8", "utf-16", "utf-32", "str"]))
def test_strict_decoding_agrees_with_json_loads_on_what_json_dumps_writes(
    value: Any, ascii_only: bool, encoding: str
) -> None:
    text = json.dumps(value, ensure_ascii=ascii_only)
    given_text: str | bytes = text if encoding == "str" else text.encode(encoding)
    assert loads_strict(given_text, max_depth=None) == json.loads(given_text) == value
    assert loads_strict(given_text, max_depth=depth(value), max_int_digits=100) == value


def test_a_key_given_twice_is_refused_wherever_it_is() -> None:
    for text in ['{"a": 1, "a": 1}', '[{"b": {"a": 1, "a": 2}}]', '{"a": 1, "b": 2, "a": 3}']:
        with pytest.raises(DuplicateKey) as caught:
            loads_strict(text, max_depth=None)
        assert caught.value.key == "a"
        assert str(caught.value) == "duplicate key 'a'"
    assert loads_strict('{"a": 1, "A": 2}', max_depth=None) == {"a": 1, "A": 2}


@pytest.mark.parametrize("name", ["NaN", "Infinity", "-Infinity"])
def test_non_json_constants_are_refused(name: str) -> None:
    with pytest.raises(NotJsonConstant) as caught:
        loads_strict(f'{{"amount": [{name}]}}', max_depth=None)
    assert caught.value.name == name
    assert str(caught.value) == f"{name} is not JSON"


def test_depth_is_refused_before_the_decoder_runs() -> None:
    assert loads_strict("[[[1]]]", max_depth=3) == [[[1]]]
    with pytest.raises(TooDeep, match="nested deeper than 2 levels"):
        loads_strict("[[[1]]]", max_depth=2)
    with pytest.raises(TooDeep):  # a crash in the C decoder if it got there under a raised recursion limit
        loads_strict("[" * 1_000_000, max_depth=MAX_DEPTH)


def test_long_integers_are_refused_only_when_asked() -> None:
    assert loads_strict("-" + "9" * 100, max_depth=0, max_int_digits=100) == -int("9" * 100)
    with pytest.raises(IntegerTooLong, match="an integer with more than 100 digits"):
        loads_strict('{"n": ' + "9" * 101 + "}", max_depth=1, max_int_digits=100)
    assert loads_strict("9" * 101, max_depth=None) == int("9" * 101)
    assert loads_strict("1.5e3", max_depth=None, max_int_digits=1) == 1500.0  # floats are not integers


def test_every_refusal_is_a_value_error_like_any_decoding_failure() -> None:
    texts: list[str | bytes] = ['{"a": 1, "a": 2}', "NaN", "[[1]]", "12345", "{", b"\xff"]
    for text in texts:
        with pytest.raises(ValueError):
            loads_strict(text, max_depth=1, max_int_digits=4)
    assert issubclass(StrictJsonError, ValueError)
