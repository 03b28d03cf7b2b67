"""Key-share files: one party's share, encrypted at rest under a passphrase.

A serialised :class:`~harbour.mpc.keyshare.KeyShare` holds the secret share in the
clear, so it never touches the disk as is. A key-share file is::

    MAGIC (4 bytes) || u32 big-endian header length || header || AES-256-GCM ciphertext

The header is canonical CBOR and says everything needed to open the file, and what
an operator may see without the passphrase::

    {"format": "harbour-keyshare", "version": 1,
     "kdf": {"name": "scrypt", "n": 32768, "r": 8, "p": 1, "salt": <16 bytes>},
     "cipher": "aes-256-gcm", "nonce": <12 bytes>, "ciphertext_length": <int>,
     "scheme": "frost-secp256k1", "party": 2, "key_fingerprint": "<64 hex digits>"}

The key-encryption key is scrypt (RFC 7914) of the passphrase; the ciphertext is
AES-256-GCM of ``KeyShare.serialize()`` with everything before it (magic, length and
header) as associated data, so editing the public metadata, the KDF parameters or
the nonce makes decryption fail rather than mislabel a share. AES-GCM cannot tell a
wrong passphrase from a modified file, and neither can this module.

Reading is strict and cheap before it is expensive: the magic, the header and the
exact file length are checked, and the KDF parameters are bounded, before scrypt
runs. A file is untrusted input: without the bounds, a crafted header could make the
reader allocate gigabytes or spin for minutes.
"""

from __future__ import annotations

import secrets
import struct
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cbor2
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from harbour.crypto.shamir import MAX_PARTIES
from harbour.mpc.keyshare import SCHEME_CURVES, KeyShare, KeyShareError, PublicKeyPackage
from harbour.util import cbor
from harbour.util.files import write_atomic

FORMAT = "harbour-keyshare"
VERSION = 1
MAGIC = b"HBKS"
CIPHER = "aes-256-gcm"

DEFAULT_N = 2**15
"""scrypt cost: about 70 ms and 32 MiB per attempt on a current server core (r = 8, p = 1).

Each passphrase guess costs an attacker who stole the file the same, while opening a
share happens once per node start.
"""
DEFAULT_R = 8
DEFAULT_P = 1
MIN_N = 2**12
"""The cheapest cost accepted. Below the default only for tests; never lower, so a
file cannot be written (or swapped in) with a key derivation that is nearly free."""
MAX_N = 2**20
MAX_R = 16
MAX_P = 4
MAX_MEMORY = 2**30
"""scrypt needs ``128·n·r`` bytes; a header asking for more is refused unread."""
MAX_WORK = 2**23
"""Bound on ``n·r·p`` (a few seconds here): the worst a crafted header can cost us."""

SALT_LEN = 16
NONCE_LEN = 12
TAG_LEN = 16
KEY_LEN = 32
MAX_HEADER_LEN = 4096
MAX_CIPHERTEXT_LEN = 64 * 2**20
"""Far above any share (an ECDSA share of a 3-party key is about 50 KB, growing with n)."""
MAX_FILE_LEN = len(MAGIC) + 4 + MAX_HEADER_LEN + MAX_CIPHERTEXT_LEN

_PREFIX = struct.Struct(">4sI")
_HEADER_KEYS = frozenset(
    {"format", "version", "kdf", "cipher", "nonce", "ciphertext_length", "scheme", "party", "key_fingerprint"}
)
_KDF_KEYS = frozenset({"name", "n", "r", "p", "salt"})

Reason = Literal["format", "corrupt", "passphrase", "kdf", "share", "mismatch", "passphrase-policy"]


class KeyFileError(ValueError):
    """A key-share file that cannot be opened, and why.

    ``reason`` lets a caller act without parsing the message: ``"passphrase"`` (wrong
    passphrase or modified file: worth asking again), ``"format"`` (not a Harbour
    key-share file, or an unsupported version), ``"corrupt"`` (truncated or damaged),
    ``"kdf"`` (KDF parameters out of bounds), ``"share"`` (the decrypted share is
    invalid), ``"mismatch"`` (the share disagrees with its header),
    ``"passphrase-policy"`` (a passphrase refused for writing).
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True)
class ScryptParams:
    """scrypt's cost parameters and salt, as recorded in (and read back from) a file."""

    n: int
    r: int
    p: int
    salt: bytes

    def check(self) -> None:
        """Refuse costs outside the bounds before anything is allocated."""
        for name, value in (("n", self.n), ("r", self.r), ("p", self.p)):
            if type(value) is not int:
                raise KeyFileError("kdf", f"scrypt parameter {name} must be an integer")
        if self.n < 2 or self.n & (self.n - 1):
            raise KeyFileError("kdf", f"scrypt n must be a power of two, got {self.n}")
        if not MIN_N <= self.n <= MAX_N:
            raise KeyFileError("kdf", f"scrypt n={self.n} is outside the accepted range 2**12..2**20")
        if not 1 <= self.r <= MAX_R:
            raise KeyFileError("kdf", f"scrypt r={self.r} is outside the accepted range 1..{MAX_R}")
        if not 1 <= self.p <= MAX_P:
            raise KeyFileError("kdf", f"scrypt p={self.p} is outside the accepted range 1..{MAX_P}")
        if 128 * self.n * self.r > MAX_MEMORY:
            raise KeyFileError("kdf", f"scrypt n={self.n}, r={self.r} would need more than 1 GiB of memory")
        if self.n * self.r * self.p > MAX_WORK:
            raise KeyFileError("kdf", f"scrypt n={self.n}, r={self.r}, p={self.p} costs more than the accepted work")
        if not isinstance(self.salt, bytes) or len(self.salt) != SALT_LEN:
            raise KeyFileError("kdf", f"scrypt salt must be {SALT_LEN} bytes")

    def derive(self, passphrase: str) -> bytes:
        self.check()
        kdf = Scrypt(salt=self.salt, length=KEY_LEN, n=self.n, r=self.r, p=self.p)
        return kdf.derive(_passphrase_bytes(passphrase))


@dataclass(frozen=True)
class KeyFileHeader:
    """The public part of a key-share file: readable without the passphrase.

    It tells an operator (or a node choosing which file to open) whose share a file
    holds and for which key, without exposing anything secret.
    """

    version: int
    scheme: str
    party: int
    key_fingerprint: str
    kdf: ScryptParams
    cipher: str
    nonce: bytes
    ciphertext_length: int

    def encode(self) -> bytes:
        return cbor2.dumps(
            {
                "format": FORMAT,
                "version": self.version,
                "kdf": {"name": "scrypt", "n": self.kdf.n, "r": self.kdf.r, "p": self.kdf.p, "salt": self.kdf.salt},
                "cipher": self.cipher,
                "nonce": self.nonce,
                "ciphertext_length": self.ciphertext_length,
                "scheme": self.scheme,
                "party": self.party,
                "key_fingerprint": self.key_fingerprint,
            },
            canonical=True,
        )


def public_fingerprint(public: PublicKeyPackage) -> str:
    """The key's fingerprint (:meth:`PublicKeyPackage.fingerprint`) as hex, as files record it."""
    return public.fingerprint().hex()


def _passphrase_bytes(passphrase: str) -> bytes:
    # NFC so that a passphrase typed on systems that compose accents differently
    # derives the same key.
    if not isinstance(passphrase, str):
        raise TypeError("the passphrase is a str")
    return unicodedata.normalize("NFC", passphrase).encode("utf-8")


def _is_fingerprint(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


# -- writing ------------------------------------------------------------------------------------------


def encrypt_share(share: KeyShare, passphrase: str, *, kdf_n: int = DEFAULT_N) -> bytes:
    """The encrypted key-share file for ``share``.

    ``kdf_n`` is scrypt's cost; lower it only in tests (it is recorded in the file, and
    still bounded below by ``MIN_N``). The share is checked first, so a file that could
    not be loaded back is never written.
    """
    if not passphrase:
        raise KeyFileError("passphrase-policy", "refusing an empty passphrase: it would protect nothing")
    share.check_consistent()
    params = ScryptParams(kdf_n, DEFAULT_R, DEFAULT_P, secrets.token_bytes(SALT_LEN))
    params.check()
    plaintext = share.serialize()
    header = KeyFileHeader(
        version=VERSION,
        scheme=share.scheme,
        party=share.identifier,
        key_fingerprint=public_fingerprint(share.public),
        kdf=params,
        cipher=CIPHER,
        nonce=secrets.token_bytes(NONCE_LEN),
        ciphertext_length=len(plaintext) + TAG_LEN,
    )
    encoded = header.encode()
    aad = _PREFIX.pack(MAGIC, len(encoded)) + encoded
    ciphertext = AESGCM(params.derive(passphrase)).encrypt(header.nonce, plaintext, aad)
    return aad + ciphertext


def save_share(
    path: Path, share: KeyShare, passphrase: str, *, kdf_n: int = DEFAULT_N, overwrite: bool = False
) -> None:
    """Encrypt ``share`` and write it atomically, owner-only.

    Refuses to replace an existing file unless ``overwrite``: silently overwriting a
    share (perhaps of another key) is how shares get lost. A refresh that replaces a
    share on purpose passes ``overwrite=True``.
    """
    write_atomic(Path(path), encrypt_share(share, passphrase, kdf_n=kdf_n), overwrite=overwrite)


# -- reading ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Parsed:
    header: KeyFileHeader
    aad: bytes
    ciphertext: bytes


def _parse(data: bytes) -> _Parsed:
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise KeyFileError("format", "not a Harbour key-share file (wrong magic bytes)")
    if len(data) < _PREFIX.size:
        raise KeyFileError("corrupt", "key-share file is truncated (incomplete header length)")
    _, header_len = _PREFIX.unpack_from(data)
    if header_len > MAX_HEADER_LEN:
        raise KeyFileError("corrupt", f"key-share file is corrupted (header length {header_len} is implausible)")
    end = _PREFIX.size + header_len
    if len(data) < end:
        raise KeyFileError("corrupt", "key-share file is truncated (incomplete header)")
    encoded = data[_PREFIX.size : end]
    try:
        decoded = cbor.decode(encoded)
    except cbor.InvalidCbor as exc:
        raise KeyFileError("corrupt", "key-share file is corrupted (header is not valid CBOR)") from exc
    obj = decoded.value
    if not isinstance(obj, dict):
        raise KeyFileError("corrupt", "key-share file is corrupted (header is not a map)")
    if obj.get("format") != FORMAT:
        raise KeyFileError("format", "not a Harbour key-share file (wrong format name in header)")
    if obj.get("version") != VERSION:
        raise KeyFileError(
            "format", f"unsupported key-share file version {obj.get('version')!r} (this Harbour reads {VERSION})"
        )
    if not decoded.canonical:
        raise KeyFileError("corrupt", "key-share file is corrupted (header is not canonically encoded)")
    try:
        header = _header_from(obj)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, KeyFileError):
            raise
        raise KeyFileError("corrupt", f"key-share file header is malformed: {exc}") from None
    ciphertext = data[end:]
    if len(ciphertext) < header.ciphertext_length:
        raise KeyFileError(
            "corrupt",
            f"key-share file is truncated ({len(ciphertext)} of {header.ciphertext_length} ciphertext bytes)",
        )
    if len(ciphertext) > header.ciphertext_length:
        extra = len(ciphertext) - header.ciphertext_length
        raise KeyFileError("corrupt", f"key-share file is corrupted ({extra} unexpected bytes after the ciphertext)")
    return _Parsed(header, data[:end], ciphertext)


def _header_from(obj: dict[Any, Any]) -> KeyFileHeader:
    def bad(what: str) -> KeyFileError:
        return KeyFileError("corrupt", f"key-share file is corrupted (header: {what})")

    if set(obj) != _HEADER_KEYS:
        raise bad("missing or unexpected fields")
    kdf = obj["kdf"]
    if not isinstance(kdf, dict) or set(kdf) != _KDF_KEYS:
        raise bad("malformed KDF description")
    if kdf["name"] != "scrypt":
        raise KeyFileError("kdf", f"unsupported key derivation {kdf['name']!r} (expected scrypt)")
    if obj["cipher"] != CIPHER:
        raise KeyFileError("format", f"unsupported cipher {obj['cipher']!r} (expected {CIPHER})")
    nonce = obj["nonce"]
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_LEN:
        raise bad(f"the nonce must be {NONCE_LEN} bytes")
    scheme, party, fingerprint, length = obj["scheme"], obj["party"], obj["key_fingerprint"], obj["ciphertext_length"]
    if scheme not in SCHEME_CURVES:
        raise bad(f"unknown scheme {scheme!r}")
    if type(party) is not int or not 1 <= party <= MAX_PARTIES:
        raise bad(f"party {party!r} is not an identifier in 1..{MAX_PARTIES}")
    if not _is_fingerprint(fingerprint):
        raise bad("key fingerprint is not 64 lowercase hex digits")
    if type(length) is not int or not TAG_LEN < length <= MAX_CIPHERTEXT_LEN:
        raise bad(f"implausible ciphertext length {length!r}")
    params = ScryptParams(kdf["n"], kdf["r"], kdf["p"], kdf["salt"])
    params.check()
    return KeyFileHeader(VERSION, scheme, party, fingerprint, params, CIPHER, nonce, length)


def read_header(data: bytes) -> KeyFileHeader:
    """The public metadata of a key-share file, checked, without the passphrase."""
    return _parse(data).header


def decrypt_share(data: bytes, passphrase: str) -> KeyShare:
    """Open a key-share file: the share, fully validated, or a KeyFileError saying why not."""
    parsed = _parse(data)
    header = parsed.header
    key = header.kdf.derive(passphrase)
    try:
        plaintext = AESGCM(key).decrypt(header.nonce, parsed.ciphertext, parsed.aad)
    except InvalidTag:
        raise KeyFileError(
            "passphrase", "cannot decrypt the key share: wrong passphrase, or the file was modified"
        ) from None
    try:
        share = KeyShare.deserialize(plaintext)
    except KeyShareError as exc:
        raise KeyFileError("share", f"the decrypted key share is corrupted: {exc}") from exc
    # The header is authenticated, so a disagreement means whoever held the passphrase
    # wrote a mislabelled file; using it under the label would be worse than refusing.
    if share.scheme != header.scheme:
        raise KeyFileError(
            "mismatch", f"the file says scheme {header.scheme!r} but holds a {share.scheme!r} share; refusing"
        )
    if share.identifier != header.party:
        raise KeyFileError(
            "mismatch", f"the file says party {header.party} but holds the share of party {share.identifier}; refusing"
        )
    if public_fingerprint(share.public) != header.key_fingerprint:
        raise KeyFileError("mismatch", "the share's key fingerprint differs from the file header's; refusing")
    return share


def read_file(path: Path) -> bytes:
    """A key-share file's bytes, refusing anything far larger than a share can be."""
    with open(path, "rb") as f:
        data = f.read(MAX_FILE_LEN + 1)
    if len(data) > MAX_FILE_LEN:
        raise KeyFileError("corrupt", f"{path} is too large to be a key-share file")
    return data


def load_share(path: Path, passphrase: str) -> KeyShare:
    """Read and decrypt the key-share file at ``path``."""
    return decrypt_share(read_file(Path(path)), passphrase)
