"""Shamir secret sharing with Feldman commitments (RFC 9591 appendix C).

A secret ``s`` is the constant term of a random polynomial ``f`` of degree
``t - 1`` over the scalar field; participant ``i`` holds ``f(i)``. Feldman's
commitments ``C_k = a_k·G`` let anyone check a share against the polynomial
without learning it. Participant identifiers are the x-coordinates ``1..n``;
``0`` is never an identifier because ``f(0)`` is the secret.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from harbour.crypto.group import Group, Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom

MAX_PARTIES = 255


class SharingError(ValueError):
    """Parameters or identifiers that cannot form a valid sharing."""


def check_parameters(threshold: int, parties: int) -> None:
    if not 1 <= threshold <= parties <= MAX_PARTIES:
        raise SharingError(
            f"need 1 <= threshold <= parties <= {MAX_PARTIES}, got threshold={threshold} parties={parties}"
        )


def check_identifiers(ids: Iterable[int], n: int | None = None) -> list[int]:
    """Identifiers must be unique ints in 1..n (1..255 when n is not given)."""
    out = list(ids)
    upper = MAX_PARTIES if n is None else n
    for i in out:
        if isinstance(i, bool) or not isinstance(i, int) or not 1 <= i <= upper:
            raise SharingError(f"identifier {i!r} is not in 1..{upper}")
    if len(set(out)) != len(out):
        raise SharingError("identifiers are not unique")
    return out


def evaluate(coefficients: Sequence[int], x: int, order: int) -> int:
    """``f(x)`` by Horner's rule, coefficients constant term first."""
    acc = 0
    for a in reversed(coefficients):
        acc = (acc * x + a) % order
    return acc


def lagrange_coefficient(ids: Sequence[int], i: int, order: int) -> int:
    """derive_interpolating_value (RFC 9591 section 4.2): ``λ_i`` at x = 0."""
    if i not in ids:
        raise SharingError(f"identifier {i} is not among the participants")
    if len(set(ids)) != len(ids):
        raise SharingError("duplicate identifiers in the participant list")
    num, den = 1, 1
    for j in ids:
        if j == i:
            continue
        num = num * j % order
        den = den * (j - i) % order
    return num * pow(den, -1, order) % order


def batch_inverse(values: Sequence[int], order: int) -> list[int]:
    """The inverses of ``values`` modulo prime ``order`` with one modular inversion.

    Montgomery's trick: invert the product of all values once, then peel each
    inverse off with two multiplications. A zero (which has no inverse) raises
    ``ZeroDivisionError`` like ``pow(0, -1, order)`` does.
    """
    prefix = [1]
    for v in values:
        prefix.append(prefix[-1] * v % order)
    if prefix[-1] == 0:
        raise ZeroDivisionError("zero has no inverse modulo the order")
    inv = pow(prefix[-1], -1, order)
    out = [0] * len(values)
    for k in range(len(values) - 1, -1, -1):
        out[k] = inv * prefix[k] % order
        inv = inv * values[k] % order
    return out


def lagrange_coefficients(ids: Sequence[int], order: int) -> dict[int, int]:
    """Every ``λ_i`` of :func:`lagrange_coefficient` for one participant list, with one inversion.

    For checking every signer's share at once (RFC 9591 section 5.4), where
    computing each coefficient separately would cost one inversion per signer.
    """
    if len(set(ids)) != len(ids):
        raise SharingError("duplicate identifiers in the participant list")
    nums, dens = [], []
    for i in ids:
        num, den = 1, 1
        for j in ids:
            if j != i:
                num = num * j % order
                den = den * (j - i) % order
        nums.append(num)
        dens.append(den)
    return {i: n * d % order for i, n, d in zip(ids, nums, batch_inverse(dens, order), strict=True)}


def interpolate_at_zero(shares: dict[int, int], order: int) -> int:
    """Reconstruct ``f(0)`` from ``{identifier: f(identifier)}``: the break-glass path."""
    ids = list(shares)
    return sum(lagrange_coefficient(ids, i, order) * s for i, s in shares.items()) % order


def commit(group: Group, coefficients: Sequence[int]) -> list[Point]:
    """Feldman commitments ``[a_k·G]`` (vss_commit)."""
    return [group.base_mul(a) for a in coefficients]


def commitment_at(group: Group, commitments: Sequence[Point], x: int) -> Point:
    """``Σ_k C_k·x^k``: the public image ``f(x)·G`` of a share."""
    order = group.order
    terms = [commitments[0]]
    power = 1
    for c in commitments[1:]:
        power = power * x % order
        terms.append(c * power)
    return group.sum(terms)


def verify_share(group: Group, commitments: Sequence[Point], x: int, share: int) -> bool:
    """vss_verify: is ``share·G`` the commitment polynomial at ``x``?"""
    return group.base_mul(share) == commitment_at(group, commitments, x)


@dataclass(frozen=True)
class DealtKey:
    """What a trusted dealer hands out: every share and the public data."""

    threshold: int
    shares: dict[int, int]
    commitments: list[Point]
    group_public_key: Point
    verification_shares: dict[int, Point]


def trusted_dealer_keygen(
    group: Group,
    secret: int,
    threshold: int,
    parties: int,
    rng: RandomBytes = secrets.token_bytes,
    coefficients: Sequence[int] | None = None,
) -> DealtKey:
    """RFC 9591 appendix C: split an existing ``secret`` into a t-of-n sharing.

    For importing a key that already exists. The dealer sees the whole key, so
    a fresh key should come from the distributed key generation instead.
    ``coefficients`` (the t - 1 non-constant ones) is for known-answer tests;
    otherwise they are hedged (crypto/hedge.py) with the secret and the sizes.
    """
    check_parameters(threshold, parties)
    if not 0 < secret < group.order:
        raise SharingError("the secret must be a non-zero scalar below the group order")
    if coefficients is None:
        sizes = Transcript("harbour/shamir/dealer").append("threshold", threshold).append("parties", parties)
        hedged = HedgedRandom("shamir/dealer coefficients", sizes.digest(), [group.encode_scalar(secret)], fresh=rng)
        coefficients = [group.random_scalar(hedged) for _ in range(threshold - 1)]
    if len(coefficients) != threshold - 1:
        raise SharingError(f"a {threshold}-of-n sharing needs {threshold - 1} random coefficients")
    poly = [secret, *coefficients]
    shares = {i: evaluate(poly, i, group.order) for i in range(1, parties + 1)}
    commitments = commit(group, poly)
    return DealtKey(
        threshold=threshold,
        shares=shares,
        commitments=commitments,
        group_public_key=commitments[0],
        verification_shares={i: group.base_mul(s) for i, s in shares.items()},
    )
