"""A signer whose saved party state is restored gives away its key share to a
malicious co-signer: DKLs23 after one rollback, FROST after two.

This is why signing sessions are never resumed and the cold node binds its saved
state to a counter that cannot be rolled back (DESIGN.md, MPC conventions; docs/nodes.md, Limits: Rollback). The
rollback is simulated with ``copy.deepcopy`` of the honest party at the moment its
state would be saved; the attack itself (tests/rollback_attack.py) sees only
envelopes and the attacker's own key share, as it would against a real node.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from harbour.crypto.shamir import interpolate_at_zero
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.ecdsa_sign import EcdsaSigner, Q
from harbour.mpc.envelope import Envelope, ProtocolAbort
from harbour.mpc.frost_party import FrostSigner
from harbour.mpc.keyshare import KeyShare
from helpers import SCHEMES, cached_keygen, ecdsa_signers, frost_signers, session
from rollback_attack import (
    EcdsaAnswer,
    ExtractionError,
    FrostAnswer,
    ecdsa_extract_share,
    ecdsa_forge_round2,
    frost_extract_share,
    frost_forge_round1,
    recover_group_secret,
)

DIGEST = hashlib.sha256(b"release 120 BTC from the cold vault").digest()
MESSAGE = hashlib.sha256(b"pay 1 BTC to the cold wallet").digest()


def real_secret(shares: Mapping[int, KeyShare]) -> int:
    """The key nobody holds: interpolated from every share, for comparison only."""
    first = next(iter(shares.values()))
    return interpolate_at_zero({i: s.secret_share for i, s in shares.items()}, first.group.order)


# -- DKLs23: the victim restored to just after it sent round two ----------------------------------


@dataclass
class EcdsaRollback:
    """One session stopped where the victim's state is saved, and what the attacker holds then."""

    session_id: bytes
    signers: list[int]
    saved: EcdsaSigner
    attacker: EcdsaSigner
    to_victim: Envelope
    """The attacker's honest round-two envelope to the victim."""
    round2_received: list[Envelope]
    """The round-two envelopes the attacker received (the victim's)."""

    def answer(self, sent: Envelope) -> EcdsaAnswer:
        """Restore the saved victim and deliver ``sent``: its round-three broadcast."""
        restored = copy.deepcopy(self.saved)
        [round3] = restored.receive(sent)
        return EcdsaAnswer(sent, round3)


def ecdsa_until_victim_sent_round_two(
    shares: Mapping[int, KeyShare], victim: int, attacker: int, digest: bytes = DIGEST
) -> EcdsaRollback:
    sid = session()
    signers = sorted([victim, attacker])
    parties = ecdsa_signers(shares, signers, digest, sid)
    round1 = [env for p in parties.values() for env in p.start()]
    round2 = [out for env in round1 if env.recipient is not None for out in parties[env.recipient].receive(env)]
    [to_victim] = [env for env in round2 if env.sender == attacker]
    received = [env for env in round2 if env.recipient == attacker]
    return EcdsaRollback(sid, signers, copy.deepcopy(parties[victim]), parties[attacker], to_victim, received)


def ecdsa_extract(
    rollback: EcdsaRollback, shares: Mapping[int, KeyShare], victim: int, attacker: int, a: EcdsaAnswer, b: EcdsaAnswer
) -> int:
    return ecdsa_extract_share(
        victim, shares[attacker], rollback.session_id, rollback.signers, DIGEST, rollback.round2_received, a, b
    )


@pytest.mark.parametrize(("victim", "attacker"), [(1, 2), (2, 1), (3, 1)])
def test_ecdsa_signer_restored_after_round_two_gives_the_attacker_the_whole_key(victim: int, attacker: int) -> None:
    shares = cached_keygen(ECDSA_SCHEME, 2, 3)
    rollback = ecdsa_until_victim_sent_round_two(shares, victim, attacker)
    # First run: the honest session, which ends in a valid signature.
    live = copy.deepcopy(rollback.saved)
    [round3] = live.receive(rollback.to_victim)
    [attacker_round3] = [out for env in rollback.round2_received for out in rollback.attacker.receive(env)]
    live.receive(attacker_round3)
    assert live.done  # the victim verified the signature against the group key
    honest = EcdsaAnswer(rollback.to_victim, round3)
    # Second run, from the restored state: the same envelope with ψ shifted, which
    # no check of round three looks at.
    forged = rollback.answer(ecdsa_forge_round2(rollback.to_victim, 1))

    x_victim = ecdsa_extract(rollback, shares, victim, attacker, honest, forged)
    assert x_victim == shares[victim].secret_share
    secret = recover_group_secret({victim: x_victim, attacker: shares[attacker].secret_share}, shares[victim].public)
    assert secret == real_secret(shares)


def test_ecdsa_forged_round_two_gives_the_key_even_when_no_run_was_honest() -> None:
    shares = cached_keygen(ECDSA_SCHEME, 2, 3)
    rollback = ecdsa_until_victim_sent_round_two(shares, 1, 2)
    a = rollback.answer(ecdsa_forge_round2(rollback.to_victim, 5))
    b = rollback.answer(ecdsa_forge_round2(rollback.to_victim, Q - 7))
    assert ecdsa_extract(rollback, shares, 1, 2, a, b) == shares[1].secret_share


def test_ecdsa_signer_that_is_not_rolled_back_refuses_a_second_round_two_envelope() -> None:
    shares = cached_keygen(ECDSA_SCHEME, 2, 3)
    rollback = ecdsa_until_victim_sent_round_two(shares, 1, 2)
    victim = copy.deepcopy(rollback.saved)  # the live party, not a restored copy
    victim.receive(rollback.to_victim)
    with pytest.raises(ProtocolAbort, match="second message") as info:
        victim.receive(ecdsa_forge_round2(rollback.to_victim, 1))
    assert info.value.culprits == frozenset({2})


def test_ecdsa_one_answer_reveals_nothing_so_extraction_refuses_it_twice() -> None:
    shares = cached_keygen(ECDSA_SCHEME, 2, 3)
    rollback = ecdsa_until_victim_sent_round_two(shares, 1, 2)
    only = rollback.answer(rollback.to_victim)
    with pytest.raises(ExtractionError, match="same ψ"):
        ecdsa_extract(rollback, shares, 1, 2, only, only)


def test_ecdsa_answers_from_two_separate_sessions_are_refused_not_turned_into_a_wrong_share() -> None:
    # Without a rollback the attacker can only start a new session: new r_i, φ_i
    # and vOLE randomness, so the difference of two answers is noise.
    shares = cached_keygen(ECDSA_SCHEME, 2, 3)
    first = ecdsa_until_victim_sent_round_two(shares, 1, 2)
    second = ecdsa_until_victim_sent_round_two(shares, 1, 2)
    a = first.answer(first.to_victim)
    b = second.answer(ecdsa_forge_round2(second.to_victim, 1))
    with pytest.raises(ExtractionError, match="more than ψ"):
        ecdsa_extract(first, shares, 1, 2, a, b)


# -- FROST: the victim restored to just after it sent round one -----------------------------------

FROST_SIGNERS = [1, 2, 3]  # 3 is honest and not rolled back: its commitments stay the same
VICTIM, ATTACKER = 1, 2


@dataclass
class FrostRollback:
    """One session stopped where the victim's state is saved, and the round one everyone sent."""

    saved: FrostSigner
    round1: dict[int, Envelope]
    """Every signer's honest round-one broadcast."""

    def answer(self, attacker_round1: Envelope) -> FrostAnswer:
        """Restore the saved victim and deliver round one with the attacker's ``attacker_round1``."""
        restored = copy.deepcopy(self.saved)
        received = {**self.round1, ATTACKER: attacker_round1}
        out = [env for i, env in sorted(received.items()) if i != VICTIM for env in restored.receive(env)]
        [round2] = out
        return FrostAnswer([received[i] for i in sorted(received)], round2)

    def answers(self, forged: int) -> list[FrostAnswer]:
        """The honest run, then ``forged`` runs with fresh attacker commitments."""
        attacker = self.round1[ATTACKER]
        return [self.answer(attacker)] + [self.answer(frost_forge_round1(attacker)) for _ in range(forged)]


def frost_until_victim_sent_round_one(shares: Mapping[int, KeyShare], **options: Any) -> FrostRollback:
    parties = frost_signers(shares, FROST_SIGNERS, MESSAGE, **options)
    round1 = {i: p.start()[0] for i, p in parties.items()}
    return FrostRollback(copy.deepcopy(parties[VICTIM]), round1)


def frost_extract(shares: Mapping[int, KeyShare], answers: Sequence[FrostAnswer], **options: Any) -> int:
    return frost_extract_share(shares[VICTIM].public, VICTIM, MESSAGE, answers, **options)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_frost_signer_restored_twice_after_round_one_gives_the_attacker_the_whole_key(scheme: str) -> None:
    shares = cached_keygen(scheme, 2, 3)
    rollback = frost_until_victim_sent_round_one(shares)
    x_victim = frost_extract(shares, rollback.answers(forged=2))
    assert x_victim == shares[VICTIM].secret_share
    secret = recover_group_secret({VICTIM: x_victim, ATTACKER: shares[ATTACKER].secret_share}, shares[VICTIM].public)
    assert secret == real_secret(shares)


@pytest.mark.parametrize("options", [{"merkle_root": b"\x07" * 32}, {"tweak": False}], ids=["script-tree", "untweaked"])
def test_frost_taproot_rollback_gives_the_key_whatever_the_tweak(options: dict[str, Any]) -> None:
    shares = cached_keygen("frost-taproot", 2, 3)
    rollback = frost_until_victim_sent_round_one(shares, **options)
    assert frost_extract(shares, rollback.answers(forged=2), **options) == shares[VICTIM].secret_share


def test_frost_signer_that_is_not_rolled_back_refuses_a_second_commitment() -> None:
    shares = cached_keygen("frost-secp256k1", 2, 3)
    rollback = frost_until_victim_sent_round_one(shares)
    victim = copy.deepcopy(rollback.saved)
    victim.receive(rollback.round1[ATTACKER])
    with pytest.raises(ProtocolAbort, match="second message") as info:
        victim.receive(frost_forge_round1(rollback.round1[ATTACKER]))
    assert info.value.culprits == frozenset({ATTACKER})


def test_frost_two_answers_after_one_rollback_do_not_determine_the_share() -> None:
    shares = cached_keygen("frost-secp256k1", 2, 3)
    rollback = frost_until_victim_sent_round_one(shares)
    with pytest.raises(ExtractionError, match="three answers"):
        frost_extract(shares, rollback.answers(forged=1))


def test_frost_one_answer_repeated_reveals_nothing() -> None:
    shares = cached_keygen("frost-secp256k1", 2, 3)
    rollback = frost_until_victim_sent_round_one(shares)
    [only] = rollback.answers(forged=0)
    with pytest.raises(ExtractionError, match="not independent"):
        frost_extract(shares, [only, only, only])


def test_frost_rollback_answering_the_same_commitments_again_reveals_nothing() -> None:
    # Restored three times but fed the same round one: the same share three times.
    shares = cached_keygen("frost-secp256k1", 2, 3)
    rollback = frost_until_victim_sent_round_one(shares)
    answers = [rollback.answer(rollback.round1[ATTACKER]) for _ in range(3)]
    assert len({a.round2 for a in answers}) == 1
    with pytest.raises(ExtractionError, match="not independent"):
        frost_extract(shares, answers)


def test_frost_answers_from_separate_sessions_are_refused_not_turned_into_a_wrong_share() -> None:
    shares = cached_keygen("frost-secp256k1", 2, 3)
    answers = [frost_until_victim_sent_round_one(shares).answers(forged=0)[0] for _ in range(3)]
    with pytest.raises(ExtractionError, match="one round-one commitment"):
        frost_extract(shares, answers)
