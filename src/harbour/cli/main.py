"""The ``harbour`` command: sub-commands are wired here and live in their own modules."""

from __future__ import annotations

from typing import Annotated

import typer

from harbour import __version__
from harbour.cli import accounts, authority, bench, cluster, custody, demo, governance, key, mpc, node, tour, transfer

app = typer.Typer(
    name="harbour",
    help="Harbour: open digital-asset infrastructure (threshold signatures first).",
    no_args_is_help=True,
    add_completion=False,
    # A traceback's locals could include key shares or nonces: never print them.
    pretty_exceptions_show_locals=False,
)
mpc.app.command("tour")(tour.tour)
app.add_typer(mpc.app, name="mpc")
app.add_typer(bench.app, name="bench")
app.add_typer(key.app, name="key")
app.add_typer(authority.app, name="authority")
app.add_typer(node.app, name="node")
app.add_typer(cluster.app, name="cluster")
app.command("demo")(demo.demo)
app.add_typer(custody.app, name="custody")
governance.audit_app.command("verify")(custody.audit_verify)

# Custody, through its REST API (--api / $HARBOUR_API, --token / $HARBOUR_TOKEN).
app.add_typer(accounts.org_app, name="org")
app.add_typer(accounts.user_app, name="user")
app.add_typer(accounts.vault_app, name="vault")
app.add_typer(accounts.address_app, name="address")
app.add_typer(accounts.asset_app, name="asset")
app.add_typer(accounts.book_app, name="address-book")
app.add_typer(accounts.deposit_app, name="deposit")
app.command("withdraw")(transfer.withdraw)
app.command("approve")(transfer.approve)
app.command("reject")(transfer.reject)
app.command("cancel")(transfer.cancel)
app.command("status")(transfer.status)
app.command("transactions")(transfer.transactions)
app.add_typer(transfer.approver_key_app, name="approver-key")
app.add_typer(governance.policy_app, name="policy")
app.add_typer(governance.audit_app, name="audit")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"harbour {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Harbour: open digital-asset infrastructure (threshold signatures first)."""


if __name__ == "__main__":
    app()
