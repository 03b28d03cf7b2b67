"""The party framework: every envelope is checked before protocol code sees it,
and a party is driven exactly once, in order, and never after it aborted."""

from __future__ import annotations

import dataclasses

import pytest

from harbour.mpc import runner
from harbour.mpc.dkg import DkgParty
from harbour.mpc.envelope import Envelope, ProtocolAbort, UsageError, encode_payload
from harbour.mpc.frost_party import FrostSigner
from helpers import cached_keygen, dkg_parties, frost_signers, recorder, session

SCHEME = "frost-secp256k1"


def started() -> tuple[dict[int, DkgParty], dict[int, Envelope]]:
    """A 2-of-3 DKG whose parties have started; returns each party's round-one broadcast."""
    parties = dkg_parties(SCHEME, 2, 3)
    round1 = {}
    for i, p in parties.items():
        (env,) = p.start()
        round1[i] = env
    return parties, round1


def blames(party: DkgParty | FrostSigner, env: Envelope, culprit: int, match: str) -> ProtocolAbort:
    done_before = party.done
    with pytest.raises(ProtocolAbort, match=match) as info:
        party.receive(env)
    assert info.value.culprits == frozenset({culprit})
    assert party.aborted is info.value and party.done == done_before
    return info.value


def test_replay_from_an_earlier_session_names_the_sender() -> None:
    log: list[tuple[Envelope, int]] = []
    runner.keygen(SCHEME, 2, 3, intercept=recorder(log))
    old = next(env for env, _ in log if env.round == 1 and env.sender == 2)
    parties, _ = started()
    blames(parties[1], old, 2, "another session")


def test_envelope_with_tampered_session_id_names_the_sender() -> None:
    parties, r1 = started()
    blames(parties[1], dataclasses.replace(r1[2], session_id=session()), 2, "another session")


def test_message_for_another_protocol_names_the_sender() -> None:
    parties, r1 = started()
    blames(parties[1], dataclasses.replace(r1[2], protocol="dkg/frost-ed25519"), 2, "protocol")


@pytest.mark.parametrize("rnd", [0, 3, 2**40])
def test_message_for_an_unknown_round_names_the_sender(rnd: int) -> None:
    parties, r1 = started()
    blames(parties[1], dataclasses.replace(r1[2], round=rnd), 2, f"no round {rnd}")


@pytest.mark.parametrize("sender", [0, 4, 256], ids=["zero", "outsider", "256"])
def test_message_from_a_sender_not_in_the_session_is_refused(sender: int) -> None:
    parties, r1 = started()
    blames(parties[1], dataclasses.replace(r1[2], sender=sender), sender, "not a sender")


def test_message_claiming_to_come_from_ourselves_is_refused() -> None:
    parties, r1 = started()
    blames(parties[1], dataclasses.replace(r1[2], sender=1), 1, "not a sender")


def test_point_to_point_message_addressed_to_someone_else_names_the_sender() -> None:
    parties, r1 = started()
    env = Envelope(r1[2].session_id, r1[2].protocol, 2, 2, 3, encode_payload({"share": b"", "echo": b""}))
    blames(parties[1], env, 2, "addressed to 3")


def test_point_to_point_round_sent_as_broadcast_names_the_sender() -> None:
    parties, r1 = started()
    env = Envelope(r1[2].session_id, r1[2].protocol, 2, 2, None, encode_payload({"share": b"", "echo": b""}))
    blames(parties[1], env, 2, "addressed to None")


def test_broadcast_round_message_sent_point_to_point_names_the_sender() -> None:
    parties, r1 = started()
    blames(parties[1], dataclasses.replace(r1[2], recipient=1), 2, "broadcast round")


def test_second_message_from_the_same_sender_in_a_round_is_refused() -> None:
    parties, r1 = started()
    assert parties[1].receive(r1[2]) == []
    blames(parties[1], r1[2], 2, "second message")


def test_different_second_message_from_the_same_sender_is_refused() -> None:
    parties, r1 = started()
    _, other = started()
    parties[1].receive(r1[2])
    forged = dataclasses.replace(r1[2], payload=other[2].payload)
    blames(parties[1], forged, 2, "second message")


def test_duplicate_after_the_round_completed_is_refused() -> None:
    parties, r1 = started()
    parties[1].receive(r1[2])
    assert len(parties[1].receive(r1[3])) == 2  # round two went out to 2 and 3
    blames(parties[1], r1[2], 2, "second message")


def test_message_after_the_protocol_finished_is_refused() -> None:
    parties = dkg_parties(SCHEME, 2, 3)
    log: list[tuple[Envelope, int]] = []
    runner.run(parties, recorder(log))
    assert parties[1].done
    late = next(env for env, dest in log if dest == 1 and env.round == 2)
    result = parties[1].result
    with pytest.raises(ProtocolAbort, match="finished") as info:
        parties[1].receive(late)
    assert info.value.culprits == frozenset({late.sender})
    # Refused without poisoning the party: a replayed envelope cannot undo a result.
    assert parties[1].aborted is None and parties[1].result is result


def test_abort_is_final() -> None:
    parties, r1 = started()
    abort = blames(parties[1], dataclasses.replace(r1[2], round=9), 2, "no round")
    with pytest.raises(UsageError, match="aborted"):
        parties[1].receive(r1[3])
    with pytest.raises(UsageError, match="aborted"):
        parties[1].receive(r1[2])
    with pytest.raises(UsageError):
        parties[1].result  # noqa: B018
    assert parties[1].aborted is abort


def test_start_after_abort_is_refused() -> None:
    parties = dkg_parties(SCHEME, 2, 3)
    other = dkg_parties(SCHEME, 2, 3)
    parties[1].start()
    (env,) = other[2].start()
    with pytest.raises(ProtocolAbort):
        parties[1].receive(env)
    with pytest.raises(UsageError):
        parties[1].start()


def test_start_twice_is_refused() -> None:
    parties, _ = started()
    with pytest.raises(UsageError, match="already"):
        parties[1].start()


def test_receive_before_start_is_refused() -> None:
    parties = dkg_parties(SCHEME, 2, 3)
    (env,) = parties[2].start()
    with pytest.raises(UsageError, match="start"):
        parties[1].receive(env)


def test_result_before_done_is_refused() -> None:
    parties, _ = started()
    with pytest.raises(UsageError, match="not finished"):
        parties[1].result  # noqa: B018


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_session_id_of_wrong_length_is_refused(length: int) -> None:
    with pytest.raises(UsageError, match="session"):
        dkg_parties(SCHEME, 2, 3, session_id=b"\x01" * length)


def test_early_messages_are_buffered_until_their_round() -> None:
    # Deliver newest first: round-two messages overtake round-one messages.
    parties = dkg_parties(SCHEME, 2, 3)
    stack: list[tuple[Envelope, int]] = []

    def post(envs: list[Envelope]) -> None:
        for env in envs:
            dests = [env.recipient] if env.recipient is not None else [i for i in parties if i != env.sender]
            stack.extend((env, d) for d in dests if d is not None)

    for p in parties.values():
        post(p.start())
    overtaken = 0
    while stack:
        env, dest = stack.pop()
        if env.round == 2 and parties[dest]._current == 1:
            overtaken += 1
        post(parties[dest].receive(env))
    assert overtaken > 0
    assert all(p.done for p in parties.values())
    assert len({p.result.group_public_key for p in parties.values()}) == 1


def test_frost_signer_refuses_message_of_another_scheme() -> None:
    shares = cached_keygen(SCHEME, 2, 3)
    signers = frost_signers(shares, [1, 2], b"msg")
    envs = {i: s.start() for i, s in signers.items()}
    forged = dataclasses.replace(envs[2][0], protocol="frost-sign/frost-taproot")
    blames(signers[1], forged, 2, "protocol")


def test_frost_signer_refuses_message_from_a_party_that_is_not_signing() -> None:
    shares = cached_keygen(SCHEME, 2, 3)
    signers = frost_signers(shares, [1, 2], b"msg")
    envs = {i: s.start() for i, s in signers.items()}
    blames(signers[1], dataclasses.replace(envs[2][0], sender=3), 3, "not a sender")
