"""The signing log: append-only, hash-chained, and loud about any change to its past."""

from __future__ import annotations

import hashlib
import itertools
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from harbour.node import signlog
from harbour.node.approval import AuthorityKey, issue
from harbour.node.signlog import GENESIS, SignLog, SignLogError, entries, truncate_torn_tail, verify

NOW = 1_767_225_600
DIGEST = hashlib.sha256(b"transfer 100.00 HKD-T to vault 7").digest()


def record(log: SignLog, n: int, **changes: Any) -> signlog.Entry:
    fields: dict[str, Any] = {
        "time": NOW + n,
        "kind": "sign",
        "session_id": hashlib.sha256(n.to_bytes(4, "big")).digest(),
        "key_id": "treasury-hot-1",
        "path": "m/0/7",
        "digests": [DIGEST],
        "outcome": "signed",
        "reason": "",
    }
    fields.update(changes)
    return log.append(**fields)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    """A log of five entries."""
    path = tmp_path / "signing.log"
    with SignLog.open(path) as log:
        for n in range(5):
            record(log, n)
    return path


def lines_of(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(lines))


def problem(path: Path, kind: str, line: int, needle: str) -> SignLogError:
    with pytest.raises(SignLogError) as info:
        verify(path)
    assert info.value.problem == kind, str(info.value)
    assert info.value.line == line, str(info.value)
    assert needle in str(info.value), str(info.value)
    return info.value


# -- appending -----------------------------------------------------------------------------------------


def test_append_and_verify(log_path: Path) -> None:
    assert verify(log_path) == 5
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    got = list(entries(log_path))
    assert [e.seq for e in got] == [1, 2, 3, 4, 5]
    assert got[0].prev == GENESIS
    assert all(b.prev == a.hash for a, b in itertools.pairwise(got))
    assert got[2].digests == (DIGEST.hex(),) and got[2].time == NOW + 2
    assert got[2].session_id == hashlib.sha256((2).to_bytes(4, "big")).hexdigest()


def test_lines_are_canonical_json(log_path: Path) -> None:
    for raw in lines_of(log_path):
        obj = json.loads(raw)
        assert raw == json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
        assert set(obj) >= {"seq", "time", "kind", "session_id", "key_id", "path", "digests", "outcome", "reason"}
        assert set(obj) >= {"certificate_hash", "authority_id", "nonce", "prev", "hash"}


def test_reopen_continues_the_chain(log_path: Path) -> None:
    with SignLog.open(log_path) as log:
        assert log.head[0] == 5
        entry = record(log, 5, outcome="refused", reason="digest not approved", digests=[])
        assert entry.seq == 6 and log.head == (6, entry.hash)
    assert verify(log_path) == 6


def test_certificate_is_logged(tmp_path: Path) -> None:
    authority = AuthorityKey.generate()
    cert = issue(authority, kind="sign", signers=[1, 2], key_id="k", digests=[DIGEST], now=NOW, expires_in=60)
    with SignLog.open(tmp_path / "log") as log:
        entry = log.append(
            time=NOW,
            kind="sign",
            session_id=b"\x01" * 32,
            key_id="k",
            path="m",
            digests=[DIGEST],
            outcome="signed",
            certificate=cert,
        )
    assert entry.certificate_hash == hashlib.sha256(cert).hexdigest()
    assert entry.authority_id == authority.authority_id
    assert entry.nonce is not None and len(entry.nonce) == 32


def test_malformed_certificate_is_logged_by_hash(tmp_path: Path) -> None:
    with SignLog.open(tmp_path / "log") as log:
        entry = log.append(
            time=NOW,
            kind="refresh",
            session_id=b"",
            key_id="k",
            path="m",
            outcome="refused",
            reason="malformed approval certificate",
            certificate=b"garbage",
        )
    assert entry.certificate_hash == hashlib.sha256(b"garbage").hexdigest()
    assert entry.authority_id is None and entry.nonce is None
    assert verify(tmp_path / "log") == 1


def test_empty_log(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with SignLog.open(path) as log:
        assert log.head == (0, GENESIS)
    assert verify(path) == 0


@pytest.mark.parametrize(
    "changes",
    [
        {"kind": "delete"},
        {"outcome": "maybe"},
        {"time": -1},
        {"digests": [b"\x00" * 31]},
        {"session_id": b"\x00" * 65},
        {"reason": "x" * 5000},
        {"key_id": "k" * 500},
    ],
)
def test_append_refuses_bad_fields(log_path: Path, changes: dict[str, Any]) -> None:
    before = log_path.read_bytes()
    with SignLog.open(log_path) as log, pytest.raises(ValueError):
        record(log, 9, **changes)
    assert log_path.read_bytes() == before


def test_one_writer(log_path: Path) -> None:
    with SignLog.open(log_path), pytest.raises(SignLogError) as info:
        SignLog.open(log_path)
    assert info.value.problem == "locked"


# -- tampering -----------------------------------------------------------------------------------------


def test_edited_entry(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[2] = lines[2].replace(b'"outcome":"signed"', b'"outcome":"refused"')
    rewrite(log_path, lines)
    problem(log_path, "edited", 3, "line 3 (seq 3) was edited")


def test_edited_entry_with_recomputed_hash(log_path: Path) -> None:
    """Rehashing the edited entry moves the break to the next one, which names it."""
    lines = lines_of(log_path)
    obj = json.loads(lines[1])
    obj["digests"] = [hashlib.sha256(b"something else").hexdigest()]
    del obj["hash"]
    obj["hash"] = signlog.entry_hash(obj)
    lines[1] = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    rewrite(log_path, lines)
    problem(log_path, "edited", 3, "the entry before it was edited")


def test_reformatted_entry(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[0] = json.dumps(json.loads(lines[0]), sort_keys=True).encode() + b"\n"
    rewrite(log_path, lines)
    problem(log_path, "edited", 1, "canonical form")


def test_deleted_entry(log_path: Path) -> None:
    lines = lines_of(log_path)
    del lines[2]
    rewrite(log_path, lines)
    problem(log_path, "deleted", 3, "follows seq 2: seq 3 deleted")


def test_deleted_entries(log_path: Path) -> None:
    lines = lines_of(log_path)
    del lines[1:3]
    rewrite(log_path, lines)
    problem(log_path, "deleted", 2, "seq 2..3 deleted")


def test_deleted_first_entry(log_path: Path) -> None:
    rewrite(log_path, lines_of(log_path)[1:])
    problem(log_path, "deleted", 1, "is the first entry: seq 1 deleted")


def test_reordered_entries(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[1], lines[2] = lines[2], lines[1]
    rewrite(log_path, lines)
    problem(log_path, "reordered", 2, "reordered")


def test_last_two_swapped(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[3], lines[4] = lines[4], lines[3]
    rewrite(log_path, lines)
    problem(log_path, "reordered", 4, "reordered")


def test_duplicated_entry(log_path: Path) -> None:
    lines = lines_of(log_path)
    rewrite(log_path, [*lines[:3], lines[1], *lines[3:]])
    problem(log_path, "reordered", 4, "duplicated")


def test_garbage_line(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[1] = b"{not json\n"
    rewrite(log_path, lines)
    problem(log_path, "malformed", 2, "not a JSON log entry")


def test_wrong_field_type(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[1] = lines[1].replace(b'"seq":2', b'"seq":"2"')
    rewrite(log_path, lines)
    problem(log_path, "malformed", 2, "'seq'")


def test_blank_line(log_path: Path) -> None:
    lines = lines_of(log_path)
    rewrite(log_path, [*lines[:2], b"\n", *lines[2:]])
    problem(log_path, "malformed", 3, "line 3")


def test_entries_stop_at_the_damage(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[3] = lines[3].replace(b'"outcome":"signed"', b'"outcome":"aborted"')
    rewrite(log_path, lines)
    seen = []
    with pytest.raises(SignLogError):
        for entry in entries(log_path):
            seen.append(entry.seq)
    assert seen == [1, 2, 3]


# -- truncation and crashes ----------------------------------------------------------------------------


def test_torn_last_line(log_path: Path) -> None:
    data = log_path.read_bytes()
    cut = data[: len(data) - 40]
    log_path.write_bytes(cut)
    error = problem(log_path, "torn", 5, "incomplete")
    assert "edited" not in str(error)
    with pytest.raises(SignLogError) as info:
        SignLog.open(log_path)
    assert info.value.problem == "torn"
    torn = truncate_torn_tail(log_path)
    assert torn == cut[cut.rfind(b"\n") + 1 :]
    assert truncate_torn_tail(log_path) == b""
    assert verify(log_path) == 4
    with SignLog.open(log_path) as log:
        record(log, 4, outcome="aborted", reason=f"log entry torn by a crash: {torn[:60]!r}", digests=[])
    assert verify(log_path) == 5


def test_truncation_needs_an_exported_head(log_path: Path) -> None:
    """Whole entries cut off the end leave a valid chain: only a head kept elsewhere shows it."""
    with SignLog.open(log_path) as log:
        head = log.head
    assert verify(log_path, head=head) == 5
    rewrite(log_path, lines_of(log_path)[:3])
    assert verify(log_path) == 3
    with pytest.raises(SignLogError) as info:
        verify(log_path, head=head)
    assert info.value.problem == "truncated" and "truncated" in str(info.value)


def test_rewritten_chain_against_exported_head(log_path: Path, tmp_path: Path) -> None:
    with SignLog.open(log_path) as log:
        head = log.head
    forged = tmp_path / "forged.log"
    with SignLog.open(forged) as log:
        for n in range(5):
            record(log, n, outcome="refused")
    log_path.write_bytes(forged.read_bytes())
    assert verify(log_path) == 5
    with pytest.raises(SignLogError) as info:
        verify(log_path, head=head)
    assert info.value.problem == "edited" and "rewritten" in str(info.value)


def test_open_checks_the_last_entry(log_path: Path) -> None:
    lines = lines_of(log_path)
    lines[-1] = lines[-1].replace(b'"outcome":"signed"', b'"outcome":"refused"')
    rewrite(log_path, lines)
    with pytest.raises(SignLogError) as info:
        SignLog.open(log_path)
    assert info.value.problem == "edited" and "last line" in str(info.value)
