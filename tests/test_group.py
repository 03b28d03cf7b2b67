"""The validation gates where untrusted bytes become group elements and scalars,
and the arithmetic every protocol relies on (secp256k1 and Ed25519)."""

from __future__ import annotations

import nacl.bindings as sodium
import pytest
from coincurve import PrivateKey

from harbour.crypto.ed25519 import ED25519, L
from harbour.crypto.group import Group, GroupError
from harbour.crypto.secp256k1 import SECP256K1, N
from harbour.crypto.secp256k1 import P as SECP_P
from helpers import (
    ED_BAD_POINTS,
    ED_IDENTITY,
    ED_P,
    ED_SMALL_ORDER,
    GROUPS,
    SECP_BAD_POINTS,
    encode_scalar_raw,
)

group_ids = [g.name for g in GROUPS]


# -- decode_point: secp256k1 -------------------------------------------------------------


@pytest.mark.parametrize("name", list(SECP_BAD_POINTS))
def test_secp256k1_decode_point_rejects(name: str) -> None:
    with pytest.raises(GroupError):
        SECP256K1.decode_point(SECP_BAD_POINTS[name])


def test_secp256k1_non_canonical_x_is_rejected_although_its_canonical_form_is_a_point() -> None:
    canonical = b"\x02" + (1).to_bytes(32, "big")
    assert SECP256K1.decode_point(canonical).encode() == canonical
    with pytest.raises(GroupError, match="non-canonical"):
        SECP256K1.decode_point(b"\x02" + (1 + SECP_P).to_bytes(32, "big"))


def test_secp256k1_off_curve_x_really_has_no_y() -> None:
    x = int.from_bytes(SECP_BAD_POINTS["off-curve-x"][1:], "big")
    assert pow((x**3 + 7) % SECP_P, (SECP_P - 1) // 2, SECP_P) == SECP_P - 1


def test_secp256k1_uncompressed_encoding_of_a_valid_point_is_rejected() -> None:
    key = PrivateKey()
    assert SECP256K1.decode_point(key.public_key.format(compressed=True))
    with pytest.raises(GroupError):
        SECP256K1.decode_point(key.public_key.format(compressed=False))


def test_secp256k1_lift_x_rejects_wrong_length_and_off_curve() -> None:
    with pytest.raises(GroupError):
        SECP256K1.lift_x(b"\x01" * 33)
    with pytest.raises(GroupError):
        SECP256K1.lift_x(SECP_BAD_POINTS["off-curve-x"][1:])


# -- decode_point: Ed25519 ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(ED_BAD_POINTS))
def test_ed25519_decode_point_rejects(name: str) -> None:
    with pytest.raises(GroupError):
        ED25519.decode_point(ED_BAD_POINTS[name])


@pytest.mark.parametrize("name", list(ED_SMALL_ORDER))
def test_ed25519_small_order_catalogue_really_is_small_order(name: str) -> None:
    # Checked with libsodium's unrestricted addition: 8·T is the identity.
    point = ED_SMALL_ORDER[name]
    acc = point
    for _ in range(7):
        acc = sodium.crypto_core_ed25519_add(acc, point)
    assert acc == ED_IDENTITY


def test_ed25519_point_with_torsion_component_is_rejected_but_its_prime_order_part_is_not() -> None:
    g = ED25519.generator().encode()
    for name, t in ED_SMALL_ORDER.items():
        if name == "order-1-identity":
            continue
        tainted = sodium.crypto_core_ed25519_add(g, t)
        assert tainted != g
        with pytest.raises(GroupError):
            ED25519.decode_point(tainted)
    assert ED25519.decode_point(g) == ED25519.generator()


def test_ed25519_rejects_every_non_canonical_y() -> None:
    # y in [p, 2^255) with either sign of x: 19 values, 38 encodings.
    for y in range(ED_P, 2**255):
        for sign in (0, 1):
            data = (y | sign << 255).to_bytes(32, "little")
            with pytest.raises(GroupError):
                ED25519.decode_point(data)


def test_ed25519_off_curve_y_really_has_no_x() -> None:
    y = int.from_bytes(ED_BAD_POINTS["off-curve-y"], "little")
    d = -121665 * pow(121666, -1, ED_P) % ED_P
    x2 = (y * y - 1) * pow(d * y * y + 1, -1, ED_P) % ED_P
    assert pow(x2, (ED_P - 1) // 2, ED_P) == ED_P - 1


# -- decode_scalar -----------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
@pytest.mark.parametrize("offset", [0, 1, 2**64], ids=["order", "order+1", "order+2^64"])
def test_decode_scalar_rejects_values_not_below_the_order(group: Group, offset: int) -> None:
    with pytest.raises(GroupError, match="out of range"):
        group.decode_scalar(encode_scalar_raw(group, group.order + offset))


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_decode_scalar_rejects_all_ones(group: Group) -> None:
    with pytest.raises(GroupError):
        group.decode_scalar(b"\xff" * 32)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_decode_scalar_rejects_wrong_length(group: Group, length: int) -> None:
    with pytest.raises(GroupError):
        group.decode_scalar(b"\x01" * length)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_decode_scalar_accepts_the_whole_range(group: Group) -> None:
    for k in (0, 1, group.order - 1):
        assert group.decode_scalar(group.encode_scalar(k)) == k


def test_scalar_byte_orders_follow_the_rfc() -> None:
    assert SECP256K1.encode_scalar(1) == b"\x00" * 31 + b"\x01"
    assert ED25519.encode_scalar(1) == b"\x01" + b"\x00" * 31
    assert SECP256K1.encode_scalar(N) == bytes(32)
    assert ED25519.encode_scalar(L + 5) == ED25519.encode_scalar(5)


# -- arithmetic --------------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_point_plus_its_negation_is_the_identity(group: Group) -> None:
    p = group.base_mul(group.random_scalar())
    assert (p + (-p)).is_identity()
    assert (p - p).is_identity()
    assert group.decode_point((-p).encode()) == -p


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_negation_matches_multiplication_by_minus_one(group: Group) -> None:
    k = group.random_scalar()
    assert -group.base_mul(k) == group.base_mul(group.order - k)
    assert -group.base_mul(k) == group.base_mul(k) * (group.order - 1)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_scalar_multiplication_agrees_with_base_mul(group: Group) -> None:
    a, b = group.random_scalar(), group.random_scalar()
    assert group.base_mul(a) * b == group.base_mul(a * b)
    assert b * group.base_mul(a) == group.base_mul(a * b % group.order)
    assert group.generator() * a == group.base_mul(a)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_addition_is_the_homomorphic_image_of_scalar_addition(group: Group) -> None:
    a, b = group.random_scalar(), group.random_scalar()
    assert group.base_mul(a) + group.base_mul(b) == group.base_mul(a + b)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_sum_of_many_points(group: Group) -> None:
    scalars = [group.random_scalar() for _ in range(25)]
    points = [group.base_mul(k) for k in scalars]
    assert group.sum(points) == group.base_mul(sum(scalars))
    acc = group.identity()
    for p in points:
        acc = acc + p
    assert group.sum(points) == acc


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_sum_that_cancels_is_the_identity(group: Group) -> None:
    p, q = group.base_mul(group.random_scalar()), group.base_mul(group.random_scalar())
    assert group.sum([p, q, -p, -q]).is_identity()
    assert group.sum([]).is_identity()
    assert group.sum([group.identity(), p]) == p


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_identity_behaves_as_zero(group: Group) -> None:
    o = group.identity()
    p = group.base_mul(7)
    assert o.is_identity()
    assert o + p == p and p + o == p
    assert (-o).is_identity()
    assert (o * 5).is_identity()
    assert (p * 0).is_identity()
    assert (p * group.order).is_identity()
    assert group.base_mul(0).is_identity()
    assert group.base_mul(group.order).is_identity()
    assert o != p and o == group.identity()


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_identity_has_no_encoding(group: Group) -> None:
    with pytest.raises(GroupError):
        group.identity().encode()
    with pytest.raises(GroupError):
        (group.base_mul(3) - group.base_mul(3)).encode()


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_encoding_round_trips_and_is_canonical(group: Group) -> None:
    p = group.base_mul(group.random_scalar())
    data = p.encode()
    assert len(data) == group.point_len
    q = group.decode_point(data)
    assert q == p and hash(q) == hash(p) and q.encode() == data


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_random_scalar_is_nonzero_and_in_range(group: Group) -> None:
    # An rng that first yields zero and then the order itself must be skipped past.
    chunks = iter([bytes(32), group.order.to_bytes(32, "big"), (5).to_bytes(32, "big")])
    assert group.random_scalar(lambda n: next(chunks)) == 5


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_inverse_of_zero_raises(group: Group) -> None:
    assert group.inverse(3) * 3 % group.order == 1
    with pytest.raises(ZeroDivisionError):
        group.inverse(group.order)


def test_points_of_different_groups_are_never_equal() -> None:
    assert SECP256K1.generator() != ED25519.generator()
