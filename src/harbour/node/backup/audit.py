"""Auditing a set of backups against a key's public package, without decrypting anything.

A custodian checks its backups long before it needs them: that every record is of
this sharing of this key, matches the package's verification share, appears once,
and is encrypted to the one recovery key; and which parties the set covers. The
same checks guard recovery (:mod:`harbour.node.backup.recovery`) before it opens a record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from harbour.crypto.group import Point
from harbour.mpc.keyshare import KeyShareError, PublicKeyPackage
from harbour.node.backup.errors import BackupError
from harbour.node.backup.record import BackupRecord, parse_backup
from harbour.node.backup.recovery_key import RecoveryKind, recovery_key_fingerprint
from harbour.node.keyfile import public_fingerprint


@dataclass(frozen=True)
class BackupReport:
    """Which parties of a key a set of backups covers, all checked without decryption."""

    scheme: str
    key_fingerprint: str
    threshold: int
    parties: tuple[int, ...]
    present: tuple[int, ...]
    recovery_type: RecoveryKind | None
    recovery_fingerprint: str | None

    @property
    def missing(self) -> tuple[int, ...]:
        return tuple(i for i in self.parties if i not in self.present)

    @property
    def complete(self) -> bool:
        """Every party is backed up: losing any backup still leaves recovery possible if t < n."""
        return not self.missing

    @property
    def sufficient(self) -> bool:
        """At least ``t`` parties are backed up: the key can be recovered from this set."""
        return len(self.present) >= self.threshold


def _label(index: int, record: BackupRecord) -> str:
    return f"backup #{index + 1} (party {record.party})"


def _parse_all(backups: Sequence[bytes]) -> list[BackupRecord]:
    records = []
    for index, data in enumerate(backups):
        try:
            records.append(parse_backup(data))
        except BackupError as exc:
            raise BackupError(f"backup #{index + 1}: {exc}") from exc
    return records


def _other_key(index: int, record: BackupRecord, fingerprint: str, group_key: Point) -> BackupError:
    if record.group_public_key == group_key:
        return BackupError(
            f"{_label(index, record)} is of another sharing of the same key (fingerprint "
            f"{record.key_fingerprint[:16]}…, expected {fingerprint[:16]}…): made before a refresh or reshare?"
        )
    return BackupError(
        f"{_label(index, record)} is a backup of another key (fingerprint {record.key_fingerprint[:16]}…, "
        f"expected {fingerprint[:16]}…)"
    )


def _check_against(index: int, record: BackupRecord, public: PublicKeyPackage, fingerprint: str) -> None:
    if record.key_fingerprint != fingerprint:
        raise _other_key(index, record, fingerprint, public.group_public_key)
    if (record.scheme, record.threshold, record.parties, record.group_public_key) != (
        public.scheme,
        public.threshold,
        public.parties,
        public.group_public_key,
    ):
        raise BackupError(f"{_label(index, record)} claims this key's fingerprint but describes another key")
    if record.verification_share != public.verification_shares[record.party]:
        raise BackupError(
            f"{_label(index, record)}: its verification share differs from the public key package's (edited backup?)"
        )


def _check_set(parsed: Sequence[BackupRecord]) -> tuple[RecoveryKind | None, str | None]:
    """No party twice, and one recovery key for all; returns that key's type and fingerprint."""
    twice = sorted(i for i, count in Counter(r.party for r in parsed).items() if count > 1)
    if twice:
        raise BackupError(f"more than one backup of party {', '.join(map(str, twice))}")
    keys = {(r.recovery_type, r.recovery_fingerprint) for r in parsed}
    if len(keys) > 1:
        listing = "; ".join(f"party {r.party}: {r.recovery_type} {r.recovery_fingerprint[:16]}…" for r in parsed)
        raise BackupError(f"backups are encrypted to different recovery keys ({listing})")
    if not keys:
        return None, None
    return next(iter(keys))


def verify_backups(
    backups: Sequence[bytes], public: PublicKeyPackage, *, recovery_public_key_pem: bytes | None = None
) -> BackupReport:
    """Audit a set of backups against the key's public package, without decrypting.

    Any record that is malformed, of another key (or of another sharing of it), whose
    verification share differs from the package's, duplicated, or encrypted to a
    different recovery key (than the others, or than ``recovery_public_key_pem``)
    raises BackupError: an auditor must look at a set like that, not read a summary.
    """
    try:
        public.check_consistent()
    except KeyShareError as exc:
        raise BackupError(f"the public key package is inconsistent: {exc}") from exc
    fingerprint = public_fingerprint(public)
    records = _parse_all(backups)
    for index, record in enumerate(records):
        _check_against(index, record, public, fingerprint)
    kind, recovery_fp = _check_set(records)
    if recovery_public_key_pem is not None and records:
        expected = recovery_key_fingerprint(recovery_public_key_pem)
        if recovery_fp != expected:
            raise BackupError(f"backups are encrypted to recovery key {recovery_fp}, not to the given one ({expected})")
    return BackupReport(
        scheme=public.scheme,
        key_fingerprint=fingerprint,
        threshold=public.threshold,
        parties=public.parties,
        present=tuple(sorted(r.party for r in records)),
        recovery_type=kind,
        recovery_fingerprint=recovery_fp,
    )
