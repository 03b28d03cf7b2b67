"""Each organisation's governance log in the database, replayed and verified, and what it says now.

The service decides from the state its organisation's quorum-signed log puts in
force (:class:`harbour.governance.state.OrgState`), never from the projection
tables, which anyone holding the database could edit. :class:`Ledger` replays a
log from its genesis (whose hash the organisation row pins) once, keeps the
verified :class:`~harbour.governance.state.GovernanceLog` in memory, and extends
it as entries land: each lookup reads only the newest entry's sequence number
and hash and compares them with what it holds.

A lookup sees what its session sees. A session that began before an entry was
committed (a reader's snapshot) gets the state at its own head, from the last
few states kept for that; a write transaction that records an entry and then
rolls back may leave the cache ahead of the database, and the next lookup that
finds a head it does not hold replays the log again. So the cache is a
shortcut, never a second source of truth.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field
from typing import ClassVar, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody.errors import CustodyError, NotFound
from harbour.custody.uow import UnitOfWork
from harbour.governance import changes as c
from harbour.governance.fields import GovernanceError
from harbour.governance.log import SignedEntry, entry_hash
from harbour.governance.state import GovernanceLog, OrgState

RECENT: Final = 8
"""States kept besides the head's, for sessions whose snapshot is a few entries behind."""


class LogCorrupted(CustodyError):
    """The stored governance log does not verify: nothing is decided from it."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "governance-log-corrupted"
    title: ClassVar[str] = "The governance log failed verification"


@dataclass
class _Replayed:
    log: GovernanceLog
    policy_version: int
    """How many entries put a policy in force up to the head (the genesis's counts): the policy's version number."""
    recent: dict[int, tuple[str, OrgState, int]] = field(default_factory=dict)
    """Sequence number -> (hash, state, policy version) of the last few entries, the head's included."""

    def keep(self) -> None:
        """Remember the head's state, forgetting all but the last :data:`RECENT`."""
        state = self.log.state
        self.recent[state.seq] = (state.head.hex(), state, self.policy_version)
        for seq in [seq for seq in self.recent if seq <= state.seq - RECENT]:
            del self.recent[seq]


def policy_versions(signed: SignedEntry) -> int:
    """1 if the entry puts a policy in force, else 0: versions count entries, not changes."""
    return int(any(isinstance(change, c.SetPolicy) for change in signed.entry.changes))


class Ledger:
    """The verified governance logs of the organisations this service has looked at (share it between threads)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self._logs: dict[str, _Replayed] = {}
        self._lock = threading.Lock()

    def state(self, s: Session, org_id: str) -> OrgState:
        """What the organisation's log puts in force, as ``s`` sees the log."""
        return self._at_head(s, org_id)[0]

    def policy_version(self, s: Session, org_id: str) -> int:
        return self._at_head(s, org_id)[1]

    def entries(self, s: Session, org_id: str, after: int, limit: int) -> list[SignedEntry]:
        """Up to ``limit`` verified entries after sequence number ``after``, from the replayed log."""
        replayed = self._replayed(s, org_id)
        with self._lock:
            return replayed.log.entries[after + 1 : after + 1 + limit]

    def log(self, org_id: str) -> GovernanceLog:
        """The organisation's verified log as committed, a copy the caller may extend (a signer pushing entries)."""
        with self.uow.read() as s:
            replayed = self._replayed(s, org_id)
            with self._lock:
                clone = copy.copy(replayed.log)
                clone.hashes = list(replayed.log.hashes)
                clone.entries = list(replayed.log.entries)
                return clone

    def record(self, s: Session, org_id: str, signed: SignedEntry, transaction_id: str | None) -> None:
        """Store an entry the caller admitted on the head it read in ``s`` (the org row locked)."""
        s.add(
            m.GovernanceEntry(
                org_id=org_id,
                seq=signed.entry.seq,
                hash=signed.hash.hex(),
                data=signed.encode(),
                transaction_id=transaction_id,
                created_at=self.uow.clock(),
            )
        )
        s.flush()

    # -- replay ------------------------------------------------------------------------------------------

    def _head(self, s: Session, org_id: str) -> tuple[int, str]:
        top = s.execute(
            select(m.GovernanceEntry.seq, m.GovernanceEntry.hash)
            .where(m.GovernanceEntry.org_id == org_id)
            .order_by(m.GovernanceEntry.seq.desc())
            .limit(1)
        ).first()
        if top is None:
            raise NotFound(f"no organisation {org_id} (or it has no governance log)")
        return top.seq, top.hash

    def _at_head(self, s: Session, org_id: str) -> tuple[OrgState, int]:
        """The state and policy version at the head ``s`` sees."""
        seq, digest = self._head(s, org_id)
        with self._lock:
            cached = self._logs.get(org_id)
            kept = cached.recent.get(seq) if cached is not None else None
            if kept is not None and kept[0] == digest:
                return kept[1], kept[2]
        replayed = self._replayed(s, org_id, (seq, digest))
        return replayed.log.state, replayed.policy_version

    def _replayed(self, s: Session, org_id: str, top: tuple[int, str] | None = None) -> _Replayed:
        seq, digest = top if top is not None else self._head(s, org_id)
        with self._lock:
            cached = self._logs.get(org_id)
            if cached is not None and (cached.log.state.seq, cached.log.head.hex()) == (seq, digest):
                return cached
            if cached is not None and cached.log.state.seq < seq:
                extended = self._extend(s, org_id, cached)
                if extended is not None:
                    return extended
            replayed = self._replay(s, org_id)
            self._logs[org_id] = replayed
            return replayed

    def _rows(self, s: Session, org_id: str, after: int) -> list[SignedEntry]:
        rows = s.execute(
            select(m.GovernanceEntry.seq, m.GovernanceEntry.hash, m.GovernanceEntry.data)
            .where(m.GovernanceEntry.org_id == org_id, m.GovernanceEntry.seq > after)
            .order_by(m.GovernanceEntry.seq)
        )
        out: list[SignedEntry] = []
        for seq, digest, data in rows:
            try:
                signed = SignedEntry.decode(bytes(data))
            except GovernanceError as exc:
                raise LogCorrupted(f"entry {seq} of organisation {org_id}'s governance log: {exc}") from None
            if signed.entry.seq != seq or entry_hash(signed.data).hex() != digest:
                raise LogCorrupted(f"entry {seq} of organisation {org_id}'s governance log is not the row's entry")
            out.append(signed)
        return out

    def _extend(self, s: Session, org_id: str, cached: _Replayed) -> _Replayed | None:
        """The cached log extended by the entries after it, or None if the database no longer agrees with it."""
        held = s.scalar(
            select(m.GovernanceEntry.hash).where(
                m.GovernanceEntry.org_id == org_id, m.GovernanceEntry.seq == cached.log.state.seq
            )
        )
        if held != cached.log.head.hex():
            return None
        newer = self._rows(s, org_id, cached.log.state.seq)
        log = cached.log
        appended = 0
        try:
            for signed in newer:
                log.append(signed)
                cached.policy_version += policy_versions(signed)
                cached.keep()
                appended += 1
        except GovernanceError as exc:
            # Appended entries cannot be taken back out: the next lookup replays from the genesis.
            self._logs.pop(org_id, None)
            raise LogCorrupted(f"organisation {org_id}'s governance log does not verify: {exc}") from None
        return cached if appended else None

    def _replay(self, s: Session, org_id: str) -> _Replayed:
        pinned = s.scalar(select(m.Organisation.genesis).where(m.Organisation.id == org_id))
        entries = self._rows(s, org_id, -1)
        if not entries or entries[0].hash.hex() != pinned:
            raise LogCorrupted(f"organisation {org_id}'s governance log does not start at its genesis {pinned}")
        try:
            replayed = _Replayed(GovernanceLog(entries[0]), policy_versions(entries[0]))
            replayed.keep()
            for signed in entries[1:]:
                replayed.log.append(signed)
                replayed.policy_version += policy_versions(signed)
                replayed.keep()
        except GovernanceError as exc:
            raise LogCorrupted(f"organisation {org_id}'s governance log does not verify: {exc}") from None
        return replayed
