"""Named profiles: which custody API a command talks to, and with which credential.

``harbour login --api URL [--profile NAME]`` reads a credential from a prompt or
stdin (never from the command line, where the process list shows it), checks it
against ``GET /v1/me`` and keeps it: the profile (API URL, private CA bundle) in
``profiles.json`` under the user's configuration directory
(``$XDG_CONFIG_HOME/harbour`` or ``~/.config/harbour``), the credential in the OS
keyring when the optional ``keyring`` package is installed, or else in
``tokens/NAME`` there, mode 0600 in a 0700 directory. A token file that others
could read is refused, not used: it may already have been copied.

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
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final

import typer

from harbour.cli import output
from harbour.cli.params import USAGE_EXIT, InputError, JsonOption, fail
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


def _read_all() -> dict[str, Any]:
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


def _write_all(doc: dict[str, Any]) -> None:
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(directory / PROFILES_FILE, (json.dumps(doc, indent=2) + "\n").encode(), mode=0o600)


def profiles() -> dict[str, Profile]:
    found = {}
    for name, entry in _read_all()["profiles"].items():
        if isinstance(entry, dict) and isinstance(entry.get("api"), str):
            found[name] = Profile(name, entry["api"], entry.get("ca_file"))
    return found


def selected() -> Profile | None:
    """The profile ``$HARBOUR_PROFILE`` (``harbour --profile``) names, else the one last logged in to."""
    doc = _read_all()
    name = os.environ.get(PROFILE_ENV) or doc.get("current")
    if not name:
        return None
    found = profiles().get(name)
    if found is None and os.environ.get(PROFILE_ENV):
        raise InputError(f"no profile named {name!r}: harbour login --profile {name} --api URL")
    return found


# -- the credential ----------------------------------------------------------------------------------------------


def _keyring() -> Any:
    try:
        import keyring  # type: ignore[import-not-found]  # optional: the OS's own secret store
    except ImportError:
        return None
    return keyring


def _token_path(name: str) -> Path:
    return config_dir() / "tokens" / name


def store_token(name: str, token: str) -> str:
    """Keep ``token`` for profile ``name``; returns where (``keyring`` or the file's path)."""
    ring = _keyring()
    if ring is not None:
        ring.set_password(KEYRING_SERVICE, name, token)
        return "keyring"
    directory = config_dir() / "tokens"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    path = _token_path(name)
    write_atomic(path, token.encode() + b"\n", mode=0o600)
    return str(path)


def load_token(name: str) -> str | None:
    ring = _keyring()
    if ring is not None:
        value = ring.get_password(KEYRING_SERVICE, name)
        return str(value) if value else None
    path = _token_path(name)
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
    ring = _keyring()
    if ring is not None:
        if ring.get_password(KEYRING_SERVICE, name) is None:
            return False
        ring.delete_password(KEYRING_SERVICE, name)
        return True
    try:
        _token_path(name).unlink()
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


# -- commands -----------------------------------------------------------------------------------------------------

ProfileOption = Annotated[
    str | None, typer.Option("--profile", help=f"Profile name (default: ${PROFILE_ENV}, else '{DEFAULT_PROFILE}').")
]


def _read_secret() -> str:
    if sys.stdin.isatty():
        value = str(typer.prompt("API credential (hbk_...)", hide_input=True, err=True))
    else:
        value = sys.stdin.readline()
    value = value.strip()
    if not value:
        raise InputError("no credential: type it at the prompt or pipe it on stdin")
    if len(value) > MAX_TOKEN_LEN or not value.isascii() or not value.isprintable() or " " in value:
        raise InputError("a credential is printable ASCII without spaces (hbk_...)")
    return value


def login(
    api: Annotated[str, typer.Option("--api", help="Custody API base URL.")],
    profile: ProfileOption = None,
    ca_file: Annotated[
        Path | None, typer.Option("--ca-file", help="PEM bundle of the API's private certificate authority.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check a credential (from a prompt or stdin) against the API and keep it as a named profile."""
    from harbour.cli.apiclient import ApiError, Client

    try:
        name = check_name(profile or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE)
        if ca_file is not None and not ca_file.is_file():
            raise InputError(f"--ca-file: {ca_file}: no such file")
        token = _read_secret()
        ca = str(ca_file.resolve()) if ca_file is not None else None
        with Client(api, token, ca_file=ca) as client:
            me = client.get("/v1/me")
    except InputError as exc:
        raise fail(str(exc), USAGE_EXIT) from None
    except ApiError as exc:
        code = output.exit_code_for_status(exc.status)
        raise fail(exc.detail, code, status=exc.status, api_problem=exc.problem) from None
    doc = _read_all()
    doc["profiles"][name] = {"api": client.api, "ca_file": ca}
    doc["current"] = name
    _write_all(doc)
    where = store_token(name, token)
    result = {"profile": name, "api": client.api, "user": me.get("name"), "roles": me.get("roles"), "stored": where}
    output.emit(result, as_json)


def logout(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Forget a profile's credential (revoke it too if it may have leaked: harbour user revoke-credential)."""
    try:
        name = check_name(profile or os.environ.get(PROFILE_ENV) or _read_all().get("current") or DEFAULT_PROFILE)
    except InputError as exc:
        raise fail(str(exc), USAGE_EXIT) from None
    forgotten = forget_token(name)
    output.emit({"profile": name, "forgotten": forgotten}, as_json)


profile_app = typer.Typer(help="Named profiles of custody APIs and credentials.", no_args_is_help=True)


@profile_app.command("list")
def profile_list(as_json: JsonOption = False) -> None:
    """The profiles, the one in use, and whether each has a credential (never the credential)."""
    try:
        current = _read_all().get("current")
        rows = []
        for name, entry in sorted(profiles().items()):
            has = load_token(name) is not None if _keyring() is not None else _token_path(name).exists()
            row = {"profile": name, "api": entry.api, "ca_file": entry.ca_file, "current": name == current}
            rows.append({**row, "logged_in": has})
    except InputError as exc:
        raise fail(str(exc), USAGE_EXIT) from None
    if as_json:
        output.emit({"profiles": rows}, True)
        return
    for row in rows:
        mark = "*" if row["current"] else " "
        typer.echo(f"{mark} {row['profile']}  {row['api']}  {'logged in' if row['logged_in'] else 'logged out'}")
    if not rows:
        typer.echo("no profiles: harbour login --api URL")
