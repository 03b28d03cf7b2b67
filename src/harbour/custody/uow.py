"""The unit of work: one database transaction per state change, with the audit events that record it.

Every write in custody goes through :meth:`UnitOfWork.write` (or :meth:`UnitOfWork.tx`),
so a state change and its audit entries commit or vanish together; every read
that must not wait for writers goes through :meth:`UnitOfWork.read`. The events a
unit records are appended when its work is done, each with the digests of the
business rows it wrote (:mod:`harbour.custody.rowwatch`), so the log vouches for
the rows as committed, not only for the events. On SQLite,
writers that arrive together share one commit (group commit, see :meth:`write`);
on PostgreSQL each is its own transaction under row locks. Kept apart from the
domain modules so that all of them write the same way, and so that the group
commit, the subtle part, can be read and tested on its own.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from harbour.custody import models as m
from harbour.custody import rowwatch, states
from harbour.custody.actors import Actor
from harbour.custody.audit import AuditLog, check_event
from harbour.custody.errors import NotFound, Unavailable

T = TypeVar("T")

RETRIES = 5
"""Runs of a unit of work that PostgreSQL aborted as a deadlock victim or a serialization failure."""
RETRY_DELAY = 0.02
"""Seconds: the first retry waits up to twice this (random), each further one twice as long again."""
_RETRIABLE = frozenset({"40P01", "40001"})
"""SQLSTATE deadlock_detected and serialization_failure: the transaction was rolled back and may simply run again."""


def retriable(exc: DBAPIError) -> bool:
    """Whether the database rolled the transaction back for a reason that running it again can cure."""
    return getattr(exc.orig, "sqlstate", None) in _RETRIABLE


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class _Write:
    """One caller's work in a group commit, and what became of it."""

    work: Callable[[Session], Any]
    done: bool = False
    result: Any = None
    error: Exception | None = None


class UnitOfWork:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        audit: AuditLog,
        *,
        clock: Callable[[], dt.datetime] = now,
        readers: sessionmaker[Session] | None = None,
    ) -> None:
        self.sessions = sessions
        self.readers = readers or sessions
        self.audit = audit
        self.clock = clock
        bind = sessions.kw.get("bind")
        self._group_commit = bind is not None and bind.dialect.name == "sqlite"
        self._writer: AbstractContextManager[Any] = threading.Lock() if self._group_commit else nullcontext()
        """SQLite runs one writer at a time. This process's writers queue on this lock, which wakes the next
        one the moment the last commits, rather than in SQLite's busy handler, which polls with sleeps of up
        to 100 ms; other processes (the CLI) still meet the busy timeout."""
        self.sealed: list[Callable[[Session, int, rowwatch.Event], None]] = []
        """Called with each event as it is appended (its audit index), in the same transaction: the outbox's hook."""
        self._waiting: list[_Write] = []  # work queued for the next group commit (SQLite)
        self._waiting_lock = threading.Lock()

    @contextmanager
    def tx(self) -> Iterator[Session]:
        """One write transaction of its own (not grouped), committed when the block ends."""
        with self._writer, self.sessions() as session, session.begin():  # the one writer path
            rowwatch.begin(session)
            yield session
            self._seal(session)

    def write(self, work: Callable[[Session], T]) -> T:
        """``work(session)`` in a write transaction; returns its result once committed, or raises what it raised.

        On SQLite, writers that queue for the write lock at the same time share one
        transaction (group commit): whoever gets the lock runs every piece of work
        queued by then, each in its own SAVEPOINT, and commits once. Work that raises
        is rolled back to its savepoint alone and its caller gets the exception; if the
        commit fails, every caller gets that error and nothing was written. Either way a
        caller returns only after the outcome of its own work is durable. One commit,
        one fsync and one hand-over of the lock for a whole queue is what keeps a busy
        service's writers from waiting in line for each other. On PostgreSQL, which
        runs writers concurrently under row locks, each call is its own transaction,
        run again from the start when the database aborted it as a deadlock victim or
        a serialization failure (:func:`retriable`): ``work`` must only read and write
        through the session (and may run more than once), which every caller does.
        """
        if not self._group_commit:
            for attempt in range(RETRIES):
                try:
                    with self.tx() as s:
                        return work(s)
                except DBAPIError as exc:
                    if attempt + 1 == RETRIES or not retriable(exc):
                        raise
                # Jitter: the transactions that deadlocked together must not meet again in step.
                time.sleep(random.uniform(0, RETRY_DELAY * 2**attempt))  # noqa: S311 - timing, not a secret
            raise AssertionError("unreachable")
        item = _Write(work)
        with self._waiting_lock:
            self._waiting.append(item)
        with self._writer:
            if not item.done:
                with self._waiting_lock:
                    batch, self._waiting = self._waiting, []
                self._commit_group(batch)
        if item.error is not None:
            raise item.error
        return cast(T, item.result)

    def _commit_group(self, batch: list[_Write]) -> None:
        """Run ``batch`` in one transaction, each item in a savepoint; hold the write lock."""
        try:
            with self.sessions() as s, s.begin():
                for item in batch:
                    try:
                        with s.begin_nested():
                            rowwatch.begin(s)
                            item.result = item.work(s)
                            self._seal(s)
                    except Exception as exc:  # this item alone is rolled back; its caller gets the exception
                        item.result, item.error = None, exc
                        self.audit.forget_state(s)  # its events were rolled back with it
        except BaseException as exc:  # BEGIN or COMMIT failed (or an interrupt): nothing in the batch was written
            for item in batch:
                if item.error is None:
                    item.result, item.error = None, exc if isinstance(exc, Exception) else Unavailable(repr(exc))
            if not isinstance(exc, Exception):
                raise
        finally:
            for item in batch:
                item.done = True

    def read(self) -> Session:
        """A session for reading only: on SQLite it does not take the write lock (see db.readonly)."""
        return self.readers()

    def _seal(self, s: Session) -> None:
        """Append the unit's events, with the digests of the rows it wrote; the caller then commits."""
        for e in rowwatch.finish(s):
            row = self.audit.append(
                s, org_id=e.org_id, actor_id=e.actor_id, kind=e.kind, subject=e.subject, data=e.data
            )
            for hook in self.sealed:
                hook(s, row.index, e)

    def event(self, s: Session, actor: Actor | None, kind: str, subject: str | None, /, **data: Any) -> None:
        """Record an audit event in the unit of work in ``s``: it commits with the change it records, or not at all.

        Without an actor (the pipeline, the service itself) the organisation is ``data["org_id"]``.
        The event is checked now and appended when the unit's work is done
        (:mod:`harbour.custody.rowwatch` says which rows it carries the digests of).
        """
        org_id = actor.org_id if actor else data.pop("org_id", None)
        actor_id = actor.user_id if actor else None
        body = check_event(org_id=org_id, actor_id=actor_id, kind=kind, subject=subject, data=data)
        rowwatch.queue(s, rowwatch.Event(org_id, actor_id, kind, subject, body))

    def get(self, s: Session, model: type[Any], row_id: str, org_id: str, what: str) -> Any:
        """The row ``row_id`` of ``model`` if it belongs to ``org_id``; NotFound alike if it does not exist."""
        if not isinstance(row_id, str) or len(row_id) > 64:
            raise NotFound(f"no {what} {row_id!r}")
        row = s.get(model, row_id)
        if row is None or getattr(row, "org_id", org_id) != org_id:
            raise NotFound(f"no {what} {row_id}")
        return row

    def move(self, s: Session, actor: Actor | None, tx: m.Transaction, new: str, **data: Any) -> None:
        """Advance ``tx`` to state ``new`` (an edge of :mod:`harbour.custody.states`) and record it."""
        states.check(tx.kind, tx.state, new)
        old, tx.state, tx.updated_at = tx.state, new, self.clock()
        data.setdefault("org_id", tx.org_id)
        self.event(s, actor, f"transaction.{new}", tx.id, previous=old, **data)
