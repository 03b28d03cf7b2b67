"""The ``harbour`` command: sub-commands are wired here and live in their own modules.

Each sub-command's module is imported only when that sub-command runs: the custody
commands pull in web3 and the chain code, about a second and a half at every
start, which ``harbour node offline`` (run once per request file on a cold machine)
and ``harbour authority certify`` have no use for. ``harbour --help`` (or any name
not known here) prints the list of sub-commands from :data:`SUMMARY` without
importing any of them (a test checks that the list matches the whole tree's). ``app``
is the whole tree, built on first use, for code that drives the CLI in-process.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from harbour import __version__
from harbour.cli.tree import HarbourGroup


def _typer(module: str, attribute: str) -> Callable[[typer.Typer, str], None]:
    def add(app: typer.Typer, name: str) -> None:
        app.add_typer(getattr(importlib.import_module(f"harbour.cli.{module}"), attribute), name=name)

    return add


def _command(module: str, attribute: str) -> Callable[[typer.Typer, str], None]:
    def add(app: typer.Typer, name: str) -> None:
        app.command(name)(getattr(importlib.import_module(f"harbour.cli.{module}"), attribute))

    return add


def _mpc(app: typer.Typer, name: str) -> None:
    from harbour.cli import mpc, tour

    if "tour" not in {c.name for c in mpc.app.registered_commands}:
        mpc.app.command("tour")(tour.tour)
    app.add_typer(mpc.app, name=name)


COMMANDS: dict[str, Callable[[typer.Typer, str], None]] = {
    "mpc": _mpc,
    "bench": _typer("bench", "app"),
    "key": _typer("key", "app"),
    "authority": _typer("authority", "app"),
    "node": _typer("node", "app"),
    "cluster": _typer("cluster", "app"),
    "demo": _command("demo", "demo"),
    "custody": _typer("custody", "app"),
    # Custody, through its REST API (--api / $HARBOUR_API, --token / $HARBOUR_TOKEN).
    "org": _typer("accounts", "org_app"),
    "user": _typer("accounts", "user_app"),
    "vault": _typer("accounts", "vault_app"),
    "address": _typer("accounts", "address_app"),
    "asset": _typer("accounts", "asset_app"),
    "address-book": _typer("accounts", "book_app"),
    "deposit": _typer("accounts", "deposit_app"),
    "withdraw": _command("transfer", "withdraw"),
    "approve": _command("transfer", "approve"),
    "reject": _command("transfer", "reject"),
    "cancel": _command("transfer", "cancel"),
    "speed-up": _command("transfer", "speed_up"),
    "estimate": _command("transfer", "estimate"),
    "status": _command("transfer", "status"),
    "transactions": _command("transfer", "transactions"),
    "approver-key": _typer("approverkey", "approver_key_app"),
    "policy": _typer("governance", "policy_app"),
    "governance": _typer("governance", "governance_app"),
    "audit": _typer("audit", "audit_app"),
    "webhook": _typer("webhooks", "app"),
    "login": _command("profiles", "login"),
    "logout": _command("profiles", "logout"),
    "profile": _typer("profiles", "profile_app"),
    "dev": _typer("dev", "app"),
}
"""Every sub-command, in the order ``harbour --help`` lists them, and how to wire it."""


SUMMARY: dict[str, tuple[bool, str]] = {
    "mpc": (True, "Threshold signatures (MPC): key generation and signing."),
    "bench": (True, "Benchmarks (printed as JSON with --json)."),
    "key": (True, "Key ceremonies on encrypted key-share files (one per party)."),
    "authority": (True, "Approval authority: its key, and the certificates signer nodes require."),
    "node": (True, "Signer nodes: create one, serve it, or run it offline."),
    "cluster": (True, "Coordinate signer nodes: keygen, sign, refresh, reshare."),
    "demo": (
        False,
        "Run the custody demo: vault, deposit, policy, two approvals, MPC signing, broadcast, audit proof.",
    ),
    "custody": (True, "Operate a custody deployment: init, bootstrap, serve."),
    "org": (True, "Your organisation."),
    "user": (True, "Users, their roles and keys, and their API credentials."),
    "vault": (True, "Vaults: MPC keys on the signer nodes."),
    "address": (True, "A vault's addresses (BIP-32 children of its key)."),
    "asset": (True, "Assets: ETH and ERC-20 tokens."),
    "address-book": (True, "The address book of known destinations."),
    "deposit": (True, "Deposits seen on chain."),
    "withdraw": (False, "Submit a withdrawal (initiator); the policy decides whether it needs approvals."),
    "approve": (
        False,
        "Check, show and sign your approval of a transaction (approver; admin, proposer included, for governance).",
    ),
    "reject": (False, "Check, show and sign your rejection of a transaction (approver; admin for governance changes)."),
    "cancel": (
        False,
        "Cancel a transaction not yet being signed; a broadcast one is replaced by a zero-value self-transfer.",
    ),
    "speed-up": (
        False,
        "Replace a stuck broadcast withdrawal with the same payment at higher fees (a new transaction to approve).",
    ),
    "estimate": (
        False,
        "The gas a withdrawal would be submitted with and, per fee level, its caps and maximum fee (wei).",
    ),
    "status": (
        False,
        "A transaction's state. With --wait: exit 0 once confirmed, 1 if it ends failed, rejected or cancelled.",
    ),
    "transactions": (False, "List transactions (withdrawals and governance changes), oldest first."),
    "approver-key": (True, "Approvers' Ed25519 signing keys."),
    "policy": (True, "The transaction policy: show, explain, propose a change."),
    "governance": (True, "The governance log: its entries, its head, and how changes are proposed and signed."),
    "audit": (True, "The audit log: events, signed heads, inclusion and consistency proofs."),
    "webhook": (True, "Webhooks: endpoints that receive signed events, and what was delivered."),
    "login": (False, "Check a credential (from a prompt or stdin) against the API and keep it as a named profile."),
    "logout": (
        False,
        "Forget a profile's credential (revoke it too if it may have leaked: harbour user revoke-credential).",
    ),
    "profile": (True, "Named profiles of custody APIs and credentials."),
    "dev": (True, "Development chains only: fund an address from the chain's prefunded account."),
}
"""Each sub-command's help line, and whether it is a group: what ``harbour --help`` lists."""


def _summary(app: typer.Typer, name: str) -> None:
    """Wire a stand-in for ``name`` that carries only its help line (for ``harbour --help``)."""
    group, text = SUMMARY[name]
    if group:
        app.add_typer(typer.Typer(help=text), name=name)
    else:
        app.command(name, help=text)(lambda: None)


PROFILE_ENV = "HARBOUR_PROFILE"


def _profile(value: str | None) -> str | None:
    """``harbour --profile NAME ...``: the profile every custody command of this run uses."""
    if value:
        os.environ[PROFILE_ENV] = value
    return value


def _version(value: bool) -> None:
    if value:
        typer.echo(f"harbour {__version__}")
        raise typer.Exit()


def build(names: list[str] | None = None, *, summary: bool = False) -> typer.Typer:
    """The command tree with the sub-commands ``names`` (all of them when None).

    With ``summary``, each sub-command is a stand-in that only lists itself.
    """
    app = typer.Typer(
        name="harbour",
        cls=HarbourGroup,
        help="Harbour: open digital-asset infrastructure (threshold signatures first).",
        no_args_is_help=True,
        add_completion=False,
        # A traceback's locals could include key shares or nonces: never print them.
        pretty_exceptions_show_locals=False,
    )

    @app.callback()
    def main(
        version: Annotated[
            bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
        ] = False,
        profile: Annotated[
            str | None,
            typer.Option("--profile", callback=_profile, help=f"Use this login profile (${PROFILE_ENV})."),
        ] = None,
    ) -> None:
        """Harbour: open digital-asset infrastructure (threshold signatures first)."""

    for name, add in COMMANDS.items():
        if names is None or name in names:
            (_summary if summary else add)(app, name)
    return app


def run() -> None:
    """The console script: wire only the sub-command asked for, so the others' imports cost nothing."""
    argv = sys.argv[1:]
    if argv[:1] == ["--profile"]:  # the root's one option with a value: skip it to find the sub-command
        argv = argv[2:]
    words = [a for a in argv if not a.startswith("-")]
    first = words[0] if words else None
    if first in COMMANDS:
        build([first])()
    else:  # no sub-command (--help, --version) or an unknown one: the list is all that is shown
        build(summary=True)()


_APP: typer.Typer | None = None


def __getattr__(name: str) -> Any:
    global _APP
    if name == "app":
        if _APP is None:
            _APP = build()
        return _APP
    raise AttributeError(name)


if __name__ == "__main__":
    run()
