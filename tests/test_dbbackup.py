"""``harbour custody backup`` and ``migrate`` underneath: a live SQLite copy, and the refusals.

The copy is taken while another connection keeps committing, and must be a
database that existed (every row of a transaction or none), checked, and
readable by its owner only; a backup never overwrites, a PostgreSQL URL is sent to
pg_dump, and a migration URL that carries a password is refused (it would sit on a
command line).
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest

from harbour.custody.db import head_revision
from harbour.custody.dbbackup import backup_sqlite, migrate
from harbour.custody.errors import Invalid, Unavailable


def _path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def test_a_backup_taken_while_another_connection_commits_is_a_whole_consistent_database(
    sqlite_url: str, tmp_path: Path
) -> None:
    source = _path(sqlite_url)
    stop = threading.Event()

    def write() -> None:
        with closing(sqlite3.connect(source, timeout=30, isolation_level=None)) as connection:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("CREATE TABLE pairs (n INTEGER, half INTEGER)")
            n = 0
            while not stop.is_set():
                # Two rows per transaction: a torn copy would hold an odd number.
                connection.execute("BEGIN IMMEDIATE")
                connection.execute("INSERT INTO pairs VALUES (?, 0), (?, 1)", (n, n))
                connection.execute("COMMIT")
                n += 1

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while True:
            with closing(sqlite3.connect(source, timeout=30)) as reader:
                try:
                    if reader.execute("SELECT count(*) FROM pairs").fetchone()[0] >= 200:
                        break
                except sqlite3.OperationalError:
                    pass  # the table is not there yet
        done = backup_sqlite(sqlite_url, tmp_path / "copy.db")
    finally:
        stop.set()
        writer.join()

    assert done.revision == head_revision()
    assert (tmp_path / "copy.db").stat().st_mode & 0o777 == 0o600
    assert not (tmp_path / "copy.db-wal").exists()
    with closing(sqlite3.connect(tmp_path / "copy.db")) as copy:
        rows = copy.execute("SELECT count(*), count(DISTINCT n) FROM pairs").fetchone()
    assert rows[0] >= 200 and rows[0] == 2 * rows[1]


def test_a_backup_never_overwrites_a_file(sqlite_url: str, tmp_path: Path) -> None:
    out = tmp_path / "there.db"
    out.write_bytes(b"an earlier backup")
    with pytest.raises(Invalid, match="never overwrites"):
        backup_sqlite(sqlite_url, out)
    assert out.read_bytes() == b"an earlier backup"


def test_a_missing_database_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="no database"):
        backup_sqlite(f"sqlite:///{tmp_path / 'absent.db'}", tmp_path / "copy.db")
    assert not (tmp_path / "absent.db").exists() and not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize("url", ["postgresql+psycopg://app@db/custody", "sqlite://", "sqlite:///:memory:"])
def test_only_a_sqlite_file_is_backed_up_here(url: str, tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="pg_dump"):
        backup_sqlite(url, tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize(
    "url",
    ["postgresql+psycopg://owner:secret@db/custody", "postgresql+psycopg://owner@db/custody?password=secret"],
)
def test_a_migration_url_with_a_password_is_refused(url: str) -> None:
    with pytest.raises(Invalid, match="pgpass"):
        migrate(url)


def test_migrate_brings_an_empty_database_to_head_and_then_finds_nothing_to_do(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    assert migrate(url) == (None, head_revision())
    assert migrate(url) == (head_revision(), head_revision())


def test_a_copy_that_fails_the_integrity_check_is_refused_and_removed(tmp_path: Path) -> None:
    source = tmp_path / "damaged.db"
    with closing(sqlite3.connect(source)) as connection:
        connection.execute("CREATE TABLE rows (n INTEGER PRIMARY KEY, text TEXT)")
        connection.executemany("INSERT INTO rows VALUES (?, ?)", ((n, "x" * 200) for n in range(2000)))
        connection.execute("CREATE INDEX rows_text ON rows (text)")
        connection.commit()
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
    with source.open("r+b") as f:  # a page in the middle of the table's b-tree, overwritten
        f.seek(page_size * 20 + 100)
        f.write(b"\xff" * 64)
    with pytest.raises(Unavailable, match="integrity check"):
        backup_sqlite(f"sqlite:///{source}", tmp_path / "copy.db")
    assert not (tmp_path / "copy.db").exists()
