"""The tables behind notifications: events, webhook endpoints, deliveries and their attempts.

An :class:`Event` row is written in the same commit as the state change it
reports (:mod:`harbour.custody.outbox`), numbered by the audit log index of the
event that recorded the change. That index is gapless and assigned in commit
order (appenders queue on the audit log's one state row), so "every event after
``seq``" is a cursor that never skips a row committed late: the event stream
resumes from it and the delivery worker needs no other ordering.

A :class:`WebhookDelivery` is one event owed to one endpoint, written in that same
commit; it is the outbox row the delivery worker claims (:mod:`harbour.custody.dispatch`).
Each try is a :class:`WebhookAttempt`: the delivery log an admin reads.
Not in the audit log's row digests: none of these decide anything, they report.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Final

from sqlalchemy import JSON, BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from harbour.custody.db import Base, UtcDateTime
from harbour.custody.models import new_id, utcnow

PENDING: Final = "pending"
DELIVERED: Final = "delivered"
FAILED: Final = "failed"
DELIVERY_STATES: Final = (PENDING, DELIVERED, FAILED)


class Event(Base):
    """A notification: one state change of a transaction, or one approval, as an integrator sees it."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_org_id_seq", "org_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """The audit log index of the event that recorded the change: commit order, no gaps across the log."""
    id: Mapped[str] = mapped_column(String(36), unique=True, default=new_id)
    """The event id deliveries carry, for a receiver's replay check (the same on every retry)."""
    org_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(64))
    """The transaction the event is about."""
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookEndpoint(Base):
    """Where an organisation wants its events sent, and which ones."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    """Event types wanted, or ``["*"]`` for all."""
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(String(256))
    created_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookDelivery(Base):
    """One event owed to one endpoint: the outbox row the delivery worker claims."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    org_id: Mapped[str] = mapped_column(String(36))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id"), index=True)
    event_seq: Mapped[int] = mapped_column(ForeignKey("events.seq"), index=True)
    state: Mapped[str] = mapped_column(String(16), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    """Attempts begun: a claim counts one before the request is sent."""
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    """When it is next due (while claimed: when the claim lapses, should its worker die); None once finished."""
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)


class WebhookAttempt(Base):
    """One HTTP request of a delivery and how it ended: the delivery log."""

    __tablename__ = "webhook_attempts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("webhook_deliveries.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(Integer)
    """The receiver's HTTP status, None if no answer came (refused, timed out, address not allowed)."""
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, default=utcnow)
