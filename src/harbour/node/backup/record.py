"""The backup record: one canonical CBOR map, public except for its ciphertext.

Everything a recovery or an audit needs to know about a backup (scheme, party,
threshold, parties, key fingerprint, group key, verification share, recovery key)
is in the clear, so :func:`harbour.node.backup.audit.verify_backups` can check a
set without the recovery key; all of it is AES-256-GCM associated data
(:meth:`BackupRecord.associated_data`), so an edited record does not decrypt.
:func:`parse_backup` accepts only the one canonical encoding of a well-formed record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from harbour.crypto.group import Group, GroupError, Point
from harbour.crypto.shamir import SharingError, check_identifiers
from harbour.mpc.keyshare import SCHEME_CURVES, group_by_name
from harbour.node.backup.errors import BackupError
from harbour.node.backup.recovery_key import RSA_MIN_BITS, RecoveryKind
from harbour.util import cbor

FORMAT = "harbour-backup"
VERSION = 1
CIPHER = "aes-256-gcm"
NONCE_LEN = 12
MAX_BACKUP_LEN = 16 * 1024
MAX_CIPHERTEXT_LEN = 1024
_FIELDS = frozenset(
    {
        "format",
        "version",
        "scheme",
        "party",
        "threshold",
        "parties",
        "key_fingerprint",
        "group_public_key",
        "verification_share",
        "recovery",
        "encapsulation",
        "cipher",
        "nonce",
        "ciphertext",
    }
)


@dataclass(frozen=True)
class BackupRecord:
    """A parsed backup: everything in it but the secret, which stays encrypted."""

    scheme: str
    party: int
    threshold: int
    parties: tuple[int, ...]
    key_fingerprint: str
    group_public_key: Point
    verification_share: Point
    recovery_type: RecoveryKind
    recovery_fingerprint: str
    encapsulation: bytes
    nonce: bytes
    ciphertext: bytes

    @property
    def group(self) -> Group:
        return group_by_name(SCHEME_CURVES[self.scheme])

    def _fields(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "scheme": self.scheme,
            "party": self.party,
            "threshold": self.threshold,
            "parties": list(self.parties),
            "key_fingerprint": self.key_fingerprint,
            "group_public_key": self.group_public_key.encode(),
            "verification_share": self.verification_share.encode(),
            "recovery": {"type": self.recovery_type, "fingerprint": self.recovery_fingerprint},
            "encapsulation": self.encapsulation,
            "cipher": CIPHER,
            "nonce": self.nonce,
        }

    def associated_data(self) -> bytes:
        """Every field but the ciphertext, canonically encoded: what AES-GCM authenticates."""
        return cbor2.dumps(self._fields(), canonical=True)

    def encode(self) -> bytes:
        return cbor2.dumps({**self._fields(), "ciphertext": self.ciphertext}, canonical=True)


def _malformed(what: str) -> BackupError:
    return BackupError(f"malformed backup: {what}")


def _is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def parse_backup(data: bytes) -> BackupRecord:
    """Parse and check a backup record's structure; nothing is decrypted."""
    try:
        return _parse_backup(data)
    except BackupError:
        raise
    except (TypeError, ValueError, RecursionError) as exc:
        raise _malformed(f"unexpected structure ({type(exc).__name__}: {exc})") from None


def _parse_backup(data: bytes) -> BackupRecord:
    data = bytes(data)
    if len(data) > MAX_BACKUP_LEN:
        raise _malformed(f"{len(data)} bytes is far larger than a backup record")
    try:
        decoded = cbor.decode(data)
    except cbor.InvalidCbor as exc:
        raise BackupError("backup is truncated or corrupted (not a valid CBOR record)") from exc
    obj = decoded.value
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise BackupError("not a Harbour backup record")
    if obj.get("version") != VERSION:
        raise BackupError(f"unsupported backup version {obj.get('version')!r} (this Harbour reads {VERSION})")
    if not decoded.canonical:
        if decoded.trailing:
            raise _malformed(f"{decoded.trailing} unexpected bytes after the record")
        raise _malformed("the record is not canonically encoded")
    if set(obj) != _FIELDS:
        raise _malformed("missing or unexpected fields")
    scheme, party, threshold, recovery = obj["scheme"], obj["party"], obj["threshold"], obj["recovery"]
    if scheme not in SCHEME_CURVES:
        raise _malformed(f"unknown scheme {scheme!r}")
    if obj["cipher"] != CIPHER:
        raise _malformed(f"unsupported cipher {obj['cipher']!r}")
    if not isinstance(obj["parties"], list):
        raise _malformed("parties is not a list")
    try:
        parties = tuple(check_identifiers(obj["parties"]))
    except SharingError as exc:
        raise _malformed(str(exc)) from exc
    if type(party) is not int or party not in parties:
        raise _malformed(f"party {party!r} is not one of the parties")
    if type(threshold) is not int or not 1 <= threshold <= len(parties):
        raise _malformed(f"threshold {threshold!r} is not in 1..{len(parties)}")
    if not _is_fingerprint(obj["key_fingerprint"]):
        raise _malformed("key fingerprint is not 64 lowercase hex digits")
    if not isinstance(recovery, dict) or set(recovery) != {"type", "fingerprint"}:
        raise _malformed("malformed recovery key description")
    kind, enc = recovery["type"], obj["encapsulation"]
    if kind not in ("x25519", "rsa"):
        raise _malformed(f"unknown recovery key type {kind!r}")
    if not _is_fingerprint(recovery["fingerprint"]):
        raise _malformed("recovery key fingerprint is not 64 lowercase hex digits")
    if not isinstance(enc, bytes) or not (
        len(enc) == 32 if kind == "x25519" else RSA_MIN_BITS // 8 <= len(enc) <= 1024
    ):
        raise _malformed(f"encapsulated key has the wrong length for a {kind} recovery key")
    if not isinstance(obj["nonce"], bytes) or len(obj["nonce"]) != NONCE_LEN:
        raise _malformed(f"the nonce must be {NONCE_LEN} bytes")
    ciphertext = obj["ciphertext"]
    if not isinstance(ciphertext, bytes) or not 16 < len(ciphertext) <= MAX_CIPHERTEXT_LEN:
        raise _malformed("implausible ciphertext length")
    group = group_by_name(SCHEME_CURVES[scheme])
    try:
        group_key = group.decode_point(obj["group_public_key"])
        verification_share = group.decode_point(obj["verification_share"])
    except (GroupError, TypeError) as exc:
        raise _malformed(f"invalid public point: {exc}") from exc
    return BackupRecord(
        scheme,
        party,
        threshold,
        parties,
        obj["key_fingerprint"],
        group_key,
        verification_share,
        kind,
        recovery["fingerprint"],
        enc,
        obj["nonce"],
        ciphertext,
    )
