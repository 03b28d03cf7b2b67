"""The ``harbour`` command: sub-commands are wired here and live in their own modules."""

from __future__ import annotations

from typing import Annotated

import typer

from harbour import __version__
from harbour.cli import authority, bench, cluster, demo, key, mpc, node

app = typer.Typer(
    name="harbour",
    help="Harbour: open digital-asset infrastructure (threshold signatures first).",
    no_args_is_help=True,
    add_completion=False,
    # A traceback's locals could include key shares or nonces: never print them.
    pretty_exceptions_show_locals=False,
)
app.add_typer(mpc.app, name="mpc")
app.add_typer(bench.app, name="bench")
app.add_typer(key.app, name="key")
app.add_typer(authority.app, name="authority")
app.add_typer(node.app, name="node")
app.add_typer(cluster.app, name="cluster")
app.command("demo")(demo.demo)


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
