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
import hmac
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import cbor2

from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.group import RandomBytes
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.ecdsa_sign import SetupCompromised
from harbour.mpc.envelope import Envelope, ProtocolAbort, UsageError
from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import SCHEME_CURVES, KeyShare, KeyShareError
from harbour.node import approval, coldstate, quorum, rpc, signlog
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
from harbour.node.jobs import Job, KeygenJob, RefreshJob, ReshareJob, SignJob, replays_secrets
from harbour.node.rotation import Rotation, RotationError, rotate_roster, rotation_id
from harbour.node.sealed import ReplayGuard, SealedError, open_sealed, seal, sign_public
from harbour.node.session import Session
from harbour.node.staging import Refusal, Staging, read_key
from harbour.node.store import SecretStore, StoreError

log = logging.getLogger("harbour.node")

__all__ = ["NodeService", "NodeStartError", "Refusal", "default_key_id", "init_node"]

MAX_SESSIONS: Final = 1024


def _roster_cbor(roster: Mapping[int, NodeDescriptor]) -> list[list[Any]]:
    return rpc.roster_value(roster)


class NodeService:
    """One node, opened from its directory; see the module docstring."""

    def __init__(
        self,
        directory: Path,
        config: NodeConfig,
        store: SecretStore,
        identity: NodeIdentity,
        ledger: approval.NonceLedger,
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
        self._checkpoints: dict[bytes, str] = {}
        self.counter = counter
        self._counter_value: int | None = None
        self._dropped: dict[bytes, str] = {}
        self.staging = Staging(store, identity, signlog_, self.trusted, ledger, lambda: self._now())

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
            ledger = approval.NonceLedger.open(directory / LEDGER_FILE)
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
        for entry in signlog.entries(self.directory / LOG_FILE):
            sid = bytes.fromhex(entry.session_id)
            self.used.add(sid)
            if entry.outcome in ("started", "progress"):
                open_[entry.session_id] = entry
            elif entry.outcome not in ("compromised", "incident"):  # records within a session, not its end
                open_.pop(entry.session_id, None)
        kept: dict[bytes, Session] = {}
        checkpoints = {sid: e for sid, e in open_.items() if e.outcome == "progress"}
        if self.offline:
            self._counter_value = None if self.counter is None else self.counter.read()
            for name in self.store.names("sessions/"):
                sid_hex = name.removeprefix("sessions/")
                try:
                    data = self.store.get(name)
                    last = checkpoints.get(sid_hex)
                    if last is None or last.reason != self._checkpoint_reason(
                        bytes.fromhex(last.session_id), last.seq, data
                    ):
                        # Not the state the log last recorded: an older copy put back (its nonces
                        # were used already) or a crash between the two writes. Never resume it.
                        raise ValueError("the session state is not the one the log recorded last")
                    session, guard = coldstate.decode(
                        data,
                        identity=self.identity,
                        counter=self._counter_value,
                        load_share=lambda key_id: read_key(self.store, key_id)[0],
                    )
                    if self.counter is None and replays_secrets(session.job):
                        raise ValueError("a node without a rollback counter does not keep this kind of session")
                    kept[session.session_id] = session
                    self._checkpoints[session.session_id] = _checkpoint(data)
                    self.guard.merge(guard)
                except Exception as exc:  # an unusable state (rolled back, damaged, an upgrade) ends that session
                    log.warning("dropping session state %s: %s", name, exc)
                    with contextlib.suppress(ValueError):
                        self._dropped[bytes.fromhex(sid_hex)] = str(exc)
                    self.store.delete(name)
        for sid_hex, entry in open_.items():
            sid = bytes.fromhex(sid_hex)
            if sid in kept:
                self._register(kept[sid])
                continue
            self.stale.add(sid)
            why = self._dropped.get(sid)
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

    def _persist(self) -> None:
        """Cold node: every open session, encrypted in the store, bound to the counter, its hash in the log.

        Any change (a session new, advanced or ended) first moves the rollback counter
        on and then rewrites every open session bound to the new value, so only the
        latest saved state can ever be resumed: a copy of the directory put back later
        is behind the counter. The log entry adds the check the store cannot give even
        without a counter: a state is resumed only if it is the last one logged.
        """
        live = {f"sessions/{sid.hex()}" for sid in self.sessions}
        stale = [name for name in self.store.names("sessions/") if name not in live]
        records = {sid: self._record(session, self._counter_value) for sid, session in self.sessions.items()}
        changed = [sid for sid, data in records.items() if self._checkpoints.get(sid) != _checkpoint(data)]
        if not stale and not changed:
            return
        if self.counter is not None:
            self._counter_value = self.counter.advance()
            records = {sid: self._record(session, self._counter_value) for sid, session in self.sessions.items()}
            changed = list(records)
        for name in stale:
            self.store.delete(name)
            self._checkpoints.pop(bytes.fromhex(name.removeprefix("sessions/")), None)
        for sid in changed:
            data = records[sid]
            self.store.put(f"sessions/{sid.hex()}", data)
            self._log(self.sessions[sid], "progress", self._checkpoint_reason(sid, self.log.head[0] + 1, data))
            self._checkpoints[sid] = _checkpoint(data)

    def _record(self, session: Session, counter: int | None) -> bytes:
        job = session.job
        root = None
        if isinstance(job, SignJob | RefreshJob) or (isinstance(job, ReshareJob) and job.share is not None):
            root = read_key(self.store, session.key_id)[0]
        return coldstate.encode(session, counter=counter, root_share=root, guard=self.guard)

    def _checkpoint_reason(self, sid: bytes, seq: int, state: bytes) -> str:
        """``state <hash> mac <tag>``: the tag, under a key only the store holds, binds the log position.

        Without it anyone able to append to the log could re-bless an older state
        file; with it, an entry copied to a later position does not verify.
        """
        if not self.store.exists("log-key"):
            self.store.put("log-key", secrets.token_bytes(32))
        tag = hmac.new(
            self.store.get("log-key"), sid + seq.to_bytes(8, "big") + hashlib.sha256(state).digest(), "sha256"
        )
        return f"{_checkpoint(state)} mac {tag.hexdigest()[:32]}"

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
            roster=_roster_cbor(roster),
            chain_code=share.extensions.get(CHAIN_CODE, b""),
        )

    def _compromised(self, key_id: str) -> set[int]:
        name = f"compromised/{key_id}"
        if not self.store.exists(name):
            return set()
        return set(cbor2.loads(self.store.get(name)))

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
        session, check = self._plan(sid, kind, args, certificate)
        try:
            session.job.prepare()
        except (UsageError, KeyShareError, ValueError) as exc:
            raise Refusal("bad-request", f"cannot start this {kind} session: {exc}") from exc
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
        session.keys = SessionKeys(self.identity, sid, session.node_roster)
        try:
            out = coldstate.run(session, lambda job: job.start())
        except (ProtocolAbort, UsageError) as exc:
            self._end(session, "aborted", str(exc))
            raise Refusal("protocol", str(exc)) from exc
        return self._progress(session, out, hello=session.keys.hello)

    def _plan(
        self, sid: bytes, kind: str, args: dict[str, Any], certificate: bytes
    ) -> tuple[Session, Callable[[], None]]:
        """The session a start request asks for, and the approval check it needs."""
        now = self._now()
        deadline = self.clock() + self.config.session_timeout
        me_id = self.identity.node_id
        # A cold node rebuilds its sessions by replay, so their randomness comes from a seed it keeps.
        recording = coldstate.Recording.new() if self.offline else None
        rng = recording.rng if recording is not None else secrets.token_bytes

        def verify(**what: Any) -> Callable[[], None]:
            def check() -> None:
                approval.verify(certificate, self.trusted, now=now, ledger=self.ledger, **what)

            return check

        try:
            if kind == "sign":
                key_id = args["key_id"]
                share, roster = self._load_key(key_id)
                try:
                    path = approval.canonical_path(args["path"])
                except approval.ApprovalError as exc:
                    raise Refusal("bad-request", str(exc)) from exc
                signers = args["signers"]
                self._check_signers(share, signers, key_id)
                message = args["message"]
                if share.scheme == ECDSA_SCHEME and len(message) != 32:
                    raise Refusal("bad-request", "threshold ECDSA signs a 32-byte digest")
                digest = approval.approved_digest(message)
                sign_job = SignJob(sid, share, path, signers, message, rng=rng)
                session = Session(
                    sid, kind, key_id, path, [digest], certificate, sign_job, roster, share.identifier, deadline
                )
                session.recording = recording
                evidence_check = self._evidence_check(session, sign_job, digest)
                return session, verify(
                    kind="sign",
                    key_id=key_id,
                    path=path,
                    digest=digest,
                    signers=signers,
                    evidence_check=evidence_check,
                )
            if kind == "keygen":
                session, check = self._plan_keygen(sid, args, certificate, deadline, verify, rng)
            elif kind == "refresh":
                key_id = args["key_id"]
                share, roster = self._load_key(key_id)
                self._no_pending(key_id)
                job: Job = RefreshJob(sid, share, rng=rng)
                session = Session(sid, kind, key_id, "m", [], certificate, job, roster, share.identifier, deadline)
                session.staging = {"roster": roster, "base": share.public.fingerprint()}
                check = verify(kind="refresh", key_id=key_id, path="m", params={})
            else:
                session, check = self._plan_reshare(sid, args, certificate, deadline, verify, me_id, rng)
            session.recording = recording
            return session, check
        except (UsageError, KeyShareError, ValueError) as exc:
            if isinstance(exc, approval.ApprovalError):
                raise
            raise Refusal("bad-request", f"cannot start this {kind} session: {exc}") from exc

    def _evidence_check(self, session: Session, job: SignJob, digest: bytes) -> Callable[[approval.Certificate], None]:
        """The check :func:`approval.verify` runs on a sign certificate before spending it.

        The child key comes from the node's own share (the job derived it for
        ``path``), never from the request, so the intent's sender is compared with
        the account this node is actually about to sign for.
        """

        def check(cert: approval.Certificate) -> None:
            config = self.config
            if cert.evidence is None:
                if config.require_evidence:
                    raise approval.ApprovalError(
                        "evidence",
                        "this node signs only with the approvers' evidence in the certificate (require_evidence), "
                        "and this certificate has none",
                    )
                return
            child = job.share.group_public_key
            if job.share.scheme != ECDSA_SCHEME or not isinstance(child, Secp256k1Point):
                raise approval.ApprovalError(
                    "evidence",
                    f"approval evidence describes an Ethereum transaction, which key {session.key_id} "
                    f"({job.share.scheme}) does not sign",
                )
            evidence = quorum.verify_evidence(
                cert.evidence,
                key_id=session.key_id,
                path=session.path,
                digest=digest,
                child_public_key=child,
                trusted_approvers=config.trusted_approvers,
                min_approvals=config.min_approvals,
            )
            self._pin(evidence, session.key_id, session.path)
            approvers = ",".join(k.hex()[:16] for k, _ in evidence.approvals)
            session.note = (
                f"evidence: org {evidence.org!r} transaction {evidence.transaction_id!r} "
                f"nonce {evidence.transaction.nonce} approvers {approvers}"
            )

        return check

    def _pin(self, evidence: quorum.Evidence, key_id: str, path: str) -> None:
        """Record (or check) the chain nonce this transaction id is signed as, before the nonce is spent.

        Written before the certificate's nonce: if that then fails (a replay), the
        record describes the same transaction, so it never blocks an honest one.
        """
        name = f"withdrawals/{quorum.pin_name(evidence)}"
        if self.store.exists(name):
            quorum.check_pin(self.store.get(name), evidence, key_id=key_id, path=path)
            return
        self.store.put(name, quorum.pin_value(evidence, key_id=key_id, path=path))

    def _check_signers(self, share: KeyShare, signers: tuple[int, ...], key_id: str) -> None:
        if share.identifier not in signers:
            raise Refusal("bad-request", f"this node is party {share.identifier}, not one of the signers {signers}")
        if not set(signers) <= set(share.parties) or len(signers) < share.threshold:
            raise Refusal(
                "bad-request",
                f"signers must be at least {share.threshold} parties of the key {list(share.parties)}",
            )
        bad = self._compromised(key_id) & set(signers)
        if bad:
            raise Refusal(
                "setup-compromised",
                f"the pairwise setup with parties {sorted(bad)} failed a KOS check; refresh key {key_id} first",
            )

    def _no_pending(self, key_id: str) -> None:
        """Refuse a second admin session on a key while one runs or awaits its commit.

        Two refreshes of one key that both finish could be committed on different
        nodes, leaving no t shares of one generation: the key would be lost.
        """
        for session in self.sessions.values():
            if session.kind != "sign" and session.key_id == key_id:
                raise Refusal("pending", f"key {key_id} has an admin session running ({session.session_id.hex()})")
        staged = self.staging.staged_for(key_id)
        if staged is not None:
            raise Refusal("pending", f"key {key_id} has an uncommitted admin session ({staged}); commit or discard it")

    def _plan_keygen(
        self, sid: bytes, args: dict[str, Any], certificate: bytes, deadline: float, verify: Any, rng: RandomBytes
    ) -> tuple[Session, Callable[[], None]]:
        key_id, scheme, threshold = args["key_id"], args["scheme"], args["threshold"]
        roster: dict[int, NodeDescriptor] = args["roster"]
        if scheme not in SCHEME_CURVES:
            raise Refusal("bad-request", f"unknown scheme {scheme!r}")
        me = self._my_party(roster)
        self._no_retired(roster)
        if self.store.exists(f"keys/{key_id}"):
            raise Refusal("key-exists", f"this node already holds a key named {key_id!r}")
        self._no_pending(key_id)
        job = KeygenJob(sid, me, scheme, threshold, sorted(roster), rng=rng)
        session = Session(sid, "keygen", key_id, "m", [], certificate, job, roster, me, deadline)
        session.staging = {"roster": roster, "base": b""}
        params = {
            "scheme": scheme,
            "threshold": threshold,
            "roster": rpc.roster_hash([d.node_id for d in roster.values()]),
        }
        cert_key_id = _certificate_key_id(certificate)
        expected = cert_key_id if cert_key_id else default_key_id(sid)
        if key_id != expected:
            raise Refusal("bad-request", f"the new key must be named {expected!r} (from the certificate or session)")
        return session, verify(kind="keygen", key_id=cert_key_id, path="m", params=params)

    def _plan_reshare(
        self,
        sid: bytes,
        args: dict[str, Any],
        certificate: bytes,
        deadline: float,
        verify: Any,
        me_id: str,
        rng: RandomBytes,
    ) -> tuple[Session, Callable[[], None]]:
        key_id, threshold = args["key_id"], args["threshold"]
        dealers: dict[int, NodeDescriptor] = args["dealers"]
        new: dict[int, NodeDescriptor] = args["roster"]
        public = args["public"]
        roster = dict(dealers)
        for party, descriptor in new.items():
            if party in roster and roster[party].node_id != descriptor.node_id:
                raise Refusal("bad-request", f"party {party} is two different nodes among dealers and new committee")
            roster[party] = descriptor
        if len({d.node_id for d in roster.values()}) != len(roster):
            raise Refusal("bad-request", "a node has two party numbers in this reshare")
        me = self._my_party(roster)
        self._no_retired(roster)
        share: KeyShare | None = None
        if me in dealers:
            share, stored = self._load_key(key_id)
            if share.public != public:
                raise Refusal("bad-request", "the public key package is not the one of the stored key")
            if share.extensions.get(CHAIN_CODE, b"") != args["chain_code"]:
                raise Refusal("bad-request", "the chain code is not the one of the stored key")
            for party, descriptor in dealers.items():
                if party not in stored or stored[party].node_id != descriptor.node_id:
                    raise Refusal("bad-request", f"dealer {party} is not that party of the stored key")
        elif self.store.exists(f"keys/{key_id}"):
            raise Refusal("key-exists", f"this node holds key {key_id!r} already but is not one of the dealers")
        self._no_pending(key_id)
        metadata = {CHAIN_CODE: args["chain_code"]} if args["chain_code"] else {}
        job = ReshareJob(
            sid, me, public, sorted(dealers), threshold, sorted(new), share=share, metadata=metadata, rng=rng
        )
        session = Session(sid, "reshare", key_id, "m", [], certificate, job, roster, me, deadline)
        session.staging = {"roster": new, "base": public.fingerprint()}
        # A node new to the key has nothing but the certificate to check the old key and its
        # dealers against: the authority binds both, not just the group key.
        params = {
            "threshold": threshold,
            "roster": rpc.roster_hash([d.node_id for d in new.values()]),
            "dealers": rpc.roster_hash([d.node_id for d in dealers.values()]),
            "group_key": public.group_public_key.encode().hex(),
            "fingerprint": public.fingerprint().hex(),
            "chain_code": args["chain_code"].hex(),
        }
        return session, verify(kind="reshare", key_id=key_id, path="m", params=params)

    def _stale_reason(self, sid: bytes) -> str:
        why = self._dropped.get(sid)
        if why is not None:
            return f"stale session: its saved state was refused and this node will not rejoin ({why})"
        return "stale session: this node restarted after it began and will not rejoin"

    def _no_retired(self, roster: Mapping[int, NodeDescriptor]) -> None:
        """A node whose identity was rotated away never joins a new committee under its old key."""
        for descriptor in roster.values():
            if self.store.exists(f"rotated/{descriptor.node_id}"):
                raise Refusal("rotated", f"node {descriptor.node_id} was rotated to a new identity; use that one")

    def _my_party(self, roster: Mapping[int, NodeDescriptor]) -> int:
        for party, descriptor in roster.items():
            if descriptor.node_id == self.identity.node_id:
                if descriptor.sign_pk != self.identity.sign_pk:
                    raise Refusal("bad-request", "the roster lists this node with other keys")
                return party
        raise Refusal("bad-request", "this node is not in the session's roster")

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
        bad = self._compromised(session.key_id) | set(peers)
        self.store.put(f"compromised/{session.key_id}", cbor2.dumps(sorted(bad)))
        for other in list(self.sessions.values()):
            same_key = other is not session and other.kind == "sign" and other.key_id == session.key_id
            if same_key and bad & _signers(other):
                self._end(other, "aborted", f"the pairwise setup with parties {sorted(bad)} failed a KOS check")

    def _expire(self) -> None:
        now = self.clock()
        for session in [s for s in self.sessions.values() if s.deadline < now]:
            self._end(session, "aborted", "session timed out: no message within the session timeout")

    def _rotate(self, statement: bytes, certificate: bytes) -> bytes:
        """Another node's new identity, on its statement and the authority's certificate: update every roster.

        Refused while a session or staged result involves that node (its roster would
        change under it). One rotation per old identity: another statement about the
        same node is refused, so a thief of the old key cannot move the node again.
        """
        try:
            rotation = Rotation.decode(statement)
        except RotationError as exc:
            raise Refusal("bad-request", f"rotation statement refused: {exc}") from exc
        old, new = rotation.old.node_id, rotation.new.node_id
        sid = rotation_id(statement)
        if old == self.identity.node_id:
            raise Refusal("bad-request", "this node rotates its own identity with harbour node rotate-keys")
        record = f"rotated/{old}"
        if self.store.exists(record):
            if self.store.get(record) != sid:
                raise Refusal("rotated", f"node {old} was rotated to another identity already")
            return rpc.ok(keys=[])
        for session in self.sessions.values():
            if old in session.node_roster:
                raise Refusal("pending", f"session {session.session_id.hex()} runs with node {old}; retry after it")
        for name in self.store.names("pending/"):
            pending = cbor2.loads(self.store.get(name))
            if any(d.node_id == old for d in rpc.parse_roster(pending["roster"]).values()):
                raise Refusal("pending", f"a staged result ({name}) names node {old}: commit or discard it first")
        rotated = {}  # worked out before the certificate is spent, so a refusal here leaves it unspent
        for name in self.store.names("keys/"):
            entry = cbor2.loads(self.store.get(name))
            try:
                roster = rotate_roster(rpc.parse_roster(entry["roster"]), rotation)
            except RotationError as exc:
                raise Refusal("bad-request", f"rotation refused for {name}: {exc}") from exc
            if roster is not None:
                rotated[name] = {**entry, "roster": rpc.roster_value(roster)}
        try:
            approval.verify(
                certificate,
                self.trusted,
                now=self._now(),
                kind="rotate",
                key_id="",
                path="m",
                params=rotation.params,
                ledger=self.ledger,
            )
        except approval.ApprovalError as exc:
            self.log.append(
                time=self._now(), kind="rotate", session_id=sid, key_id="", path="m", outcome="refused",
                reason=f"{exc.reason}: {exc}"[: signlog.MAX_REASON], certificate=certificate,
            )  # fmt: skip
            raise Refusal("approval", f"approval refused ({exc.reason}): {exc}") from exc
        for name, entry in rotated.items():
            self.store.put(name, cbor2.dumps(entry))
        updated = [name.removeprefix("keys/") for name in rotated]
        self.store.put(record, sid)
        self.log.append(
            time=self._now(), kind="rotate", session_id=sid, key_id="", path="m", outcome="committed",
            reason=f"node {old} is now {new}; rosters of {len(updated)} key(s) updated", certificate=certificate,
        )  # fmt: skip
        return rpc.ok(keys=updated)

    def _abort_request(self, sid: bytes, certificate: bytes) -> bytes:
        """End a running session (anyone may: it loses nothing), or discard a staged result (authority only)."""
        session = self.sessions.get(sid)
        if session is not None:
            self._end(session, "aborted", "aborted at the coordinator's request")
            return rpc.ok()
        self.staging.discard(sid, certificate)
        return rpc.ok()


def _signers(session: Session) -> set[int]:
    """The parties a signing session runs with (a sign session's roster is the whole key's)."""
    job = session.job
    return set(job.signers) if isinstance(job, SignJob) else set(session.roster)


def _checkpoint(state: bytes) -> str:
    return "state " + hashlib.sha256(state).hexdigest()


def _certificate_key_id(certificate: bytes) -> str:
    try:
        cert, _ = approval.parse(certificate)
    except approval.ApprovalError:
        return ""
    return cert.key_id


def default_key_id(session_id: bytes) -> str:
    """The name a new key gets when its keygen certificate leaves it to the node."""
    return f"key-{session_id[:8].hex()}"
