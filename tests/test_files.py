"""Atomic writes: a crash or a refusal leaves the old file whole and no temporary file behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from harbour.util.files import fsync_directory, write_atomic


def test_a_new_file_is_owner_only_unless_asked(tmp_path: Path) -> None:
    write_atomic(tmp_path / "a", b"one")
    write_atomic(tmp_path / "b", b"two", mode=0o644)
    assert (tmp_path / "a").read_bytes() == b"one"
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "b").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]


def test_overwrite_replaces_and_no_overwrite_refuses(tmp_path: Path) -> None:
    path = tmp_path / "f"
    write_atomic(path, b"old")
    write_atomic(path, b"new")
    assert path.read_bytes() == b"new"
    with pytest.raises(FileExistsError):
        write_atomic(path, b"other", overwrite=False)
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "f"
    write_atomic(path, b"old")

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(path, b"new")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


def test_a_directory_that_cannot_be_opened_is_not_an_error(tmp_path: Path) -> None:
    fsync_directory(tmp_path)
    fsync_directory(tmp_path / "missing")
