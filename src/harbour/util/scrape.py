"""``GET /metrics`` on a listener of its own, for Prometheus to scrape.

Metrics are not served on the custody API's port nor on a signer node's: they say
how many withdrawals wait, how fast signing is, which routes are called and how
often requests are refused, across every organisation of the deployment, which is
nobody's business but the operator's. So they get their own address
(``--metrics-listen HOST:PORT``), off unless asked for, and:

- on a loopback address, anyone on the machine may read them (as they may read
  ``ps``): the usual set-up with a Prometheus agent beside the service;
- beyond loopback, only with a bearer token (``HARBOUR_METRICS_TOKEN``, at least
  :data:`MIN_TOKEN` characters, from the environment, never the command line):
  Prometheus sends it with ``authorization: {credentials_file: ...}``. Without
  one, :func:`endpoint` refuses to start rather than publish them. Put TLS in
  front (a proxy) when the network between is not trusted.

A token, when set, is required on loopback too. Every other path is 404, every
other method 405; a wrong or missing token is 401 and says nothing more.

The listener is the standard library's threaded HTTP server in a daemon thread:
a scrape never waits behind the API's requests, nor they behind it.

This module imports nothing from Harbour, so any layer may use it.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

TOKEN_ENV: Final = "HARBOUR_METRICS_TOKEN"  # noqa: S105 (a variable's name)
LISTEN_ENV: Final = "HARBOUR_METRICS_LISTEN"
MIN_TOKEN: Final = 16

log = logging.getLogger("harbour.metrics")


@dataclass(frozen=True)
class Endpoint:
    """Where to serve metrics, and the token a scrape must bring (None: loopback only, no token)."""

    host: str
    port: int
    token: str | None = None

    def __repr__(self) -> str:  # never the token
        return f"Endpoint({self.host!r}, {self.port}, token={'set' if self.token else 'none'})"


def is_loopback(host: str) -> bool:
    """Whether a host to listen on is the loopback interface (only this machine reaches it).

    A name other than ``localhost`` is never resolved, so it counts as reachable from
    elsewhere. The API's TLS warning asks the same question (:mod:`harbour.api.server`).
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint(listen: str, environ: Mapping[str, str]) -> Endpoint:
    """``HOST:PORT`` and the token in ``environ``, checked; ValueError says what is wrong and how to fix it."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"--metrics-listen takes HOST:PORT, got {listen!r}")
    token = environ.get(TOKEN_ENV) or None
    if token is not None and (len(token) < MIN_TOKEN or not token.isprintable() or " " in token):
        raise ValueError(f"{TOKEN_ENV} must be at least {MIN_TOKEN} printable characters without spaces")
    if token is None and not is_loopback(host):
        raise ValueError(
            f"metrics on {host}, beyond the loopback interface, need a bearer token: set {TOKEN_ENV} "
            "(Prometheus sends it with authorization.credentials_file), or listen on 127.0.0.1"
        )
    return Endpoint(host, int(port), token)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != "/metrics":
            self._plain(404, b"not found\n")
            return
        token = self.server.endpoint.token
        if token is not None:
            given = self.headers.get_all("Authorization") or []
            expected = f"Bearer {token}".encode()
            if len(given) != 1 or not hmac.compare_digest(given[0].encode(), expected):
                self._plain(401, b"unauthorized\n", [("WWW-Authenticate", 'Bearer realm="metrics"')])
                return
        try:
            body = generate_latest(self.server.registry)
        except Exception:
            log.exception("collecting the metrics failed")
            self._plain(500, b"collecting the metrics failed; see the service's log\n")
            return
        self._plain(200, body, content_type=CONTENT_TYPE_LATEST)

    def _refuse(self) -> None:
        self._plain(405, b"use GET\n", [("Allow", "GET")])

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _refuse

    def _plain(
        self, status: int, body: bytes, headers: Sequence[tuple[str, str]] = (), *, content_type: str = "text/plain"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, endpoint: Endpoint, registry: CollectorRegistry) -> None:
        self.endpoint = endpoint
        self.registry = registry
        super().__init__((endpoint.host, endpoint.port), _Handler)


class MetricsListener:
    """``registry`` served at ``http://HOST:PORT/metrics`` from a daemon thread until :meth:`stop`."""

    def __init__(self, endpoint: Endpoint, registry: CollectorRegistry) -> None:
        self.endpoint = endpoint
        self._server = _Server(endpoint, registry)  # binds now: a taken port fails here, before serving anything
        self._thread = threading.Thread(target=self._server.serve_forever, name="harbour-metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsListener:
        self._thread.start()
        authenticated = self.endpoint.token is not None
        log.info(
            "metrics on http://%s:%d/metrics", self.endpoint.host, self.port, extra={"authenticated": authenticated}
        )
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
