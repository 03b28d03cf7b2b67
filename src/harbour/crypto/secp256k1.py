"""secp256k1 through libsecp256k1 (coincurve): the curve of Bitcoin and Ethereum.

Elements are encoded as 33-byte compressed SEC1 points (RFC 9591 section 6.5);
scalars as 32-byte big-endian integers below the group order ``n``. The identity
has no encoding here: SerializeElement of the identity is an error, and
libsecp256k1's parser never yields it, so a decoded point is never the identity.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from coincurve import PublicKey
from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from harbour.crypto.group import Group, GroupError, Point

P = 2**256 - 2**32 - 977
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_P_BYTES = P.to_bytes(32, "big")
_GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798

# coincurve's context and cffi bindings, called directly: its PublicKey wrapper
# re-validates and re-wraps on every operation, which costs a fifth of a scalar
# multiplication, and the protocols here do thousands of them.
_CTX = GLOBAL_CONTEXT.ctx
_COMPRESSED = lib.SECP256K1_EC_COMPRESSED


def _parse(data: bytes) -> object | None:
    raw = ffi.new("secp256k1_pubkey *")
    return raw if lib.secp256k1_ec_pubkey_parse(_CTX, raw, data, len(data)) else None


class Secp256k1Point(Point):
    """A point, held as libsecp256k1's ``secp256k1_pubkey``; ``None`` is the identity."""

    __slots__ = ("_enc", "_raw")

    def __init__(self, raw: object | None, enc: bytes | None = None) -> None:
        self._raw: Any = raw
        self._enc = enc

    def __add__(self, other: Point) -> Point:
        assert isinstance(other, Secp256k1Point)
        if self._raw is None:
            return other
        if other._raw is None:
            return self
        out = ffi.new("secp256k1_pubkey *")
        if not lib.secp256k1_ec_pubkey_combine(_CTX, out, [self._raw, other._raw], 2):
            return _IDENTITY  # the sum is the point at infinity
        return Secp256k1Point(out)

    def __neg__(self) -> Point:
        if self._raw is None:
            return self
        out = ffi.new("secp256k1_pubkey *", self._raw[0])
        lib.secp256k1_ec_pubkey_negate(_CTX, out)
        return Secp256k1Point(out)

    def __mul__(self, k: int) -> Point:
        k %= N
        if k == 0 or self._raw is None:
            return _IDENTITY
        out = ffi.new("secp256k1_pubkey *", self._raw[0])
        if not lib.secp256k1_ec_pubkey_tweak_mul(_CTX, out, k.to_bytes(32, "big")):
            raise GroupError("libsecp256k1 refused the scalar multiplication")
        return Secp256k1Point(out)

    def is_identity(self) -> bool:
        return self._raw is None

    def encode(self) -> bytes:
        if self._enc is None:
            if self._raw is None:
                raise GroupError("the identity element has no encoding")
            buf = ffi.new("unsigned char[33]")
            size = ffi.new("size_t *", 33)
            lib.secp256k1_ec_pubkey_serialize(_CTX, buf, size, self._raw, _COMPRESSED)
            self._enc = bytes(ffi.buffer(buf, 33))
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
        """The same point as a coincurve ``PublicKey`` (for ECDSA/Schnorr verification)."""
        if self._raw is None:
            raise GroupError("the identity element is not a public key")
        return PublicKey(self.encode())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secp256k1Point):
            return NotImplemented
        if self._raw is None or other._raw is None:
            return self._raw is None and other._raw is None
        return self.encode() == other.encode()

    def __hash__(self) -> int:
        return hash(b"" if self._raw is None else self.encode())

    def __repr__(self) -> str:
        return "Secp256k1Point(identity)" if self._raw is None else f"Secp256k1Point({self.encode().hex()})"

    def __reduce__(self) -> tuple[Any, tuple[bytes | None]]:
        """Pickle as the compressed encoding: a signer node persists party state (encrypted) between rounds."""
        return _point_from_encoding, (None if self._raw is None else self.encode(),)


def _point_from_encoding(data: bytes | None) -> Secp256k1Point:
    if data is None:
        return _IDENTITY
    raw = _parse(data)
    if raw is None:
        raise GroupError("not a valid compressed secp256k1 point")
    return Secp256k1Point(raw, data)


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
        out = ffi.new("secp256k1_pubkey *")
        if not lib.secp256k1_ec_pubkey_create(_CTX, out, k.to_bytes(32, "big")):
            raise GroupError("libsecp256k1 refused the base multiplication")
        return Secp256k1Point(out)

    def decode_point(self, data: bytes) -> Point:
        if len(data) != 33 or data[0] not in (2, 3):
            raise GroupError("a secp256k1 element is a 33-byte compressed point")
        data = bytes(data)
        if data[1:] >= _P_BYTES:  # big-endian, equal lengths: compares as the integers do
            raise GroupError("non-canonical secp256k1 point: x is not below the field prime")
        raw = ffi.new("secp256k1_pubkey *")
        if not lib.secp256k1_ec_pubkey_parse(_CTX, raw, data, 33):
            raise GroupError("bytes do not encode a point on secp256k1")
        return Secp256k1Point(raw, data)

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
        raws = []
        for p in points:
            assert isinstance(p, Secp256k1Point)
            if p._raw is not None:
                raws.append(p._raw)
        if not raws:
            return _IDENTITY
        if len(raws) == 1:
            return Secp256k1Point(raws[0])
        out = ffi.new("secp256k1_pubkey *")
        if not lib.secp256k1_ec_pubkey_combine(_CTX, out, raws, len(raws)):
            return _IDENTITY
        return Secp256k1Point(out)


_GENERATOR = Secp256k1Point(_parse(b"\x02" + _GX.to_bytes(32, "big")))

SECP256K1 = Secp256k1Group()
