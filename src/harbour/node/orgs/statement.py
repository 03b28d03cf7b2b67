"""A node's signed statement of its withdrawal history, bound to one signing session.

Each node sees only the sessions it joined. With 2-of-3 nodes and every node
counting a velocity limit against its own record, withdrawals routed through
the pairs {1,2}, {1,3}, {2,3} in turn would let 1.5 times the limit through. So
before a session on a key of an organisation whose policy has velocity or count
limits, the coordinator asks each chosen signer for its statement (the ``history``
request) and hands all of them to every signer with the ``start`` request. Each
signer checks every statement (:func:`verify`) and judges with the union of the
signers' records (:func:`harbour.node.orgs.records.union`): with ``2t > n`` any
two signer sets share a node, which recorded every withdrawal signed before.

A statement is canonical CBOR ``{"statement": <body>, "signature": <64 bytes>}``,
the signature the node's identity key's (Ed25519, RFC 8032) over
:data:`DOMAIN` and the body, which is canonical CBOR::

    {"version": 1, "type": "harbour-withdrawal-history", "node": <node id>,
     "session_id": <32 bytes>, "org": <genesis hash, hex>, "head": <32 bytes>,
     "records": [<record>, ...]}

``records`` are the node's records within the policy's longest window
(:mod:`harbour.node.orgs.records`). A statement is bound to the session (one for
another session is refused). A coordinator could still ask for a statement, let
the node record another withdrawal, and then use the old one: so a node refuses
a session whose statement of its *own* lacks a record it now holds within the
window (:func:`stale`), and the session needs every signer, so every statement
in a session that runs is current.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import cbor2
from cryptography.exceptions import InvalidSignature

from harbour.governance.fields import GovernanceError, signed_envelope
from harbour.node.certificate import ApprovalError
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.orgs.history import MAX_RECORDS
from harbour.node.orgs.records import Record

DOMAIN: Final = b"harbour/withdrawal-history/v1\x00"
"""Prefix of what a node signs: its identity signature over a statement verifies as nothing else."""
TYPE: Final = "harbour-withdrawal-history"
VERSION: Final = 1
MAX_STATEMENT_LEN: Final = 4 * 2**20
"""Above :data:`MAX_RECORDS` records of the largest form (about 530 bytes each)."""
_BODY_KEYS: Final = frozenset({"version", "type", "node", "session_id", "org", "head", "records"})


@dataclass(frozen=True)
class HistoryStatement:
    node: str
    session_id: bytes
    org: str
    head: bytes
    records: tuple[Record, ...]

    def body(self) -> bytes:
        return bytes(
            cbor2.dumps(
                {
                    "version": VERSION,
                    "type": TYPE,
                    "node": self.node,
                    "session_id": self.session_id,
                    "org": self.org,
                    "head": self.head,
                    "records": [r.to_cbor() for r in self.records],
                },
                canonical=True,
            )
        )


def sign(identity: NodeIdentity, statement: HistoryStatement) -> bytes:
    """The node's statement, signed with its identity key: what the ``history`` request answers."""
    if len(statement.records) > MAX_RECORDS:
        raise ValueError(f"a statement carries at most {MAX_RECORDS} records")
    body = statement.body()
    return bytes(cbor2.dumps({"statement": body, "signature": identity.sign(DOMAIN + body)}, canonical=True))


def parse(data: object) -> tuple[HistoryStatement, bytes, bytes]:
    """``(statement, body, signature)``, strictly parsed but NOT verified; ApprovalError("history") if malformed."""

    def bad(what: str) -> ApprovalError:
        return ApprovalError("history", f"malformed history statement: {what}")

    try:
        body, obj, signature = signed_envelope(data, "a history statement", MAX_STATEMENT_LEN)
    except GovernanceError as exc:
        raise bad(str(exc)) from None
    if not isinstance(obj, dict) or set(obj) != _BODY_KEYS:
        raise bad(f"the body is a map of exactly {sorted(_BODY_KEYS)}")
    if type(obj["version"]) is not int or obj["version"] != VERSION or obj["type"] != TYPE:
        raise bad(f"not a version {VERSION} {TYPE}")
    sid, head, records = obj["session_id"], obj["head"], obj["records"]
    if type(sid) is not bytes or len(sid) != 32 or type(head) is not bytes or len(head) != 32:
        raise bad("session_id and head are 32 bytes each")
    if not isinstance(obj["node"], str) or not isinstance(obj["org"], str):
        raise bad("node and org are text")
    if not isinstance(records, list) or len(records) > MAX_RECORDS:
        raise bad(f"records is a list of at most {MAX_RECORDS}")
    try:
        parsed = tuple(Record.from_cbor(r) for r in records)
    except GovernanceError as exc:
        raise bad(str(exc)) from None
    statement = HistoryStatement(obj["node"], sid, obj["org"], head, parsed)
    if statement.body() != body:
        raise bad("the body is not in its canonical form")
    return statement, body, signature


def verify(
    statements: Sequence[bytes],
    *,
    signers: Mapping[str, NodeDescriptor],
    session_id: bytes,
    org: str,
    head: bytes,
) -> dict[str, HistoryStatement]:
    """Exactly one valid statement from each of ``signers`` (node id -> descriptor), for this session; by node id.

    Each is signed by that node's identity key as the key's roster names it,
    bound to ``session_id``, and about ``org`` at ``head``. ApprovalError("history")
    names the first one that is not.
    """
    found: dict[str, HistoryStatement] = {}
    for data in statements:
        statement, body, signature = parse(data)
        descriptor = signers.get(statement.node)
        if descriptor is None:
            raise ApprovalError("history", f"a history statement by node {statement.node[:32]!r}, not a signer")
        if statement.node in found:
            raise ApprovalError("history", f"two history statements by node {descriptor.name}")
        try:
            descriptor.sign_public_key().verify(signature, DOMAIN + body)
        except InvalidSignature:
            raise ApprovalError(
                "history", f"the history statement of node {descriptor.name} is not signed by its identity key"
            ) from None
        if statement.session_id != session_id:
            raise ApprovalError(
                "history",
                f"the history statement of node {descriptor.name} is for session {statement.session_id.hex()}, "
                f"not this one ({session_id.hex()}): a statement counts for the session it was made for only",
            )
        if statement.org != org or statement.head != head:
            raise ApprovalError(
                "history",
                f"the history statement of node {descriptor.name} is about organisation {statement.org[:16]} at "
                f"head {statement.head.hex()[:16]}, not {org[:16]} at {head.hex()[:16]}",
            )
        found[statement.node] = statement
    missing = sorted(d.name for node, d in signers.items() if node not in found)
    if missing:
        raise ApprovalError(
            "history",
            f"the policy has velocity or count limits, so every signer's history statement is needed; "
            f"missing: {', '.join(missing)}",
        )
    return found


def stale(own: HistoryStatement, current: Iterable[Record]) -> list[str]:
    """The transaction ids of ``current`` (a node's records within the window now) missing from its own statement.

    Records that left the window since the statement was made are no matter; one
    added since is, and makes the statement stale.
    """
    stated = {r.transaction_id for r in own.records}
    return sorted(r.transaction_id for r in current if r.transaction_id not in stated)
