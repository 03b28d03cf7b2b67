"""KOS15 OT extension: many random OTs from :data:`~harbour.mpc.base_ot.BATCH` base OTs.

Keller, Orsini and Scholl, "Actively Secure OT Extension with Optimal Overhead"
(CRYPTO 2015, eprint 2015/546), figure 7: IKNP extension plus a correlation
check that stops a malicious receiver from using different choice bits in
different columns (which would leak the sender's secret Δ bit by bit).

Roles are reversed from the base OTs: the extension *receiver* holds both seeds
of each base OT (it was the base-OT sender), the extension *sender* holds one
seed per base OT, selected by its secret ``Δ`` (it was the base-OT receiver).

Parameters: ``κ = 256`` columns (computational security 256 bits); ``m`` OTs
are extended as ``m' = m + κ + s`` rows with ``s = 80`` (statistical security),
the ``κ + s`` extra random rows hide the receiver's choices in the check.

Per extension (``context`` must be unique to the extension: session, parties,
purpose; the PRG output is bound to it):

- receiver: ``t⁰_i = PRG(k⁰_i)``, ``t¹_i = PRG(k¹_i)`` (columns of m' bits),
  ``u_i = t⁰_i ⊕ t¹_i ⊕ x'``; rows ``t_j`` of the matrix ``T⁰``. Challenges
  ``χ_j ∈ GF(2^256)`` come from hashing the context and every ``u_i``
  (Fiat–Shamir, so the check costs no extra message); it sends ``u``,
  ``x̃ = Σ χ_j x'_j`` and ``t̃ = Σ χ_j t_j``.
- sender: ``q_i = PRG(k^{Δ_i}_i) ⊕ Δ_i·u_i``, so row ``q_j = t_j ⊕ x'_j·Δ``; it
  checks ``Σ χ_j q_j == t̃ ⊕ x̃·Δ`` in GF(2^256) and aborts if not.

Outputs are rows, not yet hashed: the receiver has ``t_j`` and the sender ``q_j``
and ``Δ``, so that ``q_j ⊕ x_j·Δ = t_j``. The caller breaks the correlation with
a hash of the row (mpc/vole.py), keyed by a fresh value of its own.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias

from harbour.crypto import gf2_256
from harbour.mpc.base_ot import BATCH, PAD_LEN
from harbour.util.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:  # loaded on first use: a signer node that runs no threshold-ECDSA session never needs it
    np = lazy_module("numpy")

KAPPA = BATCH
STATISTICAL = 80
ROW_BYTES = KAPPA // 8

Bits: TypeAlias = "npt.NDArray[np.uint8]"


class OtExtensionError(ValueError):
    """A malformed extension message, or one that fails the correlation check."""


class KosCheckFailed(OtExtensionError):
    """A well-formed extension message that fails the KOS correlation check.

    Distinct from a malformed message because its outcome can depend on the
    sender's long-term ``Δ``: a receiver who flips a choice bit in one row and
    adjusts ``t̃`` for a guess of one bit of ``Δ`` passes exactly when the guess
    is right. A caller must treat it as a possible leak of ``Δ``, not as an
    ordinary abort (mpc/ecdsa_sign.py stops the pair).
    """


@dataclass(frozen=True)
class ExtensionReceiverSetup:
    """Both seeds of every base OT (this party was the base-OT sender)."""

    seeds0: tuple[bytes, ...] = field(repr=False)
    seeds1: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seeds0) != KAPPA or len(self.seeds1) != KAPPA:
            raise ValueError(f"need {KAPPA} pairs of base-OT seeds")
        if any(len(s) != PAD_LEN for s in (*self.seeds0, *self.seeds1)):
            raise ValueError(f"base-OT seeds are {PAD_LEN} bytes")

    def encode(self) -> bytes:
        return b"".join(self.seeds0) + b"".join(self.seeds1)

    @classmethod
    def decode(cls, data: bytes) -> ExtensionReceiverSetup:
        if not isinstance(data, bytes) or len(data) != 2 * KAPPA * PAD_LEN:
            raise ValueError("extension receiver setup has the wrong length")
        seeds = [data[i : i + PAD_LEN] for i in range(0, len(data), PAD_LEN)]
        return cls(tuple(seeds[:KAPPA]), tuple(seeds[KAPPA:]))


@dataclass(frozen=True)
class ExtensionSenderSetup:
    """``Δ`` (bit i = choice of base OT i) and the seed it selected in each base OT."""

    delta: int = field(repr=False)
    seeds: tuple[bytes, ...] = field(repr=False)

    def __post_init__(self) -> None:
        if not 0 <= self.delta < 1 << KAPPA:
            raise ValueError(f"Δ is {KAPPA} bits")
        if len(self.seeds) != KAPPA or any(len(s) != PAD_LEN for s in self.seeds):
            raise ValueError(f"need {KAPPA} base-OT seeds of {PAD_LEN} bytes")

    def encode(self) -> bytes:
        return gf2_256.to_bytes(self.delta) + b"".join(self.seeds)

    @classmethod
    def decode(cls, data: bytes) -> ExtensionSenderSetup:
        if not isinstance(data, bytes) or len(data) != ROW_BYTES + KAPPA * PAD_LEN:
            raise ValueError("extension sender setup has the wrong length")
        seeds = data[ROW_BYTES:]
        return cls(
            gf2_256.from_bytes(data[:ROW_BYTES]), tuple(seeds[i : i + PAD_LEN] for i in range(0, len(seeds), PAD_LEN))
        )


def padded_rows(m: int) -> int:
    """``m' = m + κ + s`` rounded up to whole bytes."""
    return -(-(m + KAPPA + STATISTICAL) // 8) * 8


def message_length(m: int) -> int:
    return KAPPA * padded_rows(m) // 8 + 2 * ROW_BYTES


def _prg(seeds: tuple[bytes, ...], context: bytes, nbytes: int) -> Bits:
    """One column of m' bits per seed, bound to the extension's context."""
    base = hashlib.shake_256(b"harbour/kos/prg" + len(context).to_bytes(2, "big") + context)
    out = bytearray()
    for seed in seeds:
        h = base.copy()
        h.update(seed)
        out += h.digest(nbytes)
    return np.frombuffer(bytes(out), dtype=np.uint8).reshape(len(seeds), nbytes)


def _challenges(context: bytes, u: bytes, rows: int) -> Bits:
    """χ_1..χ_m' as m' rows of 32 bytes, from a hash of the context and ``u``."""
    seed = hashlib.sha512(b"harbour/kos/check" + len(context).to_bytes(2, "big") + context + u).digest()
    raw = hashlib.shake_256(seed).digest(rows * ROW_BYTES)
    return np.frombuffer(raw, dtype=np.uint8).reshape(rows, ROW_BYTES)


def _sum_selected(challenges: Bits, selector: Bits) -> int:
    """``Σ_j x_j χ_j`` for bits ``x_j`` (no multiplications: a XOR of chosen χ_j)."""
    chosen = challenges[selector.astype(bool)]
    if len(chosen) == 0:
        return 0
    return int.from_bytes(np.bitwise_xor.reduce(chosen.view(np.uint64), axis=0).tobytes(), "little")


def _rows(columns: Bits, m: int) -> Bits:
    """The first ``m`` rows (32 bytes each) of a matrix given as 256 packed columns."""
    bits = np.unpackbits(columns, axis=1, bitorder="little")[:, :m]
    return np.packbits(bits.T, axis=1, bitorder="little")


def extend_receive(setup: ExtensionReceiverSetup, context: bytes, choices: Bits, padding: bytes) -> tuple[bytes, Bits]:
    """Receiver's message for ``m = len(choices)`` OTs, and its rows ``t_j`` (m x 32 bytes).

    ``padding`` is at least ``m' - m`` (about ``κ + s``) fresh random bits for the extra rows.
    """
    m = len(choices)
    rows = padded_rows(m)
    nbytes = rows // 8
    if 8 * len(padding) < rows - m:
        raise ValueError("not enough random padding")
    extra = np.unpackbits(np.frombuffer(padding, dtype=np.uint8), bitorder="little")[: rows - m]
    x = np.concatenate([choices.astype(np.uint8) & 1, extra])
    x_packed = np.packbits(x, bitorder="little")
    t0 = _prg(setup.seeds0, context, nbytes)
    t1 = _prg(setup.seeds1, context, nbytes)
    u = (t0 ^ t1 ^ x_packed).tobytes()
    chi = _challenges(context, u, rows)
    x_check = _sum_selected(chi, x)
    t_check = gf2_256.inner_product(chi, t0)
    return u + gf2_256.to_bytes(x_check) + gf2_256.to_bytes(t_check), _rows(t0, m)


def extend_send(setup: ExtensionSenderSetup, context: bytes, m: int, message: bytes) -> Bits:
    """Sender's rows ``q_j`` (m x 32 bytes) after the correlation check; raises on a bad message."""
    rows = padded_rows(m)
    nbytes = rows // 8
    if len(message) != message_length(m):
        raise OtExtensionError(f"OT extension message has {len(message)} bytes, expected {message_length(m)}")
    u_bytes = message[: KAPPA * nbytes]
    x_check = gf2_256.from_bytes(message[KAPPA * nbytes : KAPPA * nbytes + ROW_BYTES])
    t_check = gf2_256.from_bytes(message[KAPPA * nbytes + ROW_BYTES :])
    u = np.frombuffer(u_bytes, dtype=np.uint8).reshape(KAPPA, nbytes)
    delta_bits = np.array([(setup.delta >> i) & 1 for i in range(KAPPA)], dtype=np.uint8)
    q = _prg(setup.seeds, context, nbytes) ^ (u * delta_bits[:, None])
    chi = _challenges(context, u_bytes, rows)
    q_check = gf2_256.inner_product(chi, q)
    if q_check != t_check ^ gf2_256.mul(x_check, setup.delta):
        raise KosCheckFailed("OT extension correlation check failed")
    return _rows(q, m)
