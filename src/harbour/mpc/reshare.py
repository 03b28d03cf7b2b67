"""Resharing: move a key to a new committee and/or threshold, keeping the group key.

Desmedt and Jajodia's redistribution with Feldman verification, as in Wong, Wang
and Wing, "Verifiable Secret Redistribution for Archive Systems" (IEEE SISW
2002), section 4: a set ``D`` of at least ``t`` old parties ("dealers") each
turn their share into an additive one, ``w_i = λ_i(D)·x_i`` (so ``Σ w_i = sk``),
and deal it to the new committee with a fresh polynomial ``g_i`` of the new
degree ``t' - 1`` and ``g_i(0) = w_i``. New party ``j`` takes
``x'_j = Σ_i g_i(j)``, a share of ``Σ w_i = sk`` on a polynomial of degree
``t' - 1``.

New parties check what they receive against the *old* public key package,
which they hold without any old share: dealer ``i``'s constant commitment must
be ``λ_i(D)·Y_i`` (its old verification share, scaled), so a dealer cannot
deal anything but its true share of the key, and every share must match its
dealer's commitments. The new verification shares and the group key follow
from the summed commitments; the group key is checked to be unchanged.

Rounds:

1. (point-to-point, dealer -> each new party) the dealer's commitments, its
   evaluation ``g_i(j)``, and hashes of the old key and of the new committee;
2. (broadcast, new parties) an echo of every dealer's commitments, so a dealer
   that sent different commitments to different new parties is noticed;
   dealers that are not in the new committee finish here.

Identifiers are one namespace: a party in both committees is one party; a new
party takes an identifier not used by any dealer (it may reuse the identifier of
a retired party that is not dealing).

A dealer's coefficients are hedged (crypto/hedge.py) with its share and with
the session, the old key and the new committee, so a broken generator does not
deal the same polynomial to two committees (whose members together could then
interpolate the dealer's share). A new party draws nothing here.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harbour.crypto.group import Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.crypto.shamir import (
    SharingError,
    check_identifiers,
    check_parameters,
    commitment_at,
    evaluate,
    lagrange_coefficient,
)
from harbour.mpc.ecdsa_setup import key_fingerprint
from harbour.mpc.envelope import Envelope, Party, ProtocolAbort, UsageError, decode_payload, encode_payload
from harbour.mpc.keyshare import KeyShare, PublicKeyPackage, is_own_share
from harbour.mpc.refresh import decode_points


@dataclass(frozen=True)
class ReshareResult:
    """A new party's key share, or ``None`` for a dealer that leaves the committee."""

    share: KeyShare | None = field(repr=False)


def committee_hash(
    threshold: int, parties: Sequence[int], dealers: Sequence[int], metadata: Mapping[str, bytes]
) -> bytes:
    return (
        Transcript("harbour/reshare/committee")
        .append("threshold", threshold)
        .append_list("parties", [i.to_bytes(2, "big") for i in parties])
        .append_list("dealers", [i.to_bytes(2, "big") for i in dealers])
        .append_list("metadata", [k.encode() + b"=" + v for k, v in sorted(metadata.items())])
        .digest()
    )


class ReshareParty(Party[ReshareResult]):
    """A dealer (holds an old share), a new party, or both.

    ``rng`` is the fresh randomness a dealer's coefficients are hedged with,
    together with its share and, when given, a per-node ``hedge_key``. A new
    party draws nothing in this protocol and accepts ``hedge_key`` only so that
    a node can pass the same keywords to every party (its first draws come in
    the ECDSA setup, hedged with its new share).
    """

    def __init__(
        self,
        session_id: bytes,
        me: int,
        public: PublicKeyPackage,
        dealers: Sequence[int],
        new_threshold: int,
        new_parties: Sequence[int],
        *,
        share: KeyShare | None = None,
        metadata: Mapping[str, bytes] | None = None,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        super().__init__(session_id, me)
        try:
            check_parameters(new_threshold, len(new_parties))
            self.new_parties = sorted(check_identifiers(new_parties))
            self.dealers = sorted(check_identifiers(dealers))
        except SharingError as exc:
            raise UsageError(str(exc)) from exc
        if not set(self.dealers) <= set(public.parties):
            raise UsageError("dealers must be parties of the current key")
        if len(self.dealers) < public.threshold:
            raise UsageError(f"resharing needs at least {public.threshold} current parties, got {len(self.dealers)}")
        if me not in self.dealers and me not in self.new_parties:
            raise UsageError(f"party {me} is neither a dealer nor a new party")
        if me in self.dealers and not is_own_share(share, me, public):
            raise UsageError("a dealer needs its own key share of this key")
        self.protocol = f"reshare/{public.scheme}"
        self.public = public
        self.new_threshold = new_threshold
        self.share = share
        self.metadata = dict(metadata or {})
        self._key = key_fingerprint(public)
        self._committee = committee_hash(new_threshold, self.new_parties, self.dealers, self.metadata)
        session = (
            Transcript("harbour/reshare/hedge")
            .append("session", self.session_id)
            .append("key", self._key)
            .append("committee", self._committee)
            .digest()
        )
        secret = [public.group.encode_scalar(share.secret_share) if share is not None else b"", bytes(hedge_key)]
        self._rng = HedgedRandom(f"reshare/party {me}/coefficients", session, secret, fresh=rng)
        self._coefficients: list[int] = []
        self._commitments: dict[int, list[Point]] = {}
        self._shares: dict[int, int] = {}
        self._echo = b""
        is_new = me in self.new_parties
        self._expect(1, [i for i in self.dealers if i != me] if is_new else [], broadcast=False)
        self._expect(2, [j for j in self.new_parties if j != me], broadcast=True)

    def _on_start(self) -> list[Envelope]:
        if self.me not in self.dealers:
            return []
        assert self.share is not None
        g = self.public.group
        weight = lagrange_coefficient(self.dealers, self.me, g.order)
        self._coefficients = [weight * self.share.secret_share % g.order] + [
            g.random_scalar(self._rng) for _ in range(self.new_threshold - 1)
        ]
        commitments = [g.base_mul(a) for a in self._coefficients]
        self._commitments[self.me] = commitments
        out = []
        for j in self.new_parties:
            value = evaluate(self._coefficients, j, g.order)
            if j == self.me:
                self._shares[j] = value
                continue
            payload = {
                "key": self._key,
                "committee": self._committee,
                "commitments": [c.encode() for c in commitments],
                "share": g.encode_scalar(value),
            }
            out.append(self._envelope(1, j, encode_payload(payload)))
        return out

    def _on_round(self, rnd: int, envelopes: list[Envelope]) -> list[Envelope]:
        return self._round1(envelopes) if rnd == 1 else self._round2(envelopes)

    def _round1(self, envelopes: list[Envelope]) -> list[Envelope]:
        if self.me not in self.new_parties:
            self._coefficients = []
            return []
        g = self.public.group
        for env in envelopes:
            i = env.sender
            body = decode_payload(env, {"key": bytes, "committee": bytes, "commitments": list, "share": bytes})
            if body["key"] != self._key or body["committee"] != self._committee:
                raise ProtocolAbort([], f"dealer {i} is resharing another key or to another committee than we are")
            commitments = decode_points(g, i, body["commitments"], self.new_threshold, "resharing commitments")
            expected = self.public.verification_shares[i] * lagrange_coefficient(self.dealers, i, g.order)
            if commitments[0] != expected:
                raise ProtocolAbort([i], "dealt constant term is not the dealer's share of the key")
            try:
                value = g.decode_scalar(body["share"])
            except ValueError as exc:
                raise ProtocolAbort([i], f"invalid resharing share: {exc}") from exc
            if g.base_mul(value) != commitment_at(g, commitments, self.me):
                raise ProtocolAbort([i], "resharing share does not match the dealer's commitments")
            self._commitments[i] = commitments
            self._shares[i] = value
        self._coefficients = []
        self._echo = (
            Transcript("harbour/reshare/echo")
            .append("session", self.session_id)
            .append("key", self._key)
            .append("committee", self._committee)
            .append_list("commitments", [b"".join(c.encode() for c in self._commitments[i]) for i in self.dealers])
            .digest()
        )
        return [self._envelope(2, None, encode_payload({"echo": self._echo}))]

    def _round2(self, envelopes: list[Envelope]) -> list[Envelope]:
        if self.me not in self.new_parties:
            self._finish(ReshareResult(None))
            return []
        disagree = [env.sender for env in envelopes if decode_payload(env, {"echo": bytes})["echo"] != self._echo]
        if disagree:
            raise ProtocolAbort([], f"new parties {disagree} received different dealings than we did")
        g = self.public.group
        summed = [g.sum(self._commitments[i][k] for i in self.dealers) for k in range(self.new_threshold)]
        if summed[0] != self.public.group_public_key:
            raise ProtocolAbort([], "the dealings do not add up to the group key")
        secret = sum(self._shares.values()) % g.order
        verification = {m: commitment_at(g, summed, m) for m in self.new_parties}
        if secret == 0 or verification[self.me] != g.base_mul(secret):
            raise ProtocolAbort([], "our new share does not match the joint commitments")
        self._shares = {}
        share = KeyShare(
            scheme=self.public.scheme,
            curve=self.public.curve,
            threshold=self.new_threshold,
            parties=tuple(self.new_parties),
            identifier=self.me,
            secret_share=secret,
            group_public_key=self.public.group_public_key,
            verification_shares=verification,
            extensions=self.metadata,
        )
        share.public.check_consistent()
        self._finish(ReshareResult(share))
        return []
