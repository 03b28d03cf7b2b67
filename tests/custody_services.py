"""``harbour custody serve`` as operators run it: several processes of one home, started, killed and restarted.

:class:`Service` is one process (the CLI, ``python -m harbour.cli.main custody serve
--home HOME --listen 127.0.0.1:PORT --log-format json --metrics-listen 127.0.0.1:PORT2``)
with its output in a log file beside the home (JSON lines, :meth:`Service.lines`);
:class:`Services` is a set of them on one database, with the faults the tests and
``bench/custody_processes.py`` put them through: ``kill -9`` of one (:meth:`Services.crash`)
and a rolling deploy (:meth:`Services.roll`).
:func:`submit` is a client that submits one withdrawal over HTTP to whichever
process answers, retrying with the same ``Idempotency-Key`` on a refused
connection or a dead process, as a client behind a load balancer would.
:func:`check` waits for a run's withdrawals and checks what they left: in the
database, on the chain and in the signer nodes' signing logs.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
from sqlalchemy import func, select

from custody_env import HOME_PASSPHRASE
from harbour.chains.evm import EvmClient
from harbour.custody import db, states
from harbour.custody import models as m
from harbour.custody.audit import AuditEvent
from harbour.custody.homekeys import PASSPHRASE_ENV
from harbour.node import signlog
from harbour.node.localnet import free_port

START_TIMEOUT = 180.0
"""Seconds a start may take: on a busy machine the imports alone take many."""


def distinct_ports(count: int) -> list[int]:
    """``count`` free loopback ports, no two alike (the OS may hand the same free port out twice in a row)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@dataclass
class Service:
    """One ``harbour custody serve`` process (restartable: each start is a new process on the same port)."""

    home: Path
    port: int
    name: str
    process: subprocess.Popen[bytes] | None = None
    pids: list[int] = field(default_factory=list)
    """Every process this service has been, in order."""
    metrics_port: int = field(default_factory=free_port)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        return self.home.parent / f"{self.name}.log"

    def start(self, wait: bool = True) -> None:
        if self._log is not None:
            self._log.close()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "harbour.cli.main",
                "custody",
                "serve",
                "--home",
                str(self.home),
                "--listen",
                f"127.0.0.1:{self.port}",
                "--log-format",
                "json",
                "--metrics-listen",
                f"127.0.0.1:{self.metrics_port}",
            ],
            # the home's key passphrase, as an operator's service manager would give it
            env={**os.environ, "PYTHONUNBUFFERED": "1", PASSPHRASE_ENV: HOME_PASSPHRASE},
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.pids.append(self.process.pid)
        if wait:
            self.wait_ready()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def answers(self) -> bool:
        """Whether it is up and serving (a start takes seconds: imports, the database, the nodes)."""
        if not self.alive():
            return False
        try:
            return httpx.get(self.url + "/v1/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}: {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/v1/health", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not answer within {timeout:.0f} s: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, like a crash or a pulled plug."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM, as a deploy stops a process: it finishes what it signs, then exits (SIGKILL after ``timeout``)."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-3000:]
        return ""

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def lines(self) -> tuple[list[dict[str, Any]], list[str]]:
        """Its log records (the JSON lines, parsed), and the other lines (stdout's: where it serves)."""
        records, others = [], []
        for line in self.output().splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
            elif line.strip():
                others.append(line)
        return records, others


class Services:
    """``count`` service processes of one home; a lock keeps faults and clients' choice of process consistent."""

    def __init__(self, home: Path, count: int) -> None:
        ports = distinct_ports(2 * count)
        self.services = [
            Service(home, ports[2 * i], f"serve{i + 1}", metrics_port=ports[2 * i + 1]) for i in range(count)
        ]
        self.lock = threading.Lock()
        self.crashes: list[tuple[float, int]] = []
        """(time, pid) of every kill -9."""
        self.retired: list[Service] = []
        """Processes a rolling deploy replaced."""

    def start(self) -> None:
        for service in self.services:
            service.start(wait=False)
        for service in self.services:
            service.wait_ready()

    def stop(self) -> None:
        for service in self.services:
            service.stop()

    def live(self) -> list[Service]:
        with self.lock:
            return [s for s in self.services if s.alive()]

    def crash(self, rng: random.Random) -> int | None:
        """kill -9 one running process at random and start it again (not waiting for it); its pid.

        The victim may be serving or still starting, but another one must be serving:
        None (nothing killed) when no other would be.
        """
        with self.lock:
            running = list(self.services)
        serving = [s for s in running if s.answers()]  # not under the lock: clients go on choosing meanwhile
        with self.lock:
            victims = [s for s in running if s.alive() and s in self.services and any(o is not s for o in serving)]
            if not victims:
                return None
            victim = rng.choice(victims)
            assert victim.process is not None
            pid = victim.process.pid
            victim.kill()
            self.crashes.append((time.time(), pid))
            victim.start(wait=False)
        return pid

    def wait_ready(self) -> None:
        for service in self.services:
            service.wait_ready()

    def roll(self) -> None:
        """A rolling deploy: a new process for each old one; as each new one serves, an old one stops (SIGTERM).

        The new processes start together (a start takes seconds), but the old ones
        stop one at a time, each only once its replacement serves.
        """
        with self.lock:
            old = list(self.services)
            taken = {p for s in old for p in (s.port, s.metrics_port)}
            ports = [p for p in distinct_ports(2 * len(old) + len(taken)) if p not in taken][: 2 * len(old)]
            new = [
                Service(s.home, ports[2 * i], f"{s.name}-next", metrics_port=ports[2 * i + 1])
                for i, s in enumerate(old)
            ]
            for service in new:
                service.start(wait=False)
            self.services = old + new
        for before, after in zip(old, new, strict=True):
            after.wait_ready()
            before.stop()
            with self.lock:
                self.services.remove(before)
                self.retired.append(before)

    def outputs(self) -> str:
        return "\n".join(s.output() for s in self.retired + self.services)


def submit(
    services: Services, token: str, body: dict[str, Any], key: str, deadline: float
) -> tuple[dict[str, Any], int]:
    """Submit one withdrawal to a live process; on a dropped connection or a 5xx, again (same key) to another.

    Returns the created transaction and how many 5xx answers were met on the way.
    """
    errors = 0
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
    while time.monotonic() < deadline:
        live = services.live()
        if not live:
            time.sleep(0.05)
            continue
        target = random.choice(live)
        try:
            answer = httpx.post(target.url + "/v1/transactions", json=body, headers=headers, timeout=20.0)
        except httpx.HTTPError:
            time.sleep(0.05)
            continue
        if answer.status_code >= 500:
            errors += 1
            time.sleep(0.05)
            continue
        assert answer.status_code in (200, 201), answer.text
        return answer.json(), errors
    raise TimeoutError(f"withdrawal {key} was never accepted")


# -- what a run left behind ----------------------------------------------------------------------------------------

TAKEOVER = re.compile(r"withdrawal (\S+): taking over signing from (\S+), whose lease expired")
FAILED_ATTEMPT = re.compile(r"withdrawal (\S+): signing attempt \d+ failed")


@dataclass
class Outcome:
    """What became of a run's withdrawals, and each check of it (the test asserts them; the benchmark prints them)."""

    rows: dict[str, m.Transaction]
    checks: dict[str, bool]
    problems: dict[str, Any]
    takeovers: dict[str, str]
    double_signed: list[str]
    """Signed by the nodes in more than one session: after a takeover, or a failed attempt retried."""
    retried: set[str]
    """Withdrawals a signing attempt of failed (the coordinator gave up: the nodes may still have signed)."""


def wait_final(database: str, ids: set[str], timeout: float) -> dict[str, m.Transaction]:
    """The withdrawals ``ids`` once each is confirmed or failed; AssertionError with their states after ``timeout``."""
    engine = db.make_engine(database)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with db.session_factory(engine)() as s:
                rows = {t.id: t for t in s.scalars(select(m.Transaction).where(m.Transaction.id.in_(ids)))}
            if len(rows) == len(ids) and all(t.state in (states.CONFIRMED, states.FAILED) for t in rows.values()):
                return rows
            if time.monotonic() > deadline:
                stuck = Counter(t.state for t in rows.values())
                raise AssertionError(f"withdrawals not final after {timeout:.0f} s: {dict(stuck)}")
            time.sleep(0.5)
    finally:
        engine.dispose()


def signing_sessions(node_dirs: list[Path]) -> dict[tuple[str, str], set[str]]:
    """(key id, digest hex) -> the signing sessions in which some node produced its share of a signature.

    By key as well as digest: an unsigned transaction does not name its sender, so
    two vaults' withdrawals with the same nonce, recipient, amount and fees have
    one digest.
    """
    sessions: dict[tuple[str, str], set[str]] = {}
    for directory in node_dirs:
        for entry in signlog.entries(directory / "sign.log"):
            if entry.kind == "sign" and entry.outcome == "signed":
                for digest in entry.digests:
                    sessions.setdefault((entry.key_id, digest), set()).add(entry.session_id)
    return sessions


def check(
    database: str,
    chain_url: str,
    sources: dict[str, str],
    ids: dict[str, str],
    services: Services,
    node_dirs: list[Path],
    timeout: float,
) -> Outcome:
    """Wait for ``ids`` (idempotency key -> transaction id) to be final, then check the run.

    ``sources``: vault id -> its source address. Checks: one transaction per key and
    no other withdrawal; all confirmed; per address, nonces 0..n-1 and n mined; the
    confirmed hash mined; one ``transaction.signed`` and one ``transaction.broadcast``
    event each; a digest signed by the nodes in more than one session only where a
    process took over the lease of a process that was killed, or where an attempt
    failed at the coordinator and was retried (as one process alone does too: the
    nodes may have finished a session the coordinator gave up on).
    """
    rows = wait_final(database, set(ids.values()), timeout)
    problems: dict[str, Any] = {}
    checks: dict[str, bool] = {}
    engine = db.make_engine(database)
    try:
        with db.session_factory(engine)() as s:
            total = s.scalar(select(func.count()).select_from(m.Transaction).where(m.Transaction.kind == "withdrawal"))
            signed = Counter(s.scalars(select(AuditEvent.subject).where(AuditEvent.kind == "transaction.signed")))
            sent = Counter(s.scalars(select(AuditEvent.subject).where(AuditEvent.kind == "transaction.broadcast")))
            key_of = {v.id: v.key_id for v in s.scalars(select(m.Vault))}
    finally:
        engine.dispose()
    checks["one_transaction_per_key"] = len(set(ids.values())) == len(ids) == total
    failed = {t.id: t.error for t in rows.values() if t.state != states.CONFIRMED}
    checks["all_confirmed"] = not failed
    if failed:
        problems["failed"] = failed
    chain = EvmClient.connect(chain_url, dev=True)
    try:
        gaps = {}
        for vault_id, address in sources.items():
            mine = [t for t in rows.values() if t.vault_id == vault_id]
            nonces = sorted(t.nonce for t in mine if t.nonce is not None)
            mined = chain.nonce(address, "latest")
            if nonces != list(range(len(mine))) or mined != len(mine):
                gaps[address] = {"nonces": nonces, "mined": mined}
        checks["nonces_contiguous_and_all_mined"] = not gaps
        if gaps:
            problems["nonces"] = gaps
        unmined = []
        for t in rows.values():
            receipt = chain.receipt(bytes.fromhex(t.tx_hash[2:])) if t.tx_hash else None
            if receipt is None or receipt.status != 1:
                unmined.append(t.id)
        checks["committed_hash_mined"] = not unmined
        if unmined:
            problems["unmined"] = unmined
    finally:
        chain.close()
    twice = [t.id for t in rows.values() if signed[t.id] != 1 or sent[t.id] != 1]
    checks["signed_and_sent_once"] = not twice
    if twice:
        problems["signed_or_sent_not_once"] = {i: (signed[i], sent[i]) for i in twice}

    killed = {pid for _, pid in services.crashes}
    logs = services.outputs()
    takeovers = dict(TAKEOVER.findall(logs))
    retried = set(FAILED_ATTEMPT.findall(logs))
    found = signing_sessions(node_dirs)
    sessions = {t.id: found.get((key_of.get(t.vault_id or "", ""), t.digest or ""), set()) for t in rows.values()}
    double = [i for i, signed_in in sessions.items() if len(signed_in) > 1]
    unsigned = [i for i, signed_in in sessions.items() if not signed_in]
    unexplained = [i for i in double if i not in takeovers and i not in retried]
    live_lost = [i for i, holder in takeovers.items() if int(holder.split(":")[1]) not in killed]
    checks["nodes_signed_each_once_but_after_a_kill"] = not unsigned and not unexplained and not live_lost
    if unsigned or unexplained or live_lost:
        problems["signing"] = {"no_session": unsigned, "twice_without_takeover": unexplained, "live_lost": live_lost}
    return Outcome(rows, checks, problems, takeovers, double, retried)
