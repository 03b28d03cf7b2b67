"""Ethereum addresses from secp256k1 public keys (Yellow Paper appendix F, EIP-55).

An account is named by the last 20 bytes of Keccak-256 over the uncompressed public
key without its 0x04 prefix. Keccak-256 is the original Keccak submission, not
NIST's SHA3-256 (which pads differently and gives other digests), so it comes from
pycryptodome's ``Crypto.Hash.keccak`` rather than ``hashlib``.
"""

from __future__ import annotations

from Crypto.Hash import keccak

from harbour.crypto.secp256k1 import Secp256k1Point

ADDRESS_LEN = 20


def keccak256(data: bytes) -> bytes:
    """Ethereum's hash: Keccak-256 (pre-standard padding), 32 bytes."""
    return bytes(keccak.new(data=bytes(data), digest_bits=256).digest())


def checksum_address(raw20: bytes) -> str:
    """The EIP-55 mixed-case ``0x`` form of a 20-byte address.

    The case of each hex letter carries a bit of the address's Keccak hash, so a
    mistyped address fails the check in wallets instead of sending funds to nobody.
    """
    if len(raw20) != ADDRESS_LEN:
        raise ValueError(f"an Ethereum address is {ADDRESS_LEN} bytes, got {len(raw20)}")
    lower = bytes(raw20).hex()
    nibbles = keccak256(lower.encode("ascii")).hex()
    return "0x" + "".join(c.upper() if int(h, 16) >= 8 else c for c, h in zip(lower, nibbles, strict=False))


def address_from_public_key(point: Secp256k1Point) -> str:
    """The EIP-55 checksummed address of the account ``point`` controls.

    Raises GroupError for the identity, which is no one's public key.
    """
    uncompressed = point.public_key.format(compressed=False)  # 0x04 || X || Y
    return checksum_address(keccak256(uncompressed[1:])[-ADDRESS_LEN:])
