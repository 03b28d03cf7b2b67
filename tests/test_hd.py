"""BIP-32 public derivation for threshold keys (mpc/hd.py): child keys, chain codes and
xpubs agree with an independent implementation (bip_utils) and with the BIP's own test
vectors; shares of a child key sign under it with no extra interaction; and paths that
cannot be derived without the private key, or are not paths at all, are refused."""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, replace

import nacl.bindings as sodium
import pytest
from bip_utils import Bip32Secp256k1

from harbour.chains.ethereum import address_from_public_key, keccak256
from harbour.crypto import ecdsa
from harbour.crypto.ed25519 import ED25519
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.mpc import hd, runner
from harbour.mpc.hd import CHAIN_CODE, DerivationError
from harbour.mpc.keyshare import KeyShare
from harbour.mpc.runner import RunStats
from helpers import ALL_SCHEMES, ECDSA_SCHEME, ETH_KEYS, LIFECYCLE_MESSAGE, assert_signs, cached_keygen

PATHS = ["m/0", "m/0/7", "m/1/2/3", "m/2147483647"]
SECP_SCHEMES = ["frost-secp256k1", "frost-taproot", ECDSA_SCHEME]

# BIP-32, test vector 1.
VECTOR1_MASTER = (
    "xpub661MyMwAqRbcFtXgS5sYJABqqG9YLmC4Q1Rdap9gSE8NqtwybGhePY2gZ29ESFjqJoCu1Rupje8YtGqsefD265TMg7usUDFdp6W1EGMcet8"
)
VECTOR1_CHAIN = {  # public-only steps of the chain m/0H/1/2H/2/1000000000
    "m/0H/1/2H": (
        "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5"
    ),
    "m/0H/1/2H/2": (
        "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV"
    ),
    "m/0H/1/2H/2/1000000000": (
        "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy"
    ),
}

BASE58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


@dataclass(frozen=True)
class ExtendedPublicKey:
    depth: int
    parent_fingerprint: bytes
    index: int
    chain_code: bytes
    key: bytes


def parse_xpub(text: str) -> ExtendedPublicKey:
    """Base58check and the 78-byte BIP-32 serialisation, decoded here rather than by harbour."""
    n = 0
    for ch in text:
        n = n * 58 + BASE58.index(ch)
    raw = bytes(len(text) - len(text.lstrip("1"))) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    payload, check = raw[:-4], raw[-4:]
    assert hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] == check
    assert len(payload) == 78 and payload[:4] == bytes.fromhex("0488b21e")
    return ExtendedPublicKey(
        payload[4], payload[5:9], int.from_bytes(payload[9:13], "big"), payload[13:45], payload[45:78]
    )


def key(scheme: str = "frost-secp256k1") -> Mapping[int, KeyShare]:
    return cached_keygen(scheme, 2, 3)


def master_xpub(shares: Mapping[int, KeyShare]) -> str:
    return hd.xpub(shares[1].group_public_key, shares[1].extensions[CHAIN_CODE])


# -- against bip_utils and the BIP-32 vectors ----------------------------------------------------


def test_xpub_of_the_group_key_reads_back_in_bip_utils() -> None:
    shares = key()
    xpub = master_xpub(shares)
    ctx = Bip32Secp256k1.FromExtendedKey(xpub)
    assert ctx.PublicKey().RawCompressed().ToBytes() == shares[1].group_public_key.encode()
    assert ctx.ChainCode().ToBytes() == shares[1].extensions[CHAIN_CODE]
    assert (ctx.Depth().ToInt(), ctx.Index().ToInt()) == (0, 0)
    assert ctx.PublicKey().ToExtended() == xpub
    parsed = parse_xpub(xpub)
    assert (parsed.depth, parsed.parent_fingerprint, parsed.index) == (0, bytes(4), 0)


@pytest.mark.parametrize("scheme", SECP_SCHEMES)
@pytest.mark.parametrize("path", PATHS)
def test_child_key_chain_code_and_xpub_match_bip_utils(scheme: str, path: str) -> None:
    shares = key(scheme)
    pk, code = shares[1].group_public_key, shares[1].extensions[CHAIN_CODE]
    expected = Bip32Secp256k1.FromExtendedKey(master_xpub(shares)).DerivePath(path)
    child = hd.derive(SECP256K1, pk, code, path)
    assert child.public_key.encode() == expected.PublicKey().RawCompressed().ToBytes()
    assert child.chain_code == expected.ChainCode().ToBytes()
    assert hd.xpub(pk, code, child) == expected.PublicKey().ToExtended()
    # The shares of the child key carry exactly that key and chain code.
    derived = runner.derived_shares(shares, path)
    for i, share in derived.items():
        share.check_consistent()
        assert share.group_public_key == child.public_key
        assert share.extensions[CHAIN_CODE] == child.chain_code
        assert share.secret_share == (shares[i].secret_share + child.tweak) % SECP256K1.order
        assert share.parties == shares[i].parties and share.threshold == shares[i].threshold


def test_bip32_vector_1_master_xpub_derives_as_bip_utils_does() -> None:
    master = parse_xpub(VECTOR1_MASTER)
    assert (master.depth, master.parent_fingerprint, master.index) == (0, bytes(4), 0)
    pk = SECP256K1.decode_point(master.key)
    assert hd.xpub(pk, master.chain_code) == VECTOR1_MASTER
    child = hd.derive(SECP256K1, pk, master.chain_code, "m/0")
    expected = Bip32Secp256k1.FromExtendedKey(VECTOR1_MASTER).DerivePath("m/0")
    assert child.public_key.encode() == expected.PublicKey().RawCompressed().ToBytes()
    assert child.chain_code == expected.ChainCode().ToBytes()
    assert hd.xpub(pk, master.chain_code, child) == expected.PublicKey().ToExtended()


@pytest.mark.parametrize(
    ("parent", "steps", "child"),
    [
        ("m/0H/1/2H", "m/2", "m/0H/1/2H/2"),
        ("m/0H/1/2H", "m/2/1000000000", "m/0H/1/2H/2/1000000000"),
        ("m/0H/1/2H/2", "m/1000000000", "m/0H/1/2H/2/1000000000"),
    ],
)
def test_bip32_vector_1_public_steps_give_the_published_children(parent: str, steps: str, child: str) -> None:
    # Known answers from the BIP itself: public derivation below the last hardened step.
    start, expected = parse_xpub(VECTOR1_CHAIN[parent]), parse_xpub(VECTOR1_CHAIN[child])
    derived = hd.derive(SECP256K1, SECP256K1.decode_point(start.key), start.chain_code, steps)
    assert derived.public_key.encode() == expected.key
    assert derived.chain_code == expected.chain_code
    assert derived.parent_fingerprint == expected.parent_fingerprint
    assert derived.index == expected.index
    assert start.depth + derived.depth == expected.depth


def test_ed25519_child_follows_the_documented_additive_scheme() -> None:
    # I = HMAC-SHA512(c, "harbour-ed25519-hd" || A || ser32(i)), A_i = A + (I_L mod L)·B,
    # c_i = I_R; recomputed here with libsodium's point arithmetic.
    shares = key("frost-ed25519")
    point, code = shares[1].group_public_key.encode(), shares[1].extensions[CHAIN_CODE]
    for index in (0, 7):
        digest = hmac.new(code, b"harbour-ed25519-hd" + point + index.to_bytes(4, "big"), hashlib.sha512).digest()
        tweak = int.from_bytes(digest[:32], "big") % ED25519.order
        point = sodium.crypto_core_ed25519_add(
            point, sodium.crypto_scalarmult_ed25519_base_noclamp(tweak.to_bytes(32, "little"))
        )
        code = digest[32:]
    child = hd.derive(ED25519, shares[1].group_public_key, shares[1].extensions[CHAIN_CODE], "m/0/7")
    assert child.public_key.encode() == point
    assert child.chain_code == code
    assert runner.derived_shares(shares, "m/0/7")[2].group_public_key.encode() == point


def test_xpub_is_refused_for_ed25519_keys() -> None:
    shares = key("frost-ed25519")
    with pytest.raises(DerivationError, match="xpub is defined for secp256k1 keys only"):
        hd.xpub(shares[1].group_public_key, shares[1].extensions[CHAIN_CODE])


# -- signing under a child key ------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_derived_shares_sign_under_the_derived_public_key(scheme: str) -> None:
    shares = key(scheme)
    parent = shares[1].group_public_key
    child = hd.derive(shares[1].group, parent, shares[1].extensions[CHAIN_CODE], "m/0/7").public_key
    assert child != parent
    derived = runner.derived_shares(shares, "m/0/7")
    for signers in itertools.combinations(sorted(derived), 2):
        assert_signs(derived, list(signers), child)


def test_ecdsa_signature_of_a_child_key_recovers_to_the_child_address_only() -> None:
    shares = key(ECDSA_SCHEME)
    derived = runner.derived_shares(shares, "m/0/7")
    digest = keccak256(LIFECYCLE_MESSAGE)
    sig = runner.sign_ecdsa(derived, [1, 3], digest)
    child, parent = derived[1].group_public_key, shares[1].group_public_key
    assert isinstance(child, Secp256k1Point) and isinstance(parent, Secp256k1Point)
    assert ecdsa.verify(child, digest, sig)
    assert not ecdsa.verify(parent, digest, sig)
    recovered = ETH_KEYS.Signature(vrs=(sig.recovery_id, sig.r, sig.s)).recover_public_key_from_msg_hash(digest)
    assert recovered.to_checksum_address() == address_from_public_key(child)
    assert recovered.to_checksum_address() != address_from_public_key(parent)


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_signing_under_a_child_key_costs_no_extra_interaction(scheme: str) -> None:
    shares = key(scheme)
    derived = runner.derived_shares(shares, "m/1/2/3")
    normal, child = RunStats(), RunStats()
    if scheme == ECDSA_SCHEME:
        digest = keccak256(LIFECYCLE_MESSAGE)
        runner.sign_ecdsa(shares, [1, 2], digest, stats=normal)
        runner.sign_ecdsa(derived, [1, 2], digest, stats=child)
    else:
        runner.sign(shares, [1, 2], LIFECYCLE_MESSAGE, stats=normal)
        runner.sign(derived, [1, 2], LIFECYCLE_MESSAGE, stats=child)
    assert child.envelopes == normal.envelopes > 0


# -- determinism ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_derivation_is_deterministic_and_paths_give_different_keys(scheme: str) -> None:
    shares = key(scheme)
    assert runner.derived_shares(shares, "m/0/7") == runner.derived_shares(shares, "m/0/7")
    paths = [*PATHS, "m/7/0", "m/0/8", "m/1", "m/0/0"]
    keys = {runner.derived_shares(shares, p)[1].group_public_key for p in paths}
    assert len(keys) == len(paths)
    assert shares[1].group_public_key not in keys


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_deriving_step_by_step_equals_deriving_the_whole_path(scheme: str) -> None:
    shares = key(scheme)
    stepwise = runner.derived_shares(runner.derived_shares(shares, "m/0"), "m/7")
    assert stepwise == runner.derived_shares(shares, "m/0/7")


@pytest.mark.parametrize("path", [None, "m", " m "])
def test_the_master_path_leaves_the_shares_unchanged(path: str | None) -> None:
    shares = key()
    assert runner.derived_shares(shares, path) == dict(shares)


def test_every_share_of_a_new_key_has_the_same_chain_code_and_keys_differ() -> None:
    a, b = key(), cached_keygen("frost-secp256k1", 3, 5)
    assert len({s.extensions[CHAIN_CODE] for s in a.values()}) == 1
    assert len(a[1].extensions[CHAIN_CODE]) == 32
    assert a[1].extensions[CHAIN_CODE] != b[1].extensions[CHAIN_CODE]


# -- refused -------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["m/0'", "m/0h", "m/0H", "m/1/2'/3", "m/2147483648", "m/4294967295"])
def test_hardened_path_is_refused(path: str) -> None:
    with pytest.raises(DerivationError, match="hardened"):
        runner.derived_shares(key(), path)


@pytest.mark.parametrize("index", [1 << 31, -1])
def test_hardened_or_negative_index_is_refused(index: int) -> None:
    shares = key()
    with pytest.raises(DerivationError, match="is not a non-hardened index"):
        hd.derive(SECP256K1, shares[1].group_public_key, shares[1].extensions[CHAIN_CODE], [0, index])


@pytest.mark.parametrize("path", ["0/1", "m//1", "m/01", "m/-1", "m/x", "m/", "", "M/1", "m/1/", "m/+1", "m/0x1"])
def test_malformed_path_is_refused(path: str) -> None:
    with pytest.raises(DerivationError):
        runner.derived_shares(key(), path)


@pytest.mark.parametrize("path", ["m/１", "m/²"])
def test_path_with_non_ascii_digits_is_refused(path: str) -> None:
    with pytest.raises(DerivationError):
        hd.parse_path(path)


def test_path_deeper_than_255_steps_is_refused() -> None:
    with pytest.raises(DerivationError, match="at most 255 steps"):
        hd.parse_path("m" + "/0" * 256)


def test_key_without_a_chain_code_refuses_derivation() -> None:
    bare = {i: replace(s, extensions={}) for i, s in key().items()}
    with pytest.raises(DerivationError, match="this key has no chain code"):
        runner.derived_shares(bare, "m/0")


@pytest.mark.parametrize("length", [0, 31, 33])
def test_chain_code_of_the_wrong_length_is_refused(length: int) -> None:
    shares = key()
    with pytest.raises(DerivationError, match="a chain code is 32 bytes"):
        hd.derive(SECP256K1, shares[1].group_public_key, bytes(length), "m/0")
