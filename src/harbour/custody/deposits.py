"""Deposits: value that reached a vault address, found on chain once each and confirmed at depth.

The scanner (:meth:`Deposits.scan_once`, run by the pipeline's deposit loop)
reads each new block range once for native and token transfers to any vault
address, records each transfer under its ``(tx_hash, log_index)`` so a rescan
after a restart adds nothing twice, and marks deposits confirmed once they are
``confirmations`` blocks deep. Reads are scoped to the caller's organisation.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from harbour.chains.evm import EvmClient
from harbour.custody import assets, views
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.assets import AssetRef
from harbour.custody.settings import Settings
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page

SCAN_SPAN = 500
"""Blocks read in one pass, at most: a service that was down catches up in bounded steps."""


class Deposits:
    def __init__(self, uow: UnitOfWork, chain: EvmClient, settings: Settings) -> None:
        self.uow = uow
        self.chain = chain
        self.settings = settings

    def list_deposits(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            symbols = {
                i: sym for i, sym in s.execute(select(m.Asset.id, m.Asset.symbol).where(m.Asset.org_id == actor.org_id))
            }
            stmt = select(m.Deposit).where(m.Deposit.org_id == actor.org_id)
            return views.page_document(s, stmt, m.Deposit, page, lambda d: views.deposit(d, symbols.get(d.asset_id)))

    def scan_once(self) -> int:
        """Record ETH and ERC-20 transfers to vault addresses, once each, and confirm them at depth."""
        uow = self.uow
        head = self.chain.block_number()
        with uow.read() as s:
            cursor = s.get(m.ChainCursor, "deposits")
            first = 0 if cursor is None else cursor.block + 1
            watched = {a.address: a for a in s.scalars(select(m.Address))}
            vaults = {v.id: v for v in s.scalars(select(m.Vault))}
            known = [(a.org_id, AssetRef.of(a)) for a in s.scalars(select(m.Asset))]
            s.expunge_all()
        found = 0
        if first <= head:
            last = min(head, first + SCAN_SPAN)
            tokens = {a.contract for _, a in known if a.contract is not None}
            transfers = self.chain.scan(first, last, set(watched), tokens) if watched else []
            with uow.tx() as s:
                for t in transfers:
                    address = watched.get(t.recipient)
                    if address is None:
                        continue
                    org_id = vaults[address.vault_id].org_id
                    asset = next((a for org, a in known if org == org_id and assets.receives(a, t)), None)
                    if asset is None:
                        continue
                    tx_hash = "0x" + t.tx_hash.hex()
                    exists = s.scalar(
                        select(m.Deposit.id).where(
                            m.Deposit.tx_hash == tx_hash,
                            m.Deposit.log_index == t.log_index,
                            m.Deposit.address_id == address.id,
                        )
                    )
                    if exists is not None:
                        continue
                    deposit = m.Deposit(
                        org_id=org_id,
                        vault_id=address.vault_id,
                        address_id=address.id,
                        asset_id=asset.id,
                        tx_hash=tx_hash,
                        log_index=t.log_index,
                        block_number=t.block_number,
                        sender=t.sender,
                        amount=t.amount,
                        state="pending",
                    )
                    s.add(deposit)
                    s.flush()
                    uow.event(
                        s,
                        None,
                        "deposit.detected",
                        deposit.id,
                        org_id=org_id,
                        vault_id=address.vault_id,
                        address=address.address,
                        asset=asset.symbol,
                        amount=str(t.amount),
                        tx_hash=tx_hash,
                        log_index=t.log_index,
                        block=t.block_number,
                    )
                    found += 1
                row = s.get(m.ChainCursor, "deposits")
                if row is None:
                    s.add(m.ChainCursor(name="deposits", block=last))
                else:
                    row.block = last
        with uow.tx() as s:
            depth_block = head - self.settings.confirmations + 1
            for deposit in s.scalars(
                select(m.Deposit).where(m.Deposit.state == "pending", m.Deposit.block_number <= depth_block)
            ):
                deposit.state = "confirmed"
                uow.event(s, None, "deposit.confirmed", deposit.id, org_id=deposit.org_id, block=deposit.block_number)
        return found
