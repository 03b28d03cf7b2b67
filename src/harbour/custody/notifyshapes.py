"""The JSON shapes of notifications, searches' companions and exports: webhooks, events, statements.

Kept beside :mod:`harbour.custody.shapes` (same base, same rules: closed, strict,
amounts as decimal strings, timestamps as :func:`harbour.custody.views.iso`
writes them) so that these resources read as one group.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from harbour.custody.shapes import BaseUnits, Hex, Listing, Shape, Timestamp


class WebhookEndpoint(Shape):
    id: str
    url: str
    events: list[str] = Field(description='Event types delivered, or `["*"]` for all.')
    enabled: bool
    description: str | None
    created_by: str
    created_at: Timestamp
    updated_at: Timestamp


class WebhookSigningKey(Shape):
    algorithm: str = Field(description="`ed25519`.")
    public_key: Hex = Field(description="The organisation's webhook key (32 bytes, hex): pin it at the receiver.")
    headers: list[str] = Field(
        description="The headers a delivery carries: endpoint id, event id, timestamp, signature."
    )
    tolerance: int = Field(description="Seconds a receiver should accept a timestamp away from its clock.")


class WebhookAttempt(Shape):
    number: int
    status_code: int | None = Field(description="The receiver's HTTP status; null if no answer came.")
    error: str | None
    duration_ms: int
    created_at: Timestamp


class WebhookDelivery(Shape):
    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    sequence: int
    state: str = Field(description="`pending`, `delivered` or `failed` (gave up after the last attempt).")
    attempts: int
    next_attempt_at: Timestamp | None
    last_status: int | None
    last_error: str | None
    created_at: Timestamp
    delivered_at: Timestamp | None
    log: list[WebhookAttempt] = Field(description="Every attempt, oldest first.")


class Event(Shape):
    id: str = Field(description="The event id; deliveries carry it in `Harbour-Webhook-Id`.")
    sequence: int = Field(description="Commit order; `Last-Event-ID` and `after` take it.")
    type: str
    org_id: str
    subject: str = Field(description="The transaction the event is about.")
    created_at: Timestamp
    data: dict[str, Any] = Field(description="`transaction` (as `GET /v1/transactions/{id}`) and `change`.")


class WebhookEndpointPage(Listing[WebhookEndpoint]):
    pass


class WebhookDeliveryPage(Listing[WebhookDelivery]):
    pass


class EventPage(Shape):
    items: list[Event]
    last_sequence: int | None = Field(description="Pass as `after` for the next page; null if there were none.")


class AssetBalance(Shape):
    asset: str
    opening: BaseUnits
    credits: BaseUnits
    debits: BaseUnits
    closing: BaseUnits


class StatementLine(Shape):
    at: Timestamp
    asset: str
    kind: str = Field(description="`deposit`, `withdrawal` or `fee`.")
    credit: BaseUnits
    debit: BaseUnits
    balance: BaseUnits = Field(description="The asset's balance after this line.")
    tx_hash: str | None
    reference: str = Field(description="The deposit's or the transaction's id.")


class Statement(Shape):
    vault_id: str
    start: Timestamp
    end: Timestamp
    balances: list[AssetBalance]
    lines: list[StatementLine]


class HistoryLine(Shape):
    id: str
    created_at: Timestamp
    updated_at: Timestamp
    state: str
    sub_status: str | None
    asset: str | None
    amount: BaseUnits | None
    destination: str | None
    external_id: str | None
    initiator_id: str
    tx_hash: str | None
    block_number: int | None
    fee: BaseUnits | None


class History(Shape):
    vault_id: str
    start: Timestamp
    end: Timestamp
    items: list[HistoryLine]
