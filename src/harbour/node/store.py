"""A signer node's secret store: named objects, encrypted at rest, under a passphrase or an HSM.

A node keeps its identity key, its key shares and some session state between runs.
None of it may reach the disk in the clear, and the node must be able to open it
again unattended after a restart, so the store is two-level:

* a random 32-byte **data key** encrypts every object with AES-256-GCM;
* the data key is stored only **wrapped** under a key-encryption key (KEK), which
  comes either from a passphrase (scrypt, RFC 7914, with the bounds and defaults of
  :class:`harbour.node.keyfile.ScryptParams`) or from a PKCS#11 token: a
  non-extractable AES-256 key generated on the token, which encrypts the data key at
  :meth:`create` and decrypts it at :meth:`open` (:mod:`harbour.node.hsm` says how,
  and why the token session lasts only that long).

Layout of a store directory::

    store.json            what is needed to recover the data key (below)
    objects/NAME          one file per object; a name "a/b" lives at objects/a/b

``store.json`` (JSON, written once, atomically, mode 0600)::

    {"format": "harbour-secret-store", "version": 1, "store_id": "<32 hex digits>",
     "kek": {"kind": "passphrase", "scrypt": {"n": 32768, "r": 8, "p": 1, "salt": "<32 hex>"}}
        or {"kind": "pkcs11", "pkcs11": {"module": "/usr/lib/softhsm/libsofthsm2.so",
                                         "token_label": "...", "key_label": "harbour-kek"}},
     "data_key": {"cipher": "aes-256-gcm", "nonce": "<24 hex>", "wrapped": "<96 hex>"},
     "checksum": "<64 hex: SHA-256 of the canonical JSON of every other field>"}

The wrapped data key is AES-256-GCM under the KEK with associated data
``WRAP_DOMAIN || canonical JSON of {format, version, store_id, kek}``, so changing
the store id, the KDF parameters or the token and key labels makes unwrapping fail.
The checksum is not a security mechanism (anyone can recompute it); it exists so
that a damaged or hand-edited file is reported as ``"corrupt"`` instead of as a
wrong passphrase, which AES-GCM alone cannot tell apart. With a token, a wrong PIN
is refused by the token at login, so an unwrap failure there is ``"corrupt"``.

An object file is::

    offset  length  field
    0       4       magic b"HBSO"
    4       1       version, 1
    5       12      nonce (random)
    17      n + 16  AES-256-GCM ciphertext of the n-byte object, then the tag

with associated data ``OBJECT_DOMAIN || store_id (16 bytes) || u16 length of the
name || name (ASCII) || magic || version``. A file renamed to another name, copied
into another store, or edited by one bit does not decrypt, and is reported as
``"corrupt"``. Nonces are random 96-bit values (NIST SP 800-38D, §8.2.2), which
bounds the number of encryptions under one data key to 2**32 (§8.3): at one write
a second that is over a century of operation. The same holds for the KEK, which
encrypts one data key per store.

What the store does not protect against: someone able to write the directory can
delete objects, or put back an older version of an object under the same name (a
rollback: nothing here records which version is current). Session state that must
never be reused therefore needs its own single-use guard. ``store.json`` names the
PKCS#11 library that :meth:`open` loads into the process, so write access to the
directory is as good as code execution (:mod:`harbour.node.hsm` refuses a library
that is not an absolute path owned by root or by us and closed to group and others,
which catches a careless setup, not a determined local attacker).

Python cannot zeroise memory: the data key (inside the AES-GCM object), passphrases,
PINs and decrypted objects stay in the process's memory until it is reused, and can
reach swap or a core dump. Run nodes with swap encrypted and core dumps off.

Why one module above 500 lines: about a sixth of it is this description of the
two on-disk formats, and the rest is their one reader and writer; the token's
side already lives in :mod:`harbour.node.hsm`. Split further, the header and the
object format would each need the other's key handling.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pkcs11 import exceptions as p11e

from harbour.node import hsm, keyfile
from harbour.node.hsm import Pkcs11Config
from harbour.node.keyfile import KeyFileError, ScryptParams
from harbour.util.files import fsync_directory, write_atomic
from harbour.util.strictjson import DuplicateKey, loads_strict

FORMAT = "harbour-secret-store"
VERSION = 1
STORE_FILE = "store.json"
OBJECTS_DIR = "objects"
CIPHER = "aes-256-gcm"
OBJECT_MAGIC = b"HBSO"
OBJECT_VERSION = 1
STORE_ID_LEN = 16
DATA_KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
MAX_STORE_FILE_LEN = 64 * 1024
MAX_OBJECT_LEN = 64 * 2**20
"""Far above any key share or session state; a larger file is refused unread."""

WRAP_DOMAIN = b"harbour/secret-store/data-key/v1\x00"
OBJECT_DOMAIN = b"harbour/secret-store/object/v1\x00"

_OBJECT_HEADER = struct.Struct(f">4sB{NONCE_LEN}s")
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_STORE_KEYS = frozenset({"format", "version", "store_id", "kek", "data_key", "checksum"})

Reason = Literal["wrong-secret", "corrupt", "missing", "exists", "token", "policy", "name"]


class StoreError(ValueError):
    """A secret-store operation refused, and why.

    ``reason`` lets a caller act without parsing the message: ``"wrong-secret"``
    (wrong passphrase or PIN: worth asking again), ``"corrupt"`` (store.json or an
    object damaged, edited, truncated or moved), ``"missing"`` (no store or no such
    object), ``"exists"`` (create would replace a store or a token key),
    ``"token"`` (PKCS#11 library, token or key unavailable), ``"policy"`` (a request
    this store refuses: wrong kind of secret, empty passphrase, closed store) and
    ``"name"`` (an invalid object name).
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def check_name(name: str) -> tuple[str, ...]:
    """The segments of a valid object name, or StoreError("name").

    One or two segments: enough for "identity" and "keys/treasury-1", and a name can
    never climb out of the store (no "..", no absolute path, no empty segment).
    """
    if not isinstance(name, str):
        raise StoreError("name", "an object name is a string")
    segments = tuple(name.split("/"))
    if not 1 <= len(segments) <= 2 or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise StoreError(
            "name",
            f"invalid object name {name!r}: one or two '/'-separated segments of letters, digits, '.', '_' "
            "or '-', each starting with a letter or digit and at most 128 characters",
        )
    return segments


# -- store.json ---------------------------------------------------------------------------------------


def _canonical(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _unhex(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * length or not re.fullmatch(r"[0-9a-f]*", value):
        raise StoreError("corrupt", f"store.json is corrupted ({what} must be {2 * length} lowercase hex digits)")
    return bytes.fromhex(value)


@dataclass(frozen=True)
class _Header:
    store_id: bytes
    kek: ScryptParams | Pkcs11Config
    nonce: bytes
    wrapped: bytes

    def kek_json(self) -> dict[str, Any]:
        if isinstance(self.kek, Pkcs11Config):
            return {"kind": "pkcs11", "pkcs11": self.kek.to_json()}
        scrypt = {"n": self.kek.n, "r": self.kek.r, "p": self.kek.p, "salt": self.kek.salt.hex()}
        return {"kind": "passphrase", "scrypt": scrypt}

    def wrap_aad(self) -> bytes:
        bound = {"format": FORMAT, "version": VERSION, "store_id": self.store_id.hex(), "kek": self.kek_json()}
        return WRAP_DOMAIN + _canonical(bound)

    def encode(self) -> bytes:
        body: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "store_id": self.store_id.hex(),
            "kek": self.kek_json(),
            "data_key": {"cipher": CIPHER, "nonce": self.nonce.hex(), "wrapped": self.wrapped.hex()},
        }
        body["checksum"] = hashlib.sha256(_canonical(body)).hexdigest()
        return (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("ascii")


def _parse_header(data: bytes) -> _Header:
    def bad(what: str) -> StoreError:
        return StoreError("corrupt", f"store.json is corrupted ({what})")

    try:
        obj = loads_strict(data.decode("utf-8"), max_depth=None)  # a local file this module wrote
    except DuplicateKey:
        raise bad("a field appears twice") from None
    except ValueError:
        raise bad("not valid JSON; truncated or damaged") from None
    if not isinstance(obj, dict):
        raise bad("not a JSON object")
    if obj.get("format") != FORMAT:
        raise StoreError("corrupt", "store.json is not a Harbour secret store (wrong format tag)")
    if obj.get("version") != VERSION or type(obj.get("version")) is not int:
        raise StoreError("corrupt", f"unsupported secret-store version {obj.get('version')!r} (this reads {VERSION})")
    if set(obj) != _STORE_KEYS:
        raise bad("missing or unexpected fields")
    checksum, expected = obj.pop("checksum"), hashlib.sha256(_canonical(obj)).hexdigest()
    if not isinstance(checksum, str) or checksum != expected:
        raise bad("checksum mismatch: the file was damaged or edited")
    store_id = _unhex(obj["store_id"], STORE_ID_LEN, "store_id")
    kek_obj, wrap = obj["kek"], obj["data_key"]
    kek: ScryptParams | Pkcs11Config
    if not isinstance(kek_obj, dict) or not isinstance(kek_obj.get("kind"), str):
        raise bad("malformed kek")
    if kek_obj["kind"] == "passphrase" and set(kek_obj) == {"kind", "scrypt"}:
        scrypt = kek_obj["scrypt"]
        if not isinstance(scrypt, dict) or set(scrypt) != {"n", "r", "p", "salt"}:
            raise bad("malformed scrypt parameters")
        kek = ScryptParams(scrypt["n"], scrypt["r"], scrypt["p"], _unhex(scrypt["salt"], keyfile.SALT_LEN, "salt"))
        try:
            kek.check()
        except KeyFileError as exc:
            raise bad(str(exc)) from None
    elif kek_obj["kind"] == "pkcs11" and set(kek_obj) == {"kind", "pkcs11"}:
        with _token_errors():
            kek = Pkcs11Config.from_json(kek_obj["pkcs11"])
    else:
        raise bad(f"unknown or malformed key-encryption key {kek_obj['kind']!r}")
    if not isinstance(wrap, dict) or set(wrap) != {"cipher", "nonce", "wrapped"} or wrap["cipher"] != CIPHER:
        raise bad("malformed data_key")
    nonce = _unhex(wrap["nonce"], NONCE_LEN, "data_key nonce")
    wrapped = _unhex(wrap["wrapped"], DATA_KEY_LEN + TAG_LEN, "wrapped data key")
    return _Header(store_id, kek, nonce, wrapped)


@contextlib.contextmanager
def _token_errors() -> Iterator[None]:
    """The token's refusals as the store's own (same reason, same message)."""
    try:
        yield
    except hsm.TokenError as exc:
        raise StoreError(exc.reason, str(exc)) from None


# -- the store ----------------------------------------------------------------------------------------


class SecretStore:
    """Named secrets in a directory, each AES-256-GCM encrypted under the store's data key.

    Open one with :meth:`create` or :meth:`open`. Every method takes one lock, so
    threads may share an instance; several processes may read one store, and each
    write is atomic (a reader sees the old object or the new one), but two writers
    of one name race and the last one wins.
    """

    def __init__(self, directory: Path, header: _Header, data_key: bytes) -> None:
        """Internal: use :meth:`create` or :meth:`open`."""
        self._directory = Path(directory)
        self._objects = self._directory / OBJECTS_DIR
        self._store_id = header.store_id
        self._kind = "pkcs11" if isinstance(header.kek, Pkcs11Config) else "passphrase"
        self._pkcs11 = header.kek if isinstance(header.kek, Pkcs11Config) else None
        self._aead: AESGCM | None = AESGCM(data_key)
        self._lock = threading.Lock()

    # -- opening --------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        directory: Path,
        *,
        passphrase: str | None = None,
        pkcs11: Pkcs11Config | None = None,
        pin: str | None = None,
        kdf_n: int = keyfile.DEFAULT_N,
    ) -> SecretStore:
        """Create a new store in ``directory`` (created if absent), its KEK and its data key.

        Exactly one KEK: a passphrase, or a PKCS#11 token with its user PIN. With a
        token, a key already carrying the label is refused rather than reused: two
        stores sharing a KEK would be one deletion away from both being lost.
        ``kdf_n`` is the scrypt cost; lower it only in tests (bounded below by
        :data:`keyfile.MIN_N`).
        """
        directory = Path(directory)
        if pkcs11 is not None:
            if passphrase is not None:
                raise StoreError("policy", "give a passphrase or a PKCS#11 token, not both")
            if not isinstance(pkcs11, Pkcs11Config):
                raise StoreError("policy", "pkcs11 must be a Pkcs11Config")
            if pin is None:
                raise StoreError("policy", "a PKCS#11 store needs the token's user PIN")
            problem = pkcs11.problem()
            if problem is not None:
                raise StoreError("policy", f"invalid PKCS#11 configuration: {problem}")
            kek: ScryptParams | Pkcs11Config = pkcs11
        else:
            if passphrase is None:
                raise StoreError("policy", "give a passphrase, or a PKCS#11 token and its PIN")
            if pin is not None:
                raise StoreError("policy", "a PIN is for a PKCS#11 token; a passphrase store takes no PIN")
            if not isinstance(passphrase, str) or not passphrase:
                raise StoreError("policy", "refusing an empty passphrase: it would protect nothing")
            kek = ScryptParams(kdf_n, keyfile.DEFAULT_R, keyfile.DEFAULT_P, secrets.token_bytes(keyfile.SALT_LEN))
            try:
                kek.check()
            except KeyFileError as exc:
                raise StoreError("policy", str(exc)) from None
        if (directory / STORE_FILE).exists():
            raise StoreError("exists", f"{directory / STORE_FILE} already exists; refusing to replace a store")
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)

        data_key = secrets.token_bytes(DATA_KEY_LEN)
        header = _Header(secrets.token_bytes(STORE_ID_LEN), kek, secrets.token_bytes(NONCE_LEN), b"")
        if isinstance(kek, Pkcs11Config):
            assert pin is not None
            with _token_errors():
                wrapped = hsm.wrap_under_new_kek(
                    kek, pin, key_id=header.store_id, nonce=header.nonce, aad=header.wrap_aad(), data_key=data_key
                )
        else:
            assert passphrase is not None
            wrapped = AESGCM(kek.derive(passphrase)).encrypt(header.nonce, data_key, header.wrap_aad())
        header = _Header(header.store_id, kek, header.nonce, wrapped)
        try:
            write_atomic(directory / STORE_FILE, header.encode(), overwrite=False)
        except BaseException as exc:
            if isinstance(kek, Pkcs11Config):
                assert pin is not None
                with contextlib.suppress(hsm.TokenError, p11e.PKCS11Error):
                    hsm.destroy_kek(kek, pin, header.store_id)
            if isinstance(exc, FileExistsError):
                raise StoreError(
                    "exists", f"{directory / STORE_FILE} appeared meanwhile; refusing to replace it"
                ) from None
            raise
        (directory / OBJECTS_DIR).mkdir(mode=0o700, exist_ok=True)
        fsync_directory(directory)
        return cls(directory, header, data_key)

    @classmethod
    def open(cls, directory: Path, *, passphrase: str | None = None, pin: str | None = None) -> SecretStore:
        """Open an existing store, recovering its data key with the passphrase or the token's PIN.

        Which one store.json decides; the other is refused rather than ignored, so a
        caller confused about which store it holds finds out here.
        """
        directory = Path(directory)
        path = directory / STORE_FILE
        try:
            with open(path, "rb") as f:
                data = f.read(MAX_STORE_FILE_LEN + 1)
        except (FileNotFoundError, NotADirectoryError):
            raise StoreError("missing", f"no secret store at {directory} ({STORE_FILE} not found)") from None
        if len(data) > MAX_STORE_FILE_LEN:
            raise StoreError("corrupt", f"{path} is too large to be a store description")
        header = _parse_header(data)
        if isinstance(header.kek, Pkcs11Config):
            if passphrase is not None:
                raise StoreError(
                    "policy", f"the store at {directory} is protected by a PKCS#11 token, not by a passphrase"
                )
            if pin is None:
                raise StoreError("policy", f"the store at {directory} needs the user PIN of {header.kek.token_label!r}")
            with _token_errors():
                data_key = hsm.unwrap(
                    header.kek,
                    pin,
                    key_id=header.store_id,
                    nonce=header.nonce,
                    aad=header.wrap_aad(),
                    wrapped=header.wrapped,
                )
        else:
            if pin is not None:
                raise StoreError("policy", f"the store at {directory} is protected by a passphrase, not a PKCS#11 PIN")
            if passphrase is None:
                raise StoreError("policy", f"the store at {directory} needs its passphrase")
            kek = AESGCM(header.kek.derive(passphrase))
            try:
                data_key = kek.decrypt(header.nonce, header.wrapped, header.wrap_aad())
            except InvalidTag:
                raise StoreError(
                    "wrong-secret", f"wrong passphrase for the store at {directory} (or store.json was tampered with)"
                ) from None
        return cls(directory, header, data_key)

    # -- objects --------------------------------------------------------------------------------------

    @property
    def kind(self) -> str:
        """``"passphrase"`` or ``"pkcs11"``: where the KEK comes from."""
        return self._kind

    @property
    def directory(self) -> Path:
        return self._directory

    @property
    def store_id(self) -> str:
        """The store's random id (hex): what a rollback counter is bound to."""
        return self._store_id.hex()

    @property
    def pkcs11(self) -> Pkcs11Config | None:
        """The token holding the KEK, for a PKCS#11 store."""
        return self._pkcs11

    def _aad(self, name: str) -> bytes:
        encoded = name.encode("ascii")
        return (
            OBJECT_DOMAIN
            + self._store_id
            + struct.pack(">H", len(encoded))
            + encoded
            + OBJECT_MAGIC
            + bytes([OBJECT_VERSION])
        )

    def _path(self, name: str) -> Path:
        return self._objects.joinpath(*check_name(name))

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            raise StoreError("policy", "the secret store is closed")
        return self._aead

    def put(self, name: str, data: bytes) -> None:
        """Store ``data`` under ``name``, replacing any previous object, atomically and owner-only."""
        path = self._path(name)
        data = bytes(data)
        if len(data) > MAX_OBJECT_LEN:
            raise StoreError("policy", f"object {name!r} is larger than {MAX_OBJECT_LEN} bytes")
        with self._lock:
            nonce = secrets.token_bytes(NONCE_LEN)
            blob = _OBJECT_HEADER.pack(OBJECT_MAGIC, OBJECT_VERSION, nonce) + self._cipher().encrypt(
                nonce, data, self._aad(name)
            )
            self._objects.mkdir(mode=0o700, exist_ok=True)
            if path.parent != self._objects:
                if path.parent.exists() and not path.parent.is_dir():
                    raise StoreError("name", f"cannot store {name!r}: {path.parent.name!r} is an object")
                path.parent.mkdir(mode=0o700, exist_ok=True)
            if path.is_dir():
                raise StoreError("name", f"cannot store {name!r}: it is the prefix of other objects")
            write_atomic(path, blob, mode=0o600)

    def get(self, name: str) -> bytes:
        """The object stored under ``name``, authenticated, or StoreError("missing" / "corrupt")."""
        path = self._path(name)
        with self._lock:
            aead = self._cipher()
            try:
                with open(path, "rb") as f:
                    blob = f.read(_OBJECT_HEADER.size + MAX_OBJECT_LEN + TAG_LEN + 1)
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                raise StoreError("missing", f"no object {name!r} in the store") from None
            if len(blob) < _OBJECT_HEADER.size + TAG_LEN:
                raise StoreError("corrupt", f"object {name!r} is truncated")
            if len(blob) > _OBJECT_HEADER.size + MAX_OBJECT_LEN + TAG_LEN:
                raise StoreError("corrupt", f"object {name!r} is too large to be one this store wrote")
            magic, version, nonce = _OBJECT_HEADER.unpack_from(blob)
            if magic != OBJECT_MAGIC or version != OBJECT_VERSION:
                raise StoreError("corrupt", f"object {name!r} is not a secret-store object (bad magic or version)")
            try:
                return aead.decrypt(nonce, blob[_OBJECT_HEADER.size :], self._aad(name))
            except InvalidTag:
                raise StoreError(
                    "corrupt",
                    f"object {name!r} fails authentication: damaged, truncated, renamed, or from another store",
                ) from None

    def exists(self, name: str) -> bool:
        path = self._path(name)
        with self._lock:
            self._cipher()
            return path.is_file()

    def delete(self, name: str) -> None:
        """Remove ``name`` if present, durably (the directory is fsynced)."""
        path = self._path(name)
        with self._lock:
            self._cipher()
            try:
                path.unlink()
            except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                return
            fsync_directory(path.parent)

    def names(self, prefix: str = "") -> list[str]:
        """The names of all objects starting with ``prefix``, sorted. Temporary files are not objects."""
        with self._lock:
            self._cipher()
            found: list[str] = []
            if not self._objects.is_dir():
                return found
            for entry in self._objects.iterdir():
                if not _SEGMENT.fullmatch(entry.name):
                    continue
                if entry.is_file():
                    found.append(entry.name)
                elif entry.is_dir():
                    found.extend(
                        f"{entry.name}/{inner.name}"
                        for inner in entry.iterdir()
                        if _SEGMENT.fullmatch(inner.name) and inner.is_file()
                    )
            return sorted(name for name in found if name.startswith(prefix))

    @property
    def is_open(self) -> bool:
        """Whether the store still holds its data key (not yet closed)."""
        return self._aead is not None

    def close(self) -> None:
        """Forget the data key; later calls raise StoreError("policy"). Idempotent.

        The PKCS#11 session was already closed at the end of :meth:`open` (see the
        module docstring), so there is none left to close. Dropping the reference
        does not wipe the key from memory: Python cannot.
        """
        with self._lock:
            self._aead = None

    def __enter__(self) -> SecretStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._aead is None else "open"
        return f"SecretStore({str(self._directory)!r}, kind={self._kind!r}, {state})"
