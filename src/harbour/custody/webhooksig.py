"""Signed webhook deliveries: the signature, the keys that make it, and the receiver's check.

Each organisation has its own Ed25519 webhook key, derived from the service's
webhook master key (``webhook.key`` in the custody home, outside the database)
and the organisation's id; ``GET /v1/webhooks/signing-key`` publishes its public
half. Ed25519 rather than an HMAC secret per endpoint, because then nothing that
can forge a delivery lives in the database (a dump or a read replica gives no
signing power) nor at the receiver (which holds only a public key, so a leak on
its side forges nothing either), and one published key serves every endpoint.

A delivery carries four headers besides its JSON body::

    Harbour-Webhook-Endpoint: <endpoint id>   the endpoint it was sent to
    Harbour-Webhook-Id: <event id>            the same on every retry of one event
    Harbour-Webhook-Timestamp: <unix seconds> when this attempt was signed
    Harbour-Webhook-Signature: ed25519=<hex>  over SIGNING_DOMAIN, endpoint, id, timestamp and body

The endpoint is signed because one key serves all of an organisation's
endpoints: without it, a receiver could pass a delivery it got on to another
receiver of the same organisation, which would take it as its own.

:func:`verify` is the receiver's check: the signature under the key it pinned,
for the endpoint id it pinned, the timestamp within :data:`TOLERANCE` of its clock, and, with a
:class:`ReplayGuard`, an id it has not accepted before. A delivery that fails
any of them must be refused. This module imports only PyNaCl and the standard
library, so a receiver can use it without the service.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

SIGNING_DOMAIN: Final = b"harbour/webhook/v2\x00"
KEY_DOMAIN: Final = b"harbour/webhook-key/v1\x00"
ENDPOINT_HEADER: Final = "Harbour-Webhook-Endpoint"
ID_HEADER: Final = "Harbour-Webhook-Id"
TIMESTAMP_HEADER: Final = "Harbour-Webhook-Timestamp"
SIGNATURE_HEADER: Final = "Harbour-Webhook-Signature"
SCHEME: Final = "ed25519="
TOLERANCE: Final = 300
"""Seconds a receiver accepts a timestamp away from its own clock (and remembers ids for)."""
MAX_ID: Final = 64


class WebhookRejected(ValueError):
    """A delivery that must not be acted on: forged, altered, stale or replayed."""


class Replayed(WebhookRejected):
    """A genuine, fresh delivery of an event accepted before: a retry after a lost answer, or a replay."""


def message(endpoint_id: str, event_id: str, timestamp: int, body: bytes) -> bytes:
    """The bytes signed: the domain, then endpoint, id and timestamp as NUL-terminated text, then the body as sent."""
    fields = (endpoint_id, event_id, str(timestamp))
    return SIGNING_DOMAIN + b"".join(f.encode() + b"\x00" for f in fields) + body


@dataclass(frozen=True)
class WebhookKeys:
    """Each organisation's webhook signing key, derived from one master key the service keeps on disk."""

    master: bytes

    def __post_init__(self) -> None:
        if len(self.master) != 32:
            raise ValueError("the webhook master key is 32 bytes")

    def signing_key(self, org_id: str) -> SigningKey:
        seed = hmac.new(self.master, KEY_DOMAIN + org_id.encode(), hashlib.sha256).digest()
        return SigningKey(seed)

    def public_key(self, org_id: str) -> bytes:
        return bytes(self.signing_key(org_id).verify_key)

    def headers(
        self, org_id: str, endpoint_id: str, event_id: str, body: bytes, timestamp: int | None = None
    ) -> dict[str, str]:
        """The headers that sign ``body`` as event ``event_id`` of ``org_id`` for ``endpoint_id``, timestamped now."""
        at = int(time.time()) if timestamp is None else timestamp
        signature = self.signing_key(org_id).sign(message(endpoint_id, event_id, at, body)).signature
        return {
            ENDPOINT_HEADER: endpoint_id,
            ID_HEADER: event_id,
            TIMESTAMP_HEADER: str(at),
            SIGNATURE_HEADER: SCHEME + signature.hex(),
        }


class ReplayGuard:
    """The event ids a receiver accepted in the last :data:`TOLERANCE` seconds (older ones fail on their timestamp).

    One per receiver process; a receiver with several processes keeps the ids in
    its shared store instead (a unique key with an expiry), the same way.
    """

    def __init__(self, tolerance: int = TOLERANCE) -> None:
        self.tolerance = tolerance
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def accept(self, event_id: str, now: float) -> None:
        """Remember ``event_id``; WebhookRejected if it was accepted already."""
        with self._lock:
            for old in [i for i, at in self._seen.items() if at < now - 2 * self.tolerance]:
                del self._seen[old]
            if event_id in self._seen:
                raise Replayed(f"event {event_id} was delivered already (a replay, or a retry of a success)")
            self._seen[event_id] = now


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    raise WebhookRejected(f"no {name} header")


def verify(
    public_key: bytes,
    endpoint_id: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE,
    replay: ReplayGuard | None = None,
) -> str:
    """The event id of a genuine, fresh, first-seen delivery; WebhookRejected otherwise.

    ``public_key`` is the organisation's published key and ``endpoint_id`` the id of the
    receiver's own endpoint, both pinned by the receiver (never taken from the request).
    ``body`` is the raw bytes received, before any JSON parsing.
    """
    if _header(headers, ENDPOINT_HEADER) != endpoint_id:
        raise WebhookRejected(f"the delivery was sent to another endpoint, not {endpoint_id}")
    event_id = _header(headers, ID_HEADER)
    stamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    if not event_id or len(event_id) > MAX_ID or not event_id.isascii():
        raise WebhookRejected("malformed event id")
    if not (stamp.isascii() and stamp.isdigit() and len(stamp) <= 12):
        raise WebhookRejected("malformed timestamp")
    if not signature.startswith(SCHEME):
        raise WebhookRejected(f"the signature is not {SCHEME}<hex>")
    try:
        raw = bytes.fromhex(signature.removeprefix(SCHEME))
        VerifyKey(public_key).verify(message(endpoint_id, event_id, int(stamp), body), raw)
    except (ValueError, BadSignatureError):
        raise WebhookRejected("the signature does not verify under the organisation's webhook key") from None
    clock = time.time() if now is None else now
    if abs(clock - int(stamp)) > tolerance:
        raise WebhookRejected(f"the timestamp is more than {tolerance} s from now: stale, or a replay")
    if replay is not None:
        replay.accept(event_id, clock)
    return event_id


__all__ = [
    "ENDPOINT_HEADER",
    "ID_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE",
    "ReplayGuard",
    "Replayed",
    "WebhookKeys",
    "WebhookRejected",
    "message",
    "verify",
]
