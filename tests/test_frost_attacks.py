"""Every way a signer (or the network) can cheat in FROST signing is refused:
no invalid signature is ever returned, and the cheater is named when that is provable."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest
from coincurve import PublicKeyXOnly

from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.crypto.shamir import trusted_dealer_keygen
from harbour.mpc import frost, runner, taproot
from harbour.mpc.ciphersuite import FROST_ED25519, FROST_SECP256K1, FROST_TAPROOT, Ciphersuite, suite_by_name
from harbour.mpc.envelope import Envelope, ProtocolAbort, UsageError
from harbour.mpc.frost_party import FrostSigner, signing_public_key
from harbour.mpc.keyshare import KeyShare
from harbour.mpc.runner import Intercept
from helpers import (
    BAD_POINTS,
    SCHEMES,
    Outcome,
    bad_point_cases,
    cached_keygen,
    drive,
    drop_field,
    encode_scalar_raw,
    frost_signers,
    recorder,
    rewrite,
    session,
    set_field,
)

MESSAGE = hashlib.sha256(b"pay 1 BTC to the cold wallet").digest()
SIGNERS = [1, 2, 3]
CHEATER = 2
HONEST = [1, 3]


def run_signing(
    scheme: str,
    intercept: Intercept | None = None,
    signers: list[int] = SIGNERS,
    shares: Mapping[int, KeyShare] | None = None,
    **options: Any,
) -> Outcome:
    shares = shares or cached_keygen(scheme, 2, 3)
    return drive(frost_signers(shares, signers, MESSAGE, **options), intercept)


def verifies(scheme: str, signature: bytes, shares: Mapping[int, KeyShare], **options: Any) -> bool:
    suite = suite_by_name(scheme)
    pk = signing_public_key(suite, next(iter(shares.values())).group_public_key, **options)
    return suite.verify(pk, MESSAGE, signature)


def assert_all_blame(outcome: Outcome, culprit: int, honest: list[int], match: str | None = None) -> None:
    for i in honest:
        assert outcome.culprits(i) == frozenset({culprit}), outcome.aborts[i]
        if match is not None:
            assert match in outcome.aborts[i].reason
        assert i not in outcome.results


def assert_no_signature_anywhere(outcome: Outcome) -> None:
    assert outcome.results == {}
    assert set(outcome.aborts) == set(outcome.parties)


# -- bad signature shares -------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signature_share_that_does_not_verify_names_its_sender(scheme: str) -> None:
    g = suite_by_name(scheme).group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["share"] = g.encode_scalar((g.decode_scalar(body["share"]) + 1) % g.order)
        return body

    outcome = run_signing(scheme, rewrite(2, CHEATER, mutate))
    assert_all_blame(outcome, CHEATER, HONEST, "does not verify")
    # The cheater itself saw only honest shares; whatever it returns is valid.
    for sig in outcome.results.values():
        assert verifies(scheme, sig, cached_keygen(scheme, 2, 3))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signer_given_another_message_aborts_with_no_signature(scheme: str) -> None:
    # Signer 2 was handed a different message: the round-two echo differs, so
    # nobody blames an honest share computed over another message.
    signers = frost_signers(cached_keygen(scheme, 2, 3), SIGNERS, MESSAGE)
    signers[CHEATER].message = b"something else"
    outcome = drive(signers)
    assert_no_signature_anywhere(outcome)
    for abort in outcome.aborts.values():
        assert abort.culprits == frozenset() and "message" in abort.reason


def test_taproot_signers_given_different_merkle_roots_abort_with_no_signature() -> None:
    shares = cached_keygen("frost-taproot", 2, 3)
    sid = session()
    signers = {
        1: FrostSigner(sid, shares[1], [1, 2], MESSAGE, merkle_root=bytes(32)),
        2: FrostSigner(sid, shares[2], [1, 2], MESSAGE, merkle_root=b"\x01" * 32),
    }
    outcome = drive(signers)
    assert_no_signature_anywhere(outcome)
    for abort in outcome.aborts.values():
        assert abort.culprits == frozenset()


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("offset", [0, 1], ids=["order", "order+1"])
def test_out_of_range_signature_share_names_its_sender(scheme: str, offset: int) -> None:
    g = suite_by_name(scheme).group
    outcome = run_signing(scheme, rewrite(2, CHEATER, set_field("share", encode_scalar_raw(g, g.order + offset))))
    assert_all_blame(outcome, CHEATER, HONEST, "invalid signature share")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("length", [0, 31, 33])
def test_signature_share_of_wrong_length_names_its_sender(scheme: str, length: int) -> None:
    outcome = run_signing(scheme, rewrite(2, CHEATER, set_field("share", b"\x01" * length)))
    assert_all_blame(outcome, CHEATER, HONEST, "invalid signature share")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signature_share_of_wrong_type_names_its_sender(scheme: str) -> None:
    outcome = run_signing(scheme, rewrite(2, CHEATER, set_field("share", 5)))
    assert_all_blame(outcome, CHEATER, HONEST, "wrong type")


# -- bad nonce commitments ------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "kind"), bad_point_cases())
@pytest.mark.parametrize("which", ["hiding", "binding"])
def test_invalid_nonce_commitment_names_its_sender(scheme: str, kind: str, which: str) -> None:
    bad = BAD_POINTS[suite_by_name(scheme).group.name][kind]
    outcome = run_signing(scheme, rewrite(1, CHEATER, set_field(which, bad)))
    assert_all_blame(outcome, CHEATER, HONEST, "invalid nonce commitment")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_nonce_commitment_missing_a_field_names_its_sender(scheme: str) -> None:
    assert_all_blame(run_signing(scheme, rewrite(1, CHEATER, drop_field("binding"))), CHEATER, HONEST, "missing")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_nonce_commitment_with_an_extra_field_names_its_sender(scheme: str) -> None:
    outcome = run_signing(scheme, rewrite(1, CHEATER, set_field("share", b"\x00" * 32)))
    assert_all_blame(outcome, CHEATER, HONEST, "unexpected")


# -- replay and equivocation ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_replayed_commitment_from_another_session_names_its_sender(scheme: str) -> None:
    shares = cached_keygen(scheme, 2, 3)
    log: list[tuple[Envelope, int]] = []
    runner.sign(shares, SIGNERS, MESSAGE, intercept=recorder(log))
    old = next(env for env, dest in log if env.round == 1 and env.sender == CHEATER and dest == 1)

    signers = frost_signers(shares, SIGNERS, MESSAGE)
    for s in signers.values():
        s.start()
    with pytest.raises(ProtocolAbort, match="another session") as info:
        signers[1].receive(old)
    assert info.value.culprits == frozenset({CHEATER})


@pytest.mark.parametrize("scheme", SCHEMES)
def test_replayed_commitment_rewrapped_for_this_session_yields_no_signature(scheme: str) -> None:
    # A relay that re-addresses an old commitment to the new session cannot make
    # anyone sign over it: the signers' commitment-list hashes disagree.
    shares = cached_keygen(scheme, 2, 3)
    log: list[tuple[Envelope, int]] = []
    runner.sign(shares, SIGNERS, MESSAGE, intercept=recorder(log))
    old = next(env for env, dest in log if env.round == 1 and env.sender == CHEATER and dest == 1)

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 1 and env.sender == CHEATER and dest == 1:
            return dataclasses.replace(env, payload=old.payload)
        return env

    outcome = run_signing(scheme, intercept, shares=shares)
    assert_no_signature_anywhere(outcome)
    for abort in outcome.aborts.values():
        assert abort.culprits == frozenset() and "equivocat" in abort.reason


@pytest.mark.parametrize("scheme", SCHEMES)
def test_equivocated_commitments_abort_with_no_signature(scheme: str) -> None:
    # Party 3 shows party 2 different (valid) commitments than party 1 sees.
    g = suite_by_name(scheme).group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        return {"hiding": g.base_mul(g.random_scalar()).encode(), "binding": g.base_mul(g.random_scalar()).encode()}

    outcome = run_signing(scheme, rewrite(1, 3, mutate, to=2))
    assert_no_signature_anywhere(outcome)
    for abort in outcome.aborts.values():
        assert abort.culprits == frozenset()
        assert "equivocat" in abort.reason


@pytest.mark.parametrize("scheme", SCHEMES)
def test_false_round_two_echo_aborts_with_no_signature(scheme: str) -> None:
    outcome = run_signing(scheme, rewrite(2, CHEATER, set_field("echo", bytes(64))))
    for i in HONEST:
        assert outcome.culprits(i) == frozenset()
        assert i not in outcome.results


# -- single-use nonces ------------------------------------------------------------------------------


def dealt_keys(scheme: str) -> dict[int, frost.SigningKey]:
    suite = suite_by_name(scheme)
    g = suite.group
    dealt = trusted_dealer_keygen(g, g.random_scalar(), 2, 3)
    keys = {
        i: frost.SigningKey(i, s, dealt.group_public_key, dealt.verification_shares) for i, s in dealt.shares.items()
    }
    return {i: taproot.signing_key(k, tweak=False) if suite.bip340 else k for i, k in keys.items()}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signing_nonces_refuse_a_second_take(scheme: str) -> None:
    nonces = frost.commit(suite_by_name(scheme), 1, 12345)
    assert not nonces.used
    hiding, binding = nonces.take()
    assert nonces.used
    with pytest.raises(frost.NonceReuseError):
        nonces.take()
    assert str(hiding) not in repr(nonces) and str(binding) not in repr(nonces)


def local_round_one(
    suite: Ciphersuite, keys: dict[int, Any], message: bytes = MESSAGE
) -> tuple[dict[int, frost.SigningNonces], frost.SigningContext]:
    """Round one for ``keys`` (signer -> key) done by hand: nonces and the shared context."""
    nonces = {i: frost.commit(suite, i, k.secret_share) for i, k in keys.items()}
    ctx = frost.signing_context(
        suite, keys[min(keys)].group_public_key, [n.commitment for n in nonces.values()], message
    )
    return nonces, ctx


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sign_share_refuses_used_nonces(scheme: str) -> None:
    suite = suite_by_name(scheme)
    keys = dealt_keys(scheme)
    nonces, ctx = local_round_one(suite, {i: keys[i] for i in (1, 2)})
    pk = keys[1].group_public_key
    frost.sign_share(suite, keys[1], nonces[1], ctx)
    with pytest.raises(frost.NonceReuseError):
        frost.sign_share(suite, keys[1], nonces[1], ctx)
    other = frost.signing_context(suite, pk, [n.commitment for n in nonces.values()], b"another message")
    with pytest.raises(frost.NonceReuseError):
        frost.sign_share(suite, keys[1], nonces[1], other)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sign_share_refuses_another_signers_nonces(scheme: str) -> None:
    suite = suite_by_name(scheme)
    keys = dealt_keys(scheme)
    nonces = {i: frost.commit(suite, i, keys[i].secret_share) for i in (1, 2)}
    ctx = frost.signing_context(suite, keys[1].group_public_key, [n.commitment for n in nonces.values()], MESSAGE)
    with pytest.raises(ValueError, match="another signer"):
        frost.sign_share(suite, keys[1], nonces[2], ctx)
    assert not nonces[2].used


@pytest.mark.parametrize("scheme", SCHEMES)
def test_sign_share_refuses_a_list_without_our_commitment(scheme: str) -> None:
    suite = suite_by_name(scheme)
    keys = dealt_keys(scheme)
    ours = frost.commit(suite, 1, keys[1].secret_share)
    stale = frost.commit(suite, 1, keys[1].secret_share)
    theirs = frost.commit(suite, 2, keys[2].secret_share)
    ctx = frost.signing_context(suite, keys[1].group_public_key, [stale.commitment, theirs.commitment], MESSAGE)
    with pytest.raises(ValueError, match="not in the commitment list"):
        frost.sign_share(suite, keys[1], ours, ctx)
    assert not ours.used


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signer_cannot_be_started_twice(scheme: str) -> None:
    signer = frost_signers(cached_keygen(scheme, 2, 3), [1, 2], MESSAGE)[1]
    signer.start()
    with pytest.raises(UsageError, match="already"):
        signer.start()


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signer_consumes_its_nonces_before_its_share_leaves(scheme: str) -> None:
    signers = frost_signers(cached_keygen(scheme, 2, 3), [1, 2], MESSAGE)
    (mine,) = signers[1].start()
    (theirs,) = signers[2].start()
    (share_env,) = signers[1].receive(theirs)
    assert share_env.round == 2
    nonces, ctx = signers[1]._nonces, signers[1]._ctx
    assert nonces is not None and ctx is not None and nonces.used
    with pytest.raises(frost.NonceReuseError):
        frost.sign_share(signers[1].suite, signers[1].key, nonces, ctx)
    assert mine.round == 1


# -- who may sign -----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(
    ("me", "signers"),
    [(1, [1]), (1, [1, 4]), (1, [1, 2, 2]), (3, [1, 2]), (1, [0, 1]), (1, [])],
    ids=["fewer-than-t", "not-a-key-party", "duplicate", "me-not-signing", "zero-id", "nobody"],
)
def test_signer_construction_refuses(scheme: str, me: int, signers: list[int]) -> None:
    share = cached_keygen(scheme, 2, 3)[me]
    with pytest.raises(UsageError):
        FrostSigner(session(), share, signers, MESSAGE)


@pytest.mark.parametrize("scheme", ["frost-secp256k1", "frost-ed25519"])
@pytest.mark.parametrize("option", [{"merkle_root": bytes(32)}, {"tweak": False}], ids=["merkle_root", "no-tweak"])
def test_taproot_options_are_refused_for_other_schemes(scheme: str, option: dict[str, Any]) -> None:
    with pytest.raises(UsageError, match="Taproot"):
        FrostSigner(session(), cached_keygen(scheme, 2, 3)[1], [1, 2], MESSAGE, **option)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signer_session_id_of_wrong_length_is_refused(scheme: str) -> None:
    with pytest.raises(UsageError):
        FrostSigner(bytes(31), cached_keygen(scheme, 2, 3)[1], [1, 2], MESSAGE)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_shares_of_two_different_keys_never_make_a_signature(scheme: str) -> None:
    a, b = runner.keygen(scheme, 2, 3), cached_keygen(scheme, 2, 3)
    outcome = run_signing(scheme, signers=[1, 2], shares={1: a[1], 2: b[2]})
    assert_no_signature_anywhere(outcome)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_aggregate_names_a_share_made_with_another_key(scheme: str) -> None:
    suite = suite_by_name(scheme)
    keys, other = dealt_keys(scheme), dealt_keys(scheme)
    nonces, ctx = local_round_one(suite, {1: keys[1], 3: other[3]})
    pk = keys[1].group_public_key
    shares = {1: frost.sign_share(suite, keys[1], nonces[1], ctx), 3: frost.sign_share(suite, other[3], nonces[3], ctx)}
    with pytest.raises(ProtocolAbort) as info:
        frost.aggregate(suite, ctx, shares, pk, keys[1].verification_shares, MESSAGE)
    assert info.value.culprits == frozenset({3})


@pytest.mark.parametrize("scheme", SCHEMES)
def test_aggregate_refuses_a_forged_share_without_returning_a_signature(scheme: str) -> None:
    suite = suite_by_name(scheme)
    keys = dealt_keys(scheme)
    nonces, ctx = local_round_one(suite, {i: keys[i] for i in (1, 3)})
    pk = keys[1].group_public_key
    shares = {i: frost.sign_share(suite, keys[i], nonces[i], ctx) for i in (1, 3)}
    assert suite.verify(pk, MESSAGE, frost.aggregate(suite, ctx, shares, pk, keys[1].verification_shares, MESSAGE))
    shares[3] = (shares[3] + 1) % suite.group.order
    with pytest.raises(ProtocolAbort) as info:
        frost.aggregate(suite, ctx, shares, pk, keys[1].verification_shares, MESSAGE)
    assert info.value.culprits == frozenset({3})


def dealt_keys_of(scheme: str, t: int, n: int) -> dict[int, frost.SigningKey]:
    suite = suite_by_name(scheme)
    g = suite.group
    dealt = trusted_dealer_keygen(g, g.random_scalar(), t, n)
    keys = {
        i: frost.SigningKey(i, s, dealt.group_public_key, dealt.verification_shares) for i, s in dealt.shares.items()
    }
    return {i: taproot.signing_key(k, tweak=False) if suite.bip340 else k for i, k in keys.items()}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("cheaters", [{9}, {1}, {20}, {2, 14}, {1, 5, 9, 13, 17}])
def test_aggregate_names_exactly_the_bad_shares_among_fifteen_signers(scheme: str, cheaters: set[int]) -> None:
    # Verifying the aggregate first must not weaken blame: once it fails, every
    # share is judged on its own, so exactly the bad ones are named.
    suite = suite_by_name(scheme)
    keys = dealt_keys_of(scheme, 15, 20)
    signers = [1, 2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 16, 17, 19, 20]
    nonces, ctx = local_round_one(suite, {i: keys[i] for i in signers})
    pk = keys[1].group_public_key
    shares = {i: frost.sign_share(suite, keys[i], nonces[i], ctx) for i in signers}
    assert frost.invalid_shares(suite, ctx, shares, keys[1].verification_shares) == []
    assert cheaters <= set(signers)
    for i in cheaters:
        shares[i] = (shares[i] + i) % suite.group.order
    with pytest.raises(ProtocolAbort) as info:
        frost.aggregate(suite, ctx, shares, pk, keys[1].verification_shares, MESSAGE)
    assert info.value.culprits == frozenset(cheaters)
    assert frost.invalid_shares(suite, ctx, shares, keys[1].verification_shares) == sorted(cheaters)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_shares_that_cancel_out_still_make_a_valid_signature(scheme: str) -> None:
    # Two shares moved by +d and -d sum to the right z: the signature verifies,
    # so it is released (nothing invalid leaves), as RFC 9591 section 5.3 allows.
    suite = suite_by_name(scheme)
    keys = dealt_keys_of(scheme, 3, 5)
    nonces, ctx = local_round_one(suite, {i: keys[i] for i in (1, 2, 4)})
    pk = keys[1].group_public_key
    shares = {i: frost.sign_share(suite, keys[i], nonces[i], ctx) for i in (1, 2, 4)}
    n = suite.group.order
    shares[2], shares[4] = (shares[2] + 7) % n, (shares[4] - 7) % n
    assert suite.verify(pk, MESSAGE, frost.aggregate(suite, ctx, shares, pk, keys[1].verification_shares, MESSAGE))
    assert frost.invalid_shares(suite, ctx, shares, keys[1].verification_shares) == [2, 4]


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bad_signature_share_names_its_sender_among_seven_signers(scheme: str) -> None:
    g = suite_by_name(scheme).group
    signers, cheater = [1, 2, 4, 5, 7, 8, 10], 5

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["share"] = g.encode_scalar((g.decode_scalar(body["share"]) - 1) % g.order)
        return body

    shares = cached_keygen(scheme, 7, 10)
    outcome = drive(frost_signers(shares, signers, MESSAGE), rewrite(2, cheater, mutate))
    assert_all_blame(outcome, cheater, [i for i in signers if i != cheater], "does not verify")


# -- the signatures verify with independent verifiers ---------------------------------------------


def keygen_until(scheme: str, predicate: Callable[[Secp256k1Point], bool]) -> Mapping[int, KeyShare]:
    for _ in range(64):
        shares = runner.keygen(scheme, 2, 3)
        pk = shares[1].group_public_key
        assert isinstance(pk, Secp256k1Point)
        if predicate(pk):
            return shares
    raise AssertionError("no key with the wanted property in 64 tries")


def bip341_output_x(internal: Secp256k1Point, merkle_root: bytes = b"") -> bytes:
    """BIP-341's output key computed with libsecp256k1's x-only tweak, not harbour's."""
    tag = hashlib.sha256(b"TapTweak").digest()
    tweak = hashlib.sha256(tag + tag + internal.x_bytes + merkle_root).digest()
    key = PublicKeyXOnly(internal.x_bytes)
    key.tweak_add(tweak)
    return key.format()


@pytest.mark.parametrize("parity", ["even", "odd"])
def test_taproot_key_path_signature_verifies_under_the_bip341_output_key(parity: str) -> None:
    shares = keygen_until("frost-taproot", lambda pk: pk.has_even_y == (parity == "even"))
    internal = shares[1].group_public_key
    assert isinstance(internal, Secp256k1Point)
    sig = runner.sign(shares, [1, 3], MESSAGE)
    output_x = bip341_output_x(internal)
    assert taproot.output_key(internal).x_bytes == output_x
    assert PublicKeyXOnly(output_x).verify(sig, MESSAGE)
    assert not PublicKeyXOnly(internal.x_bytes).verify(sig, MESSAGE)


def test_taproot_signature_with_merkle_root_verifies_under_the_committed_output_key() -> None:
    shares = cached_keygen("frost-taproot", 2, 3)
    internal = shares[1].group_public_key
    assert isinstance(internal, Secp256k1Point)
    root = hashlib.sha256(b"script tree").digest()
    sig = runner.sign(shares, [2, 3], MESSAGE, merkle_root=root)
    output_x = bip341_output_x(internal, root)
    assert taproot.output_key(internal, root).x_bytes == output_x
    assert PublicKeyXOnly(output_x).verify(sig, MESSAGE)
    assert not PublicKeyXOnly(bip341_output_x(internal)).verify(sig, MESSAGE)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_taproot_merkle_root_of_wrong_length_is_refused(length: int) -> None:
    shares = cached_keygen("frost-taproot", 2, 3)
    with pytest.raises(taproot.TaprootError, match="32 bytes"):
        runner.sign(shares, [1, 2], MESSAGE, merkle_root=b"\x01" * length)


@pytest.mark.parametrize("parity", ["even", "odd"])
def test_taproot_untweaked_signature_verifies_under_the_even_y_internal_key(parity: str) -> None:
    shares = keygen_until("frost-taproot", lambda pk: pk.has_even_y == (parity == "even"))
    internal = shares[1].group_public_key
    assert isinstance(internal, Secp256k1Point)
    sig = runner.sign(shares, [1, 2, 3], MESSAGE, tweak=False)
    assert PublicKeyXOnly(internal.x_bytes).verify(sig, MESSAGE)
    assert not PublicKeyXOnly(bip341_output_x(internal)).verify(sig, MESSAGE)
    assert FROST_TAPROOT.verify(taproot.even_y(internal), MESSAGE, sig)


def test_taproot_signs_whatever_the_parity_of_the_group_commitment() -> None:
    shares = cached_keygen("frost-taproot", 2, 3)
    output_x = taproot.output_key(shares[1].group_public_key).x_bytes
    seen = set()
    for _ in range(64):
        signers = frost_signers(shares, [1, 2], MESSAGE)
        sigs = runner.run(signers)
        ctx = signers[1]._ctx
        assert ctx is not None and isinstance(ctx.R, Secp256k1Point)
        seen.add(ctx.R.has_even_y)
        assert PublicKeyXOnly(output_x).verify(sigs[1], MESSAGE)
        if len(seen) == 2:
            break
    assert seen == {True, False}


def test_ed25519_signature_verifies_with_libsodium() -> None:
    shares = cached_keygen("frost-ed25519", 2, 3)
    sig = runner.sign(shares, [1, 3], MESSAGE)
    key = nacl.signing.VerifyKey(shares[1].group_public_key.encode())
    assert key.verify(MESSAGE, sig) == MESSAGE
    with pytest.raises(nacl.exceptions.BadSignatureError):
        key.verify(MESSAGE + b"!", sig)


def test_secp256k1_signature_verifies_and_is_bound_to_key_and_message() -> None:
    shares = cached_keygen("frost-secp256k1", 2, 3)
    pk = shares[1].group_public_key
    sig = runner.sign(shares, [2, 3], MESSAGE)
    assert len(sig) == 65
    assert FROST_SECP256K1.verify(pk, MESSAGE, sig)
    assert not FROST_SECP256K1.verify(pk, MESSAGE + b"!", sig)
    assert not FROST_SECP256K1.verify(pk + pk, MESSAGE, sig)


@pytest.mark.parametrize("suite", [FROST_SECP256K1, FROST_ED25519, FROST_TAPROOT], ids=lambda s: s.name)
def test_verify_refuses_malformed_signatures(suite: Any) -> None:
    shares = cached_keygen(suite.name, 2, 3)
    pk = signing_public_key(suite, shares[1].group_public_key)
    sig = runner.sign(shares, [1, 2], MESSAGE)
    g = suite.group
    n = len(sig) - 32
    assert suite.verify(pk, MESSAGE, sig)
    z = g.decode_scalar(sig[n:])
    for bad in (
        b"",
        sig[:-1],
        sig + b"\x00",
        sig[:n] + encode_scalar_raw(g, (z + 1) % g.order),
        sig[:n] + encode_scalar_raw(g, g.order),
        sig[:n] + b"\xff" * 32,
        bytes(n) + sig[n:],
    ):
        assert not suite.verify(pk, MESSAGE, bad)
