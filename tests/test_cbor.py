"""Canonical CBOR decoding: one encoding per value, nothing after it."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.util.cbor import CborError, InvalidCbor, NotCanonical, decode, loads_canonical

VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.binary(max_size=8) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(VALUES)
def test_the_canonical_encoding_of_any_value_decodes_to_it(value: Any) -> None:
    encoded = cbor2.dumps(value, canonical=True)
    assert loads_canonical(encoded) == value
    assert loads_canonical(bytearray(encoded)) == loads_canonical(memoryview(encoded)) == value
    assert decode(encoded).canonical


@settings(max_examples=200, deadline=None)
@given(VALUES, st.binary(min_size=1, max_size=4))
def test_trailing_bytes_are_refused_and_counted(value: Any, extra: bytes) -> None:
    with pytest.raises(NotCanonical) as caught:
        loads_canonical(cbor2.dumps(value, canonical=True) + extra)
    assert caught.value.trailing == len(extra)
    assert str(caught.value) == f"{len(extra)} unexpected bytes after the canonical CBOR item"


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("a2616202616101"),  # {"b": 2, "a": 1}: keys not sorted
        bytes.fromhex("1817"),  # 23 in two bytes instead of one
        bytes.fromhex("9f01ff"),  # an indefinite-length array
        bytes.fromhex("fb3ff0000000000000"),  # 1.0 as a double; canonical is the half float f93c00
    ],
)
def test_a_second_encoding_of_a_value_is_refused(data: bytes) -> None:
    decoded = decode(data)
    assert not decoded.canonical and decoded.trailing == 0
    with pytest.raises(NotCanonical, match="not canonically encoded"):
        loads_canonical(data)
    with pytest.raises(NotCanonical):
        decoded.canonical_value()


@pytest.mark.parametrize("data", [b"", b"\xa1", b"\x5a\xff\xff\xff\xff", b"\x1c", b"\x81" * 100_000])
def test_what_is_not_cbor_is_one_error_type(data: bytes) -> None:
    with pytest.raises(InvalidCbor):
        decode(data)
    with pytest.raises(CborError):
        loads_canonical(data)
    assert issubclass(CborError, ValueError)
