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
just before, without following redirects, within an overall deadline
(``webhook_deadline``, at most half the lease, so a live worker always finishes
before its claim lapses) and reading at most a few KiB of the answer
(:mod:`harbour.custody.webhookhttp`), and logged
(:class:`~harbour.custody.notices.WebhookAttempt`). A 2xx answer delivers it;
anything else is retried after ``base * 2**(attempt-1)`` seconds, capped, with full
jitter (a random wait up to that), until ``webhook_max_attempts``; then the
delivery is ``failed`` and stays in the log.

Receivers are chosen by organisations and may be slow on purpose, so one must
not hold up the others: each attempt runs on its own thread, the worker logs
the attempts that have ended (one commit for all of them) and claims more
whenever a thread is free, never waiting for the slowest of a batch. At most
:attr:`Dispatcher.per_endpoint` attempts to one endpoint and
:attr:`Dispatcher.per_org` to one organisation's endpoints are in flight at once
in one worker, so slow receivers occupy part of the threads at most.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Final

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from harbour.custody import notices as n
from harbour.custody import webhookhttp, webhookurl
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.models import new_id
from harbour.custody.settings import Settings
from harbour.custody.uow import UnitOfWork
from harbour.custody.webhooksig import WebhookKeys

log = logging.getLogger(__name__)

LEASE: Final = 60.0
"""Seconds a claim lasts: twice the longest attempt, so a live worker always finishes first."""
BATCH: Final = 32
MAX_ERROR: Final = 500


@dataclass(frozen=True)
class Claimed:
    delivery_id: str
    number: int
    org_id: str
    endpoint_id: str
    url: str
    event_id: str
    body: bytes


@dataclass(frozen=True)
class Outcome:
    status: int | None
    error: str | None
    duration_ms: int
    read: int = 0
    """Bytes of the receiver's answer body read."""


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
        self,
        uow: UnitOfWork,
        keys: WebhookKeys,
        settings: Settings,
        *,
        workers: int = 16,
        poll: float = 0.5,
        per_endpoint: int = 4,
        per_org: int = 8,
    ) -> None:
        self.uow = uow
        self.keys = keys
        self.settings = settings
        self.poll = poll
        self.workers = workers
        """Attempts this worker has in flight at most."""
        self.batch = BATCH
        """Deliveries claimed by one query at most."""
        self.per_endpoint = per_endpoint
        self.per_org = per_org
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="harbour-webhook")
        self._sender = webhookhttp.Sender(max_connections=workers)
        self._wake = threading.Event()
        self._rng = random.SystemRandom()
        self._lock = threading.Lock()
        self._endpoints: dict[str, int] = {}
        self._orgs: dict[str, int] = {}
        self._inflight = 0
        self._done: list[tuple[Claimed, Outcome]] = []

    def wake(self) -> None:
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set: at once when woken (or a thread is free), else every ``poll`` seconds."""
        while not stop.is_set():
            self._wake.clear()
            try:
                started = self.start()  # new deliveries first: logging the ended attempts can wait a moment
                self.settle()
            except Exception:
                log.exception("webhook delivery pass failed; retrying")
                started = []
            if not started:
                self._wake.wait(self.poll)

    def close(self) -> None:
        self._wake.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._sender.close()
        try:
            self.settle()
        except Exception:  # their claims lapse and they are tried again
            log.exception("could not log the last webhook attempts")

    def once(self) -> int:
        """Start what is due and wait for those attempts to be settled; the number of attempts made."""
        futures = self.start()
        wait(futures)
        self.settle()
        return len(futures)

    def start(self) -> list[Future[None]]:
        """Claim what is due as far as free threads and the per-endpoint and per-organisation caps allow, and start
        each attempt on its own thread; :meth:`settle` logs them as they end."""
        futures: list[Future[None]] = []
        while True:
            with self._lock:
                free = self.workers - self._inflight
                endpoints = {e for e, k in self._endpoints.items() if k >= self.per_endpoint}
                orgs = {o for o, k in self._orgs.items() if k >= self.per_org}
            if free <= 0:
                return futures
            claimed = self._claim(min(free, self.batch), endpoints, orgs)
            if not claimed:
                return futures
            for item in claimed:
                with self._lock:
                    self._inflight += 1
                    self._endpoints[item.endpoint_id] = self._endpoints.get(item.endpoint_id, 0) + 1
                    self._orgs[item.org_id] = self._orgs.get(item.org_id, 0) + 1
                futures.append(self._pool.submit(self._deliver, item))

    def _deliver(self, item: Claimed) -> None:
        try:
            outcome = self._send(item)
        except Exception as exc:  # a bug, not the receiver: logged as a failed attempt all the same
            log.exception("webhook delivery %s failed", item.delivery_id)
            outcome = Outcome(None, f"{type(exc).__name__}"[:MAX_ERROR], 0)
        with self._lock:
            self._done.append((item, outcome))
            self._inflight -= 1
            for counts, key in ((self._endpoints, item.endpoint_id), (self._orgs, item.org_id)):
                counts[key] -= 1
                if not counts[key]:
                    del counts[key]
        self._wake.set()

    def settle(self) -> int:
        """Log the attempts that ended since the last call, and what each means for its delivery, in one commit."""
        with self._lock:
            done, self._done = self._done, []
        if not done:
            return 0

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
                    for item, outcome in done
                ],
            )
            rows = {
                r.id: r
                for r in s.scalars(
                    select(n.WebhookDelivery)
                    .where(n.WebhookDelivery.id.in_([item.delivery_id for item, _ in done]))
                    .with_for_update()
                )
            }
            for item, outcome in done:
                self._settle(rows[item.delivery_id], item, outcome, now)

        self.uow.write(record)
        return len(done)

    def _claim(
        self,
        limit: int | None = None,
        endpoints: frozenset[str] | set[str] = frozenset(),
        orgs: frozenset[str] | set[str] = frozenset(),
    ) -> list[Claimed]:
        """Due deliveries, at most ``limit``, none to the ``endpoints`` or ``orgs`` already at their cap, and no
        more to one endpoint or organisation than its cap leaves room for."""
        d, e, endpoint = n.WebhookDelivery, n.Event, n.WebhookEndpoint
        with self.uow.tx() as s:
            now = self.uow.clock()
            query = (
                select(d.id, d.endpoint_id, d.org_id)
                .join(endpoint, endpoint.id == d.endpoint_id)
                .where(d.state == n.PENDING, d.next_attempt_at <= now, endpoint.enabled.is_(True))
            )
            if endpoints:
                query = query.where(d.endpoint_id.not_in(endpoints))
            if orgs:
                query = query.where(d.org_id.not_in(orgs))
            due = list(
                s.execute(
                    query.order_by(d.next_attempt_at, d.event_seq)
                    .limit(limit or self.batch)
                    .with_for_update(skip_locked=True, of=d)
                )
            )
            with self._lock:
                by_endpoint, by_org = dict(self._endpoints), dict(self._orgs)
            ids = []
            for row in due:
                if by_endpoint.get(row.endpoint_id, 0) < self.per_endpoint and by_org.get(row.org_id, 0) < self.per_org:
                    ids.append(row.id)
                    by_endpoint[row.endpoint_id] = by_endpoint.get(row.endpoint_id, 0) + 1
                    by_org[row.org_id] = by_org.get(row.org_id, 0) + 1
            if not ids:
                return []
            s.execute(
                update(d)
                .where(d.id.in_(ids))
                .values(attempts=d.attempts + 1, next_attempt_at=now + dt.timedelta(seconds=LEASE))
                .execution_options(synchronize_session=False)
            )
            rows = s.execute(
                select(d.id, d.attempts, d.org_id, d.endpoint_id, endpoint.url, e)
                .join(endpoint, endpoint.id == d.endpoint_id)
                .join(e, e.seq == d.event_seq)
                .where(d.id.in_(ids))
            )
            return [
                Claimed(r.id, r.attempts, r.org_id, r.endpoint_id, r.url, r.Event.id, body_of(r.Event)) for r in rows
            ]

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
            **self.keys.headers(item.org_id, item.endpoint_id, item.event_id, item.body),
        }
        deadline = min(self.settings.webhook_deadline, LEASE / 2)
        try:
            answer = self._sender.post(
                target.request_url(),
                headers,
                item.body,
                deadline=deadline,
                sni_hostname=target.host if target.scheme == "https" else None,
            )
        except webhookhttp.SendError as exc:
            return Outcome(None, str(exc)[:MAX_ERROR], _ms(started))
        error = None if 200 <= answer.status < 300 else f"the receiver answered {answer.status}"
        return Outcome(answer.status, error, _ms(started), answer.read)

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
