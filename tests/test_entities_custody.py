"""Managing what the governance log made, through the API: assets checked, disabled; vaults archived; PATCH, DELETE.

One deployment (three real signer-node processes, the embedded chain) and a
fresh organisation per test (three admins, quorum 1). Every change goes through
the HTTP API as a client would send it, answers 202 with its governance
proposal, and takes effect only once the admins signed it. An asset whose
contract is not the token declared is refused before any admin is asked; one
that stopped answering (put in the log by a path that does not check) leaves
every view working; a disabled asset and an archived vault take no withdrawal.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from httpx import Response

from custody_env import ETH, CustodyEnv, cfg_page, public_hex
from harbour.api.app import create_app
from harbour.chains.rpcvalues import node_bytes, node_mapping
from harbour.chains.token import compile_vyper
from harbour.custody import models as m
from harbour.custody.errors import Conflict
from harbour.custody.service import Founder, FoundingAsset
from harbour.governance import changes as c

DEST = "0x2222222222222222222222222222222222222222"
NOBODY = "0x" + "5e" * 20
"""An address with no code: an account, not a contract."""
MISSING = "00000000-0000-4000-8000-000000000000"

NOT_A_TOKEN = """# pragma version ^0.4.0
@external
@view
def decimals() -> uint8:
    return 6

@external
@view
def symbol() -> String[8]:
    return "FAKE"
"""
"""Answers decimals() and symbol() like a token, but has no balanceOf: every balance read of it fails."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyEnv]:
    shared = CustodyEnv(tmp_path_factory.mktemp("entities"))
    try:
        shared.start_nodes()
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def env(request: pytest.FixtureRequest, deployment: CustodyEnv, sqlite_url: str) -> CustodyEnv:
    request.addfinalizer(deployment.close)
    deployment.reset(sqlite_url)
    deployment.organisation(admins=3)
    deployment.set_policy({"rules": [{"name": "anything goes", "action": "allow"}]})
    return deployment


class Api:
    def __init__(self, env: CustodyEnv) -> None:
        self.env = env
        self.client = TestClient(create_app(env.custody))

    def call(self, method: str, path: str, who: str = "admin", json: Any = None) -> Response:
        headers = {"Authorization": f"Bearer {self.env.people[who].token}"}
        if (method, path) == ("POST", "/v1/transactions"):
            headers["Idempotency-Key"] = m.new_id()
        response: Response = self.client.request(method, path, json=json, headers=headers)
        return response

    def propose(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        """A change that answers 202 with its proposal, signed by the admins until it lands."""
        response = self.call(method, path, json=json)
        assert response.status_code == 202, response.text
        proposal: dict[str, Any] = response.json()
        assert proposal["kind"] == "governance" and proposal["state"] == "pending_approval"
        return self.env.govern(proposal)

    def refused(self, status: int, method: str, path: str, who: str = "admin", json: Any = None) -> str:
        response = self.call(method, path, who, json)
        assert response.status_code == status, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        detail: str = response.json()["detail"]
        return detail


def deploy(env: CustodyEnv, source: str) -> str:
    """Deploy a Vyper contract from the chain's prefunded account; its address."""
    _, bytecode = compile_vyper(source)
    call = {"from": env.chain.dev_account(), "data": "0x" + bytecode.hex(), "gas": hex(1_000_000)}
    sent = node_bytes(env.chain.request("eth_sendTransaction", [call]), "a transaction hash", 32)
    assert env.chain.wait(sent).status == 1
    receipt = node_mapping(env.chain.request("eth_getTransactionReceipt", ["0x" + sent.hex()]), "a receipt")
    return str(receipt["contractAddress"])


def proposals(env: CustodyEnv) -> int:
    page = env.custody.list_transactions(env.actor("admin"), cfg_page())
    return sum(1 for t in page["items"] if t["kind"] == "governance")


def asset_id(env: CustodyEnv, symbol: str) -> str:
    found = [a for a in env.custody.list_assets(env.actor("admin"), cfg_page())["items"] if a["symbol"] == symbol]
    assert len(found) == 1
    return str(found[0]["id"])


# -- adding an asset: the contract must be the token declared -------------------------------------------------


def test_an_asset_that_is_not_the_token_declared_is_refused_before_any_admin_signs(env: CustodyEnv) -> None:
    api, admin = Api(env), env.actor("admin")
    token = env.chain.deploy_token("Test Dollar", "TUSD", 6, 10**12)
    fake = deploy(env, NOT_A_TOKEN)
    before = proposals(env)
    cases = [
        (NOBODY, "TUSD", 6, "has no code"),
        (fake, "FAKE", 6, "does not answer balanceOf(address)"),
        (token, "TUSD", 18, "has 6 decimals, not the 18 declared"),
        (token, "USDC", 6, "is 'TUSD', not the 'USDC' declared"),
    ]
    for contract, symbol, decimals, needle in cases:
        with pytest.raises(Conflict, match=needle.replace("(", r"\(").replace(")", r"\)")):
            env.custody.add_asset(admin, symbol=symbol, kind="erc20", contract=contract, decimals=decimals)
    body = {"symbol": "TUSD", "kind": "erc20", "contract": NOBODY, "decimals": 6}
    assert "has no code" in api.refused(409, "POST", "/v1/assets", json=body)
    assert proposals(env) == before, "nothing was proposed for the admins to sign"
    # A genesis is checked alike: an organisation founded with a contract that is no token is not created.
    founders = [Founder("root", ("admin",), public_hex(Ed25519PrivateKey.generate()))]
    with pytest.raises(Conflict, match="has no code"):
        env.custody.bootstrap("Tokenless", founders, assets=[FoundingAsset("TUSD", "erc20", NOBODY, 6)])
    with env.custody.sessions() as s:
        assert s.query(m.Organisation).filter_by(name="Tokenless").count() == 0
    landed = api.propose("POST", "/v1/assets", {"symbol": "TUSD", "kind": "erc20", "contract": token, "decimals": 6})
    assert landed["state"] == "confirmed"
    listed = {a["symbol"]: a for a in env.custody.list_assets(admin, cfg_page())["items"]}
    assert listed["TUSD"]["contract"] == token and listed["TUSD"]["disabled"] is False


def test_one_unreadable_asset_leaves_the_vault_view_working(env: CustodyEnv) -> None:
    vault_id, address = env.vault(fund=2 * ETH)
    fake = deploy(env, NOT_A_TOKEN)
    # A path that does not ask the chain (as a genesis, or an older service, could): the log now names it.
    bad = c.AddAsset(m.new_id(), "FAKE", fake, 6)
    env.govern(env.custody.governance.propose(env.actor("admin"), lambda state: [bad]))
    response = Api(env).call("GET", f"/v1/vaults/{vault_id}", "viewer")
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["balances"] == {"ETH": str(2 * ETH)}
    assert view["addresses"][0]["address"] == address and view["addresses"][0]["balances"] == {"ETH": str(2 * ETH)}
    assert list(view["unavailable_assets"]) == ["FAKE"]
    assert "balanceOf" in view["unavailable_assets"]["FAKE"] and fake in view["unavailable_assets"]["FAKE"]
    assert view["disabled_assets"] == []


# -- disabling an asset ---------------------------------------------------------------------------------------


def test_a_disabled_asset_cannot_be_withdrawn_and_is_shown_disabled_until_enabled(env: CustodyEnv) -> None:
    api = Api(env)
    vault_id, _ = env.vault()
    eth = asset_id(env, "ETH")
    withdraw = {"vault_id": vault_id, "asset": "ETH", "to": DEST, "amount": "1000"}
    landed = api.propose("DELETE", f"/v1/assets/{eth}")
    assert [ch["description"] for ch in landed["changes"]] == [
        c.describe(c.decode_change({"op": "asset.disable", "id": eth}))
    ]
    assert env.custody.list_assets(env.actor("viewer"), cfg_page())["items"][0]["disabled"] is True
    assert api.call("GET", f"/v1/vaults/{vault_id}", "viewer").json()["disabled_assets"] == ["ETH"]
    assert "is disabled" in api.refused(409, "POST", "/v1/transactions", "initiator", withdraw)
    assert "already" in api.refused(409, "PATCH", f"/v1/assets/{eth}", json={"disabled": True})
    api.propose("PATCH", f"/v1/assets/{eth}", {"disabled": False})
    accepted = api.call("POST", "/v1/transactions", "initiator", withdraw)
    assert accepted.status_code in (201, 202), accepted.text


def test_disabling_an_asset_rejects_the_withdrawals_of_it_still_waiting_for_approval(env: CustodyEnv) -> None:
    env.set_policy(env.two_approvers_policy())
    vault_id, _ = env.vault()
    waiting = env.custody.submit_withdrawal(env.actor("initiator"), vault_id=vault_id, asset="ETH", to=DEST, amount=5)
    assert waiting["state"] == "pending_approval"
    Api(env).propose("DELETE", f"/v1/assets/{asset_id(env, 'ETH')}")
    after = env.custody.get_transaction(env.actor("admin"), waiting["id"])
    assert after["state"] == "rejected" and "is disabled" in str(after)


# -- archiving and renaming a vault ---------------------------------------------------------------------------


def test_an_archived_vault_takes_no_withdrawal_or_address_but_deposits_are_credited(env: CustodyEnv) -> None:
    api = Api(env)
    vault_id, address = env.vault(fund=0)
    api.propose("DELETE", f"/v1/vaults/{vault_id}")
    view = api.call("GET", f"/v1/vaults/{vault_id}", "viewer").json()
    assert view["archived"] is True and view["addresses"][0]["address"] == address, "its history stays"
    withdraw = {"vault_id": vault_id, "asset": "ETH", "to": DEST, "amount": "1"}
    assert "archived" in api.refused(409, "POST", "/v1/transactions", "initiator", withdraw)
    assert "archived" in api.refused(409, "POST", f"/v1/vaults/{vault_id}/addresses")
    assert "changes nothing" in api.refused(409, "PATCH", f"/v1/vaults/{vault_id}", json={"archived": True})
    with pytest.raises(Conflict, match="not brought back"):
        env.custody.update_vault(env.actor("admin"), vault_id, archived=False)
    env.chain.fund(address, 3 * ETH)
    env.chain.mine(2)
    env.custody.deposits.scan_once()
    deposits = env.custody.list_deposits(env.actor("viewer"), cfg_page())["items"]
    assert [(d["vault_id"], d["amount"]) for d in deposits] == [(vault_id, str(3 * ETH))]


def test_a_vault_is_renamed_and_names_stay_unique(env: CustodyEnv) -> None:
    api = Api(env)
    first, _ = env.vault("treasury", fund=0)
    second, _ = env.vault("operations", fund=0)
    landed = api.propose("PATCH", f"/v1/vaults/{first}", {"name": "cold treasury"})
    assert landed["changes"][0]["op"] == "vault.rename"
    assert api.call("GET", f"/v1/vaults/{first}", "viewer").json()["name"] == "cold treasury"
    assert "already" in api.refused(409, "PATCH", f"/v1/vaults/{second}", json={"name": "cold treasury"})
    assert "changes nothing" in api.refused(409, "PATCH", f"/v1/vaults/{first}", json={"name": "cold treasury"})


# -- users and the address book -------------------------------------------------------------------------------


def test_a_user_gets_a_rotated_key_and_new_roles_in_one_entry_and_is_disabled_and_enabled(env: CustodyEnv) -> None:
    api = Api(env)
    viewer = env.user_id("viewer")
    new_key = public_hex(Ed25519PrivateKey.generate())
    landed = api.propose("PATCH", f"/v1/users/{viewer}", {"approval_key": new_key, "roles": ["approver", "viewer"]})
    assert [ch["op"] for ch in landed["changes"]] == ["user.key", "user.roles"], "the key before the roles"
    state = env.custody.ledger.log(env.people["admin"].actor.org_id).state.users[viewer]
    assert state.approval_key == bytes.fromhex(new_key) and state.roles == {"approver", "viewer"}
    api.propose("DELETE", f"/v1/users/{viewer}")
    assert "already disabled" in api.refused(409, "DELETE", f"/v1/users/{viewer}")
    api.propose("PATCH", f"/v1/users/{viewer}", {"disabled": False})
    users = {u["id"]: u for u in env.custody.list_users(env.actor("admin"), cfg_page())["items"]}
    assert users[viewer]["disabled"] is False and users[viewer]["approval_key"] == new_key


def test_an_address_book_entry_is_renamed_and_unwhitelisted_in_one_entry_and_removed(env: CustodyEnv) -> None:
    api = Api(env)
    landed = api.propose("POST", "/v1/address-book", {"name": "exchange", "address": DEST, "whitelisted": True})
    entry_id = landed["changes"][0]["id"]
    changed = api.propose("PATCH", f"/v1/address-book/{entry_id}", {"name": "exchange hot", "whitelisted": False})
    assert [ch["op"] for ch in changed["changes"]] == ["address.rename", "address.whitelist"]
    book = env.custody.list_address_book(env.actor("viewer"), cfg_page())["items"]
    assert [(e["name"], e["address"], e["whitelisted"]) for e in book] == [("exchange hot", DEST, False)]
    api.propose("DELETE", f"/v1/address-book/{entry_id}")
    assert env.custody.list_address_book(env.actor("viewer"), cfg_page())["items"] == []
    assert "no address-book entry" in api.refused(404, "PATCH", f"/v1/address-book/{entry_id}", json={"name": "x"})


# -- what the API refuses -------------------------------------------------------------------------------------


def test_malformed_and_unauthorised_patches_and_deletes_are_refused_before_anything_is_proposed(
    env: CustodyEnv,
) -> None:
    api = Api(env)
    viewer, vault_id = env.user_id("viewer"), env.vault(fund=0)[0]
    eth = asset_id(env, "ETH")
    before = proposals(env)
    user = f"/v1/users/{viewer}"
    cases: list[tuple[int, str, str, Any]] = [
        (422, "PATCH", user, {}),
        (422, "PATCH", user, {"roles": None}),
        (422, "PATCH", user, {"roles": []}),
        (422, "PATCH", user, {"roles": ["root"]}),
        (422, "PATCH", user, {"disabled": "yes"}),
        (422, "PATCH", user, {"approval_key": "00" * 31}),
        (422, "PATCH", user, {"name": "Mallory"}),
        (422, "PATCH", f"/v1/vaults/{vault_id}", {"archived": False}),
        (422, "PATCH", f"/v1/vaults/{vault_id}", {"name": "pad\u202eded"}),
        (422, "PATCH", f"/v1/assets/{eth}", {}),
        (422, "PATCH", f"/v1/assets/{eth}", {"disabled": None}),
        (422, "PATCH", f"/v1/address-book/{MISSING}", {"whitelisted": 1}),
        (422, "DELETE", "/v1/assets/not-a-uuid", None),
        (404, "DELETE", f"/v1/assets/{MISSING}", None),
        (404, "PATCH", f"/v1/users/{MISSING}", {"disabled": True}),
        (404, "DELETE", f"/v1/vaults/{MISSING}", None),
        (409, "PATCH", user, {"roles": ["approver"]}),  # an approver signs: the viewer has no key to sign with
        (409, "PATCH", user, {"roles": ["viewer"]}),
        (409, "PATCH", user, {"disabled": False}),
    ]
    for status, method, path, body in cases:
        api.refused(status, method, path, json=body)
    for method, path in [("PATCH", user), ("DELETE", user), ("DELETE", f"/v1/vaults/{vault_id}")]:
        api.refused(403, method, path, "initiator", {"disabled": True} if method == "PATCH" else None)
    assert proposals(env) == before


def test_a_name_with_the_form_of_a_uuid_is_refused_for_users_vaults_and_entries_created_or_renamed(
    env: CustodyEnv,
) -> None:
    """The CLI takes a UUID-shaped value as an id, a policy's resolution as a name when it is no id: no such name."""
    api = Api(env)
    vault_id = env.vault(fund=0)[0]
    entry_id = api.propose("POST", "/v1/address-book", {"name": "exchange", "address": DEST})["changes"][0]["id"]
    before = proposals(env)
    fullwidth = "".join(chr(ord(ch) + 0xFEE0) if ch.isalnum() else ch for ch in MISSING)  # NFKC gives MISSING
    key = public_hex(Ed25519PrivateKey.generate())
    for shaped in (vault_id, env.user_id("viewer"), MISSING, MISSING.upper(), f" {fullwidth} "):
        for method, path, body, what in [
            ("POST", "/v1/users", {"name": shaped, "roles": ["approver"], "approval_key": key}, "user name"),
            ("POST", "/v1/vaults", {"name": shaped, "threshold": 2}, "vault name"),
            ("PATCH", f"/v1/vaults/{vault_id}", {"name": shaped}, "vault name"),
            ("POST", "/v1/address-book", {"name": shaped, "address": DEST}, "entry name"),
            ("PATCH", f"/v1/address-book/{entry_id}", {"name": shaped}, "entry name"),
        ]:
            detail = api.refused(422, method, path, json=body)
            assert detail.startswith(f"{what} ") and "has the form of a UUID" in detail, (method, path, detail)
    assert proposals(env) == before
    # A name that holds a UUID among other words does not read as one, and is a name like any other.
    api.propose("PATCH", f"/v1/address-book/{entry_id}", {"name": f"exchange {MISSING}"})


def test_a_method_a_resource_does_not_serve_is_a_405_naming_those_it_does(env: CustodyEnv) -> None:
    api = Api(env)
    for path, allowed in [
        (f"/v1/users/{MISSING}", {"DELETE", "PATCH"}),
        (f"/v1/vaults/{MISSING}", {"DELETE", "GET", "PATCH"}),
        (f"/v1/assets/{MISSING}", {"DELETE", "PATCH"}),
        (f"/v1/address-book/{MISSING}", {"DELETE", "PATCH"}),
    ]:
        response = api.call("PUT", path, json={})
        assert response.status_code == 405, path
        assert set(response.headers["allow"].replace(" ", "").split(",")) == allowed, path
