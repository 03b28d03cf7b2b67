"""The custody audit log: RFC 9162 proofs over stored events, signed tree heads, and tampering found at the exact entry.

Tests that take ``engine`` run on a SQLite file and on the real PostgreSQL server
of the test run (``db_url`` in tests/conftest.py), both migrated to head; the
tampering tests edit, delete and reorder rows with SQL, behind the log's back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import harbour
from harbour.crypto import merkle
from harbour.custody import audit, auditproof, auditverify
from harbour.custody.audit import AuditEvent, AuditLog, AuditState, LogCorrupted, VerifyReport
from harbour.custody.db import Base, make_engine, session_factory
from harbour.custody.errors import Invalid, NotFound

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
OTHER_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
EVENTS: sa.Table = AuditEvent.__table__  # type: ignore[assignment]
STATE: sa.Table = AuditState.__table__  # type: ignore[assignment]


class Clock:
    """A clock that starts at a fixed instant and moves one millisecond per reading (or as told)."""

    def __init__(self) -> None:
        self.now = dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC)
        self.step = dt.timedelta(milliseconds=1)

    def __call__(self) -> dt.datetime:
        self.now += self.step
        return self.now


@pytest.fixture
def log() -> AuditLog:
    return AuditLog(KEY, clock=Clock())


def append_events(sessions: sessionmaker[Session], log: AuditLog, count: int, *, org: str = "org-a") -> None:
    with sessions() as s, s.begin():
        for n in range(count):
            log.append(
                s,
                org_id=org if n % 3 else "org-b",
                actor_id=f"user-{n % 4}" if n % 5 else None,
                kind="transaction.approved" if n % 2 else "vault.created",
                subject=f"subject-{n}",
                data={
                    "n": n,
                    "amount": str(10**30 + n),
                    "note": "naïve ✓ \x00\n 😀",
                    "nested": {"b": [1, None, True], "a": ""},
                },
            )


def check(sessions: sessionmaker[Session], **kwargs: Any) -> VerifyReport:
    with sessions() as s, s.begin():
        return auditverify.verify(s, KEY.public_key(), **kwargs)


def stored_rows(engine: Engine) -> list[Any]:
    with engine.connect() as c:
        return list(c.execute(sa.select(AuditEvent.__table__).order_by(sa.text('"index"'))))


def rewrite(engine: Engine, start: int, *, key: Ed25519PrivateKey | None = None) -> None:
    """What an attacker does after editing rows: recompute every leaf hash and root from ``start`` on,
    re-sign them if they hold the key, and make the state row agree."""
    rows = stored_rows(engine)
    frontier: list[bytes] = []
    with engine.begin() as c:
        for i, row in enumerate(rows):
            event = {**row._mapping, "at": audit.format_time(row.at), "index": i}
            leaf = merkle.leaf_hash(audit.leaf_content(event))
            frontier = merkle.frontier_append(frontier, i, leaf)
            root = merkle.frontier_root(frontier)
            if i >= start:
                values: dict[str, Any] = {"leaf_hash": leaf.hex(), "root": root.hex()}
                if key is not None:
                    values["signature"] = key.sign(audit.head_message(audit.LOG_ID, i + 1, row.at, root)).hex()
                c.execute(sa.update(EVENTS).where(EVENTS.c.index == row.index).values(**values))
        c.execute(
            sa.update(STATE).values(
                size=len(rows), frontier=[f.hex() for f in frontier], root=merkle.frontier_root(frontier).hex()
            )
        )


def sql(engine: Engine, statement: str, **params: Any) -> None:
    with engine.begin() as c:
        c.execute(sa.text(statement), params)


# -- the encodings (pure) ----------------------------------------------------------------------------------------


def test_canonical_json_is_sorted_compact_utf8() -> None:
    assert audit.canonical_json({"b": 1, "a": [True, None, "é"], "c": {"z": -(2**70), "y": ""}}) == (
        '{"a":[true,null,"é"],"b":1,"c":{"y":"","z":-1180591620717411303424}}'.encode()
    )
    assert audit.canonical_json({"s": '\x00\n"\\\x7f'}) == b'{"s":"\\u0000\\n\\"\\\\\x7f"}'


def _nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("data", "error", "match"),
    [
        ({"x": 1.5}, TypeError, "float"),
        ({"x": float("nan")}, TypeError, "float"),
        ({"x": [1, {"y": 0.0}]}, TypeError, r"data\.x\[1\]\.y is a float"),
        ({1: "x"}, TypeError, "keys are strings"),
        ({"x": (1, 2)}, TypeError, "tuple"),
        ({"x": {1, 2}}, TypeError, "set"),
        ({"x": b"raw"}, TypeError, "bytes"),
        ({"x": "\ud800"}, ValueError, "lone surrogate"),
        ({"x": _nested(40)}, ValueError, "deeper"),
    ],
)
def test_data_without_an_exact_json_form_is_refused(data: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        audit.canonical_json(data)


def test_timestamps_have_one_spelling() -> None:
    at = dt.datetime(2025, 1, 31, 20, 0, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert audit.format_time(at) == "2025-01-31T12:00:00.000005Z"
    assert audit.parse_time("2025-01-31T12:00:00.000005Z") == at
    for other in ["2025-01-31T12:00:00Z", "2025-01-31T12:00:00.000005+00:00", "2025-01-31 12:00:00.000005Z", 5]:
        with pytest.raises(ValueError, match="timestamp"):
            audit.parse_time(other)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        audit.format_time(dt.datetime(2025, 1, 31))


def test_head_message_layout() -> None:
    at = dt.datetime(1970, 1, 1, 0, 0, 1, 2, tzinfo=dt.UTC)
    message = audit.head_message("log", 258, at, bytes(range(32)))
    assert message == (
        b"harbour/audit-tree-head/v1\x00" + b"\x03log" + (258).to_bytes(8, "big") + (1_000_002).to_bytes(8, "big")
    ) + bytes(range(32))
    with pytest.raises(ValueError, match="log id"):
        audit.head_message("", 1, at, bytes(32))
    with pytest.raises(ValueError, match="32-byte root"):
        audit.head_message("log", 1, at, bytes(31))
    with pytest.raises(ValueError, match="size and timestamp"):
        audit.head_message("log", 1, dt.datetime(1969, 12, 31, tzinfo=dt.UTC), bytes(32))


# -- appending, heads and proofs ---------------------------------------------------------------------------------


def test_empty_log_has_a_signed_head(sessions: sessionmaker[Session], log: AuditLog) -> None:
    with sessions() as s:
        head = log.head(s)
        assert head["tree_size"] == 0 and head["root"] == merkle.EMPTY_ROOT.hex()
        assert audit.verify_head(head, KEY.public_key())
        assert log.events(s, org_id=None) == []
        assert auditverify.verify(s, log.public_key) == VerifyReport(True, 0, None, "")


def test_append_builds_the_rfc9162_tree_and_signs_each_head(
    engine: Engine, sessions: sessionmaker[Session], log: AuditLog
) -> None:
    append_events(sessions, log, 40)
    with sessions() as s:
        events = log.events(s, org_id=None, limit=100)
        assert [e["index"] for e in events] == list(range(40))
        leaves = [merkle.leaf_hash(audit.leaf_content(e)) for e in events]
        assert [e["leaf_hash"] for e in events] == [leaf.hex() for leaf in leaves]
        head = log.head(s)
        assert head["tree_size"] == 40 and head["root"] == merkle.root(leaves).hex()
        assert head["public_key"] == log.public_key_hex
        assert audit.verify_head(head, log.public_key_hex)
        assert not audit.verify_head(head, OTHER_KEY.public_key())
        assert not audit.verify_head(head, KEY.public_key(), log_id="another-log")
        assert events[7]["data"] == {
            "n": 7,
            "amount": str(10**30 + 7),
            "note": "naïve ✓ \x00\n 😀",
            "nested": {"b": [1, None, True], "a": ""},
        }
        assert events[7]["at"] < events[8]["at"]
    for row in stored_rows(engine):  # every row is the signed head of the tree ending with it
        assert row.root == merkle.root(leaves[: row.index + 1]).hex()
        message = audit.head_message(audit.LOG_ID, row.index + 1, row.at, bytes.fromhex(row.root))
        KEY.public_key().verify(bytes.fromhex(row.signature), message)
    assert check(sessions) == VerifyReport(True, 40, None, "")


def test_every_inclusion_proof_verifies(sessions: sessionmaker[Session], log: AuditLog) -> None:
    append_events(sessions, log, 35)
    with sessions() as s:
        for size in [1, 2, 3, 7, 8, 9, 16, 17, 35]:
            for index in range(size):
                proof = log.inclusion(s, index, size)
                assert proof["head"]["tree_size"] == size and proof["event"]["index"] == index
                wire = json.loads(json.dumps(proof))  # as an auditor receives it from the API
                assert audit.verify_inclusion_proof(wire, KEY.public_key())
                assert audit.verify_inclusion_proof(wire, log.public_key_hex)
                assert not audit.verify_inclusion_proof(wire, OTHER_KEY.public_key())
        newest = log.inclusion(s, 34)
        assert newest["tree_size"] == 35 and newest["head"] == log.head(s)


def test_every_consistency_proof_verifies(sessions: sessionmaker[Session], log: AuditLog) -> None:
    append_events(sessions, log, 20)
    with sessions() as s:
        heads = {size: log.inclusion(s, 0, size)["head"] for size in range(1, 21)}
        for old in range(1, 21):
            for new in range(old, 21):
                proof = json.loads(json.dumps(log.consistency(s, old, new)))
                assert proof["old_head"] == heads[old] and proof["new_head"] == heads[new]
                assert audit.verify_consistency_proof(proof, KEY.public_key(), old_head=heads[old])
                if old != new:
                    assert not audit.verify_consistency_proof(proof, KEY.public_key(), old_head=heads[new])
        assert log.consistency(s, 5)["new_size"] == 20


AUDITOR = """
import json, sys
from harbour.custody import auditproof
given = json.load(sys.stdin)
auditproof.check_head(given["head"], given["key"])
auditproof.check_inclusion_proof(given["inclusion"], given["key"])
auditproof.check_consistency_proof(given["consistency"], given["key"], old_head=given["old_head"])
given["inclusion"]["event"]["data"]["n"] += 1
try:
    auditproof.check_inclusion_proof(given["inclusion"], given["key"])
    refused = False
except auditproof.ProofError:
    refused = True
loaded = sorted(m for m in sys.modules if m.split(".")[0] == "sqlalchemy" or m.startswith("harbour.custody"))
print(json.dumps({"refused": refused, "loaded": loaded}))
"""


@pytest.mark.process  # a fresh interpreter, so that nothing else has loaded SQLAlchemy
def test_an_auditor_checks_heads_and_proofs_without_sqlalchemy_or_the_service(
    sessions: sessionmaker[Session], log: AuditLog
) -> None:
    """The pure module alone, in a fresh interpreter, as an auditor's own script would run it."""
    append_events(sessions, log, 9)
    with sessions() as s:
        given = {
            "key": log.public_key_hex,
            "head": log.head(s),
            "inclusion": log.inclusion(s, 4),
            "consistency": log.consistency(s, 3),
            "old_head": log.inclusion(s, 0, 3)["head"],
        }
    source = str(Path(harbour.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([source, os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", AUDITOR], input=json.dumps(given), capture_output=True, text=True, env=env, check=False
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert result == {"refused": True, "loaded": ["harbour.custody", "harbour.custody.auditproof"]}


def test_the_log_re_exports_the_auditors_checks() -> None:
    """Callers of ``harbour.custody.audit`` see the very objects of the pure module."""
    for name in ("ProofError", "VerifyReport", "check_head", "check_inclusion_proof", "canonical_json", "LOG_ID"):
        assert getattr(audit, name) is getattr(auditproof, name)


def test_events_are_listed_per_organisation_in_pages(sessions: sessionmaker[Session], log: AuditLog) -> None:
    append_events(sessions, log, 12)
    with sessions() as s:
        assert [e["index"] for e in log.events(s, org_id="org-b")] == [0, 3, 6, 9]
        assert [e["index"] for e in log.events(s, org_id="org-a", after=4, limit=3)] == [5, 7, 8]
        assert [e["index"] for e in log.events(s, org_id=None, after=10)] == [11]
        assert log.events(s, org_id="org-c") == []
        bad_pages: list[dict[str, Any]] = [{"limit": 0}, {"limit": True}, {"after": "3"}]
        for bad in bad_pages:
            with pytest.raises(Invalid):
                log.events(s, org_id=None, **bad)


def test_event_commits_or_rolls_back_with_its_transaction(sessions: sessionmaker[Session], log: AuditLog) -> None:
    append_events(sessions, log, 3)
    with pytest.raises(RuntimeError), sessions() as s, s.begin():
        log.append(s, org_id=None, actor_id=None, kind="vault.created", subject=None, data={})
        raise RuntimeError("the state change failed")
    with sessions() as s, s.begin():
        row = log.append(s, org_id=None, actor_id=None, kind="user.created", subject="u", data={"k": "v"})
        assert row.index == 3
        assert s.get(AuditEvent, 3) is not None
    with sessions() as s:
        assert [e["kind"] for e in log.events(s, org_id=None)][-1] == "user.created"
    assert check(sessions).ok


def test_a_session_reads_the_state_again_in_its_next_transaction(
    sessions: sessionmaker[Session], log: AuditLog
) -> None:
    """Appends in one transaction share the state it locked; the session's next transaction does not trust it."""
    event: dict[str, Any] = {"org_id": None, "actor_id": None, "kind": "test.append", "subject": None}
    s = sessions()
    try:
        with s.begin():
            assert [log.append(s, **event, data={"n": n}).index for n in range(3)] == [0, 1, 2]
        with sessions() as other, other.begin():
            assert log.append(other, **event, data={"n": "elsewhere"}).index == 3
        with pytest.raises(RuntimeError), s.begin():
            assert log.append(s, **event, data={"n": "rolled back"}).index == 4
            raise RuntimeError("the state change failed")
        with s.begin():
            assert log.append(s, **event, data={"n": 4}).index == 4
    finally:
        s.close()
    assert check(sessions).ok


def test_timestamps_never_go_back(sessions: sessionmaker[Session]) -> None:
    clock = Clock()
    log = AuditLog(KEY, clock=clock)
    append_events(sessions, log, 2)
    clock.step = -dt.timedelta(hours=1)  # the system clock is set back
    append_events(sessions, log, 2)
    with sessions() as s:
        stamps = [e["at"] for e in log.events(s, org_id=None)]
    assert stamps == sorted(stamps) and stamps[1] == stamps[2] == stamps[3]
    assert check(sessions).ok


@pytest.mark.parametrize(
    ("fields", "error", "match"),
    [
        ({"kind": "Vault Created"}, ValueError, "kind"),
        ({"kind": ""}, ValueError, "kind"),
        ({"org_id": ""}, ValueError, "org_id"),
        ({"actor_id": "x" * 65}, ValueError, "actor_id"),
        ({"subject": 5}, ValueError, "subject"),
        ({"data": [1]}, TypeError, "mapping"),
        ({"data": {"fee": 0.1}}, TypeError, "float"),
        ({"data": {"blob": "x" * audit.MAX_EVENT_BYTES}}, ValueError, "at most"),
    ],
)
def test_append_refuses_bad_events_and_writes_nothing(
    sessions: sessionmaker[Session], log: AuditLog, fields: dict[str, Any], error: type[Exception], match: str
) -> None:
    append_events(sessions, log, 1)
    event: dict[str, Any] = {"org_id": "o", "actor_id": "a", "kind": "x.y", "subject": "s", "data": {}, **fields}
    with sessions() as s, s.begin(), pytest.raises(error, match=match):
        log.append(s, **event)
    with sessions() as s:
        assert log.size(s) == 1
    assert check(sessions).ok


def test_log_ids_and_keys_are_checked() -> None:
    with pytest.raises(TypeError, match="Ed25519"):
        AuditLog(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log id"):
        AuditLog(KEY, "")
    bad_keys: list[str | bytes] = ["00" * 31, "zz" * 32, b"\x00" * 31]
    for bad in bad_keys:
        with pytest.raises(ValueError, match="public key"):
            audit.public_key_of(bad)
        with pytest.raises(ValueError, match="public key"):  # the auditor's own mistake, not a failed proof
            audit.verify_head({}, bad)
    raw = KEY.public_key().public_bytes_raw()
    assert audit.public_key_of(raw.hex().upper()).public_bytes_raw() == raw


def test_concurrent_appends_make_one_contiguous_log(sessions: sessionmaker[Session]) -> None:
    """Eight threads append at once, starting on an empty log (the state row is created under the race)."""
    threads, each = 8, 15
    log = AuditLog(KEY)  # the system clock, read by eight threads
    start = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait()
            for n in range(each):
                with sessions() as s, s.begin():
                    log.append(s, org_id=None, actor_id=f"thread-{t}", kind="test.append", subject=None, data={"n": n})
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    with sessions() as s:
        events = log.events(s, org_id=None, limit=1000)
        assert [e["index"] for e in events] == list(range(threads * each))
        for t in range(threads):
            assert [e["data"]["n"] for e in events if e["actor_id"] == f"thread-{t}"] == list(range(each))
        assert auditverify.verify(s, log.public_key) == VerifyReport(True, threads * each, None, "")


# -- proofs refused, and proofs tampered with -------------------------------------------------------------------


def test_proofs_that_do_not_exist_are_refused(sessions: sessionmaker[Session], log: AuditLog) -> None:
    with sessions() as s, pytest.raises(NotFound, match="holds 0 events"):
        log.inclusion(s, 0)
    append_events(sessions, log, 5)
    with sessions() as s:
        cases: list[tuple[Callable[[], object], type[Exception], str]] = [
            (lambda: log.inclusion(s, 5), NotFound, "no audit event 5: the log holds 5 events"),
            (lambda: log.inclusion(s, 0, 6), NotFound, "no tree of size 6"),
            (lambda: log.inclusion(s, 3, 3), NotFound, r"not in the tree of size 3 \(indexes 0..2\)"),
            (lambda: log.inclusion(s, -1), Invalid, "non-negative"),
            (lambda: log.inclusion(s, True), Invalid, "non-negative"),
            (lambda: log.inclusion(s, 0, 0), Invalid, "positive"),
            (lambda: log.consistency(s, 0, 5), Invalid, "at least one event"),
            (lambda: log.consistency(s, 4, 3), NotFound, "larger than the new one"),
            (lambda: log.consistency(s, 1, 9), NotFound, "no tree of size 9"),
        ]
        for call, error, match in cases:
            with pytest.raises(error, match=match):
                call()


T = TypeVar("T")


def _in_turn(*edits: Callable[[T], None]) -> Callable[[T], None]:
    """One tampering made of several edits, applied in the order given."""

    def edit(target: T) -> None:
        for each in edits:
            each(target)

    return edit


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(proof: dict[str, Any]) -> None:
        target = proof
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _flip(path: list[Any]) -> Callable[[dict[str, Any]], None]:
    def edit(proof: dict[str, Any]) -> None:
        target = proof
        for key in path[:-1]:
            target = target[key]
        text = target[path[-1]]
        target[path[-1]] = ("1" if text[0] == "0" else "0") + text[1:]

    return edit


INCLUSION_TAMPERING: dict[str, Callable[[dict[str, Any]], None]] = {
    "event data": _set(["event", "data", "n"], 99),
    "event kind": _set(["event", "kind"], "vault.deleted"),
    "event organisation": _set(["event", "org_id"], "org-z"),
    "event time": _set(["event", "at"], "2030-01-01T00:00:00.000000Z"),
    "event index": _set(["event", "index"], 4),
    "proof index": _set(["index"], 4),
    "both indexes": _in_turn(_set(["index"], 4), _set(["event", "index"], 4)),
    "tree size": _set(["tree_size"], 12),
    "stated leaf hash": _flip(["leaf_hash"]),
    "audit path node": _flip(["audit_path", 1]),
    "audit path shortened": lambda p: p["audit_path"].pop(),
    "audit path lengthened": lambda p: p["audit_path"].append("00" * 32),
    "audit path reversed": lambda p: p["audit_path"].reverse(),
    "audit path not hex": _set(["audit_path", 0], "zz" * 32),
    "audit path uppercase": lambda p: p["audit_path"].__setitem__(0, p["audit_path"][0].upper()),
    "head root": _flip(["head", "root"]),
    "head size": _set(["head", "tree_size"], 12),
    "head signature": _flip(["head", "signature"]),
    "head timestamp": _set(["head", "timestamp"], "2030-01-01T00:00:00.000000Z"),
    "head timestamp spelling": lambda p: p["head"].__setitem__("timestamp", p["head"]["timestamp"][:-1] + "+00:00"),
    "head log id": _set(["head", "log_id"], "other-log"),
    "head missing": lambda p: p.pop("head"),
    "event missing a field": lambda p: p["event"].pop("subject"),
    "event not an object": _set(["event"], ["not", "an", "event"]),
    "path not a list": _set(["audit_path"], "00" * 32),
}


@pytest.mark.parametrize("name", INCLUSION_TAMPERING)
def test_tampered_inclusion_proofs_fail(sessions: sessionmaker[Session], log: AuditLog, name: str) -> None:
    append_events(sessions, log, 11)
    with sessions() as s:
        proof = json.loads(json.dumps(log.inclusion(s, 5, 11)))
    assert audit.verify_inclusion_proof(proof, KEY.public_key())
    INCLUSION_TAMPERING[name](proof)
    assert not audit.verify_inclusion_proof(proof, KEY.public_key())
    with pytest.raises(audit.ProofError):
        audit.check_inclusion_proof(proof, KEY.public_key())


@pytest.mark.parametrize("garbage", [None, [], "proof", 5, {}, {"head": None, "event": None, "audit_path": None}])
def test_garbage_is_not_a_proof(garbage: Any) -> None:
    assert not audit.verify_inclusion_proof(garbage, KEY.public_key())
    assert not audit.verify_consistency_proof(garbage, KEY.public_key())
    assert not audit.verify_head(garbage, KEY.public_key())


CONSISTENCY_TAMPERING: dict[str, Callable[[dict[str, Any]], None]] = {
    "path node": _flip(["proof", 0]),
    "path shortened": lambda p: p["proof"].pop(),
    "path lengthened": lambda p: p["proof"].append("00" * 32),
    "old root": _flip(["old_head", "root"]),
    "new root": _flip(["new_head", "root"]),
    "old size": _set(["old_size"], 5),
    "sizes swapped": lambda p: p.update(old_head=p["new_head"], new_head=p["old_head"], old_size=11, new_size=6),
    "new head signature": _flip(["new_head", "signature"]),
    "old head of another size": lambda p: p.update(old_size=7, old_head={**p["old_head"], "tree_size": 7}),
}


@pytest.mark.parametrize("name", CONSISTENCY_TAMPERING)
def test_tampered_consistency_proofs_fail(sessions: sessionmaker[Session], log: AuditLog, name: str) -> None:
    append_events(sessions, log, 11)
    with sessions() as s:
        proof = json.loads(json.dumps(log.consistency(s, 6, 11)))
    assert audit.verify_consistency_proof(proof, KEY.public_key())
    CONSISTENCY_TAMPERING[name](proof)
    assert not audit.verify_consistency_proof(proof, KEY.public_key())


# -- the whole log, tampered with in the database ---------------------------------------------------------------

SIZE = 20


def edit_data(engine: Engine, index: int) -> None:
    with engine.begin() as c:
        c.execute(sa.update(EVENTS).where(EVENTS.c.index == index).values(data={"n": index, "amount": "1"}))


def swap(engine: Engine, i: int, j: int) -> None:
    sql(engine, 'UPDATE audit_events SET "index" = -1 WHERE "index" = :i', i=i)
    sql(engine, 'UPDATE audit_events SET "index" = :i WHERE "index" = :j', i=i, j=j)
    sql(engine, 'UPDATE audit_events SET "index" = :j WHERE "index" = -1', j=j)


def forge_signature(engine: Engine, index: int, key: Ed25519PrivateKey) -> None:
    row = stored_rows(engine)[index]
    message = audit.head_message(audit.LOG_ID, index + 1, row.at, bytes.fromhex(row.root))
    with engine.begin() as c:
        c.execute(sa.update(EVENTS).where(EVENTS.c.index == index).values(signature=key.sign(message).hex()))


def delete_and_renumber_5(engine: Engine) -> None:
    sql(engine, 'DELETE FROM audit_events WHERE "index" = 5')
    for k in range(6, SIZE):
        sql(engine, 'UPDATE audit_events SET "index" = :k - 1 WHERE "index" = :k', k=k)
    rewrite(engine, 5)


TAMPERING: dict[str, tuple[Callable[[Engine], None], int, str]] = {
    "data edited": (lambda e: edit_data(e, 7), 7, "content does not match its stored leaf hash"),
    "data edited, hashes recomputed": (
        _in_turn(lambda e: edit_data(e, 7), lambda e: rewrite(e, 7)),
        7,
        "signed tree head of event 7 (size 8) does not verify",
    ),
    "kind edited, hashes recomputed": (
        _in_turn(
            lambda e: sql(e, "UPDATE audit_events SET kind = 'vault.deleted' WHERE \"index\" = 0"),
            lambda e: rewrite(e, 0),
        ),
        0,
        "signed tree head of event 0",
    ),
    "timestamp edited": (
        lambda e: sql(e, 'UPDATE audit_events SET at = :at WHERE "index" = 12', at=dt.datetime(2020, 1, 1)),
        12,
        "content does not match",
    ),
    "timestamp moved back, hashes recomputed and re-signed": (
        _in_turn(
            lambda e: sql(e, 'UPDATE audit_events SET at = :at WHERE "index" = 12', at=dt.datetime(2020, 1, 1)),
            lambda e: rewrite(e, 12, key=KEY),
        ),
        12,
        "timestamped before event 11",
    ),
    "stored root edited": (
        lambda e: sql(e, 'UPDATE audit_events SET root = :r WHERE "index" = 9', r="ab" * 32),
        9,
        "stored root is not the root of the first 10 events",
    ),
    "row deleted": (lambda e: sql(e, 'DELETE FROM audit_events WHERE "index" = 5'), 5, "event 5 is missing"),
    "first row deleted": (lambda e: sql(e, 'DELETE FROM audit_events WHERE "index" = 0'), 0, "event 0 is missing"),
    "row deleted, later rows renumbered and rehashed": (
        delete_and_renumber_5,
        5,
        "signed tree head of event 5",
    ),
    "rows swapped": (lambda e: swap(e, 3, 11), 3, "content does not match its stored leaf hash"),
    "neighbours swapped, hashes recomputed": (
        _in_turn(lambda e: swap(e, 14, 15), lambda e: rewrite(e, 14)),
        14,
        "signed tree head of event 14",
    ),
    "tail cut off": (lambda e: sql(e, 'DELETE FROM audit_events WHERE "index" >= 16'), 16, "events 16..19 are missing"),
    "last row deleted": (lambda e: sql(e, 'DELETE FROM audit_events WHERE "index" = 19'), 19, "events 19..19"),
    "signature from another key": (lambda e: forge_signature(e, 10, OTHER_KEY), 10, "does not verify"),
    "signature garbled": (
        lambda e: sql(e, 'UPDATE audit_events SET signature = :s WHERE "index" = 2', s="00" * 64),
        2,
        "does not verify",
    ),
    "signature not hex": (
        lambda e: sql(e, "UPDATE audit_events SET signature = 'forged' WHERE \"index\" = 2"),
        2,
        "does not verify",
    ),
    "data not an object": (
        lambda e: sql(e, "UPDATE audit_events SET data = '[1]' WHERE \"index\" = 4"),
        4,
        "cannot be encoded",
    ),
    "stray row beyond the state": (
        lambda e: sql(
            e,
            'INSERT INTO audit_events ("index", at, kind, data, leaf_hash, root, signature) '
            "VALUES (20, :at, 'x.y', '{}', 'aa', 'bb', 'cc')",
            at=dt.datetime(2030, 1, 1),
        ),
        20,
        "beyond the size the log state records",
    ),
    "row with a negative index": (
        lambda e: sql(
            e,
            'INSERT INTO audit_events ("index", at, kind, data, leaf_hash, root, signature) '
            "VALUES (-5, :at, 'x.y', '{}', 'aa', 'bb', 'cc')",
            at=dt.datetime(2030, 1, 1),
        ),
        0,
        "unexpected event index -5",
    ),
}


@pytest.mark.parametrize("name", TAMPERING)
def test_verify_names_the_first_tampered_entry(
    engine: Engine, sessions: sessionmaker[Session], log: AuditLog, name: str
) -> None:
    append_events(sessions, log, SIZE)
    assert check(sessions).ok
    tamper, first_bad, problem = TAMPERING[name]
    tamper(engine)
    report = check(sessions)
    assert not report.ok
    assert report.first_bad_index == first_bad, report
    assert problem in report.problem
    assert report.to_json()["first_bad_index"] == first_bad


def test_state_row_tampering_is_found_and_stops_appends(
    engine: Engine, sessions: sessionmaker[Session], log: AuditLog
) -> None:
    append_events(sessions, log, 6)
    sql(engine, "UPDATE audit_state SET root = :r", r="ab" * 32)
    report = check(sessions)
    assert (report.ok, report.first_bad_index, report.size) == (False, None, 6)
    assert "right edge" in report.problem
    with sessions() as s, s.begin(), pytest.raises(LogCorrupted, match="disagrees with its right edge"):
        log.append(s, org_id=None, actor_id=None, kind="x.y", subject=None, data={})
    sql(engine, "UPDATE audit_state SET frontier = '[\"00\"]'")
    with sessions() as s, s.begin(), pytest.raises(LogCorrupted, match="malformed"):
        log.append(s, org_id=None, actor_id=None, kind="x.y", subject=None, data={})
    sql(engine, "DELETE FROM audit_state")
    assert "state row is missing" in check(sessions).problem


def test_kept_heads_catch_a_cut_tail_with_a_rewound_state(engine: Engine, sessions: sessionmaker[Session]) -> None:
    """Deleting the newest events and rewinding the state leaves a log that checks out on its own; the
    head an auditor kept from before shows the cut."""
    log = AuditLog(KEY, clock=Clock())
    append_events(sessions, log, 12)
    with sessions() as s:
        kept = log.head(s)
    sql(engine, 'DELETE FROM audit_events WHERE "index" >= 9')
    rewrite(engine, 9)
    assert check(sessions).ok
    report = check(sessions, heads=[kept])
    assert (report.ok, report.first_bad_index) == (False, 9)
    assert "size 12 was kept but the log holds only 9" in report.problem


def test_kept_heads_catch_a_rewrite_by_the_key_holder(engine: Engine, sessions: sessionmaker[Session]) -> None:
    """Whoever holds the signing key can rewrite and re-sign the log; the heads auditors kept expose it."""
    log = AuditLog(KEY, clock=Clock())
    append_events(sessions, log, 4)
    with sessions() as s:
        kept_4 = log.head(s)
    append_events(sessions, log, 8)
    with sessions() as s:
        kept_12 = log.head(s)
    edit_data(engine, 6)
    rewrite(engine, 6, key=KEY)
    assert check(sessions).ok  # on its own, a re-signed log is indistinguishable
    assert check(sessions, heads=[kept_4]).ok
    report = check(sessions, heads=[kept_4, kept_12])
    assert (report.ok, report.first_bad_index) == (False, 4)
    assert "events 4..11 were rewritten" in report.problem
    with sessions() as s:
        proof = log.consistency(s, 12)
        assert audit.verify_consistency_proof(proof, KEY.public_key())  # the server's own heads agree
        assert not audit.verify_consistency_proof(proof, KEY.public_key(), old_head=kept_12)
    with sessions() as s:
        forked_12 = log.head(s)  # the same size, re-signed over the rewritten log
    report = check(sessions, heads=[kept_12, forked_12])
    assert (report.ok, report.first_bad_index) == (False, None) and "forked log" in report.problem
    bad_head = {**kept_12, "signature": "00" * 64}
    report = check(sessions, heads=[bad_head])
    assert (report.ok, report.first_bad_index) == (False, None) and "kept head is not valid" in report.problem


def test_a_kept_empty_head_must_be_empty(sessions: sessionmaker[Session], log: AuditLog) -> None:
    append_events(sessions, log, 3)
    at = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
    signature = KEY.sign(audit.head_message(audit.LOG_ID, 0, at, bytes(32))).hex()
    head = {"log_id": audit.LOG_ID, "tree_size": 0, "root": "00" * 32, "timestamp": audit.format_time(at)}
    report = check(sessions, heads=[{**head, "signature": signature}])
    assert (report.ok, report.first_bad_index) == (False, 0) and "size 0 differs" in report.problem


def test_verify_reads_in_batches(sessions: sessionmaker[Session], log: AuditLog) -> None:
    append_events(sessions, log, 10)
    for batch in [1, 3, 10, 11]:
        assert check(sessions, batch=batch) == VerifyReport(True, 10, None, "")
    with pytest.raises(ValueError, match="batch"):
        check(sessions, batch=0)


# -- property: proofs at random sizes over one stored log ---------------------------------------------------------


@pytest.fixture(scope="module")
def stored_log() -> Iterator[tuple[sessionmaker[Session], AuditLog]]:
    engine = make_engine("sqlite://")
    Base.metadata.create_all(engine)
    sessions = session_factory(engine)
    log = AuditLog(KEY, clock=Clock())
    append_events(sessions, log, 70)
    yield sessions, log
    engine.dispose()


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_random_proofs_verify(stored_log: tuple[sessionmaker[Session], AuditLog], data: st.DataObject) -> None:
    sessions, log = stored_log
    size = data.draw(st.integers(1, 70))
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    with sessions() as s:
        proof = log.inclusion(s, index, size)
        consistency = log.consistency(s, old, size)
    assert audit.verify_inclusion_proof(proof, KEY.public_key())
    assert audit.verify_consistency_proof(consistency, KEY.public_key())
    other = data.draw(st.integers(0, size - 1).filter(lambda i: i != index))
    moved = {**proof, "index": other, "event": {**proof["event"], "index": other}}
    assert not audit.verify_inclusion_proof(moved, KEY.public_key())
