"""GF(2^256): the field of the KOS correlation check (mpc/ot_extension.py).

Elements are Python ints whose bit ``i`` is the coefficient of ``X^i``, reduced
modulo the pentanomial ``X^256 + X^10 + X^5 + X^2 + 1`` (irreducible over GF(2);
tests/test_gf2_256.py proves it with Rabin's test). The check multiplies each of
hundreds of 256-bit rows by its own challenge and sums: done one product at a
time in Python that would cost milliseconds, so :func:`inner_product` computes
the whole unreduced sum as one GF(2) matrix product with table lookups, and
reduces once, which is valid because reduction is linear.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harbour.util.lazy import lazy_module

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt
else:  # loaded on first use: a signer node that runs no threshold-ECDSA session never needs it
    np = lazy_module("numpy")

DEGREE = 256
MODULUS = (1 << 256) | (1 << 10) | (1 << 5) | (1 << 2) | 1
_TAIL = MODULUS ^ (1 << 256)
_MASK = (1 << 256) - 1


def reduce(p: int) -> int:
    """``p mod MODULUS`` for a polynomial of degree below 512."""
    if p < 0 or p.bit_length() > 2 * DEGREE:
        raise ValueError("polynomial out of range")
    while p >> DEGREE:
        hi = p >> DEGREE
        p = (p & _MASK) ^ (hi << 10) ^ (hi << 5) ^ (hi << 2) ^ hi
    return p


def clmul(a: int, b: int) -> int:
    """Carry-less (GF(2)[X]) product of two polynomials."""
    acc = 0
    while b:
        low = b & -b
        acc ^= a << (low.bit_length() - 1)
        b ^= low
    return acc


def mul(a: int, b: int) -> int:
    if not (0 <= a <= _MASK and 0 <= b <= _MASK):
        raise ValueError("field elements are 256-bit")
    return reduce(clmul(a, b))


def from_bytes(data: bytes) -> int:
    if len(data) != 32:
        raise ValueError("field elements are 32 bytes")
    return int.from_bytes(data, "little")


def to_bytes(a: int) -> bytes:
    return a.to_bytes(32, "little")


def inner_product(challenges: npt.NDArray[np.uint8], columns: npt.NDArray[np.uint8]) -> int:
    """``Σ_j χ_j · t_j`` in GF(2^256), from packed bits.

    ``challenges`` is m x 32 bytes (row j is χ_j, little-endian); ``columns`` is
    256 x m/8 bytes (column b holds bit b of every t_j, little-endian bit order:
    the layout the OT extension produces, so nothing is transposed).

    Writing ``t_j = Σ_b t_j[b]·X^b`` gives ``Σ_j χ_j·t_j = Σ_b X^b·S_b`` with
    ``S_b = ⊕_{j: t_j[b] = 1} χ_j``: a GF(2) matrix product, done by the "method of
    the four Russians" (for each group of 4 rows, a table of the 16 XOR
    combinations of its χ_j, indexed by one nibble of the column), then 256 shifts.
    """
    m = challenges.shape[0]
    if challenges.shape != (m, 32) or m % 8 or columns.shape != (DEGREE, m // 8):
        raise ValueError("need m x 32 challenge bytes and 256 x m/8 column bytes, m a multiple of 8")
    groups = m // 4
    rows = np.ascontiguousarray(challenges).view(np.uint64).reshape(groups, 4, 4)
    table = np.empty((groups, 16, 4), dtype=np.uint64)
    table[:, 0] = 0
    for i in range(4):
        np.bitwise_xor(table[:, : 1 << i], rows[:, i, None, :], out=table[:, 1 << i : 2 << i])
    nibbles = np.empty((groups, DEGREE), dtype=np.int64)
    nibbles[0::2] = (columns & 0x0F).T
    nibbles[1::2] = (columns >> 4).T
    nibbles += (np.arange(groups) * 16)[:, None]
    picked = np.take(table.reshape(-1, 4), nibbles.ravel(), axis=0).reshape(groups, DEGREE, 4)
    sums = np.bitwise_xor.reduce(picked, axis=0).tobytes()
    acc = 0
    for b in range(DEGREE):
        acc ^= int.from_bytes(sums[32 * b : 32 * b + 32], "little") << b
    return reduce(acc)
