"""Ethereum over JSON-RPC: balances, fees, broadcasting signed transactions, receipts and deposits.

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

Everything a node says is checked before it is used: quantities are integers in
range, hashes are 32 bytes, addresses 20 bytes, a returned transaction hash equals
the Keccak-256 of what was sent. A node that answers nonsense gets a ``ChainError``
rather than a wrong deposit or a wrong fee. ERC-20 Transfer logs that do not have
the EIP-20 shape (ERC-721 tokens share the event signature, with a fourth topic)
are skipped with a warning: they are on-chain data anyone can emit, not node faults.

Deposit detection reads every block in the range with full transactions (ETH sent
by a top-level transaction) and ``eth_getLogs`` (ERC-20 Transfer events). ETH moved
by a contract's internal call is invisible to both; docs/ethereum.md says what that
means for a custodian.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

import rlp
from eth_abi.abi import encode as abi_encode
from web3 import Web3
from web3.exceptions import Web3RPCError
from web3.types import RPCEndpoint

from harbour.chains.eip1559 import (
    TRANSFER_TOPIC,
    UINT256_MAX,
    TransactionError,
    erc20_transfer_data,
    parse_address,
    transaction_hash,
)
from harbour.chains.ethereum import checksum_address, keccak256
from harbour.chains.jsonrpc import RpcError, Web3Provider

log = logging.getLogger(__name__)

GWEI: Final = 10**9
DEFAULT_PRIORITY_FEE: Final = GWEI
"""Tip used when the node has no ``eth_maxPriorityFeePerGas``: enough for inclusion on mainnet in calm times."""
BALANCE_OF_SELECTOR: Final = keccak256(b"balanceOf(address)")[:4]
BLOCK_TAGS: Final = frozenset({"latest", "pending", "safe", "finalized", "earliest"})
LOG_BLOCK_SPAN: Final = 2000
"""Blocks per ``eth_getLogs`` request: public endpoints refuse wider ranges."""
LOG_RECIPIENT_CHUNK: Final = 500
"""Recipient topics per ``eth_getLogs`` request: geth caps the alternatives in one topic position at 1000."""
RECEIPT_TIMEOUT: Final = 30.0

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")
_HEX_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


class ChainError(Exception):
    """The node refused a request, could not be reached, or answered with something that is not an answer.

    ``node_message`` is the node's own words when it sent an error (``"nonce too low"``),
    so an operator sees what the node said and not only this client's paraphrase.
    """

    def __init__(self, message: str, node_message: str | None = None) -> None:
        super().__init__(message)
        self.node_message = node_message


@dataclass(frozen=True)
class Receipt:
    """What custody needs from a mined transaction: did it succeed, where, and what did it cost."""

    tx_hash: bytes
    block_number: int
    status: int
    gas_used: int
    effective_gas_price: int


@dataclass(frozen=True)
class Transfer:
    """Value that reached a watched address: ETH (``log_index`` -1) or an ERC-20 Transfer event.

    ``(tx_hash, log_index)`` names a transfer uniquely, so a rescan after a restart can
    be deduplicated against what was already recorded.
    """

    kind: Literal["eth", "erc20"]
    token: str | None
    tx_hash: bytes
    log_index: int
    block_number: int
    sender: str
    recipient: str
    amount: int


# -- checking what the caller passes ------------------------------------------------------------------


def _address(text: object, what: str = "address") -> bytes:
    """20 bytes of a ``0x`` + 40 hex digit address; mixed case must pass EIP-55."""
    if not isinstance(text, str) or not _ADDRESS.fullmatch(text):
        raise TransactionError(f"{what} must be 0x followed by 40 hex digits, got {text!r}")
    return parse_address(text)


def _block(block: object) -> str:
    """A block parameter for JSON-RPC: a tag, or a number as a hex quantity."""
    if isinstance(block, str) and block in BLOCK_TAGS:
        return block
    if type(block) is int and block >= 0:
        return hex(block)
    raise ValueError(f"a block is a number >= 0 or one of {sorted(BLOCK_TAGS)}, got {block!r}")


def _amount(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= UINT256_MAX:
        raise ValueError(f"{name} must be an integer in 0..2^256-1, got {value!r}")
    return value


# -- checking what the node answers -------------------------------------------------------------------


def _uint(value: object, what: str, limit: int = UINT256_MAX) -> int:
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        value = int(value, 16)
    if type(value) is not int or not 0 <= value <= limit:
        raise ChainError(f"the node sent {what} = {value!r:.100}, not an integer in 0..{limit}")
    return value


def _bytes(value: object, what: str, length: int | None = None) -> bytes:
    if isinstance(value, bytes):  # web3's HexBytes is a bytes subclass
        raw = bytes(value)
    elif isinstance(value, str) and _HEX_DATA.fullmatch(value):
        raw = bytes.fromhex(value[2:])
    else:
        raise ChainError(f"the node sent {what} = {value!r:.100}, not hex data")
    if length is not None and len(raw) != length:
        raise ChainError(f"the node sent {what} of {len(raw)} bytes, expected {length}")
    return raw


def _node_address(value: object, what: str) -> str:
    """An address from the node, any case (nodes send lower case), returned EIP-55 checksummed."""
    if isinstance(value, bytes) and len(value) == 20:
        return checksum_address(bytes(value))
    if isinstance(value, str) and _ADDRESS.fullmatch(value):
        return checksum_address(bytes.fromhex(value[2:]))
    raise ChainError(f"the node sent {what} = {value!r:.100}, not an address")


def _mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ChainError(f"the node sent {what} that is not an object: {value!r:.100}")
    return cast(Mapping[str, object], value)


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


def _topic_address(topic: bytes, what: str) -> str:
    if topic[:12] != bytes(12):
        raise ChainError(f"{what} topic has non-zero padding: {topic.hex()}")
    return checksum_address(topic[12:])


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
        self._dev = dev
        self._dev_lock = threading.Lock()
        self._dev_sender: str | None = None
        self._node_tip: bool | None = None  # does the node answer eth_maxPriorityFeePerGas? None: not asked yet
        chain_id = _uint(self._rpc("eth_chainId", []), "the chain id", 2**64 - 1)
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

    def _rpc(self, method: str, params: Sequence[object]) -> object:
        """One JSON-RPC call; every failure (node error, connection, timeout) becomes ChainError.

        The answer is returned as the node gives it (hex strings over HTTP, some plain
        integers from eth-tester) and checked by the caller with ``_uint``, ``_bytes``, ...
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
        return _uint(self._rpc("eth_blockNumber", []), "the block number", 2**63)

    def balance(self, address: str, block: int | str = "latest") -> int:
        """Wei held by ``address``."""
        target = checksum_address(_address(address))
        value = self._rpc("eth_getBalance", [target, _block(block)])
        return _uint(value, "a balance")

    def call(self, to: str, data: bytes, block: int | str = "latest") -> bytes:
        """Output of a read-only contract call (``eth_call``); a revert raises ChainError with the reason."""
        if type(data) is not bytes:
            raise TypeError("call data must be bytes")
        call = {"to": checksum_address(_address(to, "to")), "data": "0x" + data.hex()}
        return _bytes(self._rpc("eth_call", [call, _block(block)]), "eth_call output")

    def token_balance(self, token: str, address: str, block: int | str = "latest") -> int:
        """``balanceOf(address)`` of an ERC-20 contract, in the token's base units."""
        contract = checksum_address(_address(token, "token"))
        answer = self.call(contract, BALANCE_OF_SELECTOR + _address(address).rjust(32, b"\0"), block)
        if len(answer) != 32:
            raise ChainError(f"{contract} answered balanceOf with {len(answer)} bytes: not an ERC-20 token (no code?)")
        return int.from_bytes(answer, "big")

    def nonce(self, address: str, block: int | str = "pending") -> int:
        """Transactions sent from ``address``: ``"pending"`` counts the mempool, a block number does not."""
        target = checksum_address(_address(address))
        value = self._rpc("eth_getTransactionCount", [target, _block(block)])
        return _uint(value, "a nonce", 2**64 - 1)

    def fees(self) -> tuple[int, int]:
        """``(max_fee_per_gas, max_priority_fee_per_gas)``.

        The base fee can rise 12.5 % per block (EIP-1559), so twice the current one keeps
        a transaction includable through six full blocks; the sender only ever pays
        base fee + tip, never the whole cap.
        """
        block = _mapping(self._rpc("eth_getBlockByNumber", ["latest", False]), "the latest block")
        if block.get("baseFeePerGas") is None:
            raise ChainError("the latest block has no base fee: the chain does not run EIP-1559")
        base_fee = _uint(block["baseFeePerGas"], "the base fee")
        tip = self._tip()
        return 2 * base_fee + tip, tip

    def _tip(self) -> int:
        """The node's suggested tip; 1 gwei if the node does not implement ``eth_maxPriorityFeePerGas``."""
        if self._node_tip is False:
            return DEFAULT_PRIORITY_FEE
        try:
            tip = _uint(self._rpc("eth_maxPriorityFeePerGas", []), "the priority fee")
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
            "from": checksum_address(_address(sender, "sender")),
            "to": checksum_address(_address(to, "to")),
            "value": hex(_amount("value", value)),
            "data": "0x" + data.hex(),
        }
        return _uint(self._rpc("eth_estimateGas", [call]), "a gas estimate", 2**64 - 1)

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
            returned = self._rpc("eth_sendRawTransaction", ["0x" + raw.hex()])
        except ChainError as exc:
            if self._knows(tx_hash):
                log.info("transaction 0x%s is already known to the node (%s)", tx_hash.hex(), exc.node_message)
                return tx_hash
            raise
        if _bytes(returned, "a transaction hash", 32) != tx_hash:
            raise ChainError(f"the node returned hash {returned!r:.80} for transaction 0x{tx_hash.hex()}")
        return tx_hash

    def _knows(self, tx_hash: bytes) -> bool:
        try:
            found = self._rpc("eth_getTransactionByHash", ["0x" + tx_hash.hex()])
        except ChainError:
            return False
        if found is None:
            return False
        return _bytes(_mapping(found, "a transaction").get("hash"), "a transaction hash", 32) == tx_hash

    def receipt(self, tx_hash: bytes) -> Receipt | None:
        """The receipt of a mined transaction, or None while it is pending or unknown."""
        if type(tx_hash) is not bytes or len(tx_hash) != 32:
            raise TypeError("a transaction hash is 32 bytes")

        found = self._rpc("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        if found is None:
            return None
        r = _mapping(found, "a receipt")
        if r.get("blockNumber") is None:  # some nodes answer with a pending receipt
            return None
        if _bytes(r.get("transactionHash"), "the receipt's transaction hash", 32) != tx_hash:
            raise ChainError(f"asked for the receipt of 0x{tx_hash.hex()}, the node sent another transaction's")
        status = _uint(r.get("status"), "a receipt status")
        if status not in (0, 1):
            raise ChainError(f"receipt status must be 0 or 1, the node sent {status}")
        return Receipt(
            tx_hash=tx_hash,
            block_number=_uint(r.get("blockNumber"), "the receipt's block", 2**63),
            status=status,
            gas_used=_uint(r.get("gasUsed"), "gas used", 2**64 - 1),
            effective_gas_price=_uint(r.get("effectiveGasPrice"), "the effective gas price"),
        )

    def block_transaction_hashes(self, number: int) -> list[bytes]:
        """The hashes of the transactions in block ``number`` (one call, however many there are)."""
        answer = self._rpc("eth_getBlockByNumber", [hex(number), False])
        if answer is None:
            raise ChainError(f"block {number} is not on the chain (yet)")
        block = _mapping(answer, f"block {number}")
        transactions = block.get("transactions")
        if not isinstance(transactions, Sequence) or isinstance(transactions, str | bytes):
            raise ChainError(f"block {number} has no transaction list")
        return [_bytes(h, "a transaction hash", 32) for h in transactions]

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

    # -- deposits ------------------------------------------------------------------------------------

    def scan(self, first: int, last: int, addresses: set[str], tokens: set[str]) -> list[Transfer]:
        """ETH and ERC-20 transfers to ``addresses`` in blocks ``first..last`` (inclusive).

        The answer depends only on the chain, so a rescan gives the same list, ordered by
        block, transaction index and log index (ETH of a transaction before its logs).
        Zero amounts are left out: they credit nothing, and zero-value Transfer events
        are how address-poisoning scams plant look-alike addresses in a history.
        """
        if type(first) is not int or type(last) is not int or not 0 <= first <= last:
            raise ValueError(f"scan needs block numbers 0 <= first <= last, got {first!r}..{last!r}")
        watched = {_address(a): a for a in addresses}
        contracts = {_address(t, "token") for t in tokens}
        if not watched:
            return []
        found: dict[tuple[bytes, int], tuple[tuple[int, int, int], Transfer]] = {}
        block_hashes: dict[int, bytes] = {}
        for number in range(first, last + 1):
            block_hashes[number] = self._scan_block(number, watched, found)
        if contracts:
            self._scan_logs(first, last, watched, contracts, block_hashes, found)
        return [transfer for _, transfer in sorted(found.values(), key=lambda item: item[0])]

    def _scan_block(
        self,
        number: int,
        watched: Mapping[bytes, str],
        found: dict[tuple[bytes, int], tuple[tuple[int, int, int], Transfer]],
    ) -> bytes:
        """Record ETH sent to a watched address by a successful top-level transaction; returns the block hash."""
        answer = self._rpc("eth_getBlockByNumber", [hex(number), True])
        if answer is None:
            raise ChainError(f"block {number} is not on the chain (yet)")
        block = _mapping(answer, f"block {number}")
        if _uint(block.get("number"), "a block number", 2**63) != number:
            raise ChainError(f"asked for block {number}, the node sent block {block.get('number')!r:.40}")
        block_hash = _bytes(block.get("hash"), "a block hash", 32)
        transactions = block.get("transactions")
        if not isinstance(transactions, Sequence) or isinstance(transactions, str | bytes):
            raise ChainError(f"block {number} has no transaction list")
        for index, entry in enumerate(transactions):
            tx = _mapping(entry, f"transaction {index} of block {number}")
            to = tx.get("to")
            if to in (None, "", "0x", b""):  # contract creation (eth-tester says "")
                continue
            recipient = bytes.fromhex(_node_address(to, "a transaction recipient")[2:])
            if recipient not in watched:
                continue
            amount = _uint(tx.get("value"), "a transaction value")
            tx_hash = _bytes(tx.get("hash"), "a transaction hash", 32)
            if amount == 0:
                continue
            receipt = self.receipt(tx_hash)
            if receipt is None or receipt.block_number != number:
                raise ChainError(f"block {number} lists 0x{tx_hash.hex()} but the node has no receipt for it there")
            if receipt.status != 1:
                log.info("ignoring failed transaction 0x%s to %s", tx_hash.hex(), watched[recipient])
                continue
            transfer = Transfer(
                kind="eth",
                token=None,
                tx_hash=tx_hash,
                log_index=-1,
                block_number=number,
                sender=_node_address(tx.get("from"), "a transaction sender"),
                recipient=checksum_address(recipient),
                amount=amount,
            )
            found[(tx_hash, -1)] = ((number, index, -1), transfer)
        return block_hash

    def _scan_logs(
        self,
        first: int,
        last: int,
        watched: Mapping[bytes, str],
        contracts: set[bytes],
        block_hashes: Mapping[int, bytes],
        found: dict[tuple[bytes, int], tuple[tuple[int, int, int], Transfer]],
    ) -> None:
        recipients = sorted("0x" + a.rjust(32, b"\0").hex() for a in watched)
        token_list = sorted(checksum_address(c) for c in contracts)
        for start in range(first, last + 1, LOG_BLOCK_SPAN):
            end = min(last, start + LOG_BLOCK_SPAN - 1)
            for i in range(0, len(recipients), LOG_RECIPIENT_CHUNK):
                query = {
                    "fromBlock": hex(start),
                    "toBlock": hex(end),
                    "address": token_list,
                    "topics": ["0x" + TRANSFER_TOPIC.hex(), None, recipients[i : i + LOG_RECIPIENT_CHUNK]],
                }
                logs = self._rpc("eth_getLogs", [query])
                if not isinstance(logs, Sequence) or isinstance(logs, str | bytes):
                    raise ChainError(f"eth_getLogs answered {logs!r:.100}, not a list")
                for entry in logs:
                    try:
                        item = self._transfer_log(entry, start, end, watched, contracts, block_hashes)
                    except _Malformed as exc:
                        log.warning("skipping a Transfer log that is not an ERC-20 transfer: %s", exc)
                        continue
                    if item is not None:
                        found[(item[1].tx_hash, item[1].log_index)] = item

    @staticmethod
    def _transfer_log(
        entry: object,
        first: int,
        last: int,
        watched: Mapping[bytes, str],
        contracts: set[bytes],
        block_hashes: Mapping[int, bytes],
    ) -> tuple[tuple[int, int, int], Transfer] | None:
        """Check one log against EIP-20 and against the query it answers; raise _Malformed to skip it."""
        try:
            entry = _mapping(entry, "a log")
            if entry.get("removed") is True:
                return None
            token = bytes.fromhex(_node_address(entry.get("address"), "a log's contract")[2:])
            number = _uint(entry.get("blockNumber"), "a log's block", 2**63)
            tx_hash = _bytes(entry.get("transactionHash"), "a log's transaction hash", 32)
            tx_index = _uint(entry.get("transactionIndex"), "a log's transaction index", 2**32)
            log_index = _uint(entry.get("logIndex"), "a log index", 2**32)
            where = f"log {log_index} of 0x{tx_hash.hex()} (block {number}, contract {checksum_address(token)})"
            topics = entry.get("topics")
            if not isinstance(topics, Sequence) or isinstance(topics, str | bytes):
                raise ChainError(f"{where}: topics are not a list")
            if len(topics) != 3:
                raise ChainError(f"{where}: {len(topics)} topics, an ERC-20 Transfer has 3 (ERC-721 has 4)")
            words = [_bytes(t, "a topic", 32) for t in topics]
            data = _bytes(entry.get("data"), "log data")
            if len(data) != 32:
                raise ChainError(f"{where}: {len(data)} bytes of data, an ERC-20 Transfer has one 32-byte amount")
            if words[0] != TRANSFER_TOPIC:
                raise ChainError(f"{where}: topic0 is not Transfer(address,address,uint256)")
            sender = _topic_address(words[1], f"{where}: sender")
            recipient = _topic_address(words[2], f"{where}: recipient")
        except ChainError as exc:
            raise _Malformed(str(exc)) from exc
        if token not in contracts or bytes.fromhex(recipient[2:]) not in watched or not first <= number <= last:
            raise _Malformed(f"{where}: does not match the eth_getLogs filter it answers")
        if block_hashes.get(number) != _bytes(entry.get("blockHash"), "a log's block hash", 32):
            raise ChainError(f"block {number} changed during the scan (a reorganisation?); scan again")
        amount = int.from_bytes(data, "big")
        if amount == 0:
            return None
        transfer = Transfer(
            kind="erc20",
            token=checksum_address(token),
            tx_hash=tx_hash,
            log_index=log_index,
            block_number=number,
            sender=sender,
            recipient=recipient,
            amount=amount,
        )
        return (number, tx_index, log_index), transfer

    # -- development chains only ---------------------------------------------------------------------

    def dev_account(self) -> str:
        """The prefunded account the development helpers spend from (the node holds its key)."""
        if not self._dev:
            raise ChainError(
                "funding, deploying and mining are for development chains (embedded, or connect(dev=True))"
            )
        if self._dev_sender is None:
            accounts = self._rpc("eth_accounts", [])
            if not isinstance(accounts, Sequence) or isinstance(accounts, str | bytes) or not accounts:
                raise ChainError("the development node has no unlocked prefunded account")
            self._dev_sender = _node_address(accounts[0], "a dev account")
        return self._dev_sender

    def _dev_send(self, to: str | None, value: int, data: bytes) -> Receipt:
        """Send from the prefunded account and wait for success (eth_sendTransaction: the node signs)."""
        sender = self.dev_account()
        with self._dev_lock:
            call: dict[str, object] = {"from": sender, "value": hex(value), "data": "0x" + data.hex()}
            if to is not None:
                call["to"] = to
            gas = _uint(self._rpc("eth_estimateGas", [call]), "a gas estimate", 2**64 - 1)
            max_fee, tip = self.fees()
            call.update(gas=hex(gas + gas // 5), maxFeePerGas=hex(max_fee), maxPriorityFeePerGas=hex(tip))
            sent = _bytes(self._rpc("eth_sendTransaction", [call]), "a transaction hash", 32)
            receipt = self.wait(sent)
        if receipt.status != 1:
            raise ChainError(f"development transaction 0x{sent.hex()} failed")
        return receipt

    def fund(self, address: str, wei: int) -> bytes:
        """Send ``wei`` from the chain's first prefunded account; returns the transaction hash."""
        target = checksum_address(_address(address))
        return self._dev_send(target, _amount("wei", wei), b"").tx_hash

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
        args = abi_encode(["string", "string", "uint8", "uint256"], [name, symbol, decimals, _amount("supply", supply)])
        receipt = self._dev_send(None, 0, bytecode + args)
        found = _mapping(self._rpc("eth_getTransactionReceipt", ["0x" + receipt.tx_hash.hex()]), "a receipt")
        return _node_address(found.get("contractAddress"), "a contract address")

    def token_transfer(self, token: str, to: str, amount: int) -> bytes:
        """ERC-20 ``transfer`` from the prefunded account; returns the transaction hash."""
        contract = checksum_address(_address(token, "token"))
        return self._dev_send(contract, 0, erc20_transfer_data(_address(to, "to"), _amount("amount", amount))).tx_hash

    def mine(self, blocks: int = 1) -> None:
        """Mine empty blocks (to reach a confirmation depth in tests)."""
        self.dev_account()
        if type(blocks) is not int or not 1 <= blocks <= 10_000:
            raise ValueError(f"blocks must be an integer in 1..10000, got {blocks!r}")
        if self._calls.mine(blocks):
            return
        try:
            self._rpc("anvil_mine", [hex(blocks)])
        except ChainError:
            for _ in range(blocks):
                self._rpc("evm_mine", [])


class _Malformed(ChainError):
    """A log that is not an EIP-20 Transfer or does not answer the query: skipped, not fatal."""
