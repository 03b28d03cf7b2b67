"""What every ``harbour`` command prints: its result, its errors and its exit code.

One convention for the whole tree (written out in docs/cli.md), kept here so no
command has its own: a result is one JSON document on stdout with ``--json``
(``indent=2``) and readable text without; an error is one ``error: ...`` line on
stderr (with ``hint: ...`` lines when there is a fix to suggest) or, with
``--json``, an RFC 9457 problem document on stdout, so a script that asked for
JSON always gets JSON; the exit code is 0 on success, 1 when the operation failed
or was refused and 2 when the input cannot be used. An error from the API keeps
the API's own problem fields, and its HTTP status chooses the exit code
(:func:`exit_code_for_status`).

:func:`fail` finds out whether the running command was given ``--json`` from the
command's own parsed parameters, so a call site only says what went wrong.
This module imports nothing but the standard library and Typer: ``harbour
--help`` loads it.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final

import typer
from typer._click.exceptions import ClickException
from typer._click.globals import get_current_context

USAGE_EXIT: Final = 2
FAILURE_EXIT: Final = 1
PROBLEM_BASE: Final = "https://harbour.dev/problems/"
USAGE_STATUSES: Final = frozenset({400, 404, 422})
"""API statuses that mean the request itself cannot be used: exit 2, like any bad input."""

_LOCAL: Final[dict[int, tuple[str, str, int]]] = {
    USAGE_EXIT: ("cli-input", "Unusable input", 400),
    FAILURE_EXIT: ("cli-failed", "The operation failed", 500),
}


def exit_code_for_status(status: int | None) -> int:
    """The exit code of an API refusal: 2 for 400/404/422 (fix the input), 1 for the rest.

    A 401/403 (the credential), 409 (the state), 5xx or no answer at all is the
    operation failing, not the command line being wrong.
    """
    return USAGE_EXIT if status in USAGE_STATUSES else FAILURE_EXIT


def dumps(doc: Any) -> str:
    """The one JSON style of the CLI's output."""
    return json.dumps(doc, indent=2)


def iso_time(epoch: float | int | None) -> str | None:
    """Seconds since the epoch as ISO 8601 UTC (``2026-12-08T01:28:04Z``); None stays None."""
    if epoch is None:
        return None
    moment = datetime.datetime.fromtimestamp(int(epoch), tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def json_requested() -> bool:
    """Whether the running command (or a group above it) was given ``--json``."""
    ctx = get_current_context(silent=True)
    while ctx is not None:
        if ctx.params.get("as_json"):
            return True
        ctx = ctx.parent
    return False


def problem(
    message: str,
    code: int,
    *,
    status: int | None = None,
    api_problem: Mapping[str, Any] | None = None,
    hints: Sequence[str] = (),
) -> dict[str, Any]:
    """The RFC 9457 document of an error: the API's own fields when it came from the API."""
    kind, title, local_status = _LOCAL.get(code, _LOCAL[FAILURE_EXIT])
    doc: dict[str, Any] = {
        "type": PROBLEM_BASE + kind,
        "title": title,
        "status": status if status is not None else local_status,
        "detail": message,
    }
    for key, value in (api_problem or {}).items():
        doc[key] = value
    doc["detail"] = message if not api_problem else doc.get("detail", message)
    if hints:
        doc["hints"] = list(hints)
    doc["exit_code"] = code
    return doc


def report(
    message: str,
    code: int,
    *,
    as_json: bool | None = None,
    status: int | None = None,
    api_problem: Mapping[str, Any] | None = None,
    hints: Sequence[str] = (),
) -> None:
    """Print an error the one way: ``error:`` on stderr, or its problem document on stdout under --json."""
    if as_json if as_json is not None else json_requested():
        typer.echo(dumps(problem(message, code, status=status, api_problem=api_problem, hints=hints)))
        return
    typer.echo(f"error: {message}", err=True)
    for hint in hints:
        typer.echo(f"hint: {hint}", err=True)


def fail(
    message: str,
    code: int = FAILURE_EXIT,
    *,
    status: int | None = None,
    api_problem: Mapping[str, Any] | None = None,
    hints: Sequence[str] = (),
    as_json: bool | None = None,
) -> typer.Exit:
    """Report an error and return the Exit the caller raises (``raise fail(...) from None``).

    ``as_json=False`` keeps the error on stderr under ``--json`` too: for a
    command that has printed its document already (a report that says what
    failed), so stdout still holds exactly one.
    """
    report(message, code, as_json=as_json, status=status, api_problem=api_problem, hints=hints)
    return typer.Exit(code)


def with_iso_times(doc: Any) -> Any:
    """``doc`` with every ``*_at`` field holding seconds since the epoch as an ISO 8601 string.

    Certificates and node records keep epochs in their signed encodings; what a
    person or a script reads from the CLI is one format, the API's.
    """
    if isinstance(doc, Mapping):
        return {k: iso_time(v) if _is_epoch_field(k, v) else with_iso_times(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [with_iso_times(v) for v in doc]
    return doc


def _is_epoch_field(key: Any, value: Any) -> bool:
    return isinstance(key, str) and key.endswith("_at") and isinstance(value, int) and not isinstance(value, bool)


def emit(doc: Any, as_json: bool) -> None:
    """A result: one JSON document (``as_json``), or one ``key: value`` line per field; times in ISO 8601."""
    doc = with_iso_times(doc)
    if as_json:
        typer.echo(dumps(doc))
    elif isinstance(doc, Mapping):
        typer.echo("\n".join(f"{k}: {_text(v)}" for k, v in doc.items()))
    else:
        typer.echo(_text(doc))


def note(message: str, as_json: bool = False) -> None:
    """A remark for a person: on stdout in text mode, on stderr under --json (stdout is the document)."""
    typer.echo(message, err=as_json)


@contextmanager
def progress(description: str, *, show: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr while something slow runs; ``step(text)`` says where it is.

    Only on a terminal: a log or a pipe gets the result and nothing else, so a
    script never parses a spinner. Never on stdout, which holds the result.
    """
    from rich.console import Console  # a second's import, for the commands that wait only

    console = Console(stderr=True)
    if not show or not console.is_terminal:
        yield lambda text: None
        return
    with console.status(description) as status:
        yield lambda text: status.update(f"{description}: {text}")


def _text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def usage_error(exc: ClickException, args: Sequence[str]) -> int:
    """Report an error Click found while parsing (an unknown option, a bad value) the one way."""
    message = exc.format_message()
    hints: list[str] = []
    ctx = getattr(exc, "ctx", None)
    if ctx is not None:
        hints.append(f"see '{ctx.command_path} --help'")
    report(message, USAGE_EXIT, as_json="--json" in args, hints=hints)
    return USAGE_EXIT
