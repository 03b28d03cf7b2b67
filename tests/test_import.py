"""Key import (runner.import_key): an existing private key, e.g. a wallet moving into
custody, becomes a t-of-n key with the same public key (so the same addresses), any t
shares sign, the shares hide exactly that key, and the wallet's chain code keeps its
HD children; invalid keys and parameters are refused."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Mapping
from functools import cache

import coincurve
import nacl.bindings as sodium
import pytest
from bip_utils import Bip32KeyData, Bip32Secp256k1

from harbour.chains.ethereum import address_from_public_key
from harbour.crypto.ed25519 import ED25519
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.crypto.shamir import SharingError, interpolate_at_zero
from harbour.mpc import hd, runner
from harbour.mpc.ecdsa_setup import setup_of
from harbour.mpc.envelope import UsageError
from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import KeyShare
from helpers import ALL_SCHEMES, ECDSA_SCHEME, ETH_KEYS, SCHEMES, assert_signs

ED25519_SEED = bytes(range(32))
CHAIN = hashlib.sha256(b"the wallet's BIP-32 chain code").digest()


def ed25519_scalar(seed: bytes) -> int:
    """RFC 8032 section 5.1.5: the secret scalar of a seed (clamped, then reduced mod L)."""
    h = bytearray(hashlib.sha512(seed).digest()[:32])
    h[0] &= 248
    h[31] &= 127
    h[31] |= 64
    return int.from_bytes(h, "little") % ED25519.order


PRIVATE_KEYS = {
    "frost-secp256k1": int.from_bytes(hashlib.sha256(b"an existing bitcoin key").digest(), "big") % SECP256K1.order,
    "frost-taproot": int.from_bytes(hashlib.sha256(b"an existing taproot key").digest(), "big") % SECP256K1.order,
    ECDSA_SCHEME: int.from_bytes(hashlib.sha256(b"an existing ethereum key").digest(), "big") % SECP256K1.order,
    "frost-ed25519": ed25519_scalar(ED25519_SEED),
}
SHAPES = [(s, 2, 3) for s in ALL_SCHEMES] + [("frost-secp256k1", 3, 5)]


@cache
def imported(scheme: str, t: int = 2, n: int = 3) -> Mapping[int, KeyShare]:
    return runner.import_key(scheme, PRIVATE_KEYS[scheme], t, n, chain_code=CHAIN)


# -- the imported key -------------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "t", "n"), SHAPES)
def test_imported_shares_form_a_t_of_n_key_with_the_private_keys_public_key(scheme: str, t: int, n: int) -> None:
    shares = imported(scheme, t, n)
    assert sorted(shares) == list(range(1, n + 1))
    first = shares[1]
    assert first.group_public_key == first.group.base_mul(PRIVATE_KEYS[scheme])
    for i, share in shares.items():
        share.check_consistent()
        assert (share.identifier, share.scheme, share.threshold, share.parties) == (
            i,
            scheme,
            t,
            tuple(range(1, n + 1)),
        )
        assert share.group_public_key == first.group_public_key
        assert share.verification_shares == first.verification_shares


def test_imported_secp256k1_key_is_the_key_other_wallets_see() -> None:
    pk = imported("frost-secp256k1")[1].group_public_key
    assert pk.encode() == coincurve.PrivateKey.from_int(PRIVATE_KEYS["frost-secp256k1"]).public_key.format()


def test_imported_ed25519_scalar_is_the_key_of_the_rfc8032_seed() -> None:
    public, _ = sodium.crypto_sign_seed_keypair(ED25519_SEED)
    assert imported("frost-ed25519")[1].group_public_key.encode() == public


def test_imported_ethereum_key_keeps_its_address() -> None:
    shares = imported(ECDSA_SCHEME)
    pk = shares[1].group_public_key
    assert isinstance(pk, Secp256k1Point)
    wallet = ETH_KEYS.PrivateKey(PRIVATE_KEYS[ECDSA_SCHEME].to_bytes(32, "big"))
    assert address_from_public_key(pk) == wallet.public_key.to_checksum_address()
    # The import ends with the pairwise setup, so the key signs at once.
    for i, share in shares.items():
        assert set(setup_of(share).peers) == {1, 2, 3} - {i}


@pytest.mark.parametrize(("scheme", "t", "n"), SHAPES)
def test_every_threshold_subset_of_imported_shares_signs(scheme: str, t: int, n: int) -> None:
    shares = imported(scheme, t, n)
    for subset in itertools.combinations(sorted(shares), t):
        assert_signs(shares, list(subset))


@pytest.mark.parametrize(("scheme", "t", "n"), SHAPES)
def test_imported_shares_interpolate_to_the_private_key(scheme: str, t: int, n: int) -> None:
    shares = imported(scheme, t, n)
    order = shares[1].group.order
    for subset in itertools.combinations(sorted(shares), t):
        assert interpolate_at_zero({i: shares[i].secret_share for i in subset}, order) == PRIVATE_KEYS[scheme]
    for subset in itertools.combinations(sorted(shares), t - 1):
        assert interpolate_at_zero({i: shares[i].secret_share for i in subset}, order) != PRIVATE_KEYS[scheme]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_imported_key_refreshes_like_any_other(scheme: str) -> None:
    shares = imported(scheme)
    new = runner.refresh(shares)
    assert all(new[i].secret_share != shares[i].secret_share for i in shares)
    secret = interpolate_at_zero({i: new[i].secret_share for i in (1, 3)}, shares[1].group.order)
    assert secret == PRIVATE_KEYS[scheme]
    assert all(share.extensions[CHAIN_CODE] == CHAIN for share in new.values())


# -- chain code --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_a_given_chain_code_is_kept(scheme: str) -> None:
    assert all(share.extensions[CHAIN_CODE] == CHAIN for share in imported(scheme).values())


@pytest.mark.parametrize("scheme", SCHEMES)
def test_without_a_chain_code_a_random_one_is_drawn(scheme: str) -> None:
    a = runner.import_key(scheme, PRIVATE_KEYS[scheme], 2, 3)
    b = runner.import_key(scheme, PRIVATE_KEYS[scheme], 2, 3)
    codes = {s.extensions[CHAIN_CODE] for s in a.values()}
    assert len(codes) == 1
    code = codes.pop()
    assert len(code) == 32
    assert code != b[1].extensions[CHAIN_CODE]
    assert code != CHAIN


@pytest.mark.parametrize("path", ["m/0", "m/0/7", "m/44/60/0/0"])
def test_imported_wallet_keeps_its_hd_children(path: str) -> None:
    # bip_utils derives from the whole private key and chain code (CKDpriv); the shares
    # derive from the public key only (CKDpub) and must land on the same child key.
    scheme = "frost-secp256k1"
    wallet = Bip32Secp256k1.FromPrivateKey(PRIVATE_KEYS[scheme].to_bytes(32, "big"), Bip32KeyData(chain_code=CHAIN))
    shares = imported(scheme)
    assert hd.xpub(shares[1].group_public_key, CHAIN) == wallet.PublicKey().ToExtended()
    child = wallet.DerivePath(path)
    derived = runner.derived_shares(shares, path)
    assert derived[1].group_public_key.encode() == child.PublicKey().RawCompressed().ToBytes()
    secret = interpolate_at_zero({i: derived[i].secret_share for i in (2, 3)}, SECP256K1.order)
    assert secret.to_bytes(32, "big") == child.PrivateKey().Raw().ToBytes()


# -- refused -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@pytest.mark.parametrize("value", ["0", "order", "order+1", "-1", "2^256"])
def test_invalid_private_key_is_refused(scheme: str, value: str) -> None:
    order = ED25519.order if scheme == "frost-ed25519" else SECP256K1.order
    key = {"0": 0, "order": order, "order+1": order + 1, "-1": -1, "2^256": 1 << 256}[value]
    with pytest.raises(SharingError, match="the secret must be a non-zero scalar below the group order"):
        runner.import_key(scheme, key, 2, 3)


@pytest.mark.parametrize(("t", "n"), [(0, 3), (4, 3), (-1, 3), (2, 0), (2, 256)])
def test_invalid_threshold_or_party_count_is_refused(t: int, n: int) -> None:
    with pytest.raises(SharingError, match="need 1 <= threshold <= parties <= 255"):
        runner.import_key("frost-secp256k1", PRIVATE_KEYS["frost-secp256k1"], t, n)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_chain_code_of_the_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(UsageError, match="a chain code is 32 bytes"):
        runner.import_key("frost-secp256k1", PRIVATE_KEYS["frost-secp256k1"], 2, 3, chain_code=bytes(length))


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(UsageError, match="unknown scheme 'frost-p256'"):
        runner.import_key("frost-p256", 5, 2, 3)
