"""Signing leases, the SQLite service lock and the unit of work's retry of deadlocks, on both databases.

These are the pieces that let several service processes share one database
(``custody/claims.py``, ``custody/uow.py``); ``tests/test_multiprocess.py`` runs
them as real processes under kill -9.
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from harbour.custody import claims
from harbour.custody import models as m
from harbour.custody.audit import AuditLog
from harbour.custody.errors import Invalid
from harbour.custody.uow import UnitOfWork

T0 = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
LEASE = 10
TX = "00000000-0000-4000-8000-000000000001"


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def take(sessions: sessionmaker[Session], holder: str, when: dt.datetime, tx: str = TX) -> claims.Taken | None:
    with sessions() as s, s.begin():
        return claims.take(s, tx, holder, when, LEASE)


def test_a_lease_is_the_holders_until_it_expires_then_anyone_may_take_it_over(sessions: sessionmaker[Session]) -> None:
    assert take(sessions, "a", at(0)) == claims.Taken(previous=None)
    assert take(sessions, "b", at(1)) is None, "held by a"
    assert take(sessions, "a", at(5)) == claims.Taken(previous=None), "a renews its own"
    assert take(sessions, "b", at(14)) is None, "renewed at 5: a holds it until 15"
    assert take(sessions, "b", at(16)) == claims.Taken(previous="a"), (
        "expired: taken over, and the taker knows from whom"
    )
    assert take(sessions, "a", at(17)) is None, "a, back from a pause, does not get it back"
    with sessions() as s, s.begin():
        claims.release(s, TX, "a")  # not a's any more: nothing happens
        assert claims.holders(s) == {TX: "b"}
        claims.release(s, TX, "b")
        assert claims.holders(s) == {}
    assert take(sessions, "a", at(18)) == claims.Taken(previous=None)


def test_renewing_extends_only_the_holders_leases_of_the_withdrawals_named(sessions: sessionmaker[Session]) -> None:
    other = "00000000-0000-4000-8000-000000000002"
    assert take(sessions, "a", at(0)) is not None
    assert take(sessions, "a", at(0), other) is not None
    with sessions() as s, s.begin():
        assert claims.renew(s, [TX], "a", at(8), LEASE) == 1
        assert claims.renew(s, [TX, other], "b", at(8), LEASE) == 0, "b holds none of them"
        assert claims.renew(s, [], "a", at(8), LEASE) == 0
    assert take(sessions, "b", at(12)) is None, "renewed at 8: until 18"
    assert take(sessions, "b", at(12), other) == claims.Taken(previous="a"), "not renewed: expired at 10"


def test_of_many_processes_taking_one_free_lease_at_once_exactly_one_gets_it(sessions: sessionmaker[Session]) -> None:
    got: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def racer(name: str) -> None:
        try:
            start.wait(10)
            if take(sessions, name, at(0)) is not None:
                got.append(name)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=racer, args=(f"p{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(got) == 1
    with sessions() as s:
        assert claims.holders(s) == {TX: got[0]}


# -- the unit of work runs a deadlock victim again -------------------------------------------------------------------


def _uow(engine: Engine) -> UnitOfWork:
    from harbour.custody.db import session_factory

    return UnitOfWork(session_factory(engine), AuditLog(Ed25519PrivateKey.generate()))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_units_of_work_that_deadlock_both_commit_the_victim_run_again(engine: Engine) -> None:
    uow = _uow(engine)
    uow.write(lambda s: s.add_all([m.ChainCursor(name="a", block=0), m.ChainCursor(name="b", block=0)]))
    met = threading.Barrier(2, timeout=20)
    runs: list[str] = []
    errors: list[BaseException] = []

    def lock_both(first: str, second: str) -> None:
        def work(s: Session) -> None:
            runs.append(first)
            mine = s.scalars(select(m.ChainCursor).where(m.ChainCursor.name == first).with_for_update()).one()
            if runs.count(first) == 1:  # the first run: wait until the other holds its row too, then cross
                met.wait()
            theirs = s.scalars(select(m.ChainCursor).where(m.ChainCursor.name == second).with_for_update()).one()
            mine.block += 1
            theirs.block += 1

        try:
            uow.write(work)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=lock_both, args=pair) for pair in (("a", "b"), ("b", "a"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(runs) == 3, "one of the two was the deadlock victim and ran once more"
    with uow.read() as s:
        assert {c.name: c.block for c in s.scalars(select(m.ChainCursor))} == {"a": 2, "b": 2}


def test_a_unit_of_work_that_fails_for_another_reason_is_not_run_again(engine: Engine) -> None:
    uow = _uow(engine)
    uow.write(lambda s: s.add(m.ChainCursor(name="a", block=0)))
    runs: list[int] = []

    def duplicate(s: Session) -> None:
        runs.append(1)
        s.execute(insert(m.ChainCursor).values(name="a", block=1))

    with pytest.raises(IntegrityError):
        uow.write(duplicate)
    assert runs == [1]


# -- SQLite: one service process -----------------------------------------------------------------------------------


def test_a_second_lock_of_one_sqlite_file_is_refused_until_the_first_is_let_go(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'custody.db'}"
    first = claims.single_process(url)
    assert first is not None
    with pytest.raises(Invalid, match=r"another custody service is running on the SQLite database .*custody\.db"):
        claims.single_process(url)
    first.close()
    again = claims.single_process(url)
    assert again is not None
    again.close()
    assert (tmp_path / f"custody.db{claims.LOCK_SUFFIX}").exists()


def test_postgresql_and_an_in_memory_database_take_no_lock() -> None:
    assert claims.single_process("postgresql+psycopg://custody@db/custody") is None
    assert claims.single_process("sqlite://") is None
    assert claims.single_process("sqlite:///:memory:") is None
