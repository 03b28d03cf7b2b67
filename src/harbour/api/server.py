"""Serving the custody API with uvicorn: in the foreground, or in a background thread.

Bearer tokens travel in every request, so beyond the loopback interface the API
must be reached over TLS: either give it a certificate and key (``tls``, which
uvicorn's ``ssl_certfile``/``ssl_keyfile`` serve) or put a TLS-terminating
proxy in front. :func:`plaintext_warning` says so when neither is evident.
Repeated identical log lines (a dependency down, a flood of bad tokens) are
folded by :mod:`harbour.api.logfilter`. Uvicorn's access log is off: each
request's line is written by :class:`harbour.api.middleware.RequestLog` instead,
with its request id and route template (never the query string, nor a header),
and once :func:`harbour.util.logs.configure` ran, uvicorn's own lines go through
the same handler (one format, one stream).

The client address each request is judged by (credential allowlists, the limits on
failed logins) is the socket's peer. ``X-Forwarded-For`` and ``X-Forwarded-Proto``
are ignored, since any client can send them, unless the operator names the proxies
that set them (``trusted_proxies`` in custody.json, addresses or CIDR blocks, empty
by default): then, and only for requests from those peers, the address the proxy
reports is the client's.
"""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from harbour.api import logfilter
from harbour.api.app import create_app
from harbour.api.authlimit import FailedAuthentications
from harbour.api.interface import CustodyService
from harbour.custody.metrics import ServiceMetrics
from harbour.util import logs
from harbour.util.scrape import is_loopback
from harbour.util.serving import serve_announcing_ready

if TYPE_CHECKING:
    import uvicorn

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8700
WORKER_THREADS = 40
"""Requests served at once: route functions run in this threadpool (keygen and signing block)."""


FOLDED_LOGGERS: Final = ("harbour.api", "harbour.api.auth", "harbour.custody.pipeline", "harbour.custody.readiness")
"""Loggers whose repeated identical lines are folded into a count (each logger filters its own records)."""


@dataclass(frozen=True)
class Tls:
    """A PEM certificate chain and its private key, served by uvicorn."""

    cert: Path
    key: Path


def plaintext_warning(host: str, tls: Tls | None) -> str | None:
    """The warning to print when the API would take bearer tokens in clear text from other machines."""
    if tls is not None or is_loopback(host):
        return None
    return (
        f"WARNING: serving plain HTTP on {host}, beyond the loopback interface: API tokens would cross the "
        "network in clear text. Give --tls-cert and --tls-key, or reach it only through a TLS-terminating proxy."
    )


def check_trusted_proxies(proxies: Sequence[str]) -> list[str]:
    """The trusted proxies as given, each an IP address or CIDR block; ValueError names the first that is not."""
    out = []
    for proxy in proxies:
        if not isinstance(proxy, str):
            raise ValueError(f"a trusted proxy is an IP address or CIDR block, got {proxy!r}")
        try:
            ipaddress.ip_network(proxy, strict=False)
        except ValueError:
            raise ValueError(f"a trusted proxy is an IP address or CIDR block, got {proxy!r}") from None
        out.append(proxy)
    return out


def make_server(
    custody: CustodyService,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    tls: Tls | None = None,
    trusted_proxies: Sequence[str] = (),
    failed_authentications: FailedAuthentications | None = None,
    metrics: ServiceMetrics | None = None,
) -> uvicorn.Server:
    """A uvicorn server for the app; forwarding headers count only from ``trusted_proxies`` (none by default)."""
    import uvicorn

    proxies = check_trusted_proxies(trusted_proxies)
    logfilter.install(FOLDED_LOGGERS)
    config = uvicorn.Config(
        create_app(custody, failed_authentications=failed_authentications, metrics=metrics),
        log_config=None if logs.configured() else uvicorn.config.LOGGING_CONFIG,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_keep_alive=30,
        ssl_certfile=str(tls.cert) if tls else None,
        ssl_keyfile=str(tls.key) if tls else None,
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies or None,
    )
    return uvicorn.Server(config)


async def _run(server: uvicorn.Server, ready: Callable[[], None] | None) -> None:
    import anyio.to_thread

    anyio.to_thread.current_default_thread_limiter().total_tokens = WORKER_THREADS
    await serve_announcing_ready(server, ready)


def serve(
    custody: CustodyService,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    ready: Callable[[], None] | None = None,
    tls: Tls | None = None,
    trusted_proxies: Sequence[str] = (),
    failed_authentications: FailedAuthentications | None = None,
    metrics: ServiceMetrics | None = None,
) -> None:
    """Serve the API until SIGINT or SIGTERM; ``ready`` is called once the socket listens."""
    server = make_server(
        custody,
        host,
        port,
        tls=tls,
        trusted_proxies=trusted_proxies,
        failed_authentications=failed_authentications,
        metrics=metrics,
    )
    asyncio.run(_run(server, ready))


class BackgroundServer:
    """The API on a loopback port in a daemon thread (``port=0``: any free port), for tests and demos.

    ``with BackgroundServer(custody) as server: httpx.get(server.url + "/v1/health")``.
    """

    def __init__(
        self,
        custody: CustodyService,
        host: str = DEFAULT_HOST,
        port: int = 0,
        *,
        tls: Tls | None = None,
        trusted_proxies: Sequence[str] = (),
    ) -> None:
        self.server = make_server(custody, host, port, tls=tls, trusted_proxies=trusted_proxies)
        self.host = host
        self.scheme = "https" if tls else "http"
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, name="harbour-api", daemon=True)
        self._error: BaseException | None = None

    def _main(self) -> None:
        try:
            asyncio.run(_run(self.server, self._ready.set))
        except BaseException as exc:  # reported by start()
            self._error = exc
        finally:
            self._ready.set()

    @property
    def port(self) -> int:
        sockets = self.server.servers[0].sockets if self.server.servers else []
        if not sockets:
            raise RuntimeError("the API server is not listening")
        return int(sockets[0].getsockname()[1])

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        if not self._ready.wait(timeout) or not self.server.started:
            self.stop()
            raise RuntimeError(f"the API server did not start: {self._error!r}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
