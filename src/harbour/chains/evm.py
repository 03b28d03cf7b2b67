"""Ethereum over JSON-RPC: balances, fees, broadcasting signed transactions, receipts.

The custody layer never holds a key, so this client never signs anything: it reads
the chain and forwards raw transactions that the signer nodes signed (see
``eip1559.py``). Two kinds of chain sit behind the same class:

- ``EvmClient.embedded()``: eth-tester on py-evm inside this process, mining a block
  per transaction. It is the default for the demo and most tests: no process to
  start, deterministic, milliseconds per transaction. py-evm is not thread-safe, so
  every call into it holds one lock.
- ``EvmClient.connect(url)``: any Ethereum JSON-RPC endpoint over HTTP(S): a
  production node, a provider, or anvil in the tests, through web3 on ``jsonrpc.Web3Provider``
  (one keep-alive connection per thread, so calls run concurrently without a lock).

Everything a node says is checked before it is used (:mod:`harbour.chains.rpcvalues`),
and a returned transaction hash must equal the Keccak-256 of what was sent. Deposit
detection is :mod:`harbour.chains.deposits`, the helpers that fund, deploy and mine
on a development chain :mod:`harbour.chains.devchain`; the client offers both as
methods, so a caller holds one object per chain.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, cast

import rlp
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import RPCEndpoint

from harbour.chains import deposits
from harbour.chains.deposits import Transfer
from harbour.chains.devchain import DevChain
from harbour.chains.eip1559 import transaction_hash
from harbour.chains.ethereum import checksum_address, keccak256
from harbour.chains.jsonrpc import RpcError, Web3Provider
from harbour.chains.rpcvalues import (
    BLOCK_TAGS,
    ChainError,
    Receipt,
    block_param,
    caller_address,
    caller_amount,
    node_bytes,
    node_logs,
    node_mapping,
    node_uint,
)

__all__ = [
    "BALANCE_OF_SELECTOR",
    "BLOCK_TAGS",
    "DEFAULT_PRIORITY_FEE",
    "GWEI",
    "RECEIPT_TIMEOUT",
    "ChainError",
    "EvmClient",
    "Receipt",
    "Transfer",
]

log = logging.getLogger(__name__)

GWEI: Final = 10**9
DEFAULT_PRIORITY_FEE: Final = GWEI
"""Tip used when the node has no ``eth_maxPriorityFeePerGas``: enough for inclusion on mainnet in calm times."""
BALANCE_OF_SELECTOR: Final = keccak256(b"balanceOf(address)")[:4]
RECEIPT_TIMEOUT: Final = 30.0


def _signed_chain_id(raw: bytes) -> int | None:
    """The chain id a signed transaction commits to (EIP-155, EIP-2718 types 1-4); None for pre-EIP-155 legacy."""
    try:
        if raw[0] >= 0xC0:  # legacy: rlp([nonce, gas_price, gas, to, value, data, v, r, s])
            v = int.from_bytes(rlp.decode(raw)[6], "big")
            return None if v in (27, 28) else (v - 35) // 2
        if raw[0] in (1, 2, 3, 4):  # typed: type || rlp([chain_id, ...])
            return int.from_bytes(rlp.decode(raw[1:])[0], "big")
    except (rlp.exceptions.DecodingError, IndexError, TypeError, ValueError):
        raise ChainError(f"0x{raw[:40].hex()}... is not an encoded transaction") from None
    raise ChainError(f"unknown transaction type 0x{raw[0]:02x}")


class _Web3Calls:
    """JSON-RPC through a web3 provider (eth-tester in-process, IPC, a custom session)."""

    def __init__(self, w3: Web3, serialise: bool) -> None:
        self.w3 = w3
        self._lock: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if serialise else contextlib.nullcontext()
        )

    def call(self, method: str, params: Sequence[object]) -> object:
        try:
            with self._lock:
                return cast(object, self.w3.manager.request_blocking(RPCEndpoint(method), list(params)))
        except Web3RPCError as exc:
            error = exc.rpc_response.get("error") if isinstance(exc.rpc_response, Mapping) else None
            if isinstance(error, Mapping) and isinstance(error.get("message"), str):
                code = error.get("code")
                raise RpcError(code if type(code) is int else 0, str(error["message"]), error.get("data")) from exc
            raise RpcError(0, exc.message) from exc
        except Exception as exc:
            # eth-tester answers in-process: its own exceptions (a call that reverts) are the node's answer.
            if type(exc).__module__.startswith("eth_tester."):
                raise RpcError(0, str(exc) or type(exc).__name__) from exc
            raise

    def close(self) -> None:
        close = getattr(self.w3.provider, "close", None)
        if callable(close):
            close()

    def mine(self, blocks: int) -> bool:
        """Mine on eth-tester directly; False if the provider is not eth-tester."""
        tester = getattr(self.w3.provider, "ethereum_tester", None)
        if tester is None:
            return False
        with self._lock:
            tester.mine_blocks(blocks)
        return True


class EvmClient:
    """One Ethereum chain. Build it with ``embedded()``, ``connect(url)`` or ``from_web3(w3)``."""

    def __init__(self, calls: _Web3Calls, *, dev: bool = False) -> None:
        """Wrap a web3 instance; ``embedded``, ``connect`` and ``from_web3`` are the public ways."""
        self._calls = calls
        self._dev = DevChain(self, enabled=dev, mine_in_process=calls.mine)
        self._node_tip: bool | None = None  # does the node answer eth_maxPriorityFeePerGas? None: not asked yet
        chain_id = node_uint(self.request("eth_chainId", []), "the chain id", 2**64 - 1)
        if chain_id == 0:
            raise ChainError("the node reports chain id 0, which is no chain (EIP-155)")
        self.chain_id: int = chain_id

    @classmethod
    def embedded(cls) -> EvmClient:
        """A fresh in-process chain (eth-tester, py-evm) with ten funded accounts, mining a block per transaction."""
        from eth_tester import EthereumTester, PyEVMBackend  # py-evm loads only when asked for
        from web3 import EthereumTesterProvider

        tester = EthereumTester(PyEVMBackend(), auto_mine_transactions=True)
        return cls(_Web3Calls(Web3(EthereumTesterProvider(tester), middleware=[]), serialise=True), dev=True)

    @classmethod
    def connect(cls, url: str, *, dev: bool = False, timeout: float = 30.0) -> EvmClient:
        """A JSON-RPC node over HTTP(S). ``dev=True`` (anvil, a test node) allows the funding helpers."""
        provider = Web3Provider(url, timeout=timeout)  # which checks the URL, and never shows its secrets
        return cls(_Web3Calls(Web3(provider, middleware=[]), serialise=False), dev=dev)

    @classmethod
    def from_web3(cls, w3: Web3, *, dev: bool = False, thread_safe: bool = True) -> EvmClient:
        """Any web3 provider (IPC, an authenticated HTTP session); ``thread_safe=False`` serialises calls."""
        return cls(_Web3Calls(w3, serialise=not thread_safe), dev=dev)

    def close(self) -> None:
        """Close the connections to the node (a later call opens new ones)."""
        self._calls.close()

    # -- reading -------------------------------------------------------------------------------------

    def request(self, method: str, params: Sequence[object]) -> object:
        """One JSON-RPC call; every failure (node error, connection, timeout) becomes ChainError.

        The answer is returned as the node gives it (hex strings over HTTP, some plain
        integers from eth-tester) and checked by the caller with ``node_uint``, ``node_bytes``, ...
        ``node_message`` is the node's own error message when it answered with one.
        """
        try:
            return self._calls.call(method, params)
        except RpcError as exc:
            raise ChainError(f"{method} failed: {exc.message}", node_message=exc.message) from exc
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            raise ChainError(f"{method} failed: {message}", node_message=message) from exc

    def block_number(self) -> int:
        return node_uint(self.request("eth_blockNumber", []), "the block number", 2**63)

    def balance(self, address: str, block: int | str = "latest") -> int:
        """Wei held by ``address``."""
        target = checksum_address(caller_address(address))
        value = self.request("eth_getBalance", [target, block_param(block)])
        return node_uint(value, "a balance")

    def call(self, to: str, data: bytes, block: int | str = "latest") -> bytes:
        """Output of a read-only contract call (``eth_call``); a revert raises ChainError with the reason."""
        if type(data) is not bytes:
            raise TypeError("call data must be bytes")
        call = {"to": checksum_address(caller_address(to, "to")), "data": "0x" + data.hex()}
        return node_bytes(self.request("eth_call", [call, block_param(block)]), "eth_call output")

    def token_balance(self, token: str, address: str, block: int | str = "latest") -> int:
        """``balanceOf(address)`` of an ERC-20 contract, in the token's base units."""
        contract = checksum_address(caller_address(token, "token"))
        answer = self.call(contract, BALANCE_OF_SELECTOR + caller_address(address).rjust(32, b"\0"), block)
        if len(answer) != 32:
            raise ChainError(f"{contract} answered balanceOf with {len(answer)} bytes: not an ERC-20 token (no code?)")
        return int.from_bytes(answer, "big")

    def nonce(self, address: str, block: int | str = "pending") -> int:
        """Transactions sent from ``address``: ``"pending"`` counts the mempool, a block number does not."""
        target = checksum_address(caller_address(address))
        value = self.request("eth_getTransactionCount", [target, block_param(block)])
        return node_uint(value, "a nonce", 2**64 - 1)

    def fees(self) -> tuple[int, int]:
        """``(max_fee_per_gas, max_priority_fee_per_gas)``.

        The base fee can rise 12.5 % per block (EIP-1559), so twice the current one keeps
        a transaction includable through six full blocks; the sender only ever pays
        base fee + tip, never the whole cap.
        """
        base_fee, tip = self.base_fee(), self._tip()
        return 2 * base_fee + tip, tip

    def base_fee(self) -> int:
        """The latest block's base fee per gas (wei)."""
        block = node_mapping(self.request("eth_getBlockByNumber", ["latest", False]), "the latest block")
        if block.get("baseFeePerGas") is None:
            raise ChainError("the latest block has no base fee: the chain does not run EIP-1559")
        return node_uint(block["baseFeePerGas"], "the base fee")

    def priority_fee(self) -> int:
        """The tip per gas the node suggests (1 gwei if it has no ``eth_maxPriorityFeePerGas``)."""
        return self._tip()

    def code(self, address: str, block: int | str = "latest") -> bytes:
        """The contract code at ``address`` (empty for an account no contract lives at)."""
        target = checksum_address(caller_address(address))
        return node_bytes(self.request("eth_getCode", [target, block_param(block)]), "contract code")

    def transaction_known(self, tx_hash: bytes) -> bool:
        """Whether the node knows the transaction (pending in its pool, or mined)."""
        if type(tx_hash) is not bytes or len(tx_hash) != 32:
            raise TypeError("a transaction hash is 32 bytes")
        found = self.request("eth_getTransactionByHash", ["0x" + tx_hash.hex()])
        if found is None:
            return False
        return node_bytes(node_mapping(found, "a transaction").get("hash"), "a transaction hash", 32) == tx_hash

    def _tip(self) -> int:
        """The node's suggested tip; 1 gwei if the node does not implement ``eth_maxPriorityFeePerGas``."""
        if self._node_tip is False:
            return DEFAULT_PRIORITY_FEE
        try:
            tip = node_uint(self.request("eth_maxPriorityFeePerGas", []), "the priority fee")
        except ChainError as exc:
            # Only a node that has never answered and now answers with a JSON-RPC error lacks
            # the method; a connection failure or a malformed answer stays an error.
            if self._node_tip is None and isinstance(exc.__cause__, RpcError):
                log.info("node has no eth_maxPriorityFeePerGas (%s); tipping 1 gwei", exc.node_message)
                self._node_tip = False
                return DEFAULT_PRIORITY_FEE
            raise
        self._node_tip = True
        return tip

    def estimate_gas(self, sender: str, to: str, value: int, data: bytes) -> int:
        """Gas the node expects the call to use; a call that would revert raises ChainError with the reason."""
        if type(data) is not bytes:
            raise TypeError("data must be bytes")
        call = {
            "from": checksum_address(caller_address(sender, "sender")),
            "to": checksum_address(caller_address(to, "to")),
            "value": hex(caller_amount("value", value)),
            "data": "0x" + data.hex(),
        }
        return node_uint(self.request("eth_estimateGas", [call]), "a gas estimate", 2**64 - 1)

    # -- sending -------------------------------------------------------------------------------------

    def send_raw(self, raw: bytes) -> bytes:
        """Broadcast a signed transaction; returns its hash.

        Sending the same bytes again is not an error: custody re-broadcasts after a
        restart without knowing whether the first attempt reached the node, and the
        node answers "already known" or "nonce too low" for a transaction it has.
        Those answers count as success only if the node then shows this very hash.

        The chain id the transaction is signed for is checked here too: eth-tester does
        not check it, and a transaction without one (pre-EIP-155) could be replayed on
        every chain, so none is ever sent.
        """
        if type(raw) is not bytes or not raw:
            raise TypeError("a raw transaction is non-empty bytes")
        signed_for = _signed_chain_id(raw)
        if signed_for != self.chain_id:
            which = "no chain (pre-EIP-155)" if signed_for is None else f"chain {signed_for}"
            raise ChainError(f"the transaction is signed for {which}; this node is chain {self.chain_id}")
        tx_hash = transaction_hash(raw)
        try:
            returned = self.request("eth_sendRawTransaction", ["0x" + raw.hex()])
        except ChainError as exc:
            if self._knows(tx_hash):
                log.info("transaction 0x%s is already known to the node (%s)", tx_hash.hex(), exc.node_message)
                return tx_hash
            raise
        if node_bytes(returned, "a transaction hash", 32) != tx_hash:
            raise ChainError(f"the node returned hash {returned!r:.80} for transaction 0x{tx_hash.hex()}")
        return tx_hash

    def _knows(self, tx_hash: bytes) -> bool:
        try:
            found = self.request("eth_getTransactionByHash", ["0x" + tx_hash.hex()])
        except ChainError:
            return False
        if found is None:
            return False
        return node_bytes(node_mapping(found, "a transaction").get("hash"), "a transaction hash", 32) == tx_hash

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        """The receipt of a mined transaction, or None while it is pending or unknown."""
        if type(tx_hash) is not bytes or len(tx_hash) != 32:
            raise TypeError("a transaction hash is 32 bytes")

        found = self.request("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        if found is None:
            return None
        r = node_mapping(found, "a receipt")
        if r.get("blockNumber") is None:  # some nodes answer with a pending receipt
            return None
        if node_bytes(r.get("transactionHash"), "the receipt's transaction hash", 32) != tx_hash:
            raise ChainError(f"asked for the receipt of 0x{tx_hash.hex()}, the node sent another transaction's")
        status = node_uint(r.get("status"), "a receipt status")
        if status not in (0, 1):
            raise ChainError(f"receipt status must be 0 or 1, the node sent {status}")
        return Receipt(
            tx_hash=tx_hash,
            block_number=node_uint(r.get("blockNumber"), "the receipt's block", 2**63),
            status=status,
            gas_used=node_uint(r.get("gasUsed"), "gas used", 2**64 - 1),
            effective_gas_price=node_uint(r.get("effectiveGasPrice"), "the effective gas price"),
            logs=node_logs(r.get("logs"), "the receipt's logs"),
        )

    def block_transaction_hashes(self, number: int) -> list[bytes]:
        """The hashes of the transactions in block ``number`` (one call, however many there are)."""
        answer = self.request("eth_getBlockByNumber", [hex(number), False])
        if answer is None:
            raise ChainError(f"block {number} is not on the chain (yet)")
        block = node_mapping(answer, f"block {number}")
        transactions = block.get("transactions")
        if not isinstance(transactions, Sequence) or isinstance(transactions, str | bytes):
            raise ChainError(f"block {number} has no transaction list")
        return [node_bytes(h, "a transaction hash", 32) for h in transactions]

    def confirmations(self, receipt: Receipt) -> int:
        """Blocks on top of and including the receipt's block (1 = just mined); 0 if the head is behind it."""
        return max(0, self.block_number() - receipt.block_number + 1)

    def wait(self, tx_hash: bytes, timeout: float = RECEIPT_TIMEOUT) -> Receipt:
        """Poll until the transaction is mined (tests, dev helpers; custody polls on its own schedule)."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while (receipt := self.receipt(tx_hash)) is None:
            if time.monotonic() > deadline:
                raise ChainError(f"transaction 0x{tx_hash.hex()} not mined within {timeout:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 0.1)
        return receipt

    # -- deposits (harbour.chains.deposits) ---------------------------------------------------------

    def scan(self, first: int, last: int, addresses: set[str], tokens: set[str]) -> list[Transfer]:
        """ETH and ERC-20 transfers to ``addresses`` in blocks ``first..last`` (see :func:`deposits.scan`)."""
        return deposits.scan(self, first, last, addresses, tokens)

    # -- development chains only (harbour.chains.devchain) -------------------------------------------

    @property
    def is_dev(self) -> bool:
        """Whether the development helpers below work on this client (embedded, or ``dev=True``)."""
        return self._dev.enabled

    def dev_account(self) -> str:
        """The prefunded account the development helpers spend from (the node holds its key)."""
        return self._dev.account()

    def fund(self, address: str, wei: int) -> bytes:
        """Send ``wei`` from the chain's first prefunded account; returns the transaction hash."""
        return self._dev.fund(address, wei)

    def deploy_token(self, name: str, symbol: str, decimals: int, supply: int) -> str:
        """Deploy the test ERC-20 (contracts/token.vy); the prefunded account holds the whole supply."""
        return self._dev.deploy_token(name, symbol, decimals, supply)

    def token_transfer(self, token: str, to: str, amount: int) -> bytes:
        """ERC-20 ``transfer`` from the prefunded account; returns the transaction hash."""
        return self._dev.token_transfer(token, to, amount)

    def mine(self, blocks: int = 1) -> None:
        """Mine empty blocks (to reach a confirmation depth in tests)."""
        self._dev.mine(blocks)
