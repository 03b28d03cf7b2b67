"""Envelope and payload decoding: one canonical encoding, everything else refused."""

from __future__ import annotations

import cbor2
import pytest

from harbour.mpc.envelope import (
    ENVELOPE_VERSION,
    MAX_PAYLOAD,
    Envelope,
    ProtocolAbort,
    decode_payload,
    encode_payload,
)
from helpers import TAGGED_VALUES

SID = bytes(range(32))
GOOD = Envelope(SID, "dkg/frost-secp256k1", 1, 2, None, encode_payload({"a": b"x"}))


def raw(*items: object) -> bytes:
    return cbor2.dumps(list(items), canonical=True)


def fields(env: Envelope = GOOD) -> list[object]:
    return [ENVELOPE_VERSION, env.session_id, env.protocol, env.round, env.sender, env.recipient, env.payload]


# -- Envelope.decode -------------------------------------------------------------------------


def test_envelope_round_trips() -> None:
    assert Envelope.decode(GOOD.encode()) == GOOD
    p2p = Envelope(SID, "x", 2, 3, 1, b"")
    assert Envelope.decode(p2p.encode()) == p2p
    assert len(GOOD) == len(GOOD.encode())


@pytest.mark.parametrize(
    "data",
    [b"", b"\xff", b"\x9f\x01", b"\x5a\xff\xff\xff\xff"],
    ids=["empty", "break-byte", "unterminated-array", "truncated-bytestring"],
)
def test_envelope_decode_rejects_non_cbor(data: bytes) -> None:
    with pytest.raises(ValueError, match="CBOR"):
        Envelope.decode(data)


def test_envelope_decode_rejects_a_map() -> None:
    with pytest.raises(ValueError, match="7-element"):
        Envelope.decode(cbor2.dumps({"v": 1}, canonical=True))


@pytest.mark.parametrize("arity", [0, 6, 8])
def test_envelope_decode_rejects_wrong_arity(arity: int) -> None:
    items = [*fields(), b"extra"][:arity]
    with pytest.raises(ValueError, match="7-element"):
        Envelope.decode(raw(*items))


@pytest.mark.parametrize("version", [0, 2, True, "1", None], ids=["0", "2", "true", "str", "null"])
def test_envelope_decode_rejects_wrong_version(version: object) -> None:
    items = fields()
    items[0] = version
    with pytest.raises(ValueError):
        Envelope.decode(raw(*items))


@pytest.mark.parametrize(
    ("index", "value"),
    [
        (1, "session-as-text"),
        (2, b"protocol-as-bytes"),
        (3, -1),
        (3, True),
        (3, 1.0),
        (4, -2),
        (4, False),
        (4, "2"),
        (5, "1"),
        (5, True),
        (6, "payload-as-text"),
    ],
    ids=[
        "sid-str",
        "protocol-bytes",
        "round-negative",
        "round-bool",
        "round-float",
        "sender-negative",
        "sender-bool",
        "sender-str",
        "recipient-str",
        "recipient-bool",
        "payload-str",
    ],
)
def test_envelope_decode_rejects_wrong_field_type(index: int, value: object) -> None:
    items = fields()
    items[index] = value
    with pytest.raises(ValueError):
        Envelope.decode(raw(*items))


def test_envelope_decode_rejects_long_form_integer() -> None:
    data = GOOD.encode()
    # round = 1 is the byte 0x01 after the protocol string; re-encode it as 0x18 0x01.
    prefix = raw(*fields()[:3])[1:]
    head = data[: 1 + len(prefix)]
    assert data[len(head)] == 0x01
    forged = head + b"\x18\x01" + data[len(head) + 1 :]
    assert cbor2.loads(forged) == cbor2.loads(data)
    with pytest.raises(ValueError, match="canonical"):
        Envelope.decode(forged)


def test_envelope_decode_rejects_indefinite_length_array() -> None:
    data = GOOD.encode()
    forged = b"\x9f" + data[1:] + b"\xff"
    assert cbor2.loads(forged) == cbor2.loads(data)
    with pytest.raises(ValueError, match="canonical"):
        Envelope.decode(forged)


def test_envelope_decode_rejects_trailing_bytes() -> None:
    with pytest.raises(ValueError):
        Envelope.decode(GOOD.encode() + b"\x00")


# -- decode_payload --------------------------------------------------------------------------

SCHEMA = {"a": bytes}


def with_payload(payload: bytes, sender: int = 2) -> Envelope:
    return Envelope(SID, "p", 1, sender, None, payload)


def assert_sender_blamed(payload: bytes, schema: dict[str, type] | None = None, match: str | None = None) -> None:
    with pytest.raises(ProtocolAbort, match=match) as info:
        decode_payload(with_payload(payload, sender=7), schema or SCHEMA)
    assert info.value.culprits == frozenset({7})


def test_payload_round_trips() -> None:
    assert decode_payload(GOOD, SCHEMA) == {"v": 1, "a": b"x"}


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xa1\x61"], ids=["empty", "break-byte", "truncated"])
def test_payload_that_is_not_cbor_blames_the_sender(data: bytes) -> None:
    assert_sender_blamed(data, match="CBOR")


@pytest.mark.parametrize("obj", [[1, b"x"], b"x", 1, None], ids=["array", "bytes", "int", "null"])
def test_payload_that_is_not_a_map_blames_the_sender(obj: object) -> None:
    assert_sender_blamed(cbor2.dumps(obj, canonical=True), match="version or shape|not one map")


@pytest.mark.parametrize(
    "version",
    [None, 0, 2, "1", b"\x01", True, 1.0],
    ids=["missing", "0", "2", "str", "bytes", "true", "float-1.0"],
)
def test_payload_with_wrong_version_blames_the_sender(version: object) -> None:
    body: dict[str, object] = {"a": b"x"}
    if version is not None:
        body["v"] = version
    assert_sender_blamed(cbor2.dumps(body, canonical=True))


def test_payload_missing_a_field_blames_the_sender() -> None:
    assert_sender_blamed(encode_payload({}), match="missing or unexpected")


def test_payload_with_an_extra_field_blames_the_sender() -> None:
    assert_sender_blamed(encode_payload({"a": b"x", "b": b"y"}), match="missing or unexpected")


def test_payload_with_a_renamed_field_blames_the_sender() -> None:
    assert_sender_blamed(encode_payload({"A": b"x"}), match="missing or unexpected")


def test_payload_with_a_non_string_key_blames_the_sender() -> None:
    assert_sender_blamed(cbor2.dumps({"v": 1, "a": b"x", 1: b"y"}, canonical=True))


@pytest.mark.parametrize(
    "value", ["x", 1, [b"x"], {"a": b"x"}, None, True], ids=["str", "int", "list", "map", "null", "bool"]
)
def test_payload_field_of_wrong_type_blames_the_sender(value: object) -> None:
    assert_sender_blamed(encode_payload({"a": value}), match="wrong type|not one map")


def test_payload_bool_is_not_an_int() -> None:
    assert decode_payload(with_payload(encode_payload({"n": 3})), {"n": int})["n"] == 3
    assert_sender_blamed(encode_payload({"n": True}), {"n": int}, match="not one map")


def test_payload_with_keys_out_of_canonical_order_blames_the_sender() -> None:
    forged = b"\xa2" + b"\x61v\x01" + b"\x61a\x41x"
    canonical = encode_payload({"a": b"x"})
    assert cbor2.loads(forged) == cbor2.loads(canonical) and forged != canonical
    assert_sender_blamed(forged, match="canonical")


def test_payload_with_long_form_integer_blames_the_sender() -> None:
    forged = b"\xa2" + b"\x61a\x41x" + b"\x61v\x18\x01"
    assert cbor2.loads(forged) == {"v": 1, "a": b"x"}
    assert_sender_blamed(forged, match="canonical")


def test_payload_with_indefinite_length_bytes_blames_the_sender() -> None:
    forged = b"\xa2" + b"\x61a\x5f\x41x\xff" + b"\x61v\x01"
    assert cbor2.loads(forged) == {"v": 1, "a": b"x"}
    assert_sender_blamed(forged, match="canonical")


def test_payload_with_duplicate_keys_blames_the_sender() -> None:
    forged = b"\xa3" + b"\x61a\x41y" + b"\x61a\x41x" + b"\x61v\x01"
    assert_sender_blamed(forged)


def test_payload_with_trailing_bytes_blames_the_sender() -> None:
    assert_sender_blamed(encode_payload({"a": b"x"}) + b"\x00")


def test_oversized_payload_blames_the_sender() -> None:
    big = encode_payload({"a": bytes(MAX_PAYLOAD)})
    assert len(big) > MAX_PAYLOAD
    assert_sender_blamed(big, match="too large")


# decode_payload checks only the top-level types, so inside a list some tagged
# values pass it (the protocol then checks each element); but none may make it
# raise anything but an abort naming the sender.


@pytest.mark.parametrize("tagged", list(TAGGED_VALUES))
def test_payload_with_a_cbor_semantic_tag_only_ever_aborts_naming_the_sender(tagged: str) -> None:
    # {"a": [<tagged value>], "v": 1}: a list-typed field, like the DKG's commitments.
    forged = b"\xa2" + b"\x61a\x81" + TAGGED_VALUES[tagged] + b"\x61v\x01"
    try:
        body = decode_payload(with_payload(forged, sender=7), {"a": list})
    except ProtocolAbort as abort:
        assert abort.culprits == frozenset({7})
    else:
        assert set(body) == {"v", "a"} and len(body["a"]) == 1


def test_deeply_nested_payload_blames_the_sender() -> None:
    assert_sender_blamed(b"\x81" * 10_000 + b"\x00")


def test_protocol_abort_message_names_culprits() -> None:
    abort = ProtocolAbort([3, 1], "bad")
    assert abort.culprits == frozenset({1, 3})
    assert "culprits: 1, 3" in str(abort) and abort.reason == "bad"
    assert "unidentified" in str(ProtocolAbort([], "x"))
