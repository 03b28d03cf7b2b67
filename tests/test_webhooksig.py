"""The webhook signature as a receiver checks it, and the URLs the service refuses to call (no service needed).

Signatures: forged, altered, re-keyed, stale and replayed deliveries each fail
:func:`harbour.custody.webhooksig.verify`, and the receiver shown in docs/api.md
runs as written. URLs: every scheme but http(s), credentials, fragments, bad
ports, non-ASCII names, and hosts that resolve to loopback, private, link-local,
shared, multicast or reserved addresses (IPv4, IPv6, and IPv6 that leads to
IPv4: mapped, translated, compatible, NAT64, 6to4, Teredo) are
refused by :func:`harbour.custody.webhookurl.check`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from harbour.custody import webhookurl
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.webhooksig import (
    ENDPOINT_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    ReplayGuard,
    WebhookKeys,
    WebhookRejected,
    verify,
)

# -- the signature, as a receiver checks it ------------------------------------------------------------------------

KEYS = WebhookKeys(bytes(range(32)))
BODY = b'{"id":"e1","type":"transaction.confirmed"}'


ENDPOINT = "ep-1"


def signed(
    at: int | None = None, body: bytes = BODY, org_id: str = "org-a", endpoint: str = ENDPOINT
) -> dict[str, str]:
    return KEYS.headers(org_id, endpoint, "e1", body, int(time.time()) if at is None else at)


def test_a_genuine_delivery_verifies() -> None:
    assert verify(KEYS.public_key("org-a"), ENDPOINT, signed(), BODY) == "e1"


def test_a_forged_signature_fails() -> None:
    headers = signed()
    headers[SIGNATURE_HEADER] = "ed25519=" + "00" * 64
    with pytest.raises(WebhookRejected, match="does not verify"):
        verify(KEYS.public_key("org-a"), ENDPOINT, headers, BODY)


def test_a_signature_by_another_key_fails() -> None:
    forger = WebhookKeys(bytes(32))
    with pytest.raises(WebhookRejected, match="does not verify"):
        verify(KEYS.public_key("org-a"), ENDPOINT, forger.headers("org-a", ENDPOINT, "e1", BODY), BODY)


def test_another_organisations_delivery_fails_under_this_organisations_key() -> None:
    with pytest.raises(WebhookRejected, match="does not verify"):
        verify(KEYS.public_key("org-a"), ENDPOINT, signed(org_id="org-b"), BODY)


def test_an_altered_body_fails() -> None:
    with pytest.raises(WebhookRejected, match="does not verify"):
        verify(KEYS.public_key("org-a"), ENDPOINT, signed(), BODY.replace(b"confirmed", b"cancelled"))


def test_a_changed_event_id_or_timestamp_fails() -> None:
    key = KEYS.public_key("org-a")
    for name, value in ((ID_HEADER, "e2"), (TIMESTAMP_HEADER, str(int(time.time()) + 1))):
        headers = signed()
        headers[name] = value
        with pytest.raises(WebhookRejected, match="does not verify"):
            verify(key, ENDPOINT, headers, BODY)


def test_a_delivery_passed_on_to_another_endpoint_of_the_organisation_fails() -> None:
    key = KEYS.public_key("org-a")
    headers = signed(endpoint="ep-2")  # genuine, but sent to ep-2, whose receiver forwards it to ep-1's
    with pytest.raises(WebhookRejected, match="sent to another endpoint"):
        verify(key, ENDPOINT, headers, BODY)
    headers[ENDPOINT_HEADER] = ENDPOINT  # relabelled: the signature covers the endpoint
    with pytest.raises(WebhookRejected, match="does not verify"):
        verify(key, ENDPOINT, headers, BODY)


def test_an_old_timestamp_fails_even_when_signed() -> None:
    with pytest.raises(WebhookRejected, match="more than 300 s"):
        verify(KEYS.public_key("org-a"), ENDPOINT, signed(at=int(time.time()) - 301), BODY)


def test_a_replayed_delivery_fails() -> None:
    guard, key, headers = ReplayGuard(), KEYS.public_key("org-a"), signed()
    verify(key, ENDPOINT, headers, BODY, replay=guard)
    with pytest.raises(WebhookRejected, match="delivered already"):
        verify(key, ENDPOINT, headers, BODY, replay=guard)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {ID_HEADER: "e1", TIMESTAMP_HEADER: "1", SIGNATURE_HEADER: "ed25519=00"},
        {ENDPOINT_HEADER: ENDPOINT, ID_HEADER: "e1", TIMESTAMP_HEADER: "1"},
        {ENDPOINT_HEADER: ENDPOINT, ID_HEADER: "e1", TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: "ed25519=00"},
        {ENDPOINT_HEADER: ENDPOINT, ID_HEADER: "e1", TIMESTAMP_HEADER: "1", SIGNATURE_HEADER: "hmac=00"},
        {ENDPOINT_HEADER: ENDPOINT, ID_HEADER: "e1", TIMESTAMP_HEADER: "1", SIGNATURE_HEADER: "ed25519=zz"},
    ],
    ids=["none", "no endpoint", "no signature", "bad timestamp", "other scheme", "not hex"],
)
def test_malformed_headers_fail(headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected):
        verify(KEYS.public_key("org-a"), ENDPOINT, headers, BODY)


# -- refusals ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/hook", "http:// or https://"),
        ("file:///etc/passwd", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("/relative/hook", "http:// or https://"),
        ("https://user:secret@example.com/hook", "credentials"),
        ("https://example.com/hook#part", "fragment"),
        ("https:///hook", "no host"),
        ("https://example.com:99999/hook", "port"),
        ("https://exa mple.com/hook", "spaces"),
        ("https://bücher.example/hook", "ASCII"),
        ("https://example.com/" + "a" * 2048, "1..2048"),
        ("", "1..2048"),
    ],
)
def test_malformed_webhook_urls_are_refused(url: str, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        webhookurl.check(url, allow_private=True, resolver=lambda host, port: ["93.184.215.14"])


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.5.6.7",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::a9fe:a9fe",  # NAT64 to the metadata address
        "64:ff9b::7f00:1",  # NAT64 to loopback
        "64:ff9b:1::a00:1",  # local-use NAT64
        "2002:7f00:1::1",  # 6to4 of loopback
        "2002:a9fe:a9fe::",  # 6to4 of the metadata address
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "2001::1",  # Teredo
        "2001:0:5db8:d70e::1",  # Teredo with a public server
        "::a9fe:a9fe",  # IPv4-compatible
        "::7f00:1",  # IPv4-compatible loopback
        "::5db8:d70e",  # IPv4-compatible, even of a public address (deprecated form)
        "::ffff:0:7f00:1",  # IPv4-translated
        "::ffff:0:a00:1",  # IPv4-translated 10.0.0.1
        "192.0.0.170",
        "255.255.255.255",
    ],
)
def test_urls_resolving_to_private_addresses_are_refused_by_default(address: str) -> None:
    with pytest.raises(Conflict, match="loopback, private or reserved"):
        webhookurl.check("https://hooks.example.com/in", allow_private=False, resolver=lambda h, p: [address])


def test_a_name_with_any_private_address_is_refused() -> None:
    with pytest.raises(Conflict, match=r"10\.0\.0\.5"):
        webhookurl.check(
            "https://hooks.example.com/in", allow_private=False, resolver=lambda h, p: ["93.184.215.14", "10.0.0.5"]
        )


def test_a_public_address_is_allowed_and_the_request_goes_to_it() -> None:
    target = webhookurl.check(
        "https://hooks.example.com:8443/in?x=1", allow_private=False, resolver=lambda h, p: ["93.184.215.14"]
    )
    assert target.request_url() == "https://93.184.215.14:8443/in?x=1"
    assert target.host_header() == "hooks.example.com:8443"


@pytest.mark.parametrize("address", ["64:ff9b::5db8:d70e", "2002:5db8:d70e::1", "::ffff:93.184.215.14"])
def test_an_ipv6_address_embedding_a_public_ipv4_address_is_allowed(address: str) -> None:
    target = webhookurl.check("https://hooks.example.com/in", allow_private=False, resolver=lambda h, p: [address])
    assert target.request_url().startswith("https://[")


def test_localhost_is_refused_by_the_real_resolver() -> None:
    for url in ("http://localhost:8700/v1/health", "http://127.0.0.1/", "http://[::1]/", "http://2130706433/"):
        with pytest.raises(Conflict, match="loopback, private or reserved"):
            webhookurl.check(url, allow_private=False)


def test_an_unresolvable_host_is_refused() -> None:
    with pytest.raises(Conflict, match="does not resolve"):
        webhookurl.check("https://no-such-host.invalid/hook", allow_private=False)


def test_the_receiver_in_the_docs_acts_once_and_refuses_forgeries() -> None:
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    section = text[text.index("## Webhooks") : text.index("## Event stream")]
    code = section[section.index("```python\n") + 10 :]
    code = code[: code.index("```")]
    handled: list[dict[str, Any]] = []
    namespace: dict[str, Any] = {"handle": handled.append}
    exec(compile(code, "docs/api.md", "exec"), namespace)  # the walk-through, as written
    receive = namespace["receive"]
    assert namespace["MY_ENDPOINT"] == "wh_your_endpoint_id"  # the example's placeholder, pinned like the key
    namespace["MY_ENDPOINT"] = ENDPOINT
    key = KEYS.public_key("org-a")
    headers = signed()
    assert receive(key, headers, BODY) == 200
    assert receive(key, headers, BODY) == 200  # the retry of a success: acknowledged, not acted on
    forged = {**headers, SIGNATURE_HEADER: "ed25519=" + "11" * 64}
    assert receive(key, forged, BODY) == 400
    assert receive(key, signed(at=int(time.time()) - 3600), BODY) == 400
    assert receive(key, signed(endpoint="ep-2"), BODY) == 400  # another endpoint's delivery, passed on
    assert handled == [{"id": "e1", "type": "transaction.confirmed"}]
