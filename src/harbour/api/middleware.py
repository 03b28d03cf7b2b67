"""The ASGI layer under the routes: body size limit, last-resort error handler, no caching.

These are plain ASGI middleware rather than FastAPI dependencies because they
must act before a route runs (a 100 MB body is refused before it is read into
memory, let alone parsed) and after everything else has failed (an exception no
handler knew still becomes a problem document, not a bare "Internal Server
Error" or a dropped connection).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final

from harbour.api.availability import dependency_of, unavailable
from harbour.api.problems import internal_problem, log, problem

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY: Final = 64 * 1024
"""The largest request body accepted; a policy document is the biggest legitimate one, a few KiB."""


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
