"""Distributed key generation: Pedersen's DKG with Schnorr proofs of knowledge.

This is KeyGen of the FROST paper (Komlo and Goldberg, "FROST: Flexible
Round-Optimized Schnorr Threshold Signatures", SAC 2020, figure 1), arranged in
the rounds of the Zcash Foundation's implementation:

1. (broadcast) each party ``i`` picks a random polynomial ``f_i`` of degree
   ``t - 1``, broadcasts the Feldman commitments ``C_i = [a_ik·G]`` and a Schnorr
   proof of knowledge of ``a_i0`` (which stops rogue-key attacks).
2. (point-to-point) after checking every commitment vector and proof, party ``i``
   sends ``f_i(j)`` to each party ``j``, together with a hash of every round-one
   message it received (an echo, so a party that broadcast different commitments
   to different parties is noticed).
3. (local) each party checks every received share against its sender's
   commitments and sums them into its signing share ``x_i = Σ_j f_j(i)``.

Anyone failing a check is named in the :class:`ProtocolAbort`. The output is a
scheme-independent :class:`KeyShare`: the same Shamir sharing serves FROST,
Taproot and threshold ECDSA. The proof-of-knowledge challenge is the Zcash
Foundation's ``HDKG(id || C_i0 || R)`` followed by a transcript of the session id,
scheme, threshold and party list, so a proof cannot be replayed into another
session (an empty ``context`` reproduces the published vectors).

The polynomial coefficients are hedged (crypto/hedge.py) with the session
context, the party and, when given, a per-node ``hedge_key``: a participant has
no key share yet, so without that key a broken generator leaves its
coefficients predictable to anyone who knows the session (though still distinct
per session and party). The proof nonce is hedged with the coefficient it proves.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import replace

from harbour.crypto.group import Group, GroupError, Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.crypto.shamir import check_identifiers, check_parameters, commit, commitment_at, evaluate
from harbour.mpc.ciphersuite import Ciphersuite, SignatureError
from harbour.mpc.envelope import (
    Envelope,
    Party,
    ProtocolAbort,
    UsageError,
    decode_payload,
    echoed_shares,
    encode_payload,
)
from harbour.mpc.keyshare import KeyShare


def chain_code(echo: bytes) -> bytes:
    """The BIP-32 chain code of a new key: a hash of every round-one broadcast.

    Every party computes the same value (the echo check makes sure they saw the
    same broadcasts) and nobody chooses it alone. It is public (it is part of the
    xpub); it only has to be fixed with the key, so that child keys are.
    """
    return Transcript("harbour/hd/chain-code").append("dkg-round1", echo).digest()[:32]


def session_context(session_id: bytes, scheme: str, threshold: int, parties: Sequence[int]) -> bytes:
    """What a proof of knowledge is bound to besides the prover and its key."""
    return (
        Transcript("harbour/dkg/pok-context")
        .append("session", session_id)
        .append("scheme", scheme)
        .append("threshold", threshold)
        .append_list("parties", [i.to_bytes(2, "big") for i in parties])
        .digest()
    )


def pok_challenge(suite: Ciphersuite, identifier: int, C0: Point, R: Point, context: bytes) -> int:
    g = suite.group
    return suite.HDKG(g.encode_scalar(identifier) + C0.encode() + R.encode() + context)


def prove_knowledge(
    suite: Ciphersuite, identifier: int, a0: int, context: bytes, rng: RandomBytes = secrets.token_bytes
) -> bytes:
    """``σ = (R, μ)`` with ``R = k·G``, ``μ = k + a0·c`` (FROST paper, round 1 step 2).

    ``k`` is hedged with ``a0``, the prover and ``context``, so a broken ``rng``
    can only repeat it where the challenge repeats too (same key, prover and
    session): never two challenges under one nonce, which would reveal ``a0``.
    """
    g = suite.group
    hedged = HedgedRandom(f"dkg/proof of knowledge/party {identifier}", context, [g.encode_scalar(a0)], fresh=rng)
    k, R = suite.generate_nonce(hedged)
    C0 = suite.group.base_mul(a0)
    c = pok_challenge(suite, identifier, C0, R, context)
    return suite.encode_signature(R, (k + a0 * c) % suite.group.order)


def verify_knowledge(suite: Ciphersuite, identifier: int, C0: Point, proof: bytes, context: bytes) -> bool:
    """``R == μ·G - c·C0`` (FROST paper, round 1 step 5)."""
    try:
        R, mu = suite.decode_signature(proof)
    except SignatureError:
        return False
    c = pok_challenge(suite, identifier, C0, R, context)
    return suite.group.base_mul(mu) - C0 * c == R


def decode_commitments(group: Group, sender: int, raw: Sequence[object], threshold: int) -> list[Point]:
    """A commitment vector of exactly ``threshold`` valid, non-identity points.

    A longer vector would silently raise the threshold of the resulting key (the
    bug found in WSTS): it is refused, naming the sender.
    """
    if len(raw) != threshold:
        raise ProtocolAbort(
            [sender], f"commitment vector has {len(raw)} elements; a {threshold}-of-n key needs exactly {threshold}"
        )
    out = []
    for item in raw:
        if not isinstance(item, bytes):
            raise ProtocolAbort([sender], "commitment is not a byte string")
        try:
            out.append(group.decode_point(item))
        except GroupError as exc:
            raise ProtocolAbort([sender], f"invalid commitment: {exc}") from exc
    return out


def finalize(
    suite: Ciphersuite,
    me: int,
    threshold: int,
    parties: Sequence[int],
    commitments: Mapping[int, Sequence[Point]],
    shares: Mapping[int, int],
    scheme: str | None = None,
) -> KeyShare:
    """Round 3: check each received share ``f_j(me)`` against ``C_j``; build the key share.

    ``commitments`` and ``shares`` hold every party's entry, our own included.
    """
    g = suite.group
    bad = [j for j in sorted(shares) if g.base_mul(shares[j]) != commitment_at(g, commitments[j], me)]
    if bad:
        raise ProtocolAbort(bad, "secret share does not match the sender's commitments")
    secret = sum(shares.values()) % g.order
    summed = [g.sum(commitments[j][k] for j in parties) for k in range(threshold)]
    public_key = summed[0]
    if public_key.is_identity() or secret == 0:
        raise ProtocolAbort([], "degenerate key (the identity); run the key generation again")
    verification = {m: commitment_at(g, summed, m) for m in parties}
    if verification[me] != g.base_mul(secret):
        raise ProtocolAbort([], "our signing share does not match the joint commitments")
    return KeyShare(
        scheme=scheme or suite.name,
        curve=g.name,
        threshold=threshold,
        parties=tuple(parties),
        identifier=me,
        secret_share=secret,
        group_public_key=public_key,
        verification_shares=verification,
    )


class DkgParty(Party[KeyShare]):
    """One party of a t-of-n distributed key generation; ``result`` is its KeyShare.

    ``rng`` is the fresh randomness the coefficients are hedged with.
    ``hedge_key`` is a secret of the party's own (a signer node passes a
    per-node key): a participant holds no share yet, and without it the hedge
    binds only the session, the party and the purpose, which do not stop a
    broken generator from making the coefficients predictable.
    """

    public_rounds = frozenset({1})  # commitments (and proofs): public by design

    def __init__(
        self,
        suite: Ciphersuite,
        session_id: bytes,
        me: int,
        threshold: int,
        parties: Sequence[int],
        *,
        scheme: str | None = None,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        super().__init__(session_id, me)
        try:
            check_parameters(threshold, len(parties))
            self.parties = sorted(check_identifiers(parties))
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        if me not in self.parties:
            raise UsageError(f"party {me} is not one of the parties")
        self.suite = suite
        self.scheme = scheme or suite.name
        self.protocol = f"dkg/{self.scheme}"
        self.threshold = threshold
        self._context = session_context(self.session_id, self.scheme, threshold, self.parties)
        self._rng = HedgedRandom(f"dkg/party {me}", self._context, [bytes(hedge_key)], fresh=rng)
        self._coefficients: list[int] = []
        self._commitments: dict[int, list[Point]] = {}
        self._round1_payloads: dict[int, bytes] = {}
        self._echo = b""
        others = [i for i in self.parties if i != me]
        self._expect(1, others, broadcast=True)
        self._expect(2, others, broadcast=False)

    def _on_start(self) -> list[Envelope]:
        g = self.suite.group
        self._coefficients = [g.random_scalar(self._rng) for _ in range(self.threshold)]
        self._commitments[self.me] = commit(g, self._coefficients)
        proof = prove_knowledge(self.suite, self.me, self._coefficients[0], self._context, self._rng)
        payload = encode_payload({"commitments": [c.encode() for c in self._commitments[self.me]], "pok": proof})
        self._round1_payloads[self.me] = payload
        return [self._envelope(1, None, payload)]

    def _on_round(self, rnd: int, envelopes: list[Envelope]) -> list[Envelope]:
        return self._round1(envelopes) if rnd == 1 else self._round2(envelopes)

    def _round1(self, envelopes: list[Envelope]) -> list[Envelope]:
        g = self.suite.group
        for env in envelopes:
            body = decode_payload(env, {"commitments": list, "pok": bytes})
            commitments = decode_commitments(g, env.sender, body["commitments"], self.threshold)
            if not verify_knowledge(self.suite, env.sender, commitments[0], body["pok"], self._context):
                raise ProtocolAbort([env.sender], "invalid proof of knowledge of the secret coefficient")
            self._commitments[env.sender] = commitments
            self._round1_payloads[env.sender] = env.payload
        self._echo = (
            Transcript("harbour/dkg/round1-echo")
            .append("context", self._context)
            .append_list("round1", [self._round1_payloads[i] for i in self.parties])
            .digest()
        )
        out = []
        for j in self.parties:
            if j != self.me:
                share = g.encode_scalar(evaluate(self._coefficients, j, g.order))
                out.append(self._envelope(2, j, encode_payload({"share": share, "echo": self._echo})))
        return out

    def _round2(self, envelopes: list[Envelope]) -> list[Envelope]:
        g = self.suite.group
        shares, disagree = echoed_shares(envelopes, g, self._echo, "secret share")
        shares[self.me] = evaluate(self._coefficients, self.me, g.order)
        if disagree:
            raise ProtocolAbort(
                [],
                f"parties {disagree} saw different round-one broadcasts than we did: "
                "someone equivocated (not attributable without signed broadcast)",
            )
        share = finalize(self.suite, self.me, self.threshold, self.parties, self._commitments, shares, self.scheme)
        self._coefficients = []
        self._finish(replace(share, extensions={"chain_code": chain_code(self._echo)}))
        return []
