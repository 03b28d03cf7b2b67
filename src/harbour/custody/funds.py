"""Whether a source address can pay a withdrawal on top of everything already in flight from it.

A withdrawal is refused at submission, and held back before it takes a nonce,
unless its source holds enough for it and for every withdrawal in flight from
the same address: the amounts each one spends (as its transaction kind says)
and the most each can pay in fees. The balances are read at one block before
the write transaction that checks them (:func:`read`), so no writer waits on a
chain round trip; :func:`shortfall` says why that is sound.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from harbour.custody import assets, kinds, states
from harbour.custody import models as m
from harbour.custody.assets import AssetRef

if TYPE_CHECKING:
    from harbour.chains.evm import EvmClient


@dataclass(frozen=True)
class Funds:
    """A source address as the chain saw it at one block, read before a write transaction begins."""

    block: int
    nonce: int
    asset: int
    """Balance of the asset withdrawn (wei for ETH, base units for a token)."""
    native: int
    max_fee: int
    """Today's fee cap, for reserving the fees of withdrawals not built yet."""


def read(chain: EvmClient, address: str, asset: AssetRef, max_fee: int | None = None) -> Funds:
    """What ``address`` holds of ``asset`` and of the native coin, and its nonce, at one block."""
    block = chain.block_number()
    native = chain.balance(address, block)
    held = native if asset.native else assets.balance(chain, asset, address, block)
    if max_fee is None:
        max_fee, _ = chain.fees()
    return Funds(block, chain.nonce(address, block), held, native, max_fee)


def fee_reserve(
    kind: kinds.TransactionKind,
    asset: AssetRef,
    unsigned: dict[str, Any] | None,
    max_fee: int,
    headroom: int,
    approved: int | None = None,
) -> int:
    """The most a transaction can pay in fees: as built, else the maximum fee fixed at submission (``approved``),
    else (a row from before there was one) today's fee with headroom."""
    if unsigned is not None:
        return int(unsigned["gas_limit"]) * int(unsigned["max_fee_per_gas"])
    if approved is not None:
        return approved
    return kind.gas_reserve(asset) * max_fee * headroom


def shortfall(
    s: Session,
    source: m.Address,
    asset: AssetRef,
    tx: m.Transaction,
    funds: Funds,
    headroom: int,
    also: str | None = None,
) -> str | None:
    """Why ``source`` cannot pay ``tx`` (of ``asset``) on top of everything in flight, or None if it can.

    ``also`` (by default ``tx.replaces_id``) is a transaction ``tx`` replaces at its
    nonce: only one of the two can be mined, so it is not owed on top of ``tx``.

    ``funds`` was read at one block, before this transaction began: every withdrawal
    from the source with a nonce below that block's nonce is reflected in its
    balances; every one with a higher nonce is still owed whatever its state now
    (it may have been mined since), and so is every one in flight without a nonce.
    """
    registered: dict[str, AssetRef] = {}
    native: AssetRef | None = None
    for row in s.execute(
        select(m.Asset.id, m.Asset.symbol, m.Asset.kind, m.Asset.contract).where(m.Asset.org_id == tx.org_id)
    ):
        ref = registered[row.id] = AssetRef(id=row.id, symbol=row.symbol, kind=row.kind, contract=row.contract)
        native = ref if ref.native else native
    if native is None:
        return "no native asset is registered to pay gas"
    others = s.execute(  # columns, not ORM objects: there may be hundreds in flight, and this runs per write
        select(
            m.Transaction.kind,
            m.Transaction.asset_id,
            m.Transaction.amount,
            m.Transaction.unsigned,
            m.Transaction.max_fee,
        ).where(
            m.Transaction.source_address_id == source.id,
            or_(
                and_(m.Transaction.nonce.is_(None), m.Transaction.state.in_(states.IN_FLIGHT)),
                m.Transaction.nonce >= funds.nonce,
            ),
            m.Transaction.id != tx.id,
            m.Transaction.id != (also or tx.replaces_id or ""),
        )
    )
    owed: dict[str, int] = {asset.id: 0}
    fees = 0
    for kind_name, asset_id, amount, unsigned, approved in [
        *others,
        (tx.kind, asset.id, tx.amount, tx.unsigned, tx.max_fee),
    ]:
        kind, spent = kinds.of(kind_name), registered[asset_id]
        for spent_id, value in kind.spends(spent, amount or 0).items():
            owed[spent_id] = owed.get(spent_id, 0) + value
        fees += fee_reserve(kind, spent, unsigned, funds.max_fee, headroom, approved)
    need_asset = owed[asset.id]
    need_native = fees + owed.get(native.id, 0)
    if not asset.native and funds.asset < need_asset:
        return (
            f"insufficient {asset.symbol}: {source.address} holds {funds.asset}, "
            f"in-flight withdrawals and this one need {need_asset}"
        )
    if funds.native < need_native:
        return (
            f"insufficient ETH: {source.address} holds {funds.native}, "
            f"amounts and gas of in-flight withdrawals and this one need {need_native}"
        )
    return None
