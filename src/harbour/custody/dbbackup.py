"""Copying a live SQLite custody database, and bringing a database's schema to this code's head.

A SQLite file cannot be copied with ``cp`` while the service runs: the write-ahead
log beside it holds commits the main file does not have yet, and a copy taken
between the two is a database that never existed. SQLite's online backup API
copies a consistent snapshot page by page while the service keeps writing
(under WAL a reader neither waits for nor blocks the writer), so
:func:`backup_sqlite` is what ``harbour custody backup`` runs. The copy is
checked (``PRAGMA integrity_check``) before it is reported, and it is written
owner-readable only: it holds credential hashes and the whole business record.

PostgreSQL has its own tools for this (``pg_dump``/``pg_restore``,
docs/operations.md), which also copy a consistent snapshot of a live database.

:func:`migrate` is ``harbour custody migrate``: the schema applied with a role
that may change it, so that the service itself can run under one that may only
read and write rows.
"""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from harbour.custody import db
from harbour.custody.errors import Invalid, Unavailable


@dataclass(frozen=True)
class Backup:
    path: Path
    size: int
    revision: str | None
    """The schema revision the copy is at (what a restored service migrates from)."""


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///`` URL; Invalid for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        raise Invalid(f"{db.redacted(url)} is not a SQLite file: back up PostgreSQL with pg_dump (docs/operations.md)")
    return Path(parsed.database)


def backup_sqlite(url: str, out: Path) -> Backup:
    """Copy the SQLite database of ``url`` to the new file ``out`` with the online backup API, and check the copy.

    Invalid for what the caller can fix (not a SQLite file, ``out`` exists); Unavailable when the
    copy fails its check (nothing is left at ``out`` then).
    """
    source = sqlite_path(url)
    if not source.is_file():
        raise Invalid(f"no database at {source}")
    out = Path(out)
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise Invalid(f"{out} exists: a backup never overwrites a file") from None
    except OSError as exc:
        raise Invalid(f"cannot create {out}: {exc.strerror}") from None
    os.close(fd)
    try:
        # Only read through (a read-only open of a WAL database fails when the service is not running).
        with (
            closing(sqlite3.connect(source, timeout=db.SQLITE_BUSY_TIMEOUT_S)) as src,
            closing(sqlite3.connect(out)) as dst,
        ):
            src.backup(dst)
            check = dst.execute("PRAGMA integrity_check").fetchone()
            if check is None or check[0] != "ok":
                raise Unavailable(f"the copy in {out} does not pass SQLite's integrity check: {check}")
            dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal beside it
            revision = _revision(dst)
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return Backup(out, out.stat().st_size, revision)


def _revision(connection: sqlite3.Connection) -> str | None:
    try:
        row = connection.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])


def migrate(url: str) -> tuple[str | None, str]:
    """Bring the database of ``url`` to this code's head revision: (the revision it was at, the head)."""
    if db.carries_password(url):
        raise Invalid(
            "the database URL carries a password: give it to libpq instead (~/.pgpass or $PGPASSWORD), "
            "never on a command line"
        )
    engine = db.make_engine(url)
    try:
        before = db.current_revision(engine)
        db.upgrade(engine)
        return before, db.head_revision()
    finally:
        engine.dispose()
