"""Schnorr proof of knowledge of a discrete logarithm, made non-interactive with Fiat–Shamir.

Used where a party must show it knows the secret behind a point it sends (the
sender's key in the verified base OT of mpc/base_ot.py). The challenge hashes
the caller's context (session, parties, purpose) with the statement and the
commitment through one :class:`Transcript`, so a proof cannot be replayed into
another session or for another purpose.
"""

from __future__ import annotations

import secrets

from harbour.crypto.group import Group, GroupError, Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom


def _challenge(group: Group, statement: Point, commitment: Point, context: bytes) -> int:
    return (
        Transcript("harbour/dlog-proof")
        .append("context", context)
        .append("statement", statement.encode())
        .append("commitment", commitment.encode())
        .challenge(group.order)
    )


def prove(group: Group, secret: int, context: bytes, rng: RandomBytes = secrets.token_bytes) -> bytes:
    """Proof that the prover knows ``secret`` for ``secret·G``: commitment || response.

    The nonce is hedged with ``secret`` and ``context`` (crypto/hedge.py): a
    broken ``rng`` can then only repeat a nonce for the same secret and context,
    where the challenge, and so the whole proof, repeats too; never two
    different challenges under one nonce, which would reveal the secret.
    """
    k = group.random_scalar(HedgedRandom("dlog-proof/nonce", context, [group.encode_scalar(secret)], fresh=rng))
    commitment = group.base_mul(k)
    c = _challenge(group, group.base_mul(secret), commitment, context)
    return commitment.encode() + group.encode_scalar((k + c * secret) % group.order)


def proof_length(group: Group) -> int:
    return len(group.generator().encode()) + len(group.encode_scalar(1))


def verify(group: Group, statement: Point, proof: bytes, context: bytes) -> bool:
    """Check ``z·G == R + c·X``; any malformed proof is simply invalid."""
    point_len = len(group.generator().encode())
    if len(proof) != proof_length(group) or statement.is_identity():
        return False
    try:
        commitment = group.decode_point(proof[:point_len])
        z = group.decode_scalar(proof[point_len:])
    except GroupError:
        return False
    c = _challenge(group, statement, commitment, context)
    return bool(group.base_mul(z) == commitment + statement * c)
