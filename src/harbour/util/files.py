"""Files that a crash leaves whole: the old contents or the new, never half of each.

Key shares, stores, rosters and configuration are all written this way; a
half-written key share would be a lost share.

This module imports nothing from Harbour, so any layer may use it.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the new one.

    The data goes to a temporary file in the same directory (same file system, so the
    rename is atomic), is fsynced, renamed over ``path`` and the directory is fsynced so
    the rename itself survives a power cut. The file is created with ``mode``
    (owner-only by default) before any byte is written. With ``overwrite=False`` an
    existing ``path`` raises FileExistsError (atomically: the new file is hard-linked
    into place, never renamed over another).
    """
    path = Path(path)
    directory = path.parent
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    if not overwrite:
        tmp.unlink()
    fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make a rename or unlink in ``directory`` survive a power cut (a no-op where directories cannot be opened)."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0)
    try:
        dir_fd = os.open(directory, flags)
    except OSError:  # platforms that cannot open a directory (Windows) cannot fsync one
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
