"""Which of a vault's addresses pays a withdrawal: the one the request names, or one that can pay it alone.

Every address a vault derives holds funds the vault's balance counts, and every
one of them can pay: the vault key signs at the address's own BIP-32 path. The
source chosen here is the transaction's ``source_address_id``, from which
everything downstream follows: the intent's sender and the path the approvers
sign (:func:`harbour.custody.approvals` statement), the path the signer nodes
are asked to sign at and check the sender against, and the address whose nonce
and balance the pipeline uses.

A request may name its source (``source_address``: the address or its id),
which must be one of the vault's own. Without one, the vault's addresses are
tried in the order they were derived (the main address ``m/0`` first, so
deposit addresses are left for sweeping) and the first that can pay the amount
and the fee reserve on top of what is in flight from it is chosen. No payment is
ever split across addresses: when the vault holds enough only in all, the
refusal says so, so that an operator sweeps first.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import funds as fund
from harbour.custody import inputs
from harbour.custody import models as m
from harbour.custody.assets import AssetRef
from harbour.custody.errors import Conflict, Invalid

MAX_SPEC = 64


class Unread(Exception):
    """A candidate address whose funds were not read before the write transaction: read them, then try again."""

    def __init__(self, addresses: Sequence[str]) -> None:
        super().__init__(", ".join(addresses))
        self.addresses = tuple(addresses)


@dataclass(frozen=True)
class Choice:
    """The address that pays, and why it cannot (None: it can)."""

    source: m.Address
    shortfall: str | None


def spec(value: object) -> str | None:
    """A request's ``source_address``: None (choose one), an address, or an address id; Invalid otherwise."""
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_SPEC:
        raise Invalid("source_address must be an address of the vault (0x...) or its id")
    if value.startswith("0x"):
        return inputs.address(value, "source_address")
    return value


def candidates(s: Session, vault: m.Vault, named: str | None) -> list[m.Address]:
    """The addresses that may pay, in the order they are tried; Invalid if the named one is not the vault's.

    None is locked here: :func:`choose` locks each address as it considers it.
    """
    query = select(m.Address).where(m.Address.vault_id == vault.id)
    if named is None:
        rows = list(s.scalars(query.order_by(m.Address.index)))
        if not rows:
            raise Conflict("the vault has no address yet: derive one first")
        return rows
    query = query.where(m.Address.address == named if named.startswith("0x") else m.Address.id == named)
    row = s.scalar(query)
    if row is None:  # the same words whether it belongs to another vault, another organisation or nobody
        raise Invalid(f"source_address {named} is not an address of vault {vault.id}")
    return [row]


def choose(
    s: Session,
    rows: Sequence[m.Address],
    read: Mapping[str, fund.Funds],
    asset: AssetRef,
    tx: m.Transaction,
    headroom: int,
) -> Choice:
    """The first of ``rows`` that can pay ``tx`` on top of what is in flight from it (each row locked in turn).

    ``read`` holds the funds read before this transaction began; an address
    without them raises :class:`Unread` (read them and run the transaction
    again). When none can pay, the first is returned with its shortfall, and
    when the addresses together could, the refusal says that no single one can.
    """
    missing = [r.address for r in rows if r.address not in read]
    first: Choice | None = None
    for row in rows:
        if row.address not in read:
            raise Unread(missing)
        s.refresh(row, with_for_update=True)  # one submission per source at a time: the check holds
        tx.source_address_id = row.id
        short = fund.shortfall(s, row, asset, tx, read[row.address], headroom)
        if short is None:
            return Choice(row, None)
        first = first or Choice(row, short)
    assert first is not None
    if len(rows) == 1 or tx.amount is None:
        return first
    held = sum(read[r.address].native if asset.native else read[r.address].asset for r in rows)
    if held < tx.amount:
        return first
    return Choice(
        first.source,
        f"insufficient {asset.symbol} at any one address: the vault's {len(rows)} addresses hold {held} in all, "
        f"but no single address can pay {tx.amount} with its fee reserve on top of what is in flight from it, and a "
        f"withdrawal is paid from one address; sweep the deposit addresses into the main one (or name a "
        f"source_address that can pay). The main address: {first.shortfall}",
    )
