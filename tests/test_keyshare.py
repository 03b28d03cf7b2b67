"""Key shares: the encoding round-trips, and any damaged, tampered or inconsistent
share is refused when it is loaded, never later while signing."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest

from harbour.crypto.shamir import trusted_dealer_keygen
from harbour.mpc import runner
from harbour.mpc.ciphersuite import suite_by_name
from harbour.mpc.envelope import UsageError
from harbour.mpc.frost_party import FrostSigner, signing_public_key
from harbour.mpc.keyshare import KeyShare, KeyShareError, shares_from_dealer
from helpers import SCHEMES, TAGGED_VALUES, cached_keygen, encode_scalar_raw


def share_of(scheme: str, me: int = 1, t: int = 2, n: int = 3) -> KeyShare:
    return cached_keygen(scheme, t, n)[me]


def fields(share: KeyShare) -> dict[str, Any]:
    return dict(cbor2.loads(share.serialize()))


def encode(obj: dict[str, Any]) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def refused(data: bytes, match: str | None = None) -> None:
    with pytest.raises(KeyShareError, match=match):
        KeyShare.deserialize(data)


def refused_with(key_share: KeyShare, match: str | None = None, /, **changes: Any) -> None:
    obj = fields(key_share)
    obj.update(changes)
    refused(encode(obj), match)


# -- round trip -------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_serialize_round_trips(scheme: str) -> None:
    share = share_of(scheme)
    data = share.serialize()
    again = KeyShare.deserialize(data)
    assert again == share
    assert again.serialize() == data
    assert again.public == share.public


@pytest.mark.parametrize("scheme", SCHEMES)
def test_serialize_round_trips_extensions(scheme: str) -> None:
    share = share_of(scheme)
    obj = fields(share)
    obj["ext"] = {"label": b"treasury", "policy": b"\x00\x01"}
    again = KeyShare.deserialize(encode(obj))
    assert dict(again.extensions) == {"label": b"treasury", "policy": b"\x00\x01"}


# -- damaged encodings ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_truncation_is_refused(scheme: str) -> None:
    data = share_of(scheme).serialize()
    for cut in range(len(data)):
        refused(data[:cut])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_trailing_bytes_are_refused(scheme: str) -> None:
    refused(share_of(scheme).serialize() + b"\x00")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("field", ["share", "pk", "id", "parties"])
def test_any_flipped_bit_in_key_material_is_refused(scheme: str, field: str) -> None:
    share = share_of(scheme)
    data = share.serialize()
    key = cbor2.dumps(field)
    value = cbor2.dumps(fields(share)[field], canonical=True)
    start = data.index(key + value) + len(key)
    for pos in range(start, start + len(value)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[pos] ^= 1 << bit
            refused(bytes(damaged))


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("party", [1, 2, 3])
def test_any_flipped_bit_in_a_verification_share_is_refused(scheme: str, party: int) -> None:
    share = share_of(scheme)
    data = share.serialize()
    point = share.verification_shares[party].encode()
    start = data.index(point)
    for pos in range(start, start + len(point)):
        for bit in range(8):
            damaged = bytearray(data)
            damaged[pos] ^= 1 << bit
            refused(bytes(damaged))


@pytest.mark.parametrize(
    "data", [b"", b"\xff", b"\x80", b"not cbor at all \xff"], ids=["empty", "ff", "empty-array", "text"]
)
def test_non_key_share_bytes_are_refused(data: bytes) -> None:
    refused(data)


@pytest.mark.parametrize("obj", [[1, 2], b"share", 7, None], ids=["array", "bytes", "int", "null"])
def test_cbor_that_is_not_a_map_is_refused(obj: object) -> None:
    refused(encode(obj))  # type: ignore[arg-type]


@pytest.mark.parametrize("version", [0, 2, "1", True, 1.0], ids=["0", "2", "str", "true", "float"])
def test_wrong_version_is_refused(version: object) -> None:
    refused_with(share_of("frost-secp256k1"), v=version)


@pytest.mark.parametrize("missing", ["v", "scheme", "curve", "t", "parties", "id", "share", "pk", "vs", "ext"])
def test_missing_field_is_refused(missing: str) -> None:
    obj = fields(share_of("frost-ed25519"))
    del obj[missing]
    refused(encode(obj), "missing or unexpected")


def test_extra_field_is_refused() -> None:
    refused_with(share_of("frost-ed25519"), "missing or unexpected", nonce=b"\x00" * 32)


def test_non_canonical_encoding_is_refused() -> None:
    data = share_of("frost-secp256k1").serialize()
    assert data[:4] == bytes.fromhex("aa617402")  # {"t": 2, ...
    forged = data[:3] + b"\x18\x02" + data[4:]  # t = 2 in long form
    assert cbor2.loads(forged) == cbor2.loads(data)
    refused(forged, "canonical")


def test_indefinite_length_map_is_refused() -> None:
    data = share_of("frost-secp256k1").serialize()
    forged = b"\xbf" + data[1:] + b"\xff"
    assert cbor2.loads(forged) == cbor2.loads(data)
    refused(forged, "canonical")


# -- tampered or inconsistent contents ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_share_not_matching_its_verification_share_is_refused(scheme: str) -> None:
    shares = cached_keygen(scheme, 2, 3)
    g = shares[1].group
    refused_with(shares[1], "does not match", share=g.encode_scalar(shares[2].secret_share))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_share_presented_under_another_identifier_is_refused(scheme: str) -> None:
    refused_with(share_of(scheme, me=1), "does not match", id=2)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("party", [1, 2, 3])
def test_verification_share_off_the_polynomial_is_refused(scheme: str, party: int) -> None:
    # The share is party 1's; party 3's verification share is beyond the first t.
    share = share_of(scheme, me=1)
    g = share.group
    obj = fields(share)
    vs = dict(obj["vs"])
    vs[party] = (share.verification_shares[party] + g.generator()).encode()
    obj["vs"] = vs
    refused(encode(obj))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_group_key_not_matching_the_verification_shares_is_refused(scheme: str) -> None:
    share = share_of(scheme)
    g = share.group
    refused_with(share, "interpolate", pk=(share.group_public_key + g.generator()).encode())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_group_key_of_another_key_is_refused(scheme: str) -> None:
    other = runner.keygen(scheme, 2, 3)[1]
    refused_with(share_of(scheme), "interpolate", pk=other.group_public_key.encode())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_verification_shares_of_another_key_are_refused(scheme: str) -> None:
    other = runner.keygen(scheme, 2, 3)[1]
    refused_with(share_of(scheme), vs=fields(other)["vs"])


def test_lowered_threshold_is_refused() -> None:
    # A 3-of-4 share relabelled 2-of-4 would let two parties think they can sign.
    share = share_of("frost-secp256k1", t=3, n=4)
    refused_with(share, t=2)


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("value", ["zero", "order", "all-ones", "short"])
def test_secret_share_out_of_range_is_refused(scheme: str, value: str) -> None:
    g = share_of(scheme).group
    raw = {
        "zero": bytes(32),
        "order": encode_scalar_raw(g, g.order),
        "all-ones": b"\xff" * 32,
        "short": b"\x01" * 31,
    }[value]
    refused_with(share_of(scheme), share=raw)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_malformed_group_key_is_refused(scheme: str) -> None:
    refused_with(share_of(scheme), pk=b"\x00" * share_of(scheme).group.point_len)


@pytest.mark.parametrize(
    "changes",
    [
        {"curve": "p256"},
        {"curve": 1},
        {"parties": [1, 2, 2]},
        {"parties": [0, 1, 2]},
        {"parties": [1, 2]},
        {"parties": "abc"},
        {"id": 4},
        {"id": 0},
        {"t": 0},
        {"t": 4},
        {"t": "2"},
        {"vs": {1: b"\x02"}},
        {"vs": []},
        {"ext": []},
        {"ext": {"a": "text"}},
        {"ext": {"a": -1}},
        {"share": "text"},
        {"scheme": 7},
    ],
    ids=lambda c: "-".join(f"{k}={v!r}" for k, v in c.items()),
)
def test_malformed_field_is_refused(changes: dict[str, Any]) -> None:
    refused_with(share_of("frost-secp256k1"), **changes)


@pytest.mark.parametrize("field", ["v", "t", "id", "pk", "vs", "ext", "curve", "share", "scheme", "parties"])
def test_cbor_tagged_object_in_any_field_is_refused(field: str) -> None:
    obj = fields(share_of("frost-secp256k1"))
    keys = sorted(obj, key=lambda k: (len(k), k))  # canonical order of these keys
    for tagged in TAGGED_VALUES.values():
        data = bytes([0xA0 + len(keys)])
        for k in keys:
            data += cbor2.dumps(k) + (tagged if k == field else encode(obj[k]))
        refused(data)


def test_verification_shares_keyed_by_text_are_refused() -> None:
    obj = fields(share_of("frost-secp256k1"))
    obj["vs"] = {str(i): p for i, p in obj["vs"].items()}
    refused(encode(obj))


def test_verification_share_missing_for_a_party_is_refused() -> None:
    obj = fields(share_of("frost-secp256k1"))
    del obj["vs"][3]
    refused(encode(obj), "one verification share per party")


def test_verification_share_for_an_outsider_is_refused() -> None:
    obj = fields(share_of("frost-secp256k1"))
    obj["vs"][4] = obj["vs"][3]
    refused(encode(obj), "one verification share per party")


@pytest.mark.parametrize(
    ("field", "value"),
    [("t", 2.0), ("id", 1.0), ("id", True)],
    ids=["threshold-float", "identifier-float", "identifier-bool"],
)
def test_non_integer_threshold_or_identifier_is_refused(field: str, value: object) -> None:
    refused_with(share_of("frost-secp256k1"), **{field: value})


def test_unknown_scheme_is_refused() -> None:
    refused_with(share_of("frost-secp256k1"), scheme="frost-sepc256k1")


def test_scheme_of_another_curve_is_refused() -> None:
    refused_with(share_of("frost-secp256k1"), scheme="frost-ed25519")


@pytest.mark.parametrize(("scheme", "curve"), [("frost-ed25519", "secp256k1"), ("frost-taproot", "ed25519")])
def test_signer_refuses_a_share_whose_curve_is_not_its_schemes(scheme: str, curve: str) -> None:
    source = share_of("frost-secp256k1" if curve == "secp256k1" else "frost-ed25519")
    # Such a share cannot even be built; were it built, no signer would take it.
    with pytest.raises(KeyShareError, match="not a scheme on curve"):
        KeyShare(
            scheme=scheme,
            curve=curve,
            threshold=source.threshold,
            parties=source.parties,
            identifier=source.identifier,
            secret_share=source.secret_share,
            group_public_key=source.group_public_key,
            verification_shares=source.verification_shares,
        )
    mismatched = object.__new__(KeyShare)
    for name, value in vars(source).items():
        object.__setattr__(mismatched, name, value)
    object.__setattr__(mismatched, "scheme", scheme)
    with pytest.raises(UsageError, match="cannot sign under"):
        FrostSigner(b"\x00" * 32, mismatched, [1, 2], b"m")


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"parties": (1, 2, 2)},
        {"parties": (0, 1, 2)},
        {"threshold": 0},
        {"threshold": 4},
        {"identifier": 9},
        {"verification_shares": {}},
    ],
    ids=["duplicate-party", "zero-party", "t=0", "t>n", "outsider-id", "no-verification-shares"],
)
def test_inconsistent_key_share_cannot_be_constructed(changes: dict[str, Any]) -> None:
    s = share_of("frost-ed25519")
    args: dict[str, Any] = {
        "scheme": s.scheme,
        "curve": s.curve,
        "threshold": s.threshold,
        "parties": s.parties,
        "identifier": s.identifier,
        "secret_share": s.secret_share,
        "group_public_key": s.group_public_key,
        "verification_shares": s.verification_shares,
    }
    args.update(changes)
    with pytest.raises(KeyShareError):
        KeyShare(**args)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_repr_does_not_contain_the_secret(scheme: str) -> None:
    share = share_of(scheme)
    secret = share.secret_share
    g = share.group
    for text in (repr(share), str(share), repr(share.public)):
        assert str(secret) not in text
        assert hex(secret)[2:] not in text
        assert g.encode_scalar(secret).hex() not in text
    assert "secret_share" not in repr(share)


# -- importing a dealt key ---------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_dealer_shares_load_and_sign(scheme: str) -> None:
    suite = suite_by_name(scheme)
    g = suite.group
    dealt = trusted_dealer_keygen(g, g.random_scalar(), 2, 3)
    shares = shares_from_dealer(scheme, g.name, dealt)
    for share in shares.values():
        share.check_consistent()
        assert KeyShare.deserialize(share.serialize()) == share
    sig = runner.sign(shares, [1, 3], b"imported")
    assert suite.verify(signing_public_key(suite, dealt.group_public_key), b"imported", sig)
