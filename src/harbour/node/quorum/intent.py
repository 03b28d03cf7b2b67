"""The intent of a withdrawal, and whether an Ethereum transaction carries it out exactly.

Approvers sign what a withdrawal does (chain, sender, recipient, asset, amount),
never the bytes of a transaction they cannot read. A node is asked to sign those
bytes, so it re-derives what they do and refuses any difference
(:func:`carries_out`): an ETH payment, or an ERC-20 ``transfer`` with no ETH
attached, on the intent's chain and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from harbour.chains.eip1559 import Eip1559Transaction, erc20_transfer_data, parse_address
from harbour.chains.ethereum import checksum_address
from harbour.node.quorum.fields import EvidenceError, _address, _uint

ETH: Final = "ETH"
UINT256_MAX: Final = 2**256 - 1
CHAIN_ID_MAX: Final = 2**64 - 1


@dataclass(frozen=True)
class Intent:
    """What a withdrawal does, as approvers see it: ``amount`` base units of ``asset`` from ``sender`` to ``recipient``.

    ``asset`` is ``"ETH"`` or the EIP-55 address of an ERC-20 token contract.
    Addresses are EIP-55 strings in exactly that spelling.
    """

    chain_id: int
    sender: str
    recipient: str
    asset: str
    amount: int

    def __post_init__(self) -> None:
        _uint("chain_id", self.chain_id, 1, CHAIN_ID_MAX)
        _address("sender", self.sender)
        _address("recipient", self.recipient)
        if self.asset != ETH:
            try:
                _address("asset", self.asset)
            except EvidenceError:
                raise EvidenceError(
                    f"asset must be {ETH!r} or a token's EIP-55 address, got {self.asset!r:.80}"
                ) from None
        _uint("amount", self.amount, 1, UINT256_MAX)

    @property
    def is_native(self) -> bool:
        return self.asset == ETH

    def to_json(self) -> dict[str, Any]:
        """``{"chain_id", "from", "to", "asset", "amount"}``, the amount as a decimal string (JSON loses precision)."""
        return {
            "chain_id": self.chain_id,
            "from": self.sender,
            "to": self.recipient,
            "asset": self.asset,
            "amount": str(self.amount),
        }

    @classmethod
    def from_json(cls, obj: object) -> Intent:
        keys = {"chain_id", "from", "to", "asset", "amount"}
        if not isinstance(obj, dict) or set(obj) != keys:
            raise EvidenceError(f"an intent is an object with exactly the fields {sorted(keys)}")
        amount = obj["amount"]
        if (
            not isinstance(amount, str)
            or not (amount.isascii() and amount.isdigit())
            or len(amount) > 78
            or (amount != "0" and amount[0] == "0")
        ):
            raise EvidenceError(f"amount must be a canonical decimal string, got {amount!r:.80}")
        return cls(
            chain_id=obj["chain_id"],
            sender=obj["from"],
            recipient=obj["to"],
            asset=obj["asset"],
            amount=int(amount),
        )


def carries_out(tx: Eip1559Transaction, intent: Intent) -> str | None:
    """Why ``tx`` does not do exactly what ``intent`` says, or None if it does."""
    recipient = parse_address(intent.recipient)
    if tx.chain_id != intent.chain_id:
        return f"the transaction is for chain {tx.chain_id}, the intent for chain {intent.chain_id}"
    if intent.is_native:
        if tx.to != recipient:
            return f"the transaction pays {checksum_address(tx.to)}, the intent {intent.recipient}"
        if tx.value != intent.amount:
            return f"the transaction sends {tx.value} wei, the intent {intent.amount}"
        if tx.data:
            return "an ETH payment carries no call data, and this transaction has some"
        return None
    token = parse_address(intent.asset)
    if tx.to != token:
        return f"the transaction calls {checksum_address(tx.to)}, not the token {intent.asset}"
    if tx.value != 0:
        return f"a token transfer sends no ETH, and this transaction sends {tx.value} wei"
    if tx.data != erc20_transfer_data(recipient, intent.amount):
        return f"the call data is not transfer({intent.recipient}, {intent.amount})"
    return None
