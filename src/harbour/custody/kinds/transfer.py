"""A transfer: the native coin, or an ERC-20 token's ``transfer``, from a vault address to one recipient.

Stored as ``kind = "withdrawal"`` (the name on disk and in the API since before
there were other kinds). The asset decides the shape: the native coin is the
transaction's value; a token is a call to its contract with no value attached,
which is exactly what a signer node accepts for a token intent
(:func:`harbour.node.quorum.check_evidence`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from harbour.chains.eip1559 import erc20_transfer_data, parse_address
from harbour.custody.assets import AssetRef
from harbour.custody.kinds.base import Body, Order
from harbour.node import quorum

if TYPE_CHECKING:
    from harbour.chains.evm import EvmClient

ETH_TRANSFER_GAS: Final = 21_000
TOKEN_GAS_RESERVE: Final = 100_000
"""Gas reserved for a token transfer until it is built (and estimated)."""
TOKEN_GAS_FLOOR: Final = 60_000
"""The least gas a token transfer is built with, whatever the estimate (a cold recipient costs more)."""
GAS_MARGIN_NUM: Final = 5
GAS_MARGIN_DEN: Final = 4
"""An estimated gas limit gets 25 % on top: state may change between the estimate and the block."""


class Transfer:
    name: Final = "withdrawal"

    def intent(self, order: Order) -> quorum.Intent:
        return quorum.Intent(
            chain_id=order.chain_id,
            sender=order.sender,
            recipient=order.recipient,
            asset=quorum.ETH if order.asset.native else (order.asset.contract or ""),
            amount=order.amount,
            max_fee=order.max_fee,
            replaces=order.replaces,
        )

    def body(self, order: Order, chain: EvmClient) -> Body:
        token = order.asset.token
        if token is None:
            # An account without code takes exactly 21,000; a contract runs its code on receipt: estimate it.
            gas = ETH_TRANSFER_GAS
            if chain.code(order.recipient):
                estimate = chain.estimate_gas(order.sender, order.recipient, order.amount, b"")
                gas = max(ETH_TRANSFER_GAS, estimate * GAS_MARGIN_NUM // GAS_MARGIN_DEN)
            return Body(to=parse_address(order.recipient), value=order.amount, data=b"", gas_limit=gas)
        data = erc20_transfer_data(parse_address(order.recipient), order.amount)
        estimate = chain.estimate_gas(order.sender, token, 0, data)
        return Body(
            to=parse_address(token),
            value=0,
            data=data,
            gas_limit=max(TOKEN_GAS_FLOOR, estimate * GAS_MARGIN_NUM // GAS_MARGIN_DEN),
        )

    def spends(self, asset: AssetRef, amount: int) -> Mapping[str, int]:
        return {asset.id: amount}

    def gas_reserve(self, asset: AssetRef) -> int:
        return ETH_TRANSFER_GAS if asset.native else TOKEN_GAS_RESERVE


TRANSFER: Final = Transfer()
