"""Start-up cost of the ``harbour`` command and of a signer-node process, printed as JSON.

Usage: ``python bench/startup.py [--runs N]``. ``help`` is ``harbour --help`` as a
user types it (wall-clock and CPU seconds of the whole process). ``node`` is one
``harbour node run`` process, as :mod:`harbour.node.localnet` starts it, from
spawning to answering its descriptor: the CPU seconds it used by then and its
resident memory (VmRSS). The node's store is passphrase-protected with the cheapest
scrypt cost the store accepts, so the figure is the code's cost, not the KDF's.
Medians over the runs; ``targets`` compares them with the limits (a miss is
reported, not raised: the numbers depend on the machine).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harbour import __version__
from harbour.node.localnet import LocalNode, create_nodes

TARGETS = {"help_wall_s": 0.3, "node_cpu_s": 0.5, "node_rss_mb": 60.0}


def _help_once(harbour: str) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([harbour, "--help"], check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _rss_mb(node: LocalNode) -> float:
    assert node.process is not None
    for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc")


def _node_once(root: Path) -> tuple[float, float]:
    (node,) = create_nodes(root, 1, [bytes(32)], passphrase="bench-passphrase")
    try:
        node.start()
        cpu = node.cpu_seconds()
        assert cpu is not None
        return cpu, _rss_mb(node)
    finally:
        node.stop()


def run(runs: int) -> dict[str, Any]:
    harbour = shutil.which("harbour", path=str(Path(sys.executable).parent))
    if harbour is None:
        raise SystemExit("the harbour console script is not installed beside this interpreter")
    helps = [_help_once(harbour) for _ in range(runs)]
    nodes = []
    for i in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            nodes.append(_node_once(Path(tmp) / f"run{i}"))
    figures = {
        "help_wall_s": round(statistics.median(w for w, _ in helps), 3),
        "help_cpu_s": round(statistics.median(c for _, c in helps), 3),
        "node_cpu_s": round(statistics.median(c for c, _ in nodes), 3),
        "node_rss_mb": round(statistics.median(r for _, r in nodes), 1),
    }
    return {
        "benchmark": "startup",
        "harbour": __version__,
        "python": platform.python_version(),
        "runs": runs,
        **figures,
        "targets": {name: {"limit": limit, "met": figures[name] <= limit} for name, limit in TARGETS.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    print(json.dumps(run(args.runs), indent=2))


if __name__ == "__main__":
    main()
