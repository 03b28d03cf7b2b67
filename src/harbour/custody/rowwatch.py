"""Which business rows a unit of work wrote, their digests on its audit events, and reading every row back to verify.

A unit of work (:mod:`harbour.custody.uow`) queues its audit events instead of
appending them at once; when its work is done, :func:`finish` flushes the
session, reads back every business row the unit wrote (the tables of
:data:`harbour.custody.rowdigest.TABLES`), and puts each row's digest on one of
the unit's events before they are appended. Nothing at the call sites says which
rows an event wrote: SQLAlchemy's attribute and session events report every
change of a covered field of a mapped object, so code added later is covered
without knowing this module exists.

A row goes with the first event queued after its last change whose subject is
the row's id, else with the first event queued after its last change, else (the
row changed after the unit's last event) with the last event. A unit that
changes a covered field but queues no event is refused (:class:`Unlogged`), and
so is an ORM ``insert``/``update``/``delete`` statement on a covered table inside
a unit, which would change rows no object reports. Digests are computed from the
rows as the database returns them after the flush, with the same query
:func:`check_rows` runs for ``harbour audit verify``, so both sides see the same
values whatever the column types do.

The first time a unit changes a row that exists already, the row is read (and
locked, ``FOR UPDATE``) as it is before the change: its digest is the entry's
``was``, which ``verify`` holds against the digest the log last wrote. Without
it, a row edited in SQL and later written over by the service (a pending
withdrawal's destination, then its approval) would be vouched for by the new
event. The lock keeps another writer from changing the row between that read
and the commit, which would make ``was`` stale.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, cast

from sqlalchemy import Select, Table, bindparam, event, inspect, select
from sqlalchemy.orm import ORMExecuteState, Session, object_session
from sqlalchemy.orm.base import NO_VALUE

from harbour.custody import models as m
from harbour.custody.errors import CustodyError
from harbour.custody.rowdigest import ROWS_KEY, TABLES, RowFinding, RowLedger, row_entry, written

MODELS: Final[dict[str, type[Any]]] = {
    model.__tablename__: model
    for model in (
        m.Organisation,
        m.User,
        m.Credential,
        m.Vault,
        m.Address,
        m.Asset,
        m.AddressBookEntry,
        m.Policy,
        m.Transaction,
        m.Approval,
        m.Deposit,
    )
}
if MODELS.keys() != TABLES.keys():  # pragma: no cover - a table was added to one list and not the other
    raise RuntimeError("rowwatch.MODELS and rowdigest.TABLES must name the same tables")

ROWS_BUDGET: Final = 40 * 1024
"""Bytes of row digests one event carries at most; more go on ``audit.rows`` events after it (the log caps events)."""
READ_BATCH: Final = 500
_UNIT = "harbour.audit.unit"


class Unlogged(CustodyError):
    """A unit of work changed audited rows in a way no audit event would record; nothing of it is committed."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "audit-rows-unlogged"
    title: ClassVar[str] = "A change was not recorded in the audit log"


@dataclass
class Event:
    """An event queued by a unit of work, appended when the unit finishes."""

    org_id: str | None
    actor_id: str | None
    kind: str
    subject: str | None
    data: dict[str, Any]


@dataclass
class _Unit:
    """What one unit of work has done so far: its queued events, the rows it changed and what they were before."""

    events: list[Event] = field(default_factory=list)
    changed: dict[int, tuple[Any, int]] = field(default_factory=dict)
    """id(object) -> (object, how many events were queued when it last changed)."""
    deleted: dict[tuple[str, str], int] = field(default_factory=dict)
    was: dict[tuple[str, str], str | None] = field(default_factory=dict)
    """(table, id) -> the digest of a row that existed before the unit changed it (None: it was not there)."""

    def touch(self, session: Session, target: Any) -> None:
        """``target`` changed; on the first change of a row that exists, read what it was (before the change lands)."""
        if id(target) not in self.changed and inspect(target).persistent:
            self.before(session, target)
        self.changed[id(target)] = (target, len(self.events))

    def before(self, session: Session, target: Any) -> None:
        key = _key(target)
        if key is not None and key not in self.was:
            table, row_id = key
            row = session.connection().execute(_LOCK_BY_ID[table], {"ids": [row_id]}).first()
            state = row_entry(table, row_id, dict(zip(TABLES[table], row[1:], strict=True))) if row else None
            self.was[key] = state["digest"] if state is not None else None


def begin(session: Session) -> None:
    """Start a unit of work in ``session``: from now on its changes to covered rows are recorded."""
    session.info[_UNIT] = _Unit()


def queue(session: Session, entry: Event) -> None:
    """Queue an event of the unit of work running in ``session``.

    It is appended when the unit ends, so ``entry.data`` must be a copy that later
    changes to the objects it was read from cannot reach (:func:`harbour.custody.audit.check_event` makes one).
    """
    unit = session.info.get(_UNIT)
    if not isinstance(unit, _Unit):
        raise RuntimeError("audit events are written inside UnitOfWork.tx or UnitOfWork.write")
    if ROWS_KEY in entry.data:
        raise ValueError(f"audit data key {ROWS_KEY!r} is the log's own (the digests of the rows written)")
    unit.events.append(entry)


def finish(session: Session) -> list[Event]:
    """End the unit of work in ``session``: its events in order, each with the digests of the rows it goes with."""
    unit = session.info.get(_UNIT)
    if not isinstance(unit, _Unit):
        raise RuntimeError("no unit of work is running in this session")
    session.flush()  # still watched: a deletion is reported as it is flushed
    del session.info[_UNIT]
    since: dict[tuple[str, str], int] = dict(unit.deleted)
    for target, seq in unit.changed.values():
        key = _key(target)
        if key is None:  # expunged before it was written: nothing reached the database
            continue
        since[key] = max(seq, since.get(key, 0))
    if not since:
        return unit.events
    if not unit.events:
        table, row_id = min(since)
        raise Unlogged(f"{table} {row_id} was written without an audit event")
    entries = _read(session, {key for key in since})
    rows: list[dict[str, dict[str, Any]]] = [{} for _ in unit.events]
    for (table, row_id), seq in sorted(since.items()):
        target = _event_for(unit.events, seq, row_id)
        rows[target].setdefault(table, {})[row_id] = written(
            entries.get((table, row_id)), unit.was.get((table, row_id))
        )
    out: list[Event] = []
    for queued, its_rows in zip(unit.events, rows, strict=True):
        chunks = _chunks(its_rows)
        if chunks:
            queued.data[ROWS_KEY] = chunks[0]
        out.append(queued)
        out.extend(
            Event(queued.org_id, queued.actor_id, "audit.rows", queued.subject, {ROWS_KEY: c}) for c in chunks[1:]
        )
    return out


def _key(target: Any) -> tuple[str, str] | None:
    """(table, id) of a mapped object, None while it has no id."""
    row_id = target.id
    return (target.__tablename__, row_id) if isinstance(row_id, str) else None


def _event_for(events: list[Event], seq: int, row_id: str) -> int:
    """Which queued event a row last changed before event ``seq`` goes with (see the module docstring)."""
    if seq >= len(events):
        return len(events) - 1
    for i in range(seq, len(events)):
        if events[i].subject == row_id:
            return i
    return seq


def _read(session: Session, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict[str, str]]:
    """The digest entries of the rows ``keys`` as the database holds them now (absent: deleted)."""
    by_table: dict[str, list[str]] = {}
    for table, row_id in keys:
        by_table.setdefault(table, []).append(row_id)
    found: dict[tuple[str, str], dict[str, str]] = {}
    connection = session.connection()
    for table, ids in by_table.items():
        for start in range(0, len(ids), READ_BATCH):
            for row in connection.execute(_BY_ID[table], {"ids": ids[start : start + READ_BATCH]}):
                found[table, row[0]] = row_entry(table, row[0], dict(zip(TABLES[table], row[1:], strict=True)))
    return found


def _chunks(rows: dict[str, dict[str, Any]]) -> list[dict[str, dict[str, Any]]]:
    """``rows`` split so that no event carries more than :data:`ROWS_BUDGET` bytes of them."""
    chunks: list[dict[str, dict[str, Any]]] = []
    current: dict[str, dict[str, Any]] = {}
    size = 0
    for table, entries in rows.items():
        for row_id, entry in entries.items():
            cost = len(table) + len(row_id) + len(json.dumps(entry)) + 8
            if current and size + cost > ROWS_BUDGET:
                chunks.append(current)
                current, size = {}, 0
            current.setdefault(table, {})[row_id] = entry
            size += cost
    if current:
        chunks.append(current)
    return chunks


def _table(name: str) -> Table:
    return cast(Table, MODELS[name].__table__)


def _columns(name: str) -> Select[Any]:
    """The id and the covered fields of table ``name``: what a digest is computed from, on both sides."""
    columns = _table(name)
    return select(columns.c.id, *(columns.c[field] for field in TABLES[name]))


_BY_ID: Final = {name: _columns(name).where(_table(name).c.id.in_(bindparam("ids", expanding=True))) for name in TABLES}
"""Built once: constructing an IN clause costs more than running it."""
_LOCK_BY_ID: Final = {name: query.with_for_update() for name, query in _BY_ID.items()}


# -- what reports a change ---------------------------------------------------------------------------------------


def _on_set(target: object, value: Any, old: Any, _initiator: Any) -> None:
    if old is not NO_VALUE and value is old:
        return
    if old is not NO_VALUE and type(value) is type(old) and value == old:
        return
    _on_modified(target, None)


def _on_modified(target: object, _initiator: Any) -> None:  # also flag_modified: a JSON value changed in place
    session = object_session(target)
    unit = session.info.get(_UNIT) if session is not None else None
    if session is not None and isinstance(unit, _Unit):
        unit.touch(session, target)


def _on_add(session: Session, target: object) -> None:
    unit = session.info.get(_UNIT)
    if isinstance(unit, _Unit) and type(target) in _COVERED:
        unit.touch(session, target)


def _before_flush(session: Session, _context: Any, _instances: Any) -> None:
    """A row about to be deleted: read it as it is first (``persistent_to_deleted`` comes after the DELETE)."""
    unit = session.info.get(_UNIT)
    if isinstance(unit, _Unit):
        for target in session.deleted:
            if type(target) in _COVERED:
                unit.before(session, target)


def _on_delete(session: Session, target: Any) -> None:
    unit = session.info.get(_UNIT)
    if isinstance(unit, _Unit) and type(target) in _COVERED:
        key = _key(target)
        if key is not None:
            unit.deleted[key] = len(unit.events)


def _on_statement(state: ORMExecuteState) -> None:
    if not isinstance(state.session.info.get(_UNIT), _Unit):
        return
    if state.is_insert or state.is_update or state.is_delete:
        table = getattr(getattr(state.statement, "table", None), "name", None)
        if table in MODELS:
            raise Unlogged(f"a bulk statement on {table} inside a unit of work: change the objects, so it is logged")


_COVERED = frozenset(MODELS.values())
for _name, _model in MODELS.items():
    for _field in TABLES[_name]:
        event.listen(getattr(_model, _field), "set", _on_set)
        event.listen(getattr(_model, _field), "modified", _on_modified)
event.listen(Session, "transient_to_pending", _on_add)
event.listen(Session, "before_flush", _before_flush)
event.listen(Session, "persistent_to_deleted", _on_delete)
event.listen(Session, "do_orm_execute", _on_statement)


# -- verifying ---------------------------------------------------------------------------------------------------


def baseline(session: Session) -> list[Event]:
    """Events recording every covered row as it is now: the start of row digests for a log begun without them."""
    rows: dict[str, dict[str, Any]] = {}
    for table, row_id, values in _all_rows(session, READ_BATCH):
        rows.setdefault(table, {})[row_id] = written(row_entry(table, row_id, values), None)
    return [
        Event(None, None, "audit.baseline" if n == 0 else "audit.rows", None, {ROWS_KEY: chunk})
        for n, chunk in enumerate(_chunks(rows))
    ]


def check_rows(session: Session, ledger: RowLedger, batch: int = READ_BATCH) -> list[RowFinding]:
    """The rows the service wrote over an edit, every covered row compared with ``ledger``, then the rows it lacks."""
    findings = list(ledger.overwritten)
    for table, row_id, values in _all_rows(session, batch):
        finding = ledger.check(table, row_id, values)
        if finding is not None:
            findings.append(finding)
    findings.extend(ledger.missing())
    return findings


def _all_rows(session: Session, batch: int) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every row of every covered table, ``batch`` rows per query (keyset on the id)."""
    for table in TABLES:
        columns = _table(table)
        query = _columns(table).order_by(columns.c.id).limit(batch)
        last: str | None = None
        while True:
            rows = session.execute(query if last is None else query.where(columns.c.id > last)).all()
            for row in rows:
                yield table, row[0], dict(zip(TABLES[table], row[1:], strict=True))
            if len(rows) < batch:
                break
            last = rows[-1][0]
