"""Spending on anvil: token outcomes judged by Transfer events, any vault address as the source, sweeping.

Three signer-node processes start once for the module and each test gets a
fresh service on a fresh database, on one anvil node (a real Ethereum node, not
the embedded chain). The tokens are Vyper test contracts under tests/contracts,
compiled as the package compiles its own test token: one that returns false
without reverting (while frozen) and can take a fee on transfer, and one whose
``transfer`` returns nothing, as USDT's does. Every balance is read back from
the chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from fastapi.testclient import TestClient

from custody_env import ETH, CustodyEnv
from harbour.api.app import create_app
from harbour.chains.eip1559 import erc20_transfer_data, parse_address
from harbour.chains.ethereum import checksum_address, keccak256
from harbour.chains.token import compile_vyper
from harbour.custody import models as m
from harbour.custody.errors import Invalid
from harbour.custody.views import Page
from helpers import wait_until

CONTRACTS = Path(__file__).parent / "contracts"
DEST = "0x2222222222222222222222222222222222222222"
FINAL = ("confirmed", "failed", "rejected", "cancelled")


# -- the chain: deploying and calling the test tokens ------------------------------------------------------------


def _send(env: CustodyEnv, to: str | None, data: bytes) -> dict[str, Any]:
    """Send from anvil's prefunded account (anvil signs) and return the raw receipt."""
    call: dict[str, Any] = {"from": env.chain.dev_account(), "data": "0x" + data.hex(), "gas": hex(2_000_000)}
    if to is not None:
        call["to"] = to
    sent = env.chain.request("eth_sendTransaction", [call])
    assert isinstance(sent, str)
    env.chain.wait(bytes.fromhex(sent[2:]))
    receipt = env.chain.request("eth_getTransactionReceipt", [sent])
    assert isinstance(receipt, dict) and int(receipt["status"], 16) == 1, receipt
    return receipt


def deploy(env: CustodyEnv, name: str, types: list[str], args: list[Any]) -> str:
    _, bytecode = compile_vyper((CONTRACTS / f"{name}.vy").read_text())
    address = _send(env, None, bytecode + abi_encode(types, args))["contractAddress"]
    assert isinstance(address, str)
    return checksum_address(bytes.fromhex(address[2:]))


def pay(env: CustodyEnv, token: str, to: str, amount: int) -> None:
    """``transfer`` from the deployer, which holds the supply (while frozen: nothing moves, it returns false)."""
    _send(env, token, erc20_transfer_data(parse_address(to), amount))


def freeze(env: CustodyEnv, token: str, frozen: bool) -> None:
    _send(env, token, keccak256(b"freeze(bool)")[:4] + abi_encode(["bool"], [frozen]))


def register(env: CustodyEnv, symbol: str, token: str, decimals: int = 18) -> None:
    env.govern(
        env.custody.add_asset(env.actor("admin"), symbol=symbol, kind="erc20", contract=token, decimals=decimals)
    )


# -- the service ----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, anvil: str) -> Iterator[CustodyEnv]:
    shared = CustodyEnv(tmp_path_factory.mktemp("spend"), chain_url=anvil)
    try:
        shared.start_nodes()
        yield shared
    finally:
        shared.stop()


def allow_all(**extra: Any) -> dict[str, Any]:
    return {"rules": [{"name": "auto-approve", "action": "allow"}], **extra}


@pytest.fixture
def env(request: pytest.FixtureRequest, deployment: CustodyEnv, sqlite_url: str, anvil: str) -> CustodyEnv:
    request.addfinalizer(deployment.close)
    e = deployment.reset(sqlite_url, chain_url=anvil)
    e.organisation()
    return e


def withdraw(env: CustodyEnv, vault_id: str, amount: int, asset: str = "ETH", **extra: Any) -> dict[str, Any]:
    return env.custody.submit_withdrawal(
        env.actor("initiator"), vault_id=vault_id, asset=asset, to=extra.pop("to", DEST), amount=amount, **extra
    )


def final(env: CustodyEnv, tx_id: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        tx: dict[str, Any] = env.custody.get_transaction(env.actor("admin"), tx_id)
        return tx if tx["state"] in FINAL else None

    return wait_until(done, 60.0, message=f"transaction {tx_id} to finish")


def scanned_past(env: CustodyEnv, block: int) -> None:
    """Wait until the deposit scanner has read ``block``."""

    def past() -> bool:
        with env.custody.uow.read() as s:
            cursor = s.get(m.ChainCursor, "deposits")
            return cursor is not None and cursor.block >= block

    wait_until(past, 30.0, message=f"the deposit scanner to pass block {block}")


def deposits(env: CustodyEnv, symbol: str) -> list[str]:
    return [
        d["amount"] for d in env.custody.list_deposits(env.actor("viewer"), Page())["items"] if d["asset"] == symbol
    ]


def derive(env: CustodyEnv, vault_id: str, fund: int = 0) -> dict[str, Any]:
    address: dict[str, Any] = env.custody.derive_address(env.actor("admin"), vault_id)
    if fund:
        env.chain.fund(address["address"], fund)
    return address


# -- token outcomes ------------------------------------------------------------------------------------------------


def test_a_token_that_returns_false_fails_the_withdrawal_and_its_reservation_is_released(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, address = env.vault(fund=ETH)
    token = deploy(env, "oddtoken", ["uint256", "uint256", "string"], [10**24, 0, "ODD"])
    register(env, "ODD", token)
    pay(env, token, address, 1_000)
    freeze(env, token, True)
    pay(env, token, address, 7)  # returns false: nothing arrives, and no deposit may be credited for it
    tx = withdraw(env, vault_id, 400, "ODD")
    done = final(env, tx["id"])
    assert done["state"] == "failed" and done["sub_status"] == "token-no-transfer", done
    assert "the token reported no transfer" in done["error"] and done["delivered"] == "0"
    assert env.chain.token_balance(token, DEST) == 0 and env.chain.token_balance(token, address) == 1_000
    scanned_past(env, env.chain.block_number())
    assert deposits(env, "ODD") == ["1000"]
    freeze(env, token, False)
    # The failed 400 holds nothing back any more: all 1000 can go.
    again = final(env, withdraw(env, vault_id, 1_000, "ODD")["id"])
    assert again["state"] == "confirmed" and again["delivered"] == "1000" and again["sub_status"] is None, again
    assert env.chain.token_balance(token, DEST) == 1_000


def test_a_token_whose_transfer_returns_nothing_is_confirmed_by_its_transfer_event(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, address = env.vault(fund=ETH)
    token = deploy(env, "voidtoken", ["uint256"], [10**15])
    register(env, "VOID", token, 6)
    pay(env, token, address, 5_000)
    wait_until(lambda: deposits(env, "VOID") == ["5000"], 30.0)
    done = final(env, withdraw(env, vault_id, 1_234, "VOID")["id"])
    assert done["state"] == "confirmed" and done["delivered"] == "1234" and done["sub_status"] is None, done
    assert env.chain.token_balance(token, DEST) == 1_234


def test_a_fee_on_transfer_token_is_confirmed_with_what_it_delivered(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, address = env.vault(fund=ETH)
    token = deploy(env, "oddtoken", ["uint256", "uint256", "string"], [10**24, 100, "FEE"])  # 1% on every transfer
    register(env, "FEE", token)
    pay(env, token, address, 10_000)
    # The deposit is what arrived (9,900), not what was sent.
    wait_until(lambda: deposits(env, "FEE") == ["9900"], 30.0)
    assert env.chain.token_balance(token, address) == 9_900
    done = final(env, withdraw(env, vault_id, 5_000, "FEE")["id"])
    assert done["state"] == "confirmed" and done["sub_status"] == "token-fee-deducted", done
    assert done["amount"] == "5000" and done["delivered"] == "4950" and "4950 of the 5000" in done["error"]
    assert env.chain.token_balance(token, DEST) == 4_950
    assert env.chain.token_balance(token, address) == 4_900


# -- every address spends ------------------------------------------------------------------------------------------


def test_a_withdrawal_pays_from_an_address_that_can_and_the_approvers_sign_its_path(env: CustodyEnv) -> None:
    env.set_policy(env.two_approvers_policy())
    vault_id, main = env.vault(fund=ETH)
    deposit = derive(env, vault_id, fund=5 * ETH)
    tx = withdraw(env, vault_id, 3 * ETH)  # more than the main address holds: the deposit address pays
    assert tx["state"] == "pending_approval" and tx["source_address_id"] == deposit["id"]
    request = env.custody.approval_request(env.actor("approver1"), tx["id"])
    assert request["path"] == "m/1" and request["intent"]["from"] == deposit["address"], request
    env.approve(tx["id"], "approver1")
    env.approve(tx["id"], "approver2")
    done = final(env, tx["id"])
    assert done["state"] == "confirmed", done
    assert env.chain.balance(deposit["address"]) == 2 * ETH - int(done["fee"])
    assert env.chain.balance(main) == ETH
    # Named by its address (or by its id), the main address pays what it can.
    env.set_policy(allow_all())
    named = final(env, withdraw(env, vault_id, ETH // 2, source_address=main)["id"])
    assert named["state"] == "confirmed" and named["source_address_id"] != deposit["id"]
    assert env.chain.balance(main) == ETH // 2 - int(named["fee"])
    by_id = final(env, withdraw(env, vault_id, ETH // 4, source_address=deposit["id"])["id"])
    assert by_id["state"] == "confirmed" and by_id["source_address_id"] == deposit["id"]


def test_sources_that_are_not_the_vaults_or_cannot_pay_are_refused(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, main = env.vault(fund=ETH)
    other_id, other = env.vault(name="other", fund=5 * ETH)
    deposit = derive(env, vault_id, fund=2 * ETH)
    for stranger in (other, env.custody.list_addresses(env.actor("admin"), other_id, Page())["items"][0]["id"], DEST):
        with pytest.raises(Invalid, match="is not an address of vault"):
            withdraw(env, vault_id, 1, source_address=stranger)
    for malformed in (7, "", "0x12", "x" * 65, ["0x"]):
        with pytest.raises(Invalid, match="source_address"):
            withdraw(env, vault_id, 1, source_address=malformed)
    short = withdraw(env, vault_id, 3 * ETH // 2, source_address=main)
    assert short["state"] == "rejected" and short["sub_status"] == "insufficient-funds", short
    assert main in short["error"]
    # 3 ETH in all, but no single address holds 2.5 ETH: refused, and the refusal says why.
    split = withdraw(env, vault_id, 5 * ETH // 2)
    assert split["state"] == "rejected" and split["sub_status"] == "insufficient-funds", split
    assert "no single address can pay" in split["error"] and "hold 3000000000000000000 in all" in split["error"]
    # Over the REST API, the same refusal, and the source by id.
    client = TestClient(create_app(env.custody))
    headers = {"Authorization": f"Bearer {env.people['initiator'].token}"}
    body = {"vault_id": vault_id, "asset": "ETH", "to": DEST, "amount": "1000"}
    refused = client.post(
        "/v1/transactions", json=body | {"source_address": other}, headers=headers | {"Idempotency-Key": "s-1"}
    )
    assert refused.status_code == 422 and "is not an address of vault" in refused.json()["detail"], refused.text
    made = client.post(
        "/v1/transactions", json=body | {"source_address": deposit["id"]}, headers=headers | {"Idempotency-Key": "s-2"}
    )
    assert made.status_code == 201 and made.json()["source_address_id"] == deposit["id"], made.text
    assert final(env, made.json()["id"])["state"] == "confirmed"
    assert env.chain.balance(main) == ETH


# -- sweeping ------------------------------------------------------------------------------------------------------


def sweeps(env: CustodyEnv, *settings: tuple[str, int]) -> list[dict[str, Any]]:
    who = env.user_id("initiator")
    return [{"asset": asset, "threshold": str(threshold), "initiator": who} for asset, threshold in settings]


def test_deposit_addresses_are_swept_into_the_main_address_leaving_only_dust(env: CustodyEnv) -> None:
    vault_id, main = env.vault(fund=ETH // 10)
    token = deploy(env, "oddtoken", ["uint256", "uint256", "string"], [10**24, 0, "ODD"])
    register(env, "ODD", token)
    env.set_policy(allow_all(sweeps=sweeps(env, ("ETH", ETH), ("ODD", 100))))
    full = derive(env, vault_id, fund=2 * ETH)
    small = derive(env, vault_id, fund=ETH // 2)  # below the threshold: left alone
    no_gas = derive(env, vault_id)
    pay(env, token, no_gas["address"], 500)
    done = env.custody.sweeps.run_once()
    swept = {(d.address, d.asset): d for d in done}
    assert set(swept) == {(full["address"], "ETH"), (no_gas["address"], "ODD")}, done
    assert "ETH" in (swept[(no_gas["address"], "ODD")].skipped or "")  # a token sweep needs gas at the address
    eth = final(env, swept[(full["address"], "ETH")].transaction_id or "")
    assert eth["state"] == "confirmed" and eth["sweep"] is True and eth["source_address_id"] == full["id"], eth
    assert eth["destination"] == main
    left = env.chain.balance(full["address"])
    assert env.chain.balance(main) == ETH // 10 + int(eth["amount"])
    assert 0 < left < ETH // 1000  # the unspent part of the fee reserve: no sweep could move it at a profit
    assert env.chain.balance(small["address"]) == ETH // 2
    # With gas_top_up the main address first sends the deposit address the gas it lacks (a sweep of its own).
    odd_setting = sweeps(env, ("ODD", 100))[0] | {"gas_top_up": True}
    env.set_policy(allow_all(sweeps=[*sweeps(env, ("ETH", ETH)), odd_setting]))
    top = env.custody.sweeps.run_once()
    assert [(d.address, d.asset, d.top_up) for d in top] == [(no_gas["address"], "ETH", True)], top
    up = final(env, top[0].transaction_id or "")
    main_id = env.custody.list_addresses(env.actor("admin"), vault_id, Page())["items"][0]["id"]
    assert up["state"] == "confirmed" and up["sweep"] is True, up
    assert up["source_address_id"] == main_id and up["destination"] == no_gas["address"]
    assert env.chain.balance(no_gas["address"]) == int(up["amount"])
    again = env.custody.sweeps.run_once()
    assert [(d.address, d.asset, d.skipped) for d in again] == [(no_gas["address"], "ODD", None)], again
    odd = final(env, again[0].transaction_id or "")
    assert odd["state"] == "confirmed" and odd["sweep"] is True, odd
    assert env.chain.token_balance(token, main) == 500 and env.chain.token_balance(token, no_gas["address"]) == 0
    assert env.custody.sweeps.run_once() == []


def test_a_sweep_is_decided_by_the_policy_like_any_withdrawal(env: CustodyEnv) -> None:
    vault_id, main = env.vault(fund=ETH // 10)
    for bad in (
        sweeps(env, ("BTC", 1)),
        [{"asset": "ETH", "threshold": "1", "initiator": env.user_id("viewer")}],
        [sweeps(env, ("ETH", 1))[0] | {"gas_top_up": True}],  # gas is for tokens
    ):
        with pytest.raises(Invalid, match="policy: sweeps"):
            env.custody.propose_policy(env.actor("admin"), allow_all(sweeps=bad))
    cap = {"name": "cap", "match": {"assets": ["ETH"], "amount": {"min": str(3 * ETH // 2)}}, "action": "block"}
    env.set_policy({"rules": [cap, {"name": "rest", "action": "allow"}], "sweeps": sweeps(env, ("ETH", ETH))})
    big = derive(env, vault_id, fund=3 * ETH)
    env.custody.settings.sweep_interval = 0.1  # the pipeline's own loop sweeps: nobody calls it here

    def refused_sweeps() -> list[dict[str, Any]]:
        items = env.custody.list_transactions(env.actor("admin"), Page(limit=50), "rejected")["items"]
        return [t for t in items if t["sweep"]]

    refused = wait_until(refused_sweeps, 30.0, message="the loop to submit the sweep")[0]
    assert refused["sub_status"] == "policy-blocked" and "cap" in refused["error"], refused
    assert refused["source_address_id"] == big["id"] and refused["destination"] == main
    # Refused under this policy, it is not submitted again on every pass.
    assert env.custody.sweeps.run_once() == []
    assert len(refused_sweeps()) == 1
    assert env.chain.balance(big["address"]) == 3 * ETH and env.chain.balance(main) == ETH // 10
