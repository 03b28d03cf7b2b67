"""The rollback attack on a signer whose party state can be restored: what a
malicious co-signer does with two (ECDSA) or three (FROST) answers from one state.

A cold node persists its protocol party between rounds. If that state can be
restored (a directory or VM snapshot), a co-signer can make the node answer the
same round again, from the same secrets, to different inputs of its choosing.
The functions here are the co-signer's side of that attack. They work on
:class:`Envelope` objects and on what the co-signer knows anyway (its own key
share, the session's request, the public key package), never on the victim's
internal state, so they serve both the in-memory tests (rollback simulated with
``copy.deepcopy``) and a test against a real node, where the attacking co-signer
opens the sealed envelopes addressed to it and seals its forged ones.

DKLs23 (protocol 3.6 of Doerner, Kondi, Lee and shelat, eprint 2023/765),
rolled back to just after the victim ``i`` sent round two. In round three the
victim computes, with ``ψ_ji`` taken unchecked from peer ``j``'s round-two
payload (field ``"psi"``)::

    u_i = r_i·(φ_i + Σ_j ψ_ji) + Σ_j (c^u_ij + d^u_ij)
    v_i = sk_i·(φ_i + Σ_j ψ_ji) + Σ_j (c^v_ij + d^v_ij)
    w_i = e·φ_i + r_x·v_i

and broadcasts ``(u_i, w_i)``. Two answers from one state that differ only in
the attacker's ``ψ`` give ``u^A - u^B = r_i·(ψ^A - ψ^B)`` and
``w^A - w^B = r_x·sk_i·(ψ^A - ψ^B)``, so the nonce share ``r_i`` and the
additive key share ``sk_i = λ_i·x_i + ζ_i``. The attacker shares the pairwise
zero-sharing seed behind ``ζ_i`` with the victim, so with two signers it knows
``ζ_i`` and ``λ_i``, hence the victim's Shamir share ``x_i`` and, with its own,
the key.

FROST (RFC 9591), rolled back to just after the victim sent round one (its
commitments ``(D_i, E_i)``): section 5.2's share is
``z_i = d_i + e_i·ρ_i + λ_i·c·s_i``, where the binding factor ``ρ_i``
(section 4.4) hashes the commitment list and the message, and the challenge
``c`` (section 4.6) hashes ``R`` and the message. The message is fixed when the
signer is created, but the attacker changes its own commitments in each run,
which changes both ``ρ_i`` and ``c``; three answers give three linear equations
in the unknowns ``(d_i, e_i, λ_i·s_i)``.

Where a session must be captured (real node or in-memory):

* ECDSA: the victim's round-two envelope addressed to the attacker (and every
  other signer's, for ``R``); the attacker's round-two envelope to the victim,
  once as sent and once forged by :func:`ecdsa_forge_round2` for the run after
  the rollback; and the victim's round-three broadcast in each run.
* FROST: every round-one broadcast as the victim received it in each run (the
  victim's own, the attacker's, forged by :func:`frost_forge_round1` in every run
  but one, and any other signer's), and the victim's round-two broadcast in that run.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harbour.crypto.group import Point, RandomBytes
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.crypto.shamir import interpolate_at_zero, lagrange_coefficient
from harbour.mpc import frost, taproot
from harbour.mpc.ciphersuite import Ciphersuite, suite_by_name
from harbour.mpc.ecdsa_sign import _ROUND2, EcdsaSigner, G, Q, _zero_share
from harbour.mpc.envelope import Envelope, decode_payload, encode_payload
from harbour.mpc.keyshare import KeyShare, PublicKeyPackage

ECDSA_PROTOCOL = "sign/ecdsa-secp256k1"
FROST_PROTOCOL_PREFIX = "frost-sign/"


class ExtractionError(ValueError):
    """The captured answers do not give the secret: too few, identical, or not from one state."""


def _fields(env: Envelope, schema: Mapping[str, type]) -> dict[str, Any]:
    body = decode_payload(env, schema)
    del body["v"]
    return body


def recover_group_secret(shares: Mapping[int, int], public: PublicKeyPackage) -> int:
    """Interpolate ``threshold`` Shamir shares to the group secret and check it against the group key."""
    if len(shares) < public.threshold:
        raise ExtractionError(f"a {public.threshold}-of-n key needs {public.threshold} shares, got {len(shares)}")
    g = public.group
    for i, x in shares.items():
        if g.base_mul(x) != public.verification_shares[i]:
            raise ExtractionError(f"share {i} does not match its verification share")
    secret = interpolate_at_zero(dict(shares), g.order)
    if g.base_mul(secret) != public.group_public_key:
        raise ExtractionError("the shares do not interpolate to the group key")
    return secret


# -- DKLs23 threshold ECDSA -------------------------------------------------------------------


@dataclass(frozen=True)
class EcdsaAnswer:
    """One run of round three from the restored state.

    ``sent`` is the attacker's round-two envelope as delivered to the victim in this
    run (forged or not); ``round3`` is the victim's round-three broadcast it produced.
    """

    sent: Envelope
    round3: Envelope


def ecdsa_forge_round2(envelope: Envelope, psi_delta: int) -> Envelope:
    """The attacker's round-two envelope to the victim with ``ψ`` shifted by ``psi_delta``.

    Everything else (the multiplication reply, ``Γ^u``, ``Γ^v``, the opening of
    ``R``, ``pk``, the echo) is kept byte for byte, so every check of the victim's
    round three still passes: none of them involves ``ψ``.
    """
    if envelope.protocol != ECDSA_PROTOCOL or envelope.round != 2 or envelope.recipient is None:
        raise ValueError("not a point-to-point round-two envelope of DKLs23 signing")
    body = _fields(envelope, _ROUND2)
    psi = G.decode_scalar(body["psi"])
    body["psi"] = G.encode_scalar((psi + psi_delta) % Q)
    return Envelope(
        envelope.session_id,
        envelope.protocol,
        envelope.round,
        envelope.sender,
        envelope.recipient,
        encode_payload(body),
    )


def _ecdsa_answer(victim: int, answer: EcdsaAnswer) -> tuple[dict[str, Any], int, int, int]:
    """``(round-two fields but ψ, ψ, u, w)`` of one answer, after checking who sent what to whom."""
    sent, r3 = answer.sent, answer.round3
    if sent.round != 2 or sent.recipient != victim or sent.protocol != ECDSA_PROTOCOL:
        raise ExtractionError("the sent envelope is not a round-two envelope to the victim")
    if r3.round != 3 or r3.sender != victim or r3.protocol != ECDSA_PROTOCOL or r3.session_id != sent.session_id:
        raise ExtractionError("the answer is not the victim's round-three broadcast of this session")
    body = _fields(sent, _ROUND2)
    psi = G.decode_scalar(body.pop("psi"))
    out = _fields(r3, {"u": bytes, "w": bytes})
    return body, psi, G.decode_scalar(out["u"]), G.decode_scalar(out["w"])


def ecdsa_extract_signing_share(
    victim: int, round2_received: Sequence[Envelope], answer_a: EcdsaAnswer, answer_b: EcdsaAnswer
) -> int:
    """The victim's additive key share ``sk_i = λ_i·x_i + ζ_i`` of this session.

    ``round2_received`` holds the round-two envelopes the attacker received, one
    from every other signer (the victim's among them): they open the instance
    points ``R_j`` that, with the attacker's own (in ``answer_a.sent``), give
    ``R`` and ``r_x``, and the victim's carries ``pk_i = sk_i·G``, which the result
    is checked against. ``sk_i = (w^A - w^B) / (r_x·(ψ^A - ψ^B))``.
    """
    body_a, psi_a, u_a, w_a = _ecdsa_answer(victim, answer_a)
    body_b, psi_b, u_b, w_b = _ecdsa_answer(victim, answer_b)
    same_envelope = (answer_a.sent.session_id, answer_a.sent.sender) == (answer_b.sent.session_id, answer_b.sent.sender)
    if not same_envelope or body_a != body_b:
        raise ExtractionError("the two round-two envelopes differ in more than ψ")
    if psi_a == psi_b:
        raise ExtractionError("two answers to the same ψ carry no information: the victim must answer twice")
    received = {env.sender: _fields(env, _ROUND2) for env in round2_received}
    if victim not in received:
        raise ExtractionError("the victim's round-two envelope to the attacker is missing")
    points = {j: body["instance_point"] for j, body in received.items()}
    points[answer_a.sent.sender] = body_a["instance_point"]
    R = G.sum(G.decode_point(p) for p in points.values())
    assert isinstance(R, Secp256k1Point)
    r_x = int.from_bytes(R.x_bytes, "big") % Q
    # u^A - u^B = r_i·(ψ^A - ψ^B): the victim's nonce share leaks too, and must open R_i.
    r_i = (u_a - u_b) * pow(psi_a - psi_b, -1, Q) % Q
    if G.base_mul(r_i) != G.decode_point(received[victim]["instance_point"]):
        raise ExtractionError("the answers differ in more than ψ: they are not from one state")
    sk = (w_a - w_b) * pow(r_x * (psi_a - psi_b), -1, Q) % Q
    if G.base_mul(sk) != G.decode_point(received[victim]["pk"]):
        raise ExtractionError(
            "the recovered share does not match the victim's pk_i: the answers are not from one state"
        )
    return sk


def ecdsa_zero_share(
    victim: int, attacker_share: KeyShare, session_id: bytes, signers: Sequence[int], digest: bytes
) -> int:
    """The victim's zero-share ``ζ_i`` in a session where the attacker is its only co-signer.

    ``ζ_i = ±z_ia`` with ``z_ia`` derived from the seed both hold and the session
    hash; the sign is ``+`` when ``i < a`` (mpc/ecdsa_sign.py). With more signers
    ``ζ_i`` also holds terms from seeds the victim shares only with the honest ones.
    """
    attacker = attacker_share.identifier
    if sorted(signers) != sorted({victim, attacker}):
        raise ExtractionError("ζ_i is known only when the victim and the attacker are the only signers")
    # The attacker's own signer object for the session: the same session hash the victim uses.
    own = EcdsaSigner(session_id, attacker_share, signers, digest)
    z = _zero_share(own.setup.peers[victim].zero_seed, own._session)
    return z if victim < attacker else -z % Q


def ecdsa_extract_share(
    victim: int,
    attacker_share: KeyShare,
    session_id: bytes,
    signers: Sequence[int],
    digest: bytes,
    round2_received: Sequence[Envelope],
    answer_a: EcdsaAnswer,
    answer_b: EcdsaAnswer,
) -> int:
    """The victim's Shamir share ``x_i = (sk_i - ζ_i) / λ_i``, checked against its verification share.

    ``session_id``, ``signers`` and ``digest`` are the session's request, which the
    attacker, as a co-signer, was given like the victim.
    """
    sk = ecdsa_extract_signing_share(victim, round2_received, answer_a, answer_b)
    zeta = ecdsa_zero_share(victim, attacker_share, session_id, signers, digest)
    x = (sk - zeta) * pow(lagrange_coefficient(sorted(signers), victim, Q), -1, Q) % Q
    if G.base_mul(x) != attacker_share.verification_shares[victim]:
        raise ExtractionError("the unmasked share does not match the victim's verification share")
    return x


# -- FROST -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FrostAnswer:
    """One run of round two from the restored state.

    ``round1`` holds the round-one broadcast of every signer as the victim received
    it in this run (its own included); ``round2`` is the victim's round-two broadcast.
    """

    round1: Sequence[Envelope]
    round2: Envelope


def frost_forge_round1(envelope: Envelope, rng: RandomBytes = secrets.token_bytes) -> Envelope:
    """The attacker's round-one broadcast with fresh commitments ``(D, E)``.

    Any valid points do: the attacker never completes these signatures, it only
    needs the victim's binding factor and challenge to change.
    """
    suite = _suite_of(envelope)
    if envelope.round != 1:
        raise ValueError("not a round-one envelope of FROST signing")
    g = suite.group
    payload = {
        "hiding": g.base_mul(g.random_scalar(rng)).encode(),
        "binding": g.base_mul(g.random_scalar(rng)).encode(),
    }
    return Envelope(
        envelope.session_id,
        envelope.protocol,
        envelope.round,
        envelope.sender,
        envelope.recipient,
        encode_payload(payload),
    )


def _suite_of(envelope: Envelope) -> Ciphersuite:
    if not envelope.protocol.startswith(FROST_PROTOCOL_PREFIX):
        raise ValueError(f"{envelope.protocol!r} is not FROST signing")
    return suite_by_name(envelope.protocol.removeprefix(FROST_PROTOCOL_PREFIX))


def _signing_view(
    public: PublicKeyPackage, victim: int, suite: Ciphersuite, merkle_root: bytes | None, tweak: bool
) -> tuple[Point, Point, int, int]:
    """``(signing key, victim's signing verification share, a, b)`` with ``s' = a·s + b``.

    For BIP-340 the victim signs with ``s' = ±(±s + t)`` (even y, TapTweak): an
    affine map of its share, read off taproot.signing_key at ``s = 0`` and ``s = 1``.
    """
    if not suite.bip340:
        if merkle_root is not None or not tweak:
            raise ValueError("Taproot options apply only to the frost-taproot scheme")
        return public.group_public_key, public.verification_shares[victim], 1, 0
    views = [
        taproot.signing_key(
            frost.SigningKey(victim, s, public.group_public_key, public.verification_shares), merkle_root, tweak=tweak
        )
        for s in (0, 1)
    ]
    n = suite.group.order
    b = views[0].secret_share
    return views[0].group_public_key, views[0].verification_shares[victim], (views[1].secret_share - b) % n, b


def _solve(rows: list[list[int]], rhs: list[int], n: int) -> list[int]:
    """The unique solution of ``rows·x = rhs`` mod prime ``n`` (more rows than unknowns allowed)."""
    width = len(rows[0])
    m = [[*row, y] for row, y in zip(rows, rhs, strict=True)]
    for col in range(width):
        # Every earlier column has its pivot, so this one's pivot goes in row ``col``.
        pivot = next((r for r in range(col, len(m)) if m[r][col] % n), None)
        if pivot is None:
            raise ExtractionError("the answers are not independent: they do not determine the secret")
        m[col], m[pivot] = m[pivot], m[col]
        inv = pow(m[col][col], -1, n)
        m[col] = [a * inv % n for a in m[col]]
        for r in range(len(m)):
            if r != col and m[r][col] % n:
                f = m[r][col]
                m[r] = [(a - f * p) % n for a, p in zip(m[r], m[col], strict=True)]
    if any(row[width] % n for row in m[width:]):
        raise ExtractionError("the answers are inconsistent: they do not come from one state")
    return [m[k][width] for k in range(width)]


def frost_extract_share(
    public: PublicKeyPackage,
    victim: int,
    message: bytes,
    answers: Sequence[FrostAnswer],
    *,
    merkle_root: bytes | None = None,
    tweak: bool = True,
) -> int:
    """The victim's Shamir share from at least three answers over different commitment lists.

    For each answer the attacker recomputes, as every signer does, the binding
    factor ``ρ_i`` and challenge ``c`` from the commitment list and the message, and
    (BIP-340 only) ``σ = -1`` when ``R`` has odd y, since the victim then negates its
    nonces: ``z = σ·d + σ·ρ_i·e + c·(λ_i·s')``. Solving gives ``d``, ``e`` and the
    share; all three are checked against ``D_i``, ``E_i`` and the verification share.
    ``message``, ``merkle_root`` and ``tweak`` are the session's request.
    """
    if len(answers) < 3:
        raise ExtractionError(f"three unknowns (d, e, s) need three answers, got {len(answers)}")
    suite = _suite_of(answers[0].round2)
    if suite.name != public.scheme:
        raise ValueError(f"the session signs under {suite.name}, the key is {public.scheme}")
    g, n = suite.group, suite.group.order
    key, verification_share, a, b = _signing_view(public, victim, suite, merkle_root, tweak)
    rows, zs = [], []
    own: frost.NonceCommitment | None = None
    participants: set[frozenset[int]] = set()
    for answer in answers:
        r2 = answer.round2
        if r2.round != 2 or r2.sender != victim or r2.protocol != answers[0].round2.protocol:
            raise ExtractionError("an answer is not the victim's round-two broadcast")
        commitments = []
        for env in answer.round1:
            body = _fields(env, {"hiding": bytes, "binding": bytes})
            commitments.append(
                frost.NonceCommitment(env.sender, g.decode_point(body["hiding"]), g.decode_point(body["binding"]))
            )
        mine = [c for c in commitments if c.identifier == victim]
        if len(mine) != 1 or (own is not None and mine[0] != own):
            raise ExtractionError("every answer must hold the victim's one round-one commitment")
        own = mine[0]
        participants.add(frozenset(c.identifier for c in commitments))
        ctx = frost.signing_context(suite, key, commitments, message)
        sigma = -1 if suite.bip340 and isinstance(ctx.R, Secp256k1Point) and not ctx.R.has_even_y else 1
        rows.append([sigma % n, sigma * ctx.rhos[victim] % n, ctx.challenge])
        zs.append(g.decode_scalar(_fields(r2, {"share": bytes, "echo": bytes})["share"]))
    if len(participants) != 1:
        raise ExtractionError("the answers come from different signer sets (so different λ_i)")
    assert own is not None
    d, e, lam_s = _solve(rows, zs, n)
    lam = lagrange_coefficient(sorted(participants.pop()), victim, n)
    signing_share = lam_s * pow(lam, -1, n) % n
    if g.base_mul(d) != own.hiding or g.base_mul(e) != own.binding:
        raise ExtractionError("the solved nonces do not open the victim's commitments")
    if g.base_mul(signing_share) != verification_share:
        raise ExtractionError("the solved share does not match the victim's verification share")
    return (signing_share - b) * pow(a, -1, n) % n
