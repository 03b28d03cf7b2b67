"""Signed API requests: the one message a client signs and the server checks (Ed25519).

A bearer token is a password sent with every request; whoever copies it (from
a log, a proxy, a process list) can use it. A credential issued with a signing
key also needs the holder's private key: each request carries an Ed25519
signature over exactly this message (UTF-8, lines joined by ``\\n``)::

    harbour-request-v1
    <METHOD>                       upper case: GET, POST
    <target>                       the raw path and query as sent: /v1/transactions?limit=5
    <sha256 of the body, hex>      of the empty string for a request without one
    <timestamp>                    Unix seconds, decimal
    <nonce>                        16..64 of A-Z a-z 0-9 _ -, never reused

in three headers: ``Harbour-Timestamp``, ``Harbour-Nonce`` and
``Harbour-Signature`` (128 lower-case hex). The server refuses a timestamp
outside its clock window and a nonce it has seen, so a captured request cannot
be replayed; the body hash binds the body, so it cannot be swapped.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

VERSION: Final = "harbour-request-v1"
TIMESTAMP: Final = "Harbour-Timestamp"
NONCE: Final = "Harbour-Nonce"
SIGNATURE: Final = "Harbour-Signature"
NONCE_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{16,64}")
SIGNATURE_PATTERN: Final = re.compile(r"[0-9a-f]{128}")
TIMESTAMP_PATTERN: Final = re.compile(r"[0-9]{1,12}")


def message(method: str, target: str, body: bytes, timestamp: str, nonce: str) -> bytes:
    """The bytes signed: version, method, target, body hash, timestamp, nonce, one per line."""
    lines = (VERSION, method.upper(), target, hashlib.sha256(body).hexdigest(), timestamp, nonce)
    return "\n".join(lines).encode()


def sign(key: Ed25519PrivateKey, method: str, target: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The three headers that sign this request with ``key``."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = secrets.token_urlsafe(24)
    signature = key.sign(message(method, target, body, timestamp, nonce)).hex()
    return {TIMESTAMP: timestamp, NONCE: nonce, SIGNATURE: signature}


def verify(public: bytes, signature_hex: str, signed: bytes) -> bool:
    if not SIGNATURE_PATTERN.fullmatch(signature_hex):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(bytes.fromhex(signature_hex), signed)
    except (InvalidSignature, ValueError):
        return False
    return True
