"""Webhook endpoints: an organisation's admins register them, and read what was delivered to them.

An endpoint is a URL (checked by :mod:`harbour.custody.webhookurl`), the event
types it wants (:data:`harbour.custody.outbox.EVENT_TYPES`, or ``*``) and whether
it is enabled. Registering, enabling and disabling one are recorded in the audit
log; they are not governance changes, since an endpoint decides nothing about
funds or who may act: it only hears about what the quorum already decided.
Deliveries are made by :mod:`harbour.custody.dispatch` and signed with the
organisation's webhook key (:mod:`harbour.custody.webhooksig`), whose public half
:meth:`Webhooks.signing_key` publishes. A disabled endpoint's deliveries wait
until it is enabled again.
"""

from __future__ import annotations

from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harbour.custody import notices as n
from harbour.custody import notifyshapes as shapes
from harbour.custody import outbox, webhookurl
from harbour.custody.actors import Actor, require
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.models import Organisation
from harbour.custody.settings import Settings
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page, iso, page_document
from harbour.custody.webhooksig import (
    ENDPOINT_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    TOLERANCE,
    WebhookKeys,
)

MAX_DESCRIPTION: Final = 256
READERS: Final = ("admin", "auditor")


def endpoint_view(e: n.WebhookEndpoint) -> dict[str, Any]:
    return shapes.WebhookEndpoint.model_validate(
        {
            "id": e.id,
            "url": e.url,
            "events": list(e.events),
            "enabled": e.enabled,
            "description": e.description,
            "created_by": e.created_by,
            "created_at": iso(e.created_at),
            "updated_at": iso(e.updated_at),
        }
    ).model_dump(mode="json")


def delivery_view(s: Session, d: n.WebhookDelivery) -> dict[str, Any]:
    event = s.get(n.Event, d.event_seq)
    assert event is not None
    attempts = s.scalars(
        select(n.WebhookAttempt).where(n.WebhookAttempt.delivery_id == d.id).order_by(n.WebhookAttempt.number)
    )
    return shapes.WebhookDelivery.model_validate(
        {
            "id": d.id,
            "endpoint_id": d.endpoint_id,
            "event_id": event.id,
            "event_type": event.type,
            "sequence": event.seq,
            "state": d.state,
            "attempts": d.attempts,
            "next_attempt_at": iso(d.next_attempt_at),
            "last_status": d.last_status,
            "last_error": d.last_error,
            "created_at": iso(d.created_at),
            "delivered_at": iso(d.delivered_at),
            "log": [
                {
                    "number": a.number,
                    "status_code": a.status_code,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                    "created_at": iso(a.created_at),
                }
                for a in attempts
            ],
        }
    ).model_dump(mode="json")


def event_types(value: object) -> list[str]:
    """The event types an endpoint asks for, checked: a non-empty list of known types, or ``["*"]``."""
    if not isinstance(value, list) or not value or not all(isinstance(t, str) for t in value):
        raise Invalid('events must be a non-empty list of event types, or ["*"]')
    if value == ["*"]:
        return ["*"]
    unknown = sorted(set(value) - set(outbox.EVENT_TYPES))
    if unknown:
        raise Invalid(f"unknown event types {unknown}; known: {', '.join(outbox.EVENT_TYPES)} (or * for all)")
    return sorted(set(value))


class Webhooks:
    def __init__(self, uow: UnitOfWork, keys: WebhookKeys, settings: Settings) -> None:
        self.uow = uow
        self.keys = keys
        self.settings = settings

    def create(self, actor: Actor, *, url: str, events: list[str], description: str | None = None) -> dict[str, Any]:
        require(actor, "admin")
        webhookurl.check(url, allow_private=self.settings.webhook_allow_private)
        wanted = event_types(events)
        if description is not None and (not isinstance(description, str) or len(description) > MAX_DESCRIPTION):
            raise Invalid(f"description must be text of at most {MAX_DESCRIPTION} characters")

        def work(s: Session) -> dict[str, Any]:
            self._room_for_one_more(s, actor.org_id)
            now = self.uow.clock()
            row = n.WebhookEndpoint(
                org_id=actor.org_id,
                url=url,
                events=wanted,
                enabled=True,
                description=description,
                created_by=actor.user_id,
                created_at=now,
                updated_at=now,
            )
            s.add(row)
            s.flush()
            self.uow.event(s, actor, "webhook.created", row.id, url=url, events=wanted)
            return endpoint_view(row)

        return self.uow.write(work)

    def set_enabled(self, actor: Actor, endpoint_id: str, enabled: bool) -> dict[str, Any]:
        require(actor, "admin")

        def work(s: Session) -> dict[str, Any]:
            row: n.WebhookEndpoint = self.uow.get(s, n.WebhookEndpoint, endpoint_id, actor.org_id, "webhook endpoint")
            if row.enabled != enabled:
                if enabled:  # the URL was checked when it was added; the rules may have tightened since
                    webhookurl.check(row.url, allow_private=self.settings.webhook_allow_private)
                    self._room_for_one_more(s, actor.org_id)
                row.enabled, row.updated_at = enabled, self.uow.clock()
                self.uow.event(s, actor, "webhook.enabled" if enabled else "webhook.disabled", row.id)
            return endpoint_view(row)

        return self.uow.write(work)

    def _room_for_one_more(self, s: Session, org_id: str) -> None:
        """Conflict if the organisation has ``webhook_max_endpoints`` enabled endpoints already.

        The organisation's row is locked first, so two admins adding endpoints at once
        are counted one after the other (PostgreSQL; SQLite has one writer anyway).
        """
        s.execute(select(Organisation.id).where(Organisation.id == org_id).with_for_update())
        enabled = s.scalar(
            select(func.count())
            .select_from(n.WebhookEndpoint)
            .where(n.WebhookEndpoint.org_id == org_id, n.WebhookEndpoint.enabled.is_(True))
        )
        cap = self.settings.webhook_max_endpoints
        if (enabled or 0) >= cap:
            raise Conflict(
                f"the organisation has {enabled} enabled webhook endpoints, the most allowed "
                f"(webhook_max_endpoints = {cap}); disable one first"
            )

    def list(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *READERS)
        with self.uow.read() as s:
            stmt = select(n.WebhookEndpoint).where(n.WebhookEndpoint.org_id == actor.org_id)
            return page_document(s, stmt, n.WebhookEndpoint, page, endpoint_view)

    def get(self, actor: Actor, endpoint_id: str) -> dict[str, Any]:
        require(actor, *READERS)
        with self.uow.read() as s:
            return endpoint_view(self.uow.get(s, n.WebhookEndpoint, endpoint_id, actor.org_id, "webhook endpoint"))

    def deliveries(self, actor: Actor, endpoint_id: str, page: Page, state: str | None = None) -> dict[str, Any]:
        """The delivery log of one endpoint, oldest first: each delivery with its attempts."""
        require(actor, *READERS)
        if state is not None and state not in n.DELIVERY_STATES:
            raise Invalid(f"state must be one of {', '.join(n.DELIVERY_STATES)}")
        with self.uow.read() as s:
            self.uow.get(s, n.WebhookEndpoint, endpoint_id, actor.org_id, "webhook endpoint")
            stmt = select(n.WebhookDelivery).where(
                n.WebhookDelivery.endpoint_id == endpoint_id, n.WebhookDelivery.org_id == actor.org_id
            )
            if state is not None:
                stmt = stmt.where(n.WebhookDelivery.state == state)
            return page_document(s, stmt, n.WebhookDelivery, page, lambda d: delivery_view(s, d))

    def signing_key(self, actor: Actor) -> dict[str, Any]:
        """The organisation's webhook public key, which receivers pin (anyone in the organisation may read it)."""
        require(actor, "admin", "initiator", "approver", "auditor", "viewer")
        return shapes.WebhookSigningKey.model_validate(
            {
                "algorithm": "ed25519",
                "public_key": self.keys.public_key(actor.org_id).hex(),
                "headers": [ENDPOINT_HEADER, ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER],
                "tolerance": TOLERANCE,
            }
        ).model_dump(mode="json")
