"""Signed requests' nonces in the database: once per credential, across service processes, and for no longer than
their timestamps can pass; on SQLite and on PostgreSQL.

Each "process" here is a unit of work over an engine of its own on the same
database, as two ``custody serve`` processes would have. The same check through
two API servers on one database is in tests/test_api_credentials.py.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody.audit import AuditLog
from harbour.custody.db import make_engine, session_factory
from harbour.custody.requestnonces import PRUNE_SECONDS, RequestNonces
from harbour.custody.uow import UnitOfWork

NONCE = "captured-nonce-0123456789"
START = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> dt.datetime:
        return self.now


@pytest.fixture
def processes(db_url: str) -> Iterator[tuple[RequestNonces, RequestNonces, Clock]]:
    clock = Clock()
    engines = [make_engine(db_url), make_engine(db_url)]
    stores = [
        RequestNonces(UnitOfWork(session_factory(e), AuditLog(Ed25519PrivateKey.generate()), clock=clock))
        for e in engines
    ]
    yield stores[0], stores[1], clock
    for engine in engines:
        engine.dispose()


def _rows(store: RequestNonces) -> int:
    with store.uow.read() as s:
        return int(s.scalar(select(func.count()).select_from(m.RequestNonce)) or 0)


def test_a_nonce_is_accepted_once_whichever_process_sees_it(
    processes: tuple[RequestNonces, RequestNonces, Clock],
) -> None:
    first, second, _ = processes
    assert first.use("victim", NONCE, 600)
    assert not first.use("victim", NONCE, 600)  # replayed on the same process
    assert not second.use("victim", NONCE, 600)  # and on another one
    assert second.use("another-credential", NONCE, 600)  # nonces are per credential


def test_no_flood_of_other_nonces_makes_one_forgotten_within_its_time(
    processes: tuple[RequestNonces, RequestNonces, Clock],
) -> None:
    first, second, clock = processes
    assert first.use("victim", NONCE, 600)

    def flood(s: Session) -> None:  # the attacker's own valid requests, as rows (one statement, not 100,001 requests)
        until = START + dt.timedelta(seconds=600)
        rows = [{"credential_id": "attacker", "nonce": f"n{i:016d}", "expires_at": until} for i in range(100_001)]
        s.execute(insert(m.RequestNonce), rows)

    first.uow.write(flood)
    clock.now += dt.timedelta(seconds=599)
    assert not second.use("victim", NONCE, 600)


def test_a_nonce_is_forgotten_once_its_timestamp_can_no_longer_pass(
    processes: tuple[RequestNonces, RequestNonces, Clock],
) -> None:
    first, second, clock = processes
    assert first.use("victim", NONCE, 600)
    first._pruned = second._pruned = -PRUNE_SECONDS  # the next use prunes
    clock.now += dt.timedelta(seconds=601)
    assert second.use("victim", NONCE, 600)  # the expired row gave way to the new one
    assert first.use("victim", "another-nonce-0123456789", 600)
    assert not first.use("victim", NONCE, 600)
    assert first.use("other", "old-nonce-0123456789abc", 1)
    clock.now += dt.timedelta(seconds=3)
    first._pruned = -PRUNE_SECONDS
    assert first.use("other", "new-nonce-0123456789abc", 600)
    assert _rows(first) == 3  # the expired one was pruned; the two live ones and the new one remain


def test_processes_racing_to_use_one_nonce_accept_it_once(
    processes: tuple[RequestNonces, RequestNonces, Clock],
) -> None:
    first, second, _ = processes
    start = threading.Barrier(8, timeout=20)
    results: list[bool] = []
    errors: list[BaseException] = []

    def race(store: RequestNonces) -> None:
        try:
            start.wait()
            results.append(store.use("victim", NONCE, 600))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(store,)) for store in (first, second) * 4]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(results) == [False] * 7 + [True]
