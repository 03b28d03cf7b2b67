"""Transactions as rows: reading them back, their views, and what a vault transaction asks for.

Withdrawals and governance changes are both rows of ``transactions``; this module
holds what every domain module reads of them alike: the JSON view with its
approvals, the idempotent replay of a request, the withdrawals that count toward
a policy's velocity limits, and, for a transaction a vault signs, its
:class:`~harbour.custody.kinds.Order` and intent (read once here, so the
approvals, the pipeline and the signer nodes see the same one).
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import kinds, states, views
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.assets import AssetRef
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page
from harbour.governance import policy as pol
from harbour.node import quorum

WITHDRAWAL: Final = "withdrawal"
GOVERNANCE: Final = "governance"


def order(s: Session, tx: m.Transaction) -> kinds.Order:
    """What the vault transaction ``tx`` asks for, from its rows."""
    source = s.get(m.Address, tx.source_address_id)
    asset = s.get(m.Asset, tx.asset_id)
    assert source is not None and asset is not None and tx.chain_id is not None
    assert tx.destination is not None and tx.amount is not None
    return kinds.Order(
        chain_id=tx.chain_id,
        sender=source.address,
        recipient=tx.destination,
        asset=AssetRef.of(asset),
        amount=tx.amount,
        max_fee=tx.max_fee,
        replaces=tx.replaces_id,
    )


def intent(s: Session, tx: m.Transaction) -> quorum.Intent:
    """What the approvers of the vault transaction ``tx`` sign, and the signer nodes check it against."""
    return kinds.of(tx.kind).intent(order(s, tx))


def requirement(tx: m.Transaction) -> pol.ApprovalRequirement:
    """The approvals ``tx`` waits for, as the policy decided when it was submitted."""
    assert tx.requirement is not None
    return pol.ApprovalRequirement.from_json(tx.requirement)


def view(s: Session, tx: m.Transaction, now: dt.datetime) -> dict[str, Any]:
    """The transaction with its approvals, each shown expired once ``now`` is past its time."""
    approvals = list(
        s.scalars(select(m.Approval).where(m.Approval.transaction_id == tx.id).order_by(m.Approval.created_at))
    )
    symbol = s.scalar(select(m.Asset.symbol).where(m.Asset.id == tx.asset_id)) if tx.asset_id else None
    return views.transaction(tx, approvals, symbol, now)


def history(
    s: Session, org_id: str, policy: pol.Policy, at: dt.datetime, exclude: str | None = None, also: str | None = None
) -> list[pol.PastTx]:
    """The withdrawals that count toward ``policy``'s velocity and count limits at ``at`` (not ``exclude``,
    nor ``also``: the transaction a replacement replaces, since only one of them is mined)."""
    window = policy.max_window_seconds()
    if window == 0:
        return []
    since = at - dt.timedelta(seconds=window)
    rows = s.execute(
        select(m.Transaction, m.Asset.symbol)
        .join(m.Asset, m.Asset.id == m.Transaction.asset_id)
        .where(
            m.Transaction.org_id == org_id,
            m.Transaction.kind == WITHDRAWAL,
            m.Transaction.created_at > since,
            m.Transaction.state.not_in([states.REJECTED, states.CANCELLED, states.FAILED]),
            m.Transaction.id.not_in([exclude or "", also or ""]),
            m.Transaction.vault_id.is_not(None),
            m.Transaction.destination.is_not(None),
            m.Transaction.amount.is_not(None),
        )
    )
    return [
        pol.PastTx(
            initiator_id=t.initiator_id,
            vault_id=t.vault_id or "",
            asset=symbol,
            destination=t.destination or "",
            amount=t.amount or 0,
            at=t.created_at,
        )
        for t, symbol in rows
    ]


class Transactions:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def idempotent(self, actor: Actor, key: str, request_hash: str) -> dict[str, Any] | None:
        """The transaction an earlier request with idempotency ``key`` created, or None if there is none.

        Conflict if the key was used for another request, or by another user.
        """
        with self.uow.read() as s:
            tx = s.scalar(
                select(m.Transaction).where(m.Transaction.org_id == actor.org_id, m.Transaction.idempotency_key == key)
            )
            if tx is None:
                return None
            if tx.request_hash != request_hash or tx.initiator_id != actor.user_id:
                raise Conflict(f"idempotency key {key!r} was used for a different request")
            return view(s, tx, self.uow.clock())

    def get_transaction(self, actor: Actor, tx_id: str) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return view(s, self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction"), self.uow.clock())

    def list_transactions(self, actor: Actor, page: Page, state: str | None = None) -> dict[str, Any]:
        require(actor, *ANYONE)
        if state is not None and state not in states.STATES:
            raise Invalid(f"state must be one of {', '.join(states.STATES)}")
        with self.uow.read() as s:
            stmt = select(m.Transaction).where(m.Transaction.org_id == actor.org_id)
            if state is not None:
                stmt = stmt.where(m.Transaction.state == state)
            now = self.uow.clock()
            return views.page_document(s, stmt, m.Transaction, page, lambda t: view(s, t, now))
