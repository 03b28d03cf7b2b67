"""Three ``harbour custody serve`` processes on one PostgreSQL, killed at random and restarted in turn.

The deployment is the tests' usual one (three signer-node processes, 2-of-3 ECDSA
vaults) on anvil and a PostgreSQL database of the test server; the service runs
only as CLI processes of one home, each on its own port (:mod:`custody_services`).
Clients submit withdrawals from two source addresses over HTTP to whichever
process answers, while one process at a time is killed with SIGKILL every few
seconds and started again; then the three are restarted one after another, as a
deploy does, with withdrawals still arriving. Afterwards:

- none lost and none twice: one transaction per idempotency key, every one confirmed;
- no submission was answered with a server error (a deadlock is retried, not a 500);
- each source address's nonces are 0, 1, 2, ... without a gap, and the chain's
  count of its mined transactions is exactly that many;
- each withdrawal was signed into the database once and sent once (one
  ``transaction.signed`` and one ``transaction.broadcast`` audit event), and the
  hash it was confirmed under is the one committed;
- the signer nodes signed each digest in one session, except where a process was
  killed while it signed and another took over its expired lease, which the
  taker says in its log (or where an attempt failed at the coordinator and was
  retried, as a single process does too): the same unsigned transaction signed
  again, of which only the one committed signature was ever sent.

A SQLite home, by contrast, refuses a second ``serve`` with a clear message, and
takes one again once the first was killed (the kernel drops the lock).

The run here is 30 + 12 withdrawals; ``bench/custody_processes.py --chaos`` runs
the same with 200.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from custody_env import ETH, HOME_PASSPHRASE, CustodyEnv
from custody_services import Service, Services, check, submit
from harbour.chains.ethereum import checksum_address
from harbour.custody import claims
from harbour.custody import config as cfg
from harbour.custody.errors import Invalid
from harbour.node.localnet import free_port
from postgres import PostgresServer

ALLOW_ALL = {"rules": [{"name": "allow-all", "action": "allow"}]}
LEASE = 4
"""Seconds: a killed process's withdrawals are taken over this long after its last renewal."""
CHAOS = 30
ROLLING = 12
CLIENTS = 6


@dataclass
class Cluster:
    env: CustodyEnv
    services: Services
    database: str
    chain_url: str
    vaults: list[tuple[str, str]]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer, anvil: str) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("multiproc")
    database = postgres_server.create_database("multiproc")
    with CustodyEnv(root, chain_url=anvil, database=database) as env:
        env.organisation()
        env.set_policy(ALLOW_ALL)
        vaults = [env.vault(name=f"hot-{i}", fund=10 * ETH) for i in range(2)]
        env.config.lease = LEASE
        env.config.save()
        env.close()  # from here on the service is the CLI processes only
        services = Services(env.home, 3)
        try:
            services.start()
            yield Cluster(env, services, database, anvil, vaults)
        finally:
            services.stop()
    postgres_server.drop_database("multiproc")


def _submit_batch(
    cluster: Cluster, keys: list[str], spread: float, ids: dict[str, str], errors: list[int], deadline: float
) -> None:
    """Submit ``keys`` from CLIENTS threads over about ``spread`` seconds; fills ids (key -> transaction id)."""
    token = cluster.env.people["initiator"].token
    lock = threading.Lock()
    pause = spread * CLIENTS / max(len(keys), 1)

    def client(mine: list[str]) -> None:
        for key in mine:
            i = int(key.rsplit("-", 1)[1])
            vault_id, _ = cluster.vaults[i % len(cluster.vaults)]
            to = checksum_address((0x5000 + i).to_bytes(20, "big"))
            body = {"vault_id": vault_id, "asset": "ETH", "to": to, "amount": str(1000 + i)}
            view, failed = submit(cluster.services, token, body, key, deadline)
            with lock:
                ids[key] = view["id"]
                errors.append(failed)
            time.sleep(pause)

    threads = [threading.Thread(target=client, args=(keys[c::CLIENTS],)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_three_processes_killed_and_restarted_lose_nothing_and_sign_and_send_each_withdrawal_once(
    cluster: Cluster,
) -> None:
    services, rng = cluster.services, random.Random(20261207)
    ids: dict[str, str] = {}
    errors: list[int] = []
    deadline = time.monotonic() + 150

    stop = threading.Event()

    def chaos() -> None:  # every few seconds while withdrawals arrive, and at least three times
        while not (stop.is_set() and len(services.crashes) >= 3) and time.monotonic() < deadline:
            time.sleep(rng.uniform(1.5, 3.0))
            services.crash(rng)

    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    try:
        _submit_batch(cluster, [f"chaos-{i}" for i in range(CHAOS)], 10.0, ids, errors, deadline)
    finally:
        stop.set()
        chaos_thread.join()
    assert len(services.crashes) >= 3

    # a rolling deploy with withdrawals arriving: each old process stops (SIGTERM) once a new one serves
    rolling = threading.Thread(
        target=_submit_batch,
        args=(cluster, [f"roll-{i}" for i in range(CHAOS, CHAOS + ROLLING)], 10.0, ids, errors, deadline),
    )
    rolling.start()
    services.roll()
    rolling.join()

    assert len(ids) == CHAOS + ROLLING
    outcome = check(
        cluster.database,
        cluster.chain_url,
        dict(cluster.vaults),
        ids,
        services,
        [n.directory for n in cluster.env.nodes],
        timeout=max(deadline - time.monotonic(), 30),
    )
    assert outcome.checks == dict.fromkeys(outcome.checks, True), outcome.problems
    assert len(outcome.checks) == 6
    assert sum(errors) == 0, f"{sum(errors)} submissions were answered with a server error"
    assert set(outcome.double_signed) <= set(outcome.takeovers) | outcome.retried


# -- SQLite: one process -------------------------------------------------------------------------------------------


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harbour.cli.main",
            "custody",
            "serve",
            "--home",
            str(home),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_second_service_on_one_sqlite_file_refuses_to_start_and_a_killed_ones_lock_is_gone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = cfg.init_home(home, passphrase=HOME_PASSPHRASE)
    first = Service(home, free_port(), "first")
    first.start()
    try:
        second = _serve(home, free_port())
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1, (out, err)
        message = err.decode()
        assert message.startswith("error: another custody service is running on the SQLite database"), message
        assert "use PostgreSQL to run several" in message
        assert str(home / "custody.db") in message
        assert first.answers(), "the first one serves on"
        with pytest.raises(Invalid, match="another custody service"):
            claims.single_process(config.database)
    finally:
        first.kill()
    lock = claims.single_process(config.database)  # kill -9 left no lock behind: the kernel dropped it
    assert lock is not None
    lock.close()
