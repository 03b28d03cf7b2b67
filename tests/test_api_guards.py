"""The API's guards on their own, in process: what counts as an outage, folded log lines, the failed-login
buckets, request signatures and nonces, scopes and networks, credential terms in the governance log, redacted
database URLs and the plain-HTTP warning.

Everything here is driven by explicit clocks and inputs; the same guards over a
real deployment are tests/test_api_availability.py and tests/test_api_credentials.py.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import exc as sa
from typer.testing import CliRunner

from harbour.api.authlimit import MAX_KEYS, Buckets, FailedAuthentications, credential_id_of
from harbour.api.availability import dependency_of
from harbour.api.logfilter import MAX_KINDS, RepeatFilter
from harbour.api.server import Tls, plaintext_warning
from harbour.api.terms import check_address, scope_allows
from harbour.chains.evm import ChainError
from harbour.cli.apiclient import MAX_RETRY_AFTER
from harbour.cli.custody import app as custody_cli
from harbour.custody import db
from harbour.custody.errors import Forbidden
from harbour.governance import changes as c
from harbour.governance import credential_terms as ct
from harbour.governance.fields import GovernanceError
from harbour.node.driving import ClusterError
from harbour.util import request_signing as rs

ID = "00000000-0000-4000-8000-000000000001"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- what counts as an outage -------------------------------------------------------------------------------------


def _wrapped(inner: BaseException) -> RuntimeError:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("while doing something") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        (sa.OperationalError("SELECT 1", {}, Exception("connection refused")), "database"),
        (sa.InterfaceError("SELECT 1", {}, Exception("connection closed")), "database"),
        (sa.TimeoutError("QueuePool limit reached"), "database"),
        (ChainError("eth_blockNumber failed: connection refused"), "chain"),
        (ClusterError("unreachable", "node a did not answer"), "nodes"),
        (ClusterError("timeout", "the session timed out"), "nodes"),
        (ClusterError("refused", "the node refused the certificate"), None),
        (sa.IntegrityError("INSERT", {}, Exception("duplicate key")), None),
        (ValueError("a bug"), None),
    ],
)
def test_only_unreachable_dependencies_are_outages(error: BaseException, dependency: str | None) -> None:
    assert dependency_of(error) == dependency
    assert dependency_of(_wrapped(error)) == dependency


# -- folding repeated log lines -----------------------------------------------------------------------------------


def _record(message: str, name: str = "harbour.api", level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_a_repeated_line_passes_once_then_with_its_count() -> None:
    clock = Clock()
    folding = RepeatFilter(60, clock=clock)
    assert folding.filter(_record("chain unavailable in POST /v1/transactions"))
    assert not any(folding.filter(_record("chain unavailable in POST /v1/transactions")) for _ in range(542))
    assert folding.filter(_record("database unavailable in GET /v1/vaults"))  # another kind passes
    assert folding.filter(_record("chain unavailable in POST /v1/transactions", level=logging.WARNING))
    clock.now += 60
    after = _record("chain unavailable in POST /v1/transactions")
    assert folding.filter(after)
    assert after.getMessage().endswith("[repeated 542 times in the last 60 s]")
    again = _record("chain unavailable in POST /v1/transactions")
    assert not folding.filter(again)


def test_the_filter_forgets_the_oldest_kinds_beyond_its_bound() -> None:
    folding = RepeatFilter(60, clock=Clock())
    for i in range(MAX_KINDS + 10):
        assert folding.filter(_record(f"distinct {i}"))
    assert folding.filter(_record("distinct 0"))  # forgotten, so it passes again
    assert not folding.filter(_record(f"distinct {MAX_KINDS + 9}"))


# -- failed authentications --------------------------------------------------------------------------------------


def test_a_credential_id_is_read_from_a_token_and_nothing_else() -> None:
    assert credential_id_of(f"hbk_{ID}_{'ab' * 32}") == ID
    for token in (None, "", "Basic x", "hbk_<script>_x", f"xyz_{ID}_ab", "hbk_" + "a" * 40 + "_x"):
        assert credential_id_of(token) is None


def test_failures_are_limited_per_address_whatever_the_credential() -> None:
    clock = Clock()
    limits = FailedAuthentications(burst=3, refill=10, clock=clock)
    for i in range(3):
        assert limits.retry_after(f"id-{i}", "198.51.100.7") == 0
        limits.failed(f"id-{i}", "198.51.100.7", "unknown or revoked credential")
    assert limits.retry_after("id-new", "198.51.100.7") == 10
    assert limits.retry_after("id-new", "198.51.100.8") == 0  # another address is not held up
    clock.now += 10
    assert limits.retry_after("id-new", "198.51.100.7") == 0  # one failure more per refill interval


def test_failures_naming_a_credential_from_other_addresses_do_not_lock_its_holder_out() -> None:
    clock = Clock()
    limits = FailedAuthentications(burst=3, refill=10, clock=clock)
    for i in range(9):  # an outsider who knows the (public) id, from three addresses
        limits.failed(ID, f"198.51.100.{i % 3}", "unknown or revoked credential")
    assert limits.retry_after(ID, "198.51.100.0") == 10  # each of those addresses is held up for it
    assert limits.retry_after(ID, "203.0.113.7") == 0  # the holder, elsewhere, is not


def test_a_credentials_failures_from_one_address_are_limited_beyond_the_address_bucket() -> None:
    clock = Clock()
    limits = FailedAuthentications(burst=3, refill=10, clock=clock)
    for _ in range(3):
        limits.failed(ID, "203.0.113.1", "the request signature does not verify")
    assert limits.retry_after(ID, "203.0.113.1") == 10
    clock.now += 10  # the address's bucket and the pair's refill alike: one more try each
    assert limits.retry_after(ID, "203.0.113.1") == 0


def test_the_burst_audit_event_is_due_once_per_credential_per_interval() -> None:
    clock = Clock()
    limits = FailedAuthentications(burst=2, refill=6, audit_interval=3600, clock=clock)
    due = 0
    for step in range(3600):  # an hour of one attempt a second from one address, then from a second address
        address = "198.51.100.1" if step < 1800 else "198.51.100.2"
        if limits.retry_after(ID, address) == 0:
            due += limits.failed(ID, address, "unknown or revoked credential")
        clock.now += 1
    assert due == 1
    clock.now += 10
    for _ in range(2):
        due += limits.failed(ID, "198.51.100.3", "unknown or revoked credential")
    assert due == 2  # an hour on, the next burst is recorded again
    assert limits.failed("other-id", "198.51.100.3", "x") is False  # its address is dry, its pair not yet
    assert limits.failed("other-id", "198.51.100.3", "x") is True  # another credential has an interval of its own


def test_the_buckets_are_bounded_and_forget_the_least_recently_used() -> None:
    buckets = Buckets(burst=2, refill=10, clock=Clock())
    buckets.take("first")
    buckets.take("first")
    assert buckets.wait("first") == 10
    for i in range(MAX_KEYS):
        buckets.take(f"address-{i}")
    assert len(buckets._buckets) == MAX_KEYS
    assert buckets.wait("first") == 0  # forgotten: the oldest went first
    assert buckets.wait(f"address-{MAX_KEYS - 1}") == 0 and f"address-{MAX_KEYS - 1}" in buckets._buckets


def test_a_burst_raises_one_alert_and_no_secret_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    limits = FailedAuthentications(burst=2, refill=10, clock=Clock())
    with caplog.at_level(logging.WARNING, logger="harbour.api.auth"):
        for _ in range(4):
            limits.failed(ID, "192.0.2.1", "unknown or revoked credential")
    alerts = [r.getMessage() for r in caplog.records if r.getMessage().startswith("AUTH-BURST")]
    assert alerts == [
        "AUTH-BURST: client address 192.0.2.1 failed to authenticate 2 times in a burst; refusing it with 429 "
        "until it slows down",
        f"AUTH-BURST: credential {ID} from 192.0.2.1 failed to authenticate 2 times in a burst; refusing it with "
        "429 until it slows down",
    ]


# -- request signatures ------------------------------------------------------------------------------------------


def test_the_signed_message_is_exactly_the_documented_one() -> None:
    body = b'{"amount":"1"}'
    digest = hashlib.sha256(body).hexdigest()
    expected = f"harbour-request-v1\nPOST\n/v1/transactions?x=1\n{digest}\n1700000000\n{'n' * 16}".encode()
    assert rs.message("post", "/v1/transactions?x=1", body, "1700000000", "n" * 16) == expected


def test_a_signature_covers_every_field() -> None:
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    headers = rs.sign(key, "POST", "/v1/transactions", b"{}", now=1_700_000_000)
    fields = ("POST", "/v1/transactions", b"{}", headers[rs.TIMESTAMP], headers[rs.NONCE])
    assert rs.verify(public, headers[rs.SIGNATURE], rs.message(*fields))
    for i, changed in enumerate(("GET", "/v1/transactions?a", b"{ }", "1700000001", "x" * 32)):
        altered = list(fields)
        altered[i] = changed
        assert not rs.verify(public, headers[rs.SIGNATURE], rs.message(*altered))  # type: ignore[arg-type]
    assert not rs.verify(public, "zz" * 64, rs.message(*fields))


# -- scopes and networks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "method", "path", "allowed"),
    [
        (("read",), "GET", "/v1/vaults", True),
        (("read",), "POST", "/v1/transactions", False),
        (("read",), "POST", "/v1/transactions/{tx_id}/approve", False),
        (("read",), "POST", "/v1/policy/proposals", False),
        (("read",), "POST", "/v1/credentials/{credential_id}/revoke", True),
        (("initiate",), "POST", "/v1/transactions", True),
        (("initiate",), "POST", "/v1/transactions/{tx_id}/cancel", True),
        (("initiate",), "POST", "/v1/transactions/{tx_id}/approve", False),
        (("initiate",), "POST", "/v1/users", False),
        (("initiate", "read"), "GET", "/v1/audit/events", True),
        (("full",), "POST", "/v1/transactions/{tx_id}/approve", True),
    ],
)
def test_scopes(scopes: tuple[str, ...], method: str, path: str, allowed: bool) -> None:
    assert scope_allows(scopes, method, path) is allowed


def test_networks() -> None:
    terms = ct.CredentialTerms(allow=("10.0.0.0/8", "2001:db8::/32"))
    check_address(terms, "10.1.2.3")
    check_address(terms, "2001:db8::1")
    for outside in ("11.0.0.1", "2001:db9::1", "testclient", None):
        with pytest.raises(Forbidden):
            check_address(terms, outside)
    check_address(ct.NO_TERMS, None)  # no allowlist: anywhere


# -- credential terms in the governance log ------------------------------------------------------------------------


def test_a_credential_without_terms_encodes_as_it_always_did() -> None:
    change = c.IssueCredential(ID, "user", b"\x01" * 32)
    assert c.encode_change(change) == {"op": "credential.issue", "id": ID, "user": "user", "secret_hash": b"\x01" * 32}
    assert c.decode_change(c.encode_change(change)) == change


def test_terms_round_trip_through_the_log() -> None:
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    terms = ct.CredentialTerms(1_900_000_000, ("initiate", "read"), ("10.0.0.0/8", "192.0.2.0/24"), key)
    change = c.IssueCredential(ID, "user", b"\x01" * 32, terms)
    assert c.decode_change(c.encode_change(change)) == change
    assert "scopes initiate, read" in c.describe(change)


@pytest.mark.parametrize(
    "extra",
    [
        {"scopes": ["full"]},
        {"scopes": ["read", "initiate"]},
        {"scopes": ["full", "read"]},
        {"scopes": ["owner"]},
        {"scopes": []},
        {"allow": ["10.0.0.1/8"]},
        {"allow": ["10.0.0.0/8", "10.0.0.0/8"]},
        {"allow": ["192.0.2.0/24", "10.0.0.0/8"]},
        {"allow": []},
        {"expires": 0},
        {"expires": "soon"},
        {"signing_key": b"\x00" * 32},
        {"ttl": 60},
    ],
)
def test_malformed_terms_in_the_log_are_refused(extra: dict[str, object]) -> None:
    encoded = {"op": "credential.issue", "id": ID, "user": "user", "secret_hash": b"\x01" * 32, **extra}
    with pytest.raises(GovernanceError):
        c.decode_change(encoded)


# -- secrets in database URLs, and plain HTTP ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://harbour:s3cr3t-pw@db.internal:5432/custody",
        "postgresql+psycopg://harbour@db.internal/custody?password=s3cr3t-pw&sslmode=require",
        "postgresql+psycopg://db.internal/custody?PassWord=s3cr3t-pw",
        "postgresql+psycopg://h/custody?sslpassword=s3cr3t-pw",
    ],
)
def test_a_database_password_is_never_shown(url: str) -> None:
    shown = db.redacted(url)
    assert "s3cr3t-pw" not in shown
    assert shown.startswith("postgresql+psycopg://")
    with pytest.raises(ValueError) as refused:
        db.make_engine(url.replace("postgresql+psycopg", "postgresql+asyncpg"))
    assert "s3cr3t-pw" not in str(refused.value)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://harbour:s3cr3t-pw@127.0.0.1:1/custody",
        "postgresql+psycopg://harbour@127.0.0.1:1/custody?password=s3cr3t-pw",
    ],
)
def test_custody_init_refuses_a_database_password_and_never_echoes_it(tmp_path: Path, url: str) -> None:
    """custody.json would keep it: the password goes to libpq (~/.pgpass), the URL without it."""
    result = CliRunner().invoke(custody_cli, ["init", "--home", str(tmp_path / "home"), "--database", url])
    assert result.exit_code == 2, result.output
    assert "s3cr3t-pw" not in result.output and "pgpass" in result.output
    assert not (tmp_path / "home").exists()


def test_custody_init_prints_the_database_url_it_keeps(tmp_path: Path) -> None:
    url = "postgresql+psycopg://harbour@127.0.0.1:1/custody"
    result = CliRunner().invoke(custody_cli, ["init", "--home", str(tmp_path / "home"), "--database", url])
    assert result.exit_code == 0, result.output
    assert "database: postgresql+psycopg://harbour@127.0.0.1:1/custody" in result.output


@pytest.mark.parametrize(
    ("host", "tls", "warns"),
    [
        ("127.0.0.1", None, False),
        ("::1", None, False),
        ("localhost", None, False),
        ("0.0.0.0", None, True),
        ("10.1.2.3", None, True),
        ("0.0.0.0", Tls(Path("cert.pem"), Path("key.pem")), False),
    ],
)
def test_plain_http_beyond_loopback_warns(host: str, tls: Tls | None, warns: bool) -> None:
    warning = plaintext_warning(host, tls)
    assert (warning is not None) is warns
    if warning:
        assert "clear text" in warning and "--tls-cert" in warning


def test_serve_wants_both_tls_options(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    result = CliRunner().invoke(
        custody_cli, ["serve", "--home", str(tmp_path), "--tls-cert", str(tmp_path / "cert.pem")]
    )
    assert result.exit_code == 2 and "both --tls-cert and --tls-key" in result.output


def test_serve_warns_before_anything_else_and_never_shows_the_database_password(tmp_path: Path) -> None:
    """Plain HTTP on 0.0.0.0: the warning comes first; the database (nothing listens on port 1) then fails."""
    home = tmp_path / "home"
    url = "postgresql+psycopg://harbour:s3cr3t-pw@127.0.0.1:1/custody?password=s3cr3t-pw"
    plain = "postgresql+psycopg://harbour@127.0.0.1:1/custody"
    result = CliRunner().invoke(
        custody_cli, ["init", "--home", str(home), "--database", plain, "--listen", "0.0.0.0:1"]
    )
    assert result.exit_code == 0, result.output
    # A home from before init refused passwords (or one edited by hand) may still hold one.
    config = json.loads((home / "custody.json").read_text())
    (home / "custody.json").write_text(json.dumps({**config, "database": url}))
    served = CliRunner().invoke(custody_cli, ["serve", "--home", str(home)])
    assert served.exit_code != 0
    assert "WARNING: serving plain HTTP on 0.0.0.0" in served.output
    assert "s3cr3t-pw" not in served.output and "s3cr3t-pw" not in repr(served.exception)


def test_a_retry_after_is_bounded() -> None:
    from harbour.cli.apiclient import _retry_after

    class Answer:
        def __init__(self, value: str) -> None:
            self.headers = {"retry-after": value}

    assert _retry_after(Answer("3"), 1) == 3  # type: ignore[arg-type]
    assert _retry_after(Answer("86400"), 1) == MAX_RETRY_AFTER  # type: ignore[arg-type]
    assert _retry_after(Answer("Wed, 21 Oct 2015 07:28:00 GMT"), 2) == 1.0  # type: ignore[arg-type]


def test_the_documented_signing_example_is_what_the_code_computes() -> None:
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    section = text[text.index("### Request signing") :]
    section = section[: section.index("\n## ")]
    blocks = re.findall(r"```\n(.*?)```", section, flags=re.DOTALL)
    body = blocks[1].splitlines()[1].encode()
    message, headers = (
        blocks[2].rstrip("\n").encode(),
        dict(line.split(": ", 1) for line in blocks[3].strip().splitlines()),
    )
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    assert key.public_key().public_bytes_raw().hex() in section
    assert rs.message("POST", "/v1/transactions", body, headers[rs.TIMESTAMP], headers[rs.NONCE]) == message
    assert key.sign(message).hex() == headers[rs.SIGNATURE]
    assert rs.verify(key.public_key().public_bytes_raw(), headers[rs.SIGNATURE], message)
