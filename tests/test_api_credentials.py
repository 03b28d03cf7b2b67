"""Credentials' terms enforced by the API, over a real socket: scopes, expiry, allowlists, signing, listing.

One deployment (signer-node processes, the embedded chain, SQLite) serves the API
on a loopback port; each test issues the credential it needs and shows one
refusal (and, beside it, that the same request within the terms succeeds, so the
refusal is the term's doing). Failed authentications are counted per address,
so the shared app is given a limit these tests do not reach; the limit itself is
tested at the end on an app of its own.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import logging
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from anvil import free_port
from custody_env import ETH, HOME_PASSPHRASE, CustodyEnv, public_hex
from harbour.api import logfilter
from harbour.api.app import create_app
from harbour.api.authlimit import ALERT_PREFIX, FailedAuthentications
from harbour.api.server import FOLDED_LOGGERS, BackgroundServer, Tls
from harbour.cli.apiclient import ApiError, Client
from harbour.custody import config as cfg
from harbour.governance import changes as c
from harbour.governance.log import SignedEntry
from harbour.governance.state import GovernanceLog
from harbour.util import request_signing as rs

DEST = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"


@dataclass
class World:
    env: CustodyEnv
    url: str
    vault_id: str

    def issue(self, who: str, **terms: Any) -> str:
        """A new credential for ``who`` on ``terms`` (through the API, as the admin)."""
        response = self.call("POST", f"/v1/users/{self.env.user_id(who)}/credentials", self.admin, json=terms)
        assert response.status_code == 201, response.text
        body = response.json()
        if body["transaction"] is not None:
            self.env.govern(body["transaction"])
        token: str = body["token"]
        return token

    @property
    def admin(self) -> str:
        return self.env.people["admin"].token

    def call(self, method: str, path: str, token: str | None, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.request(method, self.url + path, headers=headers, timeout=30, **kwargs)

    def submit(self, token: str, key: str) -> httpx.Response:
        body = {"vault_id": self.vault_id, "asset": "ETH", "to": DEST, "amount": "1000"}
        return self.call("POST", "/v1/transactions", token, json=body, headers={"Idempotency-Key": key})


@contextmanager
def serving(root: Path) -> Iterator[World]:
    """A deployment with an organisation, a funded vault and the API on a loopback port (lenient login limits)."""
    with CustodyEnv(root) as env:
        env.organisation()
        env.set_policy(env.two_approvers_policy())
        vault_id, _ = env.vault(fund=ETH)
        app = create_app(env.custody, failed_authentications=FailedAuthentications(burst=10_000))
        server = BackgroundServer(env.custody)
        server.server.config.app = app  # the same server, with the lenient limit above
        with server:
            yield World(env, server.url, vault_id)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with serving(tmp_path_factory.mktemp("credentials")) as made:
        yield made


def problem(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"], response.json()


# -- scopes ---------------------------------------------------------------------------------------------------


def test_a_read_only_credential_reads_but_cannot_submit(world: World) -> None:
    token = world.issue("initiator", scopes=["read"])
    assert world.call("GET", "/v1/vaults", token).status_code == 200
    problem(world.submit(token, "read-only-1"), 403, "scopes (read) do not allow POST /v1/transactions")
    full = world.env.people["initiator"].token
    assert world.submit(full, "read-only-2").status_code == 201


def test_a_read_only_credential_cannot_approve(world: World) -> None:
    token = world.issue("approver1", scopes=["read"])
    pending = world.submit(world.env.people["initiator"].token, "approve-scope").json()
    body = {"signature": "00" * 64}
    problem(world.call("POST", f"/v1/transactions/{pending['id']}/approve", token, json=body), 403, "scopes (read)")
    assert world.call("GET", f"/v1/transactions/{pending['id']}/approval-request", token).status_code == 200


def test_a_read_only_admin_credential_cannot_propose(world: World) -> None:
    token = world.issue("admin", scopes=["read"])  # an admin's: a governance change, signed by the admins
    assert world.call("GET", "/v1/me", token).json()["roles"] == ["admin"]
    problem(world.call("POST", "/v1/users", token, json={"name": "x", "roles": ["viewer"]}), 403, "scopes (read)")


def test_an_initiate_credential_submits_but_cannot_approve(world: World) -> None:
    token = world.issue("initiator", scopes=["initiate"])
    assert world.submit(token, "initiate-1").status_code == 201
    approver = world.issue("approver2", scopes=["initiate"])
    pending = world.submit(token, "initiate-2").json()
    response = world.call("POST", f"/v1/transactions/{pending['id']}/approve", approver, json={"signature": "0" * 128})
    problem(response, 403, "scopes (initiate)")


def test_a_credential_of_any_scope_can_revoke_itself(world: World) -> None:
    token = world.issue("viewer", scopes=["read"])
    credential_id = token.split("_")[1]
    assert world.call("POST", f"/v1/credentials/{credential_id}/revoke", token).status_code == 200
    problem(world.call("GET", "/v1/me", token), 401, "unknown or revoked")


@pytest.mark.parametrize(
    ("terms", "words"),
    [
        ({"scopes": ["admin"]}, "scopes"),
        ({"scopes": []}, "scopes"),
        ({"scopes": ["full", "read"]}, "list it alone"),
        ({"allow": ["10.0.0.1/8"]}, "host bits"),
        ({"allow": ["not-an-address"]}, "body.allow.0"),
        ({"expires_in": 5}, "expires_in"),
        ({"signing_key": "00" * 32}, "signing_key"),
        ({"ttl": 60}, "unknown field"),
    ],
)
def test_malformed_terms_are_refused(world: World, terms: dict[str, Any], words: str) -> None:
    response = world.call("POST", f"/v1/users/{world.env.user_id('viewer')}/credentials", world.admin, json=terms)
    assert response.status_code == 422, response.text
    assert words in response.text


# -- expiry and revocation --------------------------------------------------------------------------------------


def test_an_expired_credential_is_refused(world: World) -> None:
    token = world.issue("viewer", expires_in=3600)
    assert world.call("GET", "/v1/me", token).status_code == 200
    uow = world.env.custody.uow
    real = uow.clock
    uow.clock = lambda: real() + dt.timedelta(hours=1, seconds=1)  # the service's clock, an hour on
    try:
        problem(world.call("GET", "/v1/me", token), 401, "expired")
    finally:
        uow.clock = real
    assert world.call("GET", "/v1/me", token).status_code == 200


def test_a_revoked_credential_is_refused(world: World) -> None:
    token = world.issue("auditor")
    credential_id = token.split("_")[1]
    assert world.call("POST", f"/v1/credentials/{credential_id}/revoke", world.admin).status_code == 200
    problem(world.call("GET", "/v1/me", token), 401, "unknown or revoked")


# -- allowlists --------------------------------------------------------------------------------------------------


def test_a_credential_is_refused_outside_its_networks(world: World) -> None:
    outside = world.issue("viewer", allow=["10.0.0.0/8", "2001:db8::/32"])
    problem(world.call("GET", "/v1/me", outside), 403, "may not be used from 127.0.0.1")
    inside = world.issue("viewer", allow=["127.0.0.0/8"])
    assert world.call("GET", "/v1/me", inside).status_code == 200


# -- request signing ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signer(world: World) -> tuple[str, Ed25519PrivateKey]:
    key = Ed25519PrivateKey.generate()
    return world.issue("initiator", signing_key=public_hex(key)), key


def signed(key: Ed25519PrivateKey, method: str, target: str, body: bytes = b"", **changes: Any) -> dict[str, str]:
    headers = rs.sign(key, method, target, body, now=changes.pop("now", None))
    headers.update(changes)
    return headers


def test_a_signed_request_is_accepted(world: World, signer: tuple[str, Ed25519PrivateKey]) -> None:
    token, key = signer
    assert world.call("GET", "/v1/me", token, headers=signed(key, "GET", "/v1/me")).status_code == 200
    with Client(world.url, token, signing_key=key) as client:
        assert client.get("/v1/vaults", limit=5)["items"]
        tx = client.post(
            "/v1/transactions",
            {"vault_id": world.vault_id, "asset": "ETH", "to": DEST, "amount": "1000"},
            headers={"Idempotency-Key": "signed-1"},
        )
        assert tx["state"] == "pending_approval"


def test_an_unsigned_request_is_refused(world: World, signer: tuple[str, Ed25519PrivateKey]) -> None:
    problem(world.call("GET", "/v1/me", signer[0]), 401, "this credential signs its requests")


def test_a_request_signed_by_another_key_is_refused(world: World, signer: tuple[str, Ed25519PrivateKey]) -> None:
    headers = signed(Ed25519PrivateKey.generate(), "GET", "/v1/me")
    problem(world.call("GET", "/v1/me", signer[0], headers=headers), 401, "does not verify")


def test_a_signature_for_another_path_or_query_is_refused(world: World, signer: tuple[str, Ed25519PrivateKey]) -> None:
    token, key = signer
    problem(world.call("GET", "/v1/org", token, headers=signed(key, "GET", "/v1/me")), 401, "does not verify")
    headers = signed(key, "GET", "/v1/vaults?limit=5")
    problem(world.call("GET", "/v1/vaults?limit=6", token, headers=headers), 401, "does not verify")


def test_a_swapped_body_is_refused(world: World, signer: tuple[str, Ed25519PrivateKey]) -> None:
    token, key = signer
    sent = b'{"vault_id":"%s","asset":"ETH","to":"%s","amount":"1000"}' % (world.vault_id.encode(), DEST.encode())
    headers = signed(key, "POST", "/v1/transactions", sent.replace(b"1000", b"9999"))
    headers.update({"Idempotency-Key": "swapped", "Content-Type": "application/json"})
    problem(world.call("POST", "/v1/transactions", token, content=sent, headers=headers), 401, "does not verify")


def test_a_stale_timestamp_is_refused(world: World, signer: tuple[str, Ed25519PrivateKey]) -> None:
    token, key = signer
    old = dt.datetime.now(dt.UTC).timestamp() - 301
    problem(world.call("GET", "/v1/me", token, headers=signed(key, "GET", "/v1/me", now=old)), 401, "from the server")


def test_a_replayed_request_is_refused(world: World, signer: tuple[str, Ed25519PrivateKey]) -> None:
    token, key = signer
    headers = signed(key, "GET", "/v1/me")
    assert world.call("GET", "/v1/me", token, headers=headers).status_code == 200
    problem(world.call("GET", "/v1/me", token, headers=headers), 401, "replayed")


def test_malformed_signature_headers_are_refused(world: World, signer: tuple[str, Ed25519PrivateKey]) -> None:
    token, key = signer
    for bad in ({rs.NONCE: "short"}, {rs.TIMESTAMP: "yesterday"}, {rs.SIGNATURE: "zz" * 64}):
        response = world.call("GET", "/v1/me", token, headers={**signed(key, "GET", "/v1/me"), **bad})
        assert response.status_code == 401, (bad, response.text)


def test_the_cli_client_signs_with_the_key_file_it_is_given(
    world: World, signer: tuple[str, Ed25519PrivateKey], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token, key = signer
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / "signing.pem").write_bytes(pem)
    monkeypatch.setenv("HARBOUR_SIGNING_KEY", str(tmp_path / "signing.pem"))
    with Client(world.url, token) as client:
        assert client.get("/v1/me")["name"] == "initiator"
    monkeypatch.delenv("HARBOUR_SIGNING_KEY")
    with Client(world.url, token) as client, pytest.raises(ApiError, match="signs its requests"):
        client.get("/v1/me")


# -- listing ----------------------------------------------------------------------------------------------------


def test_credentials_are_listed_with_their_terms_and_never_a_secret(world: World) -> None:
    key = Ed25519PrivateKey.generate()
    token = world.issue("auditor", scopes=["read"], allow=["127.0.0.0/8"], expires_in=600, signing_key=public_hex(key))
    credential_id, secret = token.split("_")[1:]
    page = world.call("GET", "/v1/credentials?limit=200", world.admin)
    assert page.status_code == 200, page.text
    assert secret not in page.text
    listed = {item["id"]: item for item in page.json()["items"]}
    item = listed[credential_id]
    assert item["scopes"] == ["read"] and item["allow"] == ["127.0.0.0/8"] and item["state"] == "active"
    assert item["signing_key"] == public_hex(key) and item["expires_at"] is not None
    assert set(item) == {"id", "user_id", "state", "created_at", "revoked_at", "expires_at", "scopes", "allow",
                         "signing_key"}  # fmt: skip
    mine = world.call("GET", "/v1/me/credentials", world.env.people["viewer"].token)
    assert mine.status_code == 200 and all(i["user_id"] == world.env.user_id("viewer") for i in mine.json()["items"])


def test_a_user_cannot_list_anothers_credentials(world: World) -> None:
    viewer = world.env.people["viewer"].token
    problem(world.call("GET", f"/v1/users/{world.env.user_id('admin')}/credentials", viewer), 403, "roles")
    problem(world.call("GET", "/v1/credentials", viewer), 403, "roles")


# -- the governance log ----------------------------------------------------------------------------------------


def test_an_admin_credentials_terms_are_in_the_log_and_replay(world: World) -> None:
    """The terms are signed into the log, and the log replays from its bytes as a node replays it."""
    key = Ed25519PrivateKey.generate()
    token = world.issue("admin2", scopes=["read"], signing_key=public_hex(key))
    log = world.env.custody.ledger.log(world.env.actor("admin").org_id)
    replayed = GovernanceLog(SignedEntry.decode(log.genesis.encode()))
    for signed_entry in log.entries[1:]:
        replayed.append(SignedEntry.decode(signed_entry.encode()))
    issued = [
        change
        for signed_entry in replayed.entries
        for change in signed_entry.entry.changes
        if isinstance(change, c.IssueCredential) and change.id == token.split("_")[1]
    ]
    assert [(x.terms.scopes, x.terms.signing_key) for x in issued] == [(("read",), key.public_key().public_bytes_raw())]
    assert replayed.state.head == log.state.head
    assert world.call("GET", "/v1/me", token, headers=signed(key, "GET", "/v1/me")).json()["roles"] == ["admin"]


# -- failed authentications ---------------------------------------------------------------------------------------


def test_failed_authentications_are_logged_limited_and_alerted(world: World, caplog: pytest.LogCaptureFixture) -> None:
    logfilter.install(FOLDED_LOGGERS)  # as `custody serve` does (the module's server did already)
    app = create_app(world.env.custody, failed_authentications=FailedAuthentications(burst=5, refill=60))
    from fastapi.testclient import TestClient

    client = TestClient(app)
    secret = "ab" * 32
    target = world.issue("viewer").split("_")[1]  # a real credential, guessed at with a wrong secret
    bad = {"Authorization": f"Bearer hbk_{target}_{secret}"}
    with caplog.at_level(logging.WARNING, logger="harbour.api.auth"):
        statuses = [client.get("/v1/me", headers=bad).status_code for _ in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    refused = client.get("/v1/me", headers=bad)
    assert refused.headers["retry-after"].isdigit() and int(refused.headers["retry-after"]) >= 1
    assert refused.json()["type"] == "https://harbour.dev/problems/too-many-requests"
    lines = [r.getMessage() for r in caplog.records if r.name == "harbour.api.auth"]
    # five identical failures: one line, the rest folded by the repeat filter the server installs
    failed = f"authentication failed: credential {target} from testclient"
    assert sum(failed in x for x in lines) == 1
    assert sum(x.startswith(ALERT_PREFIX) for x in lines) == 2  # the address's bucket and the credential's
    assert not any(secret in x for x in lines)
    events = world.call("GET", "/v1/audit/events?limit=200", world.admin).json()["items"]
    bursts = [e for e in events if e["kind"] == "credential.auth-burst" and e["subject"] == target]
    assert [e["data"]["address"] for e in bursts] == ["testclient"], bursts
    # a valid credential from the same (limited) address waits too: the limit comes before the look-up
    assert client.get("/v1/me", headers={"Authorization": f"Bearer {world.admin}"}).status_code == 429


# -- TLS ---------------------------------------------------------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A private CA, and a certificate it issued for 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Harbour test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = (directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


def test_the_api_over_tls_verified_against_its_ca(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca, cert, key = _certificates(tmp_path)
    with BackgroundServer(world.env.custody, tls=Tls(cert, key)) as server:
        assert server.url.startswith("https://127.0.0.1:")
        verified = ssl.create_default_context(cafile=str(ca))
        assert httpx.get(server.url + "/v1/health", verify=verified).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(server.url + "/v1/health")  # the system's CAs do not know this one
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https://", "http://") + "/v1/health")  # no plain HTTP on a TLS port
        viewer = world.env.people["viewer"].token
        with Client(server.url, viewer, ca_file=str(ca)) as client:
            assert client.get("/v1/me")["name"] == "viewer"
        monkeypatch.setenv("HARBOUR_CA_FILE", str(ca))
        with Client(server.url, viewer) as client:
            assert client.get("/v1/me")["name"] == "viewer"
        monkeypatch.delenv("HARBOUR_CA_FILE")
        with Client(server.url, viewer) as client, pytest.raises(ApiError, match="cannot reach"):
            client.get("/v1/me")


def _serve(home: Path, *tls: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    out, err = home / f"out{len(tls)}.txt", home / f"err{len(tls)}.txt"
    command = [sys.executable, "-m", "harbour.cli.main", "custody", "serve", "--home", str(home), *tls]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent / "src")}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr, env=env)
    return process, out, err


def _wait_for(url: str, process: subprocess.Popen[bytes], **kwargs: Any) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            return httpx.get(url, timeout=2, **kwargs)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer (exit {process.poll()})")


def test_custody_serve_serves_https_with_its_tls_options(tmp_path: Path) -> None:
    """The real command, as an operator runs it (its warning without TLS: tests/test_api_guards.py)."""
    ca, cert, key = _certificates(tmp_path)
    port = free_port()
    home = tmp_path / "home"
    cfg.init_home(home, passphrase=HOME_PASSPHRASE, listen=f"0.0.0.0:{port}")
    secure, out, err = _serve(home, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        verified = ssl.create_default_context(cafile=str(ca))
        assert _wait_for(f"https://127.0.0.1:{port}/v1/health", secure, verify=verified).status_code == 200
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/v1/health")
    finally:
        secure.terminate()
        secure.wait(30)
    assert "WARNING" not in err.read_text()
    assert f"custody API on https://0.0.0.0:{port}" in out.read_text()


# -- the command line ----------------------------------------------------------------------------------------------


def test_the_cli_issues_a_narrowed_credential_and_lists_credentials(world: World) -> None:
    from typer.testing import CliRunner

    from harbour.cli.main import app as harbour

    runner = CliRunner()
    env = {"HARBOUR_API": world.url, "HARBOUR_TOKEN": world.admin}
    viewer = world.env.user_id("viewer")
    issued = runner.invoke(
        harbour,
        ["user", "credential", viewer, "--scope", "read", "--allow", "127.0.0.0/8", "--expires-in", "600", "--json"],
        env=env,
    )
    assert issued.exit_code == 0, issued.output
    token = json.loads(issued.stdout)["token"]
    assert world.call("GET", "/v1/me", token).status_code == 200
    listed = runner.invoke(harbour, ["user", "credentials", viewer, "--json", "--all"], env=env)
    assert listed.exit_code == 0, listed.output
    mine = [i for i in json.loads(listed.stdout)["items"] if i["id"] == token.split("_")[1]]
    assert mine[0]["scopes"] == ["read"] and mine[0]["allow"] == ["127.0.0.0/8"]
    assert token.split("_")[2] not in listed.stdout
    bad = runner.invoke(harbour, ["user", "credential", viewer, "--scope", "owner"], env=env)
    assert bad.exit_code == 2 and "unknown scope 'owner'" in bad.output
    own = runner.invoke(harbour, ["user", "credentials"], env={**env, "HARBOUR_TOKEN": token})
    assert own.exit_code == 0 and token.split("_")[1] in own.output
