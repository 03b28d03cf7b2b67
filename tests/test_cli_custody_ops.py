"""Operator commands: ``harbour custody init|bootstrap`` and ``harbour audit verify`` on a tampered database."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cli_checks import error_line, one_document, problem
from custody_env import ETH, CustodyEnv, public_hex
from harbour.cli.main import app
from harbour.custody import config as cfg
from harbour.node.config import init_node
from harbour.node.keyfile import MIN_N

runner = CliRunner()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A deployment with a few dozen audit events (organisation, users, a vault, a withdrawal), then shut down."""
    root = tmp_path_factory.mktemp("custody-ops")
    with CustodyEnv(root) as env:
        env.organisation()
        env.set_policy(env.two_approvers_policy())
        vault_id, _ = env.vault(fund=2 * ETH)
        tx = env.custody.submit_withdrawal(
            env.actor("initiator"), vault_id=vault_id, asset="ETH", to="0x" + "44" * 20, amount=ETH
        )
        env.approve(tx["id"], "approver1")
    yield env.home


def verify(home: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["audit", "verify", "--home", str(home)])
    return result.exit_code, result.output


def tampered(home: Path, tmp_path: Path, *statements: str) -> Path:
    """A copy of the home whose database has been edited directly, bypassing the service."""
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    config = json.loads((copy / cfg.CONFIG_FILE).read_text())
    config["database"] = f"sqlite:///{copy / 'custody.db'}"
    (copy / cfg.CONFIG_FILE).write_text(json.dumps(config))
    with sqlite3.connect(copy / "custody.db") as db:
        for statement in statements:
            db.execute(statement)
    return copy


def test_an_untouched_log_verifies(home: Path) -> None:
    code, out = verify(home)
    assert code == 0, out
    assert "audit log verified" in out


def test_an_edited_row_fails_at_that_entry(home: Path, tmp_path: Path) -> None:
    copy = tampered(home, tmp_path, """UPDATE audit_events SET data = '{"amount": "1"}' WHERE "index" = 5""")
    code, out = verify(copy)
    assert code == 1
    assert "FAILED at entry 5" in out


def test_a_deleted_row_fails_at_that_entry(home: Path, tmp_path: Path) -> None:
    copy = tampered(home, tmp_path, """DELETE FROM audit_events WHERE "index" = 7""")
    code, out = verify(copy)
    assert code == 1
    assert "FAILED at entry 7" in out


def test_reordered_rows_fail_at_the_first_of_them(home: Path, tmp_path: Path) -> None:
    swap = [
        """UPDATE audit_events SET "index" = -1 WHERE "index" = 9""",
        """UPDATE audit_events SET "index" = 9 WHERE "index" = 10""",
        """UPDATE audit_events SET "index" = 10 WHERE "index" = -1""",
    ]
    code, out = verify(tampered(home, tmp_path, *swap))
    assert code == 1
    assert "FAILED at entry 9" in out


def test_verify_uses_the_key_the_operator_gives(home: Path) -> None:
    other = "11" * 32
    result = runner.invoke(app, ["audit", "verify", "--home", str(home), "--public-key", other, "--json"])
    assert result.exit_code == 1
    assert json.loads(result.output)["first_bad_index"] == 0


def test_init_and_bootstrap(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = runner.invoke(app, ["custody", "init", "--home", str(home)])
    assert result.exit_code == 0, result.output
    again = runner.invoke(app, ["custody", "init", "--home", str(home)])
    assert again.exit_code == 1 and "already" in again.output
    root, second, approver = (public_hex(Ed25519PrivateKey.generate()) for _ in range(3))
    boot = ["custody", "bootstrap", "--home", str(home), "--org", "Acme", "--admin", f"root:{root}"]
    result = runner.invoke(
        app, [*boot, "--admin", f"second:{second}", "--user", f"ann:approver:{approver}", "--user", "ivy:viewer"]
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert [c["name"] for c in out["credentials"]] == ["root", "second"]
    assert all(c["token"].startswith("hbk_") for c in out["credentials"])
    assert out["organisation"]["genesis"] == out["genesis"] and out["quorum"] == 1
    roles = {u["name"]: u["roles"] for u in out["users"]}
    assert roles == {"root": ["admin"], "second": ["admin"], "ann": ["approver"], "ivy": ["viewer"]}
    dup = runner.invoke(app, boot)
    assert dup.exit_code == 1 and "exists" in dup.output
    bad_policy = tmp_path / "p.json"
    bad_policy.write_text('{"rules": [{"name": "x", "action": "allow", "extra": 1}]}')
    result = runner.invoke(
        app,
        [
            "custody",
            "bootstrap",
            "--home",
            str(home),
            "--org",
            "B",
            "--admin",
            f"r:{root}",
            "--policy",
            str(bad_policy),
        ],
    )
    assert result.exit_code == 2 and "extra" in result.output  # a malformed file is unusable input


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--admin", "root"], 2, "NAME:APPROVAL_KEY"),
        (["--admin", "root:zz"], 1, "approval_key"),
        (["--admin", "root:" + "01" + "00" * 31], 1, "approval_key"),  # the identity point: signs everything
        (["--admin", "root:{key}", "--user", "ann"], 2, "NAME:ROLE"),
        (["--admin", "root:{key}", "--user", "ann:approver"], 1, "approval key"),
        (["--admin", "root:{key}", "--user", "ann:root"], 1, "roles"),
        (["--admin", "root:{key}", "--quorum", "0"], 2, "quorum"),
        (["--admin", "root:{key}", "--asset", "TUSD:0x12:6"], 1, "contract"),
        (["--admin", "root:{key}", "--admin", "root:{key}"], 1, "two users named"),
    ],
)
def test_bootstrap_refuses_a_genesis_it_cannot_write(tmp_path: Path, args: list[str], code: int, fragment: str) -> None:
    home = tmp_path / "home"
    assert runner.invoke(app, ["custody", "init", "--home", str(home)]).exit_code == 0
    key = public_hex(Ed25519PrivateKey.generate())
    given = [a.replace("{key}", key) for a in args]
    result = runner.invoke(app, ["custody", "bootstrap", "--home", str(home), "--org", "Acme", *given])
    assert result.exit_code == code, result.output
    assert fragment in result.output


def test_commands_refuse_a_missing_or_broken_home(tmp_path: Path) -> None:
    result = runner.invoke(app, ["audit", "verify", "--home", str(tmp_path / "nowhere")])
    assert result.exit_code == 1 and "custody init" in result.output
    (tmp_path / cfg.CONFIG_FILE).write_text("{not json")
    result = runner.invoke(app, ["custody", "serve", "--home", str(tmp_path)])
    assert result.exit_code == 1 and "not JSON" in result.output


def test_add_node_checks_each_descriptor(tmp_path: Path, home: Path) -> None:
    """The nodes of ``home`` are stopped: a node is added only once it shows how it is configured (test_node_safe)."""
    fresh = tmp_path / "fresh"
    made = one_document(runner.invoke(app, ["custody", "init", "--home", str(fresh), "--json"]))
    assert made["home"] == str(fresh) and made["authority_public_key"].endswith("authority.pub")
    first, second = sorted((home.parent / "nodes").glob("node*/descriptor.json"))[:2]
    stopped = runner.invoke(app, ["custody", "add-node", "--home", str(fresh), "--wait", "0", str(first)])
    assert stopped.exit_code == 1 and "node node1" in stopped.output and "gave no status" in stopped.output
    config = cfg.CustodyConfig.load(fresh)
    config.nodes.append(str(first.resolve()))
    config.save()
    again = runner.invoke(app, ["custody", "add-node", "--home", str(fresh), str(second), str(first), "--json"])
    problem(again, 1, "configured already")
    junk = tmp_path / "junk.json"
    junk.write_text('{"name": "x"}')
    bad = runner.invoke(app, ["custody", "add-node", "--home", str(fresh), str(junk)])
    error_line(bad, 2, "descriptor")
    assert json.loads((fresh / cfg.CONFIG_FILE).read_text())["nodes"] == [str(first.resolve())]
    # Another node under a name the deployment has: refused before it is even asked for its status.
    impostor = tmp_path / "impostor"
    init_node(
        impostor,
        name="node1",
        listen="127.0.0.1:1",
        authorities=[cfg.authority_public(fresh)],
        passphrase="impostor node passphrase",
        kdf_n=MIN_N,
    )
    named = runner.invoke(app, ["custody", "add-node", "--home", str(fresh), str(impostor / "descriptor.json")])
    error_line(named, 2, "named 'node1'")
    pair = runner.invoke(
        app,
        ["custody", "init", "--home", str(tmp_path / "pair"), "--nodes", f"{first},{impostor / 'descriptor.json'}"],
    )
    error_line(pair, 2, "named 'node1'")
    assert json.loads((fresh / cfg.CONFIG_FILE).read_text())["nodes"] == [str(first.resolve())]
    assert not (tmp_path / "pair").exists()


def test_custody_status_counts_withdrawals_by_state_and_names_stopped_nodes(home: Path) -> None:
    result = runner.invoke(app, ["custody", "status", "--home", str(home), "--json"])
    assert result.exit_code == 1  # the module's nodes are stopped
    report = json.loads(result.output)
    assert [(n["name"], n["reachable"], n["safe"]) for n in report["nodes"]] == [
        (f"node{i}", False, False) for i in (1, 2, 3)
    ]
    assert all("harbour node run --dir" in n["hint"] for n in report["nodes"])
    assert report["database"]["reachable"] and report["database"]["revision"] == report["database"]["head"]
    counts = report["pipeline"]["withdrawals"]
    assert sum(counts.values()) == 1 and set(counts) >= {"submitted", "signing", "confirmed", "cancelled"}
    (state,) = [s for s, n in counts.items() if n]
    oldest = report["pipeline"]["oldest_waiting"]
    if state in ("confirmed", "failed", "rejected", "cancelled"):
        assert oldest is None
    else:
        assert oldest["state"] == state and oldest["created_at"].endswith("Z") and oldest["waiting_seconds"] >= 0
