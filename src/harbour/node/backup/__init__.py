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

The package, one concept per module: :mod:`.recovery_key` (loading, generating and
fingerprinting recovery keys), :mod:`.record` (the record format and its strict
parser), :mod:`.encryption` (sealing a share into a record and opening it),
:mod:`.files` (the ``party-<i>.backup`` files), :mod:`.audit` (checking a set without
decrypting) and :mod:`.recovery` (reassembling the key). Everything is importable
from here, as it always was.
"""

from harbour.node.backup.audit import BackupReport, verify_backups
from harbour.node.backup.encryption import CHAIN_CODE, KEY_LEN, make_backup
from harbour.node.backup.errors import BackupError
from harbour.node.backup.files import backup_filename, read_backups, save_backup
from harbour.node.backup.record import (
    CIPHER,
    FORMAT,
    MAX_BACKUP_LEN,
    MAX_CIPHERTEXT_LEN,
    NONCE_LEN,
    VERSION,
    BackupRecord,
    parse_backup,
)
from harbour.node.backup.recovery import RecoveredKey, keystore_json, recover_private_key
from harbour.node.backup.recovery_key import (
    RSA_GENERATE_BITS,
    RSA_MIN_BITS,
    RecoveryKind,
    RecoveryPrivateKey,
    RecoveryPublicKey,
    generate_recovery_key,
    load_recovery_private_key,
    load_recovery_public_key,
    recovery_key_fingerprint,
)

__all__ = [
    "CHAIN_CODE",
    "CIPHER",
    "FORMAT",
    "KEY_LEN",
    "MAX_BACKUP_LEN",
    "MAX_CIPHERTEXT_LEN",
    "NONCE_LEN",
    "RSA_GENERATE_BITS",
    "RSA_MIN_BITS",
    "VERSION",
    "BackupError",
    "BackupRecord",
    "BackupReport",
    "RecoveredKey",
    "RecoveryKind",
    "RecoveryPrivateKey",
    "RecoveryPublicKey",
    "backup_filename",
    "generate_recovery_key",
    "keystore_json",
    "load_recovery_private_key",
    "load_recovery_public_key",
    "make_backup",
    "parse_backup",
    "read_backups",
    "recover_private_key",
    "recovery_key_fingerprint",
    "save_backup",
    "verify_backups",
]
