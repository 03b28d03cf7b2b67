"""GF(2^256): the field of the KOS correlation check (mpc/ot_extension.py).

Elements are Python ints whose bit ``i`` is the coefficient of ``X^i``, reduced
modulo the pentanomial ``X^256 + X^10 + X^5 + X^2 + 1`` (irreducible over GF(2);
tests/test_gf2_256.py proves it with Rabin's test). The check multiplies each of
hundreds of 256-bit rows by its own challenge and sums: done one product at a
time in Python that would cost milliseconds, so :func:`inner_product` computes
the whole unreduced sum as one 0/1 matrix product (BLAS, exact in float32 for
fewer than 2^24 rows) and reduces once, which is valid because reduction is
linear.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

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


def bits(packed: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Rows of 32 little-endian bytes -> rows of 256 coefficient bits."""
    return np.unpackbits(packed, axis=1, bitorder="little")


def inner_product(challenges: npt.NDArray[np.uint8], columns: npt.NDArray[np.uint8]) -> int:
    """``Σ_j χ_j · t_j`` in GF(2^256).

    ``challenges`` is the m x 256 bit matrix whose rows are the χ_j; ``columns`` is
    the 256 x m bit matrix whose columns are the t_j (the layout the OT extension
    produces, so no transpose is needed).
    """
    if challenges.ndim != 2 or challenges.shape[1] != DEGREE or columns.shape != challenges.shape[::-1]:
        raise ValueError("need an m x 256 and a 256 x m bit matrix")
    # P[b, a] = Σ_j t_j[b]·χ_j[a]; the coefficient of X^k gathers the diagonal a + b = k
    # (symmetric in a and b, so the orientation of P does not matter).
    product = columns.astype(np.float32) @ challenges.astype(np.float32)
    # Row a of a 256x512 array read back with rows of 511 starts a places later:
    # row a of the view is row a of the product shifted right by a (the zero
    # padding fills the rest), so column sums are the coefficients of X^0..X^510.
    padded = np.zeros((256, 512), dtype=np.float32)
    padded[:, :256] = product
    skewed = padded.ravel()[: 256 * 511].reshape(256, 511)
    coefficients = skewed.sum(axis=0).astype(np.int64) & 1
    packed = np.packbits(coefficients.astype(np.uint8), bitorder="little")
    return reduce(int.from_bytes(packed.tobytes(), "little"))
