"""Hashing to scalars (RFC 9380) and the project's transcript hash.

``expand_message_xmd`` and ``hash_to_field`` follow RFC 9380 sections 5.2 and
5.3.1; RFC 9591 uses them for the secp256k1 ciphersuite's H1, H2, H3 (section
6.5). ``Transcript`` is how everything else in Harbour binds data into a hash:
every item is labelled and length-prefixed, and the transcript starts with a
domain label, so two different sequences of items can never hash the same
(ambiguous concatenation is how TSSHOCK forged GG20 proofs).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from functools import lru_cache, partial


@lru_cache(maxsize=4)
def _zero_block_state(hash_name: str) -> hashlib._Hash:
    """The hash state after absorbing ``Z_pad`` (one zero block): a constant, computed once."""
    h = hashlib.new(hash_name)
    h.update(bytes(h.block_size))
    return h


@lru_cache(maxsize=16)
def _xmd_parameters(
    dst: bytes, len_in_bytes: int, hash_name: str
) -> tuple[Callable[[bytes], hashlib._Hash], bytes, int, bytes]:
    """The hash constructor, ``DST_prime``, ``ell`` and the bytes that follow ``msg`` in ``b_0``.

    Fixed per suite and output length, so computed once; the constructor is
    ``hashlib.sha256`` itself where it exists, which skips ``hashlib.new``'s
    lookup on every block.
    """
    new: Callable[[bytes], hashlib._Hash] = getattr(hashlib, hash_name, None) or partial(hashlib.new, hash_name)
    b_in_bytes = new(b"").digest_size
    if len(dst) > 255:  # section 5.3.3: oversize DSTs are hashed first
        dst = new(b"H2C-OVERSIZE-DST-" + dst).digest()
    ell = -(-len_in_bytes // b_in_bytes)
    if ell > 255 or len_in_bytes > 65535:
        raise ValueError("expand_message_xmd: requested output is too long")
    dst_prime = dst + bytes([len(dst)])
    return new, dst_prime, ell, len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime


def _xmd_blocks(h0: hashlib._Hash, dst: bytes, len_in_bytes: int, hash_name: str) -> bytes:
    """The rest of section 5.3.1, given the state of ``b_0`` once ``Z_pad ‖ msg`` is absorbed."""
    new, dst_prime, ell, tail = _xmd_parameters(dst, len_in_bytes, hash_name)
    h0.update(tail)
    b0 = h0.digest()
    bi = new(b0 + b"\x01" + dst_prime).digest()
    if ell == 1:
        return bi[:len_in_bytes]
    out = [bi]
    b0_int = int.from_bytes(b0, "big")
    b_in_bytes = len(b0)
    for i in range(2, ell + 1):
        mixed = (b0_int ^ int.from_bytes(bi, "big")).to_bytes(b_in_bytes, "big")
        bi = new(mixed + bytes([i]) + dst_prime).digest()
        out.append(bi)
    return b"".join(out)[:len_in_bytes]


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int, hash_name: str = "sha256") -> bytes:
    """RFC 9380 section 5.3.1, for a Merkle-Damgård hash (SHA-256 or SHA-512)."""
    h0 = _zero_block_state(hash_name).copy()
    h0.update(msg)
    return _xmd_blocks(h0, dst, len_in_bytes, hash_name)


def _field_length(modulus: int, security_bits: int) -> int:
    return -(-(modulus.bit_length() + security_bits) // 8)


def hash_to_field(msg: bytes, dst: bytes, modulus: int, count: int = 1, security_bits: int = 128) -> list[int]:
    """RFC 9380 section 5.2 with expand_message_xmd(SHA-256), for a prime field.

    ``L = ceil((ceil(log2(p)) + k) / 8)`` bytes per element, so the bias of the
    reduction is below ``2^-k``.
    """
    length = _field_length(modulus, security_bits)
    uniform = expand_message_xmd(msg, dst, count * length)
    return [int.from_bytes(uniform[i * length : (i + 1) * length], "big") % modulus for i in range(count)]


def hash_to_field_with_prefix(
    prefix: bytes, dst: bytes, modulus: int, security_bits: int = 128
) -> Callable[[bytes], int]:
    """``m ↦ hash_to_field(prefix ‖ m, dst, modulus)[0]``, absorbing ``Z_pad ‖ prefix`` once.

    FROST's binding factors hash one long common prefix (key, message hash,
    commitment-list hash) with each signer's identifier appended; the result is
    the same as :func:`hash_to_field`'s, only the shared work is not repeated.
    """
    length = _field_length(modulus, security_bits)
    new, dst_prime, ell, tail = _xmd_parameters(dst, length, "sha256")
    state = _zero_block_state("sha256").copy()
    state.update(prefix)
    if ell != 2:
        return lambda suffix: hash_to_field(prefix + suffix, dst, modulus, 1, security_bits)[0]
    first, second = b"\x01" + dst_prime, b"\x02" + dst_prime

    def field_element(suffix: bytes) -> int:
        # Section 5.3.1 with ell = 2, as every 256-bit order with k = 128 needs.
        h0 = state.copy()
        h0.update(suffix + tail)
        b0 = h0.digest()
        b1 = new(b0 + first).digest()
        b2 = new((int.from_bytes(b0, "big") ^ int.from_bytes(b1, "big")).to_bytes(32, "big") + second).digest()
        return int.from_bytes((b1 + b2)[:length], "big") % modulus

    return field_element


def tagged_hash(tag: str, *parts: bytes) -> bytes:
    """BIP-340's ``hash_tag(x) = SHA256(SHA256(tag) || SHA256(tag) || x)``."""
    t = hashlib.sha256(tag.encode()).digest()
    h = hashlib.sha256(t + t)
    for p in parts:
        h.update(p)
    return h.digest()


def _frame(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


class Transcript:
    """A domain-separated, length-prefixed hash of labelled items (SHA-512).

    ``Transcript("harbour/dkg/v1").append("session", sid).append("t", t)`` hashes
    ``frame("harbour-transcript-v1") || frame(domain)`` followed, per item, by
    ``frame(label) || type || frame(value)``, where ``frame(x)`` is ``len(x)`` as a
    u64 big-endian then ``x`` and ``type`` is one byte: ``b`` bytes, ``s`` UTF-8
    string, ``i`` unsigned integer (8-byte big-endian, longer if it must be),
    ``l`` list (an u64 count, then each item framed).
    """

    __slots__ = ("_h",)

    def __init__(self, domain: str) -> None:
        self._h = hashlib.sha512()
        self._h.update(_frame(b"harbour-transcript-v1"))
        self._h.update(_frame(domain.encode()))

    def append(self, label: str, value: bytes | int | str) -> Transcript:
        if isinstance(value, bool):
            raise TypeError("booleans are not transcript values; use 0 or 1")
        if isinstance(value, int):
            if value < 0:
                raise ValueError("transcript integers are unsigned")
            data = value.to_bytes(8, "big") if value < 2**64 else value.to_bytes((value.bit_length() + 7) // 8, "big")
            kind = b"i"
        elif isinstance(value, str):
            data, kind = value.encode(), b"s"
        else:
            data, kind = bytes(value), b"b"
        self._h.update(_frame(label.encode()) + kind + _frame(data))
        return self

    def append_list(self, label: str, values: list[bytes]) -> Transcript:
        self._h.update(_frame(label.encode()) + b"l" + struct.pack(">Q", len(values)))
        for v in values:
            self._h.update(_frame(bytes(v)))
        return self

    def digest(self) -> bytes:
        """The 64-byte digest so far; the transcript can keep growing afterwards."""
        return self._h.copy().digest()

    def challenge(self, modulus: int) -> int:
        """A scalar from the transcript, with bias below 2^-256 (512-bit reduction)."""
        return int.from_bytes(self.digest(), "big") % modulus
