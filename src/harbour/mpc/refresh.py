"""Proactive refresh: new shares of the same key (Herzberg, Jarecki, Krawczyk and Yung).

Herzberg et al., "Proactive Secret Sharing Or: How to Cope With Perpetual
Leakage" (CRYPTO 1995), section 3: every party deals a random polynomial ``δ_i``
of degree ``t - 1`` with ``δ_i(0) = 0``, with Feldman commitments to its other
coefficients, and each party adds ``Σ_j δ_j(i)`` to its share. The group key
``Σ λ_i x_i`` is unchanged while every share is new, so shares stolen before
the refresh cannot be combined with shares stolen after it.

Rounds (every party of the key takes part; a refresh with someone missing
would leave that party's share on the old polynomial):

1. (broadcast) commitments ``[a_ik·G]`` for ``k = 1..t-1`` (the constant term is
   zero and has no commitment) and the fingerprint of the key being refreshed;
2. (point-to-point) ``δ_i(j)`` with an echo of every round-one message;
3. (local) check each ``δ_j(i)`` against ``j``'s commitments, add them up, and
   move every verification share by the committed amounts.

The output key share drops protocol state that belongs to the old shares (the
threshold-ECDSA pairwise setup) and keeps public key metadata (the chain code).
The coefficients are hedged (crypto/hedge.py) with the old share and the session.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from harbour.crypto.group import Group, GroupError, Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.crypto.shamir import evaluate
from harbour.mpc.ecdsa_setup import EXTENSION as ECDSA_SETUP
from harbour.mpc.ecdsa_setup import key_fingerprint
from harbour.mpc.envelope import Envelope, Party, ProtocolAbort, decode_payload, echoed_shares, encode_payload
from harbour.mpc.keyshare import KeyShare


def zero_commitment_at(group: Group, commitments: Sequence[Point], x: int) -> Point:
    """``Σ_{k≥1} C_k·x^k``: the image of ``δ(x)`` for a polynomial with ``δ(0) = 0``."""
    terms = []
    power = 1
    for c in commitments:
        power = power * x % group.order
        terms.append(c * power)
    return group.sum(terms)


def decode_points(group: Group, sender: int, raw: object, count: int, what: str) -> list[Point]:
    """Exactly ``count`` valid points (a vector of the wrong length is the WSTS bug)."""
    if not isinstance(raw, list) or len(raw) != count or not all(isinstance(p, bytes) for p in raw):
        raise ProtocolAbort([sender], f"{what}: expected exactly {count} encoded points")
    try:
        return [group.decode_point(p) for p in raw]
    except GroupError as exc:
        raise ProtocolAbort([sender], f"{what}: {exc}") from exc


class RefreshParty(Party[KeyShare]):
    """One party of a refresh; ``result`` is its new key share (same group key).

    ``rng`` is the fresh randomness the coefficients are hedged with, together
    with the share, the session and, when given, a per-node ``hedge_key``.
    """

    public_rounds = frozenset({1})  # commitments (and proofs): public by design

    def __init__(
        self,
        session_id: bytes,
        share: KeyShare,
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        super().__init__(session_id, share.identifier)
        self.protocol = f"refresh/{share.scheme}"
        self.share = share
        self.group = share.group
        self._fingerprint = key_fingerprint(share.public)
        self._rng = HedgedRandom(
            f"refresh/party {self.me}/coefficients",
            self.session_id,
            [self.group.encode_scalar(share.secret_share), bytes(hedge_key)],
            fresh=rng,
        )
        self._coefficients: list[int] = []
        self._commitments: dict[int, list[Point]] = {}
        self._round1: dict[int, bytes] = {}
        self._echo = b""
        others = [j for j in share.parties if j != self.me]
        self._expect(1, others, broadcast=True)
        self._expect(2, others, broadcast=False)

    def _on_start(self) -> list[Envelope]:
        g = self.group
        self._coefficients = [0] + [g.random_scalar(self._rng) for _ in range(self.share.threshold - 1)]
        self._commitments[self.me] = [g.base_mul(a) for a in self._coefficients[1:]]
        payload = encode_payload(
            {"key": self._fingerprint, "commitments": [c.encode() for c in self._commitments[self.me]]}
        )
        self._round1[self.me] = payload
        return [self._envelope(1, None, payload)]

    def _on_round(self, rnd: int, envelopes: list[Envelope]) -> list[Envelope]:
        g = self.group
        if rnd == 1:
            for env in envelopes:
                body = decode_payload(env, {"key": bytes, "commitments": list})
                if body["key"] != self._fingerprint:
                    raise ProtocolAbort([], f"party {env.sender} is refreshing a different key (or key state)")
                self._commitments[env.sender] = decode_points(
                    g, env.sender, body["commitments"], self.share.threshold - 1, "refresh commitments"
                )
                self._round1[env.sender] = env.payload
            self._echo = (
                Transcript("harbour/refresh/round1-echo")
                .append("session", self.session_id)
                .append_list("round1", [self._round1[i] for i in self.share.parties])
                .digest()
            )
            return [
                self._envelope(
                    2,
                    j,
                    encode_payload(
                        {"share": g.encode_scalar(evaluate(self._coefficients, j, g.order)), "echo": self._echo}
                    ),
                )
                for j in self.share.parties
                if j != self.me
            ]
        deltas, disagree = echoed_shares(envelopes, g, self._echo, "refresh share")
        if disagree:
            raise ProtocolAbort(
                [], f"parties {disagree} saw different round-one broadcasts than we did: someone equivocated"
            )
        deltas[self.me] = evaluate(self._coefficients, self.me, g.order)
        self._coefficients = []
        bad = [
            j for j in sorted(deltas) if g.base_mul(deltas[j]) != zero_commitment_at(g, self._commitments[j], self.me)
        ]
        if bad:
            raise ProtocolAbort(bad, "refresh share does not match the sender's commitments")
        secret = (self.share.secret_share + sum(deltas.values())) % g.order
        verification = {
            m: self.share.verification_shares[m]
            + g.sum(zero_commitment_at(g, self._commitments[j], m) for j in self.share.parties)
            for m in self.share.parties
        }
        if secret == 0 or verification[self.me] != g.base_mul(secret):
            raise ProtocolAbort([], "our refreshed share does not match the joint commitments")
        extensions = {k: v for k, v in self.share.extensions.items() if k != ECDSA_SETUP}
        new = KeyShare(
            scheme=self.share.scheme,
            curve=self.share.curve,
            threshold=self.share.threshold,
            parties=self.share.parties,
            identifier=self.me,
            secret_share=secret,
            group_public_key=self.share.group_public_key,
            verification_shares=verification,
            extensions=extensions,
        )
        new.public.check_consistent()
        self._finish(new)
        return []
