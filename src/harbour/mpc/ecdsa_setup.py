"""Pairwise setup for threshold ECDSA (DKLs23): base OTs and zero-sharing seeds.

DKLs23 (eprint 2023/765) signs with any ``t`` of the ``n`` parties without further
setup if, after the Shamir sharing of the key (the DKG of mpc/dkg.py), every pair
of parties holds:

- two OT-extension setups, one per direction, each from a batch of 256 verified
  base OTs (mpc/base_ot.py): the party that will be Bob (OT-extension receiver)
  in a pair's multiplication is the base-OT *sender*, so it knows both seeds,
  and Alice learns one seed per OT, selected by her secret ``Δ``;
- a common seed for the zero-sharing of functionality 3.4 (``F_Zero``), agreed by
  commit-then-open so that it is random if either of the two is honest.

Rounds (all point-to-point, every pair in parallel; ``i -> j`` is the batch in
which ``i`` is the base-OT sender):

1. base-OT message 1 (``B`` with its proof) and a commitment to a seed contribution;
2. base-OT message 2 (the receiver's points) and the opening of the contribution;
3. base-OT challenges; 4. responses; 5. openings; then a local check.

Every hash is bound to the session, both parties and a fingerprint of the public
key package, so setups cannot be moved between keys, sessions or pairs. A failed
check aborts naming the peer; a failed base-OT check raises :class:`BaseOtAbort`,
which a signer node counts per peer (:data:`SETUP_ABORT_BUDGET`, and the leakage
budget in docs/ecdsa.md). The result is the input key share with the setup added
under the ``dkls23`` extension (:class:`EcdsaSetup`, stored as mpc/ecdsa_record.py
says, below the key share that checks it), with no compromised
marks: :func:`mark_compromised` records, inside the share, the pairs whose setup
must no longer be used.

Every secret the setup draws (each ``Δ``, the base-OT secrets, the seed
contributions) is hedged (crypto/hedge.py) with the key share, the session id,
the peer and the purpose, so a broken random generator does not repeat them.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from harbour.crypto.group import RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.hedge import HedgedRandom
from harbour.mpc.base_ot import BATCH, OtError, VsotReceiver, VsotSender
from harbour.mpc.ecdsa_record import EXTENSION as EXTENSION
from harbour.mpc.ecdsa_record import SCHEME as SCHEME
from harbour.mpc.ecdsa_record import SEED_LEN, checked_setup
from harbour.mpc.ecdsa_record import EcdsaSetup as EcdsaSetup
from harbour.mpc.ecdsa_record import PairSetup as PairSetup
from harbour.mpc.envelope import Envelope, Party, ProtocolAbort, UsageError, decode_payload, encode_payload
from harbour.mpc.keyshare import KeyShare, KeyShareError, PublicKeyPackage
from harbour.mpc.ot_extension import ExtensionReceiverSetup, ExtensionSenderSetup

SETUP_ABORT_BUDGET = 3
"""Base-OT aborts (:class:`BaseOtAbort`) attributed to one peer after which a node
refuses further ECDSA setups with that peer until an operator intervenes.

A cheating base-OT sender learns a few choice bits of the receiver's ``Δ`` per
attempt, and the setup survives only if they all had the value its cheat needs
(probability halving per bit); so after at most ``B`` aborted attempts, the chance
that it knows ``k`` bits of a kept ``Δ`` is at most about ``B·2^-k``. See
"Leakage budget" in docs/ecdsa.md.
"""


class BaseOtAbort(ProtocolAbort):
    """A peer's base-OT messages failed a check of DKLs18 protocol 7 during the setup.

    Distinct from other setup aborts because such a failure can depend on the
    receiver's choice bits (its ``Δ``): each one must count towards
    :data:`SETUP_ABORT_BUDGET` for ``peers``. The setup it interrupts is
    discarded, so the bits it revealed are of a ``Δ`` that is never used.
    """

    def __init__(self, peers: Iterable[int], reason: str) -> None:
        super().__init__(peers, reason)
        self.peers: frozenset[int] = self.culprits


def setup_of(share: KeyShare, decoded: EcdsaSetup | None = None) -> EcdsaSetup:
    """The pairwise setup of an ECDSA key share, checked against its party list.

    ``decoded`` is the share's setup as the caller already decoded it (a signer node
    keeps them, since decoding is most of a signer's start-up); it is used only if
    it was decoded from exactly the share's bytes.
    """
    if share.scheme != SCHEME:
        raise KeyShareError(f"a {share.scheme} key share has no ECDSA setup")
    raw = share.extensions.get(EXTENSION)
    if raw is None:
        raise KeyShareError("ECDSA key share lacks its pairwise setup (key generation did not finish)")
    return checked_setup(raw, share.identifier, share.parties, decoded)


def compromised_peers(share: KeyShare) -> frozenset[int]:
    """The peers whose pairwise setup with this share is marked compromised."""
    return setup_of(share).compromised


def mark_compromised(share: KeyShare, peers: Iterable[int]) -> KeyShare:
    """``share`` with ``peers`` added to its compromised marks (existing marks stay).

    The marks travel with the share wherever it is stored, encrypted and
    authenticated with it; :class:`~harbour.mpc.ecdsa_sign.EcdsaSigner` refuses to
    sign with a marked peer, and only a new pairwise setup clears them.
    """
    setup = setup_of(share)
    added = frozenset(peers)
    unknown = sorted(added - set(setup.peers))
    if unknown:
        raise UsageError(f"parties {unknown} are not peers of party {share.identifier} in this key")
    extensions = dict(share.extensions)
    extensions[EXTENSION] = replace(setup, compromised=setup.compromised | added).encode()
    return replace(share, extensions=extensions)


def key_fingerprint(public: PublicKeyPackage) -> bytes:
    """What setups and sessions bind the key by: :meth:`PublicKeyPackage.fingerprint`."""
    return public.fingerprint()


def _ot_context(session_id: bytes, fingerprint: bytes, sender: int, receiver: int) -> bytes:
    return (
        Transcript("harbour/ecdsa/setup/base-ot")
        .append("session", session_id)
        .append("key", fingerprint)
        .append("sender", sender)
        .append("receiver", receiver)
        .digest()
    )


def _seed_commitment(session_id: bytes, fingerprint: bytes, owner: int, peer: int, contribution: bytes) -> bytes:
    return (
        Transcript("harbour/ecdsa/setup/zero-seed")
        .append("session", session_id)
        .append("key", fingerprint)
        .append("owner", owner)
        .append("peer", peer)
        .append("contribution", contribution)
        .digest()
    )


class EcdsaSetupParty(Party[KeyShare]):
    """Adds the DKLs23 pairwise setup to a freshly generated (or refreshed) ECDSA key share.

    ``rng`` is the fresh randomness every draw is hedged with (crypto/hedge.py),
    together with the key share, the session id, the peer and the purpose;
    ``hedge_key``, a per-node secret, is mixed in as well when given.
    """

    def __init__(
        self,
        session_id: bytes,
        share: KeyShare,
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        super().__init__(session_id, share.identifier)
        if share.scheme != SCHEME:
            raise UsageError(f"the ECDSA setup needs an {SCHEME} key share, not {share.scheme}")
        self.protocol = f"setup/{SCHEME}"
        self.share = share
        self.peers = [j for j in share.parties if j != share.identifier]
        self._rng = rng
        self._hedge_secret = [share.group.encode_scalar(share.secret_share), bytes(hedge_key)]
        self._fingerprint = key_fingerprint(share.public)
        self._senders: dict[int, VsotSender] = {}
        self._receivers: dict[int, VsotReceiver] = {}
        self._deltas: dict[int, int] = {}
        self._contributions: dict[int, bytes] = {}
        self._peer_commitments: dict[int, bytes] = {}
        self._zero_seeds: dict[int, bytes] = {}
        for rnd in range(1, 6):
            self._expect(rnd, self.peers, broadcast=False)

    def _hedged(self, purpose: str, peer: int) -> HedgedRandom:
        label = f"ecdsa-setup/party {self.me}/peer {peer}/{purpose}"
        return HedgedRandom(label, self.session_id, self._hedge_secret, fresh=self._rng)

    def _on_start(self) -> list[Envelope]:
        out = []
        for j in self.peers:
            sender = VsotSender(
                _ot_context(self.session_id, self._fingerprint, self.me, j), self._hedged("base-ot sender", j)
            )
            self._senders[j] = sender
            contribution = self._hedged("zero-seed contribution", j)(SEED_LEN)
            self._contributions[j] = contribution
            commitment = _seed_commitment(self.session_id, self._fingerprint, self.me, j, contribution)
            out.append(self._envelope(1, j, encode_payload({"ot": sender.message1(), "seed": commitment})))
        return out

    def _on_round(self, rnd: int, envelopes: list[Envelope]) -> list[Envelope]:
        out = []
        for env in envelopes:
            j = env.sender
            body = decode_payload(env, {"ot": bytes, "seed": bytes} if rnd <= 2 else {"ot": bytes})
            try:
                reply = self._step(rnd, j, body)
            except OtError as exc:
                raise BaseOtAbort([j], f"base OT with party {j} failed: {exc}") from exc
            if reply is not None:
                out.append(self._envelope(rnd + 1, j, encode_payload(reply)))
        if rnd == 5:
            self._finish(self._result_share())
        return out

    def _step(self, rnd: int, j: int, body: dict[str, Any]) -> dict[str, bytes] | None:
        if rnd == 1:
            if len(body["seed"]) != 64:
                raise ProtocolAbort([j], "zero-sharing seed commitment has the wrong length")
            self._peer_commitments[j] = body["seed"]
            delta = int.from_bytes(self._hedged("delta", j)(BATCH // 8), "big")
            self._deltas[j] = delta
            receiver = VsotReceiver(
                _ot_context(self.session_id, self._fingerprint, j, self.me), delta, self._hedged("base-ot receiver", j)
            )
            self._receivers[j] = receiver
            return {"ot": receiver.message2(body["ot"]), "seed": self._contributions[j]}
        if rnd == 2:
            opened = body["seed"]
            expected = _seed_commitment(self.session_id, self._fingerprint, j, self.me, opened)
            if len(opened) != SEED_LEN or expected != self._peer_commitments[j]:
                raise ProtocolAbort([j], "zero-sharing seed does not match its commitment")
            lo, hi = sorted((self.me, j))
            parts = {self.me: self._contributions[j], j: opened}
            self._zero_seeds[j] = hashlib.sha256(
                b"harbour/ecdsa/zero-seed" + self.session_id + self._fingerprint + parts[lo] + parts[hi]
            ).digest()
            return {"ot": self._senders[j].message3(body["ot"])}
        if rnd == 3:
            return {"ot": self._receivers[j].message4(body["ot"])}
        if rnd == 4:
            return {"ot": self._senders[j].message5(body["ot"])}
        self._receivers[j].finish(body["ot"])
        return None

    def _on_abort(self) -> None:
        # An aborted setup is discarded: nothing it drew may outlive it.
        self._senders, self._receivers, self._deltas, self._contributions = {}, {}, {}, {}

    def _result_share(self) -> KeyShare:
        peers = {}
        for j in self.peers:
            sender, receiver = self._senders[j], self._receivers[j]
            peers[j] = PairSetup(
                as_bob=ExtensionReceiverSetup(tuple(sender.pads0), tuple(sender.pads1)),
                as_alice=ExtensionSenderSetup(self._deltas[j], tuple(receiver.pads)),
                zero_seed=self._zero_seeds[j],
            )
        extensions = dict(self.share.extensions)
        extensions[EXTENSION] = EcdsaSetup(peers).encode()
        self._senders, self._receivers, self._deltas = {}, {}, {}
        return replace(self.share, extensions=extensions)
