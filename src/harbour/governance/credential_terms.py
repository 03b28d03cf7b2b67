"""The terms an API credential is issued on: expiry, scopes, where it may be used from, and a request-signing key.

A credential with no terms works for everything its user's roles allow, from
anywhere, until it is revoked, as every credential did before terms existed.
Each term narrows that:

- ``expires``: the Unix time (seconds, UTC) from which the credential no longer authenticates;
- ``scopes``: ``full`` (all the user's roles allow), or some of ``read`` (GET
  requests only) and ``initiate`` (reads, and submitting, explaining and
  cancelling withdrawals): a read-only credential cannot submit, approve or
  propose anything;
- ``allow``: CIDR blocks; a request from any other address is refused;
- ``signing_key``: an Ed25519 public key; every request must then carry the
  holder's signature over its method, path, body hash, a timestamp and a nonce
  (:mod:`harbour.api.signing`), so a stolen bearer token alone is not enough.

An admin's credential is issued by a governance entry (``credential.issue``),
and its terms are part of that change, so the admins who sign the entry sign
the terms too. In the log the terms are optional keys of the change, each
present only when it narrows something: a change without terms encodes exactly
as it always did, so entries written before terms existed replay unchanged.
Each key has one canonical form (sorted scopes, CIDRs in ``ip_network`` form,
sorted), so one set of terms has one encoding.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any, Final

from harbour.governance import fields as f
from harbour.governance.fields import GovernanceError

FULL: Final = "full"
READ: Final = "read"
INITIATE: Final = "initiate"
SCOPES: Final = (FULL, INITIATE, READ)
MAX_NETWORKS: Final = 32
MAX_EXPIRES: Final = 2**40
"""Unix seconds: far past any credential's useful life, short of what a datetime cannot hold."""
KEYS: Final = frozenset({"expires", "scopes", "allow", "signing_key"})
"""The optional keys of a ``credential.issue`` change."""

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class CredentialTerms:
    expires: int | None = None
    scopes: tuple[str, ...] = (FULL,)
    allow: tuple[str, ...] = ()
    signing_key: bytes | None = None

    @property
    def networks(self) -> tuple[Network, ...]:
        return tuple(ipaddress.ip_network(cidr) for cidr in self.allow)

    def fields(self) -> dict[str, Any]:
        """The keys that narrow something, and only those (no terms: no keys)."""
        out: dict[str, Any] = {}
        if self.expires is not None:
            out["expires"] = self.expires
        if self.scopes != (FULL,):
            out["scopes"] = list(self.scopes)
        if self.allow:
            out["allow"] = list(self.allow)
        if self.signing_key is not None:
            out["signing_key"] = self.signing_key
        return out

    def describe(self) -> str:
        parts = []
        if self.scopes != (FULL,):
            parts.append(f"scopes {', '.join(self.scopes)}")
        if self.expires is not None:
            parts.append(f"expires at Unix time {self.expires}")
        if self.allow:
            parts.append(f"only from {', '.join(self.allow)}")
        if self.signing_key is not None:
            parts.append(f"requests signed by {self.signing_key.hex()}")
        return "; ".join(parts) if parts else "no restrictions"


NO_TERMS: Final = CredentialTerms()


def scopes(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(s, str) and s in SCOPES for s in value):
        raise GovernanceError("malformed", f"scopes must be a non-empty list drawn from {', '.join(SCOPES)}")
    if value != sorted(set(value)):
        raise GovernanceError("malformed", "scopes must be sorted and distinct")
    if FULL in value and len(value) > 1:
        raise GovernanceError("malformed", "the full scope includes every other; list it alone")
    return tuple(value)


def networks(value: object) -> tuple[str, ...]:
    """CIDR blocks in canonical form (``ip_network``'s own text, no host bits), sorted and distinct."""
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_NETWORKS:
        raise GovernanceError("malformed", f"allow must be a list of 1 to {MAX_NETWORKS} CIDR blocks")
    out = []
    for cidr in value:
        try:
            network = ipaddress.ip_network(cidr, strict=True) if isinstance(cidr, str) else None
        except ValueError:
            network = None
        if network is None or str(network) != cidr:
            raise GovernanceError("malformed", f"{cidr!r:.60} is not a CIDR block in canonical form (10.0.0.0/8)")
        out.append(cidr)
    if out != sorted(set(out)):
        raise GovernanceError("malformed", "allow must be sorted and distinct")
    return tuple(out)


def decode_terms(rest: dict[str, Any]) -> CredentialTerms:
    """The terms among a change's optional keys (present only when they narrow something)."""
    if "scopes" in rest and rest["scopes"] == [FULL]:
        raise GovernanceError("malformed", "scopes [full] is the default and is left out")
    return CredentialTerms(
        expires=f.uint("expires", rest["expires"], 1, MAX_EXPIRES) if "expires" in rest else None,
        scopes=scopes(rest["scopes"]) if "scopes" in rest else (FULL,),
        allow=networks(rest["allow"]) if "allow" in rest else (),
        signing_key=f.public_key("signing_key", rest["signing_key"]) if "signing_key" in rest else None,
    )
