"""Threshold ECDSA signing in three rounds: protocol 3.6 of DKLs23.

Doerner, Kondi, Lee and shelat, "Threshold ECDSA in Three Rounds" (IEEE S&P 2024,
eprint 2023/765), section 3, protocol 3.6, for a signing set ``S`` of ``t`` parties
holding Shamir shares ``x_i`` of the key (mpc/dkg.py) and the pairwise setup of
mpc/ecdsa_setup.py. With ``r = Σ r_i`` the instance key (the ECDSA nonce) and
``φ = Σ φ_i`` a random mask, the parties compute additive shares ``u_i`` of ``r·φ``
and ``v_i`` of ``sk·φ`` with one random vector OLE per ordered pair
(mpc/vole.py), so that ``s = Σ w_i / Σ u_i = (e + r_x·sk)/r`` with
``w_i = e·φ_i + r_x·v_i``.

Round 1 (to each ``j``): a hash of the session's inputs (key, signer set,
digest: compared first, so parties handed different requests abort without
blaming each other), a commitment to ``R_i = r_i·G`` (the same to everyone) and
Bob's first multiplication message for the pair in which ``i`` is Bob; Bob's
random input is ``χ_ij``.

Round 2 (to each ``j``): ``sk_i = λ_i·x_i + ζ_i`` (``ζ_i`` a zero-share from the
pairwise seeds, functionality 3.4), ``pk_i = sk_i·G``; Alice's answer for input
``(r_i, sk_i)`` with output ``(c^u_ij, c^v_ij)``; ``Γ^u_ij = c^u_ij·G``,
``Γ^v_ij = c^v_ij·G``; ``ψ_ij = φ_i - χ_ij``; the opening of ``R_i``; ``pk_i``; and
an echo: a hash of the session, its inputs and every round-1 commitment, so
that a party who committed differently to different parties is caught before
any signature share is sent.

Round 3 (broadcast), after these checks, each naming the peer at fault:
the echo matches; ``R_j`` opens its commitment; Bob's multiplication check
passes; ``χ_ij·R_j - Γ^u_ji = d^u_ij·G`` and ``χ_ij·pk_j - Γ^v_ji = d^v_ij·G`` (the
second as corrected by the authors: ``pk_j``, not ``pk_i``); and ``Σ_j pk_j = PK``.
Then ``R = Σ R_j``, ``r_x = R.x mod q``,
``u_i = r_i·(φ_i + Σ_j ψ_ji) + Σ_j (c^u_ij + d^u_ij)``, likewise ``v_i`` with
``sk_i``, and ``w_i = e·φ_i + r_x·v_i``; the party broadcasts ``(u_i, w_i)``.

Every party then computes ``s = Σ w / Σ u``, normalises to low-s with the
recovery id and verifies the signature against the group key before releasing
it. The instance secrets are single-use: the party object produces each round
once and forgets them when it finishes or aborts. They are hedged
(crypto/hedge.py): ``r_i``, ``φ_i``, the salt and every multiplication's draws
depend on fresh randomness, the key share and the session (id, key, signer set
and digest), so a broken generator cannot repeat an instance key across
sessions or make it predictable to anyone without the share.

A share whose setup with a co-signer is marked compromised
(:func:`~harbour.mpc.ecdsa_setup.mark_compromised`) is refused at construction.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

from harbour.crypto import ecdsa
from harbour.crypto.group import GroupError, Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.crypto.shamir import lagrange_coefficient
from harbour.mpc.ecdsa_setup import SCHEME, EcdsaSetup, key_fingerprint, setup_of
from harbour.mpc.envelope import Envelope, Party, ProtocolAbort, UsageError, decode_payload, encode_payload
from harbour.mpc.keyshare import KeyShare, KeyShareError
from harbour.mpc.ot_extension import KosCheckFailed
from harbour.mpc.vole import VoleAlice, VoleBob, VoleError

G = SECP256K1
Q = G.order
_ROUND2 = {
    "vole": bytes,
    "gamma_u": bytes,
    "gamma_v": bytes,
    "psi": bytes,
    "instance_point": bytes,
    "salt": bytes,
    "pk": bytes,
    "echo": bytes,
}


def _vole_context(session: bytes, bob: int, alice: int) -> bytes:
    return (
        Transcript("harbour/ecdsa/sign/vole")
        .append("session", session)
        .append("bob", bob)
        .append("alice", alice)
        .digest()
    )


def _commitment(session: bytes, owner: int, point: bytes, salt: bytes) -> bytes:
    return (
        Transcript("harbour/ecdsa/sign/instance-commitment")
        .append("session", session)
        .append("owner", owner)
        .append("point", point)
        .append("salt", salt)
        .digest()
    )


def _zero_share(seed: bytes, session: bytes) -> int:
    raw = hashlib.shake_256(b"harbour/ecdsa/zero-share" + seed + session).digest(48)
    return int.from_bytes(raw, "big") % Q


class SetupCompromised(ProtocolAbort):
    """A peer's OT-extension message failed the KOS check: the pairwise setup may be leaking.

    A cheating Bob can make the check's outcome depend on one bit of the honest
    Alice's long-term ``Δ`` per session (KOS15 selective failure); a correct guess
    passes unnoticed. Signing on must stop for ``peers`` until the pairwise setup is
    replaced (a refresh re-runs it), or the bits add up session after session. The
    caller persists this, best inside the share itself
    (:func:`~harbour.mpc.ecdsa_setup.mark_compromised`: ``party``'s share marks
    ``peers``), as the key-file CLI does; a marked share refuses to sign.
    ``party`` is the signer whose check failed, when known.
    """

    def __init__(self, peers: frozenset[int], reason: str, *, party: int | None = None) -> None:
        super().__init__(peers, reason)
        self.peers = peers
        self.party = party


def setup_tag(zero_seed: bytes) -> bytes:
    """A public tag of one pair's setup: both sides compute it, a stale copy differs."""
    return hashlib.sha256(b"harbour/ecdsa/setup-tag" + zero_seed).digest()


@dataclass
class _Instance:
    """The per-session secrets; cleared as soon as the last value that uses them is out."""

    r: int = field(repr=False)
    phi: int = field(repr=False)
    salt: bytes = field(repr=False)
    sk: int = field(default=0, repr=False)


class EcdsaSigner(Party[ecdsa.EcdsaSignature]):
    """One signer of one DKLs23 session; ``result`` is the verified, low-s signature.

    ``rng`` is the fresh randomness every draw is hedged with; ``hedge_key``, a
    per-node secret, is mixed in as well when given (the share already is).
    ``setup`` is the share's pairwise setup already decoded, used only if it was
    decoded from exactly the share's bytes (:func:`~harbour.mpc.ecdsa_setup.setup_of`).
    """

    def __init__(
        self,
        session_id: bytes,
        share: KeyShare,
        signers: Sequence[int],
        digest: bytes,
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
        setup: EcdsaSetup | None = None,
    ) -> None:
        super().__init__(session_id, share.identifier)
        if share.scheme != SCHEME:
            raise UsageError(f"threshold ECDSA needs an {SCHEME} key share, not {share.scheme}")
        if len(digest) != ecdsa.DIGEST_LEN:
            raise UsageError("ECDSA signs a 32-byte digest (hash the message first)")
        ids = sorted(signers)
        if len(set(ids)) != len(ids):
            raise UsageError("duplicate signers")
        if len(ids) != share.threshold:
            raise UsageError(f"this key signs with exactly {share.threshold} parties, got {len(ids)}")
        if not set(ids) <= set(share.parties) or share.identifier not in ids:
            raise UsageError("signers must be parties of the key, including this one")
        try:
            self.setup = setup_of(share, setup)
        except KeyShareError as exc:
            raise UsageError(str(exc)) from exc
        marked = sorted(self.setup.compromised & set(ids))
        if marked:
            raise UsageError(
                f"party {share.identifier}'s pairwise setup with parties {marked} is marked compromised "
                "(a failed KOS check): refresh the key before signing with them"
            )
        self.protocol = f"sign/{SCHEME}"
        self.share = share
        self.signers = ids
        self.peers = [j for j in ids if j != self.me]
        self.digest = bytes(digest)
        self._rng = rng
        self._hedge_secret = [G.encode_scalar(share.secret_share), bytes(hedge_key)]
        self._fingerprint = key_fingerprint(share.public)
        # Everything the session is about, hashed once: part of every vOLE context
        # and of the echo, so a message from another session, key, signer set or
        # digest fails a check instead of mixing in.
        self._inputs = (
            Transcript("harbour/ecdsa/sign/inputs")
            .append("key", self._fingerprint)
            .append_list("signers", [i.to_bytes(2, "big") for i in ids])
            .append("digest", self.digest)
            .digest()
        )
        self._session = (
            Transcript("harbour/ecdsa/sign/session")
            .append("session", self.session_id)
            .append("inputs", self._inputs)
            .digest()
        )
        self._instance: _Instance | None = None
        self._bobs: dict[int, VoleBob] = {}
        self._commitments: dict[int, bytes] = {}
        self._c: dict[int, tuple[int, ...]] = {}
        self._echo = b""
        self._points: dict[int, Point] = {}
        self._u_w: tuple[int, int] | None = None
        self._expect(1, self.peers, broadcast=False)
        self._expect(2, self.peers, broadcast=False)
        self._expect(3, self.peers, broadcast=True)

    def _hedged(self, purpose: str) -> HedgedRandom:
        """A source bound to the share and to ``_session`` (id, key, signers, digest)."""
        label = f"ecdsa-sign/party {self.me}/{purpose}"
        return HedgedRandom(label, self._session, self._hedge_secret, fresh=self._rng)

    # -- round 1 ---------------------------------------------------------------------
    def _on_start(self) -> list[Envelope]:
        rng = self._hedged("instance")
        inst = _Instance(r=G.random_scalar(rng), phi=G.random_scalar(rng), salt=rng(32))
        self._instance = inst
        R = G.base_mul(inst.r)
        self._points[self.me] = R
        commitment = _commitment(self._session, self.me, R.encode(), inst.salt)
        self._commitments[self.me] = commitment
        out = []
        for j in self.peers:
            bob = VoleBob(
                self.setup.peers[j].as_bob, _vole_context(self._session, self.me, j), self._hedged(f"bob with {j}")
            )
            self._bobs[j] = bob
            payload = {
                "inputs": self._inputs,
                "setup": setup_tag(self.setup.peers[j].zero_seed),
                "commitment": commitment,
                "vole": bob.message1(),
            }
            out.append(self._envelope(1, j, encode_payload(payload)))
        return out

    def _on_round(self, rnd: int, envelopes: list[Envelope]) -> list[Envelope]:
        if rnd == 1:
            return self._round2(envelopes)
        if rnd == 2:
            return self._round3(envelopes)
        self._aggregate(envelopes)
        return []

    def _on_abort(self) -> None:
        # An aborted session is dead (the base class refuses every further call);
        # its secrets are dropped too, whatever the abort came from.
        self._forget()

    def _forget(self) -> None:
        self._instance = None
        self._bobs, self._c = {}, {}

    # -- round 2 ---------------------------------------------------------------------
    def _round2(self, envelopes: list[Envelope]) -> list[Envelope]:
        inst = self._take()
        bodies = [
            decode_payload(env, {"inputs": bytes, "setup": bytes, "commitment": bytes, "vole": bytes})
            for env in envelopes
        ]
        # Checked before any multiplication: a peer handed another digest, signer set or
        # key would otherwise fail the OT-extension check and be blamed for it.
        different = [env.sender for env, body in zip(envelopes, bodies, strict=True) if body["inputs"] != self._inputs]
        if different:
            raise ProtocolAbort(
                [], f"parties {different} were asked to sign something else (another digest, signer set or key)"
            )
        stale = [
            env.sender
            for env, body in zip(envelopes, bodies, strict=True)
            if body["setup"] != setup_tag(self.setup.peers[env.sender].zero_seed)
        ]
        if stale:
            # Also before any multiplication: a share restored from a copy older than
            # the last setup would otherwise fail the KOS check and blame its peer.
            raise ProtocolAbort(
                [], f"parties {stale} hold another pairwise setup with us than we do (a share from an older copy?)"
            )
        first = {}
        for env, body in zip(envelopes, bodies, strict=True):
            if len(body["commitment"]) != 64:
                raise ProtocolAbort([env.sender], "instance-key commitment has the wrong length")
            self._commitments[env.sender] = body["commitment"]
            first[env.sender] = body["vole"]
        self._echo = (
            Transcript("harbour/ecdsa/sign/round1-echo")
            .append("session", self._session)
            .append_list("commitments", [self._commitments[i] for i in self.signers])
            .digest()
        )
        zeta = 0
        for j in self.peers:
            z = _zero_share(self.setup.peers[j].zero_seed, self._session)
            zeta += z if self.me < j else -z
        inst.sk = (lagrange_coefficient(self.signers, self.me, Q) * self.share.secret_share + zeta) % Q
        pk = G.base_mul(inst.sk).encode()
        R = self._points[self.me].encode()
        out = []
        for j in self.peers:
            alice = VoleAlice(
                self.setup.peers[j].as_alice, _vole_context(self._session, j, self.me), self._hedged(f"alice with {j}")
            )
            try:
                reply, c = alice.respond(first[j], (inst.r, inst.sk))
            except KosCheckFailed as exc:
                raise SetupCompromised(
                    frozenset({j}),
                    f"party {j}'s OT extension failed the KOS check ({exc}): stop signing with this "
                    "pairwise setup and refresh the key",
                    party=self.me,
                ) from exc
            except VoleError as exc:
                raise ProtocolAbort([j], f"multiplication with party {j} failed: {exc}") from exc
            self._c[j] = c
            payload = {
                "vole": reply,
                "gamma_u": G.base_mul(c[0]).encode(),
                "gamma_v": G.base_mul(c[1]).encode(),
                "psi": G.encode_scalar((inst.phi - self._bobs[j].b) % Q),
                "instance_point": R,
                "salt": inst.salt,
                "pk": pk,
                "echo": self._echo,
            }
            out.append(self._envelope(2, j, encode_payload(payload)))
        return out

    # -- round 3 ---------------------------------------------------------------------
    def _round3(self, envelopes: list[Envelope]) -> list[Envelope]:
        inst = self._take()
        bodies = {env.sender: decode_payload(env, _ROUND2) for env in envelopes}
        malformed = [j for j, body in bodies.items() if len(body["echo"]) != len(self._echo)]
        if malformed:
            raise ProtocolAbort(malformed, "round-two echo has the wrong length")
        disagree = [j for j, body in bodies.items() if body["echo"] != self._echo]
        if disagree:
            raise ProtocolAbort(
                [],
                f"parties {disagree} saw different round-one commitments or session inputs than we did: "
                "someone equivocated (not attributable without signed broadcast)",
            )
        pks: dict[int, Point] = {self.me: G.base_mul(inst.sk)}
        u = inst.r * inst.phi
        v = inst.sk * inst.phi
        for j, body in bodies.items():
            try:
                R_j = G.decode_point(body["instance_point"])
                pk_j = G.decode_point(body["pk"])
                gamma_u = G.decode_point(body["gamma_u"])
                gamma_v = G.decode_point(body["gamma_v"])
                psi = G.decode_scalar(body["psi"])
            except GroupError as exc:
                raise ProtocolAbort([j], f"invalid round-two value: {exc}") from exc
            if (
                len(body["salt"]) != 32
                or _commitment(self._session, j, body["instance_point"], body["salt"]) != (self._commitments[j])
            ):
                raise ProtocolAbort([j], "instance point does not open its round-one commitment")
            bob = self._bobs[j]
            try:
                d_u, d_v = bob.finish(body["vole"])
            except VoleError as exc:
                raise ProtocolAbort([j], f"multiplication with party {j} failed: {exc}") from exc
            chi = bob.b
            if R_j * chi - gamma_u != G.base_mul(d_u):
                raise ProtocolAbort([j], "multiplication output is inconsistent with the instance point")
            if pk_j * chi - gamma_v != G.base_mul(d_v):
                raise ProtocolAbort([j], "multiplication output is inconsistent with the public key share")
            self._points[j] = R_j
            pks[j] = pk_j
            c_u, c_v = self._c[j]
            u += inst.r * psi + c_u + d_u
            v += inst.sk * psi + c_v + d_v
        if G.sum(pks.values()) != self.share.group_public_key:
            raise ProtocolAbort([], "the public key shares do not add up to the group key")
        R = G.sum(self._points.values())
        if R.is_identity():
            raise ProtocolAbort([], "the instance points add up to the identity")
        assert isinstance(R, Secp256k1Point)
        r_x = int.from_bytes(R.x_bytes, "big") % Q
        e = ecdsa.digest_to_int(self.digest) % Q
        u %= Q
        w = (e * inst.phi + r_x * v) % Q
        self._forget()
        self._u_w = (u, w)
        return [self._envelope(3, None, encode_payload({"u": G.encode_scalar(u), "w": G.encode_scalar(w)}))]

    # -- output ----------------------------------------------------------------------
    def _aggregate(self, envelopes: list[Envelope]) -> None:
        assert self._u_w is not None
        u_sum, w_sum = self._u_w
        for env in envelopes:
            body = decode_payload(env, {"u": bytes, "w": bytes})
            try:
                u_sum += G.decode_scalar(body["u"])
                w_sum += G.decode_scalar(body["w"])
            except GroupError as exc:
                raise ProtocolAbort([env.sender], f"invalid signature share: {exc}") from exc
        u_sum %= Q
        if u_sum == 0:
            raise ProtocolAbort([], "the signature shares are degenerate (Σu = 0)")
        R = G.sum(self._points.values())
        assert isinstance(R, Secp256k1Point)
        r_x = int.from_bytes(R.x_bytes, "big") % Q
        s = w_sum * pow(u_sum, -1, Q) % Q
        try:
            sig = ecdsa.finalize_signature(R, r_x, s)
        except ValueError as exc:
            raise ProtocolAbort([], f"cannot form a signature: {exc}") from exc
        if not ecdsa.verify(self.share.group_public_key, self.digest, sig):  # type: ignore[arg-type]
            raise ProtocolAbort(
                [], "the combined signature does not verify: a signer sent a wrong share (not attributable)"
            )
        self._finish(sig)

    def _take(self) -> _Instance:
        if self._instance is None:
            raise UsageError("the instance secrets of this session are already used")
        return self._instance
