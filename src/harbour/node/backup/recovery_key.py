"""Recovery keys: the offline key pair every backup of a custodian is encrypted to.

Two kinds, so the private half can live where the custodian keeps such keys:
X25519 (paper in a safe) or RSA of at least 4096 bits (an HSM, which unwraps
RSA-OAEP but rarely speaks X25519). A backup records the key's kind and the
SHA-256 of its DER SubjectPublicKeyInfo, which is how a set of backups is shown to
be encrypted to one key without opening any.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from harbour.node.backup.errors import BackupError
from harbour.util.files import write_atomic

RecoveryKind = Literal["x25519", "rsa"]
RSA_MIN_BITS = 4096
RSA_GENERATE_BITS = 4096

RecoveryPublicKey = X25519PublicKey | rsa.RSAPublicKey
RecoveryPrivateKey = X25519PrivateKey | rsa.RSAPrivateKey


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
