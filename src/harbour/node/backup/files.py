"""Where backups sit on disk: one ``party-<i>.backup`` file per party, in one directory."""

from __future__ import annotations

from pathlib import Path

from harbour.mpc.keyshare import KeyShare
from harbour.node.backup.encryption import make_backup
from harbour.util.files import write_atomic


def backup_filename(party: int) -> str:
    return f"party-{party}.backup"


def save_backup(directory: Path, share: KeyShare, recovery_public_key_pem: bytes, *, overwrite: bool = False) -> Path:
    """Write ``party-<i>.backup`` for ``share`` into ``directory``; returns its path."""
    path = Path(directory) / backup_filename(share.identifier)
    write_atomic(path, make_backup(share, recovery_public_key_pem), overwrite=overwrite)
    return path


def read_backups(directory: Path) -> list[bytes]:
    """Every ``party-*.backup`` file in ``directory``, in name order."""
    return [p.read_bytes() for p in sorted(Path(directory).glob("party-*.backup"))]
