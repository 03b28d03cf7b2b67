"""The intent of a withdrawal, and whether an Ethereum transaction carries it out exactly.

Approvers sign what a withdrawal does (chain, sender, recipient, asset, amount),
never the bytes of a transaction they cannot read. A node is asked to sign those
bytes, so it re-derives what they do and refuses any difference
(:func:`carries_out`): an ETH payment, or an ERC-20 ``transfer`` with no ETH
attached, on the intent's chain and nothing else.

Two optional fields say what the fee and the nonce may be:

- ``max_fee``: the most, in wei, the transaction may ever pay in fees (its gas
  limit times its fee cap per gas). Approvers sign it, so a service that builds
  the approved payment with a fee cap of its own choosing (fees are burnt, or
  paid to a block builder it may own) is refused;
- ``replaces``: the transaction id this one replaces at the same nonce (a
  speed-up, or a cancel: a payment of nothing to the sender itself). Only such a
  transaction is signed at a nonce a node already signed another transaction for
  (:mod:`harbour.node.orgs.nonces`), and only it may move an amount of zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from harbour.chains.eip1559 import Eip1559Transaction, erc20_transfer_data, parse_address
from harbour.chains.ethereum import checksum_address
from harbour.node.quorum.fields import MAX_ID_LEN, EvidenceError, _address, _text, _uint

ETH: Final = "ETH"
UINT256_MAX: Final = 2**256 - 1
CHAIN_ID_MAX: Final = 2**64 - 1
_KEYS: Final = frozenset({"chain_id", "from", "to", "asset", "amount"})
_OPTIONAL: Final = frozenset({"max_fee", "replaces"})


def _decimal(name: str, text: object) -> int:
    if (
        not isinstance(text, str)
        or not (text.isascii() and text.isdigit())
        or len(text) > 78
        or (text != "0" and text[0] == "0")
    ):
        raise EvidenceError(f"{name} must be a canonical decimal string, got {text!r:.80}")
    return int(text)


@dataclass(frozen=True)
class Intent:
    """What a withdrawal does, as approvers see it: ``amount`` base units of ``asset`` from ``sender`` to ``recipient``.

    ``asset`` is ``"ETH"`` or the EIP-55 address of an ERC-20 token contract.
    Addresses are EIP-55 strings in exactly that spelling. ``max_fee`` (wei) and
    ``replaces`` (a transaction id) are None when not stated; see the module's docstring.
    """

    chain_id: int
    sender: str
    recipient: str
    asset: str
    amount: int
    max_fee: int | None = None
    replaces: str | None = None

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
        # Only a replacement moves nothing: a cancel is a payment of zero to the sender itself.
        _uint("amount", self.amount, 0 if self.replaces is not None else 1, UINT256_MAX)
        if self.max_fee is not None:
            _uint("max_fee", self.max_fee, 1, UINT256_MAX)
        if self.replaces is not None:
            _text("replaces", self.replaces, MAX_ID_LEN)

    @property
    def is_native(self) -> bool:
        return self.asset == ETH

    def to_json(self) -> dict[str, Any]:
        """``{"chain_id", "from", "to", "asset", "amount"}`` and, when stated, ``"max_fee"`` and ``"replaces"``.

        Amounts are decimal strings (JSON loses precision). A field not stated is
        absent, so an intent without them is the same bytes it always was.
        """
        obj: dict[str, Any] = {
            "chain_id": self.chain_id,
            "from": self.sender,
            "to": self.recipient,
            "asset": self.asset,
            "amount": str(self.amount),
        }
        if self.max_fee is not None:
            obj["max_fee"] = str(self.max_fee)
        if self.replaces is not None:
            obj["replaces"] = self.replaces
        return obj

    @classmethod
    def from_json(cls, obj: object) -> Intent:
        if not isinstance(obj, dict) or not _KEYS <= set(obj) <= _KEYS | _OPTIONAL:
            raise EvidenceError(
                f"an intent is an object with exactly the fields {sorted(_KEYS)}, and optionally {sorted(_OPTIONAL)}"
            )
        max_fee = obj.get("max_fee")
        return cls(
            chain_id=obj["chain_id"],
            sender=obj["from"],
            recipient=obj["to"],
            asset=obj["asset"],
            amount=_decimal("amount", obj["amount"]),
            max_fee=None if max_fee is None else _decimal("max_fee", max_fee),
            replaces=obj.get("replaces"),
        )


def carries_out(tx: Eip1559Transaction, intent: Intent) -> str | None:
    """Why ``tx`` does not do exactly what ``intent`` says, or None if it does."""
    recipient = parse_address(intent.recipient)
    if tx.chain_id != intent.chain_id:
        return f"the transaction is for chain {tx.chain_id}, the intent for chain {intent.chain_id}"
    if intent.max_fee is not None and tx.gas_limit * tx.max_fee_per_gas > intent.max_fee:
        return (
            f"the transaction may pay up to {tx.gas_limit * tx.max_fee_per_gas} wei in fees (gas limit "
            f"{tx.gas_limit} x max fee per gas {tx.max_fee_per_gas}), above the approved maximum fee of "
            f"{intent.max_fee} wei"
        )
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
