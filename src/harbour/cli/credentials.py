"""Where login profiles and their credentials are kept, and which one a command uses.

A profile (API URL, private CA bundle) is kept in ``profiles.json`` under the
user's configuration directory (``$XDG_CONFIG_HOME/harbour`` or
``~/.config/harbour``); its credential in the OS keyring when the optional
``keyring`` package is installed, or else in ``tokens/NAME`` there, mode 0600 in
a 0700 directory. A token file that others could read is refused, not used: it
may already have been copied. ``harbour login`` (:mod:`harbour.cli.profiles`)
writes them.

A command uses the profile named by ``harbour --profile NAME ...`` or
``$HARBOUR_PROFILE``, else the one last logged in to. ``--api``/``$HARBOUR_API`` and
``--token``/``$HARBOUR_TOKEN`` still win, and a profile's credential is only ever
sent to that profile's own API.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from harbour.cli.params import InputError
from harbour.util.files import write_atomic

PROFILE_ENV: Final = "HARBOUR_PROFILE"
KEYRING_SERVICE: Final = "harbour"
PROFILES_FILE: Final = "profiles.json"
DEFAULT_PROFILE: Final = "default"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
MAX_TOKEN_LEN: Final = 512


@dataclass(frozen=True)
class Profile:
    name: str
    api: str
    ca_file: str | None = None


def config_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "harbour"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InputError(f"--profile: a profile name is letters, digits, '.', '-' and '_' (at most 64), got {name!r}")
    return name


def read_profiles() -> dict[str, Any]:
    path = config_dir() / PROFILES_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {"profiles": {}, "current": None}
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a profiles file ({exc})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
        raise InputError(f"{path}: not a profiles file")
    return doc


def write_profiles(doc: dict[str, Any]) -> None:
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(directory / PROFILES_FILE, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)


def profiles() -> dict[str, Profile]:
    found = {}
    for name, entry in read_profiles()["profiles"].items():
        if isinstance(entry, dict) and isinstance(entry.get("api"), str):
            found[name] = Profile(name, entry["api"], entry.get("ca_file"))
    return found


def selected() -> Profile | None:
    """The profile ``$HARBOUR_PROFILE`` (``harbour --profile``) names, else the one last logged in to."""
    doc = read_profiles()
    name = os.environ.get(PROFILE_ENV) or doc.get("current")
    if not name:
        return None
    found = profiles().get(name)
    if found is None and os.environ.get(PROFILE_ENV):
        raise InputError(f"no profile named {name!r}: harbour login --profile {name} --api URL")
    return found


# -- the credential ----------------------------------------------------------------------------------------------


def keyring_module() -> Any:
    try:
        import keyring  # type: ignore[import-not-found]  # optional: the OS's own secret store
    except ImportError:
        return None
    return keyring


def token_path(name: str) -> Path:
    return config_dir() / "tokens" / name


def store_token(name: str, token: str) -> str:
    """Keep ``token`` for profile ``name``; returns where (``keyring`` or the file's path)."""
    ring = keyring_module()
    if ring is not None:
        ring.set_password(KEYRING_SERVICE, name, token)
        return "keyring"
    directory = config_dir() / "tokens"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = token_path(name)
    write_atomic(path, token.encode() + b"\n", mode=0o600)
    return str(path)


def load_token(name: str) -> str | None:
    ring = keyring_module()
    if ring is not None:
        value = ring.get_password(KEYRING_SERVICE, name)
        return str(value) if value else None
    path = token_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the profile's credential ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise InputError(
                f"{path} is readable or writable by others (mode {stat.S_IMODE(mode):o}): refusing to use it; "
                f"treat the credential as exposed, revoke it and run harbour login again"
            )
        return handle.read(MAX_TOKEN_LEN + 2).decode("ascii", "replace").strip()


def forget_token(name: str) -> bool:
    ring = keyring_module()
    if ring is not None:
        if ring.get_password(KEYRING_SERVICE, name) is None:
            return False
        ring.delete_password(KEYRING_SERVICE, name)
        return True
    try:
        token_path(name).unlink()
    except FileNotFoundError:
        return False
    return True


def resolve(api: str, token: str | None, default_api: str) -> tuple[str, str | None, str | None]:
    """The API, credential and CA bundle a command uses: explicit options and variables first, then the profile.

    The profile's credential goes only to the profile's API: with another
    ``--api`` it is not sent.
    """
    explicit_api = bool(os.environ.get("HARBOUR_API")) or api != default_api
    profile = selected()
    if profile is None:
        return api, token, None
    if not explicit_api:
        api = profile.api
    if api.rstrip("/") != profile.api.rstrip("/"):
        return api, token, None
    return api, token if token is not None else load_token(profile.name), profile.ca_file
