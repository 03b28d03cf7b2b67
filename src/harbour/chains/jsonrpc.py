"""Ethereum JSON-RPC 2.0 over HTTP(S): one keep-alive connection per thread, every answer checked.

:class:`HttpJsonRpc` is the wire under :meth:`harbour.chains.evm.EvmClient.connect`,
which reaches it through web3 (:class:`Web3Provider`, a web3 provider like any
other). It does one thing: POST a JSON-RPC request and return the ``result`` of
the answer, or raise. A general HTTP client (web3's provider on requests) spends about 0.75 ms
of CPU on each call in session and adapter bookkeeping; the custody pipeline makes
more than a dozen calls per withdrawal, so on a small machine that alone was a
sixth of the service's CPU. ``http.client`` from the standard library, with the
connection kept open, costs about a sixth of that (``bench/custody.py`` shows the
pipeline's figures).

What it guarantees:

- **Answers are checked before they are used**: HTTP 200 (or a JSON-RPC error
  object under another status, which some providers send with 429/5xx), a JSON
  object with ``"jsonrpc": "2.0"``, the ``id`` of this request, and exactly one of
  ``result`` and ``error``; an error object has an integer ``code`` and a text
  ``message``. A body over ``max_response`` bytes is refused without being read, one
  shorter than its ``Content-Length`` is a failed connection, and one nesting deeper
  than ``MAX_DEPTH`` is refused before it is parsed.
- **Two kinds of failure**: :class:`RpcError` when the node answered with a JSON-RPC
  error (the node's own ``code`` and ``message``: "nonce too low", "method not
  found"), :class:`RpcTransportError` for everything else (refused connection,
  timeout, HTTP error, malformed answer). The caller decides what each means.
- **A dropped connection is noticed or retried**: a node may close an idle
  keep-alive connection at any moment. One the node has already closed is seen
  before it is used (it reads as ready: end of file) and replaced. A request whose
  connection fails before any answer arrives is sent again on a fresh one, up to
  ``retries`` times with a short back-off, if sending it twice is harmless: every
  Ethereum read is, and so is ``eth_sendRawTransaction`` (the same signed bytes are
  the same transaction, which the node reports as already known; ``EvmClient.send_raw``
  handles that answer). The methods in ``NOT_IDEMPOTENT`` are retried only if they
  could not be sent at all. A timeout is never retried: the node may still be
  working on the request, and the caller's deadline is spent.
- **Credentials in the URL** (``https://user:secret@host/path``) become an HTTP
  Basic ``Authorization`` header. Error messages name the endpoint by scheme, host
  and port only: providers put API keys in the path or the query.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any, Final, cast
from urllib.parse import unquote, urlsplit

from web3.providers.base import JSONBaseProvider
from web3.types import RPCEndpoint, RPCResponse

from harbour.util.strictjson import nesting_depth

NOT_IDEMPOTENT: Final = frozenset(
    {"eth_sendTransaction", "eth_sign", "personal_sendTransaction", "evm_mine", "anvil_mine"}
)
"""Methods that are not sent twice: a second ``eth_sendTransaction`` would be a second transaction."""
MAX_RESPONSE: Final = 64 * 1024 * 1024
"""Largest answer read (a block with full transactions is a few MB at most)."""
MAX_DEPTH: Final = 512
"""Deepest nesting of arrays and objects parsed (an Ethereum answer nests a few levels).

Importing web3 raises Python's recursion limit to 100000 (py_ecc does it), so json's
C parser would overflow the C stack and kill the process on a deep enough answer
long before a RecursionError; the nesting is measured before parsing instead."""
RETRIES: Final = 3
RETRY_DELAY: Final = 0.05


class RpcError(Exception):
    """The node answered the request with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class RpcTransportError(Exception):
    """No usable answer: the node could not be reached, timed out, or sent something that is not JSON-RPC."""


def _error_object(value: object) -> RpcError:
    if not isinstance(value, dict):
        raise RpcTransportError(f"the node sent an error that is not an object: {value!r:.200}")
    code, message = value.get("code"), value.get("message")
    if type(code) is not int or not isinstance(message, str):
        raise RpcTransportError(f"the node sent an error without an integer code and a message: {value!r:.200}")
    return RpcError(code, message, value.get("data"))


def parse_answer(body: bytes, request_id: int) -> object:
    """The ``result`` of a JSON-RPC 2.0 answer to request ``request_id``; raises RpcError for an error answer."""
    try:
        if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:  # cannot nest deeper, in any encoding
            answer = json.loads(body)
        else:
            text = body.decode("utf-8-sig")  # UTF-8 only: every ASCII byte is the character it looks like
            if nesting_depth(body) > MAX_DEPTH:
                raise RpcTransportError(f"the node's answer nests deeper than {MAX_DEPTH} levels: {body[:100]!r}")
            answer = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: deep nesting under a normal recursion limit
        raise RpcTransportError(f"the node's answer is not JSON: {body[:100]!r}") from exc
    if not isinstance(answer, dict):
        raise RpcTransportError(f"the node's answer is not a JSON-RPC object: {body[:100]!r}")
    if answer.get("jsonrpc") != "2.0":
        raise RpcTransportError(f"the node's answer is not JSON-RPC 2.0: {body[:100]!r}")
    if answer.get("id") != request_id or type(answer.get("id")) is not int:
        raise RpcTransportError(f"the node answered request {answer.get('id')!r:.40}, not request {request_id}")
    if ("result" in answer) == ("error" in answer):
        raise RpcTransportError("the node's answer must carry exactly one of result and error")
    if "error" in answer:
        raise _error_object(answer["error"])
    return answer["result"]


def _readable(sock: socket.socket) -> bool:
    """Whether ``sock`` has something to read now; poll, unlike select, takes descriptors past 1023."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class HttpJsonRpc:
    """JSON-RPC calls to one endpoint; safe to share between threads (each has its own connection)."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        max_response: int = MAX_RESPONSE,
        retries: int = RETRIES,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if not isinstance(url, str):
            raise ValueError(f"a JSON-RPC URL is text, got {type(url).__name__}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"a JSON-RPC URL is http:// or https:// and names a host, got {self._redact(url)!r}")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"the port in {self._redact(url)!r} is not a port number") from exc
        if not (isinstance(timeout, int | float) and 0 < timeout <= 3600):
            raise ValueError(f"timeout must be a number of seconds in (0, 3600], got {timeout!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = port
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = float(timeout)
        self._max_response = max_response
        self._retries = retries
        self._ssl = ssl_context if ssl_context is not None else (ssl.create_default_context() if self._https else None)
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if parts.username is not None:
            userinfo = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(userinfo).decode()
        # what error messages show: never the credentials, nor the path or query (providers put API keys there)
        host = f"[{self._host}]" if ":" in self._host else self._host
        self.endpoint = f"{parts.scheme}://{host}" + ("" if port is None else f":{port}")
        self._ids = itertools.count(1)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    @staticmethod
    def _redact(url: str) -> str:
        at = url.rfind("@")  # the last one: a password may hold an "@" that is not percent-encoded
        if at < 0:
            return url
        scheme = url.find("://")
        start = scheme + 3 if 0 <= scheme < at else 0  # without a scheme, everything up to the "@" may be secret
        return url[:start] + "***" + url[at:]

    # -- connections -------------------------------------------------------------------------

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None and (conn.sock is None or _readable(conn.sock)):
            # closed by close() (its replacement is one close() knows of), or an idle connection
            # with something to read: the node closed it
            self._drop()
            conn = None
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port, timeout=self._timeout, context=self._ssl)
            else:
                conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
            self._local.conn = conn
            with self._lock:
                self._open.add(conn)
        return conn

    def _drop(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            conn.close()
            with self._lock:
                self._open.discard(conn)

    def close(self) -> None:
        """Close every thread's connection (a later call opens a new one)."""
        with self._lock:
            conns, self._open = self._open, set()
        for conn in conns:
            conn.close()

    # -- calls -------------------------------------------------------------------------------

    def call(self, method: str, params: Sequence[object]) -> object:
        """The ``result`` of ``method(params)``; RpcError if the node refused, RpcTransportError if no answer."""
        request_id = next(self._ids)
        body = json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}).encode()
        status, answer = self._post(body, method not in NOT_IDEMPOTENT)
        try:
            result = parse_answer(answer, request_id)
        except RpcTransportError:
            if status != 200:
                raise RpcTransportError(f"{self.endpoint} answered HTTP {status}: {answer[:200]!r}") from None
            raise
        if status != 200:  # only an error object is taken from under another status
            raise RpcTransportError(f"{self.endpoint} answered HTTP {status}: {answer[:200]!r}")
        return result

    def _post(self, body: bytes, idempotent: bool) -> tuple[int, bytes]:
        attempt = 0
        while True:
            sent = [False]
            try:
                return self._exchange(body, sent)
            except TimeoutError as exc:
                self._drop()
                raise RpcTransportError(f"{self.endpoint} did not answer within {self._timeout:g} s") from exc
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                attempt += 1
                if attempt > self._retries or (sent[0] and not idempotent):
                    reason = str(exc) or type(exc).__name__
                    raise RpcTransportError(f"{self.endpoint} could not be reached: {reason}") from exc
                time.sleep(RETRY_DELAY * (attempt - 1))  # the first retry at once: most often a closed keep-alive

    def _exchange(self, body: bytes, sent: list[bool]) -> tuple[int, bytes]:
        conn = self._connection()
        conn.request("POST", self._path, body, self._headers)
        sent[0] = True
        response = conn.getresponse()
        length = response.getheader("Content-Length")
        if length is not None and (not length.isdigit() or int(length) > self._max_response):
            self._drop()
            raise RpcTransportError(f"{self.endpoint} sent an answer of {length[:20]!r} bytes, over the limit")
        data = response.read(self._max_response + 1)
        if response.length:  # read(amt) does not check that all of Content-Length arrived
            raise http.client.IncompleteRead(data, response.length)
        if len(data) > self._max_response:
            self._drop()
            raise RpcTransportError(f"{self.endpoint} sent an answer over {self._max_response} bytes")
        if response.will_close:
            self._drop()
        return response.status, data


class Web3Provider(JSONBaseProvider):
    """:class:`HttpJsonRpc` as a web3 provider: web3's request manager and answer formatting, on this wire.

    A node's JSON-RPC error comes back to web3 as an error answer (web3 raises its
    ``Web3RPCError``); everything else this client refuses (transport, malformed
    answer) is raised as :class:`RpcTransportError`.
    """

    def __init__(self, url: str, *, timeout: float = 30.0) -> None:
        super().__init__()
        self.rpc = HttpJsonRpc(url, timeout=timeout)

    def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        try:
            result = self.rpc.call(method, params)
        except RpcError as exc:
            error: dict[str, Any] = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                error["data"] = exc.data
            return cast(RPCResponse, {"jsonrpc": "2.0", "id": 0, "error": error})
        return cast(RPCResponse, {"jsonrpc": "2.0", "id": 0, "result": result})

    def is_connected(self, show_traceback: bool = False) -> bool:
        try:
            self.rpc.call("eth_chainId", [])
        except (RpcError, RpcTransportError):
            if show_traceback:
                raise
            return False
        return True

    def close(self) -> None:
        self.rpc.close()
