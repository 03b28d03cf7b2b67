"""Dependencies down: the API answers 503 with Retry-After, readiness says which, the log does not flood.

A deployment of its own (its own PostgreSQL server, its own anvil, three
signer-node processes) serves the API on a loopback port. Each test takes one
dependency down for real (PostgreSQL halted, signer nodes killed, anvil
stopped), checks what clients and operators see, and brings it back where it
can; anvil goes last, since a restarted anvil is another chain.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from anvil import Anvil, ensure_anvil
from custody_env import ETH, CustodyEnv
from harbour.api.server import BackgroundServer
from harbour.cli.apiclient import Client
from harbour.custody import readiness
from postgres import PostgresServer

DEST = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@dataclass
class World:
    env: CustodyEnv
    postgres: PostgresServer
    anvil: Anvil
    url: str
    vault_id: str
    answered: float = 0.0
    """When the last ``/v1/ready`` answer arrived (monotonic)."""

    def call(self, method: str, path: str, who: str | None = "initiator", **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if who is not None:
            headers["Authorization"] = f"Bearer {self.env.people[who].token}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def submit(self, key: str) -> httpx.Response:
        body = {"vault_id": self.vault_id, "asset": "ETH", "to": DEST, "amount": "1000"}
        return self.call("POST", "/v1/transactions", json=body, headers={"Idempotency-Key": key})

    def ready(self) -> httpx.Response:
        """``/v1/ready`` once the answer it last gave has expired, so that it tells what changed since."""
        time.sleep(max(0.0, self.answered + readiness.MAX_AGE - time.monotonic()))
        response = self.call("GET", "/v1/ready", None)
        self.answered = time.monotonic()
        return response


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("availability")
    anvil = Anvil(ensure_anvil())
    with PostgresServer() as postgres, anvil as chain_url:
        database = postgres.create_database("availability")
        with CustodyEnv(root, chain_url=chain_url, database=database) as env:
            env.organisation()
            vault_id, _ = env.vault(fund=ETH)
            with BackgroundServer(env.custody) as server:
                yield World(env, postgres, anvil, server.url, vault_id)


def unavailable(response: httpx.Response, dependency: str | None) -> dict[str, Any]:
    """A 503 problem with Retry-After naming ``dependency`` (None: the service's own words name it)."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"].isdigit()
    body: dict[str, Any] = response.json()
    assert body["type"] == "https://harbour.dev/problems/unavailable"
    if dependency is not None:
        assert body["dependency"] == dependency, body
    return body


def test_ready_when_everything_answers(world: World) -> None:
    response = world.ready()
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert {name: check["status"] for name, check in checks.items()} == {"database": "ok", "chain": "ok", "nodes": "ok"}
    assert all(node["answers"] for node in checks["nodes"]["nodes"]) and len(checks["nodes"]["nodes"]) == 3


def test_database_down_is_503_not_ready_and_quiet(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.postgres.halt()
    try:
        with caplog.at_level(logging.INFO, logger="harbour"):
            for i in range(20):
                unavailable(world.call("GET", "/v1/vaults"), "database")
                unavailable(world.submit(f"db-down-{i}"), "database")
            not_ready = world.ready()
            assert world.call("GET", "/v1/health", None).status_code == 200  # liveness: the process answers
        assert not_ready.status_code == 503 and not_ready.headers["retry-after"].isdigit()
        assert not_ready.json()["checks"]["database"]["status"] == "down"
        assert not_ready.json()["checks"]["chain"]["status"] == "ok"
        assert "127.0.0.1" not in not_ready.text  # the error's own words (host, port) stay in the log
        api = [r for r in caplog.records if r.name == "harbour.api"]
        assert not any(r.exc_info for r in api), "an outage is not a traceback"
        pipeline = [r for r in caplog.records if r.name == "harbour.custody.pipeline"]
        assert not any(r.exc_info for r in pipeline), [r.getMessage() for r in pipeline if r.exc_info]
        assert 1 <= len(api) <= 4, [r.getMessage() for r in api]  # 40 failures, folded by the repeat filter
    finally:
        world.postgres.resume()
    assert world.call("GET", "/v1/vaults").status_code == 200
    assert world.ready().status_code == 200


def test_the_cli_client_retries_a_read_through_a_database_restart(world: World) -> None:
    world.postgres.halt()
    answers: list[Any] = []

    def read() -> None:
        with Client(world.url, world.env.people["viewer"].token) as client:
            answers.append(client.get("/v1/vaults"))  # 503, wait Retry-After (5 s), then served

    started = time.monotonic()
    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(1.0)
    # From this thread: the server dies with the thread that started it (PR_SET_PDEATHSIG).
    world.postgres.resume()
    reader.join(30)
    assert answers and answers[0]["items"], answers
    assert time.monotonic() - started >= 4


def test_the_cli_client_does_not_resend_a_post_without_an_idempotency_key(world: World) -> None:
    from harbour.cli.apiclient import ApiError

    world.postgres.halt()
    try:
        started = time.monotonic()
        with Client(world.url, world.env.people["admin"].token) as client, pytest.raises(ApiError, match="503"):
            client.post("/v1/users", {"name": "nobody", "roles": ["viewer"]})
        assert time.monotonic() - started < 4  # sent once: no Retry-After wait
    finally:
        world.postgres.resume()


def test_signer_nodes_down_is_503_and_not_ready(world: World) -> None:
    world.env.nodes[0].kill()
    degraded = world.ready()
    assert degraded.status_code == 200, degraded.text
    assert degraded.json()["checks"]["nodes"]["status"] == "degraded"
    for node in world.env.nodes[1:]:
        node.kill()
    try:
        not_ready = world.ready()
        assert not_ready.status_code == 503
        assert not_ready.json()["checks"]["nodes"]["status"] == "down"
        body = {"name": "cold", "threshold": 2}
        refused = unavailable(world.call("POST", "/v1/vaults", "admin", json=body), None)
        assert "signer nodes" in refused["detail"]
    finally:
        for node in world.env.nodes:
            node.start(wait=False)
        for node in world.env.nodes:
            node.wait_ready()
    assert world.ready().status_code == 200


def test_chain_down_is_503_and_not_ready(world: World) -> None:
    """Last: a stopped anvil is not brought back (a new one would be another chain)."""
    world.anvil.__exit__(None, None, None)
    unavailable(world.submit("chain-down"), "chain")
    not_ready = world.ready()
    assert not_ready.status_code == 503
    assert not_ready.json()["checks"]["chain"]["status"] == "down"
    assert world.call("GET", "/v1/health", None).status_code == 200
