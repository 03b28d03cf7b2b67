"""``/v1/events``: the organisation's events, as a page of JSON or as a server-sent event stream.

The same events webhooks deliver (:mod:`harbour.custody.outbox`), in commit
order. ``Accept: text/event-stream`` keeps the connection open and sends each
event as it is committed (``id:`` its sequence, ``event:`` its type, ``data:`` the
event as JSON); a client that reconnects sends ``Last-Event-ID`` and misses
nothing. Without it, a stream starts after the newest event, a page at the
first. Every :data:`REAUTHENTICATE` seconds the stream checks the credential
again (:func:`harbour.api.routing.recheck`: revoked, expired, its user disabled,
its networks; not the signature, whose nonce the opening request spent), so a
revoked credential or a disabled user stops receiving; after
:data:`LIFETIME` it ends, and the client resumes where it was.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import WithJsonSchema
from starlette.concurrency import run_in_threadpool

from harbour.api.interface import CustodyService
from harbour.api.routing import Actor, Custody, recheck, resource_router, returns
from harbour.custody import notifyshapes as shapes
from harbour.custody.errors import CustodyError
from harbour.custody.views import MAX_LIMIT

router = resource_router("events")
STREAM: Final = "text/event-stream"
POLL: Final = 0.25
HEARTBEAT: Final = 15.0
REAUTHENTICATE: Final = 30.0
LIFETIME: Final = 300.0
"""Seconds a stream lasts; then it ends and the client reconnects with ``Last-Event-ID`` (EventSource does it
by itself). So no connection outlives a credential check for long, and a server shutting down waits for none."""


def frame(event: dict[str, Any]) -> str:
    """One server-sent event; the JSON has no raw newlines, so it is one ``data:`` line."""
    data = json.dumps(event, separators=(",", ":"), sort_keys=True)
    return f"id: {event['sequence']}\nevent: {event['type']}\ndata: {data}\n\n"


async def stream(request: Request, custody: CustodyService, actor: Any, after: int | None) -> AsyncIterator[str]:
    cursor = after
    opened = checked = beat = time.monotonic()
    yield "retry: 2000\n\n"
    while time.monotonic() - opened < LIFETIME:
        page = await run_in_threadpool(custody.events_after, actor, cursor, 100)
        for event in page["items"]:
            yield frame(event)
            cursor = event["sequence"]
        now = time.monotonic()
        if now - checked > REAUTHENTICATE:
            try:
                actor = await run_in_threadpool(recheck, custody, request, "GET", "/v1/events")
            except CustodyError as exc:
                yield f"event: error\ndata: {json.dumps({'detail': exc.detail})}\n\n"
                return
            checked = now
        if page["items"]:
            continue
        if now - beat > HEARTBEAT:
            yield ": keep-alive\n\n"
            beat = now
        if await request.is_disconnected():
            return
        await asyncio.sleep(POLL)


@router.get(
    "/events",
    summary="Events: transaction state changes and approvals (JSON page, or a server-sent event stream)",
    description="With `Accept: text/event-stream`, a stream that resumes after `Last-Event-ID` (else after the "
    "newest event). Otherwise a page of events after `after` (else from the first); pass `last_sequence` back "
    "as `after`.",
    responses={200: {"content": {STREAM: {"schema": {"type": "string"}}}}},
    **returns(shapes.EventPage),
)
def events(
    request: Request,
    custody: Custody,
    actor: Actor,
    after: Annotated[int | None, Query(ge=0, le=10**18, description="Events after this sequence.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Events per page, 1..{MAX_LIMIT}.")] = 100,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=10**18, description="Resume after this sequence."),
        WithJsonSchema({"type": "integer", "minimum": 0, "maximum": 10**18}),
    ] = None,
) -> Any:
    start = last_event_id if last_event_id is not None else after
    if STREAM in request.headers.get("accept", "").lower():  # content negotiation, not a parameter
        if start is None:
            start = custody.events_head(actor)
        custody.events_after(actor, start, 1)  # refusals as problem documents, before the stream begins
        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(request, custody, actor, start), media_type=STREAM, headers=headers)
    return custody.events_after(actor, start, limit)
