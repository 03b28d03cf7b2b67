"""One webhook attempt over HTTP, bounded in time and memory whatever the receiver does.

The receiver is chosen by an organisation's admin, so it may be hostile or
broken. A client's usual timeouts are per socket operation: a receiver that
sends one byte every few seconds (of its status line, headers or body) never
trips them and holds the attempt, and the worker running it, open for as long
as it likes; a receiver that answers with a huge body would have it read into
memory. So every socket operation of an attempt here gets at most the time left
until the attempt's overall deadline (:class:`_DeadlineStream`), and of the
answer only the status and the first :data:`MAX_ANSWER` bytes of the body are
read (at most one more network read, 64 KiB, is buffered), after which the
connection is closed. Redirects are not followed and no proxy settings are read
from the environment: the request goes exactly to the address that was checked.
"""

from __future__ import annotations

import ssl
import threading
import time
import typing
from dataclasses import dataclass
from typing import Final

import httpcore

MAX_ANSWER: Final = 4096
"""Bytes of a receiver's answer body read at most (the answer's content is not used)."""
CONNECT_TIMEOUT: Final = 5.0


class _Deadlines(threading.local):
    at: float | None = None
    """The monotonic time the current thread's attempt must end by, if one is running."""


def _within(
    deadline: _Deadlines, timeout: float | None, error: type[httpcore.TimeoutException] = httpcore.ReadTimeout
) -> float | None:
    """``timeout`` cut to the time left before the deadline; ``error`` once it has passed."""
    if deadline.at is None:
        return timeout
    left = deadline.at - time.monotonic()
    if left <= 0:
        raise error("the attempt's overall deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadlines) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _within(self._deadline, timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _within(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(
            ssl_context, server_hostname, _within(self._deadline, timeout, httpcore.ConnectTimeout)
        )
        return _DeadlineStream(inner, self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, deadline: _Deadlines) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        left = _within(self._deadline, timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, left, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:  # pragma: no cover - webhook URLs are http(s) only
        raise httpcore.ConnectError("webhooks are not sent over Unix sockets")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@dataclass(frozen=True)
class Answer:
    status: int
    read: int
    """Bytes of the answer's body read (at most :data:`MAX_ANSWER` plus one network read)."""


class SendError(Exception):
    """No answer: the connection failed, or the deadline passed first."""


class Sender:
    """Sends attempts over a pool of connections shared by the delivery threads."""

    def __init__(self, *, max_connections: int = 32) -> None:
        self._deadline = _Deadlines()
        self._pool = httpcore.ConnectionPool(
            max_connections=max_connections,
            keepalive_expiry=30.0,
            network_backend=_DeadlineBackend(self._deadline),
        )

    def post(
        self, url: str, headers: dict[str, str], body: bytes, *, deadline: float, sni_hostname: str | None = None
    ) -> Answer:
        """POST ``body`` to ``url``; the status and bytes read, within ``deadline`` seconds in all."""
        extensions: dict[str, typing.Any] = {
            "timeout": {
                "connect": min(CONNECT_TIMEOUT, deadline),
                "read": deadline,
                "write": deadline,
                "pool": deadline,
            }
        }
        if sni_hostname is not None:
            extensions["sni_hostname"] = sni_hostname
        sent = {**headers, "Content-Length": str(len(body))}
        self._deadline.at = time.monotonic() + deadline
        try:
            with self._pool.stream("POST", url, headers=list(sent.items()), content=body, extensions=extensions) as r:
                read = 0
                for chunk in r.iter_stream():
                    read += len(chunk)
                    if read >= MAX_ANSWER:
                        break  # leaving the block closes the connection; the rest is never read
                return Answer(r.status, read)
        except httpcore.TimeoutException as exc:
            raise SendError(f"{type(exc).__name__}: no answer within {deadline:g} s ({exc})") from None
        except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
            raise SendError(f"{type(exc).__name__}: {exc}") from None
        finally:
            self._deadline.at = None

    def close(self) -> None:
        self._pool.close()
