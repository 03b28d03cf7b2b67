"""The event stream over a real socket: server-sent events with ``Last-Event-ID`` resume, JSON pages, refusals.

And the webhook routes through the API (status codes and problem documents),
since both are the same events seen from outside. The service runs in-process
without signer nodes (tests/webhook_env.py), served by uvicorn on loopback.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from harbour.api.routes import events as events_route
from harbour.api.server import BackgroundServer
from harbour.cli.main import app
from harbour.custody.config import Deployment
from webhook_env import Org, Receiver, open_service, organisation, wait_for

STREAM = {"Accept": "text/event-stream"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = open_service(tmp_path_factory.mktemp("events") / "custody")
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(scope="module")
def server(service: Deployment) -> Iterator[BackgroundServer]:
    with BackgroundServer(service.custody) as running:
        yield running


@pytest.fixture(scope="module")
def org(service: Deployment) -> Org:
    return organisation(service.custody, "Stream Test Custodian")


@pytest.fixture(scope="module")
def other(service: Deployment) -> Org:
    return organisation(service.custody, "Other Stream Custodian")


def auth(org: Org, who: str = "viewer", **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {org.tokens[who]}", **extra}


def read_events(response: httpx.Response, count: int) -> list[dict[str, Any]]:
    """The next ``count`` events of an open stream, each as its id, type and data."""
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in response.iter_lines():
        if line.startswith("id: "):
            current["id"] = line[4:]
        elif line.startswith("event: "):
            current["event"] = line[7:]
        elif line.startswith("data: "):
            current["data"] = json.loads(line[6:])
        elif line == "" and current:
            out.append(current)
            current = {}
            if len(out) == count:
                return out
    raise AssertionError(f"the stream ended after {len(out)} events")


def in_background(work: Any) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_the_stream_sends_each_event_as_it_is_committed_and_resumes_after_last_event_id(
    server: BackgroundServer, org: Org
) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as client:
        with client.stream("GET", "/v1/events", headers=auth(org, **STREAM)) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            worker = in_background(org.change)
            received = read_events(response, 6)
            worker.join()
        sequences = [int(e["id"]) for e in received]
        assert sequences == sorted(sequences) and len(set(sequences)) == 6
        assert [e["event"] for e in received] == [e["data"]["type"] for e in received]
        assert received[-1]["event"] in ("transaction.confirmed", "approval.approve")
        assert {e["data"]["org_id"] for e in received} == {org.admin().org_id}
        # a client that lost the connection after the second event gets the rest, and only the rest
        resume = {**auth(org, **STREAM), "Last-Event-ID": received[1]["id"]}
        with client.stream("GET", "/v1/events", headers=resume) as response:
            again = read_events(response, 4)
        assert [e["id"] for e in again] == [e["id"] for e in received[2:]]


def test_a_page_of_events_and_the_next_one(server: BackgroundServer, org: Org) -> None:
    org.change()
    with httpx.Client(base_url=server.url, timeout=20) as client:
        first = client.get("/v1/events", params={"limit": 3}, headers=auth(org)).json()
        assert len(first["items"]) == 3
        rest = client.get("/v1/events", params={"after": first["last_sequence"]}, headers=auth(org)).json()
        assert rest["items"][0]["sequence"] > first["items"][-1]["sequence"]
        everything = client.get("/v1/events", params={"limit": 200}, headers=auth(org)).json()["items"]
    assert [e["id"] for e in first["items"] + rest["items"]] == [e["id"] for e in everything]
    assert all(e["data"]["transaction"]["id"] == e["subject"] for e in everything)


def test_an_organisation_sees_only_its_own_events(server: BackgroundServer, org: Org, other: Org) -> None:
    other.change()
    with httpx.Client(base_url=server.url, timeout=20) as client:
        mine = client.get("/v1/events", params={"limit": 200}, headers=auth(org)).json()["items"]
        theirs = client.get("/v1/events", params={"limit": 200}, headers=auth(other)).json()["items"]
    assert theirs and {e["org_id"] for e in theirs} == {other.admin().org_id}
    assert not {e["id"] for e in mine} & {e["id"] for e in theirs}


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"after": "-1"}, {}),
        ({"after": "x"}, {}),
        ({"limit": "0"}, {}),
        ({"limit": "201"}, {}),
        ({}, {"Last-Event-ID": "abc", **STREAM}),
        ({}, {"Last-Event-ID": "1" * 19, **STREAM}),
    ],
    ids=["negative after", "text after", "zero limit", "limit too big", "text last id", "last id too long"],
)
def test_malformed_positions_are_refused(
    server: BackgroundServer, org: Org, params: dict[str, str], headers: dict[str, str]
) -> None:
    response = httpx.get(f"{server.url}/v1/events", params=params, headers=auth(org, **headers), timeout=10)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


def test_the_stream_needs_a_credential(server: BackgroundServer) -> None:
    response = httpx.get(f"{server.url}/v1/events", headers=STREAM, timeout=10)
    assert response.status_code == 401


def test_a_revoked_credential_stops_the_stream(
    server: BackgroundServer, service: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    org = organisation(service.custody, "Revoked Stream Custodian")
    monkeypatch.setattr(events_route, "REAUTHENTICATE", 0.1)
    credential = org.tokens["viewer"].split("_")[1]
    with (
        httpx.Client(base_url=server.url, timeout=20) as client,
        client.stream("GET", "/v1/events", headers=auth(org, **STREAM)) as response,
    ):
        lines = response.iter_lines()
        assert next(lines) == "retry: 2000"
        org.custody.revoke_credential(org.actors["viewer"], credential)
        rest = list(lines)
    assert "event: error" in rest
    assert any(line.startswith("data:") and "unknown or revoked" in line for line in rest), rest


# -- webhooks through the API ------------------------------------------------------------------------------


def test_webhook_routes(server: BackgroundServer, org: Org, other: Org) -> None:
    with httpx.Client(base_url=server.url, timeout=20) as client, Receiver() as receiver:
        created = client.post(
            "/v1/webhooks",
            json={"url": receiver.url, "events": ["transaction.confirmed"], "description": "ops"},
            headers=auth(org, "admin"),
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        org.change()
        wait_for(lambda: len(receiver.received) == 1, what="the delivery")
        path = f"/v1/webhooks/{endpoint['id']}/deliveries"
        wait_for(
            lambda: client.get(path, headers=auth(org, "auditor")).json()["items"][0]["state"] == "delivered",
            what="the delivery log",
        )
        key = client.get("/v1/webhooks/signing-key", headers=auth(org)).json()
        assert key["public_key"] == org.custody.webhooks.keys.public_key(org.admin().org_id).hex()
        disabled = client.post(f"/v1/webhooks/{endpoint['id']}/disable", headers=auth(org, "admin")).json()
        assert disabled["enabled"] is False
        assert client.get(f"/v1/webhooks/{endpoint['id']}", headers=auth(org, "auditor")).json()["enabled"] is False
        # refusals
        assert (
            client.post("/v1/webhooks", json={"url": receiver.url, "events": ["*"]}, headers=auth(org)).status_code
            == 403
        )
        bad = client.post("/v1/webhooks", json={"url": "gopher://x", "events": ["*"]}, headers=auth(org, "admin"))
        assert bad.status_code == 422 and bad.json()["errors"][0]["location"] == "body.url"
        extra = client.post(
            "/v1/webhooks", json={"url": receiver.url, "events": ["*"], "secret": "x"}, headers=auth(org, "admin")
        )
        assert extra.status_code == 422
        foreign = client.get(f"/v1/webhooks/{endpoint['id']}", headers=auth(other, "admin"))
        assert foreign.status_code == 404
        assert client.get(path, headers=auth(org, "admin"), params={"state": "lost"}).status_code == 422


def test_an_endpoint_beyond_the_organisations_cap_is_refused_with_409(
    service: Deployment, server: BackgroundServer, org: Org
) -> None:
    settings, admin = service.custody.settings, auth(org, "admin")
    body = {"url": "http://127.0.0.1:9/hook", "events": ["*"]}
    with httpx.Client(base_url=server.url, timeout=20) as client:
        listed = client.get("/v1/webhooks", headers=admin, params={"limit": 200}).json()["items"]
        settings.webhook_max_endpoints = sum(e["enabled"] for e in listed) + 1
        try:
            created = client.post("/v1/webhooks", json=body, headers=admin)
            assert created.status_code == 201, created.text
            refused = client.post("/v1/webhooks", json=body, headers=admin)
            assert refused.status_code == 409 and "webhook_max_endpoints" in refused.json()["detail"], refused.text
            disabled = client.post(f"/v1/webhooks/{created.json()['id']}/disable", headers=admin)
            assert disabled.status_code == 200
            again = client.post("/v1/webhooks", json=body, headers=admin)
            assert again.status_code == 201
            enabled = client.post(f"/v1/webhooks/{created.json()['id']}/enable", headers=admin)
            assert enabled.status_code == 409
        finally:
            settings.webhook_max_endpoints = 20
        client.post(f"/v1/webhooks/{again.json()['id']}/disable", headers=admin)


def test_the_webhook_commands(server: BackgroundServer, org: Org) -> None:
    runner = CliRunner()
    base = ["--api", server.url, "--json"]

    def run(*args: str, who: str = "admin") -> Any:
        result = runner.invoke(app, [*args, *base, "--token", org.tokens[who]])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    with Receiver() as receiver:
        endpoint = run("webhook", "add", receiver.url, "--event", "transaction.confirmed")
        assert endpoint["events"] == ["transaction.confirmed"]
        org.change()
        wait_for(lambda: len(receiver.received) == 1, what="the delivery")
    assert endpoint["id"] in {e["id"] for e in run("webhook", "list", who="auditor")["items"]}
    wait_for(lambda: run("webhook", "deliveries", endpoint["id"])["items"][0]["state"] == "delivered", what="the log")
    assert run("webhook", "disable", endpoint["id"])["enabled"] is False
    assert run("webhook", "show", endpoint["id"])["enabled"] is False
    assert run("webhook", "key", who="viewer")["algorithm"] == "ed25519"
    refused = runner.invoke(app, ["webhook", "add", "ftp://x/", *base, "--token", org.tokens["admin"]])
    assert refused.exit_code != 0 and "body.url" in refused.output
    bad_id = runner.invoke(app, ["webhook", "show", "nope", *base, "--token", org.tokens["admin"]])
    assert bad_id.exit_code != 0 and "WEBHOOK_ID" in bad_id.output


def test_a_stream_ends_after_its_lifetime_and_the_client_resumes(
    server: BackgroundServer, org: Org, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_route, "LIFETIME", 0.5)
    with httpx.Client(base_url=server.url, timeout=20) as client:
        with client.stream("GET", "/v1/events", headers=auth(org, **STREAM)) as response:
            lines = list(response.iter_lines())  # ends by itself
        assert lines[0] == "retry: 2000"
        org.change()
        head = org.custody.events_head(org.actors["viewer"])
        assert head is not None
        org.change()
        resume = {**auth(org, **STREAM), "Last-Event-ID": str(head)}
        with client.stream("GET", "/v1/events", headers=resume) as response:
            again = read_events(response, 6)
    assert all(int(e["id"]) > head for e in again)
