"""secp256k1 through libsecp256k1 (coincurve): the curve of Bitcoin and Ethereum.

Elements are encoded as 33-byte compressed SEC1 points (RFC 9591 section 6.5);
scalars as 32-byte big-endian integers below the group order ``n``. The identity
has no encoding here: SerializeElement of the identity is an error, and
libsecp256k1's parser never yields it, so a decoded point is never the identity.
"""

from __future__ import annotations

from collections.abc import Iterable

from coincurve import PublicKey

from harbour.crypto.group import Group, GroupError, Point

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798


class Secp256k1Point(Point):
    """A point, held as libsecp256k1's parsed public key; ``None`` is the identity."""

    __slots__ = ("_enc", "_pk")

    def __init__(self, pk: PublicKey | None, enc: bytes | None = None) -> None:
        self._pk = pk
        self._enc = enc

    def __add__(self, other: Point) -> Point:
        assert isinstance(other, Secp256k1Point)
        if self._pk is None:
            return other
        if other._pk is None:
            return self
        try:
            return Secp256k1Point(PublicKey.combine_keys([self._pk, other._pk]))
        except ValueError:  # the sum is the point at infinity
            return _IDENTITY

    def __neg__(self) -> Point:
        if self._pk is None:
            return self
        enc = self.encode()
        flipped = bytes([enc[0] ^ 1]) + enc[1:]
        return Secp256k1Point(PublicKey(flipped), flipped)

    def __mul__(self, k: int) -> Point:
        k %= N
        if k == 0 or self._pk is None:
            return _IDENTITY
        return Secp256k1Point(self._pk.multiply(k.to_bytes(32, "big")))

    def is_identity(self) -> bool:
        return self._pk is None

    def encode(self) -> bytes:
        if self._enc is None:
            if self._pk is None:
                raise GroupError("the identity element has no encoding")
            self._enc = self._pk.format(compressed=True)
        return self._enc

    @property
    def x_bytes(self) -> bytes:
        """The 32-byte x coordinate (BIP-340's ``bytes(P)``)."""
        return self.encode()[1:]

    @property
    def has_even_y(self) -> bool:
        return self.encode()[0] == 0x02

    @property
    def public_key(self) -> PublicKey:
        if self._pk is None:
            raise GroupError("the identity element is not a public key")
        return self._pk

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secp256k1Point):
            return NotImplemented
        if self._pk is None or other._pk is None:
            return self._pk is None and other._pk is None
        return self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(b"" if self._pk is None else self.encode())

    def __repr__(self) -> str:
        return "Secp256k1Point(identity)" if self._pk is None else f"Secp256k1Point({self.encode().hex()})"


_IDENTITY = Secp256k1Point(None)


class Secp256k1Group(Group):
    name = "secp256k1"
    order = N
    scalar_len = 32
    point_len = 33

    def identity(self) -> Point:
        return _IDENTITY

    def generator(self) -> Point:
        return _GENERATOR

    def base_mul(self, k: int) -> Point:
        k %= N
        if k == 0:
            return _IDENTITY
        return Secp256k1Point(PublicKey.from_secret(k.to_bytes(32, "big")))

    def decode_point(self, data: bytes) -> Point:
        if len(data) != 33 or data[0] not in (2, 3):
            raise GroupError("a secp256k1 element is a 33-byte compressed point")
        if int.from_bytes(data[1:], "big") >= P:
            raise GroupError("non-canonical secp256k1 point: x is not below the field prime")
        try:
            pk = PublicKey(data)
        except ValueError as exc:
            raise GroupError("bytes do not encode a point on secp256k1") from exc
        return Secp256k1Point(pk, bytes(data))

    def lift_x(self, x_bytes: bytes) -> Secp256k1Point:
        """BIP-340 ``lift_x``: the point with this x coordinate and an even y."""
        if len(x_bytes) != 32:
            raise GroupError("an x-only key is 32 bytes")
        point = self.decode_point(b"\x02" + x_bytes)
        assert isinstance(point, Secp256k1Point)
        return point

    def encode_scalar(self, k: int) -> bytes:
        return (k % N).to_bytes(32, "big")

    def decode_scalar(self, data: bytes) -> int:
        if len(data) != 32:
            raise GroupError("a secp256k1 scalar is 32 bytes")
        k = int.from_bytes(data, "big")
        if k >= N:
            raise GroupError("scalar out of range: not below the secp256k1 group order")
        return k

    def sum(self, points: Iterable[Point]) -> Point:
        keys = []
        for p in points:
            assert isinstance(p, Secp256k1Point)
            if p._pk is not None:
                keys.append(p._pk)
        if not keys:
            return _IDENTITY
        if len(keys) == 1:
            return Secp256k1Point(keys[0])
        try:
            return Secp256k1Point(PublicKey.combine_keys(keys))
        except ValueError:
            return _IDENTITY


_GENERATOR = Secp256k1Point(PublicKey(b"\x02" + _GX.to_bytes(32, "big")))

SECP256K1 = Secp256k1Group()
