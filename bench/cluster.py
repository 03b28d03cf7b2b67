"""Signing latency and throughput across three signer-node processes on loopback, printed as JSON.

Usage: ``python bench/cluster.py [--quick] [--ecdsa-sessions N] [--frost-sessions N]
[--throughput-sessions M] [--concurrency C] [--warmup W]``.

Three nodes are created in a temporary directory (``harbour.node.config.init_node``,
passphrase stores with the smallest scrypt cost the store accepts, since unlocking
is not what is measured) and each is started as its own ``harbour node run`` process; one
in-process :class:`~harbour.node.coordinator.Coordinator` drives them over HTTP on
127.0.0.1. For each scheme (2-of-3 threshold ECDSA and FROST(secp256k1)) the key
is made once by ``Coordinator.keygen``; then, scheme after scheme:

- **latency**: after a few warm-up sessions, ``N`` signing sessions one after
  another, each timed from the coordinator's call to the verified signature
  (choosing the live signers, starting both signers, relaying every sealed
  round, checking the result);
- **throughput**: ``M`` sessions with at most ``C`` in flight at once
  (an ``asyncio`` semaphore), reported as signatures per second of wall time.

Every latency run comes before the first throughput run. The coordinator's HTTP
client keeps the connections a burst of concurrent sessions opened for a few
seconds and scans them on every request, which would slow a latency run that
followed a burst by several milliseconds per session.

Approval certificates are issued by an in-process authority before each timed
call (before the whole batch for throughput) and are not part of the measured
time; every session still has its certificate verified and its nonce spent by
each node. Messages are random 32-byte digests. ``node_cpu_ms_per_sig`` is the
CPU time the node processes used per signature (Linux ``/proc`` only), which
says how much of the latency is computation rather than waiting.

``targets`` compares the results with the performance targets; a miss is
reported, not raised, because the numbers depend on the machine (all four
processes share its CPUs). Every node process is stopped at the end, also on
error or interrupt.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harbour import __version__
from harbour.node import approval
from harbour.node.coordinator import ClusterKey, Coordinator, admin_params
from harbour.node.localnet import LocalNode, create_nodes, running

SCHEMES = ("ecdsa-secp256k1", "frost-secp256k1")
THRESHOLD = 2
NODES = 3
PASSPHRASE = "harbour benchmark passphrase"  # a throw-away store in a temporary directory
CERT_LIFETIME = 600
SESSION_TIMEOUT = 60.0

DEFAULTS = {"ecdsa": 100, "frost": 200, "throughput": 200, "warmup": 5}
QUICK = {"ecdsa": 20, "frost": 40, "throughput": 48, "warmup": 3}
CONCURRENCY = 16

# name: (scheme, metric, comparison, limit)
TARGETS = {
    "ecdsa_sign_p50": ("ecdsa-secp256k1", "p50_ms", "<=", 40.0),
    "frost_sign_p50": ("frost-secp256k1", "p50_ms", "<=", 15.0),
    "ecdsa_throughput": ("ecdsa-secp256k1", "signatures_per_s", ">=", 40.0),
}


# -- node processes ---------------------------------------------------------------------------


@contextlib.contextmanager
def running_nodes(root: Path, authority: approval.AuthorityKey, n: int) -> Iterator[list[LocalNode]]:
    """``n`` initialised and started nodes; every one is stopped on leaving, whatever happened."""
    with running(create_nodes(root, n, [authority.public_bytes], passphrase=PASSPHRASE)) as nodes:
        yield nodes


# -- measurement ------------------------------------------------------------------------------


def _certify(authority: approval.AuthorityKey, kind: str, key_id: str = "", **what: Any) -> bytes:
    return approval.issue(authority, kind=kind, key_id=key_id, now=int(time.time()), expires_in=CERT_LIFETIME, **what)


def _sign_cert(
    authority: approval.AuthorityKey, key: ClusterKey, message: bytes, signers: list[int] | None = None
) -> bytes:
    """A certificate for ``signers`` (by default the key's first t parties, as one session at a time gets)."""
    chosen = signers if signers is not None else sorted(key.roster)[: key.threshold]
    return _certify(authority, "sign", key.key_id, digests=[approval.approved_digest(message)], signers=chosen)


def _node_cpu(nodes: list[LocalNode]) -> float | None:
    values = [n.cpu_seconds() for n in nodes]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _per_sig_ms(before: float | None, after: float | None, count: int) -> float | None:
    return None if before is None or after is None else round((after - before) * 1000 / count, 2)


def _latency_stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(p95, 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
        "min_ms": round(ordered[0], 2),
        "max_ms": round(ordered[-1], 2),
    }


async def _keygen(
    coordinator: Coordinator, authority: approval.AuthorityKey, nodes: list[LocalNode], scheme: str
) -> tuple[ClusterKey, float]:
    descriptors = [n.descriptor for n in nodes]
    params = admin_params("keygen", scheme=scheme, threshold=THRESHOLD, nodes=descriptors)
    certificate = _certify(authority, "keygen", params=params)
    started = time.perf_counter()
    key = await coordinator.keygen(descriptors, THRESHOLD, scheme, certificate)
    return key, (time.perf_counter() - started) * 1000


async def _latency(
    coordinator: Coordinator,
    authority: approval.AuthorityKey,
    nodes: list[LocalNode],
    key: ClusterKey,
    *,
    sessions: int,
    warmup: int,
) -> dict[str, Any]:
    async def sign_once() -> float:
        message = secrets.token_bytes(32)
        certificate = _sign_cert(authority, key, message)
        start = time.perf_counter()
        await coordinator.sign(key, message, certificate)
        return (time.perf_counter() - start) * 1000

    for _ in range(warmup):
        await sign_once()
    cpu_before, process_before = _node_cpu(nodes), time.process_time()
    samples = [await sign_once() for _ in range(sessions)]
    cpu_after, process_after = _node_cpu(nodes), time.process_time()
    return _latency_stats(samples) | {
        "sessions": sessions,
        "node_cpu_ms_per_sig": _per_sig_ms(cpu_before, cpu_after, sessions),
        "coordinator_cpu_ms_per_sig": round((process_after - process_before) * 1000 / sessions, 2),
    }


async def _throughput(
    coordinator: Coordinator,
    authority: approval.AuthorityKey,
    nodes: list[LocalNode],
    key: ClusterKey,
    *,
    sessions: int,
    concurrency: int,
) -> dict[str, Any]:
    gate = asyncio.Semaphore(concurrency)

    async def sign_gated(message: bytes, certificate: bytes) -> None:
        async with gate:
            await coordinator.sign(key, message, certificate)

    # The authority names each session's signers; spread over every t-subset in turn, as the
    # custody service's coordinator spreads concurrent sessions over the nodes.
    subsets = [list(c) for c in itertools.combinations(sorted(key.roster), key.threshold)]

    def prepare(count: int) -> list[tuple[bytes, bytes]]:
        messages = [secrets.token_bytes(32) for _ in range(count)]
        return [(m, _sign_cert(authority, key, m, subsets[i % len(subsets)])) for i, m in enumerate(messages)]

    async def burst(batch: list[tuple[bytes, bytes]]) -> float:
        start = time.perf_counter()
        await asyncio.gather(*(sign_gated(m, c) for m, c in batch))
        return time.perf_counter() - start

    batch = prepare(sessions)
    cpu_before, process_before = _node_cpu(nodes), time.process_time()
    elapsed = await burst(batch)
    cpu_after, process_after = _node_cpu(nodes), time.process_time()
    return {
        "sessions": sessions,
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 3),
        "signatures_per_s": round(sessions / elapsed, 1),
        "node_cpu_ms_per_sig": _per_sig_ms(cpu_before, cpu_after, sessions),
        "coordinator_cpu_ms_per_sig": round((process_after - process_before) * 1000 / sessions, 2),
    }


async def _measure_all(
    authority: approval.AuthorityKey, nodes: list[LocalNode], counts: dict[str, int], concurrency: int
) -> dict[str, Any]:
    """Keygen, then every scheme's latency, then every scheme's throughput, on one coordinator.

    Sequential latency is measured before any concurrent run: the HTTP client keeps
    the connections a burst opened for a few seconds, and scanning them slows every
    later request (see the note in the output).
    """
    results: dict[str, dict[str, Any]] = {}
    keys: dict[str, ClusterKey] = {}
    async with Coordinator(timeout=SESSION_TIMEOUT) as coordinator:
        for scheme in SCHEMES:
            print(f"{scheme}: key generation on {NODES} node processes", file=sys.stderr)
            keys[scheme], keygen_ms = await _keygen(coordinator, authority, nodes, scheme)
            results[scheme] = {"key_id": keys[scheme].key_id, "keygen_ms": round(keygen_ms, 1)}
        for scheme in SCHEMES:
            sessions = counts["ecdsa" if scheme.startswith("ecdsa") else "frost"]
            print(f"{scheme}: {sessions} sequential signing sessions", file=sys.stderr)
            results[scheme]["latency"] = await _latency(
                coordinator, authority, nodes, keys[scheme], sessions=sessions, warmup=counts["warmup"]
            )
        for scheme in SCHEMES:
            print(f"{scheme}: {counts['throughput']} sessions, {concurrency} in flight", file=sys.stderr)
            results[scheme]["throughput"] = await _throughput(
                coordinator, authority, nodes, keys[scheme], sessions=counts["throughput"], concurrency=concurrency
            )
    return results


def run(counts: dict[str, int], concurrency: int) -> dict[str, Any]:
    started = time.perf_counter()
    authority = approval.AuthorityKey.generate()
    with (
        tempfile.TemporaryDirectory(prefix="harbour-bench-") as tmp,
        running_nodes(Path(tmp), authority, NODES) as nodes,
    ):
        results = asyncio.run(_measure_all(authority, nodes, counts, concurrency))
    targets: dict[str, dict[str, Any]] = {}
    for name, (scheme, metric, comparison, limit) in TARGETS.items():
        section = "throughput" if metric == "signatures_per_s" else "latency"
        measured = results[scheme][section][metric]
        targets[name] = {
            "scheme": scheme,
            "metric": f"{section}.{metric}",
            "limit": f"{comparison} {limit}",
            "measured": measured,
            "met": measured <= limit if comparison == "<=" else measured >= limit,
        }
    return {
        "benchmark": "cluster",
        "harbour": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "platform": platform.platform(terse=True),
        "cpu_count": os.cpu_count(),
        "unit": "ms per signing session (latency); signatures per second of wall time (throughput)",
        "note": f"{THRESHOLD}-of-{NODES}, {NODES} `harbour node run` processes and one coordinator on one machine, "
        "HTTP over 127.0.0.1; a session is timed from Coordinator.sign to the verified signature; "
        "certificate issuing is not timed; latency runs precede throughput runs",
        "parameters": {
            "threshold": THRESHOLD,
            "nodes": NODES,
            "ecdsa_sessions": counts["ecdsa"],
            "frost_sessions": counts["frost"],
            "throughput_sessions": counts["throughput"],
            "concurrency": concurrency,
            "warmup_sessions": counts["warmup"],
            "message": "random 32-byte digest",
        },
        "results": results,
        "targets": targets,
        "all_targets_met": all(target["met"] for target in targets.values()),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer sessions (a smoke run, noisier figures)")
    parser.add_argument("--ecdsa-sessions", type=int, help="sequential ECDSA sessions timed (default 100)")
    parser.add_argument("--frost-sessions", type=int, help="sequential FROST sessions timed (default 200)")
    parser.add_argument("--throughput-sessions", type=int, help="sessions per throughput run (default 200)")
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY, help="sessions in flight (default 16)")
    parser.add_argument("--warmup", type=int, help="untimed sessions before measuring (default 5)")
    args = parser.parse_args(argv)
    counts = dict(QUICK if args.quick else DEFAULTS)
    for name, value in (
        ("ecdsa", args.ecdsa_sessions),
        ("frost", args.frost_sessions),
        ("throughput", args.throughput_sessions),
        ("warmup", args.warmup),
    ):
        if value is not None:
            counts[name] = value
    if min(counts["ecdsa"], counts["frost"], counts["throughput"], args.concurrency) < 1 or counts["warmup"] < 0:
        parser.error("session counts and --concurrency must be at least 1, --warmup at least 0")
    # SIGTERM as an exception, so that the node processes are stopped on the way out as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    print(json.dumps(run(counts, args.concurrency), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
