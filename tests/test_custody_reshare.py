"""A vault's key moved onto a fourth signer node and off a retired one, through the service, on real node processes.

Four ``harbour node run`` processes and one organisation (the module's): the
genesis names node1..node3, the service is then configured with node4 too, as an
operator adds a node. ``treasury`` is a 2-of-3 vault on node1..node3 with ether
on the embedded chain. The scenario test takes node4 in (a ``node.add``, then a
reshare to 3 of 4: 2 of 4 would let two signer sets share no node) and pays with
node2 down, so node4 signs; then retires node1 (a reshare to node2..node4) and
pays again, and shows that node1, given back its old share from a backup, is
refused. The refusals run on the same organisation and change nothing.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from custody_env import ETH, CustodyEnv
from harbour.api.app import create_app
from harbour.api.server import BackgroundServer
from harbour.cli.main import app as harbour
from harbour.custody import signing
from harbour.custody.errors import Conflict, Forbidden, Invalid, NotFound
from harbour.custody.signer import KeyBusy
from harbour.custody.views import Page
from harbour.node import approval, signlog
from harbour.node.config import LOG_FILE
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator
from harbour.node.localnet import LocalNode
from helpers import wait_until

DEST = "0x2222222222222222222222222222222222222222"
ELSEWHERE = "0x3333333333333333333333333333333333333333"
NOT_ADMINS = ("initiator", "approver1", "auditor", "viewer")


def configure(env: CustodyEnv, *names: str) -> None:
    env.config.nodes = [str(n.directory / "descriptor.json") for n in env.nodes if n.directory.name in names]
    env.config.save()
    env.close()
    env.open()


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyEnv]:
    """The organisation (genesis: node1..node3) on a service configured with node4 too, and a funded treasury."""
    shared = CustodyEnv(tmp_path_factory.mktemp("reshare"), nodes=4)
    try:
        shared.start_nodes()
        configure(shared, "node1", "node2", "node3")
        shared.organisation()
        shared.set_policy({"rules": [{"name": "auto-approve", "action": "allow"}]})
        shared.vault("treasury", fund=10 * ETH)
        configure(shared, "node1", "node2", "node3", "node4")
        yield shared
    finally:
        shared.stop()


def treasury(env: CustodyEnv) -> dict[str, Any]:
    vaults = env.custody.list_vaults(env.actor("viewer"), Page(limit=10))["items"]
    found: dict[str, Any] = next(v for v in vaults if v["name"] == "treasury")
    return found


def node(env: CustodyEnv, name: str) -> LocalNode:
    return next(n for n in env.nodes if n.directory.name == name)


def proposals(env: CustodyEnv) -> int:
    return len(env.custody.list_transactions(env.actor("admin"), Page(limit=200))["items"])


def pay(env: CustodyEnv, amount: int) -> dict[str, Any]:
    """A withdrawal from the treasury to DEST, waited for until it is final."""
    tx = env.custody.submit_withdrawal(
        env.actor("initiator"), vault_id=treasury(env)["id"], asset="ETH", to=DEST, amount=amount
    )

    def final() -> dict[str, Any] | None:
        now: dict[str, Any] = env.custody.get_transaction(env.actor("admin"), tx["id"])
        return now if now["state"] in ("confirmed", "failed", "rejected") else None

    return wait_until(final, 60.0, message=f"withdrawal {tx['id']} to be final")


def signer_names(env: CustodyEnv, tx: dict[str, Any]) -> list[str]:
    roster = env.custody.signer.key(treasury(env)["key_id"]).roster
    return sorted(roster[p].name for p in tx["signers"])


def call(env: CustodyEnv, client: TestClient, who: str, body: Any, vault_id: str | None = None) -> httpx.Response:
    path = f"/v1/vaults/{vault_id or treasury(env)['id']}/reshare"
    response: httpx.Response = client.post(
        path, json=body, headers={"Authorization": f"Bearer {env.people[who].token}"}
    )
    return response


def store_objects(env: CustodyEnv, name: str) -> Path:
    found = [p for p in node(env, name).directory.rglob("objects") if p.is_dir()]
    assert len(found) == 1, found
    return found[0]


# -- refusals ------------------------------------------------------------------------------------------------------


def test_refusals_change_nothing(env: CustodyEnv) -> None:
    admin, vault = env.actor("admin"), treasury(env)
    before = (proposals(env), vault["nodes"], vault["threshold"])
    client = TestClient(create_app(env.custody))
    nodes = list(vault["nodes"])
    with pytest.raises(NotFound, match="no signer node named 'node9'"):
        env.custody.reshare_vault(admin, vault["id"], nodes=[*nodes, "node9"], threshold=3)
    assert call(env, client, "admin", {"nodes": [*nodes, "node9"], "threshold": 3}).status_code == 404
    with pytest.raises(Invalid, match="listed twice"):
        env.custody.reshare_vault(admin, vault["id"], nodes=[nodes[0], *nodes], threshold=3)
    assert call(env, client, "admin", {"nodes": [nodes[0], *nodes], "threshold": 3}).status_code == 422
    assert call(env, client, "admin", {"nodes": nodes, "threshold": 1}).status_code == 422
    assert call(env, client, "admin", {"nodes": ["../node1", *nodes[1:]], "threshold": 3}).status_code == 422
    assert call(env, client, "admin", {"nodes": nodes, "threshold": 3, "extra": 1}).status_code == 422
    with pytest.raises(Conflict, match=r"threshold must be 2\.\.3"):
        env.custody.reshare_vault(admin, vault["id"], nodes=nodes, threshold=4)
    with pytest.raises(Conflict, match="already"):
        env.custody.reshare_vault(admin, vault["id"], nodes=nodes, threshold=vault["threshold"])
    response = call(env, client, "admin", {"nodes": nodes, "threshold": vault["threshold"]})
    assert response.status_code == 409 and "already" in response.json()["detail"]
    assert call(env, client, "admin", {"nodes": nodes, "threshold": 3}, vault_id=str(uuid.uuid4())).status_code == 404
    for who in NOT_ADMINS:
        with pytest.raises(Forbidden):
            env.custody.reshare_vault(env.actor(who), vault["id"], nodes=nodes, threshold=3)
        assert call(env, client, who, {"nodes": nodes, "threshold": 3}).status_code == 403
    assert (proposals(env), treasury(env)["nodes"], treasury(env)["threshold"]) == before


def test_a_reshare_waits_for_no_signature_and_no_signature_for_a_reshare(env: CustodyEnv) -> None:
    """Block, not wait: a reshare is refused while the key signs, and the key signs nothing while it is reshared."""
    signer, vault = env.custody.signer, treasury(env)
    key_id = vault["key_id"]
    with signer._signing_key(key_id), pytest.raises(Conflict, match="being signed with or reshared"):
        env.custody.reshare_vault(env.actor("admin"), vault["id"], nodes=vault["nodes"], threshold=3)
    signer._resharing.add(key_id)
    try:
        with pytest.raises(KeyBusy, match="being reshared"):
            signer.sign(key_id, "m/0", b"\x00" * 32)
        # A withdrawal that comes to be signed meanwhile waits, saying why; and it blocks the next reshare.
        tx = env.custody.submit_withdrawal(
            env.actor("initiator"), vault_id=vault["id"], asset="ETH", to=ELSEWHERE, amount=ETH // 10
        )

        def waiting() -> dict[str, Any] | None:
            now: dict[str, Any] = env.custody.get_transaction(env.actor("admin"), tx["id"])
            return now if now["sub_status"] == "signing-retry" else None

        held = wait_until(waiting, 30.0, message="the withdrawal to wait for the reshare")
        assert held["state"] == "signing" and "being reshared" in held["error"], held
        with pytest.raises(Conflict, match="1 withdrawal\\(s\\) from vault 'treasury' are being signed"):
            env.custody.reshare_vault(env.actor("admin"), vault["id"], nodes=vault["nodes"], threshold=3)
    finally:
        signer._resharing.discard(key_id)

    def final() -> dict[str, Any] | None:
        now: dict[str, Any] = env.custody.get_transaction(env.actor("admin"), tx["id"])
        return now if now["state"] == "confirmed" else None

    wait_until(final, 60.0, message="the withdrawal to be signed once the key is free")
    assert env.chain.balance(ELSEWHERE) == ETH // 10


# -- the scenario --------------------------------------------------------------------------------------------------


def test_a_fourth_node_is_reshared_in_then_the_first_retired_and_the_vault_keeps_paying(env: CustodyEnv) -> None:
    admin, vault = env.actor("admin"), treasury(env)
    key_id = vault["key_id"]
    address = env.custody.list_addresses(admin, vault["id"], Page())["items"][0]["address"]
    assert (vault["nodes"], vault["threshold"]) == (["node1", "node2", "node3"], 2)
    with pytest.raises(Conflict, match="does not name node"):
        env.custody.reshare_vault(admin, vault["id"], nodes=["node1", "node2", "node3", "node4"], threshold=3)

    # node4 joins the organisation by an entry the admins sign, then the key is reshared onto it.
    env.govern(env.custody.add_node(admin, "node4"))
    with pytest.raises(Conflict, match=r"above half the 4 nodes \(3 or more\)"):
        env.custody.reshare_vault(admin, vault["id"], nodes=["node1", "node2", "node3", "node4"], threshold=2)
    proposal = env.custody.reshare_vault(admin, vault["id"], nodes=["node1", "node2", "node3", "node4"], threshold=3)
    assert [c["op"] for c in proposal["changes"]] == ["vault.reshare"]
    shown = env.custody.approval_request(env.actor("admin2"), proposal["id"])["changes"]
    keys = sorted(env.custody.signer.node(f"node{i}").sign_pk.hex() for i in range(1, 5))
    assert shown == [
        f"vault {vault['id']}'s key {key_id} (public key {vault['public_key']}, unchanged) is now held by 4 node(s) "
        f"with identity keys {', '.join(keys)}; 3 of them sign, each stating it holds it for this organisation"
    ]
    # Reshared but not yet recorded: the row and the log keep the old committee, and only the old holders are asked.
    assert (treasury(env)["nodes"], treasury(env)["threshold"]) == (["node1", "node2", "node3"], 2)
    signer, log = env.custody.signer, env.custody.governance_log(admin.org_id)
    stated = log.state.vaults[vault["id"]].holding.holders
    assert signer._run(signer._holders(signer.key(key_id), stated)) == [1, 2, 3]
    env.govern(proposal)
    assert (treasury(env)["nodes"], treasury(env)["threshold"]) == (["node1", "node2", "node3", "node4"], 3)
    stated = env.custody.governance_log(admin.org_id).state.vaults[vault["id"]].holding.holders
    assert signer._run(signer._holders(signer.key(key_id), stated)) is None  # every member is a holder now
    kinds = [e["kind"] for e in env.custody.audit_events(env.actor("auditor"), Page(limit=200))["items"]]
    assert "vault.reshared" in kinds

    # With node2 down, the three signers are node1, node3 and node4.
    node(env, "node2").stop()
    assert env.custody.signer.live(2.0)["node2"] is False
    paid = pay(env, 2 * ETH)
    assert paid["state"] == "confirmed", paid
    assert signer_names(env, paid) == ["node1", "node3", "node4"]
    # A reshare needs every node of the new committee, and the key's threshold of its members, to answer.
    with pytest.raises(Conflict, match=r"needs 3 of its 4 members, and every node of the new committee.*: node2$"):
        env.custody.reshare_vault(admin, vault["id"], nodes=["node2", "node3", "node4"], threshold=3)
    node(env, "node3").stop()
    with pytest.raises(Conflict, match=r"not answering: node2, node3$"):
        env.custody.reshare_vault(admin, vault["id"], nodes=["node1", "node4", "node3"], threshold=3)
    for n in ("node2", "node3"):
        node(env, n).start(wait=False)
    for n in ("node2", "node3"):
        node(env, n).wait_ready()
    assert treasury(env)["nodes"] == ["node1", "node2", "node3", "node4"]

    # node1 retires: the key moves to node2..node4 (the threshold stays 3; the nodes never lower it).
    with pytest.raises(Conflict, match="never goes below the 3"):
        env.custody.reshare_vault(admin, vault["id"], nodes=["node2", "node3", "node4"], threshold=2)
    backup = store_objects(env, "node1").parent.parent / "backup"
    shutil.copytree(store_objects(env, "node1"), backup)
    old_key = env.custody.signer.key(key_id)
    with BackgroundServer(env.custody) as server:  # as an operator does it: by the vault's name, through the API
        cli = {"HARBOUR_API": server.url, "HARBOUR_TOKEN": env.people["admin"].token}
        for args, needle in (
            (["--nodes", "node2", "--threshold", "3"], "at least two nodes"),
            (["--nodes", "node2,node3,node4", "--threshold", "1"], "at least 2"),
        ):
            bad = CliRunner().invoke(harbour, ["vault", "reshare", "treasury", *args], env=cli)
            assert bad.exit_code == 2 and needle in bad.output, bad.output
        unknown = CliRunner().invoke(harbour, ["vault", "reshare", "vault9", "--nodes", "a,b", "-t", "2"], env=cli)
        assert unknown.exit_code == 2 and "no vault named 'vault9'" in unknown.output, unknown.output
        done = CliRunner().invoke(
            harbour, ["vault", "reshare", "TREASURY", "--nodes", "node2,node3,node4", "-t", "3", "--json"], env=cli
        )
        assert done.exit_code == 0, done.output
    proposal = json.loads(done.stdout)
    assert [c["op"] for c in proposal["changes"]] == ["vault.reshare"]
    env.govern(proposal)
    assert (treasury(env)["nodes"], treasury(env)["threshold"]) == (["node2", "node3", "node4"], 3)
    assert env.custody.governance_log(admin.org_id).state.vaults[vault["id"]].holding.threshold == 3
    node(env, "node1").stop()
    paid = pay(env, 3 * ETH)
    assert paid["state"] == "confirmed", paid
    assert signer_names(env, paid) == ["node2", "node3", "node4"]
    assert env.chain.balance(DEST) == 5 * ETH and env.chain.balance(address) < 5 * ETH

    # node1 given back its old share from a backup: it refuses to sign as a holder the log no longer states.
    objects = store_objects(env, "node1")
    shutil.rmtree(objects)
    shutil.copytree(backup, objects)
    node(env, "node1").start()
    request = signing.prepare(env.custody, paid["id"])
    with pytest.raises(ClusterError):  # the others' shares are of the new committee: they take no old signer set
        asyncio.run(sign_with(env, old_key, request, [1, 3, 4]))

    def refusal() -> str | None:
        last = list(signlog.entries(node(env, "node1").directory / LOG_FILE))[-1]
        return last.reason if last.outcome == "refused" and last.key_id == key_id else None

    reason = wait_until(refusal, 10.0, message="node1 to log its refusal")
    assert f"this node is not one of the 3 holders of key {key_id} the log states" in reason


async def sign_with(env: CustodyEnv, key: ClusterKey, request: signing.Request, signers: list[int]) -> Any:
    def certificate(chosen: list[int]) -> bytes:
        return approval.issue(
            env.custody.signer.authority,
            kind="sign",
            key_id=request.key_id,
            path=request.path,
            digests=[request.digest],
            signers=chosen,
            now=int(time.time()),
            expires_in=300,
            evidence=request.evidence,
        )

    async with Coordinator(timeout=30) as co:
        return await co.sign_for_org(
            key, request.digest, certificate, log=request.log, path=request.path, signers=signers
        )
