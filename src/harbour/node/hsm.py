"""The PKCS#11 token (an HSM; SoftHSM2 in tests) that holds a secret store's key-encryption key.

A store's data key may be wrapped under an AES-256 key generated on a token as a
token object with ``CKA_SENSITIVE`` true and ``CKA_EXTRACTABLE`` false, usable for
``CKM_AES_GCM`` encryption and decryption only, and found again by its label (OASIS
PKCS #11 Cryptographic Token Interface Base Specification and Current Mechanisms
Specification, v2.40 and v3.0: secret-key object attributes; ``CKM_AES_GCM`` with
``CK_GCM_PARAMS``). The KEK's value never leaves the token: the token encrypts the
data key when the store is created and decrypts it when the store is opened
(:mod:`harbour.node.store`). The rollback counter (:mod:`harbour.node.counter`)
keeps its data object on the same token, through the same :func:`token_session`.

The data key is wrapped with C_Encrypt/C_Decrypt under ``CKM_AES_GCM`` rather than
C_WrapKey/C_UnwrapKey: the store encrypts objects in the process, so the data key
has to end up in host memory, and reading an unwrapped key back would need it to
be created extractable and non-sensitive, which HSM policies commonly forbid (and
SoftHSM2 offers no GCM key wrapping). An HSM whose approved mode insists on
generating GCM IVs itself refuses :func:`wrap_under_new_kek` with a ``"token"`` error.

A session lives only for the duration of one operation: once the data key is
unwrapped the KEK is not needed until the next start, and a session held for the
life of a node ties the node to the HSM connection (network HSMs drop sessions on
failover) and keeps the token logged in for nothing. The price: disabling the KEK
or the PIN on the HSM stops a node at its next start, not while it runs, since the
data key is already in its memory.

The configuration names the PKCS#11 library that is loaded into the process, so
whoever can write it can run code; the library must be an absolute path to a file
owned by root or by us and not writable by group or others, which catches a
careless setup, not a determined local attacker.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import pkcs11
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams
from pkcs11.types import DecryptMixin, EncryptMixin

DATA_KEY_LEN: Final = 32
"""The key a KEK wraps: an AES-256 data key."""
TAG_LEN: Final = 16
MAX_TOKEN_LABEL_LEN: Final = 32
"""``CK_TOKEN_INFO.label`` is 32 bytes, blank-padded."""
MAX_KEY_LABEL_LEN: Final = 128

_PKCS11_KEYS: Final = frozenset({"module", "token_label", "key_label"})
_KEK_TEMPLATE = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.MODIFIABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
    Attribute.WRAP: False,
    Attribute.UNWRAP: False,
    Attribute.SIGN: False,
    Attribute.VERIFY: False,
    Attribute.DERIVE: False,
}
_PIN_REFUSED = (p11e.PinIncorrect, p11e.PinInvalid, p11e.PinLenRange)
_DEVICE_TROUBLE = (
    p11e.DeviceError,
    p11e.DeviceMemory,
    p11e.DeviceRemoved,
    p11e.TokenNotPresent,
    p11e.SessionClosed,
    p11e.SessionHandleInvalid,
)

TOKEN_LOCK: Final = threading.Lock()
"""python-pkcs11 keeps one library instance per process, and login state is per process
and token (PKCS#11): two stores opening at once must not interleave their logins."""


Reason = Literal["wrong-secret", "corrupt", "exists", "token", "policy"]


class TokenError(ValueError):
    """A token operation refused, and why, in the secret store's terms (:class:`harbour.node.store.StoreError`).

    ``"wrong-secret"`` (wrong PIN), ``"corrupt"`` (a configuration or wrapped key
    that is not what was written), ``"exists"`` (a key with the label is already on
    the token), ``"token"`` (library, token or key unavailable) and ``"policy"`` (a
    library or key this module refuses to use).
    """

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


@dataclass(frozen=True)
class Pkcs11Config:
    """Where the KEK lives: which PKCS#11 library, which token, which key on it.

    Recorded in store.json, so a node finds its HSM key from the store directory and
    the PIN alone. Nothing here is secret.
    """

    module: str
    token_label: str
    key_label: str = "harbour-kek"

    def problem(self) -> str | None:
        """What is wrong with this configuration, or None."""
        for field, value in (("module", self.module), ("token_label", self.token_label), ("key_label", self.key_label)):
            if not isinstance(value, str) or not value:
                return f"{field} must be a non-empty string"
            if any(ord(c) < 0x20 or c == "\x7f" for c in value):
                return f"{field} contains control characters"
            if value != value.strip():
                return f"{field} has leading or trailing spaces (PKCS#11 pads labels with spaces)"
        if not os.path.isabs(self.module):
            return f"the PKCS#11 module must be an absolute path, got {self.module!r}"
        if len(self.token_label.encode("utf-8")) > MAX_TOKEN_LABEL_LEN:
            return f"a token label is at most {MAX_TOKEN_LABEL_LEN} bytes"
        if len(self.key_label.encode("utf-8")) > MAX_KEY_LABEL_LEN:
            return f"a key label is at most {MAX_KEY_LABEL_LEN} bytes"
        return None

    def to_json(self) -> dict[str, str]:
        return {"module": self.module, "token_label": self.token_label, "key_label": self.key_label}

    @classmethod
    def from_json(cls, obj: object) -> Pkcs11Config:
        if not isinstance(obj, dict) or set(obj) != _PKCS11_KEYS:
            raise TokenError("corrupt", "PKCS#11 configuration must have exactly module, token_label and key_label")
        config = cls(obj["module"], obj["token_label"], obj["key_label"])
        problem = config.problem()
        if problem is not None:
            raise TokenError("corrupt", f"PKCS#11 configuration is malformed: {problem}")
        return config


def find_softhsm_module() -> str | None:
    """The SoftHSM2 PKCS#11 library's path, if installed in one of the usual places.

    Debian's ``libsofthsm2`` installs it under the multiarch directory and points
    ``/usr/lib/softhsm/libsofthsm2.so`` at it; other systems use the later entries.
    """
    candidates = [Path("/usr/lib/softhsm/libsofthsm2.so")]
    candidates += sorted(Path("/usr/lib").glob("*-linux-gnu*/softhsm/libsofthsm2.so"))
    candidates += [
        Path("/usr/lib64/pkcs11/libsofthsm2.so"),
        Path("/usr/lib/pkcs11/libsofthsm2.so"),
        Path("/usr/local/lib/softhsm/libsofthsm2.so"),
        Path("/opt/homebrew/lib/softhsm/libsofthsm2.so"),
    ]
    for candidate in candidates:
        if candidate.is_file():
            return str(candidate)
    return None


# -- sessions and the KEK ---------------------------------------------------------------------------


def _load_library(module: str) -> Any:
    # python-pkcs11 caches libraries by path and a second C_Initialize of the same
    # library fails, so two spellings of one path (a symlink) must map to one key.
    path = os.path.realpath(module)
    if not os.path.isfile(path):
        raise TokenError("token", f"PKCS#11 library {module} not found")
    info = os.stat(path)
    owners = {0, os.geteuid()} if hasattr(os, "geteuid") else {info.st_uid}
    if info.st_mode & 0o022 or info.st_uid not in owners:
        raise TokenError(
            "policy", f"refusing to load PKCS#11 library {path}: writable by group or others, or owned by another user"
        )
    try:
        return pkcs11.lib(path)
    except p11e.PKCS11Error as exc:
        raise TokenError("token", f"cannot load the PKCS#11 library {module}: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@contextlib.contextmanager
def token_session(config: Pkcs11Config, pin: str, *, rw: bool) -> Iterator[pkcs11.Session]:
    """A session on the configured token, logged in as the user; closed (and logged out) after."""
    library = _load_library(config.module)
    try:
        token = library.get_token(token_label=config.token_label)
    except p11e.NoSuchToken:
        raise TokenError("token", f"no PKCS#11 token labelled {config.token_label!r} in {config.module}") from None
    except p11e.MultipleTokensReturned:
        raise TokenError("token", f"several PKCS#11 tokens are labelled {config.token_label!r}") from None
    except p11e.PKCS11Error as exc:
        raise TokenError("token", f"cannot list the tokens of {config.module}: {_describe(exc)}") from None
    try:
        session = token.open(rw=rw, user_pin=pin)
    except _PIN_REFUSED:
        raise TokenError("wrong-secret", f"wrong PIN for PKCS#11 token {config.token_label!r}") from None
    except p11e.PinLocked:
        raise TokenError(
            "token", f"the user PIN of token {config.token_label!r} is locked; its security officer must reset it"
        ) from None
    except p11e.PKCS11Error as exc:
        raise TokenError("token", f"cannot log in to token {config.token_label!r}: {_describe(exc)}") from None
    try:
        yield session
    finally:
        with contextlib.suppress(p11e.PKCS11Error):
            session.close()


def _find_kek(session: pkcs11.Session, config: Pkcs11Config) -> list[Any]:
    return list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: config.key_label}))


def wrap_under_new_kek(
    config: Pkcs11Config, pin: str, *, key_id: bytes, nonce: bytes, aad: bytes, data_key: bytes
) -> bytes:
    """Generate the KEK on the token (with ``key_id`` as its ``CKA_ID``) and AES-GCM encrypt ``data_key`` under it.

    The KEK is destroyed again if the encryption fails, so a failed create leaves no key behind.
    """
    with TOKEN_LOCK, token_session(config, pin, rw=True) as session:
        try:
            if _find_kek(session, config):
                raise TokenError(
                    "exists", f"token {config.token_label!r} already holds a key labelled {config.key_label!r}"
                )
            kek = session.generate_key(
                KeyType.AES, 256, id=key_id, label=config.key_label, store=True, template=_KEK_TEMPLATE
            )
        except p11e.PKCS11Error as exc:
            raise TokenError("token", f"cannot generate the key-encryption key: {_describe(exc)}") from None
        try:
            if not isinstance(kek, EncryptMixin):
                raise TokenError("token", "the token generated a key that cannot encrypt")
            params = GCMParams(nonce, aad, TAG_LEN * 8)
            wrapped = kek.encrypt(data_key, mechanism=Mechanism.AES_GCM, mechanism_param=params)
            if not isinstance(wrapped, bytes) or len(wrapped) != DATA_KEY_LEN + TAG_LEN:
                raise TokenError("token", "the token returned a malformed AES-GCM ciphertext")
            return wrapped
        except BaseException as exc:
            with contextlib.suppress(p11e.PKCS11Error):
                kek.destroy()
            if isinstance(exc, p11e.PKCS11Error):
                raise TokenError("token", f"the token cannot encrypt with CKM_AES_GCM: {_describe(exc)}") from None
            raise


def destroy_kek(config: Pkcs11Config, pin: str, key_id: bytes) -> None:
    """Remove the KEK generated for a store whose store.json could not be written."""
    with TOKEN_LOCK, token_session(config, pin, rw=True) as session:
        for key in _find_kek(session, config):
            if key[Attribute.ID] == key_id:
                key.destroy()


def unwrap(config: Pkcs11Config, pin: str, *, key_id: bytes, nonce: bytes, aad: bytes, wrapped: bytes) -> bytes:
    """Decrypt a data key under the KEK labelled in ``config``, which must carry ``key_id`` and be non-extractable."""
    with TOKEN_LOCK, token_session(config, pin, rw=False) as session:
        try:
            found = _find_kek(session, config)
            if not found:
                raise TokenError(
                    "token", f"no key labelled {config.key_label!r} on token {config.token_label!r}: was it deleted?"
                )
            if len(found) > 1:
                raise TokenError("token", f"several keys are labelled {config.key_label!r} on {config.token_label!r}")
            kek = found[0]
            if kek[Attribute.ID] != key_id:
                raise TokenError(
                    "token", f"the key labelled {config.key_label!r} on {config.token_label!r} belongs to another store"
                )
            if kek[Attribute.EXTRACTABLE] or not kek[Attribute.SENSITIVE]:
                raise TokenError("policy", f"the key labelled {config.key_label!r} is extractable; refusing to use it")
            if not isinstance(kek, DecryptMixin):
                raise TokenError("token", f"the key labelled {config.key_label!r} cannot decrypt")
            params = GCMParams(nonce, aad, TAG_LEN * 8)
            data_key = kek.decrypt(wrapped, mechanism=Mechanism.AES_GCM, mechanism_param=params)
        except _DEVICE_TROUBLE as exc:
            raise TokenError("token", f"the token failed: {_describe(exc)}") from None
        except p11e.PKCS11Error as exc:
            # SoftHSM2 answers a failed GCM tag check with CKR_GENERAL_ERROR, not
            # CKR_ENCRYPTED_DATA_INVALID, so any other refusal is taken as this.
            raise TokenError(
                "corrupt",
                f"the token cannot unwrap the data key ({_describe(exc)}): store.json was modified, or the key "
                f"labelled {config.key_label!r} is not the one this store was created with",
            ) from None
    if not isinstance(data_key, bytes) or len(data_key) != DATA_KEY_LEN:
        raise TokenError("corrupt", "the unwrapped data key has the wrong length")
    return data_key
