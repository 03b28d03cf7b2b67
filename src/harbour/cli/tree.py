"""The root of the ``harbour`` command tree: where the CLI convention is applied to every command.

Two parts of docs/cli.md cannot be left to each command, since Click acts before
any command runs: an option Click cannot parse (unknown, missing, not a number)
is reported like every other unusable input (``error:`` on stderr, or a problem
document under ``--json``; exit 2), and help shows a value's meaning, never the
Python type Typer would print (``<list[Path]>``): each option's metavar is its
own name (``--home HOME``), or its choices (``--scheme [frost-ed25519|...]``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import typer
from typer import _click
from typer._click import exceptions as click_errors
from typer.core import TyperArgument, TyperGroup, TyperOption

from harbour.cli import output

CHOICES_ATTRIBUTE = "choices"
"""A ``parser=`` callable carrying this attribute takes exactly these values (see :func:`choice`)."""


def choice(values: Sequence[str], noun: str) -> Callable[[str], str]:
    """A Typer ``parser=`` that accepts only ``values`` (and shows them in help); anything else is exit 2."""
    allowed = tuple(values)

    def parse(text: str) -> str:
        if text not in allowed:
            raise click_errors.BadParameter(f"unknown {noun} {text!r}; choose one of {', '.join(allowed)}")
        return text

    setattr(parse, CHOICES_ATTRIBUTE, allowed)
    parse.__name__ = noun.replace(" ", "_")
    return parse


def choices_of(param: Any) -> tuple[str, ...] | None:
    """The fixed values a parameter takes (a :func:`choice` parser, a Literal or an Enum), or None."""
    parser = getattr(param, "type_descriptor", None)
    values = getattr(getattr(parser, "parameter_info", None), "parser", None)
    if values is not None and hasattr(values, CHOICES_ATTRIBUTE):
        return tuple(getattr(values, CHOICES_ATTRIBUTE))
    if parser is not None and parser.is_choice and parser.choices is not None:
        return tuple(str(getattr(c, "value", c)) for c in parser.choices)
    return None


def commands(group: _click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], _click.Command]]:
    """Every leaf command under ``group`` with its path of names."""
    children = getattr(group, "commands", None)
    if children is None:
        yield path, group
        return
    for name, child in children.items():
        yield from commands(child, (*path, name))


def _metavar(param: Any) -> str | None:
    values = choices_of(param)
    if values is not None:
        return "[" + "|".join(values) + "]"
    if isinstance(param, TyperOption):
        if param.is_flag or param.count:
            return ""  # a flag takes no value: nothing to name
        longest = max(param.opts, key=len)
        return longest.lstrip("-").replace("-", "_").upper()
    if isinstance(param, TyperArgument):
        return (param.name or "value").upper()
    return None


def name_values(command: _click.Command) -> None:
    """Give every option of ``command`` (``--help`` too) a metavar naming its value, not its Python type."""
    help_option = command.get_help_option(_click.Context(command))
    for param in [*command.params, *([help_option] if help_option is not None else [])]:
        if getattr(param, "metavar", None) is None:
            metavar = _metavar(param)
            if metavar is not None:
                param.metavar = metavar
        if type(param) is TyperArgument:
            param.__class__ = _NamedArgument


class _NamedArgument(TyperArgument):
    """An argument whose help shows its name (or choices) only: Typer's would add its Python type."""

    def display_type_rich(self, ctx: _click.Context) -> str | None:
        values = choices_of(self)
        return "[" + "|".join(values) + "]" if values is not None else None


class HarbourGroup(TyperGroup):
    """The root group: names every option's value, and reports parse errors by the convention."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for command in _every(self):
            name_values(command)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        words = list(sys.argv[1:] if args is None else args)
        try:
            result = super().main(
                args=words,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except click_errors.NoArgsIsHelpError as exc:  # the help, printed as the error was made
            if exc.format_message():
                exc.show()
            result = exc.exit_code
        except _click.ClickException as exc:
            result = output.usage_error(exc, words) if isinstance(exc, click_errors.UsageError) else _other(exc, words)
        except typer.Abort:
            output.report("aborted", output.FAILURE_EXIT, as_json="--json" in words)
            result = output.FAILURE_EXIT
        if not standalone_mode:
            return result
        sys.exit(result if isinstance(result, int) else 0)


def _other(exc: _click.ClickException, words: Sequence[str]) -> int:
    output.report(exc.format_message(), exc.exit_code, as_json="--json" in words)
    return exc.exit_code


def _every(command: _click.Command) -> Iterator[_click.Command]:
    """``command`` and every group and command under it."""
    yield command
    for child in getattr(command, "commands", {}).values():
        yield from _every(child)
