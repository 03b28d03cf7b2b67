"""FROST ciphersuites: RFC 9591 section 6 and the BIP-340 (Taproot) variant.

A ciphersuite fixes the group, the hash functions H1-H5 (plus HDKG, the hash of
the DKG's proof of knowledge), the challenge and the signature encoding. The
three suites here:

* ``frost-secp256k1``: FROST(secp256k1, SHA-256), RFC 9591 section 6.5.
* ``frost-ed25519``: FROST(Ed25519, SHA-512), RFC 9591 section 6.1; its
  signatures are ordinary RFC 8032 Ed25519 signatures.
* ``frost-taproot``: "FROST-secp256k1-SHA256-TR-v1", the Zcash Foundation's
  BIP-340 variant: x-only challenge with the ``BIP0340/challenge`` tagged hash,
  even-y group key and group commitment, 64-byte signatures.

HDKG follows the Zcash Foundation implementation (context string || "dkg"), so
the published DKG vectors check our proof of knowledge byte for byte.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

from coincurve import PublicKeyXOnly

from harbour.crypto.ed25519 import ED25519
from harbour.crypto.group import Group, GroupError, Point, RandomBytes
from harbour.crypto.hashing import hash_to_field, hash_to_field_with_prefix, tagged_hash
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point


class SignatureError(ValueError):
    """Bytes that are not a well-formed signature of the suite."""


class Ciphersuite:
    """RFC 9591 section 6: the parameters of one FROST instantiation."""

    name: str
    context: bytes
    group: Group
    signature_len: int
    bip340: bool = False

    def H1(self, m: bytes) -> int:
        raise NotImplementedError

    def H1_with_prefix(self, prefix: bytes) -> Callable[[bytes], int]:
        """``m ↦ H1(prefix ‖ m)``: the binding factors share a long prefix, hashed once here."""
        return lambda m: self.H1(prefix + m)

    def H2(self, m: bytes) -> int:
        raise NotImplementedError

    def H3(self, m: bytes) -> int:
        raise NotImplementedError

    def H4(self, m: bytes) -> bytes:
        raise NotImplementedError

    def H5(self, m: bytes) -> bytes:
        raise NotImplementedError

    def HDKG(self, m: bytes) -> int:
        raise NotImplementedError

    def challenge(self, R: Point, public_key: Point, message: bytes) -> int:
        """compute_challenge (RFC 9591 section 4.6)."""
        return self.H2(R.encode() + public_key.encode() + message)

    def generate_nonce(self, rng: RandomBytes = secrets.token_bytes) -> tuple[int, Point]:
        """A fresh ``(k, k·G)`` for a single-party Schnorr proof (the DKG's PoK)."""
        k = self.group.random_scalar(rng)
        return k, self.group.base_mul(k)

    def encode_signature(self, R: Point, z: int) -> bytes:
        return R.encode() + self.group.encode_scalar(z)

    def decode_signature(self, data: bytes) -> tuple[Point, int]:
        if len(data) != self.signature_len:
            raise SignatureError(f"a {self.name} signature is {self.signature_len} bytes")
        n = self.group.point_len
        try:
            return self.group.decode_point(data[:n]), self.group.decode_scalar(data[n:])
        except GroupError as exc:
            raise SignatureError(f"malformed {self.name} signature: {exc}") from exc

    def verify(self, public_key: Point, message: bytes, signature: bytes) -> bool:
        try:
            R, z = self.decode_signature(signature)
        except SignatureError:
            return False
        return self.verify_parts(public_key, message, R, z)

    def verify_parts(self, public_key: Point, message: bytes, R: Point, z: int) -> bool:
        """Prime-order verification (RFC 9591 appendix B): ``z·G == R + c·PK``."""
        c = self.challenge(R, public_key, message)
        return self.group.base_mul(z) == R + public_key * c


class Secp256k1Sha256(Ciphersuite):
    """FROST(secp256k1, SHA-256), RFC 9591 section 6.5."""

    name = "frost-secp256k1"
    context = b"FROST-secp256k1-SHA256-v1"
    group: Group = SECP256K1
    signature_len = 65

    def _h2f(self, tag: bytes, m: bytes) -> int:
        return hash_to_field(m, self.context + tag, self.group.order)[0]

    def H1(self, m: bytes) -> int:
        return self._h2f(b"rho", m)

    def H1_with_prefix(self, prefix: bytes) -> Callable[[bytes], int]:
        return hash_to_field_with_prefix(prefix, self.context + b"rho", self.group.order)

    def H2(self, m: bytes) -> int:
        return self._h2f(b"chal", m)

    def H3(self, m: bytes) -> int:
        return self._h2f(b"nonce", m)

    def H4(self, m: bytes) -> bytes:
        return hashlib.sha256(self.context + b"msg" + m).digest()

    def H5(self, m: bytes) -> bytes:
        return hashlib.sha256(self.context + b"com" + m).digest()

    def HDKG(self, m: bytes) -> int:
        return self._h2f(b"dkg", m)


class Ed25519Sha512(Ciphersuite):
    """FROST(Ed25519, SHA-512), RFC 9591 section 6.1: RFC 8032-compatible signatures."""

    name = "frost-ed25519"
    context = b"FROST-ED25519-SHA512-v1"
    group: Group = ED25519
    signature_len = 64

    def _h(self, *parts: bytes) -> int:
        return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % self.group.order

    def H1(self, m: bytes) -> int:
        return self._h(self.context, b"rho", m)

    def H1_with_prefix(self, prefix: bytes) -> Callable[[bytes], int]:
        state = hashlib.sha512(self.context + b"rho" + prefix)
        order = self.group.order

        def h1(m: bytes) -> int:
            h = state.copy()
            h.update(m)
            return int.from_bytes(h.digest(), "little") % order

        return h1

    def H2(self, m: bytes) -> int:
        # No context string: the challenge must be Ed25519's, so that any RFC 8032
        # verifier accepts the signature.
        return self._h(m)

    def H3(self, m: bytes) -> int:
        return self._h(self.context, b"nonce", m)

    def H4(self, m: bytes) -> bytes:
        return hashlib.sha512(self.context + b"msg" + m).digest()

    def H5(self, m: bytes) -> bytes:
        return hashlib.sha512(self.context + b"com" + m).digest()

    def HDKG(self, m: bytes) -> int:
        return self._h(self.context, b"dkg", m)

    def verify_parts(self, public_key: Point, message: bytes, R: Point, z: int) -> bool:
        """RFC 8032's cofactored check ``[8]z·G == [8](R + c·PK)`` (RFC 9591 section 6.1).

        Decoding already rejects points with a small-order component, so the
        cofactor changes nothing for what we accept; it is kept for the letter
        of the standard.
        """
        c = self.challenge(R, public_key, message)
        lhs, rhs = self.group.base_mul(z), R + public_key * c
        if lhs == rhs:
            return True
        diff = lhs - rhs
        for _ in range(3):
            diff = diff + diff
        return diff.is_identity()


class Secp256k1Sha256TR(Secp256k1Sha256):
    """FROST-secp256k1-SHA256-TR-v1: FROST producing BIP-340 Schnorr signatures.

    BIP-340 keys and nonces are x-only with an implicitly even y. The signing
    key is negated when its y is odd (``frost.even_y_key``), each signer negates
    its nonces when the group commitment's y is odd (``frost.sign_share``), and
    the challenge hashes x coordinates with BIP-340's tagged hash.
    """

    name = "frost-taproot"
    context = b"FROST-secp256k1-SHA256-TR-v1"
    signature_len = 64
    bip340 = True

    def H2(self, m: bytes) -> int:
        return int.from_bytes(tagged_hash("BIP0340/challenge", m), "big") % self.group.order

    def challenge(self, R: Point, public_key: Point, message: bytes) -> int:
        assert isinstance(R, Secp256k1Point) and isinstance(public_key, Secp256k1Point)
        return self.H2(R.x_bytes + public_key.x_bytes + message)

    def generate_nonce(self, rng: RandomBytes = secrets.token_bytes) -> tuple[int, Point]:
        k, R = super().generate_nonce(rng)
        assert isinstance(R, Secp256k1Point)
        return (k, R) if R.has_even_y else (self.group.order - k, -R)

    def encode_signature(self, R: Point, z: int) -> bytes:
        assert isinstance(R, Secp256k1Point)
        return R.x_bytes + self.group.encode_scalar(z)

    def decode_signature(self, data: bytes) -> tuple[Point, int]:
        if len(data) != 64:
            raise SignatureError("a BIP-340 signature is 64 bytes")
        try:
            return SECP256K1.lift_x(data[:32]), self.group.decode_scalar(data[32:])
        except GroupError as exc:
            raise SignatureError(f"malformed BIP-340 signature: {exc}") from exc

    def verify(self, public_key: Point, message: bytes, signature: bytes) -> bool:
        """BIP-340 verification by libsecp256k1 against the x-only key."""
        assert isinstance(public_key, Secp256k1Point)
        if len(signature) != 64:
            return False
        return bool(PublicKeyXOnly(public_key.x_bytes).verify(signature, message))

    def verify_parts(self, public_key: Point, message: bytes, R: Point, z: int) -> bool:
        return self.verify(public_key, message, self.encode_signature(R, z))


FROST_SECP256K1 = Secp256k1Sha256()
FROST_ED25519 = Ed25519Sha512()
FROST_TAPROOT = Secp256k1Sha256TR()

SUITES: dict[str, Ciphersuite] = {s.name: s for s in (FROST_SECP256K1, FROST_ED25519, FROST_TAPROOT)}


def suite_by_name(name: str) -> Ciphersuite:
    try:
        return SUITES[name]
    except KeyError:
        raise ValueError(f"unknown FROST scheme {name!r}; known: {', '.join(SUITES)}") from None
