"""Approval certificates: a node's own check that a session was authorised.

Every refusal is its own test with a fixed ``now``, and asserts the reason code
(what a node logs) as well as the message an operator reads.
"""

from __future__ import annotations

import hashlib
import json
import stat
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harbour.node import approval
from harbour.node.approval import (
    DOMAIN,
    MAX_CERTIFICATE_LEN,
    MAX_DIGESTS,
    MAX_LIFETIME,
    ApprovalError,
    AuthorityKey,
    AuthorityKeyError,
    Certificate,
    issue,
    parse,
    trusted_authorities,
    verify,
)
from harbour.node.nonces import LedgerError, NonceLedger
from helpers import pem_needs_password

NOW = 1_767_225_600  # 2026-01-01T00:00:00Z
KEY = "treasury-hot-1"
PATH = "m/0/7"
D1 = hashlib.sha256(b"transfer 100.00 HKD-T to vault 7").digest()
D2 = hashlib.sha256(b"transfer 5.00 HKD-T to vault 9").digest()
SIGNERS = (1, 2)
D3 = hashlib.sha256(b"not approved").digest()
RESHARE: dict[str, str | int] = {
    "scheme": "frost-ed25519",
    "threshold": 3,
    "parties": 5,
    "new_threshold": 2,
    "new_parties": 3,
}
ADMIN_PARAMS: dict[str, dict[str, str | int]] = {
    "keygen": {"scheme": "ecdsa-secp256k1", "threshold": 2, "parties": 3},
    "refresh": {"scheme": "frost-secp256k1"},
    "reshare": RESHARE,
}


@pytest.fixture(scope="module")
def authority() -> AuthorityKey:
    return AuthorityKey.generate()


@pytest.fixture(scope="module")
def other() -> AuthorityKey:
    return AuthorityKey.generate()


@pytest.fixture
def trusted(authority: AuthorityKey) -> dict[str, Ed25519PublicKey]:
    return trusted_authorities(authority.public_key)


def sign_cert(authority: AuthorityKey, **changes: Any) -> bytes:
    """A signed certificate built field by field, bypassing issue()'s checks."""
    fields: dict[str, Any] = {
        "version": 2,
        "kind": "sign",
        "authority_id": authority.authority_id,
        "key_id": KEY,
        "path": PATH,
        "digests": (D1, D2),
        "params": {},
        "issued_at": NOW,
        "expires_at": NOW + 300,
        "nonce": b"\x07" * 16,
        "signers": SIGNERS,
    }
    fields.update(changes)
    if fields["kind"] != "sign" and "signers" not in changes:
        fields["signers"] = ()
    body = Certificate(**fields).encode()
    return bytes(cbor2.dumps({"cert": body, "sig": authority.sign(DOMAIN + body)}, canonical=True))


def sign_request(
    data: bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    now: int = NOW + 10,
    key_id: str = KEY,
    path: str = PATH,
    digest: bytes = D1,
    signers: tuple[int, ...] = SIGNERS,
    ledger: NonceLedger | None = None,
) -> Certificate:
    return verify(
        data,
        trusted,
        now=now,
        kind="sign",
        key_id=key_id,
        path=path,
        digest=digest,
        signers=signers,
        ledger=NonceLedger() if ledger is None else ledger,
    )


def admin_request(
    data: bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    kind: str,
    params: Mapping[str, str | int],
    *,
    key_id: str = KEY,
    now: int = NOW,
    ledger: NonceLedger | None = None,
    max_lifetime: int = MAX_LIFETIME,
) -> Certificate:
    return verify(
        data,
        trusted,
        now=now,
        kind=kind,
        key_id=key_id,
        path="m",
        params=params,
        ledger=NonceLedger() if ledger is None else ledger,
        max_lifetime=max_lifetime,
    )


def refused(reason: str, needle: str, call: Callable[[], object]) -> ApprovalError:
    with pytest.raises(ApprovalError) as info:
        call()
    assert info.value.reason == reason, str(info.value)
    assert needle in str(info.value), str(info.value)
    return info.value


def sign_cert_of(authority: AuthorityKey, **kw: Any) -> bytes:
    kw.setdefault("signers", SIGNERS)
    return issue(authority, kind="sign", key_id=KEY, path=PATH, digests=[D1, D2], now=NOW, expires_in=300, **kw)


# -- round trips ---------------------------------------------------------------------------------------


def test_sign_round_trip(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data = sign_cert_of(authority)
    cert = sign_request(data, trusted, digest=D2)
    assert cert.kind == "sign" and cert.key_id == KEY and cert.path == PATH
    assert cert.digests == (D1, D2)
    assert cert.authority_id == authority.authority_id
    assert cert.expires_at - cert.issued_at == 300
    assert len(cert.nonce) == 16
    assert parse(data) == (cert, parse(data)[1])


@pytest.mark.parametrize("kind", ["keygen", "refresh", "reshare"])
def test_admin_round_trip(kind: str, authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    key_id = "" if kind == "keygen" else KEY
    params = ADMIN_PARAMS[kind]
    data = issue(authority, kind=kind, key_id=key_id, params=params, now=NOW, expires_in=600)
    ledger = NonceLedger()
    cert = verify(data, trusted, now=NOW, kind=kind, key_id=key_id, path="m", params=dict(params), ledger=ledger)
    assert cert.kind == kind and dict(cert.params) == params and cert.digests == () and cert.path == "m"
    assert len(ledger) == 1


def test_keygen_may_name_the_new_key(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    params = ADMIN_PARAMS["keygen"]
    data = issue(authority, kind="keygen", key_id="new-key", params=params, now=NOW, expires_in=60)
    verify(data, trusted, now=NOW, kind="keygen", key_id="new-key", path="m", params=params, ledger=NonceLedger())


def test_nonces_are_random(authority: AuthorityKey) -> None:
    assert parse(sign_cert_of(authority))[0].nonce != parse(sign_cert_of(authority))[0].nonce


def test_certificate_is_read_only(authority: AuthorityKey) -> None:
    cert, _ = parse(issue(authority, kind="refresh", key_id=KEY, params={"a": 1}, now=NOW, expires_in=60))
    with pytest.raises(TypeError):
        cert.params["a"] = 2  # type: ignore[index]


def test_skew_and_expiry_bounds_are_inclusive(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    sign_request(sign_cert_of(authority), trusted, now=NOW - 60)
    sign_request(sign_cert_of(authority), trusted, now=NOW + 300)


def test_refused_certificate_keeps_its_nonce(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    """A certificate refused for another request is still good for its own."""
    data, ledger = sign_cert_of(authority), NonceLedger()
    refused("digest", "not approved", lambda: sign_request(data, trusted, digest=D3, ledger=ledger))
    assert len(ledger) == 0
    sign_request(data, trusted, digest=D1, ledger=ledger)


# -- refusals, one reason each ----------------------------------------------------------------------------


def test_untrusted_authority(other: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    refused("untrusted", "not trusted", lambda: sign_request(sign_cert_of(other), trusted))


def test_signature_of_another_authority(
    authority: AuthorityKey, other: AuthorityKey, trusted: dict[str, Ed25519PublicKey]
) -> None:
    """Signed by an untrusted key but claiming a trusted authority's id."""
    forged = sign_cert(authority, nonce=b"\x01" * 16)
    outer = cbor2.loads(forged)
    outer["sig"] = other.sign(DOMAIN + outer["cert"])
    refused("signature", "bad signature", lambda: sign_request(cbor2.dumps(outer, canonical=True), trusted))


def test_signature_without_domain_tag(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    outer = cbor2.loads(sign_cert(authority))
    outer["sig"] = authority.sign(outer["cert"])
    refused("signature", "bad signature", lambda: sign_request(cbor2.dumps(outer, canonical=True), trusted))


def test_misconfigured_trust(authority: AuthorityKey, other: AuthorityKey) -> None:
    """A trusted map naming one authority's id with another's key trusts neither."""
    trusted = {authority.authority_id: other.public_key}
    refused("untrusted", "another id", lambda: sign_request(sign_cert_of(authority), trusted))


def test_wrong_kind(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data = issue(authority, kind="refresh", key_id=KEY, params={}, now=NOW, expires_in=60)
    refused("kind", "approves a refresh, not a reshare", lambda: admin_request(data, trusted, "reshare", {}))


def test_sign_certificate_for_admin_request(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    refused("kind", "approves a sign", lambda: admin_request(sign_cert_of(authority), trusted, "refresh", {}))


def test_wrong_key(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    refused("key", "not 'cold-1'", lambda: sign_request(sign_cert_of(authority), trusted, key_id="cold-1"))


def test_wrong_path(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    refused("path", "not 'm/0/8'", lambda: sign_request(sign_cert_of(authority), trusted, path="m/0/8"))


def test_parent_path_is_not_approved(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    refused("path", "for path 'm/0/7'", lambda: sign_request(sign_cert_of(authority), trusted, path="m"))


def test_digest_not_approved(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    refused("digest", D3.hex(), lambda: sign_request(sign_cert_of(authority), trusted, digest=D3))


def test_params_differ(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data = issue(authority, kind="reshare", key_id=KEY, params=RESHARE, now=NOW, expires_in=60)
    changed = {**RESHARE, "new_threshold": 3}
    refused("params", "not", lambda: admin_request(data, trusted, "reshare", changed))


def test_params_compare_types(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data = issue(authority, kind="reshare", key_id=KEY, params=RESHARE, now=NOW, expires_in=60)
    as_text = {**RESHARE, "threshold": "3"}
    refused("params", "not", lambda: admin_request(data, trusted, "reshare", as_text))


def test_params_missing_one(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data = issue(authority, kind="reshare", key_id=KEY, params=RESHARE, now=NOW, expires_in=60)
    fewer = {k: v for k, v in RESHARE.items() if k != "new_parties"}
    refused("params", "not", lambda: admin_request(data, trusted, "reshare", fewer))


def test_not_yet_valid(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    refused("not-yet-valid", "not valid yet", lambda: sign_request(sign_cert_of(authority), trusted, now=NOW - 61))


def test_expired(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    refused("expired", "expired at", lambda: sign_request(sign_cert_of(authority), trusted, now=NOW + 301))


def test_lifetime_too_long(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data = sign_cert(authority, expires_at=NOW + MAX_LIFETIME + 1)
    refused("lifetime", "longer than", lambda: sign_request(data, trusted))


def test_lifetime_is_configurable(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data = issue(authority, kind="refresh", key_id=KEY, params={}, now=NOW, expires_in=300)
    refused("lifetime", "longer than the 120 s", lambda: admin_request(data, trusted, "refresh", {}, max_lifetime=120))


def test_replayed(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data, ledger = sign_cert_of(authority), NonceLedger()
    sign_request(data, trusted, ledger=ledger)
    refused("replayed", "used before", lambda: sign_request(data, trusted, ledger=ledger))


def test_one_certificate_one_session_even_with_several_digests(
    authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]
) -> None:
    data, ledger = sign_cert_of(authority), NonceLedger()
    sign_request(data, trusted, digest=D1, ledger=ledger)
    refused("replayed", "used before", lambda: sign_request(data, trusted, digest=D2, ledger=ledger))


def test_replay_with_a_new_signature(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    """Nonces, not signatures or file hashes, identify a certificate's use."""
    first = sign_cert(authority, nonce=b"\x09" * 16)
    second = sign_cert(authority, nonce=b"\x09" * 16, digests=(D2,))
    ledger = NonceLedger()
    sign_request(first, trusted, ledger=ledger)
    refused("replayed", "used before", lambda: sign_request(second, trusted, digest=D2, ledger=ledger))


def test_same_nonce_of_different_authorities(authority: AuthorityKey, other: AuthorityKey) -> None:
    """One authority cannot burn another's nonces."""
    trusted = trusted_authorities(authority.public_key, other.public_key)
    ledger = NonceLedger()
    sign_request(sign_cert(authority), trusted, ledger=ledger)
    sign_request(sign_cert(other), trusted, ledger=ledger)


def test_concurrent_use_admits_one(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data, ledger = sign_cert_of(authority), NonceLedger()
    results: list[str] = []

    def attempt() -> None:
        try:
            sign_request(data, trusted, ledger=ledger)
            results.append("ok")
        except ApprovalError as exc:
            results.append(exc.reason)

    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["ok"] + ["replayed"] * 7


def test_request_must_be_well_formed(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    """A caller's mistake is a ValueError, never mistaken for a certificate's refusal."""
    data = sign_cert_of(authority)
    for kwargs in (
        {"kind": "sign", "digest": None},
        {"kind": "sign", "digest": D1, "params": {}},
        {"kind": "refresh", "digest": D1, "params": {}},
        {"kind": "refresh"},
        {"kind": "delete", "digest": D1},
    ):
        with pytest.raises(ValueError) as info:
            verify(data, trusted, now=NOW, key_id=KEY, path=PATH, ledger=NonceLedger(), **kwargs)
        assert not isinstance(info.value, ApprovalError)


# -- tampering -----------------------------------------------------------------------------------------

TAMPER: dict[str, Any] = {
    "kind": "refresh",
    "key_id": "treasury-hot-2",
    "path": "m/0/8",
    "digests": [D1, D3],
    "params": {"note": "x"},
    "issued_at": NOW - 1,
    "expires_at": NOW + 301,
    "nonce": b"\x08" * 16,
    "signers": [1, 3],
}


@pytest.mark.parametrize("name", [*TAMPER, "authority_id"])
def test_tampered_field(
    name: str, authority: AuthorityKey, other: AuthorityKey, trusted: dict[str, Ed25519PublicKey]
) -> None:
    """Any field changed (and the certificate re-encoded canonically) voids the signature."""
    if name == "params":  # only admin certificates carry params
        data = sign_cert(authority, kind="reshare", path="m", digests=(), params=RESHARE)
    else:
        data = sign_cert(authority)
    outer = cbor2.loads(data)
    fields = cbor2.loads(outer["cert"])
    if name == "authority_id":
        trusted = trusted_authorities(authority.public_key, other.public_key)
        fields[name] = other.authority_id
    else:
        fields[name] = TAMPER[name]
    if name == "kind":
        fields["digests"], fields["path"] = [], "m"
        del fields["signers"]
    outer["cert"] = cbor2.dumps(fields, canonical=True)
    tampered = cbor2.dumps(outer, canonical=True)
    parse(tampered)  # still well-formed
    if name == "params":
        refused("signature", "bad signature", lambda: admin_request(tampered, trusted, "reshare", {"note": "x"}))
    else:
        refused("signature", "bad signature", lambda: sign_request(tampered, trusted))


def test_flipped_signature_bit(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    outer = cbor2.loads(sign_cert(authority))
    outer["sig"] = bytes([outer["sig"][0] ^ 1]) + outer["sig"][1:]
    refused("signature", "bad signature", lambda: sign_request(cbor2.dumps(outer, canonical=True), trusted))


# -- malformed -----------------------------------------------------------------------------------------


def _rewrap(authority: AuthorityKey, fields: dict[str, Any], *, canonical: bool = True) -> bytes:
    body = cbor2.dumps(fields, canonical=canonical)
    return bytes(cbor2.dumps({"cert": body, "sig": authority.sign(DOMAIN + body)}, canonical=True))


def _fields(authority: AuthorityKey) -> dict[str, Any]:
    return dict(cbor2.loads(cbor2.loads(sign_cert(authority))["cert"]))


MALFORMED_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "version 1": ({"version": 1}, "unsupported version 1"),
    "version 3": ({"version": 3}, "unsupported version 3"),
    "no signers": ({"signers": []}, "names its signers"),
    "signers unsorted": ({"signers": [2, 1]}, "ascending"),
    "signer twice": ({"signers": [1, 1]}, "once each"),
    "signer zero": ({"signers": [0, 1]}, "1..255"),
    "signer too large": ({"signers": [1, 256]}, "1..255"),
    "signer not an integer": ({"signers": [1, "2"]}, "1..255"),
    "signers not a list": ({"signers": 3}, "list of parties"),
    "version true": ({"version": True}, "unsupported version"),
    "unknown kind": ({"kind": "transfer"}, "unknown kind"),
    "authority id not hex": ({"authority_id": "AB" * 32}, "authority_id"),
    "empty key id": ({"key_id": ""}, "must name its key_id"),
    "key id too long": ({"key_id": "k" * 129}, "key_id"),
    "key id control char": ({"key_id": "k\n1"}, "key_id"),
    "path not canonical": ({"path": " m/0/7"}, "not canonical"),
    "path with leading zero": ({"path": "m/07"}, "'07'"),
    "path trailing slash": ({"path": "m/0/"}, "path"),
    "hardened path": ({"path": "m/0'"}, "hardened"),
    "path not a string": ({"path": 0}, "path"),
    "short digest": ({"digests": [D1[:31]]}, "32 bytes"),
    "digest as text": ({"digests": [D1.hex()]}, "32 bytes"),
    "no digests": ({"digests": []}, "1 to 64"),
    "too many digests": (
        {"digests": [hashlib.sha256(bytes([i, j])).digest() for i in range(5) for j in range(13)]},
        "1 to 64",
    ),
    "duplicate digests": ({"digests": [D1, D1]}, "twice"),
    "digests not a list": ({"digests": D1}, "list"),
    "sign with params": ({"params": {"threshold": 2}}, "no params"),
    "params not a map": ({"params": []}, "map"),
    "bool issued_at": ({"issued_at": True}, "issued_at"),
    "negative issued_at": ({"issued_at": -1}, "issued_at"),
    "float expires_at": ({"expires_at": NOW + 300.0}, "expires_at"),
    "expires before issued": ({"expires_at": NOW}, "after issued_at"),
    "short nonce": ({"nonce": b"\x00" * 15}, "16 bytes"),
    "nonce as text": ({"nonce": "00" * 16}, "16 bytes"),
}


@pytest.mark.parametrize("case", list(MALFORMED_FIELDS))
def test_malformed_field(case: str, authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    changes, needle = MALFORMED_FIELDS[case]
    data = _rewrap(authority, {**_fields(authority), **changes})
    refused("malformed", needle, lambda: parse(data))
    refused("malformed", needle, lambda: sign_request(data, trusted))


@pytest.mark.parametrize(
    ("kind", "changes", "needle"),
    [
        ("refresh", {"digests": [D1]}, "carries no digests"),
        ("reshare", {"path": "m/0"}, "path 'm'"),
        ("keygen", {"params": {"Threshold": 2}}, "param name"),
        ("keygen", {"params": {"threshold": 2.0}}, "string or an integer"),
        ("keygen", {"params": {"threshold": True}}, "string or an integer"),
        ("keygen", {"params": {"threshold": 2**64}}, "64-bit"),
        ("keygen", {"params": {"note": "x" * 129}}, "at most 128"),
        ("keygen", {"params": {f"p{i}": i for i in range(17)}}, "at most 16"),
    ],
)
def test_malformed_admin_field(kind: str, changes: dict[str, Any], needle: str, authority: AuthorityKey) -> None:
    fields = {**_fields(authority), "kind": kind, "digests": [], "path": "m", "params": {}}
    del fields["signers"]
    data = _rewrap(authority, {**fields, **changes})
    refused("malformed", needle, lambda: parse(data))


def test_missing_and_extra_fields(authority: AuthorityKey) -> None:
    fields = _fields(authority)
    del fields["nonce"]
    refused("malformed", "missing or unexpected", lambda: parse(_rewrap(authority, fields)))
    refused("malformed", "missing or unexpected", lambda: parse(_rewrap(authority, {**_fields(authority), "x": 1})))


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "not valid CBOR"),
        (b"\xff\x00", "not valid CBOR"),
        (cbor2.dumps([1, 2]), "exactly 'cert' and 'sig'"),
        (cbor2.dumps({"cert": b"", "sig": b"\x00" * 64, "x": 0}, canonical=True), "exactly 'cert' and 'sig'"),
        (cbor2.dumps({"cert": b"\xa0", "sig": b"\x00" * 63}, canonical=True), "64 bytes"),
        (cbor2.dumps({"cert": {}, "sig": b"\x00" * 64}, canonical=True), "'cert' must be bytes"),
        (cbor2.dumps({"cert": cbor2.dumps([1]), "sig": b"\x00" * 64}, canonical=True), "not a map"),
        (cbor2.dumps({"cert": b"\xff", "sig": b"\x00" * 64}, canonical=True), "not valid CBOR"),
    ],
)
def test_malformed_file(data: bytes, needle: str) -> None:
    refused("malformed", needle, lambda: parse(data))


def test_non_canonical_outer(authority: AuthorityKey) -> None:
    outer = cbor2.loads(sign_cert(authority))
    # keys in the wrong order: canonical CBOR sorts the shorter "sig" before "cert"
    data = b"\xa2" + cbor2.dumps("cert") + cbor2.dumps(outer["cert"]) + cbor2.dumps("sig") + cbor2.dumps(outer["sig"])
    assert cbor2.loads(data) == outer
    refused("malformed", "not canonical", lambda: parse(data))


def test_non_canonical_certificate(authority: AuthorityKey) -> None:
    fields = _fields(authority)
    body = b"\xba" + len(fields).to_bytes(4, "big") + cbor2.dumps(fields, canonical=True)[1:]  # long-form length
    assert cbor2.loads(body) == fields
    data = cbor2.dumps({"cert": body, "sig": authority.sign(DOMAIN + body)}, canonical=True)
    refused("malformed", "not canonical", lambda: parse(data))


def test_trailing_bytes(authority: AuthorityKey) -> None:
    refused("malformed", "trailing", lambda: parse(sign_cert(authority) + b"\x00"))


def test_size_limit(authority: AuthorityKey) -> None:
    refused("malformed", f"more than the {MAX_CERTIFICATE_LEN}", lambda: parse(b"\x00" * (MAX_CERTIFICATE_LEN + 1)))


def test_largest_valid_certificates_fit(authority: AuthorityKey) -> None:
    digests = [hashlib.sha256(i.to_bytes(2, "big")).digest() for i in range(MAX_DIGESTS)]
    path = "m" + "/2147483647" * 23
    everyone = list(range(1, 256))
    sign = issue(
        authority, kind="sign", key_id="k" * 128, path=path, digests=digests, signers=everyone, now=NOW, expires_in=60
    )
    params: dict[str, str | int] = {f"{'p' * 30}{i:02d}": "v" * 128 for i in range(16)}
    admin = issue(authority, kind="reshare", key_id="k" * 128, params=params, now=NOW, expires_in=60)
    for data in (sign, admin):
        assert len(data) <= MAX_CERTIFICATE_LEN
        parse(data)


def test_parse_does_not_verify(other: AuthorityKey) -> None:
    cert, sig = parse(sign_cert_of(other))
    assert cert.authority_id == other.authority_id and len(sig) == 64


def test_parse_needs_bytes() -> None:
    with pytest.raises(TypeError):
        parse("a certificate")  # type: ignore[arg-type]


# -- issuing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("expires_in", [0, -1, MAX_LIFETIME + 1])
def test_issue_refuses_bad_lifetime(expires_in: int, authority: AuthorityKey) -> None:
    refused(
        "malformed",
        "expires_in",
        lambda: issue(authority, kind="sign", key_id=KEY, digests=[D1], now=NOW, expires_in=expires_in),
    )


def test_issue_refuses_what_nodes_would_refuse(authority: AuthorityKey) -> None:
    refused(
        "malformed",
        "32 bytes",
        lambda: issue(authority, kind="sign", key_id=KEY, digests=[b"\x00" * 20], now=NOW, expires_in=60),
    )
    refused("malformed", "unknown kind", lambda: issue(authority, kind="mint", key_id=KEY, now=NOW, expires_in=60))
    refused(
        "malformed",
        "no params",
        lambda: issue(authority, kind="sign", key_id=KEY, digests=[D1], params={"a": 1}, now=NOW, expires_in=60),
    )


# -- the authority key ---------------------------------------------------------------------------------


def test_key_files(tmp_path: Path, authority: AuthorityKey) -> None:
    authority.save(tmp_path)
    assert stat.S_IMODE((tmp_path / "authority.key").stat().st_mode) == 0o600
    assert not pem_needs_password((tmp_path / "authority.key").read_bytes())
    claimed, public = approval.parse_public_file((tmp_path / "authority.pub").read_bytes())
    assert claimed == authority.authority_id and public == authority.public_key
    assert AuthorityKey.load(tmp_path).authority_id == authority.authority_id


def test_key_id_is_spki_fingerprint(authority: AuthorityKey) -> None:
    spki_prefix = bytes.fromhex("302a300506032b6570032100")  # RFC 8410 Ed25519 SubjectPublicKeyInfo
    assert authority.authority_id == hashlib.sha256(spki_prefix + authority.public_bytes).hexdigest()
    assert trusted_authorities(authority.public_bytes) == {authority.authority_id: authority.public_key}


def test_encrypted_key(tmp_path: Path, authority: AuthorityKey) -> None:
    authority.save(tmp_path, passphrase=b"open sesame")
    assert approval.is_encrypted_pem((tmp_path / "authority.key").read_bytes())
    assert AuthorityKey.load(tmp_path, passphrase=b"open sesame").authority_id == authority.authority_id
    with pytest.raises(AuthorityKeyError, match="wrong passphrase"):
        AuthorityKey.load(tmp_path, passphrase=b"open sesame!")
    with pytest.raises(AuthorityKeyError, match="cannot load"):
        AuthorityKey.load(tmp_path)


def test_key_is_never_overwritten(tmp_path: Path, authority: AuthorityKey, other: AuthorityKey) -> None:
    authority.save(tmp_path)
    with pytest.raises(FileExistsError):
        other.save(tmp_path)
    assert AuthorityKey.load(tmp_path).authority_id == authority.authority_id


def test_public_file_of_another_key(tmp_path: Path, authority: AuthorityKey, other: AuthorityKey) -> None:
    authority.save(tmp_path)
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other.save(other_dir)
    (tmp_path / "authority.pub").write_bytes((other_dir / "authority.pub").read_bytes())
    with pytest.raises(AuthorityKeyError, match="belongs to another key"):
        AuthorityKey.load(tmp_path)


def test_public_file_edited(tmp_path: Path, authority: AuthorityKey, other: AuthorityKey) -> None:
    doc = authority.public_document()
    doc["public_key"] = other.public_bytes.hex()
    with pytest.raises(AuthorityKeyError, match="does not match"):
        approval.parse_public_file(json.dumps(doc).encode())
    with pytest.raises(AuthorityKeyError, match="not valid JSON"):
        approval.parse_public_file(b"{")


# -- the nonce ledger ----------------------------------------------------------------------------------

A = "a" * 64
B = "b" * 64


def test_replay_refused_after_reload(
    tmp_path: Path, authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]
) -> None:
    path = tmp_path / "nonces"
    data = sign_cert_of(authority)
    with NonceLedger.open(path) as ledger:
        sign_request(data, trusted, ledger=ledger)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with NonceLedger.open(path) as ledger:
        assert len(ledger) == 1
        refused("replayed", "used before", lambda: sign_request(data, trusted, ledger=ledger))


def test_ledger_bytes_round_trip(authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    data, ledger = sign_cert_of(authority), NonceLedger()
    sign_request(data, trusted, ledger=ledger)
    reloaded = NonceLedger.from_bytes(ledger.to_bytes())
    assert reloaded.to_bytes() == ledger.to_bytes()
    refused("replayed", "used before", lambda: sign_request(data, trusted, ledger=reloaded))


def test_torn_last_line_is_dropped_on_open(tmp_path: Path) -> None:
    """A line without its newline was cut short before consume() returned: never acted on."""
    path = tmp_path / "nonces"
    with NonceLedger.open(path) as ledger:
        ledger.consume(A, b"\x01" * 16, NOW)
    with path.open("ab") as f:
        f.write(f"{B} {'02' * 16} 17".encode())
    with NonceLedger.open(path) as ledger:
        assert (A, b"\x01" * 16) in ledger and len(ledger) == 1
        ledger.consume(B, b"\x02" * 16, NOW)
    assert NonceLedger.from_bytes(path.read_bytes()).to_bytes() == path.read_bytes()
    with pytest.raises(LedgerError, match="incomplete"):
        NonceLedger.from_bytes(path.read_bytes() + b"ab")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"", "header"),
        (b"harbour-nonce-ledger 2 0\n", "header"),
        (b"harbour-nonce-ledger 1 0\n" + b"x" * 10 + b"\n", "corrupt"),
        (f"harbour-nonce-ledger 1 0\n{A} {'01' * 15} {NOW}\n".encode(), "corrupt"),
    ],
)
def test_corrupt_ledger(tmp_path: Path, content: bytes, needle: str) -> None:
    """A node that cannot trust its ledger cannot rule out replays: it stops."""
    path = tmp_path / "nonces"
    path.write_bytes(content)
    with pytest.raises(LedgerError, match=needle):
        NonceLedger.open(path)


def test_ledger_held_by_one_process(tmp_path: Path) -> None:
    path = tmp_path / "nonces"
    with NonceLedger.open(path), pytest.raises(LedgerError, match="in use"):
        NonceLedger.open(path)
    NonceLedger.open(path).close()


def test_prune(tmp_path: Path, authority: AuthorityKey, trusted: dict[str, Ed25519PublicKey]) -> None:
    path = tmp_path / "nonces"
    old = sign_cert(authority, nonce=b"\x01" * 16, issued_at=NOW - 1000, expires_at=NOW - 700)
    fresh = sign_cert(authority, nonce=b"\x02" * 16)
    with NonceLedger.open(path) as ledger:
        sign_request(old, trusted, now=NOW - 800, ledger=ledger)
        sign_request(fresh, trusted, now=NOW, ledger=ledger)
        assert ledger.prune(NOW) == 1
        assert len(ledger) == 1 and ledger.horizon == NOW
        ledger.consume(A, b"\x03" * 16, NOW + 10)  # still appending, to the new file
        # A clock set back cannot resurrect a pruned certificate.
        refused("replayed", "horizon", lambda: sign_request(old, trusted, now=NOW - 800, ledger=ledger))
    assert not list(tmp_path.glob(".*"))
    with NonceLedger.open(path) as ledger:
        assert ledger.horizon == NOW and len(ledger) == 2
        refused("replayed", "used before", lambda: sign_request(fresh, trusted, now=NOW, ledger=ledger))
        refused("replayed", "horizon", lambda: sign_request(old, trusted, now=NOW - 800, ledger=ledger))
    with NonceLedger.open(path):
        pass  # the lock moved with the rewritten file and was released


def test_prune_in_memory() -> None:
    ledger = NonceLedger()
    ledger.consume(A, b"\x01" * 16, NOW - 1)
    ledger.consume(A, b"\x02" * 16, NOW)
    assert ledger.prune(NOW) == 1
    assert (A, b"\x02" * 16) in ledger
    assert NonceLedger.from_bytes(ledger.to_bytes()).horizon == NOW


def test_consume_checks_its_input() -> None:
    with pytest.raises(ValueError):
        NonceLedger().consume("zz", b"\x01" * 16, NOW)
    with pytest.raises(ValueError):
        NonceLedger().consume(A, b"\x01" * 8, NOW)
