"""The chain client (chains/evm.py) against the embedded chain and a real anvil node.

Each chain test runs twice: on eth-tester/py-evm in this process and on anvil over
HTTP, because the two differ in exactly what matters here (error messages, how a
re-sent transaction is answered, number formats). Transactions are built with
Eip1559Transaction and signed by eth-account keys, the way custody assembles what
its signer nodes sign. A scripted fake node checks what happens when a node lies.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from importlib import resources
from typing import Any

import pytest
import rlp
from eth_abi.abi import encode as abi_encode
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils.crypto import keccak
from web3 import Web3
from web3.providers.base import BaseProvider
from web3.types import RPCEndpoint, RPCResponse

from harbour.chains.eip1559 import (
    TRANSFER_TOPIC,
    Eip1559Transaction,
    TransactionError,
    erc20_transfer_data,
    parse_address,
    transaction_hash,
)
from harbour.chains.ethereum import checksum_address
from harbour.chains.evm import GWEI, ChainError, EvmClient, Receipt, Transfer
from harbour.chains.token import CompileError, compile_vyper, token_artifact, token_source

ETH = 10**18

# Emits Transfer-topic logs of every wrong shape, then one well-formed one.
ODD_EMITTER = """
# pragma version ^0.4.0
# pragma evm-version cancun

TRANSFER: constant(bytes32) = keccak256("Transfer(address,address,uint256)")


@external
def emit(to: address, amount: uint256):
    sender: bytes32 = convert(msg.sender, bytes32)
    recipient: bytes32 = convert(to, bytes32)
    value: bytes32 = convert(amount, bytes32)
    raw_log([TRANSFER, sender, recipient, value], b"")  # ERC-721 shape: four topics, no data
    raw_log([TRANSFER, sender, recipient], concat(value, value))  # two words of data
    raw_log([TRANSFER, sender, recipient], b"")  # no amount
    raw_log([TRANSFER, sender, recipient], value)  # the one ERC-20 transfer
"""


@pytest.fixture(params=["embedded", "anvil"])
def chain(request: pytest.FixtureRequest) -> EvmClient:
    if request.param == "embedded":
        return EvmClient.embedded()
    return EvmClient.connect(request.getfixturevalue("anvil"), dev=True)


def sign(tx: Eip1559Transaction, account: LocalAccount) -> bytes:
    """eth-account signs the 32-byte signing hash, as a signer node would; ``signed`` assembles the raw bytes."""
    signature = Account._sign_hash(tx.signing_hash(), account.key)
    return tx.signed(signature.v - 27, signature.r, signature.s)


def build(
    chain: EvmClient,
    sender: LocalAccount,
    to: str,
    value: int = 0,
    data: bytes = b"",
    *,
    nonce: int | None = None,
    gas: int | None = None,
) -> bytes:
    max_fee, tip = chain.fees()
    tx = Eip1559Transaction(
        chain_id=chain.chain_id,
        nonce=chain.nonce(sender.address) if nonce is None else nonce,
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=max_fee,
        gas_limit=gas if gas is not None else chain.estimate_gas(sender.address, to, value, data) * 5 // 4,
        to=parse_address(to),
        value=value,
        data=data,
    )
    return sign(tx, sender)


def funded(chain: EvmClient, wei: int = ETH) -> LocalAccount:
    account: LocalAccount = Account.create()
    chain.fund(account.address, wei)
    return account


def deploy(chain: EvmClient, deployer: LocalAccount, bytecode: bytes) -> str:
    """Contract creation signed by eth-account (Eip1559Transaction only pays addresses); returns the address."""
    nonce = chain.nonce(deployer.address)
    max_fee, tip = chain.fees()
    fields: dict[str, object] = {"type": 2, "chainId": chain.chain_id, "nonce": nonce, "gas": 1_000_000, "value": 0}
    fields.update(maxFeePerGas=max_fee, maxPriorityFeePerGas=tip, data="0x" + bytecode.hex())
    receipt = chain.wait(chain.send_raw(bytes(Account.sign_transaction(fields, deployer.key).raw_transaction)))
    assert receipt.status == 1
    return checksum_address(keccak(rlp.encode([parse_address(deployer.address), nonce]))[12:])


def fresh_address() -> str:
    return str(Account.create().address)


# -- sending ETH --------------------------------------------------------------------------------------


def test_eth_transfer(chain: EvmClient) -> None:
    sender = funded(chain)
    recipient = fresh_address()
    raw = build(chain, sender, recipient, 12345, gas=21_000)
    tx_hash = chain.send_raw(raw)
    assert tx_hash == transaction_hash(raw)
    receipt = chain.wait(tx_hash)
    assert receipt == chain.receipt(tx_hash)
    assert receipt.status == 1 and receipt.gas_used == 21_000
    max_fee, tip = chain.fees()
    assert tip <= receipt.effective_gas_price <= max_fee
    assert chain.confirmations(receipt) == 1
    chain.mine(2)
    assert chain.confirmations(receipt) == 3
    assert chain.balance(recipient) == 12345
    assert chain.balance(sender.address) == ETH - 12345 - 21_000 * receipt.effective_gas_price
    assert chain.nonce(sender.address) == chain.nonce(sender.address, "latest") == 1
    assert chain.nonce(sender.address, receipt.block_number - 1) == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        receipt.status = 0  # type: ignore[misc]


def test_resending_the_same_transaction_is_not_an_error(chain: EvmClient) -> None:
    """Custody re-broadcasts after a restart; the node says 'already known' or 'nonce too low'."""
    sender = funded(chain)
    raw = build(chain, sender, fresh_address(), 1, gas=21_000)
    tx_hash = chain.send_raw(raw)
    chain.wait(tx_hash)
    assert chain.send_raw(raw) == tx_hash
    assert chain.send_raw(raw) == tx_hash
    assert chain.nonce(sender.address) == 1


def test_unknown_transaction_has_no_receipt(chain: EvmClient) -> None:
    assert chain.receipt(bytes(32)) is None


def test_fees_follow_the_base_fee(chain: EvmClient) -> None:
    max_fee, tip = chain.fees()
    assert tip == GWEI  # both nodes answer eth_maxPriorityFeePerGas with 1 gwei
    base_fee = (max_fee - tip) // 2
    assert max_fee == 2 * base_fee + tip and base_fee > 0


def test_reused_nonce_is_refused_with_the_nodes_message(chain: EvmClient) -> None:
    sender = funded(chain)
    chain.wait(chain.send_raw(build(chain, sender, fresh_address(), 1, gas=21_000)))
    other = build(chain, sender, fresh_address(), 2, nonce=0, gas=21_000)  # a different transaction, nonce 0 again
    with pytest.raises(ChainError, match=r"(?i)nonce") as caught:
        chain.send_raw(other)
    assert caught.value.node_message and caught.value.node_message in str(caught.value)


def test_insufficient_funds_is_refused_with_the_nodes_message(chain: EvmClient) -> None:
    sender = funded(chain, 10**15)
    with pytest.raises(ChainError, match=r"(?i)funds|balance") as caught:
        chain.send_raw(build(chain, sender, fresh_address(), ETH, gas=21_000))
    assert caught.value.node_message


def test_wrong_chain_id_is_refused(chain: EvmClient) -> None:
    sender = funded(chain)
    max_fee, tip = chain.fees()
    tx = Eip1559Transaction(chain.chain_id + 1, 0, tip, max_fee, 21_000, parse_address(fresh_address()), 1)
    with pytest.raises(ChainError, match=f"signed for chain {chain.chain_id + 1}"):
        chain.send_raw(sign(tx, sender))


@pytest.mark.parametrize("raw", [b"\x02", b"\x02\xc0", b"\x02\xc1\xc0", b"\xff" * 40, b"\x05\xc0", b"\x7f"])
def test_garbage_is_refused(chain: EvmClient, raw: bytes) -> None:
    with pytest.raises(ChainError):
        chain.send_raw(raw)


def test_legacy_transaction_without_chain_id_is_never_sent(chain: EvmClient) -> None:
    """A pre-EIP-155 signature is valid on every chain: replayable, so refused before the node sees it."""
    sender = funded(chain)
    fields = {"nonce": 0, "gasPrice": 10 * GWEI, "gas": 21_000, "to": fresh_address(), "value": 1}
    raw = bytes(Account.sign_transaction(fields, sender.key).raw_transaction)
    with pytest.raises(ChainError, match="pre-EIP-155"):
        chain.send_raw(raw)
    legacy = bytes(Account.sign_transaction({**fields, "chainId": chain.chain_id}, sender.key).raw_transaction)
    assert chain.wait(chain.send_raw(legacy)).status == 1


def test_sixteen_threads_send_at_once(chain: EvmClient) -> None:
    senders = [funded(chain) for _ in range(16)]
    recipients = [fresh_address() for _ in senders]
    barrier = threading.Barrier(len(senders))
    receipts: dict[int, Receipt] = {}
    errors: list[BaseException] = []

    def send(i: int) -> None:
        try:
            barrier.wait()
            raw = build(chain, senders[i], recipients[i], 1000 + i, gas=21_000)
            receipts[i] = chain.wait(chain.send_raw(raw))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(senders))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert sorted(receipts) == list(range(16)) and all(r.status == 1 for r in receipts.values())
    assert [chain.balance(r) for r in recipients] == [1000 + i for i in range(16)]


# -- ERC-20 -------------------------------------------------------------------------------------------


def call_word(chain: EvmClient, token: str, signature: str, *args: bytes) -> bytes:
    return chain.call(token, keccak(text=signature)[:4] + b"".join(args))


def test_token_deploy_and_transfer_by_calldata(chain: EvmClient) -> None:
    token = chain.deploy_token("Harbour Test Dollar", "HTD", 6, 10**15)
    assert token == checksum_address(parse_address(token))
    assert chain.token_balance(token, chain.dev_account()) == 10**15
    assert int.from_bytes(call_word(chain, token, "totalSupply()"), "big") == 10**15
    assert int.from_bytes(call_word(chain, token, "decimals()"), "big") == 6
    assert call_word(chain, token, "symbol()") == abi_encode(["string"], ["HTD"])

    holder = funded(chain)
    chain.token_transfer(token, holder.address, 1000)
    recipient = fresh_address()
    data = erc20_transfer_data(parse_address(recipient), 400)
    receipt = chain.wait(chain.send_raw(build(chain, holder, token, 0, data)))
    assert receipt.status == 1
    assert chain.token_balance(token, holder.address) == 600
    assert chain.token_balance(token, recipient) == 400
    too_much = erc20_transfer_data(parse_address(recipient), 601)
    with pytest.raises(ChainError, match="revert"):
        chain.estimate_gas(holder.address, token, 0, too_much)


def test_token_allowance_and_transfer_from(chain: EvmClient) -> None:
    """EIP-20 approve / allowance / transferFrom, and a transfer beyond the allowance reverts."""
    token = chain.deploy_token("T", "T", 18, 10**24)
    owner, spender = funded(chain), funded(chain)
    recipient = fresh_address()
    chain.token_transfer(token, owner.address, 500)
    approve = keccak(text="approve(address,uint256)")[:4] + abi_encode(["address", "uint256"], [spender.address, 300])
    assert chain.wait(chain.send_raw(build(chain, owner, token, 0, approve))).status == 1
    allowance = call_word(
        chain, token, "allowance(address,address)", abi_encode(["address", "address"], [owner.address, spender.address])
    )
    assert int.from_bytes(allowance, "big") == 300
    pull = keccak(text="transferFrom(address,address,uint256)")[:4]
    first = chain.block_number() + 1
    move = pull + abi_encode(["address", "address", "uint256"], [owner.address, recipient, 200])
    assert chain.wait(chain.send_raw(build(chain, spender, token, 0, move))).status == 1
    assert chain.token_balance(token, recipient) == 200 and chain.token_balance(token, owner.address) == 300
    found = chain.scan(first, chain.block_number(), {recipient}, {token})
    assert [(t.kind, t.sender, t.recipient, t.amount) for t in found] == [("erc20", owner.address, recipient, 200)]
    beyond = pull + abi_encode(["address", "address", "uint256"], [owner.address, recipient, 101])
    with pytest.raises(ChainError, match="revert"):
        chain.estimate_gas(spender.address, token, 0, beyond)


def test_token_balance_of_a_non_token_is_an_error(chain: EvmClient) -> None:
    with pytest.raises(ChainError, match="not an ERC-20"):
        chain.token_balance(fresh_address(), fresh_address())


# -- deposits -----------------------------------------------------------------------------------------


def test_scan_finds_each_deposit_once(chain: EvmClient) -> None:
    token, other_token = chain.deploy_token("W", "W", 6, 10**12), chain.deploy_token("U", "U", 6, 10**12)
    payer = funded(chain)
    chain.token_transfer(token, payer.address, 10**6)
    a, b, stranger = fresh_address(), fresh_address(), fresh_address()
    first = chain.block_number() + 1

    eth_to_a = chain.send_raw(build(chain, payer, a, 777, gas=21_000))
    chain.wait(eth_to_a)
    chain.fund(stranger, 5)  # unwatched address
    tokens_to_b = chain.token_transfer(token, b, 42)
    chain.token_transfer(token, stranger, 43)  # unwatched address
    chain.token_transfer(other_token, a, 44)  # unwatched token
    chain.wait(chain.send_raw(build(chain, payer, token, 0, erc20_transfer_data(parse_address(a), 0))))  # zero
    chain.wait(chain.send_raw(build(chain, payer, a, 0, gas=21_000)))  # zero ETH
    tokens_to_a = chain.send_raw(build(chain, payer, token, 0, erc20_transfer_data(parse_address(a), 9)))
    chain.wait(tokens_to_a)
    last = chain.block_number()
    chain.mine(2)

    found = chain.scan(first, last, {a, b}, {token})
    expected = [
        ("eth", None, eth_to_a, payer.address, a, 777),
        ("erc20", token, tokens_to_b, chain.dev_account(), b, 42),
        ("erc20", token, tokens_to_a, payer.address, a, 9),
    ]
    assert [(t.kind, t.token, t.tx_hash, t.sender, t.recipient, t.amount) for t in found] == expected
    assert found[0].log_index == -1 and all(t.log_index >= 0 for t in found[1:])
    assert [t.block_number for t in found] == sorted(t.block_number for t in found)
    assert chain.scan(first, last, {a, b}, {token}) == found  # a rescan after a restart sees the same
    assert chain.scan(first, last + 2, {a, b}, {token}) == found
    split = [t for n in range(first, last + 1) for t in chain.scan(n, n, {a, b}, {token})]
    assert split == found
    assert chain.scan(first, last, {a}, set()) == found[:1]  # no tokens: ETH only
    assert chain.scan(first, last, set(), {token}) == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        found[0].amount = 1  # type: ignore[misc]


def test_scan_skips_transfer_logs_that_are_not_erc20(chain: EvmClient, caplog: pytest.LogCaptureFixture) -> None:
    _, bytecode = compile_vyper(ODD_EMITTER)
    deployer = funded(chain)
    emitter = deploy(chain, deployer, bytecode)
    watched = fresh_address()
    call = keccak(text="emit(address,uint256)")[:4] + abi_encode(["address", "uint256"], [watched, 5])
    tx_hash = chain.send_raw(build(chain, deployer, emitter, 0, call))
    receipt = chain.wait(tx_hash)
    with caplog.at_level(logging.WARNING, logger="harbour.chains.evm"):
        found = chain.scan(receipt.block_number, receipt.block_number, {watched}, {emitter})
    assert found == [
        Transfer("erc20", emitter, tx_hash, found[0].log_index, receipt.block_number, deployer.address, watched, 5)
    ]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert any("4 topics" in w for w in warnings) and any("64 bytes" in w for w in warnings)


def test_scan_checks_its_arguments(chain: EvmClient) -> None:
    with pytest.raises(ValueError, match="first <= last"):
        chain.scan(5, 4, {fresh_address()}, set())
    with pytest.raises(ValueError):
        chain.scan(-1, 4, {fresh_address()}, set())
    with pytest.raises(TransactionError):
        chain.scan(0, 0, {"0x1234"}, set())
    with pytest.raises(ChainError, match="not on the chain"):
        chain.scan(0, chain.block_number() + 10, {fresh_address()}, set())


# -- what only development chains allow ---------------------------------------------------------------


def test_dev_helpers_refused_on_a_production_connection(anvil: str) -> None:
    chain = EvmClient.connect(anvil)
    address = fresh_address()
    for attempt in (
        lambda: chain.fund(address, 1),
        lambda: chain.deploy_token("T", "T", 6, 1),
        lambda: chain.token_transfer(address, address, 1),
        lambda: chain.mine(1),
        chain.dev_account,
    ):
        with pytest.raises(ChainError, match="development chains"):
            attempt()
    assert chain.balance(address) == 0  # reading works as usual


def test_connect_refuses_other_schemes_and_reports_a_dead_node() -> None:
    for url in ("ws://127.0.0.1:8545", "127.0.0.1:8545", "file:///etc/passwd", "wss://me:s3cret@node.example/v3/k"):
        with pytest.raises(ValueError, match="http") as info:
            EvmClient.connect(url)
        assert "s3cret" not in str(info.value)
    from anvil import free_port

    with pytest.raises(ChainError, match="eth_chainId"):
        EvmClient.connect(f"http://127.0.0.1:{free_port()}", timeout=2)


def test_arguments_are_checked_before_asking_the_node() -> None:
    chain = EvmClient.embedded()
    good = fresh_address()
    with pytest.raises(TransactionError):
        chain.balance("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeaED")  # bad EIP-55 checksum
    with pytest.raises(TransactionError):
        chain.balance("0x" + "00" * 19 + "  ")
    for block in (-1, "newest", True, 1.0, None):
        with pytest.raises(ValueError):
            chain.balance(good, block)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        chain.send_raw("0x02")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        chain.receipt(b"\x01" * 31)
    with pytest.raises(TypeError):
        chain.estimate_gas(good, good, 0, "0x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        chain.estimate_gas(good, good, -1, b"")
    with pytest.raises(ValueError):
        chain.fund(good, 2**256)
    with pytest.raises(ValueError):
        chain.deploy_token("T", "T", 256, 1)
    with pytest.raises(ValueError):
        chain.deploy_token("", "T", 6, 1)
    with pytest.raises(ValueError):
        chain.mine(0)


# -- the token contract -------------------------------------------------------------------------------


def test_token_artifact_is_eip20_and_cached() -> None:
    abi, bytecode = token_artifact()
    functions = {e["name"]: [i["type"] for i in e["inputs"]] for e in abi if e["type"] == "function"}
    assert functions == {
        "name": [],
        "symbol": [],
        "decimals": [],
        "totalSupply": [],
        "balanceOf": ["address"],
        "allowance": ["address", "address"],
        "transfer": ["address", "uint256"],
        "transferFrom": ["address", "address", "uint256"],
        "approve": ["address", "uint256"],
    }
    events = {e["name"]: [(i["type"], i["indexed"]) for i in e["inputs"]] for e in abi if e["type"] == "event"}
    assert events["Transfer"] == [("address", True), ("address", True), ("uint256", False)]
    assert events["Approval"] == [("address", True), ("address", True), ("uint256", False)]
    assert keccak(text="Transfer(address,address,uint256)") == TRANSFER_TOPIC
    assert bytecode and token_artifact() == (abi, bytecode)
    abi.clear()  # callers get a copy; the cache is untouched
    assert token_artifact()[0]


def test_token_source_ships_with_the_package() -> None:
    resource = resources.files("harbour.chains") / "contracts" / "token.vy"
    assert resource.is_file() and resource.read_text(encoding="utf-8") == token_source()
    assert "# pragma version" in token_source()


def test_compiler_errors_are_reported() -> None:
    with pytest.raises(CompileError, match="vyper"):
        compile_vyper("@external\ndef f() -> uint256:\n    return -1\n")


# -- a node that lies ---------------------------------------------------------------------------------


class ScriptedNode(BaseProvider):
    """Answers each JSON-RPC method from a table: a value is a result, an Exception an error."""

    def __init__(self, answers: dict[str, Any]) -> None:
        super().__init__()
        self.answers = {"eth_chainId": "0x1", **answers}

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        answer = self.answers.get(method, KeyError(method))
        if callable(answer):
            answer = answer(params)
        if isinstance(answer, Exception):
            return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": str(answer)}}
        return {"jsonrpc": "2.0", "id": 1, "result": answer}


def scripted(**answers: Any) -> EvmClient:
    return EvmClient.from_web3(Web3(ScriptedNode(answers), middleware=[]))


def word(n: int) -> str:
    return "0x" + n.to_bytes(32, "big").hex()


def topic(address: str) -> str:
    return "0x" + parse_address(address).rjust(32, b"\0").hex()


WATCHED, SENDER = fresh_address(), fresh_address()
TOKEN = checksum_address(bytes.fromhex("11" * 20))
BLOCK_HASH = "0x" + "ab" * 32


def log_entry(**changes: Any) -> dict[str, Any]:
    entry = {
        "address": TOKEN.lower(),
        "topics": ["0x" + TRANSFER_TOPIC.hex(), topic(SENDER), topic(WATCHED)],
        "data": word(5),
        "blockNumber": "0x5",
        "blockHash": BLOCK_HASH,
        "transactionHash": "0x" + "cd" * 32,
        "transactionIndex": "0x0",
        "logIndex": "0x0",
        "removed": False,
    }
    entry.update(changes)
    return entry


def block(number: int = 5, block_hash: str = BLOCK_HASH) -> dict[str, Any]:
    return {"number": hex(number), "hash": block_hash, "transactions": []}


def test_lying_node_answers_are_errors() -> None:
    with pytest.raises(ChainError, match="chain id 0"):
        scripted(eth_chainId="0x0")
    with pytest.raises(ChainError):
        scripted(eth_chainId="seven")
    for bad in ("0x", "0xzz", "-0x1", "0x" + "f" * 65, 12.5, True, None, [1]):
        with pytest.raises(ChainError):
            scripted(eth_getBalance=bad).balance(WATCHED)
    raw = sign(Eip1559Transaction(1, 0, 1, 2, 21_000, parse_address(WATCHED), 1), Account.create())
    with pytest.raises(ChainError, match="returned hash"):
        scripted(eth_sendRawTransaction="0x" + "00" * 32).send_raw(raw)
    assert scripted(eth_sendRawTransaction="0x" + transaction_hash(raw).hex()).send_raw(raw) == transaction_hash(raw)
    with pytest.raises(ChainError, match="not an ERC-20"):
        scripted(eth_call="0x").token_balance(TOKEN, WATCHED)
    with pytest.raises(ChainError, match="not an ERC-20"):
        scripted(eth_call=word(1) + "00").token_balance(TOKEN, WATCHED)
    with pytest.raises(ChainError, match="no base fee"):
        scripted(eth_getBlockByNumber={"number": "0x1"}).fees()


def test_lying_receipts() -> None:
    tx_hash = bytes.fromhex("cd" * 32)
    good = {"transactionHash": "0x" + tx_hash.hex(), "blockNumber": "0x5", "status": "0x1"}
    good.update(gasUsed="0x5208", effectiveGasPrice="0x3b9aca00")
    assert scripted(eth_getTransactionReceipt=good).receipt(tx_hash) == Receipt(tx_hash, 5, 1, 21000, 10**9)
    assert scripted(eth_getTransactionReceipt={**good, "blockNumber": None}).receipt(tx_hash) is None
    with pytest.raises(ChainError, match="another transaction"):
        scripted(eth_getTransactionReceipt={**good, "transactionHash": "0x" + "00" * 32}).receipt(tx_hash)
    with pytest.raises(ChainError, match="status"):
        scripted(eth_getTransactionReceipt={**good, "status": "0x2"}).receipt(tx_hash)


def test_node_without_priority_fee_method_gets_one_gwei() -> None:
    chain = scripted(eth_getBlockByNumber={"baseFeePerGas": "0x64"}, eth_maxPriorityFeePerGas=ValueError("no method"))
    assert chain.fees() == (200 + GWEI, GWEI)


def test_malformed_and_unasked_for_logs_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    good = log_entry()
    bad = [
        log_entry(removed=True),
        log_entry(address=fresh_address()),  # a token nobody asked for
        log_entry(topics=[*good["topics"][:2], topic(SENDER)]),  # a recipient nobody watches
        log_entry(blockNumber="0x9"),  # outside the range
        log_entry(topics=good["topics"][:2]),
        log_entry(topics=[*good["topics"], word(1)]),
        log_entry(topics="0x" + TRANSFER_TOPIC.hex()),
        log_entry(topics=[word(1), *good["topics"][1:]]),
        log_entry(topics=[*good["topics"][:2], "0x01" + good["topics"][2][4:]]),  # dirty padding
        log_entry(data=word(5) + "00"),
        log_entry(data="0x"),
        log_entry(data=5),
        log_entry(transactionHash="0x1234"),
        log_entry(logIndex=None),
        "not a log",
    ]
    chain = scripted(eth_getBlockByNumber=lambda params: block(int(params[0], 16)), eth_getLogs=[*bad, good, good])
    with caplog.at_level(logging.WARNING, logger="harbour.chains.evm"):
        found = chain.scan(4, 6, {WATCHED}, {TOKEN})
    assert found == [Transfer("erc20", TOKEN, bytes.fromhex("cd" * 32), 0, 5, SENDER, WATCHED, 5)]
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == len(bad) - 1  # removed: silent


def test_scan_notices_a_reorganisation() -> None:
    chain = scripted(eth_getBlockByNumber=block(5, "0x" + "ee" * 32), eth_getLogs=[log_entry()])
    with pytest.raises(ChainError, match="changed during the scan"):
        chain.scan(5, 5, {WATCHED}, {TOKEN})


def test_scan_refuses_a_wrong_block() -> None:
    with pytest.raises(ChainError, match="asked for block 5"):
        scripted(eth_getBlockByNumber=block(6)).scan(5, 5, {WATCHED}, set())
    with pytest.raises(ChainError, match="transaction list"):
        scripted(eth_getBlockByNumber={**block(5), "transactions": None}).scan(5, 5, {WATCHED}, set())


def test_eth_deposits_need_a_successful_receipt() -> None:
    tx_hash = "0x" + "cd" * 32
    tx = {"hash": tx_hash, "from": SENDER.lower(), "to": WATCHED.lower(), "value": "0x10"}
    receipt = {"transactionHash": tx_hash, "blockNumber": "0x5", "gasUsed": "0x0", "effectiveGasPrice": "0x0"}

    def chain(status: str) -> EvmClient:
        return scripted(
            eth_getBlockByNumber={**block(5), "transactions": [tx]},
            eth_getTransactionReceipt={**receipt, "status": status},
        )

    assert chain("0x1").scan(5, 5, {WATCHED}, set()) == [
        Transfer("eth", None, bytes.fromhex("cd" * 32), -1, 5, SENDER, WATCHED, 16)
    ]
    assert chain("0x0").scan(5, 5, {WATCHED}, set()) == []  # reverted: no value moved
