"""What one node runs in one session: a protocol party, or two run back to back.

A signer node takes part in a session as one party of one operation. Some
operations are one protocol (FROST or DKLs23 signing); others are two, the second
started from the first one's result: threshold-ECDSA key generation is a DKG then
the DKLs23 pairwise setup, and a refresh or reshare of an ECDSA key is followed by
a new setup. A :class:`Job` hides that: the node feeds it envelopes and takes
envelopes out, and the job moves itself to the next phase when one finishes.

Each phase has its own session id (the second derived from the first, as the
in-process runner does, :func:`harbour.mpc.schemes.setup_session_id`) and its own
set of participants, which is who a broadcast goes to. Envelopes for a phase that
has not started yet (a faster peer already in it) are held until it starts. Which
phases there are, and which party runs each, is the scheme's to say
(:class:`~harbour.mpc.schemes.Scheme`): a job never asks which scheme it runs.

A node without a network (the cold node) keeps a session between the files that
carry its rounds without ever serialising a party: it records what the job was
built from (:func:`job_params`), the seed of its randomness and every envelope it
received, and rebuilds it by replaying them (:mod:`harbour.node.coldstate`). So
every job is deterministic given its parameters, its ``rng`` and its inputs.
"""

from __future__ import annotations

import hashlib
import secrets
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from harbour.crypto.group import RandomBytes
from harbour.mpc import hd
from harbour.mpc.envelope import Envelope, Party, ProtocolAbort, UsageError
from harbour.mpc.keyshare import KeyShare, PublicKeyPackage
from harbour.mpc.refresh import RefreshParty
from harbour.mpc.reshare import ReshareParty
from harbour.mpc.schemes import Scheme, Signature, scheme_by_name, setup_session_id
from harbour.node.rpc import decode_public, encode_public

MAX_HELD = 64
"""Envelopes held for a later phase: a round or two of every peer, far more than honest peers send."""
MAX_HELD_BYTES = 8 * 2**20


@dataclass(frozen=True)
class PhasePlan:
    session_id: bytes
    participants: tuple[int, ...]


class Job:
    """One node's part in a session; subclasses say what each phase is."""

    kind: str = ""

    def __init__(
        self,
        session_id: bytes,
        me: int,
        phases: Sequence[PhasePlan],
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        self.session_id = session_id
        self.me = me
        self.phases = tuple(phases)
        self.rng = rng
        self.hedge_key = hedge_key
        """The node's own secret, mixed into every secret its parties draw (crypto/hedge.py)."""
        self._index = 0
        self._party: Party[Any] | None = None
        self._started = False
        self._held: list[Envelope] = []
        self._result: Any = None
        self._done = False

    # -- for subclasses
    def _first(self) -> Party[Any]:
        raise NotImplementedError

    def _next(self, result: Any) -> Party[Any] | None:
        """The party of the next phase, or None when ``result`` is the job's result."""
        return None

    def _final(self, result: Any) -> Any:
        return result

    def _setup_after(self, kind: Scheme, share: KeyShare | None) -> Party[Any] | None:
        """The pairwise setup of the new ``share``, if the first phase just ended and the scheme has one."""
        if self._index != 0 or len(self.phases) < 2 or share is None:
            return None
        return kind.setup_party(self.phases[1].session_id, share, rng=self.rng, hedge_key=self.hedge_key)

    # -- driving
    @property
    def done(self) -> bool:
        return self._done

    @property
    def result(self) -> Any:
        if not self._done:
            raise UsageError("the job has not finished")
        return self._result

    @property
    def session_ids(self) -> list[bytes]:
        return [p.session_id for p in self.phases]

    @property
    def everyone(self) -> tuple[int, ...]:
        """Every party this job exchanges messages with in any phase, ourselves included."""
        return tuple(sorted({p for plan in self.phases for p in plan.participants}))

    def is_public(self, session_id: bytes, protocol: str, rnd: int) -> bool:
        """Whether that round's messages are public (:attr:`Party.public_rounds`) for the party running now.

        Only the current phase's party can say; a message for any other phase is
        treated as secret, which is what it is (later phases start once the session
        keys are agreed).
        """
        party = self._party
        if party is None or party.session_id != session_id or party.protocol != protocol:
            return False
        return rnd in type(party).public_rounds

    def participants(self, session_id: bytes) -> tuple[int, ...]:
        for plan in self.phases:
            if plan.session_id == session_id:
                return plan.participants
        raise UsageError("not a session of this job")

    def prepare(self) -> None:
        """Build the first party now, so that bad parameters fail before anything is committed to.

        A party checks its arguments when it is constructed (threshold, signers, key
        share); the node calls this before it spends the approval certificate.
        """
        if self._party is None and not self._done:
            self._party = self._first()

    def start(self) -> list[Envelope]:
        if self._started or self._done:
            raise UsageError("the job was already started")
        self.prepare()
        self._started = True
        assert self._party is not None
        return self._settle(self._party.start())

    def receive(self, env: Envelope) -> list[Envelope]:
        if not self._started:
            raise UsageError("start the job first")
        if self._done or self._party is None:
            raise UsageError("the job has finished")
        current = self.phases[self._index].session_id
        if env.session_id != current:
            later = [p.session_id for p in self.phases[self._index + 1 :]]
            if env.session_id not in later:
                # Earlier phases are over: the party of that phase would refuse it too.
                return self._settle(self._party.receive(env))
            if (
                len(self._held) >= MAX_HELD
                or sum(len(e.payload) for e in self._held) + len(env.payload) > MAX_HELD_BYTES
            ):
                raise ProtocolAbort([env.sender], "too many messages for a phase that has not started")
            self._held.append(env)
            return []
        return self._settle(self._party.receive(env))

    def _settle(self, out: list[Envelope]) -> list[Envelope]:
        """After the party moved: go to the next phase while the current one is finished."""
        while self._party is not None and self._party.done and not self._done:
            result = self._party.result
            nxt = self._next(result)
            if nxt is None:
                self._result = self._final(result)
                self._done = True
                self._party = None
                break
            self._index += 1
            self._party = nxt
            out = out + nxt.start()
            sid = self.phases[self._index].session_id
            held, self._held = (
                [e for e in self._held if e.session_id == sid],
                [e for e in self._held if e.session_id != sid],
            )
            for env in held:
                out = out + self._party.receive(env)
        return out


class KeygenJob(Job):
    kind = "keygen"

    def __init__(
        self,
        session_id: bytes,
        me: int,
        scheme: str,
        threshold: int,
        parties: Sequence[int],
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        ids = tuple(sorted(parties))
        kind = scheme_by_name(scheme)
        super().__init__(session_id, me, _with_setup(kind, session_id, ids, ids), rng=rng, hedge_key=hedge_key)
        self.scheme = scheme
        self.key_scheme = kind
        self.threshold = threshold
        self.ids = ids

    def _first(self) -> Party[Any]:
        return self.key_scheme.dkg_party(
            self.session_id, self.me, self.threshold, self.ids, rng=self.rng, hedge_key=self.hedge_key
        )

    def _next(self, result: Any) -> Party[Any] | None:
        return self._setup_after(self.key_scheme, result)


class SignJob(Job):
    """FROST over a message, or DKLs23 over a 32-byte digest, under the share derived at ``path``."""

    kind = "sign"

    def __init__(
        self,
        session_id: bytes,
        share: KeyShare,
        path: str,
        signers: Sequence[int],
        message: bytes,
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        plan = [PhasePlan(session_id, tuple(sorted(signers)))]
        super().__init__(session_id, share.identifier, plan, rng=rng, hedge_key=hedge_key)
        self.path = path
        self.share = hd.derive_share(share, path) if path != "m" else share
        self.signers = tuple(sorted(signers))
        self.message = message

    def _first(self) -> Party[Any]:
        return scheme_by_name(self.share.scheme).signer(
            self.session_id,
            self.share,
            self.signers,
            self.message,
            rng=self.rng,
            hedge_key=self.hedge_key,
            setup=decoded_setup(self.share),
        )

    def _final(self, result: Any) -> Signature:
        assert isinstance(result, Signature)
        return result


class RefreshJob(Job):
    kind = "refresh"

    def __init__(
        self, session_id: bytes, share: KeyShare, *, rng: RandomBytes = secrets.token_bytes, hedge_key: bytes = b""
    ) -> None:
        parties = tuple(share.parties)
        kind = scheme_by_name(share.scheme)
        phases = _with_setup(kind, session_id, parties, parties)
        super().__init__(session_id, share.identifier, phases, rng=rng, hedge_key=hedge_key)
        self.share = share
        self.key_scheme = kind

    def _first(self) -> Party[Any]:
        return RefreshParty(self.session_id, self.share, rng=self.rng, hedge_key=self.hedge_key)

    def _next(self, result: Any) -> Party[Any] | None:
        return self._setup_after(self.key_scheme, result)


class ReshareJob(Job):
    """A dealer (holds a share of the current key), a member of the new committee, or both.

    The result is this node's new share, or None for a dealer that leaves the key.
    """

    kind = "reshare"

    def __init__(
        self,
        session_id: bytes,
        me: int,
        public: PublicKeyPackage,
        dealers: Sequence[int],
        new_threshold: int,
        new_parties: Sequence[int],
        *,
        share: KeyShare | None,
        metadata: dict[str, bytes],
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> None:
        everyone = tuple(sorted(set(dealers) | set(new_parties)))
        kind = scheme_by_name(public.scheme)
        phases = _with_setup(kind, session_id, everyone, tuple(sorted(new_parties)))
        super().__init__(session_id, me, phases, rng=rng, hedge_key=hedge_key)
        self.public = public
        self.key_scheme = kind
        self.dealers = tuple(sorted(dealers))
        self.new_threshold = new_threshold
        self.new_parties = tuple(sorted(new_parties))
        self.share = share
        self.metadata = metadata

    def _first(self) -> Party[Any]:
        return ReshareParty(
            self.session_id,
            self.me,
            self.public,
            self.dealers,
            self.new_threshold,
            self.new_parties,
            share=self.share,
            metadata=self.metadata,
            rng=self.rng,
            hedge_key=self.hedge_key,
        )

    def _next(self, result: Any) -> Party[Any] | None:
        # The resharing's result names the new share (None for a dealer leaving the key).
        return self._setup_after(self.key_scheme, result.share if self._index == 0 else None)

    def _final(self, result: Any) -> KeyShare | None:
        if isinstance(result, KeyShare):
            return result
        share = result.share
        assert share is None or isinstance(share, KeyShare)
        return share


def _with_setup(
    kind: Scheme, session_id: bytes, participants: tuple[int, ...], setup_participants: tuple[int, ...]
) -> list[PhasePlan]:
    """The first phase, then the pairwise setup (among the key's new holders) if the scheme has one."""
    phases = [PhasePlan(session_id, participants)]
    if kind.has_setup:
        phases.append(PhasePlan(setup_session_id(session_id), setup_participants))
    return phases


_SETUPS: OrderedDict[bytes, Any] = OrderedDict()
_SETUPS_MAX = 16


def decoded_setup(share: KeyShare) -> Any:
    """The share's pairwise setup (threshold ECDSA's), decoded once per setup (by its bytes' hash) for every session.

    Decoding a setup (hundreds of OT seeds per peer, checked canonical) is most of a
    signer's start-up, and every session of a key, whatever its path, has the same.
    None for a scheme without one, or a share that lacks it (its signer says why).
    """
    kind = scheme_by_name(share.scheme)
    raw = share.extensions.get(kind.setup_extension) if kind.setup_extension is not None else None
    if raw is None:
        return None
    digest = hashlib.sha256(raw).digest()
    setup = _SETUPS.get(digest)
    if setup is None:
        setup = _SETUPS[digest] = kind.decode_setup(raw)
        while len(_SETUPS) > _SETUPS_MAX:
            _SETUPS.popitem(last=False)
    else:
        _SETUPS.move_to_end(digest)
    return setup


def scheme_of(job: Job) -> str:
    if isinstance(job, KeygenJob):
        return job.scheme
    if isinstance(job, SignJob | RefreshJob):
        return job.share.scheme
    assert isinstance(job, ReshareJob)
    return job.public.scheme


def replays_secrets(job: Job) -> bool:
    """Whether answering a round of this job twice from one saved state could give a secret away.

    Signing of either scheme reuses its nonces (one rollback gives a threshold-ECDSA
    share away, two a FROST share); the threshold-ECDSA setup's base OTs and
    multiplications likewise. A FROST key generation, refresh or resharing answers a
    repeated round with the same values it already sent, which reveals nothing new.
    """
    return isinstance(job, SignJob) or scheme_by_name(scheme_of(job)).has_setup


def job_params(job: Job) -> dict[str, Any]:
    """What the job was built from, as plain CBOR values; the key share is named, not included.

    :func:`rebuild_job` is its inverse (given the share again), so a cold node can
    rebuild a session's job and replay its inputs instead of serialising parties.
    """
    if isinstance(job, SignJob):
        return {"path": job.path, "signers": list(job.signers), "message": job.message}
    if isinstance(job, KeygenJob):
        return {"scheme": job.scheme, "threshold": job.threshold, "parties": list(job.ids)}
    if isinstance(job, RefreshJob):
        return {}
    assert isinstance(job, ReshareJob)
    return {
        "public": encode_public(job.public),
        "dealers": list(job.dealers),
        "threshold": job.new_threshold,
        "parties": list(job.new_parties),
        "metadata": dict(job.metadata),
    }


def rebuild_job(
    kind: str,
    session_id: bytes,
    me: int,
    params: dict[str, Any],
    *,
    share: KeyShare | None,
    rng: RandomBytes,
    hedge_key: bytes = b"",
) -> Job:
    """The job :func:`job_params` describes; ValueError if the parameters do not fit together."""
    try:
        if kind == "sign":
            if share is None:
                raise ValueError("a signing job needs its key share")
            return SignJob(
                session_id, share, params["path"], params["signers"], params["message"], rng=rng, hedge_key=hedge_key
            )
        if kind == "keygen":
            return KeygenJob(
                session_id, me, params["scheme"], params["threshold"], params["parties"], rng=rng, hedge_key=hedge_key
            )
        if kind == "refresh":
            if share is None:
                raise ValueError("a refresh job needs its key share")
            return RefreshJob(session_id, share, rng=rng, hedge_key=hedge_key)
        if kind == "reshare":
            return ReshareJob(
                session_id,
                me,
                decode_public(params["public"]),
                params["dealers"],
                params["threshold"],
                params["parties"],
                share=share,
                metadata=dict(params["metadata"]),
                rng=rng,
                hedge_key=hedge_key,
            )
    except (KeyError, TypeError) as exc:
        raise ValueError(f"the {kind} job's parameters are malformed: {exc}") from exc
    raise ValueError(f"no job of kind {kind!r}")


def new_session_id() -> bytes:
    return secrets.token_bytes(32)
