"""Resharing (mpc/reshare.py): a key moves to a new committee and threshold with its
group key, chain code and signing ability intact; dealers that leave keep nothing; and
every way a dealer (or a relay) can cheat is refused, naming the dealer where the
protocol can tell."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import pytest

from harbour.crypto.group import Group
from harbour.crypto.shamir import evaluate, interpolate_at_zero, lagrange_coefficient, trusted_dealer_keygen
from harbour.mpc import runner
from harbour.mpc.ecdsa_setup import setup_of
from harbour.mpc.envelope import Envelope, UsageError
from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import KeyShare, PublicKeyPackage, shares_from_dealer
from harbour.mpc.reshare import ReshareParty, ReshareResult
from harbour.mpc.runner import Intercept
from helpers import (
    ALL_SCHEMES,
    BAD_POINTS,
    ECDSA_SCHEME,
    SCHEMES,
    Mutation,
    Outcome,
    assert_aborted,
    assert_signs,
    cached_keygen,
    drive,
    encode_scalar_raw,
    lifecycle_bad_point_cases,
    rewrite,
    session,
    set_field,
)

# The attacks: a 2-of-3 key dealt by all three to a 3-of-5 committee; dealer 3 cheats.
OLD_T, OLD_N = 2, 3
DEALERS = [1, 2, 3]
NEW_T = 3
NEW_PARTIES = [1, 2, 3, 4, 5]
CHEATER = 3
HONEST_NEW = [1, 2, 4, 5]

# (old t, old n, dealers, new t, new parties)
SHAPES = {
    "2-of-3 to 3-of-5": (2, 3, [1, 2, 3], 3, [1, 2, 3, 4, 5]),
    "3-of-5 to 2-of-3": (3, 5, [1, 2, 3, 4, 5], 2, [1, 2, 3]),
    "replace party 3 by party 4": (2, 3, [1, 2], 2, [1, 2, 4]),
    "to a disjoint committee": (2, 3, [2, 3], 2, [4, 5, 6]),
}


def reshare_parties(
    old: Mapping[int, KeyShare],
    dealers: Sequence[int],
    new_threshold: int,
    new_parties: Sequence[int],
    *,
    session_id: bytes | None = None,
    overrides: Mapping[int, Mapping[str, Any]] | None = None,
) -> dict[int, ReshareParty]:
    """Every dealer and new party; ``overrides`` changes one party's view of the session."""
    sid = session() if session_id is None else session_id
    public = old[dealers[0]].public
    metadata = {CHAIN_CODE: old[dealers[0]].extensions[CHAIN_CODE]}
    parties = {}
    for i in sorted(set(dealers) | set(new_parties)):
        args: dict[str, Any] = {
            "public": public,
            "dealers": dealers,
            "new_threshold": new_threshold,
            "new_parties": new_parties,
            "share": old.get(i) if i in dealers else None,
            "metadata": metadata,
        }
        args.update((overrides or {}).get(i, {}))
        parties[i] = ReshareParty(
            sid,
            i,
            args["public"],
            args["dealers"],
            args["new_threshold"],
            args["new_parties"],
            share=args["share"],
            metadata=args["metadata"],
        )
    return parties


def old_key(scheme: str) -> Mapping[int, KeyShare]:
    return cached_keygen(scheme, OLD_T, OLD_N)


def run_attack(
    scheme: str, intercept: Intercept | None = None, overrides: Mapping[int, Mapping[str, Any]] | None = None
) -> Outcome:
    return drive(reshare_parties(old_key(scheme), DEALERS, NEW_T, NEW_PARTIES, overrides=overrides), intercept)


def secret_of(shares: Mapping[int, KeyShare]) -> int:
    """The key itself, reconstructed by the test (never by the protocol)."""
    first = next(iter(shares.values()))
    subset = dict(itertools.islice(((i, s.secret_share) for i, s in sorted(shares.items())), first.threshold))
    return interpolate_at_zero(subset, first.group.order)


def redeal(group: Group, constant: int, degree_plus_one: int) -> Mutation:
    """Replace a dealer's message by a consistent dealing of ``constant``: the commitments
    and every recipient's share fit one polynomial (the same one for the whole session)."""
    polynomials: dict[bytes, list[int]] = {}

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        poly = polynomials.setdefault(
            env.session_id, [constant, *(group.random_scalar() for _ in range(degree_plus_one - 1))]
        )
        body["commitments"] = [group.base_mul(a).encode() for a in poly]
        body["share"] = group.encode_scalar(evaluate(poly, dest, group.order))
        return body

    return mutate


def dealer_weighted_share(scheme: str, dealer: int = CHEATER) -> int:
    """``λ_i(D)·x_i``: what dealer ``i`` is supposed to deal."""
    share = old_key(scheme)[dealer]
    return lagrange_coefficient(DEALERS, dealer, share.group.order) * share.secret_share % share.group.order


@cache
def another_package(scheme: str, same_key: bool) -> PublicKeyPackage:
    """A public key package of another key, or another sharing of the same key."""
    old = old_key(scheme)
    g = old[1].group
    secret = secret_of(old) if same_key else g.random_scalar()
    dealt = trusted_dealer_keygen(g, secret, OLD_T, OLD_N)
    return shares_from_dealer(scheme, old[1].curve, dealt)[1].public


# -- honest resharing -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_resharing_keeps_the_key_and_every_new_threshold_subset_signs(scheme: str, shape: str) -> None:
    old_t, old_n, dealers, new_t, new_parties = SHAPES[shape]
    old = cached_keygen(scheme, old_t, old_n)
    results = runner.run(reshare_parties(old, dealers, new_t, new_parties))
    assert set(results) == set(dealers) | set(new_parties)
    leavers = set(dealers) - set(new_parties)
    assert {i for i, r in results.items() if r.share is None} == leavers
    assert all(results[i] == ReshareResult(None) for i in leavers)
    new = {i: r.share for i, r in results.items() if r.share is not None}
    assert sorted(new) == new_parties
    first = new[new_parties[0]]
    for i, share in new.items():
        share.check_consistent()
        assert share.identifier == i
        assert (share.scheme, share.threshold, share.parties) == (scheme, new_t, tuple(new_parties))
        assert share.group_public_key == old[1].group_public_key
        assert share.verification_shares == first.verification_shares
        assert share.extensions == {CHAIN_CODE: old[1].extensions[CHAIN_CODE]}
    assert secret_of(new) == secret_of(old)
    for subset in itertools.combinations(new_parties, new_t):
        assert_signs(new, list(subset))
    # new_t - 1 new shares are not enough.
    below = {i: new[i].secret_share for i in new_parties[: new_t - 1]}
    assert interpolate_at_zero(below, first.group.order) != secret_of(old)


def test_a_party_that_stays_gets_a_new_share() -> None:
    old = cached_keygen("frost-secp256k1", 2, 3)
    new = runner.reshare({1: old[1], 2: old[2]}, 2, [1, 2, 4])
    assert sorted(new) == [1, 2, 4]
    for i in (1, 2):
        assert new[i].secret_share != old[i].secret_share
    assert new[1].verification_shares[1] != old[1].verification_shares[1]


def test_ecdsa_key_moves_to_a_new_committee_with_a_setup_for_exactly_that_committee() -> None:
    old = cached_keygen(ECDSA_SCHEME, 2, 3)
    new = runner.reshare({1: old[1], 2: old[2]}, 2, [1, 2, 4])
    assert sorted(new) == [1, 2, 4]
    for i, share in new.items():
        share.check_consistent()
        assert share.parties == (1, 2, 4)
        assert share.group_public_key == old[1].group_public_key
        assert share.extensions[CHAIN_CODE] == old[1].extensions[CHAIN_CODE]
        assert set(setup_of(share).peers) == {1, 2, 4} - {i}
    # Parties 1 and 2 kept their identifiers but got a new pairwise setup.
    assert setup_of(new[1]).peers[2].zero_seed != setup_of(old[1]).peers[2].zero_seed
    for subset in itertools.combinations([1, 2, 4], 2):
        assert_signs(new, list(subset))


# -- refused before anything is sent -------------------------------------------------------------


def test_fewer_than_threshold_dealers_is_refused() -> None:
    old = cached_keygen("frost-secp256k1", 2, 3)
    with pytest.raises(UsageError, match="resharing needs at least 2 current parties, got 1"):
        runner.reshare({1: old[1]}, 2, [1, 2, 3])


@pytest.mark.parametrize(
    ("me", "change", "match"),
    [
        (1, {"dealers": [1, 4]}, "dealers must be parties of the current key"),
        (6, {}, "party 6 is neither a dealer nor a new party"),
        (1, {"share_of": None}, "a dealer needs its own key share of this key"),
        (1, {"share_of": 2}, "a dealer needs its own key share of this key"),
        (1, {"new_threshold": 6}, "need 1 <= threshold <= parties"),
        (1, {"new_threshold": 0}, "need 1 <= threshold <= parties"),
        (1, {"new_parties": [1, 2, 2]}, "identifiers are not unique"),
        (1, {"new_parties": [0, 1, 2]}, "identifier 0 is not in 1..255"),
        (1, {"dealers": [1, 1, 2]}, "identifiers are not unique"),
    ],
    ids=[
        "dealer-not-a-party",
        "bystander",
        "dealer-without-share",
        "dealer-with-another-partys-share",
        "new-threshold-above-n",
        "new-threshold-zero",
        "duplicate-new-party",
        "new-party-zero",
        "duplicate-dealer",
    ],
)
def test_reshare_party_construction_refuses(me: int, change: dict[str, Any], match: str) -> None:
    old = old_key("frost-secp256k1")
    args: dict[str, Any] = {
        "public": old[1].public,
        "dealers": DEALERS,
        "new_threshold": NEW_T,
        "new_parties": NEW_PARTIES,
        "share_of": me if me in old else None,
    }
    args.update(change)
    with pytest.raises(UsageError, match=match):
        ReshareParty(
            session(),
            me,
            args["public"],
            args["dealers"],
            args["new_threshold"],
            args["new_parties"],
            share=None if args["share_of"] is None else old[args["share_of"]],
        )


def test_dealer_holding_a_share_of_another_key_is_refused() -> None:
    old = old_key("frost-secp256k1")
    other = cached_keygen("frost-secp256k1", 2, 4)
    with pytest.raises(UsageError, match="a dealer needs its own key share of this key"):
        ReshareParty(session(), 1, old[1].public, DEALERS, NEW_T, NEW_PARTIES, share=other[1])


# -- a cheating dealer -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_honest_attack_setup_completes(scheme: str) -> None:
    # The attack scenario without an attack: every party finishes, so each failure below
    # is caused by what its attack changes.
    outcome = run_attack(scheme)
    assert outcome.aborts == {}
    assert sorted(outcome.results) == NEW_PARTIES


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_dealer_dealing_something_other_than_its_share_is_named(scheme: str) -> None:
    # A consistent dealing (every share fits the commitments) of λ_3·x_3 + 1: only the
    # check of the constant commitment against λ_3·Y_3 tells it from an honest one.
    g = old_key(scheme)[1].group
    mutate = redeal(g, (dealer_weighted_share(scheme) + 1) % g.order, NEW_T)
    outcome = run_attack(scheme, rewrite(1, CHEATER, mutate))
    assert outcome.results == {}
    assert_aborted(outcome, HONEST_NEW, {CHEATER}, "dealt constant term is not the dealer's share of the key")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_dealer_dealing_its_share_unweighted_is_named(scheme: str) -> None:
    # x_2 instead of λ_2·x_2 (λ_2 = -3 mod q for dealers {1, 2, 3}).
    g = old_key(scheme)[1].group
    outcome = run_attack(scheme, rewrite(1, 2, redeal(g, old_key(scheme)[2].secret_share, NEW_T)))
    assert_aborted(outcome, [1, 3, 4, 5], {2}, "dealt constant term is not the dealer's share of the key")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_tampered_resharing_share_is_named(scheme: str) -> None:
    g = old_key(scheme)[1].group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["share"] = g.encode_scalar(g.decode_scalar(body["share"]) + 1)
        return body

    outcome = run_attack(scheme, rewrite(1, CHEATER, mutate))
    assert_aborted(outcome, HONEST_NEW, {CHEATER}, "resharing share does not match the dealer's commitments")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_out_of_range_resharing_share_is_named(scheme: str) -> None:
    g = old_key(scheme)[1].group
    outcome = run_attack(scheme, rewrite(1, CHEATER, set_field("share", encode_scalar_raw(g, g.order + 1))))
    assert_aborted(outcome, HONEST_NEW, {CHEATER}, "invalid resharing share")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@pytest.mark.parametrize("delta", [1, -1], ids=["t'+1", "t'-1"])
def test_commitment_vector_of_wrong_length_is_named(scheme: str, delta: int) -> None:
    # One coefficient more would raise the new threshold, one fewer lower it.
    g = old_key(scheme)[1].group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        if delta > 0:
            body["commitments"] = [*body["commitments"], g.base_mul(g.random_scalar()).encode()]
        else:
            body["commitments"] = body["commitments"][:-1]
        return body

    outcome = run_attack(scheme, rewrite(1, CHEATER, mutate))
    assert_aborted(outcome, HONEST_NEW, {CHEATER}, f"resharing commitments: expected exactly {NEW_T} encoded points")


@pytest.mark.parametrize(("scheme", "kind"), lifecycle_bad_point_cases())
def test_invalid_commitment_point_is_named(scheme: str, kind: str) -> None:
    bad = BAD_POINTS[old_key(scheme)[1].curve][kind]

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["commitments"][-1] = bad
        return body

    outcome = run_attack(scheme, rewrite(1, CHEATER, mutate))
    assert_aborted(outcome, HONEST_NEW, {CHEATER}, "resharing commitments: ")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_dealer_sending_different_dealings_to_different_new_parties_is_caught_by_the_echo(scheme: str) -> None:
    # Party 4 gets its own polynomial, with the right constant term and a share that
    # fits: it passes every check of round one. Only comparing echoes shows the
    # committee was not dealt one polynomial, and no one can say who lied.
    g = old_key(scheme)[1].group
    outcome = run_attack(scheme, rewrite(1, CHEATER, redeal(g, dealer_weighted_share(scheme), NEW_T), to=4))
    assert outcome.results == {}
    assert_aborted(outcome, HONEST_NEW, set(), "received different dealings than we did")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_false_echo_aborts_the_new_parties_without_blame(scheme: str) -> None:
    outcome = run_attack(scheme, rewrite(2, CHEATER, set_field("echo", bytes(64))))
    assert set(outcome.results) == {CHEATER}  # the liar itself saw honest echoes
    assert_aborted(outcome, HONEST_NEW, set(), f"new parties [{CHEATER}] received different dealings")


# -- a new party in another session ---------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@pytest.mark.parametrize(
    "view",
    ["another key", "another sharing of the same key", "another threshold", "another committee", "other dealers"],
)
def test_new_party_with_another_view_of_the_session_aborts(scheme: str, view: str) -> None:
    changes: dict[str, dict[str, Any]] = {
        "another key": {"public": another_package(scheme, same_key=False)},
        "another sharing of the same key": {"public": another_package(scheme, same_key=True)},
        "another threshold": {"new_threshold": NEW_T - 1},
        "another committee": {"new_parties": [1, 2, 3, 4, 6]},
        "other dealers": {"dealers": [1, 2]},
    }
    change = changes[view]
    if "public" in change:
        assert change["public"] != old_key(scheme)[1].public
        assert (change["public"].group_public_key == old_key(scheme)[1].group_public_key) == ("same" in view)
    outcome = run_attack(scheme, overrides={4: change})
    assert_aborted(outcome, [4], set(), "is resharing another key or to another committee than we are")
    # The others wait for party 4's echo: no one ends with a share.
    assert outcome.results == {}
    assert set(outcome.aborts) == {4}
