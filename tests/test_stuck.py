"""Fees, gas and stuck transactions on anvil, with three real signer-node processes.

Shared by the module: the nodes (tests/custody_env.py) and, per worker, one
anvil. Each test gets a fresh service and organisation on them. A transaction
stays in anvil's pool while its mining is held (``evm_setAutomine`` off, then
``evm_mine``), which is how a transaction gets stuck here; ``anvil_dropTransaction``
makes the node forget one, and ``anvil_impersonateAccount`` lets the test use
a vault address's nonce without its key, as a transaction this service never
sent would. The contracts are small Vyper sources compiled in the test.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from eth_abi.abi import encode as abi_encode
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from custody_env import ETH, CustodyEnv
from harbour.chains.ethereum import checksum_address, keccak256
from harbour.chains.evm import EvmClient
from harbour.chains.token import compile_vyper
from harbour.custody import models as m
from harbour.custody.errors import Conflict, Forbidden, Invalid
from harbour.custody.views import Page
from helpers import wait_until

DEST = "0x5555555555555555555555555555555555555555"
FINAL = ("confirmed", "failed", "rejected", "cancelled")
GWEI = 10**9

RECEIVER = """# pragma version ^0.4.0
payments: public(uint256)
received: public(uint256)

@external
@payable
def __default__():
    # two fresh storage slots: far more than the 21,000 gas of a plain payment
    self.payments += 1
    self.received += msg.value
"""

PAUSABLE = """# pragma version ^0.4.0
event Transfer:
    sender: indexed(address)
    receiver: indexed(address)
    value: uint256

balanceOf: public(HashMap[address, uint256])
symbol: public(String[8])
decimals: public(uint8)
paused: public(bool)
owner: address

@deploy
def __init__(_supply: uint256):
    self.owner = msg.sender
    self.symbol = "PAWS"
    self.decimals = 6
    self.balanceOf[msg.sender] = _supply

@external
def pause():
    assert msg.sender == self.owner, "owner only"
    self.paused = True

@external
def transfer(_to: address, _value: uint256) -> bool:
    assert not self.paused, "transfers are paused"
    self.balanceOf[msg.sender] -= _value
    self.balanceOf[_to] += _value
    log Transfer(sender=msg.sender, receiver=_to, value=_value)
    return True
"""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyEnv]:
    options = {"poll": 0.05, "deposit_poll": 0.2, "rebroadcast_after": 0.2, "retry": 0.3}
    shared = CustodyEnv(tmp_path_factory.mktemp("stuck"), pipeline_options=options)
    try:
        shared.start_nodes()
        yield shared
    finally:
        shared.stop()


def _fresh(request: pytest.FixtureRequest, deployment: CustodyEnv, database: str, anvil: str) -> CustodyEnv:
    request.addfinalizer(deployment.close)
    deployment.reset(database, chain_url=anvil)
    deployment.organisation()
    deployment.set_policy({"rules": [{"name": "anything goes", "action": "allow"}]})
    return deployment


@pytest.fixture
def env(request: pytest.FixtureRequest, deployment: CustodyEnv, sqlite_url: str, anvil: str) -> CustodyEnv:
    return _fresh(request, deployment, sqlite_url, anvil)


@pytest.fixture
def pg_env(request: pytest.FixtureRequest, deployment: CustodyEnv, postgres_db_url: str, anvil: str) -> CustodyEnv:
    """The same on PostgreSQL, whose partial unique index is what lets a replacement share its original's nonce."""
    return _fresh(request, deployment, postgres_db_url, anvil)


# -- helpers -------------------------------------------------------------------------------------------------------


@contextmanager
def held(chain: EvmClient) -> Iterator[None]:
    """Nothing is mined until :func:`mine` (or the end of the block, which mines what waits)."""
    chain.request("evm_setAutomine", [False])
    try:
        yield
    finally:
        chain.request("evm_setAutomine", [True])


def mine(chain: EvmClient) -> None:
    chain.request("evm_mine", [])


def deploy(chain: EvmClient, source: str, args: bytes = b"") -> str:
    _, bytecode = compile_vyper(source)
    call = {"from": chain.dev_account(), "data": "0x" + (bytecode + args).hex(), "gas": hex(3_000_000)}
    sent = chain.request("eth_sendTransaction", [call])
    assert isinstance(sent, str)
    chain.wait(bytes.fromhex(sent[2:]))
    receipt = chain.request("eth_getTransactionReceipt", [sent])
    assert isinstance(receipt, dict)
    return checksum_address(bytes.fromhex(receipt["contractAddress"][2:]))


def call_dev(chain: EvmClient, to: str, data: bytes) -> None:
    sent = chain.request("eth_sendTransaction", [{"from": chain.dev_account(), "to": to, "data": "0x" + data.hex()}])
    assert isinstance(sent, str)
    assert chain.wait(bytes.fromhex(sent[2:])).status == 1


def read_uint(chain: EvmClient, contract: str, name: str) -> int:
    return int.from_bytes(chain.call(contract, keccak256(f"{name}()".encode())[:4]), "big")


def withdraw(env: CustodyEnv, vault_id: str, amount: int, to: str = DEST, **fees: Any) -> dict[str, Any]:
    return env.custody.submit_withdrawal(
        env.actor("initiator"), vault_id=vault_id, asset="ETH", to=to, amount=amount, **fees
    )


def view(env: CustodyEnv, tx_id: str) -> dict[str, Any]:
    return env.custody.get_transaction(env.actor("admin"), tx_id)


def reach(env: CustodyEnv, tx_id: str, states: tuple[str, ...] = FINAL, timeout: float = 30) -> dict[str, Any]:
    return wait_until(
        lambda: (lambda t: t if t["state"] in states else None)(view(env, tx_id)),
        timeout,
        message=f"transaction {tx_id} to reach one of {states}",
    )


def events(env: CustodyEnv, kind: str, subject: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = env.custody.audit_events(env.actor("auditor"), Page(limit=200, cursor=cursor))
        found += [e for e in page["items"] if e["kind"] == kind and e["subject"] == subject]
        cursor = page["next_cursor"]
        if cursor is None:
            return found


# -- fees and gas ----------------------------------------------------------------------------------------------------


def test_a_payment_to_a_contract_is_estimated_above_21000_gas_and_its_maximum_fee_is_what_approvers_sign(
    env: CustodyEnv,
) -> None:
    receiver = deploy(env.chain, RECEIVER)
    vault_id, _ = env.vault(fund=ETH)
    initiator = env.actor("initiator")
    plain = env.custody.estimate(initiator, vault_id=vault_id, asset="ETH", to=DEST, amount=10**15)
    estimate = env.custody.estimate(initiator, vault_id=vault_id, asset="ETH", to=receiver, amount=10**15)
    assert plain["gas_limit"] == 21_000 < estimate["gas_limit"]
    levels = estimate["levels"]
    assert set(levels) == {"slow", "normal", "fast"} and estimate["default_level"] == "normal"
    for caps in levels.values():
        assert int(caps["max_fee"]) == estimate["gas_limit"] * int(caps["max_fee_per_gas"])
    assert int(levels["slow"]["max_fee"]) < int(levels["normal"]["max_fee"]) < int(levels["fast"]["max_fee"])

    env.set_policy(env.two_approvers_policy())
    tx = withdraw(env, vault_id, 10**15, to=receiver, fee_level="fast")
    assert tx["state"] == "pending_approval" and tx["fee_level"] == "fast"
    assert tx["gas_limit"] == estimate["gas_limit"]
    assert int(tx["max_fee"]) == tx["gas_limit"] * int(levels["fast"]["max_fee_per_gas"])
    request = env.custody.approval_request(env.actor("approver1"), tx["id"])
    assert request["intent"]["max_fee"] == tx["max_fee"]  # what the approver signs
    env.approve(tx["id"], "approver1")
    env.approve(tx["id"], "approver2")
    done = reach(env, tx["id"])
    assert done["state"] == "confirmed", done
    unsigned = done["unsigned"]
    assert int(unsigned["gas_limit"]) == tx["gas_limit"]
    assert int(unsigned["gas_limit"]) * int(unsigned["max_fee_per_gas"]) <= int(tx["max_fee"])
    assert done["gas_used"] > 21_000
    assert read_uint(env.chain, receiver, "payments") == 1
    assert read_uint(env.chain, receiver, "received") == 10**15


def test_explicit_caps_are_built_as_given_and_the_funds_check_reserves_the_maximum_fee(env: CustodyEnv) -> None:
    base = env.chain.base_fee()
    caps = {"max_fee_per_gas": str(3 * base + GWEI), "max_priority_fee_per_gas": str(GWEI)}
    max_fee = 21_000 * (3 * base + GWEI)
    vault_id, _ = env.vault(fund=10**15 + max_fee)
    short = withdraw(env, vault_id, 10**15 + 1, **caps)
    assert short["state"] == "rejected" and short["sub_status"] == "insufficient-funds", short
    tx = withdraw(env, vault_id, 10**15, **caps)
    assert tx["max_fee"] == str(max_fee) and tx["fee_level"] is None
    done = reach(env, tx["id"])
    assert done["state"] == "confirmed", done
    assert done["unsigned"]["max_fee_per_gas"] == caps["max_fee_per_gas"]
    assert done["unsigned"]["max_priority_fee_per_gas"] == caps["max_priority_fee_per_gas"]
    with pytest.raises(Invalid, match="max_fee_per_gas must be a whole number of wei per gas"):
        withdraw(env, vault_id, 1, max_fee_per_gas="0", max_priority_fee_per_gas="2")


def test_a_token_withdrawal_whose_gas_estimate_reverts_fails_with_the_reason(env: CustodyEnv) -> None:
    token = deploy(env.chain, PAUSABLE, abi_encode(["uint256"], [10**12]))
    admin = env.actor("admin")
    env.govern(env.custody.add_asset(admin, symbol="PAWS", kind="erc20", contract=token, decimals=6))
    vault_id, address = env.vault(fund=ETH)
    call_dev(
        env.chain,
        token,
        keccak256(b"transfer(address,uint256)")[:4] + abi_encode(["address", "uint256"], [address, 500]),
    )
    env.set_policy(env.two_approvers_policy())
    tx = env.custody.submit_withdrawal(env.actor("initiator"), vault_id=vault_id, asset="PAWS", to=DEST, amount=100)
    assert tx["state"] == "pending_approval" and tx["gas_limit"] >= 60_000
    call_dev(env.chain, token, keccak256(b"pause()")[:4])
    env.approve(tx["id"], "approver1")
    env.approve(tx["id"], "approver2")
    done = reach(env, tx["id"])
    assert done["state"] == "failed" and done["sub_status"] == "estimate-reverted", done
    assert "transfers are paused" in done["error"] and done["nonce"] is None
    # it took no nonce: the next withdrawal from the address goes at nonce 0
    after = withdraw(env, vault_id, 10**15)
    env.approve(after["id"], "approver1")
    env.approve(after["id"], "approver2")
    after = reach(env, after["id"])
    assert after["state"] == "confirmed" and after["nonce"] == 0


# -- dropped transactions ------------------------------------------------------------------------------------------


def test_a_transaction_the_chain_forgot_is_sent_again_from_its_signed_bytes_after_a_restart(env: CustodyEnv) -> None:
    vault_id, _ = env.vault(fund=ETH)
    with held(env.chain):
        tx = reach(env, withdraw(env, vault_id, 10**15)["id"], ("broadcast",))
        env.close()  # the service is down while the node forgets the transaction
        env.chain.request("anvil_dropTransaction", [tx["tx_hash"]])
        forgotten = bytes.fromhex(tx["tx_hash"][2:])
        assert not env.chain.transaction_known(forgotten)
        env.open()
        wait_until(lambda: env.chain.transaction_known(forgotten), 15, message="the same transaction sent again")
        mine(env.chain)
    done = reach(env, tx["id"])
    assert done["state"] == "confirmed" and done["tx_hash"] == tx["tx_hash"] and done["nonce"] == tx["nonce"]
    assert len(events(env, "transaction.rebroadcast", tx["id"])) >= 1
    assert env.chain.balance(DEST) >= 10**15


def test_a_transaction_whose_nonce_another_took_is_dropped_and_the_address_moves_on(env: CustodyEnv) -> None:
    vault_id, address = env.vault(fund=ETH)
    with held(env.chain):
        tx = reach(env, withdraw(env, vault_id, 10**15)["id"], ("broadcast",))
        sent = tx["unsigned"]
        env.chain.request("anvil_impersonateAccount", [address])
        try:  # the same nonce, higher fees: anvil takes it in place of ours
            env.chain.request(
                "eth_sendTransaction",
                [
                    {
                        "from": address,
                        "to": address,
                        "value": "0x0",
                        "nonce": hex(tx["nonce"]),
                        "gas": hex(21_000),
                        "maxFeePerGas": hex(2 * int(sent["max_fee_per_gas"])),
                        "maxPriorityFeePerGas": hex(2 * int(sent["max_priority_fee_per_gas"])),
                    }
                ],
            )
        finally:
            env.chain.request("anvil_stopImpersonatingAccount", [address])
        mine(env.chain)
    done = reach(env, tx["id"])
    assert done["state"] == "failed" and done["sub_status"] == "dropped", done
    later = reach(env, withdraw(env, vault_id, 10**15)["id"])
    assert later["state"] == "confirmed" and later["nonce"] == tx["nonce"] + 1


# -- speed-up and cancel --------------------------------------------------------------------------------------------


def test_a_speed_up_is_approved_like_a_withdrawal_and_the_one_mined_decides(env: CustodyEnv) -> None:
    vault_id, _ = env.vault(fund=ETH)
    env.set_policy(env.two_approvers_policy())
    before = env.chain.balance(DEST)
    with held(env.chain):
        stuck = withdraw(env, vault_id, 10**15, fee_level="slow")
        env.approve(stuck["id"], "approver1")
        env.approve(stuck["id"], "approver2")
        stuck = reach(env, stuck["id"], ("broadcast",))
        sent = stuck["unsigned"]
        initiator = env.actor("initiator")
        with pytest.raises(Invalid, match="at least 10 %"):
            env.custody.speed_up(
                initiator,
                stuck["id"],
                max_fee_per_gas=sent["max_fee_per_gas"],
                max_priority_fee_per_gas=sent["max_priority_fee_per_gas"],
            )
        with pytest.raises(Forbidden):
            env.custody.speed_up(env.actor("viewer"), stuck["id"])
        fast = env.custody.speed_up(initiator, stuck["id"], fee_level="fast")
        assert fast["state"] == "pending_approval" and fast["replaces_id"] == stuck["id"]
        assert int(fast["max_fee_per_gas"]) * 10 >= int(sent["max_fee_per_gas"]) * 11
        with pytest.raises(Conflict, match="already replaces"):
            env.custody.speed_up(initiator, stuck["id"])
        request = env.custody.approval_request(env.actor("approver1"), fast["id"])
        assert request["intent"]["replaces"] == stuck["id"] and request["intent"]["max_fee"] == fast["max_fee"]
        with pytest.raises(Forbidden):  # the initiator is no approver
            env.custody.approve(env.actor("initiator"), fast["id"], signature="00" * 64)
        env.approve(fast["id"], "approver1")
        env.approve(fast["id"], "approver2")
        fast = reach(env, fast["id"], ("broadcast",))
        assert fast["nonce"] == stuck["nonce"] and fast["tx_hash"] != stuck["tx_hash"]
        mine(env.chain)
    assert reach(env, fast["id"])["state"] == "confirmed"
    replaced = reach(env, stuck["id"])
    assert replaced["state"] == "failed" and replaced["sub_status"] == "replaced", replaced
    assert fast["id"] in replaced["error"]
    assert env.chain.balance(DEST) - before == 10**15  # paid once
    with pytest.raises(Conflict, match="is confirmed"):
        env.custody.speed_up(env.actor("initiator"), fast["id"])


def test_a_cancel_of_a_broadcast_withdrawal_pays_nothing_and_the_withdrawal_ends_replaced(env: CustodyEnv) -> None:
    cancelled(env)


def test_a_cancel_on_postgresql(pg_env: CustodyEnv) -> None:
    cancelled(pg_env)
    with pg_env.custody.sessions() as s:  # two transactions at one nonce, neither a replacement: refused
        tx = s.scalar(select(m.Transaction).where(m.Transaction.replaces_id.is_(None), m.Transaction.nonce == 0))
        assert tx is not None
        s.add(
            m.Transaction(
                org_id=tx.org_id, kind="withdrawal", state="signing", initiator_id=tx.initiator_id,
                source_address_id=tx.source_address_id, nonce=0,
            )
        )  # fmt: skip
        with pytest.raises(IntegrityError, match="uq_transactions_source_address_id_nonce"):
            s.flush()


def cancelled(env: CustodyEnv) -> None:
    """A withdrawal stuck in the pool, cancelled: the cancel is mined, the withdrawal ends replaced, nothing paid."""
    vault_id, address = env.vault(fund=ETH)
    before = env.chain.balance(DEST)
    with held(env.chain):
        stuck = reach(env, withdraw(env, vault_id, 10**15, fee_level="slow")["id"], ("broadcast",))
        cancel = env.custody.cancel(env.actor("initiator"), stuck["id"])
        assert cancel["replaces_id"] == stuck["id"] and cancel["amount"] == "0" and cancel["destination"] == address
        cancel = reach(env, cancel["id"], ("broadcast",))
        assert cancel["nonce"] == stuck["nonce"]
        mine(env.chain)
    assert reach(env, cancel["id"])["state"] == "confirmed"
    replaced = reach(env, stuck["id"])
    assert replaced["state"] == "failed" and replaced["sub_status"] == "replaced"
    assert env.chain.balance(DEST) == before
