"""Shamir sharing with Feldman commitments: parameters, identifiers, interpolation."""

from __future__ import annotations

import itertools

import pytest

from harbour.crypto.group import Group
from harbour.crypto.shamir import (
    MAX_PARTIES,
    SharingError,
    batch_inverse,
    check_identifiers,
    check_parameters,
    commitment_at,
    evaluate,
    interpolate_at_zero,
    lagrange_coefficient,
    lagrange_coefficients,
    trusted_dealer_keygen,
    verify_share,
)
from helpers import GROUPS

group_ids = [g.name for g in GROUPS]


# -- parameters and identifiers ------------------------------------------------------------


@pytest.mark.parametrize(
    ("t", "n"),
    [(0, 3), (4, 3), (-1, 3), (1, 0), (2, MAX_PARTIES + 1), (MAX_PARTIES + 1, MAX_PARTIES + 1)],
    ids=["t=0", "t>n", "t<0", "n=0", "n>255", "t=n=256"],
)
def test_check_parameters_rejects(t: int, n: int) -> None:
    with pytest.raises(SharingError):
        check_parameters(t, n)


@pytest.mark.parametrize(("t", "n"), [(1, 1), (2, 3), (MAX_PARTIES, MAX_PARTIES)])
def test_check_parameters_accepts(t: int, n: int) -> None:
    check_parameters(t, n)


@pytest.mark.parametrize(
    "ids",
    [[0, 1, 2], [1, 256], [1, 2, 2], [True, 2], [1, False], [1.0, 2], ["1", 2], [-1, 1], [None]],
    ids=["zero", "256", "duplicate", "bool-true", "bool-false", "float", "str", "negative", "none"],
)
def test_check_identifiers_rejects(ids: list[object]) -> None:
    with pytest.raises(SharingError):
        check_identifiers(ids)  # type: ignore[arg-type]


def test_check_identifiers_rejects_identifier_above_n() -> None:
    assert check_identifiers([1, 3], n=3) == [1, 3]
    with pytest.raises(SharingError):
        check_identifiers([1, 4], n=3)


def test_check_identifiers_accepts_the_full_range() -> None:
    assert check_identifiers(range(1, 256)) == list(range(1, 256))


# -- Lagrange ----------------------------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_lagrange_rejects_duplicate_identifiers(group: Group) -> None:
    with pytest.raises(SharingError, match="duplicate"):
        lagrange_coefficient([1, 2, 2], 1, group.order)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_lagrange_rejects_identifier_not_among_participants(group: Group) -> None:
    with pytest.raises(SharingError, match="not among"):
        lagrange_coefficient([1, 2, 3], 4, group.order)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_lagrange_coefficients_sum_to_one(group: Group) -> None:
    ids = [2, 5, 7, 11]
    assert sum(lagrange_coefficient(ids, i, group.order) for i in ids) % group.order == 1


# -- dealing and reconstruction ---------------------------------------------------------------


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_trusted_dealer_shares_interpolate_to_the_secret(group: Group) -> None:
    secret = group.random_scalar()
    dealt = trusted_dealer_keygen(group, secret, 3, 5)
    assert dealt.group_public_key == group.base_mul(secret)
    for subset in itertools.combinations(range(1, 6), 3):
        assert interpolate_at_zero({i: dealt.shares[i] for i in subset}, group.order) == secret
    assert interpolate_at_zero(dealt.shares, group.order) == secret


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_fewer_than_t_shares_do_not_reveal_the_secret(group: Group) -> None:
    secret = group.random_scalar()
    dealt = trusted_dealer_keygen(group, secret, 3, 5)
    for subset in itertools.combinations(range(1, 6), 2):
        assert interpolate_at_zero({i: dealt.shares[i] for i in subset}, group.order) != secret


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_dealt_verification_shares_match_commitments(group: Group) -> None:
    dealt = trusted_dealer_keygen(group, group.random_scalar(), 2, 4)
    assert len(dealt.commitments) == 2
    for i, share in dealt.shares.items():
        assert dealt.verification_shares[i] == group.base_mul(share)
        assert commitment_at(group, dealt.commitments, i) == dealt.verification_shares[i]
        assert verify_share(group, dealt.commitments, i, share)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_verify_share_rejects_a_tampered_share(group: Group) -> None:
    dealt = trusted_dealer_keygen(group, group.random_scalar(), 3, 4)
    assert not verify_share(group, dealt.commitments, 2, (dealt.shares[2] + 1) % group.order)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_verify_share_rejects_a_share_for_another_identifier(group: Group) -> None:
    dealt = trusted_dealer_keygen(group, group.random_scalar(), 3, 4)
    assert not verify_share(group, dealt.commitments, 2, dealt.shares[3])


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_verify_share_rejects_tampered_commitments(group: Group) -> None:
    dealt = trusted_dealer_keygen(group, group.random_scalar(), 3, 4)
    forged = [dealt.commitments[0], dealt.commitments[1] + group.generator(), dealt.commitments[2]]
    assert not verify_share(group, forged, 2, dealt.shares[2])


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_trusted_dealer_with_known_coefficients_is_deterministic(group: Group) -> None:
    dealt = trusted_dealer_keygen(group, 5, 3, 4, coefficients=[7, 11])
    assert dealt.shares == {i: evaluate([5, 7, 11], i, group.order) for i in range(1, 5)}
    assert dealt.shares[1] == 23


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
@pytest.mark.parametrize("secret_offset", [0, 1], ids=["order", "order+1"])
def test_trusted_dealer_rejects_secret_not_a_nonzero_scalar(group: Group, secret_offset: int) -> None:
    with pytest.raises(SharingError):
        trusted_dealer_keygen(group, group.order + secret_offset, 2, 3)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_trusted_dealer_rejects_zero_secret(group: Group) -> None:
    with pytest.raises(SharingError):
        trusted_dealer_keygen(group, 0, 2, 3)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
@pytest.mark.parametrize("coefficients", [[], [1, 2]], ids=["too-few", "too-many"])
def test_trusted_dealer_rejects_wrong_number_of_coefficients(group: Group, coefficients: list[int]) -> None:
    with pytest.raises(SharingError):
        trusted_dealer_keygen(group, 5, 2, 3, coefficients=coefficients)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
@pytest.mark.parametrize(("t", "n"), [(0, 3), (4, 3), (2, 256)], ids=["t=0", "t>n", "n>255"])
def test_trusted_dealer_rejects_bad_parameters(group: Group, t: int, n: int) -> None:
    with pytest.raises(SharingError):
        trusted_dealer_keygen(group, 5, t, n)


def test_evaluate_is_horner() -> None:
    assert evaluate([3, 2, 1], 10, 1000) == 123
    assert evaluate([3, 2, 1], 10, 100) == 23


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_batch_inverse_matches_one_inversion_each(group: Group) -> None:
    values = [1, 2, 3, group.order - 1, 12345678901234567890]
    assert batch_inverse(values, group.order) == [pow(v, -1, group.order) for v in values]
    assert batch_inverse([], group.order) == []


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_batch_inverse_refuses_zero(group: Group) -> None:
    with pytest.raises(ZeroDivisionError):
        batch_inverse([3, group.order, 5], group.order)


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
@pytest.mark.parametrize("ids", [[1], [1, 3], [2, 5, 7, 11], list(range(1, 21)), [255, 1, 128]])
def test_lagrange_coefficients_match_one_at_a_time(group: Group, ids: list[int]) -> None:
    assert lagrange_coefficients(ids, group.order) == {i: lagrange_coefficient(ids, i, group.order) for i in ids}


@pytest.mark.parametrize("group", GROUPS, ids=group_ids)
def test_lagrange_coefficients_refuse_duplicates(group: Group) -> None:
    with pytest.raises(SharingError):
        lagrange_coefficients([1, 2, 2], group.order)
