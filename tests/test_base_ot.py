"""Verified Simplest OT (DKLs18 protocol 7): an honest batch gives the receiver the
pad of its choice and not the other; every malformed message and every deviation
of a malicious sender or receiver is refused with OtError at the step that can
see it; steps out of order are a programming error (RuntimeError)."""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass

import pytest

from harbour.crypto import dlog
from harbour.crypto.group import RandomBytes
from harbour.crypto.secp256k1 import SECP256K1
from harbour.mpc.base_ot import BATCH, PAD_LEN, OtError, VsotReceiver, VsotSender
from helpers import SECP_BAD_POINTS

CONTEXT = b"harbour/test/base-ot/session-7/sender-1/receiver-2"
OTHER_CONTEXT = b"harbour/test/base-ot/session-8/sender-1/receiver-2"
CHOICES = random.Random(2018).getrandbits(BATCH) | 1 << 3  # bit 3 is 1 ...
CHOICES &= ~(1 << 4)  # ... and bit 4 is 0
POINT = SECP256K1.point_len
MESSAGE1_LEN = POINT + dlog.proof_length(SECP256K1)
OTS = [0, 137, BATCH - 1]  # first, middle and last OT of the batch


def h1(context: bytes, value: bytes) -> bytes:
    """H' of the protocol: SHA-256 under its tag, prefixed with the context (restated here)."""
    tag = b"harbour/vsot/verify"
    prefix = len(tag).to_bytes(2, "big") + tag + len(context).to_bytes(2, "big") + context
    return hashlib.sha256(prefix + value).digest()


def seeded(seed: int) -> RandomBytes:
    """A reproducible byte source, so that one run can be replayed exactly."""
    counter = itertools.count()

    def rng(n: int) -> bytes:
        return hashlib.shake_256(b"test-rng" + seed.to_bytes(8, "big") + next(counter).to_bytes(8, "big")).digest(n)

    return rng


def bit(choices: int, k: int) -> int:
    return choices >> k & 1


def with_bit(choices: int, k: int, value: int) -> int:
    return choices & ~(1 << k) | value << k


def chunk(data: bytes, size: int, k: int) -> bytes:
    return data[k * size : (k + 1) * size]


def replace_chunk(data: bytes, size: int, k: int, new: bytes) -> bytes:
    assert len(new) == size
    return data[: k * size] + new + data[(k + 1) * size :]


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@dataclass
class Run:
    sender: VsotSender
    receiver: VsotReceiver
    messages: dict[int, bytes]


def start(choices: int = CHOICES, receiver_context: bytes = CONTEXT) -> Run:
    return Run(VsotSender(CONTEXT), VsotReceiver(receiver_context, choices), {})


def run_until(last: int, choices: int = CHOICES) -> Run:
    """A fresh honest batch, run up to and including message ``last`` (1..5)."""
    run = start(choices)
    s, r, msg = run.sender, run.receiver, run.messages
    msg[1] = s.message1()
    if last >= 2:
        msg[2] = r.message2(msg[1])
    if last >= 3:
        msg[3] = s.message3(msg[2])
    if last >= 4:
        msg[4] = r.message4(msg[3])
    if last >= 5:
        msg[5] = s.message5(msg[4])
    return run


@pytest.fixture(scope="module")
def honest() -> Run:
    run = run_until(5)
    run.receiver.finish(run.messages[5])
    return run


# -- an honest batch ---------------------------------------------------------------------------


def test_receiver_gets_the_pad_of_each_choice_bit(honest: Run) -> None:
    s, r = honest.sender, honest.receiver
    assert len(r.pads) == len(s.pads0) == len(s.pads1) == BATCH
    for k in range(BATCH):
        chosen, other = (s.pads1[k], s.pads0[k]) if bit(CHOICES, k) else (s.pads0[k], s.pads1[k])
        assert r.pads[k] == chosen
        assert r.pads[k] != other
        assert len(r.pads[k]) == PAD_LEN


def test_choices_mix_zeros_and_ones(honest: Run) -> None:
    assert 0 < bin(CHOICES).count("1") < BATCH
    assert honest.receiver.choices == CHOICES


def test_pads_are_distinct_across_ots(honest: Run) -> None:
    s = honest.sender
    assert len(set(s.pads0) | set(s.pads1)) == 2 * BATCH


def test_message_lengths(honest: Run) -> None:
    msg = honest.messages
    assert len(msg[1]) == MESSAGE1_LEN
    assert len(msg[2]) == BATCH * POINT
    assert len(msg[3]) == BATCH * PAD_LEN
    assert len(msg[4]) == BATCH * PAD_LEN
    assert len(msg[5]) == BATCH * 2 * PAD_LEN


def test_openings_are_the_tagged_hashes_of_both_pads(honest: Run) -> None:
    # Pins H' as restated in h1(), which the attack tests below use to forge openings.
    s = honest.sender
    for k in OTS:
        assert chunk(honest.messages[5], 2 * PAD_LEN, k) == h1(CONTEXT, s.pads0[k]) + h1(CONTEXT, s.pads1[k])


@pytest.mark.parametrize("choices", [0, (1 << BATCH) - 1], ids=["all-zero", "all-one"])
def test_uniform_choice_vectors_work(choices: int) -> None:
    run = run_until(5, choices)
    run.receiver.finish(run.messages[5])
    expected = run.sender.pads1 if choices else run.sender.pads0
    assert run.receiver.pads == expected


def test_a_second_batch_has_fresh_pads(honest: Run) -> None:
    run = run_until(5)
    run.receiver.finish(run.messages[5])
    assert not set(run.receiver.pads) & set(honest.receiver.pads)


# -- message 1: the sender's key and its proof -------------------------------------------------


def test_receiver_with_another_context_rejects_the_senders_proof() -> None:
    run = start(receiver_context=OTHER_CONTEXT)
    with pytest.raises(OtError, match="proof"):
        run.receiver.message2(run.sender.message1())


@pytest.mark.parametrize("index", [POINT, POINT + 10, POINT + 33, MESSAGE1_LEN - 1], ids=lambda i: f"byte-{i}")
def test_tampered_proof_is_rejected(index: int) -> None:
    run = start()
    with pytest.raises(OtError):
        run.receiver.message2(flip(run.sender.message1(), index))


def test_key_replaced_by_another_point_keeping_the_proof_is_rejected() -> None:
    run = start()
    message1 = run.sender.message1()
    B = SECP256K1.decode_point(message1[:POINT])
    forged = (B + SECP256K1.generator()).encode() + message1[POINT:]
    with pytest.raises(OtError, match="proof"):
        run.receiver.message2(forged)


def test_key_with_a_proof_made_for_another_purpose_is_rejected() -> None:
    # A Schnorr proof for the right key but not under the base-OT proof context.
    b = 0xC0FFEE
    forged = SECP256K1.base_mul(b).encode() + dlog.prove(SECP256K1, b, CONTEXT)
    with pytest.raises(OtError, match="proof"):
        start().receiver.message2(forged)


def test_key_with_a_valid_proof_under_the_right_context_is_accepted() -> None:
    # The control for the test above: the same forgery with the proof context the protocol uses.
    b = 0xC0FFEE
    good = SECP256K1.base_mul(b).encode() + dlog.prove(SECP256K1, b, b"harbour/vsot/proof" + CONTEXT)
    assert len(start().receiver.message2(good)) == BATCH * POINT


@pytest.mark.parametrize("name", ["identity-zero-prefix", "off-curve-x", "non-canonical-x-alias-of-valid-x"])
def test_invalid_sender_key_is_rejected(name: str) -> None:
    run = start()
    message1 = run.sender.message1()
    with pytest.raises(OtError, match="key is invalid"):
        run.receiver.message2(SECP_BAD_POINTS[name] + message1[POINT:])


@pytest.mark.parametrize("length", [0, POINT, MESSAGE1_LEN - 1, MESSAGE1_LEN + 1, 2 * MESSAGE1_LEN])
def test_message1_of_wrong_length_is_rejected(length: int) -> None:
    run = start()
    message1 = run.sender.message1()
    with pytest.raises(OtError, match="length"):
        run.receiver.message2((message1 * 2)[:length])


@pytest.mark.parametrize("choices", [-1, 1 << BATCH])
def test_choices_out_of_range_are_refused(choices: int) -> None:
    run = start(choices)
    with pytest.raises(ValueError, match="bits"):
        run.receiver.message2(run.sender.message1())


# -- message 2: the receiver's points ----------------------------------------------------------


@pytest.mark.parametrize("k", OTS)
@pytest.mark.parametrize(
    "name", ["identity-zero-prefix", "off-curve-x", "non-canonical-x-alias-of-valid-x", "prefix-05"]
)
def test_invalid_receiver_point_is_rejected(k: int, name: str) -> None:
    run = run_until(2)
    bad = SECP_BAD_POINTS[name]
    assert len(bad) == POINT
    with pytest.raises(OtError, match=f"point {k} is invalid"):
        run.sender.message3(replace_chunk(run.messages[2], POINT, k, bad))


def test_receiver_point_equal_to_the_senders_key_is_rejected() -> None:
    # A_k = B makes the pad of choice 1 the hash of the identity: refused, not hashed.
    run = run_until(2)
    B = run.messages[1][:POINT]
    with pytest.raises(OtError, match="point 5 is invalid"):
        run.sender.message3(replace_chunk(run.messages[2], POINT, 5, B))


@pytest.mark.parametrize("length", [0, POINT, BATCH * POINT - 1, BATCH * POINT + 1, (BATCH - 1) * POINT])
def test_message2_of_wrong_length_is_rejected(length: int) -> None:
    run = run_until(2)
    with pytest.raises(OtError, match="receiver points"):
        run.sender.message3((run.messages[2] * 2)[:length])


# -- message 3: the sender's challenges --------------------------------------------------------


@pytest.mark.parametrize("length", [0, BATCH * PAD_LEN - 1, BATCH * PAD_LEN + 1, (BATCH - 1) * PAD_LEN])
def test_message3_of_wrong_length_is_rejected(length: int) -> None:
    run = run_until(3)
    with pytest.raises(OtError, match="sender challenges"):
        run.receiver.message4((run.messages[3] * 2)[:length])


@pytest.mark.parametrize("omega", [0, 1])
def test_tampered_challenge_is_caught(omega: int) -> None:
    """A sender that alters ξ_k to learn ω_k from the response is caught by the receiver.

    With ω_k = 1 the response carries the altered ξ_k, so even an honest check of it in
    message 5 fails; with ω_k = 0 the response does not depend on ξ_k, and it is the
    receiver's check of the openings against ξ_k that fails (the sender cannot find an
    opening hashing to the altered value).
    """
    k = 200
    run = run_until(3, with_bit(CHOICES, k, omega))
    message3 = flip(run.messages[3], k * PAD_LEN)
    message4 = run.receiver.message4(message3)
    s = run.sender
    openings = b"".join(h1(CONTEXT, p0) + h1(CONTEXT, p1) for p0, p1 in zip(s.pads0, s.pads1, strict=True))
    if omega:
        with pytest.raises(OtError, match="responses are wrong"):
            s.message5(message4)
    else:
        assert s.message5(message4) == openings
    with pytest.raises(OtError, match=f"opening of OT {k} "):
        run.receiver.finish(openings)
    assert run.receiver.pads == []


@pytest.mark.parametrize("opening", ["of-b", "of-b-prime"])
@pytest.mark.parametrize("omega", [0, 1])
def test_sender_using_another_key_for_one_ot_is_caught(omega: int, opening: str) -> None:
    """A sender that answers OT k with a second key b' (pads from b'·A_k) instead of b.

    Simulated by a second sender fed the same receiver points: its challenge replaces
    ξ_k. Whichever openings the cheat then sends for OT k (those of b or those of b'),
    the receiver's final check fails. The response to the foreign ξ_k matches what an
    honest sender expects only when ω_k = 0 (the response then ignores ξ_k), so the
    sender's own check cannot be what stops this; the receiver's check is.
    """
    k = 42
    sender, second = VsotSender(CONTEXT, seeded(1)), VsotSender(CONTEXT, seeded(2))
    receiver = VsotReceiver(CONTEXT, with_bit(CHOICES, k, omega), seeded(3))
    message2 = receiver.message2(sender.message1())
    second.message1()
    own = sender.message3(message2)
    foreign = second.message3(message2)
    assert chunk(foreign, PAD_LEN, k) != chunk(own, PAD_LEN, k)
    message4 = receiver.message4(replace_chunk(own, PAD_LEN, k, chunk(foreign, PAD_LEN, k)))

    expected = [h1(CONTEXT, h1(CONTEXT, p)) for p in sender.pads0]
    assert [j for j in range(BATCH) if chunk(message4, PAD_LEN, j) != expected[j]] == ([k] if omega else [])

    openings = [h1(CONTEXT, p0) + h1(CONTEXT, p1) for p0, p1 in zip(sender.pads0, sender.pads1, strict=True)]
    if opening == "of-b-prime":
        openings[k] = h1(CONTEXT, second.pads0[k]) + h1(CONTEXT, second.pads1[k])
    with pytest.raises(OtError, match=f"opening of OT {k} "):
        receiver.finish(b"".join(openings))
    assert receiver.pads == []


def test_seeded_runs_are_reproducible() -> None:
    # The control for the test above: the same seeds give the same batch, honest and accepted.
    runs = []
    for _ in range(2):
        sender, receiver = VsotSender(CONTEXT, seeded(1)), VsotReceiver(CONTEXT, CHOICES, seeded(3))
        message2 = receiver.message2(sender.message1())
        receiver.finish(sender.message5(receiver.message4(sender.message3(message2))))
        runs.append(receiver.pads)
    assert runs[0] == runs[1]


# -- message 4: the receiver's responses -------------------------------------------------------


@pytest.mark.parametrize("k", OTS)
def test_wrong_receiver_response_is_caught_by_the_sender(k: int) -> None:
    run = run_until(4)
    with pytest.raises(OtError, match="responses are wrong"):
        run.sender.message5(flip(run.messages[4], k * PAD_LEN + 7))
    assert run.sender.pads0 == run.sender.pads1 == []


def test_receiver_answering_as_if_its_choice_were_flipped_is_caught() -> None:
    # Responding H'(H'(ρ_k)) without the ξ_k correction for a choice-1 OT.
    k = 3
    assert bit(CHOICES, k) == 1
    run = run_until(4)
    response = chunk(run.messages[4], PAD_LEN, k)
    xi = chunk(run.messages[3], PAD_LEN, k)
    uncorrected = bytes(a ^ b for a, b in zip(response, xi, strict=True))
    with pytest.raises(OtError, match="responses are wrong"):
        run.sender.message5(replace_chunk(run.messages[4], PAD_LEN, k, uncorrected))


@pytest.mark.parametrize("length", [0, BATCH * PAD_LEN - 1, BATCH * PAD_LEN + 1, (BATCH - 1) * PAD_LEN])
def test_message4_of_wrong_length_is_rejected(length: int) -> None:
    run = run_until(4)
    with pytest.raises(OtError, match="receiver responses"):
        run.sender.message5((run.messages[4] * 2)[:length])


# -- message 5: the sender's openings ----------------------------------------------------------


@pytest.mark.parametrize("k", OTS)
@pytest.mark.parametrize("which", ["chosen", "other"])
def test_wrong_opening_is_caught_by_the_receiver(k: int, which: str) -> None:
    run = run_until(5)
    half = bit(CHOICES, k) if which == "chosen" else 1 - bit(CHOICES, k)
    with pytest.raises(OtError, match=f"opening of OT {k} "):
        run.receiver.finish(flip(run.messages[5], (2 * k + half) * PAD_LEN + 5))
    assert run.receiver.pads == []


def test_swapped_openings_are_caught_by_the_receiver() -> None:
    k = 9
    run = run_until(5)
    opening = chunk(run.messages[5], 2 * PAD_LEN, k)
    swapped = opening[PAD_LEN:] + opening[:PAD_LEN]
    with pytest.raises(OtError, match=f"opening of OT {k} "):
        run.receiver.finish(replace_chunk(run.messages[5], 2 * PAD_LEN, k, swapped))


def test_openings_from_another_batch_are_caught_by_the_receiver(honest: Run) -> None:
    run = run_until(5)
    with pytest.raises(OtError, match="opening of OT 0 "):
        run.receiver.finish(honest.messages[5])


@pytest.mark.parametrize("length", [0, 2 * BATCH * PAD_LEN - 1, 2 * BATCH * PAD_LEN + 1, BATCH * PAD_LEN])
def test_message5_of_wrong_length_is_rejected(length: int) -> None:
    run = run_until(5)
    with pytest.raises(OtError, match="sender openings"):
        run.receiver.finish((run.messages[5] * 2)[:length])


# -- steps out of order ------------------------------------------------------------------------


def test_sender_refuses_message3_before_message1(honest: Run) -> None:
    with pytest.raises(RuntimeError):
        VsotSender(CONTEXT).message3(honest.messages[2])


def test_sender_refuses_message5_before_message3(honest: Run) -> None:
    sender = VsotSender(CONTEXT)
    sender.message1()
    with pytest.raises(RuntimeError):
        sender.message5(honest.messages[4])


def test_sender_refuses_a_second_message1() -> None:
    sender = VsotSender(CONTEXT)
    sender.message1()
    with pytest.raises(RuntimeError):
        sender.message1()


def test_sender_refuses_a_second_message3() -> None:
    run = run_until(3)
    with pytest.raises(RuntimeError):
        run.sender.message3(run.messages[2])


def test_sender_refuses_a_second_message5() -> None:
    run = run_until(5)
    with pytest.raises(RuntimeError):
        run.sender.message5(run.messages[4])


def test_sender_cannot_retry_after_a_failed_check() -> None:
    run = run_until(4)
    with pytest.raises(OtError):
        run.sender.message5(flip(run.messages[4], 0))
    with pytest.raises(RuntimeError):
        run.sender.message5(run.messages[4])


def test_receiver_refuses_message4_before_message2(honest: Run) -> None:
    with pytest.raises(RuntimeError):
        VsotReceiver(CONTEXT, CHOICES).message4(honest.messages[3])


def test_receiver_refuses_finish_before_message4(honest: Run) -> None:
    receiver = VsotReceiver(CONTEXT, CHOICES)
    receiver.message2(honest.messages[1])
    with pytest.raises(RuntimeError):
        receiver.finish(honest.messages[5])


def test_receiver_refuses_a_second_message2() -> None:
    run = run_until(2)
    with pytest.raises(RuntimeError):
        run.receiver.message2(run.messages[1])


def test_receiver_refuses_a_second_finish(honest: Run) -> None:
    with pytest.raises(RuntimeError):
        honest.receiver.finish(honest.messages[5])


def test_receiver_cannot_retry_after_a_failed_check() -> None:
    run = run_until(5)
    with pytest.raises(OtError):
        run.receiver.finish(flip(run.messages[5], 0))
    with pytest.raises(RuntimeError):
        run.receiver.finish(run.messages[5])
