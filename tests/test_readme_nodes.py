"""The README's signer-node walk-through, run exactly as written.

Every ``sh`` block of the README's "Signer nodes" section, in order, in one shell,
in an empty directory: three nodes, a key generation, signing under two signer
sets, a refresh, a reshare to a new node, an identity rotation, a cold node's key
generation by request files. The only things the test adds are around the text,
never inside it: ``harbour`` on the PATH, a private SoftHSM2 configuration (so the
token the walk-through makes lands in the test's directory), ``set -e`` so that any
failing command fails the test, and stopping the nodes at the end. The test suite's
override of the passphrase strength floor is taken out of the environment: the
README's passphrases must pass as a reader would type them.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from cli_checks import documents

README = Path(__file__).resolve().parent.parent / "README.md"


def walkthrough() -> str:
    """The section's ``sh`` blocks, joined in order."""
    text = README.read_text()
    start = text.index("\n## Signer nodes\n")
    end = text.index("\n## ", start + 1)
    blocks = re.findall(r"```sh\n(.*?)```", text[start:end], flags=re.DOTALL)
    assert len(blocks) >= 6, "the section's walk-through was not found"
    return "\n".join(blocks)


def test_the_signer_node_walkthrough_runs_as_written(tmp_path: Path) -> None:
    work = tmp_path / "walk"
    work.mkdir()
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    script = "set -e\ntrap 'kill $(cat n*.pid) 2>/dev/null || true' EXIT\n" + walkthrough()
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "SOFTHSM2_CONF": str(conf),
        "HOME": str(tmp_path),
    }
    env.pop("HARBOUR_CLUSTER_DIR", None)
    # As a reader runs it: every passphrase the README sets must clear the strength floor on its own.
    for name in ("HARBOUR_ALLOW_WEAK_PASSPHRASE", "HARBOUR_AUTHORITY_PASSPHRASE", "HARBOUR_CUSTODY_PASSPHRASE"):
        env.pop(name, None)
    done = subprocess.run(
        ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-4000:]}"

    # What the walk-through claims happened, read back from what it left behind.
    treasury = json.loads((work / "treasury.json").read_text())
    assert treasury["threshold"] == 2
    signed = [doc for doc in documents(done.stdout) if isinstance(doc, dict) and "signature" in doc]
    assert [doc["signers"] for doc in signed] == [[1, 2], [1, 3], [1, 2]]
    rotation = json.loads((work / "n2" / "rotation.json").read_text())
    descriptor = json.loads((work / "n2" / "descriptor.json").read_text())
    assert rotation["new"]["node_id"] == descriptor["node_id"] != rotation["old"]["node_id"]
    assert (tmp_path / "walk" / "counters" / "cold.counter").exists()
    assert any(tokens.iterdir()), "the SoftHSM2 token was made in the test's own directory"
