"""Withdrawals per second and their latency through the whole custody pipeline, printed as JSON.

Usage: ``python bench/custody.py [--quick] [--chains embedded,anvil] [--withdrawals N]
[--latency-withdrawals M] [--rate R] [--clients C] [--warmup W]``.

For each chain (the embedded eth-tester/py-evm chain, and a real anvil node) a whole
deployment is built in a temporary directory, the way ``harbour custody init`` and
``harbour custody serve`` build one, not through the test harness (no pytest):

- a custody home (:func:`harbour.custody.config.init_home`) with the default SQLite
  file database and ``confirmations = 1``;
- three signer nodes (:func:`harbour.node.localnet.create_nodes`), each its own
  ``harbour node run`` process on loopback;
- the service and its pipeline (:func:`harbour.custody.config.open_deployment`) with
  the defaults ``harbour custody serve`` uses (16 signing workers, receipts polled
  every 0.1 s);
- an organisation whose genesis names two admins (admin quorum 1), an initiator,
  the ETH asset and a policy of a single ``allow`` rule (every withdrawal is
  auto-approved); a 2-of-3 ECDSA vault bound by a governance entry both admins
  sign, and its first address, funded from the chain's dev account.

anvil comes from ``tests/anvil.py`` (imported through ``sys.path``; it installs the
npm package ``@foundry-rs/anvil-linux-amd64`` into a cache on first use). It mines a
block per transaction, as the embedded chain does.

A few warm-up withdrawals go through first, untimed. Then two measured runs, each of
withdrawals of 1 gwei to distinct fresh addresses, submitted in-process as the
initiator through :meth:`Custody.submit_withdrawal` (what the REST API calls) by ``C``
client threads:

- **latency**: ``M`` withdrawals offered at a steady ``R`` per second (open loop: the
  i-th is due at ``i / R`` s; a free client thread waits for that instant and
  submits it), so the figures are the pipeline's own latency at a moderate load
  rather than time spent queueing behind a backlog;
- **throughput**: ``N`` withdrawals submitted as fast as the ``C`` threads can
  (closed loop). Its latencies are reported too, but they are dominated by queueing:
  everything is submitted long before most of it can be signed.

The latency run comes first; each run is drained (every withdrawal final) before
the next starts. Times: submission is the client's clock just before the call;
broadcast is the row's ``broadcast_at``; confirmed is the row's ``updated_at``
once it is ``confirmed`` (its last move). ``withdrawals_per_s`` is confirmed
withdrawals over the wall time from the first submission to the last confirmation.
``stages_ms`` splits the time between the audit events each withdrawal leaves
(``submitted`` → ``signing`` is the wait for a signing worker plus the nonce
commit; ``signing`` → ``signed`` the MPC session; ``signed`` → ``broadcast`` the
wait for nonce order plus the send; ``broadcast`` → ``confirmed`` the receipt poll).
CPU: ``service_cpu_ms_per_withdrawal`` is this process (service, pipeline and the
client threads), ``node_cpu_ms_per_withdrawal`` the three nodes (Linux ``/proc``), and
``machine_cpu_busy`` the share of all CPUs busy during the run, chain included.

Every withdrawal must end ``confirmed``: ``states`` counts where each ended
(``exception`` for a submission that raised, with the first few ``errors``); if any
did not, the JSON is still printed, then the script exits with status 1.
``targets`` compares anvil's throughput
(throughput run) and its submission→broadcast p50 (latency run) with the issue's
targets; a miss is reported, not raised, because the numbers depend on the machine
(the service, the three nodes and the chain share its CPUs). Every process started
is stopped at the end, also on error or interrupt.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import itertools
import json
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy import select

from harbour import __version__
from harbour.chains.ethereum import checksum_address
from harbour.custody import config as cfg
from harbour.custody import models as m
from harbour.custody import statements, states
from harbour.custody.audit import AuditEvent
from harbour.custody.service import Actor, Custody, Founder, FoundingAsset
from harbour.node.localnet import LocalNode, create_nodes, running

CHAINS = ("embedded", "anvil")
NODES = 3
THRESHOLD = 2
PASSPHRASE = "harbour benchmark passphrase"  # throw-away node stores in a temporary directory
ETH = 10**18
FUNDING = 100 * ETH
AMOUNT = 10**9  # 1 gwei per withdrawal
DRAIN_TIMEOUT = 60.0
POLICY = {"rules": [{"name": "auto-approve", "action": "allow"}]}

DEFAULTS = {"withdrawals": 200, "latency": 100, "warmup": 5}
QUICK = {"withdrawals": 60, "latency": 40, "warmup": 3}
RATE = 20.0
CLIENTS = 8

# name: (chain, run, metric, comparison, limit)
TARGETS = {
    "anvil_throughput": ("anvil", "throughput", "withdrawals_per_s", ">=", 20.0),
    "anvil_submit_to_broadcast_p50": ("anvil", "latency", "submit_to_broadcast.p50_ms", "<=", 250.0),
}

# audit events a withdrawal leaves on its way, in order, and the stage each pair of neighbours spans
STAGES = (
    ("transaction.submitted", "transaction.signing", "submitted_to_signing"),
    ("transaction.signing", "transaction.signed", "signing_to_signed"),
    ("transaction.signed", "transaction.broadcast", "signed_to_broadcast"),
    ("transaction.broadcast", "transaction.confirmed", "broadcast_to_confirmed"),
)


# -- the deployment ---------------------------------------------------------------------------


def _anvil_helper() -> ModuleType:
    """``tests/anvil.py``, which installs and starts anvil (the tests' helper, not part of the package)."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("anvil")


@contextlib.contextmanager
def chain_url(chain: str) -> Iterator[str | None]:
    """None for the embedded chain; a fresh anvil's URL (stopped on leaving) for ``anvil``."""
    if chain == "embedded":
        yield None
        return
    helper = _anvil_helper()
    with helper.Anvil(helper.ensure_anvil()) as url:
        yield str(url)


@dataclass
class Setup:
    deployment: cfg.Deployment
    nodes: list[LocalNode]
    initiator: Actor
    vault_id: str
    address: str

    @property
    def custody(self) -> Custody:
        return self.deployment.custody


def _public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@contextlib.contextmanager
def deployment(root: Path, url: str | None) -> Iterator[Setup]:
    """A home, three running node processes, the started service, an organisation and a funded vault."""
    # database: the default, a SQLite file in the home
    config = cfg.init_home(
        root / "custody",
        passphrase=PASSPHRASE,
        chain=url or "embedded",
        dev_chain=url is not None,
        confirmations=1,
    )
    nodes = create_nodes(
        root / "nodes",
        NODES,
        [cfg.authority_public(config.home)],
        passphrase=PASSPHRASE,
        node_options={"organisations_only": True},
    )
    config.nodes = [str(n.directory / "descriptor.json") for n in nodes]
    config.save()
    with running(nodes):
        opened = cfg.open_deployment(config)
        try:
            custody = opened.custody
            keys = [Ed25519PrivateKey.generate() for _ in range(2)]
            out = (
                custody.bootstrap(  # the genesis: two admins (every change needs both), the initiator, ETH, the policy
                    "Harbour Bench Custodian",
                    [
                        *(Founder(f"bench-admin{i}", ("admin",), _public_hex(k)) for i, k in enumerate(keys)),
                        Founder("bench-initiator", ("initiator",)),
                    ],
                    assets=[FoundingAsset("ETH")],
                    policy=POLICY,
                )
            )
            admins = [custody.authenticate(c["token"]) for c in out["credentials"]]
            user_id = next(u["id"] for u in out["users"] if u["name"] == "bench-initiator")
            initiator = custody.authenticate(custody.issue_credential(admins[0], user_id)["token"])
            proposal = custody.create_vault(admins[0], name="bench-vault", threshold=THRESHOLD)
            for admin, key in zip(admins, keys, strict=True):  # the proposer signs the vault's binding, then the other
                subject = statements.from_request(custody.approval_request(admin, proposal["id"]), proposal["id"])
                custody.approve(admin, proposal["id"], signature=subject.sign(key, subject.statement()).hex())
            vault = {"id": proposal["changes"][0]["id"]}
            admin = admins[0]
            address = custody.derive_address(admin, vault["id"])["address"]
            opened.chain.fund(address, FUNDING)
            yield Setup(opened, nodes, initiator, vault["id"], address)
        finally:
            opened.close()


# -- measurement ------------------------------------------------------------------------------


@dataclass
class Submission:
    index: int
    due: float  # when it was meant to be submitted (wall clock, s); the start itself in a closed-loop run
    start: float  # the client's clock just before the call
    end: float = 0.0
    tx_id: str | None = None
    state: str | None = None
    error: str | None = None


def _destination() -> str:
    return checksum_address(secrets.token_bytes(20))


def _submit(setup: Setup, submission: Submission, destination: str) -> None:
    try:
        view = setup.custody.submit_withdrawal(
            setup.initiator, vault_id=setup.vault_id, asset="ETH", to=destination, amount=AMOUNT
        )
    except Exception as exc:  # counted as a failure, not raised: the other clients go on
        submission.error = f"{type(exc).__name__}: {exc}"
    else:
        submission.tx_id, submission.state = view["id"], view["state"]
        if view["state"] == states.REJECTED:
            submission.error = view.get("error")
    submission.end = time.time()


def _offer(setup: Setup, count: int, clients: int, rate: float | None) -> list[Submission]:
    """``count`` withdrawals from ``clients`` threads: at ``rate`` per second (open loop), or as fast as they can."""
    destinations = [_destination() for _ in range(count)]
    done: list[Submission] = []
    lock = threading.Lock()
    counter = itertools.count()
    origin = time.time() + 0.05

    def client() -> None:
        while (i := next(counter)) < count:
            due = origin + i / rate if rate is not None else time.time()
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            submission = Submission(i, due, time.time())
            _submit(setup, submission, destinations[i])
            with lock:
                done.append(submission)

    threads = [threading.Thread(target=client, name=f"bench-client-{k}") for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(done, key=lambda s: s.index)


def _drain(custody: Custody, ids: list[str], timeout: float = DRAIN_TIMEOUT) -> bool:
    """Wait until every one of ``ids`` is final (confirmed, failed, rejected, cancelled); False on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with custody.readers() as s:
            open_ = s.scalar(
                select(m.Transaction.id)
                .where(m.Transaction.id.in_(ids), m.Transaction.state.not_in(states.FINAL))
                .limit(1)
            )
        if open_ is None:
            return True
        time.sleep(0.05)
    return False


def _stats(samples: list[float]) -> dict[str, float | int] | None:
    if not samples:
        return None
    ordered = sorted(samples)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return {
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(p95, 1),
        "mean_ms": round(statistics.fmean(ordered), 1),
        "max_ms": round(ordered[-1], 1),
        "count": len(ordered),
    }


def _ts(value: dt.datetime | None) -> float | None:
    return None if value is None else value.timestamp()


def _stages(custody: Custody, ids: list[str]) -> dict[str, Any]:
    """Median and p95 of the time between the audit events of each withdrawal, stage by stage."""
    times: dict[str, dict[str, float]] = {}
    with custody.readers() as s:
        for subject, kind, at in s.execute(
            select(AuditEvent.subject, AuditEvent.kind, AuditEvent.at).where(AuditEvent.subject.in_(ids))
        ):
            assert subject is not None
            times.setdefault(subject, {}).setdefault(kind, at.timestamp())
    out: dict[str, Any] = {}
    for first, second, name in STAGES:
        spans = [(t[second] - t[first]) * 1000 for t in times.values() if first in t and second in t]
        out[name] = _stats(spans)
    return out


def _cpu(nodes: list[LocalNode]) -> float | None:
    values = [n.cpu_seconds() for n in nodes]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _machine_ticks() -> tuple[int, int] | None:
    """(busy, total) clock ticks of all CPUs so far (Linux ``/proc/stat``), or None."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def _busy(before: tuple[int, int] | None, after: tuple[int, int] | None) -> float | None:
    if before is None or after is None or after[1] == before[1]:
        return None
    return round((after[0] - before[0]) / (after[1] - before[1]), 2)


def measure(setup: Setup, count: int, clients: int, rate: float | None) -> dict[str, Any]:
    custody = setup.custody
    nonce_before = setup.deployment.chain.nonce(setup.address, "latest")
    node_cpu, own_cpu, machine = _cpu(setup.nodes), time.process_time(), _machine_ticks()
    submissions = _offer(setup, count, clients, rate)
    submitted_by = max(s.end for s in submissions)
    ids = [s.tx_id for s in submissions if s.tx_id is not None]
    drained = _drain(custody, ids)
    node_cpu_after, own_cpu_after, machine_after = _cpu(setup.nodes), time.process_time(), _machine_ticks()
    with custody.readers() as s:
        rows = {
            r.id: (r.state, _ts(r.broadcast_at), _ts(r.updated_at), _ts(r.created_at), r.error)
            for r in s.execute(
                select(
                    m.Transaction.id,
                    m.Transaction.state,
                    m.Transaction.broadcast_at,
                    m.Transaction.updated_at,
                    m.Transaction.created_at,
                    m.Transaction.error,
                ).where(m.Transaction.id.in_(ids))
            )
        }
    by_state: dict[str, int] = {}
    to_broadcast, to_confirmed, server_to_broadcast, call, lag = [], [], [], [], []
    confirmed_at: list[float] = []
    errors: list[str] = []
    for sub in submissions:
        call.append((sub.end - sub.start) * 1000)
        lag.append(max(0.0, sub.start - sub.due) * 1000)
        if sub.tx_id is None:
            by_state["exception"] = by_state.get("exception", 0) + 1
            errors.append((sub.error or "?")[:200])
            continue
        state, broadcast, updated, created, error = rows[sub.tx_id]
        by_state[state] = by_state.get(state, 0) + 1
        if state != states.CONFIRMED:
            errors.append(f"{state}: {error}"[:200])
        if broadcast is not None:
            to_broadcast.append((broadcast - sub.start) * 1000)
            if created is not None:
                server_to_broadcast.append((broadcast - created) * 1000)
        if state == states.CONFIRMED and updated is not None:
            to_confirmed.append((updated - sub.start) * 1000)
            confirmed_at.append(updated)
    confirmed = by_state.get(states.CONFIRMED, 0)
    first = min(s.start for s in submissions)
    wall = (max(confirmed_at) - first) if confirmed_at else float("nan")
    nonce_after = setup.deployment.chain.nonce(setup.address, "latest")
    return {
        "mode": "open loop" if rate is not None else "closed loop (as fast as possible)",
        "offered_per_s": rate,
        "clients": clients,
        "submitted": len(submissions),
        "confirmed": confirmed,
        "rejected": by_state.get(states.REJECTED, 0),
        "failed": len(submissions) - confirmed - by_state.get(states.REJECTED, 0),
        "all_confirmed": confirmed == len(submissions),
        "drained": drained,
        "states": by_state,
        "errors": sorted(set(errors))[:5],
        "mined_on_chain": nonce_after - nonce_before,
        "submission_s": round(submitted_by - first, 3),
        "wall_s": round(wall, 3),
        "withdrawals_per_s": round(confirmed / wall, 1) if confirmed else 0.0,
        "submit_to_broadcast": _stats(to_broadcast),
        "submit_to_confirmed": _stats(to_confirmed),
        "created_to_broadcast": _stats(server_to_broadcast),
        "submit_call": _stats(call),
        "submit_lag": _stats(lag) if rate is not None else None,
        "stages_ms": _stages(custody, ids),
        "service_cpu_ms_per_withdrawal": round((own_cpu_after - own_cpu) * 1000 / len(submissions), 2),
        "machine_cpu_busy": _busy(machine, machine_after),
        "node_cpu_ms_per_withdrawal": None
        if node_cpu is None or node_cpu_after is None
        else round((node_cpu_after - node_cpu) * 1000 / len(submissions), 2),
    }


def _warm_up(setup: Setup, count: int) -> None:
    """Untimed withdrawals one after another: connections, cached keys, first-use imports."""
    for i in range(count):
        submission = Submission(i, time.time(), time.time())
        _submit(setup, submission, _destination())
        if submission.tx_id is None or submission.state == states.REJECTED:
            raise RuntimeError(f"warm-up withdrawal failed: {submission.error}")
        if not _drain(setup.custody, [submission.tx_id]):
            raise RuntimeError(f"warm-up withdrawal {submission.tx_id} was not final within {DRAIN_TIMEOUT:g} s")


def run_chain(chain: str, counts: dict[str, int], rate: float, clients: int) -> dict[str, Any]:
    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="harbour-bench-custody-") as tmp,
        chain_url(chain) as url,
        deployment(Path(tmp), url) as setup,
    ):
        ready_s = time.perf_counter() - started
        print(f"{chain}: {counts['warmup']} warm-up withdrawals", file=sys.stderr)
        _warm_up(setup, counts["warmup"])
        print(f"{chain}: {counts['latency']} withdrawals offered at {rate:g}/s", file=sys.stderr)
        latency = measure(setup, counts["latency"], clients, rate)
        print(f"{chain}: {counts['withdrawals']} withdrawals as fast as possible", file=sys.stderr)
        throughput = measure(setup, counts["withdrawals"], clients, None)
    return {
        "chain": chain,
        "setup_s": round(ready_s, 1),
        "latency": latency,
        "throughput": throughput,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def _lookup(result: dict[str, Any], dotted: str) -> Any:
    value: Any = result
    for part in dotted.split("."):
        value = value[part]
    return value


def run(chains: list[str], counts: dict[str, int], rate: float, clients: int) -> dict[str, Any]:
    started = time.perf_counter()
    results = {chain: run_chain(chain, counts, rate, clients) for chain in chains}
    targets: dict[str, dict[str, Any]] = {}
    for name, (chain, section, metric, comparison, limit) in TARGETS.items():
        if chain not in results:
            continue
        measured = _lookup(results[chain][section], metric)
        targets[name] = {
            "chain": chain,
            "metric": f"{section}.{metric}",
            "limit": f"{comparison} {limit}",
            "measured": measured,
            "met": measured <= limit if comparison == "<=" else measured >= limit,
        }
    return {
        "benchmark": "custody",
        "harbour": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "platform": platform.platform(terse=True),
        "cpu_count": os.cpu_count(),
        "unit": "withdrawals per second of wall time (first submission to last confirmation); ms (latencies)",
        "note": "ETH withdrawals through policy (one allow rule), 2-of-3 ECDSA signing on three `harbour node run` "
        "processes, ordered broadcast and one confirmation; SQLite file database; service, clients, nodes "
        "and chain on one machine; the latency run is open loop at offered_per_s, the throughput run closed "
        "loop; targets: anvil throughput from the throughput run, anvil p50 from the latency run",
        "parameters": {
            "chains": chains,
            "nodes": NODES,
            "threshold": THRESHOLD,
            "clients": clients,
            "latency_withdrawals": counts["latency"],
            "latency_rate_per_s": rate,
            "throughput_withdrawals": counts["withdrawals"],
            "warmup_withdrawals": counts["warmup"],
            "confirmations": 1,
            "database": "sqlite file",
            "amount_wei": AMOUNT,
            "destinations": "a fresh random address per withdrawal",
        },
        "results": results,
        "targets": targets,
        "all_targets_met": bool(targets) and all(t["met"] for t in targets.values()),
        "all_confirmed": all(r[run]["all_confirmed"] for r in results.values() for run in ("latency", "throughput")),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer withdrawals (a smoke run, noisier figures)")
    parser.add_argument("--chains", default=",".join(CHAINS), help="comma-separated: embedded, anvil (default both)")
    parser.add_argument("--withdrawals", type=int, help="withdrawals in the throughput run (default 200)")
    parser.add_argument("--latency-withdrawals", type=int, help="withdrawals in the latency run (default 100)")
    parser.add_argument("--rate", type=float, default=RATE, help="offered withdrawals/s in the latency run (20)")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="client threads submitting (default 8)")
    parser.add_argument("--warmup", type=int, help="untimed withdrawals first (default 5)")
    args = parser.parse_args(argv)
    chains = [c.strip() for c in args.chains.split(",") if c.strip()]
    if not chains or any(c not in CHAINS for c in chains):
        parser.error(f"--chains takes a comma-separated subset of {', '.join(CHAINS)}")
    counts = dict(QUICK if args.quick else DEFAULTS)
    for name, value in (
        ("withdrawals", args.withdrawals),
        ("latency", args.latency_withdrawals),
        ("warmup", args.warmup),
    ):
        if value is not None:
            counts[name] = value
    if min(counts["withdrawals"], counts["latency"], args.clients) < 1 or counts["warmup"] < 0 or args.rate <= 0:
        parser.error("withdrawal counts, --clients and --rate must be positive, --warmup at least 0")
    # SIGTERM as an exception, so that node processes and anvil are stopped on the way out as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    result = run(chains, counts, args.rate, args.clients)
    print(json.dumps(result, indent=2))
    if not result["all_confirmed"]:
        print("error: not every withdrawal ended confirmed (see states and errors)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
