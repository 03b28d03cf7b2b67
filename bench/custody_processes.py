"""One ``harbour custody serve`` process against three on one PostgreSQL: withdrawals per second and latency, as JSON.

Usage: ``python bench/custody_processes.py [--quick] [--withdrawals N] [--clients C] [--processes 1,3]
[--chaos N]``.

The deployment is the tests' (``tests/custody_env.py``, ``tests/custody_services.py``,
``tests/postgres.py`` and ``tests/anvil.py``, imported through ``sys.path``): three
``harbour node run`` processes, a private PostgreSQL server, a fresh anvil, and
for each run a fresh database with an organisation whose policy allows every
withdrawal and two 2-of-3 ECDSA vaults (two source addresses), funded on anvil.
The service is only ``harbour custody serve`` processes of one home, each on its
own port, started as an operator starts them.

For each process count (1, then 3): a few warm-up withdrawals (untimed), then
``N`` withdrawals (200) of 1000 wei to distinct addresses, alternating between
the two vaults, submitted over HTTP by ``C`` client threads (16) to the
processes in turn (closed loop: each client submits its next as soon as the last
was accepted). ``withdrawals_per_s`` is the confirmed withdrawals over the wall
time from the first submission to the last confirmation; ``submit_to_broadcast``
is each withdrawal's ``broadcast_at`` less the client's clock just before its
request (one machine, one clock), in milliseconds. ``speedup`` is the three
processes' throughput over the one's.

``--chaos N`` adds the fault run the suite keeps small (``tests/test_multiprocess.py``):
three processes, ``N`` withdrawals (200) submitted over about 20 s while one
process at a time is killed with SIGKILL every 1.5-3 s (and started again), then a
rolling deploy with 20 more arriving; its ``checks`` are the test's (none lost,
none twice, nonces contiguous and mined, each signed and sent once, the nodes
signing a digest twice only after a killed process's lease was taken over, or
after an attempt that failed at the coordinator was retried). The
script exits 1 if a withdrawal did not confirm or a check failed, after printing.

The numbers depend on the machine: the nodes, the processes, PostgreSQL and anvil
share its CPUs, and a 2-core machine gains little from more service processes
when signing is what takes the time.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from sqlalchemy import select

from harbour import __version__
from harbour.chains.ethereum import checksum_address
from harbour.custody import db
from harbour.custody import models as m

TESTS = Path(__file__).resolve().parent.parent / "tests"
ETH = 10**18
ALLOW_ALL = {"rules": [{"name": "allow-all", "action": "allow"}]}
DEFAULTS = {"withdrawals": 200, "warmup": 4}
QUICK = {"withdrawals": 40, "warmup": 2}
CLIENTS = 16
LEASE = 4
DRAIN_TIMEOUT = 300.0


def _helper(name: str) -> ModuleType:
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    return importlib.import_module(name)


@contextlib.contextmanager
def infrastructure(root: Path) -> Iterator[tuple[Any, str, Any]]:
    """A PostgreSQL server, an anvil and a custody home with three signer nodes running (stopped on leaving)."""
    postgres, anvil, custody_env = _helper("postgres"), _helper("anvil"), _helper("custody_env")
    server = postgres.PostgresServer().start()
    try:
        with anvil.Anvil(anvil.ensure_anvil()) as chain_url:
            env = custody_env.CustodyEnv(root, chain_url=chain_url, database=server.create_database("bench_setup"))
            env.start_nodes()
            try:
                yield server, str(chain_url), env
            finally:
                env.stop()
    finally:
        server.stop()


def prepare(server: Any, chain_url: str, env: Any, name: str) -> tuple[str, dict[str, str]]:
    """A fresh database with the organisation and two funded vaults; the service closed. (url, vault -> address)."""
    url = server.create_database(name)
    env.reset(url, chain_url=chain_url)
    env.organisation()
    env.set_policy(ALLOW_ALL)
    vaults = dict(env.vault(name=f"hot-{i}", fund=50 * ETH) for i in range(2))
    env.config.lease = LEASE
    env.config.save()
    env.close()
    return url, vaults


_recipients = iter(range(0x7000, 0x7000 + 10**6))


def submit_all(
    services: Any, token: str, vaults: list[str], keys: list[str], clients: int, deadline: float
) -> tuple[dict[str, str], dict[str, float], int]:
    """Submit every key's withdrawal; (key -> id, id -> client time just before its request, 5xx answers)."""
    submit = _helper("custody_services").submit
    ids: dict[str, str] = {}
    started: dict[str, float] = {}
    errors = 0
    lock = threading.Lock()
    queue = list(reversed(keys))

    def client() -> None:
        nonlocal errors
        while True:
            with lock:
                if not queue:
                    return
                key = queue.pop()
                recipient = next(_recipients)  # a fresh one for every withdrawal of every run
            i = int(key.rsplit("-", 1)[1])
            body = {
                "vault_id": vaults[i % len(vaults)],
                "asset": "ETH",
                "to": checksum_address(recipient.to_bytes(20, "big")),
                "amount": "1000",
            }
            at = time.time()
            view, failed = submit(services, token, body, key, deadline)
            with lock:
                ids[key], started[view["id"]], errors = view["id"], at, errors + failed

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ids, started, errors


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    q = statistics.quantiles(ordered, n=100) if len(ordered) > 1 else ordered * 99
    return {"p50_ms": round(q[49], 1), "p90_ms": round(q[89], 1), "max_ms": round(ordered[-1], 1)}


def measure(server: Any, chain_url: str, env: Any, processes: int, count: int, warmup: int, clients: int) -> Any:
    services_mod = _helper("custody_services")
    url, vaults = prepare(server, chain_url, env, f"bench_{processes}p")
    services = services_mod.Services(env.home, processes)
    services.start()
    try:
        token = env.people["initiator"].token
        vault_ids = list(vaults)
        deadline = time.monotonic() + DRAIN_TIMEOUT
        warm, _, _ = submit_all(services, token, vault_ids, [f"warm-{i}" for i in range(warmup)], clients, deadline)
        services_mod.wait_final(url, set(warm.values()), DRAIN_TIMEOUT)
        keys = [f"run-{i}" for i in range(warmup, warmup + count)]
        first = time.time()
        ids, started, errors = submit_all(services, token, vault_ids, keys, clients, deadline)
        rows = services_mod.wait_final(url, set(ids.values()), DRAIN_TIMEOUT)
        engine = db.make_engine(url)
        try:
            with db.session_factory(engine)() as s:
                done = {
                    r.id: r for r in s.scalars(select(m.Transaction).where(m.Transaction.id.in_(list(ids.values()))))
                }
        finally:
            engine.dispose()
        confirmed = [r for r in done.values() if r.state == "confirmed"]
        last = max((r.updated_at.timestamp() for r in confirmed), default=first)
        to_broadcast = [
            (r.broadcast_at.timestamp() - started[r.id]) * 1000 for r in done.values() if r.broadcast_at is not None
        ]
        return {
            "processes": processes,
            "withdrawals": count,
            "confirmed": len(confirmed),
            "server_errors": errors,
            "wall_s": round(last - first, 2),
            "withdrawals_per_s": round(len(confirmed) / (last - first), 2) if last > first else None,
            "submit_to_broadcast": _percentiles(to_broadcast),
        }, len(confirmed) == len(rows) == count
    finally:
        services.stop()


def chaos(server: Any, chain_url: str, env: Any, count: int, clients: int) -> tuple[dict[str, Any], bool]:
    """The test's fault run at ``count`` withdrawals (see the module docstring)."""
    services_mod = _helper("custody_services")
    url, vaults = prepare(server, chain_url, env, "bench_chaos")
    services = services_mod.Services(env.home, 3)
    services.start()
    rng = random.Random(7)
    try:
        token = env.people["initiator"].token
        deadline = time.monotonic() + DRAIN_TIMEOUT
        stop = threading.Event()

        def kill() -> None:
            while not stop.is_set():
                time.sleep(rng.uniform(1.5, 3.0))
                services.crash(rng)

        killer = threading.Thread(target=kill)
        killer.start()
        started = time.time()
        try:
            ids, _, errors = submit_all(
                services, token, list(vaults), [f"chaos-{i}" for i in range(count)], 4, deadline
            )
        finally:
            stop.set()
            killer.join()
        rolled: dict[str, Any] = {}

        def arrive() -> None:
            more, _, more_errors = submit_all(
                services, token, list(vaults), [f"roll-{i}" for i in range(count, count + 20)], 2, deadline
            )
            rolled.update(ids=more, errors=more_errors)

        arriving = threading.Thread(target=arrive)
        arriving.start()
        services.roll()
        arriving.join()
        ids.update(rolled["ids"])
        outcome = services_mod.check(
            url, chain_url, vaults, ids, services, [n.directory for n in env.nodes], DRAIN_TIMEOUT
        )
        result = {
            "withdrawals": len(ids),
            "kills": len(services.crashes),
            "server_errors": errors + rolled["errors"],
            "wall_s": round(time.time() - started, 1),
            "takeovers": len(outcome.takeovers),
            "signed_twice": len(outcome.double_signed),
            "signed_twice_after_takeover": len(set(outcome.double_signed) & set(outcome.takeovers)),
            "signed_twice_after_failed_attempt": len(
                (set(outcome.double_signed) - set(outcome.takeovers)) & outcome.retried
            ),
            "checks": outcome.checks,
            "problems": outcome.problems,
        }
        ok = all(outcome.checks.values()) and result["server_errors"] == 0
        return result, ok
    finally:
        services.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="40 withdrawals per run instead of 200")
    parser.add_argument("--withdrawals", type=int)
    parser.add_argument("--clients", type=int, default=CLIENTS)
    parser.add_argument("--processes", default="1,3", help="process counts to compare, e.g. 1,3")
    parser.add_argument("--chaos", type=int, default=0, help="also the fault run with this many withdrawals")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else DEFAULTS
    count = args.withdrawals or plan["withdrawals"]
    counts = [int(p) for p in args.processes.split(",") if p]
    result: dict[str, Any] = {
        "benchmark": "custody_processes",
        "harbour": __version__,
        "python": platform.python_version(),
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "database": "postgresql",
        "chain": "anvil",
        "nodes": 3,
        "threshold": 2,
        "clients": args.clients,
        "runs": [],
    }
    ok = True
    with (
        tempfile.TemporaryDirectory(prefix="harbour-bench-processes-") as tmp,
        infrastructure(Path(tmp)) as (
            server,
            chain_url,
            env,
        ),
    ):
        for processes in counts:
            run, good = measure(server, chain_url, env, processes, count, plan["warmup"], args.clients)
            result["runs"].append(run)
            ok = ok and good
        by = {r["processes"]: r for r in result["runs"]}
        if 1 in by and 3 in by and by[1]["withdrawals_per_s"] and by[3]["withdrawals_per_s"]:
            result["speedup_3_over_1"] = round(by[3]["withdrawals_per_s"] / by[1]["withdrawals_per_s"], 2)
        if args.chaos:
            result["chaos"], good = chaos(server, chain_url, env, args.chaos, args.clients)
            ok = ok and good
    print(json.dumps(result, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
