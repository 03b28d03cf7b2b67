"""A signer node's signed statement that it holds a share of a key, for one organisation.

The authority's keygen certificate decides which organisation a new key belongs
to, and which nodes hold its shares. A compromised authority could make a vault's
key bound to no organisation, or to a fake one it enrolled, or give shares to nodes
of its own; the admins who sign ``vault.add`` would see only a key id. So a
``vault.add`` carries, for the key it names, a statement from every node of the
key's committee, each signed by that node's identity key (Ed25519, RFC 8032):
"I hold a share of this key, this public key and chain code, ``threshold`` of
these nodes, bound to the organisation of this genesis". The entry applies only
if every committee member is one of the organisation's nodes (``node.add``, which
the admin quorum signed) and each one's statement is there and says exactly that
(:func:`check`). The nodes then know which keys are the organisation's vaults
from signatures they can check themselves, and the admins approve a vault whose
address is derived from the public key they see.

A statement is canonical CBOR ``{"statement": <body>, "signature": <64 bytes>}``,
the signature the node's identity key's over :data:`DOMAIN` and the body::

    {"version": 1, "type": "harbour-key-holding", "node": <32-byte identity key>,
     "org": <32-byte genesis hash>, "key_id": <text>, "public_key": <33 bytes>,
     "chain_code": <32 bytes>, "threshold": <int>, "holders": [<identity key>, ...]}

``holders`` is the key's whole committee, sorted; ``public_key`` the compressed
SEC 1 secp256k1 point (vault keys are threshold ECDSA).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harbour.governance import fields as f
from harbour.governance.fields import GovernanceError

DOMAIN: Final = b"harbour/key-holding/v1\x00"
"""Prefix of what a node signs: its identity signature over a holding statement verifies as nothing else."""
TYPE: Final = "harbour-key-holding"
VERSION: Final = 1
MAX_HOLDERS: Final = 64
MAX_STATEMENT_LEN: Final = 4096
PUBLIC_KEY_LEN: Final = 33
CHAIN_CODE_LEN: Final = 32
_BODY_KEYS: Final = frozenset(
    {"version", "type", "node", "org", "key_id", "public_key", "chain_code", "threshold", "holders"}
)


@dataclass(frozen=True)
class Holding:
    """What every holder of one key states alike; :class:`HoldingStatement` adds which holder says it."""

    org: bytes
    key_id: str
    public_key: bytes
    chain_code: bytes
    threshold: int
    holders: tuple[bytes, ...]

    def __post_init__(self) -> None:
        f.digest("org", self.org)
        f.text("key id", self.key_id)
        point(self.public_key)
        if type(self.chain_code) is not bytes or len(self.chain_code) != CHAIN_CODE_LEN:
            raise GovernanceError("malformed", f"a chain code is {CHAIN_CODE_LEN} bytes")
        holders = tuple(self.holders)
        if not 2 <= len(holders) <= MAX_HOLDERS or list(holders) != sorted(set(holders)):
            raise GovernanceError("malformed", f"holders are 2 to {MAX_HOLDERS} distinct node keys, sorted")
        for holder in holders:
            f.public_key("a holder's identity key", holder)
        object.__setattr__(self, "holders", holders)
        f.uint("threshold", self.threshold, 2, len(holders))

    def fields(self) -> dict[str, object]:
        """The fields as CBOR carries them, in a statement and in a ``vault.add`` alike."""
        return {
            "org": self.org,
            "key_id": self.key_id,
            "public_key": self.public_key,
            "chain_code": self.chain_code,
            "threshold": self.threshold,
            "holders": list(self.holders),
        }


@dataclass(frozen=True)
class HoldingStatement:
    node: bytes
    """The stating node's identity key (Ed25519), one of :attr:`holding`'s holders."""
    holding: Holding

    def body(self) -> bytes:
        body = {"version": VERSION, "type": TYPE, "node": self.node, **self.holding.fields()}
        return bytes(cbor2.dumps(body, canonical=True))


def point(value: object) -> bytes:
    """A compressed SEC 1 point's encoding (33 bytes, 02 or 03 first); whether it is on the curve is the key's check."""
    if type(value) is not bytes or len(value) != PUBLIC_KEY_LEN or value[0] not in (2, 3):
        raise GovernanceError("malformed", f"a vault's public key is a {PUBLIC_KEY_LEN}-byte compressed point")
    return value


def sign(node: bytes, holding: Holding, signer: Callable[[bytes], bytes]) -> bytes:
    """The statement of the node whose identity key is ``node``; ``signer`` signs with that key."""
    if node not in holding.holders:
        raise ValueError("a node states only what it holds: it is not among the key's holders")
    body = HoldingStatement(node, holding).body()
    return bytes(cbor2.dumps({"statement": body, "signature": signer(DOMAIN + body)}, canonical=True))


def parse(data: object) -> tuple[HoldingStatement, bytes, bytes]:
    """``(statement, body, signature)``, strictly parsed but NOT verified; GovernanceError("malformed") otherwise."""
    body, decoded, signature = f.signed_envelope(data, "a holding statement", MAX_STATEMENT_LEN)
    obj = f.exact_map("a holding statement's body", decoded, _BODY_KEYS)
    if type(obj["version"]) is not int or obj["version"] != VERSION or obj["type"] != TYPE:
        raise GovernanceError("malformed", f"not a version {VERSION} {TYPE} statement")
    holders = obj["holders"]
    if not isinstance(holders, list):
        raise GovernanceError("malformed", "holders must be a list")
    statement = HoldingStatement(
        f.public_key("the stating node's key", obj["node"]),
        Holding(obj["org"], obj["key_id"], obj["public_key"], obj["chain_code"], obj["threshold"], tuple(holders)),
    )
    if statement.node not in statement.holding.holders:
        raise GovernanceError("malformed", "the stating node is not among the key's holders")
    return statement, body, signature


def verified(data: object, node: bytes) -> Holding:
    """What the node whose identity key is ``node`` states in ``data``; GovernanceError unless it signed it."""
    statement, body, signature = parse(data)
    if statement.node != node:
        raise GovernanceError("signer", f"a holding statement by {statement.node.hex()[:16]}, not {node.hex()[:16]}")
    try:
        Ed25519PublicKey.from_public_bytes(node).verify(signature, DOMAIN + body)
    except (InvalidSignature, ValueError):
        raise GovernanceError("signature", f"the holding statement of {node.hex()[:16]} is not signed by it") from None
    return statement.holding


def check(statements: Sequence[bytes], holding: Holding, nodes: Mapping[bytes, str]) -> None:
    """Every holder of ``holding`` is one of ``nodes`` (identity key -> name) and stated exactly it, once.

    GovernanceError("change") names the first fault: a holder that is not one of
    the organisation's nodes, a statement missing, twice, signed by another key,
    or saying anything else (another organisation, key, public key, threshold or
    committee).
    """
    strangers = [h.hex()[:16] for h in holding.holders if h not in nodes]
    if strangers:
        raise GovernanceError(
            "change",
            f"key {holding.key_id!r} is held by node(s) {', '.join(strangers)} that are not the organisation's "
            "(a node joins by a node.add the admins sign)",
        )
    seen: set[bytes] = set()
    for data in statements:
        statement, body, signature = parse(data)
        name = nodes.get(statement.node, statement.node.hex()[:16])
        if statement.node in seen:
            raise GovernanceError("change", f"two holding statements by node {name}")
        seen.add(statement.node)
        try:
            Ed25519PublicKey.from_public_bytes(statement.node).verify(signature, DOMAIN + body)
        except (InvalidSignature, ValueError):
            raise GovernanceError(
                "change", f"the holding statement of node {name} is not signed by its identity key"
            ) from None
        if statement.holding != holding:
            raise GovernanceError("change", f"node {name} states {_differs(statement.holding, holding)}")
    missing = sorted(nodes[h] for h in holding.holders if h not in seen)
    if missing:
        raise GovernanceError("change", f"every holder's statement is needed; missing: {', '.join(missing)}")


def _differs(stated: Holding, wanted: Holding) -> str:
    if stated.org != wanted.org:
        return (
            f"that it holds key {stated.key_id!r} for organisation {stated.org.hex()[:16]}, not this one "
            f"({wanted.org.hex()[:16]})"
        )
    for name in ("key_id", "public_key", "chain_code", "threshold", "holders"):
        if getattr(stated, name) != getattr(wanted, name):
            return f"another {name.replace('_', ' ')} than the entry's"
    return "something else"
