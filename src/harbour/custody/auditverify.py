"""Verifying the whole audit log from the database: every event, every signed head, and every business row.

:mod:`harbour.custody.audit` writes the log and serves heads and proofs; this
module reads it all back, as an auditor does: it recomputes each entry with
:class:`harbour.custody.auditproof.LogChecker` and then compares each business
row with the digest of the last event that wrote it (:mod:`harbour.custody.rowdigest`,
:mod:`harbour.custody.rowwatch`), so a row edited in SQL is named by table, id and
field. It also records the one-off baseline of a deployment whose log predates
row digests. See docs/audit.md for what verification does and does not detect.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import func, select
from sqlalchemy.exc import SAWarning
from sqlalchemy.orm import Session

from harbour.crypto import merkle
from harbour.custody.audit import _STATE_ID, LOG_ID, VERIFY_BATCH, AuditEvent, AuditLog, AuditState, LogCorrupted
from harbour.custody.auditproof import LogChecker, ProofError, VerifyReport, check_head, public_key_of
from harbour.custody.errors import Conflict
from harbour.custody.rowdigest import ROWS_KEY, RowLedger
from harbour.custody.rowwatch import baseline, check_rows

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


def record_baseline(log: AuditLog, session: Session) -> int:
    """Record every business row as it is now, once, in a log begun before events carried row digests.

    Until then ``verify`` reports every row as never written by an event. Refused
    when the log does not verify on its own or already carries row digests (then
    the log explains the rows, and a baseline would only hide edits made since).
    Returns how many rows were recorded. Whoever runs it vouches for the rows as
    they are: run it right after the upgrade, with the service stopped.
    """
    report = verify(session, log.public_key, log_id=log.log_id, rows=False)
    if not report.ok:
        raise LogCorrupted(f"the audit log does not verify, so no baseline is recorded: {report.problem}")
    for data in session.scalars(select(AuditEvent.data)):
        if isinstance(data, dict) and ROWS_KEY in data:
            raise Conflict("the audit log carries row digests already: there is nothing to baseline")
    events = baseline(session)
    for e in events:
        log.append(session, org_id=e.org_id, actor_id=e.actor_id, kind=e.kind, subject=e.subject, data=e.data)
    return sum(len(entries) for e in events for entries in e.data[ROWS_KEY].values())


def verify_log(
    log: AuditLog, session: Session, *, heads: Iterable[Mapping[str, Any]] = (), rows: bool = True
) -> VerifyReport:
    """:func:`verify` with the public key and id of ``log`` (the service's own log)."""
    return verify(session, log.public_key, log_id=log.log_id, heads=heads, rows=rows)
