"""Hedged randomness: every secret a party draws depends on fresh bytes *and* on its secret.

RFC 9591 section 4.1 derives FROST nonces as ``H3(random_bytes(32) ‖
SerializeScalar(sk))`` so that a weak random generator alone does not make them
predictable. :class:`HedgedRandom` applies the same idea to every other secret
value the protocols draw (instance keys and masks, commitment salts, OT choice
bits and secrets, multiplication pads, polynomial coefficients), and also binds
the session, the purpose of the draw and a counter, so that:

- with a working generator, each draw is as random as the generator's bytes;
- with a broken one (a cloned virtual machine, a generator that repeats or
  returns constant bytes), draws still differ between sessions, purposes and
  calls, and nobody without the party's secret can predict them, even knowing
  every "fresh" byte.

It cannot do more than that: with a broken generator, the same secret, session,
label and counter give the same bytes (like RFC 6979 nonces for one message),
and a party without a secret is only protected by what it has (session, party,
purpose), which an attacker may know. Parties that hold no key share yet take a
per-node secret (``hedge_key``) for that reason.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence

from harbour.crypto.group import RandomBytes
from harbour.crypto.hashing import Transcript

DOMAIN = "harbour/hedge/v1"
FRESH_LEN = 32
"""Fresh bytes per draw, as RFC 9591's ``random_bytes(32)``."""


class HedgedRandom:
    """A :data:`~harbour.crypto.group.RandomBytes` source whose draw number ``k`` of ``n`` bytes is

    ::

        seed = Transcript("harbour/hedge/v1")
                 .append("fresh", fresh(32))
                 .append_list("secret", secret)
                 .append("session", session)
                 .append("label", label)
                 .append("counter", k)
                 .append("length", n)
                 .digest()
        output = SHAKE-256(seed)[:n]

    ``k`` counts from 0 per object. ``fresh`` is the generator (the operating
    system's unless a test injects one); ``secret`` the party's secrets (its key
    share, a setup secret, a per-node key), each length-prefixed by the
    transcript; ``session`` whatever identifies the run (session id and the
    inputs it is about); ``label`` the purpose and the party, so that two
    purposes or two parties never share a stream.
    """

    __slots__ = ("_counter", "_fresh", "_label", "_secret", "_session")

    def __init__(
        self, label: str, session: bytes, secret: Sequence[bytes] = (), *, fresh: RandomBytes = secrets.token_bytes
    ) -> None:
        self._label = label
        self._session = bytes(session)
        self._secret = [bytes(s) for s in secret]
        self._fresh = fresh
        self._counter = 0

    def __call__(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("cannot draw a negative number of bytes")
        fresh = self._fresh(FRESH_LEN)
        if len(fresh) != FRESH_LEN:
            raise ValueError(f"the random generator returned {len(fresh)} bytes, not {FRESH_LEN}")
        seed = (
            Transcript(DOMAIN)
            .append("fresh", fresh)
            .append_list("secret", self._secret)
            .append("session", self._session)
            .append("label", self._label)
            .append("counter", self._counter)
            .append("length", n)
            .digest()
        )
        self._counter += 1
        return hashlib.shake_256(seed).digest(n)

    def __repr__(self) -> str:
        return f"HedgedRandom({self._label!r}, draws={self._counter})"
