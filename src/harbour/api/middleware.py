"""The ASGI layer under the routes: request ids and the request log, body size limit, last-resort error
handler, no caching.

These are plain ASGI middleware rather than FastAPI dependencies because they
must act before a route runs (a 100 MB body is refused before it is read into
memory, let alone parsed) and after everything else has failed (an exception no
handler knew still becomes a problem document, not a bare "Internal Server
Error" or a dropped connection).

Every request has an id: the client's ``X-Request-ID`` when it sends a usable
one (1 to 128 of ``A-Z a-z 0-9 . _ : / + = -``, so a proxy's or a tracing
system's id is kept), else a new random one. It is returned as ``X-Request-ID``
on every answer, problems included, bound to every log line made while the
request is served (:func:`harbour.util.logs.bound`), and the request's own line
(logger ``harbour.api.requests``) says method, route template, status and time.
An id that is not usable (a line break meant to forge log lines, a megabyte of
text, two headers) is refused with 400, not silently replaced: the client would
otherwise look for its id in logs that never had it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from harbour.api.availability import dependency_of, unavailable
from harbour.api.problems import internal_problem, log, problem
from harbour.custody.metrics import UNMATCHED, ServiceMetrics
from harbour.util import logs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY: Final = 64 * 1024
"""The largest request body accepted; a policy document is the biggest legitimate one, a few KiB."""

REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
"""What a client's ``X-Request-ID`` may be: what proxies and tracing systems send, nothing that can break a line."""

METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

requests_log = logging.getLogger("harbour.api.requests")


async def _send_response(scope: Scope, send: Send, response: Any) -> None:
    async def nothing() -> Message:
        return {"type": "http.disconnect"}

    await response(scope, nothing, send)


class BodyLimit:
    """Refuse bodies over ``limit`` bytes with 413, whether announced by Content-Length or streamed.

    The body is read here (it is small by construction) and replayed to the app,
    so the route never sees a partial body.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    await _send_response(scope, send, problem(400, "Content-Length is not a number", instance=path))
                    return
                if announced > self.limit:
                    await _send_response(scope, send, self._too_large(path))
                    return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await _send_response(scope, send, self._too_large(path))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, path: str) -> Any:
        return problem(413, f"the request body is larger than {self.limit} bytes", instance=path)


class Guard:
    """Catch what escaped every handler (500 problem, logged; 503 if a dependency is down) and mark
    responses uncacheable.

    ``Cache-Control: no-store`` because responses carry credentials, balances and
    approval statements that a shared cache must never keep.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            dependency = dependency_of(exc)
            if dependency is not None:  # an outage, not a bug: one line, and 503 rather than 500
                log.error("%s unavailable in %s %s", dependency, scope.get("method"), scope.get("path"))
            else:
                log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            path = scope.get("path", "")
            response = unavailable(path, dependency) if dependency else internal_problem(path)
            await _send_response(scope, guarded_send, response)


class RequestLog:
    """Give each request its id (see the module docstring), log it when answered, and count it.

    The outermost layer, so the id is on every answer and the line is written
    whatever the layers under it did; ``metrics`` (None: nothing counted) gets one
    count per answer by method, route template and status.
    """

    def __init__(self, app: ASGIApp, metrics: ServiceMetrics | None = None) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = [value for name, value in scope.get("headers", []) if name == b"x-request-id"]
        started = time.monotonic()
        status = 500
        if len(given) > 1 or (given and not REQUEST_ID.fullmatch(given[0].decode("latin-1"))):
            request_id = str(uuid.uuid4())
            detail = (
                "send one X-Request-ID header"
                if len(given) > 1
                else "X-Request-ID must be 1 to 128 characters of A-Z a-z 0-9 . _ : / + = -"
            )
            app: ASGIApp = lambda s, r, snd: _send_response(s, snd, problem(400, detail, instance=s.get("path", "")))  # noqa: E731
        else:
            request_id = given[0].decode("latin-1") if given else str(uuid.uuid4())
            app = self.app

        async def identified_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = [(n, v) for n, v in message.get("headers", []) if n.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        with logs.bound(request_id=request_id):
            try:
                await app(scope, receive, identified_send)
            finally:
                self._record(scope, status, time.monotonic() - started)

    def _record(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or UNMATCHED
        method = scope.get("method", "")
        method = method if method in METHODS else "other"  # a label per invented method would grow without bound
        if self.metrics is not None:
            self.metrics.requests.labels(method, route, str(status)).inc()
        level = logging.WARNING if status >= 500 else logging.INFO
        requests_log.log(
            level,
            "%s %s %d",
            method,
            route,
            status,
            extra={"method": method, "route": route, "status": status, "duration_ms": round(seconds * 1000, 1)},
        )
