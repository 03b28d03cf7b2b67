"""Who works on what when several service processes share one database: signing leases and address locks.

Any number of ``harbour custody serve`` processes may run on one PostgreSQL
database, and every one of them picks up whatever withdrawal is waiting. Two
things must then happen once only, whichever process gets there first:

- **Signing a withdrawal.** A process signs only while it holds the withdrawal's
  lease: a row in ``signing_claims`` naming the process and an expiry. The
  process that gives a withdrawal its nonce takes the lease in the same commit,
  renews it before every signing attempt and every third of a lease while it
  works on it (:func:`renew`); another process may take it only once it has
  expired (its holder was killed, or is cut off from the database).
  The signature is committed only while the withdrawal has none (first commit
  wins, under the row lock), and only committed bytes are ever sent. So a lease
  that expires under a live signer costs at most one more signature of the
  *same* unsigned transaction (same nonce, same body), which is never sent:
  two signatures of one nonce can never both be mined, and only one of them
  ever leaves the database.
- **Sending an address's transactions in nonce order.** A process sends from an
  address only while it holds the address's lock (:func:`exclusive`: a
  PostgreSQL advisory lock of a transaction that spans the send and is released
  by its end, or by the database when the process dies), and reads what is next
  to send from the database each time, never from its own memory. The deposit
  scan and the pass that proposes sweeps of deposit addresses run under such a
  lock too, so two processes never record one deposit or propose one sweep twice.

Leases are timed by the clock of the process that writes them: the processes'
clocks must agree to well within a lease (NTP does). The leases are operational
state, not business state: they are not in the audit log, and losing them costs
at most a second signature of an unsigned transaction.

SQLite runs one service process (:func:`single_process`); on it the lease and the
lock change nothing, but the code path is the same.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final, cast

from sqlalchemy import Engine, String, Table, delete, func, insert, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Mapped, Session, mapped_column

from harbour.custody.db import Base, UtcDateTime
from harbour.custody.errors import Invalid

DEFAULT_LEASE: Final = 30
"""Seconds a signing lease lasts: longer than one signing attempt takes, short enough to take over a killed process."""


class SigningClaim(Base):
    """The lease of one withdrawal's signing: who signs it, until when."""

    __tablename__ = "signing_claims"

    transaction_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    """The process: host, pid and a random tag (:func:`process_name`)."""
    until: Mapped[dt.datetime] = mapped_column(UtcDateTime)


_CLAIMS = cast(Table, SigningClaim.__table__)


def process_name() -> str:
    """A name for this process, unique across restarts and hosts: it is what a lease names as its holder."""
    return f"{os.uname().nodename[:80]}:{os.getpid()}:{os.urandom(4).hex()}"


@dataclass(frozen=True)
class Taken:
    """A lease taken or renewed; ``previous`` names the process whose expired lease it replaced, if any."""

    previous: str | None = None


def take(s: Session, tx_id: str, holder: str, now: dt.datetime, lease: float) -> Taken | None:
    """Take or renew the signing lease of ``tx_id`` for ``holder``; None while another holds it unexpired.

    The lease row is read ``FOR UPDATE``, so two processes that find it expired at
    the same moment do not both take it: the second reads the first one's lease.
    """
    until = now + dt.timedelta(seconds=lease)
    connection = s.connection()
    row = connection.execute(
        select(_CLAIMS.c.holder, _CLAIMS.c.until).where(_CLAIMS.c.transaction_id == tx_id).with_for_update()
    ).first()
    if row is None:
        dialect = connection.dialect.name
        stmt: Any
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            stmt = pg_insert(_CLAIMS).on_conflict_do_nothing()
        elif dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            stmt = sqlite_insert(_CLAIMS).on_conflict_do_nothing()
        else:  # pragma: no cover - make_engine accepts only the two above
            stmt = insert(_CLAIMS)
        made = connection.execute(
            stmt.returning(_CLAIMS.c.transaction_id), {"transaction_id": tx_id, "holder": holder, "until": until}
        ).first()
        return Taken() if made is not None else None  # None: another process inserted it first
    held_by, held_until = row
    if held_by != holder and held_until >= now:
        return None
    connection.execute(update(_CLAIMS).where(_CLAIMS.c.transaction_id == tx_id).values(holder=holder, until=until))
    return Taken(previous=held_by if held_by != holder else None)


def renew(s: Session, tx_ids: Collection[str], holder: str, now: dt.datetime, lease: float) -> int:
    """Extend ``holder``'s leases of ``tx_ids`` (the withdrawals it is working on) by ``lease`` from ``now``."""
    if not tx_ids:
        return 0
    renewed = s.connection().execute(
        update(_CLAIMS)
        .where(_CLAIMS.c.holder == holder, _CLAIMS.c.transaction_id.in_(list(tx_ids)))
        .values(until=now + dt.timedelta(seconds=lease))
    )
    return int(renewed.rowcount)


def release(s: Session, tx_id: str, holder: str | None = None) -> None:
    """End the lease of ``tx_id`` (only ``holder``'s, if given): signed, failed, or given up for another to try."""
    query = delete(_CLAIMS).where(_CLAIMS.c.transaction_id == tx_id)
    if holder is not None:
        query = query.where(_CLAIMS.c.holder == holder)
    s.connection().execute(query)


def release_all_but(s: Session, holder: str) -> int:
    """End every lease not ``holder``'s: only for a process that knows it is the only one (SQLite, see
    :func:`single_process`), whose predecessor's leases would otherwise hold its own restart up for a lease."""
    return int(s.connection().execute(delete(_CLAIMS).where(_CLAIMS.c.holder != holder)).rowcount)


def holders(s: Session) -> dict[str, str]:
    """Every lease: withdrawal id -> holder (operations and tests)."""
    return {row.transaction_id: row.holder for row in s.execute(select(_CLAIMS.c.transaction_id, _CLAIMS.c.holder))}


def _lock_key(name: str) -> int:
    """A signed 64-bit advisory-lock key for ``name`` (PostgreSQL's advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(b"harbour.exclusive:" + name.encode()).digest()[:8], "big", signed=True)


def address(address: str) -> str:
    """The name of an address's sending lock."""
    return f"send:{address}"


DEPOSITS: Final = "deposits"
"""The name of the deposit scan's lock."""

SWEEPS: Final = "sweeps"
"""The name of the lock of a pass that sweeps deposit addresses (one process proposes each sweep)."""


@contextlib.contextmanager
def exclusive(engine: Engine, name: str) -> Iterator[None]:
    """Hold the database-wide lock ``name`` for the block: one process at a time does what it guards.

    On PostgreSQL a transaction-scoped advisory lock on a connection of its own: it
    is released when the block ends, and by the server when the connection drops
    (a process killed mid-send holds nothing). Take it before any row lock, and
    hold no other transaction open in the same thread while waiting for it. On
    SQLite (one process) there is nothing to lock.
    """
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection, connection.begin():
        connection.execute(select(func.pg_advisory_xact_lock(_lock_key(name))))
        yield


# -- SQLite: one process --------------------------------------------------------------------------------------------


LOCK_SUFFIX: Final = ".serve.lock"


def single_process(database: str) -> IO[bytes] | None:
    """On a SQLite file, lock ``<file>.serve.lock`` for this process, or refuse: SQLite runs one service process.

    The lock (``flock``) lasts as long as the returned file stays open, and the
    kernel drops it when the process ends however it ends, so a killed service
    leaves nothing to clean up. PostgreSQL and in-memory SQLite need none (None).
    """
    url = make_url(database)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    path = Path(url.database + LOCK_SUFFIX)
    handle = open(path, "ab")  # noqa: SIM115 - held open for the life of the service
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise Invalid(
            f"another custody service is running on the SQLite database {url.database} (it holds {path}): "
            "SQLite supports one service process; stop that one first, or use PostgreSQL to run several"
        ) from None
    except BaseException:
        handle.close()
        raise
    return handle
