"""Storage: the SQLAlchemy declarative base, column types and engines.

SQLite (a file) is the embedded default and PostgreSQL the production database;
both run the same models and the same Alembic migrations.

Amounts are integers in base units (wei, token units) and routinely exceed 2^63,
so they are never an SQL ``INTEGER`` or a float: :class:`Amount` is
``NUMERIC(78, 0)`` on PostgreSQL (exact, and 78 digits hold any uint256) and a
zero-padded decimal string on SQLite, whose NUMERIC affinity would round through
a double. Python code always sees ``int``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, TypeVar

from sqlalchemy import (
    URL,
    Connection,
    DateTime,
    Dialect,
    Engine,
    MetaData,
    Numeric,
    Select,
    String,
    TypeDecorator,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:  # Alembic is imported when migrating, not by every process that reads the database
    from alembic.config import Config

AMOUNT_DIGITS: Final = 78
"""Decimal digits of 2^256 - 1."""

NAMING: Final = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Amount(TypeDecorator[int]):
    """A non-negative integer of up to 78 digits, exact on every backend."""

    impl = String(AMOUNT_DIGITS)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(Numeric(AMOUNT_DIGITS, 0, asdecimal=True))
        return dialect.type_descriptor(String(AMOUNT_DIGITS))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if type(value) is not int or value < 0 or value >= 10**AMOUNT_DIGITS:
            raise ValueError(f"an amount is a non-negative integer of at most {AMOUNT_DIGITS} digits, got {value!r}")
        if dialect.name == "postgresql":
            return value
        return str(value).rjust(AMOUNT_DIGITS, "0")  # fixed width: string order is numeric order

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("timestamps must be timezone-aware")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: Any, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        assert isinstance(value, dt.datetime)
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


# --- engines, sessions and migrations ---------------------------------------------------------------------------

SQLITE_BUSY_TIMEOUT_S: Final = 30.0
"""How long a SQLite writer waits for the write lock before giving up with "database is locked"."""

POOL_SIZE: Final = 32
"""Connections an engine keeps open: one per worker or request thread of a busy service."""

POOL_OVERFLOW: Final = 8
"""Extra connections opened under a burst and closed again when returned."""

MIGRATIONS: Final = Path(__file__).with_name("migrations")
"""The Alembic script directory (env.py, script.py.mako, versions/), shipped inside the package."""

_S = TypeVar("_S", bound=Select[Any])


SECRET_PARAMETERS = frozenset({"password", "sslpassword", "passfile", "sslkey"})
"""Query parameters of a database URL that libpq takes as secrets (or the path to one): hidden when shown."""


def carries_password(url: str) -> bool:
    """Whether the URL holds a password (``user:pw@`` or ``?password=``), which libpq should be given instead."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return False
    return parsed.password is not None or any(k.lower() in SECRET_PARAMETERS for k in parsed.query)


def redacted(url: str | URL) -> str:
    """The URL with any password hidden, for logs and messages: ``user:pw@`` and ``?password=`` alike."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return "<unparseable database URL>"
    hidden = {k: "REDACTED" for k in parsed.query if k.lower() in SECRET_PARAMETERS}
    return parsed.update_query_dict(hidden).render_as_string(hide_password=True)


def make_engine(url: str) -> Engine:
    """An engine configured for safe concurrent use of the custody database.

    SQLite (``sqlite:///path``): WAL (readers do not block the writer), a busy timeout,
    foreign keys enforced, and every transaction opened with ``BEGIN IMMEDIATE``. A
    plain (deferred) ``BEGIN`` takes the write lock only at the first write, so two
    transactions that both read a row and then update it either fail with "database
    is locked" (SQLite cannot wait for a lock upgrade without risking deadlock) or,
    worse, both compute from the same old value. ``BEGIN IMMEDIATE`` takes the write
    lock up front, so writers queue on the busy timeout and run one after another:
    read-modify-write is serialised without any extra locking in the callers. This is
    SQLAlchemy's documented recipe: pysqlite's own transaction handling is switched
    off (``isolation_level = None``) and the ``begin`` event emits the BEGIN.

    Because a SQLite transaction holds the write lock from its first statement, keep
    transactions short: never hold a session open across a network call (MPC
    signing, a chain RPC), or every other request waits behind it.

    ``sqlite://`` (in memory) is one connection shared by every user of the engine
    (StaticPool), which is what tests want; it is not for concurrent use.

    PostgreSQL (``postgresql://`` or ``postgresql+psycopg://``) goes through psycopg 3
    with a pool sized for a few dozen threads and a liveness check on checkout, so a
    restarted server costs one failed ping instead of one failed request. Row locks
    are the caller's business there: see :func:`lock_for_update`.
    """
    parsed = make_url(url)
    shown = redacted(parsed)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        if parsed.get_driver_name() != "pysqlite":
            raise ValueError(
                f"SQLite is supported through the standard sqlite3 module only (sqlite:///...), got {shown}"
            )
        return _sqlite_engine(parsed)
    if backend in ("postgresql", "postgres"):
        if parsed.drivername not in ("postgresql", "postgres", "postgresql+psycopg"):
            raise ValueError(f"PostgreSQL is supported through psycopg 3 only (postgresql+psycopg://...), got {shown}")
        return create_engine(
            parsed.set(drivername="postgresql+psycopg"),
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            pool_pre_ping=True,
        )
    raise ValueError(f"unsupported database {shown}: use sqlite:///path or postgresql+psycopg://...")


def _sqlite_engine(url: URL) -> Engine:
    in_memory = url.database in (None, "", ":memory:")
    if in_memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(
            url,
            pool_size=POOL_SIZE,
            max_overflow=POOL_OVERFLOW,
            connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
        )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # no implicit BEGIN/COMMIT by pysqlite; see the begin hook
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not in_memory:
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


READ_ONLY = "harbour_read_only"


def readonly(engine: Engine) -> Engine:
    """The same engine and pool, but transactions that only read.

    On SQLite these begin with a deferred ``BEGIN``: under WAL a reader sees a
    consistent snapshot and neither waits for nor blocks the writer, so status
    queries and authentication do not queue behind the write lock. A session on
    this engine must not write (it would fail with "database is locked" whenever a
    writer is active). On PostgreSQL nothing changes.
    """
    return engine.execution_options(**{READ_ONLY: True})


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (the service returns them as JSON after committing)."""
    return sessionmaker(engine, expire_on_commit=False)


def lock_for_update(stmt: _S) -> _S:
    """``SELECT ... FOR UPDATE``: lock the selected rows until the transaction ends.

    Use it for every read whose result decides a write to the same rows (a nonce to
    assign, a counter to bump, a state to advance). On PostgreSQL (READ COMMITTED)
    it is what stops two transactions from acting on the same old value; on SQLite
    the clause is not rendered, and :func:`make_engine`'s ``BEGIN IMMEDIATE``
    already runs writers one at a time, so the same code is correct on both.
    """
    return stmt.with_for_update()


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration built in code: the package's migrations, no alembic.ini.

    ``connection`` is handed to env.py, which then migrates through it instead of
    opening its own engine (that is how an in-memory database or a caller's engine is
    migrated).
    """
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def upgrade(target: str | Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (the newest by default); a no-op when already there."""
    from alembic import command

    _migrate(target, lambda config: command.upgrade(config, revision))


def downgrade(target: str | Engine, revision: str) -> None:
    """Migrate the database back to ``revision`` (``"base"``: drop every table)."""
    from alembic import command

    _migrate(target, lambda config: command.downgrade(config, revision))


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for a database never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str:
    """The newest revision this code knows: what :func:`upgrade` brings a database to."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _migrate(target: str | Engine, run: Callable[[Config], None]) -> None:
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.connect() as connection:
            sqlite = connection.dialect.name == "sqlite"
            if sqlite:
                # A batch migration (SQLite's ALTER TABLE: copy, drop, rename) must not
                # cascade or trip foreign keys half way, and the pragma is ignored inside
                # a transaction, so it is switched off before one begins; env.py checks
                # the whole database before committing.
                _sqlite_pragma(connection, "PRAGMA foreign_keys = OFF")
            try:
                run(alembic_config(connection))
            finally:
                if sqlite:
                    connection.rollback()
                    _sqlite_pragma(connection, "PRAGMA foreign_keys = ON")
    finally:
        if isinstance(target, str):
            engine.dispose()


def _sqlite_pragma(connection: Connection, pragma: str) -> None:
    """Run a pragma outside any transaction (on the DBAPI connection, so no BEGIN is emitted first)."""
    cursor = connection.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(pragma)
    finally:
        cursor.close()
