"""The sessions a node runs: from the start it accepts to the outcome it logs.

:class:`~harbour.node.service.NodeService` answers requests; this is what a
``start`` or ``deliver`` request sets in motion once it is understood. A session
is admitted (a session id is used once, ever), planned elsewhere
(:mod:`harbour.node.planning`), checked against the node's own limits, approved,
and then fed rounds: the peers' hellos give the pair keys, sealed messages are
opened in sequence (:mod:`harbour.node.sealed`) and handed to the job, and what the
job says is sealed back, each peer's envelopes in the order they were made. Any
refusal on the way ends the session, and every end is logged once
(:meth:`RunningSessions.end`), because the log is what a restarted node, an
auditor and the KOS-failure marks are rebuilt from.

One record per session is :class:`~harbour.node.session.Session`; this class
holds them all, with the state shared across them (the replay guard, the ids
ever used, the stale ones, the cached marks).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.hedge import HedgedRandom
from harbour.mpc.ecdsa_setup import SETUP_ABORT_BUDGET, BaseOtAbort
from harbour.mpc.ecdsa_sign import SetupCompromised
from harbour.mpc.envelope import Envelope, ProtocolAbort, UsageError
from harbour.mpc.keyshare import KeyShare, KeyShareError
from harbour.mpc.schemes import scheme_by_name
from harbour.node import approval, coldstate, compromise, rpc, signlog
from harbour.node.coldstore import ColdSessions
from harbour.node.config import NodeConfig
from harbour.node.counter import RollbackCounter
from harbour.node.handshake import HandshakeError, SessionKeys
from harbour.node.identity import NodeIdentity
from harbour.node.jobs import SignJob, replays_secrets, scheme_of
from harbour.node.sealed import ReplayGuard, SealedError, open_sealed, seal, sign_public
from harbour.node.session import Session
from harbour.node.staging import Refusal, Staging
from harbour.node.store import SecretStore

log = logging.getLogger("harbour.node")

MAX_SESSIONS: Final = 1024


class RunningSessions:
    """The sessions of one node; holds the node's parts by reference, and the session state itself."""

    def __init__(
        self,
        *,
        store: SecretStore,
        identity: NodeIdentity,
        config: NodeConfig,
        sign_log: signlog.SignLog,
        staging: Staging,
        cold: ColdSessions | None,
        counter: RollbackCounter | None,
        hedge_key: bytes,
        offline: bool,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.identity = identity
        self.config = config
        self.log = sign_log
        self.staging = staging
        self.cold = cold
        self.counter = counter
        self.hedge_key = hedge_key
        self.offline = offline
        self.clock = clock
        self.sessions: dict[bytes, Session] = {}
        self.rosters: dict[bytes, dict[str, int]] = {}
        self.guard = ReplayGuard()
        self.used: set[bytes] = set()
        self.stale: set[bytes] = set()
        self._marks: dict[str, set[int]] = {}
        self.on_record: Callable[[Session, str], None] | None = None
        """Told of each entry :meth:`record` writes (the node's metrics, :mod:`harbour.node.metrics`)."""

    def now(self) -> int:
        return int(self.clock())

    # -- compromised pairs -------------------------------------------------------------

    def compromised(self, key_id: str) -> set[int]:
        """The marked peers of ``key_id`` (cached: reading them means decrypting and checking the key record)."""
        marks = self._marks.get(key_id)
        if marks is None:
            marks = self._marks[key_id] = compromise.compromised(self.store, key_id)
        return set(marks)

    def forget_marks(self, key_id: str) -> None:
        """Drop the cached marks of ``key_id``: a new share, a new setup, its marks are its own."""
        self._marks.pop(key_id, None)

    def mark_compromised(self, session: Session, peers: frozenset[int]) -> None:
        """Record the pair and end every running session of the key with those peers.

        Each KOS check a cheating peer gets evaluated can leak a bit of this node's
        long-term OT correlation, so sessions already in flight must not run on either.
        """
        # The log first: it is what the mark is rebuilt from if the key record is ever put back.
        self.record(session, "compromised", compromise.parties_reason(peers))
        self._marks.pop(session.key_id, None)
        bad = compromise.mark(self.store, session.key_id, peers) | self.compromised(session.key_id)
        for other in list(self.sessions.values()):
            same_key = other is not session and other.kind == "sign" and other.key_id == session.key_id
            if same_key and bad & _signers(other):
                self.end(other, "aborted", f"the pairwise setup with parties {sorted(bad)} failed a KOS check")

    def _count_incidents(self, session: Session, parties: frozenset[int]) -> None:
        """A peer's base OT failed its check in a setup: logged, and counted against the budget."""
        nodes = [session.roster[p].node_id for p in parties if p in session.roster]
        self.record(session, "incident", compromise.nodes_reason(nodes))
        for node in nodes:
            count = compromise.add_incident(self.store, node)
            log.warning("node %s caused base-OT abort number %d in an ECDSA setup", node, count)

    # -- start -------------------------------------------------------------------------

    def admit(self, sid: bytes) -> None:
        """Refuse a session id used before, or one more session than the node runs at once."""
        if sid in self.sessions or sid in self.used:
            if sid in self.stale:
                raise Refusal("stale-session", self.stale_reason(sid))
            raise Refusal("session-exists", f"session {sid.hex()} was already used on this node")
        if len(self.sessions) >= MAX_SESSIONS:
            raise Refusal("busy", f"this node already runs {MAX_SESSIONS} sessions")

    def start(self, session: Session, check: Callable[[], None]) -> bytes:
        """Run a planned session's first round, once the node's own limits and ``check`` (its approval) pass."""
        sid, kind = session.session_id, session.kind
        try:
            session.job.prepare()
        except (UsageError, KeyShareError, ValueError) as exc:
            raise Refusal("bad-request", f"cannot start this {kind} session: {exc}") from exc
        setup = session.job.phases[-1].participants  # the threshold-ECDSA setup: whom this node runs base OTs with
        if session.kind != "sign" and scheme_by_name(scheme_of(session.job)).has_setup and session.me in setup:
            over = compromise.over_budget(self.store, [session.roster[p].node_id for p in setup if p != session.me])
            if over:
                raise Refusal(
                    "setup-compromised",
                    f"nodes {sorted(over)} caused {SETUP_ABORT_BUDGET} or more base-OT aborts in this node's "
                    "threshold-ECDSA setups; it runs no more setups with them until an operator clears the count "
                    "(harbour node incidents --clear) or their identity is replaced",
                )
        if self.offline and self.counter is None and replays_secrets(session.job):
            raise Refusal(
                "no-counter",
                f"this cold node has no rollback counter, so it does not keep a {kind} session of this key "
                "between files: a copy of its directory put back could answer a round twice with the same "
                "nonces and give its share away. Create the node with --counter pkcs11 or --counter-file",
            )
        if any(p in self.rosters for p in session.job.session_ids):
            raise Refusal("session-exists", "a phase of this session collides with a running session")
        try:
            check()
        except approval.ApprovalError as exc:
            self.record(session, "refused", f"{exc.reason}: {exc}")
            raise Refusal("approval", f"approval refused ({exc.reason}): {exc}") from exc
        self.used.update(session.job.session_ids)
        self.record(session, "started", session.note)
        self.register(session)
        ephemeral = HedgedRandom(f"node/session-key/{self.identity.node_id}", sid, [self.hedge_key])(32)
        session.keys = SessionKeys(
            self.identity, sid, session.node_roster, ephemeral=X25519PrivateKey.from_private_bytes(ephemeral)
        )
        try:
            out = coldstate.run(session, lambda job: job.start())
        except (ProtocolAbort, UsageError) as exc:
            self.end(session, "aborted", str(exc))
            raise Refusal("protocol", str(exc)) from exc
        return self._progress(session, out, hello=session.keys.hello)

    def stale_reason(self, sid: bytes) -> str:
        why = self.cold.dropped.get(sid) if self.cold is not None else None
        if why is not None:
            return f"stale session: its saved state was refused and this node will not rejoin ({why})"
        return "stale session: this node restarted after it began and will not rejoin"

    # -- rounds --------------------------------------------------------------------------

    def register(self, session: Session) -> None:
        self.sessions[session.session_id] = session
        for sid in session.job.session_ids:
            self.rosters[sid] = session.node_roster

    def deliver(self, sid: bytes, messages: list[bytes], hellos: list[bytes]) -> bytes:
        session = self.sessions.get(sid)
        if session is None:
            if sid in self.stale:
                raise Refusal("stale-session", self.stale_reason(sid))
            if sid in self.used:
                raise Refusal("finished-session", f"session {sid.hex()} is over on this node")
            raise Refusal("unknown-session", f"this node takes no part in session {sid.hex()}")
        if session.kind == "sign":
            bad = self.compromised(session.key_id) & _signers(session)
            if bad:
                self.end(session, "aborted", f"the pairwise setup with parties {sorted(bad)} is marked compromised")
                raise Refusal(
                    "setup-compromised", f"session aborted: the setup with parties {sorted(bad)} failed a KOS check"
                )
        peers = session.peers
        rosters = {s: self.rosters[s] for s in session.job.session_ids}
        keys = session.keys
        assert keys is not None
        for hello in hellos:
            try:
                keys.accept(hello, known_senders=peers)
            except HandshakeError as exc:
                self.end(session, "aborted", f"hello refused ({exc.reason}): {exc}")
                raise Refusal("sealed", f"session aborted: hello refused ({exc.reason}): {exc}") from exc
        out: list[Envelope] = []
        for data in messages:
            try:
                env = open_sealed(
                    self.identity.node_id,
                    data,
                    known_senders=peers,
                    rosters=rosters,
                    guard=self.guard,
                    keys=keys.key,
                    public=session.job.is_public,
                )
            except SealedError as exc:
                self.end(session, "aborted", f"sealed message refused ({exc.reason}): {exc}")
                raise Refusal("sealed", f"session aborted: sealed message refused ({exc.reason}): {exc}") from exc
            try:
                out.extend(coldstate.run(session, lambda job: job.receive(env), env))  # noqa: B023 (called at once)
            except SetupCompromised as exc:
                self.mark_compromised(session, exc.peers)
                self.end(session, "aborted", str(exc))
                raise Refusal("protocol", f"session aborted: {exc}") from exc
            except BaseOtAbort as exc:
                self._count_incidents(session, exc.peers)
                self.end(session, "aborted", str(exc))
                raise Refusal("protocol", f"session aborted: {exc}") from exc
            except (ProtocolAbort, UsageError) as exc:
                self.end(session, "aborted", str(exc))
                raise Refusal("protocol", f"session aborted: {exc}") from exc
        session.deadline = self.clock() + self.config.session_timeout
        return self._progress(session, out)

    def _progress(self, session: Session, out: list[Envelope], *, hello: bytes | None = None) -> bytes:
        sealed = self._seal(session, out)
        extra = {} if hello is None else {"hello": hello}
        if not session.job.done:
            return rpc.ok(out=sealed, done=False, **extra)
        if session.outbox:
            # Finished with messages still owed to a peer whose hello never came: that peer
            # cannot finish, so neither may we claim the session succeeded.
            self.end(session, "aborted", "finished with messages for peers that never sent their hello")
            raise Refusal("sealed", "session aborted: some peers never sent their hello")
        result = self._finish(session)
        return rpc.ok(out=sealed, done=True, result=result, **extra)

    def _seal(self, session: Session, envelopes: list[Envelope]) -> list[bytes]:
        """Seal what can go now, in order per peer; secret envelopes for a peer without a key wait.

        A public round may go signed before the peer's hello; everything else is
        encrypted under the pair key, and waits in the outbox until the hello is in.
        Held envelopes go first, so each peer receives them in the order they were made.
        """
        keys = session.keys
        assert keys is not None
        pending = session.outbox
        session.outbox = []
        for env in envelopes:
            participants = session.job.participants(env.session_id)
            targets = [env.recipient] if env.recipient is not None else [p for p in participants if p != session.me]
            pending.extend((env, party) for party in targets)
        sealed: list[bytes] = []
        node_roster = session.node_roster
        me = self.identity.node_id
        held: set[int] = set()
        for env, party in pending:
            peer = session.roster[party].node_id
            if party in held:
                session.outbox.append((env, party))
                continue
            counter = (env.session_id, peer)
            seq = session.seq.get(counter, 0)
            key = keys.key(env.session_id, me, peer)
            if key is not None:
                sealed.append(seal(env, key=key, from_node=me, to_node=peer, seq=seq, roster=node_roster))
            elif session.job.is_public(env.session_id, env.protocol, env.round):
                sealed.append(sign_public(self.identity, env, to_node=peer, seq=seq, roster=node_roster))
            else:
                held.add(party)
                session.outbox.append((env, party))
                continue
            session.seq[counter] = seq + 1
        return sealed

    def _finish(self, session: Session) -> dict[str, Any]:
        result = session.job.result
        if session.kind == "sign":
            self.end(session, "signed", "")
            if isinstance(result, EcdsaSignature):
                return {"signature": result.to_bytes(), "recovery_id": result.recovery_id}
            assert isinstance(result, bytes)
            return {"signature": result}
        share: KeyShare | None = result
        if self.staging.staged_for(session.key_id) is not None:
            self.end(session, "aborted", f"another admin session of key {session.key_id} was staged first")
            raise Refusal("pending", f"key {session.key_id} already has a staged admin session")
        self.staging.stage(
            session.session_id,
            session.kind,
            session.key_id,
            session.staging["base"],
            session.staging["roster"],
            share,
            org=session.staging.get("org"),
        )
        self.end(session, "staged", "")
        return self.staging.result(session.session_id)

    # -- the end ---------------------------------------------------------------------------

    def end(self, session: Session, outcome: str, reason: str) -> None:
        """Log the outcome and forget the session (its secrets go with the job, its keys with it)."""
        self.record(session, outcome, reason)
        if session.keys is not None:
            session.keys.forget()
        session.outbox.clear()
        self.sessions.pop(session.session_id, None)
        for sid in session.job.session_ids:
            self.rosters.pop(sid, None)
            self.guard.forget(sid)

    def record(self, session: Session, outcome: str, reason: str) -> None:
        """One signing-log entry about ``session`` (the certificate goes with its start or refusal only)."""
        self.log.append(
            time=self.now(),
            kind=session.kind,
            session_id=session.session_id,
            key_id=session.key_id,
            path=session.path,
            digests=session.digests,
            outcome=outcome,
            reason=reason[: signlog.MAX_REASON],
            certificate=session.certificate if outcome in ("started", "refused") else None,
        )
        if self.on_record is not None:
            self.on_record(session, outcome)

    def expire(self) -> None:
        now = self.clock()
        for session in [s for s in self.sessions.values() if s.deadline < now]:
            self.end(session, "aborted", "session timed out: no message within the session timeout")

    def abort(self, sid: bytes) -> bool:
        """End a running session at the coordinator's request (anyone may: it loses nothing); False if none runs."""
        session = self.sessions.get(sid)
        if session is None:
            return False
        self.end(session, "aborted", "aborted at the coordinator's request")
        return True

    def persist(self) -> None:
        """A cold node's running sessions, saved (bound to its rollback counter) before any answer leaves."""
        if self.cold is not None:
            self.cold.save(self.sessions, self.guard, lambda session, reason: self.record(session, "progress", reason))


def _signers(session: Session) -> set[int]:
    """The parties a signing session runs with (a sign session's roster is the whole key's)."""
    job = session.job
    return set(job.signers) if isinstance(job, SignJob) else set(session.roster)
