"""Fixtures, markers and Hypothesis profiles shared by every test module.

``softhsm`` (a private SoftHSM2 token per test, see tests/softhsm.py) lives here so
any test can ask for it by name, including those that start node subprocesses.

Databases: ``postgres_server`` is one real PostgreSQL server for the whole run
(tests/postgres.py) and ``postgres_url`` an empty database on it. ``sqlite_url`` is
a fresh SQLite file at the newest migration for each test: a copy of a template
migrated once per run, since running Alembic takes far longer than copying a file;
``postgres_db_url`` the same on PostgreSQL (CREATE DATABASE ... TEMPLATE).
``db_url`` is the same fresh database once on SQLite and once on PostgreSQL, for the
tests where the backend's behaviour is what is tested (migrations, types, locking,
concurrent writers, the audit log's stored rows). Missing PostgreSQL is a failure,
not a skip: ``make test`` installs it.

Markers (registered in pyproject.toml, which also turns on ``--strict-markers``):

- ``postgres``: the test uses the PostgreSQL server (given here to every test that
  asks for one of :data:`POSTGRES_FIXTURES`, or has a parameter ``"postgresql"``,
  as the PostgreSQL half of ``db_url`` has);
- ``process``: the test starts OS processes (signer nodes, the CLI as a
  subprocess, PostgreSQL, anvil, softhsm2-util). Given here by module
  (:data:`PROCESS_MODULES`), by fixture (:data:`PROCESS_FIXTURES`) and by
  parameter (:data:`PROCESS_PARAMS`), and checked:
  a test without the marker that starts a process fails and says so, so that
  ``make test-fast`` (``-m "not slow and not process and not postgres"``) never
  quietly depends on one;
- ``slow``: in-process, but seconds per test (:data:`SLOW_MODULES`).

Passphrases: ``HARBOUR_ALLOW_WEAK_PASSPHRASE=1`` (the strength floor's override, see
:mod:`harbour.util.passphrase`) and ``HARBOUR_CUSTODY_PASSPHRASE`` (the test homes') are
set in the environment of the whole run; tests of the floor unset the first.

Hypothesis: the ``ci`` profile (more examples, derandomized, no deadline) when
``CI=true`` (``.ci/run`` exports it), ``dev`` (fewer examples) otherwise;
``HYPOTHESIS_PROFILE`` names one explicitly. Tests that set ``max_examples`` in
their own ``@settings`` keep their number; the profile gives them the rest.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from custody_env import HOME_PASSPHRASE
from harbour.custody.db import make_engine, session_factory, upgrade
from harbour.custody.homekeys import PASSPHRASE_ENV as HOME_PASSPHRASE_ENV
from harbour.util.passphrase import OVERRIDE_ENV as WEAK_PASSPHRASE_ENV
from postgres import PostgresServer, PostgresUnavailable
from softhsm import softhsm  # noqa: F401 (registered with pytest by being in this module)

# -- Hypothesis ------------------------------------------------------------------------------------------------------

settings.register_profile("ci", max_examples=200, derandomize=True, deadline=None, print_blob=True)
settings.register_profile(
    "dev", max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile(
    os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI", "").lower() == "true" else "dev")
)

# -- passphrases -----------------------------------------------------------------------------------------------------

# Many tests make throw-away key files under short passphrases: the strength floor's override lets them, in this
# process and the CLI processes it starts. Tests of the floor itself, and the README walk-throughs, unset it.
os.environ[WEAK_PASSPHRASE_ENV] = "1"
# The passphrase of the custody homes tests make (tests/custody_env.py), for the service processes they start.
os.environ.setdefault(HOME_PASSPHRASE_ENV, HOME_PASSPHRASE)

# -- markers ---------------------------------------------------------------------------------------------------------

PROCESS_MODULES = frozenset(
    {
        "test_api",
        "test_walkthrough",
        "test_api_availability",
        "test_api_credentials",
        "test_api_auth_defences",
        "test_node_org_keys",
        "test_node_safe",
        "test_api_schema",
        "test_api_exact",
        "test_cli",
        "test_cli_custody",
        "test_cli_custody_ops",
        "test_cli_startup",
        "test_cluster",
        "test_cluster_faults",
        "test_custody",
        "test_custody_nodes",
        "test_custody_reshare",
        "test_custody_spend",
        "test_entities_custody",
        "test_governance_custody",
        "test_governance_signing",
        "test_multiprocess",
        "test_node_entry",
        "test_node_governance",
        "test_operations_doc",
        "test_readme_nodes",
        "test_search_exports",
        "test_stuck",
    }
)
"""Modules whose tests (or module fixtures) start signer nodes or run the CLI as a subprocess."""

PROCESS_FIXTURES = frozenset({"postgres_server", "postgres_url", "postgres_db_url", "anvil", "softhsm"})
POSTGRES_FIXTURES = frozenset({"postgres_server", "postgres_url", "postgres_db_url", "_migrated_postgres_template"})
PROCESS_PARAMS = frozenset({"postgresql", "anvil", "pkcs11"})
"""Parameter values that name a fixture asked for at run time (``request.getfixturevalue``):
``"postgresql"`` the PostgreSQL server, ``"anvil"`` anvil, ``"pkcs11"`` a SoftHSM2 token."""

SLOW_MODULES = frozenset(
    {
        "test_backup",
        "test_cli_ecdsa",
        "test_cli_key",
        "test_compromise",
        "test_ecdsa_attacks",
        "test_ecdsa_malicious",
        "test_ecdsa_setup",
        "test_ecdsa_threshold",
        "test_forward_secrecy",
        "test_governance_agreement",
        "test_hedge",
        "test_node_service",
        "test_properties",
        "test_rotation",
        "test_webhooks",
        "test_webhook_hostile",
        "test_events",
        "test_tokeninfo",
        "test_home_keys",
    }
)
"""In-process, but their tests run whole protocols or nodes (key files under scrypt, threshold-ECDSA
setups and signings, node services in one process, property runs of them): together about three
quarters of the in-process tests' time, measured when the list was made."""


def _params(item: pytest.Item) -> set[Any]:
    callspec = getattr(item, "callspec", None)
    return {value for value in callspec.params.values() if isinstance(value, str)} if callspec else set()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else ""
        names = set(getattr(item, "fixturenames", ()))
        params = _params(item)
        postgres = bool(names & POSTGRES_FIXTURES) or "postgresql" in params
        if postgres:
            item.add_marker(pytest.mark.postgres)
        if postgres or module in PROCESS_MODULES or names & PROCESS_FIXTURES or params & PROCESS_PARAMS:
            item.add_marker(pytest.mark.process)
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


class UnmarkedProcess(AssertionError):
    """A test that is not marked ``process`` started an OS process."""


_process_allowed = True
_real_execute_child: Any = subprocess.Popen._execute_child  # type: ignore[attr-defined]


def _guarded_execute_child(self: subprocess.Popen[Any], args: Any, *rest: Any, **kwargs: Any) -> Any:
    if not _process_allowed:
        raise UnmarkedProcess(
            f"this test starts an OS process ({args!r}) but is not marked `process`: add its module to "
            "PROCESS_MODULES (or its fixture to PROCESS_FIXTURES) in tests/conftest.py"
        )
    return _real_execute_child(self, args, *rest, **kwargs)


subprocess.Popen._execute_child = _guarded_execute_child  # type: ignore[attr-defined]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """Refuse OS processes during a test (its fixtures included) that is not marked ``process``."""
    global _process_allowed
    _process_allowed = item.get_closest_marker("process") is not None
    try:
        yield
    finally:
        _process_allowed = True


# -- databases -------------------------------------------------------------------------------------------------------


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


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated to head once, its write-ahead log folded in: each test gets a copy."""
    path = tmp_path_factory.mktemp("sqlite-template") / "custody.db"
    upgrade(f"sqlite:///{path}")
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return path


_database_numbers = itertools.count()


@pytest.fixture
def sqlite_url(_migrated_sqlite_template: Path, tmp_path: Path) -> str:
    """A fresh SQLite database at the newest migration (a copy of the run's template)."""
    path = tmp_path / "custody.db"
    shutil.copyfile(_migrated_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def postgres_db_url(postgres_server: PostgresServer, _migrated_postgres_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database at the newest migration (a copy of the run's template), dropped afterwards."""
    name = f"test_{next(_database_numbers)}"
    url = postgres_server.create_database(name, template=_migrated_postgres_template)
    try:
        yield url
    finally:
        postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh database at the newest migration, for each test and each backend."""
    return str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_db_url"))


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on :func:`db_url`, disposed after the test."""
    made = make_engine(db_url)
    yield made
    made.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


# -- chains ----------------------------------------------------------------------------------------------------------


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
