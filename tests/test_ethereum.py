"""Ethereum addresses: Keccak-256, EIP-55 checksums, and key-to-address derivation,
against the EIP-55 vectors and eth-account / eth-utils as independent references."""

from __future__ import annotations

import hashlib

import pytest
from eth_account import Account
from eth_utils.address import to_checksum_address
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.chains.ethereum import address_from_public_key, checksum_address, keccak256
from harbour.crypto.ecdsa import recover, sign_with_key
from harbour.crypto.group import GroupError
from harbour.crypto.secp256k1 import SECP256K1, N, Secp256k1Point

# EIP-55's own test cases: all-caps, all-lower and mixed addresses.
EIP55_VECTORS = [
    "0x52908400098527886E0F7030069857D2E4169EE7",
    "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
    "0xde709f2102306220921060314715629080e2fb77",
    "0x27b1fdb04752bbc536007a920d24acb045561c26",
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]

# The private key / address pair from the Web3 Secret Storage definition and web3.js docs.
KNOWN_KEY = 0x4C0883A69102937D6231471B5DBB6204FE5129617082792AE468D01A3F362318
KNOWN_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


def point(k: int) -> Secp256k1Point:
    p = SECP256K1.base_mul(k)
    assert isinstance(p, Secp256k1Point)
    return p


def test_keccak256_is_keccak_not_sha3() -> None:
    empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert keccak256(b"").hex() == empty
    assert keccak256(b"").hex() != hashlib.sha3_256(b"").hexdigest()
    assert keccak256(b"abc").hex() == "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_eip55_vectors(address: str) -> None:
    assert checksum_address(bytes.fromhex(address[2:])) == address


@pytest.mark.parametrize("length", [0, 19, 21, 32])
def test_checksum_address_rejects_wrong_length(length: int) -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        checksum_address(b"\x01" * length)


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=20, max_size=20))
def test_checksum_address_matches_eth_utils(raw: bytes) -> None:
    assert checksum_address(raw) == to_checksum_address(raw)


def test_known_private_key_gives_known_address() -> None:
    assert address_from_public_key(point(KNOWN_KEY)) == KNOWN_ADDRESS


@settings(max_examples=25, deadline=None)
@given(st.integers(min_value=1, max_value=N - 1))
def test_address_matches_eth_account(d: int) -> None:
    assert address_from_public_key(point(d)) == Account.from_key(d.to_bytes(32, "big")).address


@settings(max_examples=10, deadline=None)
@given(st.integers(min_value=1, max_value=N - 1), st.binary(min_size=32, max_size=32))
def test_eth_account_recovers_our_signatures_to_our_address(d: int, digest: bytes) -> None:
    sig = sign_with_key(d, digest)
    assert Account._recover_hash(digest, vrs=(sig.v, sig.r, sig.s)) == address_from_public_key(point(d))
    assert address_from_public_key(recover(digest, sig)) == address_from_public_key(point(d))


def test_identity_has_no_address() -> None:
    with pytest.raises(GroupError):
        address_from_public_key(Secp256k1Point(None))
