"""Log lines, request ids and the metrics listener, in-process: formats, context, redaction and every refusal.

The same things as real processes do them are in tests/test_multiprocess.py (the
serve processes' stderr parsed as JSON, their ``/metrics`` and the nodes' scraped);
here each rule is shown on its own, with the inputs chosen to break it.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from harbour.api.middleware import RequestLog
from harbour.cli.main import build
from harbour.custody.metrics import ServiceMetrics
from harbour.node.metrics import NodeMetrics
from harbour.util import logs, scrape

TOKEN = "hbk_0b0c2a8e-1f7e-4c55-9c8c-2f1d7f0e9a11_" + "ab" * 32
SECRET = TOKEN.rsplit("_", 1)[1]


# -- log lines ------------------------------------------------------------------------------------------------------


def _line(record_logger: logging.Logger, stream: io.StringIO) -> dict[str, Any]:
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    parsed: dict[str, Any] = json.loads(lines[0])
    return parsed


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A JSON handler on a fresh stream, removed afterwards."""
    stream = io.StringIO()
    logs.configure("json", "debug", stream=stream)
    try:
        yield logging.getLogger("harbour.test"), stream
    finally:
        logs.unconfigure()


def test_a_record_is_one_json_line_with_time_level_logger_message_context_and_extra(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    with logs.bound(request_id="r-1"), logs.bound(transaction_id="t-1"):
        log.warning("two\nlines %s", "here", extra={"status": 201, "route": "/v1/x"})
    line = _line(log, stream)
    assert line["level"] == "warning" and line["logger"] == "harbour.test"
    assert line["message"] == "two\nlines here"  # one line on the wire: JSON escapes the break
    assert (line["request_id"], line["transaction_id"], line["status"], line["route"]) == ("r-1", "t-1", 201, "/v1/x")
    assert line["time"].endswith("Z") and len(line["time"]) == len("2026-12-08T01:28:04.123Z")


def test_an_exception_is_in_the_same_line_and_the_context_ends_with_its_block(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured
    with logs.bound(request_id="r-2"):
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    log.info("after")
    first, second = (json.loads(x) for x in stream.getvalue().splitlines())
    assert "ValueError: boom" in first["exception"] and first["request_id"] == "r-2"
    assert "request_id" not in second


def test_context_does_not_leak_between_concurrent_tasks_or_threads(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    log, stream = captured

    async def request(n: int) -> None:
        with logs.bound(request_id=f"r-{n}"):
            await asyncio.sleep(0.01 * (3 - n))
            await asyncio.to_thread(log.info, "in a worker thread %d", n)

    async def both() -> None:
        await asyncio.gather(request(1), request(2))

    asyncio.run(both())
    thread = threading.Thread(target=log.info, args=("a thread that bound nothing",))
    thread.start()
    thread.join()
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    by_message = {line["message"]: line.get("request_id") for line in lines}
    assert by_message == {
        "in a worker thread 1": "r-1",
        "in a worker thread 2": "r-2",
        "a thread that bound nothing": None,
    }


@pytest.mark.parametrize(
    "secret_text",
    [
        f"token {TOKEN} refused",
        f"Authorization: Bearer {SECRET}",
        f"postgresql://harbour:{SECRET}@db:5432/harbour",
        f"HARBOUR_NODE_PASSPHRASE passphrase={SECRET}",
        f'{{"token": "{SECRET}"}}',
        f"pin={SECRET}&x=1",
    ],
)
def test_secrets_in_a_message_are_redacted(captured: tuple[logging.Logger, io.StringIO], secret_text: str) -> None:
    log, stream = captured
    log.error("%s", secret_text)
    line = _line(log, stream)
    assert SECRET not in stream.getvalue()
    assert logs.REDACTED in line["message"]


def test_secrets_in_fields_context_and_tracebacks_are_redacted(captured: tuple[logging.Logger, io.StringIO]) -> None:
    log, stream = captured
    with logs.bound(request_id="r-3", auth_token=SECRET):
        try:
            raise RuntimeError(f"cannot use {TOKEN}")
        except RuntimeError:
            log.exception("failed", extra={"passphrase": SECRET, "note": f"Bearer {SECRET}", "count": 3})
    line = _line(log, stream)
    assert SECRET not in stream.getvalue()
    assert line["passphrase"] == logs.REDACTED and line["auth_token"] == logs.REDACTED
    assert line["count"] == 3 and line["request_id"] == "r-3"
    assert "hbk_0b0c2a8e-1f7e-4c55-9c8c-2f1d7f0e9a11_" in line["exception"], "the credential id stays, to find it by"


def test_words_that_merely_name_a_secret_are_left_alone() -> None:
    text = "the token has expired; a passphrase of 12 characters at least; pinned nonce"
    assert logs.redact(text) == text


def test_text_lines_say_the_same_facts_for_a_terminal() -> None:
    stream = io.StringIO()
    record = logging.LogRecord("harbour.api.requests", logging.INFO, __file__, 1, "GET %s", ("/v1/health",), None)
    record.route, record.status, record.context = "/v1/health", 200, {"request_id": "r 4"}
    formatted = logs.TextFormatter().format(record)
    stream.write(formatted)
    assert formatted.endswith(' INFO harbour.api.requests: GET /v1/health request_id="r 4" route=/v1/health status=200')


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_auto_is_text_on_a_terminal_and_json_elsewhere_and_unknown_choices_are_refused() -> None:
    assert logs.resolve("auto", _Terminal()) == "text"
    assert logs.resolve("auto", io.StringIO()) == "json"
    assert logs.resolve("text", io.StringIO()) == "text"
    with pytest.raises(ValueError, match="the log format is one of auto, json, text"):
        logs.resolve("xml", io.StringIO())
    with pytest.raises(ValueError, match="the log level is one of debug, info, warning, error"):
        logs.configure("json", "verbose", stream=io.StringIO())


@pytest.mark.parametrize("command", [["custody", "serve", "--help"], ["node", "run", "--help"]])
def test_the_options_list_their_choices_and_never_a_python_type(command: list[str]) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(build([command[0]]), command, env={"COLUMNS": "200", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    assert re.search(r"--log-format\s+[<\[]?auto\|json\|text[>\]]?\s", result.output), result.output
    assert re.search(r"--log-level\s+[<\[]?debug\|info\|warning\|error[>\]]?\s", result.output), result.output
    assert re.search(r"--metrics-listen\s+HOST:PORT\s", result.output), result.output


def test_unconfigure_puts_logging_back_as_it_was() -> None:
    root, harbour = logging.getLogger(), logging.getLogger("harbour")
    before = (list(root.handlers), root.level, harbour.level)
    logs.configure("text", "debug", stream=io.StringIO())
    assert logs.configured() and harbour.level == logging.DEBUG and len(root.handlers) == len(before[0]) + 1
    logs.unconfigure()
    assert not logs.configured()
    assert (list(root.handlers), root.level, harbour.level) == before


def test_serve_refuses_public_metrics_without_a_token_before_it_opens_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from harbour.custody import config as cfg

    monkeypatch.delenv(scrape.TOKEN_ENV, raising=False)
    cfg.init_home(tmp_path / "home", passphrase=None)
    app = build(["custody"])
    args = ["custody", "serve", "--home", str(tmp_path / "home"), "--metrics-listen", "0.0.0.0:9700"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "error: metrics on 0.0.0.0, beyond the loopback interface, need a bearer token" in result.output
    assert not (tmp_path / "home" / "custody.db").exists(), "refused before the database was opened"
    assert not logs.configured()


def test_a_node_refuses_public_metrics_without_a_token_before_it_opens_its_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from harbour.node.__main__ import main

    monkeypatch.delenv(scrape.TOKEN_ENV, raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["--dir", str(tmp_path / "missing"), "--metrics-listen", "0.0.0.0:9700"])
    assert exited.value.code == 2
    args = ["node", "run", "--dir", str(tmp_path / "missing"), "--metrics-listen", "192.0.2.1:9700"]
    result = CliRunner().invoke(build(["node"]), args)
    assert result.exit_code == 2 and "need a bearer token" in result.output, result.output
    assert not logs.configured()


# -- request ids ------------------------------------------------------------------------------------------------------


def _app(metrics: ServiceMetrics | None) -> Any:
    def show(request: Request) -> PlainTextResponse:
        logging.getLogger("harbour.custody.test").warning("inside %s", request.path_params["item"])
        return PlainTextResponse(logs.context().get("request_id", ""))

    app = Starlette(routes=[Route("/v1/items/{item}", show)])
    return RequestLog(app, metrics)


@pytest.fixture
def client() -> Iterator[tuple[TestClient, ServiceMetrics, io.StringIO]]:
    stream = io.StringIO()
    logs.configure("json", "info", stream=stream)
    metrics = ServiceMetrics()
    try:
        yield TestClient(_app(metrics)), metrics, stream
    finally:
        logs.unconfigure()


def test_a_clients_request_id_is_kept_returned_and_on_every_line_of_its_request(
    client: tuple[TestClient, ServiceMetrics, io.StringIO],
) -> None:
    http, metrics, stream = client
    answer = http.get("/v1/items/abc", headers={"X-Request-ID": "trace/01:ab+c=d.e_f-g"})
    assert answer.status_code == 200
    assert answer.headers["x-request-id"] == answer.text == "trace/01:ab+c=d.e_f-g"
    inside, request = (json.loads(x) for x in stream.getvalue().splitlines())
    assert inside["message"] == "inside abc" and inside["request_id"] == "trace/01:ab+c=d.e_f-g"
    assert (request["logger"], request["route"], request["status"]) == ("harbour.api.requests", "/v1/items/{item}", 200)
    assert request["request_id"] == "trace/01:ab+c=d.e_f-g"
    assert metrics.requests.labels("GET", "/v1/items/{item}", "200")._value.get() == 1


def test_without_a_request_id_each_request_gets_a_new_one(
    client: tuple[TestClient, ServiceMetrics, io.StringIO],
) -> None:
    http, _, _ = client
    first, second = (http.get("/v1/items/x").headers["x-request-id"] for _ in range(2))
    assert first != second and len(first) == len(second) == 36


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ([("X-Request-ID", "x" * 129)], "longer than 128"),
        ([("X-Request-ID", "has space")], "a space"),
        ([("X-Request-ID", 'quote"d')], "a quote"),
        ([("X-Request-ID", "fake\tfield")], "a tab"),
        ([("X-Request-ID", "")], "empty"),
        ([("X-Request-ID", "a"), ("X-Request-ID", "b")], "two headers"),
    ],
)
def test_an_unusable_request_id_is_refused_with_a_problem(
    client: tuple[TestClient, ServiceMetrics, io.StringIO], headers: list[tuple[str, str]], why: str
) -> None:
    http, _, stream = client
    answer = http.get("/v1/items/x", headers=httpx.Headers(headers))
    assert answer.status_code == 400, why
    assert answer.headers["content-type"] == "application/problem+json"
    assert "X-Request-ID" in answer.json()["detail"]
    assert len(answer.headers["x-request-id"]) == 36, "the refusal has an id of its own, to find its line by"
    (line,) = (json.loads(x) for x in stream.getvalue().splitlines())
    assert line["status"] == 400 and line["request_id"] == answer.headers["x-request-id"]
    assert "inside" not in stream.getvalue(), "the route never ran"


def test_unknown_paths_and_invented_methods_do_not_make_new_labels(
    client: tuple[TestClient, ServiceMetrics, io.StringIO],
) -> None:
    http, metrics, _ = client
    for n in range(5):
        assert http.get(f"/nowhere/{n}").status_code == 404
        http.request(f"INVENTED{n}", "/v1/items/x")
    samples = [s for f in metrics.registry.collect() if f.name == "harbour_api_requests" for s in f.samples]
    labels = {(s.labels["method"], s.labels["route"]) for s in samples if s.name.endswith("_total")}
    assert labels == {("GET", "unmatched"), ("other", "/v1/items/{item}")}


# -- the metrics listener ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listen", "environ", "message"),
    [
        ("0.0.0.0:9100", {}, "beyond the loopback interface, need a bearer token"),
        ("10.1.2.3:9100", {}, "set HARBOUR_METRICS_TOKEN"),
        ("127.0.0.1:9100", {"HARBOUR_METRICS_TOKEN": "short"}, "at least 16 printable characters"),
        ("127.0.0.1:9100", {"HARBOUR_METRICS_TOKEN": "sixteen chars and spaces"}, "without spaces"),
        ("127.0.0.1", {}, "--metrics-listen takes HOST:PORT"),
        ("127.0.0.1:99999", {}, "--metrics-listen takes HOST:PORT"),
        (":9100", {}, "--metrics-listen takes HOST:PORT"),
    ],
)
def test_a_metrics_address_that_would_publish_them_or_is_malformed_is_refused(
    listen: str, environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        scrape.endpoint(listen, environ)


def test_metrics_beyond_loopback_are_allowed_with_a_token_which_repr_never_shows() -> None:
    endpoint = scrape.endpoint("[::]:9100", {"HARBOUR_METRICS_TOKEN": "t" * 32})
    assert (endpoint.host, endpoint.port) == ("::", 9100)
    assert "t" * 32 not in repr(endpoint)


@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[str, Counter]]:
    registry = CollectorRegistry()
    counter = Counter("harbour_test_events", "Test events.", registry=registry)
    counter.inc(3)
    served = scrape.MetricsListener(scrape.Endpoint("127.0.0.1", 0, "s3cret-token-of-32-characters-xx"), registry)
    served.start()
    try:
        yield f"http://127.0.0.1:{served.port}", counter
    finally:
        served.stop()


def test_a_scrape_with_the_token_is_parsed_by_prometheus_clients_parser(listener: tuple[str, Counter]) -> None:
    url, _ = listener
    answer = httpx.get(url + "/metrics", headers={"Authorization": "Bearer s3cret-token-of-32-characters-xx"})
    assert answer.status_code == 200
    samples = [s for family in text_string_to_metric_families(answer.text) for s in family.samples]
    assert [s.value for s in samples if s.name == "harbour_test_events_total"] == [3.0]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "Bearer wrong",
        "Bearer s3cret-token-of-32-characters-x",
        "Basic czNjcmV0",
        "bearer s3cret-token-of-32-characters-xx",
    ],
)
def test_a_scrape_without_the_right_token_is_refused(listener: tuple[str, Counter], authorization: str | None) -> None:
    url, _ = listener
    headers = {} if authorization is None else {"Authorization": authorization}
    answer = httpx.get(url + "/metrics", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert "harbour_test_events" not in answer.text


def test_other_paths_and_methods_are_refused(listener: tuple[str, Counter]) -> None:
    url, _ = listener
    token = {"Authorization": "Bearer s3cret-token-of-32-characters-xx"}
    assert httpx.get(url + "/", headers=token).status_code == 404
    assert httpx.get(url + "/metrics/../secrets", headers=token).status_code == 404
    assert httpx.post(url + "/metrics", headers=token).status_code == 405
    assert httpx.delete(url + "/metrics", headers=token).status_code == 405


# -- what the node counts ----------------------------------------------------------------------------------------------


def _samples(registry: CollectorRegistry, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for f in registry.collect() for s in f.samples if s.name == name}


def test_node_sessions_are_counted_when_they_end_and_timed_from_their_start() -> None:
    held = [3]
    metrics = NodeMetrics(lambda: held[0])
    metrics.recorded(b"s1", "sign", "started")
    metrics.recorded(b"s1", "sign", "progress")
    metrics.recorded(b"s1", "sign", "signed")
    metrics.recorded(b"s2", "keygen", "refused")  # refused before it started: counted, not timed
    metrics.recorded(b"s3", "sign", "started")  # still running: not counted yet
    metrics.refused("approval")
    metrics.refused("stale-session")
    metrics.refused("approval")
    metrics.refused("nonsense; with {braces}")
    registry = metrics.registry
    assert _samples(registry, "harbour_node_sessions_total") == {
        (("kind", "sign"), ("outcome", "signed")): 1.0,
        (("kind", "keygen"), ("outcome", "refused")): 1.0,
    }
    assert _samples(registry, "harbour_node_session_seconds_count") == {(("kind", "sign"), ("outcome", "signed")): 1.0}
    assert _samples(registry, "harbour_node_refusals_total") == {
        (("reason", "approval"),): 2.0,
        (("reason", "stale-session"),): 1.0,
        (("reason", "other"),): 1.0,
    }
    held[0] = 5
    assert _samples(registry, "harbour_node_keys") == {(): 5.0}


def test_the_start_times_kept_for_unfinished_sessions_are_bounded() -> None:
    from harbour.node import metrics as node_metrics

    metrics = NodeMetrics(lambda: 0)
    for n in range(node_metrics.MAX_OPEN + 10):
        metrics.recorded(n.to_bytes(4, "big"), "sign", "started")
    assert len(metrics._open) == node_metrics.MAX_OPEN
    metrics.recorded((0).to_bytes(4, "big"), "sign", "aborted")  # forgotten: counted, not timed
    assert _samples(metrics.registry, "harbour_node_session_seconds_count") == {}
    assert _samples(metrics.registry, "harbour_node_sessions_total") == {
        (("kind", "sign"), ("outcome", "aborted")): 1.0
    }


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://mainnet.example.io/v3/0123456789abcdef", "https://mainnet.example.io/..."),
        ("https://user:pw@rpc.example.net:8545/?apikey=k", "https://rpc.example.net:8545/..."),
        ("http://127.0.0.1:8545", "http://127.0.0.1:8545"),
        ("http://[::1]:8545/", "http://[::1]:8545"),
        ("not a url", "[unparsed url]"),
    ],
)
def test_a_chain_url_is_shown_by_its_origin_only(url: str, shown: str) -> None:
    assert logs.origin(url) == shown
