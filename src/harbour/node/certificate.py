"""Approval certificates: the format an authority signs and a signer node parses.

A node holds a key share and will take part in any protocol run it is asked to
join, so the decision *whether* to sign cannot rest with whoever relays the
request (a coordinator, an API server, a compromised peer). Instead the node is
configured with the public keys of one or more approval authorities
(:mod:`harbour.node.authority`), and joins a session only with a certificate from
one of them that names exactly what the session will do:

- ``sign``: this key, this derivation path, a digest from the certificate's list,
  and exactly this set of signers (so one certificate is one signature even where
  two disjoint sets of ``t`` nodes exist);
- ``keygen``, ``refresh``, ``reshare``: this key id and these parameters (scheme,
  threshold, parties, ...), compared exactly;
- ``enrol``: no key; ``params = {"org": <genesis hash, hex>}``, the organisation
  whose governance log the node starts to keep (:mod:`harbour.node.orgs`).

A certificate file is canonical CBOR ``{"cert": <bytes>, "sig": <64 bytes>}``
where ``cert`` is the canonical CBOR of the fields of :class:`Certificate` and
``sig`` is Ed25519 over ``DOMAIN || cert``. The domain tag keeps the authority's
signatures on certificates from being valid on anything else it might sign.

Every certificate carries an expiry and a 16-byte random nonce; checking one
against a request and spending its nonce is :mod:`harbour.node.approval`.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, cast, get_args

import cbor2

from harbour.mpc import hd
from harbour.node.authority import AuthorityKey
from harbour.node.nonces import NONCE_LEN
from harbour.util import cbor

VERSION: Final = 2
"""Version 2 added the signer set of a sign certificate; a version-1 certificate is refused as such."""
DOMAIN: Final = b"harbour/approval-certificate/v1\x00"
"""Prefix of every signed message, so a certificate signature verifies as nothing else."""

Kind = Literal["sign", "keygen", "refresh", "reshare", "rotate", "enrol"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
ADMIN_KINDS: Final = ("keygen", "refresh", "reshare", "rotate", "enrol")
"""``rotate`` approves a node's new identity (``params = {"old", "new"}``, node ids) and ``enrol`` an
organisation's genesis (``params = {"org"}``): neither is about a key, so neither has a key id."""
KEYLESS_KINDS: Final = ("rotate", "enrol")

DIGEST_LEN: Final = 32
SIGNATURE_LEN: Final = 64
MAX_DIGESTS: Final = 64
"""Enough for a batch of transactions; a certificate approving thousands would be a blank cheque."""
MAX_KEY_ID_LEN: Final = 128
MAX_PATH_LEN: Final = 256
MAX_PARAMS: Final = 16
MAX_PARAM_VALUE_LEN: Final = 128
MAX_INT: Final = 2**63 - 1
MAX_SIGNERS: Final = 255
MAX_EVIDENCE_LEN: Final = 32768
"""Approval evidence a sign certificate may carry (node/quorum.py): a transaction, a quorum and its approvals."""
MAX_CERTIFICATE_LEN: Final = 8192 + MAX_EVIDENCE_LEN
"""Above the largest valid certificate (64 digests and 16 parameters fit in 8192 bytes; a certificate
with evidence approves one digest, so the evidence fits in the rest): bigger input is refused unread."""
MAX_LIFETIME: Final = 24 * 3600
"""A certificate is a one-off approval, not a standing permission: one day at most."""
DEFAULT_SKEW: Final = 60

_CERT_KEYS: Final = frozenset(
    {"version", "kind", "authority_id", "key_id", "path", "digests", "params", "issued_at", "expires_at", "nonce"}
)
_EVIDENCE_KEY: Final = "evidence"
"""Optional: only a certificate with evidence has the field, so one without keeps its old bytes."""
_SIGNERS_KEY: Final = "signers"
"""A sign certificate's signer set; admin certificates have no such field."""
_PARAM_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

Reason = Literal[
    "malformed",
    "untrusted",
    "signature",
    "kind",
    "key",
    "path",
    "digest",
    "signers",
    "params",
    "not-yet-valid",
    "expired",
    "lifetime",
    "replayed",
    # the approvers' evidence a sign certificate carries (node/quorum.py)
    "evidence",
    "transaction",
    "intent",
    "approvals",
    "approver",
    "quorum",
    "reused",
    # an organisation's governance (node/orgs/): its log, its policy, its withdrawal history
    "governance",
    "policy",
    "history",
    # a node that serves organisations only (node.json organisations_only) and a key of none
    "no-organisation",
]
ParamValue = str | int


class ApprovalError(ValueError):
    """A certificate that does not authorise the request, and why.

    ``reason`` lets a node act (and log) without parsing the message; the message
    says what an operator needs to fix.
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def _malformed(what: str) -> ApprovalError:
    return ApprovalError("malformed", f"malformed approval certificate: {what}")


# -- the certificate -----------------------------------------------------------------------------------


def canonical_path(path: str) -> str:
    """The one spelling of a BIP-32 path a certificate may carry (``m``, ``m/0/7``).

    Nodes compare paths as strings, so ``m/07`` or ``m/0/`` must not be a second way
    to write ``m/7`` or ``m/0``; hardened steps are refused because no threshold key
    can derive them.
    """
    if not isinstance(path, str) or len(path) > MAX_PATH_LEN:
        raise _malformed(f"path must be a string of at most {MAX_PATH_LEN} characters")
    try:
        steps = hd.parse_path(path)
    except hd.DerivationError as exc:
        raise _malformed(f"path {path!r}: {exc}") from None
    canonical = "/".join(["m", *map(str, steps)])
    if canonical != path:
        raise _malformed(f"path {path!r} is not canonical (write {canonical!r})")
    return path


def _check_params(params: Mapping[str, ParamValue]) -> None:
    if len(params) > MAX_PARAMS:
        raise _malformed(f"at most {MAX_PARAMS} params")
    for name, value in params.items():
        if not isinstance(name, str) or not _PARAM_NAME.fullmatch(name):
            raise _malformed(f"param name {name!r} is not lowercase letters, digits and _ (at most 32)")
        if type(value) is int:
            if not -MAX_INT - 1 <= value <= MAX_INT:
                raise _malformed(f"param {name} is out of the 64-bit range")
        elif isinstance(value, str):
            if len(value) > MAX_PARAM_VALUE_LEN or not value.isprintable():
                raise _malformed(f"param {name} must be printable and at most {MAX_PARAM_VALUE_LEN} characters")
        else:
            raise _malformed(f"param {name} must be a string or an integer")


def _is_int(value: object) -> bool:
    return type(value) is int  # bool is an int subclass and is not a time


@dataclass(frozen=True)
class Certificate:
    """What an authority approved: one operation on one key, until ``expires_at``.

    ``key_id`` names the key (for ``keygen``, the id the new key will get, or empty
    when the node assigns it). ``path`` is the BIP-32 path signed under (``m`` for
    the key itself and for every admin kind). ``digests`` are the 32-byte digests a
    ``sign`` certificate approves, any one per session; admin kinds carry none and
    put what they approve in ``params`` instead. ``signers`` (``sign`` only, at least
    one, sorted) are the parties that may run the session, exactly: with ``n >= 2t``
    two disjoint sets of ``t`` nodes could otherwise each spend the same certificate
    once, since each node keeps its own nonce ledger. ``evidence`` (``sign`` only, with
    exactly one digest) is the encoded :class:`harbour.node.quorum.Evidence`: the
    transaction, the quorum it needs and the approvers' own signatures, which a node
    re-checks instead of taking the authority's word for them.
    """

    version: int
    kind: Kind
    authority_id: str
    key_id: str
    path: str
    digests: tuple[bytes, ...]
    params: Mapping[str, ParamValue] = field(hash=False)
    issued_at: int
    expires_at: int
    nonce: bytes
    evidence: bytes | None = None
    signers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # A read-only copy: a certificate must not change after it was checked.
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        object.__setattr__(self, "digests", tuple(self.digests))
        object.__setattr__(self, "signers", tuple(self.signers))

    def check(self) -> None:
        """Every structural rule; raises ApprovalError("malformed") naming the first one broken."""
        if not _is_int(self.version) or self.version != VERSION:
            raise _malformed(f"unsupported version {self.version!r} (this Harbour reads {VERSION})")
        if self.kind not in KINDS:
            raise _malformed(f"unknown kind {self.kind!r}; one of {', '.join(KINDS)}")
        if not isinstance(self.authority_id, str) or not _HEX64.fullmatch(self.authority_id):
            raise _malformed("authority_id must be 64 lowercase hex digits")
        if not isinstance(self.key_id, str) or len(self.key_id) > MAX_KEY_ID_LEN or not self.key_id.isprintable():
            raise _malformed(f"key_id must be printable and at most {MAX_KEY_ID_LEN} characters")
        if not self.key_id and self.kind not in ("keygen", *KEYLESS_KINDS):
            raise _malformed(f"a {self.kind} certificate must name its key_id")
        if self.key_id and self.kind in KEYLESS_KINDS:
            raise _malformed(f"a {self.kind} certificate is not about a key: its key_id is empty")
        canonical_path(self.path)
        if self.kind in ADMIN_KINDS and self.path != "m":
            raise _malformed(f"a {self.kind} certificate has path 'm'")
        for digest in self.digests:
            if not isinstance(digest, bytes) or len(digest) != DIGEST_LEN:
                raise _malformed(f"every digest is {DIGEST_LEN} bytes")
        if len(set(self.digests)) != len(self.digests):
            raise _malformed("a digest is listed twice")
        if self.kind == "sign":
            if not 1 <= len(self.digests) <= MAX_DIGESTS:
                raise _malformed(f"a sign certificate approves 1 to {MAX_DIGESTS} digests, not {len(self.digests)}")
            if self.params:
                raise _malformed("a sign certificate carries no params")
            if not 1 <= len(self.signers) <= MAX_SIGNERS or not all(
                _is_int(p) and 1 <= p <= MAX_SIGNERS for p in self.signers
            ):
                raise _malformed(f"a sign certificate names its signers: 1 to {MAX_SIGNERS} parties in 1..255")
            if list(self.signers) != sorted(set(self.signers)):
                raise _malformed("the signers must be listed once each, in ascending order")
        elif self.digests:
            raise _malformed(f"a {self.kind} certificate carries no digests")
        elif self.signers:
            raise _malformed(f"a {self.kind} certificate names no signers (every member takes part)")
        _check_params(self.params)
        if not _is_int(self.issued_at) or not 0 <= self.issued_at <= MAX_INT:
            raise _malformed("issued_at must be a non-negative integer (unix seconds)")
        if not _is_int(self.expires_at) or not self.issued_at < self.expires_at <= MAX_INT:
            raise _malformed("expires_at must be an integer after issued_at")
        if not isinstance(self.nonce, bytes) or len(self.nonce) != NONCE_LEN:
            raise _malformed(f"nonce must be {NONCE_LEN} bytes")
        if self.evidence is not None:
            if self.kind != "sign":
                raise _malformed(f"a {self.kind} certificate carries no evidence")
            if not isinstance(self.evidence, bytes) or not 1 <= len(self.evidence) <= MAX_EVIDENCE_LEN:
                raise _malformed(f"evidence must be 1 to {MAX_EVIDENCE_LEN} bytes")
            if len(self.digests) != 1:
                # The evidence describes one transaction; other digests would ride along unchecked.
                raise _malformed("a certificate with evidence approves exactly one digest")

    def encode(self) -> bytes:
        """The canonical CBOR that is signed (after :data:`DOMAIN`)."""
        fields: dict[str, Any] = {
            "version": self.version,
            "kind": self.kind,
            "authority_id": self.authority_id,
            "key_id": self.key_id,
            "path": self.path,
            "digests": list(self.digests),
            "params": dict(self.params),
            "issued_at": self.issued_at,
            "expires_at": self.expires_at,
            "nonce": self.nonce,
        }
        if self.evidence is not None:
            fields[_EVIDENCE_KEY] = self.evidence
        if self.kind == "sign":
            fields[_SIGNERS_KEY] = list(self.signers)
        return bytes(cbor2.dumps(fields, canonical=True))

    def to_json(self) -> dict[str, Any]:
        """The fields as JSON values (bytes as hex), for printing and logs."""
        return (
            {
                "version": self.version,
                "kind": self.kind,
                "authority_id": self.authority_id,
                "key_id": self.key_id,
                "path": self.path,
                "digests": [d.hex() for d in self.digests],
                "params": dict(self.params),
                "issued_at": self.issued_at,
                "expires_at": self.expires_at,
                "nonce": self.nonce.hex(),
            }
            | ({} if self.evidence is None else {_EVIDENCE_KEY: self.evidence.hex()})
            | ({_SIGNERS_KEY: list(self.signers)} if self.kind == "sign" else {})
        )


MESSAGE_DOMAIN: Final = b"harbour/approval/message/v1\x00"


def approved_digest(message: bytes) -> bytes:
    """The digest a ``sign`` certificate lists to approve signing ``message``.

    A 32-byte message (an ECDSA digest, a BIP-341 sighash) is listed as itself; a
    longer or shorter one (an Ed25519 message) by its domain-separated SHA-256. An
    approval of a digest therefore approves one message only, short of a preimage
    of that hash.
    """
    message = bytes(message)
    if len(message) == DIGEST_LEN:
        return message
    return hashlib.sha256(MESSAGE_DOMAIN + message).digest()


def certificate_hash(data: bytes) -> str:
    """SHA-256 (hex) of a certificate file: how logs refer to the exact certificate used."""
    return hashlib.sha256(bytes(data)).hexdigest()


def issue(
    authority: AuthorityKey,
    *,
    kind: str,
    key_id: str,
    path: str = "m",
    digests: Sequence[bytes] = (),
    params: Mapping[str, ParamValue] | None = None,
    now: int,
    expires_in: int,
    nonce: bytes | None = None,
    evidence: bytes | None = None,
    signers: Sequence[int] = (),
) -> bytes:
    """Sign a certificate valid from ``now`` for ``expires_in`` seconds; returns the file content.

    A ``sign`` certificate names its ``signers``: the parties of the key that run the
    session, which the authority chooses (the coordinator may not).

    The certificate is checked as strictly as :func:`parse` would, so an authority
    never signs something every node refuses. ``nonce`` is for known-answer tests
    only: a repeated nonce makes the second certificate a replay. ``evidence`` (a
    ``sign`` certificate of one digest) is :meth:`harbour.node.quorum.Evidence.encode`;
    only its size is checked here, its content by each node.
    """
    if not _is_int(expires_in) or not 0 < expires_in <= MAX_LIFETIME:
        raise _malformed(f"expires_in must be 1..{MAX_LIFETIME} seconds, got {expires_in!r}")
    if not _is_int(now) or now < 0:
        raise _malformed("now must be a non-negative integer (unix seconds)")
    if kind not in KINDS:
        raise _malformed(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")
    cert = Certificate(
        version=VERSION,
        kind=cast(Kind, kind),
        authority_id=authority.authority_id,
        key_id=key_id,
        path=path,
        digests=tuple(digests),
        params=dict(params or {}),
        issued_at=now,
        expires_at=now + expires_in,
        nonce=secrets.token_bytes(NONCE_LEN) if nonce is None else nonce,
        evidence=evidence,
        signers=tuple(signers),
    )
    cert.check()
    body = cert.encode()
    return bytes(cbor2.dumps({"cert": body, "sig": authority.sign(DOMAIN + body)}, canonical=True))


def _canonical_cbor(data: bytes, what: str) -> Any:
    try:
        return cbor.loads_canonical(data)
    except cbor.InvalidCbor as exc:
        raise _malformed(f"{what} is not valid CBOR") from exc
    except cbor.NotCanonical:
        raise _malformed(f"{what} is not canonical CBOR (or has trailing bytes)") from None


def parse_certificate(data: bytes) -> tuple[Certificate, bytes, bytes]:
    """The certificate, the signed bytes and the signature, strictly parsed but NOT verified.

    :func:`harbour.node.approval.verify` checks the signature over ``DOMAIN`` and the
    signed bytes; anything else should use :func:`parse`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError("a certificate is bytes")
    data = bytes(data)
    if len(data) > MAX_CERTIFICATE_LEN:
        raise _malformed(f"{len(data)} bytes, more than the {MAX_CERTIFICATE_LEN} a certificate can be")
    outer = _canonical_cbor(data, "the certificate file")
    if not isinstance(outer, dict) or set(outer) != {"cert", "sig"}:
        raise _malformed("the file is not a map of exactly 'cert' and 'sig'")
    body, sig = outer["cert"], outer["sig"]
    if not isinstance(body, bytes) or not isinstance(sig, bytes) or len(sig) != SIGNATURE_LEN:
        raise _malformed(f"'cert' must be bytes and 'sig' {SIGNATURE_LEN} bytes")
    fields = _canonical_cbor(body, "the certificate")
    if not isinstance(fields, dict):
        raise _malformed("the certificate is not a map")
    if fields.get("version") != VERSION or not _is_int(fields.get("version")):
        raise _malformed(f"unsupported version {fields.get('version')!r} (this Harbour reads {VERSION})")
    if fields.get("kind") not in KINDS:
        raise _malformed(f"unknown kind {fields.get('kind')!r}; one of {', '.join(KINDS)}")
    optional = {_EVIDENCE_KEY} | ({_SIGNERS_KEY} if fields["kind"] == "sign" else set())
    if set(fields) - optional != _CERT_KEYS:
        raise _malformed("missing or unexpected fields")
    if fields["kind"] == "sign" and not isinstance(fields.get(_SIGNERS_KEY), list):
        raise _malformed("a sign certificate names its signers (a list of parties)")
    digests, params = fields["digests"], fields["params"]
    if not isinstance(digests, list):
        raise _malformed("digests must be a list")
    if not isinstance(params, dict):
        raise _malformed("params must be a map")
    if fields["kind"] not in KINDS:
        raise _malformed(f"unknown kind {fields['kind']!r}; one of {', '.join(KINDS)}")
    if _EVIDENCE_KEY in fields and not isinstance(fields[_EVIDENCE_KEY], bytes):
        raise _malformed("evidence must be bytes")  # a null would be a second encoding of "no evidence"
    cert = Certificate(
        version=fields["version"],
        kind=fields["kind"],
        authority_id=fields["authority_id"],
        key_id=fields["key_id"],
        path=fields["path"],
        digests=tuple(digests),
        params=params,
        issued_at=fields["issued_at"],
        expires_at=fields["expires_at"],
        nonce=fields["nonce"],
        evidence=fields.get(_EVIDENCE_KEY),
        signers=tuple(fields.get(_SIGNERS_KEY, ())),
    )
    cert.check()
    return cert, body, sig


def parse(data: bytes) -> tuple[Certificate, bytes]:
    """The certificate and its signature, strictly parsed but NOT verified.

    For display and logs. Nothing about a parsed certificate may be trusted until
    :func:`harbour.node.approval.verify` accepts it.
    """
    cert, _, sig = parse_certificate(data)
    return cert, sig
