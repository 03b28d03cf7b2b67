"""``harbour mpc``: run the threshold protocols in this process and show what they produce."""

from __future__ import annotations

import hashlib
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harbour.cli import output, session
from harbour.cli.params import (
    JsonOption,
    PartiesOption,
    SchemeOption,
    ThresholdOption,
    check_message,
    check_scheme,
    check_sizes,
    parse_message,
    parse_signers,
    reported_errors,
)
from harbour.mpc import runner
from harbour.mpc.schemes import scheme_by_name

app = typer.Typer(help="Threshold signatures (MPC): key generation and signing.", no_args_is_help=True)

DEFAULT_TEXT = b"Harbour threshold signature"
DEFAULT_MESSAGE = DEFAULT_TEXT.hex()
DEFAULT_DIGEST = hashlib.sha256(DEFAULT_TEXT).hexdigest()
"""ECDSA signs a 32-byte digest, so its default message is the SHA-256 of FROST's."""


def default_message(scheme: str) -> str:
    return DEFAULT_DIGEST if scheme_by_name(scheme).signs_digest else DEFAULT_MESSAGE


@app.command("demo")
def demo(
    scheme: SchemeOption = "frost-secp256k1",
    threshold: ThresholdOption = 2,
    parties: PartiesOption = 3,
    message: Annotated[
        str | None,
        typer.Option(
            "--message",
            "-m",
            help="The message to sign, in hex; for ecdsa-secp256k1 a 32-byte digest (the caller hashes).",
            show_default="hex of 'Harbour threshold signature'; ecdsa-secp256k1: its SHA-256",
        ),
    ] = None,
    signers: Annotated[
        str | None,
        typer.Option("--signers", help="Comma-separated signing parties; default 1..t (ecdsa-secp256k1: exactly t)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Generate a t-of-n key by DKG and sign MESSAGE with a set of its parties.

    The signature is verified against the group key before anything is printed.
    Threshold ECDSA signs a 32-byte digest with exactly t parties.
    """
    with reported_errors():
        kind = scheme_by_name(check_scheme(scheme))
        check_sizes(threshold, parties)
        msg = check_message(scheme, parse_message(default_message(scheme) if message is None else message))
        chosen = parse_signers(signers, threshold, parties, exact=kind.exact_signers)
        shares = runner.keygen(scheme, threshold, parties)
        signature = session.sign_verified(shares, chosen, msg)
    result = session.contract(shares, chosen, msg, signature)
    if as_json:
        output.emit(result, True)
    else:
        render(result)


def render(result: dict[str, Any]) -> None:
    title = f"{result['scheme']}: {result['threshold']}-of-{result['parties']} signature"
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in result.items():
        table.add_row(name, ", ".join(map(str, value)) if isinstance(value, list) else str(value))
    table.add_row("verified", "[green]✓[/green] against public_key")
    Console().print(table)
