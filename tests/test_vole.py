"""Random vector OLE (DKLs23 protocol 5.2): c + d = a·b componentwise, with Bob's b
the gadget combination of his choice bits; a malicious Alice that uses another
correlation in an OT, or alters μ or the r-hash, is caught by Bob; a malicious Bob
that alters his OT-extension message is caught by Alice. An altered γ is *not*
caught here (it only shifts the product by b·δ): the signing protocol's Γ checks
catch it one layer up."""

from __future__ import annotations

import hashlib
import itertools
import random
import secrets
from dataclasses import dataclass

import numpy as np
import pytest

from harbour.crypto.group import RandomBytes
from harbour.crypto.secp256k1 import SECP256K1
from harbour.mpc import vole
from harbour.mpc.base_ot import VsotReceiver, VsotSender
from harbour.mpc.ot_extension import (
    ExtensionReceiverSetup,
    ExtensionSenderSetup,
    KosCheckFailed,
    extend_send,
    message_length,
)
from harbour.mpc.vole import (
    ELL,
    GADGET,
    MESSAGE2_LEN,
    NONCE_LEN,
    XI,
    Q,
    VoleAlice,
    VoleBob,
    VoleError,
    VoleKosCheckFailed,
)

CONTEXT = b"harbour/test/vole/session-5/bob-1/alice-2"
OTHER_CONTEXT = b"harbour/test/vole/session-6/bob-1/alice-2"
INPUTS = (0x5EED5EED1234, Q - 3)

# Layout of message 2: nonce || τ (ξ x 3 scalars) || μ || r-hash || γ (ℓ scalars).
TAU_START = NONCE_LEN
TAU_END = NONCE_LEN + XI * 3 * 32
MU = TAU_END
R_HASH = MU + 32
GAMMA = R_HASH + 32


@dataclass(frozen=True)
class Setups:
    bob: ExtensionReceiverSetup
    alice: ExtensionSenderSetup


def seeded(seed: int) -> RandomBytes:
    counter = itertools.count()

    def rng(n: int) -> bytes:
        return hashlib.shake_256(b"test-rng" + seed.to_bytes(8, "big") + next(counter).to_bytes(8, "big")).digest(n)

    return rng


@pytest.fixture(scope="module")
def setups() -> Setups:
    """One verified base-OT batch for the module, arranged as the ECDSA setup does:
    Bob was the base-OT sender (both seeds), Alice the receiver with choices Δ."""
    context = b"harbour/test/vole/base-ot"
    delta = random.Random(23).getrandbits(256)
    sender, receiver = VsotSender(context), VsotReceiver(context, delta)
    message2 = receiver.message2(sender.message1())
    receiver.finish(sender.message5(receiver.message4(sender.message3(message2))))
    return Setups(
        ExtensionReceiverSetup(tuple(sender.pads0), tuple(sender.pads1)),
        ExtensionSenderSetup(delta, tuple(receiver.pads)),
    )


@dataclass
class Run:
    bob: VoleBob
    beta: list[int]
    message1: bytes
    message2: bytes
    c: tuple[int, ...]
    inputs: tuple[int, ...]


def respond(setups: Setups, inputs: tuple[int, ...] = INPUTS, context: bytes = CONTEXT, seed: int | None = None) -> Run:
    """Bob's message 1 and Alice's answer; Bob has not finished."""
    bob = VoleBob(setups.bob, context, secrets.token_bytes if seed is None else seeded(seed))
    message1 = bob.message1()
    message2, c = VoleAlice(setups.alice, context).respond(message1, inputs)
    return Run(bob, list(bob._choices), message1, message2, c, inputs)


def assert_product(run: Run, d: tuple[int, ...]) -> None:
    assert len(d) == len(run.c) == ELL
    for k in range(ELL):
        assert 0 <= d[k] < Q and 0 <= run.c[k] < Q
        assert (run.c[k] + d[k]) % Q == run.inputs[k] * run.bob.b % Q


def scalar_at(message: bytes, offset: int) -> int:
    return int.from_bytes(message[offset : offset + 32], "big")


def with_scalar(message: bytes, offset: int, value: int) -> bytes:
    return message[:offset] + value.to_bytes(32, "big") + message[offset + 32 :]


def tau_offset(j: int, component: int) -> int:
    return TAU_START + 96 * j + 32 * component


def ot_with(beta: list[int], value: int) -> int:
    return beta.index(value)


def malicious_alice(
    setups: Setups,
    message1: bytes,
    inputs: tuple[int, ...],
    shifts: dict[int, tuple[int, int, int]],
    rng: RandomBytes = secrets.token_bytes,
    context: bytes = CONTEXT,
) -> tuple[bytes, tuple[int, int]]:
    """Alice's answer, restated from the protocol, using correlation α + shifts[j] in OT j.

    θ, μ and the r-hash are computed as an honest Alice would over the τ actually sent,
    so the only deviation is the correlation. With no shifts this is Alice's exact message.
    """
    # message1 is Bob's nonce followed by the OT-extension message under context || nonce.
    rows = extend_send(setups.alice, context + message1[:NONCE_LEN], XI, message1[NONCE_LEN:])
    delta = np.frombuffer(setups.alice.delta.to_bytes(32, "little"), dtype=np.uint8)
    rng = vole._alice_rng(setups.alice, context, message1, inputs, rng)  # her draws, hedged as the module does
    nonce = rng(NONCE_LEN)
    alpha = (SECP256K1.random_scalar(rng), SECP256K1.random_scalar(rng), SECP256K1.random_scalar(rng))
    base = hashlib.shake_256(b"harbour/dkls23/vole-pad" + len(context).to_bytes(2, "big") + context + nonce)

    def pads(row: bytes, j: int) -> tuple[int, int, int]:
        h = base.copy()
        h.update(j.to_bytes(2, "big") + row)
        out = h.digest(96)
        return (int.from_bytes(out[:32], "big"), int.from_bytes(out[32:64], "big"), int.from_bytes(out[64:], "big"))

    p0s = [pads(bytes(rows[j]), j) for j in range(XI)]
    p1s = [pads(bytes(rows[j] ^ delta), j) for j in range(XI)]
    tau = b"".join(
        ((p0[k] - p1[k] + alpha[k] + shifts.get(j, (0, 0, 0))[k]) % Q).to_bytes(32, "big")
        for j, (p0, p1) in enumerate(zip(p0s, p1s, strict=True))
        for k in range(3)
    )
    h = hashlib.sha512(b"harbour/dkls23/vole-check" + len(context).to_bytes(2, "big") + context)
    h.update(hashlib.sha256(message1).digest() + nonce + tau)
    raw = hashlib.shake_256(h.digest()).digest(96)
    theta = (int.from_bytes(raw[:48], "big") % Q, int.from_bytes(raw[48:], "big") % Q)
    mu = (theta[0] * alpha[0] + theta[1] * alpha[1] + alpha[2]) % Q
    r = b"".join(((-theta[0] * p[0] - theta[1] * p[1] - p[2]) % Q).to_bytes(32, "big") for p in p0s)
    r_hash = hashlib.sha256(b"harbour/dkls23/vole-r" + len(context).to_bytes(2, "big") + context + r).digest()
    gamma = b"".join(((a - t) % Q).to_bytes(32, "big") for a, t in zip(inputs, alpha[:2], strict=True))
    c = tuple(-sum(g * p[k] for g, p in zip(GADGET, p0s, strict=True)) % Q for k in range(2))
    return nonce + tau + mu.to_bytes(32, "big") + r_hash + gamma, (c[0], c[1])


def test_restated_alice_matches_the_module(setups: Setups) -> None:
    # The attack tests using malicious_alice are only meaningful if, left honest, it is Alice.
    message1 = VoleBob(setups.bob, CONTEXT).message1()
    expected = VoleAlice(setups.alice, CONTEXT, seeded(9)).respond(message1, INPUTS)
    assert malicious_alice(setups, message1, INPUTS, {}, seeded(9)) == expected


# -- correctness -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_shares_add_up_to_the_product(setups: Setups, seed: int) -> None:
    rnd = random.Random(seed)
    run = respond(setups, (rnd.randrange(Q), rnd.randrange(Q)))
    assert len(run.message2) == MESSAGE2_LEN
    assert len(run.message1) == NONCE_LEN + message_length(XI)
    assert_product(run, run.bob.finish(run.message2))


def test_bobs_input_is_fresh_and_nonzero_across_runs(setups: Setups) -> None:
    values = set()
    for _ in range(3):
        run = respond(setups)
        run.bob.finish(run.message2)
        values.add(run.bob.b)
    assert len(values) == 3 and 0 not in values


def test_b_is_the_gadget_combination_of_bobs_choice_bits(setups: Setups) -> None:
    # With a = (1, 0) the shares of the first component add up to b itself.
    run = respond(setups, (1, 0))
    gadget_sum = sum(g for g, bit in zip(GADGET, run.beta, strict=True) if bit) % Q
    assert run.bob.b == gadget_sum
    c, d = run.c, run.bob.finish(run.message2)
    assert (c[0] + d[0]) % Q == gadget_sum
    assert (c[1] + d[1]) % Q == 0


@pytest.mark.parametrize("inputs", [(0, 0), (1, Q - 1), (Q - 1, Q - 1)])
def test_edge_inputs(setups: Setups, inputs: tuple[int, int]) -> None:
    run = respond(setups, inputs)
    assert_product(run, run.bob.finish(run.message2))


def test_gadget_vector_is_public_and_fixed() -> None:
    raw = hashlib.shake_256(b"harbour/dkls23/gadget-vector/v1").digest(XI * 48)
    assert len(GADGET) == XI == 416
    assert GADGET[0] == int.from_bytes(raw[:48], "big") % Q
    assert GADGET[-1] == int.from_bytes(raw[-48:], "big") % Q
    assert len(set(GADGET)) == XI


def test_replayed_message1_gets_fresh_pads_from_alice(setups: Setups) -> None:
    """Two Bobs with the same randomness send the same message 1; two Alices answer it.

    Alice's fresh nonce makes her pads new, so no correction τ repeats, and each answer
    is valid for its Bob."""
    runs = [respond(setups, seed=77) for _ in range(2)]
    assert runs[0].message1 == runs[1].message1
    taus = [run.message2[TAU_START:TAU_END] for run in runs]
    chunks = [{tau[i : i + 32] for i in range(0, len(tau), 32)} for tau in taus]
    assert not chunks[0] & chunks[1]
    for run in runs:
        assert_product(run, run.bob.finish(run.message2))


# -- Alice's input ---------------------------------------------------------------------------


@pytest.mark.parametrize("inputs", [(1,), (1, 2, 3), (Q, 1), (1, -1)], ids=["one", "three", "equal-q", "negative"])
def test_alice_refuses_bad_inputs(setups: Setups, inputs: tuple[int, ...]) -> None:
    message1 = VoleBob(setups.bob, CONTEXT).message1()
    with pytest.raises(ValueError, match="scalars"):
        VoleAlice(setups.alice, CONTEXT).respond(message1, inputs)


# -- a malicious Bob: caught by Alice --------------------------------------------------------


@pytest.mark.parametrize(
    "position", [0, NONCE_LEN, 5_000, NONCE_LEN + message_length(XI) - 64, NONCE_LEN + message_length(XI) - 1]
)
def test_tampered_message1_is_caught_by_alice(setups: Setups, position: int) -> None:
    message1 = bytearray(VoleBob(setups.bob, CONTEXT).message1())
    message1[position] ^= 0x10
    with pytest.raises(VoleError, match="correlation check"):
        VoleAlice(setups.alice, CONTEXT).respond(bytes(message1), INPUTS)


def test_a_failed_kos_check_keeps_its_type_through_the_multiplication(setups: Setups) -> None:
    # Both a VoleError (for callers that handle any bad multiplication) and a
    # KosCheckFailed (for callers that must stop the pair).
    message1 = bytearray(VoleBob(setups.bob, CONTEXT).message1())
    message1[-1] ^= 0x01
    with pytest.raises(VoleKosCheckFailed) as info:
        VoleAlice(setups.alice, CONTEXT).respond(bytes(message1), INPUTS)
    assert isinstance(info.value, KosCheckFailed) and isinstance(info.value, VoleError)
    assert isinstance(info.value.__cause__, KosCheckFailed)


@pytest.mark.parametrize("change", [-1, 1])
def test_message1_of_wrong_length_is_refused_by_alice(setups: Setups, change: int) -> None:
    message1 = VoleBob(setups.bob, CONTEXT).message1()
    message1 = message1[:change] if change < 0 else message1 + bytes(change)
    with pytest.raises(VoleError, match="expected") as info:
        VoleAlice(setups.alice, CONTEXT).respond(message1, INPUTS)
    assert not isinstance(info.value, KosCheckFailed)


def test_message1_for_another_context_is_refused_by_alice(setups: Setups) -> None:
    message1 = VoleBob(setups.bob, OTHER_CONTEXT).message1()
    with pytest.raises(VoleError, match="correlation check"):
        VoleAlice(setups.alice, CONTEXT).respond(message1, INPUTS)


# -- a malicious Alice: caught by Bob --------------------------------------------------------


@pytest.mark.parametrize("component", [0, 1, 2, "all"])
def test_alice_using_another_correlation_in_one_ot_is_caught(setups: Setups, component: int | str) -> None:
    """τ_j = p⁰_j - p¹_j + α' with α' ≠ α in one OT j where β_j = 1, with θ, μ and the
    r-hash computed honestly over that τ: Bob's consistency check fails."""
    run = respond(setups)
    j = ot_with(run.beta, 1)
    shift = (12345, 0, 0) if component == 0 else (0, 12345, 0) if component == 1 else (0, 0, 12345)
    if component == "all":
        shift = (11, 22, 33)
    message2, _ = malicious_alice(setups, run.message1, run.inputs, {j: shift})
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(message2)


def test_alice_using_another_correlation_in_an_ot_bob_did_not_choose_goes_unnoticed(setups: Setups) -> None:
    """The same deviation where β_j = 0: Bob never uses τ_j, so no abort and a correct product.

    This is the selective failure DKLs23 accepts: from whether Bob aborts, Alice learns
    β_j. It is tolerated because b = Σ g_j β_j has 2s = 160 more bits than it needs, so
    a few leaked β_j leave b statistically hidden."""
    run = respond(setups)
    j = ot_with(run.beta, 0)
    message2, c = malicious_alice(setups, run.message1, run.inputs, {j: (11, 22, 33)})
    run.c = c
    assert_product(run, run.bob.finish(message2))


@pytest.mark.parametrize("chosen", [1, 0], ids=["chosen-ot", "unchosen-ot"])
@pytest.mark.parametrize("component", range(3))
def test_tau_altered_in_transit_is_caught(setups: Setups, chosen: int, component: int) -> None:
    """τ altered after Alice computed θ: θ is a hash over all of τ, so even an OT Bob did
    not choose changes every r_j and the check fails."""
    run = respond(setups)
    offset = tau_offset(ot_with(run.beta, chosen), component)
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(with_scalar(run.message2, offset, (scalar_at(run.message2, offset) + 1) % Q))


def test_tampered_mu_is_caught(setups: Setups) -> None:
    run = respond(setups)
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(with_scalar(run.message2, MU, (scalar_at(run.message2, MU) + 1) % Q))


def test_tampered_r_hash_is_caught(setups: Setups) -> None:
    run = respond(setups)
    message2 = bytearray(run.message2)
    message2[R_HASH + 31] ^= 0x80
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(bytes(message2))


def test_tampered_nonce_is_caught(setups: Setups) -> None:
    run = respond(setups)
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(bytes([run.message2[0] ^ 1]) + run.message2[1:])


@pytest.mark.parametrize("k", range(ELL))
def test_tampered_gamma_is_not_caught_here_but_breaks_the_product(setups: Setups, k: int) -> None:
    """γ is outside the vOLE's check: a shift by δ moves Bob's share by b·δ exactly.
    (The signing protocol's Γ checks are what catch this.)"""
    run = respond(setups)
    shift = 0xD1FF
    offset = GAMMA + 32 * k
    d = run.bob.finish(with_scalar(run.message2, offset, (scalar_at(run.message2, offset) + shift) % Q))
    b = run.bob.b
    assert (run.c[k] + d[k]) % Q == (run.inputs[k] + shift) * b % Q
    assert (run.c[k] + d[k]) % Q != run.inputs[k] * b % Q
    other = 1 - k
    assert (run.c[other] + d[other]) % Q == run.inputs[other] * b % Q


# -- values out of range ---------------------------------------------------------------------


@pytest.mark.parametrize("chosen", [1, 0], ids=["chosen-ot", "unchosen-ot"])
@pytest.mark.parametrize("value", [Q, (1 << 256) - 1], ids=["q", "all-ones"])
def test_tau_not_below_q_is_refused(setups: Setups, chosen: int, value: int) -> None:
    run = respond(setups)
    j = ot_with(run.beta, chosen)
    with pytest.raises(VoleError, match="τ"):
        run.bob.finish(with_scalar(run.message2, tau_offset(j, 2), value))


def test_tau_just_below_q_passes_the_range_check(setups: Setups) -> None:
    # The control for the test above: Q - 1 is in range, so it is the consistency check that refuses.
    run = respond(setups)
    j = ot_with(run.beta, 0)
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(with_scalar(run.message2, tau_offset(j, 2), Q - 1))


@pytest.mark.parametrize("value", [Q, (1 << 256) - 1], ids=["q", "all-ones"])
def test_mu_not_below_q_is_refused(setups: Setups, value: int) -> None:
    run = respond(setups)
    with pytest.raises(VoleError, match="μ"):
        run.bob.finish(with_scalar(run.message2, MU, value))


@pytest.mark.parametrize("k", range(ELL))
def test_gamma_not_below_q_is_refused(setups: Setups, k: int) -> None:
    run = respond(setups)
    with pytest.raises(VoleError, match="γ"):
        run.bob.finish(with_scalar(run.message2, GAMMA + 32 * k, Q))


def test_gamma_plus_q_alias_is_refused(setups: Setups, monkeypatch: pytest.MonkeyPatch) -> None:
    """γ + q is the same residue and would give the right product: refused anyway.

    Alice's randomness is fixed so that her pad ã_0 is known and γ_0 = a_0 - ã_0 = 5.
    Her draws are hedged with her inputs, which are chosen here from ã_0, so the
    hedge is bypassed for this test (it is tested in test_hedge.py)."""
    monkeypatch.setattr(vole, "_alice_rng", lambda setup, context, message1, inputs, fresh: fresh)
    replay = seeded(31)
    replay(NONCE_LEN)
    a_tilde0 = SECP256K1.random_scalar(replay)
    inputs = ((a_tilde0 + 5) % Q, 7)
    bob = VoleBob(setups.bob, CONTEXT)
    message2, _ = VoleAlice(setups.alice, CONTEXT, seeded(31)).respond(bob.message1(), inputs)
    assert scalar_at(message2, GAMMA) == 5
    with pytest.raises(VoleError, match="γ"):
        bob.finish(with_scalar(message2, GAMMA, 5 + Q))


# -- lengths, replays --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "length", [0, MESSAGE2_LEN - 1, MESSAGE2_LEN + 1, MESSAGE2_LEN - 32, GAMMA], ids=lambda n: f"len-{n}"
)
def test_message2_of_wrong_length_is_refused(setups: Setups, length: int) -> None:
    run = respond(setups)
    with pytest.raises(VoleError, match="bytes"):
        run.bob.finish((run.message2 + bytes(64))[:length])


def test_message2_from_another_run_is_refused(setups: Setups) -> None:
    run, other = respond(setups), respond(setups)
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(other.message2)


def test_message2_from_another_context_is_refused(setups: Setups) -> None:
    run, other = respond(setups), respond(setups, context=OTHER_CONTEXT)
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(other.message2)


def test_message2_answering_the_same_message1_in_another_context_is_refused(
    setups: Setups, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Same Bob randomness (so the same β) but the other context: the pads differ. Bob's
    # draws are hedged with the context, so the hedge is bypassed to repeat β.
    monkeypatch.setattr(vole, "HedgedRandom", lambda label, session, secret, fresh: fresh)
    run, other = respond(setups, seed=5), respond(setups, context=OTHER_CONTEXT, seed=5)
    assert run.beta == other.beta
    with pytest.raises(VoleError, match="consistency check"):
        run.bob.finish(other.message2)


# -- single use --------------------------------------------------------------------------------


def test_alice_answers_once(setups: Setups) -> None:
    alice = VoleAlice(setups.alice, CONTEXT)
    alice.respond(VoleBob(setups.bob, CONTEXT).message1(), INPUTS)
    with pytest.raises(RuntimeError):
        alice.respond(VoleBob(setups.bob, CONTEXT).message1(), INPUTS)


def test_alice_cannot_answer_again_after_refusing(setups: Setups) -> None:
    alice = VoleAlice(setups.alice, CONTEXT)
    message1 = VoleBob(setups.bob, CONTEXT).message1()
    with pytest.raises(VoleError):
        alice.respond(message1[:-1], INPUTS)
    with pytest.raises(RuntimeError):
        alice.respond(message1, INPUTS)


def test_bob_finishes_once(setups: Setups) -> None:
    run = respond(setups)
    run.bob.finish(run.message2)
    with pytest.raises(RuntimeError):
        run.bob.finish(run.message2)


def test_bob_cannot_finish_again_after_refusing(setups: Setups) -> None:
    run = respond(setups)
    with pytest.raises(VoleError):
        run.bob.finish(run.message2[:-1])
    with pytest.raises(RuntimeError):
        run.bob.finish(run.message2)


def test_bob_sends_message1_once(setups: Setups) -> None:
    bob = VoleBob(setups.bob, CONTEXT)
    bob.message1()
    with pytest.raises(RuntimeError):
        bob.message1()


def test_bob_cannot_finish_before_message1(setups: Setups) -> None:
    run = respond(setups)
    with pytest.raises(RuntimeError):
        VoleBob(setups.bob, CONTEXT).finish(run.message2)


def test_reused_context_still_gives_new_extension_columns(setups: Setups) -> None:
    """Bob's nonce: two runs under one context never send the same u (which would leak β ⊕ β')."""
    first = VoleBob(setups.bob, CONTEXT).message1()
    second = VoleBob(setups.bob, CONTEXT).message1()
    u_first, u_second = first[NONCE_LEN : NONCE_LEN + 1000], second[NONCE_LEN : NONCE_LEN + 1000]
    assert first[:NONCE_LEN] != second[:NONCE_LEN]
    # With the same PRG columns, u ⊕ u' would be the XOR of the choice bits, repeated in
    # every column; with fresh columns it looks random.
    xor = bytes(a ^ b for a, b in zip(u_first, u_second, strict=True))
    row_len = (message_length(XI) - 64) // 256
    assert xor[:row_len] != xor[row_len : 2 * row_len]
