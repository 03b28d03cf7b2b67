"""Key-lifecycle times (refresh and resharing) for every scheme, printed as JSON.

Usage: ``python bench/lifecycle.py [--runs N]``. All parties in one process;
medians over the runs in milliseconds. ``refresh`` is a proactive refresh of all
n shares; ``reshare`` moves a t-of-n key to a new t-of-n committee (dealers: the
first t parties; new parties: 1..n). For threshold ECDSA both include the new
pairwise OT setup that the new shares need before they can sign. ``targets``
compares the medians with the performance targets; a miss is reported, not
raised, because a benchmark's numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from harbour import __version__
from harbour.cli.params import SCHEMES
from harbour.mpc import runner

CONFIGS = ((2, 3), (3, 5))
# name: (scheme, operation, t, n, limit in ms)
TARGETS = {
    "refresh_ecdsa_2_of_3": ("ecdsa-secp256k1", "refresh", 2, 3, 300.0),
    "reshare_ecdsa_3_of_5": ("ecdsa-secp256k1", "reshare", 3, 5, 1000.0),
}


def _median_ms(fn: Callable[[], object], runs: int) -> dict[str, float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {"median_ms": round(statistics.median(samples), 3), "min_ms": round(samples[0], 3)}


def measure(scheme: str, t: int, n: int, runs: int) -> dict[str, Any]:
    shares = runner.keygen(scheme, t, n)
    refresh_stats, reshare_stats = runner.RunStats(), runner.RunStats()
    runner.refresh(shares, stats=refresh_stats)
    dealers = {i: shares[i] for i in range(1, t + 1)}
    runner.reshare(dealers, t, list(range(1, n + 1)), stats=reshare_stats)
    return {
        "refresh": _median_ms(lambda: runner.refresh(shares), runs) | {"bytes": refresh_stats.bytes},
        "reshare": _median_ms(lambda: runner.reshare(dealers, t, list(range(1, n + 1))), runs)
        | {"bytes": reshare_stats.bytes},
    }


def run(runs: int) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for scheme in SCHEMES:
        for t, n in CONFIGS:
            print(f"measuring {scheme} {t}-of-{n}", file=sys.stderr)
            scheme_runs = max(3, runs // 4) if scheme.startswith("ecdsa") and n > 3 else runs
            results.setdefault(scheme, {})[f"{t}-of-{n}"] = measure(scheme, t, n, scheme_runs)
    targets = {}
    for name, (scheme, op, t, n, limit) in TARGETS.items():
        median = results[scheme][f"{t}-of-{n}"][op]["median_ms"]
        targets[name] = {
            "scheme": scheme,
            "operation": op,
            "config": f"{t}-of-{n}",
            "limit_ms": limit,
            "median_ms": median,
            "met": median <= limit,
        }
    return {
        "benchmark": "lifecycle",
        "harbour": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "unit": "ms (median, min); bytes of one run as encoded on the wire",
        "note": "all parties in one process; ECDSA refresh and reshare include the new pairwise OT setup",
        "results": results,
        "targets": targets,
        "all_targets_met": all(target["met"] for target in targets.values()),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="runs per measurement (default 10)")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
