"""Proactive refresh (mpc/refresh.py): the same key under entirely new shares, so a
share stolen before a refresh is useless together with shares stolen after it; and
every way a party can cheat in a refresh is refused, naming the cheater whenever the
protocol can tell who it is."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from functools import cache
from typing import Any

import pytest

from harbour.chains.ethereum import keccak256
from harbour.crypto.shamir import interpolate_at_zero
from harbour.mpc import runner
from harbour.mpc.ecdsa_setup import EXTENSION as ECDSA_SETUP
from harbour.mpc.ecdsa_setup import setup_of
from harbour.mpc.envelope import Envelope, UsageError
from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import KeyShare
from harbour.mpc.refresh import RefreshParty
from harbour.mpc.runner import Intercept
from helpers import (
    ALL_SCHEMES,
    BAD_POINTS,
    ECDSA_SCHEME,
    LIFECYCLE_MESSAGE,
    SCHEMES,
    Outcome,
    assert_aborted,
    assert_signs,
    cached_keygen,
    drive,
    ecdsa_signers,
    encode_scalar_raw,
    frost_signers,
    lifecycle_bad_point_cases,
    rewrite,
    session,
    set_field,
)

T, N = 2, 3
CHEATER = 3
HONEST = [1, 2]
# Every scheme at 2-of-3, and one FROST scheme at 3-of-5 (two non-zero coefficients).
SHAPES = [(s, 2, 3) for s in ALL_SCHEMES] + [("frost-ed25519", 3, 5)]


@cache
def refreshed(scheme: str, t: int = T, n: int = N) -> tuple[Mapping[int, KeyShare], Mapping[int, KeyShare]]:
    """One honest key and its refresh, per shape, for this module."""
    old = cached_keygen(scheme, t, n)
    return old, runner.refresh(old)


def refresh_parties(shares: Mapping[int, KeyShare], session_id: bytes | None = None) -> dict[int, RefreshParty]:
    sid = session() if session_id is None else session_id
    return {i: RefreshParty(sid, share) for i, share in shares.items()}


def run_refresh(scheme: str, intercept: Intercept | None = None, t: int = T, n: int = N) -> Outcome:
    return drive(refresh_parties(cached_keygen(scheme, t, n)), intercept)


# -- the honest refresh ---------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "t", "n"), SHAPES)
def test_refresh_keeps_the_group_key_and_changes_every_share(scheme: str, t: int, n: int) -> None:
    old, new = refreshed(scheme, t, n)
    assert sorted(new) == list(range(1, n + 1))
    for i, share in new.items():
        share.check_consistent()
        assert share.identifier == i
        assert (share.scheme, share.threshold, share.parties) == (scheme, t, old[i].parties)
        assert share.group_public_key == old[i].group_public_key
        assert share.secret_share != old[i].secret_share
        assert share.verification_shares == new[1].verification_shares
        assert share.verification_shares[i] != old[i].verification_shares[i]
    # Every t new shares hide the same secret as the old ones; t - 1 do not.
    order = old[1].group.order
    secret = interpolate_at_zero({i: old[i].secret_share for i in range(1, t + 1)}, order)
    for subset in itertools.combinations(sorted(new), t):
        assert interpolate_at_zero({i: new[i].secret_share for i in subset}, order) == secret
    assert interpolate_at_zero({i: new[i].secret_share for i in range(1, t)}, order) != secret


@pytest.mark.parametrize(("scheme", "t", "n"), SHAPES)
def test_every_threshold_subset_of_refreshed_shares_signs(scheme: str, t: int, n: int) -> None:
    _, new = refreshed(scheme, t, n)
    for subset in itertools.combinations(sorted(new), t):
        assert_signs(new, list(subset))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_an_old_share_and_a_new_share_cannot_sign_together(scheme: str) -> None:
    # The signer holding the old share checks the other's signature share against the
    # old verification shares and the other way round, so each blames the other; the
    # invalid aggregate is never released.
    old, new = refreshed(scheme)
    outcome = drive(frost_signers({1: old[1], 2: new[2]}, [1, 2], LIFECYCLE_MESSAGE))
    assert outcome.results == {}
    assert outcome.culprits(1) == frozenset({2})
    assert outcome.culprits(2) == frozenset({1})
    for abort in outcome.aborts.values():
        assert "aggregate signature does not verify" in abort.reason


def test_an_old_ecdsa_share_and_a_new_one_are_refused_as_signing_different_keys() -> None:
    # The signing inputs bind the key fingerprint (which covers the verification
    # shares), so the two signers see different inputs and stop in round two.
    old, new = refreshed(ECDSA_SCHEME)
    outcome = drive(ecdsa_signers({1: old[1], 2: new[2]}, [1, 2], keccak256(LIFECYCLE_MESSAGE)))
    assert outcome.results == {}
    for i, other in ((1, 2), (2, 1)):
        assert outcome.culprits(i) == frozenset()
        assert outcome.aborts[i].reason == (
            f"parties [{other}] were asked to sign something else (another digest, signer set or key)"
        )


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_refresh_keeps_the_chain_code(scheme: str) -> None:
    old, new = refreshed(scheme)
    code = old[1].extensions[CHAIN_CODE]
    assert len(code) == 32
    assert all(share.extensions[CHAIN_CODE] == code for share in new.values())


def test_refresh_drops_the_old_ecdsa_setup_and_runs_a_new_one() -> None:
    old, new = refreshed(ECDSA_SCHEME)
    # The refresh protocol alone drops the pairwise setup that belongs to the old shares ...
    bare = drive(refresh_parties(old))
    assert bare.aborts == {}
    assert all(ECDSA_SETUP not in share.extensions for share in bare.results.values())
    # ... and the runner's refresh ends with a new one over the same committee.
    for i, share in new.items():
        before, after = setup_of(old[i]), setup_of(share)
        assert set(after.peers) == set(before.peers) == set(share.parties) - {i}
        for j in after.peers:
            assert after.peers[j].zero_seed != before.peers[j].zero_seed
            assert after.peers[j].as_alice != before.peers[j].as_alice
            assert after.peers[j].as_bob != before.peers[j].as_bob
        # Zero-sharing seeds are pairwise: both ends of a pair agree.
        for j in after.peers:
            assert after.peers[j].zero_seed == setup_of(new[j]).peers[i].zero_seed


def test_refresh_with_a_missing_party_is_refused() -> None:
    old = cached_keygen("frost-secp256k1", T, N)
    with pytest.raises(UsageError, match="a refresh needs every party of the key"):
        runner.refresh({1: old[1], 2: old[2]})


# -- commitments ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("scheme", "t", "n"), SHAPES)
@pytest.mark.parametrize("length", ["t", "t-2"])
def test_commitment_vector_of_wrong_length_names_the_sender(scheme: str, t: int, n: int, length: str) -> None:
    # A refresh polynomial has t - 1 committed coefficients (its constant term is zero):
    # one more would raise the key's threshold, one fewer would lower it.
    g = cached_keygen(scheme, t, n)[1].group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        if length == "t":
            body["commitments"] = [*body["commitments"], g.base_mul(g.random_scalar()).encode()]
        else:
            body["commitments"] = body["commitments"][:-1]
        assert len(body["commitments"]) == (t if length == "t" else t - 2)
        return body

    outcome = run_refresh(scheme, rewrite(1, n, mutate), t, n)
    assert_aborted(outcome, range(1, n), {n}, f"refresh commitments: expected exactly {t - 1} encoded points")


@pytest.mark.parametrize(("scheme", "kind"), lifecycle_bad_point_cases())
def test_invalid_commitment_point_names_the_sender(scheme: str, kind: str) -> None:
    bad = BAD_POINTS[cached_keygen(scheme, T, N)[1].curve][kind]
    outcome = run_refresh(scheme, rewrite(1, CHEATER, set_field("commitments", [bad])))
    assert_aborted(outcome, HONEST, {CHEATER}, "refresh commitments: ")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_commitment_that_is_not_bytes_names_the_sender(scheme: str) -> None:
    outcome = run_refresh(scheme, rewrite(1, CHEATER, set_field("commitments", [7])))
    assert_aborted(outcome, HONEST, {CHEATER}, "expected exactly 1 encoded points")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_commitments_equivocated_to_one_party_are_caught_by_the_echo(scheme: str) -> None:
    # Party 3 shows party 2 another polynomial than everyone else; each version alone is
    # well formed, only comparing what was seen reveals it, and no one can say who lied.
    g = cached_keygen(scheme, T, N)[1].group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["commitments"] = [g.base_mul(g.random_scalar()).encode() for _ in body["commitments"]]
        return body

    outcome = run_refresh(scheme, rewrite(1, CHEATER, mutate, to=2))
    assert outcome.results == {}
    assert_aborted(outcome, [1, 2, 3], set(), "someone equivocated")


# -- refresh shares -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_tampered_refresh_share_names_the_sender(scheme: str) -> None:
    # Adding 1 is dealing a polynomial with a non-zero constant term: it would move the key.
    g = cached_keygen(scheme, T, N)[1].group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["share"] = g.encode_scalar(g.decode_scalar(body["share"]) + 1)
        return body

    outcome = run_refresh(scheme, rewrite(2, CHEATER, mutate))
    assert_aborted(outcome, HONEST, {CHEATER}, "refresh share does not match the sender's commitments")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_out_of_range_refresh_share_names_the_sender(scheme: str) -> None:
    g = cached_keygen(scheme, T, N)[1].group
    outcome = run_refresh(scheme, rewrite(2, CHEATER, set_field("share", encode_scalar_raw(g, g.order))))
    assert_aborted(outcome, HONEST, {CHEATER}, "invalid refresh share")


# -- another key ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_party_refreshing_a_stale_share_of_the_key_aborts_everyone(scheme: str) -> None:
    # Party 3 missed the last refresh: same group key, other verification shares, so
    # another fingerprint. Refreshing on top of it would leave its share on a dead polynomial.
    old, new = refreshed(scheme)
    outcome = drive(refresh_parties({1: new[1], 2: new[2], 3: old[3]}))
    assert outcome.results == {}
    assert_aborted(outcome, [1, 2, 3], set(), "is refreshing a different key (or key state)")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_relay_rewriting_the_key_fingerprint_aborts_the_recipient(scheme: str) -> None:
    outcome = run_refresh(scheme, rewrite(1, CHEATER, set_field("key", bytes(64)), to=1))
    assert_aborted(outcome, [1], set(), f"party {CHEATER} is refreshing a different key")
    assert outcome.results.keys().isdisjoint({1}), "party 1 must not finish"


def test_one_of_n_key_refresh_is_refused() -> None:
    """With t = 1 every share is the key itself: a refresh could not change anything."""
    shares = runner.keygen("frost-secp256k1", 1, 3)
    with pytest.raises(UsageError, match="1-of-n"):
        runner.refresh(shares)
