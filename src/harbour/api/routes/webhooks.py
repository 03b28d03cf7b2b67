"""``/v1/webhooks``: an organisation's webhook endpoints, their delivery logs, and the key that signs deliveries.

What is delivered and how a receiver checks it: docs/api.md, "Webhooks";
:mod:`harbour.custody.webhooks` and :mod:`harbour.custody.dispatch`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import Paging
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import notifyshapes as shapes

router = resource_router("webhooks")
WebhookId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]


@router.post(
    "/webhooks",
    summary="Register a webhook endpoint",
    description="The URL must be http(s) and, unless the operator allows private addresses, resolve to public "
    "addresses only. Deliveries are signed with the organisation's webhook key (`GET /v1/webhooks/signing-key`).",
    **returns(shapes.WebhookEndpoint, 201),
)
def create_webhook(custody: Custody, actor: Actor, body: schemas.CreateWebhook) -> Json:
    return custody.create_webhook(actor, url=body.url, events=list(body.events), description=body.description)


@router.get("/webhooks", summary="List webhook endpoints", description=PAGE_DOC, **returns(shapes.WebhookEndpointPage))
def list_webhooks(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_webhooks(actor, page)


@router.get(
    "/webhooks/signing-key",
    summary="The organisation's webhook public key",
    description="Pin it at the receiver: every delivery's `Harbour-Webhook-Signature` verifies under it.",
    **returns(shapes.WebhookSigningKey),
)
def webhook_signing_key(custody: Custody, actor: Actor) -> Json:
    return custody.webhook_signing_key(actor)


@router.get("/webhooks/{webhook_id}", summary="A webhook endpoint", **returns(shapes.WebhookEndpoint))
def get_webhook(custody: Custody, actor: Actor, webhook_id: WebhookId) -> Json:
    return custody.get_webhook(actor, webhook_id)


@router.post("/webhooks/{webhook_id}/enable", summary="Enable a webhook endpoint", **returns(shapes.WebhookEndpoint))
def enable_webhook(custody: Custody, actor: Actor, webhook_id: WebhookId) -> Json:
    return custody.set_webhook_enabled(actor, webhook_id, enabled=True)


@router.post(
    "/webhooks/{webhook_id}/disable",
    summary="Disable a webhook endpoint (its deliveries wait)",
    **returns(shapes.WebhookEndpoint),
)
def disable_webhook(custody: Custody, actor: Actor, webhook_id: WebhookId) -> Json:
    return custody.set_webhook_enabled(actor, webhook_id, enabled=False)


@router.get(
    "/webhooks/{webhook_id}/deliveries",
    summary="The delivery log of an endpoint",
    description="Each delivery with its state, every attempt (status code, error) and its next attempt. " + PAGE_DOC,
    **returns(shapes.WebhookDeliveryPage),
)
def webhook_deliveries(
    custody: Custody,
    actor: Actor,
    webhook_id: WebhookId,
    page: Paging,
    state: Annotated[Literal["pending", "delivered", "failed"] | None, Query(description="Only this state.")] = None,
) -> Json:
    return custody.webhook_deliveries(actor, webhook_id, page, state)
