"""HttpJsonRpc against a real HTTP server on loopback that answers as each test scripts it.

``ScriptedServer`` reads HTTP/1.1 requests off a plain (or TLS) socket, records each
one with the connection that carried it, and sends back whatever the test's handler
returns: a JSON-RPC answer, garbage, an HTTP error, a body over the limit, a truncated
body, a closed connection, or nothing at all. It counts accepted connections and the
connections the client closed, so connection reuse, per-thread connections, retries
and ``close()`` are all checked from the server's side of the wire.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import ipaddress
import json
import os
import resource
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harbour.chains.evm import DEFAULT_PRIORITY_FEE, ChainError, EvmClient
from harbour.chains.jsonrpc import (
    MAX_DEPTH,
    MAX_RESPONSE,
    NOT_IDEMPOTENT,
    RETRIES,
    RETRY_DELAY,
    HttpJsonRpc,
    RpcError,
    RpcTransportError,
)

# -- the scripted server -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One HTTP request as the server read it off the wire."""

    connection: int
    """Which accepted connection carried it (0 for the first one)."""
    verb: str
    target: str
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes

    @property
    def payload(self) -> dict[str, Any]:
        value = json.loads(self.body)
        assert isinstance(value, dict)
        return value

    @property
    def method(self) -> str:
        return str(self.payload["method"])

    @property
    def id(self) -> Any:
        return self.payload["id"]

    @property
    def params(self) -> Any:
        return self.payload["params"]


@dataclass(frozen=True)
class Reply:
    """What the server does with a request.

    It sends ``data``; then ``late``, ``LATE_DELAY`` seconds later, if there is any;
    then closes the connection if ``close``. A ``silent`` reply sends nothing and
    keeps the connection open.
    """

    data: bytes = b""
    close: bool = False
    silent: bool = False
    late: bytes = b""


Handler = Callable[[Request], Reply]
LATE_DELAY = 0.05
HANGUP = Reply(close=True)
"""Close the connection after reading the request, without answering."""
SILENCE = Reply(silent=True)
"""Never answer."""


def response(
    body: bytes,
    status: int = 200,
    *,
    content_type: str = "application/json",
    headers: Sequence[tuple[str, str]] = (),
    length: bool = True,
    close: bool = False,
) -> Reply:
    """An HTTP/1.1 response; without ``length`` the body ends where the connection does."""
    head = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}"]
    head += [f"{name}: {value}" for name, value in headers]
    if length:
        head.append(f"Content-Length: {len(body)}")
    return Reply(("\r\n".join(head) + "\r\n\r\n").encode() + body, close=close)


def chunked(body: bytes, size: int = 700) -> Reply:
    """A response with ``Transfer-Encoding: chunked``, ``size`` bytes a chunk."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    return Reply(head + b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks) + b"0\r\n\r\n")


def dumps(value: object) -> bytes:
    return json.dumps(value).encode()


def result_body(request_id: object, value: object) -> bytes:
    return dumps({"jsonrpc": "2.0", "id": request_id, "result": value})


def result(request: Request, value: object, status: int = 200) -> Reply:
    return response(result_body(request.id, value), status)


def error(request: Request, code: int, message: str, data: object = None, status: int = 200) -> Reply:
    fault: dict[str, object] = {"code": code, "message": message}
    if data is not None:
        fault["data"] = data
    return response(dumps({"jsonrpc": "2.0", "id": request.id, "error": fault}), status)


def echo(request: Request) -> Reply:
    """The request's params, as the result."""
    return result(request, request.params)


def first_then(first: Handler, then: Handler = echo) -> Handler:
    """``first`` for the first request the server reads, ``then`` for every later one."""
    seen = [0]

    def handle(request: Request) -> Reply:
        seen[0] += 1
        return first(request) if seen[0] == 1 else then(request)

    return handle


def by_method(answers: dict[str, Handler]) -> Handler:
    """A node: ``eth_chainId`` is 0x539 (1337) unless ``answers`` says otherwise; unknown methods are errors."""

    def handle(request: Request) -> Reply:
        if request.method in answers:
            return answers[request.method](request)
        if request.method == "eth_chainId":
            return result(request, "0x539")
        return error(request, -32601, f"the method {request.method} does not exist/is not available")

    return handle


class ScriptedServer:
    """An HTTP/1.1 server on 127.0.0.1 (a thread per connection) that answers with ``handler``."""

    def __init__(self, handler: Handler = echo, tls: ssl.SSLContext | None = None) -> None:
        self.handler = handler
        self._tls = tls
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.02)
        self.port: int = self._listener.getsockname()[1]
        self.requests: list[Request] = []
        self.accepted = 0
        """Connections accepted."""
        self.ended = 0
        """Connections over, whichever side closed them."""
        self.client_closed = 0
        """Connections the client closed while the server waited for a request."""
        self.late_sent = 0
        self.errors: list[BaseException] = []
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="scripted-server", daemon=True)
        self._acceptor.start()

    def url(self, path: str = "/", userinfo: str = "") -> str:
        scheme = "https" if self._tls is not None else "http"
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{path}"

    @property
    def methods(self) -> list[str]:
        with self._cond:
            return [request.method for request in self.requests]

    def wait(self, predicate: Callable[[], bool], timeout: float = 2.0) -> None:
        with self._cond:
            assert self._cond.wait_for(predicate, timeout), "the server did not reach the expected state"

    def stop(self) -> None:
        self._stopping.set()
        self._acceptor.join(2)
        self._listener.close()
        with self._cond:
            sockets = list(self._sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(2)
        assert not self._acceptor.is_alive()
        assert not any(thread.is_alive() for thread in self._threads)

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            sock.settimeout(10.0)  # a safety net: every test ends its connections long before
            with self._cond:
                number = self.accepted
                self.accepted += 1
                self._sockets.add(sock)
                self._cond.notify_all()
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        conn = sock
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                with self._cond:
                    self._sockets.discard(sock)
                    self._sockets.add(conn)
                conn.do_handshake()
            buffer = b""
            while True:
                received = self._read_request(conn, buffer, number)
                if received is None:
                    with self._cond:
                        self.client_closed += 1
                    return
                request, buffer = received
                with self._cond:
                    self.requests.append(request)
                    handler = self.handler
                    self._cond.notify_all()
                reply = handler(request)
                if reply.silent:
                    continue
                conn.sendall(reply.data)
                if reply.late:
                    time.sleep(LATE_DELAY)
                    conn.sendall(reply.late)
                    with self._cond:
                        self.late_sent += 1
                        self._cond.notify_all()
                if reply.close:
                    return
        except OSError:
            pass  # the client went away mid-answer, or refused the TLS handshake
        except Exception as exc:
            with self._cond:
                self.errors.append(exc)
        finally:
            conn.close()
            with self._cond:
                self._sockets.discard(conn)
                self.ended += 1
                self._cond.notify_all()

    @staticmethod
    def _read_request(conn: socket.socket, buffer: bytes, number: int) -> tuple[Request, bytes] | None:
        """The next request and the bytes after it; None when the client closes the connection."""
        try:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            verb, target, _ = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            length = int(headers.get("content-length", "0"))
            while len(buffer) < length:
                chunk = conn.recv(65536)
                if not chunk:
                    return None
                buffer += chunk
        except ConnectionResetError:
            return None
        return Request(number, verb, target, headers, buffer[:length]), buffer[length:]


Connect = Callable[..., HttpJsonRpc]


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    scripted = ScriptedServer()
    try:
        yield scripted
    finally:
        scripted.stop()
    assert not scripted.errors, scripted.errors


@pytest.fixture
def connect(server: ScriptedServer) -> Iterator[Connect]:
    """Makes HttpJsonRpc clients (of ``server`` unless given a URL), all closed at the end of the test."""
    made: list[HttpJsonRpc] = []

    def make(url: str | None = None, **options: Any) -> HttpJsonRpc:
        options.setdefault("timeout", 2.0)
        client = HttpJsonRpc(server.url() if url is None else url, **options)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port bound to a socket that does not listen: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


def all_text(exc: BaseException) -> str:
    """The text and repr of an exception and of every exception chained to it."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts += [str(seen), repr(seen)]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(parts)


# -- a normal call -----------------------------------------------------------------------------------


def test_a_call_returns_the_result_of_a_well_formed_request(server: ScriptedServer, connect: Connect) -> None:
    server.handler = lambda request: result(request, "0x10")
    client = connect()
    assert client.call("eth_getBalance", ("0xabc", "latest")) == "0x10"

    [request] = server.requests
    assert request.verb == "POST"
    assert request.target == "/"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["accept"] == "application/json"
    assert request.headers["host"] == f"127.0.0.1:{server.port}"
    assert "authorization" not in request.headers
    assert int(request.headers["content-length"]) == len(request.body)
    payload = request.payload
    assert set(payload) == {"jsonrpc", "id", "method", "params"}
    assert payload["jsonrpc"] == "2.0"
    assert type(payload["id"]) is int
    assert payload["method"] == "eth_getBalance"
    assert payload["params"] == ["0xabc", "latest"]  # a tuple goes out as a JSON array


def test_calls_reuse_one_connection_with_a_fresh_id_each(server: ScriptedServer, connect: Connect) -> None:
    client = connect()
    for n in range(5):
        assert client.call("eth_getBlockByNumber", [hex(n), False]) == [hex(n), False]
    assert server.accepted == 1
    assert {request.connection for request in server.requests} == {0}
    ids = [request.id for request in server.requests]
    assert len(set(ids)) == 5 and all(type(i) is int for i in ids)


def test_null_and_structured_results_are_returned_as_sent(server: ScriptedServer, connect: Connect) -> None:
    client = connect()
    server.handler = lambda request: result(request, None)
    assert client.call("eth_getTransactionReceipt", ["0x" + "00" * 32]) is None
    block = {"number": "0x5", "transactions": [{"hash": "0x01"}], "baseFeePerGas": None}
    server.handler = lambda request: result(request, block)
    assert client.call("eth_getBlockByNumber", ["0x5", True]) == block


def test_each_thread_has_its_own_connection_and_gets_its_own_answers(server: ScriptedServer, connect: Connect) -> None:
    client = connect()
    threads, calls = 8, 10
    barrier = threading.Barrier(threads)
    answers: dict[int, list[object]] = {}
    failures: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            barrier.wait(2)
            answers[thread] = [client.call("eth_call", [thread, n]) for n in range(calls)]
        except BaseException as exc:
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(5)
    assert not failures, failures
    assert answers == {t: [[t, n] for n in range(calls)] for t in range(threads)}

    assert server.accepted == threads
    connection_of: dict[int, set[int]] = {}
    for request in server.requests:
        connection_of.setdefault(request.params[0], set()).add(request.connection)
    assert all(len(connections) == 1 for connections in connection_of.values())
    assert len(set.union(*connection_of.values())) == threads
    ids = [request.id for request in server.requests]
    assert len(set(ids)) == threads * calls  # one id counter shared by the threads


# -- answers that are not JSON-RPC ---------------------------------------------------------------------

MALFORMED: list[tuple[str, Callable[[int], bytes], str]] = [
    ("not JSON", lambda rid: b"<html>it works</html>", "not JSON"),
    ("empty", lambda rid: b"", "not JSON"),
    ("not UTF-8", lambda rid: b"\xff\xfe\xfa\xfb", "not JSON"),
    ("cut JSON", lambda rid: result_body(rid, "0x1")[:-3], "not JSON"),
    ("array", lambda rid: dumps([{"jsonrpc": "2.0", "id": rid, "result": "0x1"}]), "not a JSON-RPC object"),
    ("string", lambda rid: b'"0x1"', "not a JSON-RPC object"),
    ("number", lambda rid: b"1", "not a JSON-RPC object"),
    ("null", lambda rid: b"null", "not a JSON-RPC object"),
    ("no jsonrpc", lambda rid: dumps({"id": rid, "result": "0x1"}), "not JSON-RPC 2.0"),
    ("jsonrpc 1.0", lambda rid: dumps({"jsonrpc": "1.0", "id": rid, "result": "0x1"}), "not JSON-RPC 2.0"),
    ("jsonrpc number", lambda rid: dumps({"jsonrpc": 2.0, "id": rid, "result": "0x1"}), "not JSON-RPC 2.0"),
    ("other id", lambda rid: result_body(rid + 1, "0x1"), r"answered request 2, not request 1"),
    ("id as text", lambda rid: result_body(str(rid), "0x1"), r"answered request '1', not request 1"),
    ("id as float", lambda rid: result_body(float(rid), "0x1"), r"answered request 1\.0, not request 1"),
    ("id true", lambda rid: result_body(True, "0x1"), r"answered request True, not request 1"),
    ("id null", lambda rid: result_body(None, "0x1"), r"answered request None, not request 1"),
    ("no id", lambda rid: dumps({"jsonrpc": "2.0", "result": "0x1"}), r"answered request None"),
    (
        "result and error",
        lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "result": "0x1", "error": {"code": 1, "message": "x"}}),
        "exactly one of result and error",
    ),
    ("neither", lambda rid: dumps({"jsonrpc": "2.0", "id": rid}), "exactly one of result and error"),
    ("error text", lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "error": "boom"}), "not an object"),
    ("error list", lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "error": [-32000, "boom"]}), "not an object"),
    (
        "error without code",
        lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "error": {"message": "boom"}}),
        "without an integer code",
    ),
    (
        "error code as text",
        lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": "-32000", "message": "boom"}}),
        "without an integer code",
    ),
    (
        "error code as float",
        lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32000.0, "message": "boom"}}),
        "without an integer code",
    ),
    (
        "error code true",
        lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": True, "message": "boom"}}),
        "without an integer code",
    ),
    (
        "error without message",
        lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32000}}),
        "and a message",
    ),
    (
        "error message not text",
        lambda rid: dumps({"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": ["boom"]}}),
        "and a message",
    ),
]


@pytest.mark.parametrize(("body", "message"), [case[1:] for case in MALFORMED], ids=[case[0] for case in MALFORMED])
def test_malformed_answers_are_transport_errors(
    server: ScriptedServer, connect: Connect, body: Callable[[int], bytes], message: str
) -> None:
    server.handler = first_then(lambda request: response(body(request.id)))
    client = connect()  # a fresh client: its first request has id 1
    with pytest.raises(RpcTransportError, match=message) as info:
        client.call("eth_blockNumber", [])
    assert not isinstance(info.value, RpcError)
    assert server.methods == ["eth_blockNumber"]  # an answer arrived: nothing is sent again
    assert client.call("eth_blockNumber", []) == []  # and the next call is answered


@pytest.fixture
def high_recursion_limit() -> Iterator[None]:
    """Python's recursion limit as in a process that imported web3 (py_ecc raises it to 100000)."""
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(max(before, 100_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


def in_answer(rid: int, result: bytes) -> bytes:
    return b'{"jsonrpc": "2.0", "id": %d, "result": %s}' % (rid, result)


DEEP = 100_000
NESTED: list[tuple[str, Callable[[int], bytes]]] = [
    ("array", lambda rid: b"[" * DEEP + b"]" * DEEP),
    ("unclosed array", lambda rid: b"[" * DEEP),
    ("objects", lambda rid: b'{"a": ' * DEEP + b"1" + b"}" * DEEP),
    ("in the result", lambda rid: in_answer(rid, b"[" * DEEP + b"]" * DEEP)),
    ("after closing brackets in a string", lambda rid: in_answer(rid, b'["' + b"]" * DEEP + b'", ' + b"[" * DEEP)),
    ("after escaped quotes", lambda rid: in_answer(rid, b'["\\"' + b"]" * DEEP + b'\\"", ' + b"[" * DEEP)),
    ("after an escaped backslash", lambda rid: in_answer(rid, b'["\\\\", ' + b"[" * DEEP)),
]


@pytest.mark.usefixtures("high_recursion_limit")
@pytest.mark.parametrize("body", [case[1] for case in NESTED], ids=[case[0] for case in NESTED])
def test_absurdly_nested_answers_are_refused_before_parsing(
    server: ScriptedServer, connect: Connect, body: Callable[[int], bytes]
) -> None:
    server.handler = lambda request: response(body(request.id))
    with pytest.raises(RpcTransportError, match=f"nests deeper than {MAX_DEPTH} levels"):
        connect().call("eth_blockNumber", [])


@pytest.mark.usefixtures("high_recursion_limit")
def test_a_deep_answer_in_utf16_is_refused(server: ScriptedServer, connect: Connect) -> None:
    server.handler = lambda request: response(("[" * DEEP + "]" * DEEP).encode("utf-16-le"))
    with pytest.raises(RpcTransportError, match="nests deeper than"):
        connect().call("eth_blockNumber", [])


def test_many_brackets_without_deep_nesting_are_parsed(server: ScriptedServer, connect: Connect) -> None:
    client = connect()
    wide = [[n, {"n": [n]}] for n in range(2000)]
    server.handler = lambda request: result(request, wide)
    assert client.call("eth_getLogs", [{}]) == wide
    text = "[{" * DEEP + '"\\' + "}]" * 10
    server.handler = lambda request: result(request, [text, {"a": [text]}])
    assert client.call("eth_call", [{}]) == [text, {"a": [text]}]


def test_nesting_up_to_the_limit_is_parsed(server: ScriptedServer, connect: Connect) -> None:
    client = connect()
    # the answer object is one level, the result the others
    server.handler = lambda request: response(in_answer(request.id, b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1)))
    deepest = client.call("eth_call", [{}])
    for _ in range(MAX_DEPTH - 2):
        assert isinstance(deepest, list) and len(deepest) == 1
        deepest = deepest[0]
    assert deepest == []
    server.handler = lambda request: response(in_answer(request.id, b"[" * MAX_DEPTH + b"]" * MAX_DEPTH))
    with pytest.raises(RpcTransportError, match="nests deeper"):
        client.call("eth_call", [{}])


# -- JSON-RPC errors and HTTP statuses ----------------------------------------------------------------


def test_an_error_answer_is_an_rpc_error_with_the_nodes_code_message_and_data(
    server: ScriptedServer, connect: Connect
) -> None:
    server.handler = lambda request: error(request, -32000, "nonce too low", {"nonce": 7})
    client = connect()
    with pytest.raises(RpcError) as info:
        client.call("eth_sendRawTransaction", ["0x02"])
    assert (info.value.code, info.value.message, info.value.data) == (-32000, "nonce too low", {"nonce": 7})
    assert str(info.value) == "nonce too low"

    server.handler = lambda request: error(request, -32601, "method not found")
    with pytest.raises(RpcError) as info:
        client.call("eth_foo", [])
    assert (info.value.code, info.value.message, info.value.data) == (-32601, "method not found", None)
    assert server.methods == ["eth_sendRawTransaction", "eth_foo"]
    assert server.accepted == 1  # an error answer leaves the connection in use


@pytest.mark.parametrize("status", [429, 500, 503])
def test_an_error_answer_under_an_http_error_status_is_still_an_rpc_error(
    server: ScriptedServer, connect: Connect, status: int
) -> None:
    server.handler = lambda request: error(request, -32005, "rate limit exceeded", status=status)
    with pytest.raises(RpcError) as info:
        connect().call("eth_blockNumber", [])
    assert (info.value.code, info.value.message) == (-32005, "rate limit exceeded")
    assert len(server.requests) == 1


def test_an_http_error_page_is_a_transport_error_naming_the_status(server: ScriptedServer, connect: Connect) -> None:
    page = b"<html><body><h1>502 Bad Gateway</h1></body></html>"
    server.handler = first_then(lambda request: response(page, 502, content_type="text/html"))
    client = connect()
    with pytest.raises(RpcTransportError, match=r"answered HTTP 502: b'<html><body><h1>502 Bad Gateway") as info:
        client.call("eth_blockNumber", [])
    assert client.endpoint in str(info.value)
    assert len(server.requests) == 1
    assert client.call("eth_blockNumber", []) == []


@pytest.mark.parametrize("status", [201, 404, 500])
def test_a_result_under_another_status_than_200_is_refused(
    server: ScriptedServer, connect: Connect, status: int
) -> None:
    server.handler = lambda request: result(request, "0x1", status=status)
    with pytest.raises(RpcTransportError, match=f"answered HTTP {status}"):
        connect().call("eth_blockNumber", [])


# -- the size limit ---------------------------------------------------------------------------------

LIMIT = 1000


def body_of(size: int, request_id: int) -> bytes:
    """A well-formed answer of exactly ``size`` bytes."""
    padding = size - len(result_body(request_id, ""))
    body = result_body(request_id, "x" * padding)
    assert len(body) == size
    return body


def test_a_content_length_over_the_limit_is_refused_without_reading(server: ScriptedServer, connect: Connect) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n"
    server.handler = first_then(lambda request: Reply(head))  # the body never comes
    client = connect(max_response=LIMIT)
    started = time.monotonic()
    with pytest.raises(RpcTransportError, match=r"answer of '1000000000000' bytes, over the limit"):
        client.call("eth_blockNumber", [])
    assert time.monotonic() - started < 1.0  # a read would wait for the 2 s timeout
    assert client.call("eth_blockNumber", []) == []
    assert server.accepted == 2
    assert len(server.requests) == 2


def test_the_default_limit_applies(server: ScriptedServer, connect: Connect) -> None:
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {MAX_RESPONSE + 1}\r\n\r\n".encode()
    server.handler = lambda request: Reply(head)
    with pytest.raises(RpcTransportError, match="over the limit"):
        connect().call("eth_blockNumber", [])


@pytest.mark.parametrize("length", ["-5", "1e3", "12abc", "10, 10"])
def test_a_content_length_that_is_not_a_number_is_refused(
    server: ScriptedServer, connect: Connect, length: str
) -> None:
    server.handler = lambda request: Reply(f"HTTP/1.1 200 OK\r\nContent-Length: {length}\r\n\r\n".encode())
    with pytest.raises(RpcTransportError, match="over the limit"):
        connect(max_response=LIMIT).call("eth_blockNumber", [])


def test_a_body_of_exactly_the_limit_is_read_and_one_byte_more_is_not(server: ScriptedServer, connect: Connect) -> None:
    client = connect(max_response=LIMIT)
    server.handler = lambda request: response(body_of(LIMIT, request.id))
    assert client.call("eth_blockNumber", []) == "x" * (LIMIT - len(result_body(2, "")))
    server.handler = lambda request: response(body_of(LIMIT + 1, request.id))
    with pytest.raises(RpcTransportError, match="over the limit"):
        client.call("eth_blockNumber", [])


def test_a_chunked_body_over_the_limit_is_refused(server: ScriptedServer, connect: Connect) -> None:
    client = connect(max_response=LIMIT)
    server.handler = lambda request: chunked(body_of(LIMIT, request.id))
    client.call("eth_blockNumber", [])
    client.call("eth_blockNumber", [])
    assert server.accepted == 1  # a chunked answer read to its end leaves the connection usable

    server.handler = first_then(lambda request: chunked(body_of(LIMIT + 1, request.id)))
    with pytest.raises(RpcTransportError, match=f"over {LIMIT} bytes"):
        client.call("eth_blockNumber", [])
    server.handler = first_then(lambda request: chunked(body_of(50 * LIMIT, request.id)))
    with pytest.raises(RpcTransportError, match=f"over {LIMIT} bytes"):
        client.call("eth_blockNumber", [])
    assert client.call("eth_blockNumber", []) == []
    assert [request.connection for request in server.requests] == [0, 0, 0, 1, 2]  # a fresh one after each refusal


def test_a_close_delimited_body_over_the_limit_is_refused(server: ScriptedServer, connect: Connect) -> None:
    client = connect(max_response=LIMIT)
    server.handler = lambda request: response(body_of(LIMIT, request.id), length=False, close=True)
    client.call("eth_blockNumber", [])
    server.handler = lambda request: response(body_of(20 * LIMIT, request.id), length=False, close=True)
    with pytest.raises(RpcTransportError, match=f"over {LIMIT} bytes"):
        client.call("eth_blockNumber", [])
    server.handler = echo
    assert client.call("eth_blockNumber", []) == []
    assert server.accepted == 3


# -- connections that end ---------------------------------------------------------------------------


def test_an_idle_connection_the_server_closed_is_replaced(server: ScriptedServer, connect: Connect) -> None:
    server.handler = lambda request: response(result_body(request.id, "0x1"), close=True)  # no Connection: close
    client = connect()
    assert client.call("eth_blockNumber", []) == "0x1"
    server.wait(lambda: server.ended == 1)
    assert client.call("eth_blockNumber", []) == "0x1"
    assert server.accepted == 2
    assert server.methods == ["eth_blockNumber", "eth_blockNumber"]


def test_a_closed_idle_connection_is_seen_before_a_non_idempotent_request_is_sent(
    server: ScriptedServer, connect: Connect
) -> None:
    server.handler = lambda request: response(result_body(request.id, "0x1"), close=True)
    client = connect()
    client.call("eth_blockNumber", [])
    server.wait(lambda: server.ended == 1)
    time.sleep(0.02)  # the end of the connection crossing loopback
    assert client.call("eth_sendTransaction", [{}]) == "0x1"
    assert server.methods == ["eth_blockNumber", "eth_sendTransaction"]
    assert [request.connection for request in server.requests] == [0, 1]


def test_an_answer_with_connection_close_is_not_reused(server: ScriptedServer, connect: Connect) -> None:
    server.handler = lambda request: response(result_body(request.id, "0x1"), headers=[("Connection", "close")])
    client = connect()
    for _ in range(3):
        assert client.call("eth_sendTransaction", [{}]) == "0x1"
    assert server.accepted == 3
    server.wait(lambda: server.client_closed == 3)


def test_a_stray_answer_on_an_idle_connection_is_not_taken_for_the_next_one(
    server: ScriptedServer, connect: Connect
) -> None:
    def answer_twice(request: Request) -> Reply:
        stray = response(result_body(request.id + 1, "stray")).data
        return Reply(response(result_body(request.id, "first")).data, late=stray)

    server.handler = first_then(answer_twice, lambda request: result(request, "second"))
    client = connect()
    assert client.call("eth_blockNumber", []) == "first"
    server.wait(lambda: server.late_sent == 1)
    time.sleep(0.02)
    assert client.call("eth_blockNumber", []) == "second"
    assert server.accepted == 2


def test_an_idempotent_request_is_sent_again_when_the_connection_drops(
    server: ScriptedServer, connect: Connect
) -> None:
    server.handler = first_then(lambda request: HANGUP)
    assert connect().call("eth_blockNumber", []) == []
    assert server.methods == ["eth_blockNumber", "eth_blockNumber"]
    assert server.accepted == 2


@pytest.mark.parametrize("retries", [0, 1, RETRIES])
def test_an_idempotent_request_fails_after_all_its_attempts(
    server: ScriptedServer, connect: Connect, retries: int
) -> None:
    server.handler = lambda request: HANGUP
    client = connect(retries=retries)
    with pytest.raises(RpcTransportError, match="could not be reached") as info:
        client.call("eth_blockNumber", [])
    assert info.value.__cause__ is not None
    assert server.methods == ["eth_blockNumber"] * (1 + retries)
    assert server.accepted == 1 + retries


def test_eth_send_raw_transaction_is_sent_again_when_the_connection_drops(
    server: ScriptedServer, connect: Connect
) -> None:
    server.handler = first_then(lambda request: HANGUP, lambda request: result(request, "0x" + "ab" * 32))
    assert connect().call("eth_sendRawTransaction", ["0x02"]) == "0x" + "ab" * 32
    assert server.methods == ["eth_sendRawTransaction"] * 2


@pytest.mark.parametrize("method", sorted(NOT_IDEMPOTENT))
def test_a_non_idempotent_request_that_reached_the_server_is_never_sent_again(
    server: ScriptedServer, connect: Connect, method: str
) -> None:
    server.handler = first_then(lambda request: HANGUP)
    with pytest.raises(RpcTransportError, match="could not be reached"):
        connect().call(method, [{}])
    assert server.methods == [method]


def test_a_truncated_answer_is_not_taken_as_complete(server: ScriptedServer, connect: Connect) -> None:
    def truncated(request: Request) -> Reply:
        body = result_body(request.id, "0x1")  # complete JSON, but 20 bytes short of what the header says
        return Reply(f"HTTP/1.1 200 OK\r\nContent-Length: {len(body) + 20}\r\n\r\n".encode() + body, close=True)

    server.handler = first_then(truncated, lambda request: result(request, "0x2"))
    assert connect().call("eth_blockNumber", []) == "0x2"
    assert server.methods == ["eth_blockNumber"] * 2

    server.handler = truncated
    with pytest.raises(RpcTransportError, match="could not be reached"):
        connect().call("eth_sendTransaction", [{}])
    assert server.methods[2:] == ["eth_sendTransaction"]


def test_a_truncated_chunked_answer_is_retried_for_an_idempotent_request(
    server: ScriptedServer, connect: Connect
) -> None:
    def cut(request: Request) -> Reply:
        return Reply(chunked(result_body(request.id, "0x1"), size=10).data[:-20], close=True)

    server.handler = first_then(cut, lambda request: result(request, "0x2"))
    assert connect().call("eth_blockNumber", []) == "0x2"
    assert server.methods == ["eth_blockNumber"] * 2


def test_a_refused_connection_names_the_endpoint(connect: Connect, refused_port: int) -> None:
    client = connect(f"http://127.0.0.1:{refused_port}/rpc")
    with pytest.raises(RpcTransportError, match="could not be reached") as info:
        client.call("eth_blockNumber", [])
    assert f"http://127.0.0.1:{refused_port} could not" in str(info.value)
    assert "/rpc" not in str(info.value)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


def test_a_request_that_was_never_sent_is_retried_even_if_not_idempotent(connect: Connect, refused_port: int) -> None:
    client = connect(f"http://127.0.0.1:{refused_port}/")
    started = time.monotonic()
    with pytest.raises(RpcTransportError, match="could not be reached"):
        client.call("eth_sendTransaction", [{}])
    # the pauses between attempts add up to this only if every retry was made
    assert time.monotonic() - started >= RETRY_DELAY * sum(range(RETRIES)) * 0.9


@pytest.mark.parametrize("method", ["eth_blockNumber", "eth_sendTransaction"])
def test_a_server_that_never_answers_times_out_once(server: ScriptedServer, connect: Connect, method: str) -> None:
    server.handler = first_then(lambda request: SILENCE)
    client = connect(timeout=0.3)
    started = time.monotonic()
    with pytest.raises(RpcTransportError, match=r"did not answer within 0\.3 s") as info:
        client.call(method, [])
    elapsed = time.monotonic() - started
    assert 0.28 <= elapsed < 1.0
    assert client.endpoint in str(info.value)
    assert server.methods == [method]  # never sent again: the node may still be working on it
    assert client.call(method, []) == []  # on a fresh connection
    assert server.accepted == 2


def test_close_closes_every_threads_connection_and_a_later_call_opens_a_new_one(
    server: ScriptedServer, connect: Connect
) -> None:
    client = connect()
    client.call("eth_blockNumber", [])
    other = threading.Thread(target=client.call, args=("eth_chainId", []))
    other.start()
    other.join(2)
    assert server.accepted == 2

    client.close()
    server.wait(lambda: server.client_closed == 2)
    assert client.call("eth_blockNumber", []) == []
    assert server.accepted == 3
    client.close()  # the connection opened after the first close() is closed too
    server.wait(lambda: server.client_closed == 3)
    client.close()  # closing twice is harmless


def test_a_connection_with_a_high_descriptor_number_is_checked_and_reused(
    server: ScriptedServer, connect: Connect
) -> None:
    """A service with many open files gets descriptors past select()'s limit of 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 1200
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    fillers: list[int] = []
    try:
        while not fillers or fillers[-1] < 1100:  # every lower number taken: the next socket is above
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        client = connect()
        assert client.call("eth_blockNumber", [1]) == [1]
        assert client.call("eth_blockNumber", [2]) == [2]
        assert server.accepted == 1
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


# -- the URL ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://127.0.0.1/",
        "ws://127.0.0.1:8546/",
        "file:///etc/passwd",
        "127.0.0.1:8545",
        "localhost",
        "",
        "http://",
        "http:///rpc",
        "http://:8545/",
        "https://127.0.0.1:99999/",
        "http://127.0.0.1:port/",
        "http://127.0.0.1:-1/",
    ],
)
def test_a_url_that_is_not_an_http_endpoint_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"JSON-RPC URL|not a port number"):
        HttpJsonRpc(url)


@pytest.mark.parametrize("url", [b"http://127.0.0.1/", None, 8545])
def test_a_url_that_is_not_text_is_refused(url: Any) -> None:
    with pytest.raises(ValueError, match="a JSON-RPC URL is text"):
        HttpJsonRpc(url)


@pytest.mark.parametrize("timeout", [0, -1, 3600.5, float("inf"), float("nan"), "5", None])
def test_a_timeout_out_of_range_is_refused(timeout: Any) -> None:
    with pytest.raises(ValueError, match="timeout"):
        HttpJsonRpc("http://127.0.0.1:8545/", timeout=timeout)


def test_the_endpoint_shows_no_credentials_path_or_query() -> None:
    rpc = HttpJsonRpc("https://alice:s3cret@node.example:8545/v3/api-key?key=1")
    assert rpc.endpoint == "https://node.example:8545"
    assert HttpJsonRpc("http://127.0.0.1").endpoint == "http://127.0.0.1"
    assert HttpJsonRpc("http://[::1]:8545/x").endpoint == "http://[::1]:8545"


def test_url_credentials_become_basic_authorization(server: ScriptedServer, connect: Connect) -> None:
    client = connect(server.url("/path?x=1", userinfo="user:p%40ss@"))
    assert client.endpoint == f"http://127.0.0.1:{server.port}"
    assert client.call("eth_blockNumber", []) == []
    [request] = server.requests
    assert request.headers["authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert request.target == "/path?x=1"

    connect(server.url(userinfo="alice@")).call("eth_blockNumber", [])
    assert server.requests[1].headers["authorization"] == "Basic " + base64.b64encode(b"alice:").decode()


SECRETS = ("p@ss", "p%40ss", base64.b64encode(b"user:p@ss").decode())


@pytest.mark.parametrize(
    "handler",
    [
        lambda request: response(b"garbage"),
        lambda request: response(b"<html>Bad Gateway</html>", 502, content_type="text/html"),
        lambda request: response(result_body(request.id, "x" * 2000)),
        lambda request: chunked(result_body(request.id, "x" * 2000)),
        lambda request: HANGUP,
    ],
    ids=["garbage", "502", "too long", "chunked too long", "hangup"],
)
def test_no_error_message_shows_the_credentials(server: ScriptedServer, connect: Connect, handler: Handler) -> None:
    server.handler = handler
    client = connect(server.url("/path?x=1", userinfo="user:p%40ss@"), max_response=LIMIT)
    with pytest.raises(RpcTransportError) as info:
        client.call("eth_blockNumber", [])
    text = all_text(info.value)
    assert not [secret for secret in SECRETS if secret in text], text


def test_no_timeout_or_refusal_message_shows_the_credentials(
    server: ScriptedServer, connect: Connect, refused_port: int
) -> None:
    server.handler = lambda request: SILENCE
    for url in (server.url(userinfo="user:p%40ss@"), f"http://user:p%40ss@127.0.0.1:{refused_port}/"):
        with pytest.raises(RpcTransportError) as info:
            connect(url, timeout=0.3).call("eth_blockNumber", [])
        text = all_text(info.value)
        assert not [secret for secret in SECRETS if secret in text], text


@pytest.mark.parametrize(
    "url",
    [
        "ftp://user:hunter2secret@127.0.0.1/",
        "http://user:hunter2secret@127.0.0.1:99999/",
        "http://user:hunter2secret@127.0.0.1:port/",
        "http://user:hunter2secret@/rpc",
        "http://user:hun@ter2secret@127.0.0.1:99999/",  # an "@" in the password, not percent-encoded
        "user:hunter2secret@127.0.0.1:8545",  # no scheme
    ],
)
def test_a_refused_url_is_shown_without_its_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        HttpJsonRpc(url)
    assert "ter2secret" not in all_text(info.value)


# -- HTTPS ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path
    pem: str


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    directory = tmp_path_factory.mktemp("tls")
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "cert.pem").write_bytes(pem)
    (directory / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(directory / "cert.pem", directory / "key.pem", pem.decode())


@pytest.fixture
def tls_server(certificate: Certificate) -> Iterator[ScriptedServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)
    scripted = ScriptedServer(tls=context)
    try:
        yield scripted
    finally:
        scripted.stop()
    assert not scripted.errors, scripted.errors


def test_https_calls_reuse_one_connection(tls_server: ScriptedServer, certificate: Certificate) -> None:
    client = HttpJsonRpc(tls_server.url(), timeout=2.0, ssl_context=ssl.create_default_context(cadata=certificate.pem))
    try:
        for n in range(3):
            assert client.call("eth_blockNumber", [n]) == [n]
    finally:
        client.close()
    assert tls_server.accepted == 1


def test_an_untrusted_certificate_is_a_transport_error_and_nothing_is_sent(tls_server: ScriptedServer) -> None:
    client = HttpJsonRpc(tls_server.url(), timeout=2.0)  # the system's CAs do not know this certificate
    try:
        with pytest.raises(RpcTransportError, match="CERTIFICATE_VERIFY_FAILED"):
            client.call("eth_sendTransaction", [{}])
    finally:
        client.close()
    # the request never went out, so even a non-idempotent method is tried again
    tls_server.wait(lambda: tls_server.accepted == 1 + RETRIES)
    assert tls_server.requests == []


# -- through EvmClient ------------------------------------------------------------------------------

ADDRESS = "0x" + "11" * 20


@pytest.fixture
def evm_clients() -> Iterator[list[EvmClient]]:
    made: list[EvmClient] = []
    yield made
    for client in made:
        client.close()


def test_evm_client_reads_through_http_and_reports_the_nodes_error(
    server: ScriptedServer, evm_clients: list[EvmClient]
) -> None:
    server.handler = by_method(
        {
            "eth_blockNumber": lambda request: result(request, "0x10"),
            "eth_getBalance": lambda request: error(request, -32000, "header not found"),
        }
    )
    client = EvmClient.connect(server.url(), timeout=2.0)
    evm_clients.append(client)
    assert client.chain_id == 1337
    assert client.block_number() == 16
    with pytest.raises(ChainError) as info:
        client.balance(ADDRESS)
    assert info.value.node_message == "header not found"
    assert isinstance(info.value.__cause__, RpcError)
    assert server.methods == ["eth_chainId", "eth_blockNumber", "eth_getBalance"]
    assert server.accepted == 1


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (lambda request: response(b"<html>Bad Gateway</html>", 502, content_type="text/html"), "HTTP 502"),
        (lambda request: response(b"{}"), "not JSON-RPC 2.0"),
        (lambda request: HANGUP, "could not be reached"),
    ],
    ids=["502", "malformed", "hangup"],
)
def test_evm_client_turns_a_transport_failure_into_a_chain_error(
    server: ScriptedServer, evm_clients: list[EvmClient], answer: Handler, message: str
) -> None:
    server.handler = by_method({"eth_blockNumber": answer})
    client = EvmClient.connect(server.url(), timeout=2.0)
    evm_clients.append(client)
    with pytest.raises(ChainError, match=message) as info:
        client.block_number()
    assert isinstance(info.value.__cause__, RpcTransportError)


def test_evm_client_on_an_unreachable_node_fails_on_construction(refused_port: int) -> None:
    with pytest.raises(ChainError, match="eth_chainId failed") as info:
        EvmClient.connect(f"http://127.0.0.1:{refused_port}/", timeout=2.0)
    assert isinstance(info.value.__cause__, RpcTransportError)


def test_evm_client_falls_back_on_a_default_tip_only_for_a_node_error(
    server: ScriptedServer, evm_clients: list[EvmClient]
) -> None:
    latest: Handler = lambda request: result(request, {"number": "0x5", "baseFeePerGas": "0x64"})  # noqa: E731
    server.handler = by_method({"eth_getBlockByNumber": latest})  # eth_maxPriorityFeePerGas: "does not exist"
    client = EvmClient.connect(server.url(), timeout=2.0)
    evm_clients.append(client)
    assert client.fees() == (2 * 0x64 + DEFAULT_PRIORITY_FEE, DEFAULT_PRIORITY_FEE)

    server.handler = by_method(
        {
            "eth_getBlockByNumber": latest,
            "eth_maxPriorityFeePerGas": lambda request: response(b"oops", 503, content_type="text/plain"),
        }
    )
    other = EvmClient.connect(server.url(), timeout=2.0)
    evm_clients.append(other)
    with pytest.raises(ChainError, match="HTTP 503"):
        other.fees()


def test_the_web3_provider_carries_answers_and_node_errors_through_web3(
    server: ScriptedServer, refused_port: int
) -> None:
    from web3 import Web3
    from web3.exceptions import Web3RPCError

    from harbour.chains.jsonrpc import Web3Provider

    server.handler = by_method(
        {
            "eth_blockNumber": lambda request: result(request, "0x10"),
            "eth_getBalance": lambda request: error(request, -32000, "header not found"),
        }
    )
    provider = Web3Provider(server.url(), timeout=2.0)
    try:
        w3 = Web3(provider, middleware=[])
        assert w3.eth.block_number == 16
        with pytest.raises(Web3RPCError, match="header not found"):
            w3.eth.get_balance(Web3.to_checksum_address(ADDRESS))
        assert provider.is_connected()
    finally:
        provider.close()
    dead = Web3Provider(f"http://127.0.0.1:{refused_port}/", timeout=0.5)
    assert not dead.is_connected()
    with pytest.raises(RpcTransportError):
        dead.is_connected(show_traceback=True)
