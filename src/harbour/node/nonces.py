"""The nonce ledger: each approval certificate authorises one session on a node, even across restarts.

A certificate carries a random nonce; a node records each nonce it accepts, fsynced
before the session starts, and refuses a certificate whose nonce it has seen
(:func:`harbour.node.approval.verify` spends it last, once everything else holds).
Entries are kept until the certificate expires, then pruned behind a horizon, so
the ledger stays small while a certificate can never come back to life.

The file is append-only text, one line per nonce, under an exclusive lock that also
stops a second process of the same node from starting.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

from harbour.util.files import fsync_directory, write_atomic

if sys.platform != "win32":
    import fcntl

NONCE_LEN: Final = 16
MAX_EXPIRY: Final = 2**63 - 1
_AUTHORITY_ID = re.compile(r"[0-9a-f]{64}")


class Replayed(ValueError):
    """A nonce already spent, or too old to tell: the certificate carrying it must be refused."""


class LedgerError(ValueError):
    """A nonce-ledger file that cannot be trusted (corrupt, or held by another process).

    A node that cannot rely on its ledger cannot rule out replays, so it must stop
    rather than carry on with an empty one.
    """


_LEDGER_MAGIC: Final = "harbour-nonce-ledger"
_LEDGER_HEADER = re.compile(rb"harbour-nonce-ledger 1 (0|[1-9][0-9]{0,18})\n")
_LEDGER_LINE = re.compile(rb"([0-9a-f]{64}) ([0-9a-f]{32}) (0|[1-9][0-9]{0,18})\n")


def _ledger_line(authority_id: str, nonce: bytes, expires_at: int) -> bytes:
    return f"{authority_id} {nonce.hex()} {expires_at}\n".encode()


def _parse_ledger(data: bytes) -> tuple[int, dict[tuple[str, bytes], int], int]:
    """(horizon, entries, length of the complete lines); a torn last line is left to the caller."""
    header = _LEDGER_HEADER.match(data)
    if header is None:
        raise LedgerError("not a nonce ledger (bad header line)")
    horizon = int(header.group(1))
    entries: dict[tuple[str, bytes], int] = {}
    pos = header.end()
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            break  # torn last line
        line = _LEDGER_LINE.fullmatch(data, pos, end + 1)
        if line is None:
            raise LedgerError(f"corrupt nonce ledger at byte {pos}")
        key = (line.group(1).decode(), bytes.fromhex(line.group(2).decode()))
        entries[key] = max(entries.get(key, 0), int(line.group(3)))
        pos = end + 1
    return horizon, entries, pos


class NonceLedger:
    """The nonces of accepted certificates, so that each authorises one session.

    In memory by default; :meth:`open` backs it with an append-only file, one line
    per nonce, each fsynced before :meth:`consume` returns, so a node that crashes
    after accepting a certificate still refuses it on restart.

    Used nonces are kept until their certificate expires; :meth:`prune` then drops
    them and raises the *horizon*: any certificate expiring before the horizon is
    refused, since its nonce may have been forgotten. That keeps pruning safe even
    if the node's clock is later set back.

    Concurrency: one node process owns a ledger file. Within the process
    :meth:`consume` is atomic under a lock (check and record happen together); a
    second process opening the same file is refused (an exclusive ``flock`` on
    POSIX). Two nodes must never share a ledger: each node has its own.
    """

    def __init__(self, *, horizon: int = 0) -> None:
        self._used: dict[tuple[str, bytes], int] = {}
        self._horizon = horizon
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._fd: int | None = None

    # -- state

    @property
    def horizon(self) -> int:
        return self._horizon

    def __len__(self) -> int:
        return len(self._used)

    def __contains__(self, item: object) -> bool:
        return item in self._used

    def consume(self, authority_id: str, nonce: bytes, expires_at: int) -> None:
        """Record the nonce as used, or raise ApprovalError("replayed") if it was.

        Recorded (and on disk) before returning: the caller may act on the
        certificate only after this returns. If writing fails, the error propagates
        and the certificate must be refused.
        """
        if not _AUTHORITY_ID.fullmatch(authority_id) or len(nonce) != NONCE_LEN or not 0 <= expires_at <= MAX_EXPIRY:
            raise ValueError("consume: malformed authority id, nonce or expiry")
        key = (authority_id, bytes(nonce))
        with self._lock:
            if expires_at < self._horizon:
                raise Replayed(
                    f"cannot rule out a replay: the certificate expires at {expires_at}, before the ledger's "
                    f"horizon {self._horizon} below which used nonces were pruned",
                )
            if key in self._used:
                raise Replayed(f"replayed certificate: nonce {nonce.hex()} of authority {authority_id} was used before")
            if self._fd is not None:
                write_all(self._fd, _ledger_line(authority_id, nonce, expires_at))
                os.fsync(self._fd)
            self._used[key] = expires_at

    def prune(self, now: int) -> int:
        """Forget nonces of certificates expired before ``now``; returns how many.

        The horizon becomes ``now``, so those certificates stay refused. With a
        file, it is rewritten atomically.
        """
        with self._lock:
            keep = {k: v for k, v in self._used.items() if v >= now}
            dropped = len(self._used) - len(keep)
            horizon = max(self._horizon, now)
            if self._path is not None:
                self._rewrite(self._path, horizon, keep)
            self._used, self._horizon = keep, horizon
            return dropped

    # -- bytes

    def to_bytes(self) -> bytes:
        with self._lock:
            return _ledger_bytes(self._horizon, self._used)

    @classmethod
    def from_bytes(cls, data: bytes) -> NonceLedger:
        """An in-memory ledger from :meth:`to_bytes` (strict: a torn line is an error)."""
        horizon, entries, length = _parse_ledger(bytes(data))
        if length != len(data):
            raise LedgerError("nonce ledger ends in an incomplete line")
        ledger = cls(horizon=horizon)
        ledger._used = entries
        return ledger

    # -- file

    @classmethod
    def open(cls, path: Path) -> NonceLedger:
        """The ledger stored at ``path`` (created if missing), held open for appending.

        A last line without its newline was being written when the process died,
        before :meth:`consume` returned, so its certificate was never acted on: it is
        cut off. Any other damage raises LedgerError.
        """
        path = Path(path)
        with contextlib.suppress(FileExistsError):
            write_atomic(path, _ledger_bytes(0, {}), mode=0o600, overwrite=False)
        fd = os.open(path, os.O_RDWR | os.O_APPEND)
        try:
            if not lock_exclusive(fd, path):
                raise LedgerError(f"{path} is in use by another process (each node keeps its own ledger)")
            data = read_fd(fd)
            horizon, entries, length = _parse_ledger(data)
            if length != len(data):
                os.ftruncate(fd, length)
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        ledger = cls(horizon=horizon)
        ledger._used, ledger._path, ledger._fd = entries, path, fd
        return ledger

    def _rewrite(self, path: Path, horizon: int, entries: Mapping[tuple[str, bytes], int]) -> None:
        # The new file is locked before it is renamed into place, so no other
        # process can take it over in between.
        tmp = path.with_name(f".{path.name}.prune")
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            if not lock_exclusive(fd, tmp):
                raise LedgerError(f"{tmp} is in use by another process")
            write_all(fd, _ledger_bytes(horizon, entries))
            os.fsync(fd)
            os.replace(tmp, path)
            fsync_directory(path.parent)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)

    @property
    def closed(self) -> bool:
        return self._fd is None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> NonceLedger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _ledger_bytes(horizon: int, entries: Mapping[tuple[str, bytes], int]) -> bytes:
    lines: Iterable[bytes] = (_ledger_line(a, n, e) for (a, n), e in sorted(entries.items()))
    return f"{_LEDGER_MAGIC} 1 {horizon}\n".encode() + b"".join(lines)


def write_all(fd: int, data: bytes) -> None:
    """``os.write`` until all of ``data`` is written (a single call may write less)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def read_fd(fd: int) -> bytes:
    """The whole file behind ``fd``, whatever its offset (pread)."""
    chunks = []
    offset = 0
    while chunk := os.pread(fd, 1 << 16, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def lock_exclusive(fd: int, path: Path) -> bool:
    """Lock ``fd`` for this process alone; False if another holder has it.

    Also False if ``path`` no longer names the locked file (replaced between open
    and lock), so the lock always guards the file others will open. POSIX
    ``flock``; elsewhere nothing is locked and one process per file is the
    operator's responsibility.
    """
    if sys.platform == "win32":
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return os.fstat(fd).st_ino == os.stat(path).st_ino
