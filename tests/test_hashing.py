"""RFC 9380 message expansion against its published answers, and the transcript's
guarantee that different item sequences never hash alike."""

from __future__ import annotations

import hashlib

import pytest

from harbour.crypto.hashing import (
    Transcript,
    expand_message_xmd,
    hash_to_field,
    hash_to_field_with_prefix,
    tagged_hash,
)
from harbour.crypto.secp256k1 import N as SECP_N
from harbour.crypto.secp256k1 import P as SECP_P

XMD_DST = b"QUUX-V01-CS02-with-expander-SHA256-128"
LONG_DST = b"QUUX-V01-CS02-with-expander-SHA256-128-long-DST-" + b"1" * 208

# RFC 9380 appendix K.1, expand_message_xmd(SHA-256).
K1 = [
    (b"", 0x20, "68a985b87eb6b46952128911f2a4412bbc302a9d759667f87f7a21d803f07235"),
    (b"abc", 0x20, "d8ccab23b5985ccea865c6c97b6e5b8350e794e603b4b97902f53a8a0d605615"),
    (b"abcdef0123456789", 0x20, "eff31487c770a893cfb36f912fbfcbff40d5661771ca4b2cb4eafe524333f5c1"),
    (
        b"",
        0x80,
        "af84c27ccfd45d41914fdff5df25293e221afc53d8ad2ac06d5e3e29485dadbe"
        "e0d121587713a3e0dd4d5e69e93eb7cd4f5df4cd103e188cf60cb02edc3edf18"
        "eda8576c412b18ffb658e3dd6ec849469b979d444cf7b26911a08e63cf31f9dc"
        "c541708d3491184472c2c29bb749d4286b004ceb5ee6b9a7fa5b646c993f0ced",
    ),
    (
        b"abc",
        0x80,
        "abba86a6129e366fc877aab32fc4ffc70120d8996c88aee2fe4b32d6c7b6437a"
        "647e6c3163d40b76a73cf6a5674ef1d890f95b664ee0afa5359a5c4e07985635"
        "bbecbac65d747d3d2da7ec2b8221b17b0ca9dc8a1ac1c07ea6a1e60583e2cb00"
        "058e77b7b72a298425cd1b941ad4ec65e8afc50303a22c0f99b0509b4c895f40",
    ),
]


@pytest.mark.parametrize(("msg", "length", "expected"), K1, ids=[f"{m!r}-{n:#x}" for m, n, _ in K1])
def test_expand_message_xmd_rfc9380_k1(msg: bytes, length: int, expected: str) -> None:
    assert len(XMD_DST) == 38
    assert expand_message_xmd(msg, XMD_DST, length).hex() == expected


@pytest.mark.parametrize(
    ("msg", "expected"),
    [
        (b"", "e8dc0c8b686b7ef2074086fbdd2f30e3f8bfbd3bdf177f73f04b97ce618a3ed3"),
        (b"abc", "52dbf4f36cf560fca57dedec2ad924ee9c266341d8f3d6afe5171733b16bbb12"),
    ],
    ids=["empty", "abc"],
)
def test_expand_message_xmd_oversize_dst_rfc9380_k1(msg: bytes, expected: str) -> None:
    # A DST over 255 bytes is first hashed (section 5.3.3).
    assert len(LONG_DST) == 256
    assert expand_message_xmd(msg, LONG_DST, 0x20).hex() == expected


def test_expand_message_xmd_refuses_output_over_255_blocks() -> None:
    assert len(expand_message_xmd(b"", XMD_DST, 255 * 32)) == 255 * 32
    with pytest.raises(ValueError):
        expand_message_xmd(b"", XMD_DST, 255 * 32 + 1)


def test_hash_to_field_rfc9380_j81_secp256k1() -> None:
    dst = b"QUUX-V01-CS02-with-secp256k1_XMD:SHA-256_SSWU_RO_"
    assert hash_to_field(b"", dst, SECP_P, count=2) == [
        0x6B0F9910DD2BA71C78F2EE9F04D73B5F4C5F7FC773A701ABEA1E573CAB002FB3,
        0x1AE6C212E08FE1A5937F6202F929A2CC8EF4EE5B9782DB68B0D5799FD8F09E16,
    ]
    assert hash_to_field(b"abc", dst, SECP_P, count=2) == [
        0x128AAB5D3679A1F7601E3BDF94CED1F43E491F544767E18A4873F397B08A2B61,
        0x5897B65DA3B595A813D0FDCC75C895DC531BE76A03518B044DAAA0F2E4689E00,
    ]


def test_tagged_hash_is_bip340s() -> None:
    tag = hashlib.sha256(b"BIP0340/challenge").digest()
    assert tagged_hash("BIP0340/challenge", b"ab", b"c") == hashlib.sha256(tag + tag + b"abc").digest()


# -- Transcript ------------------------------------------------------------------------------


def digest(*items: tuple[str, bytes | int | str], domain: str = "test") -> bytes:
    t = Transcript(domain)
    for label, value in items:
        t.append(label, value)
    return t.digest()


def test_transcript_label_value_boundary_matters() -> None:
    assert digest(("a", b"bc")) != digest(("ab", b"c"))


def test_transcript_item_boundary_matters() -> None:
    assert digest(("x", b"ab"), ("y", b"c")) != digest(("x", b"a"), ("y", b"bc"))
    assert digest(("x", b"ab")) != digest(("x", b"a"), ("x", b"b"))


def test_transcript_domain_is_bound() -> None:
    assert digest(("x", b"1"), domain="a") != digest(("x", b"1"), domain="b")
    assert digest(domain="ab") != digest(("b", b""), domain="a")


def test_transcript_int_bytes_and_str_are_typed_apart() -> None:
    as_int = digest(("v", 1))
    as_bytes = digest(("v", (1).to_bytes(8, "big")))
    as_str = digest(("v", "\x00" * 7 + "\x01"))
    assert len({as_int, as_bytes, as_str}) == 3
    assert digest(("v", "abc")) != digest(("v", b"abc"))


def test_transcript_small_and_large_ints_do_not_collide() -> None:
    assert digest(("v", 2**64)) != digest(("v", 0))
    assert digest(("v", 2**64 - 1)) != digest(("v", 2**64))
    assert digest(("v", 0)) != digest(("v", b""))


def test_transcript_list_boundaries_matter() -> None:
    def listed(*values: bytes) -> bytes:
        return Transcript("t").append_list("l", list(values)).digest()

    assert listed(b"ab", b"c") != listed(b"a", b"bc")
    assert listed(b"abc") != listed(b"ab", b"c")
    assert listed() != listed(b"")
    assert listed(b"ab") != Transcript("t").append("l", b"ab").digest()


def test_transcript_order_matters() -> None:
    assert digest(("a", b"1"), ("b", b"2")) != digest(("b", b"2"), ("a", b"1"))


def test_transcript_refuses_booleans_and_negative_ints() -> None:
    with pytest.raises(TypeError):
        Transcript("t").append("flag", True)
    with pytest.raises(ValueError):
        Transcript("t").append("n", -1)


def test_transcript_digest_does_not_end_the_transcript() -> None:
    t = Transcript("t").append("a", b"1")
    first = t.digest()
    assert t.digest() == first
    t.append("b", b"2")
    assert t.digest() == digest(("a", b"1"), ("b", b"2"), domain="t") != first


def test_transcript_challenge_is_reduced() -> None:
    c = Transcript("t").append("a", b"1").challenge(7)
    assert 0 <= c < 7


@pytest.mark.parametrize("prefix", [b"", b"abc", bytes(range(256)) * 3])
@pytest.mark.parametrize("suffix", [b"", b"\x00" * 31 + b"\x07"])
@pytest.mark.parametrize("modulus", [SECP_N, 2**61 - 1, 2**521 - 1], ids=["ell=2", "ell=1", "ell=3"])
def test_hash_to_field_with_prefix_equals_hash_to_field_of_the_concatenation(
    prefix: bytes, suffix: bytes, modulus: int
) -> None:
    dst = b"FROST-secp256k1-SHA256-v1rho"
    assert hash_to_field_with_prefix(prefix, dst, modulus)(suffix) == hash_to_field(prefix + suffix, dst, modulus)[0]
