"""``harbour dev``: helpers for development chains only (docs/api.md, "Development faucet").

``harbour dev fund`` asks the custody service to send ETH from its development
chain's prefunded account: the embedded chain lives inside ``custody serve``, so
only the service can reach it. On any other chain the service refuses.
"""

from __future__ import annotations

from typing import Annotated

import typer

from harbour.cli.apiclient import DEFAULT_API, ApiOption, TokenOption, api_errors, connect, emit
from harbour.cli.params import JsonOption

app = typer.Typer(help="Development chains only: fund an address from the chain's prefunded account.")


@app.command("fund")
def fund(
    address: Annotated[str, typer.Argument(help="The 0x address to fund (a vault's address, for instance).")],
    amount: Annotated[str, typer.Option("--amount", help="Wei, a decimal integer (at most 1,000 ETH).")],
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Send ETH to ADDRESS on the embedded chain, or a node the home was initialised for with --dev-chain (admin)."""
    if not amount.isdigit() or amount.startswith("0"):
        typer.echo(f"error: --amount takes wei as a positive decimal integer, got {amount!r}", err=True)
        raise typer.Exit(2)
    with api_errors(), connect(api, token) as client:
        emit(client.post("/v1/dev/fund", {"address": address, "amount": amount}), as_json)
