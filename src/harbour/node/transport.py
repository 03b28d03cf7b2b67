"""How the coordinator reaches a node: HTTP/1.1 to an online node, files to a cold one.

A transport carries one request's bytes to a node and brings back the response's
bytes; it understands nothing in between (the node's answer is parsed by
:mod:`harbour.node.rpc`, and the messages inside are sealed end to end).

:class:`HttpTransport` keeps a small pool of persistent HTTP/1.1 connections per
node and frames requests with h11 (the sans-I/O HTTP/1.1 implementation uvicorn
serves with). A general HTTP client costs the coordinator several milliseconds of
CPU per signing session in connection-pool bookkeeping alone, which at 16
sessions in flight on a small machine is what limits throughput; this client does
one thing: POST a body, read a body, keep the connection. An ``https://`` node is
reached over TLS with the coordinator's client certificate
(:meth:`harbour.node.tls.TlsFiles.client_context`): nodes that serve TLS accept
no client without one.

:class:`FileTransport` is for a node without a network: the request is written as
``<stem>.request`` in a directory, and the operator carries it to the node
(``harbour node offline``) and brings back ``<stem>.response``.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import h11

from harbour.node import rpc
from harbour.util.files import write_atomic

POOL_SIZE = 32
"""Idle connections kept per node; more may be open while requests are in flight."""
MAX_RESPONSE = rpc.MAX_REQUEST


class TransportError(OSError):
    """The node could not be reached, or did not answer with an HTTP 200 and a body."""


class Transport(Protocol):
    async def call(self, request: bytes, timeout: float) -> bytes: ...


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=16 * 1024)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class HttpTransport:
    """POST /v1/rpc to one node over a pool of keep-alive connections."""

    def __init__(self, url: str, tls: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or parts.hostname is None or parts.port is None:
            raise ValueError(f"only http(s)://host:port node URLs are served by this transport, not {url!r}")
        if parts.scheme == "https" and tls is None:
            # A TransportError, so a coordinator without one reports the node as unreachable, and why.
            raise TransportError(
                f"{url} serves mutual TLS: give the coordinator a client certificate, its key and the nodes' CA"
            )
        self.host = parts.hostname
        self.port = parts.port
        self.tls = tls if parts.scheme == "https" else None
        self.authority = parts.netloc.encode()
        self._idle: list[_Connection] = []

    async def call(self, request: bytes, timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(self._call(request), timeout)
        except TimeoutError as exc:
            raise TransportError(f"no answer within {timeout:.1f} s") from exc

    async def _call(self, request: bytes) -> bytes:
        # Never sent twice: a node may have acted on a request whose answer was lost, and a
        # second copy would be refused (a replay) and abort its session. So instead of a retry
        # after failure, idle connections the node has closed are dropped before use.
        conn = None
        while self._idle:
            candidate = self._idle.pop()
            if candidate.reader.at_eof() or candidate.writer.is_closing():
                candidate.close()
                continue
            conn = candidate
            break
        if conn is None:
            conn = await self._connect()
        try:
            body = await self._exchange(conn, request)
        except (OSError, h11.ProtocolError, asyncio.IncompleteReadError) as exc:
            conn.close()
            if isinstance(exc, TransportError):
                raise
            raise TransportError(f"HTTP exchange with {self.host}:{self.port} failed: {exc!r}") from exc
        except BaseException:
            conn.close()  # cancelled mid-exchange: the connection's state is unknown
            raise
        if conn.http.our_state is h11.IDLE and len(self._idle) < POOL_SIZE:
            self._idle.append(conn)
        else:
            conn.close()
        return body

    async def _connect(self) -> _Connection:
        try:
            if self.tls is None:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            else:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, ssl=self.tls, server_hostname=self.host
                )
        except ssl.SSLError as exc:
            raise TransportError(f"TLS with {self.host}:{self.port} failed: {exc.reason or exc}") from exc
        except OSError as exc:
            raise TransportError(f"cannot connect to {self.host}:{self.port}: {exc.strerror or exc}") from exc
        return _Connection(reader, writer)

    async def _exchange(self, conn: _Connection, request: bytes) -> bytes:
        http = conn.http
        headers = [
            (b"Host", self.authority),
            (b"Content-Type", b"application/cbor"),
            (b"Content-Length", str(len(request)).encode()),
        ]
        data = http.send(h11.Request(method="POST", target="/v1/rpc", headers=headers))
        data = (data or b"") + (http.send(h11.Data(data=request)) or b"") + (http.send(h11.EndOfMessage()) or b"")
        conn.writer.write(data)
        await conn.writer.drain()
        status = 0
        chunks: list[bytes] = []
        size = 0
        while True:
            event = http.next_event()
            if event is h11.NEED_DATA:
                received = await conn.reader.read(65536)
                http.receive_data(received)  # b"" tells h11 the peer closed
                continue
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if size > MAX_RESPONSE:
                    raise TransportError("response body too large")
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed):
                raise TransportError("the node closed the connection before answering")
        if status != 200:
            raise TransportError(f"HTTP {status} from {self.host}:{self.port}")
        if http.our_state is h11.DONE and http.their_state is h11.DONE:
            http.start_next_cycle()
        return b"".join(chunks)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class FileTransport:
    """A cold node: ``<stem>.request`` written here, ``<stem>.response`` awaited here."""

    def __init__(self, directory: Path, poll: float = 0.05) -> None:
        self.directory = Path(directory)
        self.poll = poll
        self.directory.mkdir(parents=True, exist_ok=True)

    async def call(self, request: bytes, timeout: float) -> bytes:
        stem = f"{time.time_ns():020d}-{secrets.token_hex(4)}"
        req = self.directory / f"{stem}.request"
        resp = self.directory / f"{stem}.response"
        write_atomic(req, request, mode=0o644, overwrite=False)
        deadline = time.monotonic() + timeout
        while not resp.exists():
            if time.monotonic() > deadline:
                req.unlink(missing_ok=True)
                raise TransportError(f"no {resp.name} in {self.directory} within {timeout:.0f} s")
            await asyncio.sleep(self.poll)
        data = resp.read_bytes()
        resp.unlink(missing_ok=True)
        req.unlink(missing_ok=True)
        return data
