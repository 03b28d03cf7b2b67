"""What every ``harbour`` command's output must look like (docs/cli.md), as assertions tests share."""

from __future__ import annotations

import datetime
import json
from typing import Any, Protocol


class Ran(Protocol):
    """A finished run: CliRunner's result (or a subprocess, adapted) with split streams."""

    @property
    def exit_code(self) -> int: ...
    @property
    def stdout(self) -> str: ...
    @property
    def stderr(self) -> str: ...


PROBLEM_FIELDS = ("type", "title", "status", "detail", "exit_code")


def one_document(result: Ran) -> Any:
    """The one JSON document a successful ``--json`` run prints, in the CLI's style (indent=2)."""
    assert result.exit_code == 0, (result.stdout, result.stderr)
    doc = json.loads(result.stdout)
    assert result.stdout.strip() == json.dumps(doc, indent=2), "--json prints json.dumps(doc, indent=2)"
    return doc


def problem(result: Ran, code: int, needle: str = "") -> dict[str, Any]:
    """The problem document a failed ``--json`` run prints on stdout, with nothing on stderr's error line."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    doc = json.loads(result.stdout)
    assert isinstance(doc, dict), doc
    assert all(field in doc for field in PROBLEM_FIELDS), doc
    assert doc["exit_code"] == code, doc
    assert needle in doc["detail"], doc
    assert "error:" not in result.stderr, result.stderr
    return doc


def error_line(result: Ran, code: int, needle: str = "") -> str:
    """The one ``error:`` line a failed run prints on stderr (stdout empty, no traceback)."""
    assert result.exit_code == code, (result.stdout, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert needle in errors[0], errors[0]
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.stderr
    return errors[0]


def documents(text: str) -> list[Any]:
    """Every JSON document in a stream of output (each starting a line), in order; other lines skipped."""
    decoder = json.JSONDecoder()
    found, index = [], 0
    while index < len(text):
        if text[index] in "{[" and (index == 0 or text[index - 1] == "\n"):
            try:
                doc, index = decoder.raw_decode(text, index)
            except json.JSONDecodeError:
                index += 1
            else:
                found.append(doc)
                continue
        else:
            index += 1
    return found


def epoch(text: str) -> int:
    """An ISO 8601 UTC time the CLI printed (``2026-12-08T01:28:04Z``), as seconds since the epoch."""
    assert isinstance(text, str) and text.endswith("Z") and "T" in text, text
    return int(datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.UTC).timestamp())
