"""Prime-order groups: the one interface every protocol in Harbour computes in.

Protocols are written once against :class:`Group` and :class:`Point`; the two
implementations delegate all point arithmetic to audited C libraries
(libsecp256k1 through coincurve, libsodium through PyNaCl). Scalars are plain
Python ints reduced modulo the group order: readable, exact, and fast enough,
but not constant-time (see SECURITY.md).

Decoding is where untrusted bytes become group elements, so ``Group.decode_point``
and ``Group.decode_scalar`` are the validation gates of RFC 9591 section 3.1
(DeserializeElement / DeserializeScalar): they reject malformed, non-canonical,
off-curve, identity and (Ed25519) small-subgroup points, and out-of-range scalars.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

RandomBytes = Callable[[int], bytes]
"""A source of uniformly random bytes; ``secrets.token_bytes`` unless a test injects one."""


class GroupError(ValueError):
    """Bytes that do not encode a valid element or scalar of the group."""


class Point(ABC):
    """An element of a prime-order group. Immutable; ``==`` compares the element."""

    __slots__ = ()

    @abstractmethod
    def __add__(self, other: Point) -> Point: ...

    @abstractmethod
    def __neg__(self) -> Point: ...

    @abstractmethod
    def __mul__(self, k: int) -> Point: ...

    def __rmul__(self, k: int) -> Point:
        return self.__mul__(k)

    def __sub__(self, other: Point) -> Point:
        return self + (-other)

    @abstractmethod
    def is_identity(self) -> bool: ...

    @abstractmethod
    def encode(self) -> bytes:
        """SerializeElement: the canonical encoding; the identity has none."""

    @abstractmethod
    def __eq__(self, other: object) -> bool: ...

    @abstractmethod
    def __hash__(self) -> int: ...


class Group(ABC):
    """A prime-order group with a fixed generator (RFC 9591 section 3.1)."""

    name: str
    order: int
    scalar_len: int
    point_len: int

    @abstractmethod
    def identity(self) -> Point: ...

    @abstractmethod
    def generator(self) -> Point: ...

    @abstractmethod
    def base_mul(self, k: int) -> Point:
        """ScalarBaseMult: ``k·G`` for any int ``k`` (reduced mod the order)."""

    @abstractmethod
    def decode_point(self, data: bytes) -> Point:
        """DeserializeElement with every check; raises :class:`GroupError`."""

    @abstractmethod
    def encode_scalar(self, k: int) -> bytes:
        """SerializeScalar of ``k mod order``."""

    @abstractmethod
    def decode_scalar(self, data: bytes) -> int:
        """DeserializeScalar: exact length, value below the order; raises GroupError."""

    def sum(self, points: Iterable[Point]) -> Point:
        """The sum of ``points`` (the identity for none); implementations batch it."""
        acc = self.identity()
        for p in points:
            acc = acc + p
        return acc

    def random_scalar(self, rng: RandomBytes = secrets.token_bytes) -> int:
        """A uniform non-zero scalar, by rejection sampling of ``scalar_len`` bytes."""
        bits = self.order.bit_length()
        while True:
            k = int.from_bytes(rng(self.scalar_len), "big") & ((1 << bits) - 1)
            if 0 < k < self.order:
                return k

    def inverse(self, k: int) -> int:
        k %= self.order
        if k == 0:
            raise ZeroDivisionError("zero has no inverse modulo the group order")
        return pow(k, -1, self.order)
