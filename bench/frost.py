"""FROST key generation and signing times for every scheme, printed as JSON.

Usage: ``python bench/frost.py [--runs N]``. Each configuration is measured by
``harbour.cli.bench.measure`` (the code behind ``harbour bench mpc``): all
parties in one process, medians over the runs in milliseconds. The ``targets``
list compares FROST(secp256k1) with the performance targets; a miss is reported,
not raised, because a benchmark's numbers depend on the machine it runs on.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any

from harbour import __version__
from harbour.cli.bench import DEFAULT_RUNS, measure
from harbour.cli.params import FROST_SCHEMES as SCHEMES

CONFIGS = ((2, 3), (7, 10), (15, 20))

# (scheme, t, n, metric, limit in ms)
TARGETS = (
    ("frost-secp256k1", 2, 3, "sign_ms", 1.0),
    ("frost-secp256k1", 7, 10, "sign_ms", 4.0),
    ("frost-secp256k1", 7, 10, "keygen_ms", 60.0),
    ("frost-secp256k1", 15, 20, "keygen_ms", 400.0),
)


def run(runs: int) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for scheme in SCHEMES:
        results[scheme] = {}
        for t, n in CONFIGS:
            print(f"measuring {scheme} {t}-of-{n}", file=sys.stderr)
            results[scheme][f"{t}-of-{n}"] = measure(scheme, t, n, runs=runs)
    targets = []
    for scheme, t, n, metric, limit in TARGETS:
        measured = results[scheme][f"{t}-of-{n}"][metric]
        targets.append(
            {
                "scheme": scheme,
                "config": f"{t}-of-{n}",
                "metric": metric,
                "limit_ms": limit,
                "median_ms": measured,
                "met": measured <= limit,
            }
        )
    return {
        "benchmark": "frost",
        "harbour": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "unit": "ms (median; min and p90 alongside)",
        "note": "all parties in one process; sign = every signer's rounds + aggregation + verification",
        "results": results,
        "targets": targets,
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed signing sessions per configuration")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(json.dumps(run(args.runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
