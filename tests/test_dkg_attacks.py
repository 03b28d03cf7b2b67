"""Every way a party can cheat in the distributed key generation is refused,
and the abort names the cheater whenever the protocol can tell who it is."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import cbor2
import pytest

from harbour.crypto.shamir import interpolate_at_zero
from harbour.mpc import dkg, runner
from harbour.mpc.ciphersuite import Ciphersuite, suite_by_name
from harbour.mpc.envelope import Envelope, UsageError
from harbour.mpc.keyshare import KeyShare
from harbour.mpc.runner import Intercept
from helpers import (
    BAD_POINTS,
    SCHEMES,
    TAGGED_VALUES,
    Outcome,
    bad_point_cases,
    dkg_parties,
    drive,
    drop_field,
    encode_scalar_raw,
    rewrite,
    session,
    set_field,
)

T, N = 2, 3
PARTIES = list(range(1, N + 1))
CHEATER = 3
HONEST = [1, 2]


def run_dkg(scheme: str, intercept: Intercept, t: int = T, n: int = N) -> Outcome:
    return drive(dkg_parties(scheme, t, n), intercept)


def assert_all_blame(outcome: Outcome, culprit: int, honest: list[int], match: str | None = None) -> None:
    """Every honest party aborted naming exactly ``culprit``, and none produced a key."""
    for i in honest:
        assert outcome.culprits(i) == frozenset({culprit}), outcome.aborts[i]
        if match is not None:
            assert match in outcome.aborts[i].reason
        assert i not in outcome.results


def fresh_round1(
    suite: Ciphersuite,
    *,
    identifier: int,
    context: bytes,
    t: int = T,
) -> dict[str, Any]:
    """A well-formed round-one payload for a polynomial the network has not seen."""
    g = suite.group
    coefficients = [g.random_scalar() for _ in range(t)]
    return {
        "commitments": [g.base_mul(a).encode() for a in coefficients],
        "pok": dkg.prove_knowledge(suite, identifier, coefficients[0], context),
    }


def forge_round1(scheme: str, identifier: int = CHEATER, **context_overrides: Any) -> Intercept:
    """The cheater replaces its round-one message with a fresh one whose proof is
    bound to a context that differs from the session's in ``context_overrides``
    (keys: session_id, context_scheme, threshold, parties)."""
    suite = suite_by_name(scheme)
    forged: dict[bytes, dict[str, Any]] = {}  # one forgery per session: no equivocation

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        if env.session_id in forged:
            return dict(forged[env.session_id])
        args: dict[str, Any] = {
            "session_id": env.session_id,
            "context_scheme": scheme,
            "threshold": T,
            "parties": PARTIES,
        }
        args.update(context_overrides)
        context = dkg.session_context(args["session_id"], args["context_scheme"], args["threshold"], args["parties"])
        forged[env.session_id] = fresh_round1(suite, identifier=identifier, context=context)
        return dict(forged[env.session_id])

    return rewrite(1, CHEATER, mutate)


# -- proofs of knowledge ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_forged_round1_with_the_right_context_passes_round_one(scheme: str) -> None:
    # The forging helper's messages pass every round-one check when nothing is
    # off, so the proof-of-knowledge attacks below fail only because of what each
    # one changes. (The honest parties then notice in round two that the
    # cheater's own echo covers the round one it really sent.)
    outcome = run_dkg(scheme, forge_round1(scheme))
    for i in HONEST:
        assert outcome.culprits(i) == frozenset()
        assert "round-one broadcasts" in outcome.aborts[i].reason


@pytest.mark.parametrize("scheme", SCHEMES)
def test_proof_of_knowledge_with_response_plus_one_names_the_sender(scheme: str) -> None:
    suite = suite_by_name(scheme)

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        R, mu = suite.decode_signature(body["pok"])
        body["pok"] = suite.encode_signature(R, (mu + 1) % suite.group.order)
        return body

    assert_all_blame(run_dkg(scheme, rewrite(1, CHEATER, mutate)), CHEATER, HONEST, "proof of knowledge")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_proof_of_knowledge_from_another_session_names_the_sender(scheme: str) -> None:
    outcome = run_dkg(scheme, forge_round1(scheme, session_id=session()))
    assert_all_blame(outcome, CHEATER, HONEST, "proof of knowledge")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_proof_of_knowledge_for_another_threshold_names_the_sender(scheme: str) -> None:
    outcome = run_dkg(scheme, forge_round1(scheme, threshold=T + 1))
    assert_all_blame(outcome, CHEATER, HONEST, "proof of knowledge")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_proof_of_knowledge_for_another_party_list_names_the_sender(scheme: str) -> None:
    outcome = run_dkg(scheme, forge_round1(scheme, parties=[*PARTIES, N + 1]))
    assert_all_blame(outcome, CHEATER, HONEST, "proof of knowledge")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_proof_of_knowledge_for_another_scheme_names_the_sender(scheme: str) -> None:
    other = next(s for s in SCHEMES if s != scheme)
    outcome = run_dkg(scheme, forge_round1(scheme, context_scheme=other))
    assert_all_blame(outcome, CHEATER, HONEST, "proof of knowledge")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_proof_of_knowledge_for_another_identifier_names_the_sender(scheme: str) -> None:
    outcome = run_dkg(scheme, forge_round1(scheme, identifier=1))
    assert_all_blame(outcome, CHEATER, HONEST, "proof of knowledge")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_copying_another_partys_commitments_and_proof_names_the_copier(scheme: str) -> None:
    # The rogue-key shortcut: re-broadcast party 1's round one as our own.
    seen: dict[int, bytes] = {}

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 1 and env.sender == 1:
            seen[1] = env.payload
        if env.round == 1 and env.sender == CHEATER and dest == 2:
            return Envelope(env.session_id, env.protocol, 1, CHEATER, None, seen[1])
        return env

    outcome = run_dkg(scheme, intercept)
    assert outcome.culprits(2) == frozenset({CHEATER})
    assert "proof of knowledge" in outcome.aborts[2].reason


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("cut", ["empty", "short", "long", "identity-R"])
def test_malformed_proof_of_knowledge_names_the_sender(scheme: str, cut: str) -> None:
    suite = suite_by_name(scheme)

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        pok = body["pok"]
        body["pok"] = {
            "empty": b"",
            "short": pok[:-1],
            "long": pok + b"\x00",
            "identity-R": bytes(suite.signature_len - 32) + pok[-32:],
        }[cut]
        return body

    assert_all_blame(run_dkg(scheme, rewrite(1, CHEATER, mutate)), CHEATER, HONEST, "proof of knowledge")


# -- commitment vectors -----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 4)])
def test_commitment_vector_one_too_long_names_the_sender(scheme: str, t: int, n: int) -> None:
    # The WSTS bug: an extra coefficient silently raises the key's threshold.
    # C_0 and the proof are untouched, so only the length check can catch it.
    g = suite_by_name(scheme).group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["commitments"] = [*body["commitments"], g.base_mul(g.random_scalar()).encode()]
        return body

    outcome = run_dkg(scheme, rewrite(1, n, mutate), t, n)
    assert_all_blame(outcome, n, list(range(1, n)), f"has {t + 1} elements")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 4)])
def test_commitment_vector_one_too_short_names_the_sender(scheme: str, t: int, n: int) -> None:
    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["commitments"] = body["commitments"][:-1]
        return body

    outcome = run_dkg(scheme, rewrite(1, n, mutate), t, n)
    assert_all_blame(outcome, n, list(range(1, n)), f"has {t - 1} elements")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_empty_commitment_vector_names_the_sender(scheme: str) -> None:
    outcome = run_dkg(scheme, rewrite(1, CHEATER, set_field("commitments", [])))
    assert_all_blame(outcome, CHEATER, HONEST, "has 0 elements")


@pytest.mark.parametrize(("scheme", "kind"), bad_point_cases())
@pytest.mark.parametrize("position", [0, -1], ids=["C0", "Clast"])
def test_invalid_commitment_point_names_the_sender(scheme: str, kind: str, position: int) -> None:
    bad = BAD_POINTS[suite_by_name(scheme).group.name][kind]

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["commitments"][position] = bad
        return body

    outcome = run_dkg(scheme, rewrite(1, CHEATER, mutate))
    assert_all_blame(outcome, CHEATER, HONEST, "invalid commitment")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("value", [7, "02", None, [b"\x02"]], ids=["int", "str", "null", "list"])
def test_commitment_that_is_not_bytes_names_the_sender(scheme: str, value: object) -> None:
    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["commitments"][1] = value
        return body

    outcome = run_dkg(scheme, rewrite(1, CHEATER, mutate))
    # null and nested lists are refused by the payload decoder already, the rest by the DKG.
    decoder_refuses = value is None or isinstance(value, list)
    expected = "not one map of bytes, text, integers and flat lists" if decoder_refuses else "not a byte string"
    assert_all_blame(outcome, CHEATER, HONEST, expected)


@pytest.mark.parametrize("tagged", list(TAGGED_VALUES))
def test_commitment_that_is_a_cbor_tagged_object_names_the_sender(tagged: str) -> None:
    # cbor2 decodes semantic tags into Python objects (datetimes, sets, MIME
    # messages, self-referencing lists via tags 28/29, ...): each must end in an
    # abort naming the sender, never in another exception.
    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 1 and env.sender == CHEATER:
            body = cbor2.loads(env.payload)
            commitments = b"\x82" + TAGGED_VALUES[tagged] + cbor2.dumps(body["commitments"][1])
            payload = b"\xa3" + b"\x61v\x01" + b"\x63pok" + cbor2.dumps(body["pok"])
            payload += b"\x6bcommitments" + commitments  # canonical key order: v, pok, commitments
            return dataclasses.replace(env, payload=payload)
        return env

    assert_all_blame(run_dkg("frost-secp256k1", intercept), CHEATER, HONEST)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_commitments_field_of_wrong_type_names_the_sender(scheme: str) -> None:
    outcome = run_dkg(scheme, rewrite(1, CHEATER, set_field("commitments", b"\x02" * 33)))
    assert_all_blame(outcome, CHEATER, HONEST, "wrong type")


# -- secret shares ------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_tampered_secret_share_to_one_recipient_is_blamed_by_that_recipient(scheme: str) -> None:
    g = suite_by_name(scheme).group

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["share"] = g.encode_scalar(g.decode_scalar(body["share"]) + 1)
        return body

    outcome = run_dkg(scheme, rewrite(2, CHEATER, mutate, to=1))
    assert outcome.culprits(1) == frozenset({CHEATER})
    assert "does not match" in outcome.aborts[1].reason
    assert outcome.results.get(1) is None
    # The others were not lied to; they finish (and a share at 1 is missing).
    assert set(outcome.results) == {2, 3}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_share_meant_for_another_recipient_is_blamed_on_the_sender(scheme: str) -> None:
    to_one: dict[str, bytes] = {}

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 2 and env.sender == CHEATER and env.recipient == 1:
            to_one["payload"] = env.payload
        if env.round == 2 and env.sender == CHEATER and env.recipient == 2:
            return Envelope(env.session_id, env.protocol, 2, CHEATER, 2, to_one["payload"])
        return env

    outcome = run_dkg(scheme, intercept)
    assert outcome.culprits(2) == frozenset({CHEATER})


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("offset", [0, 1], ids=["order", "order+1"])
def test_out_of_range_secret_share_names_the_sender(scheme: str, offset: int) -> None:
    g = suite_by_name(scheme).group
    share = encode_scalar_raw(g, g.order + offset)
    outcome = run_dkg(scheme, rewrite(2, CHEATER, set_field("share", share)))
    assert_all_blame(outcome, CHEATER, HONEST, "invalid secret share")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("length", [0, 31, 33])
def test_secret_share_of_wrong_length_names_the_sender(scheme: str, length: int) -> None:
    outcome = run_dkg(scheme, rewrite(2, CHEATER, set_field("share", b"\x01" * length)))
    assert_all_blame(outcome, CHEATER, HONEST, "invalid secret share")


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_two_without_echo_names_the_sender(scheme: str) -> None:
    assert_all_blame(run_dkg(scheme, rewrite(2, CHEATER, drop_field("echo"))), CHEATER, HONEST, "missing")


# -- equivocation ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_equivocated_round_one_is_caught_by_the_echo(scheme: str) -> None:
    # Party 3 shows party 2 a different polynomial than everyone else, with a
    # valid proof for it: each version alone passes every round-one check.
    suite = suite_by_name(scheme)

    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        context = dkg.session_context(env.session_id, scheme, T, PARTIES)
        return fresh_round1(suite, identifier=CHEATER, context=context)

    outcome = run_dkg(scheme, rewrite(1, CHEATER, mutate, to=2))
    assert not outcome.results
    for i in PARTIES:
        assert outcome.culprits(i) == frozenset(), outcome.aborts[i]
        assert "equivocat" in outcome.aborts[i].reason


@pytest.mark.parametrize("scheme", SCHEMES)
def test_false_echo_aborts_without_a_key(scheme: str) -> None:
    outcome = run_dkg(scheme, rewrite(2, CHEATER, set_field("echo", bytes(64)), to=1))
    assert outcome.culprits(1) == frozenset()
    assert "equivocat" in outcome.aborts[1].reason
    assert outcome.results.get(1) is None


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("me", "t", "parties"),
    [
        (1, 2, [1, 2, 2]),
        (1, 2, [0, 1, 2]),
        (1, 4, [1, 2, 3]),
        (1, 0, [1, 2, 3]),
        (1, 2, list(range(1, 257))),
        (1, 2, [1, 2, 256]),
        (1, 2, [1, 2, -3]),
        (2, 2, [True, 2, 3]),
        (4, 2, [1, 2, 3]),
        (1, 1, []),
    ],
    ids=[
        "duplicate-id",
        "zero-id",
        "t>n",
        "t=0",
        "n>255",
        "id-256",
        "negative-id",
        "bool-id",
        "me-not-a-party",
        "no-parties",
    ],
)
def test_dkg_party_construction_refuses(me: int, t: int, parties: list[int]) -> None:
    with pytest.raises(UsageError):
        dkg.DkgParty(suite_by_name("frost-secp256k1"), session(), me, t, parties)


def test_runner_keygen_refuses_t_above_n() -> None:
    with pytest.raises(UsageError):
        runner.keygen("frost-ed25519", 4, 3)


# -- the honest run -------------------------------------------------------------------------------


def shares_of(results: dict[int, KeyShare]) -> dict[int, int]:
    return {i: s.secret_share for i, s in results.items()}


@pytest.mark.parametrize("scheme", SCHEMES)
def test_successful_dkg_agrees_and_any_t_shares_reconstruct_the_key(scheme: str) -> None:
    t, n = 3, 5
    results = runner.keygen(scheme, t, n)
    g = suite_by_name(scheme).group
    first = results[1]
    assert {i: s.identifier for i, s in results.items()} == {i: i for i in range(1, n + 1)}
    for share in results.values():
        share.check_consistent()
        assert share.scheme == scheme and share.curve == g.name
        assert share.threshold == t and share.parties == tuple(range(1, n + 1))
        assert share.group_public_key == first.group_public_key
        assert share.verification_shares == first.verification_shares
        assert share.verification_shares[share.identifier] == g.base_mul(share.secret_share)
    secrets = shares_of(results)
    for subset in itertools.combinations(range(1, n + 1), t):
        secret = interpolate_at_zero({i: secrets[i] for i in subset}, g.order)
        assert g.base_mul(secret) == first.group_public_key
    for subset in itertools.combinations(range(1, n + 1), t - 1):
        secret = interpolate_at_zero({i: secrets[i] for i in subset}, g.order)
        assert g.base_mul(secret) != first.group_public_key


@pytest.mark.parametrize("scheme", SCHEMES)
def test_two_key_generations_give_unrelated_keys(scheme: str) -> None:
    a, b = runner.keygen(scheme, 2, 3), runner.keygen(scheme, 2, 3)
    assert a[1].group_public_key != b[1].group_public_key
    assert a[1].secret_share != b[1].secret_share


@pytest.mark.parametrize(("t", "n"), [(1, 1), (1, 3), (4, 4)])
def test_edge_thresholds_complete(t: int, n: int) -> None:
    results = runner.keygen("frost-secp256k1", t, n)
    for share in results.values():
        share.check_consistent()
    assert len({s.group_public_key for s in results.values()}) == 1
