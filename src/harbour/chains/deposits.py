"""Deposit detection: ETH and ERC-20 transfers that reached watched addresses in a range of blocks.

Every block in the range is read with its full transactions (ETH sent by a
top-level transaction) and ``eth_getLogs`` gives the ERC-20 Transfer events. ETH
moved by a contract's internal call is invisible to both; docs/ethereum.md says
what that means for a custodian. ERC-20 Transfer logs that do not have the EIP-20
shape (ERC-721 tokens share the event signature, with a fourth topic) are skipped
with a warning: they are on-chain data anyone can emit, not node faults.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal, Protocol

from harbour.chains.eip1559 import TRANSFER_TOPIC
from harbour.chains.ethereum import checksum_address
from harbour.chains.rpcvalues import (
    ChainError,
    Receipt,
    caller_address,
    node_address,
    node_bytes,
    node_mapping,
    node_uint,
)

log = logging.getLogger("harbour.chains.evm")
"""The client's logger, as when the scanner was part of it: operators' logging configuration names it."""

LOG_BLOCK_SPAN: Final = 2000
"""Blocks per ``eth_getLogs`` request: public endpoints refuse wider ranges."""
LOG_RECIPIENT_CHUNK: Final = 500
"""Recipient topics per ``eth_getLogs`` request: geth caps the alternatives in one topic position at 1000."""


class Node(Protocol):
    """What the scan needs of a chain client (:class:`harbour.chains.evm.EvmClient`)."""

    def request(self, method: str, params: Sequence[object]) -> object: ...

    def receipt(self, tx_hash: bytes) -> Receipt | None: ...


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


_Found = dict[tuple[bytes, int], tuple[tuple[int, int, int], Transfer]]
"""What a scan has found so far: each transfer by its id, with the position it sorts by."""


def scan(node: Node, first: int, last: int, addresses: set[str], tokens: set[str]) -> list[Transfer]:
    """ETH and ERC-20 transfers to ``addresses`` in blocks ``first..last`` (inclusive).

    The answer depends only on the chain, so a rescan gives the same list, ordered by
    block, transaction index and log index (ETH of a transaction before its logs).
    Zero amounts are left out: they credit nothing, and zero-value Transfer events
    are how address-poisoning scams plant look-alike addresses in a history.
    """
    if type(first) is not int or type(last) is not int or not 0 <= first <= last:
        raise ValueError(f"scan needs block numbers 0 <= first <= last, got {first!r}..{last!r}")
    watched = {caller_address(a): a for a in addresses}
    contracts = {caller_address(t, "token") for t in tokens}
    if not watched:
        return []
    found: _Found = {}
    block_hashes: dict[int, bytes] = {}
    for number in range(first, last + 1):
        block_hashes[number] = _scan_block(node, number, watched, found)
    if contracts:
        _scan_logs(node, first, last, watched, contracts, block_hashes, found)
    return [transfer for _, transfer in sorted(found.values(), key=lambda item: item[0])]


def _scan_block(
    node: Node,
    number: int,
    watched: Mapping[bytes, str],
    found: _Found,
) -> bytes:
    """Record ETH sent to a watched address by a successful top-level transaction; returns the block hash."""
    answer = node.request("eth_getBlockByNumber", [hex(number), True])
    if answer is None:
        raise ChainError(f"block {number} is not on the chain (yet)")
    block = node_mapping(answer, f"block {number}")
    if node_uint(block.get("number"), "a block number", 2**63) != number:
        raise ChainError(f"asked for block {number}, the node sent block {block.get('number')!r:.40}")
    block_hash = node_bytes(block.get("hash"), "a block hash", 32)
    transactions = block.get("transactions")
    if not isinstance(transactions, Sequence) or isinstance(transactions, str | bytes):
        raise ChainError(f"block {number} has no transaction list")
    for index, entry in enumerate(transactions):
        tx = node_mapping(entry, f"transaction {index} of block {number}")
        to = tx.get("to")
        if to in (None, "", "0x", b""):  # contract creation (eth-tester says "")
            continue
        recipient = bytes.fromhex(node_address(to, "a transaction recipient")[2:])
        if recipient not in watched:
            continue
        amount = node_uint(tx.get("value"), "a transaction value")
        tx_hash = node_bytes(tx.get("hash"), "a transaction hash", 32)
        if amount == 0:
            continue
        receipt = node.receipt(tx_hash)
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
            sender=node_address(tx.get("from"), "a transaction sender"),
            recipient=checksum_address(recipient),
            amount=amount,
        )
        found[(tx_hash, -1)] = ((number, index, -1), transfer)
    return block_hash


def _scan_logs(
    node: Node,
    first: int,
    last: int,
    watched: Mapping[bytes, str],
    contracts: set[bytes],
    block_hashes: Mapping[int, bytes],
    found: _Found,
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
            logs = node.request("eth_getLogs", [query])
            if not isinstance(logs, Sequence) or isinstance(logs, str | bytes):
                raise ChainError(f"eth_getLogs answered {logs!r:.100}, not a list")
            for entry in logs:
                try:
                    item = _transfer_log(entry, start, end, watched, contracts, block_hashes)
                except _Malformed as exc:
                    log.warning("skipping a Transfer log that is not an ERC-20 transfer: %s", exc)
                    continue
                if item is not None:
                    found[(item[1].tx_hash, item[1].log_index)] = item


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
        entry = node_mapping(entry, "a log")
        if entry.get("removed") is True:
            return None
        token = bytes.fromhex(node_address(entry.get("address"), "a log's contract")[2:])
        number = node_uint(entry.get("blockNumber"), "a log's block", 2**63)
        tx_hash = node_bytes(entry.get("transactionHash"), "a log's transaction hash", 32)
        tx_index = node_uint(entry.get("transactionIndex"), "a log's transaction index", 2**32)
        log_index = node_uint(entry.get("logIndex"), "a log index", 2**32)
        where = f"log {log_index} of 0x{tx_hash.hex()} (block {number}, contract {checksum_address(token)})"
        topics = entry.get("topics")
        if not isinstance(topics, Sequence) or isinstance(topics, str | bytes):
            raise ChainError(f"{where}: topics are not a list")
        if len(topics) != 3:
            raise ChainError(f"{where}: {len(topics)} topics, an ERC-20 Transfer has 3 (ERC-721 has 4)")
        words = [node_bytes(t, "a topic", 32) for t in topics]
        data = node_bytes(entry.get("data"), "log data")
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
    if block_hashes.get(number) != node_bytes(entry.get("blockHash"), "a log's block hash", 32):
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


def _topic_address(topic: bytes, what: str) -> str:
    if topic[:12] != bytes(12):
        raise ChainError(f"{what} topic has non-zero padding: {topic.hex()}")
    return checksum_address(topic[12:])


class _Malformed(ChainError):
    """A log that is not an EIP-20 Transfer or does not answer the query: skipped, not fatal."""
