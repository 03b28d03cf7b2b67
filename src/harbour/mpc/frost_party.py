"""A FROST signer as a sans-I/O party: two broadcast rounds, every signer aggregates.

Round 1: each signer broadcasts its nonce commitments ``(D_i, E_i)``.
Round 2: with every commitment in hand, each signer computes the binding factors,
the group commitment and its signature share, and broadcasts the share together
with an echo: a transcript hash of the commitment list it used (the RFC's
``encoded_commitment_hash``), the message and the signing key (which carries the
Taproot tweak). The echo makes equivocation visible: a signer that sent
different commitments to different signers, or signers handed different
messages or keys, make those hashes differ, and the session aborts before anyone
blames an honest signer for a share computed over different inputs. Each signer then aggregates, verifies the signature
against the group key and, only if it fails, checks shares one by one to name
the culprits (RFC 9591 section 5.4). A signature is never released unverified.

This is the coordinator-free arrangement of RFC 9591 section 5: broadcast takes
the Coordinator's place and every signer acts as the Signature Aggregator.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from harbour.crypto.group import GroupError, Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.mpc import frost, taproot
from harbour.mpc.ciphersuite import Ciphersuite, suite_by_name
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


def signing_key_for(suite: Ciphersuite, share: KeyShare, merkle_root: bytes | None, tweak: bool) -> frost.SigningKey:
    """The key a signer signs with under ``suite`` (even-y and tweaked for Taproot)."""
    base = frost.SigningKey(share.identifier, share.secret_share, share.group_public_key, share.verification_shares)
    if suite.bip340:
        return taproot.signing_key(base, merkle_root, tweak=tweak)
    if merkle_root is not None or not tweak:
        raise UsageError("Taproot tweak options apply only to the frost-taproot scheme")
    return base


def signing_public_key(
    suite: Ciphersuite, group_public_key: Point, merkle_root: bytes | None = None, tweak: bool = True
) -> Point:
    """The key a signature under ``suite`` verifies against (the output key for Taproot)."""
    if suite.bip340:
        return taproot.output_key(group_public_key, merkle_root) if tweak else taproot.even_y(group_public_key)
    return group_public_key


class FrostSigner(Party[bytes]):
    """One signer of one FROST signing session; ``result`` is the verified signature.

    ``signers`` is any subset of the key's parties with at least ``threshold``
    members, ``me`` among them. For ``frost-taproot`` the signature verifies
    against the BIP-341 output key (``merkle_root`` is the script-tree root, None
    for key-path only); ``tweak=False`` signs plain BIP-340 under the internal key.

    Nonces are RFC 9591 section 4.1's ``H3(random_bytes(32) ‖ SerializeScalar(sk))``,
    with ``random_bytes`` itself hedged (:class:`~harbour.crypto.hedge.HedgedRandom`)
    over the session, the signer set, the message and, when given, a per-node
    ``hedge_key``: RFC 9591's derivation alone depends on the share and the random
    bytes only, so a generator that repeats its output would repeat nonces across
    sessions and give the share away; hedged, a repeated output still meets another
    session or message. ``rng`` is the fresh randomness.
    """

    public_rounds = frozenset({1})  # commitments (and proofs): public by design

    def __init__(
        self,
        session_id: bytes,
        share: KeyShare,
        signers: Sequence[int],
        message: bytes,
        *,
        merkle_root: bytes | None = None,
        tweak: bool = True,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        super().__init__(session_id, share.identifier)
        self.suite = suite_by_name(share.scheme)
        self.protocol = f"frost-sign/{self.suite.name}"
        signer_set = sorted(set(signers))
        if len(signer_set) != len(signers):
            raise UsageError("duplicate signer identifiers")
        if not set(signer_set) <= set(share.parties):
            raise UsageError("signers must be parties of the key")
        if len(signer_set) < share.threshold:
            raise UsageError(f"need at least {share.threshold} signers, got {len(signer_set)}")
        if share.identifier not in signer_set:
            raise UsageError("this party is not one of the signers")
        if self.suite.group.name != share.curve:
            raise UsageError(f"a {share.curve} key share cannot sign under {self.suite.name}")
        self.signers = signer_set
        self.message = bytes(message)
        self.key = signing_key_for(self.suite, share, merkle_root, tweak)
        context = (
            Transcript("harbour/frost/nonce-context")
            .append("session", self.session_id)
            .append_list("signers", [i.to_bytes(2, "big") for i in signer_set])
            .append("message", self.message)
            .append("key", self.key.group_public_key.encode())
            .digest()
        )
        self._rng = HedgedRandom(f"frost/party {self.me}/nonces", context, [bytes(hedge_key)], fresh=rng)
        self._nonces: frost.SigningNonces | None = None
        self._ctx: frost.SigningContext | None = None
        self._shares: dict[int, int] = {}
        self._echo = b""
        others = [i for i in signer_set if i != self.me]
        self._expect(1, others, broadcast=True)
        self._expect(2, others, broadcast=True)

    def _on_start(self) -> list[Envelope]:
        self._nonces = frost.commit(self.suite, self.me, self.key.secret_share, self._rng)
        c = self._nonces.commitment
        return [self._envelope(1, None, encode_payload({"hiding": c.hiding.encode(), "binding": c.binding.encode()}))]

    def _on_round(self, rnd: int, envelopes: list[Envelope]) -> list[Envelope]:
        return self._round1(envelopes) if rnd == 1 else self._round2(envelopes)

    def _round1(self, envelopes: list[Envelope]) -> list[Envelope]:
        assert self._nonces is not None
        g = self.suite.group
        commitments = [self._nonces.commitment]
        for env in envelopes:
            body = decode_payload(env, {"hiding": bytes, "binding": bytes})
            try:
                hiding, binding = g.decode_point(body["hiding"]), g.decode_point(body["binding"])
            except GroupError as exc:
                raise ProtocolAbort([env.sender], f"invalid nonce commitment: {exc}") from exc
            commitments.append(frost.NonceCommitment(env.sender, hiding, binding))
        self._ctx = frost.signing_context(self.suite, self.key.group_public_key, commitments, self.message)
        # sign_share consumes the nonces before the share exists, let alone leaves us.
        z = frost.sign_share(self.suite, self.key, self._nonces, self._ctx)
        self._shares[self.me] = z
        self._echo = self._echo_digest()
        payload = encode_payload({"share": g.encode_scalar(z), "echo": self._echo})
        return [self._envelope(2, None, payload)]

    def _echo_digest(self) -> bytes:
        """What every signer must agree on before a share is blamed: list, message and key."""
        assert self._ctx is not None
        return (
            Transcript("harbour/frost/round2-echo")
            .append("session", self.session_id)
            .append("scheme", self.suite.name)
            .append("commitments", self._ctx.commitments_hash)
            .append("message", self.message)
            .append("key", self.key.group_public_key.encode())
            .digest()
        )

    def _round2(self, envelopes: list[Envelope]) -> list[Envelope]:
        assert self._ctx is not None
        g = self.suite.group
        shares, disagree = echoed_shares(envelopes, g, self._echo, "signature share")
        self._shares.update(shares)
        if disagree:
            raise ProtocolAbort(
                [],
                f"signers {disagree} signed over different round-one commitments, message or key than ours: "
                "a signer equivocated in round one or the signers were given different requests "
                "(who is at fault cannot be told without signed broadcast)",
            )
        self._aggregate()
        return []

    def _aggregate(self) -> None:
        assert self._ctx is not None
        sig = frost.aggregate(
            self.suite, self._ctx, self._shares, self.key.group_public_key, self.key.verification_shares, self.message
        )
        self._finish(sig)
