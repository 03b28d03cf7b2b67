"""Authentication defences over a real socket: forwarded addresses, revoking with a narrow credential, lock-outs
by a credential's public id, the burst audit event's rate, nonces across two servers, and a signed event stream.

Each test stands where an attacker would: it sends what they would send and shows
the refusal, beside the legitimate request that still succeeds. The deployment is
tests/test_api_credentials.py's (signer-node processes, the embedded chain, SQLite),
served by uvicorn on loopback ports.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from custody_env import public_hex
from harbour.api.app import create_app
from harbour.api.authlimit import FailedAuthentications
from harbour.api.routes import events as events_route
from harbour.api.server import BackgroundServer
from harbour.custody import config as cfg
from harbour.custody.errors import Invalid
from test_api_credentials import DEST, World, problem, serving, signed


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving(tmp_path_factory.mktemp("defences")) as made:
        yield made


# -- forwarded addresses -----------------------------------------------------------------------------------------


def test_a_forwarded_address_is_ignored_unless_its_proxy_is_trusted(deployment: World) -> None:
    token = deployment.issue("viewer", allow=["10.0.0.0/8"])
    spoofed = {"X-Forwarded-For": "10.9.9.9"}
    problem(deployment.call("GET", "/v1/me", token), 403, "may not be used from 127.0.0.1")
    problem(deployment.call("GET", "/v1/me", token, headers=spoofed), 403, "may not be used from 127.0.0.1")
    with BackgroundServer(deployment.env.custody, trusted_proxies=["127.0.0.0/8"]) as behind_proxy:
        trusted = httpx.get(behind_proxy.url + "/v1/me", headers={"Authorization": f"Bearer {token}", **spoofed})
        assert trusted.status_code == 200, trusted.text
        direct = httpx.get(behind_proxy.url + "/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert direct.status_code == 403
        # a client's own header, with the proxy's entry for it appended: the proxy's entry is the address
        appended = {"Authorization": f"Bearer {token}", "X-Forwarded-For": "10.9.9.9, 192.0.2.50"}
        problem(httpx.get(behind_proxy.url + "/v1/me", headers=appended), 403, "may not be used from 192.0.2.50")
    with BackgroundServer(deployment.env.custody, trusted_proxies=["192.0.2.1"]) as elsewhere:  # not this peer
        other = httpx.get(elsewhere.url + "/v1/me", headers={"Authorization": f"Bearer {token}", **spoofed})
        problem(other, 403, "may not be used from 127.0.0.1")


def test_trusted_proxies_must_be_addresses_or_networks(deployment: World) -> None:
    for bad in (["proxy.example"], ["10.0.0.0/33"], [7], "127.0.0.1"):
        config = cfg.CustodyConfig(home=deployment.env.home, database="sqlite://", trusted_proxies=bad)  # type: ignore[arg-type]
        with pytest.raises(Invalid, match="trusted_proxies"):
            config.check()
    with pytest.raises(ValueError, match="IP address or CIDR block"):
        BackgroundServer(deployment.env.custody, trusted_proxies=["not-an-address"])


# -- revoking ------------------------------------------------------------------------------------------------------


def test_a_narrow_admin_credential_revokes_only_itself(deployment: World) -> None:
    victim = deployment.issue("initiator")
    for scopes in (["read"], ["initiate"]):
        narrow = deployment.issue("admin", scopes=scopes)
        response = deployment.call("POST", f"/v1/credentials/{victim.split('_')[1]}/revoke", narrow)
        problem(response, 403, "may revoke only itself")
        assert deployment.call("GET", "/v1/me", victim).status_code == 200
        assert deployment.call("POST", f"/v1/credentials/{narrow.split('_')[1]}/revoke", narrow).status_code == 200
    full = deployment.issue("admin")  # a full admin credential still can
    assert deployment.call("POST", f"/v1/credentials/{victim.split('_')[1]}/revoke", full).status_code == 200
    problem(deployment.call("GET", "/v1/me", victim), 401, "unknown or revoked")


# -- lock-outs and the burst audit event -------------------------------------------------------------------------


def test_bad_tokens_naming_a_credential_do_not_lock_its_holder_out(deployment: World) -> None:
    victim = deployment.issue("initiator")
    credential_id = victim.split("_")[1]
    app = create_app(deployment.env.custody)  # the documented default limits
    holder = TestClient(app, client=("203.0.113.7", 5000))
    mine = {"Authorization": f"Bearer {victim}"}
    assert holder.get("/v1/me", headers=mine).status_code == 200
    statuses = []
    for i in range(33):  # an outsider who read the id in a log, from three addresses, until each is refused
        attacker = TestClient(app, client=(f"198.51.100.{i % 3}", 4000))
        statuses.append(attacker.get("/v1/me", headers={"Authorization": f"Bearer hbk_{credential_id}_wrong"}))
    assert [r.status_code for r in statuses[-3:]] == [429] * 3
    assert holder.get("/v1/me", headers=mine).status_code == 200


def _audit(deployment: World, kind: str, subject: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "?limit=200" + (f"&cursor={cursor}" if cursor is not None else "")
        page = deployment.call("GET", "/v1/audit/events" + query, deployment.admin).json()
        out += [e for e in page["items"] if e["kind"] == kind and e["subject"] == subject]
        cursor = page["next_cursor"]
        if cursor is None:
            return out


def test_the_burst_audit_event_is_written_once_per_credential_per_interval(deployment: World) -> None:
    target = deployment.issue("viewer").split("_")[1]
    app = create_app(deployment.env.custody, failed_authentications=FailedAuthentications(burst=2, refill=60))
    bad = {"Authorization": f"Bearer hbk_{target}_{'ab' * 32}"}
    for address in ("198.51.100.20", "198.51.100.21", "198.51.100.22"):  # three bursts, one after another
        client = TestClient(app, client=(address, 4000))
        assert [client.get("/v1/me", headers=bad).status_code for _ in range(3)] == [401, 401, 429]
    bursts = _audit(deployment, "credential.auth-burst", target)
    assert [e["data"]["address"] for e in bursts] == ["198.51.100.20"], bursts


# -- nonces across servers -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def second_server(deployment: World) -> Iterator[BackgroundServer]:
    """A second service on the same database, as a second ``custody serve`` process would be."""
    assert deployment.env.deployment is not None
    second = cfg.open_deployment(deployment.env.config, chain=deployment.env.deployment.chain, start=False)
    try:
        with BackgroundServer(second.custody) as server:
            yield server
    finally:
        second.custody.dispatcher.close()
        second.signer.close()


def test_a_signed_request_replayed_on_another_server_is_refused(
    deployment: World, second_server: BackgroundServer
) -> None:
    key = Ed25519PrivateKey.generate()
    token = deployment.issue("viewer", signing_key=public_hex(key))
    headers = {"Authorization": f"Bearer {token}", **signed(key, "GET", "/v1/me")}
    assert httpx.get(deployment.url + "/v1/me", headers=headers).status_code == 200
    problem(httpx.get(second_server.url + "/v1/me", headers=headers), 401, "nonce was used already")
    fresh = {"Authorization": f"Bearer {token}", **signed(key, "GET", "/v1/me")}
    assert httpx.get(second_server.url + "/v1/me", headers=fresh).status_code == 200
    problem(httpx.get(deployment.url + "/v1/me", headers=fresh), 401, "nonce was used already")


# -- a signed event stream -----------------------------------------------------------------------------------------


def test_a_signed_stream_outlives_its_credential_checks_and_ends_on_revocation(
    deployment: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_route, "REAUTHENTICATE", 0.2)
    key = Ed25519PrivateKey.generate()
    token = deployment.issue("viewer", signing_key=public_hex(key))
    headers = {"Authorization": f"Bearer {token}", "Accept": "text/event-stream", **signed(key, "GET", "/v1/events")}
    with httpx.stream("GET", deployment.url + "/v1/events", headers=headers, timeout=20) as response:
        assert response.status_code == 200
        lines = response.iter_lines()
        assert next(lines) == "retry: 2000"
        # several checks pass (0.25 s polls, a check each 0.2 s), then an event: it arrives, the stream alive
        time.sleep(1.5)
        body = {"vault_id": deployment.vault_id, "asset": "ETH", "to": DEST, "amount": "1000"}
        submitted = deployment.call(
            "POST",
            "/v1/transactions",
            deployment.env.people["initiator"].token,
            json=body,
            headers={"Idempotency-Key": "sse"},
        )
        assert submitted.status_code == 201, submitted.text
        data = next(line for line in lines if line.startswith("data: "))
        assert json.loads(data[6:])["type"].startswith("transaction."), data
        revoke = {
            "Authorization": f"Bearer {token}",
            **signed(key, "POST", f"/v1/credentials/{token.split('_')[1]}/revoke"),
        }
        assert (
            httpx.post(deployment.url + f"/v1/credentials/{token.split('_')[1]}/revoke", headers=revoke).status_code
            == 200
        )
        rest = list(lines)
    assert "event: error" in rest
    assert any("unknown or revoked" in line for line in rest), rest
