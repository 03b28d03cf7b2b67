"""Node identities and descriptors: the private key round-trips exactly, descriptors are
validated field by field, and the node id is a stable fingerprint of the public key.

A node has one long-term key, for signing; version 1 also had an X25519 key that
messages were encrypted to, which a forward-secret node must not have, so version-1
identities and descriptors are refused with a message that says so."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import cbor2
import pytest

from harbour.node.identity import (
    MAX_DESCRIPTOR_LEN,
    NODE_ID_DOMAIN,
    IdentityError,
    NodeDescriptor,
    NodeIdentity,
    compute_node_id,
)
from helpers import TAGGED_VALUES

ALICE = NodeIdentity.generate()
DESC = ALICE.descriptor("alice-1", "https://alice.example.com:8443")


def descriptor_obj(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(DESC.to_json())
    obj.update(changes)
    return obj


def identity_obj(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = cbor2.loads(ALICE.to_bytes())
    obj.update(changes)
    return obj


# -- NodeIdentity ------------------------------------------------------------------------------


def test_identity_round_trip_keeps_the_key() -> None:
    data = ALICE.to_bytes()
    back = NodeIdentity.from_bytes(data)
    assert back.node_id == ALICE.node_id
    assert back.sign_pk == ALICE.sign_pk
    assert back.to_bytes() == data
    # the restored key signs as the original: a signature verifies under the old descriptor
    DESC.sign_public_key().verify(back.sign(b"m"), b"m")


def test_identity_encoding_is_the_documented_map() -> None:
    obj = cbor2.loads(ALICE.to_bytes())
    assert set(obj) == {"format", "v", "sign_sk"}
    assert obj["format"] == "harbour-node-identity" and obj["v"] == 2
    assert len(obj["sign_sk"]) == 32
    assert cbor2.dumps(obj, canonical=True) == ALICE.to_bytes()


def test_an_identity_has_no_key_that_decrypts() -> None:
    """Nothing is encrypted to a long-term key any more (forward secrecy): the identity cannot even try."""
    assert not hasattr(ALICE, "exchange") and not hasattr(ALICE, "enc_pk")
    assert not hasattr(DESC, "enc_pk")


def test_a_version_1_identity_is_refused_with_the_reason() -> None:
    old = cbor2.dumps({"format": "harbour-node-identity", "v": 1, "sign_sk": bytes(32), "enc_sk": bytes(32)})
    with pytest.raises(IdentityError, match="encryption key"):
        NodeIdentity.from_bytes(old)


def test_generated_identities_differ() -> None:
    assert NodeIdentity.generate().node_id != NodeIdentity.generate().node_id


def test_repr_shows_no_key_material() -> None:
    text = repr(ALICE)
    assert ALICE.node_id in text
    obj = cbor2.loads(ALICE.to_bytes())
    assert obj["sign_sk"].hex() not in text


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid CBOR"),
        (ALICE.to_bytes()[:-1], "not valid CBOR"),
        (ALICE.to_bytes() + b"\x00", "not canonically encoded"),
        (cbor2.dumps([1, 2]), "not a Harbour node identity"),
        (cbor2.dumps(identity_obj(format="harbour-keyshare"), canonical=True), "not a Harbour node identity"),
        (cbor2.dumps(identity_obj(v=3), canonical=True), "unsupported node identity version"),
        (cbor2.dumps(identity_obj(v=True), canonical=True), "unsupported node identity version"),
        (cbor2.dumps(identity_obj(extra=1), canonical=True), "missing or unexpected fields"),
        (cbor2.dumps(identity_obj(sign_sk=bytes(31)), canonical=True), "32 bytes"),
        (cbor2.dumps(identity_obj(enc_sk=bytes(32)), canonical=True), "missing or unexpected fields"),
        (cbor2.dumps(identity_obj(sign_sk="00" * 32), canonical=True), "32 bytes"),
        (bytes(300), "too large"),
    ],
    ids=[
        "empty",
        "truncated",
        "trailing-byte",
        "a-list",
        "another-format",
        "version-3",
        "version-true",
        "extra-field",
        "short-sign-key",
        "encryption-key",
        "sign-key-as-text",
        "too-large",
    ],
)
def test_identity_from_bytes_refuses(data: bytes, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        NodeIdentity.from_bytes(data)


def test_identity_from_bytes_refuses_non_canonical_map_order() -> None:
    obj = cbor2.loads(ALICE.to_bytes())
    reordered = cbor2.dumps(dict(reversed(list(obj.items()))))  # not canonical key order
    assert reordered != ALICE.to_bytes()
    with pytest.raises(IdentityError, match="canonical"):
        NodeIdentity.from_bytes(reordered)


@pytest.mark.parametrize("name", sorted(TAGGED_VALUES))
def test_identity_from_bytes_refuses_tagged_cbor(name: str) -> None:
    with pytest.raises(IdentityError):
        NodeIdentity.from_bytes(TAGGED_VALUES[name])


# -- node id -----------------------------------------------------------------------------------


def test_node_id_is_the_documented_fingerprint() -> None:
    assert NODE_ID_DOMAIN == b"harbour/node-id/v2\x00"
    expected = hashlib.sha256(NODE_ID_DOMAIN + DESC.sign_pk).digest()[:16].hex()
    assert DESC.node_id == expected == ALICE.node_id == compute_node_id(ALICE.sign_pk)
    assert len(DESC.node_id) == 32


def test_node_id_depends_on_the_key_only() -> None:
    moved = ALICE.descriptor("alice-renamed", "http://10.0.0.7:9000")
    assert moved.node_id == DESC.node_id
    assert compute_node_id(NodeIdentity.generate().sign_pk) != DESC.node_id


# -- descriptor JSON ---------------------------------------------------------------------------


def test_descriptor_json_round_trip() -> None:
    text = DESC.to_json()
    assert NodeDescriptor.from_json(text) == DESC
    assert NodeDescriptor.from_json(text.encode()) == DESC
    assert json.loads(text) == {
        "version": 2,
        "name": "alice-1",
        "url": "https://alice.example.com:8443",
        "node_id": DESC.node_id,
        "sign_pk": DESC.sign_pk.hex(),
    }
    assert DESC.to_json() == text  # stable: sorted keys


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:8080",
        "https://node-1.signers.example.com:443",
        "http://10.0.0.1:1",
        "https://[::1]:65535",
        "https://[2001:db8::7]:8443",
        "http://N0DE.example:80",
    ],
)
def test_descriptor_accepts_urls(url: str) -> None:
    assert NodeDescriptor.from_json(json.dumps(descriptor_obj(url=url))).url == url


@pytest.mark.parametrize("name", ["a", "A" * 64, "node_1.eu-west", "..", "-"])
def test_descriptor_accepts_names(name: str) -> None:
    assert NodeDescriptor.from_json(json.dumps(descriptor_obj(name=name))).name == name


def _set(obj: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**obj, key: value}


_WITHOUT_URL = {k: v for k, v in descriptor_obj().items() if k != "url"}
_ED25519_IDENTITY = b"\x01" + bytes(31)

BAD_DESCRIPTORS: dict[str, tuple[str, str]] = {
    "not json": ("{", "not valid JSON"),
    "not utf-8": ('{"name": "\xff"}', "not valid JSON"),
    "array": ("[]", "JSON object"),
    "missing field": (json.dumps(_WITHOUT_URL), r"missing: \['url'\]"),
    "extra field": (json.dumps(descriptor_obj(port=1)), r"unexpected: \['port'\]"),
    "duplicate field": (DESC.to_json().replace('"name": "alice-1"', '"name": "alice-1", "name": "mallory"'), "twice"),
    "NaN": (json.dumps(descriptor_obj(version=float("nan"))), "NaN"),
    "version 1": (json.dumps(descriptor_obj(version=1, enc_pk="11" * 32)), "created before forward secrecy"),
    "version 3": (json.dumps(descriptor_obj(version=3)), "version"),
    "version string": (json.dumps(descriptor_obj(version="1")), "version"),
    "version true": (json.dumps(descriptor_obj(version=True)), "version"),
    "empty name": (json.dumps(descriptor_obj(name="")), "node name"),
    "long name": (json.dumps(descriptor_obj(name="a" * 65)), "node name"),
    "name with space": (json.dumps(descriptor_obj(name="alice 1")), "node name"),
    "name with slash": (json.dumps(descriptor_obj(name="../etc")), "node name"),
    "name with newline": (json.dumps(descriptor_obj(name="alice\n")), "node name"),
    "non-ascii name": (json.dumps(descriptor_obj(name="alíce")), "node name"),
    "name not a string": (json.dumps(descriptor_obj(name=7)), "node name"),
    "url not a string": (json.dumps(descriptor_obj(url=None)), "must be a string"),
    "ftp url": (json.dumps(descriptor_obj(url="ftp://a.example:21")), "http"),
    "url without port": (json.dumps(descriptor_obj(url="https://a.example")), "http"),
    "url with path": (json.dumps(descriptor_obj(url="https://a.example:443/x")), "http"),
    "url with slash": (json.dumps(descriptor_obj(url="https://a.example:443/")), "http"),
    "url with user": (json.dumps(descriptor_obj(url="https://u:p@a.example:443")), "http"),
    "url with query": (json.dumps(descriptor_obj(url="https://a.example:443?x=1")), "http"),
    "url upper scheme": (json.dumps(descriptor_obj(url="HTTPS://a.example:443")), "http"),
    "url newline": (json.dumps(descriptor_obj(url="https://a.example:443\n")), "http"),
    "port 0": (json.dumps(descriptor_obj(url="https://a.example:0")), "port"),
    "port 65536": (json.dumps(descriptor_obj(url="https://a.example:65536")), "port"),
    "port leading zero": (json.dumps(descriptor_obj(url="https://a.example:0443")), "port"),
    "host label hyphen": (json.dumps(descriptor_obj(url="https://-a.example:443")), "host name"),
    "host empty label": (json.dumps(descriptor_obj(url="https://a..example:443")), "host name"),
    "host trailing dot": (json.dumps(descriptor_obj(url="https://a.example.:443")), "host name"),
    "bad ipv4": (json.dumps(descriptor_obj(url="http://999.1.1.1:80")), "IPv4"),
    "short ipv4": (json.dumps(descriptor_obj(url="http://10.1:80")), "IPv4"),
    "bad ipv6": (json.dumps(descriptor_obj(url="http://[1:::2]:80")), "IPv6"),
    "upper-case hex": (json.dumps(descriptor_obj(sign_pk=DESC.sign_pk.hex().upper())), "lowercase hex"),
    "short key": (json.dumps(descriptor_obj(sign_pk=DESC.sign_pk.hex()[:-2])), "lowercase hex"),
    "long key": (json.dumps(descriptor_obj(sign_pk=DESC.sign_pk.hex() + "00")), "lowercase hex"),
    "an encryption key": (json.dumps(descriptor_obj(enc_pk="11" * 32)), r"unexpected: \['enc_pk'\]"),
    "non-hex key": (json.dumps(descriptor_obj(sign_pk="zz" * 32)), "lowercase hex"),
    "key not a string": (json.dumps(descriptor_obj(sign_pk=list(DESC.sign_pk))), "lowercase hex"),
    "identity sign key": (json.dumps(descriptor_obj(sign_pk=_ED25519_IDENTITY.hex())), "Ed25519"),
    "node id of another node": (
        json.dumps(descriptor_obj(node_id=NodeIdentity.generate().node_id)),
        "does not match the keys",
    ),
    "node id malformed": (json.dumps(descriptor_obj(node_id=DESC.node_id.upper())), "node_id must be"),
    "oversized": (" " * (MAX_DESCRIPTOR_LEN + 1), "at most"),
}


@pytest.mark.parametrize("case", sorted(BAD_DESCRIPTORS))
def test_descriptor_from_json_refuses(case: str) -> None:
    text, message = BAD_DESCRIPTORS[case]
    with pytest.raises(IdentityError, match=message):
        NodeDescriptor.from_json(text.encode("latin-1") if case == "not utf-8" else text)


def test_swapped_keys_are_caught_by_the_node_id() -> None:
    # another node's key pasted into this descriptor: its messages would be taken for this node's
    other = NodeIdentity.generate()
    with pytest.raises(IdentityError, match="does not match"):
        NodeDescriptor.from_json(json.dumps(descriptor_obj(sign_pk=other.sign_pk.hex())))


def test_descriptor_construction_validates() -> None:
    with pytest.raises(IdentityError, match="node name"):
        ALICE.descriptor("bad name", "https://a.example:1")
    with pytest.raises(IdentityError, match="http"):
        ALICE.descriptor("ok", "a.example:1")
    with pytest.raises(IdentityError, match="32 bytes"):
        NodeDescriptor("ok", "https://a.example:1", DESC.sign_pk[:31])


def test_identity_error_is_a_value_error() -> None:
    assert issubclass(IdentityError, ValueError)
