"""The prime-order subgroup of edwards25519 through libsodium (PyNaCl).

Elements are 32-byte canonical Edwards encodings (RFC 8032 section 5.1.2) and
scalars 32-byte little-endian integers below ``L`` (RFC 9591 section 6.1). All
arithmetic is libsodium's ``crypto_core_ed25519_*`` and the *noclamp* scalar
multiplications, so scalars are used exactly as given (no clamping).

``decode_point`` accepts only what ``crypto_core_ed25519_is_valid_point`` does:
canonical, on the curve, in the prime-order subgroup and not of small order. That
rejects the identity and every cofactor component, which RFC 9591 section 6.1
requires of DeserializeElement.
"""

from __future__ import annotations

import hashlib

import nacl.bindings as sodium

from harbour.crypto.group import Group, GroupError, Point

L = 2**252 + 27742317777372353535851937790883648493
_IDENTITY_ENC = b"\x01" + bytes(31)


class Ed25519Point(Point):
    """A point held as its canonical 32-byte encoding."""

    __slots__ = ("_enc",)

    def __init__(self, enc: bytes) -> None:
        self._enc = enc

    def __add__(self, other: Point) -> Point:
        assert isinstance(other, Ed25519Point)
        if self._enc == _IDENTITY_ENC:
            return other
        if other._enc == _IDENTITY_ENC:
            return self
        return Ed25519Point(sodium.crypto_core_ed25519_add(self._enc, other._enc))

    def __neg__(self) -> Point:
        if self._enc == _IDENTITY_ENC:
            return self
        # Negation flips the sign of x, which is the top bit of the encoding
        # (x is never 0 in the prime-order subgroup except at the identity).
        return Ed25519Point(self._enc[:31] + bytes([self._enc[31] ^ 0x80]))

    def __mul__(self, k: int) -> Point:
        k %= L
        if k == 0 or self._enc == _IDENTITY_ENC:
            return _IDENTITY
        return Ed25519Point(sodium.crypto_scalarmult_ed25519_noclamp(k.to_bytes(32, "little"), self._enc))

    def is_identity(self) -> bool:
        return self._enc == _IDENTITY_ENC

    def encode(self) -> bytes:
        if self._enc == _IDENTITY_ENC:
            raise GroupError("the identity element has no encoding")
        return self._enc

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ed25519Point):
            return NotImplemented
        return self._enc == other._enc

    def __hash__(self) -> int:
        return hash(self._enc)

    def __repr__(self) -> str:
        return f"Ed25519Point({self._enc.hex()})"


_IDENTITY = Ed25519Point(_IDENTITY_ENC)
_GENERATOR = Ed25519Point(bytes.fromhex("5866666666666666666666666666666666666666666666666666666666666666"))


class Ed25519Group(Group):
    name = "ed25519"
    order = L
    scalar_len = 32
    point_len = 32

    def identity(self) -> Point:
        return _IDENTITY

    def generator(self) -> Point:
        return _GENERATOR

    def base_mul(self, k: int) -> Point:
        k %= L
        if k == 0:
            return _IDENTITY
        return Ed25519Point(sodium.crypto_scalarmult_ed25519_base_noclamp(k.to_bytes(32, "little")))

    def decode_point(self, data: bytes) -> Point:
        if len(data) != 32:
            raise GroupError("an Ed25519 element is 32 bytes")
        if not sodium.crypto_core_ed25519_is_valid_point(bytes(data)):
            raise GroupError(
                "bytes are not a canonical Ed25519 point of the prime-order subgroup "
                "(off the curve, non-canonical, the identity or of small order)"
            )
        return Ed25519Point(bytes(data))

    def encode_scalar(self, k: int) -> bytes:
        return (k % L).to_bytes(32, "little")

    def scalar_from_seed(self, seed: bytes) -> int:
        """The secret scalar of an RFC 8032 private key (section 5.1.5), reduced mod L.

        Ordinary Ed25519 wallets store a 32-byte seed and sign with the clamped
        first half of ``SHA-512(seed)``; importing such a key into a threshold key
        splits that scalar (mod L gives the same public key, as B has order L).
        """
        if len(seed) != 32:
            raise GroupError("an Ed25519 private key (seed) is 32 bytes")
        h = bytearray(hashlib.sha512(seed).digest()[:32])
        h[0] &= 248
        h[31] &= 127
        h[31] |= 64
        return int.from_bytes(h, "little") % self.order

    def decode_scalar(self, data: bytes) -> int:
        if len(data) != 32:
            raise GroupError("an Ed25519 scalar is 32 bytes")
        k = int.from_bytes(data, "little")
        if k >= L:
            raise GroupError("scalar out of range: not below the Ed25519 group order")
        return k


ED25519 = Ed25519Group()
