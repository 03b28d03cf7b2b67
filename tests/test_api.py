"""The custody REST API against the real service: signer-node processes, the embedded chain, SQLite.

Every route is exercised on its happy path and its responses are checked against
the schema the API publishes (the models of ``custody/shapes.py``). Every route is also called
by every role the table refuses, without a credential and with forged ones, and
with malformed bodies; each refusal must be the right status as a problem
document, and must write nothing: the row count of every table (the audit log's
included) is compared before and after.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel
from sqlalchemy import func, select

from custody_env import ETH, CustodyEnv
from harbour.api.app import PUBLIC_ROUTES, create_app, parse_json
from harbour.api.authlimit import FailedAuthentications
from harbour.api.middleware import MAX_BODY
from harbour.api.roles import EVERYONE, ROUTE_ROLES
from harbour.api.routes import ROUTERS
from harbour.api.routes.service import Health, Me
from harbour.api.server import BackgroundServer
from harbour.chains.evm import ChainError
from harbour.custody import shapes, statements
from harbour.custody.audit import check_consistency_proof, check_inclusion_proof
from harbour.custody.db import Base
from harbour.custody.views import Page
from helpers import wait_until

DEST = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
DEST_LOWER = DEST.lower()
BOOK = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"
BOOK_LOWER = BOOK.lower()
DEST_BAD_CHECKSUM = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD"
PROBLEM = "application/problem+json"
MISSING = "00000000-0000-4000-8000-000000000000"
ROLE_PERSON = {
    "admin": "admin",
    "initiator": "initiator",
    "approver": "approver1",
    "auditor": "auditor",
    "viewer": "viewer",
}
ROLES = sorted(ROLE_PERSON)


@dataclass
class World:
    env: CustodyEnv
    client: TestClient
    vault_id: str
    address: str
    pending_tx: str
    """A withdrawal left pending approval, for path parameters."""
    entry_id: str
    """An address-book entry, for path parameters."""

    def headers(self, who: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.env.people[who].token}", **extra}

    def call(self, method: str, path: str, who: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers.update(self.headers(who))
        response: httpx.Response = self.client.request(method, path, headers=headers, **kwargs)
        return response

    def snapshot(self) -> dict[str, int]:
        """Rows in every table (the audit log's included): a refused request must change none."""
        with self.env.custody.sessions() as s:
            return {t.name: s.scalar(select(func.count()).select_from(t)) or 0 for t in Base.metadata.sorted_tables}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with CustodyEnv(tmp_path_factory.mktemp("api")) as env:
        env.organisation()
        env.set_policy(env.two_approvers_policy())
        vault_id, address = env.vault(fund=10 * ETH)
        book = env.custody.add_address_book_entry(
            env.actor("admin"), name="counterparty", address=DEST, whitelisted=True
        )
        entry_id = env.govern(book)["changes"][0]["id"]
        # The deposit watcher records the funding in the background: let it, so that
        # no test's before-and-after row counts catch it halfway.
        wait_until(lambda: env.custody.list_deposits(env.actor("viewer"), Page())["items"], 60, message="the deposit")
        # Hundreds of deliberate bad credentials from one test client: a limit on failed logins
        # that allows them (tests/test_api_ops.py tests the real one).
        client = TestClient(create_app(env.custody, failed_authentications=FailedAuthentications(burst=100_000)))
        pending = env.custody.submit_withdrawal(
            env.actor("initiator"),
            vault_id=vault_id,
            asset="ETH",
            to=DEST,
            amount=1000,
            idempotency_key="pending-1",
            external_id="pending-ref",
        )
        assert pending["state"] == "pending_approval", pending
        yield World(env, client, vault_id, address, pending["id"], entry_id)


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("https://harbour.dev/problems/") or body["type"] == "about:blank"
    assert {"title", "detail", "instance"} <= set(body)
    assert isinstance(body["detail"], str) and body["detail"]
    return body


def shaped(model: type[BaseModel], response: httpx.Response, status: int = 200) -> dict[str, Any]:
    """The response has ``status``, is JSON, and has the shape the OpenAPI schema promises."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body: dict[str, Any] = response.json()
    model.model_validate(body)
    return body


def withdrawal(world: World, **changes: Any) -> dict[str, Any]:
    return {"vault_id": world.vault_id, "asset": "ETH", "to": DEST, "amount": "1000", **changes}


def submit(world: World, key: str, **changes: Any) -> httpx.Response:
    return world.call(
        "POST", "/v1/transactions", "initiator", json=withdrawal(world, **changes), headers={"Idempotency-Key": key}
    )


def sign(world: World, tx_id: str, who: str, decision: str = "approve") -> str:
    """What the approver's client does: rebuild the statement from the fields, compare, sign."""
    person = world.env.people[who]
    assert person.key is not None
    request = shaped(shapes.ApprovalRequest, world.call("GET", f"/v1/transactions/{tx_id}/approval-request", who))
    subject = statements.from_request(request, tx_id)
    assert subject.statement().hex() == request["statement"]
    assert decision in ("approve", "reject")
    return subject.sign(person.key, subject.statement("approve" if decision == "approve" else "reject")).hex()


# -- the route table ------------------------------------------------------------------------------------------


def test_every_route_is_in_the_role_table() -> None:
    routes = {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods or ()
    }
    assert routes == set(ROUTE_ROLES) | PUBLIC_ROUTES


def test_docs_role_table_is_the_code_table() -> None:
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    documented = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in ("GET", "POST", "PATCH", "DELETE") and cells[1].startswith("/v1/"):
            documented[(cells[0], cells[1])] = frozenset(r.strip() for r in cells[2].split(","))
    assert documented == ROUTE_ROLES


def test_openapi_schema_is_served(world: World) -> None:
    response = world.client.get("/openapi.json")
    assert response.status_code == 200
    schema = response.json()
    paths = schema["paths"]
    for method, path in ROUTE_ROLES:
        operation = paths[path][method.lower()]
        assert operation["x-roles"] == sorted(ROUTE_ROLES[(method, path)])
        assert operation["security"] == [{"token": []}]
        assert "application/problem+json" in operation["responses"]["403"]["content"]
    components = schema["components"]["schemas"]
    assert components["Withdrawal"]["additionalProperties"] is False
    amount = components["Withdrawal"]["properties"]["amount"]
    assert {alt["type"] for alt in amount["oneOf"]} == {"string", "integer"}
    assert paths["/v1/vaults/{vault_id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/VaultDetail"
    }
    assert schema["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    headers = paths["/v1/transactions"]["post"]["parameters"]
    assert any(p["name"] == "Idempotency-Key" and p["required"] for p in headers)


# -- happy paths ----------------------------------------------------------------------------------------------


def test_health_needs_no_credential(world: World) -> None:
    body = shaped(Health, world.client.get("/v1/health"))
    assert body["status"] == "ok"


def test_me_and_organisation(world: World) -> None:
    me = shaped(Me, world.call("GET", "/v1/me", "viewer"))
    assert me["roles"] == ["viewer"] and me["user_id"] == world.env.user_id("viewer")
    org = shaped(shapes.Organisation, world.call("GET", "/v1/org", "viewer"))
    assert org["id"] == me["org_id"] and org["name"] == "Harbour Test Custodian"


def govern(world: World, proposal: httpx.Response) -> dict[str, Any]:
    """A 202 governance change, signed over the API by its proposer (admin), then admin2, until it lands."""
    tx = shaped(shapes.GovernanceTransaction, proposal, 202)
    assert tx["kind"] == "governance" and tx["state"] == "pending_approval"
    for who in ("admin", "admin2"):
        decided = world.call(
            "POST", f"/v1/transactions/{tx['id']}/approve", who, json={"signature": sign(world, tx["id"], who)}
        )
        tx = shaped(shapes.Transaction, decided)
    assert tx["state"] == "confirmed", tx
    return tx


def test_users_and_credentials(world: World) -> None:
    before = shaped(shapes.UserPage, world.call("GET", "/v1/users?limit=200", "viewer"))
    proposal = world.call("POST", "/v1/users", "admin", json={"name": "vera", "roles": ["viewer"]})
    assert "vera" not in {u["name"] for u in before["items"]}
    landed = govern(world, proposal)
    vera = landed["changes"][0]["id"]
    assert landed["changes"][0]["op"] == "user.add" and "vera" in landed["changes"][0]["description"]
    credential = shaped(shapes.Credential, world.call("POST", f"/v1/users/{vera}/credentials", "admin"), 201)
    assert credential["transaction"] is None  # not an admin: at once
    me = world.client.get("/v1/me", headers={"Authorization": f"Bearer {credential['token']}"})
    assert me.json()["name"] == "vera"
    users = shaped(shapes.UserPage, world.call("GET", "/v1/users?limit=200", "viewer"))
    assert "vera" in {u["name"] for u in users["items"]}
    # Approvers sign approvals, so they need an approval key.
    problem(world.call("POST", "/v1/users", "admin", json={"name": "no-key", "roles": ["approver"]}), 422)
    problem(world.call("POST", "/v1/users", "admin", json={"name": "vera", "roles": ["viewer"]}), 409)
    problem(world.call("POST", f"/v1/users/{MISSING}/credentials", "admin"), 404)
    problem(world.call("POST", f"/v1/users/{MISSING}/disable", "admin"), 404)
    # Roles, keys, disabling and enabling are governance changes too.
    key = "a" * 64
    problem(world.call("POST", f"/v1/users/{vera}/approval-key", "admin", json={"approval_key": key}), 422)
    promoted = govern(world, world.call("POST", f"/v1/users/{vera}/roles", "admin", json={"roles": ["auditor"]}))
    assert promoted["changes"][0]["op"] == "user.roles"
    problem(world.call("POST", f"/v1/users/{vera}/roles", "admin", json={"roles": ["auditor"]}), 409)
    problem(world.call("POST", f"/v1/users/{vera}/roles", "admin", json={"roles": ["approver"]}), 409)  # no key yet
    govern(world, world.call("POST", f"/v1/users/{vera}/disable", "admin"))
    assert world.client.get("/v1/me", headers={"Authorization": f"Bearer {credential['token']}"}).status_code == 401
    govern(world, world.call("POST", f"/v1/users/{vera}/enable", "admin"))
    again = world.call("POST", f"/v1/users/{vera}/credentials", "admin").json()["token"]
    assert world.client.get("/v1/me", headers={"Authorization": f"Bearer {again}"}).json()["roles"] == ["auditor"]


def test_an_admin_credential_is_a_governance_change(world: World) -> None:
    issued = shaped(
        shapes.Credential, world.call("POST", f"/v1/users/{world.env.user_id('admin2')}/credentials", "admin"), 201
    )
    token = {"Authorization": f"Bearer {issued['token']}"}
    assert issued["transaction"] is not None and issued["transaction"]["changes"][0]["op"] == "credential.issue"
    problem(world.client.get("/v1/me", headers=token), 401)  # an admin credential the log has not issued (yet)
    request = world.call("GET", f"/v1/transactions/{issued['transaction']['id']}/approval-request", "admin")
    assert shaped(shapes.ApprovalRequest, request)["changes"] == [
        c["description"] for c in issued["transaction"]["changes"]
    ]
    for who in ("admin", "admin2"):
        world.call(
            "POST",
            f"/v1/transactions/{issued['transaction']['id']}/approve",
            who,
            json={"signature": sign(world, issued["transaction"]["id"], who)},
        )
    assert world.client.get("/v1/me", headers=token).json()["roles"] == ["admin"]


def test_vaults_and_addresses(world: World) -> None:
    vaults = shaped(shapes.VaultPage, world.call("GET", "/v1/vaults", "viewer"))
    assert world.vault_id in {v["id"] for v in vaults["items"]}
    vault = shaped(shapes.VaultDetail, world.call("GET", f"/v1/vaults/{world.vault_id}", "viewer"))
    assert vault["addresses"][0]["address"] == world.address
    assert int(vault["balances"]["ETH"]) > 0 and isinstance(vault["balances"]["ETH"], str)
    address = shaped(
        shapes.Address,
        world.call("POST", f"/v1/vaults/{world.vault_id}/addresses", "admin", json={"label": "cold"}),
        201,
    )
    assert address["label"] == "cold" and address["path"] == f"m/{address['index']}"
    # The body is optional.
    bare = shaped(shapes.Address, world.call("POST", f"/v1/vaults/{world.vault_id}/addresses", "admin"), 201)
    assert bare["label"] is None and bare["index"] == address["index"] + 1
    listed = shaped(shapes.AddressPage, world.call("GET", f"/v1/vaults/{world.vault_id}/addresses", "viewer"))
    assert [a["index"] for a in listed["items"]] == list(range(bare["index"] + 1))
    problem(world.call("GET", f"/v1/vaults/{MISSING}", "viewer"), 404)
    problem(world.call("GET", f"/v1/vaults/{MISSING}/addresses", "viewer"), 404)


def test_create_vault_runs_keygen_then_proposes_binding_the_key(world: World) -> None:
    proposal = world.call("POST", "/v1/vaults", "admin", json={"name": "reserve", "threshold": 2})
    pending = proposal.json()
    problem(world.call("GET", f"/v1/vaults/{pending['changes'][0]['id']}", "viewer"), 404)  # not a vault yet
    landed = govern(world, proposal)
    assert landed["changes"][0]["op"] == "vault.add"
    vault = shaped(shapes.VaultDetail, world.call("GET", f"/v1/vaults/{landed['changes'][0]['id']}", "viewer"))
    assert vault["threshold"] == 2 and len(vault["nodes"]) == 3 and vault["scheme"] == "ecdsa-secp256k1"
    problem(world.call("POST", "/v1/vaults", "admin", json={"name": "reserve", "threshold": 2}), 409)
    problem(world.call("POST", "/v1/vaults", "admin", json={"name": "x", "threshold": 2, "nodes": ["nowhere"]}), 404)
    problem(world.call("POST", "/v1/vaults", "admin", json={"name": "x", "threshold": 4}), 409)  # 3 nodes


def test_assets_and_address_book(world: World) -> None:
    token = world.env.chain.deploy_token("Test Dollar", "TUSD", 6, 10**12)
    body = {"symbol": "TUSD", "kind": "erc20", "contract": token, "decimals": 6}
    landed = govern(world, world.call("POST", "/v1/assets", "admin", json=body))
    assert landed["changes"][0]["op"] == "asset.add"
    assets = shaped(shapes.AssetPage, world.call("GET", "/v1/assets", "viewer"))
    assert {"ETH", "TUSD"} <= {a["symbol"] for a in assets["items"]}
    assert next(a for a in assets["items"] if a["symbol"] == "TUSD")["contract"] == token
    problem(world.call("POST", "/v1/assets", "admin", json={"symbol": "ETH", "kind": "native", "decimals": 18}), 409)
    added = govern(
        world, world.call("POST", "/v1/address-book", "admin", json={"name": "exchange", "address": BOOK_LOWER})
    )
    entry_id = added["changes"][0]["id"]
    book = shaped(shapes.AddressBookPage, world.call("GET", "/v1/address-book", "viewer"))
    entry = next(e for e in book["items"] if e["id"] == entry_id)
    assert entry["address"] == BOOK and entry["whitelisted"] is False
    problem(world.call("POST", "/v1/address-book", "admin", json={"name": "again", "address": BOOK}), 409)
    govern(world, world.call("POST", f"/v1/address-book/{entry_id}/whitelist", "admin", json={"whitelisted": True}))
    book = shaped(shapes.AddressBookPage, world.call("GET", "/v1/address-book", "viewer"))
    assert next(e for e in book["items"] if e["id"] == entry_id)["whitelisted"] is True
    problem(world.call("POST", f"/v1/address-book/{entry_id}/whitelist", "admin", json={"whitelisted": True}), 409)
    govern(world, world.call("POST", f"/v1/address-book/{entry_id}/remove", "admin"))
    book = shaped(shapes.AddressBookPage, world.call("GET", "/v1/address-book", "viewer"))
    assert entry_id not in {e["id"] for e in book["items"]}
    problem(world.call("POST", f"/v1/address-book/{entry_id}/remove", "admin"), 404)


def test_the_governance_log_and_its_head(world: World) -> None:
    head = shaped(shapes.GovernanceHead, world.call("GET", "/v1/governance/head", "viewer"))
    org = shaped(shapes.Organisation, world.call("GET", "/v1/org", "viewer"))
    assert head["genesis"] == org["genesis"] and head["quorum"] == 1 and len(head["admins"]) == 2
    entries = shaped(shapes.GovernanceEntryPage, world.call("GET", "/v1/governance/entries?limit=200", "auditor"))
    assert [e["seq"] for e in entries["items"]] == list(range(head["seq"] + 1))
    assert entries["items"][0]["hash"] == head["genesis"] and entries["items"][0]["signers"] == []
    assert entries["items"][-1]["hash"] == head["hash"]
    for before, after in zip(entries["items"], entries["items"][1:], strict=False):
        assert after["prev"] == before["hash"] and len(after["signers"]) == 2
    from harbour.governance.log import SignedEntry
    from harbour.governance.state import GovernanceLog

    signed = [SignedEntry.decode(bytes.fromhex(e["signed"])) for e in entries["items"]]
    log = GovernanceLog(signed[0])
    log.extend(signed[1:])  # an auditor replays what the API serves and gets the same head
    assert log.head.hex() == head["hash"] and log.genesis_hash.hex() == org["genesis"]
    problem(world.call("GET", "/v1/governance/entries?cursor=not-a-seq", "viewer"), 422)
    nodes = shaped(shapes.GovernanceNodes, world.call("GET", "/v1/governance/nodes", "viewer"))
    assert nodes["seq"] == head["seq"]
    assert [(n["name"], n["in_log"], n["configured"]) for n in nodes["nodes"]] == [
        (f"node{i}", True, True) for i in (1, 2, 3)
    ]


def test_withdrawal_approved_by_two_approvers_is_confirmed(world: World) -> None:
    tx = shaped(shapes.Transaction, submit(world, "happy-1", note="payout 1"), 201)
    assert tx["state"] == "pending_approval" and tx["amount"] == "1000" and tx["note"] == "payout 1"
    assert tx["idempotency_key"] == "happy-1"
    one = shaped(shapes.Transaction, world.call("GET", f"/v1/transactions/{tx['id']}", "viewer"))
    assert one["id"] == tx["id"]
    pending = shaped(
        shapes.TransactionPage, world.call("GET", "/v1/transactions?state=pending_approval&limit=200", "viewer")
    )
    assert tx["id"] in {t["id"] for t in pending["items"]}
    assert all(t["state"] == "pending_approval" for t in pending["items"])
    for who in ("approver1", "approver2"):
        decided = world.call(
            "POST", f"/v1/transactions/{tx['id']}/approve", who, json={"signature": sign(world, tx["id"], who)}
        )
        shaped(shapes.Transaction, decided)
    # A third approval is one too many: the transaction is no longer pending.
    late = world.call("POST", f"/v1/transactions/{tx['id']}/approve", "approver3", json={"signature": "00" * 64})
    problem(late, 409)

    def confirmed() -> dict[str, Any] | None:
        body = world.call("GET", f"/v1/transactions/{tx['id']}", "viewer").json()
        return body if body["state"] in ("confirmed", "failed") else None

    final = wait_until(confirmed, 60, message="the withdrawal to be confirmed")
    assert final["state"] == "confirmed", final
    assert final["tx_hash"].startswith("0x") and len(final["approvals"]) == 2
    shaped(shapes.Transaction, world.call("GET", f"/v1/transactions/{tx['id']}", "auditor"))


def test_reject_and_cancel(world: World) -> None:
    rejected = submit(world, "reject-1").json()
    body = shaped(
        shapes.Transaction,
        world.call(
            "POST",
            f"/v1/transactions/{rejected['id']}/reject",
            "approver3",
            json={"signature": sign(world, rejected["id"], "approver3", "reject")},
        ),
    )
    assert body["state"] == "rejected"
    cancelled = submit(world, "cancel-1").json()
    body = shaped(shapes.Transaction, world.call("POST", f"/v1/transactions/{cancelled['id']}/cancel", "initiator"))
    assert body["state"] == "cancelled"
    problem(world.call("POST", f"/v1/transactions/{cancelled['id']}/cancel", "initiator"), 409)
    # An approval signed over another transaction's statement does not verify.
    other = submit(world, "reject-2").json()
    wrong = sign(world, world.pending_tx, "approver1")
    problem(world.call("POST", f"/v1/transactions/{other['id']}/approve", "approver1", json={"signature": wrong}), 422)


def test_explain_writes_nothing(world: World) -> None:
    before = world.snapshot()
    body = world.call("POST", "/v1/transactions/explain", "auditor", json=withdrawal(world, amount=5 * ETH))
    decision = shaped(shapes.Explanation, body)
    assert decision["action"] == "require_approval" and decision["policy_version"] >= 2
    assert world.snapshot() == before


def test_policy(world: World) -> None:
    current = shaped(shapes.Policy, world.call("GET", "/v1/policy", "viewer"))
    versions = shaped(shapes.PolicyPage, world.call("GET", "/v1/policy/versions", "viewer"))
    assert versions["items"][-1]["version"] == current["version"]
    document = world.env.two_approvers_policy(["approver1", "approver2"])
    proposal = world.call(
        "POST", "/v1/policy/proposals", "admin", json={"document": document}, headers={"Idempotency-Key": "policy-1"}
    )
    tx = shaped(shapes.GovernanceTransaction, proposal, 201)
    assert tx["kind"] == "governance" and tx["state"] == "pending_approval"
    assert [c["op"] for c in tx["changes"]] == ["policy"]
    request = shaped(
        shapes.ApprovalRequest, world.call("GET", f"/v1/transactions/{tx['id']}/approval-request", "admin2")
    )
    assert request["statement"] == request["entry"] == tx["entry"] and "intent" not in request
    assert request["changes"] == [tx["changes"][0]["description"]]
    broken = world.call(
        "POST", "/v1/policy/proposals", "admin", json={"document": {"rules": "all"}}, headers={"Idempotency-Key": "p-2"}
    )
    problem(broken, 422)
    cancelled = world.call("POST", f"/v1/transactions/{tx['id']}/cancel", "admin")
    assert cancelled.json()["state"] == "cancelled"


def test_deposits(world: World) -> None:
    world.env.chain.fund(world.address, 12345)

    def seen() -> dict[str, Any] | None:
        page = world.call("GET", "/v1/deposits?limit=200", "viewer").json()
        return next((d for d in page["items"] if d["amount"] == "12345"), None)

    deposit = wait_until(seen, 60, message="the deposit to be listed")
    assert deposit["asset"] == "ETH"
    shaped(shapes.DepositPage, world.call("GET", "/v1/deposits", "auditor"))


def test_audit_proofs_verify_against_the_audit_key(world: World) -> None:
    key = world.env.custody.audit.public_key_hex
    events = shaped(shapes.AuditEventPage, world.call("GET", "/v1/audit/events?limit=5", "auditor"))
    assert len(events["items"]) == 5 and events["next_cursor"]
    head = shaped(shapes.TreeHead, world.call("GET", "/v1/audit/head", "auditor"))
    index = events["items"][2]["index"]
    proof = shaped(
        shapes.InclusionProof, world.call("GET", f"/v1/audit/proof/{index}?tree_size={head['tree_size']}", "auditor")
    )
    check_inclusion_proof(proof, key)
    assert proof["event"] == events["items"][2]
    consistency = world.call("GET", f"/v1/audit/consistency?old=3&new={head['tree_size']}", "admin")
    check_consistency_proof(shaped(shapes.ConsistencyProof, consistency), key)
    problem(world.call("GET", f"/v1/audit/proof/{10**9}", "auditor"), 404)
    problem(world.call("GET", "/v1/audit/consistency?old=5&new=2", "auditor"), 404)  # no such proof


# -- refusals: roles, credentials ---------------------------------------------------------------------------

BODIES: dict[tuple[str, str], Callable[[World], Any]] = {
    ("POST", "/v1/users"): lambda w: {"name": "mallory", "roles": ["admin"], "approval_key": "11" * 32},
    ("POST", "/v1/vaults"): lambda w: {"name": "stolen", "threshold": 2},
    ("POST", "/v1/vaults/{vault_id}/addresses"): lambda w: {"label": "mine"},
    ("POST", "/v1/assets"): lambda w: {"symbol": "FAKE", "kind": "erc20", "contract": DEST, "decimals": 6},
    ("POST", "/v1/address-book"): lambda w: {"name": "mallory", "address": DEST, "whitelisted": True},
    ("POST", "/v1/address-book/{entry_id}/whitelist"): lambda w: {"whitelisted": False},
    ("POST", "/v1/users/{user_id}/roles"): lambda w: {"roles": ["admin"]},
    ("POST", "/v1/users/{user_id}/approval-key"): lambda w: {"approval_key": "11" * 32},
    ("POST", "/v1/transactions"): withdrawal,
    ("POST", "/v1/transactions/explain"): withdrawal,
    ("POST", "/v1/transactions/{tx_id}/approve"): lambda w: {"signature": "00" * 64},
    ("POST", "/v1/transactions/{tx_id}/reject"): lambda w: {"signature": "00" * 64},
    ("POST", "/v1/policy/proposals"): lambda w: {"document": {"rules": []}},
    ("POST", "/v1/governance/nodes"): lambda w: {"name": "node1"},
    ("POST", "/v1/webhooks"): lambda w: {"url": "https://hooks.example.com/in", "events": ["*"]},
    ("PATCH", "/v1/users/{user_id}"): lambda w: {"disabled": True},
    ("PATCH", "/v1/vaults/{vault_id}"): lambda w: {"archived": True},
    ("PATCH", "/v1/assets/{asset_id}"): lambda w: {"disabled": True},
    ("PATCH", "/v1/address-book/{entry_id}"): lambda w: {"whitelisted": False},
}
PERIOD = "?start=2026-01-01T00:00:00%2B00:00&end=2026-12-31T00:00:00%2B00:00"


def concrete(world: World, path: str) -> str:
    with_period = path.format(
        user_id=world.env.user_id("viewer"),
        vault_id=world.vault_id,
        tx_id=world.pending_tx,
        index=0,
        credential_id="00000000-0000-4000-8000-000000000000",  # no such credential: nothing to revoke by accident
        entry_id=world.entry_id,
        asset_id="00000000-0000-4000-8000-000000000000",  # no such asset: nothing to disable by accident
        name="node1",
        webhook_id=MISSING,
        external_id="pending-ref",
    ).replace("/v1/audit/consistency", "/v1/audit/consistency" if "?" in path else "/v1/audit/consistency?old=1&new=2")
    return with_period + PERIOD if with_period.endswith(("/statement", "/history")) else with_period


def request_for(
    world: World, method: str, path: str, headers: dict[str, str], client: TestClient | None = None
) -> httpx.Response:
    body = BODIES.get((method, path))
    response: httpx.Response = (client or world.client).request(
        method,
        concrete(world, path),
        json=body(world) if body else None,
        headers={**headers, "Idempotency-Key": "refused-1"},
    )
    return response


REFUSED_CALLS: list[tuple[str, str, str]] = [
    (method, path, role) for (method, path), allowed in ROUTE_ROLES.items() for role in ROLES if role not in allowed
]
"""(method, path, role) of every call a role may not make."""
REFUSED = [pytest.param(method, path, role, id=f"{method} {path} as {role}") for method, path, role in REFUSED_CALLS]


@pytest.mark.parametrize(("method", "path", "role"), REFUSED)
def test_role_refused_and_nothing_written(world: World, method: str, path: str, role: str) -> None:
    before = world.snapshot()
    response = request_for(world, method, path, world.headers(ROLE_PERSON[role]))
    body = problem(response, 403)
    assert body["type"] == "https://harbour.dev/problems/forbidden"
    assert role in body["detail"]
    assert world.snapshot() == before


class Spy:
    """A service that records every call but authentication: a refused request must reach none."""

    def __init__(self, custody: Any) -> None:
        self.custody = custody
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.custody, name)
        if name == "authenticate":
            return target

        def spied(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return target(*args, **kwargs)

        return spied


def test_refused_roles_never_reach_the_service(world: World) -> None:
    spy = Spy(world.env.custody)
    client = TestClient(create_app(spy))
    for method, path, role in REFUSED_CALLS:
        assert request_for(world, method, path, world.headers(ROLE_PERSON[role]), client).status_code == 403
    assert spy.calls == []
    assert request_for(world, "GET", "/v1/vaults", world.headers("viewer"), client).status_code == 200
    assert spy.calls == ["list_vaults"]


BAD_CREDENTIALS = {
    "missing": {},
    "basic": {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
    "empty bearer": {"Authorization": "Bearer "},
    "garbled": {"Authorization": "Bearer hbk_<script>"},
    "unknown": {"Authorization": f"Bearer hbk_{MISSING}_{'00' * 32}"},
    "malformed secret": {"Authorization": f"Bearer hbk_{MISSING}_zz"},
}


@pytest.mark.parametrize("credential", list(BAD_CREDENTIALS))
@pytest.mark.parametrize(("method", "path"), sorted(ROUTE_ROLES))
def test_bad_credential_refused_and_nothing_written(world: World, method: str, path: str, credential: str) -> None:
    before = world.snapshot()
    response = request_for(world, method, path, BAD_CREDENTIALS[credential])
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert world.snapshot() == before


def test_two_authorization_headers_are_refused(world: World) -> None:
    headers = [("authorization", f"Bearer {world.env.people['admin'].token}"), ("authorization", "Bearer hbk_x")]
    problem(world.client.get("/v1/me", headers=headers), 401)


def test_authenticated_but_refused_is_403_not_401(world: World) -> None:
    """The viewer is authenticated (200 on /v1/me) but refused (403, not 401) on an admin route."""
    assert world.call("GET", "/v1/me", "viewer").status_code == 200
    problem(world.call("POST", "/v1/users", "viewer", json={"name": "x", "roles": ["viewer"]}), 403)


def test_every_role_may_read(world: World) -> None:
    for role in ROLES:
        for (method, path), allowed in ROUTE_ROLES.items():
            if method == "GET" and allowed == EVERYONE:
                response = world.call("GET", concrete(world, path), ROLE_PERSON[role])
                assert response.status_code == 200, (path, role, response.text)


# -- refusals: malformed requests ----------------------------------------------------------------------------

MALFORMED: list[tuple[str, str, str, Callable[[World], dict[str, Any]], int, str]] = [
    # (id, method, path, request kwargs, status, offending location)
    ("extra field", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, fee="0")}, 422, "body.fee"),
    ("float amount", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount=1.5)}, 422, "body.amount"),
    (
        "fractional float",
        "POST",
        "/v1/transactions",
        lambda w: {"json": withdrawal(w, amount=1000.5)},
        422,
        "body.amount",
    ),
    ("exponent", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount="1e3")}, 422, "body.amount"),
    ("negative", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount="-1000")}, 422, "body.amount"),
    ("negative int", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount=-1000)}, 422, "body.amount"),
    ("zero", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount="0")}, 422, "body.amount"),
    ("leading zero", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount="01000")}, 422, "body.amount"),
    ("2^256", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount=str(2**256))}, 422, "body.amount"),
    ("bool amount", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount=True)}, 422, "body.amount"),
    ("null amount", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, amount=None)}, 422, "body.amount"),
    (
        "missing amount",
        "POST",
        "/v1/transactions",
        lambda w: {"json": {"vault_id": w.vault_id, "asset": "ETH", "to": DEST}},
        422,
        "body.amount",
    ),
    ("bad address", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, to="0x1234")}, 422, "body.to"),
    (
        "bad checksum",
        "POST",
        "/v1/transactions",
        lambda w: {"json": withdrawal(w, to=DEST_BAD_CHECKSUM)},
        422,
        "body.to",
    ),
    ("address type", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, to=12)}, 422, "body.to"),
    (
        "vault id",
        "POST",
        "/v1/transactions",
        lambda w: {"json": withdrawal(w, vault_id="../../etc")},
        422,
        "body.vault_id",
    ),
    ("long note", "POST", "/v1/transactions", lambda w: {"json": withdrawal(w, note="n" * 257)}, 422, "body.note"),
    (
        "control chars",
        "POST",
        "/v1/transactions",
        lambda w: {"json": withdrawal(w, note="a\x1b[2Jb")},
        422,
        "body.note",
    ),
    ("array body", "POST", "/v1/transactions", lambda w: {"json": [withdrawal(w)]}, 422, "body"),
    (
        "no idempotency key",
        "POST",
        "/v1/transactions",
        lambda w: {"json": withdrawal(w), "headers": {"Idempotency-Key": ""}},
        422,
        "header.Idempotency-Key",
    ),
    (
        "bad idempotency key",
        "POST",
        "/v1/transactions",
        lambda w: {"json": withdrawal(w), "headers": {"Idempotency-Key": "a b"}},
        422,
        "header.Idempotency-Key",
    ),
    (
        "duplicate keys",
        "POST",
        "/v1/transactions",
        lambda w: {"content": b'{"amount": "1", "amount": "1000"}'},
        422,
        "body",
    ),
    (
        "NaN",
        "POST",
        "/v1/transactions",
        lambda w: {"content": json.dumps(withdrawal(w, amount=float("nan"))).encode()},
        422,
        "body",
    ),
    (
        "huge integer",
        "POST",
        "/v1/transactions",
        lambda w: {"content": json.dumps(withdrawal(w)).replace('"1000"', "9" * 5000).encode()},
        422,
        "body",
    ),
    ("not UTF-8", "POST", "/v1/transactions", lambda w: {"content": b'{"note": "\xff\xfe"}'}, 422, "body"),
    (
        "deep nesting",
        "POST",
        "/v1/policy/proposals",
        lambda w: {"content": b'{"document": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"},
        422,
        "body",
    ),
    (
        "depth 33",
        "POST",
        "/v1/policy/proposals",
        lambda w: {"content": b'{"document": {"a": ' + b"[" * 31 + b"]" * 31 + b"}}"},
        422,
        "body",
    ),
    (
        "truncated JSON",
        "POST",
        "/v1/transactions",
        lambda w: {"content": json.dumps(withdrawal(w)).encode()[:-3]},
        422,
        "body",
    ),
    ("form body", "POST", "/v1/transactions", lambda w: {"data": {"amount": "1000"}}, 422, "body"),
    (
        "threshold as string",
        "POST",
        "/v1/vaults",
        lambda w: {"json": {"name": "v", "threshold": "2"}},
        422,
        "body.threshold",
    ),
    ("threshold 1", "POST", "/v1/vaults", lambda w: {"json": {"name": "v", "threshold": 1}}, 422, "body.threshold"),
    ("long name", "POST", "/v1/vaults", lambda w: {"json": {"name": "v" * 129, "threshold": 2}}, 422, "body.name"),
    (
        "nodes not a list",
        "POST",
        "/v1/vaults",
        lambda w: {"json": {"name": "v", "threshold": 2, "nodes": "node1"}},
        422,
        "body.nodes",
    ),
    ("unknown role", "POST", "/v1/users", lambda w: {"json": {"name": "u", "roles": ["root"]}}, 422, "body.roles.0"),
    (
        "bad approval key",
        "POST",
        "/v1/users",
        lambda w: {"json": {"name": "u", "roles": ["approver"], "approval_key": "zz"}},
        422,
        "body.approval_key",
    ),
    (
        "whitelisted as int",
        "POST",
        "/v1/address-book",
        lambda w: {"json": {"name": "n", "address": DEST, "whitelisted": 1}},
        422,
        "body.whitelisted",
    ),
    (
        "lower-case symbol",
        "POST",
        "/v1/assets",
        lambda w: {"json": {"symbol": "eth", "kind": "native", "decimals": 18}},
        422,
        "body.symbol",
    ),
    (
        "unknown kind",
        "POST",
        "/v1/assets",
        lambda w: {"json": {"symbol": "X", "kind": "nft", "decimals": 0}},
        422,
        "body.kind",
    ),
    (
        "short signature",
        "POST",
        "/v1/transactions/{tx_id}/approve",
        lambda w: {"json": {"signature": "00" * 63}},
        422,
        "body.signature",
    ),
    (
        "policy not an object",
        "POST",
        "/v1/policy/proposals",
        lambda w: {"json": {"document": []}},
        422,
        "body.document",
    ),
    ("node name", "POST", "/v1/governance/nodes", lambda w: {"json": {"name": "../node1"}}, 422, "body.name"),
    ("node name in path", "POST", "/v1/governance/nodes/no%20de/remove", lambda w: {}, 422, "path.name"),
    ("limit 0", "GET", "/v1/transactions?limit=0", lambda w: {}, 422, "query.limit"),
    ("limit 201", "GET", "/v1/transactions?limit=201", lambda w: {}, 422, "query.limit"),
    ("limit text", "GET", "/v1/transactions?limit=ten", lambda w: {}, 422, "query.limit"),
    ("forged cursor", "GET", "/v1/transactions?cursor=Zm9vYmFy", lambda w: {}, 422, ""),
    ("cursor charset", "GET", "/v1/transactions?cursor=%27%3B--", lambda w: {}, 422, "query.cursor"),
    ("unknown state", "GET", "/v1/transactions?state=stolen", lambda w: {}, 422, ""),
    ("tx id", "GET", "/v1/transactions/not-a-uuid", lambda w: {}, 422, "path.tx_id"),
    ("negative index", "GET", "/v1/audit/proof/-1", lambda w: {}, 422, "path.index"),
    ("old 0", "GET", "/v1/audit/consistency?old=0&new=2", lambda w: {}, 422, "query.old"),
]


def caller_for(method: str, path: str) -> str:
    """Someone whose role allows the route, so that only the malformation is refused."""
    if path.startswith("/v1/audit"):
        return "auditor"
    if path.endswith("/approve"):
        return "approver1"
    return "initiator" if (method, path) == ("POST", "/v1/transactions") else "admin"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "location"),
    [pytest.param(m, p, k, s, loc, id=name) for name, m, p, k, s, loc in MALFORMED],
)
def test_malformed_request_refused_and_nothing_written(
    world: World, method: str, path: str, kwargs: Callable[[World], dict[str, Any]], status: int, location: str
) -> None:
    who = caller_for(method, path)
    arguments = kwargs(world)
    headers = {"Idempotency-Key": "malformed-1", **arguments.pop("headers", {})}
    if "content" in arguments:
        headers.setdefault("Content-Type", "application/json")
    before = world.snapshot()
    response = world.call(method, concrete(world, path), who, headers=headers, **arguments)
    body = problem(response, status)
    if location:
        assert location in {e["location"] for e in body["errors"]}, body
        assert body["detail"].startswith(body["errors"][0]["location"])
    assert "9999999999" not in response.text, "a problem never echoes what was sent"
    assert world.snapshot() == before


def test_body_over_64_kib_is_413(world: World) -> None:
    before = world.snapshot()
    big = withdrawal(world, note="x" * (MAX_BODY + 1))
    body = problem(
        world.call("POST", "/v1/transactions", "initiator", json=big, headers={"Idempotency-Key": "big"}), 413
    )
    assert body["type"] == "https://harbour.dev/problems/payload-too-large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit counts what arrives
        for _ in range(80):
            yield b" " * 1024

    streamed = world.call(
        "POST",
        "/v1/transactions",
        "initiator",
        content=chunks(),
        headers={"Idempotency-Key": "big2", "Content-Type": "application/json"},
    )
    problem(streamed, 413)
    assert world.snapshot() == before


def test_unknown_transaction_is_404(world: World) -> None:
    body = problem(world.call("GET", f"/v1/transactions/{MISSING}", "viewer"), 404)
    assert MISSING in body["detail"]
    problem(world.call("GET", f"/v1/transactions/{MISSING}/approval-request", "approver1"), 404)
    problem(world.call("POST", f"/v1/transactions/{MISSING}/cancel", "initiator"), 404)


def test_unknown_route_and_wrong_method(world: World) -> None:
    body = problem(world.call("GET", "/v1/nothing-here", "admin"), 404)
    assert body["instance"] == "/v1/nothing-here"
    problem(world.client.get("/v2/health"), 404)
    wrong = world.call("DELETE", "/v1/transactions", "admin")
    body = problem(wrong, 405)
    assert set(wrong.headers["allow"].replace(" ", "").split(",")) == {"GET", "POST"}
    assert "DELETE" in body["detail"]


def test_a_cursor_at_the_end_of_time_is_refused_not_a_500(world: World) -> None:
    """Found by fuzzing: a well-formed cursor whose time overflows once converted to UTC was a 500."""
    for at in ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00"):
        cursor = base64.urlsafe_b64encode(f"{at}|{MISSING}".encode()).decode().rstrip("=")
        for path in ("/v1/users", "/v1/transactions", "/v1/vaults", f"/v1/vaults/{world.vault_id}/addresses"):
            body = problem(world.call("GET", path, "viewer", params={"cursor": cursor}), 422)
            assert "cursor" in body["detail"]


def test_a_chain_that_fails_is_a_503_problem(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The chain node down (or answering nonsense) is a dependency failure, not the server's own error."""

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ChainError("eth_getBalance failed: connection refused by 10.0.0.7")

    monkeypatch.setattr(world.env.custody.chain, "balance", broken)
    monkeypatch.setattr(world.env.custody.chain, "token_balance", broken)
    response = world.call("GET", f"/v1/vaults/{world.vault_id}", "viewer")
    body = problem(response, 503)
    assert body["type"] == "https://harbour.dev/problems/unavailable" and response.headers["retry-after"] == "5"
    assert "10.0.0.7" not in response.text


def test_unexpected_error_is_a_500_problem_without_internals(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr(world.env.custody, "list_assets", boom)
    response = world.call("GET", "/v1/assets", "viewer")
    body = problem(response, 500)
    assert "hunter2" not in response.text and "RuntimeError" not in response.text
    assert body["type"] == "https://harbour.dev/problems/internal-error"


def test_strict_json_parser() -> None:
    assert parse_json(b'{"a": [1, "2", null]}') == {"a": [1, "2", None]}
    for bad in (b'{"a": 1, "a": 2}', b"NaN", b"[Infinity]", b"1" * 101, b"\xff", b"[" * 100_000, b"{"):
        with pytest.raises(json.JSONDecodeError):
            parse_json(bad)


# -- idempotency and pagination ------------------------------------------------------------------------------


def transactions_with_key(world: World, key: str) -> int:
    from harbour.custody import models as m

    with world.env.custody.sessions() as s:
        return s.scalar(select(func.count()).where(m.Transaction.idempotency_key == key)) or 0


def test_retry_with_the_same_key_returns_the_same_transaction(world: World) -> None:
    first = shaped(shapes.Transaction, submit(world, "retry-1"), 201)
    before = world.snapshot()
    again = shaped(shapes.Transaction, submit(world, "retry-1"), 201)
    assert again["id"] == first["id"]
    assert world.snapshot() == before
    # Amount as a JSON integer is the same request as the same amount as a string.
    assert submit(world, "retry-1", amount=1000).json()["id"] == first["id"]
    body = problem(submit(world, "retry-1", amount="2000"), 409)
    assert "retry-1" in body["detail"]
    assert world.snapshot() == before
    assert transactions_with_key(world, "retry-1") == 1


def test_concurrent_retries_create_one_withdrawal(world: World) -> None:
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def go() -> None:
        response = submit(world, "race-1")
        with lock:
            results.append(response)

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {r.status_code for r in results} == {201}, [r.text for r in results]
    assert len({r.json()["id"] for r in results}) == 1
    assert transactions_with_key(world, "race-1") == 1


def walk(world: World, path: str, limit: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        params: dict[str, Any] = {"limit": limit}
        if cursor:
            params["cursor"] = cursor
        page = world.call("GET", path, "auditor", params=params).json()
        assert len(page["items"]) <= limit
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("pagination does not end")


@pytest.mark.parametrize(
    "path", ["/v1/address-book", "/v1/transactions", "/v1/users", "/v1/audit/events", "/v1/governance/entries"]
)
def test_pagination_walks_every_item_exactly_once(world: World, path: str) -> None:
    if path == "/v1/address-book":
        for i in range(5):
            body = {"name": f"walk {i}", "address": "0x" + f"{i + 0x1000:040x}"}
            govern(world, world.call("POST", "/v1/address-book", "admin", json=body))
    key = {"/v1/audit/events": "index", "/v1/governance/entries": "seq"}.get(path, "id")
    expected = [item[key] for item in walk(world, path, 200)]
    assert len(expected) > 3
    for limit in (1, 2, 7):
        seen = [item[key] for item in walk(world, path, limit)]
        assert len(set(seen)) == len(seen), "an item appeared twice"
        # The pipeline may log events meanwhile: a later walk may only have more, at the end.
        assert seen[: len(expected)] == expected


# -- over a real socket -------------------------------------------------------------------------------------------


def test_through_a_real_uvicorn_socket(world: World) -> None:
    with BackgroundServer(world.env.custody) as server, httpx.Client(base_url=server.url) as http:
        assert http.get("/v1/health").json()["status"] == "ok"
        me = http.get("/v1/me", headers=world.headers("viewer"))
        assert me.status_code == 200 and me.json()["name"] == "viewer"
        refused = http.get("/v1/me")
        assert refused.status_code == 401 and refused.headers["content-type"] == PROBLEM
        created = http.post(
            "/v1/transactions",
            json=withdrawal(world),
            headers=world.headers("initiator", **{"Idempotency-Key": "sock-1"}),
        )
        assert created.status_code == 201 and created.json()["state"] == "pending_approval"

        def chunks() -> Iterator[bytes]:
            for _ in range(100):
                yield b"x" * 1024

        big = http.post(
            "/v1/transactions",
            content=chunks(),
            headers=world.headers("initiator", **{"Idempotency-Key": "sock-2", "Content-Type": "application/json"}),
        )
        assert big.status_code == 413 and big.headers["content-type"] == PROBLEM
        assert http.get("/openapi.json").json()["info"]["title"] == "Harbour custody API"
