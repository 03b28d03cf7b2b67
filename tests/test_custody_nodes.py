"""The signer nodes an organisation's log names, changed after bootstrap through the service and its API.

The deployment has four signer-node processes. Each test bootstraps its
organisation while custody.json lists three of them, so the genesis names
node1..node3, then adds node4's descriptor to custody.json and restarts the
service, as an operator adds a node. A node the log does not name gets no new
vault key until the admin quorum signs a ``node.add``; the identity key that
entry names is the one the deployment's descriptor holds, never one a request
carries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from custody_env import CustodyEnv
from harbour.api.app import create_app
from harbour.custody import shapes
from harbour.custody.errors import Conflict, Forbidden, Invalid, NotFound
from harbour.custody.views import Page
from harbour.node.coordinator import Coordinator
from harbour.node.identity import NodeDescriptor, compute_node_id
from helpers import wait_until

PROBLEM = "application/problem+json"
NOT_ADMINS = ("initiator", "approver1", "auditor", "viewer")


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyEnv]:
    shared = CustodyEnv(tmp_path_factory.mktemp("nodes"), nodes=4)
    try:
        shared.start_nodes()
        yield shared
    finally:
        shared.stop()


def configure(env: CustodyEnv, *names: str) -> None:
    """custody.json lists exactly these nodes, and the service is restarted on it."""
    env.config.nodes = [str(n.directory / "descriptor.json") for n in env.nodes if n.directory.name in names]
    env.config.save()
    env.close()
    env.open()


@pytest.fixture
def env(deployment: CustodyEnv, sqlite_url: str, request: pytest.FixtureRequest) -> CustodyEnv:
    """A fresh organisation whose genesis names node1..node3, on a service now configured with node4 too."""
    request.addfinalizer(deployment.close)
    configure(deployment, "node1", "node2", "node3")
    deployment.reset(sqlite_url)
    deployment.organisation()
    configure(deployment, "node1", "node2", "node3", "node4")
    return deployment


@pytest.fixture
def client(env: CustodyEnv) -> TestClient:
    return TestClient(create_app(env.custody))


def call(env: CustodyEnv, client: TestClient, method: str, path: str, who: str, **kwargs: Any) -> httpx.Response:
    response: httpx.Response = client.request(
        method, path, headers={"Authorization": f"Bearer {env.people[who].token}"}, **kwargs
    )
    return response


def problem(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert fragment in response.json()["detail"], response.json()


def listed(env: CustodyEnv, client: TestClient) -> dict[str, dict[str, Any]]:
    """``GET /v1/governance/nodes`` as the viewer, checked against its shape, by name."""
    response = call(env, client, "GET", "/v1/governance/nodes", "viewer")
    assert response.status_code == 200, response.text
    body = shapes.GovernanceNodes.model_validate(response.json()).model_dump(mode="json")
    return {node["name"]: node for node in body["nodes"]}


def head_of(env: CustodyEnv, name: str) -> tuple[int, bytes]:
    """``(seq, hash)`` of the organisation's log as node ``name`` holds it, asked by a coordinator of the test's own."""
    node = env.custody.signer.node(name)
    org = env.custody.governance_log(env.actor("admin").org_id).genesis_hash.hex()

    async def ask() -> tuple[int, bytes]:
        async with Coordinator(timeout=30) as co:
            return (await co.heads([node], org))[name]

    return asyncio.run(ask())


def key_of(env: CustodyEnv, name: str) -> str:
    return env.custody.signer.node(name).sign_pk.hex()


def proposals(env: CustodyEnv) -> int:
    return len(env.custody.list_transactions(env.actor("admin"), Page(limit=200))["items"])


# -- adding and removing ---------------------------------------------------------------------------------------


def test_a_node_added_to_the_deployment_gets_vault_keys_only_once_the_log_names_it(
    env: CustodyEnv, client: TestClient
) -> None:
    before = listed(env, client)
    assert [(n, before[n]["in_log"], before[n]["configured"]) for n in sorted(before)] == [
        ("node1", True, True),
        ("node2", True, True),
        ("node3", True, True),
        ("node4", False, True),
    ]
    assert before["node4"]["identity_key"] == key_of(env, "node4")
    assert before["node4"]["node_id"] == compute_node_id(bytes.fromhex(key_of(env, "node4")))
    admin = env.actor("admin")
    with pytest.raises(Conflict, match="does not name node"):
        env.custody.create_vault(admin, name="early", threshold=2, nodes=["node1", "node4"])

    response = call(env, client, "POST", "/v1/governance/nodes", "admin", json={"name": "node4"})
    assert response.status_code == 202, response.text
    proposal = shapes.GovernanceTransaction.model_validate(response.json()).model_dump(mode="json")
    assert [c["op"] for c in proposal["changes"]] == ["node.add"]
    # The key is the descriptor's, and it is what the other admin reads before signing.
    request = env.custody.approval_request(env.actor("admin2"), proposal["id"])
    assert request["changes"] == [f"signer node 'node4' (identity key {key_of(env, 'node4')}) may hold vault keys"]
    assert not listed(env, client)["node4"]["in_log"], "nothing changes before the admins sign"
    env.govern(proposal)

    after = listed(env, client)
    assert after["node4"]["in_log"] and after["node4"]["configured"]
    # Enrolled when it was proposed, node4 keeps the log: the entry that named it reached it as it landed.
    log = env.custody.governance_log(admin.org_id)
    wait_until(lambda: head_of(env, "node4") == (log.state.seq, log.head), message="node4 at the log's head")
    assert env.custody.governance_log(admin.org_id).state.nodes[bytes.fromhex(key_of(env, "node4"))] == "node4"
    vault = env.govern(env.custody.create_vault(admin, name="on node4", threshold=2, nodes=["node1", "node4"]))
    with pytest.raises(Conflict, match="above half the 4 nodes"):  # two signer sets of a 2-of-4 key share no node
        env.custody.create_vault(admin, name="too wide", threshold=2, nodes=["node1", "node2", "node3", "node4"])
    shown = env.custody.get_vault(admin, vault["changes"][0]["id"])
    assert shown["nodes"] == ["node1", "node4"]


def test_a_removed_node_gets_no_new_vault_key_until_it_is_added_again(env: CustodyEnv, client: TestClient) -> None:
    admin = env.actor("admin")
    response = call(env, client, "POST", "/v1/governance/nodes/node3/remove", "admin")
    assert response.status_code == 202, response.text
    proposal = response.json()
    assert [c["description"] for c in proposal["changes"]] == [
        f"signer node with identity key {key_of(env, 'node3')} may hold no new vault key"
    ]
    env.govern(proposal)
    node3 = listed(env, client)["node3"]
    assert (node3["in_log"], node3["configured"]) == (False, True)
    with pytest.raises(Conflict, match="does not name node"):
        env.custody.create_vault(admin, name="on node3", threshold=2, nodes=["node1", "node3"])
    problem(
        call(
            env, client, "POST", "/v1/vaults", "admin", json={"name": "v", "threshold": 2, "nodes": ["node2", "node3"]}
        ),
        409,
        "node3",
    )

    env.govern(env.custody.add_node(admin, "node3"))
    assert listed(env, client)["node3"]["in_log"]


def test_a_retired_node_the_deployment_no_longer_lists_can_still_be_removed(env: CustodyEnv) -> None:
    configure(env, "node1", "node2", "node4")
    client = TestClient(create_app(env.custody))
    node3 = listed(env, client)["node3"]
    assert (node3["in_log"], node3["configured"]) == (True, False)
    env.govern(env.custody.remove_node(env.actor("admin"), "node3"))
    assert "node3" not in listed(env, client)


def node3_rows(env: CustodyEnv, client: TestClient) -> list[tuple[str, bool, bool]]:
    nodes = call(env, client, "GET", "/v1/governance/nodes", "viewer").json()["nodes"]
    return [(n["identity_key"], n["in_log"], n["configured"]) for n in nodes if n["name"] == "node3"]


def test_a_node_the_log_names_under_an_older_key_is_removed_and_added_in_one_entry(
    env: CustodyEnv, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``harbour node rotate-keys`` the deployment's descriptor has a new key under the same name."""
    old = env.custody.signer.node("node3")
    rotated = NodeDescriptor(old.name, old.url, Ed25519PrivateKey.generate().public_key().public_bytes_raw())
    nodes = [rotated if d.name == "node3" else d for d in env.custody.signer.nodes]
    monkeypatch.setattr(env.custody.signer, "nodes", nodes)
    assert node3_rows(env, client) == [(old.sign_pk.hex(), True, False), (rotated.sign_pk.hex(), False, True)]

    proposal = env.custody.add_node(env.actor("admin"), "node3")
    assert [c["description"] for c in proposal["changes"]] == [
        f"signer node with identity key {old.sign_pk.hex()} may hold no new vault key",
        f"signer node 'node3' (identity key {rotated.sign_pk.hex()}) may hold vault keys",
    ]
    env.govern(proposal)
    nodes_now = env.custody.governance_log(env.actor("admin").org_id).state.nodes
    assert old.sign_pk not in nodes_now and nodes_now[rotated.sign_pk] == "node3"
    assert node3_rows(env, client) == [(rotated.sign_pk.hex(), True, True)]


# -- refusals ----------------------------------------------------------------------------------------------------


def test_a_node_the_deployment_is_not_configured_with_is_refused(env: CustodyEnv, client: TestClient) -> None:
    before = proposals(env)
    with pytest.raises(NotFound, match="no signer node named 'node9'"):
        env.custody.add_node(env.actor("admin"), "node9")
    problem(call(env, client, "POST", "/v1/governance/nodes", "admin", json={"name": "node9"}), 404, "node9")
    with pytest.raises(Invalid, match="node name"):
        env.custody.add_node(env.actor("admin"), "../node1")
    response = call(env, client, "POST", "/v1/governance/nodes", "admin", json={"name": "../node1"})
    assert response.status_code == 422 and response.json()["errors"][0]["location"] == "body.name"
    assert proposals(env) == before


def test_a_node_the_log_names_already_is_refused(env: CustodyEnv, client: TestClient) -> None:
    before = proposals(env)
    with pytest.raises(Conflict, match=r"names node 'node1' with identity key [0-9a-f]{64} already"):
        env.custody.add_node(env.actor("admin"), "node1")
    problem(call(env, client, "POST", "/v1/governance/nodes", "admin", json={"name": "node2"}), 409, "already")
    assert proposals(env) == before


def test_a_node_the_log_does_not_name_cannot_be_removed(env: CustodyEnv, client: TestClient) -> None:
    before = proposals(env)
    with pytest.raises(NotFound, match="names no signer node 'node4'"):
        env.custody.remove_node(env.actor("admin"), "node4")  # configured, but not in the log
    problem(call(env, client, "POST", "/v1/governance/nodes/node9/remove", "admin"), 404, "node9")
    assert call(env, client, "POST", "/v1/governance/nodes/no%20de/remove", "admin").status_code == 422
    assert proposals(env) == before


@pytest.mark.parametrize("who", NOT_ADMINS)
def test_only_an_admin_proposes_a_node_change(env: CustodyEnv, client: TestClient, who: str) -> None:
    before = proposals(env)
    with pytest.raises(Forbidden):
        env.custody.add_node(env.actor(who), "node4")
    with pytest.raises(Forbidden):
        env.custody.remove_node(env.actor(who), "node1")
    problem(call(env, client, "POST", "/v1/governance/nodes", who, json={"name": "node4"}), 403, "admin")
    problem(call(env, client, "POST", "/v1/governance/nodes/node1/remove", who), 403, "admin")
    assert listed(env, client)["node1"]["in_log"], "every role reads the list"
    assert proposals(env) == before
