"""Development chains only: spending from the node's prefunded account, deploying the test token, mining.

The embedded chain (eth-tester) and anvil hold prefunded accounts whose keys the
node itself holds, so a transaction from them is sent with ``eth_sendTransaction``
and the node signs. Tests and the demo fund addresses and deploy the test ERC-20
this way; on any other chain these helpers refuse, since a production node would
either have no such account or one nobody should spend from.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Protocol

from eth_abi.abi import encode as abi_encode

from harbour.chains.eip1559 import erc20_transfer_data
from harbour.chains.ethereum import checksum_address
from harbour.chains.rpcvalues import (
    ChainError,
    Receipt,
    caller_address,
    caller_amount,
    node_address,
    node_bytes,
    node_mapping,
    node_uint,
)


class Node(Protocol):
    """What the helpers need of a chain client (:class:`harbour.chains.evm.EvmClient`)."""

    def request(self, method: str, params: Sequence[object]) -> object: ...

    def fees(self) -> tuple[int, int]: ...

    def wait(self, tx_hash: bytes) -> Receipt: ...


class DevChain:
    """The development helpers of one client; every one refuses unless the client was made for a dev chain."""

    def __init__(self, node: Node, *, enabled: bool, mine_in_process: Callable[[int], bool]) -> None:
        self._node = node
        self._enabled = enabled
        self._mine_in_process = mine_in_process
        self._lock = threading.Lock()
        self._sender: str | None = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    def account(self) -> str:
        """The prefunded account the development helpers spend from (the node holds its key)."""
        if not self._enabled:
            raise ChainError(
                "funding, deploying and mining are for development chains (embedded, or connect(dev=True))"
            )
        if self._sender is None:
            accounts = self._node.request("eth_accounts", [])
            if not isinstance(accounts, Sequence) or isinstance(accounts, str | bytes) or not accounts:
                raise ChainError("the development node has no unlocked prefunded account")
            self._sender = node_address(accounts[0], "a dev account")
        return self._sender

    def _send(self, to: str | None, value: int, data: bytes) -> Receipt:
        """Send from the prefunded account and wait for success (eth_sendTransaction: the node signs)."""
        sender = self.account()
        with self._lock:
            call: dict[str, object] = {"from": sender, "value": hex(value), "data": "0x" + data.hex()}
            if to is not None:
                call["to"] = to
            gas = node_uint(self._node.request("eth_estimateGas", [call]), "a gas estimate", 2**64 - 1)
            max_fee, tip = self._node.fees()
            call.update(gas=hex(gas + gas // 5), maxFeePerGas=hex(max_fee), maxPriorityFeePerGas=hex(tip))
            sent = node_bytes(self._node.request("eth_sendTransaction", [call]), "a transaction hash", 32)
            receipt = self._node.wait(sent)
        if receipt.status != 1:
            raise ChainError(f"development transaction 0x{sent.hex()} failed")
        return receipt

    def fund(self, address: str, wei: int) -> bytes:
        """Send ``wei`` from the chain's first prefunded account; returns the transaction hash."""
        target = checksum_address(caller_address(address))
        return self._send(target, caller_amount("wei", wei), b"").tx_hash

    def deploy_token(self, name: str, symbol: str, decimals: int, supply: int) -> str:
        """Deploy the test ERC-20 (contracts/token.vy); the prefunded account holds the whole supply."""
        from harbour.chains.token import token_artifact

        if not isinstance(name, str) or not 0 < len(name.encode()) <= 64:
            raise ValueError("token name must be 1..64 bytes of text")
        if not isinstance(symbol, str) or not 0 < len(symbol.encode()) <= 32:
            raise ValueError("token symbol must be 1..32 bytes of text")
        if type(decimals) is not int or not 0 <= decimals <= 255:
            raise ValueError(f"decimals must be an integer in 0..255, got {decimals!r}")
        _, bytecode = token_artifact()
        args = abi_encode(
            ["string", "string", "uint8", "uint256"], [name, symbol, decimals, caller_amount("supply", supply)]
        )
        receipt = self._send(None, 0, bytecode + args)
        found = node_mapping(
            self._node.request("eth_getTransactionReceipt", ["0x" + receipt.tx_hash.hex()]), "a receipt"
        )
        return node_address(found.get("contractAddress"), "a contract address")

    def token_transfer(self, token: str, to: str, amount: int) -> bytes:
        """ERC-20 ``transfer`` from the prefunded account; returns the transaction hash."""
        contract = checksum_address(caller_address(token, "token"))
        return self._send(
            contract, 0, erc20_transfer_data(caller_address(to, "to"), caller_amount("amount", amount))
        ).tx_hash

    def mine(self, blocks: int = 1) -> None:
        """Mine empty blocks (to reach a confirmation depth in tests)."""
        self.account()
        if type(blocks) is not int or not 1 <= blocks <= 10_000:
            raise ValueError(f"blocks must be an integer in 1..10000, got {blocks!r}")
        if self._mine_in_process(blocks):
            return
        try:
            self._node.request("anvil_mine", [hex(blocks)])
        except ChainError:
            for _ in range(blocks):
                self._node.request("evm_mine", [])
