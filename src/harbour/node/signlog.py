"""The signing log: what a node signed (or refused to sign), when, and on whose approval.

An auditor asking "why did this key sign that transaction?" needs an answer from
the node itself, not from the coordinator that asked it. Every session a node is
asked to join leaves one line here, including the ones it refused or abandoned.

The log is JSON lines, appended and fsynced one entry at a time::

    {"authority_id": ..., "certificate_hash": ..., "digests": [...], "hash": ..., "key_id": ...,
     "kind": "sign", "nonce": ..., "outcome": "signed", "path": "m/0/7", "prev": ..., "reason": "",
     "seq": 7, "session_id": ..., "time": 1767225600, "version": 1}

Each line is the canonical JSON of its entry (sorted keys, no spaces, ASCII);
``hash`` is SHA-256 of :data:`DOMAIN` and the canonical JSON of every other field,
and ``prev`` is the previous entry's hash (:data:`GENESIS` for the first), with
``seq`` counting from 1. :func:`verify` recomputes the chain and names the first
line that was edited, deleted, reordered or duplicated.

What the chain does not do on its own: someone who can write the file can cut
entries off its end, or rewrite the whole chain from the first changed entry, and
it still verifies. Against that, export the head (:attr:`SignLog.head`) to somewhere
the node cannot rewrite (an auditor, a write-once store) and pass it back to
:func:`verify` as ``head``: the log must still contain that entry, unchanged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Literal, get_args

from harbour.node import approval, nonces
from harbour.util.files import fsync_directory

VERSION: Final = 1
DOMAIN: Final = b"harbour/signlog-entry/v1\x00"
GENESIS: Final = "0" * 64
MAX_LINE: Final = 65536
"""Far above the largest entry (64 digests, a long reason); a longer line is damage."""
MAX_REASON: Final = 2000
MAX_SESSION_ID: Final = 64

Outcome = Literal[
    "started", "progress", "signed", "staged", "committed", "refused", "aborted", "compromised", "incident"
]
"""``started`` when a session is accepted (so a node that restarts knows which sessions
it abandoned), ``progress`` when a cold node saves a session's state between two rounds
(the reason holds the state's hash, so an older copy put back is refused), then one of:
``signed`` (a signature was released), ``staged`` (an admin session produced a new
share, kept aside until the commit), ``committed`` (that share replaced the old one),
``refused`` (never started) or ``aborted``. Two more record what a node must not
forget, logged just before the session's ``aborted``: ``compromised`` (a peer failed
the KOS check; the reason is ``parties=2,3``) and ``incident`` (a peer's base OT failed
its verification in a threshold-ECDSA setup; the reason is ``nodes=<node id>,...``)."""
OUTCOMES: Final[tuple[str, ...]] = get_args(Outcome)
Problem = Literal["malformed", "edited", "deleted", "reordered", "truncated", "torn", "locked"]

_FIELDS: Final = frozenset(
    {
        "version",
        "seq",
        "time",
        "kind",
        "session_id",
        "key_id",
        "path",
        "digests",
        "certificate_hash",
        "authority_id",
        "nonce",
        "outcome",
        "reason",
        "prev",
        "hash",
    }
)
_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"(?:[0-9a-f]{2})*")


class SignLogError(ValueError):
    """A log that fails its checks, and where: ``line`` (1-based) and ``problem``.

    ``problem`` is ``"torn"`` for an incomplete last line (a write cut short by a
    crash, or a file cut mid-line), which is damage but not necessarily tampering;
    ``"edited"``, ``"deleted"``, ``"reordered"`` and ``"truncated"`` mean the
    content no longer is what the node wrote.
    """

    def __init__(self, problem: Problem, line: int, message: str) -> None:
        super().__init__(message)
        self.problem: Problem = problem
        self.line = line


@dataclass(frozen=True)
class Entry:
    """One line of the log, as stored (bytes as lowercase hex)."""

    seq: int
    time: int
    kind: str
    session_id: str
    key_id: str
    path: str
    digests: tuple[str, ...]
    certificate_hash: str | None
    authority_id: str | None
    nonce: str | None
    outcome: Outcome
    reason: str
    prev: str
    hash: str

    def body(self) -> dict[str, Any]:
        """Every field but ``hash``: what the hash covers."""
        return {
            "version": VERSION,
            "seq": self.seq,
            "time": self.time,
            "kind": self.kind,
            "session_id": self.session_id,
            "key_id": self.key_id,
            "path": self.path,
            "digests": list(self.digests),
            "certificate_hash": self.certificate_hash,
            "authority_id": self.authority_id,
            "nonce": self.nonce,
            "outcome": self.outcome,
            "reason": self.reason,
            "prev": self.prev,
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.body(), "hash": self.hash}

    def line(self) -> bytes:
        return _canonical(self.to_json()) + b"\n"


def _canonical(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def entry_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(DOMAIN + _canonical(body)).hexdigest()


def _is_int(value: object) -> bool:
    return type(value) is int


def _check_fields(obj: dict[str, Any]) -> str | None:
    """The first field with a wrong type or form, or None."""
    checks: dict[str, bool] = {
        "version": obj["version"] == VERSION and _is_int(obj["version"]),
        "seq": _is_int(obj["seq"]) and obj["seq"] >= 1,
        "time": _is_int(obj["time"]) and obj["time"] >= 0,
        "kind": obj["kind"] in approval.KINDS,
        "session_id": isinstance(obj["session_id"], str)
        and len(obj["session_id"]) <= 2 * MAX_SESSION_ID
        and bool(_HEX.fullmatch(obj["session_id"])),
        "key_id": isinstance(obj["key_id"], str) and len(obj["key_id"]) <= approval.MAX_KEY_ID_LEN,
        "path": isinstance(obj["path"], str) and len(obj["path"]) <= approval.MAX_PATH_LEN,
        "digests": isinstance(obj["digests"], list)
        and len(obj["digests"]) <= approval.MAX_DIGESTS
        and all(isinstance(d, str) and _HEX64.fullmatch(d) for d in obj["digests"]),
        "certificate_hash": obj["certificate_hash"] is None
        or (isinstance(obj["certificate_hash"], str) and bool(_HEX64.fullmatch(obj["certificate_hash"]))),
        "authority_id": obj["authority_id"] is None
        or (isinstance(obj["authority_id"], str) and bool(_HEX64.fullmatch(obj["authority_id"]))),
        "nonce": obj["nonce"] is None or (isinstance(obj["nonce"], str) and bool(_HEX32.fullmatch(obj["nonce"]))),
        "outcome": obj["outcome"] in OUTCOMES,
        "reason": isinstance(obj["reason"], str) and len(obj["reason"]) <= MAX_REASON,
        "prev": isinstance(obj["prev"], str) and bool(_HEX64.fullmatch(obj["prev"])),
        "hash": isinstance(obj["hash"], str) and bool(_HEX64.fullmatch(obj["hash"])),
    }
    return next((name for name, good in checks.items() if not good), None)


def _entry_from(obj: dict[str, Any]) -> Entry:
    return Entry(
        seq=obj["seq"],
        time=obj["time"],
        kind=obj["kind"],
        session_id=obj["session_id"],
        key_id=obj["key_id"],
        path=obj["path"],
        digests=tuple(obj["digests"]),
        certificate_hash=obj["certificate_hash"],
        authority_id=obj["authority_id"],
        nonce=obj["nonce"],
        outcome=obj["outcome"],
        reason=obj["reason"],
        prev=obj["prev"],
        hash=obj["hash"],
    )


def _decode_line(raw: bytes, number: int, label: str | None = None) -> Entry:
    """One complete line: well-formed, canonical, and hashing to its own ``hash``."""
    where = label or f"line {number}"
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise SignLogError("malformed", number, f"{where} is not a JSON log entry (edited or damaged)") from None
    if not isinstance(obj, dict) or set(obj) != _FIELDS:
        raise SignLogError("malformed", number, f"{where} does not have exactly the fields of a log entry")
    bad = _check_fields(obj)
    if bad is not None:
        raise SignLogError("malformed", number, f"{where}: field {bad!r} is invalid")
    entry = _entry_from(obj)
    where = f"{label or f'line {number}'} (seq {entry.seq})"
    if entry_hash(entry.body()) != entry.hash:
        raise SignLogError("edited", number, f"{where} was edited: its content does not match its hash")
    if entry.line() != raw:
        raise SignLogError("edited", number, f"{where} was edited: it is not in the canonical form it was written in")
    return entry


def _read_lines(f: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    number = 0
    while raw := f.readline(MAX_LINE + 1):
        number += 1
        if not raw.endswith(b"\n"):
            if len(raw) > MAX_LINE:
                raise SignLogError("malformed", number, f"line {number} is longer than any log entry")
            raise SignLogError(
                "torn",
                number,
                f"line {number}, the last, is incomplete: a write cut short by a crash, or the file was cut "
                "(see truncate_torn_tail)",
            )
        yield number, raw


def _later_seqs(lines: Iterator[tuple[int, bytes]]) -> set[int]:
    """Best-effort seq numbers of the remaining lines, to tell a reorder from a deletion."""
    seqs = set()
    with contextlib.suppress(SignLogError):
        for _, raw in lines:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                seq = json.loads(raw).get("seq")
                if _is_int(seq):
                    seqs.add(seq)
    return seqs


def entries(log_path: Path) -> Iterator[Entry]:
    """The entries in order, each checked against the chain before it is yielded.

    Raises SignLogError at the first line that breaks the chain, so a reader never
    sees an entry it could not trust.
    """
    with open(log_path, "rb") as f:
        lines = _read_lines(f)
        prev, expected = GENESIS, 1
        for number, raw in lines:
            entry = _decode_line(raw, number)
            where = f"line {number} (seq {entry.seq})"
            if entry.seq < expected:
                raise SignLogError(
                    "reordered",
                    number,
                    f"{where} comes after seq {expected - 1}: entries were reordered or duplicated",
                )
            if entry.seq > expected:
                if any(expected <= s < entry.seq for s in _later_seqs(lines)):
                    raise SignLogError(
                        "reordered", number, f"{where} comes where seq {expected} should: entries were reordered"
                    )
                missing = f"seq {expected}" if entry.seq == expected + 1 else f"seq {expected}..{entry.seq - 1}"
                after = f"follows seq {expected - 1}" if expected > 1 else "is the first entry"
                raise SignLogError("deleted", number, f"{where} {after}: {missing} deleted")
            if entry.prev != prev:
                raise SignLogError(
                    "edited",
                    number,
                    f"{where} does not chain to the entry before it: "
                    + ("the entry before it was edited" if number > 1 else "the log's start was edited"),
                )
            yield entry
            prev, expected = entry.hash, expected + 1


def verify(log_path: Path, *, head: tuple[int, str] | None = None) -> int:
    """Check the whole chain; the number of entries, or SignLogError at the first bad line.

    ``head`` is ``(seq, hash)`` of an entry recorded elsewhere earlier: the log
    must still hold it, unchanged, which detects entries cut off the end.
    """
    count, found = 0, None
    for entry in entries(log_path):
        count += 1
        if head is not None and entry.seq == head[0]:
            found = entry
    if head is not None:
        if found is None:
            raise SignLogError(
                "truncated", count + 1, f"the log ends at seq {count}, but seq {head[0]} was recorded: truncated"
            )
        if found.hash != head[1]:
            raise SignLogError(
                "edited", head[0], f"seq {head[0]} differs from the hash recorded for it: the log was rewritten"
            )
    return count


def truncate_torn_tail(log_path: Path) -> bytes:
    """Cut an incomplete last line off the log and return it (empty if there is none).

    For an operator after a crash: the torn entry's session has an unknown
    outcome, so record what is known about it (for instance an ``aborted`` entry
    quoting the returned bytes) rather than discard it silently.
    """
    with open(log_path, "r+b") as f:
        data = f.read()
        end = data.rfind(b"\n") + 1
        if end == len(data):
            return b""
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
        return data[end:]


class SignLog:
    """An open log, held by one node process, that entries are appended to.

    Opening checks only the last entry (to continue the chain from it); run
    :func:`verify` when the node starts to check them all. A log whose last line
    is torn is refused until :func:`truncate_torn_tail` handles it: appending
    after it would bury the damage mid-file. Appends are serialised by a lock and
    each is fsynced before :meth:`append` returns; another process opening the
    same log is refused.
    """

    def __init__(self, path: Path, fd: int, head: tuple[int, str]) -> None:
        self._path = path
        self._fd: int | None = fd
        self._head = head
        self._lock = threading.Lock()
        self._broken = False

    @classmethod
    def open(cls, log_path: Path) -> SignLog:
        log_path = Path(log_path)
        created = not log_path.exists()
        fd = os.open(log_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            if not nonces.lock_exclusive(fd, log_path):
                raise SignLogError("locked", 0, f"{log_path} is in use by another process")
            if created:
                fsync_directory(log_path.parent)
            head = _tail_head(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(log_path, fd, head)

    @property
    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the last entry (``(0, GENESIS)`` when empty): the value to export."""
        return self._head

    def append(
        self,
        *,
        time: int,
        kind: str,
        session_id: bytes,
        key_id: str,
        path: str,
        digests: Sequence[bytes] = (),
        outcome: str,
        reason: str = "",
        certificate: bytes | None = None,
    ) -> Entry:
        """Record one session's outcome; on disk when this returns.

        ``certificate`` is the certificate file the request came with, if any; its
        hash is logged, and its authority and nonce when it parses (a malformed
        certificate is exactly what a ``refused`` entry may need to record).
        """
        if kind not in approval.KINDS or outcome not in OUTCOMES:
            raise ValueError(f"kind must be one of {approval.KINDS} and outcome one of {OUTCOMES}")
        if not _is_int(time) or time < 0:
            raise ValueError("time is non-negative unix seconds")
        if not isinstance(session_id, bytes) or len(session_id) > MAX_SESSION_ID:
            raise ValueError(f"session_id is at most {MAX_SESSION_ID} bytes")
        if any(not isinstance(d, bytes) or len(d) != approval.DIGEST_LEN for d in digests):
            raise ValueError(f"every digest is {approval.DIGEST_LEN} bytes")
        authority_id = nonce = cert_hash = None
        if certificate is not None:
            cert_hash = approval.certificate_hash(certificate)
            with contextlib.suppress(approval.ApprovalError):
                cert, _ = approval.parse(certificate)
                authority_id, nonce = cert.authority_id, cert.nonce.hex()
        with self._lock:
            if self._fd is None or self._broken:
                raise SignLogError("torn", self._head[0] + 1, f"{self._path} is closed or a write to it failed")
            seq, prev = self._head[0] + 1, self._head[1]
            body: dict[str, Any] = {
                "version": VERSION,
                "seq": seq,
                "time": time,
                "kind": kind,
                "session_id": session_id.hex(),
                "key_id": key_id,
                "path": path,
                "digests": [d.hex() for d in digests],
                "certificate_hash": cert_hash,
                "authority_id": authority_id,
                "nonce": nonce,
                "outcome": outcome,
                "reason": reason,
                "prev": prev,
            }
            obj = {**body, "hash": entry_hash(body)}
            bad = _check_fields(obj)
            if bad is not None:
                raise ValueError(f"cannot log this entry: field {bad!r} is invalid")
            entry = _entry_from(obj)
            try:
                nonces.write_all(self._fd, entry.line())
                os.fsync(self._fd)
            except BaseException:
                self._broken = True  # a partial line may be on disk: stop, as after a crash
                raise
            self._head = (seq, entry.hash)
            return entry

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> SignLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _tail_head(fd: int) -> tuple[int, str]:
    """(seq, hash) of the last entry, read from the end of the file."""
    size = os.fstat(fd).st_size
    if size == 0:
        return 0, GENESIS
    start = max(0, size - MAX_LINE - 1)
    tail = os.pread(fd, size - start, start)
    if not tail.endswith(b"\n"):
        raise SignLogError("torn", 0, "the log's last line is incomplete (a crash mid-write?): see truncate_torn_tail")
    cut = tail.rfind(b"\n", 0, len(tail) - 1)
    if cut < 0 and start > 0:
        raise SignLogError("malformed", 0, "the log's last line is longer than any log entry")
    entry = _decode_line(tail[cut + 1 :], 0, "the log's last line")
    return entry.seq, entry.hash
