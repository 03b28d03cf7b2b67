"""Storage on both backends: migrations, exact amounts, UTC timestamps, concurrent writers, constraints.

Every test that takes ``db_url`` runs twice, on a SQLite file and on the real
PostgreSQL server the test run starts (tests/postgres.py).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from harbour.custody.db import (
    AMOUNT_DIGITS,
    current_revision,
    downgrade,
    head_revision,
    lock_for_update,
    make_engine,
    session_factory,
    upgrade,
)
from harbour.custody.migrations import target_metadata
from harbour.custody.models import ChainCursor, GovernanceEntry, Organisation, Transaction, User
from postgres import PostgresServer, PostgresUnavailable

GENESIS = "00" * 32
"""An organisation row names its genesis entry's hash; these tests of storage need no real one."""
BIG = [0, 1, 9, 10, 100, 2**63 - 1, 2**63, 2**64, 2**256 - 1, 10**AMOUNT_DIGITS - 1]


def schema_differences(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, target_metadata()))


def table_names(engine: Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def add_user(session: Session, org_name: str = "acme") -> User:
    org = Organisation(name=org_name, genesis=GENESIS)
    session.add(org)
    session.flush()
    user = User(org_id=org.id, name="alice", roles=["initiator"])
    session.add(user)
    session.flush()
    return user


def withdrawal(user: User, **fields: object) -> Transaction:
    return Transaction(org_id=user.org_id, kind="withdrawal", state="submitted", initiator_id=user.id, **fields)


# -- migrations -----------------------------------------------------------------------------------------------------


def test_migrations_reach_head_and_schema_matches_models(engine: Engine) -> None:
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
    assert {"organisations", "transactions", "alembic_version"} <= table_names(engine)


def test_downgrade_to_base_and_upgrade_again(engine: Engine) -> None:
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert table_names(engine) <= {"alembic_version"}
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []


def test_upgrade_twice_is_a_no_op(db_url: str, engine: Engine) -> None:
    with session_factory(engine).begin() as session:
        add_user(session)
    upgrade(db_url)
    assert current_revision(engine) == head_revision()
    with session_factory(engine)() as session:
        assert session.scalar(select(sa.func.count()).select_from(User)) == 1


def test_unmigrated_database_has_no_revision(postgres_url: str) -> None:
    for url in (postgres_url, "sqlite://"):
        engine = make_engine(url)
        try:
            assert current_revision(engine) is None
        finally:
            engine.dispose()


def test_in_memory_sqlite_is_migrated_through_its_engine() -> None:
    engine = make_engine("sqlite://")
    upgrade(engine)  # the same single connection (StaticPool), so the tables stay visible
    assert current_revision(engine) == head_revision()
    assert schema_differences(engine) == []
    with session_factory(engine).begin() as session:
        add_user(session)


# -- amounts ----------------------------------------------------------------------------------------------------------


def test_amounts_round_trip_exactly(engine: Engine) -> None:
    factory = session_factory(engine)
    with factory.begin() as session:
        user = add_user(session)
        ids = []
        for value in BIG:
            transaction = withdrawal(user, amount=value, fee=value)
            session.add(transaction)
            session.flush()
            ids.append(transaction.id)
    with factory() as session:
        for value, id_ in zip(BIG, ids, strict=True):
            stored = session.get_one(Transaction, id_)
            assert stored.amount == value and type(stored.amount) is int
            assert stored.fee == value


@pytest.mark.parametrize(
    "value",
    [-1, 1.0, 1e20, True, False, Decimal(5), "5", 10**AMOUNT_DIGITS, 2**300],
    ids=["negative", "float", "big float", "true", "false", "decimal", "string", "79 digits", "2^300"],
)
def test_amount_refuses_anything_but_a_non_negative_integer(engine: Engine, value: object) -> None:
    with session_factory(engine)() as session:
        user = add_user(session)
        session.add(withdrawal(user, amount=value))
        with pytest.raises(StatementError) as error:
            session.flush()
        assert isinstance(error.value.orig, ValueError)
        assert "non-negative integer" in str(error.value.orig)


def test_amounts_order_and_compare_numerically(engine: Engine) -> None:
    values = [10, 9, 2**64, 100, 0, 2**256 - 1, 99, 2**63]
    with session_factory(engine).begin() as session:
        user = add_user(session)
        session.add_all(withdrawal(user, amount=value) for value in values)
    with session_factory(engine)() as session:
        ordered = session.scalars(select(Transaction.amount).order_by(Transaction.amount)).all()
        assert ordered == sorted(values)
        above = session.scalars(select(Transaction.amount).where(Transaction.amount > 99).order_by(Transaction.amount))
        assert above.all() == [100, 2**63, 2**64, 2**256 - 1]
        assert session.scalar(select(sa.func.max(Transaction.amount))) == 2**256 - 1


def test_amount_storage_per_backend(engine: Engine) -> None:
    """Fixed-width decimal text on SQLite (so text order is numeric order), NUMERIC(78, 0) on PostgreSQL."""
    with session_factory(engine).begin() as session:
        user = add_user(session)
        session.add(withdrawal(user, amount=42))
    with engine.connect() as connection:
        raw = connection.exec_driver_sql("SELECT amount FROM transactions").scalar_one()
    if engine.dialect.name == "sqlite":
        assert raw == "42".rjust(AMOUNT_DIGITS, "0")
    else:
        assert raw == Decimal(42)
        column = next(c for c in sa.inspect(engine).get_columns("transactions") if c["name"] == "amount")
        numeric = column["type"]
        assert isinstance(numeric, sa.Numeric)
        assert (numeric.precision, numeric.scale) == (AMOUNT_DIGITS, 0)


# -- timestamps -------------------------------------------------------------------------------------------------------


def test_timestamps_come_back_aware_utc(engine: Engine) -> None:
    hong_kong = dt.timezone(dt.timedelta(hours=8))
    moment = dt.datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=hong_kong)
    with session_factory(engine).begin() as session:
        org = Organisation(name="acme", genesis=GENESIS, created_at=moment)
        session.add(org)
    with session_factory(engine)() as session:
        stored = session.get_one(Organisation, org.id).created_at
    assert stored.utcoffset() == dt.timedelta(0)
    assert stored == moment
    assert stored.isoformat() == "2025-03-01T01:30:15.123456+00:00"


def test_naive_timestamps_are_refused(engine: Engine) -> None:
    with session_factory(engine)() as session:
        session.add(Organisation(name="acme", genesis=GENESIS, created_at=dt.datetime(2025, 3, 1)))
        with pytest.raises(StatementError, match="timezone-aware"):
            session.flush()


# -- concurrency ------------------------------------------------------------------------------------------------------


def test_concurrent_increments_lose_no_update(engine: Engine) -> None:
    """16 threads read-modify-write one row; every increment survives on both backends.

    The pause between read and write makes the race certain without the lock:
    on SQLite the writers queue on BEGIN IMMEDIATE, on PostgreSQL on FOR UPDATE.
    """
    threads, rounds = 16, 8
    factory = session_factory(engine)
    with factory.begin() as session:
        session.add(ChainCursor(name="counter", block=0))
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work() -> None:
        try:
            start.wait()
            for _ in range(rounds):
                with factory.begin() as session:
                    cursor = session.scalars(lock_for_update(select(ChainCursor).where(ChainCursor.name == "counter")))
                    row = cursor.one()
                    value = row.block
                    time.sleep(0.001)
                    row.block = value + 1
        except BaseException as error:
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    with factory() as session:
        assert session.get_one(ChainCursor, "counter").block == threads * rounds


def test_sqlite_transactions_begin_immediate(tmp_path: Path) -> None:
    """The write lock is taken at BEGIN, so a read that decides a write cannot be overtaken."""
    engine = make_engine(f"sqlite:///{tmp_path}/x.db")
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda _c, _cur, statement, *_: statements.append(statement))
    try:
        with engine.begin() as connection:
            connection.exec_driver_sql("SELECT 1")
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() == 30000
        assert statements[0] == "BEGIN IMMEDIATE"
    finally:
        engine.dispose()


def test_sqlite_second_writer_waits_instead_of_failing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/x.db"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    held = threading.Event()
    finished: list[float] = []

    def hold() -> None:
        with factory.begin() as session:
            session.add(Organisation(name="first", genesis=GENESIS))
            session.flush()
            held.set()
            time.sleep(0.3)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    began = time.monotonic()
    with factory.begin() as session:
        assert session.scalar(select(sa.func.count()).select_from(Organisation)) == 1  # sees the committed row
        session.add(Organisation(name="second", genesis=GENESIS))
    finished.append(time.monotonic() - began)
    holder.join()
    engine.dispose()
    assert finished[0] >= 0.2


def test_lock_for_update_renders_per_backend() -> None:
    stmt = lock_for_update(select(ChainCursor))
    pg = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves this constructor unannotated
    assert "FOR UPDATE" in str(stmt.compile(dialect=pg))
    assert "FOR UPDATE" not in str(stmt.compile(dialect=sqlite.dialect()))


# -- constraints ------------------------------------------------------------------------------------------------------


def test_duplicate_idempotency_key_is_refused(engine: Engine) -> None:
    factory = session_factory(engine)
    with factory.begin() as session:
        user = add_user(session)
        other = add_user(session, "other")
        session.add(withdrawal(user, idempotency_key="k1"))
        session.add(withdrawal(other, idempotency_key="k1"))  # another organisation: allowed
        session.add_all([withdrawal(user), withdrawal(user)])  # no key: any number
    with factory() as session:
        session.add(withdrawal(user, idempotency_key="k1"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_a_second_governance_entry_at_the_same_place_is_refused(engine: Engine) -> None:
    """Two entries at one (organisation, seq) would fork the log: the database itself refuses the second."""
    factory = session_factory(engine)
    with factory.begin() as session:
        org = add_user(session).org_id
        other = add_user(session, "other").org_id
        session.add(GovernanceEntry(org_id=org, seq=1, hash="11" * 32, data=b"first"))
        session.add(GovernanceEntry(org_id=other, seq=1, hash="22" * 32, data=b"other organisation"))
    with factory() as session:
        session.add(GovernanceEntry(org_id=org, seq=1, hash="33" * 32, data=b"a fork"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    with session_factory(engine)() as session:
        session.add(User(org_id="no-such-organisation", name="mallory", roles=[]))
        with pytest.raises(IntegrityError):
            session.commit()


# -- engines ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "mysql://root@localhost/custody",
        "sqlite+aiosqlite:///x.db",
        "postgresql+psycopg2://u:hunter2@localhost/custody",
        "postgresql+asyncpg://u:hunter2@localhost/custody",
    ],
)
def test_unsupported_database_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError) as error:
        make_engine(url)
    assert "hunter2" not in str(error.value)


def test_postgresql_urls_use_psycopg(postgres_url: str) -> None:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    engine = make_engine(plain)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar_one() == 1
    finally:
        engine.dispose()


def test_test_server_runs_unprivileged_and_unsynced(postgres_server: PostgresServer, postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SHOW fsync").scalar_one() == "off"
            assert connection.exec_driver_sql("SHOW listen_addresses").scalar_one() == "127.0.0.1"
    finally:
        engine.dispose()
    assert postgres_server.process is not None
    owner = (postgres_server.data / "PG_VERSION").stat().st_uid
    assert owner != 0


def test_missing_postgres_binaries_say_how_to_install_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("postgres.glob.glob", lambda _pattern: [])
    monkeypatch.setattr("postgres.shutil.which", lambda _name: None)
    with pytest.raises(PostgresUnavailable, match="make system-deps"):
        PostgresServer()
