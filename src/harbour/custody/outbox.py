"""The outbox: every transaction state change and approval becomes an event, in the commit that made it.

:meth:`Outbox.capture` is a hook of the unit of work (:attr:`harbour.custody.uow.UnitOfWork.sealed`):
as each audit event of a unit is appended, one of the kinds in :data:`EVENT_TYPES`
becomes an :class:`~harbour.custody.notices.Event` row (the transaction as the API
shows it, and what changed), and one :class:`~harbour.custody.notices.WebhookDelivery`
row for each enabled endpoint of the organisation that wants it. They are written in
the same database transaction as the change, so a crash loses none and invents none:
either the change and its notifications committed, or neither did. The delivery
worker (:mod:`harbour.custody.dispatch`) and the event stream read them from there.

After a commit that wrote any, the process's own delivery worker is woken at once
(:meth:`Outbox.attach`); workers in other processes find them by polling.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Final

from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody import notices as n
from harbour.custody import notifyshapes as shapes
from harbour.custody import rowwatch, states, transactions
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Invalid
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import MAX_LIMIT, iso

APPROVAL_TYPES: Final = ("approval.approve", "approval.reject", "approval.expired")
EVENT_TYPES: Final = tuple(f"transaction.{state}" for state in states.STATES) + APPROVAL_TYPES
"""What is notified: each state a transaction enters, and each approval given, refused or expired."""
_WROTE = "harbour.outbox.wrote"


def event_view(e: n.Event) -> dict[str, Any]:
    return shapes.Event.model_validate(
        {
            "id": e.id,
            "sequence": e.seq,
            "type": e.type,
            "org_id": e.org_id,
            "subject": e.subject,
            "created_at": iso(e.created_at),
            "data": e.data,
        }
    ).model_dump(mode="json")


def wants(events: list[str], kind: str) -> bool:
    return events == ["*"] or kind in events


class Outbox:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self.listeners: list[Callable[[], None]] = []
        """Called after a commit that wrote events (the local delivery worker's wake-up)."""
        self._lock = threading.Lock()

    def attach(self) -> None:
        """Hook into the unit of work: capture as events are appended, wake listeners after the commit."""
        self.uow.sealed.append(self.capture)
        sa_event.listen(self.uow.sessions, "after_commit", self._after_commit)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop(_WROTE, False):
            for listener in list(self.listeners):
                listener()

    def capture(self, s: Session, index: int, e: rowwatch.Event) -> None:
        """Write the event (numbered ``index``) and its deliveries, if it is one that is notified."""
        if e.kind not in EVENT_TYPES or e.org_id is None or e.subject is None:
            return
        tx = s.get(m.Transaction, e.subject)
        if tx is None or tx.org_id != e.org_id:
            return
        now = self.uow.clock()
        change = {k: v for k, v in e.data.items() if k != "signature"}
        row = n.Event(
            seq=index,
            org_id=e.org_id,
            type=e.kind,
            subject=tx.id,
            data={"transaction": transactions.view(s, tx, now), "change": change, "actor_id": e.actor_id},
            created_at=now,
        )
        s.add(row)
        endpoints = s.execute(
            select(n.WebhookEndpoint.id, n.WebhookEndpoint.events).where(
                n.WebhookEndpoint.org_id == e.org_id, n.WebhookEndpoint.enabled.is_(True)
            )
        ).all()
        for endpoint_id, wanted in endpoints:
            if wants(list(wanted), e.kind):
                s.add(
                    n.WebhookDelivery(
                        org_id=e.org_id,
                        endpoint_id=endpoint_id,
                        event_seq=index,
                        state=n.PENDING,
                        attempts=0,
                        next_attempt_at=now,
                        created_at=now,
                    )
                )
        s.info[_WROTE] = True

    def head(self, actor: Actor) -> int | None:
        """The sequence of the organisation's newest event (None if it has none): where a live stream starts."""
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return s.scalar(select(func.max(n.Event.seq)).where(n.Event.org_id == actor.org_id))

    def events_after(self, actor: Actor, after: int | None, limit: int = 100) -> dict[str, Any]:
        """The organisation's events with a sequence above ``after`` (all, from the first, if None), oldest first."""
        require(actor, *ANYONE)
        if type(limit) is not int or not 1 <= limit <= MAX_LIMIT:
            raise Invalid(f"limit must be an integer in 1..{MAX_LIMIT}")
        if after is not None and (type(after) is not int or after < 0):
            raise Invalid("after must be a non-negative integer (an event's sequence)")
        with self.uow.read() as s:
            stmt = select(n.Event).where(n.Event.org_id == actor.org_id)
            if after is not None:
                stmt = stmt.where(n.Event.seq > after)
            rows = list(s.scalars(stmt.order_by(n.Event.seq).limit(limit)))
            return {"items": [event_view(r) for r in rows], "last_sequence": rows[-1].seq if rows else after}
