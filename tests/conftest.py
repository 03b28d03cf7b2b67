"""Fixtures shared by every test module.

``softhsm`` (a private SoftHSM2 token per test, see tests/softhsm.py) lives here so
any test can ask for it by name, including those that start node subprocesses.

Databases: ``postgres_server`` is one real PostgreSQL server for the whole run
(tests/postgres.py), ``postgres_url`` an empty database on it, and ``db_url`` a
fresh database migrated to head for each test, once on SQLite and once on
PostgreSQL. Missing PostgreSQL is a failure, not a skip: ``make test`` installs it.
"""

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from harbour.custody.db import upgrade
from postgres import PostgresServer, PostgresUnavailable
from softhsm import softhsm  # noqa: F401 (registered with pytest by being in this module)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the test run, stopped (and its data removed) at the end."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    """An empty database (no tables) on the test server, shared by the run."""
    return postgres_server.create_database("harbour")


@pytest.fixture(scope="session")
def _migrated_postgres_template(postgres_server: PostgresServer) -> str:
    """A database migrated to head once; each test gets a copy (CREATE DATABASE ... TEMPLATE)."""
    upgrade(postgres_server.create_database("harbour_template"))
    return "harbour_template"


_database_numbers = itertools.count()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database at the newest migration, for each test and each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'custody.db'}"
        upgrade(url)
        yield url
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    template: str = request.getfixturevalue("_migrated_postgres_template")
    name = f"test_{next(_database_numbers)}"
    url = server.create_database(name, template=template)
    try:
        yield url
    finally:
        server.drop_database(name)


@pytest.fixture(scope="session")
def anvil() -> Iterator[str]:
    """JSON-RPC URL of a real anvil node (chain 31337), installed from npm and started once per session.

    Missing npm or a failed install fails the tests that use it; it never skips them.
    """
    from anvil import Anvil, AnvilUnavailable, ensure_anvil

    try:
        node = Anvil(ensure_anvil())
        url = node.__enter__()
    except AnvilUnavailable as exc:
        problem = str(exc)
    else:
        try:
            yield url
        finally:
            node.__exit__(None, None, None)
        return
    pytest.fail(f"anvil is needed for these tests: {problem}", pytrace=False)
