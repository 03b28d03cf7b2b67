"""Disaster-recovery backups of key shares, encrypted to an offline recovery key.

If enough signer nodes are lost at once, no protocol can bring the key back: the
shares are gone. A custodian therefore keeps, per party, a backup of the share
encrypted to a *recovery key* whose private half lives offline (a paper-printed
X25519 key in a safe, or an RSA key in an HSM). Recovering assembles the whole
private key in one place, so it is the break-glass path, never routine.

A backup record (``party-<i>.backup``) is one canonical CBOR map: format and version,
scheme, party, threshold, parties, the key fingerprint
(:func:`~harbour.node.keyfile.public_fingerprint`), the group public key, the party's
verification share ``x_i·G``, the recovery key's type and fingerprint (SHA-256 of its
DER SubjectPublicKeyInfo), the encapsulated data key, the nonce and the ciphertext.
Everything but the ciphertext is public, so :func:`verify_backups` can audit a set
(right key, right verification shares, one recovery key, which parties are covered)
without the recovery key. All of it is AES-256-GCM associated data, so a record whose
metadata was edited does not decrypt.

The data key is encapsulated in one of two ways:

- ``x25519``: an ephemeral X25519 key agreement with the recovery public key, then
  HKDF-SHA256 (salt: ephemeral key || recovery key; info: a domain string, the key
  fingerprint and the party), as in ECIES/HPKE's base mode.
- ``rsa``: a random 32-byte key wrapped with RSA-OAEP (SHA-256, MGF1-SHA256) under a
  recovery key of at least 4096 bits, for recovery keys that live in an HSM, which
  offer RSA-OAEP unwrapping but rarely X25519.

The plaintext is the secret share ``x_i`` and the key's BIP-32 chain code, not the
whole serialised KeyShare: a backup may sit in a vault for years, so its plaintext is
the most stable encoding there is, and it holds only what recovery needs. The public
parts are in the record; the ECDSA pairwise setup is secret per-node material that no
recovery uses; a single lost node is restored by share repair (``mpc/repair.py``),
not from a backup. The chain code is encrypted because with the group key it is the
xpub, which links every derived address.

Neither construction authenticates the sender: anyone with the recovery *public*
key can write a well-formed record. Recovery therefore trusts no record's claims: each
decrypted share is checked against its verification share, and the interpolated key
against the group key (and, given the public key package, against that).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import cbor2
from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from harbour.chains.ethereum import address_from_public_key
from harbour.crypto.group import Group, GroupError, Point
from harbour.crypto.secp256k1 import N as SECP256K1_ORDER
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.crypto.shamir import SharingError, check_identifiers, interpolate_at_zero
from harbour.mpc.keyshare import SCHEME_CURVES, KeyShare, KeyShareError, PublicKeyPackage, group_by_name
from harbour.node.keyfile import public_fingerprint
from harbour.util import cbor
from harbour.util.files import write_atomic

FORMAT = "harbour-backup"
VERSION = 1
CIPHER = "aes-256-gcm"
RecoveryKind = Literal["x25519", "rsa"]
RSA_MIN_BITS = 4096
RSA_GENERATE_BITS = 4096
NONCE_LEN = 12
KEY_LEN = 32
MAX_BACKUP_LEN = 16 * 1024
MAX_CIPHERTEXT_LEN = 1024
CHAIN_CODE = "chain_code"
_HKDF_DOMAIN = "harbour/backup/x25519/v1"
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
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

RecoveryPublicKey = X25519PublicKey | rsa.RSAPublicKey
RecoveryPrivateKey = X25519PrivateKey | rsa.RSAPrivateKey


class BackupError(ValueError):
    """A backup (or set of backups) that cannot be checked or recovered from, and why."""


# -- recovery keys ------------------------------------------------------------------------------------


def _kind_of(key: RecoveryPublicKey) -> RecoveryKind:
    return "x25519" if isinstance(key, X25519PublicKey) else "rsa"


def _spki_fingerprint(key: RecoveryPublicKey) -> str:
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _check_rsa_size(key: rsa.RSAPublicKey | rsa.RSAPrivateKey) -> None:
    if key.key_size < RSA_MIN_BITS:
        raise BackupError(f"RSA recovery keys must have at least {RSA_MIN_BITS} bits, this one has {key.key_size}")


def load_recovery_public_key(pem: bytes) -> RecoveryPublicKey:
    """An X25519 or RSA (>= 4096 bits) public key from SubjectPublicKeyInfo PEM."""
    try:
        key = serialization.load_pem_public_key(bytes(pem))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise BackupError(f"the recovery public key is not a PEM public key: {exc}") from exc
    if isinstance(key, X25519PublicKey):
        return key
    if isinstance(key, rsa.RSAPublicKey):
        _check_rsa_size(key)
        return key
    raise BackupError(f"unsupported recovery key type {type(key).__name__}: use X25519 or RSA-{RSA_MIN_BITS}")


def load_recovery_private_key(pem: bytes, passphrase: bytes | None = None) -> RecoveryPrivateKey:
    """An X25519 or RSA private key from PKCS#8 PEM, decrypted with ``passphrase`` if it is encrypted."""
    try:
        key = serialization.load_pem_private_key(bytes(pem), password=passphrase)
    except TypeError as exc:  # passphrase given for a clear key, or missing for an encrypted one
        raise BackupError(f"cannot load the recovery private key: {exc}") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise BackupError("cannot load the recovery private key (wrong passphrase, or not a PEM private key)") from exc
    if isinstance(key, X25519PrivateKey):
        return key
    if isinstance(key, rsa.RSAPrivateKey):
        _check_rsa_size(key)
        return key
    raise BackupError(f"unsupported recovery key type {type(key).__name__}: use X25519 or RSA-{RSA_MIN_BITS}")


def recovery_key_fingerprint(public_key_pem: bytes) -> str:
    """SHA-256 (hex) of the recovery public key's DER SubjectPublicKeyInfo, as recorded in backups."""
    return _spki_fingerprint(load_recovery_public_key(public_key_pem))


def generate_recovery_key(
    kind: RecoveryKind, out_private: Path, out_public: Path, *, passphrase: bytes | None = None
) -> str:
    """Create a recovery key pair as PEM files and return its fingerprint.

    The private key is PKCS#8, encrypted under ``passphrase`` when one is given (it
    should be, unless it is generated on an offline machine and moved straight into
    an HSM or onto paper), written owner-only; neither file replaces an existing one.
    """
    private: RecoveryPrivateKey
    if kind == "x25519":
        private = X25519PrivateKey.generate()
    elif kind == "rsa":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_GENERATE_BITS)
    else:
        raise BackupError(f"unknown recovery key type {kind!r}: use 'x25519' or 'rsa'")
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    )
    private_pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_atomic(Path(out_private), private_pem, mode=0o600, overwrite=False)
    write_atomic(Path(out_public), public_pem, mode=0o644, overwrite=False)
    return _spki_fingerprint(private.public_key())


# -- the record ---------------------------------------------------------------------------------------


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


def backup_filename(party: int) -> str:
    return f"party-{party}.backup"


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


def _hkdf(shared: bytes, ephemeral: bytes, recipient: X25519PublicKey, record: BackupRecord) -> bytes:
    recipient_raw = recipient.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    info = cbor2.dumps([_HKDF_DOMAIN, record.key_fingerprint, record.party], canonical=True)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_LEN, salt=ephemeral + recipient_raw, info=info).derive(shared)


def make_backup(share: KeyShare, recovery_public_key_pem: bytes) -> bytes:
    """The backup record of ``share``, encrypted to the recovery public key."""
    try:
        share.check_consistent()
    except KeyShareError as exc:
        raise BackupError(f"refusing to back up an inconsistent key share: {exc}") from exc
    recipient = load_recovery_public_key(recovery_public_key_pem)
    g = share.group
    secret = {"share": g.encode_scalar(share.secret_share), CHAIN_CODE: share.extensions.get(CHAIN_CODE)}
    plaintext = cbor2.dumps(secret, canonical=True)
    record = BackupRecord(
        scheme=share.scheme,
        party=share.identifier,
        threshold=share.threshold,
        parties=share.parties,
        key_fingerprint=public_fingerprint(share.public),
        group_public_key=share.group_public_key,
        verification_share=share.verification_shares[share.identifier],
        recovery_type=_kind_of(recipient),
        recovery_fingerprint=_spki_fingerprint(recipient),
        encapsulation=b"",
        nonce=secrets.token_bytes(NONCE_LEN),
        ciphertext=b"",
    )
    if isinstance(recipient, X25519PublicKey):
        ephemeral = X25519PrivateKey.generate()
        enc = ephemeral.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        record = replace(record, encapsulation=enc)
        key = _hkdf(ephemeral.exchange(recipient), enc, recipient, record)
    else:
        key = secrets.token_bytes(KEY_LEN)
        record = replace(record, encapsulation=recipient.encrypt(key, _OAEP))
    ciphertext = AESGCM(key).encrypt(record.nonce, plaintext, record.associated_data())
    return replace(record, ciphertext=ciphertext).encode()


def save_backup(directory: Path, share: KeyShare, recovery_public_key_pem: bytes, *, overwrite: bool = False) -> Path:
    """Write ``party-<i>.backup`` for ``share`` into ``directory``; returns its path."""
    path = Path(directory) / backup_filename(share.identifier)
    write_atomic(path, make_backup(share, recovery_public_key_pem), overwrite=overwrite)
    return path


def read_backups(directory: Path) -> list[bytes]:
    """Every ``party-*.backup`` file in ``directory``, in name order."""
    return [p.read_bytes() for p in sorted(Path(directory).glob("party-*.backup"))]


# -- checking a set -----------------------------------------------------------------------------------


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


# -- recovery -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RecoveredKey:
    """The whole private key, reassembled from backups.

    ``private_key`` is the scalar ``x`` with ``x·G`` the group key. For Ed25519 schemes
    it is that scalar, not an RFC 8032 seed, so it cannot be imported into ordinary
    Ed25519 wallets (they hash a seed to get the scalar). ``rejected`` names backups
    that were given but not used, and why: a tampered backup in a vault is an incident
    even when recovery succeeds without it.
    """

    scheme: str
    curve: str
    key_fingerprint: str
    private_key: int = field(repr=False)
    public_key: bytes
    ethereum_address: str | None
    chain_code: bytes | None = field(repr=False)
    parties_used: tuple[int, ...]
    rejected: Mapping[int, str]


def _decrypt(record: BackupRecord, private: RecoveryPrivateKey) -> bytes:
    """The record's plaintext; raises InvalidTag or ValueError if it cannot be opened."""
    if isinstance(private, X25519PrivateKey):
        if record.recovery_type != "x25519":
            raise ValueError("not an X25519 backup")
        shared = private.exchange(X25519PublicKey.from_public_bytes(record.encapsulation))
        key = _hkdf(shared, record.encapsulation, private.public_key(), record)
    else:
        if record.recovery_type != "rsa":
            raise ValueError("not an RSA backup")
        key = private.decrypt(record.encapsulation, _OAEP)
        if len(key) != KEY_LEN:
            raise ValueError("wrapped key has the wrong length")
    return AESGCM(key).decrypt(record.nonce, record.ciphertext, record.associated_data())


def _open(record: BackupRecord, private: RecoveryPrivateKey) -> tuple[int, bytes | None]:
    """The record's secret share and chain code; raises ValueError with the reason it is unusable."""
    try:
        plaintext = _decrypt(record, private)
    except (InvalidTag, ValueError):
        raise ValueError("cannot be decrypted: the backup was modified or damaged") from None
    try:
        obj = cbor2.loads(plaintext)
        if not isinstance(obj, dict) or set(obj) != {"share", CHAIN_CODE}:
            raise ValueError("unexpected fields")
        secret = record.group.decode_scalar(obj["share"])
        chain_code = obj[CHAIN_CODE]
        if chain_code is not None and not isinstance(chain_code, bytes):
            raise ValueError("chain code is not bytes")
    except Exception as exc:
        raise ValueError(f"decrypts to a malformed secret ({exc})") from None
    if record.group.base_mul(secret) != record.verification_share:
        raise ValueError("decrypts to a share that does not match its public verification share")
    return secret, chain_code


def recover_private_key(
    backups: Sequence[bytes],
    recovery_private_key_pem: bytes,
    passphrase: bytes | None = None,
    *,
    public: PublicKeyPackage | None = None,
) -> RecoveredKey:
    """Decrypt the backups, check every share, and reassemble the group private key.

    The set must be of one sharing of one key, without duplicates, all encrypted to
    the given recovery key (else BackupError before anything is decrypted). A backup
    that does not decrypt, or whose share does not match its verification share, is
    set aside (see ``RecoveredKey.rejected``); with fewer than ``t`` usable shares
    this raises. The key is Lagrange-interpolated from all usable shares and must
    satisfy ``x·G =`` the group key. Pass ``public`` (the key's public package from a
    trusted source) to also audit the set as :func:`verify_backups` does, since the
    records themselves can be written by anyone holding the recovery public key.
    """
    if not backups:
        raise BackupError("no backups given")
    private = load_recovery_private_key(recovery_private_key_pem, passphrase)
    records = _parse_all(backups)
    if public is not None:
        verify_backups(backups, public)
    first = records[0]
    for index, record in enumerate(records[1:], start=1):
        if record.key_fingerprint != first.key_fingerprint:
            raise _other_key(index, record, first.key_fingerprint, first.group_public_key)
        if (record.scheme, record.threshold, record.parties, record.group_public_key) != (
            first.scheme,
            first.threshold,
            first.parties,
            first.group_public_key,
        ):
            raise BackupError(
                f"{_label(index, record)} and {_label(0, first)} carry the same key fingerprint but disagree "
                "about the scheme, threshold, parties or group key: one of them was edited"
            )
    _, recovery_fp = _check_set(records)
    mine = _spki_fingerprint(private.public_key())
    if recovery_fp != mine:
        raise BackupError(
            f"wrong recovery private key: the backups are encrypted to recovery key {recovery_fp}, "
            f"this private key's is {mine}"
        )

    shares: dict[int, int] = {}
    chain_codes: set[bytes | None] = set()
    rejected: dict[int, str] = {}
    for record in records:
        try:
            secret, chain_code = _open(record, private)
        except ValueError as exc:
            rejected[record.party] = str(exc)
            continue
        shares[record.party] = secret
        chain_codes.add(chain_code)

    t, n = first.threshold, len(first.parties)
    if len(shares) < t:
        found = ", ".join(str(r.party) for r in records)
        why = "; ".join(f"party {i} {reason}" for i, reason in sorted(rejected.items()))
        raise BackupError(
            f"too few backups to recover this {t}-of-{n} key: need {t} valid shares, have {len(shares)} "
            f"(backups found for parties {found or 'none'}" + (f"; rejected: {why})" if why else ")")
        )
    if len(chain_codes) > 1:
        raise BackupError("the backups disagree about the key's chain code")
    group = first.group
    private_key = interpolate_at_zero(shares, group.order)
    if group.base_mul(private_key) != first.group_public_key:
        raise BackupError(
            "the reassembled key does not match the group public key: the backups' shares are inconsistent "
            "(forged or mixed backups)"
        )
    curve = SCHEME_CURVES[first.scheme]
    group_key = first.group_public_key
    address = address_from_public_key(group_key) if isinstance(group_key, Secp256k1Point) else None
    return RecoveredKey(
        scheme=first.scheme,
        curve=curve,
        key_fingerprint=first.key_fingerprint,
        private_key=private_key,
        public_key=group_key.encode(),
        ethereum_address=address,
        chain_code=next(iter(chain_codes)),
        parties_used=tuple(sorted(shares)),
        rejected=rejected,
    )


def keystore_json(key: RecoveredKey | int, passphrase: str, *, iterations: int | None = None) -> str:
    """An Ethereum V3 keystore (Web3 Secret Storage) of a recovered secp256k1 key.

    It lets the recovered key be imported into standard wallets to move funds. The
    keystore is scrypt-encrypted by eth-account; ``iterations`` (scrypt's ``n``) is
    for tests only. Ed25519 keys are refused: a keystore would hold a number that no
    Ethereum tool could use correctly.
    """
    if isinstance(key, RecoveredKey):
        if key.curve != "secp256k1":
            raise BackupError(f"a {key.scheme} key is not a secp256k1 key: Ethereum keystores hold secp256k1 keys only")
        scalar = key.private_key
    else:
        scalar = key
    if type(scalar) is not int or not 0 < scalar < SECP256K1_ORDER:
        raise BackupError("not a secp256k1 private key (must be an integer in 1..n-1)")
    if not passphrase:
        raise BackupError("refusing an empty keystore passphrase")
    from eth_account import Account  # imported here: it is slow to import and only recovery needs it

    keystore = Account.encrypt(scalar.to_bytes(32, "big"), passphrase, kdf="scrypt", iterations=iterations)
    return json.dumps(keystore)
