"""Delivering webhooks: claim due outbox rows, send them signed, log each attempt, retry with backoff.

Several service processes may share one PostgreSQL database, each running a
:class:`Dispatcher`. A worker claims due deliveries with ``SELECT ... FOR UPDATE
SKIP LOCKED`` (two workers never wait on, or take, the same row) and, in the same
short transaction, counts the attempt and moves its due time forward by
:data:`LEASE`: the claim is the row's new due time, so no lock is held while the
request is in flight, and a delivery whose worker died becomes due again when the
lease lapses (at-least-once; receivers drop repeats by event id). SQLite has one
writer at a time, so there the claim is atomic anyway.

Each attempt is signed afresh (:mod:`harbour.custody.webhooksig`, new timestamp,
same event id), sent to the address :mod:`harbour.custody.webhookurl` checked
just before, without following redirects, and logged
(:class:`~harbour.custody.notices.WebhookAttempt`). A 2xx answer delivers it;
anything else is retried after ``base * 2**(attempt-1)`` seconds, capped, with full
jitter (a random wait up to that), until ``webhook_max_attempts``; then the
delivery is ``failed`` and stays in the log.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

import httpx
from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from harbour.custody import notices as n
from harbour.custody import webhookurl
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.models import new_id
from harbour.custody.settings import Settings
from harbour.custody.uow import UnitOfWork
from harbour.custody.webhooksig import WebhookKeys

log = logging.getLogger(__name__)

LEASE: Final = 60.0
"""Seconds a claim lasts: longer than a request's timeout, so a live worker always finishes first."""
TIMEOUT: Final = 10.0
BATCH: Final = 32
MAX_ERROR: Final = 500


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    number: int
    org_id: str
    url: str
    event_id: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str | None
    duration_ms: int


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds before attempt ``attempt + 1``: full jitter over an exponential ceiling."""
    return rng.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def body_of(event: n.Event) -> bytes:
    document = {
        "id": event.id,
        "sequence": event.seq,
        "type": event.type,
        "org_id": event.org_id,
        "subject": event.subject,
        "created_at": event.created_at.astimezone(dt.UTC).isoformat(),
        "data": event.data,
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


class Dispatcher:
    def __init__(
        self, uow: UnitOfWork, keys: WebhookKeys, settings: Settings, *, workers: int = 8, poll: float = 0.5
    ) -> None:
        self.uow = uow
        self.keys = keys
        self.settings = settings
        self.poll = poll
        self.batch = BATCH
        """Deliveries claimed at once: the most this worker has in flight."""
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harbour-webhook")
        self._client = httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False)
        self._wake = threading.Event()
        self._rng = random.SystemRandom()

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set: at once when woken, else every ``poll`` seconds."""
        while not stop.is_set():
            self._wake.clear()
            try:
                busy = self.once()
            except Exception:
                log.exception("webhook delivery pass failed; retrying")
                busy = 0
            if not busy:
                self._wake.wait(self.poll)

    def close(self) -> None:
        self._wake.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def once(self) -> int:
        """Claim what is due, send it all concurrently, log the outcomes; the number of attempts made."""
        claimed = self._claim()
        if not claimed:
            return 0
        outcomes = list(self._pool.map(self._send, claimed))

        def record(s: Session) -> None:
            now = self.uow.clock()
            s.execute(
                insert(n.WebhookAttempt),
                [
                    {
                        "id": new_id(),
                        "delivery_id": item.delivery_id,
                        "number": item.number,
                        "status_code": outcome.status,
                        "error": outcome.error,
                        "duration_ms": outcome.duration_ms,
                        "created_at": now,
                    }
                    for item, outcome in zip(claimed, outcomes, strict=True)
                ],
            )
            rows = {
                r.id: r
                for r in s.scalars(
                    select(n.WebhookDelivery)
                    .where(n.WebhookDelivery.id.in_([c.delivery_id for c in claimed]))
                    .with_for_update()
                )
            }
            for item, outcome in zip(claimed, outcomes, strict=True):
                self._settle(rows[item.delivery_id], item, outcome, now)

        self.uow.write(record)  # one commit for the batch
        return len(claimed)

    def _claim(self) -> list[Claimed]:
        d, e, endpoint = n.WebhookDelivery, n.Event, n.WebhookEndpoint
        with self.uow.tx() as s:
            now = self.uow.clock()
            due = list(
                s.execute(
                    select(d.id, d.attempts)
                    .join(endpoint, endpoint.id == d.endpoint_id)
                    .where(d.state == n.PENDING, d.next_attempt_at <= now, endpoint.enabled.is_(True))
                    .order_by(d.next_attempt_at, d.event_seq)
                    .limit(self.batch)
                    .with_for_update(skip_locked=True, of=d)
                )
            )
            if not due:
                return []
            ids = [row.id for row in due]
            s.execute(
                update(d)
                .where(d.id.in_(ids))
                .values(attempts=d.attempts + 1, next_attempt_at=now + dt.timedelta(seconds=LEASE))
                .execution_options(synchronize_session=False)
            )
            rows = s.execute(
                select(d.id, d.attempts, d.org_id, endpoint.url, e)
                .join(endpoint, endpoint.id == d.endpoint_id)
                .join(e, e.seq == d.event_seq)
                .where(d.id.in_(ids))
            )
            return [Claimed(r.id, r.attempts, r.org_id, r.url, r.Event.id, body_of(r.Event)) for r in rows]

    def _send(self, item: Claimed) -> Outcome:
        started = time.monotonic()
        try:
            target = webhookurl.check(item.url, allow_private=self.settings.webhook_allow_private)
        except (Invalid, Conflict) as exc:
            return Outcome(None, exc.detail[:MAX_ERROR], 0)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "harbour-webhooks/1",
            "Host": target.host_header(),
            "Harbour-Webhook-Attempt": str(item.number),
            **self.keys.headers(item.org_id, item.event_id, item.body),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        try:
            response = self._client.post(
                target.request_url(), content=item.body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR], _ms(started))
        error = None if 200 <= response.status_code < 300 else f"the receiver answered {response.status_code}"
        return Outcome(response.status_code, error, _ms(started))

    def _settle(self, row: n.WebhookDelivery, item: Claimed, outcome: Outcome, now: dt.datetime) -> None:
        """What the attempt ``item`` means for its delivery: delivered, retried later, or given up."""
        if row.state != n.PENDING:  # another worker finished it after this one's lease lapsed
            return
        row.last_status, row.last_error = outcome.status, outcome.error
        if outcome.error is None:
            row.state, row.delivered_at, row.next_attempt_at = n.DELIVERED, now, None
        elif row.attempts != item.number:  # a newer claim is in flight: its outcome decides what follows
            return
        elif row.attempts >= self.settings.webhook_max_attempts:
            row.state, row.next_attempt_at = n.FAILED, None
        else:
            wait = backoff(row.attempts, self.settings.webhook_retry_base, self.settings.webhook_retry_cap, self._rng)
            row.next_attempt_at = now + dt.timedelta(seconds=wait)


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
