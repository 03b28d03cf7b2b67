"""Threshold ECDSA (DKLs23) key generation and signing times, printed as JSON.

Usage: ``python bench/ecdsa.py [--runs N] [--keygen-runs K]``. Each configuration
is measured by ``harbour.cli.bench.measure`` (the code behind ``harbour bench
mpc``): all parties in one process, medians over the runs in milliseconds. Key
generation is the DKG followed by the pairwise OT setup; a signing session is
the three DKLs23 rounds of every signer, each signer's combination of the
result and its check against the group key. ``sign_bytes`` and
``sign_envelopes`` count what one signing session puts on the wire (a
broadcast is one envelope). The ``targets`` object compares the medians with
the performance targets; a miss is reported, not raised, because a benchmark's
numbers depend on the machine it runs on.
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
from harbour.cli.params import ECDSA_SCHEMES

SCHEME = ECDSA_SCHEMES[0]
CONFIGS = ((2, 3), (3, 5))
DEFAULT_KEYGEN_RUNS = 10

# name: (t, n, metric, limit in ms)
TARGETS = {
    "sign_2_of_3": (2, 3, "sign_ms", 15.0),
    "sign_3_of_5": (3, 5, "sign_ms", 50.0),
    "keygen_2_of_3": (2, 3, "keygen_ms", 300.0),
}


def run(runs: int, keygen_runs: int) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for t, n in CONFIGS:
        print(f"measuring {SCHEME} {t}-of-{n}", file=sys.stderr)
        results[f"{t}-of-{n}"] = measure(SCHEME, t, n, runs=runs, keygen_runs=keygen_runs)
    targets: dict[str, dict[str, Any]] = {}
    for name, (t, n, metric, limit) in TARGETS.items():
        measured = results[f"{t}-of-{n}"][metric]
        targets[name] = {
            "config": f"{t}-of-{n}",
            "metric": metric,
            "limit_ms": limit,
            "median_ms": measured,
            "met": measured <= limit,
        }
    return {
        "benchmark": "ecdsa",
        "scheme": SCHEME,
        "harbour": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "unit": "ms (median; min and p90 alongside); bytes as encoded on the wire",
        "note": "all parties in one process; keygen = DKG + pairwise OT setup; "
        "sign = every signer's three rounds + combination + verification",
        "summary": {
            config: {
                key: result[key]
                for key in ("keygen_ms", "sign_ms", "sign_bytes", "sign_envelopes", "keygen_bytes", "keygen_envelopes")
            }
            for config, result in results.items()
        },
        "results": {SCHEME: results},
        "targets": targets,
        "all_targets_met": all(target["met"] for target in targets.values()),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed signing sessions per configuration")
    parser.add_argument(
        "--keygen-runs", type=int, default=DEFAULT_KEYGEN_RUNS, help="timed key generations per configuration"
    )
    args = parser.parse_args(argv)
    if args.runs < 1 or args.keygen_runs < 1:
        parser.error("--runs and --keygen-runs must be at least 1")
    print(json.dumps(run(args.runs, args.keygen_runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
