"""The signer node over HTTP: a small ASGI application served by uvicorn.

These routes, nothing else:

- ``POST /v1/rpc`` with a request of :mod:`harbour.node.rpc` as the body
  (``application/cbor``); the response body is the node's answer, always with
  status 200 when the node answered (refusals are in the answer) and 4xx for
  HTTP-level mistakes (wrong method or path, a body too large or missing);
- ``GET /v1/descriptor``: the node's public descriptor JSON, for operators;
- ``GET /health`` (liveness: the process answers) and ``GET /ready`` (readiness:
  its key store, signing log and nonce ledger are open; 503 otherwise), JSON,
  for a supervisor or a load balancer.

The application runs every request to completion on the event loop, one at a
time: protocol steps are CPU-bound and short, and serialising them means the
node's state needs no locks. Transport security is not what protects the
messages (they are sealed end to end); a node configured with ``tls``
(:mod:`harbour.node.tls`) serves HTTPS and accepts only clients whose
certificate chains to its CA, which keeps the metadata private and strangers off
the port.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from harbour.node import rpc
from harbour.node.config import NodeStartError, store_secrets
from harbour.node.service import NodeService
from harbour.util import logs
from harbour.util.scrape import Endpoint, MetricsListener
from harbour.util.serving import serve_announcing_ready

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger("harbour.node")


class NodeApp:
    """ASGI 3 application around a :class:`NodeService`."""

    def __init__(self, node: NodeService) -> None:
        self.node = node

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/v1/descriptor" and method == "GET":
            await _respond(send, 200, (self.node.descriptor.to_json() + "\n").encode(), b"application/json")
            return
        if path in ("/health", "/ready") and method == "GET":
            await _respond(send, *self._probe(path), b"application/json")
            return
        if path != "/v1/rpc":
            await _respond(send, 404, b"not found\n", b"text/plain")
            return
        if method != "POST":
            await _respond(send, 405, b"use POST\n", b"text/plain")
            return
        body = await _read_body(receive, rpc.MAX_REQUEST)
        if body is None:
            await _respond(send, 413, b"request body too large\n", b"text/plain")
            return
        answer = self.node.handle(body)
        await _respond(send, 200, answer, b"application/cbor")

    def _probe(self, path: str) -> tuple[int, bytes]:
        """``/health``: the process answers. ``/ready``: its store, log and ledger are open, so it can serve."""
        name, node_id = self.node.descriptor.name, self.node.descriptor.node_id
        if path == "/health":
            return 200, json.dumps({"status": "ok", "name": name, "node_id": node_id}).encode() + b"\n"
        why = self.node.ready()
        document = {"ready": why is None, "name": name, "node_id": node_id, "detail": why or "ready to serve"}
        return (200 if why is None else 503), json.dumps(document).encode() + b"\n"

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _respond(send: Send, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def serve(node: NodeService, *, ready: Callable[[], None] | None = None) -> None:
    """Serve ``node`` on its configured address until SIGINT or SIGTERM."""
    import uvicorn

    tls: dict[str, Any] = {}
    if node.config.tls is not None:
        try:
            tls = node.config.tls.uvicorn_options()
        except ValueError as exc:
            raise NodeStartError(str(exc)) from None
    config = uvicorn.Config(
        NodeApp(node),
        log_config=None
        if logs.configured()
        else uvicorn.config.LOGGING_CONFIG,  # uvicorn's lines in the configured format
        host=node.config.listen_host,
        port=node.config.listen_port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=30,
        **tls,
    )
    server = uvicorn.Server(config)

    signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True))
    asyncio.run(serve_announcing_ready(server, ready))


def run(
    directory: Path, *, metrics: Endpoint | None = None, announce: Callable[[str, str], None] | None = None
) -> None:
    """Open the node in ``directory`` and serve it until SIGINT or SIGTERM.

    The store's passphrase or the token's PIN comes from the environment
    (:func:`~harbour.node.config.store_secrets`); :class:`NodeStartError` when the
    node cannot start. Once it listens, one line says so on stdout, or
    ``announce(name, url)`` is called instead (``harbour node run --json``). With
    ``metrics``, its metrics are served there (:mod:`harbour.util.scrape`), not here.
    """
    passphrase, pin = store_secrets(directory)
    node = NodeService.open(directory, passphrase=passphrase, pin=pin, offline=False)

    def ready() -> None:
        if announce is not None:
            announce(node.config.name, node.config.url)
        else:
            print(f"node {node.config.name} listening on {node.config.url}", flush=True)

    listener = None
    try:
        listener = MetricsListener(metrics, node.metrics.registry).start() if metrics is not None else None
        serve(node, ready=ready)
    finally:
        if listener is not None:
            listener.stop()
        node.close()
