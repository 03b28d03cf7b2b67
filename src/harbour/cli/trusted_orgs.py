"""The organisations an admin's CLI signs governance entries for, each pinned by its genesis hash.

Nothing signs a genesis: a verifier trusts it because it was given its hash.
A signer node is given it at enrolment; an admin's ``harbour approve`` keeps it
here, per API server and organisation id, and replays the log from it before
signing an entry (:mod:`harbour.cli.review`). Without this file, which log an
entry extends would be the server's word, and a server that enrolled a second
organisation under the same id with the same admin keys could have an admin
sign an entry of that organisation instead.

A hash is pinned by ``harbour governance trust HASH`` (the genesis ``harbour
custody bootstrap`` printed), or on the first governance approval (as SSH's
``known_hosts`` does), with a line on stderr asking the admin to compare it.

It also keeps, per organisation, the newest entry it verified: a server that
later serves a log that does not extend it (withholding entries, or rewriting
them) is refused, so an admin is not shown an older head as the current one.

The file is ``$HARBOUR_TRUSTED_ORGS`` or ``~/.harbour/trusted-orgs.json``,
written atomically and owner-only. It holds no secret, but whoever can edit it
chooses which organisation the admin signs for, so a file that is not the
caller's own, or that others may write, is refused.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Final

from harbour.cli.params import InputError
from harbour.util.files import write_atomic
from harbour.util.strictjson import loads_strict

TRUST_ENV: Final = "HARBOUR_TRUSTED_ORGS"
VERSION: Final = 1
MAX_FILE: Final = 1024 * 1024
_HASH = re.compile(r"[0-9a-f]{64}")


def trust_file() -> Path:
    return Path(os.environ.get(TRUST_ENV) or Path.home() / ".harbour" / "trusted-orgs.json")


def parse_genesis(text: str, what: str) -> bytes:
    """A genesis hash as given: 64 hex digits (either case)."""
    value = text.strip().lower()
    if not _HASH.fullmatch(value):
        raise InputError(f"{what} is a genesis hash, 64 hex digits; got {text!r:.80}")
    return bytes.fromhex(value)


Pins = dict[str, dict[str, str]]
Seen = dict[str, dict[str, list[Any]]]


def _read(path: Path) -> tuple[Pins, Seen]:
    """``pins`` (API -> org -> genesis hex) and ``seen`` (API -> org -> [seq, head hex]) of the file, checked."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}, {}
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise InputError(f"{path} belongs to another user: trust no organisation it names")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise InputError(f"{path} is writable by others (chmod 600 it): trust no organisation it names")
    if info.st_size > MAX_FILE:
        raise InputError(f"{path} is larger than {MAX_FILE} bytes")
    try:
        doc: Any = loads_strict(path.read_bytes(), max_depth=5)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise InputError(f"{path} is not JSON: {exc}") from None
    broken = InputError(f'{path} is not a trusted-orgs file ({{"version": 1, "pins": {{API: {{ORG: HASH}}}}}})')
    if not isinstance(doc, dict) or set(doc) - {"seen"} != {"version", "pins"} or doc["version"] != VERSION:
        raise broken
    pins, seen = doc["pins"], doc.get("seen", {})
    for table in (pins, seen):
        if not isinstance(table, dict) or not all(isinstance(orgs, dict) for orgs in table.values()):
            raise broken
    for orgs in pins.values():
        if not all(isinstance(h, str) and _HASH.fullmatch(h) for h in orgs.values()):
            raise broken
    for orgs in seen.values():
        for head in orgs.values():
            if not (isinstance(head, list) and len(head) == 2 and type(head[0]) is int and head[0] >= 0):
                raise broken
            if not (isinstance(head[1], str) and _HASH.fullmatch(head[1])):
                raise broken
    return pins, seen


def _write(path: Path, pins: Pins, seen: Seen) -> None:
    text = json.dumps({"version": VERSION, "pins": pins, "seen": seen}, indent=2, sort_keys=True) + "\n"
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(path, text.encode(), mode=0o600)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None


def pinned(api: str, org: str, path: Path | None = None) -> bytes | None:
    """The genesis hash pinned for organisation ``org`` at API ``api``, if any."""
    value = _read(path or trust_file())[0].get(api, {}).get(org)
    return None if value is None else bytes.fromhex(value)


def pin(api: str, org: str, genesis: bytes, path: Path | None = None) -> bytes | None:
    """Pin ``genesis`` for ``org`` at ``api``; returns the hash it replaced, if another was pinned.

    Another genesis forgets the head seen of the old one's log.
    """
    path = path or trust_file()
    pins, seen = _read(path)
    old = pins.get(api, {}).get(org)
    pins.setdefault(api, {})[org] = genesis.hex()
    if old is not None and old != genesis.hex():
        seen.get(api, {}).pop(org, None)
    _write(path, pins, seen)
    return None if old is None or old == genesis.hex() else bytes.fromhex(old)


def seen(api: str, org: str, path: Path | None = None) -> tuple[int, bytes] | None:
    """The newest entry (seq, hash) of ``org``'s log this CLI verified at ``api``, if any."""
    head = _read(path or trust_file())[1].get(api, {}).get(org)
    return None if head is None else (head[0], bytes.fromhex(head[1]))


def see(api: str, org: str, seq: int, head: bytes, path: Path | None = None) -> None:
    """Remember that ``org``'s log at ``api`` was verified up to entry ``seq`` (hash ``head``)."""
    path = path or trust_file()
    pins, known = _read(path)
    known.setdefault(api, {})[org] = [seq, head.hex()]
    _write(path, pins, known)
