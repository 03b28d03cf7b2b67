"""Malicious signers that run modified code, not just tampered messages.

Each test makes one party of a 2-of-3 or 3-of-5 ECDSA key deviate inside its own
computation, in ways a relay could not, and checks that an honest party aborts
naming it before any honest party sends its round-3 share.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from typing import Any

import cbor2
import pytest

from harbour.mpc import runner
from harbour.mpc.ecdsa_sign import EcdsaSigner, SetupCompromised
from harbour.mpc.envelope import Envelope, ProtocolAbort, UsageError, encode_payload
from harbour.mpc.keyshare import KeyShare
from harbour.mpc.ot_extension import KosCheckFailed
from harbour.mpc.runner import Intercept
from harbour.mpc.vole import Q, VoleAlice, VoleError

DIGEST = hashlib.sha256(b"malicious signer tests").digest()


@pytest.fixture(scope="module")
def key() -> dict[int, KeyShare]:
    return runner.keygen("ecdsa-secp256k1", 3, 5)


class _AliceInputs(EcdsaSigner):
    """Feeds the multiplications other inputs than the ones its broadcasts commit to."""

    shift_r = 0
    shift_sk = 0

    def _round2(self, envelopes: list[Envelope]) -> list[Envelope]:
        honest = VoleAlice.respond
        shift_r, shift_sk = self.shift_r, self.shift_sk

        def respond(alice: VoleAlice, message1: bytes, inputs: tuple[int, ...]) -> Any:
            return honest(alice, message1, ((inputs[0] + shift_r) % Q, (inputs[1] + shift_sk) % Q))

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(VoleAlice, "respond", respond)
            return super()._round2(envelopes)


class _WrongR(_AliceInputs):
    shift_r = 1


class _WrongSk(_AliceInputs):
    shift_sk = 1


def _run(key: dict[int, KeyShare], signers: list[int], bad: int, cls: type[EcdsaSigner]) -> Iterator[Envelope]:
    """Run a session with party ``bad`` of class ``cls``; return every envelope posted."""
    sid = runner.new_session_id()
    parties = {i: (cls if i == bad else EcdsaSigner)(sid, key[i], signers, DIGEST) for i in signers}
    posted: list[Envelope] = []

    def watch(env: Envelope, dest: int) -> Envelope:
        posted.append(env)
        return env

    with pytest.raises(ProtocolAbort) as info:
        runner.run(parties, watch)
    assert info.value.culprits == {bad}, info.value.reason
    return iter(posted)


@pytest.mark.parametrize("cls", [_WrongR, _WrongSk], ids=["instance-key", "key-share"])
def test_multiplication_input_not_matching_broadcast_is_caught(key: dict[int, KeyShare], cls: type) -> None:
    """Γ^u / Γ^v checks: χ·R_j − Γ^u = d^u·G and χ·pk_j − Γ^v = d^v·G bind Alice's inputs.

    The key-share case is the check the printed paper states with pk_i; with pk_i
    it would not catch this party, with pk_j (as implemented) it does.
    """
    posted = list(_run(key, [1, 2, 4], 2, cls))
    assert not [e for e in posted if e.round == 3 and e.sender != 2]


def test_honest_session_with_same_classes_succeeds(key: dict[int, KeyShare]) -> None:
    """Control: the subclass with zero shifts behaves honestly, so the tests above test the shift."""
    sid = runner.new_session_id()
    parties = {i: (_AliceInputs if i == 2 else EcdsaSigner)(sid, key[i], [1, 2, 4], DIGEST) for i in [1, 2, 4]}
    results = runner.run(parties)
    assert len(set(results.values())) == 1


def test_instance_secrets_cannot_be_taken_after_the_session(key: dict[int, KeyShare]) -> None:
    sid = runner.new_session_id()
    parties = {i: EcdsaSigner(sid, key[i], [1, 2, 3], DIGEST) for i in [1, 2, 3]}
    runner.run(parties)
    with pytest.raises(UsageError):
        parties[1]._take()


@pytest.mark.parametrize("what", ["digest", "signers"])
def test_signers_handed_different_requests_abort_without_blaming_each_other(
    key: dict[int, KeyShare], what: str
) -> None:
    """Honest parties given different digests (or signer sets) are not cheaters.

    The inputs hash of round one is compared before any multiplication runs, so the
    abort names no one; without it the OT-extension check would fail first and name
    the honest peer.
    """
    sid = runner.new_session_id()
    other = hashlib.sha256(b"another request").digest()
    parties = {
        1: EcdsaSigner(sid, key[1], [1, 2, 4], DIGEST),
        2: EcdsaSigner(sid, key[2], [1, 2, 4], other if what == "digest" else DIGEST),
        4: EcdsaSigner(sid, key[4], [1, 2, 4], DIGEST),
    }
    if what == "signers":
        parties[2] = EcdsaSigner(sid, key[2], [1, 2, 5], DIGEST)
    posted: list[Envelope] = []

    def watch(env: Envelope, dest: int) -> Envelope | None:
        posted.append(env)
        return env if dest in parties else None

    with pytest.raises(ProtocolAbort) as info:
        runner.run(parties, watch)
    assert info.value.culprits == frozenset()
    assert "asked to sign something else" in info.value.reason
    assert not [e for e in posted if e.round >= 2]


def test_kos_failure_is_reported_as_a_compromised_setup(key: dict[int, KeyShare]) -> None:
    """A Bob whose OT extension fails Alice's KOS check may be reading Δ bit by bit.

    The abort is a SetupCompromised naming him, so the caller can stop every later
    session on that pair until a refresh replaces the setup.
    """
    sid = runner.new_session_id()
    parties = {i: EcdsaSigner(sid, key[i], [1, 2, 4], DIGEST) for i in [1, 2, 4]}

    def tamper(env: Envelope, dest: int) -> Envelope:
        if env.round == 1 and env.sender == 2 and dest == 1:
            body = cbor2.loads(env.payload)
            vole = bytearray(body["vole"])
            vole[-1] ^= 1  # t̃: the check fails at Alice
            body["vole"] = bytes(vole)
            body.pop("v")
            return Envelope(env.session_id, env.protocol, env.round, env.sender, env.recipient, encode_payload(body))
        return env

    with pytest.raises(SetupCompromised) as info:
        runner.run(parties, tamper)
    assert info.value.peers == {2} and info.value.culprits == {2}
    assert info.value.party == 1
    assert isinstance(info.value.__cause__, KosCheckFailed)


def _tamper_vole(rnd: int, sender: int, dest_: int, change: Callable[[bytes], bytes]) -> Intercept:
    def tamper(env: Envelope, dest: int) -> Envelope:
        if env.round == rnd and env.sender == sender and dest == dest_:
            body = cbor2.loads(env.payload)
            body["vole"] = change(body["vole"])
            body.pop("v")
            return dataclasses.replace(env, payload=encode_payload(body))
        return env

    return tamper


@pytest.mark.parametrize(
    ("rnd", "change", "match"),
    [
        (1, lambda m: m[:-1], "expected"),  # Alice: Bob's message has the wrong length
        (2, lambda m: m[:-65] + bytes([m[-65] ^ 1]) + m[-64:], "consistency check"),  # Bob: the r-hash
    ],
    ids=["bobs-message-length", "alices-check-value"],
)
def test_other_multiplication_failures_are_ordinary_aborts(
    key: dict[int, KeyShare], rnd: int, change: Callable[[bytes], bytes], match: str
) -> None:
    """Only the KOS check can leak Alice's Δ; any other multiplication failure aborts the
    session naming the peer, without marking the pairwise setup compromised."""
    sid = runner.new_session_id()
    parties = {i: EcdsaSigner(sid, key[i], [1, 2, 4], DIGEST) for i in [1, 2, 4]}
    with pytest.raises(ProtocolAbort, match=match) as info:
        runner.run(parties, _tamper_vole(rnd, 2, 1, change))
    assert not isinstance(info.value, SetupCompromised)
    assert info.value.culprits == {2}


def test_a_vole_error_that_merely_mentions_the_correlation_check_is_not_a_kos_failure(
    key: dict[int, KeyShare], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The KOS failure is recognised by its type, not by the words of a message."""

    def respond(alice: VoleAlice, message1: bytes, inputs: tuple[int, ...]) -> Any:
        raise VoleError("something else went wrong near the correlation check")

    monkeypatch.setattr(VoleAlice, "respond", respond)
    sid = runner.new_session_id()
    parties = {i: EcdsaSigner(sid, key[i], [1, 2, 4], DIGEST) for i in [1, 2, 4]}
    with pytest.raises(ProtocolAbort) as info:
        runner.run(parties)
    assert not isinstance(info.value, SetupCompromised)
    assert "multiplication with party" in info.value.reason


def test_share_with_a_stale_setup_aborts_without_blaming_the_peer(key: dict[int, KeyShare]) -> None:
    """A share restored from before the last setup must not make its peer look like a cheater."""
    stale = runner.ecdsa_setup(key)  # a new setup for everyone ...
    shares = {1: key[1], 2: stale[2], 4: key[4]}  # ... of which party 2 alone kept the new copy
    sid = runner.new_session_id()
    parties = {i: EcdsaSigner(sid, shares[i], [1, 2, 4], DIGEST) for i in [1, 2, 4]}
    with pytest.raises(ProtocolAbort) as info:
        runner.run(parties)
    assert info.value.culprits == frozenset()
    assert "another pairwise setup" in info.value.reason


def test_abort_from_the_envelope_checks_also_drops_the_secrets(key: dict[int, KeyShare]) -> None:
    sid = runner.new_session_id()
    party = EcdsaSigner(sid, key[1], [1, 2, 4], DIGEST)
    party.start()
    assert party._instance is not None
    foreign = Envelope(runner.new_session_id(), party.protocol, 1, 2, 1, b"\xa0")
    with pytest.raises(ProtocolAbort):
        party.receive(foreign)
    assert party._instance is None and party._bobs == {}
