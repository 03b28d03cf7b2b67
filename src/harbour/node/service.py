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
- A key that belongs to an organisation (its keygen certificate named one the node
  had enrolled, :mod:`harbour.node.orgs`) is signed with only on version-2 evidence
  the node judges itself: from the organisation's governance log, which it verified
  entry by entry from the genesis its ``enrol`` certificate named, its own clock and
  the signers' records of what they signed before. A node configured to serve
  organisations only (``organisations_only``) makes, signs with, refreshes and
  reshares no other key.
- It says how it is (``status``: its keys, sessions, ledger, organisations and
  settings) only signed by its identity key over the asker's challenge
  (:mod:`harbour.node.status`).

A cold node (``offline=True``) keeps its sessions between requests, as explicit
records encrypted in its store (:mod:`harbour.node.coldstate`): it has no other way
to hold a session across the files that carry its rounds. Each save first moves the
node's rollback counter on (:mod:`harbour.node.counter`) and binds the records to
it, so a copy of the directory put back later is refused instead of answering a
round twice with the same nonces; without a counter, a cold node refuses every
session whose replay could reveal a secret.

This module opens the node and answers requests; the sessions those requests
start and feed run in :mod:`harbour.node.sessions`, and what a starting node
learns from its log is :mod:`harbour.node.restart`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from harbour import __version__
from harbour.governance import holding
from harbour.governance.holding import Holding
from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import KeyShare
from harbour.node import approval, nonces, restart, rpc, signlog
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
from harbour.node.identity import IdentityError, NodeDescriptor, NodeIdentity
from harbour.node.metrics import NodeMetrics
from harbour.node.orgs.history import History
from harbour.node.orgs.registry import Organisations
from harbour.node.orgs.requests import OrgRequests
from harbour.node.planning import Planner, default_key_id
from harbour.node.rotation import accept_rotation
from harbour.node.session import Session
from harbour.node.sessions import MAX_SESSIONS, RunningSessions
from harbour.node.staging import Refusal, Staging, read_key
from harbour.node.status import NodeStatus, Settings, answer
from harbour.node.store import SecretStore, StoreError

log = logging.getLogger("harbour.node")

__all__ = ["HEDGE_KEY", "MAX_SESSIONS", "NodeService", "NodeStartError", "Refusal", "default_key_id", "init_node"]

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
        orgs: Organisations | None = None,
    ) -> None:
        self.directory = directory
        self.orgs = orgs if orgs is not None else Organisations.load(store)
        self.history = History()  # filled from the signing log by open()
        self.config = config
        self.store = store
        self.identity = identity
        self.descriptor = identity.descriptor(config.name, config.url)
        self.ledger = ledger
        self.log = signlog_
        self.offline = offline
        self.clock = clock
        self.trusted = approval.trusted_authorities(*config.authorities)
        self.counter = counter
        self.hedge_key = _hedge_key(store)
        self.staging = Staging(store, identity, signlog_, self.trusted, ledger, lambda: self._now(), self.orgs.bind)
        self.cold = ColdSessions(store, signlog_, identity, counter, self.hedge_key) if offline else None
        self.running = RunningSessions(
            store=store,
            identity=identity,
            config=config,
            sign_log=signlog_,
            staging=self.staging,
            cold=self.cold,
            counter=counter,
            hedge_key=self.hedge_key,
            offline=offline,
            clock=clock,
        )
        self.org_requests = OrgRequests(
            orgs=self.orgs,
            history=self.history,
            identity=identity,
            sign_log=signlog_,
            trusted=self.trusted,
            ledger=ledger,
            now=self._now,
        )
        self.metrics = NodeMetrics(lambda: len(store.names("keys/")))
        """What the node counts for Prometheus (served only by ``--metrics-listen``, :mod:`harbour.util.scrape`)."""
        self.running.on_record = lambda session, outcome: self.metrics.recorded(
            session.session_id, session.kind, outcome
        )
        self.sessions: dict[bytes, Session] = self.running.sessions
        """The running sessions by id (the same mapping :attr:`running` keeps)."""
        self.planner = Planner(
            store=store,
            identity=identity,
            config=config,
            trusted=self.trusted,
            ledger=ledger,
            staging=self.staging,
            sessions=self.running.sessions,
            compromised=self.running.compromised,
            hedge_key=self.hedge_key,
            offline=offline,
            clock=clock,
            orgs=self.orgs,
            history=self.history,
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
            try:
                orgs = Organisations.load(store)
            except StoreError as exc:
                log_.close()
                ledger.close()
                raise NodeStartError(f"the node's organisations cannot be read: {exc}") from exc
        except NodeStartError:
            store.close()
            raise
        except (StoreError, IdentityError, OSError, ValueError) as exc:
            store.close()
            raise NodeStartError(f"node {directory} cannot start: {exc}") from exc
        node = cls(
            directory,
            config,
            store,
            identity,
            ledger,
            log_,
            offline=offline,
            clock=clock,
            counter=counter,
            orgs=orgs,
        )
        try:
            entries = restart.recover(node.running, directory / LOG_FILE)
            node.history.restore(entries, node._window, int(clock()))
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

    def _window(self, org: str) -> int:
        """How far back an organisation's withdrawals count: its policy's longest window (0 if not enrolled)."""
        governance = self.orgs.logs.get(org)
        policy = governance.state.policy if governance is not None else None
        return policy.max_window_seconds() if policy is not None else 0

    def _persist(self) -> None:
        self.running.persist()

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
                self.running.end(session, "aborted", f"its state could not be saved: {exc}")
            with contextlib.suppress(Exception):
                self._persist()
            return rpc.error("internal", f"this cold node cannot save its sessions ({exc}); they were ended")
        return answer

    def _answer(self, data: bytes) -> bytes:
        try:
            request = rpc.parse_request(data)
        except rpc.RequestError as exc:
            self.metrics.refused("bad-request")
            return rpc.error("bad-request", str(exc))
        try:
            self.running.expire()
            op = request["op"]
            if op == "describe":
                return rpc.ok(descriptor=self.descriptor.to_json())
            if op == "key":
                return self._key_info(request["key_id"])
            if op == "start":
                return self._start(request)
            if op == "deliver":
                return self.running.deliver(request["session_id"], request["messages"], request["hellos"])
            if op == "commit":
                key_id, receipt = self.staging.commit(
                    request["session_id"], request["fingerprint"], request["acks"], request["receipts"]
                )
                self.running.forget_marks(key_id)  # a new share, a new setup: its marks are its own
                return rpc.ok(key_id=key_id, receipt=receipt)
            if op == "rotate":
                return self._rotate(request["statement"], request["certificate"])
            if op == "enrol":
                return rpc.ok(**self.org_requests.enrol(request["genesis"], request["certificate"]))
            if op == "push":
                return rpc.ok(**self.org_requests.push(request["org"], request["entries"]))
            if op == "head":
                return rpc.ok(**self.org_requests.head(request["org"]))
            if op == "history":
                return rpc.ok(**self.org_requests.history(request["org"], request["session_id"]))
            if op == "status":
                return rpc.ok(**answer(self.status(request["challenge"]), self.identity.sign))
            if op == "staged":
                sid = request["session_id"]
                committed = self.staging.is_committed(sid)
                return rpc.ok(result=self.staging.result(sid), roster=self.staging.roster(sid), committed=committed)
            return self._abort_request(request["session_id"], request["certificate"])
        except Refusal as exc:
            self.metrics.refused(exc.reason)
            return rpc.error(exc.reason, str(exc))
        except Exception as exc:
            self.metrics.refused("internal")
            log.exception("internal error")  # the detail stays in the node's own log
            return rpc.error("internal", f"internal error ({type(exc).__name__}); see the node's log")

    # -- the node itself ----------------------------------------------------------------

    def status(self, challenge: bytes) -> NodeStatus:
        """What the node holds and how it is configured, for its identity key to sign (:mod:`harbour.node.status`)."""
        config = self.config
        return NodeStatus(
            node=self.identity.node_id,
            challenge=challenge,
            time=self._now(),
            software=__version__,
            offline=self.offline,
            keys=tuple(name.removeprefix("keys/") for name in self.store.names("keys/")),
            sessions=len(self.sessions),
            ledger=len(self.ledger),
            organisations=tuple((org, governance.state.seq) for org, governance in sorted(self.orgs.logs.items())),
            settings=Settings(
                organisations_only=config.organisations_only,
                approvers=len(config.approvers),
                min_approvals=config.min_approvals,
                require_evidence=config.require_evidence,
                authorities=tuple(sorted(self.trusted)),
            ),
        )

    def ready(self) -> str | None:
        """None when the node can serve a request now; otherwise why not, in a few words."""
        if not self.store.is_open:
            return "the key store is closed"
        if self.log.closed or self.ledger.closed:
            return "the signing log or the nonce ledger is closed"
        return None

    # -- keys ---------------------------------------------------------------------------

    def _load_key(self, key_id: str) -> tuple[KeyShare, dict[int, NodeDescriptor]]:
        return read_key(self.store, key_id)

    def _key_info(self, key_id: str) -> bytes:
        """The key's public package and committee; for a key of an organisation, this node's holding statement."""
        share, roster = self._load_key(key_id)
        org = self.orgs.binding(key_id)
        chain_code = share.extensions.get(CHAIN_CODE, b"")
        statement = b""
        if org is not None:  # an organisation's key is ECDSA, t >= 2 (keygen checks): a Holding always
            stated = Holding(
                org=bytes.fromhex(org),
                key_id=key_id,
                public_key=share.public.group_public_key.encode(),
                chain_code=chain_code,
                threshold=share.public.threshold,
                holders=tuple(sorted(d.sign_pk for d in roster.values())),
            )
            statement = holding.sign(self.identity.sign_pk, stated, self.identity.sign)
        return rpc.ok(
            key_id=key_id,
            public=rpc.encode_public(share.public),
            roster=rpc.roster_value(roster),
            chain_code=chain_code,
            org=org or "",
            holding=statement,
        )

    # -- sessions, rotation, aborts ------------------------------------------------------

    def _start(self, request: dict[str, Any]) -> bytes:
        sid: bytes = request["session_id"]
        self.running.admit(sid)
        kind, args, certificate = request["kind"], request["args"], request["certificate"]
        session, check = self.planner.plan(sid, kind, args, certificate)
        return self.running.start(session, check)

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
        if self.running.abort(sid):
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
