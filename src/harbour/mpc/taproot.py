"""BIP-340 even-y handling and the BIP-341 TapTweak, applied to threshold key shares.

A Taproot output commits to the x-only key ``Q = P + t·G`` where ``P`` is the
internal key lifted to even y and ``t = hash_TapTweak(x(P) || merkle_root)``
(BIP-341, "Constructing and spending Taproot outputs"). With no script tree the
output still commits to an unspendable script path: ``t = hash_TapTweak(x(P))``.

Shares tweak without interaction: Lagrange coefficients at any signer set sum to
one, so adding ``t`` to every share adds ``t`` to the shared secret, and adding
``t·G`` to every verification share keeps them consistent. Negating the key for
even y likewise negates every share. The order of operations (even-y, tweak,
then even-y again for signing) is the Zcash Foundation's, which the published
DKG vectors pin down.
"""

from __future__ import annotations

from harbour.crypto.group import Point
from harbour.crypto.hashing import tagged_hash
from harbour.crypto.secp256k1 import SECP256K1, N, Secp256k1Point
from harbour.mpc.frost import SigningKey


class TaprootError(ValueError):
    """An invalid Taproot parameter (a Merkle root of the wrong size, a tweak out of range)."""


def _sp(p: Point) -> Secp256k1Point:
    if not isinstance(p, Secp256k1Point):
        raise TaprootError("Taproot keys are secp256k1 points")
    return p


def tap_tweak(internal_key: Point, merkle_root: bytes | None) -> int:
    """BIP-341's ``t = int(hash_TapTweak(bytes(P) || merkle_root))``; fails if ``t >= n``."""
    if merkle_root is not None and len(merkle_root) != 32:
        raise TaprootError("a script-tree Merkle root is 32 bytes")
    t = int.from_bytes(tagged_hash("TapTweak", _sp(internal_key).x_bytes, merkle_root or b""), "big")
    if t >= N:
        raise TaprootError("TapTweak hash is not below the group order")
    return t


def even_y(point: Point) -> Secp256k1Point:
    p = _sp(point)
    return p if p.has_even_y else _sp(-p)


def output_key(internal_key: Point, merkle_root: bytes | None = None) -> Secp256k1Point:
    """The BIP-341 output key ``Q`` (its x coordinate goes in the witness program)."""
    P = even_y(internal_key)
    return _sp(P + SECP256K1.base_mul(tap_tweak(P, merkle_root)))


def even_y_key(key: SigningKey) -> SigningKey:
    """Negate every component if the group key has odd y (BIP-340 ``lift_x`` semantics)."""
    if _sp(key.group_public_key).has_even_y:
        return key
    return SigningKey(
        key.identifier,
        (N - key.secret_share) % N,
        -key.group_public_key,
        {i: -p for i, p in key.verification_shares.items()},
    )


def tweak_key(key: SigningKey, merkle_root: bytes | None) -> SigningKey:
    """The shares of ``Q = even_y(P) + t·G``; the result may itself have odd y."""
    t = tap_tweak(key.group_public_key, merkle_root)
    tG = SECP256K1.base_mul(t)
    even = even_y_key(key)
    return SigningKey(
        even.identifier,
        (even.secret_share + t) % N,
        even.group_public_key + tG,
        {i: p + tG for i, p in even.verification_shares.items()},
    )


def signing_key(key: SigningKey, merkle_root: bytes | None = None, *, tweak: bool = True) -> SigningKey:
    """The view a BIP-340 signer signs with: tweaked (unless ``tweak=False``), even y."""
    return even_y_key(tweak_key(key, merkle_root) if tweak else key)
