"""``python -m harbour.node``: a signer node's own entry point, without the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harbour.node.localnet import create_nodes


def test_a_node_process_loads_no_cli_custody_or_transaction_encoding() -> None:
    code = "import sys, harbour.node.__main__\nprint(' '.join(sorted(sys.modules)))\n"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    )
    tops = {m.split(".")[0] for m in loaded}
    assert not {"typer", "rich", "click", "sqlalchemy", "web3", "rlp", "eth_utils", "pydantic", "fastapi"} & tops
    assert not {m for m in loaded if m.startswith(("harbour.cli", "harbour.custody", "harbour.api"))}
    # numpy (the OT extension's bit matrices) is imported when a session first needs it
    assert not {m for m in loaded if m.startswith("numpy.")}


def test_a_node_that_cannot_open_its_store_says_why_and_exits_1(tmp_path: Path) -> None:
    (node,) = create_nodes(tmp_path, 1, [bytes(32)], passphrase="the right passphrase")
    env = {**node.env, "HARBOUR_NODE_PASSPHRASE": "a wrong passphrase"}
    done = subprocess.run(
        [sys.executable, "-m", "harbour.node", "--dir", str(node.directory)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert done.stderr.startswith("error: the node cannot start: ")
    assert done.stdout == ""


def test_the_entry_point_wants_a_directory() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "harbour.node"], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert done.returncode == 2
    assert "--dir" in done.stderr
