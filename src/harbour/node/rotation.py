"""Rotating a node's identity: a new signing key, announced under the old one and approved by the authority.

A node's long-term key only authenticates (session hellos, public messages,
acknowledgements), but whoever holds it can still take the node's place in a session
and, as a relay, in a refresh. After a suspected compromise the operator therefore
gives the node a new identity (``harbour node rotate-keys``) before anything else.
The node writes a **rotation statement** naming its old and new descriptors, signed
by the old key (the new one comes from the node that was the old one) and by the new
key (whoever announces it holds it). A new key is a new node id, since a node id is
the fingerprint of its key.

The other nodes take the statement only with an approval certificate of kind
``rotate`` (``params = {"old": <node id>, "new": <node id>}``): a thief who has the
old key could sign a statement too, and would otherwise move the node's place to a
key of his. Each node then replaces the old descriptor by the new one in the roster
of every key it holds (the party number stays), remembers the rotation, and refuses
any other statement about the same old node.

The statement file (canonical JSON, the same bytes on every node)::

    {"format": "harbour-node-rotation", "version": 1,
     "old": <descriptor>, "new": <descriptor>,
     "old_signature": <hex>, "new_signature": <hex>}

each signature being Ed25519 (RFC 8032) over ``DOMAIN || canonical CBOR {"old":
<descriptor JSON text>, "new": <descriptor JSON text>}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from harbour.node import approval, nonces, rpc, signlog
from harbour.node.identity import IdentityError, NodeDescriptor, NodeIdentity
from harbour.node.signlog import SignLog
from harbour.node.staging import Refusal
from harbour.node.store import SecretStore

FORMAT: Final = "harbour-node-rotation"
VERSION: Final = 1
DOMAIN: Final = b"harbour/node-rotation/v1\x00"
MAX_STATEMENT_LEN: Final = 8192
SIGNATURE_LEN: Final = 64

_KEYS: Final = frozenset({"format", "version", "old", "new", "old_signature", "new_signature"})


class RotationError(ValueError):
    """A rotation statement that cannot be used, and why."""


def _body(old: NodeDescriptor, new: NodeDescriptor) -> bytes:
    return DOMAIN + cbor2.dumps({"old": old.to_json(), "new": new.to_json()}, canonical=True)


@dataclass(frozen=True)
class Rotation:
    """A node's announcement that its old identity is replaced by a new one."""

    old: NodeDescriptor
    new: NodeDescriptor
    old_signature: bytes
    new_signature: bytes

    @classmethod
    def make(cls, old: NodeIdentity, new: NodeIdentity, name: str, url: str) -> Rotation:
        old_desc, new_desc = old.descriptor(name, url), new.descriptor(name, url)
        body = _body(old_desc, new_desc)
        return cls(old_desc, new_desc, old.sign(body), new.sign(body))

    @property
    def params(self) -> dict[str, str | int]:
        """What a ``rotate`` certificate approves."""
        return {"old": self.old.node_id, "new": self.new.node_id}

    def encode(self) -> bytes:
        doc = {
            "format": FORMAT,
            "version": VERSION,
            "old": json.loads(self.old.to_json()),
            "new": json.loads(self.new.to_json()),
            "old_signature": self.old_signature.hex(),
            "new_signature": self.new_signature.hex(),
        }
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> Rotation:
        """Parse and check a statement: exact fields, both descriptors, both signatures; RotationError if not."""
        if len(data) > MAX_STATEMENT_LEN:
            raise RotationError(f"a rotation statement is at most {MAX_STATEMENT_LEN} bytes")
        try:
            doc: Any = json.loads(data)
        except ValueError as exc:
            raise RotationError(f"the rotation statement is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or set(doc) != _KEYS or doc["format"] != FORMAT:
            raise RotationError("not a Harbour node rotation statement")
        if doc["version"] != VERSION or type(doc["version"]) is not int:
            raise RotationError(f"unsupported rotation statement version {doc['version']!r}")
        try:
            old = NodeDescriptor.from_json(json.dumps(doc["old"]))
            new = NodeDescriptor.from_json(json.dumps(doc["new"]))
            old_sig, new_sig = bytes.fromhex(doc["old_signature"]), bytes.fromhex(doc["new_signature"])
        except (IdentityError, ValueError, TypeError) as exc:
            raise RotationError(f"the rotation statement is malformed: {exc}") from exc
        if len(old_sig) != SIGNATURE_LEN or len(new_sig) != SIGNATURE_LEN:
            raise RotationError(f"signatures are {SIGNATURE_LEN} bytes")
        if old.node_id == new.node_id:
            raise RotationError("the new identity is the old one")
        if (old.name, old.url) != (new.name, new.url):
            raise RotationError("a rotation changes the key, not the node's name or address")
        body = _body(old, new)
        for descriptor, signature, which in ((old, old_sig, "old"), (new, new_sig, "new")):
            try:
                descriptor.sign_public_key().verify(signature, body)
            except InvalidSignature:
                raise RotationError(f"the statement's signature by the {which} key does not verify") from None
        rotation = cls(old, new, old_sig, new_sig)
        if rotation.encode() != bytes(data):
            raise RotationError("the rotation statement is not in its canonical form (edited?)")
        return rotation


def rotation_id(statement: bytes) -> bytes:
    """What a node records for a rotation it applied (``rotated/<old node id>``): the statement's hash."""
    return hashlib.sha256(b"harbour/node-rotation\x00" + statement).digest()


def rotate_roster(roster: dict[int, NodeDescriptor], rotation: Rotation) -> dict[int, NodeDescriptor] | None:
    """The roster with the old node replaced by the new one, or None if the old node is not in it."""
    for party, descriptor in roster.items():
        if descriptor.node_id == rotation.old.node_id:
            if any(d.node_id == rotation.new.node_id for d in roster.values()):
                raise RotationError("the new identity is already another member of a key's roster")
            return {**roster, party: rotation.new}
    return None


def rotated_key_records(store: SecretStore, rotation: Rotation) -> dict[str, dict[str, Any]]:
    """Every stored key record whose roster names the old node, rewritten to name the new one (not yet stored)."""
    rotated = {}
    for name in store.names("keys/"):
        entry = cbor2.loads(store.get(name))
        try:
            roster = rotate_roster(rpc.parse_roster(entry["roster"]), rotation)
        except RotationError as exc:
            raise RotationError(f"{name}: {exc}") from exc
        if roster is not None:
            rotated[name] = {**entry, "roster": rpc.roster_value(roster)}
    return rotated


def accept_rotation(
    statement: bytes,
    certificate: bytes,
    *,
    store: SecretStore,
    sign_log: SignLog,
    trusted: Mapping[str, Ed25519PublicKey],
    ledger: nonces.NonceLedger,
    me: str,
    running: Iterable[tuple[bytes, Mapping[str, int]]],
    now: int,
) -> list[str]:
    """Another node's new identity, on its statement and the authority's certificate; the keys updated.

    Every roster naming the old node names the new one instead, same party. Refused
    while a session (``running``: session id and node roster) or staged result involves that
    node, since its roster would change under it. One rotation per old identity:
    another statement about the same node is refused (``rotated``), so a thief of the
    old key cannot move the node again; the same statement again changes nothing.
    Everything that can refuse does so before the certificate is spent.
    """
    try:
        rotation = Rotation.decode(statement)
    except RotationError as exc:
        raise Refusal("bad-request", f"rotation statement refused: {exc}") from exc
    old, new = rotation.old.node_id, rotation.new.node_id
    sid = rotation_id(statement)
    if old == me:
        raise Refusal("bad-request", "this node rotates its own identity with harbour node rotate-keys")
    record = f"rotated/{old}"
    if store.exists(record):
        if store.get(record) != sid:
            raise Refusal("rotated", f"node {old} was rotated to another identity already")
        return []
    for session_id, members in running:
        if old in members:
            raise Refusal("pending", f"session {session_id.hex()} runs with node {old}; retry after it")
    for name in store.names("pending/"):
        pending = cbor2.loads(store.get(name))
        if any(d.node_id == old for d in rpc.parse_roster(pending["roster"]).values()):
            raise Refusal("pending", f"a staged result ({name}) names node {old}: commit or discard it first")
    try:
        rotated = rotated_key_records(store, rotation)
    except RotationError as exc:
        raise Refusal("bad-request", f"rotation refused: {exc}") from exc
    try:
        approval.verify(
            certificate, trusted, now=now, kind="rotate", key_id="", path="m", params=rotation.params, ledger=ledger
        )
    except approval.ApprovalError as exc:
        sign_log.append(
            time=now, kind="rotate", session_id=sid, key_id="", path="m", outcome="refused",
            reason=f"{exc.reason}: {exc}"[: signlog.MAX_REASON], certificate=certificate,
        )  # fmt: skip
        raise Refusal("approval", f"approval refused ({exc.reason}): {exc}") from exc
    for name, entry in rotated.items():
        store.put(name, cbor2.dumps(entry))
    updated = [name.removeprefix("keys/") for name in rotated]
    store.put(record, sid)
    sign_log.append(
        time=now, kind="rotate", session_id=sid, key_id="", path="m", outcome="committed",
        reason=f"node {old} is now {new}; rosters of {len(updated)} key(s) updated", certificate=certificate,
    )  # fmt: skip
    return updated
