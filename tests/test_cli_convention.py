"""Every ``harbour`` command follows docs/cli.md: checked across the whole command tree.

The tree is walked as the test of ``main.SUMMARY`` walks it, so a command added
later is held to the same rules without a line here: ``--json`` everywhere, help
that names values instead of Python types, fixed choices listed. The behaviour
(exit codes, ``error:`` lines, problem documents) is checked on a representative
command of each family; the API's statuses are checked against a live API in
tests/test_cli_custody.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from cli_checks import error_line, problem
from harbour.cli import main, output, tree

runner = CliRunner()

PYTHON_TYPE = re.compile(
    r"<(?:list\[|tuple\[)?(?:str|int|float|bool|bytes|path|Path|file|dir|datetime|uuid|UUID|text|int range"
    r"|float range|NoneType|Optional|dict|list|tuple)\b[^>]*>"
)
FIXED_CHOICES = {"--scheme", "--fee-level", "--kind", "--role", "--scope", "--type"}
"""Options whose values are a fixed set wherever they appear: each must declare (and so list) it."""


def _root() -> Any:
    return typer.main.get_command(main.build())


ROOT = _root()
COMMANDS = sorted(tree.commands(ROOT))


def _options(command: Any) -> Iterator[Any]:
    yield from (p for p in command.params if getattr(p, "opts", None))


def test_the_tree_is_walked_whole() -> None:
    firsts = {path[0] for path, _ in COMMANDS}
    assert firsts == set(main.COMMANDS), "every sub-command (and so every command under it) is checked"
    assert len(COMMANDS) > 90


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_takes_json(path: tuple[str, ...], command: Any) -> None:
    names = {opt for param in _options(command) for opt in param.opts}
    assert "--json" in names, f"harbour {' '.join(path)} has no --json"


def test_help_never_shows_a_python_type_and_lists_fixed_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("typer.testing._get_command", lambda app: ROOT)  # one tree for every --help: fast
    monkeypatch.setattr("typer.rich_utils.MAX_WIDTH", 1000)  # each option on one line, its choices unwrapped
    monkeypatch.setenv("COLUMNS", "1000")
    offenders: list[str] = []
    for path, command in COMMANDS:
        shown = runner.invoke(main.app, [*path, "--help"], terminal_width=400)
        assert shown.exit_code == 0, (path, shown.output)
        for found in PYTHON_TYPE.findall(shown.stdout):
            offenders.append(f"harbour {' '.join(path)}: {found}")
        for param in _options(command):
            values = tree.choices_of(param)
            if values is None:
                if FIXED_CHOICES & set(param.opts):
                    offenders.append(f"harbour {' '.join(path)} {param.opts[0]}: a fixed set not declared as choices")
                continue
            missing = [v for v in values if v not in shown.stdout]
            if missing:
                offenders.append(f"harbour {' '.join(path)} {param.opts[0]}: help does not list {missing}")
    assert not offenders, "\n".join(offenders)


def test_a_python_type_in_help_would_be_caught() -> None:
    """The check above is not vacuous: Typer's own rendering, without the root group's names, shows types."""
    plain = typer.Typer()

    @plain.command()
    def command(paths: list[Path], count: int = 1) -> None:
        """A command as Typer renders it by default."""

    shown = runner.invoke(plain, ["--help"], terminal_width=400)
    assert PYTHON_TYPE.search(shown.stdout), shown.stdout


# -- behaviour ----------------------------------------------------------------------------------------------------

UNUSABLE = {
    "an unknown option (Click's own parse error)": (["custody", "init", "--no-such-option"], "--no-such-option"),
    "a value Click cannot parse": (["cluster", "keygen", "--threshold", "two"], "--threshold"),
    "a choice not offered": (["mpc", "demo", "--scheme", "frost-rsa"], "frost-rsa"),
    "a command's own check": (["mpc", "demo", "-t", "4", "-n", "3"], "cannot exceed"),
    "an API command's check, before any request": (["vault", "list", "--limit", "0"], "--limit"),
    "an unreadable file": (["authority", "show", "--cert", "/nonexistent/cert"], "/nonexistent/cert"),
    "a missing credential": (["org", "show"], "HARBOUR_TOKEN"),
}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_input_exits_2_with_one_error_line(case: str) -> None:
    args, needle = UNUSABLE[case]
    result = runner.invoke(main.app, args, env={"HARBOUR_TOKEN": None, "HARBOUR_API": "http://127.0.0.1:9"})
    error_line(result, 2, needle)


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_unusable_input_under_json_is_a_problem_document_on_stdout(case: str) -> None:
    args, needle = UNUSABLE[case]
    result = runner.invoke(
        main.app, [*args, "--json"], env={"HARBOUR_TOKEN": None, "HARBOUR_API": "http://127.0.0.1:9"}
    )
    doc = problem(result, 2, needle)
    assert doc["type"] == "https://harbour.dev/problems/cli-input" and doc["status"] == 400


def test_a_failed_operation_exits_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harbour.cli.apiclient.RETRY_DELAY", 0.0)  # a read is retried; nobody will answer
    result = runner.invoke(
        main.app, ["org", "show"], env={"HARBOUR_TOKEN": "hbk_x_y", "HARBOUR_API": "http://127.0.0.1:9"}
    )
    error_line(result, 1, "cannot reach")
    result = runner.invoke(
        main.app, ["org", "show", "--json"], env={"HARBOUR_TOKEN": "hbk_x_y", "HARBOUR_API": "http://127.0.0.1:9"}
    )
    assert problem(result, 1, "cannot reach")["type"] == "https://harbour.dev/problems/cli-failed"


@pytest.mark.parametrize(
    ("status", "code"), [(400, 2), (401, 1), (403, 1), (404, 2), (409, 1), (422, 2), (429, 1), (500, 1), (503, 1)]
)
def test_api_statuses_map_to_exit_codes(status: int, code: int) -> None:
    assert output.exit_code_for_status(status) == code
    assert output.exit_code_for_status(None) == 1, "no answer at all: the operation failed"


def test_an_api_problem_keeps_its_fields_and_adds_the_exit_code() -> None:
    api = {"type": "https://harbour.dev/problems/conflict", "title": "Conflicts", "status": 409, "detail": "taken"}
    doc = output.problem("taken (HTTP 409)", 1, status=409, api_problem={**api, "instance": "/v1/x"})
    assert doc == {**api, "instance": "/v1/x", "exit_code": 1}


def test_times_are_iso_8601_utc() -> None:
    assert output.iso_time(0) == "1970-01-01T00:00:00Z"
    assert output.iso_time(1_796_693_284) == "2026-12-08T01:28:04Z"
    doc = {"expires_at": 61, "nested": [{"issued_at": 1}], "count_at": True, "name": 5, "created_at": "x"}
    assert output.with_iso_times(doc) == {
        "expires_at": "1970-01-01T00:01:01Z",
        "nested": [{"issued_at": "1970-01-01T00:00:01Z"}],
        "count_at": True,
        "name": 5,
        "created_at": "x",
    }


def test_progress_goes_to_stderr_on_a_terminal_and_nowhere_otherwise(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    with output.progress("key generation") as step:
        step("round 1")
    assert capsys.readouterr() == ("", ""), "a pipe or a log gets no spinner"
    monkeypatch.setenv("FORCE_COLOR", "1")  # what a terminal is to rich
    with output.progress("key generation") as step:
        step("round 1")
    seen = capsys.readouterr()
    assert seen.out == "" and "key generation" in seen.err
    with output.progress("waiting", show=False) as step:
        step("pending")
    assert capsys.readouterr() == ("", "")
