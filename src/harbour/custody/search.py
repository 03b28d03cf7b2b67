"""Finding transactions: filters on the list, either order, keyset paging, and lookup by external id.

Every filter is checked here, in the service, so the API, the CLI and any other
caller get the same refusals: ids must be ids, times must carry a UTC offset
and a range must not end before it starts, a hash must be a hash. Paging is by
``(created_at, id)`` as everywhere (:func:`harbour.custody.views.paginate`), in
either direction; the cursor holds the last row's position, so a page never
repeats or skips a row that was there when the walk began. The indexes on
``transactions`` (:mod:`harbour.custody.models`) lead with ``org_id``, then the
filter, then ``created_at``.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Select, and_, or_, select
from sqlalchemy.orm import Session

from harbour.custody import inputs, states, transactions, views
from harbour.custody import models as m
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Invalid, NotFound
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page

ORDERS: Final = ("asc", "desc")
EXTERNAL_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HASH: Final = re.compile(r"0x[0-9a-fA-F]{64}")


def external_id(value: object) -> str | None:
    """A client's reference: 1..128 of ``A-Za-z0-9._:-`` (or None)."""
    if value is None:
        return None
    if not isinstance(value, str) or not EXTERNAL_ID.fullmatch(value):
        raise Invalid("external_id must be 1..128 characters of A-Z a-z 0-9 . _ : -")
    return value


def timestamp(value: object, what: str) -> dt.datetime | None:
    """An ISO 8601 time with a UTC offset, as a UTC datetime (None if absent)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        at = value
    elif isinstance(value, str) and len(value) <= 40:
        try:
            at = dt.datetime.fromisoformat(value)
        except ValueError:
            raise Invalid(f"{what} is not an ISO 8601 time: {value!r}") from None
    else:
        raise Invalid(f"{what} must be an ISO 8601 time")
    if at.tzinfo is None:
        raise Invalid(f"{what} must carry a UTC offset (like +00:00 or Z)")
    try:
        return at.astimezone(dt.UTC)
    except OverflowError:
        raise Invalid(f"{what} is out of range") from None


def _uuid(value: object, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise Invalid(f"{what} must be an id (a lowercase UUID)")
    return value


@dataclass(frozen=True)
class Filters:
    """What a transaction list may be narrowed to; every field None means no filter."""

    vault_id: str | None = None
    asset: str | None = None
    destination: str | None = None
    initiator_id: str | None = None
    state: str | None = None
    created_after: dt.datetime | str | None = None
    created_before: dt.datetime | str | None = None
    updated_since: dt.datetime | str | None = None
    tx_hash: str | None = None
    external_id: str | None = None
    order: str = "asc"

    def checked(self) -> Filters:
        """The same filters, validated and normalised; Invalid naming the first one that is not."""
        if self.state is not None and self.state not in states.STATES:
            raise Invalid(f"state must be one of {', '.join(states.STATES)}")
        if self.order not in ORDERS:
            raise Invalid("order must be asc (oldest first) or desc (newest first)")
        after = timestamp(self.created_after, "created_after")
        before = timestamp(self.created_before, "created_before")
        if after is not None and before is not None and after >= before:
            raise Invalid("created_after must be earlier than created_before")
        if self.tx_hash is not None and (not isinstance(self.tx_hash, str) or not _HASH.fullmatch(self.tx_hash)):
            raise Invalid("tx_hash must be 0x and 64 hex digits")
        return Filters(
            vault_id=_uuid(self.vault_id, "vault_id"),
            asset=None if self.asset is None else inputs.symbol(self.asset),
            destination=None if self.destination is None else inputs.address(self.destination, "destination"),
            initiator_id=_uuid(self.initiator_id, "initiator_id"),
            state=self.state,
            created_after=after,
            created_before=before,
            updated_since=timestamp(self.updated_since, "updated_since"),
            tx_hash=None if self.tx_hash is None else self.tx_hash.lower(),
            external_id=external_id(self.external_id),
            order=self.order,
        )


def statement(org_id: str, f: Filters) -> Select[Any]:
    """The transactions of ``org_id`` that pass the (checked) filters ``f``, unordered."""
    t = m.Transaction
    stmt = select(t).where(t.org_id == org_id)
    if f.vault_id is not None:
        stmt = stmt.where(t.vault_id == f.vault_id)
    if f.asset is not None:
        stmt = stmt.where(t.asset_id.in_(select(m.Asset.id).where(m.Asset.org_id == org_id, m.Asset.symbol == f.asset)))
    if f.destination is not None:
        stmt = stmt.where(t.destination == f.destination)
    if f.initiator_id is not None:
        stmt = stmt.where(t.initiator_id == f.initiator_id)
    if f.state is not None:
        stmt = stmt.where(t.state == f.state)
    if isinstance(f.created_after, dt.datetime):
        stmt = stmt.where(t.created_at >= f.created_after)
    if isinstance(f.created_before, dt.datetime):
        stmt = stmt.where(t.created_at < f.created_before)
    if isinstance(f.updated_since, dt.datetime):
        stmt = stmt.where(t.updated_at >= f.updated_since)
    if f.tx_hash is not None:
        stmt = stmt.where(t.tx_hash == f.tx_hash)
    if f.external_id is not None:
        stmt = stmt.where(t.external_id == f.external_id)
    return stmt


def page_of(s: Session, stmt: Select[Any], page: Page, order: str) -> tuple[list[m.Transaction], str | None]:
    """One page of ``stmt`` in ``(created_at, id)`` order, ascending or descending, and the next cursor."""
    if order == "asc":
        return views.paginate(s, stmt, m.Transaction, page)
    created, ident = m.Transaction.created_at, m.Transaction.id
    if page.cursor is not None:
        at, row_id = views.decode_cursor(page.cursor)
        stmt = stmt.where(or_(created < at, and_(created == at, ident < row_id)))
    rows = list(s.scalars(stmt.order_by(created.desc(), ident.desc()).limit(page.limit + 1)))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, views.encode_cursor(rows[-1].created_at, rows[-1].id) if more else None


def by_external_id(s: Session, org_id: str, value: str) -> m.Transaction:
    ref = external_id(value)
    tx = s.scalar(select(m.Transaction).where(m.Transaction.org_id == org_id, m.Transaction.external_id == ref))
    if tx is None:
        raise NotFound(f"no transaction with external_id {ref!r}")
    return tx


class TransactionSearch:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def search(self, actor: Actor, page: Page, filters: Filters) -> dict[str, Any]:
        """A page of the organisation's transactions that pass ``filters``, in their order."""
        require(actor, *ANYONE)
        f = filters.checked()
        with self.uow.read() as s:
            rows, cursor = page_of(s, statement(actor.org_id, f), page, f.order)
            now = self.uow.clock()
            return {"items": [transactions.view(s, t, now) for t in rows], "next_cursor": cursor}

    def by_external_id(self, actor: Actor, ref: str) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return transactions.view(s, by_external_id(s, actor.org_id, ref), self.uow.clock())
