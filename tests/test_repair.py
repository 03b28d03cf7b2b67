"""Share repair (mpc/repair.py): a party that lost its share gets exactly that share
back from t helpers, who learn nothing and keep nothing; a lie by a helper is caught
(though not attributed) and leaves the lost party without a share; and a message
from another repair (another key, helper set or lost party) is refused."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import pytest

from harbour.crypto.shamir import trusted_dealer_keygen
from harbour.mpc import runner
from harbour.mpc.ecdsa_setup import EXTENSION as ECDSA_SETUP
from harbour.mpc.ecdsa_setup import setup_of
from harbour.mpc.ecdsa_sign import EcdsaSigner
from harbour.mpc.envelope import Envelope, UsageError
from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import SCHEME_CURVES, KeyShare, group_by_name, shares_from_dealer
from harbour.mpc.repair import RepairParty, RepairResult
from harbour.mpc.runner import Intercept
from helpers import (
    ALL_SCHEMES,
    ECDSA_SCHEME,
    SCHEMES,
    Outcome,
    assert_aborted,
    assert_signs,
    cached_keygen,
    drive,
    encode_scalar_raw,
    recorder,
    rewrite,
    session,
    set_field,
    without_ecdsa_setup,
)

# The attacks: 2-of-3, helpers 1 and 2 rebuild party 3; helper 2 lies.
HELPERS = [1, 2]
LOST = 3
LIAR = 2

# (t, n, helpers, lost)
SHAPES = {
    "2-of-3 lost 3": (2, 3, [1, 2], 3),
    "2-of-3 lost 1": (2, 3, [2, 3], 1),
    "3-of-5 lost 2": (3, 5, [1, 4, 5], 2),
}


def repair_parties(
    shares: Mapping[int, KeyShare], helpers: Sequence[int], lost: int, session_id: bytes | None = None
) -> dict[int, RepairParty]:
    """The helpers with their shares and the lost party with only the public key package."""
    sid = session() if session_id is None else session_id
    first = shares[helpers[0]]
    metadata = {CHAIN_CODE: first.extensions[CHAIN_CODE]} if CHAIN_CODE in first.extensions else {}
    parties = {i: RepairParty(sid, i, first.public, helpers, lost, share=shares[i], metadata=metadata) for i in helpers}
    parties[lost] = RepairParty(sid, lost, first.public, helpers, lost, metadata=metadata)
    return parties


def run_attack(scheme: str, intercept: Intercept) -> Outcome:
    return drive(repair_parties(cached_keygen(scheme, 2, 3), HELPERS, LOST), intercept)


def assert_lost_party_refuses(outcome: Outcome, culprits: set[int], match: str) -> None:
    """Only the lost party aborted, naming exactly ``culprits``; helpers ended with nothing to keep."""
    assert set(outcome.aborts) == {LOST}
    assert_aborted(outcome, [LOST], culprits, match)
    assert outcome.results == {i: RepairResult(None) for i in HELPERS}


@cache
def dealt_key(scheme: str, t: int, n: int, tag: str = "") -> Mapping[int, KeyShare]:
    """Shares of a fresh key (one per ``tag``) with no DKG and no ECDSA setup: repair needs neither."""
    g = group_by_name(SCHEME_CURVES[scheme])
    return shares_from_dealer(scheme, g.name, trusted_dealer_keygen(g, g.random_scalar(), t, n))


# -- the honest repair ----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_lost_party_gets_exactly_its_old_share_back_and_signs_with_it(scheme: str, shape: str) -> None:
    t, n, helpers, lost = SHAPES[shape]
    old = cached_keygen(scheme, t, n)
    results = runner.run(repair_parties(old, helpers, lost))
    assert results.keys() == {*helpers, lost}
    assert all(results[i] == RepairResult(None) for i in helpers)
    repaired = results[lost].share
    assert repaired is not None
    assert repaired.secret_share == old[lost].secret_share
    assert repaired == old[lost]  # the public data and the chain code too
    repaired.check_consistent()
    others = [i for i in old if i != lost]
    assert_signs({**old, lost: repaired}, [lost, *others[: t - 1]])
    assert_signs({**old, lost: repaired}, [*others[-(t - 1) :], lost])


def test_runner_repair_returns_the_lost_share() -> None:
    old = cached_keygen("frost-taproot", 2, 3)
    repaired = runner.repair({1: old[1], 2: old[2]}, 3)
    assert repaired == old[3]


def test_repaired_ecdsa_share_signs_after_a_new_pairwise_setup() -> None:
    old = cached_keygen(ECDSA_SCHEME, 2, 3)
    repaired = runner.repair({1: old[1], 2: old[2]}, 3)
    assert repaired.secret_share == old[3].secret_share
    # The pairwise setup is protocol state, not key material: it does not come back ...
    assert repaired == without_ecdsa_setup(old[3])
    assert ECDSA_SETUP not in repaired.extensions
    with pytest.raises(UsageError, match="lacks its pairwise setup"):
        EcdsaSigner(session(), repaired, [1, 3], bytes(32))
    # ... so the whole committee runs a new one, and then the repaired party signs.
    renewed = runner.ecdsa_setup({1: old[1], 2: old[2], 3: repaired})
    for i, share in renewed.items():
        share.check_consistent()
        assert set(setup_of(share).peers) == {1, 2, 3} - {i}
    assert_signs(renewed, [1, 3])
    assert_signs(renewed, [2, 3])


# -- a lying helper -------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_wrong_piece_between_helpers_leaves_the_lost_party_without_a_share(scheme: str) -> None:
    # Helper 1 adds up a wrong piece in good faith: the lost party sees only that the
    # sums do not match its verification share, not who is to blame.
    g = cached_keygen(scheme, 2, 3)[1].group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["piece"] = g.encode_scalar(g.decode_scalar(body["piece"]) + 1)
        return body

    outcome = run_attack(scheme, rewrite(1, LIAR, mutate, to=1))
    assert_lost_party_refuses(outcome, set(), "the repaired share does not match our verification share")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_wrong_sum_to_the_lost_party_leaves_it_without_a_share(scheme: str) -> None:
    g = cached_keygen(scheme, 2, 3)[1].group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["sum"] = g.encode_scalar(g.decode_scalar(body["sum"]) - 1)
        return body

    outcome = run_attack(scheme, rewrite(2, LIAR, mutate))
    assert_lost_party_refuses(outcome, set(), "the repaired share does not match our verification share")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_out_of_range_sum_names_the_sender(scheme: str) -> None:
    g = cached_keygen(scheme, 2, 3)[1].group
    outcome = run_attack(scheme, rewrite(2, LIAR, set_field("sum", encode_scalar_raw(g, g.order))))
    assert_lost_party_refuses(outcome, {LIAR}, "invalid repair sum")


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
def test_out_of_range_piece_is_named_by_the_helper_that_receives_it(scheme: str) -> None:
    g = cached_keygen(scheme, 2, 3)[1].group
    outcome = run_attack(scheme, rewrite(1, LIAR, set_field("piece", encode_scalar_raw(g, g.order))))
    assert set(outcome.aborts) == {1}
    assert_aborted(outcome, [1], {LIAR}, "invalid repair piece")
    assert LOST not in outcome.results


# -- a message from another repair ----------------------------------------------------------------

# The target: a 2-of-4 key, helpers 1 and 2 rebuild party 4. A relay splices in what
# helper 2 sent in another repair under the same session id.
CTX_HELPERS = [1, 2]
CTX_LOST = 4
DONORS = {
    "another key": ("another", [1, 2], 4),
    "another helper set": ("", [2, 3], 4),
    "another lost party": ("", [1, 2], 3),
}


def donor_payload(scheme: str, donor: str, rnd: int, session_id: bytes) -> bytes:
    tag, helpers, lost = DONORS[donor]
    log: list[tuple[Envelope, int]] = []
    drive(repair_parties(dealt_key(scheme, 2, 4, tag), helpers, lost, session_id), recorder(log))
    return next(env.payload for env, _ in log if env.round == rnd and env.sender == LIAR)


@pytest.mark.parametrize("scheme", ALL_SCHEMES)
@pytest.mark.parametrize("donor", list(DONORS))
@pytest.mark.parametrize("rnd", [1, 2], ids=["piece-to-helper", "sum-to-lost-party"])
def test_message_from_another_repair_aborts_its_recipient(scheme: str, donor: str, rnd: int) -> None:
    sid = session()
    spliced = donor_payload(scheme, donor, rnd, sid)

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == rnd and env.sender == LIAR:
            return Envelope(env.session_id, env.protocol, rnd, LIAR, env.recipient, spliced)
        return env

    outcome = drive(repair_parties(dealt_key(scheme, 2, 4), CTX_HELPERS, CTX_LOST, sid), intercept)
    victim = 1 if rnd == 1 else CTX_LOST
    assert set(outcome.aborts) == {victim}
    assert_aborted(outcome, [victim], set(), f"party {LIAR} is repairing another key, party or helper set")
    assert CTX_LOST not in outcome.results


# -- refused before anything is sent -------------------------------------------------------------


@pytest.mark.parametrize(
    ("me", "helpers", "lost", "share_of", "match"),
    [
        (1, [1], 4, 1, "repair needs exactly 2 helpers, got 1"),
        (1, [1, 2, 3], 4, 1, "repair needs exactly 2 helpers, got 3"),
        (1, [1, 4], 4, 1, "the lost party cannot help repair itself"),
        (1, [1, 2], 5, 1, "helpers and the lost party must be parties of the key"),
        (1, [1, 5], 4, 1, "helpers and the lost party must be parties of the key"),
        (3, [1, 2], 4, None, "party 3 is neither a helper nor the lost party"),
        (1, [1, 2], 4, None, "a helper needs its own key share of this key"),
        (1, [1, 2], 4, 2, "a helper needs its own key share of this key"),
        (1, [1, 1], 4, 1, "identifiers are not unique"),
        (1, [0, 1], 4, 1, "identifier 0 is not in 1..255"),
    ],
    ids=[
        "one-helper-too-few",
        "one-helper-too-many",
        "lost-party-among-helpers",
        "lost-party-not-a-member",
        "helper-not-a-member",
        "bystander",
        "helper-without-share",
        "helper-with-another-partys-share",
        "duplicate-helper",
        "helper-zero",
    ],
)
def test_repair_party_construction_refuses(
    me: int, helpers: list[int], lost: int, share_of: int | None, match: str
) -> None:
    shares = cached_keygen("frost-secp256k1", 2, 4)
    share = None if share_of is None else shares[share_of]
    with pytest.raises(UsageError, match=match):
        RepairParty(session(), me, shares[1].public, helpers, lost, share=share)


def test_helper_holding_a_share_of_another_key_is_refused() -> None:
    shares, other = cached_keygen("frost-secp256k1", 2, 4), dealt_key("frost-secp256k1", 2, 4)
    with pytest.raises(UsageError, match="a helper needs its own key share of this key"):
        RepairParty(session(), 1, shares[1].public, [1, 2], 4, share=other[1])


def test_runner_repair_with_too_few_helpers_is_refused() -> None:
    old = cached_keygen("frost-secp256k1", 2, 3)
    with pytest.raises(UsageError, match="repair needs exactly 2 helpers, got 1"):
        runner.repair({1: old[1]}, 3)
