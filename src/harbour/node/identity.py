"""Signer-node identities: the long-term key a node authenticates itself with.

A node has one long-term key pair, Ed25519, and it only ever *signs*: the session
handshakes that agree each session's ephemeral keys (:mod:`harbour.node.handshake`),
public protocol messages, acknowledgements and receipts. No message is encrypted to
a long-term key, so someone who steals a node's identity later cannot open traffic
they recorded before (forward secrecy); that is why an earlier X25519 encryption key
was dropped from the identity (version 2) rather than kept unused.

:class:`NodeIdentity` holds the private half. Its :meth:`~NodeIdentity.to_bytes` is
the raw private key in canonical CBOR, **in the clear**: callers encrypt it before it
is written anywhere (as key-share files are), since anyone holding it can act as the
node in every session it is not already part of.

:class:`NodeDescriptor` is the public half with a name and an address, what nodes
exchange to learn of each other. Its :attr:`~NodeDescriptor.node_id` is a fingerprint
of the public key only, so it survives a change of name or address and is short
enough for an operator to compare by eye when a descriptor is installed; a new key
(``harbour node rotate-keys``) is a new node id. Nothing in a descriptor
authenticates it: whoever hands a node a descriptor decides whom that node trusts,
so descriptors come from the operator (compare the node id out of band), not from
the relay.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass

import cbor2
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harbour.crypto.ed25519 import ED25519
from harbour.crypto.group import GroupError
from harbour.util import cbor
from harbour.util.strictjson import DuplicateKey, NotJsonConstant, loads_strict

IDENTITY_FORMAT = "harbour-node-identity"
IDENTITY_VERSION = 2
DESCRIPTOR_VERSION = 2
KEY_LEN = 32
NODE_ID_LEN = 16
"""Bytes of SHA-256 kept in a node id: 128 bits, so that finding two key sets with one id
(a birthday search, 2^64 work) is out of reach while the id stays short to read out."""

NODE_ID_DOMAIN = b"harbour/node-id/v2\x00"
MAX_IDENTITY_LEN = 256
MAX_DESCRIPTOR_LEN = 4096
MAX_NAME_LEN = 64

_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_URL = re.compile(r"(https?)://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_HEX_DIGITS = frozenset("0123456789abcdef")
_IDENTITY_KEYS = frozenset({"format", "v", "sign_sk"})
_DESCRIPTOR_KEYS = frozenset({"version", "name", "url", "node_id", "sign_pk"})


class IdentityError(ValueError):
    """A node identity or descriptor that cannot be used, and why."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())


def compute_node_id(sign_pk: bytes) -> str:
    """``hex(SHA-256(domain || sign_pk)[:16])``; the domain keeps the hash from meaning
    anything elsewhere (and from equalling a version-1 id, which also hashed a second key)."""
    return hashlib.sha256(NODE_ID_DOMAIN + sign_pk).digest()[:NODE_ID_LEN].hex()


def is_node_id(value: object) -> bool:
    """Whether ``value`` has the form of a node id (32 lowercase hex digits)."""
    return isinstance(value, str) and len(value) == 2 * NODE_ID_LEN and set(value) <= _HEX_DIGITS


def check_name(name: object) -> str:
    """A node name is a short label that is safe in file names, logs and URLs."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise IdentityError(f"node name {name!r} must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 . _ -")
    return name


def _check_host(host: str) -> None:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as exc:
            raise IdentityError(f"{host} is not an IPv6 address") from exc
        return
    if all(part.isdigit() for part in host.split(".")):
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise IdentityError(f"{host} is not an IPv4 address") from exc
        return
    labels = host.split(".")
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise IdentityError(f"{host!r} is not a valid host name")


def check_url(url: object) -> str:
    """``http://host:port`` or ``https://host:port`` and nothing else.

    No path, query, user info or default port: the address only says where the node
    listens, and every extra part is room for two spellings of one address (or for
    credentials pasted into a file that is meant to be shared). Plain http is allowed
    because messages are sealed end to end; transport security is not what protects them.
    """
    if not isinstance(url, str):
        raise IdentityError("the node URL must be a string")
    match = _URL.fullmatch(url)
    if match is None:
        raise IdentityError(f"node URL {url!r} must be http(s)://host:port, with nothing after the port")
    _, host, port = match.groups()
    _check_host(host)
    if port.startswith("0") or not 1 <= int(port) <= 65535:
        raise IdentityError(f"port {port} must be a number in 1..65535 without leading zeros")
    return url


def _check_sign_pk(sign_pk: object) -> bytes:
    if type(sign_pk) is not bytes or len(sign_pk) != KEY_LEN:
        raise IdentityError(f"the signing key must be {KEY_LEN} bytes")
    try:
        ED25519.decode_point(sign_pk)
    except GroupError as exc:
        raise IdentityError(f"the signing key is not a valid Ed25519 public key: {exc}") from exc
    return sign_pk


@dataclass(frozen=True, slots=True)
class NodeDescriptor:
    """A node's public identity: what other nodes need to verify it.

    Construction validates every field, so a descriptor that exists is usable; loading
    from JSON also checks the recorded node id against the keys, which catches a
    descriptor whose keys were swapped or mistyped while being copied around.
    """

    name: str
    url: str
    sign_pk: bytes

    def __post_init__(self) -> None:
        check_name(self.name)
        check_url(self.url)
        _check_sign_pk(self.sign_pk)

    @property
    def node_id(self) -> str:
        return compute_node_id(self.sign_pk)

    def sign_public_key(self) -> Ed25519PublicKey:
        return Ed25519PublicKey.from_public_bytes(self.sign_pk)

    def to_json(self) -> str:
        """Stable JSON (sorted keys), so a descriptor can be diffed and checked in."""
        return json.dumps(
            {
                "version": DESCRIPTOR_VERSION,
                "name": self.name,
                "url": self.url,
                "node_id": self.node_id,
                "sign_pk": self.sign_pk.hex(),
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeDescriptor:
        """Parse a descriptor: exact fields, lowercase hex keys, and a node id that matches them."""
        if len(text) > MAX_DESCRIPTOR_LEN:
            raise IdentityError(f"a node descriptor is at most {MAX_DESCRIPTOR_LEN} bytes")
        try:
            obj = loads_strict(text, max_depth=None)  # no deeper than MAX_DESCRIPTOR_LEN, checked above
        except DuplicateKey as exc:  # json would keep the last; two readers could then disagree on a field
            raise IdentityError(f"node descriptor has the field {exc.key!r} twice") from None
        except NotJsonConstant as exc:
            raise IdentityError(f"node descriptor contains {exc.name}, which is not JSON") from None
        except ValueError as exc:  # includes UnicodeDecodeError
            raise IdentityError(f"node descriptor is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise IdentityError("a node descriptor is a JSON object")
        if type(obj.get("version")) is int and obj["version"] != DESCRIPTOR_VERSION:
            raise IdentityError(
                f"unsupported node descriptor version {obj['version']!r} (this Harbour reads {DESCRIPTOR_VERSION}; "
                "a version-1 descriptor names a node created before forward secrecy, which must be created anew)"
            )
        if set(obj) != _DESCRIPTOR_KEYS:
            missing = sorted(_DESCRIPTOR_KEYS - set(obj))
            extra = sorted(set(obj) - _DESCRIPTOR_KEYS)
            raise IdentityError(f"node descriptor fields are wrong (missing: {missing}, unexpected: {extra})")
        if type(obj["version"]) is not int:
            raise IdentityError("the descriptor version must be an integer")
        sign_pk = _hex_key(obj["sign_pk"], "sign_pk")
        descriptor = cls(check_name(obj["name"]), check_url(obj["url"]), sign_pk)
        if not is_node_id(obj["node_id"]):
            raise IdentityError(f"node_id must be {2 * NODE_ID_LEN} lowercase hex digits")
        if obj["node_id"] != descriptor.node_id:
            raise IdentityError(
                f"node_id {obj['node_id']} does not match the keys (they give {descriptor.node_id}): "
                "the descriptor was altered or mixed up with another node's"
            )
        return descriptor


def _hex_key(value: object, field: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * KEY_LEN or not set(value) <= _HEX_DIGITS:
        raise IdentityError(f"{field} must be {2 * KEY_LEN} lowercase hex digits")
    return bytes.fromhex(value)


class NodeIdentity:
    """A node's private key: Ed25519, for signing only.

    Not a dataclass and without a revealing ``repr``, so the key does not end up in logs
    or tracebacks by accident. Python cannot erase it from memory afterwards (see
    SECURITY.md).
    """

    __slots__ = ("_node_id", "_sign_pk", "_sign_sk")

    def __init__(self, sign_sk: Ed25519PrivateKey) -> None:
        self._sign_sk = sign_sk
        self._sign_pk = _raw_public(sign_sk.public_key())
        self._node_id = compute_node_id(self._sign_pk)

    @classmethod
    def generate(cls) -> NodeIdentity:
        return cls(Ed25519PrivateKey.generate())

    @property
    def node_id(self) -> str:
        return self._node_id

    @property
    def sign_pk(self) -> bytes:
        return self._sign_pk

    def descriptor(self, name: str, url: str) -> NodeDescriptor:
        """The public descriptor to hand to other nodes' operators."""
        return NodeDescriptor(name, url, self._sign_pk)

    def sign(self, message: bytes) -> bytes:
        """An Ed25519 signature. Callers put a domain tag first (see ``handshake.py``)."""
        return self._sign_sk.sign(message)

    def to_bytes(self) -> bytes:
        """The raw private key as canonical CBOR, UNENCRYPTED: encrypt before storing.

        ``{"format": "harbour-node-identity", "v": 2, "sign_sk": <32>}``, the Ed25519
        key being its RFC 8032 seed.
        """
        return cbor2.dumps(
            {"format": IDENTITY_FORMAT, "v": IDENTITY_VERSION, "sign_sk": _raw_private(self._sign_sk)},
            canonical=True,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> NodeIdentity:
        """Strict inverse of :meth:`to_bytes`: one canonical encoding, nothing else."""
        data = bytes(data)
        if len(data) > MAX_IDENTITY_LEN:
            raise IdentityError("too large to be a node identity")
        try:
            decoded = cbor.decode(data)
        except cbor.InvalidCbor as exc:
            raise IdentityError("node identity is truncated or corrupted (not valid CBOR)") from exc
        obj = decoded.value
        if not isinstance(obj, dict) or obj.get("format") != IDENTITY_FORMAT:
            raise IdentityError("not a Harbour node identity")
        if type(obj.get("v")) is not int or obj["v"] != IDENTITY_VERSION:
            raise IdentityError(
                f"unsupported node identity version {obj.get('v')!r} (this Harbour reads {IDENTITY_VERSION}; "
                "version 1 had a long-term encryption key, which a forward-secret node must not have: "
                "create the node anew)"
            )
        if set(obj) != _IDENTITY_KEYS:
            raise IdentityError("node identity has missing or unexpected fields")
        if not decoded.canonical:
            raise IdentityError("node identity is not canonically encoded")
        sign_sk = obj["sign_sk"]
        if type(sign_sk) is not bytes or len(sign_sk) != KEY_LEN:
            raise IdentityError(f"the node identity key must be {KEY_LEN} bytes")
        return cls(Ed25519PrivateKey.from_private_bytes(sign_sk))

    def __repr__(self) -> str:
        return f"NodeIdentity(node_id={self._node_id})"
