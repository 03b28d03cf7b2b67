"""Encrypting a share into a backup record, and opening one with the recovery private key.

The data key is encapsulated to the recovery key (X25519 then HKDF-SHA256, or
RSA-OAEP with SHA-256), and the plaintext, the share and the chain code only, is
sealed with AES-256-GCM under the record's other fields. Anyone with the recovery
*public* key can write a record, so opening one checks the share it holds against
its verification share before anything uses it.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from harbour.mpc.keyshare import KeyShare, KeyShareError
from harbour.node.backup.errors import BackupError
from harbour.node.backup.record import NONCE_LEN, BackupRecord
from harbour.node.backup.recovery_key import (
    RecoveryPrivateKey,
    _kind_of,
    _spki_fingerprint,
    load_recovery_public_key,
)
from harbour.node.keyfile import public_fingerprint

KEY_LEN = 32
CHAIN_CODE = "chain_code"
_HKDF_DOMAIN = "harbour/backup/x25519/v1"
_OAEP = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


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
