"""The approval authority's key: who decides what the signer nodes sign.

A node joins a session only on a certificate (:mod:`harbour.node.certificate`)
signed by an authority it was configured with. The authority's key is an Ed25519
key kept apart from the nodes, in ``authority.key`` (PKCS#8 PEM, owner-only,
optionally under a passphrase), beside ``authority.pub``, the JSON document a
node is configured with. An authority is named by its id, the SHA-256 of the
public key's DER SubjectPublicKeyInfo, so a configuration can be checked against
a key with openssl alone.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from harbour.util.files import write_atomic

PUBLIC_KEY_LEN: Final = 32
PRIVATE_FILE: Final = "authority.key"
PUBLIC_FILE: Final = "authority.pub"
PUBLIC_FORMAT: Final = "harbour-approval-authority"
PUBLIC_VERSION: Final = 2
"""The version ``authority.pub`` carries: the certificate format's when the two were written together."""


class AuthorityKeyError(ValueError):
    """An authority key file that cannot be read or does not match its public half."""


def authority_id_of(public_key: Ed25519PublicKey) -> str:
    """SHA-256 (hex) of the key's DER SubjectPublicKeyInfo.

    The same fingerprint as recovery keys use, reproducible with
    ``openssl pkey -pubin -outform DER | sha256sum`` from a PEM copy.
    """
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def public_key_from_raw(raw: bytes) -> Ed25519PublicKey:
    if not isinstance(raw, bytes) or len(raw) != PUBLIC_KEY_LEN:
        raise AuthorityKeyError(f"an Ed25519 public key is {PUBLIC_KEY_LEN} bytes")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise AuthorityKeyError(f"not an Ed25519 public key: {exc}") from None


def trusted_authorities(*keys: Ed25519PublicKey | bytes) -> dict[str, Ed25519PublicKey]:
    """The ``trusted`` mapping :func:`harbour.node.approval.verify` takes, keyed by each key's authority id."""
    out = {}
    for key in keys:
        public = public_key_from_raw(key) if isinstance(key, bytes) else key
        out[authority_id_of(public)] = public
    return out


def parse_public_file(data: bytes) -> tuple[str, Ed25519PublicKey]:
    """``authority.pub``: the authority id and key, checked against each other.

    This is what a node is configured with; a file whose id does not match its key
    was edited, and trusting either half would be a guess.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise AuthorityKeyError("the authority public-key file is not valid JSON") from None
    if not isinstance(doc, dict) or doc.get("format") != PUBLIC_FORMAT:
        raise AuthorityKeyError("not a Harbour approval-authority public-key file")
    if doc.get("version") != PUBLIC_VERSION or doc.get("algorithm") != "ed25519":
        raise AuthorityKeyError(f"unsupported authority key (version {doc.get('version')!r}, {doc.get('algorithm')!r})")
    raw, claimed = doc.get("public_key"), doc.get("authority_id")
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9a-f]{64}", raw):
        raise AuthorityKeyError("public_key must be 64 lowercase hex digits")
    public = public_key_from_raw(bytes.fromhex(raw))
    if claimed != authority_id_of(public):
        raise AuthorityKeyError("authority_id does not match the public key (edited?)")
    return claimed, public


@dataclass(frozen=True)
class AuthorityKey:
    """An approval authority's Ed25519 signing key.

    It belongs on a machine (or HSM) apart from the signer nodes: whoever holds it
    decides what the nodes sign.
    """

    private_key: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> AuthorityKey:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    @property
    def public_bytes(self) -> bytes:
        return self.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @property
    def authority_id(self) -> str:
        return authority_id_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)

    def public_document(self) -> dict[str, Any]:
        """What ``authority.pub`` holds, for nodes to be configured with."""
        return {
            "format": PUBLIC_FORMAT,
            "version": PUBLIC_VERSION,
            "algorithm": "ed25519",
            "public_key": self.public_bytes.hex(),
            "authority_id": self.authority_id,
        }

    def save(self, directory: Path, *, passphrase: bytes | None = None) -> None:
        """Write ``authority.key`` (PKCS#8 PEM, owner-only) and ``authority.pub`` (JSON).

        Neither replaces an existing file: overwriting an authority key would strand
        every node configured with the old one, and silently.
        """
        directory = Path(directory)
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        pem = self.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
        if (directory / PUBLIC_FILE).exists():
            raise FileExistsError(f"{directory / PUBLIC_FILE} exists")
        write_atomic(directory / PRIVATE_FILE, pem, mode=0o600, overwrite=False)
        public = json.dumps(self.public_document(), indent=2).encode() + b"\n"
        write_atomic(directory / PUBLIC_FILE, public, mode=0o644, overwrite=False)

    @classmethod
    def load(cls, directory: Path, *, passphrase: bytes | None = None) -> AuthorityKey:
        """Read the key from ``directory``; ``authority.pub``, if present, must be its public half."""
        directory = Path(directory)
        pem = (directory / PRIVATE_FILE).read_bytes()
        try:
            key = serialization.load_pem_private_key(pem, password=passphrase)
        except TypeError as exc:  # a passphrase for a clear key, or none for an encrypted one
            raise AuthorityKeyError(f"cannot load the authority key: {exc}") from None
        except (ValueError, UnsupportedAlgorithm):
            raise AuthorityKeyError("cannot load the authority key (wrong passphrase, or not a PEM key)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise AuthorityKeyError(f"the authority key must be Ed25519, not {type(key).__name__}")
        authority = cls(key)
        public_path = directory / PUBLIC_FILE
        if public_path.exists():
            claimed, _ = parse_public_file(public_path.read_bytes())
            if claimed != authority.authority_id:
                raise AuthorityKeyError(f"{public_path} belongs to another key than {directory / PRIVATE_FILE}")
        return authority


def is_encrypted_pem(pem: bytes) -> bool:
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in pem
