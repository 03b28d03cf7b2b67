"""FROST two-round threshold Schnorr signing: the operations of RFC 9591 sections 4-5.

These are pure functions over a :class:`Ciphersuite`; the protocol party in
``frost_party.py`` sequences them and validates what arrives from the network.
Section numbers refer to RFC 9591.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harbour.crypto.group import Point, RandomBytes
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.crypto.shamir import lagrange_coefficient, lagrange_coefficients
from harbour.mpc.ciphersuite import Ciphersuite
from harbour.mpc.envelope import ProtocolAbort


class NonceReuseError(RuntimeError):
    """A signing nonce was used a second time: refused, because it would leak the key."""


@dataclass(frozen=True, slots=True)
class NonceCommitment:
    """A signer's public round-one output ``(D_i, E_i)``."""

    identifier: int
    hiding: Point
    binding: Point


class SigningNonces:
    """A signer's secret round-one nonces; usable for exactly one signature share.

    :meth:`take` hands the nonces out once and forgets them; a second call raises
    :class:`NonceReuseError`. Signing with the same nonces under two different
    challenges reveals the signing share, so single use is enforced by the object
    rather than left to the caller.
    """

    __slots__ = ("_nonces", "commitment")

    def __init__(self, hiding: int, binding: int, commitment: NonceCommitment) -> None:
        self._nonces: tuple[int, int] | None = (hiding, binding)
        self.commitment = commitment

    @property
    def used(self) -> bool:
        return self._nonces is None

    def take(self) -> tuple[int, int]:
        if self._nonces is None:
            raise NonceReuseError("these signing nonces were already used; a nonce is never used twice")
        nonces, self._nonces = self._nonces, None
        return nonces

    def __repr__(self) -> str:
        return f"SigningNonces(identifier={self.commitment.identifier}, used={self.used})"


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The key material one signer signs with: its share and the group's public data.

    For the BIP-340 suite this is the even-y (and, for Taproot, tweaked) view
    produced by ``taproot.signing_key``; for the other suites, the share as is.
    """

    identifier: int
    secret_share: int
    group_public_key: Point
    verification_shares: Mapping[int, Point]

    def __repr__(self) -> str:
        return f"SigningKey(identifier={self.identifier}, secret_share=<hidden>)"


def nonce_generate(suite: Ciphersuite, secret: int, rng: RandomBytes = secrets.token_bytes) -> int:
    """Section 4.1: ``H3(random_bytes(32) || SerializeScalar(secret))``.

    Mixing the secret share into the nonce keeps it unpredictable even when the
    random source is weak.
    """
    return suite.H3(rng(32) + suite.group.encode_scalar(secret))


def commit(suite: Ciphersuite, identifier: int, secret: int, rng: RandomBytes = secrets.token_bytes) -> SigningNonces:
    """Section 5.1, round one: fresh hiding and binding nonces and their commitments."""
    hiding = nonce_generate(suite, secret, rng)
    binding = nonce_generate(suite, secret, rng)
    g = suite.group
    return SigningNonces(hiding, binding, NonceCommitment(identifier, g.base_mul(hiding), g.base_mul(binding)))


def encode_group_commitment_list(suite: Ciphersuite, commitments: Sequence[NonceCommitment]) -> bytes:
    """Section 4.3; ``commitments`` must be sorted by identifier."""
    g = suite.group
    return b"".join(g.encode_scalar(c.identifier) + c.hiding.encode() + c.binding.encode() for c in commitments)


def commitment_list_hash(suite: Ciphersuite, commitments: Sequence[NonceCommitment]) -> bytes:
    return suite.H5(encode_group_commitment_list(suite, commitments))


def _rho_prefix(suite: Ciphersuite, public_key: Point, message: bytes, list_hash: bytes) -> bytes:
    """What every ``rho_input`` starts with: ``SerializeElement(PK) ‖ H4(msg) ‖ H5(list)``."""
    return public_key.encode() + suite.H4(message) + list_hash


def binding_factor_inputs(
    suite: Ciphersuite, public_key: Point, commitments: Sequence[NonceCommitment], message: bytes
) -> dict[int, bytes]:
    """Section 4.4: ``rho_input`` per participant (public key, H4(msg), H5(list), id)."""
    prefix = _rho_prefix(suite, public_key, message, commitment_list_hash(suite, commitments))
    g = suite.group
    return {c.identifier: prefix + g.encode_scalar(c.identifier) for c in commitments}


def binding_factors(
    suite: Ciphersuite,
    public_key: Point,
    commitments: Sequence[NonceCommitment],
    message: bytes,
    list_hash: bytes | None = None,
) -> dict[int, int]:
    """Section 4.4, compute_binding_factors: ``ρ_i = H1(rho_input_i)``.

    The inputs differ only in their last field, so the common prefix is hashed
    once (``H1_with_prefix``); ``list_hash`` is ``H5`` of the list when the
    caller already has it.
    """
    if list_hash is None:
        list_hash = commitment_list_hash(suite, commitments)
    h1 = suite.H1_with_prefix(_rho_prefix(suite, public_key, message, list_hash))
    g = suite.group
    return {c.identifier: h1(g.encode_scalar(c.identifier)) for c in commitments}


def group_commitment(suite: Ciphersuite, commitments: Sequence[NonceCommitment], rhos: Mapping[int, int]) -> Point:
    """Section 4.5: ``R = Σ D_i + ρ_i·E_i``."""
    g = suite.group
    return g.sum([c.hiding for c in commitments] + [c.binding * rhos[c.identifier] for c in commitments])


def sorted_commitments(commitments: Sequence[NonceCommitment]) -> list[NonceCommitment]:
    out = sorted(commitments, key=lambda c: c.identifier)
    ids = [c.identifier for c in out]
    if len(set(ids)) != len(ids):
        raise ValueError("duplicate identifier in the commitment list")
    return out


@dataclass(frozen=True, slots=True)
class SigningContext:
    """Everything derived from the commitment list and message that all signers share."""

    commitments: list[NonceCommitment]
    rhos: dict[int, int]
    R: Point
    challenge: int
    commitments_hash: bytes

    @property
    def participants(self) -> list[int]:
        return [c.identifier for c in self.commitments]


def signing_context(
    suite: Ciphersuite, public_key: Point, commitments: Sequence[NonceCommitment], message: bytes
) -> SigningContext:
    ordered = sorted_commitments(commitments)
    list_hash = commitment_list_hash(suite, ordered)
    rhos = binding_factors(suite, public_key, ordered, message, list_hash)
    R = group_commitment(suite, ordered, rhos)
    if R.is_identity():
        raise ProtocolAbort([], "the group commitment is the identity")
    c = suite.challenge(R, public_key, message)
    return SigningContext(ordered, rhos, R, c, list_hash)


def _odd_bip340_R(suite: Ciphersuite, R: Point) -> bool:
    return suite.bip340 and isinstance(R, Secp256k1Point) and not R.has_even_y


def sign_share(suite: Ciphersuite, key: SigningKey, nonces: SigningNonces, ctx: SigningContext) -> int:
    """Section 5.2: ``z_i = d_i + e_i·ρ_i + λ_i·s_i·c``; consumes the nonces.

    For BIP-340 a group commitment with odd y is negated by the aggregator, so each
    signer negates its nonces to match.
    """
    if nonces.commitment.identifier != key.identifier:
        raise ValueError("these nonces belong to another signer")
    if nonces.commitment not in ctx.commitments:
        raise ValueError("our own commitment is not in the commitment list")
    hiding, binding = nonces.take()
    n = suite.group.order
    if _odd_bip340_R(suite, ctx.R):
        hiding, binding = n - hiding, n - binding
    lam = lagrange_coefficient(ctx.participants, key.identifier, n)
    return (hiding + binding * ctx.rhos[key.identifier] + lam * key.secret_share * ctx.challenge) % n


def _share_holds(
    suite: Ciphersuite, ctx: SigningContext, com: NonceCommitment, lam: int, share: int, verification_share: Point
) -> bool:
    g = suite.group
    comm_share = com.hiding + com.binding * ctx.rhos[com.identifier]
    if _odd_bip340_R(suite, ctx.R):
        comm_share = -comm_share
    return g.base_mul(share) == comm_share + verification_share * (ctx.challenge * lam % g.order)


def verify_share(
    suite: Ciphersuite, ctx: SigningContext, identifier: int, share: int, verification_share: Point
) -> bool:
    """Section 5.4: ``z_i·G == D_i + ρ_i·E_i + (c·λ_i)·PK_i``."""
    com = next(c for c in ctx.commitments if c.identifier == identifier)
    lam = lagrange_coefficient(ctx.participants, identifier, suite.group.order)
    return _share_holds(suite, ctx, com, lam, share, verification_share)


def invalid_shares(
    suite: Ciphersuite, ctx: SigningContext, shares: Mapping[int, int], verification_shares: Mapping[int, Point]
) -> list[int]:
    """Section 5.4 for every participant: the identifiers whose share fails, in order.

    Each share is judged on its own equation, so the list is exactly the signers
    whose shares are wrong, however many there are; the Lagrange coefficients
    of all signers come from one batch inversion.
    """
    lams = lagrange_coefficients(ctx.participants, suite.group.order)
    return [
        c.identifier
        for c in ctx.commitments
        if not _share_holds(suite, ctx, c, lams[c.identifier], shares[c.identifier], verification_shares[c.identifier])
    ]


def aggregate(
    suite: Ciphersuite,
    ctx: SigningContext,
    shares: Mapping[int, int],
    public_key: Point,
    verification_shares: Mapping[int, Point],
    message: bytes,
) -> bytes:
    """Section 5.3, then verification before release.

    The signature is verified against the group key first (one equation, where
    checking every share would cost ``t``); only if that fails is each share
    checked (section 5.4), so that the abort names exactly the signers whose
    shares are wrong. A signature that fails verification is never returned.
    """
    if set(shares) != set(ctx.participants):
        raise ValueError("need exactly one signature share per participant")
    n = suite.group.order
    z = sum(shares.values()) % n
    if suite.verify_parts(public_key, message, ctx.R, z):
        return suite.encode_signature(ctx.R, z)
    culprits = invalid_shares(suite, ctx, shares, verification_shares)
    raise ProtocolAbort(culprits, "the aggregate signature does not verify; invalid signature shares")
