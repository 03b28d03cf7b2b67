"""What a node learns from its signing log when it starts, before it answers anything.

A session is never resumed after a restart: a signing party's nonces existed only
in memory, and a new party for an old session could be made to sign twice. So a
starting node reads its log (:mod:`harbour.node.signlog`) for every session id it
ever used (refused forever after), logs the ones a crash left open as aborted and
refuses them as stale; only a cold node brings back the sessions it saved
(:mod:`harbour.node.coldstore`). The log is also what the KOS-failure marks and the
base-OT incident counts are rebuilt from, in case the store holding them was put
back from an older copy.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from harbour.node import compromise, signlog
from harbour.node.session import Session
from harbour.node.sessions import RunningSessions
from harbour.node.staging import read_key

log = logging.getLogger("harbour.node")


def recover(running: RunningSessions, log_path: Path) -> list[signlog.Entry]:
    """Learn every session id ever used; log the ones a crash left open as aborted; the log's entries.

    The caller reads the withdrawals its organisations' keys accepted from the same
    entries (:meth:`harbour.node.orgs.history.History.restore`).
    """
    open_: dict[str, signlog.Entry] = {}
    migrate_legacy_marks(running)
    entries = list(signlog.entries(log_path))
    for key_id in compromise.heal(running.store, compromise.marks_from_log(entries)):
        log.warning("key %s had lost KOS-failure marks its log records; they are back in its share", key_id)
    for node in compromise.heal_incidents(running.store, compromise.incidents_from_log(entries)):
        log.warning("the base-OT incident count of node %s was behind its log; restored", node)
    for entry in entries:
        sid = bytes.fromhex(entry.session_id)
        running.used.add(sid)
        if entry.outcome in ("started", "progress"):
            open_[entry.session_id] = entry
        elif entry.outcome not in ("compromised", "incident"):  # records within a session, not its end
            open_.pop(entry.session_id, None)
    kept: dict[bytes, Session] = {}
    if running.cold is not None:
        progress = {sid: e for sid, e in open_.items() if e.outcome == "progress"}
        kept = running.cold.load(progress, running.guard)
    for sid_hex, entry in open_.items():
        sid = bytes.fromhex(sid_hex)
        if sid in kept:
            running.register(kept[sid])
            continue
        running.stale.add(sid)
        why = running.cold.dropped.get(sid) if running.cold is not None else None
        reason = "the node restarted during the session; its state was discarded and it will not rejoin"
        if why is not None:
            reason = f"its saved state was refused and it will not rejoin: {why}"
        running.log.append(
            time=running.now(),
            kind=entry.kind,
            session_id=sid,
            key_id=entry.key_id,
            path=entry.path,
            digests=[bytes.fromhex(d) for d in entry.digests],
            outcome="aborted",
            reason=reason[: signlog.MAX_REASON],
        )
    return entries


def migrate_legacy_marks(running: RunningSessions) -> None:
    """An earlier version kept KOS-failure marks in ``compromised/<key id>``: move them into share and log.

    Left there, deleting that object alone would lift the block; in the share and
    the log, it cannot be lifted short of a refresh (or a rollback of both).
    """
    store = running.store
    for name in store.names(compromise.LEGACY_PREFIX):
        key_id = name.removeprefix(compromise.LEGACY_PREFIX)
        if not store.exists(f"keys/{key_id}"):
            store.delete(name)
            continue
        parties = compromise.legacy_marks(store, key_id)
        share = read_key(store, key_id)[0]
        parties = {p for p in parties if p in share.parties and p != share.identifier}
        if parties:
            running.log.append(
                time=running.now(), kind="sign", session_id=hashlib.sha256(name.encode()).digest(),
                key_id=key_id, path="m", outcome="compromised", reason=compromise.parties_reason(parties),
            )  # fmt: skip
            compromise.mark(store, key_id, parties)
        store.delete(name)
