"""The one error of the backup package.

Every refusal, from a recovery key that is too small to a record that does not
decrypt, is a :class:`BackupError` with a message that says which backup and why:
the commands of ``harbour key`` report it as it is.
"""

from __future__ import annotations


class BackupError(ValueError):
    """A backup (or set of backups) that cannot be checked or recovered from, and why."""
