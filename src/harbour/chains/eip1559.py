"""EIP-1559 (type 2) Ethereum transactions: the bytes a threshold key signs and the bytes sent.

A custody service never holds a key, so it cannot hand a transaction to a wallet
library to sign. It builds the unsigned payload itself, has the signer nodes sign
the 32-byte Keccak-256 of it, and assembles the signed transaction from
``(y_parity, r, s)``. The signer nodes recompute the same hash from the fields in
an approval certificate, so both sides share this one module.

Encoding (EIP-1559, EIP-2718):

- signing hash: ``keccak256(0x02 || rlp([chain_id, nonce, max_priority_fee_per_gas,
  max_fee_per_gas, gas_limit, to, value, data, access_list]))``;
- signed transaction: ``0x02 || rlp([..., access_list, y_parity, r, s])``, whose
  Keccak-256 is the transaction hash.

The access list is always empty here. ERC-20 ``transfer(address,uint256)`` calldata
(EIP-20) is the 4-byte selector ``a9059cbb`` and two 32-byte words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from harbour.chains.ethereum import ADDRESS_LEN, checksum_address, keccak256

TX_TYPE: Final = 2
UINT256_MAX: Final = 2**256 - 1
TRANSFER_SELECTOR: Final = bytes.fromhex("a9059cbb")
"""First four bytes of keccak256("transfer(address,uint256)")."""
TRANSFER_TOPIC: Final = keccak256(b"Transfer(address,address,uint256)")
"""topic0 of the ERC-20 Transfer event."""
MAX_DATA_LEN: Final = 4096
SECP256K1_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,77}")
_HEX_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")


def _rlp(items: list[object]) -> bytes:
    """RLP of ``items``; the library is loaded on first use.

    ``rlp`` pulls in eth-utils and pydantic (about a quarter of a second of CPU);
    a signer node parses approvers' evidence with this module but encodes a
    transaction only when asked to sign one, so its start does not pay for them.
    """
    import rlp

    return bytes(rlp.encode(items))


class TransactionError(ValueError):
    """Fields that do not make a valid EIP-1559 transaction."""


def parse_address(text: str) -> bytes:
    """20 bytes from ``0x`` + 40 hex digits; a mixed-case address must pass its EIP-55 checksum."""
    if not isinstance(text, str) or not _ADDRESS.fullmatch(text):
        raise TransactionError(f"an address is 0x followed by 40 hex digits, got {text!r}")
    raw = bytes.fromhex(text[2:])
    body = text[2:]
    if body != body.lower() and body != body.upper() and checksum_address(raw) != text:
        raise TransactionError(f"address {text} fails its EIP-55 checksum (mistyped?)")
    return raw


def _uint(name: str, value: object, limit: int = UINT256_MAX) -> int:
    if type(value) is not int or not 0 <= value <= limit:
        raise TransactionError(f"{name} must be an integer in 0..{limit}, got {value!r}")
    return value


@dataclass(frozen=True)
class Eip1559Transaction:
    """An unsigned type-2 transaction; every amount is an integer in wei or gas units."""

    chain_id: int
    nonce: int
    max_priority_fee_per_gas: int
    max_fee_per_gas: int
    gas_limit: int
    to: bytes
    value: int
    data: bytes = b""

    def __post_init__(self) -> None:
        _uint("chain_id", self.chain_id, 2**64 - 1)
        _uint("nonce", self.nonce, 2**64 - 2)  # EIP-2681
        _uint("max_priority_fee_per_gas", self.max_priority_fee_per_gas)
        _uint("max_fee_per_gas", self.max_fee_per_gas)
        _uint("gas_limit", self.gas_limit, 2**64 - 1)
        _uint("value", self.value)
        if self.chain_id == 0:
            raise TransactionError("chain_id 0 is not a chain")
        if self.max_priority_fee_per_gas > self.max_fee_per_gas:
            raise TransactionError("max_priority_fee_per_gas exceeds max_fee_per_gas")
        if type(self.to) is not bytes or len(self.to) != ADDRESS_LEN:
            raise TransactionError("to must be a 20-byte address (contract creation is not supported)")
        if type(self.data) is not bytes or len(self.data) > MAX_DATA_LEN:
            raise TransactionError(f"data must be bytes of at most {MAX_DATA_LEN}")

    def _fields(self) -> list[object]:
        return [
            self.chain_id,
            self.nonce,
            self.max_priority_fee_per_gas,
            self.max_fee_per_gas,
            self.gas_limit,
            self.to,
            self.value,
            self.data,
            [],
        ]

    def unsigned_payload(self) -> bytes:
        return bytes([TX_TYPE]) + _rlp(self._fields())

    def signing_hash(self) -> bytes:
        """The 32 bytes the key signs."""
        return keccak256(self.unsigned_payload())

    def signed(self, y_parity: int, r: int, s: int) -> bytes:
        """The raw transaction for ``eth_sendRawTransaction``."""
        if type(y_parity) is not int or y_parity not in (0, 1):
            raise TransactionError(f"y_parity must be 0 or 1, got {y_parity!r}")
        if type(r) is not int or type(s) is not int:
            raise TransactionError("r and s must be integers")
        if not 0 < r < SECP256K1_N or not 0 < s <= SECP256K1_N // 2:
            raise TransactionError("r must be in 1..n-1 and s in 1..n/2 (EIP-2 low s)")
        return bytes([TX_TYPE]) + _rlp([*self._fields(), y_parity, r, s])

    def to_json(self) -> dict[str, object]:
        """Integers as decimal strings: JSON numbers lose precision above 2^53."""
        return {
            "chain_id": str(self.chain_id),
            "nonce": str(self.nonce),
            "max_priority_fee_per_gas": str(self.max_priority_fee_per_gas),
            "max_fee_per_gas": str(self.max_fee_per_gas),
            "gas_limit": str(self.gas_limit),
            "to": checksum_address(self.to),
            "value": str(self.value),
            "data": "0x" + self.data.hex(),
        }

    @classmethod
    def from_json(cls, obj: object) -> Eip1559Transaction:
        keys = {"chain_id", "nonce", "max_priority_fee_per_gas", "max_fee_per_gas", "gas_limit", "to", "value", "data"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise TransactionError(f"a transaction is an object with exactly the fields {sorted(keys)}")

        def number(name: str) -> int:
            text = obj[name]
            if not isinstance(text, str) or not _DECIMAL.fullmatch(text):
                raise TransactionError(f"{name} must be a canonical decimal string, got {text!r}")
            return int(text)

        data = obj["data"]
        if not isinstance(data, str) or not _HEX_DATA.fullmatch(data):
            raise TransactionError("data must be 0x-prefixed hex, two digits a byte")
        raw_data = bytes.fromhex(data[2:])
        return cls(
            chain_id=number("chain_id"),
            nonce=number("nonce"),
            max_priority_fee_per_gas=number("max_priority_fee_per_gas"),
            max_fee_per_gas=number("max_fee_per_gas"),
            gas_limit=number("gas_limit"),
            to=parse_address(obj["to"]),
            value=number("value"),
            data=raw_data,
        )


def transaction_hash(raw: bytes) -> bytes:
    return keccak256(raw)


def erc20_transfer_data(recipient: bytes, amount: int) -> bytes:
    """Calldata of ``transfer(recipient, amount)``."""
    if type(recipient) is not bytes or len(recipient) != ADDRESS_LEN:
        raise TransactionError("recipient must be a 20-byte address")
    _uint("amount", amount)
    return TRANSFER_SELECTOR + recipient.rjust(32, b"\0") + amount.to_bytes(32, "big")


def parse_erc20_transfer(data: bytes) -> tuple[bytes, int]:
    """``(recipient, amount)`` of ``transfer`` calldata, refusing anything else (extra bytes, dirty padding)."""
    if len(data) != 68 or data[:4] != TRANSFER_SELECTOR:
        raise TransactionError("not ERC-20 transfer(address,uint256) calldata")
    word = data[4:36]
    if word[:12] != bytes(12):
        raise TransactionError("transfer recipient word has non-zero padding")
    return word[12:], int.from_bytes(data[36:68], "big")
