"""The coordinator's HTTP transport against servers that misbehave.

A node (or something pretending to be one) may answer with an error status,
garbage, an endless body, nothing at all, or close a kept-alive connection: each
must end as a TransportError (the coordinator's ``unreachable``), never a hang or
a crash, and a healthy answer must still come through on a reused connection.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from harbour.node.transport import MAX_RESPONSE, FileTransport, HttpTransport, TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return await reader.readexactly(length)


def ok_response(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), extra) + body


async def serve(handler: Handler, requests: list[bytes], timeout: float = 2.0) -> list[bytes | Exception]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = HttpTransport(f"http://127.0.0.1:{port}")
    answers: list[bytes | Exception] = []
    try:
        for request in requests:
            try:
                answers.append(await transport.call(request, timeout))
            except TransportError as exc:
                answers.append(exc)
    finally:
        await transport.aclose()
        server.close()
        await server.wait_closed()
    return answers


def test_echo_over_one_kept_alive_connection() -> None:
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                body = await _read_request(reader)
            except asyncio.IncompleteReadError:
                return
            writer.write(ok_response(body[::-1]))
            await writer.drain()

    answers = asyncio.run(serve(handler, [b"abc", b"hello", b"x" * 100_000]))
    assert answers == [b"cba", b"olleh", b"x" * 100_000]
    assert connections == 1


def test_a_connection_closed_by_the_server_is_replaced() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = await _read_request(reader)
        writer.write(ok_response(body))
        await writer.drain()
        writer.close()  # without saying "Connection: close"

    assert asyncio.run(serve(handler, [b"one", b"two", b"three"])) == [b"one", b"two", b"three"]


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        (b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n", "HTTP 500"),
        (b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno", "HTTP 404"),
        (b"garbage that is not HTTP\r\n\r\n", "failed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", "failed"),
        (b"", "failed"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (MAX_RESPONSE + 1), "too large"),
    ],
)
def test_bad_answers_are_transport_errors(reply: bytes, needle: str) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        writer.write(reply)
        if reply.endswith(b"\r\n\r\n") and b"200" in reply:
            writer.write(b"\x00" * 65536 * 20)  # a body that keeps coming
            for _ in range(300):
                writer.write(b"\x00" * 65536)
                try:
                    await writer.drain()
                except ConnectionError:
                    return
        await writer.drain()
        writer.close()

    (answer,) = asyncio.run(serve(handler, [b"request"], timeout=10.0))
    assert isinstance(answer, TransportError)
    assert needle in str(answer)


def test_a_silent_server_times_out() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    (answer,) = asyncio.run(serve(handler, [b"request"], timeout=0.3))
    assert isinstance(answer, TransportError) and "no answer within" in str(answer)


def test_nobody_listening_is_a_transport_error() -> None:
    async def go() -> None:
        with pytest.raises(TransportError, match="cannot connect"):
            await HttpTransport("http://127.0.0.1:1").call(b"x", 1.0)

    asyncio.run(go())


def test_only_http_and_https_urls_and_https_only_with_a_client_certificate() -> None:
    for url in ("ftp://127.0.0.1:7001", "127.0.0.1:7001", "http://127.0.0.1"):
        with pytest.raises(ValueError, match=r"http\(s\)://host:port"):
            HttpTransport(url)
    with pytest.raises(TransportError, match="client certificate"):
        HttpTransport("https://127.0.0.1:7001")


def test_file_transport_waits_for_the_response_file(tmp_path: Path) -> None:
    async def go() -> bytes:
        transport = FileTransport(tmp_path, poll=0.01)

        async def operator() -> None:
            while not list(tmp_path.glob("*.request")):
                await asyncio.sleep(0.01)
            request = next(tmp_path.glob("*.request"))
            request.with_suffix(".response").write_bytes(request.read_bytes().upper())

        answer, _ = await asyncio.gather(transport.call(b"round one", 5.0), operator())
        return answer

    assert asyncio.run(go()) == b"ROUND ONE"
    assert not list(tmp_path.iterdir()), "both files are removed once the answer is read"


def test_file_transport_times_out_and_withdraws_the_request(tmp_path: Path) -> None:
    async def go() -> None:
        with pytest.raises(TransportError, match=r"no .*response"):
            await FileTransport(tmp_path, poll=0.01).call(b"x", 0.1)

    asyncio.run(go())
    assert not list(tmp_path.glob("*.request"))
