"""Approval certificates: a signer node's own proof that a session was authorised.

A node holds a key share and will take part in any protocol run it is asked to
join, so the decision *whether* to sign cannot rest with whoever relays the
request (a coordinator, an API server, a compromised peer). Instead the node is
configured with the public keys of one or more approval authorities, and joins a
session only with a certificate from one of them that names exactly what the
session will do:

- ``sign``: this key, this derivation path, a digest from the certificate's list,
  and exactly this set of signers (so one certificate is one signature even where
  two disjoint sets of ``t`` nodes exist);
- ``keygen``, ``refresh``, ``reshare``: this key id and these parameters (scheme,
  threshold, parties, ...), compared exactly.

A certificate file is canonical CBOR ``{"cert": <bytes>, "sig": <64 bytes>}``
where ``cert`` is the canonical CBOR of the fields of :class:`Certificate` and
``sig`` is Ed25519 over ``DOMAIN || cert``. The domain tag keeps the authority's
signatures on certificates from being valid on anything else it might sign.

Every certificate carries an expiry and a 16-byte random nonce, and a node records
each nonce it accepts (:class:`NonceLedger`) so that one approval authorises one
session: a certificate captured on the wire and replayed is refused.

Verification is sans-I/O except for the ledger: the current time is an argument,
never read from the clock here, so tests and replays of an audit are exact.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal, cast, get_args

import cbor2
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harbour.mpc import hd
from harbour.node.nonces import NONCE_LEN, NonceLedger, Replayed
from harbour.util import cbor
from harbour.util.files import write_atomic

VERSION: Final = 2
"""Version 2 added the signer set of a sign certificate; a version-1 certificate is refused as such."""
DOMAIN: Final = b"harbour/approval-certificate/v1\x00"
"""Prefix of every signed message, so a certificate signature verifies as nothing else."""

Kind = Literal["sign", "keygen", "refresh", "reshare", "rotate"]
KINDS: Final[tuple[str, ...]] = get_args(Kind)
ADMIN_KINDS: Final = ("keygen", "refresh", "reshare", "rotate")
"""``rotate`` approves a node's new identity (``params = {"old", "new"}``, node ids): no key, so no key id."""

DIGEST_LEN: Final = 32
SIGNATURE_LEN: Final = 64
PUBLIC_KEY_LEN: Final = 32
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

PRIVATE_FILE: Final = "authority.key"
PUBLIC_FILE: Final = "authority.pub"
PUBLIC_FORMAT: Final = "harbour-approval-authority"

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


class AuthorityKeyError(ValueError):
    """An authority key file that cannot be read or does not match its public half."""


def _malformed(what: str) -> ApprovalError:
    return ApprovalError("malformed", f"malformed approval certificate: {what}")


# -- the authority's key -------------------------------------------------------------------------------


def authority_id_of(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo.

    The same fingerprint as recovery keys use, reproducible with
    ``openssl pkey -pubin -outform DER | sha256sum`` from a PEM copy.
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_key_from_raw(raw: bytes) -> Ed25519PublicKey:
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_LEN:
        raise AuthorityKeyError(f"an Ed25519 public key is {PUBLIC_KEY_LEN} bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise AuthorityKeyError(f"not an Ed25519 public key: {exc}") from None


def trusted_authorities(*keys: Ed25519PublicKey | bytes) -> dict[str, Ed25519PublicKey]:
    """The ``trusted`` mapping :func:`verify` takes, keyed by each key's authority id."""
    out = {}
    for key in keys:
        public = public_key_from_raw(key) if isinstance(key, bytes) else key
        out[authority_id_of(public)] = public
    return out


def parse_public_file(data: bytes) -> tuple[str, Ed25519PublicKey]:
    """``authority.pub``: the authority id and key, checked against each other.

    This is what a node is configured with; a file whose id does not match its key
    was edited, and trusting either half would be a guess.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise AuthorityKeyError("the authority public-key file is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != PUBLIC_FORMAT:
        raise AuthorityKeyError("not a Harbour approval-authority public-key file")
    if doc.get("version") != VERSION or doc.get("algorithm") != "ed25519":
        raise AuthorityKeyError(f"unsupported authority key (version {doc.get('version')!r}, {doc.get('algorithm')!r})")
    raw, claimed = doc.get("public_key"), doc.get("authority_id")
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9a-f]{64}", raw):
        raise AuthorityKeyError("public_key must be 64 lowercase hex digits")
    public = public_key_from_raw(bytes.fromhex(raw))
    if claimed != authority_id_of(public):
        raise AuthorityKeyError("authority_id does not match the public key (edited?)")
    return claimed, public


@dataclass(frozen=True)
class AuthorityKey:
    """An approval authority's Ed25519 signing key.

    It belongs on a machine (or HSM) apart from the signer nodes: whoever holds it
    decides what the nodes sign.
    """

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> AuthorityKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_bytes(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def authority_id(self) -> str:
        return authority_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def public_document(self) -> dict[str, Any]:
        """What ``authority.pub`` holds, for nodes to be configured with."""
        return {
            "format": PUBLIC_FORMAT,
            "version": VERSION,
            "algorithm": "ed25519",
            "public_key": self.public_bytes.hex(),
            "authority_id": self.authority_id,
        }

    def save(self, directory: Path, *, passphrase: bytes | None = None) -> None:
        """Write ``authority.key`` (PKCS#8 PEM, owner-only) and ``authority.pub`` (JSON).

        Neither replaces an existing file: overwriting an authority key would strand
        every node configured with the old one, and silently.
        """
        directory = Path(directory)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        pem = self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        if (directory / PUBLIC_FILE).exists():
            raise FileExistsError(f"{directory / PUBLIC_FILE} exists")
        write_atomic(directory / PRIVATE_FILE, pem, mode=0o600, overwrite=False)
        public = json.dumps(self.public_document(), indent=2).encode() + b"\n"
        write_atomic(directory / PUBLIC_FILE, public, mode=0o644, overwrite=False)

    @classmethod
    def load(cls, directory: Path, *, passphrase: bytes | None = None) -> AuthorityKey:
        """Read the key from ``directory``; ``authority.pub``, if present, must be its public half."""
        directory = Path(directory)
        pem = (directory / PRIVATE_FILE).read_bytes()
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase)
        except TypeError as exc:  # a passphrase for a clear key, or none for an encrypted one
            raise AuthorityKeyError(f"cannot load the authority key: {exc}") from None
        except (ValueError, UnsupportedAlgorithm):
            raise AuthorityKeyError("cannot load the authority key (wrong passphrase, or not a PEM key)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AuthorityKeyError(f"the authority key must be Ed25519, not {type(key).__name__}")
        authority = cls(key)
        public_path = directory / PUBLIC_FILE
        if public_path.exists():
            claimed, _ = parse_public_file(public_path.read_bytes())
            if claimed != authority.authority_id:
                raise AuthorityKeyError(f"{public_path} belongs to another key than {directory / PRIVATE_FILE}")
        return authority


def is_encrypted_pem(pem: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem


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
        if not self.key_id and self.kind not in ("keygen", "rotate"):
            raise _malformed(f"a {self.kind} certificate must name its key_id")
        if self.key_id and self.kind == "rotate":
            raise _malformed("a rotate certificate is about a node, not a key: its key_id is empty")
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
        return {
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
        } | ({} if self.evidence is None else {_EVIDENCE_KEY: self.evidence.hex()}) | (
            {_SIGNERS_KEY: list(self.signers)} if self.kind == "sign" else {}
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


def _parse(data: bytes) -> tuple[Certificate, bytes, bytes]:
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
    :func:`verify` accepts it.
    """
    cert, _, sig = _parse(data)
    return cert, sig


# -- verification --------------------------------------------------------------------------------------


def _same_params(granted: Mapping[str, ParamValue], requested: Mapping[str, ParamValue]) -> bool:
    # Types matter: the integer 3 and the string "3" are different approvals.
    if set(granted) != set(requested):
        return False
    return all(type(granted[k]) is type(requested[k]) and granted[k] == requested[k] for k in granted)


def verify(
    data: bytes,
    trusted: Mapping[str, Ed25519PublicKey],
    *,
    now: int,
    kind: str,
    key_id: str,
    path: str,
    digest: bytes | None = None,
    signers: Sequence[int] | None = None,
    params: Mapping[str, ParamValue] | None = None,
    ledger: NonceLedger,
    skew: int = DEFAULT_SKEW,
    max_lifetime: int = MAX_LIFETIME,
    evidence_check: Callable[[Certificate], None] | None = None,
) -> Certificate:
    """Accept ``data`` as approval for exactly this request, or raise ApprovalError.

    The arguments describe what the node is about to do: for ``sign`` the key,
    path, digest and signer set of the session; for the admin kinds the key id and
    parameters.
    Every comparison is exact. ``skew`` tolerates an authority whose clock runs
    ahead of ours (a certificate is usable from ``issued_at - skew``); expiry has no
    grace. The nonce is consumed last, only once everything else holds, so a
    certificate refused for any other reason can still be used for its own request.
    Calling this is a commitment: an accepted certificate is spent.

    ``evidence_check`` runs on a certificate that passed every other check, just
    before its nonce is spent, and refuses it by raising ApprovalError: that is where
    a node re-checks the approvers' evidence (node/quorum.py), so a certificate
    whose evidence is refused stays unspent like any other refused certificate.
    Without it a certificate's evidence is not looked at.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown request kind {kind!r}")
    if kind == "sign" and (digest is None or signers is None or params is not None):
        raise ValueError("a signing request names its digest and signers, and no params")
    if kind != "sign" and (digest is not None or signers is not None or params is None):
        raise ValueError(f"a {kind} request names its params and no digest or signers")
    if skew < 0 or max_lifetime <= 0:
        raise ValueError("skew must be non-negative and max_lifetime positive")

    cert, body, sig = _parse(data)
    public = trusted.get(cert.authority_id)
    if public is None:
        raise ApprovalError("untrusted", f"certificate issued by authority {cert.authority_id}, which is not trusted")
    if authority_id_of(public) != cert.authority_id:
        # A configuration error, but acting on it would trust a key under another's name.
        raise ApprovalError("untrusted", f"the key configured for authority {cert.authority_id} has another id")
    try:
        public.verify(sig, DOMAIN + body)
    except InvalidSignature:
        raise ApprovalError(
            "signature", f"bad signature: the certificate was not signed by authority {cert.authority_id}"
        ) from None

    if cert.kind != kind:
        raise ApprovalError("kind", f"certificate approves a {cert.kind}, not a {kind}")
    if cert.key_id != key_id:
        raise ApprovalError("key", f"certificate is for key {cert.key_id!r}, not {key_id!r}")
    if cert.path != path:
        raise ApprovalError("path", f"certificate is for path {cert.path!r}, not {path!r}")
    if kind == "sign":
        if digest not in cert.digests:
            shown = digest.hex() if isinstance(digest, bytes) else repr(digest)
            raise ApprovalError("digest", f"digest {shown} is not approved by the certificate")
        if signers is None or tuple(sorted(signers)) != cert.signers:
            raise ApprovalError(
                "signers",
                f"certificate approves signing by parties {list(cert.signers)}, not {sorted(signers or [])}",
            )
    elif params is not None and not _same_params(cert.params, params):
        raise ApprovalError("params", f"certificate approves params {dict(cert.params)}, not {dict(params)}")

    if cert.expires_at - cert.issued_at > max_lifetime:
        raise ApprovalError(
            "lifetime",
            f"certificate is valid for {cert.expires_at - cert.issued_at} s, longer than the {max_lifetime} s allowed",
        )
    if now < cert.issued_at - skew:
        raise ApprovalError(
            "not-yet-valid", f"certificate is not valid yet (issued at {cert.issued_at}, now {now}; clock skew?)"
        )
    if now > cert.expires_at:
        raise ApprovalError("expired", f"certificate expired at {cert.expires_at} (now {now})")
    if evidence_check is not None:
        evidence_check(cert)
    try:
        ledger.consume(cert.authority_id, cert.nonce, cert.expires_at)
    except Replayed as exc:
        raise ApprovalError("replayed", str(exc)) from None
    return cert
