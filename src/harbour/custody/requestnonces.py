"""Signed API requests' nonces, in the database: a request is accepted once, by whichever process sees it first.

A credential with a signing key signs each request with a timestamp and a nonce
(:mod:`harbour.util.request_signing`); the API accepts a timestamp within its
clock window and must then refuse the same nonce again for as long as that
timestamp could pass. Kept in memory, a nonce would be known only to the process
that saw it, so a request captured on its way to one ``custody serve`` could be
replayed on another sharing the database, and a bounded cache would forget old
nonces under a flood of new ones. Here each nonce is a row whose primary key is
(credential, nonce): inserting it is the check, and the database's uniqueness
makes it hold across processes and under any load. A row lives until its
timestamp can no longer pass; expired rows are deleted when the same nonce comes
again and, at most every :data:`PRUNE_SECONDS`, all at once.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Final

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody.uow import UnitOfWork

PRUNE_SECONDS: Final = 60.0
"""Seconds between two deletions of every expired nonce (per process)."""


class RequestNonces:
    """The nonces of signed requests (see the module docstring)."""

    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow
        self._pruned = -PRUNE_SECONDS
        self._lock = threading.Lock()

    def use(self, credential_id: str, nonce: str, lifetime: float) -> bool:
        """Record ``nonce`` for ``credential_id`` for ``lifetime`` seconds: True the first time, False for a replay."""
        now = self.uow.clock()
        until = now + dt.timedelta(seconds=lifetime)

        def work(s: Session) -> None:
            table = m.RequestNonce
            expired = (table.credential_id == credential_id) & (table.nonce == nonce) & (table.expires_at < now)
            s.execute(delete(table).where(expired))
            s.add(m.RequestNonce(credential_id=credential_id, nonce=nonce, expires_at=until))
            s.flush()

        try:
            self.uow.write(work)
        except IntegrityError:
            return False
        self._prune(now)
        return True

    def _prune(self, now: dt.datetime) -> None:
        with self._lock:
            due = time.monotonic() - self._pruned >= PRUNE_SECONDS
            if due:
                self._pruned = time.monotonic()
        if due:
            self.uow.write(lambda s: s.execute(delete(m.RequestNonce).where(m.RequestNonce.expires_at < now)))
