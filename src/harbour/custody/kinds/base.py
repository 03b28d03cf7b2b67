"""The shape every transaction kind has: its inputs, its output, and the protocol it implements.

Apart from :mod:`harbour.custody.kinds` (the registry) so that a kind's module
imports this and the registry imports the kinds, with no circle between them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from harbour.custody.assets import AssetRef

if TYPE_CHECKING:
    from harbour.chains.evm import EvmClient
    from harbour.node import quorum


@dataclass(frozen=True)
class Order:
    """What one transaction asks for, read from its rows: ``amount`` of ``asset`` from ``sender`` to ``recipient``."""

    chain_id: int
    sender: str
    recipient: str
    asset: AssetRef
    amount: int
    max_fee: int | None = None
    """The most it may pay in fees (wei), fixed at submission (:mod:`harbour.custody.fees`)."""
    replaces: str | None = None
    """The transaction id it replaces at the same nonce (:mod:`harbour.custody.replacement`)."""


@dataclass(frozen=True)
class Body:
    """The kind's part of an unsigned EIP-1559 transaction: the pipeline adds chain, nonce and fees."""

    to: bytes
    value: int
    data: bytes
    gas_limit: int


class TransactionKind(Protocol):
    """One kind of transaction a vault signs."""

    @property
    def name(self) -> str:
        """The value of ``Transaction.kind`` its rows hold."""
        ...

    def intent(self, order: Order) -> quorum.Intent:
        """What the approvers sign and each signer node checks the transaction against."""
        ...

    def body(self, order: Order, chain: EvmClient) -> Body:
        """The transaction's recipient, value, calldata and gas limit (may ask the chain to estimate gas)."""
        ...

    def spends(self, asset: AssetRef, amount: int) -> Mapping[str, int]:
        """Base units of each asset (by id) the transaction takes from its source, fees apart."""
        ...

    def gas_reserve(self, asset: AssetRef) -> int:
        """Gas to reserve for the transaction until it is built with its real gas limit."""
        ...
