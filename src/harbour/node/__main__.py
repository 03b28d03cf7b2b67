"""``python -m harbour.node --dir DIR``: serve a signer node, loading only what a node needs.

``harbour node run --dir DIR`` does the same through the command-line interface,
which also loads Typer, Rich and what the other sub-commands share. A node is a
long-lived process that supervisors start and restart (systemd units, the local
clusters of the tests and benchmarks), so it gets this entry point of its own:
no CLI framework and nothing of the custody layer, which keeps a starting node
near a third of a second of CPU and 50 MB resident (``bench/startup.py``).
The passphrase or PIN comes from the environment, as for ``harbour node run``, and so
may the log format and level and the metrics address (``HARBOUR_LOG_FORMAT``,
``HARBOUR_LOG_LEVEL``, ``HARBOUR_METRICS_LISTEN``), which the options override.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from harbour.node.config import NodeStartError
from harbour.node.server import run
from harbour.util import logs, scrape

FAILURE_EXIT = 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harbour.node", description="Serve a signer node until interrupted."
    )
    parser.add_argument("--dir", required=True, type=Path, help="The node's directory.")
    parser.add_argument(
        "--log-format", choices=logs.FORMATS, default=os.environ.get("HARBOUR_LOG_FORMAT", "auto"), help="Log lines."
    )
    parser.add_argument("--log-level", choices=logs.LEVELS, default=os.environ.get("HARBOUR_LOG_LEVEL", "info"))
    parser.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        default=os.environ.get(scrape.LISTEN_ENV),
        help=f"Serve Prometheus metrics there (beyond loopback only with {scrape.TOKEN_ENV} set).",
    )
    args = parser.parse_args(argv)
    try:
        endpoint = None if args.metrics_listen is None else scrape.endpoint(args.metrics_listen, os.environ)
        logs.configure(args.log_format, args.log_level)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        run(args.dir, metrics=endpoint)
    except NodeStartError as exc:
        print(f"error: the node cannot start: {exc}", file=sys.stderr)
        return FAILURE_EXIT
    except OSError as exc:
        print(f"Error: the node cannot serve its metrics on {args.metrics_listen}: {exc}", file=sys.stderr)
        return FAILURE_EXIT
    return 0


if __name__ == "__main__":
    sys.exit(main())
