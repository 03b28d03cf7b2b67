"""Alembic environment: migrate through the connection harbour.custody.db hands over.

:func:`harbour.custody.db.upgrade` passes an open connection in
``config.attributes["connection"]``; without one (the plain ``alembic`` command with
``-x url=...`` or ``sqlalchemy.url`` set) an engine is made from the URL with
:func:`harbour.custody.db.make_engine`, so migrations always see the same
connection settings as the service.

All revisions run in one transaction on both backends. SQLite's DDL is
transactional once pysqlite's own transaction handling is off (make_engine does
that), so a failed migration leaves the database as it was instead of half
migrated. On PostgreSQL an advisory lock makes a second process that migrates at
the same moment wait and then find nothing left to do.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from harbour.custody.db import make_engine
from harbour.custody.migrations import render_item, target_metadata

MIGRATION_LOCK = int.from_bytes(b"harbour", "big")
"""The PostgreSQL advisory lock key that serialises migrations."""


def run(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        render_item=render_item,
        # Every revision must run on SQLite, whose ALTER TABLE is limited: autogenerate
        # writes alterations as batch operations (copy and move on SQLite, plain ALTER
        # elsewhere) whichever database it compares against. The regeneration script
        # turns this off because creating tables needs no batch.
        render_as_batch=context.config.attributes.get("render_as_batch", True),
        transactional_ddl=True,
        compare_type=True,
    )
    with context.begin_transaction():
        if not sqlite:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
        if sqlite:
            violations = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if violations:
                raise RuntimeError(f"the migration leaves rows that violate foreign keys: {violations[:5]}")


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = context.get_x_argument(as_dictionary=True).get("url") or context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database: pass -x url=... or use harbour.custody.db.upgrade(url)")
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            run(connection)
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError(
        "offline (--sql) migrations are not supported: migrate a database with harbour.custody.db.upgrade"
    )
run_online()
