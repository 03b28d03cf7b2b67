"""Enforcing a credential's terms on each request: where it comes from, its signature, its scope.

The service authenticates the token and says on which terms the credential was
issued (:mod:`harbour.governance.credential_terms`); this module checks the
request against them, after authentication and before the role check, so a
refusal here costs the caller as much as a bad token does:

- the client's address must fall in one of the credential's CIDR blocks (403);
- a credential with a signing key needs a valid signature
  (:mod:`harbour.util.request_signing`) with a timestamp within
  :data:`CLOCK_WINDOW` seconds of the server's clock and a nonce not seen
  before in that window (401 otherwise);
- a ``read`` credential may only read, an ``initiate`` one may also submit,
  explain and cancel withdrawals (403 otherwise).

Nonces are kept in the service's database (:mod:`harbour.custody.requestnonces`)
for as long as their timestamp could pass: a request is accepted once, whichever of
several service processes on one database it reaches, and no number of other
requests makes a nonce forgotten sooner.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from typing import Final

from harbour.custody.errors import Forbidden, Unauthorized
from harbour.governance import credential_terms as ct
from harbour.util import request_signing as rs

CLOCK_WINDOW: Final = 300
"""Seconds a signed request's timestamp may differ from the server's clock."""
INITIATE_ROUTES: Final = frozenset(
    {
        ("POST", "/v1/transactions"),
        ("POST", "/v1/transactions/explain"),
        ("POST", "/v1/transactions/{tx_id}/cancel"),
    }
)
ANY_SCOPE_ROUTES: Final = frozenset({("POST", "/v1/credentials/{credential_id}/revoke")})
"""A credential of any scope may revoke itself: its holder may always give it up."""


def scope_allows(scopes: tuple[str, ...], method: str, path: str) -> bool:
    if ct.FULL in scopes or method == "GET" or (method, path) in ANY_SCOPE_ROUTES:
        return True
    return ct.INITIATE in scopes and (method, path) in INITIATE_ROUTES


def check_scope(terms: ct.CredentialTerms, method: str, path: str) -> None:
    if not scope_allows(terms.scopes, method, path):
        raise Forbidden(f"this credential's scopes ({', '.join(terms.scopes)}) do not allow {method} {path}")


def check_address(terms: ct.CredentialTerms, client: str | None) -> None:
    if not terms.allow:
        return
    try:
        address = ipaddress.ip_address(client or "")
    except ValueError:
        address = None
    if address is None or not any(address in network for network in terms.networks):
        raise Forbidden(f"this credential may not be used from {client or 'an unknown address'}")


UseNonce = Callable[[str, str, float], bool]
"""Record (credential id, nonce) for so many seconds: True the first time, False for a replay."""


class Nonces:
    """The clock window and the store of used nonces (the service's database, shared by its processes)."""

    def __init__(self, use: UseNonce, window: float = CLOCK_WINDOW, clock: Callable[[], float] = time.time) -> None:
        self.use = use
        self.window = window
        self.clock = clock

    def fresh(self, credential_id: str, nonce: str) -> bool:
        """True the first time (credential, nonce) is offered while its timestamp can pass; False for a replay."""
        return self.use(credential_id, nonce, 2 * self.window)  # a timestamp may be window early or late


def check_signature(
    terms: ct.CredentialTerms,
    credential_id: str,
    method: str,
    target: str,
    body: bytes,
    headers: dict[str, str],
    nonces: Nonces,
) -> None:
    if terms.signing_key is None:
        return
    timestamp = headers.get(rs.TIMESTAMP.lower(), "")
    nonce = headers.get(rs.NONCE.lower(), "")
    signature = headers.get(rs.SIGNATURE.lower(), "")
    if not (timestamp and nonce and signature):
        raise Unauthorized(
            f"this credential signs its requests: send {rs.TIMESTAMP}, {rs.NONCE} and {rs.SIGNATURE} (docs/api.md)"
        )
    if not rs.TIMESTAMP_PATTERN.fullmatch(timestamp) or not rs.NONCE_PATTERN.fullmatch(nonce):
        raise Unauthorized(f"{rs.TIMESTAMP} must be Unix seconds and {rs.NONCE} 16..64 of A-Za-z0-9_-")
    if abs(nonces.clock() - int(timestamp)) > nonces.window:
        raise Unauthorized(f"the request's timestamp is more than {nonces.window:g} s from the server's clock")
    if not rs.verify(terms.signing_key, signature, rs.message(method, target, body, timestamp, nonce)):
        raise Unauthorized("the request signature does not verify under the credential's signing key")
    if not nonces.fresh(credential_id, nonce):
        raise Unauthorized("this nonce was used already: a replayed request")
