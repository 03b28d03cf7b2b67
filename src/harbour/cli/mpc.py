"""``harbour mpc``: run the threshold protocols in this process and show what they produce."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harbour.cli import session
from harbour.cli.params import (
    JsonOption,
    PartiesOption,
    SchemeOption,
    ThresholdOption,
    check_scheme,
    check_sizes,
    parse_message,
    parse_signers,
    reported_errors,
)
from harbour.mpc import runner

app = typer.Typer(help="Threshold signatures (MPC): key generation and signing.", no_args_is_help=True)

DEFAULT_MESSAGE = b"Harbour threshold signature".hex()


@app.command("demo")
def demo(
    scheme: SchemeOption = "frost-secp256k1",
    threshold: ThresholdOption = 2,
    parties: PartiesOption = 3,
    message: Annotated[
        str,
        typer.Option(
            "--message", "-m", help="The message to sign, in hex.", show_default="hex of 'Harbour threshold signature'"
        ),
    ] = DEFAULT_MESSAGE,
    signers: Annotated[
        str | None, typer.Option("--signers", help="Comma-separated signing parties; default 1..t.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Generate a t-of-n key by DKG and sign MESSAGE with a set of its parties.

    The signature is verified against the group key before anything is printed.
    """
    with reported_errors():
        check_scheme(scheme)
        check_sizes(threshold, parties)
        msg = parse_message(message)
        chosen = parse_signers(signers, threshold, parties)
        shares = runner.keygen(scheme, threshold, parties)
        signature = session.sign_verified(shares, chosen, msg)
    result = session.contract(shares, chosen, msg, signature)
    if as_json:
        typer.echo(json.dumps(result))
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
