"""Every way a signer (or a relay) can cheat in threshold ECDSA signing (DKLs23,
protocol 3.6) is refused, and, except where the protocol itself defers the check to
the final signature verification, refused *before* any honest party broadcasts its
signature share ``(u_i, w_i)``. The cheater is named wherever the protocol allows it.

Each attack runs three signers of a 3-of-5 key, party 2 playing the cheater (the
runner's intercept hook rewrites what it sends), and records every envelope posted,
so the tests can check that no honest party's round-three envelope ever left it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2
import pytest

from harbour.chains.ethereum import keccak256
from harbour.crypto import ecdsa
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc import runner
from harbour.mpc.ecdsa_setup import SCHEME
from harbour.mpc.ecdsa_sign import _ROUND2, EcdsaSigner, G, Q, _commitment
from harbour.mpc.envelope import Envelope, ProtocolAbort, UsageError, encode_payload
from harbour.mpc.keyshare import KeyShare
from harbour.mpc.ot_extension import ROW_BYTES, message_length
from harbour.mpc.runner import Intercept
from harbour.mpc.vole import MESSAGE2_LEN, NONCE_LEN, XI
from helpers import (
    PROTOCOL_BAD_POINTS,
    SECP_BAD_POINTS,
    Mutation,
    Outcome,
    cached_keygen,
    drive,
    drop_field,
    ecdsa_signers,
    flip_byte,
    recorder,
    rewrite,
    set_field,
)

DIGEST = keccak256(b"redeem 5,000 tokenised bond units")
SIGNERS = [1, 2, 3]
CHEATER = 2
HONEST = [1, 3]

# Offsets inside Alice's multiplication message (mpc/vole.py): nonce, τ, μ, check hash, γ.
TAU = NONCE_LEN
TAU_END = NONCE_LEN + XI * 3 * 32
MU = TAU_END
CHECK_HASH = TAU_END + 32
GAMMA = (TAU_END + 64, TAU_END + 96)
assert MESSAGE2_LEN == TAU_END + 128


def key() -> Mapping[int, KeyShare]:
    return cached_keygen(SCHEME, 3, 5)


@dataclass
class Run:
    outcome: Outcome
    posted: list[Envelope]

    @property
    def shares_released_by(self) -> set[int]:
        """Who broadcast a round-three envelope, the one that carries a signature share."""
        return {env.sender for env in self.posted if env.round == 3}


def attack(
    intercept: Intercept | None = None,
    *,
    parties: Mapping[int, EcdsaSigner] | None = None,
    shares: Mapping[int, KeyShare] | None = None,
) -> Run:
    """Run one signing session; ``posted`` is every envelope as its sender emitted it."""
    parties = parties if parties is not None else ecdsa_signers(shares or key(), SIGNERS, DIGEST)
    posted: list[Envelope] = []

    def spy(env: Envelope, dest: int) -> Envelope | None:
        posted.append(env)
        return intercept(env, dest) if intercept else env

    return Run(drive(parties, spy), posted)


def assert_blamed(run: Run, culprits: set[int], match: str | None = None) -> None:
    for i in HONEST:
        abort = run.outcome.aborts.get(i)
        assert abort is not None, f"party {i} did not abort (results: {sorted(run.outcome.results)})"
        assert abort.culprits == frozenset(culprits), abort
        if match is not None:
            assert match in abort.reason, abort.reason
        assert i not in run.outcome.results


def assert_stopped_before_shares(run: Run, culprits: set[int], match: str | None = None) -> None:
    """Every honest party aborted, blamed exactly ``culprits``, and never sent its signature share."""
    assert_blamed(run, culprits, match)
    assert not run.shares_released_by & set(HONEST), run.shares_released_by


def vole_part(offset: Callable[[Envelope, int], int], mask: int = 0x01) -> Mutation:
    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["vole"] = flip_byte(body["vole"], offset(env, dest), mask)
        return body

    return mutate


def random_point() -> Secp256k1Point:
    p = G.base_mul(G.random_scalar())
    assert isinstance(p, Secp256k1Point)
    return p


# -- the honest run ---------------------------------------------------------------------------------


def test_honest_session_releases_shares_and_one_valid_signature() -> None:
    run = attack()
    assert run.outcome.aborts == {}
    assert run.shares_released_by == set(SIGNERS)
    (sig,) = set(run.outcome.results.values())
    pk = key()[1].group_public_key
    assert isinstance(pk, Secp256k1Point)
    assert ecdsa.verify(pk, DIGEST, sig)


# -- round one: the OT-extension message and the commitment -----------------------------------------


ROUND1_VOLE_LEN = message_length(XI)
KOS_PARTS = {
    "u-first-byte": 0,
    "u-last-byte": ROUND1_VOLE_LEN - 2 * ROW_BYTES - 1,
    "x-check": ROUND1_VOLE_LEN - 2 * ROW_BYTES,
    "t-check": ROUND1_VOLE_LEN - 1,
}


@pytest.mark.parametrize("part", list(KOS_PARTS))
def test_tampered_ot_extension_message_fails_the_kos_check_naming_the_sender(part: str) -> None:
    run = attack(rewrite(1, CHEATER, vole_part(lambda env, dest: KOS_PARTS[part])))
    assert_stopped_before_shares(run, {CHEATER}, "correlation check failed")


@pytest.mark.parametrize("length", [0, ROUND1_VOLE_LEN - 1, ROUND1_VOLE_LEN + 1])
def test_ot_extension_message_of_wrong_length_names_the_sender(length: int) -> None:
    run = attack(rewrite(1, CHEATER, set_field("vole", bytes(length))))
    assert_stopped_before_shares(run, {CHEATER}, "multiplication with party 2 failed")


@pytest.mark.parametrize("length", [0, 32, 63, 65])
def test_instance_commitment_of_wrong_length_names_the_sender(length: int) -> None:
    run = attack(rewrite(1, CHEATER, set_field("commitment", b"\x01" * length)))
    assert_stopped_before_shares(run, {CHEATER}, "commitment has the wrong length")


def test_different_commitments_to_different_parties_are_caught_by_the_echo() -> None:
    """Party 2 commits to one instance point towards party 1 and to another towards
    party 3, and opens each version consistently, even sending party 3 the echo that
    party 3 expects: each view alone passes every check, but the honest parties'
    echoes to each other differ. Without a signed broadcast nobody can tell who lied."""
    parties = ecdsa_signers(key(), SIGNERS, DIGEST)
    other, salt = random_point().encode(), b"\x07" * 32
    forged = _commitment(parties[CHEATER]._session, CHEATER, other, salt)

    def second_view(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        if env.round == 1:
            body["commitment"] = forged
        else:
            body.update(instance_point=other, salt=salt, echo=parties[3]._echo)
        return body

    rewrites = [rewrite(rnd, CHEATER, second_view, to=3) for rnd in (1, 2)]

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        return rewrites[env.round - 1](env, dest) if env.round < 3 else env

    run = attack(intercept, parties=parties)
    assert_stopped_before_shares(run, set(), "saw different round-one commitments")


def test_garbage_commitment_to_one_party_is_caught_by_the_echo() -> None:
    run = attack(rewrite(1, CHEATER, set_field("commitment", b"\x42" * 64), to=3))
    assert_stopped_before_shares(run, set(), "saw different round-one commitments")


# -- round two: the multiplication ------------------------------------------------------------------


def _tau_row(parties: Mapping[int, EcdsaSigner], used: bool) -> Callable[[Envelope, int], int]:
    """Offset of the last byte of τ's first scalar in a row Bob (the recipient) uses or ignores."""

    def offset(env: Envelope, dest: int) -> int:
        choices = parties[dest]._bobs[env.sender]._choices
        return int(TAU + 96 * choices.index(1 if used else 0) + 31)

    return offset


@pytest.mark.parametrize("part", ["nonce", "tau-used-row", "tau-unused-row", "mu", "check-hash"])
def test_tampered_multiplication_message_fails_bobs_check_naming_the_sender(part: str) -> None:
    # Even a τ row that Bob's choice bit makes him ignore is caught: the check's
    # challenge θ hashes all of τ, so no part of Alice's answer is malleable.
    parties = ecdsa_signers(key(), SIGNERS, DIGEST)
    offsets: dict[str, Callable[[Envelope, int], int]] = {
        "nonce": lambda env, dest: 0,
        "tau-used-row": _tau_row(parties, used=True),
        "tau-unused-row": _tau_row(parties, used=False),
        "mu": lambda env, dest: MU + 31,
        "check-hash": lambda env, dest: CHECK_HASH,
    }
    run = attack(rewrite(2, CHEATER, vole_part(offsets[part])), parties=parties)
    assert_stopped_before_shares(run, {CHEATER}, "multiplication with party 2 failed")


@pytest.mark.parametrize(
    ("which", "reason"),
    [(0, "inconsistent with the instance point"), (1, "inconsistent with the public key share")],
    ids=["gamma-for-r", "gamma-for-sk"],
)
def test_wrong_multiplication_correction_fails_the_consistency_check(which: int, reason: str) -> None:
    # γ = a - ã is outside the OT check; a wrong γ shifts Bob's output, which the
    # check χ·R_j - Γ^u = d^u·G (or χ·pk_j - Γ^v = d^v·G) catches.
    run = attack(rewrite(2, CHEATER, vole_part(lambda env, dest: GAMMA[which] + 31)))
    assert_stopped_before_shares(run, {CHEATER}, reason)


@pytest.mark.parametrize(
    ("field", "reason"),
    [("gamma_u", "inconsistent with the instance point"), ("gamma_v", "inconsistent with the public key share")],
)
def test_wrong_gamma_point_fails_the_consistency_check(field: str, reason: str) -> None:
    run = attack(rewrite(2, CHEATER, set_field(field, random_point().encode())))
    assert_stopped_before_shares(run, {CHEATER}, reason)


def test_swapped_gamma_points_fail_the_consistency_check() -> None:
    def swap(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["gamma_u"], body["gamma_v"] = body["gamma_v"], body["gamma_u"]
        return body

    assert_stopped_before_shares(attack(rewrite(2, CHEATER, swap)), {CHEATER}, "inconsistent")


@pytest.mark.parametrize("field", ["instance_point", "salt"])
def test_instance_point_that_does_not_open_its_commitment_names_the_sender(field: str) -> None:
    value = random_point().encode() if field == "instance_point" else b"\x00" * 32
    run = attack(rewrite(2, CHEATER, set_field(field, value)))
    assert_stopped_before_shares(run, {CHEATER}, "does not open its round-one commitment")


@pytest.mark.parametrize("length", [0, 31, 33])
def test_salt_of_wrong_length_names_the_sender(length: int) -> None:
    run = attack(rewrite(2, CHEATER, set_field("salt", bytes(length))))
    assert_stopped_before_shares(run, {CHEATER}, "does not open its round-one commitment")


def test_wrong_psi_is_caught_only_when_the_signature_fails_to_verify() -> None:
    """ψ_ij = φ_i - χ_ij has no check of its own in protocol 3.6 of DKLs23: nothing
    else a party receives depends on it. A wrong ψ from party 2 offsets every honest
    party's u_j and v_j by r_j·δ and sk_j·δ, so the honest parties do broadcast their
    round-three shares and the fault shows only when Σw/Σu fails to verify, without a
    culprit. This is the protocol's design, not a missing check: the paper's proof
    covers an adversarial ψ (the shares stay masked by φ), and the final verification
    guarantees that no invalid signature is ever released."""

    def shift(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body["psi"] = G.encode_scalar((G.decode_scalar(body["psi"]) + 1) % Q)
        return body

    run = attack(rewrite(2, CHEATER, shift))
    assert_blamed(run, set(), "does not verify")
    assert run.shares_released_by == set(SIGNERS)
    assert run.outcome.results == {}


def test_wrong_public_key_share_fails_the_consistency_check() -> None:
    run = attack(rewrite(2, CHEATER, set_field("pk", random_point().encode())))
    assert_stopped_before_shares(run, {CHEATER}, "inconsistent with the public key share")


def test_signer_with_a_wrong_key_share_fails_the_public_key_check() -> None:
    # Party 2 multiplies with a wrong sk_2 and announces the matching pk_2, so every
    # pairwise check passes; only Σ pk_j = PK fails, and with the zero-shares
    # hidden nobody can say whose pk_j is off.
    shares = dict(key())
    shares[CHEATER] = dataclasses.replace(shares[CHEATER], secret_share=(shares[CHEATER].secret_share + 1) % Q)
    run = attack(shares=shares)
    assert_stopped_before_shares(run, set(), "do not add up to the group key")


def test_false_echo_aborts_before_any_share_without_a_culprit() -> None:
    # A differing echo means two parties saw different round ones; which of the
    # two (or the relay between them) lied is not provable.
    run = attack(rewrite(2, CHEATER, set_field("echo", bytes(64))))
    assert_stopped_before_shares(run, set(), "saw different round-one commitments")


@pytest.mark.parametrize("echo", [b"\x01" * 63, b""], ids=["short", "empty"])
def test_malformed_echo_names_its_sender(echo: bytes) -> None:
    # An echo that is not a digest at all is malformed, not a disagreement.
    run = attack(rewrite(2, CHEATER, set_field("echo", echo)))
    assert_stopped_before_shares(run, {CHEATER}, "echo has the wrong length")


@pytest.mark.parametrize("field", ["instance_point", "pk", "gamma_u", "gamma_v"])
@pytest.mark.parametrize("kind", PROTOCOL_BAD_POINTS["secp256k1"])
def test_invalid_point_in_round_two_names_the_sender(field: str, kind: str) -> None:
    run = attack(rewrite(2, CHEATER, set_field(field, SECP_BAD_POINTS[kind])))
    assert_stopped_before_shares(run, {CHEATER}, "invalid round-two value")


@pytest.mark.parametrize(
    "psi",
    [b"", b"\x01" * 31, b"\x01" * 33, Q.to_bytes(32, "big"), (Q + 1).to_bytes(32, "big"), b"\xff" * 32],
    ids=["empty", "short", "long", "order", "order+1", "all-ones"],
)
def test_psi_that_is_not_a_scalar_names_the_sender(psi: bytes) -> None:
    run = attack(rewrite(2, CHEATER, set_field("psi", psi)))
    assert_stopped_before_shares(run, {CHEATER}, "invalid round-two value")


@pytest.mark.parametrize("length", [0, MESSAGE2_LEN - 1, MESSAGE2_LEN + 1])
def test_multiplication_message_of_wrong_length_names_the_sender(length: int) -> None:
    run = attack(rewrite(2, CHEATER, set_field("vole", bytes(length))))
    assert_stopped_before_shares(run, {CHEATER}, "multiplication with party 2 failed")


def test_multiplication_correction_above_the_order_names_the_sender() -> None:
    def mutate(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        vole = body["vole"]
        body["vole"] = vole[: GAMMA[0]] + b"\xff" * 32 + vole[GAMMA[0] + 32 :]
        return body

    assert_stopped_before_shares(attack(rewrite(2, CHEATER, mutate)), {CHEATER}, "not a scalar")


# -- malformed payloads in every round --------------------------------------------------------------


FIELDS = [(1, "commitment"), (1, "vole"), *((2, f) for f in _ROUND2), (3, "u"), (3, "w")]


def assert_refused(run: Run, rnd: int, match: str) -> None:
    # Round three is the signature share itself: the honest parties have sent
    # theirs by then, so only "blamed and no signature" can hold.
    if rnd < 3:
        assert_stopped_before_shares(run, {CHEATER}, match)
    else:
        assert_blamed(run, {CHEATER}, match)


@pytest.mark.parametrize(("rnd", "field"), FIELDS)
@pytest.mark.parametrize("value", [7, "text", [b"\x01"]], ids=["int", "str", "list"])
def test_field_of_wrong_type_names_the_sender(rnd: int, field: str, value: object) -> None:
    assert_refused(attack(rewrite(rnd, CHEATER, set_field(field, value))), rnd, "wrong type")


@pytest.mark.parametrize(("rnd", "field"), FIELDS)
def test_missing_field_names_the_sender(rnd: int, field: str) -> None:
    assert_refused(attack(rewrite(rnd, CHEATER, drop_field(field))), rnd, "missing")


@pytest.mark.parametrize("rnd", [1, 2, 3])
def test_extra_field_names_the_sender(rnd: int) -> None:
    assert_refused(attack(rewrite(rnd, CHEATER, set_field("share", b"\x00" * 32))), rnd, "unexpected")


@pytest.mark.parametrize("rnd", [1, 2, 3])
@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "not valid CBOR"),
        (b"\xa1", "not valid CBOR"),
        (cbor2.dumps([1, 2]), "not one map"),
        (cbor2.dumps({"v": 1, "nested": {"a": b""}}), "not one map"),
        (cbor2.dumps({"v": 2}), "wrong version"),
    ],
    ids=["empty", "truncated", "array", "nested-map", "version-2"],
)
def test_malformed_payload_names_the_sender(rnd: int, payload: bytes, match: str) -> None:
    def intercept(env: Envelope, dest: int) -> Envelope | None:
        return dataclasses.replace(env, payload=payload) if env.round == rnd and env.sender == CHEATER else env

    assert_refused(attack(intercept), rnd, match)


def test_non_canonical_payload_names_the_sender() -> None:
    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 2 and env.sender == CHEATER:
            body = cbor2.loads(env.payload)
            return dataclasses.replace(env, payload=cbor2.dumps(dict(reversed(list(body.items())))))
        return env

    assert_stopped_before_shares(attack(intercept), {CHEATER}, "not canonically encoded")


# -- replays ------------------------------------------------------------------------------------------


def old_session_log() -> list[tuple[Envelope, int]]:
    """Every envelope of a finished session over the same key, signers and digest."""
    log: list[tuple[Envelope, int]] = []
    runner.sign_ecdsa(key(), SIGNERS, DIGEST, intercept=recorder(log))
    return log


def old_envelopes(rnd: int) -> dict[int, Envelope]:
    """Party 2's round-``rnd`` envelopes of that old session, by recipient."""
    return {dest: env for env, dest in old_session_log() if env.round == rnd and env.sender == CHEATER}


def test_envelope_from_another_session_is_refused_naming_its_sender() -> None:
    old = old_envelopes(1)
    parties = ecdsa_signers(key(), SIGNERS, DIGEST)
    for p in parties.values():
        p.start()
    with pytest.raises(ProtocolAbort, match="another session") as info:
        parties[1].receive(old[1])
    assert info.value.culprits == frozenset({CHEATER})


def test_round_one_replayed_into_this_session_fails_the_ot_extension_check() -> None:
    # The old OT-extension message is bound to the old session's context: re-addressed
    # to this session, Alice's KOS check fails before she answers.
    old = old_envelopes(1)

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 1 and env.sender == CHEATER:
            return dataclasses.replace(old[dest], session_id=env.session_id)
        return env

    assert_stopped_before_shares(attack(intercept), {CHEATER}, "correlation check failed")


def test_round_two_replayed_into_this_session_is_caught_by_the_echo() -> None:
    old = old_envelopes(2)

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 2 and env.sender == CHEATER:
            return dataclasses.replace(old[dest], session_id=env.session_id)
        return env

    assert_stopped_before_shares(attack(intercept), set(), "saw different round-one commitments")


def test_round_two_replayed_with_this_sessions_echo_fails_to_open_the_commitment() -> None:
    old = old_envelopes(2)

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 2 and env.sender == CHEATER:
            body = cbor2.loads(old[dest].payload)
            body["echo"] = cbor2.loads(env.payload)["echo"]
            return dataclasses.replace(env, payload=encode_payload(body))
        return env

    assert_stopped_before_shares(attack(intercept), {CHEATER}, "does not open its round-one commitment")


def test_multiplication_message_replayed_into_this_session_fails_bobs_check() -> None:
    # Everything of this session's round two except Alice's multiplication answer,
    # which comes from the old session (where Bob's OT-extension message differed).
    old = old_envelopes(2)

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 2 and env.sender == CHEATER:
            body = cbor2.loads(env.payload)
            body["vole"] = cbor2.loads(old[dest].payload)["vole"]
            return dataclasses.replace(env, payload=encode_payload(body))
        return env

    assert_stopped_before_shares(attack(intercept), {CHEATER}, "multiplication with party 2 failed")


def test_second_envelope_in_a_round_names_its_sender() -> None:
    parties = ecdsa_signers(key(), SIGNERS, DIGEST)
    starts = {i: p.start() for i, p in parties.items()}
    to_one = next(env for env in starts[CHEATER] if env.recipient == 1)
    parties[1].receive(to_one)
    with pytest.raises(ProtocolAbort, match="second message") as info:
        parties[1].receive(to_one)
    assert info.value.culprits == frozenset({CHEATER})


# -- round three: the signature shares ----------------------------------------------------------------


@pytest.mark.parametrize("field", ["u", "w"])
def test_tampered_signature_share_gives_no_signature_and_no_culprit(field: str) -> None:
    # (u_i, w_i) cannot be checked on its own: only Σw/Σu is, against the group key.
    def shift(body: dict[str, Any], env: Envelope, dest: int) -> dict[str, Any]:
        body[field] = G.encode_scalar((G.decode_scalar(body[field]) + 1) % Q)
        return body

    run = attack(rewrite(3, CHEATER, shift))
    assert_blamed(run, set(), "does not verify")
    # The cheater saw only honest shares; what it holds is a valid signature.
    assert set(run.outcome.results) <= {CHEATER}

    with pytest.raises(ProtocolAbort, match="does not verify") as info:
        runner.sign_ecdsa(key(), SIGNERS, DIGEST, intercept=rewrite(3, CHEATER, shift))
    assert info.value.culprits == frozenset()


@pytest.mark.parametrize("field", ["u", "w"])
@pytest.mark.parametrize(
    "value",
    [b"", b"\x01" * 31, b"\x01" * 33, Q.to_bytes(32, "big"), (Q + 1).to_bytes(32, "big")],
    ids=["empty", "short", "long", "order", "order+1"],
)
def test_signature_share_that_is_not_a_scalar_names_the_sender(field: str, value: bytes) -> None:
    assert_blamed(attack(rewrite(3, CHEATER, set_field(field, value))), {CHEATER}, "invalid signature share")


# -- single use ---------------------------------------------------------------------------------------


def two_signers() -> dict[int, EcdsaSigner]:
    return ecdsa_signers(cached_keygen(SCHEME, 2, 3), [1, 2], DIGEST)


def test_signer_cannot_be_started_twice() -> None:
    signer = two_signers()[1]
    signer.start()
    with pytest.raises(UsageError, match="already"):
        signer.start()


def test_signer_refuses_envelopes_before_start() -> None:
    parties = two_signers()
    (to_one,) = parties[2].start()
    with pytest.raises(UsageError, match="start"):
        parties[1].receive(to_one)


def test_aborted_signer_refuses_every_further_call() -> None:
    parties = two_signers()
    parties[1].start()
    (to_one,) = parties[2].start()
    with pytest.raises(ProtocolAbort) as info:
        parties[1].receive(dataclasses.replace(to_one, payload=b"\x00"))
    assert info.value.culprits == frozenset({2})
    assert parties[1].aborted is info.value
    with pytest.raises(UsageError, match="aborted"):
        parties[1].receive(to_one)
    with pytest.raises(UsageError, match="aborted"):
        parties[1].start()
    with pytest.raises(UsageError):
        _ = parties[1].result


def test_aborted_signer_forgets_its_instance_secrets() -> None:
    parties = ecdsa_signers(key(), SIGNERS, DIGEST)
    run = attack(rewrite(2, CHEATER, set_field("salt", bytes(32))), parties=parties)
    assert_stopped_before_shares(run, {CHEATER})
    for i in HONEST:
        assert parties[i]._instance is None


def test_instance_secrets_are_gone_once_the_signature_share_is_out() -> None:
    parties = two_signers()
    (from_one,) = parties[1].start()
    (from_two,) = parties[2].start()
    (round2_from_one,) = parties[1].receive(from_two)
    (round2_from_two,) = parties[2].receive(from_one)
    assert parties[1]._instance is not None
    (share_env,) = parties[1].receive(round2_from_two)
    assert share_env.round == 3 and share_env.recipient is None
    assert parties[1]._instance is None
    with pytest.raises(UsageError, match="already used"):
        parties[1]._take()
    assert round2_from_one.round == 2


def test_replayed_envelope_after_the_session_is_refused_and_the_result_stands() -> None:
    parties = ecdsa_signers(key(), SIGNERS, DIGEST)
    log: list[tuple[Envelope, int]] = []
    outcome = drive(parties, recorder(log))
    assert outcome.aborts == {} and len(set(outcome.results.values())) == 1
    signature = parties[1].result
    replays = [env for env, dest in log if dest == 1]
    assert {env.round for env in replays} == {1, 2, 3}
    for env in replays:
        with pytest.raises(ProtocolAbort, match="after the protocol finished") as info:
            parties[1].receive(env)
        assert info.value.culprits == frozenset({env.sender})
        assert parties[1].done and parties[1].result == signature and parties[1].aborted is None


@pytest.mark.parametrize("same_session_id", [False, True], ids=["fresh-session", "reused-session-id"])
def test_two_sessions_over_the_same_inputs_use_fresh_instance_keys(same_session_id: bool) -> None:
    shares = cached_keygen(SCHEME, 2, 3)
    sid = runner.new_session_id()
    options: dict[str, Any] = {"session_id": sid} if same_session_id else {}
    first = runner.sign_ecdsa(shares, [1, 2], DIGEST, **options)
    second = runner.sign_ecdsa(shares, [1, 2], DIGEST, **options)
    assert first.r != second.r and first.s != second.s


def test_no_two_sessions_share_an_instance_point() -> None:
    shares = cached_keygen(SCHEME, 2, 3)
    rs = {runner.sign_ecdsa(shares, signers, DIGEST).r for signers in ([1, 2], [1, 3], [2, 3]) for _ in range(2)}
    assert len(rs) == 6
