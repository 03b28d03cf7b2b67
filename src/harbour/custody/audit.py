"""The custody audit log: an append-only Merkle log of every state change, with signed tree heads.

Each event is a leaf of an RFC 9162 Merkle tree (hashing in :mod:`harbour.crypto.merkle`),
and each append signs the new tree head, so row ``i`` of ``audit_events`` carries
the Ed25519-signed head of the tree of size ``i + 1``. Anyone holding the log's
public key can then recompute the whole log (:func:`verify`) and name the first
row that was edited, deleted, reordered or forged, and an auditor can check one
event (:func:`verify_inclusion_proof`) or that a later head extends an earlier one
(:func:`verify_consistency_proof`) from a proof fetched over the API, without
trusting the server.

The event is appended inside the caller's transaction, so it commits or rolls
back with the state change it records. Appending reads one row, ``audit_state``
(the size, the root and the right edge of the tree), locked ``FOR UPDATE``: the
cost does not grow with the log and concurrent appenders queue on that row (on
SQLite, ``BEGIN IMMEDIATE`` of :func:`harbour.custody.db.make_engine` serialises
writers already). The lock is held until the caller commits, so a transaction
should append its event late.

What a signature binds (:func:`head_message`)::

    "harbour/audit-tree-head/v1" 0x00 || len(log_id) (1 byte) || log_id
      || tree_size (8 bytes, big-endian) || timestamp (microseconds since 1970, 8 bytes) || root (32 bytes)

A leaf is the canonical JSON (:func:`canonical_json`) of the event's index,
timestamp, organisation, actor, kind, subject and data. See docs/audit.md for
what verification does and does not detect.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Connection,
    Index,
    Integer,
    String,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from harbour.crypto import merkle
from harbour.custody.db import Base, UtcDateTime
from harbour.custody.errors import Conflict, CustodyError, Invalid, NotFound

LOG_ID: Final = "harbour-custody"
HEAD_DOMAIN: Final = b"harbour/audit-tree-head/v1\x00"
MAX_EVENT_BYTES: Final = 64 * 1024
"""Largest leaf (canonical JSON of one event): the log records facts, not documents."""
MAX_DEPTH: Final = 32
VERIFY_BATCH: Final = 1000
_KIND = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_HEX32 = re.compile(r"[0-9a-f]{64}")
_HEX64 = re.compile(r"[0-9a-f]{128}")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"
_STATE_ID: Final = 1


class LogCorrupted(CustodyError):
    """The stored log state contradicts itself: appending onto it would sign a lie, so nothing is appended."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "audit-log-corrupted"
    title: ClassVar[str] = "The audit log failed an integrity check"


class ProofError(ValueError):
    """A proof or signed tree head does not verify; the message says which check failed."""


# -- tables -------------------------------------------------------------------------------------------------------


class AuditEvent(Base):
    """One leaf of the log, and the signed head of the tree that ends with it."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_org_id_index", "org_id", "index"),)

    index: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    """The leaf index, 0, 1, 2, ... without gaps."""
    at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    """Never earlier than the previous event's, so the signed timestamps are monotonic."""
    org_id: Mapped[str | None] = mapped_column(String(64))
    """No foreign keys here: the log records ids as facts and must never be blocked or cascaded."""
    actor_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str | None] = mapped_column(String(128))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    leaf_hash: Mapped[str] = mapped_column(String(64))
    root: Mapped[str] = mapped_column(String(64))
    """Hex root of the tree of size ``index + 1``."""
    signature: Mapped[str] = mapped_column(String(128))
    """Ed25519 over :func:`head_message` of (log id, ``index + 1``, ``at``, ``root``)."""


class AuditState(Base):
    """The one row appenders lock: the tree's size, root and right edge, so an append reads no old events."""

    __tablename__ = "audit_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger)
    frontier: Mapped[list[str]] = mapped_column(JSON)
    """Hex roots of the perfect subtrees along the right edge, largest first (one per set bit of ``size``)."""
    root: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    """The newest event's timestamp (None while the log is empty)."""


_EVENTS = cast(Table, AuditEvent.__table__)
_STATE = cast(Table, AuditState.__table__)
_LOCK_STATE = (
    select(_STATE.c.size, _STATE.c.frontier, _STATE.c.root, _STATE.c.at)
    .where(_STATE.c.id == _STATE_ID)
    .with_for_update()
)
_INSERT_EVENT = insert(_EVENTS)
_ADVANCE_STATE = update(_STATE).where(_STATE.c.id == _STATE_ID, _STATE.c.size == bindparam("expected"))
"""Sets the columns named in the parameters; the size guard catches an append that raced past the lock."""


# -- encodings (pure) ---------------------------------------------------------------------------------------------


def format_time(at: dt.datetime) -> str:
    """The one textual form of a timestamp the log hashes and signs: UTC, microseconds, ``Z``."""
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return at.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> dt.datetime:
    """Inverse of :func:`format_time`; refuses any other spelling of the same instant."""
    if not isinstance(text, str):
        raise ValueError("a timestamp is a string")
    try:
        at = dt.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not of the form 2025-01-31T12:00:00.000000Z") from None
    if format_time(at) != text:
        raise ValueError(f"timestamp {text!r} is not in canonical form")
    return at


def _micros(at: dt.datetime) -> int:
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace; no floats (they do not round-trip exactly).

    This is RFC 8785 (JCS) for documents whose integers lie within 2^53 and whose keys
    stay in the Basic Multilingual Plane (JCS writes numbers as doubles and sorts keys by
    UTF-16 unit); beyond that, integers are written in full and keys sort by code point.
    The service's data keeps integers small and amounts as decimal strings.
    """
    _check_json(value, "data", 0)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except UnicodeEncodeError:
        raise ValueError("audit data holds a string that is not valid Unicode (a lone surrogate)") from None


def _check_json(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"audit data nests deeper than {MAX_DEPTH} levels at {where}")
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit data keys are strings, not {type(key).__name__} ({where})")
            _check_json(item, f"{where}.{key}", depth + 1)
        return
    what = "a float (use an integer or a decimal string)" if isinstance(value, float) else type(value).__name__
    raise TypeError(f"audit data at {where} is {what}, which has no exact canonical JSON form")


def leaf_content(event: Mapping[str, Any]) -> bytes:
    """The bytes a leaf hashes, from an event as :meth:`AuditLog.events` and the proofs show it."""
    content = {key: event[key] for key in ("index", "at", "org_id", "actor_id", "kind", "subject", "data")}
    if type(content["index"]) is not int or not isinstance(content["at"], str):
        raise ValueError("an event's index is an integer and its timestamp a string")
    if not isinstance(content["data"], dict):
        raise ValueError("an event's data is an object")
    return canonical_json(content)


def head_message(log_id: str, tree_size: int, timestamp: dt.datetime, root: bytes) -> bytes:
    """What a tree head's signature covers (fixed layout, domain-separated; see the module docstring)."""
    name = log_id.encode()
    micros = _micros(timestamp)
    if not 0 < len(name) < 256:
        raise ValueError("a log id is 1..255 bytes of UTF-8")
    if not 0 <= tree_size < 2**64 or not 0 <= micros < 2**64 or len(root) != merkle.HASH_LEN:
        raise ValueError("a tree head has a size and timestamp in 0..2^64-1 and a 32-byte root")
    return HEAD_DOMAIN + bytes([len(name)]) + name + struct.pack(">QQ", tree_size, micros) + root


def public_key_of(key: Ed25519PublicKey | bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from the object, its 32 raw bytes or their hex."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, str):
        if not _HEX_KEY.fullmatch(key):
            raise ValueError("an Ed25519 public key is 64 hex digits")
        key = bytes.fromhex(key)
    if len(key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(key)


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _verify_key(key: Ed25519PublicKey | bytes | str) -> Any:
    """libsodium's verifier: 2.4 times as fast as OpenSSL's here, which is most of :func:`verify`'s time."""
    return VerifyKey(_raw(public_key_of(key)))


def _signed(key: Any, signature: bytes, message: bytes) -> bool:
    try:
        key.verify(message, signature)
    except (BadSignatureError, TypeError, ValueError):
        return False
    return True


# -- the tree's right edge ----------------------------------------------------------------------------------------


def frontier_append(frontier: Sequence[bytes], size: int, leaf: bytes) -> list[bytes]:
    """The right edge after appending ``leaf`` to a tree of ``size``: O(log n) node hashes.

    A tree of ``size`` leaves is a run of perfect subtrees, one per set bit of ``size``,
    largest first. The new leaf merges with the smallest while they are the same height,
    exactly as the carries of ``size + 1`` ripple.
    """
    edge, node, carry = list(frontier), leaf, size
    while carry & 1:
        node = merkle.node_hash(edge.pop(), node)
        carry >>= 1
    edge.append(node)
    return edge


def frontier_root(frontier: Sequence[bytes]) -> bytes:
    """``MTH`` of the tree with this right edge: RFC 9162 splits at the largest power of two, so fold from the right."""
    if not frontier:
        return merkle.EMPTY_ROOT
    node = frontier[-1]
    for left in reversed(frontier[:-1]):
        node = merkle.node_hash(left, node)
    return node


# -- signed tree heads and proofs (pure: what an auditor runs) -----------------------------------------------------


def check_head(head: Mapping[str, Any], public_key: Ed25519PublicKey | bytes | str, *, log_id: str = LOG_ID) -> None:
    """Raise :class:`ProofError` unless ``head`` is a tree head of ``log_id`` signed by ``public_key``.

    A malformed ``public_key`` is the caller's own mistake, not a failed proof: a plain ``ValueError``.
    """
    key = _verify_key(public_key)
    try:
        size, root_hex, stamp, signature = head["tree_size"], head["root"], head["timestamp"], head["signature"]
        if head["log_id"] != log_id:
            raise ProofError(f"the head is of log {head['log_id']!r}, not {log_id!r}")
        if type(size) is not int or size < 0:
            raise ProofError("the head's tree_size is not a non-negative integer")
        if not isinstance(root_hex, str) or not _HEX32.fullmatch(root_hex):
            raise ProofError("the head's root is not 64 lowercase hex digits")
        if not isinstance(signature, str) or not _HEX64.fullmatch(signature):
            raise ProofError("the head's signature is not 128 lowercase hex digits")
        message = head_message(log_id, size, parse_time(stamp), bytes.fromhex(root_hex))
        if not _signed(key, bytes.fromhex(signature), message):
            raise ProofError(f"the signature on the head of size {size} does not verify")
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProofError):
            raise
        raise ProofError(f"malformed tree head: {e}") from None


def check_inclusion_proof(
    proof: Mapping[str, Any], public_key: Ed25519PublicKey | bytes | str, *, log_id: str = LOG_ID
) -> None:
    """Raise :class:`ProofError` unless the event in ``proof`` is in the signed tree head it carries.

    The leaf hash is recomputed from the event itself (a stated ``leaf_hash`` must agree
    with it), the audit path is checked against the head's root with RFC 9162 section
    2.1.3.2, and the head's signature against the auditor's own copy of the public key.
    """
    _verify_key(public_key)
    try:
        head, event, path = proof["head"], proof["event"], proof["audit_path"]
        index, size = proof["index"], proof["tree_size"]
        check_head(head, public_key, log_id=log_id)
        if type(index) is not int or type(size) is not int or event["index"] != index or head["tree_size"] != size:
            raise ProofError("the proof's index and tree size disagree with its event and head")
        leaf = merkle.leaf_hash(leaf_content(event))
        if proof.get("leaf_hash", leaf.hex()) != leaf.hex():
            raise ProofError("the stated leaf hash is not the hash of the event")
        if not isinstance(path, list) or not all(isinstance(p, str) and _HEX32.fullmatch(p) for p in path):
            raise ProofError("the audit path is not a list of 64-digit hex hashes")
        nodes = [bytes.fromhex(p) for p in path]
        if not merkle.verify_inclusion(index, size, leaf, nodes, bytes.fromhex(head["root"])):
            raise ProofError(f"event {index} is not in the tree of size {size} with this root")
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProofError):
            raise
        raise ProofError(f"malformed inclusion proof: {e}") from None


def check_consistency_proof(
    proof: Mapping[str, Any],
    public_key: Ed25519PublicKey | bytes | str,
    *,
    log_id: str = LOG_ID,
    old_head: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`ProofError` unless the proof's new head extends its old head (RFC 9162 section 2.1.4.2).

    ``old_head`` is the head the auditor kept from before: the proof must start from it.
    """
    _verify_key(public_key)
    try:
        old, new, path = proof["old_head"], proof["new_head"], proof["proof"]
        check_head(old, public_key, log_id=log_id)
        check_head(new, public_key, log_id=log_id)
        if old_head is not None and (old_head["tree_size"], old_head["root"]) != (old["tree_size"], old["root"]):
            raise ProofError("the proof does not start from the head the auditor holds")
        if (proof["old_size"], proof["new_size"]) != (old["tree_size"], new["tree_size"]):
            raise ProofError("the proof's sizes disagree with its heads")
        if not isinstance(path, list) or not all(isinstance(p, str) and _HEX32.fullmatch(p) for p in path):
            raise ProofError("the consistency path is not a list of 64-digit hex hashes")
        nodes = [bytes.fromhex(p) for p in path]
        old_root, new_root = bytes.fromhex(old["root"]), bytes.fromhex(new["root"])
        if not merkle.verify_consistency(old["tree_size"], new["tree_size"], old_root, new_root, nodes):
            raise ProofError(f"the tree of size {new['tree_size']} does not extend the tree of size {old['tree_size']}")
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProofError):
            raise
        raise ProofError(f"malformed consistency proof: {e}") from None


def _ok(check: Callable[[], None]) -> bool:
    try:
        check()
    except ProofError:
        return False
    return True


def verify_head(head: Mapping[str, Any], public_key: Ed25519PublicKey | bytes | str, *, log_id: str = LOG_ID) -> bool:
    return _ok(lambda: check_head(head, public_key, log_id=log_id))


def verify_inclusion_proof(
    proof: Mapping[str, Any], public_key: Ed25519PublicKey | bytes | str, *, log_id: str = LOG_ID
) -> bool:
    return _ok(lambda: check_inclusion_proof(proof, public_key, log_id=log_id))


def verify_consistency_proof(
    proof: Mapping[str, Any],
    public_key: Ed25519PublicKey | bytes | str,
    *,
    log_id: str = LOG_ID,
    old_head: Mapping[str, Any] | None = None,
) -> bool:
    return _ok(lambda: check_consistency_proof(proof, public_key, log_id=log_id, old_head=old_head))


# -- the log -------------------------------------------------------------------------------------------------------


def event_view(row: AuditEvent) -> dict[str, Any]:
    """An event as the API shows it; :func:`leaf_content` of this dict is what its leaf hashes."""
    return {
        "index": row.index,
        "at": format_time(row.at),
        "org_id": row.org_id,
        "actor_id": row.actor_id,
        "kind": row.kind,
        "subject": row.subject,
        "data": row.data,
        "leaf_hash": row.leaf_hash,
    }


_STATE_KEY = "harbour.audit.state"
"""Where a session keeps the state its transaction last wrote (see AuditLog._state_in)."""


@dataclass(frozen=True)
class _State:
    size: int
    frontier: list[bytes]
    root: bytes
    at: dt.datetime | None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _optional_id(value: str | None, what: str, limit: int) -> None:
    if value is not None and (not isinstance(value, str) or not 0 < len(value) <= limit):
        raise ValueError(f"audit {what} is None or a string of 1..{limit} characters")


class AuditLog:
    """Appends events and serves signed heads and proofs; holds no state but the key (share it between threads)."""

    def __init__(
        self, signing_key: Ed25519PrivateKey, log_id: str = LOG_ID, *, clock: Callable[[], dt.datetime] = _now
    ) -> None:
        if not isinstance(signing_key, Ed25519PrivateKey):
            raise TypeError("the audit log signs with an Ed25519 private key")
        if not 0 < len(log_id.encode()) < 256:
            raise ValueError("a log id is 1..255 bytes of UTF-8")
        self._key = signing_key
        self.log_id = log_id
        self.clock = clock
        self.public_key = signing_key.public_key()
        self.public_key_hex = _raw(self.public_key).hex()

    # -- writing

    def append(
        self,
        session: Session,
        *,
        org_id: str | None,
        actor_id: str | None,
        kind: str,
        subject: str | None,
        data: Mapping[str, Any],
    ) -> AuditEvent:
        """Append an event in the caller's transaction and sign the new tree head.

        Returns the row as written, not attached to the session (the INSERT is already
        sent, so ``session.get(AuditEvent, index)`` reads it back in this transaction).

        Raises ``TypeError``/``ValueError`` for data with no exact JSON form (floats, non-string
        keys, too large), :class:`LogCorrupted` when the stored state contradicts itself.
        """
        _optional_id(org_id, "org_id", 64)
        _optional_id(actor_id, "actor_id", 64)
        _optional_id(subject, "subject", 128)
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise ValueError(f"audit kind {kind!r} is not a lowercase name like 'transaction.approved'")
        if not isinstance(data, Mapping):
            raise TypeError("audit data is a mapping")
        body = json.loads(canonical_json(dict(data)))  # the exact form the database will hand back

        state = self._state_in(session)
        now = self.clock()
        at = now if state.at is None or now >= state.at else state.at
        event = {"index": state.size, "at": format_time(at), "org_id": org_id, "actor_id": actor_id}
        content = leaf_content({**event, "kind": kind, "subject": subject, "data": body})
        if len(content) > MAX_EVENT_BYTES:
            raise ValueError(f"an audit event is at most {MAX_EVENT_BYTES} bytes of JSON, this one {len(content)}")
        leaf = merkle.leaf_hash(content)
        frontier = frontier_append(state.frontier, state.size, leaf)
        root = frontier_root(frontier)
        size = state.size + 1
        signature = self._key.sign(head_message(self.log_id, size, at, root))

        values = {
            "index": state.size,
            "at": at,
            "org_id": org_id,
            "actor_id": actor_id,
            "kind": kind,
            "subject": subject,
            "data": body,
            "leaf_hash": leaf.hex(),
            "root": root.hex(),
            "signature": signature.hex(),
        }
        # Core statements on the session's connection: an ORM flush of the same two rows costs five times the rest.
        connection = session.connection()
        connection.execute(_INSERT_EVENT, values)
        advance = {"expected": state.size, "size": size, "frontier": [f.hex() for f in frontier], "root": root.hex()}
        moved = connection.execute(_ADVANCE_STATE, {**advance, "at": at})
        if moved.rowcount != 1:  # only without the row lock (an engine not made by make_engine)
            raise Conflict("the audit log advanced under this transaction; retry it")
        session.info[_STATE_KEY] = (session.get_transaction(), _State(size, frontier, root, at))
        return AuditEvent(**values)

    @staticmethod
    def forget_state(session: Session) -> None:
        """Drop the state this session's transaction keeps: a savepoint holding appends was rolled back."""
        session.info.pop(_STATE_KEY, None)

    def _state_in(self, session: Session) -> _State:
        """The state, read and row-locked by the transaction's first append; later appends in it reuse it.

        The row stays locked until the transaction ends, so nobody else can have moved
        it; reading it once per transaction rather than once per event saves a query
        for every further event (a submission writes three, a batch of confirmations one each).
        """
        cached = session.info.get(_STATE_KEY)
        transaction = session.get_transaction()
        if cached is not None and transaction is not None and cached[0] is transaction:
            return cast(_State, cached[1])
        return self._lock_state(session)

    def _lock_state(self, session: Session) -> _State:
        connection = session.connection()
        row = connection.execute(_LOCK_STATE).one_or_none()
        if row is None:
            _create_state(connection)
            row = connection.execute(_LOCK_STATE).one()
        size, frontier, root, at = row
        if (
            type(size) is not int
            or size < 0
            or not isinstance(frontier, list)
            or len(frontier) != size.bit_count()
            or not all(isinstance(f, str) and _HEX32.fullmatch(f) for f in frontier)
        ):
            raise LogCorrupted(f"the audit log state is malformed (size {size!r}); nothing can be appended")
        edge = [bytes.fromhex(f) for f in frontier]
        if frontier_root(edge).hex() != root or (at is None) != (size == 0):
            raise LogCorrupted("the audit log state's root disagrees with its right edge; nothing can be appended")
        return _State(size, edge, bytes.fromhex(root), at)

    # -- reading

    def size(self, session: Session) -> int:
        return session.scalar(select(AuditState.size).where(AuditState.id == _STATE_ID)) or 0

    def head(self, session: Session) -> dict[str, Any]:
        """The newest signed tree head (the empty log's is signed now)."""
        size = self.size(session)
        if size == 0:
            at = self.clock()
            signature = self._key.sign(head_message(self.log_id, 0, at, merkle.EMPTY_ROOT))
            return self._head_view(0, merkle.EMPTY_ROOT.hex(), at, signature.hex())
        return self._head_at(session, size)

    def _head_at(self, session: Session, size: int) -> dict[str, Any]:
        row = session.execute(
            select(AuditEvent.root, AuditEvent.at, AuditEvent.signature).where(AuditEvent.index == size - 1)
        ).one_or_none()
        if row is None:
            raise LogCorrupted(f"audit event {size - 1} is missing")
        return self._head_view(size, row.root, row.at, row.signature)

    def _head_view(self, size: int, root: str, at: dt.datetime, signature: str) -> dict[str, Any]:
        return {
            "log_id": self.log_id,
            "tree_size": size,
            "root": root,
            "timestamp": format_time(at),
            "signature": signature,
            "algorithm": "Ed25519",
            "public_key": self.public_key_hex,
        }

    def events(
        self, session: Session, *, org_id: str | None, after: int | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """Events in index order after index ``after``; only those of ``org_id`` (None: every organisation)."""
        if type(limit) is not int or limit < 1:
            raise Invalid("limit must be a positive integer")
        if after is not None and type(after) is not int:
            raise Invalid("after is an event index")
        query = select(AuditEvent).order_by(AuditEvent.index).limit(limit)
        if org_id is not None:
            query = query.where(AuditEvent.org_id == org_id)
        if after is not None:
            query = query.where(AuditEvent.index > after)
        return [event_view(row) for row in session.scalars(query)]

    def _leaves(self, session: Session, size: int) -> list[bytes]:
        """The leaf hashes of the first ``size`` events: O(size) rows read, 32 bytes each in memory."""
        hashes = list(
            session.scalars(select(AuditEvent.leaf_hash).where(AuditEvent.index < size).order_by(AuditEvent.index))
        )
        if len(hashes) != size:
            raise LogCorrupted(f"the first {size} audit events are not all present ({len(hashes)} found)")
        try:
            return [bytes.fromhex(h) for h in hashes]
        except ValueError:
            raise LogCorrupted("an audit event's leaf hash is not hex") from None

    def _tree_size(self, session: Session, tree_size: int | None) -> int:
        size = self.size(session)
        if tree_size is None:
            return size
        if type(tree_size) is not int or tree_size < 1:
            raise Invalid("tree_size is a positive integer (a proof needs a tree with at least one event)")
        if tree_size > size:
            raise NotFound(f"no tree of size {tree_size}: the audit log holds {size} events")
        return tree_size

    def inclusion(self, session: Session, index: int, tree_size: int | None = None) -> dict[str, Any]:
        """Event ``index``, its audit path in the tree of ``tree_size`` (default: now) and that tree's signed head.

        Costs O(tree_size): the path is computed from all the leaf hashes it covers.
        """
        if type(index) is not int or index < 0:
            raise Invalid("an audit event index is a non-negative integer")
        size = self._tree_size(session, tree_size)
        if index >= size:
            if tree_size is None:
                raise NotFound(f"no audit event {index}: the log holds {size} events")
            raise Invalid(f"event {index} is not in the tree of size {size} (indexes 0..{size - 1})")
        row = session.get(AuditEvent, index)
        if row is None:
            raise LogCorrupted(f"audit event {index} is missing")
        path = merkle.inclusion_proof(index, self._leaves(session, size))
        return {
            "index": index,
            "tree_size": size,
            "event": event_view(row),
            "leaf_hash": row.leaf_hash,
            "audit_path": [p.hex() for p in path],
            "head": self._head_at(session, size),
        }

    def consistency(self, session: Session, old: int, new: int | None = None) -> dict[str, Any]:
        """Proof that the tree of ``new`` events (default: now) extends the tree of ``old``, with both signed heads.

        Costs O(new), like :meth:`inclusion`.
        """
        new_size = self._tree_size(session, new)
        if type(old) is not int or old < 1:
            raise Invalid("a consistency proof starts from a tree of at least one event (RFC 9162 section 2.1.4)")
        if old > new_size:
            raise Invalid(f"the old tree ({old} events) is larger than the new one ({new_size})")
        path = merkle.consistency_proof(old, self._leaves(session, new_size))
        return {
            "old_size": old,
            "new_size": new_size,
            "old_head": self._head_at(session, old),
            "new_head": self._head_at(session, new_size),
            "proof": [p.hex() for p in path],
        }

    def verify(self, session: Session, *, heads: Iterable[Mapping[str, Any]] = ()) -> VerifyReport:
        return verify(session, self.public_key, log_id=self.log_id, heads=heads)


def _create_state(connection: Connection) -> None:
    """The empty log's state row; two first appenders racing both succeed (one insert is a no-op)."""
    values = {"id": _STATE_ID, "size": 0, "frontier": [], "root": merkle.EMPTY_ROOT.hex(), "at": None}
    dialect = connection.dialect.name
    if dialect == "postgresql":
        connection.execute(postgresql_insert(_STATE).values(values).on_conflict_do_nothing(index_elements=["id"]))
    elif dialect == "sqlite":
        connection.execute(sqlite_insert(_STATE).values(values).on_conflict_do_nothing(index_elements=["id"]))
    else:
        connection.execute(insert(_STATE).values(values))


# -- verifying the whole log -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    size: int
    """Events checked (the log's size when ``ok``)."""
    first_bad_index: int | None
    """The first entry that fails; None when ``ok`` or when only the state row or an external head is wrong."""
    problem: str

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "size": self.size, "first_bad_index": self.first_bad_index, "problem": self.problem}


_COLUMNS = (
    AuditEvent.index.label("position"),  # a Row is a tuple: row.index would be tuple.index
    AuditEvent.at,
    AuditEvent.org_id,
    AuditEvent.actor_id,
    AuditEvent.kind,
    AuditEvent.subject,
    AuditEvent.data,
    AuditEvent.leaf_hash,
    AuditEvent.root,
    AuditEvent.signature,
)


def _rows(session: Session, batch: int, end: int | None) -> Iterator[Any]:
    """Events below index ``end`` in index order, ``batch`` rows per query (keyset), without ORM objects."""
    start: int | None = None
    while True:
        query = select(*_COLUMNS).order_by(AuditEvent.index).limit(batch)
        if end is not None:
            query = query.where(AuditEvent.index < end)
        if start is not None:
            query = query.where(AuditEvent.index > start)
        rows = session.execute(query).all()
        yield from rows
        if len(rows) < batch:
            return
        start = rows[-1].position


def verify(
    session: Session,
    public_key: Ed25519PublicKey | bytes | str,
    *,
    log_id: str = LOG_ID,
    heads: Iterable[Mapping[str, Any]] = (),
    batch: int = VERIFY_BATCH,
) -> VerifyReport:
    """Recompute the log from its rows and report the first entry that does not check out.

    For each row, in index order: its index is the next one (a deleted row fails at the
    missing index), its leaf hash is the hash of its content, its root is the root
    recomputed from every leaf so far, its timestamp is not earlier than the previous
    one, and its signature verifies on (size, timestamp, recomputed root). The state row
    must describe the same tree (a cut-off tail fails at the first missing index), and
    each of ``heads`` (signed heads an auditor kept, from :meth:`AuditLog.head`) must
    match the recomputed root at its size.

    The log is checked up to the size the state row records when verification starts,
    so events appended meanwhile (PostgreSQL, READ COMMITTED) are not mistaken for
    strays. Memory is O(log n + batch); time is one Ed25519 verification and about two
    hashes per event.
    """
    key = public_key_of(public_key)
    if type(batch) is not int or batch < 1:
        raise ValueError("batch is a positive number of rows")
    kept: dict[int, Mapping[str, Any]] = {}
    for head in heads:
        try:
            check_head(head, key, log_id=log_id)
        except ProofError as e:
            return VerifyReport(False, 0, None, f"a kept head is not valid: {e}")
        earlier = kept.setdefault(head["tree_size"], head)
        if earlier["root"] != head["root"]:
            problem = f"two validly signed heads of size {head['tree_size']} have different roots (a forked log)"
            return VerifyReport(False, 0, None, problem)
    checker = _Checker(key, log_id, kept)

    state = session.execute(
        select(AuditState.size, AuditState.frontier, AuditState.root).where(AuditState.id == _STATE_ID)
    ).one_or_none()
    if state is not None and (type(state.size) is not int or state.size < 0):
        return VerifyReport(False, 0, None, f"the log state's size {state.size!r} is not a count")
    end = None if state is None else state.size
    report = checker.kept_root(0, merkle.EMPTY_ROOT)
    if report:
        return report
    for row in _rows(session, batch, end):
        report = checker.entry(row)
        if report:
            return report
    count = checker.size
    longest = max(kept, default=0)
    if longest > count:
        return checker.bad(count, f"a signed head of size {longest} was kept but the log holds only {count} events")
    if state is None:
        if count:
            return checker.bad(None, f"the log state row is missing but {count} events are stored")
        return VerifyReport(True, 0, None, "")
    if state.size > count:
        return checker.bad(count, f"events {count}..{state.size - 1} are missing: the log state records {state.size}")
    stray = session.scalar(
        select(func.min(AuditEvent.index)).where(
            AuditEvent.index >= select(AuditState.size).where(AuditState.id == _STATE_ID).scalar_subquery()
        )
    )
    if stray is not None:
        return checker.bad(stray, f"event {stray} lies beyond the size the log state records")
    if state.frontier != [f.hex() for f in checker.frontier] or state.root != frontier_root(checker.frontier).hex():
        return checker.bad(None, "the log state's root or right edge is not that of the stored events")
    return VerifyReport(True, count, None, "")


class _Checker:
    """The running recomputation of :func:`verify`: one row at a time, first failure wins."""

    def __init__(self, key: Ed25519PublicKey, log_id: str, kept: Mapping[int, Mapping[str, Any]]) -> None:
        self.key, self.log_id, self.kept = _verify_key(key), log_id, kept
        self.frontier: list[bytes] = []
        self.size = 0
        self.previous: dt.datetime | None = None
        self.vouched = 0
        """The largest kept head found equal so far: every event below it is as the auditor saw it."""

    def bad(self, index: int | None, problem: str) -> VerifyReport:
        return VerifyReport(False, self.size, index, problem)

    def kept_root(self, size: int, root: bytes) -> VerifyReport | None:
        head = self.kept.get(size)
        if head is None:
            return None
        if head["root"] != root.hex():
            return self.bad(
                self.vouched,
                f"the log's tree of size {size} differs from the signed head kept for that size: "
                f"events {self.vouched}..{size - 1} were rewritten by someone holding the signing key",
            )
        self.vouched = size
        return None

    def entry(self, row: Any) -> VerifyReport | None:
        i = self.size
        if row.position != i:
            if row.position > i:
                return self.bad(i, f"event {i} is missing (the next stored event is {row.position})")
            return self.bad(i, f"unexpected event index {row.position} where {i} was due")
        try:
            view = {
                "index": i,
                "at": format_time(row.at),
                "org_id": row.org_id,
                "actor_id": row.actor_id,
                "kind": row.kind,
                "subject": row.subject,
                "data": row.data,
            }
            leaf = merkle.leaf_hash(leaf_content(view))
        except (AttributeError, TypeError, ValueError) as e:
            return self.bad(i, f"event {i} cannot be encoded: {e}")
        if row.leaf_hash != leaf.hex():
            return self.bad(i, f"event {i}'s content does not match its stored leaf hash")
        frontier = frontier_append(self.frontier, i, leaf)
        root = frontier_root(frontier)
        if row.root != root.hex():
            return self.bad(i, f"event {i}'s stored root is not the root of the first {i + 1} events")
        if self.previous is not None and row.at < self.previous:
            return self.bad(i, f"event {i} is timestamped before event {i - 1}")
        try:
            signed = _signed(self.key, bytes.fromhex(row.signature), head_message(self.log_id, i + 1, row.at, root))
        except (TypeError, ValueError):
            signed = False
        if not signed:
            return self.bad(i, f"the signed tree head of event {i} (size {i + 1}) does not verify")
        report = self.kept_root(i + 1, root)
        if report:
            return report
        self.frontier, self.size, self.previous = frontier, i + 1, row.at
        return None


__all__ = [
    "LOG_ID",
    "AuditEvent",
    "AuditLog",
    "AuditState",
    "LogCorrupted",
    "ProofError",
    "VerifyReport",
    "canonical_json",
    "check_consistency_proof",
    "check_head",
    "check_inclusion_proof",
    "event_view",
    "head_message",
    "leaf_content",
    "verify",
    "verify_consistency_proof",
    "verify_head",
    "verify_inclusion_proof",
]
