"""The custody audit log: an append-only Merkle log of every state change, with signed tree heads.

Each event is a leaf of an RFC 9162 Merkle tree (hashing in :mod:`harbour.crypto.merkle`),
and each append signs the new tree head, so row ``i`` of ``audit_events`` carries
the Ed25519-signed head of the tree of size ``i + 1``. Anyone holding the log's
public key can then recompute the whole log (:func:`verify`) and name the first
row that was edited, deleted, reordered or forged, and an auditor can check one
event (:func:`verify_inclusion_proof`) or that a later head extends an earlier one
(:func:`verify_consistency_proof`) from a proof fetched over the API, without
trusting the server.

This module is the log in the database: its two tables and everything that reads
or writes them (appending, serving heads and proofs, feeding the rows to a whole-log
check), which change together when a column does. The encodings it hashes and signs,
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
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, cast

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
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
from sqlalchemy.exc import SAWarning
from sqlalchemy.orm import Mapped, Session, mapped_column

from harbour.crypto import merkle
from harbour.custody.auditproof import (
    HASH_HEX,
    LOG_ID,
    LogChecker,
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
from harbour.custody.rowdigest import ROWS_KEY, RowFinding, RowLedger
from harbour.custody.rowwatch import baseline, check_rows

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

    def baseline(self, session: Session) -> int:
        """Record every business row as it is now, once, in a log begun before events carried row digests.

        Until then ``verify`` reports every row as never written by an event. Refused
        when the log does not verify on its own or already carries row digests (then
        the log explains the rows, and a baseline would only hide edits made since).
        Returns how many rows were recorded. Whoever runs it vouches for the rows as
        they are: run it right after the upgrade, with the service stopped.
        """
        report = self.verify(session, rows=False)
        if not report.ok:
            raise LogCorrupted(f"the audit log does not verify, so no baseline is recorded: {report.problem}")
        for data in session.scalars(select(AuditEvent.data)):
            if isinstance(data, dict) and ROWS_KEY in data:
                raise Conflict("the audit log carries row digests already: there is nothing to baseline")
        events = baseline(session)
        for e in events:
            self.append(session, org_id=e.org_id, actor_id=e.actor_id, kind=e.kind, subject=e.subject, data=e.data)
        return sum(len(entries) for e in events for entries in e.data[ROWS_KEY].values())

    def verify(self, session: Session, *, heads: Iterable[Mapping[str, Any]] = (), rows: bool = True) -> VerifyReport:
        return verify(session, self.public_key, log_id=self.log_id, heads=heads, rows=rows)


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
    rows: bool = True,
) -> VerifyReport:
    """Recompute the log from its rows and report the first entry that does not check out.

    For each row, in index order: its index is the next one (a deleted row fails at the
    missing index), its leaf hash is the hash of its content, its root is the root
    recomputed from every leaf so far, its timestamp is not earlier than the previous
    one, and its signature verifies on (size, timestamp, recomputed root). The state row
    must describe the same tree (a cut-off tail fails at the first missing index), and
    each of ``heads`` (signed heads an auditor kept, from :meth:`AuditLog.head`) must
    match the recomputed root at its size.

    Then, with ``rows`` and once the log itself checks, every business row of the
    database is compared with the digest of the last event that wrote it
    (:mod:`harbour.custody.rowdigest`): the report lists each row the log does not
    explain (``VerifyReport.rows``) and is not ``ok`` if there is one.

    The log is checked up to the size the state row records when verification starts,
    so events appended meanwhile are not mistaken for strays. On PostgreSQL the check
    reads one snapshot (REPEATABLE READ) when ``session`` has not read anything yet, so
    rows and events are seen at the same instant while the service runs; on SQLite a
    read transaction is a snapshot already. Memory is O(log n + batch) for the log and
    one entry per row the log wrote; time is one Ed25519 verification and about two
    hashes per event, and two hashes per field of each row.
    """
    key = public_key_of(public_key)
    if type(batch) is not int or batch < 1:
        raise ValueError("batch is a positive number of rows")
    _snapshot(session)
    ledger = RowLedger() if rows else None
    report = _verify_log(session, key, log_id, heads, batch, ledger)
    if not report.ok or ledger is None:
        return report
    findings = tuple(check_rows(session, ledger, batch))
    if not findings:
        return report
    listed = "; ".join(f.describe() for f in findings[:3]) + ("; ..." if len(findings) > 3 else "")
    problem = f"{len(findings)} row(s) of the database are not as the audit log left them: {listed}"
    return VerifyReport(False, report.size, None, problem, findings)


def _snapshot(session: Session) -> None:
    """On PostgreSQL, begin the session's reads as one REPEATABLE READ snapshot (if it has not read yet)."""
    if session.get_bind().dialect.name != "postgresql":
        return
    with warnings.catch_warnings():  # a caller already reading keeps the transaction it chose
        warnings.simplefilter("ignore", SAWarning)
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})


def _verify_log(
    session: Session,
    key: Ed25519PublicKey,
    log_id: str,
    heads: Iterable[Mapping[str, Any]],
    batch: int,
    ledger: RowLedger | None,
) -> VerifyReport:
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
    checker = LogChecker(key, log_id, kept)

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
        malformed = ledger.add(row.position, row.data) if ledger is not None else None
        if malformed is not None:
            return checker.bad(row.position, malformed)
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
    if (
        state.frontier != [f.hex() for f in checker.frontier]
        or state.root != merkle.frontier_root(checker.frontier).hex()
    ):
        return checker.bad(None, "the log state's root or right edge is not that of the stored events")
    return VerifyReport(True, count, None, "")


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
    "verify",
    "verify_consistency_proof",
    "verify_head",
    "verify_inclusion_proof",
]
