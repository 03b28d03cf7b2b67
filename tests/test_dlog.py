"""Schnorr proofs of knowledge of a discrete logarithm: a valid proof verifies, and
every altered or malformed proof is refused by ``verify`` returning False, never
by an exception (the caller decides whom to blame)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.crypto import dlog
from harbour.crypto.ed25519 import ED25519
from harbour.crypto.group import Group
from harbour.crypto.secp256k1 import SECP256K1
from helpers import BAD_POINTS, ED_SMALL_ORDER, GROUPS, PROTOCOL_BAD_POINTS, SECP_BAD_POINTS, encode_scalar_raw

CONTEXT = b"harbour/test/dlog/session-1"
SECRET = 0x1D2C3B4A5968778695A4B3C2D1E0F
group_ids = [g.name for g in GROUPS]
BAD_COMMITMENTS = [
    *((SECP256K1, name) for name in PROTOCOL_BAD_POINTS["secp256k1"]),
    *((ED25519, name) for name in PROTOCOL_BAD_POINTS["ed25519"]),
]


def split(group: Group, proof: bytes) -> tuple[bytes, bytes]:
    return proof[: group.point_len], proof[group.point_len :]


@pytest.fixture(params=GROUPS, ids=group_ids)
def group(request: pytest.FixtureRequest) -> Group:
    g: Group = request.param
    return g


@pytest.fixture
def proof(group: Group) -> bytes:
    return dlog.prove(group, SECRET, CONTEXT)


def test_valid_proof_verifies(group: Group, proof: bytes) -> None:
    assert len(proof) == dlog.proof_length(group) == group.point_len + group.scalar_len
    assert dlog.verify(group, group.base_mul(SECRET), proof, CONTEXT) is True


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(GROUPS), st.integers(min_value=1), st.binary(max_size=64))
def test_proofs_verify_for_any_secret_and_context(group: Group, secret: int, context: bytes) -> None:
    secret %= group.order
    if secret == 0:
        secret = 1
    assert dlog.verify(group, group.base_mul(secret), dlog.prove(group, secret, context), context) is True


def test_two_proofs_of_one_secret_differ(group: Group, proof: bytes) -> None:
    # A fresh nonce each time: a repeated nonce would reveal the secret.
    assert dlog.prove(group, SECRET, CONTEXT) != proof


# -- wrong statement or context ------------------------------------------------------------


def test_wrong_statement_is_rejected(group: Group, proof: bytes) -> None:
    assert dlog.verify(group, group.base_mul(SECRET + 1), proof, CONTEXT) is False


def test_negated_statement_is_rejected(group: Group, proof: bytes) -> None:
    assert dlog.verify(group, -group.base_mul(SECRET), proof, CONTEXT) is False


def test_wrong_context_is_rejected(group: Group, proof: bytes) -> None:
    assert dlog.verify(group, group.base_mul(SECRET), proof, CONTEXT + b"x") is False


def test_empty_context_is_not_the_proof_context(group: Group, proof: bytes) -> None:
    assert dlog.verify(group, group.base_mul(SECRET), proof, b"") is False


# -- tampered commitment or response ---------------------------------------------------------


def test_commitment_replaced_by_another_valid_point_is_rejected(group: Group, proof: bytes) -> None:
    commitment, response = split(group, proof)
    other = (group.decode_point(commitment) + group.generator()).encode()
    assert dlog.verify(group, group.base_mul(SECRET), other + response, CONTEXT) is False


@pytest.mark.parametrize("index", [0, 1, 16, -1])
def test_commitment_with_a_flipped_byte_is_rejected(group: Group, proof: bytes, index: int) -> None:
    commitment, response = split(group, proof)
    tampered = bytearray(commitment)
    tampered[index] ^= 0x01
    assert dlog.verify(group, group.base_mul(SECRET), bytes(tampered) + response, CONTEXT) is False


@pytest.mark.parametrize("delta", [1, -1])
def test_response_off_by_one_is_rejected(group: Group, proof: bytes, delta: int) -> None:
    commitment, response = split(group, proof)
    z = group.decode_scalar(response)
    tampered = group.encode_scalar((z + delta) % group.order)
    assert dlog.verify(group, group.base_mul(SECRET), commitment + tampered, CONTEXT) is False


def test_response_zero_is_rejected(group: Group, proof: bytes) -> None:
    commitment, _ = split(group, proof)
    assert dlog.verify(group, group.base_mul(SECRET), commitment + bytes(group.scalar_len), CONTEXT) is False


def test_commitment_and_response_from_two_proofs_do_not_combine(group: Group, proof: bytes) -> None:
    commitment, _ = split(group, proof)
    _, response = split(group, dlog.prove(group, SECRET, CONTEXT))
    assert dlog.verify(group, group.base_mul(SECRET), commitment + response, CONTEXT) is False


# -- out-of-range response -------------------------------------------------------------------


def test_response_equal_to_the_order_is_rejected(group: Group, proof: bytes) -> None:
    commitment, _ = split(group, proof)
    raw = encode_scalar_raw(group, group.order)
    assert dlog.verify(group, group.base_mul(SECRET), commitment + raw, CONTEXT) is False


def test_response_all_ones_is_rejected(group: Group, proof: bytes) -> None:
    commitment, _ = split(group, proof)
    assert dlog.verify(group, group.base_mul(SECRET), commitment + b"\xff" * group.scalar_len, CONTEXT) is False


def test_response_plus_order_alias_is_rejected() -> None:
    # z + L still fits Ed25519's 32 bytes and would verify if the response were reduced.
    proof = dlog.prove(ED25519, SECRET, CONTEXT)
    commitment, response = split(ED25519, proof)
    alias = encode_scalar_raw(ED25519, ED25519.decode_scalar(response) + ED25519.order)
    assert alias != response
    assert dlog.verify(ED25519, ED25519.base_mul(SECRET), commitment + alias, CONTEXT) is False


# -- malformed points in the commitment ------------------------------------------------------


@pytest.mark.parametrize(("g", "name"), BAD_COMMITMENTS, ids=[f"{g.name}-{n}" for g, n in BAD_COMMITMENTS])
def test_invalid_commitment_point_is_rejected(g: Group, name: str) -> None:
    proof = dlog.prove(g, SECRET, CONTEXT)
    _, response = split(g, proof)
    raw = BAD_POINTS[g.name][name]
    # Keep the total length right, so it is the point check that refuses.
    raw = (raw + bytes(g.point_len))[: g.point_len]
    assert dlog.verify(g, g.base_mul(SECRET), raw + response, CONTEXT) is False


def test_secp256k1_identity_commitment_is_rejected() -> None:
    proof = dlog.prove(SECP256K1, SECRET, CONTEXT)
    _, response = split(SECP256K1, proof)
    identity = SECP_BAD_POINTS["identity-zero-prefix"]
    assert len(identity) == SECP256K1.point_len
    assert dlog.verify(SECP256K1, SECP256K1.base_mul(SECRET), identity + response, CONTEXT) is False


@pytest.mark.parametrize("name", list(ED_SMALL_ORDER))
def test_ed25519_small_order_commitment_is_rejected(name: str) -> None:
    proof = dlog.prove(ED25519, SECRET, CONTEXT)
    _, response = split(ED25519, proof)
    assert dlog.verify(ED25519, ED25519.base_mul(SECRET), ED_SMALL_ORDER[name] + response, CONTEXT) is False


# -- wrong lengths ---------------------------------------------------------------------------


@pytest.mark.parametrize("cut", ["empty", "commitment-only", "one-short", "one-long", "doubled"])
def test_wrong_length_is_rejected(group: Group, proof: bytes, cut: str) -> None:
    variants = {
        "empty": b"",
        "commitment-only": proof[: group.point_len],
        "one-short": proof[:-1],
        "one-long": proof + b"\x00",
        "doubled": proof + proof,
    }
    assert dlog.verify(group, group.base_mul(SECRET), variants[cut], CONTEXT) is False


def test_proof_for_one_group_is_rejected_by_the_other() -> None:
    secp_proof = dlog.prove(SECP256K1, SECRET, CONTEXT)
    ed_proof = dlog.prove(ED25519, SECRET, CONTEXT)
    assert dlog.verify(ED25519, ED25519.base_mul(SECRET), secp_proof, CONTEXT) is False
    assert dlog.verify(SECP256K1, SECP256K1.base_mul(SECRET), ed_proof, CONTEXT) is False


def test_identity_statement_is_rejected_not_raised(group: Group, proof: bytes) -> None:
    """No one knows the discrete log of nothing: the identity is refused, without an exception."""
    assert dlog.verify(group, group.identity(), proof, CONTEXT) is False
