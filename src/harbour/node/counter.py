"""A monotonic counter outside the node's directory, so a restored copy of it is recognised.

A cold node keeps its protocol sessions in its store between the files that carry
their rounds. The store authenticates each object but cannot say which version is
current, and a restored copy of the directory (a backup, a VM snapshot) is as
authentic as the real one. Answering a round of threshold ECDSA twice from one
saved state, with a cheating co-signer changing its input the second time, gives
the node's key share away (one rollback suffices; FROST needs two), so nothing in
the directory itself can make persisted session state safe.

Hence a counter that lives elsewhere: every time a cold node saves its sessions it
first moves the counter on and binds the saved state to the new value; it resumes a
session only from state bound to the counter's current value. Putting back an older
copy of the directory leaves the state behind the counter, and the node refuses it.

Two places for it:

- ``pkcs11``: a data object on the PKCS#11 token that holds the store's KEK (OASIS
  PKCS #11 v2.40/3.0, ``CKO_DATA``, private, labelled
  ``harbour-counter/<store id>``). SoftHSM2 does not let ``CKA_VALUE`` change, so
  the counter moves by creating an object with the next value and destroying the
  old one; reading takes the largest value present, which is also what a crash
  between the two steps leaves. Changing it needs the token's PIN. Restoring the
  HSM itself (or SoftHSM2's token directory) from a backup rolls it back too: keep
  its backups out of the node operator's hands.
- ``file``: a file on other storage than the node directory (another disk, a
  network share, write-once media), named when the node is created. It holds the
  value and the store id; whoever can write it can roll it back, so it protects
  exactly as far as that storage is kept apart from the node's.

A node without a counter refuses to keep any session whose saved state could be
replayed to reuse secret nonces (signing of any scheme, threshold-ECDSA key
generation, refresh and resharing); see docs/nodes.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, Protocol

import pkcs11
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11e

from harbour.node.hsm import Pkcs11Config, TokenError, token_session
from harbour.util.files import write_atomic

FILE_FORMAT: Final = "harbour-rollback-counter"
FILE_VERSION: Final = 1
LABEL_PREFIX: Final = "harbour-counter/"
VALUE_LEN: Final = 8
MAX_VALUE: Final = 2**63 - 1
MAX_FILE_LEN: Final = 4096

_LOCK = threading.Lock()


class CounterError(RuntimeError):
    """The counter cannot be read or moved: the node must not persist or resume sessions."""


class RollbackCounter(Protocol):
    """A value that only grows, kept where a copy of the node directory does not reach."""

    def describe(self) -> str: ...

    def read(self) -> int: ...

    def advance(self) -> int:
        """Move to the next value and return it; the old value is gone once this returns."""
        ...


# -- on a file on other storage ------------------------------------------------------------------


class FileCounter:
    """The counter in a JSON file outside the node directory (see the module docstring)."""

    def __init__(self, path: Path, store_id: str) -> None:
        self.path = Path(path)
        self.store_id = store_id

    def describe(self) -> str:
        return f"file {self.path}"

    @classmethod
    def create(cls, path: Path, store_id: str) -> FileCounter:
        path = Path(path)
        if not path.is_absolute():
            raise CounterError(f"the counter file must be an absolute path, got {str(path)!r}")
        if path.exists():
            raise CounterError(f"{path} exists: a counter file is never shared or reused")
        counter = cls(path, store_id)
        counter._write(0, overwrite=False)
        return counter

    def _write(self, value: int, *, overwrite: bool) -> None:
        text = json.dumps({"format": FILE_FORMAT, "version": FILE_VERSION, "store_id": self.store_id, "value": value})
        try:
            write_atomic(self.path, (text + "\n").encode(), mode=0o600, overwrite=overwrite)
        except OSError as exc:
            raise CounterError(f"cannot write the counter file {self.path}: {exc}") from exc

    def read(self) -> int:
        try:
            data = self.path.read_bytes()[: MAX_FILE_LEN + 1]
        except OSError as exc:
            raise CounterError(f"cannot read the counter file {self.path}: {exc.strerror or exc}") from exc
        try:
            obj: Any = json.loads(data)
        except ValueError as exc:
            raise CounterError(f"the counter file {self.path} is damaged (not JSON)") from exc
        if (
            len(data) > MAX_FILE_LEN
            or not isinstance(obj, dict)
            or set(obj) != {"format", "version", "store_id", "value"}
            or obj["format"] != FILE_FORMAT
            or obj["version"] != FILE_VERSION
        ):
            raise CounterError(f"{self.path} is not a Harbour rollback counter")
        if obj["store_id"] != self.store_id:
            raise CounterError(f"the counter file {self.path} belongs to another node")
        value = obj["value"]
        if type(value) is not int or not 0 <= value <= MAX_VALUE:
            raise CounterError(f"the counter file {self.path} holds no valid value")
        return value

    def advance(self) -> int:
        with _LOCK:
            value = self.read() + 1
            if value > MAX_VALUE:
                raise CounterError("the rollback counter is exhausted")
            self._write(value, overwrite=True)
            return value


# -- on the PKCS#11 token ---------------------------------------------------------------------------


class TokenCounter:
    """The counter as a private data object on the node's PKCS#11 token (see the module docstring)."""

    def __init__(self, config: Pkcs11Config, pin: str, store_id: str) -> None:
        self.config = config
        self.pin = pin
        self.label = LABEL_PREFIX + store_id

    def describe(self) -> str:
        return f"PKCS#11 token {self.config.token_label!r} (object {self.label!r})"

    @contextlib.contextmanager
    def _session(self, *, rw: bool) -> Iterator[pkcs11.Session]:
        try:
            with _LOCK, token_session(self.config, self.pin, rw=rw) as session:
                yield session
        except TokenError as exc:
            raise CounterError(f"cannot reach the counter on the token: {exc}") from exc
        except p11e.PKCS11Error as exc:
            raise CounterError(f"the token refused the counter operation: {type(exc).__name__} {exc}") from exc

    def _values(self, session: pkcs11.Session) -> list[tuple[int, Any]]:
        found = []
        for obj in session.get_objects({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: self.label}):
            raw = obj[Attribute.VALUE]
            if not isinstance(raw, bytes) or len(raw) != VALUE_LEN:
                raise CounterError(f"the counter object {self.label!r} on the token is damaged")
            found.append((int.from_bytes(raw, "big"), obj))
        return sorted(found, key=lambda item: item[0])

    def _put(self, session: pkcs11.Session, value: int) -> None:
        session.create_object(
            {
                Attribute.CLASS: ObjectClass.DATA,
                Attribute.TOKEN: True,
                Attribute.PRIVATE: True,
                Attribute.MODIFIABLE: False,
                Attribute.LABEL: self.label,
                Attribute.APPLICATION: "harbour",
                Attribute.VALUE: value.to_bytes(VALUE_LEN, "big"),
            }
        )

    @classmethod
    def create(cls, config: Pkcs11Config, pin: str, store_id: str) -> TokenCounter:
        counter = cls(config, pin, store_id)
        with counter._session(rw=True) as session:
            if counter._values(session):
                raise CounterError(f"the token already holds a counter labelled {counter.label!r}")
            counter._put(session, 0)
        return counter

    def read(self) -> int:
        with self._session(rw=False) as session:
            values = self._values(session)
        if not values:
            raise CounterError(f"no counter labelled {self.label!r} on the token: was it deleted?")
        return values[-1][0]

    def advance(self) -> int:
        with self._session(rw=True) as session:
            values = self._values(session)
            if not values:
                raise CounterError(f"no counter labelled {self.label!r} on the token: was it deleted?")
            value = values[-1][0] + 1
            if value > MAX_VALUE:
                raise CounterError("the rollback counter is exhausted")
            # The new value exists before any old one goes, so a crash in between leaves the larger.
            self._put(session, value)
            for _, obj in values:
                with contextlib.suppress(p11e.PKCS11Error):
                    obj.destroy()
            return value


# -- configuration ---------------------------------------------------------------------------------


def check_setting(setting: object) -> dict[str, str] | None:
    """``node.json``'s ``counter``: None, ``{"kind": "pkcs11"}`` or ``{"kind": "file", "path": ABS}``."""
    if setting is None:
        return None
    if not isinstance(setting, dict) or setting.get("kind") not in ("pkcs11", "file"):
        raise ValueError('counter must be null, {"kind": "pkcs11"} or {"kind": "file", "path": "/absolute/path"}')
    if setting["kind"] == "pkcs11":
        if set(setting) != {"kind"}:
            raise ValueError('a PKCS#11 counter is {"kind": "pkcs11"} (it lives on the store\'s token)')
        return {"kind": "pkcs11"}
    path = setting.get("path")
    if set(setting) != {"kind", "path"} or not isinstance(path, str) or not os.path.isabs(path):
        raise ValueError('a counter file is {"kind": "file", "path": "/absolute/path"}')
    return {"kind": "file", "path": path}


def open_counter(
    setting: dict[str, str] | None, *, store_id: str, pkcs11_config: Pkcs11Config | None, pin: str | None
) -> RollbackCounter | None:
    """The configured counter, or None; CounterError if it is configured and cannot be used."""
    if setting is None:
        return None
    if setting["kind"] == "file":
        return FileCounter(Path(setting["path"]), store_id)
    if pkcs11_config is None or pin is None:
        raise CounterError("a PKCS#11 counter needs the node's store to be on a PKCS#11 token, and its PIN")
    return TokenCounter(pkcs11_config, pin, store_id)


def create_counter(
    setting: dict[str, str] | None, *, store_id: str, pkcs11_config: Pkcs11Config | None, pin: str | None
) -> RollbackCounter | None:
    """Create the configured counter at ``harbour node init`` (value 0)."""
    if setting is None:
        return None
    if setting["kind"] == "file":
        return FileCounter.create(Path(setting["path"]), store_id)
    if pkcs11_config is None or pin is None:
        raise CounterError("a PKCS#11 counter needs the node's store on a PKCS#11 token (--pkcs11) and its PIN")
    return TokenCounter.create(pkcs11_config, pin, store_id)
