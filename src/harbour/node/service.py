"""A signer node: its directory, and the one function that answers every request.

:class:`NodeService` owns a node's identity, its encrypted key shares
(:mod:`harbour.node.store`), its trusted approval authorities, the ledger of spent
certificate nonces and the signing log. :meth:`NodeService.handle` takes one
request (:mod:`harbour.node.rpc`) and returns one response; the HTTP server
(:mod:`harbour.node.server`) and the cold node's file exchange (``harbour node
offline``) both call it, so there is one code path to review.

What the node decides for itself, whatever the coordinator says:

- It joins a session only on a certificate from an authority it was configured
  with, naming exactly this operation (:mod:`harbour.node.approval`); each
  certificate once. Refusals are logged.
- A sign certificate that carries the approvers' evidence (:mod:`harbour.node.quorum`)
  is accepted only if the node's own check of the transaction, the approvers'
  signatures and the quorum passes (against the approvers it was configured to
  trust, if any), and a node configured with ``require_evidence`` signs nothing
  without it. Each transaction id is signed for one chain nonce only.
- Every session has its own ephemeral keys (:mod:`harbour.node.handshake`): the
  node signs a hello with its identity, derives a key with each peer from the peers'
  hellos, and drops them all when the session ends, so recorded traffic cannot be
  opened later with anything stolen from the node. Secret messages wait for those
  keys; only rounds the protocol declares public may go out before them, signed.
- It opens only sealed messages from the session's own members, in sequence
  (:mod:`harbour.node.sealed`); any tampered, replayed, reordered or foreign
  message aborts the session, and nothing is signed.
- A session is never resumed after a restart: a signing party's nonces exist
  only in memory, and a new party for an old session could be made to reuse
  nothing, but could be made to sign twice. The log's ``started`` entries let a
  restarted node name such sessions and refuse them as stale.
- A new share (keygen, refresh, reshare) is staged, not used, until the
  coordinator shows that every member of the new committee holds its part (a
  signed acknowledgement from each, over the new key's fingerprint); only then
  does it replace the old share. One admin session per key at a time.
- A failed KOS check in ECDSA signing (:class:`~harbour.mpc.ecdsa_sign.SetupCompromised`)
  is recorded, and the key refuses to sign with that peer until it is refreshed.

A cold node (``offline=True``) keeps its sessions between requests, as explicit
records encrypted in its store (:mod:`harbour.node.coldstate`): it has no other way
to hold a session across the files that carry its rounds. Each save first moves the
node's rollback counter on (:mod:`harbour.node.counter`) and binds the records to
it, so a copy of the directory put back later is refused instead of answering a
round twice with the same nonces; without a counter, a cold node refuses every
session whose replay could reveal a secret.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.hedge import HedgedRandom
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.ecdsa_setup import SETUP_ABORT_BUDGET, BaseOtAbort
from harbour.mpc.ecdsa_sign import SetupCompromised
from harbour.mpc.envelope import Envelope, ProtocolAbort, UsageError
from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import KeyShare, KeyShareError
from harbour.node import approval, coldstate, compromise, nonces, rpc, signlog
from harbour.node.coldstore import ColdSessions
from harbour.node.config import (
    CONFIG_FILE,
    CONFIG_OBJECT,
    DESCRIPTOR_FILE,
    LEDGER_FILE,
    LOG_FILE,
    STORE_DIR,
    NodeConfig,
    NodeStartError,
    init_node,
)
from harbour.node.counter import CounterError, RollbackCounter, open_counter
from harbour.node.handshake import HandshakeError, SessionKeys
from harbour.node.identity import IdentityError, NodeDescriptor, NodeIdentity
from harbour.node.jobs import SignJob, replays_secrets, scheme_of
from harbour.node.planning import Planner, default_key_id
from harbour.node.rotation import accept_rotation
from harbour.node.sealed import ReplayGuard, SealedError, open_sealed, seal, sign_public
from harbour.node.session import Session
from harbour.node.staging import Refusal, Staging, read_key
from harbour.node.store import SecretStore, StoreError

log = logging.getLogger("harbour.node")

__all__ = ["NodeService", "NodeStartError", "Refusal", "default_key_id", "init_node"]

MAX_SESSIONS: Final = 1024
HEDGE_KEY: Final = "hedge-key"


class NodeService:
    """One node, opened from its directory; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        config: NodeConfig,
        store: SecretStore,
        identity: NodeIdentity,
        ledger: nonces.NonceLedger,
        signlog_: signlog.SignLog,
        *,
        offline: bool,
        clock: Callable[[], float],
        counter: RollbackCounter | None = None,
    ) -> None:
        self.directory = directory
        self.config = config
        self.store = store
        self.identity = identity
        self.descriptor = identity.descriptor(config.name, config.url)
        self.ledger = ledger
        self.log = signlog_
        self.offline = offline
        self.clock = clock
        self.trusted = approval.trusted_authorities(*config.authorities)
        self.sessions: dict[bytes, Session] = {}
        self.rosters: dict[bytes, dict[str, int]] = {}
        self.guard = ReplayGuard()
        self.used: set[bytes] = set()
        self.stale: set[bytes] = set()
        self.counter = counter
        self.hedge_key = _hedge_key(store)
        self._marks: dict[str, set[int]] = {}
        self.staging = Staging(store, identity, signlog_, self.trusted, ledger, lambda: self._now())
        self.cold = ColdSessions(store, signlog_, identity, counter, self.hedge_key) if offline else None
        self.planner = Planner(
            store=store,
            identity=identity,
            config=config,
            trusted=self.trusted,
            ledger=ledger,
            staging=self.staging,
            sessions=self.sessions,
            compromised=self._compromised,
            hedge_key=self.hedge_key,
            offline=offline,
            clock=clock,
        )

    @classmethod
    def open(
        cls,
        directory: Path,
        *,
        passphrase: str | None = None,
        pin: str | None = None,
        offline: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> NodeService:
        """Open the node; NodeStartError with a clear message if it cannot (wrong secret, damage)."""
        directory = Path(directory)
        try:
            config_text = (directory / CONFIG_FILE).read_text()
            config = NodeConfig.from_json(config_text)
        except OSError as exc:
            raise NodeStartError(f"no node in {directory}: cannot read {CONFIG_FILE} ({exc.strerror})") from exc
        try:
            store = SecretStore.open(directory / STORE_DIR, passphrase=passphrase, pin=pin)
        except StoreError as exc:
            raise NodeStartError(f"cannot open the node's key store: {exc}") from exc
        try:
            identity = NodeIdentity.from_bytes(store.get("identity"))
            if store.get(CONFIG_OBJECT) != config_text.encode():
                raise NodeStartError(
                    f"{CONFIG_FILE} differs from the copy sealed in the node's store when it was created: "
                    "someone edited it (it names the authorities the node obeys); restore it"
                )
            if (
                identity.descriptor(config.name, config.url).to_json()
                != (directory / DESCRIPTOR_FILE).read_text().strip()
            ):
                raise NodeStartError(f"{DESCRIPTOR_FILE} does not match the node's identity")
            # The ledger's exclusive lock comes first: a second process for this node stops here.
            ledger = nonces.NonceLedger.open(directory / LEDGER_FILE)
            try:
                log_path = directory / LOG_FILE
                if log_path.exists():
                    torn = signlog.truncate_torn_tail(log_path)
                    if torn:  # a crash mid-append: that entry was never acknowledged to anyone
                        log.warning("cut an incomplete last line off %s: %r", log_path, torn[:200])
                    signlog.verify(log_path)
                log_ = signlog.SignLog.open(log_path)
            except BaseException:
                ledger.close()
                raise
            try:
                counter = open_counter(config.counter, store_id=store.store_id, pkcs11_config=store.pkcs11, pin=pin)
            except CounterError as exc:
                log_.close()
                ledger.close()
                raise NodeStartError(f"the node's rollback counter cannot be used: {exc}") from exc
        except NodeStartError:
            store.close()
            raise
        except (StoreError, IdentityError, OSError, ValueError) as exc:
            store.close()
            raise NodeStartError(f"node {directory} cannot start: {exc}") from exc
        node = cls(directory, config, store, identity, ledger, log_, offline=offline, clock=clock, counter=counter)
        try:
            node._recover()
        except CounterError as exc:
            node.log.close()
            node.ledger.close()
            node.store.close()
            raise NodeStartError(f"the node's rollback counter cannot be read: {exc}") from exc
        return node

    def close(self) -> None:
        try:
            if self.offline:
                self._persist()
        except Exception:  # unsaved sessions are dropped at the next start: safe, only lost
            log.exception("cannot save the cold node's sessions on close")
        finally:
            self.log.close()
            self.ledger.close()
            self.store.close()

    def _now(self) -> int:
        return int(self.clock())

    # -- restart -----------------------------------------------------------------------

    def _recover(self) -> None:
        """Learn every session id ever used; log the ones a crash left open as aborted."""
        open_: dict[str, signlog.Entry] = {}
        self._migrate_legacy_marks()
        entries = list(signlog.entries(self.directory / LOG_FILE))
        for key_id in compromise.heal(self.store, compromise.marks_from_log(entries)):
            log.warning("key %s had lost KOS-failure marks its log records; they are back in its share", key_id)
        for node in compromise.heal_incidents(self.store, compromise.incidents_from_log(entries)):
            log.warning("the base-OT incident count of node %s was behind its log; restored", node)
        for entry in entries:
            sid = bytes.fromhex(entry.session_id)
            self.used.add(sid)
            if entry.outcome in ("started", "progress"):
                open_[entry.session_id] = entry
            elif entry.outcome not in ("compromised", "incident"):  # records within a session, not its end
                open_.pop(entry.session_id, None)
        kept: dict[bytes, Session] = {}
        if self.cold is not None:
            progress = {sid: e for sid, e in open_.items() if e.outcome == "progress"}
            kept = self.cold.load(progress, self.guard)
        for sid_hex, entry in open_.items():
            sid = bytes.fromhex(sid_hex)
            if sid in kept:
                self._register(kept[sid])
                continue
            self.stale.add(sid)
            why = self.cold.dropped.get(sid) if self.cold is not None else None
            reason = "the node restarted during the session; its state was discarded and it will not rejoin"
            if why is not None:
                reason = f"its saved state was refused and it will not rejoin: {why}"
            self.log.append(
                time=self._now(),
                kind=entry.kind,
                session_id=sid,
                key_id=entry.key_id,
                path=entry.path,
                digests=[bytes.fromhex(d) for d in entry.digests],
                outcome="aborted",
                reason=reason[: signlog.MAX_REASON],
            )

    def _migrate_legacy_marks(self) -> None:
        """An earlier version kept KOS-failure marks in ``compromised/<key id>``: move them into share and log.

        Left there, deleting that object alone would lift the block; in the share and
        the log, it cannot be lifted short of a refresh (or a rollback of both).
        """
        for name in self.store.names(compromise.LEGACY_PREFIX):
            key_id = name.removeprefix(compromise.LEGACY_PREFIX)
            if not self.store.exists(f"keys/{key_id}"):
                self.store.delete(name)
                continue
            parties = compromise.legacy_marks(self.store, key_id)
            share = read_key(self.store, key_id)[0]
            parties = {p for p in parties if p in share.parties and p != share.identifier}
            if parties:
                self.log.append(
                    time=self._now(), kind="sign", session_id=hashlib.sha256(name.encode()).digest(),
                    key_id=key_id, path="m", outcome="compromised", reason=compromise.parties_reason(parties),
                )  # fmt: skip
                compromise.mark(self.store, key_id, parties)
            self.store.delete(name)

    def _persist(self) -> None:
        if self.cold is not None:
            self.cold.save(self.sessions, self.guard, lambda session, reason: self._log(session, "progress", reason))

    # -- entry point ------------------------------------------------------------------

    def handle(self, data: bytes) -> bytes:
        """Answer one request; never raises.

        A cold node saves its sessions before the answer leaves; if it cannot (its
        rollback counter is unreachable), the answer is withheld and the sessions are
        ended, since a round whose state was not saved must never be answered again.
        """
        answer = self._answer(data)
        if not self.offline:
            return answer
        try:
            self._persist()
        except Exception as exc:
            log.exception("cannot save the cold node's sessions")
            for session in list(self.sessions.values()):
                self._end(session, "aborted", f"its state could not be saved: {exc}")
            with contextlib.suppress(Exception):
                self._persist()
            return rpc.error("internal", f"this cold node cannot save its sessions ({exc}); they were ended")
        return answer

    def _answer(self, data: bytes) -> bytes:
        try:
            request = rpc.parse_request(data)
        except rpc.RequestError as exc:
            return rpc.error("bad-request", str(exc))
        try:
            self._expire()
            op = request["op"]
            if op == "describe":
                return rpc.ok(descriptor=self.descriptor.to_json())
            if op == "key":
                return self._key_info(request["key_id"])
            if op == "start":
                return self._start(request)
            if op == "deliver":
                return self._deliver(request["session_id"], request["messages"], request["hellos"])
            if op == "commit":
                key_id, receipt = self.staging.commit(
                    request["session_id"], request["fingerprint"], request["acks"], request["receipts"]
                )
                self._marks.pop(key_id, None)  # a new share, a new setup: its marks are its own
                return rpc.ok(key_id=key_id, receipt=receipt)
            if op == "rotate":
                return self._rotate(request["statement"], request["certificate"])
            if op == "staged":
                sid = request["session_id"]
                committed = self.staging.is_committed(sid)
                return rpc.ok(result=self.staging.result(sid), roster=self.staging.roster(sid), committed=committed)
            return self._abort_request(request["session_id"], request["certificate"])
        except Refusal as exc:
            return rpc.error(exc.reason, str(exc))
        except Exception as exc:
            log.exception("internal error")  # the detail stays in the node's own log
            return rpc.error("internal", f"internal error ({type(exc).__name__}); see the node's log")

    # -- keys ---------------------------------------------------------------------------

    def _load_key(self, key_id: str) -> tuple[KeyShare, dict[int, NodeDescriptor]]:
        return read_key(self.store, key_id)

    def _key_info(self, key_id: str) -> bytes:
        share, roster = self._load_key(key_id)
        return rpc.ok(
            key_id=key_id,
            public=rpc.encode_public(share.public),
            roster=rpc.roster_value(roster),
            chain_code=share.extensions.get(CHAIN_CODE, b""),
        )

    def _compromised(self, key_id: str) -> set[int]:
        """The marked peers of ``key_id`` (cached: reading them means decrypting and checking the key record)."""
        marks = self._marks.get(key_id)
        if marks is None:
            marks = self._marks[key_id] = compromise.compromised(self.store, key_id)
        return set(marks)

    # -- start -------------------------------------------------------------------------

    def _start(self, request: dict[str, Any]) -> bytes:
        sid: bytes = request["session_id"]
        if sid in self.sessions or sid in self.used:
            if sid in self.stale:
                raise Refusal("stale-session", self._stale_reason(sid))
            raise Refusal("session-exists", f"session {sid.hex()} was already used on this node")
        if len(self.sessions) >= MAX_SESSIONS:
            raise Refusal("busy", f"this node already runs {MAX_SESSIONS} sessions")
        kind, args, certificate = request["kind"], request["args"], request["certificate"]
        session, check = self.planner.plan(sid, kind, args, certificate)
        try:
            session.job.prepare()
        except (UsageError, KeyShareError, ValueError) as exc:
            raise Refusal("bad-request", f"cannot start this {kind} session: {exc}") from exc
        setup = session.job.phases[-1].participants  # the threshold-ECDSA setup: whom this node runs base OTs with
        if session.kind != "sign" and scheme_of(session.job) == ECDSA_SCHEME and session.me in setup:
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
            self._log(session, "refused", f"{exc.reason}: {exc}")
            raise Refusal("approval", f"approval refused ({exc.reason}): {exc}") from exc
        self.used.update(session.job.session_ids)
        self._log(session, "started", session.note)
        self._register(session)
        ephemeral = HedgedRandom(f"node/session-key/{self.identity.node_id}", sid, [self.hedge_key])(32)
        session.keys = SessionKeys(
            self.identity, sid, session.node_roster, ephemeral=X25519PrivateKey.from_private_bytes(ephemeral)
        )
        try:
            out = coldstate.run(session, lambda job: job.start())
        except (ProtocolAbort, UsageError) as exc:
            self._end(session, "aborted", str(exc))
            raise Refusal("protocol", str(exc)) from exc
        return self._progress(session, out, hello=session.keys.hello)

    def _stale_reason(self, sid: bytes) -> str:
        why = self.cold.dropped.get(sid) if self.cold is not None else None
        if why is not None:
            return f"stale session: its saved state was refused and this node will not rejoin ({why})"
        return "stale session: this node restarted after it began and will not rejoin"

    # -- rounds --------------------------------------------------------------------------

    def _register(self, session: Session) -> None:
        self.sessions[session.session_id] = session
        for sid in session.job.session_ids:
            self.rosters[sid] = session.node_roster

    def _deliver(self, sid: bytes, messages: list[bytes], hellos: list[bytes]) -> bytes:
        session = self.sessions.get(sid)
        if session is None:
            if sid in self.stale:
                raise Refusal("stale-session", self._stale_reason(sid))
            if sid in self.used:
                raise Refusal("finished-session", f"session {sid.hex()} is over on this node")
            raise Refusal("unknown-session", f"this node takes no part in session {sid.hex()}")
        if session.kind == "sign":
            bad = self._compromised(session.key_id) & _signers(session)
            if bad:
                self._end(session, "aborted", f"the pairwise setup with parties {sorted(bad)} is marked compromised")
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
                self._end(session, "aborted", f"hello refused ({exc.reason}): {exc}")
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
                self._end(session, "aborted", f"sealed message refused ({exc.reason}): {exc}")
                raise Refusal("sealed", f"session aborted: sealed message refused ({exc.reason}): {exc}") from exc
            try:
                out.extend(coldstate.run(session, lambda job: job.receive(env), env))  # noqa: B023 (called at once)
            except SetupCompromised as exc:
                self._mark_compromised(session, exc.peers)
                self._end(session, "aborted", str(exc))
                raise Refusal("protocol", f"session aborted: {exc}") from exc
            except BaseOtAbort as exc:
                self._count_incidents(session, exc.peers)
                self._end(session, "aborted", str(exc))
                raise Refusal("protocol", f"session aborted: {exc}") from exc
            except (ProtocolAbort, UsageError) as exc:
                self._end(session, "aborted", str(exc))
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
            self._end(session, "aborted", "finished with messages for peers that never sent their hello")
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
            self._end(session, "signed", "")
            if isinstance(result, EcdsaSignature):
                return {"signature": result.to_bytes(), "recovery_id": result.recovery_id}
            assert isinstance(result, bytes)
            return {"signature": result}
        share: KeyShare | None = result
        if self.staging.staged_for(session.key_id) is not None:
            self._end(session, "aborted", f"another admin session of key {session.key_id} was staged first")
            raise Refusal("pending", f"key {session.key_id} already has a staged admin session")
        self.staging.stage(
            session.session_id, session.kind, session.key_id, session.staging["base"], session.staging["roster"], share
        )
        self._end(session, "staged", "")
        return self.staging.result(session.session_id)

    def _end(self, session: Session, outcome: str, reason: str) -> None:
        """Log the outcome and forget the session (its secrets go with the job, its keys with it)."""
        self._log(session, outcome, reason)
        if session.keys is not None:
            session.keys.forget()
        session.outbox.clear()
        self.sessions.pop(session.session_id, None)
        for sid in session.job.session_ids:
            self.rosters.pop(sid, None)
            self.guard.forget(sid)

    def _log(self, session: Session, outcome: str, reason: str) -> None:
        self.log.append(
            time=self._now(),
            kind=session.kind,
            session_id=session.session_id,
            key_id=session.key_id,
            path=session.path,
            digests=session.digests,
            outcome=outcome,
            reason=reason[: signlog.MAX_REASON],
            certificate=session.certificate if outcome in ("started", "refused") else None,
        )

    def _mark_compromised(self, session: Session, peers: frozenset[int]) -> None:
        """Record the pair and end every running session of the key with those peers.

        Each KOS check a cheating peer gets evaluated can leak a bit of this node's
        long-term OT correlation, so sessions already in flight must not run on either.
        """
        # The log first: it is what the mark is rebuilt from if the key record is ever put back.
        self._log(session, "compromised", compromise.parties_reason(peers))
        self._marks.pop(session.key_id, None)
        bad = compromise.mark(self.store, session.key_id, peers) | self._compromised(session.key_id)
        for other in list(self.sessions.values()):
            same_key = other is not session and other.kind == "sign" and other.key_id == session.key_id
            if same_key and bad & _signers(other):
                self._end(other, "aborted", f"the pairwise setup with parties {sorted(bad)} failed a KOS check")

    def _count_incidents(self, session: Session, parties: frozenset[int]) -> None:
        """A peer's base OT failed its check in a setup: logged, and counted against the budget."""
        nodes = [session.roster[p].node_id for p in parties if p in session.roster]
        self._log(session, "incident", compromise.nodes_reason(nodes))
        for node in nodes:
            count = compromise.add_incident(self.store, node)
            log.warning("node %s caused base-OT abort number %d in an ECDSA setup", node, count)

    def _expire(self) -> None:
        now = self.clock()
        for session in [s for s in self.sessions.values() if s.deadline < now]:
            self._end(session, "aborted", "session timed out: no message within the session timeout")

    def _rotate(self, statement: bytes, certificate: bytes) -> bytes:
        keys = accept_rotation(
            statement,
            certificate,
            store=self.store,
            sign_log=self.log,
            trusted=self.trusted,
            ledger=self.ledger,
            me=self.identity.node_id,
            running=[(sid, session.node_roster) for sid, session in self.sessions.items()],
            now=self._now(),
        )
        return rpc.ok(keys=keys)

    def _abort_request(self, sid: bytes, certificate: bytes) -> bytes:
        """End a running session (anyone may: it loses nothing), or discard a staged result (authority only)."""
        session = self.sessions.get(sid)
        if session is not None:
            self._end(session, "aborted", "aborted at the coordinator's request")
            return rpc.ok()
        self.staging.discard(sid, certificate)
        return rpc.ok()


def _hedge_key(store: SecretStore) -> bytes:
    """The node's own 32 random bytes that every secret its parties draw is hedged with (made once)."""
    if not store.exists(HEDGE_KEY):
        store.put(HEDGE_KEY, secrets.token_bytes(32))
    key = store.get(HEDGE_KEY)
    if len(key) != 32:
        raise StoreError("corrupt", f"the store object {HEDGE_KEY} is not 32 bytes")
    return key


def _signers(session: Session) -> set[int]:
    """The parties a signing session runs with (a sign session's roster is the whole key's)."""
    job = session.job
    return set(job.signers) if isinstance(job, SignJob) else set(session.roster)





