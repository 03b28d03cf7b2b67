"""The custody home's two private keys, encrypted at rest under one passphrase.

A custody home holds two signing keys: the approval authority's
(``authority/authority.key``), whose certificates the signer nodes obey, and the
audit log's (``audit.key``), whose signed tree heads auditors keep. Whoever reads
either file in the clear can make the nodes sign or rewrite history, so both are
PKCS#8 PEM encrypted under the home's passphrase, ``HARBOUR_CUSTODY_PASSPHRASE``:
one passphrase because one process, ``harbour custody serve``, needs both, and
two would only be typed together. Their public halves sit beside them in the
clear (``authority/authority.pub``, ``audit.pub``), so configuring nodes and
verifying the audit log need no passphrase.

Homes made before this wrote both keys in the clear; they still open, and
:func:`plaintext_keys` names such files so the commands can say how to encrypt
them (:func:`encrypt_keys`, ``harbour custody encrypt-keys``). A home is only
made plaintext on purpose (``--insecure-plaintext``, for tests).
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path
from typing import Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.custody.errors import Invalid
from harbour.node import approval
from harbour.util.files import write_atomic

PASSPHRASE_ENV: Final = "HARBOUR_CUSTODY_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
AUTHORITY_DIR: Final = "authority"
AUDIT_KEY_FILE: Final = "audit.key"
AUDIT_PUBLIC_FILE: Final = "audit.pub"
MAX_KEY_FILE: Final = 64 * 1024


def env_passphrase() -> str | None:
    """``HARBOUR_CUSTODY_PASSPHRASE``, or None when it is unset or empty."""
    return os.environ.get(PASSPHRASE_ENV) or None


def _secret(passphrase: str) -> bytes:
    # NFC, so that a passphrase typed where accents compose differently still opens the keys.
    return unicodedata.normalize("NFC", passphrase).encode()


def _encryption(passphrase: str | None) -> serialization.KeySerializationEncryption:
    if passphrase is None:
        return serialization.NoEncryption()
    if not passphrase:
        raise Invalid("refusing an empty passphrase for the custody home's keys: it would protect nothing")
    return serialization.BestAvailableEncryption(_secret(passphrase))


def _raw_public(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def create(home: Path, passphrase: str | None) -> None:
    """The authority key and the audit key of a new home, encrypted under ``passphrase`` (None: in the clear)."""
    encryption = _encryption(passphrase)
    (home / AUTHORITY_DIR).mkdir(mode=0o700)
    secret = None if passphrase is None else _secret(passphrase)
    approval.AuthorityKey.generate().save(home / AUTHORITY_DIR, passphrase=secret)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    write_atomic(home / AUDIT_KEY_FILE, pem, mode=0o600, overwrite=False)
    write_atomic(home / AUDIT_PUBLIC_FILE, (_raw_public(key) + "\n").encode(), mode=0o644, overwrite=False)


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise Invalid(f"{path} is far larger than a key file")
    return data


def _password(path: Path, pem: bytes, passphrase: str | None) -> bytes | None:
    """The password to open ``pem`` with: None for a clear key; refuses an encrypted one without a passphrase."""
    if not approval.is_encrypted_pem(pem):
        return None
    if passphrase is None:
        raise Invalid(
            f"{path} is encrypted: set {PASSPHRASE_ENV} to the custody home's passphrase",
            missing=PASSPHRASE_ENV,
        )
    return _secret(passphrase)


def authority_key(home: Path, passphrase: str | None) -> approval.AuthorityKey:
    directory = home / AUTHORITY_DIR
    path = directory / approval.PRIVATE_FILE
    password = _password(path, _read(path), passphrase)
    try:
        return approval.AuthorityKey.load(directory, passphrase=password)
    except approval.AuthorityKeyError as exc:
        raise Invalid(f"{path}: {exc}" + (f" (is {PASSPHRASE_ENV} right?)" if password else "")) from None


def audit_key(home: Path, passphrase: str | None) -> Ed25519PrivateKey:
    path = home / AUDIT_KEY_FILE
    pem = _read(path)
    password = _password(path, pem, passphrase)
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise Invalid(f"cannot open {path}: wrong {PASSPHRASE_ENV}, or not a PEM private key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise Invalid(f"{path} is not an Ed25519 key")
    public = home / AUDIT_PUBLIC_FILE
    if public.exists() and audit_public_hex(home) != _raw_public(key):
        raise Invalid(f"{public} belongs to another key than {path}")
    return key


def audit_public_hex(home: Path) -> str:
    """The audit log's public key (hex) from ``audit.pub``; without one (an older home), from the key itself."""
    public = home / AUDIT_PUBLIC_FILE
    if public.exists():
        text = _read(public).decode(errors="replace").strip()
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            raise Invalid(f"{public} is not an Ed25519 public key (64 lowercase hex digits)")
        return text
    return _raw_public(audit_key(home, env_passphrase()))


def plaintext_keys(home: Path) -> list[Path]:
    """The home's private-key files that are not encrypted (homes made before encryption was the default)."""
    paths = [home / AUTHORITY_DIR / approval.PRIVATE_FILE, home / AUDIT_KEY_FILE]
    return [p for p in paths if p.exists() and not approval.is_encrypted_pem(_read(p))]


def plaintext_warning(home: Path) -> str | None:
    """What to tell an operator whose home still holds clear keys, or None."""
    clear = plaintext_keys(home)
    if not clear:
        return None
    names = " and ".join(str(p) for p in clear)
    return (
        f"warning: {names} {'is' if len(clear) == 1 else 'are'} not encrypted; encrypt them with "
        f"'harbour custody encrypt-keys --home {home}' ({PASSPHRASE_ENV} set)"
    )


def encrypt_keys(home: Path, passphrase: str) -> list[Path]:
    """Rewrite the home's clear private keys encrypted under ``passphrase``; returns the files rewritten.

    Each file is replaced atomically by the same key, encrypted, so a crash leaves
    it clear or encrypted, never lost; ``audit.pub`` is written if it is missing.
    """
    encryption = _encryption(passphrase)
    clear = plaintext_keys(home)
    # A key encrypted already (an earlier, interrupted run) must open with this passphrase: one passphrase per home.
    if home / AUTHORITY_DIR / approval.PRIVATE_FILE not in clear:
        authority_key(home, passphrase)
    if home / AUDIT_KEY_FILE not in clear:
        audit_key(home, passphrase)
    done = []
    for path in clear:
        key = serialization.load_pem_private_key(_read(path), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise Invalid(f"{path} is not an Ed25519 key")
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        write_atomic(path, pem, mode=0o600)
        done.append(path)
    if not (home / AUDIT_PUBLIC_FILE).exists():
        public = _raw_public(audit_key(home, passphrase))
        write_atomic(home / AUDIT_PUBLIC_FILE, (public + "\n").encode(), mode=0o644, overwrite=False)
    return done
