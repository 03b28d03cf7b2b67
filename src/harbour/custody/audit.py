"""The custody audit log: an append-only Merkle log of every state change, with signed tree heads.

Each event is a leaf of an RFC 9162 Merkle tree (hashing in :mod:`harbour.crypto.merkle`),
and each append signs the new tree head, so row ``i`` of ``audit_events`` carries
the Ed25519-signed head of the tree of size ``i + 1``. Anyone holding the log's
public key can then recompute the whole log (:func:`harbour.custody.auditverify.verify`) and name the first
row that was edited, deleted, reordered or forged, and an auditor can check one
event (:func:`verify_inclusion_proof`) or that a later head extends an earlier one
(:func:`verify_consistency_proof`) from a proof fetched over the API, without
trusting the server.

This module is the log in the database: its two tables and everything that reads
or writes them (appending, serving heads and proofs), which change together when a
column does; reading it all back is :mod:`harbour.custody.auditverify`. The encodings it hashes and signs,
the checks of heads and proofs and the entry-by-entry recomputation are
:mod:`harbour.custody.auditproof`, which an auditor can import without SQLAlchemy;
their names are re-exported here, so callers of the log need one import.

The event is appended inside the caller's transaction, so it commits or rolls
back with the state change it records. Appending reads one row, ``audit_state``
(the size, the root and the right edge of the tree), locked ``FOR UPDATE``: the
cost does not grow with the log and concurrent appenders queue on that row (on
SQLite, ``BEGIN IMMEDIATE`` of :func:`harbour.custody.db.make_engine` serialises
writers already). The lock is held until the caller commits, so a transaction
should append its event late. See docs/audit.md for what verification does and
does not detect.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
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
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Mapped, Session, mapped_column

from harbour.crypto import merkle
from harbour.custody.auditproof import (
    HASH_HEX,
    LOG_ID,
    ProofError,
    VerifyReport,
    canonical_json,
    check_consistency_proof,
    check_head,
    check_inclusion_proof,
    event_leaf_fields,
    format_time,
    head_message,
    leaf_content,
    parse_time,
    public_key_of,
    raw_public_key,
    verify_consistency_proof,
    verify_head,
    verify_inclusion_proof,
)
from harbour.custody.db import Base, UtcDateTime
from harbour.custody.errors import Conflict, CustodyError, Invalid, NotFound
from harbour.custody.rowdigest import RowFinding

MAX_EVENT_BYTES: Final = 64 * 1024
"""Largest leaf (canonical JSON of one event): the log records facts, not documents."""
VERIFY_BATCH: Final = 1000
_KIND = re.compile(r"[a-z][a-z0-9_.:-]{0,63}")
_STATE_ID: Final = 1


class LogCorrupted(CustodyError):
    """The stored log state contradicts itself: appending onto it would sign a lie, so nothing is appended."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "audit-log-corrupted"
    title: ClassVar[str] = "The audit log failed an integrity check"


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


# -- the log -------------------------------------------------------------------------------------------------------


def event_view(row: AuditEvent) -> dict[str, Any]:
    """An event as the API shows it; :func:`leaf_content` of this dict is what its leaf hashes."""
    return {**event_leaf_fields(row, row.index), "leaf_hash": row.leaf_hash}


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


def check_event(
    *, org_id: str | None, actor_id: str | None, kind: str, subject: str | None, data: Mapping[str, Any]
) -> dict[str, Any]:
    """The event's data in the exact form the database will hand back; raises what :meth:`AuditLog.append` would."""
    _optional_id(org_id, "org_id", 64)
    _optional_id(actor_id, "actor_id", 64)
    _optional_id(subject, "subject", 128)
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"audit kind {kind!r} is not a lowercase name like 'transaction.approved'")
    if not isinstance(data, Mapping):
        raise TypeError("audit data is a mapping")
    body: dict[str, Any] = json.loads(canonical_json(dict(data)))
    return body


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
        self.public_key_hex = raw_public_key(self.public_key).hex()

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
        body = check_event(org_id=org_id, actor_id=actor_id, kind=kind, subject=subject, data=data)

        state = self._state_in(session)
        now = self.clock()
        at = now if state.at is None or now >= state.at else state.at
        event = {"index": state.size, "at": format_time(at), "org_id": org_id, "actor_id": actor_id}
        content = leaf_content({**event, "kind": kind, "subject": subject, "data": body})
        if len(content) > MAX_EVENT_BYTES:
            raise ValueError(f"an audit event is at most {MAX_EVENT_BYTES} bytes of JSON, this one {len(content)}")
        leaf = merkle.leaf_hash(content)
        frontier = merkle.frontier_append(state.frontier, state.size, leaf)
        root = merkle.frontier_root(frontier)
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
            or not all(isinstance(f, str) and HASH_HEX.fullmatch(f) for f in frontier)
        ):
            raise LogCorrupted(f"the audit log state is malformed (size {size!r}); nothing can be appended")
        edge = [bytes.fromhex(f) for f in frontier]
        if merkle.frontier_root(edge).hex() != root or (at is None) != (size == 0):
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
            raise NotFound(f"event {index} is not in the tree of size {size} (indexes 0..{size - 1})")
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
            raise NotFound(f"no consistency proof: the old tree ({old} events) is larger than the new one ({new_size})")
        path = merkle.consistency_proof(old, self._leaves(session, new_size))
        return {
            "old_size": old,
            "new_size": new_size,
            "old_head": self._head_at(session, old),
            "new_head": self._head_at(session, new_size),
            "proof": [p.hex() for p in path],
        }


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


__all__ = [
    "LOG_ID",
    "MAX_EVENT_BYTES",
    "AuditEvent",
    "AuditLog",
    "AuditState",
    "LogCorrupted",
    "ProofError",
    "RowFinding",
    "VerifyReport",
    "canonical_json",
    "check_consistency_proof",
    "check_event",
    "check_head",
    "check_inclusion_proof",
    "event_view",
    "format_time",
    "head_message",
    "leaf_content",
    "parse_time",
    "public_key_of",
    "verify_consistency_proof",
    "verify_head",
    "verify_inclusion_proof",
]
