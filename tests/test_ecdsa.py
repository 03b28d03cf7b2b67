"""Plain ECDSA over secp256k1: the finishing and checking step of threshold ECDSA.

Cross-checked against eth-keys' pure-Python backend, which shares no code with
libsecp256k1, so agreement is evidence rather than a library agreeing with itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from eth_keys.backends.native.main import NativeECCBackend
from eth_keys.main import KeyAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.chains.ethereum import address_from_public_key
from harbour.crypto.ecdsa import (
    HALF_ORDER,
    ORDER,
    EcdsaSignature,
    digest_to_int,
    finalize_signature,
    recover,
    sign_with_key,
    verify,
)
from harbour.crypto.group import GroupError
from harbour.crypto.secp256k1 import SECP256K1, N, Secp256k1Point

ETH_KEYS = KeyAPI(NativeECCBackend)

private_keys = st.integers(min_value=1, max_value=N - 1)
digests = st.binary(min_size=32, max_size=32)
fast = settings(max_examples=25, deadline=None)

KEY = 0x4C0883A69102937D6231471B5DBB6204FE5129617082792AE468D01A3F362318
DIGEST = hashlib.sha256(b"harbour").digest()


def point(k: int) -> Secp256k1Point:
    p = SECP256K1.base_mul(k)
    assert isinstance(p, Secp256k1Point)
    return p


def raw_sign(d: int, k: int, digest: bytes) -> tuple[Secp256k1Point, int, int]:
    """Textbook ECDSA with a chosen nonce, without normalisation: what a threshold run
    hands to finalize_signature."""
    R = point(k)
    r = int.from_bytes(R.x_bytes, "big") % N
    s = pow(k, -1, N) * (digest_to_int(digest) + r * d) % N
    return R, r, s


def high_s(sig: EcdsaSignature) -> EcdsaSignature:
    return EcdsaSignature(sig.r, N - sig.s, sig.recovery_id ^ 1)


# -- constants and digest_to_int ---------------------------------------------------------


def test_order_constants() -> None:
    assert ORDER == N
    assert HALF_ORDER == (N - 1) // 2
    assert 2 * HALF_ORDER + 1 == ORDER


def test_digest_to_int_is_big_endian_and_not_reduced() -> None:
    assert digest_to_int(b"\x00" * 31 + b"\x01") == 1
    assert digest_to_int(b"\x01" + b"\x00" * 31) == 2**248
    assert digest_to_int(b"\xff" * 32) == 2**256 - 1 > N


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_digest_of_wrong_length_is_rejected_everywhere(length: int) -> None:
    bad = b"\x01" * length
    sig = sign_with_key(KEY, DIGEST)
    for call in (
        lambda: digest_to_int(bad),
        lambda: sign_with_key(KEY, bad),
        lambda: verify(point(KEY), bad, sig),
        lambda: recover(bad, sig),
    ):
        with pytest.raises(ValueError, match="32 bytes"):
            call()


# -- EcdsaSignature ------------------------------------------------------------------------


def test_signature_bytes_round_trip() -> None:
    sig = sign_with_key(KEY, DIGEST)
    data = sig.to_bytes()
    assert len(data) == 64
    assert data == sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big")
    assert EcdsaSignature.from_bytes(data, sig.recovery_id) == sig


@pytest.mark.parametrize("length", [0, 63, 65])
def test_signature_of_wrong_length_is_rejected(length: int) -> None:
    with pytest.raises(ValueError, match="64 bytes"):
        EcdsaSignature.from_bytes(b"\x01" * length, 0)


@pytest.mark.parametrize("recovery_id", [-1, 4, 27])
def test_recovery_id_outside_0_to_3_is_rejected(recovery_id: int) -> None:
    with pytest.raises(ValueError, match="recovery id"):
        EcdsaSignature(1, 1, recovery_id)
    with pytest.raises(ValueError, match="recovery id"):
        EcdsaSignature.from_bytes(b"\x01" * 64, recovery_id)


@pytest.mark.parametrize(("r", "s"), [(-1, 1), (1, -1), (2**256, 1), (1, 2**256)])
def test_r_and_s_must_fit_in_32_bytes(r: int, s: int) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        EcdsaSignature(r, s, 0)


def test_v_is_ethereum_legacy_and_refuses_recovery_ids_it_cannot_express() -> None:
    assert EcdsaSignature(1, 1, 0).v == 27
    assert EcdsaSignature(1, 1, 1).v == 28
    for recovery_id in (2, 3):
        with pytest.raises(ValueError, match="no Ethereum v"):
            _ = EcdsaSignature(1, 1, recovery_id).v


# -- sign, verify, recover -----------------------------------------------------------------


@fast
@given(private_keys, digests)
def test_sign_verify_recover_round_trip(d: int, digest: bytes) -> None:
    sig = sign_with_key(d, digest)
    assert 0 < sig.r < N
    assert 0 < sig.s <= HALF_ORDER
    assert verify(point(d), digest, sig)
    assert recover(digest, sig) == point(d)


@fast
@given(private_keys, digests)
def test_signatures_match_an_independent_implementation(d: int, digest: bytes) -> None:
    # Both sides use RFC 6979 nonces and low s, so the signatures are identical.
    sig = sign_with_key(d, digest)
    theirs = ETH_KEYS.ecdsa_sign(digest, ETH_KEYS.PrivateKey(d.to_bytes(32, "big")))
    assert (theirs.r, theirs.s, theirs.v) == (sig.r, sig.s, sig.recovery_id)
    recovered = ETH_KEYS.Signature(vrs=(sig.recovery_id, sig.r, sig.s)).recover_public_key_from_msg_hash(digest)
    assert recovered.to_checksum_address() == address_from_public_key(point(d))


def test_signing_is_deterministic() -> None:
    assert sign_with_key(KEY, DIGEST) == sign_with_key(KEY, DIGEST)
    assert sign_with_key(KEY, DIGEST) != sign_with_key(KEY, hashlib.sha256(b"other").digest())


@pytest.mark.parametrize("d", [0, N, -1, N + 1])
def test_sign_rejects_out_of_range_private_keys(d: int) -> None:
    with pytest.raises(ValueError, match="private key"):
        sign_with_key(d, DIGEST)


def test_verify_rejects_wrong_digest() -> None:
    sig = sign_with_key(KEY, DIGEST)
    assert not verify(point(KEY), hashlib.sha256(b"harbour!").digest(), sig)


def test_verify_rejects_wrong_key() -> None:
    sig = sign_with_key(KEY, DIGEST)
    assert not verify(point(KEY + 1), DIGEST, sig)


def test_verify_rejects_identity_key() -> None:
    assert not verify(Secp256k1Point(None), DIGEST, sign_with_key(KEY, DIGEST))


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda g: EcdsaSignature(0, g.s, g.recovery_id), id="r=0"),
        pytest.param(lambda g: EcdsaSignature(g.r, 0, g.recovery_id), id="s=0"),
        pytest.param(lambda g: EcdsaSignature(N, g.s, g.recovery_id), id="r=n"),
        pytest.param(lambda g: EcdsaSignature(g.r, N, g.recovery_id), id="s=n"),
        pytest.param(lambda g: EcdsaSignature(g.r, 2**256 - 1, g.recovery_id), id="s=max"),
        pytest.param(high_s, id="high-s"),
    ],
)
def test_verify_rejects_malformed_signatures(tamper: Callable[[EcdsaSignature], EcdsaSignature]) -> None:
    assert not verify(point(KEY), DIGEST, tamper(sign_with_key(KEY, DIGEST)))


def test_high_s_is_the_mathematically_valid_twin_that_verify_refuses() -> None:
    # Recovery (like Ethereum's ecrecover) still finds the key: the refusal is policy.
    twin = high_s(sign_with_key(KEY, DIGEST))
    assert twin.s > HALF_ORDER
    assert recover(DIGEST, twin) == point(KEY)
    assert not verify(point(KEY), DIGEST, twin)


@pytest.mark.parametrize(("r", "s"), [(0, 1), (1, 0), (N, 1), (1, N)])
def test_recover_fails_loudly(r: int, s: int) -> None:
    with pytest.raises(ValueError):
        recover(DIGEST, EcdsaSignature(r, s, 0))


def test_recover_with_wrong_recovery_id_gives_another_key() -> None:
    sig = sign_with_key(KEY, DIGEST)
    other = recover(DIGEST, EcdsaSignature(sig.r, sig.s, sig.recovery_id ^ 1))
    assert other != point(KEY)
    assert verify(other, DIGEST, sig)  # the recovery id is a hint, not part of validity


# -- finalize_signature --------------------------------------------------------------------


@fast
@given(private_keys, private_keys, digests)
def test_finalize_produces_the_low_s_signature_whichever_s_it_is_given(d: int, k: int, digest: bytes) -> None:
    R, r, s = raw_sign(d, k, digest)
    sig = finalize_signature(R, r, s)
    assert sig.s <= HALF_ORDER
    assert verify(point(d), digest, sig)
    assert recover(digest, sig) == point(d)
    # Nonce -k gives R' = -R (same r, other y) and s' = n - s: the same final signature.
    neg_R, neg_r, neg_s = raw_sign(d, N - k, digest)
    assert neg_R == -R and neg_r == r and neg_s == N - s
    assert finalize_signature(neg_R, neg_r, neg_s) == sig


def test_finalize_flips_recovery_id_when_it_lowers_s() -> None:
    # Find a nonce whose raw s is high, so normalisation has work to do.
    k = 1
    while True:
        R, r, s = raw_sign(KEY, k, DIGEST)
        if s > HALF_ORDER:
            break
        k += 1
    sig = finalize_signature(R, r, s)
    parity = R.encode()[0] & 1
    assert sig.s == N - s
    assert sig.recovery_id == parity ^ 1
    assert verify(point(KEY), DIGEST, sig)
    assert recover(DIGEST, sig) == point(KEY)
    # The unnormalised input is mathematically valid but not accepted.
    assert not verify(point(KEY), DIGEST, EcdsaSignature(r, s, parity))
    assert recover(DIGEST, EcdsaSignature(r, s, parity)) == point(KEY)


def test_finalize_keeps_low_s_and_the_parity_of_R() -> None:
    k = 1
    while True:
        R, r, s = raw_sign(KEY, k, DIGEST)
        if s <= HALF_ORDER:
            break
        k += 1
    sig = finalize_signature(R, r, s)
    assert (sig.r, sig.s, sig.recovery_id) == (r, s, R.encode()[0] & 1)


def _point_with_x_at_least_n() -> Secp256k1Point:
    x = N + 1  # x = n itself would give r = 0
    while True:
        try:
            p = SECP256K1.decode_point(b"\x02" + x.to_bytes(32, "big"))
        except GroupError:
            x += 1
            continue
        assert isinstance(p, Secp256k1Point)
        return p


@pytest.mark.parametrize("s", [1, HALF_ORDER, HALF_ORDER + 1, N - 1])
def test_finalize_sets_bit_1_when_R_x_is_at_least_n(s: int) -> None:
    # Nobody knows the discrete log of such an R, but any (r, s, recovery id) recovers
    # to some key, and the signature must then verify under that key.
    R = _point_with_x_at_least_n()
    r = int.from_bytes(R.x_bytes, "big") - N
    sig = finalize_signature(R, r, s)
    assert sig.recovery_id & 2
    assert sig.s <= HALF_ORDER
    key = recover(DIGEST, sig)
    assert verify(key, DIGEST, sig)
    # Without bit 1 recovery reconstructs a different R (x = r) and so a different key.
    assert recover(DIGEST, EcdsaSignature(sig.r, sig.s, sig.recovery_id & 1)) != key


@pytest.mark.parametrize(("r", "s"), [(0, 1), (1, 0), (N, 1), (1, N)])
def test_finalize_rejects_out_of_range_r_or_s(r: int, s: int) -> None:
    with pytest.raises(ValueError, match=r"\[1, n - 1\]"):
        finalize_signature(point(7), r, s)


def test_finalize_rejects_r_that_is_not_R_x() -> None:
    R, r, s = raw_sign(KEY, 12345, DIGEST)
    with pytest.raises(ValueError, match="x coordinate"):
        finalize_signature(R, r + 1, s)
    with pytest.raises(ValueError, match="x coordinate"):
        finalize_signature(point(54321), r, s)


def test_finalize_rejects_identity_nonce() -> None:
    with pytest.raises(ValueError, match="identity"):
        finalize_signature(Secp256k1Point(None), 1, 1)
