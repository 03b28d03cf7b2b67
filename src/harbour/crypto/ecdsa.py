"""Plain ECDSA over secp256k1 (SEC1 section 4.1), the signature threshold ECDSA produces.

A threshold-ECDSA run ends with the nonce point ``R`` and a share-sum ``s``; this module
turns them into the signature Bitcoin and Ethereum accept (low-s, with a recovery id)
and checks it. Every check and recovery goes through libsecp256k1 via coincurve's cffi
bindings: no curve arithmetic happens in Python.

The caller hashes. Every function takes a 32-byte digest (Keccak-256 for Ethereum,
double SHA-256 for Bitcoin), because the hash is part of the chain's rules, not of ECDSA.

Low-s (BIP-62, EIP-2): ``(r, s)`` and ``(r, n - s)`` are both valid ECDSA signatures of
the same message, so a third party could change a transaction's id by flipping ``s``.
Both chains therefore accept only ``s <= n/2``; :func:`finalize_signature` normalises and
:func:`verify` (libsecp256k1's ``ecdsa_verify``) rejects anything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from coincurve._libsecp256k1 import ffi, lib
from coincurve.context import GLOBAL_CONTEXT

from harbour.crypto.secp256k1 import N, Secp256k1Point

ORDER = N
"""The order ``n`` of secp256k1's group: ``r`` and ``s`` live in ``[1, n - 1]``."""

HALF_ORDER = N // 2
"""The largest low ``s``: a normalised signature has ``s <= HALF_ORDER``."""

DIGEST_LEN = 32

_CTX = GLOBAL_CONTEXT.ctx
_COMPRESSED = lib.SECP256K1_EC_COMPRESSED


def _check_digest(digest: bytes) -> bytes:
    # A digest of the wrong length means the caller hashed with the wrong function or
    # passed the message itself; truncating or padding would sign something else.
    if not isinstance(digest, bytes | bytearray) or len(digest) != DIGEST_LEN:
        raise ValueError(f"an ECDSA digest is exactly {DIGEST_LEN} bytes (the caller hashes the message)")
    return bytes(digest)


def digest_to_int(digest: bytes) -> int:
    """SEC1 / RFC 6979 ``bits2int`` for a 256-bit order: the digest as a big-endian int.

    It is not reduced: ``e`` may exceed ``n`` and the signing equation reduces it, so
    callers compute ``e % ORDER`` where they need the scalar.
    """
    return int.from_bytes(_check_digest(digest), "big")


@dataclass(frozen=True)
class EcdsaSignature:
    """An ECDSA signature ``(r, s)`` with the recovery id that names its nonce point.

    Only the shape is enforced here (256-bit ``r`` and ``s``, a recovery id in 0..3) so
    a signature received from outside can be represented and then rejected by
    :func:`verify`; range and low-s are the verifier's job.

    The recovery id: bit 0 is the parity of ``R.y``, bit 1 says ``R.x >= n`` (so that
    ``r = R.x - n``). Ethereum needs it because a transaction carries no public key.
    """

    r: int
    s: int
    recovery_id: int

    def __post_init__(self) -> None:
        for name, value in (("r", self.r), ("s", self.s)):
            if not isinstance(value, int) or not 0 <= value < 2**256:
                raise ValueError(f"ECDSA {name} must be an integer that fits in 32 bytes")
        if not isinstance(self.recovery_id, int) or not 0 <= self.recovery_id <= 3:
            raise ValueError(f"ECDSA recovery id must be 0, 1, 2 or 3, not {self.recovery_id!r}")

    def to_bytes(self) -> bytes:
        """The 64-byte compact form ``r || s`` (each 32 bytes, big-endian)."""
        return self.r.to_bytes(32, "big") + self.s.to_bytes(32, "big")

    @classmethod
    def from_bytes(cls, data: bytes, recovery_id: int) -> EcdsaSignature:
        """Parse the 64-byte compact form; the recovery id travels separately (as ``v``)."""
        if len(data) != 64:
            raise ValueError(f"a compact ECDSA signature is 64 bytes (r || s), got {len(data)}")
        return cls(int.from_bytes(data[:32], "big"), int.from_bytes(data[32:], "big"), recovery_id)

    @property
    def v(self) -> int:
        """Ethereum's legacy ``v`` (27 or 28), as in ``personal_sign`` and pre-EIP-155 txs.

        Recovery ids 2 and 3 (``R.x >= n``, probability about 2**-127) have no legacy
        ``v``: Ethereum cannot recover from them, so this refuses rather than emit a
        signature every node would reject.
        """
        if self.recovery_id > 1:
            raise ValueError("recovery id 2 or 3 (R.x >= n) has no Ethereum v; sign again with a fresh nonce")
        return 27 + self.recovery_id


def finalize_signature(R: Secp256k1Point, r: int, s: int) -> EcdsaSignature:
    """The low-s signature and recovery id for nonce point ``R`` and a raw ``s``.

    Threshold parties sum their shares of ``s`` without knowing which of ``s`` and
    ``n - s`` the chain wants; negating ``s`` corresponds to negating ``R`` (the same
    ``r``, the other ``y``), hence the flipped parity bit. ``r`` must be ``R.x mod n``:
    a mismatch means the caller combined the wrong nonce and would produce a signature
    that cannot verify.
    """
    if R.is_identity():
        raise ValueError("the nonce point R is the identity")
    if not 0 < r < ORDER:
        raise ValueError("ECDSA r must be in [1, n - 1]")
    if not 0 < s < ORDER:
        raise ValueError("ECDSA s must be in [1, n - 1] (reduce it mod n; zero is invalid)")
    enc = R.encode()
    x = int.from_bytes(enc[1:], "big")
    if x % ORDER != r:
        raise ValueError("r is not the x coordinate of R reduced mod n")
    recovery_id = (enc[0] & 1) | (2 if x >= ORDER else 0)
    if s > HALF_ORDER:
        s = ORDER - s
        recovery_id ^= 1
    return EcdsaSignature(r, s, recovery_id)


def _raw_pubkey(point: Secp256k1Point) -> Any:
    raw = ffi.new("secp256k1_pubkey *")
    enc = point.encode()
    if not lib.secp256k1_ec_pubkey_parse(_CTX, raw, enc, len(enc)):  # pragma: no cover - encode() is canonical
        raise ValueError("not a secp256k1 public key")
    return raw


def verify(public_key: Secp256k1Point, digest: bytes, sig: EcdsaSignature) -> bool:
    """Whether ``sig`` is a valid low-s ECDSA signature of ``digest`` under ``public_key``.

    Bad signatures (zero or out-of-range ``r``/``s``, high ``s``, wrong key or digest)
    give False rather than an exception, so callers cannot forget to catch one. The
    recovery id is not consulted: it is a hint for recovery, not part of validity.
    A digest of the wrong length is a programming error and raises ValueError.
    """
    msg = _check_digest(digest)
    if public_key.is_identity():
        return False
    parsed = ffi.new("secp256k1_ecdsa_signature *")
    if not lib.secp256k1_ecdsa_signature_parse_compact(_CTX, parsed, sig.to_bytes()):
        return False  # r or s not below n
    return bool(lib.secp256k1_ecdsa_verify(_CTX, parsed, msg, _raw_pubkey(public_key)))


def recover(digest: bytes, sig: EcdsaSignature) -> Secp256k1Point:
    """The public key that makes ``sig`` valid for ``digest`` (Ethereum's ``ecrecover``).

    Like ``ecrecover``, this accepts a high ``s``; anything that must be canonical should
    also pass :func:`verify`. Raises ValueError when no key exists (r or s zero or not
    below n, or no point with the encoded x).
    """
    msg = _check_digest(digest)
    parsed = ffi.new("secp256k1_ecdsa_recoverable_signature *")
    if not lib.secp256k1_ecdsa_recoverable_signature_parse_compact(_CTX, parsed, sig.to_bytes(), sig.recovery_id):
        raise ValueError("ECDSA r or s is not below the group order")
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ecdsa_recover(_CTX, out, parsed, msg):
        raise ValueError("no public key recovers from this signature and digest")
    return Secp256k1Point(out)


def sign_with_key(private_key: int, digest: bytes) -> EcdsaSignature:
    """Single-key ECDSA with an RFC 6979 deterministic nonce, low-s, with recovery id.

    Harbour's keys are never whole; this exists to cross-check threshold signatures in
    tests and in key-recovery tooling, where a reconstructed key must sign exactly as
    the group would.
    """
    msg = _check_digest(digest)
    if not isinstance(private_key, int) or not 0 < private_key < ORDER:
        raise ValueError("an ECDSA private key is an integer in [1, n - 1]")
    rsig = ffi.new("secp256k1_ecdsa_recoverable_signature *")
    # NULL nonce function and data: libsecp256k1's default, RFC 6979 with HMAC-SHA256.
    if not lib.secp256k1_ecdsa_sign_recoverable(_CTX, rsig, msg, private_key.to_bytes(32, "big"), ffi.NULL, ffi.NULL):
        raise ValueError("libsecp256k1 refused to sign")  # pragma: no cover - key range checked above
    buf = ffi.new("unsigned char[64]")
    recid = ffi.new("int *")
    lib.secp256k1_ecdsa_recoverable_signature_serialize_compact(_CTX, buf, recid, rsig)
    return EcdsaSignature.from_bytes(bytes(ffi.buffer(buf, 64)), recid[0])
