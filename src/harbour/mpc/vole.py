"""Random vector OLE from OT extension: protocol 5.2 of DKLs23.

Doerner, Kondi, Lee and shelat, "Threshold ECDSA in Three Rounds" (IEEE S&P 2024,
eprint 2023/765), section 5, protocol 5.2 (realising functionality 3.5,
``F_RVOLE``), itself the "forced reuse" form of protocol 1 of DKLs19 (eprint
2019/523): Bob's input is one *random* scalar ``b``, Alice's a vector ``a`` of
:data:`ELL` scalars, and the two end with additive shares ``c + d = a·b``. Because
Bob's input is random, the multiplication takes two messages, Bob's first.

Parameters: ``ξ = κ + 2s = 256 + 2·80 = 416`` OTs (κ = |q|, s = 80), ``ℓ = 2``
(the instance key and the key share of the signing protocol), ``ρ = 1`` check
scalar; the gadget vector ``g ∈ Z_q^ξ`` is public (hashed from a fixed tag).

1. Bob samples ``β ∈ {0,1}^ξ``; his input is ``b = Σ_j g_j β_j``. He sends the
   OT-extension message for choices ``β`` (mpc/ot_extension.py, whose KOS check
   binds him to one ``β``).
2. Alice checks that message, samples pads ``ã ∈ Z_q^ℓ``, a check mask ``â ∈ Z_q``
   and a fresh ``nonce``, and turns the random OTs into correlated OTs with
   correlation ``α = (ã, â)``: with ``p⁰_j, p¹_j`` the hashes of her two rows,
   her output ``z^A_j = -p⁰_j`` and she sends ``τ_j = p⁰_j - p¹_j + α``, so Bob's
   ``z^B_j = p^{β_j}_j + β_j·τ_j`` satisfies ``z^A_j + z^B_j = β_j·α``.
   The consistency check (Fiat–Shamir challenge ``θ ∈ Z_q^ℓ`` from the whole
   transcript) catches an Alice who used different correlations in different
   OTs (a selective-failure attack on ``β``): she sends ``μ = θ·ã + â`` and a hash
   of ``r_j = θ·z^A_j[:ℓ] + z^A_j[ℓ]``, which Bob recomputes as
   ``β_j·μ - (θ·z^B_j[:ℓ] + z^B_j[ℓ])``. Finally she sends ``γ = a - ã`` and keeps
   ``c = Σ_j g_j z^A_j[:ℓ]``.
3. Bob checks the hash and outputs ``d = Σ_j g_j z^B_j[:ℓ] + b·γ``.

Each side adds a fresh nonce of its own: Bob's goes into the OT-extension
context (so a reused session id never repeats his PRG columns, which would
reveal the XOR of his choice bits in the two runs), Alice's into the pad hash
(so a replayed first message never repeats her pads, and so ``τ``).

Every value either side draws (Bob's ``β``, nonce and padding bits; Alice's
nonce, ``ã`` and ``â``) is hedged (crypto/hedge.py) with its long-term
OT-extension setup and the context, Alice's also with her inputs and Bob's
message: with a broken generator the nonces still never repeat unless
everything they protect repeats too. A failed KOS check raises
:class:`VoleKosCheckFailed`, which is both a :class:`VoleError` and a
:class:`~harbour.mpc.ot_extension.KosCheckFailed`, so a caller can tell the
possible leak of ``Δ`` from any other failure by type.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harbour.crypto.group import RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.crypto.secp256k1 import SECP256K1
from harbour.mpc.ot_extension import (
    ROW_BYTES,
    STATISTICAL,
    ExtensionReceiverSetup,
    ExtensionSenderSetup,
    KosCheckFailed,
    OtExtensionError,
    extend_receive,
    extend_send,
    message_length,
)
from harbour.util.lazy import lazy_module

if TYPE_CHECKING:
    import _hashlib

    import numpy as np
else:  # loaded on first use: a signer node that runs no threshold-ECDSA session never needs it
    np = lazy_module("numpy")

Q = SECP256K1.order
KAPPA_Q = 256
XI = KAPPA_Q + 2 * STATISTICAL
ELL = 2
WIDTH = ELL + 1
_SCALAR = 32
NONCE_LEN = 32


def _gadget() -> tuple[int, ...]:
    raw = hashlib.shake_256(b"harbour/dkls23/gadget-vector/v1").digest(XI * 48)
    return tuple(int.from_bytes(raw[i * 48 : (i + 1) * 48], "big") % Q for i in range(XI))


GADGET = _gadget()
"""``g``: 384-bit hash outputs reduced mod q, so each entry is uniform up to 2^-128."""

MESSAGE1_LEN = NONCE_LEN + message_length(XI)
MESSAGE2_LEN = NONCE_LEN + XI * WIDTH * _SCALAR + 2 * _SCALAR + ELL * _SCALAR


class VoleError(ValueError):
    """A malformed multiplication message, or one that fails its consistency check."""


class VoleKosCheckFailed(VoleError, KosCheckFailed):
    """Bob's OT-extension message failed Alice's KOS check (see :class:`KosCheckFailed`)."""


def _pad_hasher(context: bytes, nonce: bytes) -> _hashlib.HASHXOF:
    return hashlib.shake_256(b"harbour/dkls23/vole-pad" + len(context).to_bytes(2, "big") + context + nonce)


_INDEX = tuple(j.to_bytes(2, "big") for j in range(XI))
_MASK = (1 << 256) - 1
_Q_BYTES = Q.to_bytes(32, "big")


def _pads(base: _hashlib.HASHXOF, rows: bytes) -> list[int]:
    """``H(nonce, j, row_j)`` for every row, each a 768-bit int holding three 256-bit values.

    The values are used modulo q without reducing them first: q > 2^256 - 2^129, so a
    uniform 256-bit value is uniform mod q up to 2^-127.
    """
    out = []
    for j in range(XI):
        h = base.copy()
        h.update(_INDEX[j] + rows[j * ROW_BYTES : (j + 1) * ROW_BYTES])
        out.append(int.from_bytes(h.digest(WIDTH * _SCALAR), "big"))
    return out


def _theta(context: bytes, message1: bytes, nonce: bytes, tau: bytes) -> tuple[int, int]:
    h = hashlib.sha512(b"harbour/dkls23/vole-check" + len(context).to_bytes(2, "big") + context)
    h.update(hashlib.sha256(message1).digest() + nonce)
    h.update(tau)
    seed = h.digest()
    raw = hashlib.shake_256(seed).digest(2 * 48)
    return int.from_bytes(raw[:48], "big") % Q, int.from_bytes(raw[48:], "big") % Q


def _extension_context(context: bytes, bob_nonce: bytes) -> bytes:
    """Bob's fresh nonce makes every extension new, even if a session id is ever reused."""
    return context + bob_nonce


def _check_hash(context: bytes, r: list[bytes]) -> bytes:
    h = hashlib.sha256(b"harbour/dkls23/vole-r" + len(context).to_bytes(2, "big") + context)
    h.update(b"".join(r))
    return h.digest()


def _check_scalars(data: bytes, what: str) -> None:
    """Every 32-byte big-endian value in ``data`` is below q (a vectorised range check)."""
    values = np.frombuffer(data, dtype=np.uint8).reshape(-1, _SCALAR)
    # Only a value whose top 15 bytes are all 0xff can reach q; compare those exactly.
    for k in np.flatnonzero(np.all(values[:, :15] == 0xFF, axis=1)):
        if bytes(values[k]) >= _Q_BYTES:
            raise VoleError(f"{what} is not a scalar below the group order")


def _scalar(data: bytes, what: str) -> int:
    x = int.from_bytes(data, "big")
    if x >= Q:
        raise VoleError(f"{what} is not a scalar below the group order")
    return x


@dataclass
class VoleBob:
    """Bob: random input ``b`` (available after :meth:`message1`), output ``d``."""

    setup: ExtensionReceiverSetup = field(repr=False)
    context: bytes
    rng: RandomBytes = secrets.token_bytes
    b: int = field(default=0, repr=False)
    _choices: list[int] = field(default_factory=list, repr=False)
    _rows: bytes = field(default=b"", repr=False)
    _message1: bytes = field(default=b"", repr=False)
    _stage: int = 0

    def message1(self) -> bytes:
        if self._stage != 0:
            raise RuntimeError("message1 was already produced")
        self._stage = 1
        rng = HedgedRandom("vole/bob", self.context, [self.setup.encode()], fresh=self.rng)
        bits = np.unpackbits(np.frombuffer(rng(XI // 8), dtype=np.uint8), bitorder="little")
        self._choices = [int(x) for x in bits]
        self.b = sum(g for g, c in zip(GADGET, self._choices, strict=True) if c) % Q
        bob_nonce = rng(NONCE_LEN)
        kos, rows = extend_receive(self.setup, _extension_context(self.context, bob_nonce), bits, rng(48))
        message = bob_nonce + kos
        self._rows = rows.tobytes()
        self._message1 = message
        return message

    def finish(self, message2: bytes) -> tuple[int, ...]:
        if self._stage != 1:
            raise RuntimeError("finish needs message1 first, and runs once")
        self._stage = 2
        if len(message2) != MESSAGE2_LEN:
            raise VoleError(f"multiplication message has {len(message2)} bytes, expected {MESSAGE2_LEN}")
        nonce = message2[:NONCE_LEN]
        tau_end = NONCE_LEN + XI * WIDTH * _SCALAR
        tau_bytes = message2[NONCE_LEN:tau_end]
        mu = _scalar(message2[tau_end : tau_end + 32], "check value μ")
        r_hash = message2[tau_end + 32 : tau_end + 64]
        gamma = [_scalar(message2[tau_end + 64 + 32 * k : tau_end + 96 + 32 * k], "correction γ") for k in range(ELL)]
        _check_scalars(tau_bytes, "correction τ")
        theta0, theta1 = _theta(self.context, self._message1, nonce, tau_bytes)
        pads = _pads(_pad_hasher(self.context, nonce), self._rows)
        d0 = d1 = 0
        r = []
        for j in range(XI):
            x = pads[j]
            p0, p1, p2 = x >> 512, (x >> 256) & _MASK, x & _MASK
            if self._choices[j]:
                off = 96 * j
                p0 += int.from_bytes(tau_bytes[off : off + 32], "big")
                p1 += int.from_bytes(tau_bytes[off + 32 : off + 64], "big")
                p2 += int.from_bytes(tau_bytes[off + 64 : off + 96], "big")
                r.append(((mu - theta0 * p0 - theta1 * p1 - p2) % Q).to_bytes(32, "big"))
            else:
                r.append(((-theta0 * p0 - theta1 * p1 - p2) % Q).to_bytes(32, "big"))
            g = GADGET[j]
            d0 += g * p0
            d1 += g * p1
        if not secrets.compare_digest(_check_hash(self.context, r), r_hash):
            raise VoleError("multiplication consistency check failed")
        self._rows = b""
        return ((d0 + self.b * gamma[0]) % Q, (d1 + self.b * gamma[1]) % Q)


@dataclass
class VoleAlice:
    """Alice: input ``a`` (``ℓ`` scalars), output ``c`` with ``c + d = a·b``."""

    setup: ExtensionSenderSetup = field(repr=False)
    context: bytes
    rng: RandomBytes = secrets.token_bytes
    _used: bool = False

    def respond(self, message1: bytes, inputs: tuple[int, ...]) -> tuple[bytes, tuple[int, ...]]:
        if self._used:
            raise RuntimeError("an Alice instance answers once")
        self._used = True
        if len(inputs) != ELL or not all(0 <= a < Q for a in inputs):
            raise ValueError(f"Alice's input is {ELL} scalars")
        if len(message1) != MESSAGE1_LEN:
            raise VoleError(f"multiplication message has {len(message1)} bytes, expected {MESSAGE1_LEN}")
        try:
            bob_nonce, kos = message1[:NONCE_LEN], message1[NONCE_LEN:]
            rows = extend_send(self.setup, _extension_context(self.context, bob_nonce), XI, kos)
        except KosCheckFailed as exc:
            raise VoleKosCheckFailed(str(exc)) from exc
        except OtExtensionError as exc:
            raise VoleError(str(exc)) from exc
        delta = np.frombuffer(self.setup.delta.to_bytes(ROW_BYTES, "little"), dtype=np.uint8)
        rng = _alice_rng(self.setup, self.context, message1, inputs, self.rng)
        nonce = rng(NONCE_LEN)
        a0, a1 = _rand(rng), _rand(rng)
        a_hat = _rand(rng)
        base = _pad_hasher(self.context, nonce)
        pads0 = _pads(base, rows.tobytes())
        pads1 = _pads(base, (rows ^ delta).tobytes())
        tau: list[bytes] = []
        zs = []
        c0 = c1 = 0
        for j in range(XI):
            x, y = pads0[j], pads1[j]
            p0, p1, p2 = x >> 512, (x >> 256) & _MASK, x & _MASK
            tau.append(((p0 - (y >> 512) + a0) % Q).to_bytes(32, "big"))
            tau.append(((p1 - ((y >> 256) & _MASK) + a1) % Q).to_bytes(32, "big"))
            tau.append(((p2 - (y & _MASK) + a_hat) % Q).to_bytes(32, "big"))
            zs.append((p0, p1, p2))
            g = GADGET[j]
            c0 += g * p0
            c1 += g * p1
        tau_bytes = b"".join(tau)
        theta0, theta1 = _theta(self.context, message1, nonce, tau_bytes)
        mu = (theta0 * a0 + theta1 * a1 + a_hat) % Q
        # z^A_j = -p⁰_j, so r_j = θ·z^A_j[:ℓ] + z^A_j[ℓ] = -(θ·p⁰_j[:ℓ] + p⁰_j[ℓ]).
        r = [((-theta0 * p0 - theta1 * p1 - p2) % Q).to_bytes(32, "big") for p0, p1, p2 in zs]
        c0, c1 = -c0 % Q, -c1 % Q
        a_tilde = (a0, a1)
        gamma = [(a - t) % Q for a, t in zip(inputs, a_tilde, strict=True)]
        message = (
            nonce
            + tau_bytes
            + mu.to_bytes(32, "big")
            + _check_hash(self.context, r)
            + b"".join(x.to_bytes(32, "big") for x in gamma)
        )
        return message, (c0, c1)


def _alice_rng(
    setup: ExtensionSenderSetup, context: bytes, message1: bytes, inputs: tuple[int, ...], fresh: RandomBytes
) -> HedgedRandom:
    """Alice's draws, hedged with ``Δ`` and her seeds, her inputs, the context and Bob's message.

    Her nonce keeps pads from repeating; if it ever repeated under one context
    with a different Bob message (a broken generator and a reused session), a
    Bob who flipped choice bits would get ``τ`` for swapped pads and so ``ã``.
    Binding his message and her inputs makes the draw change whenever they do.
    """
    session = Transcript("harbour/dkls23/vole-alice-hedge").append("context", context).append("message1", message1)
    secret = [setup.encode(), b"".join(a.to_bytes(_SCALAR, "big") for a in inputs)]
    return HedgedRandom("vole/alice", session.digest(), secret, fresh=fresh)


def _rand(rng: RandomBytes) -> int:
    return SECP256K1.random_scalar(rng)
