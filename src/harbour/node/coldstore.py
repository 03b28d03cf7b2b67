"""Where a cold node keeps its open sessions between two request files, and why it can trust them.

Each open session is an explicit record (:mod:`harbour.node.coldstate`) in the node's
encrypted store under ``sessions/<session id>``. Two guards make sure a session is
only ever resumed from the latest record, never from an older copy whose nonces
already went out:

- the **rollback counter** (:mod:`harbour.node.counter`), outside the node directory:
  any change (a session new, advanced or ended) first moves it on, then every open
  session's record is rewritten bound to the new value; a record behind the counter
  is refused. This is what stops a whole directory put back;
- a ``progress`` entry in the signing log per saved record, holding the record's
  hash and an HMAC-SHA256 tag (key ``log-key`` in the store) over the session id,
  the entry's position and that hash: a record is resumed only if the log's last
  ``progress`` entry for it names it. This needs no counter, and catches a record
  put back alone.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable, Mapping

from harbour.node import coldstate
from harbour.node.counter import RollbackCounter
from harbour.node.identity import NodeIdentity
from harbour.node.jobs import RefreshJob, ReshareJob, SignJob, replays_secrets
from harbour.node.sealed import ReplayGuard
from harbour.node.session import Session
from harbour.node.signlog import Entry, SignLog
from harbour.node.staging import read_key
from harbour.node.store import SecretStore

log = logging.getLogger("harbour.node")

PREFIX = "sessions/"
LOG_KEY = "log-key"


def _checkpoint(state: bytes) -> str:
    return "state " + hashlib.sha256(state).hexdigest()


class ColdSessions:
    """A cold node's saved sessions; :meth:`load` at start, :meth:`save` before every answer leaves."""

    def __init__(
        self,
        store: SecretStore,
        sign_log: SignLog,
        identity: NodeIdentity,
        counter: RollbackCounter | None,
        hedge_key: bytes,
    ) -> None:
        self.store = store
        self.log = sign_log
        self.identity = identity
        self.counter = counter
        self.hedge_key = hedge_key
        self.counter_value: int | None = None
        self.dropped: dict[bytes, str] = {}
        """Session id -> why its saved record was refused, for the log and the stale-session answer."""
        self._checkpoints: dict[bytes, str] = {}

    def load(self, progress: Mapping[str, Entry], guard: ReplayGuard) -> dict[bytes, Session]:
        """Every saved session that may be resumed; the others are deleted, with their reason in :attr:`dropped`.

        ``progress`` is, per session id (hex), the log's last ``progress`` entry of a
        session the log shows still open. CounterError if the counter cannot be read.
        """
        self.counter_value = None if self.counter is None else self.counter.read()
        kept: dict[bytes, Session] = {}
        for name in self.store.names(PREFIX):
            sid_hex = name.removeprefix(PREFIX)
            try:
                data = self.store.get(name)
                last = progress.get(sid_hex)
                if last is None or last.reason != self._checkpoint_reason(
                    bytes.fromhex(last.session_id), last.seq, data
                ):
                    # Not the state the log last recorded: an older copy put back (its nonces
                    # were used already) or a crash between the two writes. Never resume it.
                    raise ValueError("the session state is not the one the log recorded last")
                session, saved_guard = coldstate.decode(
                    data,
                    identity=self.identity,
                    counter=self.counter_value,
                    load_share=lambda key_id: read_key(self.store, key_id)[0],
                    hedge_key=self.hedge_key,
                )
                if self.counter is None and replays_secrets(session.job):
                    raise ValueError("a node without a rollback counter does not keep this kind of session")
                kept[session.session_id] = session
                self._checkpoints[session.session_id] = _checkpoint(data)
                guard.merge(saved_guard)
            except Exception as exc:  # an unusable state (rolled back, damaged, an upgrade) ends that session
                log.warning("dropping session state %s: %s", name, exc)
                with contextlib.suppress(ValueError):
                    self.dropped[bytes.fromhex(sid_hex)] = str(exc)
                self.store.delete(name)
        return kept

    def save(
        self, sessions: Mapping[bytes, Session], guard: ReplayGuard, log_progress: Callable[[Session, str], None]
    ) -> None:
        """Every open session, bound to the counter (moved on first), and its hash in the log."""
        live = {f"{PREFIX}{sid.hex()}" for sid in sessions}
        stale = [name for name in self.store.names(PREFIX) if name not in live]
        records = {sid: self._record(session, self.counter_value, guard) for sid, session in sessions.items()}
        changed = [sid for sid, data in records.items() if self._checkpoints.get(sid) != _checkpoint(data)]
        if not stale and not changed:
            return
        if self.counter is not None:
            self.counter_value = self.counter.advance()
            records = {sid: self._record(session, self.counter_value, guard) for sid, session in sessions.items()}
            changed = list(records)
        for name in stale:
            self.store.delete(name)
            self._checkpoints.pop(bytes.fromhex(name.removeprefix(PREFIX)), None)
        for sid in changed:
            data = records[sid]
            self.store.put(f"{PREFIX}{sid.hex()}", data)
            log_progress(sessions[sid], self._checkpoint_reason(sid, self.log.head[0] + 1, data))
            self._checkpoints[sid] = _checkpoint(data)

    def _record(self, session: Session, counter: int | None, guard: ReplayGuard) -> bytes:
        job = session.job
        root = None
        if isinstance(job, SignJob | RefreshJob) or (isinstance(job, ReshareJob) and job.share is not None):
            root = read_key(self.store, session.key_id)[0]
        return coldstate.encode(session, counter=counter, root_share=root, guard=guard)

    def _checkpoint_reason(self, sid: bytes, seq: int, state: bytes) -> str:
        """``state <hash> mac <tag>``: the tag, under a key only the store holds, binds the log position.

        Without it anyone able to append to the log could re-bless an older state
        file; with it, an entry copied to a later position does not verify.
        """
        if not self.store.exists(LOG_KEY):
            self.store.put(LOG_KEY, secrets.token_bytes(32))
        tag = hmac.new(self.store.get(LOG_KEY), sid + seq.to_bytes(8, "big") + hashlib.sha256(state).digest(), "sha256")
        return f"{_checkpoint(state)} mac {tag.hexdigest()[:32]}"
