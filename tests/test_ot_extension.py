"""KOS15 OT extension: the receiver's rows t_j and the sender's rows q_j satisfy
q_j ⊕ x_j·Δ = t_j, setups round-trip through their encodings, and the
correlation check refuses every altered message, a message for another context,
and a receiver that uses different choice bits in some columns, except where
KOS allows it: such a receiver passes only by guessing the bits of Δ it attacks,
each guess caught with probability 1/2."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.crypto import gf2_256 as gf
from harbour.mpc.base_ot import BATCH, PAD_LEN, VsotReceiver, VsotSender
from harbour.mpc.ot_extension import (
    KAPPA,
    ROW_BYTES,
    STATISTICAL,
    ExtensionReceiverSetup,
    ExtensionSenderSetup,
    KosCheckFailed,
    OtExtensionError,
    extend_receive,
    extend_send,
    message_length,
    padded_rows,
)

Bits = npt.NDArray[np.uint8]
CONTEXT = b"harbour/test/kos/session-3/bob-1/alice-2/purpose-mul"
OTHER_CONTEXT = b"harbour/test/kos/session-4/bob-1/alice-2/purpose-mul"
M = 416
PADDING = bytes(range(64))


@dataclass(frozen=True)
class Setups:
    receiver: ExtensionReceiverSetup
    sender: ExtensionSenderSetup


def make_setups(seed: int, delta: int | None = None) -> Setups:
    """Random base-OT outputs: the receiver holds both seeds, the sender the one Δ_i selects."""
    rng = random.Random(seed)
    seeds0 = tuple(rng.randbytes(PAD_LEN) for _ in range(KAPPA))
    seeds1 = tuple(rng.randbytes(PAD_LEN) for _ in range(KAPPA))
    if delta is None:
        delta = rng.getrandbits(KAPPA)
    chosen = tuple(seeds1[i] if delta >> i & 1 else seeds0[i] for i in range(KAPPA))
    return Setups(ExtensionReceiverSetup(seeds0, seeds1), ExtensionSenderSetup(delta, chosen))


def random_choices(m: int, seed: int) -> Bits:
    return np.random.default_rng(seed).integers(0, 2, size=m, dtype=np.uint8)


def as_int(row: Bits) -> int:
    return int.from_bytes(row.tobytes(), "little")


def assert_correlated(t: Bits, q: Bits, choices: Bits, delta: int) -> None:
    assert t.shape == q.shape == (len(choices), ROW_BYTES)
    for j, x in enumerate(choices):
        assert as_int(q[j]) ^ (delta if x else 0) == as_int(t[j])


@pytest.fixture(scope="module")
def setups() -> Setups:
    return make_setups(1)


@pytest.fixture(scope="module")
def honest(setups: Setups) -> tuple[Bits, bytes, Bits]:
    choices = random_choices(M, 2)
    message, t = extend_receive(setups.receiver, CONTEXT, choices, PADDING)
    return choices, message, t


@pytest.fixture(scope="module")
def base_ot_setups() -> Setups:
    """Setups from a real verified base-OT batch, built the way the ECDSA setup does."""
    delta = random.Random(5).getrandbits(BATCH)
    sender, receiver = VsotSender(b"harbour/test/kos/base-ot"), VsotReceiver(b"harbour/test/kos/base-ot", delta)
    message2 = receiver.message2(sender.message1())
    receiver.finish(sender.message5(receiver.message4(sender.message3(message2))))
    return Setups(
        ExtensionReceiverSetup(tuple(sender.pads0), tuple(sender.pads1)),
        ExtensionSenderSetup(delta, tuple(receiver.pads)),
    )


# -- the receiver, restated, so that a malicious one can be built -------------------------


def prg(seeds: tuple[bytes, ...], context: bytes, nbytes: int) -> Bits:
    base = b"harbour/kos/prg" + len(context).to_bytes(2, "big") + context
    out = b"".join(hashlib.shake_256(base + seed).digest(nbytes) for seed in seeds)
    return np.frombuffer(out, dtype=np.uint8).reshape(len(seeds), nbytes)


def challenges(context: bytes, u: bytes, rows: int) -> Bits:
    seed = hashlib.sha512(b"harbour/kos/check" + len(context).to_bytes(2, "big") + context + u).digest()
    return np.frombuffer(hashlib.shake_256(seed).digest(rows * ROW_BYTES), dtype=np.uint8).reshape(rows, ROW_BYTES)


def all_rows_choices(choices: Bits, padding: bytes) -> Bits:
    """x': the m choices followed by the random padding rows."""
    rows = padded_rows(len(choices))
    extra = np.unpackbits(np.frombuffer(padding, dtype=np.uint8), bitorder="little")[: rows - len(choices)]
    return np.concatenate([choices, extra]).astype(np.uint8)


def xor_of_selected(chi: Bits, x: Bits) -> int:
    acc = 0
    for row in chi[x.astype(bool)]:
        acc ^= as_int(row)
    return acc


def receiver_message(
    setup: ExtensionReceiverSetup,
    context: bytes,
    x: Bits,
    column_choices: dict[int, Bits] | None = None,
    checked_x: Bits | None = None,
    checked_t_flips: dict[int, Bits] | None = None,
) -> bytes:
    """The receiver's message for all-rows choice vector ``x``, possibly dishonest.

    ``column_choices[i]`` replaces x in column i of u (a different choice vector there);
    ``checked_x`` is the vector x̃ is computed from (default x); ``checked_t_flips[i]``
    is XORed into column i of T before t̃ is computed (default none).
    """
    rows = len(x)
    nbytes = rows // 8
    t0, t1 = prg(setup.seeds0, context, nbytes), prg(setup.seeds1, context, nbytes)
    u = t0 ^ t1 ^ np.packbits(x, bitorder="little")
    for i, xi in (column_choices or {}).items():
        u[i] = t0[i] ^ t1[i] ^ np.packbits(xi, bitorder="little")
    u_bytes = u.tobytes()
    chi = challenges(context, u_bytes, rows)
    x_check = xor_of_selected(chi, x if checked_x is None else checked_x)
    t_cols = t0.copy()
    for i, flips in (checked_t_flips or {}).items():
        t_cols[i] ^= np.packbits(flips, bitorder="little")
    t_check = gf.inner_product(chi, t_cols)
    return u_bytes + gf.to_bytes(x_check) + gf.to_bytes(t_check)


def test_restated_receiver_matches_the_module(setups: Setups, honest: tuple[Bits, bytes, Bits]) -> None:
    # The attack tests below are only meaningful if, left honest, they produce this message.
    choices, message, _ = honest
    assert receiver_message(setups.receiver, CONTEXT, all_rows_choices(choices, PADDING)) == message


# -- correctness -----------------------------------------------------------------------------


@pytest.mark.parametrize("m", [1, 7, 8, 9, 416, 1000])
def test_rows_are_correlated_by_delta(setups: Setups, m: int) -> None:
    choices = random_choices(m, m)
    message, t = extend_receive(setups.receiver, CONTEXT, choices, PADDING)
    assert len(message) == message_length(m)
    q = extend_send(setups.sender, CONTEXT, m, message)
    assert_correlated(t, q, choices, setups.sender.delta)


def test_rows_from_real_base_ots_are_correlated(base_ot_setups: Setups) -> None:
    choices = random_choices(M, 11)
    message, t = extend_receive(base_ot_setups.receiver, CONTEXT, choices, PADDING)
    q = extend_send(base_ot_setups.sender, CONTEXT, M, message)
    assert_correlated(t, q, choices, base_ot_setups.sender.delta)


@pytest.mark.parametrize("value", [0, 1], ids=["all-zero", "all-one"])
def test_uniform_choices_are_correlated(setups: Setups, value: int) -> None:
    choices = np.full(M, value, dtype=np.uint8)
    message, t = extend_receive(setups.receiver, CONTEXT, choices, PADDING)
    assert_correlated(t, extend_send(setups.sender, CONTEXT, M, message), choices, setups.sender.delta)


def test_rows_differ_across_contexts(setups: Setups) -> None:
    choices = random_choices(M, 3)
    _, t1 = extend_receive(setups.receiver, CONTEXT, choices, PADDING)
    _, t2 = extend_receive(setups.receiver, OTHER_CONTEXT, choices, PADDING)
    assert not np.any(np.all(t1 == t2, axis=1))


def test_padding_hides_the_choices_in_the_check_values(setups: Setups) -> None:
    choices = random_choices(M, 4)
    a, _ = extend_receive(setups.receiver, CONTEXT, choices, PADDING)
    b, _ = extend_receive(setups.receiver, CONTEXT, choices, bytes(reversed(PADDING)))
    tail = 2 * ROW_BYTES
    assert a[:-tail] != b[:-tail] and a[-tail:-ROW_BYTES] != b[-tail:-ROW_BYTES]


def test_padded_rows_add_kappa_plus_s_rounded_to_bytes() -> None:
    assert padded_rows(M) == M + KAPPA + STATISTICAL == 752
    assert padded_rows(1) == 344
    assert message_length(M) == KAPPA * 752 // 8 + 2 * ROW_BYTES


# -- setups ----------------------------------------------------------------------------------


def test_receiver_setup_round_trips(setups: Setups) -> None:
    data = setups.receiver.encode()
    assert len(data) == 2 * KAPPA * PAD_LEN
    assert ExtensionReceiverSetup.decode(data) == setups.receiver


def test_sender_setup_round_trips(setups: Setups) -> None:
    data = setups.sender.encode()
    assert len(data) == ROW_BYTES + KAPPA * PAD_LEN
    decoded = ExtensionSenderSetup.decode(data)
    assert decoded == setups.sender
    assert decoded.delta == setups.sender.delta


def test_decoded_setups_still_extend(setups: Setups, honest: tuple[Bits, bytes, Bits]) -> None:
    choices, _, _ = honest
    receiver = ExtensionReceiverSetup.decode(setups.receiver.encode())
    sender = ExtensionSenderSetup.decode(setups.sender.encode())
    message, t = extend_receive(receiver, CONTEXT, choices, PADDING)
    assert_correlated(t, extend_send(sender, CONTEXT, M, message), choices, sender.delta)


@pytest.mark.parametrize("delta", [1 << 255, (1 << 256) - 1])
def test_sender_setup_keeps_the_top_bits_of_delta(delta: int) -> None:
    setup = make_setups(9, delta).sender
    assert ExtensionSenderSetup.decode(setup.encode()).delta == delta


@pytest.mark.parametrize("change", [-1, 1, -PAD_LEN])
def test_receiver_setup_of_wrong_length_is_refused(setups: Setups, change: int) -> None:
    data = setups.receiver.encode()
    data = data[:change] if change < 0 else data + bytes(change)
    with pytest.raises(ValueError):
        ExtensionReceiverSetup.decode(data)


@pytest.mark.parametrize("change", [-1, 1, -PAD_LEN, -ROW_BYTES])
def test_sender_setup_of_wrong_length_is_refused(setups: Setups, change: int) -> None:
    data = setups.sender.encode()
    data = data[:change] if change < 0 else data + bytes(change)
    with pytest.raises(ValueError):
        ExtensionSenderSetup.decode(data)


def test_empty_setups_are_refused() -> None:
    with pytest.raises(ValueError):
        ExtensionReceiverSetup.decode(b"")
    with pytest.raises(ValueError):
        ExtensionSenderSetup.decode(b"")


@pytest.mark.parametrize("what", ["too-few-seeds0", "too-few-seeds1", "short-seed", "long-seed"])
def test_receiver_setup_checks_its_seeds(setups: Setups, what: str) -> None:
    s0, s1 = setups.receiver.seeds0, setups.receiver.seeds1
    bad = {
        "too-few-seeds0": (s0[:-1], s1),
        "too-few-seeds1": (s0, s1 + s1[:1]),
        "short-seed": ((s0[0][:-1], *s0[1:]), s1),
        "long-seed": (s0, (*s1[:-1], s1[-1] + b"\x00")),
    }[what]
    with pytest.raises(ValueError):
        ExtensionReceiverSetup(*bad)


@pytest.mark.parametrize("what", ["negative-delta", "delta-too-wide", "too-few-seeds", "short-seed"])
def test_sender_setup_checks_delta_and_seeds(setups: Setups, what: str) -> None:
    delta, seeds = setups.sender.delta, setups.sender.seeds
    bad = {
        "negative-delta": (-1, seeds),
        "delta-too-wide": (1 << KAPPA, seeds),
        "too-few-seeds": (delta, seeds[:-1]),
        "short-seed": (delta, (*seeds[:-1], seeds[-1][:-1])),
    }[what]
    with pytest.raises(ValueError):
        ExtensionSenderSetup(*bad)


@pytest.mark.parametrize("length", [0, 10, 41])
def test_too_little_padding_is_refused(setups: Setups, length: int) -> None:
    with pytest.raises(ValueError, match="padding"):
        extend_receive(setups.receiver, CONTEXT, random_choices(M, 5), bytes(length))


def test_padding_of_kappa_plus_s_bits_as_documented_is_enough(setups: Setups) -> None:
    # For m = 416, m' - m = κ + s = 336 bits: 42 bytes fill every padding row.
    assert padded_rows(M) - M == 8 * 42
    choices = random_choices(M, 5)
    message, t = extend_receive(setups.receiver, CONTEXT, choices, bytes(range(42)))
    assert_correlated(t, extend_send(setups.sender, CONTEXT, M, message), choices, setups.sender.delta)


# -- the correlation check: altered messages ---------------------------------------------------

U_LEN = KAPPA * padded_rows(M) // 8
U_BITS = [
    ("col0-row0", 0),
    ("col0-last-choice-row", M - 1),
    ("col0-padding-row", M + 100),
    ("col0-last-row", 8 * (U_LEN // KAPPA) - 1),
    ("col77-row3", 8 * 77 * (U_LEN // KAPPA) + 3),
    ("col255-last-row", 8 * U_LEN - 1),
]


def flip_bit(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position // 8] ^= 1 << (position % 8)
    return bytes(out)


@pytest.mark.parametrize("position", [p for _, p in U_BITS], ids=[n for n, _ in U_BITS])
def test_flipped_bit_in_u_is_caught(setups: Setups, honest: tuple[Bits, bytes, Bits], position: int) -> None:
    _, message, _ = honest
    with pytest.raises(OtExtensionError, match="correlation check"):
        extend_send(setups.sender, CONTEXT, M, flip_bit(message, position))


@settings(max_examples=60, deadline=None)
@given(position=st.integers(min_value=0, max_value=8 * message_length(M) - 1))
def test_any_single_flipped_bit_is_caught(setups: Setups, honest: tuple[Bits, bytes, Bits], position: int) -> None:
    _, message, _ = honest
    with pytest.raises(OtExtensionError, match="correlation check"):
        extend_send(setups.sender, CONTEXT, M, flip_bit(message, position))


@pytest.mark.parametrize("bit_index", [0, 1, 128, 255])
@pytest.mark.parametrize("field", ["x-check", "t-check"])
def test_flipped_bit_in_a_check_value_is_caught(
    setups: Setups, honest: tuple[Bits, bytes, Bits], field: str, bit_index: int
) -> None:
    _, message, _ = honest
    offset = U_LEN if field == "x-check" else U_LEN + ROW_BYTES
    with pytest.raises(OtExtensionError, match="correlation check"):
        extend_send(setups.sender, CONTEXT, M, flip_bit(message, 8 * offset + bit_index))


def test_swapped_check_values_are_caught(setups: Setups, honest: tuple[Bits, bytes, Bits]) -> None:
    _, message, _ = honest
    swapped = message[:U_LEN] + message[U_LEN + ROW_BYTES :] + message[U_LEN : U_LEN + ROW_BYTES]
    with pytest.raises(OtExtensionError, match="correlation check"):
        extend_send(setups.sender, CONTEXT, M, swapped)


def test_all_zero_message_is_caught(setups: Setups) -> None:
    with pytest.raises(OtExtensionError, match="correlation check"):
        extend_send(setups.sender, CONTEXT, M, bytes(message_length(M)))


def test_message_for_another_context_is_refused(setups: Setups) -> None:
    message, _ = extend_receive(setups.receiver, OTHER_CONTEXT, random_choices(M, 6), PADDING)
    with pytest.raises(OtExtensionError, match="correlation check"):
        extend_send(setups.sender, CONTEXT, M, message)


def test_message_from_another_pair_is_refused(setups: Setups) -> None:
    message, _ = extend_receive(make_setups(2).receiver, CONTEXT, random_choices(M, 6), PADDING)
    with pytest.raises(OtExtensionError, match="correlation check"):
        extend_send(setups.sender, CONTEXT, M, message)


def test_a_failed_correlation_check_has_its_own_type(setups: Setups, honest: tuple[Bits, bytes, Bits]) -> None:
    """KosCheckFailed, a kind of OtExtensionError: the one failure that may depend on Δ."""
    _, message, _ = honest
    with pytest.raises(KosCheckFailed) as info:
        extend_send(setups.sender, CONTEXT, M, flip_bit(message, 8 * len(message) - 1))
    assert isinstance(info.value, OtExtensionError)


@pytest.mark.parametrize("change", [-1, 1, -ROW_BYTES, -2 * ROW_BYTES, -U_LEN])
def test_message_of_wrong_length_is_refused(setups: Setups, honest: tuple[Bits, bytes, Bits], change: int) -> None:
    _, message, _ = honest
    data = message[:change] if change < 0 else message + bytes(change)
    with pytest.raises(OtExtensionError, match="expected") as info:
        extend_send(setups.sender, CONTEXT, M, data)
    assert not isinstance(info.value, KosCheckFailed)


def test_message_for_more_ots_is_refused(setups: Setups) -> None:
    message, _ = extend_receive(setups.receiver, CONTEXT, random_choices(M + 8, 7), PADDING)
    with pytest.raises(OtExtensionError, match="expected"):
        extend_send(setups.sender, CONTEXT, M, message)


# -- the correlation check: a receiver with different choice bits in some columns -------------


def delta_with_bits(bits: dict[int, int], seed: int = 20) -> int:
    delta = random.Random(seed).getrandbits(KAPPA)
    for i, b in bits.items():
        delta = delta & ~(1 << i) | b << i
    return delta


def error_vector(kind: str, rows: int) -> Bits:
    e = np.zeros(rows, dtype=np.uint8)
    if kind == "one-choice-row":
        e[5] = 1
    elif kind == "one-padding-row":
        e[M + 17] = 1
    else:
        e[:] = np.random.default_rng(30).integers(0, 2, size=rows, dtype=np.uint8)
    assert e.any()
    return e


ATTACK_COLUMN = 93
# strategy -> Δ_i for which the check passes (None: it never does)
STRATEGIES: dict[str, int | None] = {
    # x̃ and t̃ from the original x and T: consistent with the other columns, so it
    # passes exactly when the sender ignores u_i (Δ_i = 0).
    "check-values-of-x": 0,
    # t̃ from T with column i adjusted to x ⊕ e: consistent with column i as the sender
    # sees it when Δ_i = 1.
    "check-values-matching-column": 1,
    # x̃ from x ⊕ e everywhere (as if that were the choice vector): wrong in 255 columns.
    "check-values-of-x-xor-e": None,
}


@pytest.mark.parametrize("e_kind", ["one-choice-row", "one-padding-row", "dense"])
@pytest.mark.parametrize("delta_i", [0, 1])
@pytest.mark.parametrize("strategy", list(STRATEGIES))
def test_receiver_with_other_choices_in_one_column(strategy: str, delta_i: int, e_kind: str) -> None:
    """u_i is computed with x ⊕ e for one column i; x̃, t̃ are then recomputed honestly
    (with the new challenges) from the rows the strategy picks. Each strategy is caught
    for at least one value of Δ_i, so the receiver learns Δ_i only at the risk, 1/2, of
    being caught; when it passes, the sender's rows are the honest ones or differ only
    in column i (the receiver learns Δ_i and nothing more)."""
    pair = make_setups(40, delta_with_bits({ATTACK_COLUMN: delta_i}))
    choices = random_choices(M, 41)
    x = all_rows_choices(choices, PADDING)
    e = error_vector(e_kind, len(x))
    message = receiver_message(
        pair.receiver,
        CONTEXT,
        x,
        column_choices={ATTACK_COLUMN: x ^ e},
        checked_x=x ^ e if strategy == "check-values-of-x-xor-e" else None,
        checked_t_flips={ATTACK_COLUMN: e} if strategy == "check-values-matching-column" else None,
    )
    if STRATEGIES[strategy] == delta_i:
        q = extend_send(pair.sender, CONTEXT, M, message)
        assert q.shape == (M, ROW_BYTES)
    else:
        with pytest.raises(OtExtensionError, match="correlation check"):
            extend_send(pair.sender, CONTEXT, M, message)


@pytest.mark.parametrize("wrong_guesses", [0, 1, 3])
def test_receiver_attacking_many_columns_must_guess_every_bit(wrong_guesses: int) -> None:
    """Attacking 16 columns, choosing per column the strategy that passes for a guessed Δ_i:
    the check passes only if all 16 guesses are right (probability 2^-16); one wrong
    guess is enough to be caught."""
    columns = list(range(3, 256, 16))
    assert len(columns) == 16
    true_bits = {i: (i // 16) % 2 for i in columns}
    pair = make_setups(50, delta_with_bits(true_bits))
    x = all_rows_choices(random_choices(M, 51), PADDING)
    e = error_vector("dense", len(x))
    guesses = dict(true_bits)
    for i in columns[:wrong_guesses]:
        guesses[i] ^= 1
    message = receiver_message(
        pair.receiver,
        CONTEXT,
        x,
        column_choices={i: x ^ e for i in columns},
        checked_t_flips={i: e for i in columns if guesses[i] == 1},
    )
    if wrong_guesses:
        with pytest.raises(OtExtensionError, match="correlation check"):
            extend_send(pair.sender, CONTEXT, M, message)
    else:
        extend_send(pair.sender, CONTEXT, M, message)


def test_receiver_with_other_choices_in_every_column_is_just_another_choice_vector(setups: Setups) -> None:
    # The same x ⊕ e in all columns is an honest run with choices x ⊕ e: not an attack.
    x = all_rows_choices(random_choices(M, 60), PADDING)
    e = error_vector("dense", len(x))
    message = receiver_message(
        setups.receiver, CONTEXT, x, column_choices=dict.fromkeys(range(KAPPA), x ^ e), checked_x=x ^ e
    )
    q = extend_send(setups.sender, CONTEXT, M, message)
    padding = np.packbits((x ^ e)[M:], bitorder="little").tobytes() + b"\x00"
    _, t = extend_receive(setups.receiver, CONTEXT, (x ^ e)[:M], padding)
    assert_correlated(t, q, (x ^ e)[:M], setups.sender.delta)
