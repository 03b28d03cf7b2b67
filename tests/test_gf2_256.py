"""GF(2^256), the field of the KOS correlation check: the modulus is irreducible
(Rabin's test, with polynomial arithmetic written here independently of the
module), the operations satisfy the field axioms, and the packed-bit
inner product agrees with one multiplication at a time."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.crypto import gf2_256 as gf

elements = st.integers(min_value=0, max_value=(1 << 256) - 1)
nonzero = st.integers(min_value=1, max_value=(1 << 256) - 1)

# -- GF(2)[X] arithmetic of our own: shifts and XORs on ints, bit i = coefficient of X^i ----


def pmul(a: int, b: int) -> int:
    acc = 0
    i = 0
    while b >> i:
        if b >> i & 1:
            acc ^= a << i
        i += 1
    return acc


def pmod(a: int, f: int) -> int:
    df = f.bit_length() - 1
    while a.bit_length() - 1 >= df:
        a ^= f << (a.bit_length() - 1 - df)
    return a


def pgcd(a: int, b: int) -> int:
    while b:
        a, b = b, pmod(a, b)
    return a


def x_pow_2k(k: int, f: int) -> int:
    """``X^(2^k) mod f`` by k squarings."""
    r = pmod(0b10, f)
    for _ in range(k):
        r = pmod(pmul(r, r), f)
    return r


def prime_factors(n: int) -> list[int]:
    out, p = [], 2
    while n > 1:
        if n % p == 0:
            out.append(p)
            while n % p == 0:
                n //= p
        p += 1
    return out


def rabin_irreducible(f: int) -> bool:
    """Rabin: f of degree n is irreducible iff X^(2^n) = X mod f and
    gcd(X^(2^(n/p)) - X, f) = 1 for every prime p dividing n."""
    n = f.bit_length() - 1
    if x_pow_2k(n, f) != pmod(0b10, f):
        return False
    return all(pgcd(x_pow_2k(n // p, f) ^ 0b10, f) == 1 for p in prime_factors(n))


def reference_mul(a: int, b: int) -> int:
    return pmod(pmul(a, b), gf.MODULUS)


def field_pow(a: int, e: int) -> int:
    """``a^e`` by square-and-multiply through the module's ``mul``."""
    result, base = 1, a
    while e:
        if e & 1:
            result = gf.mul(result, base)
        base = gf.mul(base, base)
        e >>= 1
    return result


# -- the modulus ---------------------------------------------------------------------------


def test_rabin_test_accepts_a_known_irreducible_and_rejects_reducible_polynomials() -> None:
    # The test of the modulus below is only as good as this helper: check it can say no.
    assert rabin_irreducible(0x11B)  # AES: X^8 + X^4 + X^3 + X + 1
    assert rabin_irreducible(0b111)  # X^2 + X + 1
    assert not rabin_irreducible(0x101)  # X^8 + 1 = (X + 1)^8
    assert not rabin_irreducible(pmul(0x11B, 0b111))  # a product of two irreducibles
    assert not rabin_irreducible((1 << 256) | 1)  # X^256 + 1 = (X + 1)^256
    # (X^4 + X + 1)(X^4 + X^3 + 1): both factors' degrees divide 8, so X^(2^8) = X holds
    # and only the gcd condition exposes the factorisation.
    split = pmul(0b10011, 0b11001)
    assert x_pow_2k(8, split) == 0b10
    assert not rabin_irreducible(split)


def test_modulus_is_the_stated_pentanomial() -> None:
    assert gf.MODULUS == (1 << 256) + (1 << 10) + (1 << 5) + (1 << 2) + 1
    assert gf.DEGREE == 256 == gf.MODULUS.bit_length() - 1


def test_modulus_is_irreducible_by_rabins_test() -> None:
    f = gf.MODULUS
    assert x_pow_2k(256, f) == 0b10  # X^(2^256) = X mod f
    assert pgcd(x_pow_2k(128, f) ^ 0b10, f) == 1  # 2 is the only prime dividing 256


# -- arithmetic against the reference ----------------------------------------------------


@given(elements, elements)
def test_mul_matches_the_reference_schoolbook_product(a: int, b: int) -> None:
    assert gf.mul(a, b) == reference_mul(a, b)


@given(st.integers(min_value=0, max_value=(1 << 511) - 1))
def test_reduce_matches_the_reference_remainder(p: int) -> None:
    assert gf.reduce(p) == pmod(p, gf.MODULUS)


def test_x_to_the_256_reduces_to_the_tail_of_the_modulus() -> None:
    assert gf.reduce(1 << 256) == gf.MODULUS ^ (1 << 256)
    assert gf.mul(1 << 255, 0b10) == gf.MODULUS ^ (1 << 256)
    assert gf.reduce((1 << 511) | 1) == pmod((1 << 511) | 1, gf.MODULUS)


def test_clmul_is_the_carry_less_product() -> None:
    assert gf.clmul(0b11, 0b11) == 0b101  # (X + 1)^2 = X^2 + 1
    assert gf.clmul(0b101, 0b111) == 0b11011
    assert gf.clmul(0, 12345) == gf.clmul(12345, 0) == 0


# -- field axioms ------------------------------------------------------------------------


@given(elements, elements)
def test_mul_is_commutative(a: int, b: int) -> None:
    assert gf.mul(a, b) == gf.mul(b, a)


@given(elements, elements, elements)
def test_mul_is_associative(a: int, b: int, c: int) -> None:
    assert gf.mul(gf.mul(a, b), c) == gf.mul(a, gf.mul(b, c))


@given(elements, elements, elements)
def test_mul_distributes_over_addition(a: int, b: int, c: int) -> None:
    assert gf.mul(a, b ^ c) == gf.mul(a, b) ^ gf.mul(a, c)


@given(elements)
def test_one_is_the_identity_and_zero_absorbs(a: int) -> None:
    assert gf.mul(a, 1) == a
    assert gf.mul(1, a) == a
    assert gf.mul(a, 0) == 0


@settings(max_examples=25, deadline=None)
@given(nonzero)
def test_every_nonzero_element_has_an_inverse(a: int) -> None:
    inverse = field_pow(a, (1 << 256) - 2)  # Fermat in GF(2^256)*
    assert inverse != 0
    assert gf.mul(a, inverse) == 1


def test_multiplicative_group_order_divides_2_256_minus_1() -> None:
    assert field_pow(0b10, (1 << 256) - 1) == 1


# -- encoding ----------------------------------------------------------------------------


@given(elements)
def test_bytes_round_trip_little_endian(a: int) -> None:
    data = gf.to_bytes(a)
    assert len(data) == 32
    assert gf.from_bytes(data) == a
    assert data == a.to_bytes(32, "little")


# -- inner product -----------------------------------------------------------------------


def as_columns(rows: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """m rows of 32 little-endian bytes -> 256 packed columns of m bits (the OT-extension layout)."""
    bits = np.unpackbits(rows, axis=1, bitorder="little")  # m x 256
    return np.packbits(bits.T, axis=1, bitorder="little")  # 256 x m/8


def one_at_a_time(challenges: npt.NDArray[np.uint8], rows: npt.NDArray[np.uint8]) -> int:
    acc = 0
    for chi, t in zip(challenges, rows, strict=True):
        acc ^= gf.mul(gf.from_bytes(chi.tobytes()), gf.from_bytes(t.tobytes()))
    return acc


@pytest.mark.parametrize("m", [8, 16, 24, 256, 752])
def test_inner_product_equals_the_sum_of_individual_products(m: int) -> None:
    rng = np.random.default_rng(m)
    challenges = rng.integers(0, 256, size=(m, 32), dtype=np.uint8)
    rows = rng.integers(0, 256, size=(m, 32), dtype=np.uint8)
    assert gf.inner_product(challenges, as_columns(rows)) == one_at_a_time(challenges, rows)


@pytest.mark.parametrize("position", [0, 3, 4, 7])
def test_inner_product_of_a_single_row_is_one_multiplication(position: int) -> None:
    # m = 1 padded to the minimum of 8 rows with zero rows: the sum is that one product.
    rng = np.random.default_rng(100 + position)
    challenges = rng.integers(0, 256, size=(8, 32), dtype=np.uint8)
    rows = np.zeros((8, 32), dtype=np.uint8)
    rows[position] = rng.integers(0, 256, size=32, dtype=np.uint8)
    expected = gf.mul(gf.from_bytes(challenges[position].tobytes()), gf.from_bytes(rows[position].tobytes()))
    assert gf.inner_product(challenges, as_columns(rows)) == expected


def test_inner_product_with_all_ones_rows_reaches_the_highest_coefficients() -> None:
    # Every coefficient of the unreduced sum up to X^510 is set: exercises the final reduction.
    challenges = np.full((8, 32), 0xFF, dtype=np.uint8)
    rows = np.zeros((8, 32), dtype=np.uint8)
    rows[0] = 0xFF
    assert gf.inner_product(challenges, as_columns(rows)) == gf.mul((1 << 256) - 1, (1 << 256) - 1)


def test_inner_product_of_no_rows_is_zero() -> None:
    assert gf.inner_product(np.zeros((0, 32), dtype=np.uint8), np.zeros((256, 0), dtype=np.uint8)) == 0


def test_inner_product_accepts_non_contiguous_challenges() -> None:
    rng = np.random.default_rng(7)
    wide = rng.integers(0, 256, size=(16, 64), dtype=np.uint8)
    challenges = wide[:, ::2]
    rows = rng.integers(0, 256, size=(16, 32), dtype=np.uint8)
    assert gf.inner_product(challenges, as_columns(rows)) == one_at_a_time(np.ascontiguousarray(challenges), rows)


# -- input validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("challenges_shape", "columns_shape"),
    [
        ((1, 32), (256, 1)),  # m = 1: not a whole number of column bytes
        ((7, 32), (256, 1)),
        ((8, 31), (256, 1)),
        ((8, 33), (256, 1)),
        ((8, 32), (255, 1)),
        ((8, 32), (257, 1)),
        ((8, 32), (256, 2)),
        ((16, 32), (256, 1)),
        ((8, 32), (1, 256)),
    ],
)
def test_inner_product_rejects_mismatched_shapes(
    challenges_shape: tuple[int, int], columns_shape: tuple[int, int]
) -> None:
    with pytest.raises(ValueError):
        gf.inner_product(np.zeros(challenges_shape, dtype=np.uint8), np.zeros(columns_shape, dtype=np.uint8))


def test_inner_product_rejects_a_one_dimensional_challenge_vector() -> None:
    with pytest.raises(ValueError):
        gf.inner_product(np.zeros(256, dtype=np.uint8), np.zeros((256, 32), dtype=np.uint8))


@pytest.mark.parametrize(("a", "b"), [(-1, 1), (1, -1), (1 << 256, 1), (1, 1 << 256)])
def test_mul_rejects_values_outside_the_field(a: int, b: int) -> None:
    with pytest.raises(ValueError):
        gf.mul(a, b)


@pytest.mark.parametrize("p", [-1, 1 << 512, (1 << 600) | 1])
def test_reduce_rejects_polynomials_out_of_range(p: int) -> None:
    with pytest.raises(ValueError):
        gf.reduce(p)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_from_bytes_rejects_wrong_lengths(length: int) -> None:
    with pytest.raises(ValueError):
        gf.from_bytes(bytes(length))
