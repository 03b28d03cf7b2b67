"""``harbour login``, ``logout`` and ``profile list``: named profiles of an API and a credential.

``harbour login --api URL [--profile NAME]`` reads a credential from a prompt or
stdin (never from the command line, where the process list shows it), checks it
against ``GET /v1/me`` and keeps it (:mod:`harbour.cli.credentials` says where).
A command uses the profile named by ``harbour --profile NAME ...`` or
``$HARBOUR_PROFILE``, else the one last logged in to (docs/cli.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from harbour.cli import output
from harbour.cli.apiclient import ApiError, Client
from harbour.cli.credentials import (
    DEFAULT_PROFILE,
    MAX_TOKEN_LEN,
    PROFILE_ENV,
    check_name,
    forget_token,
    keyring_module,
    load_token,
    profiles,
    read_profiles,
    store_token,
    token_path,
    write_profiles,
)
from harbour.cli.params import USAGE_EXIT, InputError, JsonOption, fail

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
    doc = read_profiles()
    doc["profiles"][name] = {"api": client.api, "ca_file": ca}
    doc["current"] = name
    write_profiles(doc)
    where = store_token(name, token)
    result = {"profile": name, "api": client.api, "user": me.get("name"), "roles": me.get("roles"), "stored": where}
    output.emit(result, as_json)


def logout(profile: ProfileOption = None, as_json: JsonOption = False) -> None:
    """Forget a profile's credential (revoke it too if it may have leaked: harbour user revoke-credential)."""
    try:
        name = check_name(profile or os.environ.get(PROFILE_ENV) or read_profiles().get("current") or DEFAULT_PROFILE)
    except InputError as exc:
        raise fail(str(exc), USAGE_EXIT) from None
    forgotten = forget_token(name)
    output.emit({"profile": name, "forgotten": forgotten}, as_json)


profile_app = typer.Typer(help="Named profiles of custody APIs and credentials.", no_args_is_help=True)


@profile_app.command("list")
def profile_list(as_json: JsonOption = False) -> None:
    """The profiles, the one in use, and whether each has a credential (never the credential)."""
    try:
        current = read_profiles().get("current")
        rows = []
        for name, entry in sorted(profiles().items()):
            has = load_token(name) is not None if keyring_module() is not None else token_path(name).exists()
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
