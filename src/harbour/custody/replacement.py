"""Speed-up and cancel: a new transaction at a stuck one's nonce, approved like any withdrawal.

A broadcast transaction whose fee is too low for the chain waits, and so does
every later one from its address. It is replaced by another transaction at the
same nonce, and whichever is mined decides (the other fails as ``replaced``,
:mod:`harbour.custody.rebroadcast`):

- a **speed-up** makes the same payment with higher fees;
- a **cancel** pays nothing to the vault's own address, so only the fee is spent.

A replacement is a withdrawal row of its own, linked to the stuck one
(``replaces_id``), with its own transaction id: it goes through the policy in
force, collects its own approvals (its statement names the transaction it
replaces and its own maximum fee) and is checked by the signer nodes, which sign
a second transaction at a nonce only as such an approved replacement
(:mod:`harbour.node.orgs.nonces`). A node takes a replacement in place of the
first only if both fee caps are higher, by 10 % in practice, so its caps are
fixed here and never lower than that (:func:`harbour.custody.fees.bumped`).
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.chains.eip1559 import Eip1559Transaction
from harbour.custody import fees, outcomes, states
from harbour.custody import funds as fund
from harbour.custody import models as m
from harbour.custody.actors import Actor, require
from harbour.custody.assets import AssetRef
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.uow import UnitOfWork
from harbour.custody.withdrawals import Withdrawals

SPEED_UP: Final = "speed-up"
CANCEL: Final = "cancel"
LIVE: Final = frozenset({states.SUBMITTED, states.PENDING_POLICY, states.PENDING_APPROVAL, states.APPROVED})
"""States of a replacement not yet signed: while one is, no other replacement of the same transaction is made."""


def _highest(s: Session, original: m.Transaction) -> fees.Caps:
    """The highest caps sent at ``original``'s nonce (it, or an earlier replacement): what a new one must beat."""
    sent = [
        Eip1559Transaction.from_json(unsigned)
        for unsigned in s.scalars(
            select(m.Transaction.unsigned).where(
                m.Transaction.source_address_id == original.source_address_id,
                m.Transaction.nonce == original.nonce,
                m.Transaction.unsigned.is_not(None),
            )
        )
    ]
    return fees.Caps(max(t.max_fee_per_gas for t in sent), max(t.max_priority_fee_per_gas for t in sent))


def nonce_of(s: Session, tx: m.Transaction) -> int | None:
    """The nonce the replacement ``tx`` is built at: its original's, if that still waits; else None (recorded why)."""
    original = s.get(m.Transaction, tx.replaces_id)
    assert original is not None
    if original.state == states.BROADCAST and original.nonce is not None:
        return original.nonce
    outcomes.record(
        tx,
        outcomes.REPLACED,
        f"transaction {original.id} it was to replace is {original.state}: nothing is left to replace",
    )
    return None


class Replacements:
    def __init__(self, uow: UnitOfWork, withdrawals: Withdrawals) -> None:
        self.uow = uow
        self.withdrawals = withdrawals

    def replace(
        self,
        actor: Actor,
        tx_id: str,
        how: str,
        *,
        fee_level: str | None = None,
        max_fee_per_gas: int | str | None = None,
        max_priority_fee_per_gas: int | str | None = None,
    ) -> dict[str, Any]:
        """A speed-up or cancel of the broadcast transaction ``tx_id``, run through the policy like a withdrawal.

        Its caps are the level's today, raised to 10 % above the highest sent at
        its nonce (the stuck transaction's, or an earlier replacement's) where they
        are not already; explicit caps below that are
        Invalid. Conflict unless ``tx_id`` is broadcast and no other replacement of
        it is waiting for approval or signing.
        """
        require(actor, "initiator", "admin")
        if how not in (SPEED_UP, CANCEL):
            raise ValueError(f"unknown replacement {how!r}")
        chosen = fees.choice(fee_level, max_fee_per_gas, max_priority_fee_per_gas)
        withdrawals, chain = self.withdrawals, self.withdrawals.chain
        with self.uow.read() as s:
            original = self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            self._check(s, original)
            assert original.unsigned is not None
            sent = Eip1559Transaction.from_json(original.unsigned)
            source = s.get(m.Address, original.source_address_id)
            assert source is not None
            asset = s.get(m.Asset, original.asset_id) if how == SPEED_UP else self._native(s, original.org_id)
            assert asset is not None
            to = original.destination if how == SPEED_UP else source.address
            amount = original.amount if how == SPEED_UP else 0
            assert to is not None and amount is not None
            sender, ref, asset_id = source.address, AssetRef.of(asset), asset.id
            old = _highest(s, original)
        now = fees.levels(chain)
        if chosen.explicit:
            caps = chosen.resolve(fees.bumped(old, now[chosen.level]))
            problem = fees.replaces(old, caps)
            if problem is not None:
                raise Invalid(problem)
        else:
            caps = fees.bumped(old, now[chosen.level])
        gas = sent.gas_limit if how == SPEED_UP else withdrawals.quote_gas(sender, ref, to, amount)
        quote = fees.Quote(gas, now, caps)
        funds = fund.read(chain, sender, ref)
        note = f"{how} of {tx_id}"

        def work(s: Session) -> dict[str, Any]:
            stuck = s.get(m.Transaction, tx_id, with_for_update=True)
            assert stuck is not None
            self._check(s, stuck)
            vault = s.get(m.Vault, stuck.vault_id)
            asset_row = s.get(m.Asset, asset_id)
            source_row = s.get(m.Address, stuck.source_address_id)  # locked by the funds check
            assert vault is not None and asset_row is not None and source_row is not None
            return withdrawals.record(
                s,
                actor,
                vault,
                asset_row,
                source_row,
                to,
                amount,
                note,
                funds,
                (fees.Choice(chosen.level, caps.max_fee_per_gas, caps.max_priority_fee_per_gas), quote),
                replaces=tx_id,
            )

        view = self.uow.write(work)
        if view["state"] == states.APPROVED:
            withdrawals.on_approved(view["id"])
        return view

    def is_broadcast(self, actor: Actor, tx_id: str) -> bool:
        """Whether ``tx_id`` is a broadcast withdrawal of the actor's organisation (NotFound if not theirs)."""
        with self.uow.read() as s:
            tx = self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            return bool(tx.kind == "withdrawal" and tx.state == states.BROADCAST)

    def _check(self, s: Session, original: m.Transaction) -> None:
        if original.kind != "withdrawal" or original.state != states.BROADCAST or original.nonce is None:
            raise Conflict(
                f"transaction {original.id} is {original.state}: only a broadcast withdrawal, not yet mined, "
                "can be sped up or cancelled"
            )
        waiting = s.scalar(
            select(m.Transaction.id).where(m.Transaction.replaces_id == original.id, m.Transaction.state.in_(LIVE))
        )
        if waiting is not None:
            raise Conflict(f"transaction {waiting} already replaces {original.id} and waits: decide on it first")

    @staticmethod
    def _native(s: Session, org_id: str) -> m.Asset | None:
        return s.scalar(select(m.Asset).where(m.Asset.org_id == org_id, m.Asset.kind == "native"))
