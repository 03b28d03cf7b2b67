"""Row digests on audit events: which rows a unit of work wrote, and verify finding rows the log does not explain.

The encoding and the comparison are pure (:mod:`harbour.custody.rowdigest`); the
units of work here write model rows themselves, on a SQLite file and on the real
PostgreSQL server (``db_url``), through the same :class:`UnitOfWork` the service
uses, and the tampering is SQL behind the service's back. The service's own
flows, edited the same way, are tests/test_audit_rows_service.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, update
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import flag_modified
from typer.testing import CliRunner

import harbour
from custody_env import HOME_PASSPHRASE
from harbour.cli.main import app
from harbour.custody import audit, auditverify, rowwatch
from harbour.custody import config as cfg
from harbour.custody import models as m
from harbour.custody.audit import AuditLog, LogCorrupted, VerifyReport
from harbour.custody.db import make_engine, session_factory
from harbour.custody.errors import Conflict
from harbour.custody.rowdigest import TABLES, RowFinding, RowLedger, row_entry, written
from harbour.custody.uow import UnitOfWork

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
APPROVAL_KEY = "ab" * 32


@pytest.fixture
def uow(sessions: sessionmaker[Session]) -> UnitOfWork:
    return UnitOfWork(sessions, AuditLog(KEY))


def sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as c:
        c.execute(sa.text(statement), params)


def events(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with sessions() as s:
        return AuditLog(KEY).events(s, org_id=None, limit=10_000)


def check(sessions: sessionmaker[Session]) -> VerifyReport:
    with sessions() as s:
        return auditverify.verify(s, KEY.public_key())


def organisation(uow: UnitOfWork, name: str = "Acme") -> tuple[str, str]:
    """An organisation and its admin, written the way bootstrap writes them; returns their ids."""
    with uow.tx() as s:
        org = m.Organisation(name=name, genesis="00" * 32)
        s.add(org)
        s.flush()
        user = m.User(org_id=org.id, name="root", roles=["admin"], approval_key=APPROVAL_KEY)
        s.add(user)
        s.flush()
        uow.event(s, None, "organisation.created", org.id, org_id=org.id, name=name)
        uow.event(s, None, "user.created", user.id, org_id=org.id, name="root")
        return org.id, user.id


def rows_of(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = event["data"].get("rows", {})
    return rows


# -- the encoding (pure) -----------------------------------------------------------------------------------------


USER = {"org_id": "o", "name": "alice", "roles": ["admin", "approver"], "approval_key": APPROVAL_KEY, "disabled": False}


def test_a_row_digest_is_sha256_of_its_canonical_fields_under_the_tables_domain() -> None:
    import hashlib

    entry = row_entry("users", "u-1", USER)
    body = b'["u-1",{"approval_key":"' + APPROVAL_KEY.encode() + b'","disabled":false,"name":"alice",'
    body += b'"org_id":"o","roles":["admin","approver"]}]'
    assert entry["digest"] == hashlib.sha256(b"harbour/audit-row/v1/users\x00" + body).hexdigest()
    tag = hashlib.sha256(b'harbour/audit-row-field/v1/users\x00["u-1","org_id","o"]').hexdigest()[:8]
    assert entry["fields"].startswith(tag) and len(entry["fields"]) == 8 * len(TABLES["users"])
    assert row_entry("users", "u-2", USER)["digest"] != entry["digest"]  # the id is bound
    assert row_entry("users", "u-1", {**USER, "roles": ["admin"]})["digest"] != entry["digest"]
    assert row_entry("users", "u-1", {**USER, "extra": 1}) == entry  # only the table's fields count


def test_the_same_values_in_two_tables_have_different_digests() -> None:
    values = {
        "org_id": "o",
        "name": "n",
        "address": "0x" + "11" * 20,
        "whitelisted": False,
        "created_by": "u",
        "removed_at": None,
    }
    book = row_entry("address_book", "x", values)
    symbolic = {"org_id": "o", "symbol": "n", "kind": "native", "contract": None, "decimals": 18}
    assert book["digest"] != row_entry("assets", "x", symbolic)["digest"]


def test_timestamps_are_digested_in_the_logs_one_spelling() -> None:
    values = {"user_id": "u", "secret_hash": "00" * 32, "expires_at": None, "scopes": ["full"], "allow": []}
    values["signing_key"] = None
    at = dt.datetime(2025, 1, 31, 20, 0, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert row_entry("credentials", "c", {**values, "revoked_at": at}) == row_entry(
        "credentials", "c", {**values, "revoked_at": "2025-01-31T12:00:00.000000Z"}
    )


def test_floats_in_a_row_are_refused() -> None:
    with pytest.raises(TypeError, match="float"):
        row_entry("assets", "a", {"org_id": "o", "symbol": "X", "kind": "erc20", "contract": None, "decimals": 1.0})


STATE = row_entry("users", "u-1", USER)
GOOD = written(STATE, None)
"""A row an event created."""

MALFORMED: dict[str, tuple[Any, str]] = {
    "rows not an object": ([], "not an object"),
    "unknown table": ({"secrets": {"x": GOOD}}, "unknown table 'secrets'"),
    "table not an object": ({"users": ["u-1"]}, "not a non-empty object"),
    "empty table": ({"users": {}}, "not a non-empty object"),
    "empty id": ({"users": {"": GOOD}}, "1..64"),
    "long id": ({"users": {"u" * 65: GOOD}}, "1..64"),
    "entry not an object": ({"users": {"u-1": "digest"}}, "not {digest, fields, was}"),
    "entry null": ({"users": {"u-1": None}}, "not {digest, fields, was}"),
    "entry without was": ({"users": {"u-1": STATE}}, "not {digest, fields, was}"),
    "entry with another key": ({"users": {"u-1": {**GOOD, "at": "now"}}}, "not {digest, fields, was}"),
    "digest short": ({"users": {"u-1": {**GOOD, "digest": "ab"}}}, "not null or 64 lowercase hex"),
    "digest upper case": ({"users": {"u-1": {**GOOD, "digest": STATE["digest"].upper()}}}, "64 lowercase hex"),
    "was not hex": ({"users": {"u-1": {**GOOD, "was": "zz" * 32}}}, "not null or 64 lowercase hex"),
    "was a number": ({"users": {"u-1": {**GOOD, "was": 0}}}, "not null or 64 lowercase hex"),
    "deleted with tags": ({"users": {"u-1": {**GOOD, "digest": None}}}, "field tags"),
    "tags without a digest": ({"users": {"u-1": {**GOOD, "fields": None}}}, "field tags"),
    "tags of another table": ({"credentials": {"u-1": GOOD}}, "field tags of credentials"),
    "tags not hex": ({"users": {"u-1": {**GOOD, "fields": "z" * len(STATE["fields"])}}}, "field tags"),
    "tags not a string": ({"users": {"u-1": {**GOOD, "fields": 5}}}, "field tags"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_event_rows_are_named(name: str) -> None:
    rows, problem = MALFORMED[name]
    ledger = RowLedger()
    reason = ledger.add(7, {"rows": rows})
    assert reason is not None and reason.startswith("event 7 is signed but") and problem in reason


def test_the_ledger_keeps_the_last_digest_of_each_row_and_names_the_changed_fields() -> None:
    ledger = RowLedger()
    viewer = row_entry("users", "u-1", {**USER, "roles": ["viewer"]})
    assert ledger.add(0, {"no rows": True}) is None
    assert ledger.add(1, {"rows": {"users": {"u-1": written(viewer, None), "u-3": written(STATE, None)}}}) is None
    second = {"u-1": written(STATE, viewer["digest"]), "u-2": written(row_entry("users", "u-2", USER), None)}
    assert ledger.add(2, {"rows": {"users": {**second, "u-3": written(None, STATE["digest"])}}}) is None
    assert ledger.overwritten == []  # every row was as the log had left it
    assert ledger.check("users", "u-1", USER) is None  # as event 2 left it (event 1's digest is superseded)
    edited = {**USER, "roles": ["admin"], "approval_key": "cd" * 32}
    finding = ledger.check("users", "u-2", edited)
    assert finding == RowFinding("users", "u-2", "changed", ("roles", "approval_key"), 2)
    assert "roles, approval_key changed since event 2" in finding.describe()
    assert ledger.check("users", "u-3", USER) == RowFinding("users", "u-3", "deleted", index=2)
    assert ledger.check("users", "u-4", USER) == RowFinding("users", "u-4", "unlogged")
    assert ledger.check("users", "u-1", USER) == RowFinding("users", "u-1", "unlogged")  # asked about once
    assert list(ledger.missing()) == []
    third = RowLedger()
    third.add(5, {"rows": {"users": {"u-9": GOOD, "u-8": written(None, None)}}})
    assert [f.to_json() for f in third.missing()] == [
        {
            "table": "users",
            "id": "u-9",
            "problem": "missing",
            "fields": [],
            "event": 5,
            "description": "users u-9: event 5 wrote this row, the database no longer holds it",
        }
    ]


def test_the_ledger_finds_a_row_written_over_when_it_was_not_as_the_log_left_it() -> None:
    """Edited in SQL, then changed by the service: the new event vouches for the row only from its ``was``."""
    ledger = RowLedger()
    edited = row_entry("users", "u-1", {**USER, "roles": ["admin", "auditor"]})
    ledger.add(3, {"rows": {"users": {"u-1": GOOD}}})
    ledger.add(8, {"rows": {"users": {"u-1": written(STATE, edited["digest"])}}})  # found the edit
    ledger.add(9, {"rows": {"users": {"u-2": written(STATE, STATE["digest"])}}})  # a row no event wrote
    ledger.add(11, {"rows": {"users": {"u-1": written(STATE, None)}}})  # the service thought it new
    assert ledger.overwritten == [
        RowFinding("users", "u-1", "overwritten", index=8),
        RowFinding("users", "u-2", "overwritten", index=9),
        RowFinding("users", "u-1", "overwritten", index=11),
    ]
    assert ledger.overwritten[0].describe() == "users u-1: edited behind the log's back before event 8 wrote over it"


AUDITOR = """
import json, sys
from harbour.custody import rowdigest
given = json.load(sys.stdin)
ledger = rowdigest.RowLedger()
for index, data in enumerate(given["events"]):
    assert ledger.add(index, data) is None
found = [ledger.check(t, i, v) for t, i, v in given["rows"]]
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy" or m.startswith("harbour.custody"))
print(json.dumps({"found": [f.to_json() if f else None for f in found], "loaded": loaded}))
"""


@pytest.mark.process  # a fresh interpreter, so that nothing else has loaded SQLAlchemy
def test_an_auditor_compares_rows_without_sqlalchemy_or_the_service() -> None:
    given = {
        "events": [{"rows": {"users": {"u-1": GOOD, "u-2": written(row_entry("users", "u-2", USER), None)}}}],
        "rows": [["users", "u-1", USER], ["users", "u-2", {**USER, "disabled": True}]],
    }
    source = str(Path(harbour.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", AUDITOR], input=json.dumps(given), capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["found"][0] is None and result["found"][1]["fields"] == ["disabled"]
    assert result["loaded"] == ["harbour.custody", "harbour.custody.auditproof", "harbour.custody.rowdigest"]


# -- what a unit of work puts on its events -----------------------------------------------------------------------


def test_each_event_carries_the_digests_of_the_rows_its_unit_wrote(
    sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    org_id, user_id = organisation(uow)
    created = events(sessions)
    assert [e["kind"] for e in created] == ["organisation.created", "user.created"]
    organisation_row = written(row_entry("organisations", org_id, {"name": "Acme", "genesis": "00" * 32}), None)
    assert rows_of(created[0]) == {"organisations": {org_id: organisation_row}}
    user = {"org_id": org_id, "name": "root", "roles": ["admin"], "approval_key": APPROVAL_KEY, "disabled": False}
    assert rows_of(created[1]) == {"users": {user_id: written(row_entry("users", user_id, user), None)}}
    assert check(sessions) == VerifyReport(True, 2, None, "")


def test_a_row_goes_with_the_first_event_after_its_last_change(
    sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    org_id, user_id = organisation(uow)
    with uow.tx() as s:
        user = s.get(m.User, user_id)
        assert user is not None
        uow.event(s, None, "test.before", None, org_id=org_id)  # nothing changed yet: no rows
        user.roles = ["admin", "auditor"]
        uow.event(s, None, "test.first", None, org_id=org_id)  # the change before it
        uow.event(s, None, "test.second", None, org_id=org_id)
        entry = m.AddressBookEntry(org_id=org_id, name="cold", address="0x" + "11" * 20, created_by=user_id)
        s.add(entry)
        uow.event(s, None, "test.third", None, org_id=org_id)
        entry.whitelisted = True  # after the unit's last event: goes with it
    before, first, second, third = events(sessions)[2:]
    assert rows_of(before) == {} and rows_of(second) == {}
    assert list(rows_of(first)) == ["users"] and list(rows_of(first)["users"]) == [user_id]
    book = rows_of(third)["address_book"][entry.id]
    values = {"org_id": org_id, "name": "cold", "address": "0x" + "11" * 20, "whitelisted": True}
    assert book == written(
        row_entry("address_book", entry.id, {**values, "created_by": user_id, "removed_at": None}), None
    )
    assert check(sessions).ok


def test_a_row_prefers_the_event_about_it(sessions: sessionmaker[Session], uow: UnitOfWork) -> None:
    """A batch that changes many rows and records an event for each (the confirmation loop) spreads them out."""
    org_id, _ = organisation(uow)
    with uow.tx() as s:
        users = [m.User(org_id=org_id, name=f"u{n}", roles=["viewer"]) for n in range(4)]
        s.add_all(users)
        s.flush()
        for user in users:
            user.disabled = True
        for user in users:
            uow.event(s, None, "user.disabled", user.id, org_id=org_id)
    for event, user in zip(events(sessions)[2:], users, strict=True):
        assert event["subject"] == user.id and list(rows_of(event)["users"]) == [user.id]
    assert check(sessions).ok


def test_a_change_with_no_event_is_refused_and_nothing_is_written(
    sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    _, user_id = organisation(uow)
    with pytest.raises(rowwatch.Unlogged, match=f"users {user_id} was written without an audit event"), uow.tx() as s:
        user = s.get(m.User, user_id)
        assert user is not None
        user.roles = ["admin", "approver"]
    with pytest.raises(rowwatch.Unlogged, match="without an audit event"):
        uow.write(lambda s: s.add(m.Organisation(name="Shadow", genesis="00" * 32)))
    with sessions() as s:
        assert s.get(m.User, user_id).roles == ["admin"]  # type: ignore[union-attr]
        assert s.scalar(sa.select(sa.func.count()).select_from(m.Organisation)) == 1
    assert check(sessions).ok


def test_fields_the_digest_leaves_out_change_without_an_event(sessions: sessionmaker[Session], uow: UnitOfWork) -> None:
    """The pipeline notes a broadcast retry on the row without an event: errors are not vouched for."""
    org_id, user_id = organisation(uow)
    with uow.tx() as s:
        tx = m.Transaction(org_id=org_id, kind="withdrawal", state="approved", initiator_id=user_id)
        s.add(tx)
        uow.event(s, None, "transaction.submitted", None, org_id=org_id)
    with uow.tx() as s:
        row = s.get(m.Transaction, tx.id)
        assert row is not None
        row.error, row.attempts = "broadcast failed, will retry", 1
        row.state = "approved"  # the same value: not a change
    assert len(events(sessions)) == 3
    assert check(sessions).ok


def test_a_bulk_statement_on_an_audited_table_is_refused_inside_a_unit(
    sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    org_id, user_id = organisation(uow)
    with pytest.raises(rowwatch.Unlogged, match="bulk statement on users"), uow.tx() as s:
        s.execute(update(m.User).where(m.User.id == user_id).values(disabled=True))
        uow.event(s, None, "user.disabled", user_id, org_id=org_id)
    assert check(sessions).ok


def test_a_json_value_changed_in_place_and_flagged_is_seen(sessions: sessionmaker[Session], uow: UnitOfWork) -> None:
    org_id, user_id = organisation(uow)
    with uow.tx() as s:
        user = s.get(m.User, user_id)
        assert user is not None
        user.roles.append("auditor")
        flag_modified(user, "roles")
        uow.event(s, None, "user.roles_changed", user_id, org_id=org_id)
    assert list(rows_of(events(sessions)[-1])["users"]) == [user_id]
    assert check(sessions).ok


def test_event_data_is_taken_when_the_event_is_recorded(sessions: sessionmaker[Session], uow: UnitOfWork) -> None:
    org_id, _ = organisation(uow)
    roles = ["viewer"]
    with uow.tx() as s:
        uow.event(s, None, "test.snapshot", None, org_id=org_id, roles=roles)
        roles.append("admin")
    assert events(sessions)[-1]["data"] == {"roles": ["viewer"]}


def test_callers_cannot_write_the_rows_key_or_events_outside_a_unit(
    sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    with pytest.raises(ValueError, match="'rows' is the log's own"), uow.tx() as s:
        uow.event(s, None, "test.forged", None, rows={"users": {}})
    with pytest.raises(ValueError, match="audit kind"), uow.tx() as s:
        uow.event(s, None, "Not A Kind", None)  # refused when recorded, not when the unit ends
    with sessions() as s, s.begin(), pytest.raises(RuntimeError, match="inside UnitOfWork"):
        uow.event(s, None, "test.stray", None)
    assert events(sessions) == []


def test_a_deleted_row_is_recorded_as_null(engine: Engine, sessions: sessionmaker[Session], uow: UnitOfWork) -> None:
    org_id, user_id = organisation(uow)
    with uow.tx() as s:
        book = m.AddressBookEntry(org_id=org_id, name="old", address="0x" + "22" * 20, created_by=user_id)
        s.add(book)
        uow.event(s, None, "address_book.added", book.id, org_id=org_id)
    with uow.tx() as s:
        row = s.get(m.AddressBookEntry, book.id)
        s.delete(row)
        uow.event(s, None, "address_book.removed", book.id, org_id=org_id)
    added = rows_of(events(sessions)[-2])["address_book"][book.id]
    assert rows_of(events(sessions)[-1]) == {"address_book": {book.id: written(None, added["digest"])}}
    assert check(sessions).ok
    sql(
        engine,
        "INSERT INTO address_book (id, org_id, name, address, whitelisted, created_by, created_at) "
        "VALUES (:id, :org, 'old', :address, true, :user, :at)",
        id=book.id,
        org=org_id,
        address="0x" + "22" * 20,
        user=user_id,
        at=dt.datetime(2025, 1, 1),
    )
    report = check(sessions)
    assert not report.ok and report.rows == (RowFinding("address_book", book.id, "deleted", index=3),)


def test_many_rows_spill_onto_further_events_under_the_size_cap(
    sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    """Disabling a user who holds hundreds of credentials writes more digests than one event may carry."""
    org_id, user_id = organisation(uow)
    with uow.tx() as s:
        for n in range(600):
            s.add(m.Credential(user_id=user_id, secret_hash=f"{n:064x}"))
        uow.event(s, None, "credential.issued", user_id, org_id=org_id, count=600)
    written = events(sessions)[2:]
    assert written[0]["kind"] == "credential.issued" and {e["kind"] for e in written[1:]} == {"audit.rows"}
    assert all(e["subject"] == user_id and e["org_id"] == org_id for e in written)
    assert sum(len(rows_of(e)["credentials"]) for e in written) == 600
    assert all(len(audit.leaf_content(e)) <= audit.MAX_EVENT_BYTES for e in written)
    assert check(sessions).ok


def test_in_a_group_commit_each_write_carries_its_own_rows(
    engine: Engine, sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    """On SQLite writers share one transaction; a failed one takes its rows and its events with its savepoint."""
    org_id, _ = organisation(uow)

    def add(name: str, fail: bool = False) -> Any:
        def work(s: Session) -> str:
            user = m.User(org_id=org_id, name=name, roles=["viewer"])
            s.add(user)
            s.flush()
            uow.event(s, None, "user.created", user.id, org_id=org_id)
            if fail:
                raise RuntimeError("refused after writing")
            return user.id

        return work

    first = uow.write(add("first"))
    with pytest.raises(RuntimeError):
        uow.write(add("second", fail=True))
    third = uow.write(add("third"))
    written = events(sessions)[2:]
    assert [list(rows_of(e)["users"]) for e in written] == [[first], [third]]
    assert check(sessions).ok


def test_concurrent_writers_of_one_row_leave_a_log_that_explains_it(
    sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    """Each unit reads the row it changes under a lock first, so its ``was`` is the digest the log holds last."""
    org_id, user_id = organisation(uow)
    threads, each = 6, 8
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def flip(s: Session) -> None:
        user = s.get(m.User, user_id)
        assert user is not None
        user.disabled = not user.disabled
        uow.event(s, None, "user.flipped", user_id, org_id=org_id)

    def run() -> None:
        try:
            start.wait()
            for _ in range(each):
                uow.write(flip)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    assert check(sessions) == VerifyReport(True, 2 + threads * each, None, "")


# -- verify: rows edited behind the log's back ---------------------------------------------------------------------


def test_rows_edited_inserted_or_deleted_in_sql_are_reported_by_table_id_and_field(
    engine: Engine, sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    org_id, user_id = organisation(uow)
    with uow.tx() as s:
        book = m.AddressBookEntry(org_id=org_id, name="cold", address="0x" + "33" * 20, created_by=user_id)
        other = m.AddressBookEntry(org_id=org_id, name="hot", address="0x" + "44" * 20, created_by=user_id)
        s.add_all([book, other])
        uow.event(s, None, "address_book.added", None, org_id=org_id)
    assert check(sessions).ok
    sql(engine, "UPDATE users SET roles = :r WHERE id = :id", r='["admin", "approver"]', id=user_id)
    sql(engine, "UPDATE address_book SET whitelisted = true, name = 'COLD' WHERE id = :id", id=book.id)
    sql(engine, "DELETE FROM address_book WHERE id = :id", id=other.id)
    sql(
        engine,
        "INSERT INTO organisations (id, name, genesis, created_at) VALUES ('o-x', 'Shadow', '', :at)",
        at=dt.datetime(2025, 1, 1),
    )
    report = check(sessions)
    assert (report.ok, report.size, report.first_bad_index) == (False, 3, None)
    assert set(report.rows) == {
        RowFinding("users", user_id, "changed", ("roles",), 1),
        RowFinding("address_book", book.id, "changed", ("name", "whitelisted"), 2),
        RowFinding("address_book", other.id, "missing", index=2),
        RowFinding("organisations", "o-x", "unlogged"),
    }
    assert "4 row(s) of the database are not as the audit log left them" in report.problem
    assert [r["table"] for r in report.to_json()["rows"]] == [r.table for r in report.rows]
    with sessions() as s:
        assert auditverify.verify(s, KEY.public_key(), rows=False).ok  # the log itself is intact


def test_a_row_edited_in_sql_and_then_written_over_by_the_service_is_still_found(
    engine: Engine, sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    """The next event's digest would vouch for the edit: its ``was`` says what the service found instead."""
    org_id, user_id = organisation(uow)
    sql(engine, "UPDATE users SET roles = :r WHERE id = :id", r='["admin", "approver"]', id=user_id)
    sql(
        engine,
        "INSERT INTO organisations (id, name, genesis, created_at) VALUES ('o-x', 'Shadow', '', :at)",
        at=dt.datetime(2025, 1, 1),
    )
    with uow.tx() as s:
        user = s.get(m.User, user_id)
        shadow = s.get(m.Organisation, "o-x")
        assert user is not None and shadow is not None
        user.disabled = True
        uow.event(s, None, "user.disabled", user_id, org_id=org_id)
        shadow.name = "Shadow Ltd"
        uow.event(s, None, "organisation.renamed", "o-x", org_id="o-x")
    report = check(sessions)
    assert report.rows == (
        RowFinding("users", user_id, "overwritten", index=2),
        RowFinding("organisations", "o-x", "overwritten", index=3),
    )
    assert "users " + user_id + ": edited behind the log's back before event 2 wrote over it" in report.problem
    with uow.tx() as s:  # and the next change, from the state the log now holds, is clean again
        user = s.get(m.User, user_id)
        assert user is not None
        user.disabled = False
        uow.event(s, None, "user.enabled", user_id, org_id=org_id)
    assert len(check(sessions).rows) == 2


def test_a_row_set_back_to_its_logged_value_verifies(
    engine: Engine, sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    _, user_id = organisation(uow)
    sql(engine, "UPDATE users SET disabled = true WHERE id = :id", id=user_id)
    assert check(sessions).rows == (RowFinding("users", user_id, "changed", ("disabled",), 1),)
    sql(engine, "UPDATE users SET disabled = false WHERE id = :id", id=user_id)
    assert check(sessions).ok


def test_malformed_rows_in_a_signed_event_fail_the_log_at_that_event(sessions: sessionmaker[Session]) -> None:
    log = AuditLog(KEY)
    with sessions() as s, s.begin():
        log.append(s, org_id=None, actor_id=None, kind="x.y", subject=None, data={})
        log.append(s, org_id=None, actor_id=None, kind="x.y", subject=None, data={"rows": {"users": {"u": "x"}}})
    report = check(sessions)
    assert (report.ok, report.first_bad_index) == (False, 1)
    assert "event 1 is signed but the entry of users u is not {digest, fields, was}" in report.problem


def test_a_log_that_fails_is_reported_before_any_row(
    engine: Engine, sessions: sessionmaker[Session], uow: UnitOfWork
) -> None:
    _, user_id = organisation(uow)
    sql(engine, "UPDATE users SET name = 'mallory' WHERE id = :id", id=user_id)
    sql(engine, "UPDATE audit_events SET kind = 'user.renamed' WHERE \"index\" = 1")
    report = check(sessions)
    assert (report.ok, report.first_bad_index, report.rows) == (False, 1, ())


def test_verify_reads_rows_in_batches(sessions: sessionmaker[Session], uow: UnitOfWork) -> None:
    org_id, _ = organisation(uow)
    with uow.tx() as s:
        s.add_all([m.User(org_id=org_id, name=f"u{n}", roles=["viewer"]) for n in range(7)])
        uow.event(s, None, "user.created", None, org_id=org_id)
    with sessions() as s:
        for batch in (1, 2, 7, 100):
            assert auditverify.verify(s, KEY.public_key(), batch=batch).ok


# -- a log begun before row digests --------------------------------------------------------------------------------


def old_deployment(sessions: sessionmaker[Session], log: AuditLog) -> str:
    """Rows and events as a service before row digests wrote them: the events say nothing of the rows."""
    with sessions() as s, s.begin():
        org = m.Organisation(name="Before", genesis="00" * 32)
        s.add(org)
        s.flush()
        s.add(m.User(org_id=org.id, name="root", roles=["admin"], approval_key=APPROVAL_KEY))
        log.append(s, org_id=org.id, actor_id=None, kind="organisation.created", subject=org.id, data={})
        log.append(s, org_id=org.id, actor_id=None, kind="user.created", subject=None, data={"name": "root"})
        return org.id


def test_a_baseline_records_the_rows_of_a_log_that_predates_row_digests(
    engine: Engine, sessions: sessionmaker[Session]
) -> None:
    log = AuditLog(KEY)
    old_deployment(sessions, log)
    report = check(sessions)
    assert {(f.table, f.problem) for f in report.rows} == {("organisations", "unlogged"), ("users", "unlogged")}
    with sessions() as s, s.begin():
        assert auditverify.record_baseline(log, s) == 2
    assert [e["kind"] for e in events(sessions)] == ["organisation.created", "user.created", "audit.baseline"]
    assert check(sessions) == VerifyReport(True, 3, None, "")
    with sessions() as s, s.begin(), pytest.raises(Conflict, match="carries row digests already"):
        auditverify.record_baseline(log, s)
    sql(engine, 'UPDATE users SET roles = \'["admin", "approver"]\'')
    assert [f.fields for f in check(sessions).rows] == [("roles",)]


def test_a_baseline_is_refused_on_a_log_that_does_not_verify(engine: Engine, sessions: sessionmaker[Session]) -> None:
    log = AuditLog(KEY)
    old_deployment(sessions, log)
    sql(engine, "UPDATE audit_events SET kind = 'user.deleted' WHERE \"index\" = 1")
    with sessions() as s, s.begin(), pytest.raises(LogCorrupted, match="no baseline is recorded"):
        auditverify.record_baseline(log, s)
    assert len(events(sessions)) == 2


def test_the_cli_verifies_rows_and_records_a_baseline_once(sqlite_url: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = cfg.init_home(home, passphrase=HOME_PASSPHRASE, database=sqlite_url)
    engine = make_engine(config.database)
    try:
        old_deployment(session_factory(engine), AuditLog(cfg.audit_signing_key(home, HOME_PASSPHRASE)))
    finally:
        engine.dispose()

    def run(*args: str) -> tuple[int, str]:
        result = CliRunner().invoke(app, ["audit", *args, "--home", str(home)])
        return result.exit_code, result.output

    code, out = run("verify")
    assert code == 1 and "2 row(s) of the database are not as the log left them" in out
    assert "no audit event wrote this row" in out
    code, out = run("baseline")
    assert (code, out.strip()) == (0, "baseline recorded: 2 rows, the log now holds 3 events")
    code, out = run("verify")
    assert code == 0 and "every business row is as the log left it" in out
    code, out = run("baseline")
    assert code == 1 and "nothing to baseline" in out
