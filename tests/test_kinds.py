"""Transaction kinds: what a kind builds is what the signer nodes accept for the intent it gives approvers.

The nodes never sign a transaction that does not carry out the intent the
approvers signed (``harbour.node.quorum``); these tests hold each kind to that
same check, and to the amounts and gas the balance check counts on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import pytest

from harbour.chains.eip1559 import Eip1559Transaction, erc20_transfer_data, parse_address
from harbour.custody import kinds
from harbour.custody.assets import AssetRef
from harbour.custody.errors import Conflict
from harbour.custody.kinds.transfer import ETH_TRANSFER_GAS, TOKEN_GAS_FLOOR, TOKEN_GAS_RESERVE, TRANSFER
from harbour.node import quorum

if TYPE_CHECKING:
    from harbour.chains.evm import EvmClient

SENDER, RECIPIENT = "0x" + "11" * 20, "0x2222222222222222222222222222222222222222"
TOKEN = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
ETH = AssetRef(id="asset-eth", symbol="ETH", kind="native", contract=None)
USDC = AssetRef(id="asset-usdc", symbol="USDC", kind="erc20", contract=TOKEN)


class Chain:
    """Answers gas estimates with a fixed figure, and records what it was asked."""

    def __init__(self, estimate: int, contracts: frozenset[str] = frozenset()) -> None:
        self.estimate = estimate
        self.contracts = contracts
        self.asked: list[tuple[str, str, int, bytes]] = []

    def code(self, address: str) -> bytes:
        return b"\x60\x00" if address in self.contracts else b""

    def estimate_gas(self, sender: str, to: str, value: int, data: bytes) -> int:
        self.asked.append((sender, to, value, data))
        return self.estimate

    @property
    def client(self) -> EvmClient:
        return cast("EvmClient", self)


def order(asset: AssetRef, amount: int = 1_500_000) -> kinds.Order:
    return kinds.Order(chain_id=1, sender=SENDER, recipient=RECIPIENT, asset=asset, amount=amount)


def signed_by_nodes(kind: kinds.TransactionKind, o: kinds.Order, chain: Chain) -> str | None:
    """Why the nodes would refuse what ``kind`` builds for ``o`` against the intent it gives, or None."""
    body = kind.body(o, chain.client)
    tx = Eip1559Transaction(
        chain_id=o.chain_id,
        nonce=7,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=10,
        gas_limit=body.gas_limit,
        to=body.to,
        value=body.value,
        data=body.data,
    )
    return quorum.carries_out(tx, kind.intent(o))


def test_withdrawals_are_transfers() -> None:
    assert kinds.of("withdrawal") is TRANSFER
    with pytest.raises(Conflict, match="policy change"):
        kinds.of("policy_change")


def test_an_eth_transfer_pays_the_recipient_its_value_with_no_call() -> None:
    chain = Chain(estimate=50_000)
    body = TRANSFER.body(order(ETH, 3 * 10**18), chain.client)
    assert (body.to, body.value, body.data, body.gas_limit) == (parse_address(RECIPIENT), 3 * 10**18, b"", 21_000)
    assert chain.asked == []  # a plain payment's gas is known
    assert TRANSFER.intent(order(ETH)).asset == "ETH"
    assert signed_by_nodes(TRANSFER, order(ETH), chain) is None


def test_an_eth_transfer_to_a_contract_is_estimated_with_a_margin() -> None:
    chain = Chain(estimate=40_000, contracts=frozenset({RECIPIENT}))
    body = TRANSFER.body(order(ETH, 7), chain.client)
    assert (body.value, body.data, body.gas_limit) == (7, b"", 50_000)
    assert chain.asked == [(SENDER, RECIPIENT, 7, b"")]
    assert TRANSFER.body(order(ETH, 7), Chain(estimate=1, contracts=frozenset({RECIPIENT})).client).gas_limit == 21_000


def test_a_token_transfer_calls_the_contract_with_no_value_and_estimated_gas() -> None:
    chain = Chain(estimate=80_000)
    body = TRANSFER.body(order(USDC), chain.client)
    data = erc20_transfer_data(parse_address(RECIPIENT), 1_500_000)
    assert (body.to, body.value, body.data) == (parse_address(TOKEN), 0, data)
    assert body.gas_limit == 100_000  # the estimate and a quarter
    assert chain.asked == [(SENDER, TOKEN, 0, data)]
    assert TRANSFER.intent(order(USDC)).asset == TOKEN
    assert signed_by_nodes(TRANSFER, order(USDC), chain) is None


def test_a_low_gas_estimate_is_raised_to_the_floor() -> None:
    assert TRANSFER.body(order(USDC), Chain(estimate=1_000).client).gas_limit == TOKEN_GAS_FLOOR


def test_a_transfer_spends_its_amount_of_its_asset_and_reserves_gas_by_asset() -> None:
    assert TRANSFER.spends(ETH, 5) == {"asset-eth": 5}
    assert TRANSFER.spends(USDC, 5) == {"asset-usdc": 5}
    assert TRANSFER.gas_reserve(ETH) == ETH_TRANSFER_GAS
    assert TRANSFER.gas_reserve(USDC) == TOKEN_GAS_RESERVE
