"""Approval: whether a certificate authorises exactly the session a node is about to run.

A node joins a session only on a certificate (:mod:`harbour.node.certificate`)
from an authority it trusts (:mod:`harbour.node.authority`) that names exactly
what the session will do. :func:`verify` compares the two and, only if they
match, spends the certificate's nonce in the node's ledger
(:mod:`harbour.node.nonces`) so that one approval authorises one session: a
certificate captured on the wire and replayed is refused.

Verification is sans-I/O except for the ledger: the current time is an argument,
never read from the clock here, so tests and replays of an audit are exact.

The names of the authority and certificate modules are re-exported here, so
``approval.issue`` and ``approval.AuthorityKey`` keep working for callers that
deal with the whole approval flow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harbour.node.authority import (
    PRIVATE_FILE,
    PUBLIC_FILE,
    PUBLIC_FORMAT,
    PUBLIC_KEY_LEN,
    AuthorityKey,
    AuthorityKeyError,
    authority_id_of,
    is_encrypted_pem,
    parse_public_file,
    public_key_from_raw,
    trusted_authorities,
)
from harbour.node.certificate import (
    ADMIN_KINDS,
    DEFAULT_SKEW,
    DIGEST_LEN,
    DOMAIN,
    KEYLESS_KINDS,
    KINDS,
    MAX_CERTIFICATE_LEN,
    MAX_DIGESTS,
    MAX_EVIDENCE_LEN,
    MAX_INT,
    MAX_KEY_ID_LEN,
    MAX_LIFETIME,
    MAX_PARAM_VALUE_LEN,
    MAX_PARAMS,
    MAX_PATH_LEN,
    MAX_SIGNERS,
    MESSAGE_DOMAIN,
    SIGNATURE_LEN,
    VERSION,
    ApprovalError,
    Certificate,
    Kind,
    ParamValue,
    Reason,
    approved_digest,
    canonical_path,
    certificate_hash,
    issue,
    parse,
    parse_certificate,
)
from harbour.node.nonces import NonceLedger, Replayed

__all__ = [
    "ADMIN_KINDS",
    "DEFAULT_SKEW",
    "DIGEST_LEN",
    "DOMAIN",
    "KEYLESS_KINDS",
    "KINDS",
    "MAX_CERTIFICATE_LEN",
    "MAX_DIGESTS",
    "MAX_EVIDENCE_LEN",
    "MAX_INT",
    "MAX_KEY_ID_LEN",
    "MAX_LIFETIME",
    "MAX_PARAMS",
    "MAX_PARAM_VALUE_LEN",
    "MAX_PATH_LEN",
    "MAX_SIGNERS",
    "MESSAGE_DOMAIN",
    "PRIVATE_FILE",
    "PUBLIC_FILE",
    "PUBLIC_FORMAT",
    "PUBLIC_KEY_LEN",
    "SIGNATURE_LEN",
    "VERSION",
    "ApprovalError",
    "AuthorityKey",
    "AuthorityKeyError",
    "Certificate",
    "Kind",
    "ParamValue",
    "Reason",
    "approved_digest",
    "authority_id_of",
    "canonical_path",
    "certificate_hash",
    "is_encrypted_pem",
    "issue",
    "parse",
    "parse_public_file",
    "public_key_from_raw",
    "trusted_authorities",
    "verify",
]


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

    cert, body, sig = parse_certificate(data)
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
