"""A real PostgreSQL server for the tests, private to the test run.

``make system-deps`` installs Debian's ``postgresql``; this module runs its
binaries (``/usr/lib/postgresql/<version>/bin``, or ``initdb`` on PATH elsewhere)
on a throwaway data directory, so neither the package's own cluster nor its
service is involved. The server listens on 127.0.0.1 on a free port, with its unix
socket in the same temporary directory, trusts every local connection, and runs
with fsync, synchronous commit and full-page writes off: the data dies with the
test run, so durability is only time spent.

PostgreSQL refuses to run as root. When the tests run as root (CI, containers),
the data directory is handed to the ``postgres`` system user that the Debian
package creates, and initdb and the server run as that user: the switch is
:class:`subprocess.Popen`'s ``user``/``group`` arguments, done in the child
between fork and exec (no ``runuser`` or ``sudo``, no Python code in the child).

No orphans: the server is stopped by :meth:`PostgresServer.stop` (the fixture's
finaliser, and an ``atexit`` hook for interrupted runs), a server that fails to
come up is killed before the error is raised, and on Linux the kernel sends the
server SIGQUIT (immediate shutdown) if the test process dies without cleaning up.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

INSTALL_HINT = "run `make system-deps` (installs Debian's postgresql package)"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
SERVER_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "shared_buffers": "64MB",
    "log_min_messages": "warning",
    "logging_collector": "off",
    "max_prepared_transactions": "0",
}


class PostgresUnavailable(RuntimeError):
    """The server binaries are missing or the server would not start; the message says what to do."""


def find_bindir() -> Path:
    """The directory holding initdb and postgres: Debian's newest version, else the one on PATH."""
    candidates = sorted(
        (Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda bindir: _version_key(bindir.parent.name),
    )
    if not candidates:
        initdb = shutil.which("initdb")
        if initdb is not None:
            candidates = [Path(initdb).resolve().parent]
    for bindir in reversed(candidates):
        if (bindir / "postgres").exists():
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries (initdb, postgres) not found under /usr/lib/postgresql/*/bin or on PATH; "
        + INSTALL_HINT
    )


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else -1 for part in name.split("."))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PostgresServer:
    """One PostgreSQL server on a temporary data directory: ``start()``, ``url(db)``, ``stop()``."""

    superuser = "postgres"

    def __init__(self) -> None:
        self.bindir = find_bindir()
        self.root: Path | None = None
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._run_as: dict[str, Any] = {}

    # -- lifecycle ------------------------------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Create the cluster and start the server; kill whatever was started if that fails."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _start(self) -> None:
        if os.geteuid() == 0:
            self._run_as = self._system_user()
            # /tmp, not $TMPDIR: the postgres user must be able to reach the directory
            # (a TMPDIR under /root is not), and a unix socket path is limited to 107 bytes.
            self.root = Path(tempfile.mkdtemp(prefix="harbour-pg-", dir="/tmp"))
            os.chown(self.root, self._run_as["user"], self._run_as["group"])
        else:
            self.root = Path(tempfile.mkdtemp(prefix="harbour-pg-"))
        (self.root / "sockets").mkdir()
        if self._run_as:
            os.chown(self.root / "sockets", self._run_as["user"], self._run_as["group"])
        initdb = self._run(
            [
                str(self.bindir / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                self.superuser,
                "--auth",
                "trust",
                "--encoding",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ]
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({initdb.returncode}): {initdb.stdout.decode(errors='replace')}")
        for _attempt in range(5):  # another process may take the free port before the server binds it
            self.port = free_port()
            if self._launch():
                return
        raise PostgresUnavailable(f"PostgreSQL did not start; log:\n{self.log_tail()}")

    def _launch(self) -> bool:
        """Start the server on ``self.port``; True once it accepts connections, False if it exited."""
        assert self.root is not None
        settings = {
            **SERVER_SETTINGS,
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.root / "sockets"),
        }
        command = [str(self.bindir / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        with open(self.root / "postgres.log", "ab") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.root,
                env=self._env(),
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, which then stops us in order
                preexec_fn=_die_with_parent,  # only a prctl call, resolved beforehand
                **self._run_as,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            try:
                with psycopg.connect(self.dsn("postgres"), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.02)
        raise PostgresUnavailable(f"PostgreSQL did not accept connections within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if it lingers; remove the data directory. Idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)  # the postmaster and its backends
                process.wait()
        root, self.root = self.root, None
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server as an outage would (fast shutdown), keeping its data for :meth:`resume`."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    def resume(self) -> None:
        """Start a halted server again, on the same port and data."""
        if self.process is None and not self._launch():
            raise PostgresUnavailable(f"PostgreSQL did not start again; log:\n{self.log_tail()}")

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- use ------------------------------------------------------------------------------------------------------

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def dsn(self, database: str) -> str:
        """A libpq connection string (for psycopg directly)."""
        return f"host=127.0.0.1 port={self.port} user={self.superuser} dbname={database}"

    def url(self, database: str) -> str:
        """An SQLAlchemy URL (for harbour.custody.db.make_engine)."""
        return f"postgresql+psycopg://{self.superuser}@127.0.0.1:{self.port}/{database}"

    def execute(self, sql: str) -> None:
        """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as connection:
            connection.execute(sql.encode())

    def create_database(self, name: str, template: str | None = None) -> str:
        """A new database (a copy of ``template`` when given); returns its SQLAlchemy URL."""
        clause = f" TEMPLATE {_identifier(template)} STRATEGY FILE_COPY" if template else ""
        self.execute(f"CREATE DATABASE {_identifier(name)}{clause}")
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        self.execute(f"DROP DATABASE IF EXISTS {_identifier(name)} WITH (FORCE)")

    def log_tail(self, lines: int = 40) -> str:
        if self.root is None or not (self.root / "postgres.log").exists():
            return "(no log)"
        text = (self.root / "postgres.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    # -- internals ------------------------------------------------------------------------------------------------

    def _system_user(self) -> dict[str, Any]:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "the tests run as root, PostgreSQL refuses root, and there is no `postgres` user to run it as; "
                + INSTALL_HINT
            ) from None
        return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}

    def _run(self, command: list[str]) -> subprocess.CompletedProcess[bytes]:
        assert self.root is not None
        return subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=self.root,
            env=self._env(),
            check=False,
            **self._run_as,
        )


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum() or not name.isascii():
        raise ValueError(f"not a plain database name: {name!r}")
    return f'"{name}"'


_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform == "linux" else None
"""Looked up here, not in the child: a forked child of a threaded process must not dlopen."""


def _die_with_parent() -> None:
    """In the server's child process, after the switch of user: SIGQUIT when the test process dies.

    It runs after the uid change on purpose: changing credentials clears the
    parent-death signal, so setting it earlier would be undone.
    """
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGQUIT, 0, 0, 0)
