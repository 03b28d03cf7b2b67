"""Verified Simplest OT: the maliciously secure base OT of DKLs18 (protocol 7).

Doerner, Kondi, Lee and shelat, "Secure Two-party Threshold ECDSA from ECDSA
Assumptions" (IEEE S&P 2018, eprint 2018/499), section VI-A, protocol 7: Chou and
Orlandi's "Simplest OT" made secure against a malicious party by a proof of
knowledge of the sender's key and a verification round trip.

A batch of :data:`BATCH` random OTs, one sender key for the whole batch:

1. sender:   ``b <- Z_q``, ``B = b·G``; sends ``B`` and a Schnorr proof of knowledge
   of ``b`` (crypto/dlog.py).
2. receiver: checks the proof; per OT ``k`` with choice bit ``ω_k``:
   ``a_k <- Z_q``, ``A_k = a_k·G + ω_k·B``; pad ``ρ_k = H(k, a_k·B)``; sends ``A_k``.
3. sender:   ``ρ⁰_k = H(k, b·A_k)``, ``ρ¹_k = H(k, b·(A_k - B))``; challenge
   ``ξ_k = H'(H'(ρ⁰_k)) ⊕ H'(H'(ρ¹_k))``.
4. receiver: response ``ρ'_k = H'(H'(ρ_k)) ⊕ ω_k·ξ_k``.
5. sender:   checks ``ρ'_k == H'(H'(ρ⁰_k))`` (else the receiver cheated), sends the
   openings ``H'(ρ⁰_k), H'(ρ¹_k)``.
6. receiver: checks that the opening of its choice hashes from its pad and that
   the two openings hash to ``ξ_k`` (else the sender cheated).

``H`` and ``H'`` are SHA-256 under distinct domain tags, prefixed with the caller's
context (session, the two parties, their roles), so pads are never shared between
batches. A failed check raises :class:`OtError`; the caller names the peer.

The secrets ``b`` and ``a_k`` are hedged (crypto/hedge.py): drawn from ``rng``
mixed with the batch context and, for the receiver, its choice bits and the
sender's first message, so a broken generator does not repeat them across
batches, OTs or senders. The ECDSA setup passes an ``rng`` that is itself
hedged with the party's key share.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field

from harbour.crypto import dlog
from harbour.crypto.group import GroupError, Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.crypto.secp256k1 import SECP256K1

BATCH = 256
"""Base OTs per OT-extension instance: its computational security parameter."""
PAD_LEN = 32
_POINT = 33
_G = SECP256K1


class OtError(ValueError):
    """A base-OT message that is malformed or fails its check: the peer misbehaved."""


def _prefix(tag: bytes, context: bytes) -> hashlib._Hash:
    h = hashlib.sha256()
    h.update(len(tag).to_bytes(2, "big") + tag + len(context).to_bytes(2, "big") + context)
    return h


def _split(data: bytes, size: int, count: int, what: str) -> list[bytes]:
    if len(data) != size * count:
        raise OtError(f"{what}: expected {size * count} bytes, got {len(data)}")
    return [data[i * size : (i + 1) * size] for i in range(count)]


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


class _Hashes:
    def __init__(self, context: bytes) -> None:
        self._context = context
        self._pad = _prefix(b"harbour/vsot/pad", context)
        self._h1 = _prefix(b"harbour/vsot/verify", context)
        self.proof_context = b"harbour/vsot/proof" + context

    def pad(self, k: int, point: Point) -> bytes:
        h = self._pad.copy()
        h.update(k.to_bytes(2, "big") + point.encode())
        return h.digest()

    def h1(self, value: bytes) -> bytes:
        h = self._h1.copy()
        h.update(value)
        return h.digest()

    def __reduce__(self) -> tuple[type[_Hashes], tuple[bytes]]:
        # hashlib objects do not pickle; the prefixes are rebuilt from the context.
        return _Hashes, (self._context,)


@dataclass
class VsotSender:
    """The sender side of one batch; ``pads0``/``pads1`` are its output."""

    context: bytes
    rng: RandomBytes = secrets.token_bytes
    pads0: list[bytes] = field(default_factory=list, repr=False)
    pads1: list[bytes] = field(default_factory=list, repr=False)
    _b: int = field(default=0, repr=False)
    _B: Point | None = field(default=None, repr=False)
    _hashes: _Hashes | None = field(default=None, repr=False)
    _expected: list[bytes] = field(default_factory=list, repr=False)
    _stage: int = 0

    def message1(self) -> bytes:
        self._advance(0)
        self._hashes = _Hashes(self.context)
        rng = HedgedRandom("base-ot/sender", self.context, fresh=self.rng)
        self._b = _G.random_scalar(rng)
        self._B = _G.base_mul(self._b)
        return self._B.encode() + dlog.prove(_G, self._b, self._hashes.proof_context, rng)

    def message3(self, message2: bytes) -> bytes:
        self._advance(1)
        assert self._B is not None and self._hashes is not None
        hashes, b = self._hashes, self._b
        bB = self._B * b
        challenges = []
        for k, raw in enumerate(_split(message2, _POINT, BATCH, "receiver points")):
            try:
                A = _G.decode_point(raw)
                bA = A * b
                p0, p1 = hashes.pad(k, bA), hashes.pad(k, bA - bB)
            except GroupError as exc:
                raise OtError(f"receiver point {k} is invalid: {exc}") from exc
            self.pads0.append(p0)
            self.pads1.append(p1)
            e0, e1 = hashes.h1(hashes.h1(p0)), hashes.h1(hashes.h1(p1))
            self._expected.append(e0)
            challenges.append(_xor(e0, e1))
        self._b = 0
        return b"".join(challenges)

    def message5(self, message4: bytes) -> bytes:
        self._advance(2)
        assert self._hashes is not None
        responses = _split(message4, PAD_LEN, BATCH, "receiver responses")
        if any(r != e for r, e in zip(responses, self._expected, strict=True)):
            self.pads0, self.pads1 = [], []
            raise OtError("the receiver's verification responses are wrong")
        h1 = self._hashes.h1
        return b"".join(h1(p0) + h1(p1) for p0, p1 in zip(self.pads0, self.pads1, strict=True))

    def _advance(self, stage: int) -> None:
        if self._stage != stage:
            raise RuntimeError("base-OT sender steps called out of order")
        self._stage += 1


@dataclass
class VsotReceiver:
    """The receiver side of one batch; ``choices`` (bit k = OT k) and ``pads`` are its output."""

    context: bytes
    choices: int = field(repr=False)
    rng: RandomBytes = secrets.token_bytes
    pads: list[bytes] = field(default_factory=list, repr=False)
    _challenges: list[bytes] = field(default_factory=list, repr=False)
    _hashes: _Hashes | None = field(default=None, repr=False)
    _stage: int = 0

    def message2(self, message1: bytes) -> bytes:
        self._advance(0)
        if not 0 <= self.choices < 1 << BATCH:
            raise ValueError(f"choices are {BATCH} bits")
        self._hashes = hashes = _Hashes(self.context)
        if len(message1) != _POINT + dlog.proof_length(_G):
            raise OtError("sender's first message has the wrong length")
        try:
            B = _G.decode_point(message1[:_POINT])
        except GroupError as exc:
            raise OtError(f"sender's key is invalid: {exc}") from exc
        if not dlog.verify(_G, B, message1[_POINT:], hashes.proof_context):
            raise OtError("sender's proof of knowledge of its key is invalid")
        # Bound to the sender's message too: under a broken generator and a reused
        # context, a different B' must not meet the same a_k (A_k - A'_k would
        # then reveal ω_k).
        session = Transcript("harbour/vsot/receiver-hedge").append("context", self.context).append("message1", message1)
        rng = HedgedRandom(
            "base-ot/receiver", session.digest(), [self.choices.to_bytes(BATCH // 8, "big")], fresh=self.rng
        )
        out = []
        for k in range(BATCH):
            a = _G.random_scalar(rng)
            A = _G.base_mul(a)
            if self.choices >> k & 1:
                A = A + B
            self.pads.append(hashes.pad(k, B * a))
            out.append(A.encode())
        return b"".join(out)

    def message4(self, message3: bytes) -> bytes:
        self._advance(1)
        assert self._hashes is not None
        h1 = self._hashes.h1
        self._challenges = _split(message3, PAD_LEN, BATCH, "sender challenges")
        out = []
        for k, (pad, xi) in enumerate(zip(self.pads, self._challenges, strict=True)):
            response = h1(h1(pad))
            out.append(_xor(response, xi) if self.choices >> k & 1 else response)
        return b"".join(out)

    def finish(self, message5: bytes) -> None:
        self._advance(2)
        assert self._hashes is not None
        h1 = self._hashes.h1
        openings = _split(message5, 2 * PAD_LEN, BATCH, "sender openings")
        for k, (pad, xi, opening) in enumerate(zip(self.pads, self._challenges, openings, strict=True)):
            o0, o1 = opening[:PAD_LEN], opening[PAD_LEN:]
            mine = o1 if self.choices >> k & 1 else o0
            if h1(pad) != mine or _xor(h1(o0), h1(o1)) != xi:
                self.pads = []
                raise OtError(f"the sender's opening of OT {k} does not verify")

    def _advance(self, stage: int) -> None:
        if self._stage != stage:
            raise RuntimeError("base-OT receiver steps called out of order")
        self._stage += 1
