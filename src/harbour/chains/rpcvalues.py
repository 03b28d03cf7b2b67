"""Values crossing an Ethereum node's JSON-RPC boundary, each checked: what a caller passes, what the node answers.

Everything a node says is checked before it is used: quantities are integers in
range, hashes are 32 bytes, addresses 20 bytes. A node that answers nonsense
gets a :class:`ChainError` rather than a wrong deposit or a wrong fee. The
client (:mod:`harbour.chains.evm`), the deposit scanner
(:mod:`harbour.chains.deposits`) and the development-chain helpers
(:mod:`harbour.chains.devchain`) all read the node through these checks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

from harbour.chains.eip1559 import UINT256_MAX, TransactionError, parse_address
from harbour.chains.ethereum import checksum_address

BLOCK_TAGS: Final = frozenset({"latest", "pending", "safe", "finalized", "earliest"})

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
class Log:
    """One event a mined transaction emitted: the contract that emitted it, its topics and its data."""

    address: str
    topics: tuple[bytes, ...]
    data: bytes


@dataclass(frozen=True)
class Receipt:
    """What custody needs from a mined transaction: did it succeed, where, what did it cost, what did it log.

    ``logs`` is what a token withdrawal is judged by: a token may return ``false``
    (or nothing) from ``transfer`` without reverting, and only its Transfer event
    says that something moved (:mod:`harbour.custody.tokencheck`).
    """

    tx_hash: bytes
    block_number: int
    status: int
    gas_used: int
    effective_gas_price: int
    logs: tuple[Log, ...] = ()


# -- checking what the caller passes ------------------------------------------------------------------


def caller_address(text: object, what: str = "address") -> bytes:
    """20 bytes of a ``0x`` + 40 hex digit address; mixed case must pass EIP-55."""
    if not isinstance(text, str) or not _ADDRESS.fullmatch(text):
        raise TransactionError(f"{what} must be 0x followed by 40 hex digits, got {text!r}")
    return parse_address(text)


def block_param(block: object) -> str:
    """A block parameter for JSON-RPC: a tag, or a number as a hex quantity."""
    if isinstance(block, str) and block in BLOCK_TAGS:
        return block
    if type(block) is int and block >= 0:
        return hex(block)
    raise ValueError(f"a block is a number >= 0 or one of {sorted(BLOCK_TAGS)}, got {block!r}")


def caller_amount(name: str, value: object) -> int:
    if type(value) is not int or not 0 <= value <= UINT256_MAX:
        raise ValueError(f"{name} must be an integer in 0..2^256-1, got {value!r}")
    return value


# -- checking what the node answers -------------------------------------------------------------------


def node_uint(value: object, what: str, limit: int = UINT256_MAX) -> int:
    if isinstance(value, str) and _QUANTITY.fullmatch(value):
        value = int(value, 16)
    if type(value) is not int or not 0 <= value <= limit:
        raise ChainError(f"the node sent {what} = {value!r:.100}, not an integer in 0..{limit}")
    return value


def node_bytes(value: object, what: str, length: int | None = None) -> bytes:
    if isinstance(value, bytes):  # web3's HexBytes is a bytes subclass
        raw = bytes(value)
    elif isinstance(value, str) and _HEX_DATA.fullmatch(value):
        raw = bytes.fromhex(value[2:])
    else:
        raise ChainError(f"the node sent {what} = {value!r:.100}, not hex data")
    if length is not None and len(raw) != length:
        raise ChainError(f"the node sent {what} of {len(raw)} bytes, expected {length}")
    return raw


def node_address(value: object, what: str) -> str:
    """An address from the node, any case (nodes send lower case), returned EIP-55 checksummed."""
    if isinstance(value, bytes) and len(value) == 20:
        return checksum_address(bytes(value))
    if isinstance(value, str) and _ADDRESS.fullmatch(value):
        return checksum_address(bytes.fromhex(value[2:]))
    raise ChainError(f"the node sent {what} = {value!r:.100}, not an address")


def node_logs(value: object, what: str) -> tuple[Log, ...]:
    """The logs of a receipt, each checked: a 20-byte contract, at most four 32-byte topics, data."""
    if value is None:
        return ()
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        raise ChainError(f"the node sent {what} that is not a list: {value!r:.100}")
    logs = []
    for index, entry in enumerate(value):
        item = node_mapping(entry, f"log {index} of {what}")
        topics = item.get("topics")
        if not isinstance(topics, Sequence) or isinstance(topics, str | bytes) or len(topics) > 4:
            raise ChainError(f"log {index} of {what} has no list of at most four topics")
        logs.append(
            Log(
                address=node_address(item.get("address"), f"the contract of log {index}"),
                topics=tuple(node_bytes(t, f"a topic of log {index}", 32) for t in topics),
                data=node_bytes(item.get("data"), f"the data of log {index}"),
            )
        )
    return tuple(logs)


def node_mapping(value: object, what: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ChainError(f"the node sent {what} that is not an object: {value!r:.100}")
    return cast(Mapping[str, object], value)
