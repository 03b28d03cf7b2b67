"""``python -m harbour.node --dir DIR``: serve a signer node, loading only what a node needs.

``harbour node run --dir DIR`` does the same through the command-line interface,
which also loads Typer, Rich and what the other sub-commands share. A node is a
long-lived process that supervisors start and restart (systemd units, the local
clusters of the tests and benchmarks), so it gets this entry point of its own:
no CLI framework and nothing of the custody layer, which keeps a starting node
near a third of a second of CPU and 50 MB resident (``bench/startup.py``).
The passphrase or PIN comes from the environment, as for ``harbour node run``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harbour.node.config import NodeStartError
from harbour.node.server import run

FAILURE_EXIT = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harbour.node", description="Serve a signer node until interrupted."
    )
    parser.add_argument("--dir", required=True, type=Path, help="The node's directory.")
    args = parser.parse_args(argv)
    try:
        run(args.dir)
    except NodeStartError as exc:
        print(f"error: the node cannot start: {exc}", file=sys.stderr)
        return FAILURE_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
