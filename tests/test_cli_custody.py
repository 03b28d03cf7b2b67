"""The custody commands of ``harbour`` against a real API server (uvicorn on a loopback port).

The server runs the real service (signer-node processes, the embedded chain);
the commands run in-process through Typer's runner with ``HARBOUR_API`` and
``HARBOUR_TOKEN`` set as an operator would. Bad input must exit 2 before any
request is sent, an API refusal must exit 1 with the problem's detail on stderr,
and ``approve`` must refuse to sign a statement that does not match the
transaction it claims to describe.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from typer.testing import CliRunner, Result

from cli_checks import one_document, problem
from custody_env import ETH, CustodyEnv, public_hex
from harbour.api.server import BackgroundServer
from harbour.cli.main import app
from harbour.cli.params import InputError
from harbour.cli.transfer import parse_amount
from harbour.governance.changes import SetPolicy
from harbour.governance.log import Entry, SignedEntry
from harbour.node.identity import NodeDescriptor
from helpers import pem_needs_password, wait_until

DEST = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
BAD_CHECKSUM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"
APPROVER_PASSPHRASE = "custody test approver keys"
"""Every approver key file of these tests is encrypted under it, as `approver-key new` encrypts by default."""
runner = CliRunner()


@dataclass
class World:
    env: CustodyEnv
    url: str
    vault_id: str
    address: str
    keys: dict[str, Path]
    """PEM files of the approvers' and admins' private keys."""

    def run(self, who: str | None, *args: str, env: Mapping[str, str | None] | None = None) -> Result:
        variables: dict[str, str | None] = {
            "HARBOUR_API": self.url,
            "HARBOUR_TOKEN": self.env.people[who].token if who else None,
            "HARBOUR_APPROVER_PASSPHRASE": APPROVER_PASSPHRASE,
            "HARBOUR_AUDIT_KEY": None,
            "HARBOUR_TRUSTED_ORGS": str(self.env.root / "trusted-orgs.json"),
            **(env or {}),
        }
        return runner.invoke(app, list(args), env=variables)

    def json(self, who: str | None, *args: str) -> Any:
        result = self.run(who, *args, "--json")
        return one_document(result)

    def govern(self, proposal: dict[str, Any]) -> dict[str, Any]:
        """What the admins do with a proposed governance change: ``harbour approve`` it, proposer first."""
        assert proposal["kind"] == "governance" and proposal["state"] == "pending_approval", proposal
        signed: dict[str, Any] = proposal
        for who in ("admin", "admin2"):
            signed = self.json(who, "approve", proposal["id"], "--key", str(self.keys[who]), "--yes")
        assert signed["state"] == "confirmed", signed
        return signed


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("cli")
    with CustodyEnv(root / "env") as env:
        env.organisation()
        env.set_policy(env.two_approvers_policy())
        vault_id, address = env.vault(fund=10 * ETH)
        keys = {}
        for name, person in env.people.items():
            if person.key is not None:
                path = root / f"{name}.pem"
                path.write_bytes(
                    person.key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.BestAvailableEncryption(APPROVER_PASSPHRASE.encode()),
                    )
                )
                keys[name] = path
        with BackgroundServer(env.custody) as server:
            yield World(env, server.url, vault_id, address, keys)


def refused(result: Result, code: int, *fragments: str) -> None:
    """One ``error:`` line (and hints) naming every fragment; under ``--json``, a problem document instead."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    if result.stdout.startswith("{"):
        problem(result, code)
        for fragment in fragments:
            assert fragment in result.stdout, result.stdout
        return
    assert result.stderr.startswith("error: "), result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("hint: ")]
    assert len(lines) == 1, "one line (and hints), no traceback"
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def withdraw(world: World, *extra: str, amount: str = "1000") -> Any:
    return world.json(
        "initiator", "withdraw", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST, "--amount", amount, *extra
    )


# -- directory commands -----------------------------------------------------------------------------------------


def test_org_show(world: World) -> None:
    doc = world.json("viewer", "org", "show")
    assert doc["organisation"]["name"] == "Harbour Test Custodian"
    assert doc["user"]["roles"] == ["viewer"]
    text = world.run("viewer", "org", "show")
    assert text.exit_code == 0 and "Harbour Test Custodian" in text.stdout and "viewer" in text.stdout


def test_approver_key_user_and_credential(world: World, tmp_path: Path) -> None:
    key_file = tmp_path / "carol.pem"
    made = world.json(None, "approver-key", "new", "--out", str(key_file))
    assert len(made["public_key"]) == 64
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert made["encrypted"] is True and pem_needs_password(key_file.read_bytes())
    refused(world.run(None, "approver-key", "new", "--out", str(key_file)), 2, "exists")

    proposal = world.json(
        "admin", "user", "create", "carol", "--role", "approver", "--approval-key", made["public_key"]
    )
    assert proposal["changes"][0]["op"] == "user.add" and made["public_key"] in proposal["changes"][0]["description"]
    user = world.govern(proposal)["changes"][0]
    credential = world.json("admin", "user", "credential", user["id"])
    me = world.json(None, "org", "show", "--token", credential["token"])
    assert me["user"]["name"] == "carol"
    users = world.json("auditor", "user", "list", "--all", "--limit", "2")
    assert "carol" in {u["name"] for u in users["items"]} and users["next_cursor"] is None
    table = world.run("auditor", "user", "list", "--limit", "200")
    assert table.exit_code == 0 and "carol" in table.stdout


def test_approver_keys_are_encrypted_by_default_under_a_strong_passphrase(world: World, tmp_path: Path) -> None:
    key_file = tmp_path / "enc.pem"
    new = ["approver-key", "new", "--out", str(key_file), "--json"]
    strict: dict[str, str | None] = {"HARBOUR_ALLOW_WEAK_PASSPHRASE": None}
    # No passphrase, and no terminal to ask on: refused rather than written in the clear.
    refused(
        world.run(None, *new, env={**strict, "HARBOUR_APPROVER_PASSPHRASE": None}), 2, "HARBOUR_APPROVER_PASSPHRASE"
    )
    # A guessable passphrase: refused with the reason and what would pass.
    weak = world.run(None, *new, env={**strict, "HARBOUR_APPROVER_PASSPHRASE": "correct horse"})
    refused(weak, 2, "HARBOUR_APPROVER_PASSPHRASE is too weak", "10^8 guesses", "four or more uncommon words")
    assert not key_file.exists()
    made = world.run(None, *new, env=strict)
    assert made.exit_code == 0 and made.stderr == "", made.stderr
    assert json.loads(made.stdout)["encrypted"] is True
    assert pem_needs_password(key_file.read_bytes())
    key = serialization.load_pem_private_key(key_file.read_bytes(), APPROVER_PASSPHRASE.encode())
    assert public_hex(key) == json.loads(made.stdout)["public_key"]  # type: ignore[arg-type]
    # Without the passphrase (and without a terminal to ask on) the key cannot be used.
    pending = "00000000-0000-4000-8000-000000000000"
    locked = world.run(
        "approver1", "approve", pending, "--key", str(key_file), env={"HARBOUR_APPROVER_PASSPHRASE": None}
    )
    refused(locked, 2, "the key file is encrypted")


def test_a_plaintext_approver_key_only_on_request_and_it_warns_on_every_use(world: World, tmp_path: Path) -> None:
    key_file = tmp_path / "clear.pem"
    made = world.run(None, "approver-key", "new", "--out", str(key_file), "--insecure-plaintext", "--json")
    assert made.exit_code == 0 and json.loads(made.stdout)["encrypted"] is False
    assert "--insecure-plaintext" in made.stderr
    assert not pem_needs_password(key_file.read_bytes())
    # Such a file (or one made before encryption was the default) still loads, and says how to encrypt it.
    used = world.run("approver1", "approve", "00000000-0000-4000-8000-000000000000", "--key", str(key_file))
    assert "no transaction" in used.stderr, "the key loaded: what refuses is the server, which has no such request"
    assert "holds your approver key unencrypted" in used.stderr and "openssl pkcs8 -topk8" in used.stderr


def test_vaults_addresses_assets_address_book(world: World) -> None:
    vaults = world.json("viewer", "vault", "list")
    assert world.vault_id in {v["id"] for v in vaults["items"]}
    vault = world.json("viewer", "vault", "show", world.vault_id)
    assert vault["addresses"][0]["address"] == world.address and int(vault["balances"]["ETH"]) > 0
    shown = world.run("viewer", "vault", "show", world.vault_id)
    assert shown.exit_code == 0 and world.address in shown.stdout
    new = world.json("admin", "address", "new", "--vault", world.vault_id, "--label", "cli")
    assert new["label"] == "cli"
    addresses = world.json("viewer", "address", "list", "--vault", world.vault_id)
    assert new["address"] in {a["address"] for a in addresses["items"]}
    assets = world.json("viewer", "asset", "list")
    assert [a["symbol"] for a in assets["items"]] == ["ETH"]
    entry = world.govern(world.json("admin", "address-book", "add", "exchange", DEST, "--whitelisted"))["changes"][0]
    assert "whitelisted" in entry["description"]
    book = world.run("viewer", "address-book", "list")
    assert book.exit_code == 0 and DEST in book.stdout
    world.govern(world.json("admin", "address-book", "whitelist", entry["id"], "--off"))
    listed = world.json("viewer", "address-book", "list", "--all")["items"]
    assert next(e for e in listed if e["id"] == entry["id"])["whitelisted"] is False
    world.govern(world.json("admin", "address-book", "remove", entry["id"]))
    assert entry["id"] not in {e["id"] for e in world.json("viewer", "address-book", "list", "--all")["items"]}


def test_renaming_disabling_and_the_approve_that_names_what_each_id_is(world: World) -> None:
    eth = next(a for a in world.json("viewer", "asset", "list")["items"] if a["symbol"] == "ETH")
    proposal = world.json("admin", "asset", "disable", eth["id"])
    assert proposal["changes"][0]["op"] == "asset.disable"
    shown = world.run("admin", "approve", proposal["id"], "--key", str(world.keys["admin"]), "--yes")
    assert shown.exit_code == 0, shown.stderr
    assert f"change:  disable asset {eth['id']}: no withdrawal of it is signed" in shown.stdout
    assert f"target:  asset {eth['id']} is ETH (the native coin)" in shown.stdout
    world.json("admin2", "approve", proposal["id"], "--key", str(world.keys["admin2"]), "--yes")
    assert next(a for a in world.json("viewer", "asset", "list")["items"] if a["id"] == eth["id"])["disabled"]
    world.govern(world.json("admin", "asset", "disable", eth["id"], "--enable"))
    name = world.json("viewer", "vault", "show", world.vault_id)["name"]
    world.govern(world.json("admin", "vault", "rename", world.vault_id, "renamed"))
    assert world.json("viewer", "vault", "show", world.vault_id)["name"] == "renamed"
    world.govern(world.json("admin", "vault", "rename", world.vault_id, name))
    entry = world.govern(world.json("admin", "address-book", "add", "desk", "0x" + "81" * 20))["changes"][0]
    world.govern(world.json("admin", "address-book", "rename", entry["id"], "trading desk"))
    listed = world.json("viewer", "address-book", "list", "--all")["items"]
    assert next(e for e in listed if e["id"] == entry["id"])["name"] == "trading desk"
    refused(world.run("admin", "vault", "archive", "not-an-id"), 2)


def test_names_stand_for_ids_and_an_unknown_name_lists_the_names_there_are(world: World) -> None:
    assert world.json("viewer", "vault", "show", "Treasury")["id"] == world.vault_id  # names compare caselessly
    made = world.json("admin", "address", "new", "--vault", "treasury", "--label", "by name")
    assert made["address"] in {
        a["address"] for a in world.json("viewer", "address", "list", "--vault", "TREASURY")["items"]
    }
    mine = world.json("admin", "user", "credentials", "approver1")["items"]
    assert mine and {c["user_id"] for c in mine} == {world.env.user_id("approver1")}
    refused(world.run("viewer", "vault", "show", "nowhere"), 2, "no vault named 'nowhere'; vaults: ", "treasury")
    refused(world.run("admin", "user", "disable", "nobody"), 2, "no user named 'nobody'; users: ", "approver1")
    refused(world.run("admin", "asset", "disable", "DOGE"), 2, "no asset named 'DOGE'; assets: ETH")
    refused(world.run("admin", "address-book", "remove", "nothing"), 2, "no address-book entry named 'nothing'")
    refused(world.run("initiator", *replace(WITHDRAW, "--vault", "tresury")), 2, "--vault: no vault named 'tresury'")


def test_status_says_what_a_withdrawal_waits_for_and_by_whom(world: World) -> None:
    tx = world.json("initiator", *replace(WITHDRAW, "--vault", "treasury"))
    assert tx["vault_id"] == world.vault_id and tx["state"] == "pending_approval"
    shown = world.run("viewer", "status", tx["id"])
    assert shown.exit_code == 0, shown.stderr
    assert "waiting_for:    needs 2 more from treasury: approver1, approver2, approver3" in shown.stdout
    assert f"vault:          treasury ({world.vault_id})" in shown.stdout
    approved = world.run("approver1", "approve", tx["id"], "--key", str(world.keys["approver1"]), "--yes")
    assert f"approver1 ({world.env.user_id('approver1')}) (approve)" in approved.stdout
    assert "needs 1 more from treasury: approver2, approver3" in approved.stdout
    waited = world.run("viewer", "status", tx["id"], "--wait", "--timeout", "0.3", "--interval", "0.1")
    assert waited.exit_code == 1
    said = f"{tx['id']}: pending_approval: needs 1 more from treasury: approver2, approver3"
    assert waited.stderr.splitlines()[0] == said, "said once, on stderr, while nothing changes"
    listed = world.run("viewer", "transactions", "--state", "pending_approval", "--limit", "200")
    row = next(line for line in listed.stdout.splitlines() if line.startswith(tx["id"]))
    assert " treasury " in row and row.rstrip().endswith("initiator")
    world.json("initiator", "cancel", tx["id"])


def test_vault_create(world: World) -> None:
    proposal = world.json("admin", "vault", "create", "cli-vault", "-t", "2", "--node", "node1", "--node", "node2")
    # Before signing, the admin sees the key the holders stated and the vault's first address, derived from it.
    shown = world.run("admin", "approve", proposal["id"], "--key", str(world.keys["admin"]), "--yes")
    assert shown.exit_code == 0, shown.stderr
    assert "2 of 2 node(s) sign with it, each stating it holds it for this organisation" in shown.stdout
    world.json("admin2", "approve", proposal["id"], "--key", str(world.keys["admin2"]), "--yes")
    vault_id = proposal["changes"][0]["id"]
    vault = world.json("viewer", "vault", "show", vault_id)
    assert vault["nodes"] == ["node1", "node2"] and vault["threshold"] == 2
    first = world.json("admin", "address", "new", "--vault", vault_id)["address"]
    assert f"'cli-vault' pays out of and takes deposits at {first} (m/0) first" in shown.stdout


def _nodes(world: World) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for n in world.json("viewer", "governance", "nodes")["nodes"]}


def test_governance_remove_node_stops_new_vault_keys_on_it_and_add_node_names_it_again(world: World) -> None:
    shown = _nodes(world)
    assert [(n, shown[n]["in_log"], shown[n]["configured"]) for n in shown] == [
        (f"node{i}", True, True) for i in (1, 2, 3)
    ]
    key = shown["node3"]["identity_key"]
    removal = world.json("admin", "governance", "remove-node", "node3")
    assert [c["op"] for c in removal["changes"]] == ["node.remove"] and key in removal["changes"][0]["description"]
    world.govern(removal)
    try:
        assert (_nodes(world)["node3"]["in_log"], _nodes(world)["node3"]["configured"]) == (False, True)
        table = world.run("viewer", "governance", "nodes")
        assert table.exit_code == 0 and any(
            line.split()[:3] == ["node3", "no", "yes"] for line in table.stdout.splitlines()
        ), table.stdout
        vault = world.run("admin", "vault", "create", "on-node3", "-t", "2", "--node", "node1", "--node", "node3")
        refused(vault, 1, "does not name node(s) node3", "409")
        refused(world.run("admin", "governance", "remove-node", "node3"), 2, "names no signer node 'node3'", "404")
        proposal = world.json("admin", "governance", "add-node", "node3")
        assert [c["description"] for c in proposal["changes"]] == [
            f"signer node 'node3' (identity key {key}) may hold vault keys"  # the descriptor's key, for the admins
        ]
        world.govern(proposal)
        assert _nodes(world)["node3"] == {**shown["node3"], "in_log": True}
    finally:
        if not _nodes(world)["node3"]["in_log"]:  # the other tests make vaults on every node
            world.env.govern(world.env.custody.add_node(world.env.actor("admin"), "node3"))


def test_governance_node_changes_are_refused_for_unknown_named_or_not_admin(world: World) -> None:
    refused(world.run("admin", "governance", "add-node", "node9"), 2, "no signer node named 'node9'", "404")
    refused(world.run("admin", "governance", "add-node", "node1"), 1, "names node 'node1'", "already", "409")
    refused(world.run("viewer", "governance", "add-node", "node1"), 1, "admin", "403")
    refused(world.run("initiator", "governance", "remove-node", "node1"), 1, "admin", "403")
    refused(world.run("admin", "governance", "remove-node", "node9"), 2, "names no signer node 'node9'", "404")


def test_governance_changes_to_a_user_and_the_log(world: World, tmp_path: Path) -> None:
    key_file = tmp_path / "dora.pem"
    first = world.json(None, "approver-key", "new", "--out", str(key_file))["public_key"]
    dora = world.govern(world.json("admin", "user", "create", "dora", "--role", "viewer"))["changes"][0]["id"]
    world.govern(world.json("admin", "user", "set-key", dora, "--approval-key", first))
    world.govern(world.json("admin", "user", "roles", dora, "--role", "approver"))
    shown = world.run("admin", "user", "disable", dora)
    assert shown.exit_code == 0 and f"disable user {dora}" in shown.stdout and "harbour approve" in shown.stdout
    proposal = next(
        t for t in world.json("viewer", "transactions", "--state", "pending_approval", "--all")["items"]
        if t["kind"] == "governance"
    )  # fmt: skip
    world.govern(proposal)
    users = {u["id"]: u for u in world.json("viewer", "user", "list", "--all")["items"]}
    assert users[dora]["disabled"] is True and users[dora]["roles"] == ["approver"]
    world.govern(world.json("admin", "user", "enable", dora))
    head = world.json("viewer", "governance", "head")
    entries = world.json("auditor", "governance", "entries", "--all")["items"]
    assert entries[-1]["hash"] == head["hash"] and entries[0]["hash"] == head["genesis"]
    assert entries[-1]["changes"][0]["description"] == f"re-enable user {dora}"
    table = world.run("auditor", "governance", "entries", "--limit", "200")
    assert table.exit_code == 0 and f"  - re-enable user {dora}" in table.stdout and "the genesis" in table.stdout
    admin = world.env.user_id("admin")
    second = world.env.user_id("admin2")  # who never proposes here: named only as a signer
    assert f"proposed by alice-admin ({admin})" in table.stdout and f"admin2 ({second})" in table.stdout


def test_governance_push_brings_the_nodes_what_a_withholding_service_kept_back(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The service lands an entry and pushes it to no node; an admin's ``governance push`` brings every node to it."""
    monkeypatch.setattr(world.env.custody.signer, "push", lambda *args, **kwargs: {})  # the withholding service
    world.govern(world.json("admin", "user", "create", f"erin-{tmp_path.name[-6:]}", "--role", "viewer"))
    head = world.json("viewer", "governance", "head")
    nodes = ",".join(str(n.directory / "descriptor.json") for n in world.env.nodes)
    pushed = world.json("viewer", "governance", "push", "--nodes", nodes)
    assert pushed["head"] == head["hash"] and len(pushed["nodes"]) == len(world.env.nodes)
    assert all(row["head"] == head["hash"] and row["sent"] >= 1 for row in pushed["nodes"]), pushed
    again = world.json("viewer", "governance", "push", "--nodes", nodes)
    assert [row["sent"] for row in again["nodes"]] == [0] * len(world.env.nodes)
    # A node that cannot be reached is named, and the command fails.
    gone = tmp_path / "gone.json"
    gone.write_text(
        NodeDescriptor(
            "gone", "http://127.0.0.1:9", bytes(Ed25519PrivateKey.generate().public_key().public_bytes_raw())
        ).to_json()
    )
    result = world.run("viewer", "governance", "push", "--nodes", f"{nodes},{gone}")
    refused(result, 1, "not brought to the head: gone")
    assert "gone: NOT at the head" in result.stdout


def test_governance_push_refuses_a_log_from_another_genesis(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_genesis, _ = _fake_organisation(world)
    trust = tmp_path / "trusted.json"
    real = _org_log(world)[0].hash.hex()
    assert world.run("admin", "governance", "trust", real, env={"HARBOUR_TRUSTED_ORGS": str(trust)}).exit_code == 0
    _serve_log(monkeypatch, world, [fake_genesis])
    nodes = ",".join(str(n.directory / "descriptor.json") for n in world.env.nodes)
    result = world.run("viewer", "governance", "push", "--nodes", nodes, env={"HARBOUR_TRUSTED_ORGS": str(trust)})
    refused(result, 1, "refusing to push", fake_genesis.hash.hex(), real)


# -- withdrawals and approvals ----------------------------------------------------------------------------------


def test_withdraw_approve_and_wait_until_confirmed(world: World) -> None:
    result = world.run(
        "initiator", "withdraw", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST, "--amount", "1000", "--json"
    )
    assert result.exit_code == 0, result.stderr
    tx = json.loads(result.stdout)
    assert tx["state"] == "pending_approval"
    assert "idempotency key: cli-" in result.stderr
    # Retrying with the key it printed returns the same transaction.
    again = withdraw(world, "--idempotency-key", tx["idempotency_key"])
    assert again["id"] == tx["id"]

    status = world.json("viewer", "status", tx["id"])
    assert status["state"] == "pending_approval"
    first = world.run("approver1", "approve", tx["id"], "--key", str(world.keys["approver1"]), "--yes")
    assert first.exit_code == 0, first.stderr
    assert "1000" in first.stdout and DEST in first.stdout, "the intent is shown before signing"
    second = world.json("approver2", "approve", tx["id"], "--key", str(world.keys["approver2"]), "--yes")
    assert second["state"] in ("approved", "signing", "broadcast", "confirmed")
    final = world.run("viewer", "status", tx["id"], "--wait", "--timeout", "120", "--interval", "0.2", "--json")
    assert final.exit_code == 0, final.stderr
    assert json.loads(final.stdout)["state"] == "confirmed"
    listed = world.json("viewer", "transactions", "--state", "confirmed", "--all")
    assert tx["id"] in {t["id"] for t in listed["items"]}


def test_withdraw_signed_with_the_initiators_key_when_the_policy_depends_on_who_initiates(world: World) -> None:
    admin = world.env.actor("admin")
    before = world.env.custody.get_policy(admin)["document"]
    bot = {
        "rules": [
            {
                "name": "the bot pays small sums",
                "action": "allow",
                "match": {"initiators": [world.env.user_id("initiator")], "assets": ["ETH"], "amount": {"max": "5000"}},
            },
            {"name": "nobody else", "action": "block"},
        ]
    }
    world.govern(world.env.custody.propose_policy(admin, bot))
    try:
        unsigned = world.run(
            "initiator", "withdraw", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST, "--amount", "700"
        )
        refused(unsigned, 2, "must be signed by its initiator")  # a 422: the request as sent cannot be used
        key = world.keys["initiator"]
        tx = withdraw(world, "--key", str(key), "--idempotency-key", "signed-once", amount="700")
        assert tx["initiator_signature"] and tx["state"] in ("approved", "signing", "broadcast", "confirmed"), tx
        again = withdraw(world, "--key", str(key), "--idempotency-key", "signed-once", amount="700")
        assert again["id"] == tx["id"], "a retry sends the same signed request"
        done = world.run("viewer", "status", tx["id"], "--wait", "--timeout", "120", "--interval", "0.2", "--json")
        assert json.loads(done.stdout)["state"] == "confirmed", done.stdout
        # Someone else's key: the service refuses the request as not its initiator's.
        other = world.run(
            "initiator", "withdraw", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST, "--amount", "700",
            "--key", str(world.keys["approver1"]),
        )  # fmt: skip
        refused(other, 2, "not its initiator's")  # a 422 too
    finally:
        world.govern(world.env.custody.propose_policy(admin, before))


def test_withdraw_in_whole_units(world: World) -> None:
    tx = withdraw(world, "--decimals", "18", amount="0.000000000000002")
    assert tx["amount"] == "2000"


def test_reject_and_cancel(world: World) -> None:
    tx = withdraw(world)
    rejected = world.json("approver3", "reject", tx["id"], "--key", str(world.keys["approver3"]), "--yes")
    assert rejected["state"] == "rejected"
    waited = world.run("viewer", "status", tx["id"], "--wait", "--json")
    assert waited.exit_code == 1 and json.loads(waited.stdout)["state"] == "rejected"
    other = withdraw(world)
    assert world.json("initiator", "cancel", other["id"])["state"] == "cancelled"
    refused(world.run("initiator", "cancel", other["id"]), 1, "cancelled")


def test_estimate_and_the_fee_options_of_withdraw(world: World) -> None:
    found = world.json(
        "initiator", "estimate", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST, "--amount", "1000"
    )
    assert found["gas_limit"] == 21_000 and set(found["levels"]) == {"slow", "normal", "fast"}
    fast = found["levels"]["fast"]
    assert int(fast["max_fee"]) == 21_000 * int(fast["max_fee_per_gas"])
    shown = world.run(
        "initiator", "estimate", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST, "--amount", "1"
    )
    assert shown.exit_code == 0 and "gas_limit" in shown.stdout and "max fee" in shown.stdout
    tx = withdraw(world, "--fee-level", "fast")
    assert tx["fee_level"] == "fast" and tx["gas_limit"] == 21_000
    capped = withdraw(world, "--max-fee-per-gas", "90000000000", "--max-priority-fee-per-gas", "2000000000")
    assert capped["max_fee_per_gas"] == "90000000000" and capped["max_fee"] == str(21_000 * 90_000_000_000)
    refused(world.run("initiator", "withdraw", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST,
                      "--amount", "1", "--fee-level", "urgent"), 2, "--fee-level")  # fmt: skip
    refused(world.run("initiator", "withdraw", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST,
                      "--amount", "1", "--max-fee-per-gas", "-5"), 2, "--max-fee-per-gas")  # fmt: skip
    refused(world.run("initiator", "withdraw", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST,
                      "--amount", "1", "--max-fee-per-gas", "100000000000000"), 2, "max_fee_per_gas")  # fmt: skip
    refused(world.run("initiator", "speed-up", tx["id"]), 1, "only a broadcast withdrawal")
    refused(world.run("viewer", "speed-up", tx["id"]), 1)


def test_approve_needs_yes_without_a_terminal(world: World) -> None:
    tx = withdraw(world)
    refused(world.run("approver1", "approve", tx["id"], "--key", str(world.keys["approver1"])), 2, "--yes")
    assert world.json("viewer", "status", tx["id"])["approvals"] == []


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: r["intent"].update(amount="999999"), id="intent amount"),
        pytest.param(lambda r: r["intent"].update(to="0x" + "11" * 20), id="intent recipient"),
        pytest.param(lambda r: r.update(statement="00" + r["statement"][2:]), id="statement"),
        pytest.param(lambda r: r.update(path="m/7"), id="path"),
        pytest.param(lambda r: r.update(org="another-org"), id="organisation"),
        pytest.param(lambda r: r["transaction"].update(id="00000000-0000-4000-8000-000000000000"), id="transaction"),
    ],
)
def test_approve_refuses_a_statement_that_does_not_match(
    world: World, monkeypatch: pytest.MonkeyPatch, tamper: Any
) -> None:
    tx = withdraw(world)
    honest = world.env.custody.approval_request

    def lying(actor: Any, tx_id: str) -> dict[str, Any]:
        request = honest(actor, tx_id)
        tamper(request)
        return request

    monkeypatch.setattr(world.env.custody, "approval_request", lying)
    result = world.run("approver1", "approve", tx["id"], "--key", str(world.keys["approver1"]), "--yes")
    refused(result, 1, "refusing to sign")
    assert world.json("viewer", "status", tx["id"])["approvals"] == []


def _other_entry(request: dict[str, Any]) -> bytes:
    """The request's entry with its changes swapped for another: valid bytes that say something else."""
    from harbour.governance import changes
    from harbour.governance.log import Entry

    entry = Entry.decode(bytes.fromhex(request["entry"]))
    other = Entry(entry.org, entry.seq, entry.prev, entry.proposer, entry.at, (changes.SetQuorum(1),))
    return other.encode()


def _swap_entry(request: dict[str, Any]) -> None:
    data = _other_entry(request).hex()
    request.update(entry=data, statement=data)


def _swap_everything(request: dict[str, Any]) -> None:
    """A consistent lie: bytes, statement and both descriptions all say the other entry."""
    data = _other_entry(request)
    from harbour.governance import changes
    from harbour.governance.log import Entry

    lines = [changes.describe(c) for c in Entry.decode(data).changes]
    request.update(entry=data.hex(), statement=data.hex(), changes=lines)
    request["transaction"]["changes"] = [{"op": "quorum", "description": lines[0], "id": None}]


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda r: r.update(changes=["add user 'nobody'"]), id="described otherwise"),
        pytest.param(lambda r: r["transaction"]["changes"][0].update(description="nothing"), id="transaction says"),
        pytest.param(_swap_entry, id="other bytes"),
        pytest.param(_swap_everything, id="other bytes, described alike"),
        pytest.param(lambda r: r.update(entry="a0", statement="a0"), id="not an entry"),
        pytest.param(lambda r: r.update(org="another-org"), id="organisation"),
    ],
)
def test_approve_refuses_a_governance_entry_that_is_not_what_it_is_said_to_be(
    world: World, monkeypatch: pytest.MonkeyPatch, tamper: Any
) -> None:
    proposal = world.json("admin", "address-book", "add", "lure", "0x" + "77" * 20)
    honest = world.env.custody.approval_request

    def lying(actor: Any, tx_id: str) -> dict[str, Any]:
        request = honest(actor, tx_id)
        tamper(request)
        return request

    monkeypatch.setattr(world.env.custody, "approval_request", lying)
    result = world.run("admin", "approve", proposal["id"], "--key", str(world.keys["admin"]), "--yes")
    refused(result, 1, "refusing to sign")
    assert world.json("viewer", "status", proposal["id"])["approvals"] == []
    world.json("admin", "cancel", proposal["id"])


def test_approve_shows_the_governance_changes_the_bytes_decode_to(world: World) -> None:
    proposal = world.json("admin", "address-book", "add", "shown", "0x" + "78" * 20)
    shown = world.run("admin", "approve", proposal["id"], "--key", str(world.keys["admin"]), "--yes")
    assert shown.exit_code == 0, shown.stderr
    assert f"governance entry {proposal['seq']}" in shown.stdout
    assert f"add 0x{'78' * 20} to the address book as 'shown'" in shown.stdout
    world.json("admin", "cancel", proposal["id"])


# -- which organisation's log a signed entry extends -------------------------------------------------------------


def _org_log(world: World) -> list[SignedEntry]:
    return list(world.env.custody.governance_log(world.env.actor("admin").org_id).entries)


def _serve_log(monkeypatch: pytest.MonkeyPatch, world: World, entries: list[SignedEntry]) -> None:
    """The server serves ``entries`` as the organisation's log, two a page, however many the client asks for."""
    from harbour.custody.logview import entry_view
    from harbour.governance.state import genesis_state

    names = genesis_state(entries[0])  # only to name the signers, as the service does

    def lying(actor: Any, page: Any) -> dict[str, Any]:
        start = 0 if page.cursor is None else int(page.cursor)
        items = [entry_view(e, names, None) for e in entries[start : start + 2]]
        return {"items": items, "next_cursor": str(start + 2) if start + 2 < len(entries) else None}

    monkeypatch.setattr(world.env.custody, "governance_entries", lying)


def _request_instead(monkeypatch: pytest.MonkeyPatch, world: World, make: Any) -> None:
    """The server asks to sign ``make(the proposed entry)`` instead, and describes it consistently everywhere."""
    from harbour.custody.views import governance_change
    from harbour.governance.changes import describe

    honest = world.env.custody.approval_request

    def lying(actor: Any, tx_id: str) -> dict[str, Any]:
        request = honest(actor, tx_id)
        entry: Entry = make(Entry.decode(bytes.fromhex(request["entry"])))
        data = entry.encode().hex()
        request.update(entry=data, statement=data, changes=[describe(c) for c in entry.changes])
        request["transaction"].update(
            entry=data, seq=entry.seq, prev=entry.prev.hex(), changes=[governance_change(c) for c in entry.changes]
        )
        return request

    monkeypatch.setattr(world.env.custody, "approval_request", lying)


def _approve(world: World, who: str, tx_id: str, trust: Path) -> Result:
    return world.run(
        who, "approve", tx_id, "--key", str(world.keys[who]), "--yes", env={"HARBOUR_TRUSTED_ORGS": str(trust)}
    )


def _unsigned(world: World, tx_id: str) -> None:
    assert world.json("viewer", "status", tx_id)["approvals"] == []
    world.json("admin", "cancel", tx_id)


def test_the_first_approval_pins_the_genesis_and_later_ones_check_it(world: World, tmp_path: Path) -> None:
    trust = tmp_path / "harbour" / "trusted-orgs.json"
    genesis = world.json("viewer", "governance", "head")["genesis"]
    proposal = world.json("admin", "address-book", "add", "pinned", "0x" + "79" * 20)
    org = world.env.actor("admin").org_id
    first = _approve(world, "admin", proposal["id"], trust)
    assert first.exit_code == 0, first.stderr
    assert f"pinned organisation {org}'s genesis {genesis}" in first.stderr
    assert "harbour custody bootstrap" in first.stderr, "the admin is told what to compare it with"
    assert f"verified from genesis {genesis}" in first.stdout
    head = world.json("viewer", "governance", "head")
    assert json.loads(trust.read_text()) == {
        "version": 1,
        "pins": {world.url: {org: genesis}},
        "seen": {world.url: {org: [head["seq"], head["hash"]]}},
    }
    assert stat.S_IMODE(trust.stat().st_mode) == 0o600
    second = _approve(world, "admin2", proposal["id"], trust)
    assert second.exit_code == 0, second.stderr
    assert "pinned" not in second.stderr, "a pinned genesis is checked, not pinned again"
    assert world.json("viewer", "status", proposal["id"])["state"] == "confirmed"


def test_a_server_that_serves_less_of_the_log_than_the_cli_verified_before_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Withholding the newest entries from the API too would make push report an older head as the head."""
    trust = {"HARBOUR_TRUSTED_ORGS": str(tmp_path / "trusted.json")}
    nodes = ",".join(str(n.directory / "descriptor.json") for n in world.env.nodes)
    assert world.run("viewer", "governance", "push", "--nodes", nodes, env=trust).exit_code == 0
    entries = _org_log(world)
    _serve_log(monkeypatch, world, entries[:-1])
    result = world.run("viewer", "governance", "push", "--nodes", nodes, env=trust)
    refused(result, 1, "refusing to push", f"does not extend entry {len(entries) - 1}", "withholds or rewrote")


def _fake_organisation(world: World) -> tuple[SignedEntry, Entry]:
    """The fake-organisation attack: a genesis with the real org id and admin keys, plus the attacker's
    admin and an allow-everything policy, and an entry on it for the real admins to sign."""
    from harbour.governance import changes
    from harbour.governance.log import GENESIS_PARENT

    real = _org_log(world)[0].entry
    mallory = Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    allow_all = changes.policy_change({"rules": [{"name": "anything", "match": {}, "action": "allow"}]})
    kept = tuple(c for c in real.changes if not isinstance(c, changes.SetPolicy))
    mallory_admin = changes.AddUser("mallory", "mallory", frozenset({"admin"}), mallory)
    fake = Entry(real.org, 0, GENESIS_PARENT, "mallory", real.at, (*kept, mallory_admin, allow_all))
    genesis = SignedEntry(fake.encode(), ())
    lure = changes.AddAddress("lure-id", "lure", "0x" + "7a" * 20, True)
    return genesis, Entry(real.org, 1, genesis.hash, "mallory", real.at + 1, (lure,))


def test_an_entry_of_a_fake_organisation_with_the_same_id_and_admins_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trust = tmp_path / "trusted-orgs.json"
    real = world.json("viewer", "governance", "head")["genesis"]
    pinned = world.run("admin", "governance", "trust", real, "--json", env={"HARBOUR_TRUSTED_ORGS": str(trust)})
    assert pinned.exit_code == 0, pinned.stderr
    assert json.loads(pinned.stdout)["replaced"] is None
    fake_genesis, fake_entry = _fake_organisation(world)
    assert fake_genesis.hash.hex() != real and fake_genesis.entry.org == world.env.actor("admin").org_id
    proposal = world.json("admin", "address-book", "add", "honest", "0x" + "7b" * 20)
    _serve_log(monkeypatch, world, [fake_genesis])
    _request_instead(monkeypatch, world, lambda _: fake_entry)
    result = _approve(world, "admin", proposal["id"], trust)
    refused(result, 1, "refusing to sign", fake_genesis.hash.hex(), real, "another organisation's log")
    monkeypatch.undo()
    _unsigned(world, proposal["id"])


def test_governance_trust_pins_explicitly_and_says_when_the_server_disagrees(world: World, tmp_path: Path) -> None:
    trust = tmp_path / "trusted-orgs.json"
    env = {"HARBOUR_TRUSTED_ORGS": str(trust)}
    real = world.json("viewer", "governance", "head")["genesis"]
    other = "ab" * 32
    disagree = world.run("admin", "governance", "trust", other.upper(), env=env)
    refused_lines = disagree.stderr.strip().splitlines()
    assert disagree.exit_code == 1 and len(refused_lines) == 1, disagree.stderr
    assert other in disagree.stderr and real in disagree.stderr
    assert ["genesis:", other] in [line.split() for line in disagree.stdout.splitlines()], "pinned all the same"
    proposal = world.json("admin", "address-book", "add", "explicit", "0x" + "7c" * 20)
    refused(_approve(world, "admin", proposal["id"], trust), 1, "refusing to sign", other, real)
    again = world.run("admin", "governance", "trust", real, "--json", env=env)
    assert again.exit_code == 0, again.stderr
    assert json.loads(again.stdout)["replaced"] == other and json.loads(again.stdout)["served"] == real
    assert stat.S_IMODE(trust.stat().st_mode) == 0o600
    signed = _approve(world, "admin", proposal["id"], trust)
    assert signed.exit_code == 0, signed.stderr
    assert "pinned" not in signed.stderr
    world.json("admin", "cancel", proposal["id"])


def test_a_trusted_orgs_file_others_can_write_or_that_is_malformed_is_refused(world: World, tmp_path: Path) -> None:
    trust = tmp_path / "trusted-orgs.json"
    real = world.json("viewer", "governance", "head")["genesis"]
    assert world.run("admin", "governance", "trust", real, env={"HARBOUR_TRUSTED_ORGS": str(trust)}).exit_code == 0
    trust.chmod(0o666)
    proposal = world.json("admin", "address-book", "add", "shared", "0x" + "7d" * 20)
    refused(_approve(world, "admin", proposal["id"], trust), 2, "writable by others")
    trust.chmod(0o600)
    trust.write_text(json.dumps({"version": 1, "pins": {world.url: {"org": "not a hash"}}}))
    refused(_approve(world, "admin", proposal["id"], trust), 2, "not a trusted-orgs file")
    for head in ([-1, real], [3], ["3", real], [3, "not a hash"]):
        trust.write_text(json.dumps({"version": 1, "pins": {}, "seen": {world.url: {"org": head}}}))
        refused(_approve(world, "admin", proposal["id"], trust), 2, "not a trusted-orgs file")
    _unsigned(world, proposal["id"])


def test_a_log_with_a_broken_entry_in_the_middle_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trust = tmp_path / "trusted-orgs.json"
    proposal = world.json("admin", "address-book", "add", "broken", "0x" + "7e" * 20)
    log = _org_log(world)
    assert len(log) >= 5
    middle = log[len(log) // 2]
    (key, signature), *rest = middle.signatures
    forged = SignedEntry(middle.data, ((key, signature[:-1] + bytes([signature[-1] ^ 1])), *rest))
    _serve_log(monkeypatch, world, [*log[: len(log) // 2], forged, *log[len(log) // 2 + 1 :]])
    result = _approve(world, "admin", proposal["id"], trust)
    refused(result, 1, "refusing to sign", f"does not verify at entry {middle.entry.seq} (signature)")
    assert not trust.exists(), "nothing is pinned from a log that does not verify"
    _serve_log(monkeypatch, world, log)  # the same log, served whole, two entries a page
    assert _approve(world, "admin", proposal["id"], trust).exit_code == 0
    world.json("admin", "cancel", proposal["id"])


def test_an_entry_that_is_not_the_next_on_the_verified_head_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses

    log = _org_log(world)
    proposal = world.json("admin", "address-book", "add", "stale", "0x" + "7f" * 20)
    _request_instead(monkeypatch, world, lambda e: dataclasses.replace(e, prev=log[-2].hash))
    result = _approve(world, "admin", proposal["id"], tmp_path / "trusted-orgs.json")
    refused(result, 1, "refusing to sign", f"after {log[-2].hash.hex()}", f"after {log[-1].hash.hex()}")
    monkeypatch.undo()
    _unsigned(world, proposal["id"])


def test_an_entry_whose_changes_do_not_apply_to_the_verified_state_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import dataclasses

    from harbour.governance import changes

    proposal = world.json("admin", "address-book", "add", "ghost", "0x" + "80" * 20)
    _request_instead(monkeypatch, world, lambda e: dataclasses.replace(e, changes=(changes.DisableUser("nobody"),)))
    result = _approve(world, "admin", proposal["id"], tmp_path / "trusted-orgs.json")
    refused(result, 1, "refusing to sign", "do not apply to the verified state", "no user 'nobody'")
    monkeypatch.undo()
    _unsigned(world, proposal["id"])


# -- policy and audit ---------------------------------------------------------------------------------------------


def test_policy_show_explain_propose_and_approve(world: World, tmp_path: Path) -> None:
    current = world.json("viewer", "policy", "show")
    text = world.run("viewer", "policy", "show")
    assert text.exit_code == 0 and "treasury approval" in text.stdout
    decision = world.json(
        "initiator", "policy", "explain", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST, "--amount", "1"
    )
    assert decision["action"] == "require_approval"
    human = world.run(
        "initiator", "policy", "explain", "--vault", world.vault_id, "--asset", "ETH", "--to", DEST, "--amount", "1"
    )
    assert human.exit_code == 0 and "treasury approval" in human.stdout

    document = tmp_path / "policy.json"
    document.write_text(json.dumps(current["document"]))  # the same rules: later tests are unaffected
    proposal = world.json("admin", "policy", "propose", str(document))
    assert proposal["kind"] == "governance" and [c["op"] for c in proposal["changes"]] == ["policy"]
    world.govern(proposal)
    assert world.json("viewer", "policy", "show")["version"] == current["version"] + 1
    versions = world.json("viewer", "policy", "versions", "--all")
    assert [v["version"] for v in versions["items"]][-2:] == [current["version"], current["version"] + 1]

    broken = tmp_path / "broken.json"
    broken.write_text('{"rules": [{"name": "x", "action": "launch"}]}')
    refused(world.run("admin", "policy", "propose", str(broken)), 2, "broken.json")
    refused(world.run("admin", "policy", "propose", str(tmp_path / "missing.json")), 2, "cannot read")


def test_a_policy_by_names_is_proposed_with_ids_and_approve_shows_it_against_the_policy_in_force(
    world: World, tmp_path: Path
) -> None:
    current = world.json("viewer", "policy", "show")["document"]
    document = json.loads(json.dumps(current))
    group = document["rules"][0]["approvals"]["groups"][0]
    group.update(members=["approver1", "Approver2", "APPROVER3"], threshold=1)
    named = tmp_path / "named.json"
    named.write_text(json.dumps(document))
    proposal = world.json("admin", "policy", "propose", str(named))
    shown = world.run("admin", "approve", proposal["id"], "--key", str(world.keys["admin"]), "--yes")
    assert shown.exit_code == 0, shown.stderr
    was = "rule 1 'treasury approval': approvals (all) group 'treasury': {} of 'approver1', 'approver2', 'approver3'"
    assert f"    - {was.format(2)}" in shown.stdout and f"    + {was.format(1)}" in shown.stdout
    assert "  rules:   1 line(s) added (+), 1 removed (-), against the policy in force" in shown.stdout
    request = world.env.custody.approval_request(world.env.actor("admin2"), proposal["id"])
    signed = Entry.decode(bytes.fromhex(request["entry"])).changes[0]
    assert isinstance(signed, SetPolicy)
    ids = sorted(world.env.user_id(f"approver{i}") for i in (1, 2, 3))
    assert json.loads(signed.document)["rules"][0]["approvals"]["groups"][0]["members"] == ids
    world.json("admin", "cancel", proposal["id"])

    group.update(members=["approver1", "viewer"])
    named.write_text(json.dumps(document))
    refused(world.run("admin", "policy", "propose", str(named)), 2, "member 'viewer'", "approver role", "422")


def test_audit_commands_verify_locally(world: World, tmp_path: Path) -> None:
    key = world.env.custody.audit.public_key_hex
    events = world.json("auditor", "audit", "events", "--limit", "3")
    assert [e["index"] for e in events["items"]] == [0, 1, 2]
    head = world.json("auditor", "audit", "head", "--audit-key", key)
    assert head["verified"] is True and head["tree_size"] > 3
    proof = world.json("auditor", "audit", "proof", "2")
    assert proof["event"]["index"] == 2
    verified = world.json("auditor", "audit", "verify-proof", "2", "--audit-key", key)
    assert verified["verified"] is True and verified["event"] == events["items"][2]
    key_file = tmp_path / "audit.pub"
    key_file.write_text(key + "\n")
    assert world.json("admin", "audit", "verify-proof", "1", "--audit-key", str(key_file))["verified"] is True

    wrong = "ab" * 32
    refused(world.run("auditor", "audit", "verify-proof", "2", "--audit-key", wrong), 1, "does NOT verify")
    refused(world.run("auditor", "audit", "head", "--audit-key", wrong), 1, "does NOT verify")

    old = world.json("auditor", "audit", "head")
    world.json("admin", "address", "new", "--vault", world.vault_id)  # the log grows
    grown = world.json(
        "auditor", "audit", "verify-consistency", "--old", str(old["tree_size"]), "--old-root", old["root"],
        "--audit-key", key,
    )  # fmt: skip
    assert grown["verified"] is True and grown["new_size"] > old["tree_size"]
    forged_root = world.run(
        "auditor", "audit", "verify-consistency", "--old", str(old["tree_size"]), "--old-root", "00" * 32,
        "--audit-key", key,
    )  # fmt: skip
    refused(forged_root, 1, "does NOT extend")
    refused(world.run("viewer", "audit", "events"), 1, "auditor")


def test_deposit_list(world: World) -> None:
    world.env.chain.fund(world.address, 4242)
    wait_until(
        lambda: any(d["amount"] == "4242" for d in world.json("viewer", "deposit", "list", "--all")["items"]),
        60,
        message="the deposit to be listed",
    )
    table = world.run("viewer", "deposit", "list", "--limit", "200")
    assert table.exit_code == 0 and "4242" in table.stdout


# -- bad input and refusals ----------------------------------------------------------------------------------------

WITHDRAW = ["withdraw", "--vault", "{vault}", "--asset", "ETH", "--to", DEST, "--amount", "1000"]


def replace(args: list[str], option: str, value: str) -> list[str]:
    out = list(args)
    out[out.index(option) + 1] = value
    return out


USAGE_ERRORS = {
    "fractional amount": (replace(WITHDRAW, "--amount", "1.5"), "--amount"),
    "exponent": (replace(WITHDRAW, "--amount", "1e18"), "--amount"),
    "negative": (replace(WITHDRAW, "--amount", "-5"), "--amount"),
    "zero": (replace(WITHDRAW, "--amount", "0"), "--amount"),
    "too precise": ([*replace(WITHDRAW, "--amount", "1.0000000000000000001"), "--decimals", "18"], "decimal places"),
    "2^256": (replace(WITHDRAW, "--amount", str(2**256)), "--amount"),
    "bad checksum": (replace(WITHDRAW, "--to", BAD_CHECKSUM), "checksum"),
    "short address": (replace(WITHDRAW, "--to", "0x1234"), "--to"),
    "idempotency key": ([*WITHDRAW, "--idempotency-key", "a b"], "--idempotency-key"),
    "unknown role": (["user", "create", "x", "--role", "root"], "--role"),
    "approval key": (["user", "create", "x", "--role", "approver", "--approval-key", "zz"], "--approval-key"),
    "threshold 1": (["vault", "create", "x", "-t", "1"], "--threshold"),
    "limit 0": (["user", "list", "--limit", "0"], "--limit"),
    "limit 201": (["transactions", "--limit", "201"], "--limit"),
    "tx id": (["status", "42"], "TX"),
    "erc20 without contract": (["asset", "add", "TUSD", "--kind", "erc20"], "--contract"),
    "bad api url": (["org", "show", "--api", "ftp://example"], "--api"),
    "audit key": (["audit", "verify-proof", "1", "--audit-key", "nope"], "--audit-key"),
    "genesis hash": (["governance", "trust", "ab" * 31], "GENESIS"),
    "node name": (["governance", "add-node", "../node1"], "NAME"),
    "node name to remove": (["governance", "remove-node", "node 1"], "NAME"),
}


@pytest.mark.parametrize("case", list(USAGE_ERRORS))
def test_bad_input_exits_2_before_any_request(world: World, case: str) -> None:
    args, fragment = USAGE_ERRORS[case]
    args = [a.replace("{vault}", world.vault_id) for a in args]
    # Pointed at a port nobody listens on: a request would fail with exit 1, not 2.
    result = world.run("admin", *args, env={"HARBOUR_API": "http://127.0.0.1:9"})
    refused(result, 2, fragment)
    assert result.stdout == ""


def test_missing_token_is_a_usage_error(world: World) -> None:
    refused(world.run(None, "org", "show"), 2, "HARBOUR_TOKEN")


def test_api_refusals_exit_by_their_status_with_the_problem_detail(world: World) -> None:
    refused(world.run(None, "org", "show", "--token", "hbk_x_" + "00" * 32), 1, "credential", "401")
    refused(world.run("viewer", *[a.replace("{vault}", world.vault_id) for a in WITHDRAW]), 1, "initiator", "403")
    refused(world.run("viewer", "status", "00000000-0000-4000-8000-000000000000"), 2, "no transaction", "404")
    refused(
        world.run("initiator", *replace(WITHDRAW, "--vault", "00000000-0000-4000-8000-000000000000")), 2, "no vault"
    )


def test_api_refusals_under_json_are_the_apis_problem_documents_on_stdout(world: World) -> None:
    missing = problem(world.run("viewer", "status", "00000000-0000-4000-8000-000000000000", "--json"), 2)
    assert (missing["status"], missing["type"]) == (404, "https://harbour.dev/problems/not-found"), missing
    assert missing["instance"].startswith("/v1/"), "the API's own fields are kept"
    taken = problem(world.run("admin", "governance", "add-node", "node1", "--json"), 1, "already")
    assert (taken["status"], taken["type"]) == (409, "https://harbour.dev/problems/conflict"), taken
    forbidden = problem(world.run("viewer", "governance", "add-node", "node1", "--json"), 1)
    assert forbidden["status"] == 403
    local = problem(world.run("admin", "vault", "archive", "not-an-id", "--json"), 2)
    assert local["type"] == "https://harbour.dev/problems/cli-input" and local["status"] == 400
    shown = json.dumps([missing, taken, forbidden, local])
    assert all(person.token not in shown for person in world.env.people.values()), "a credential is never echoed"


def test_unreachable_api(world: World) -> None:
    result = world.run("viewer", "org", "show", env={"HARBOUR_API": "http://127.0.0.1:9"})
    refused(result, 1, "cannot reach")
    args = [a.replace("{vault}", world.vault_id) for a in WITHDRAW]
    lost = world.run("initiator", *args, "--idempotency-key", "lost-1", env={"HARBOUR_API": "http://127.0.0.1:9"})
    refused(lost, 1, "cannot reach", "--idempotency-key lost-1")


# -- amounts ------------------------------------------------------------------------------------------------------


def test_parse_amount_is_exact() -> None:
    assert parse_amount("1", None) == 1
    assert parse_amount("1.1", 18) == 1_100_000_000_000_000_000
    assert parse_amount("0.000000000000000001", 18) == 1
    assert parse_amount("1.50", 1) == 15
    assert parse_amount("123", 6) == 123_000_000
    assert parse_amount(str(2**256 - 1), None) == 2**256 - 1
    for bad, decimals in [("1.5", None), ("1.05", 1), ("", None), (" ", 18), ("1,5", 18), ("0.0", 18), ("1e3", 18)]:
        with pytest.raises(InputError):
            parse_amount(bad, decimals)
    with pytest.raises(InputError):
        parse_amount("1", 37)


CUSTODY_COMMANDS = [
    "org", "user", "vault", "address", "asset", "address-book", "deposit", "withdraw", "approve", "reject",
    "cancel", "speed-up", "estimate", "status", "transactions", "approver-key", "policy", "governance", "audit",
    "webhook",
]  # fmt: skip


def test_every_custody_command_has_json_api_and_token_options() -> None:
    root: Any = typer.main.get_command(app)
    commands: list[tuple[str, Any]] = []
    for name in CUSTODY_COMMANDS:
        command = root.commands[name]
        if hasattr(command, "commands"):  # a group
            commands.extend((f"{name} {sub}", c) for sub, c in command.commands.items())
        else:
            commands.append((name, command))
    assert len(commands) >= 30
    for name, command in commands:
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        assert "--json" in options, name
        if not name.startswith("approver-key") and name not in ("audit verify", "audit baseline"):  # local only
            assert {"--api", "--token"} <= options, name


# -- login and profiles -------------------------------------------------------------------------------------------


def _in(config: Path, *args: str, token: str | None = None, env: Mapping[str, str | None] | None = None) -> Result:
    variables = {"XDG_CONFIG_HOME": str(config), "HARBOUR_API": None, "HARBOUR_TOKEN": None, "HARBOUR_PROFILE": None}
    typed = None if token is None else token + "\n"
    return runner.invoke(app, list(args), input=typed, env={**variables, **(env or {})})


def test_login_keeps_a_checked_credential_in_an_owner_only_file_and_commands_use_it(
    world: World, tmp_path: Path
) -> None:
    token = world.env.people["viewer"].token
    logged = _in(tmp_path, "login", "--api", world.url, "--profile", "prod", "--json", token=token)
    doc = one_document(logged)
    assert (doc["profile"], doc["user"], doc["api"]) == ("prod", "viewer", world.url), doc
    assert token not in logged.stdout + logged.stderr, "a credential is never printed"
    token_file = tmp_path / "harbour" / "tokens" / "prod"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "harbour" / "profiles.json").stat().st_mode) == 0o600
    assert token not in (tmp_path / "harbour" / "profiles.json").read_text()

    shown = one_document(_in(tmp_path, "org", "show", "--json"))  # no --api, no token: the profile's
    assert shown == world.json("viewer", "org", "show"), "the same as with the credential given explicitly"
    listed = one_document(_in(tmp_path, "profile", "list", "--json"))
    assert listed == {
        "profiles": [{"profile": "prod", "api": world.url, "ca_file": None, "current": True, "logged_in": True}]
    }
    assert token not in json.dumps(listed)
    # Another API named explicitly never receives the profile's credential.
    elsewhere = _in(tmp_path, "org", "show", "--api", "http://127.0.0.1:9")
    refused(elsewhere, 2, "no credential")
    # An unknown profile is named as such.
    refused(_in(tmp_path, "--profile", "staging", "org", "show"), 2, "no profile named 'staging'")

    token_file.chmod(0o644)
    refused(_in(tmp_path, "org", "show"), 2, "readable or writable by others", "revoke")
    token_file.chmod(0o600)

    out = one_document(_in(tmp_path, "logout", "--json"))
    assert out == {"profile": "prod", "forgotten": True} and not token_file.exists()
    refused(_in(tmp_path, "org", "show"), 2, "no credential")


def test_login_refuses_a_bad_credential_and_keeps_nothing(world: World, tmp_path: Path) -> None:
    bad = "hbk_x_" + "00" * 32
    result = _in(tmp_path, "login", "--api", world.url, token=bad)
    refused(result, 1, "401")
    assert bad not in result.stdout + result.stderr
    assert not (tmp_path / "harbour" / "tokens").exists()
    refused(_in(tmp_path, "login", "--api", world.url, token=""), 2, "no credential")
    refused(_in(tmp_path, "login", "--api", world.url, "--profile", "../x", token=bad), 2, "profile name")
    refused(_in(tmp_path, "login", "--api", world.url, "--token", bad), 2, "--token")  # never on the command line
