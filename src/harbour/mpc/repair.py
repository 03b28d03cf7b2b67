"""Share repair: a party that lost its share gets it back from ``t`` helpers.

The enrollment ("repairable threshold scheme") protocol of Laing and Stinson,
"A Survey and Refinement of Repairable Threshold Schemes" (Journal of
Mathematical Cryptology 2018, eprint 2017/1155), section 4, as used by the
Zcash Foundation's FROST ``repair_share``: with ``H`` the ``t`` helpers and ``ℓ``
the lost identifier,

1. each helper ``i`` computes ``c_i = λ_i(H; ℓ)·x_i`` (the Lagrange coefficient
   for evaluating at ``ℓ``, so ``Σ c_i = f(ℓ)``), splits it into ``t`` random
   additive pieces ``δ_i→j`` and sends one to every other helper;
2. each helper ``j`` sends ``σ_j = Σ_i δ_i→j`` to the lost party;
3. the lost party sets ``x_ℓ = Σ_j σ_j`` and checks it against its public
   verification share ``Y_ℓ``, which it holds from the public key package.

No one reconstructs the key: helpers see only random pieces, the lost party
only sums that add up to its own share. A wrong piece is caught by the check in
step 3, but cannot be attributed to a helper. A helper's pieces are hedged
(crypto/hedge.py) with its share, the session, the key, the helper set and the
lost party; the lost party draws nothing.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harbour.crypto.group import GroupError, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.crypto.shamir import SharingError, check_identifiers
from harbour.mpc.ecdsa_setup import key_fingerprint
from harbour.mpc.envelope import Envelope, Party, ProtocolAbort, UsageError, decode_payload, encode_payload
from harbour.mpc.keyshare import KeyShare, PublicKeyPackage, is_own_share


def lagrange_at(ids: Sequence[int], i: int, x: int, order: int) -> int:
    """``λ_i(x) = Π_{j≠i} (x - j)/(i - j)``: the weight of ``f(i)`` in ``f(x)``."""
    num, den = 1, 1
    for j in ids:
        if j != i:
            num = num * (x - j) % order
            den = den * (i - j) % order
    return num * pow(den, -1, order) % order


@dataclass(frozen=True)
class RepairResult:
    """The repaired share for the lost party; ``None`` for a helper."""

    share: KeyShare | None = field(repr=False)


class RepairParty(Party[RepairResult]):
    """A helper (holds its share) or the party being repaired (holds only public data).

    ``rng`` is the fresh randomness a helper's pieces are hedged with, together
    with its share and, when given, a per-node ``hedge_key``.
    """

    def __init__(
        self,
        session_id: bytes,
        me: int,
        public: PublicKeyPackage,
        helpers: Sequence[int],
        lost: int,
        *,
        share: KeyShare | None = None,
        metadata: Mapping[str, bytes] | None = None,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        super().__init__(session_id, me)
        try:
            self.helpers = sorted(check_identifiers(helpers))
        except SharingError as exc:
            raise UsageError(str(exc)) from exc
        if len(self.helpers) != public.threshold:
            raise UsageError(f"repair needs exactly {public.threshold} helpers, got {len(self.helpers)}")
        if not set(self.helpers) <= set(public.parties) or lost not in public.parties:
            raise UsageError("helpers and the lost party must be parties of the key")
        if lost in self.helpers:
            raise UsageError("the lost party cannot help repair itself")
        if me not in self.helpers and me != lost:
            raise UsageError(f"party {me} is neither a helper nor the lost party")
        if me in self.helpers and not is_own_share(share, me, public):
            raise UsageError("a helper needs its own key share of this key")
        self.protocol = f"repair/{public.scheme}"
        self.public = public
        self.lost = lost
        self.share = share
        self.metadata = dict(metadata or {})
        self._context = (
            Transcript("harbour/repair/context")
            .append("key", key_fingerprint(public))
            .append_list("helpers", [i.to_bytes(2, "big") for i in self.helpers])
            .append("lost", lost)
            .digest()
        )
        secret = [public.group.encode_scalar(share.secret_share) if share is not None else b"", bytes(hedge_key)]
        session = Transcript("harbour/repair/hedge").append("session", self.session_id).append("context", self._context)
        self._rng = HedgedRandom(f"repair/party {me}/pieces", session.digest(), secret, fresh=rng)
        self._own_piece = 0
        if me in self.helpers:
            self._expect(1, [i for i in self.helpers if i != me], broadcast=False)
            self._expect(2, [], broadcast=False)
        else:
            self._expect(1, [], broadcast=False)
            self._expect(2, self.helpers, broadcast=False)

    def _on_start(self) -> list[Envelope]:
        if self.me == self.lost:
            return []
        assert self.share is not None
        g = self.public.group
        c = lagrange_at(self.helpers, self.me, self.lost, g.order) * self.share.secret_share % g.order
        others = [j for j in self.helpers if j != self.me]
        pieces = [g.random_scalar(self._rng) for _ in others]
        self._own_piece = (c - sum(pieces)) % g.order
        return [
            self._envelope(1, j, encode_payload({"context": self._context, "piece": g.encode_scalar(p)}))
            for j, p in zip(others, pieces, strict=True)
        ]

    def _on_round(self, rnd: int, envelopes: list[Envelope]) -> list[Envelope]:
        g = self.public.group
        if rnd == 1:
            if self.me == self.lost:
                return []
            total = self._own_piece
            for env in envelopes:
                total += self._scalar(env, "piece")
            self._own_piece = 0
            payload = encode_payload({"context": self._context, "sum": g.encode_scalar(total % g.order)})
            return [self._envelope(2, self.lost, payload)]
        if self.me != self.lost:
            self._finish(RepairResult(None))
            return []
        secret = sum(self._scalar(env, "sum") for env in envelopes) % g.order
        if g.base_mul(secret) != self.public.verification_shares[self.lost]:
            raise ProtocolAbort([], "the repaired share does not match our verification share (a helper lied)")
        share = KeyShare(
            scheme=self.public.scheme,
            curve=self.public.curve,
            threshold=self.public.threshold,
            parties=self.public.parties,
            identifier=self.lost,
            secret_share=secret,
            group_public_key=self.public.group_public_key,
            verification_shares=dict(self.public.verification_shares),
            extensions=self.metadata,
        )
        self._finish(RepairResult(share))
        return []

    def _scalar(self, env: Envelope, name: str) -> int:
        body = decode_payload(env, {"context": bytes, name: bytes})
        if body["context"] != self._context:
            raise ProtocolAbort([], f"party {env.sender} is repairing another key, party or helper set")
        try:
            return self.public.group.decode_scalar(body[name])
        except GroupError as exc:
            raise ProtocolAbort([env.sender], f"invalid repair {name}: {exc}") from exc
