"""``harbour node``: create, serve and (offline) run a signer node.

``init`` makes a node directory: identity keys (encrypted in the node's store),
``node.json`` (configuration) and ``descriptor.json`` (the public descriptor other
nodes and the coordinator are given), and prints the descriptor. ``run`` serves
the node over HTTP. ``offline`` answers one request file for a node that has no
network (a cold node): each round of a session is one file in and one file out.

Secrets come from the environment, never from the command line (where other
users can read them in the process list): ``HARBOUR_NODE_PASSPHRASE`` for a
passphrase-protected store, ``HARBOUR_NODE_PIN`` for the PKCS#11 token's user PIN.
Exit 2 means bad input, exit 1 that the node could not start or the request failed.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from harbour.cli.authority import read_descriptors  # noqa: F401 (re-exported for the cluster CLI)
from harbour.cli.params import FAILURE_EXIT, InputError, JsonOption, fail, reported_errors
from harbour.node import approval, rpc
from harbour.node.identity import IdentityError
from harbour.node.keyfile import write_atomic
from harbour.node.service import NodeService, NodeStartError, init_node
from harbour.node.store import Pkcs11Config, StoreError

app = typer.Typer(help="Signer nodes: create one, serve it, or run it offline.", no_args_is_help=True)

PASSPHRASE_ENV = "HARBOUR_NODE_PASSPHRASE"  # noqa: S105 (the variable's name, not a secret)
PIN_ENV = "HARBOUR_NODE_PIN"


def _secrets(pkcs11: bool) -> tuple[str | None, str | None]:
    passphrase, pin = os.environ.get(PASSPHRASE_ENV), os.environ.get(PIN_ENV)
    if pkcs11:
        if not pin:
            raise InputError(f"set {PIN_ENV} to the token's user PIN")
        return None, pin
    if not passphrase:
        raise InputError(f"set {PASSPHRASE_ENV} to the passphrase that protects the node's key store")
    return passphrase, None


def _open(directory: Path, *, offline: bool) -> NodeService:
    try:
        kind = json.loads((directory / "store" / "store.json").read_text()).get("kek", {}).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    passphrase, pin = os.environ.get(PASSPHRASE_ENV), os.environ.get(PIN_ENV)
    try:
        return NodeService.open(
            directory,
            passphrase=None if kind == "pkcs11" else passphrase,
            pin=pin if kind == "pkcs11" else None,
            offline=offline,
        )
    except NodeStartError as exc:
        raise fail(f"the node cannot start: {exc}", FAILURE_EXIT) from None


@app.command("init")
def init(
    directory: Annotated[Path, typer.Option("--dir", help="Directory to create the node in.")],
    name: Annotated[str, typer.Option("--name", help="The node's name (letters, digits, '-', '_').")],
    listen: Annotated[str, typer.Option("--listen", help="HOST:PORT to serve on, e.g. 127.0.0.1:7001.")],
    authorities: Annotated[
        list[Path], typer.Option("--authority", help="An approval authority's authority.pub (repeatable).")
    ],
    url: Annotated[str | None, typer.Option("--url", help="URL others reach it at (default http://HOST:PORT).")] = None,
    pkcs11_module: Annotated[
        str | None, typer.Option("--pkcs11-module", help="PKCS#11 library: keep the KEK on that token.")
    ] = None,
    token_label: Annotated[str | None, typer.Option("--token-label", help="The PKCS#11 token's label.")] = None,
    key_label: Annotated[str, typer.Option("--key-label", help="Label of the KEK on the token.")] = "harbour-kek",
    session_timeout: Annotated[
        int, typer.Option("--session-timeout", help="Seconds a session may wait for its next round (1..3600).")
    ] = 120,
    as_json: JsonOption = False,
) -> None:
    """Create a node: identity, configuration and descriptor; prints the descriptor."""
    with reported_errors():
        keys = []
        for path in authorities:
            try:
                keys.append(approval.parse_public_file(path.read_bytes())[1].public_bytes_raw())
            except OSError as exc:
                raise InputError(f"--authority: cannot read {path}: {exc.strerror}") from None
            except (approval.ApprovalError, approval.AuthorityKeyError, ValueError) as exc:
                raise InputError(f"--authority {path}: {exc}") from None
        pkcs11 = None
        if pkcs11_module or token_label:
            if not (pkcs11_module and token_label):
                raise InputError("--pkcs11-module and --token-label go together")
            pkcs11 = Pkcs11Config(pkcs11_module, token_label, key_label)
        passphrase, pin = _secrets(pkcs11 is not None)
        try:
            if not 1 <= session_timeout <= 3600:
                raise InputError("--session-timeout must be 1..3600 seconds")
            descriptor = init_node(
                directory,
                session_timeout=session_timeout,
                name=name,
                listen=listen,
                url=url,
                authorities=keys,
                passphrase=passphrase,
                pkcs11=pkcs11,
                pin=pin,
            )
        except (NodeStartError, IdentityError, ValueError) as exc:
            if isinstance(exc, StoreError) and exc.reason not in ("policy", "exists", "name"):
                raise fail(f"cannot create the key store: {exc}", FAILURE_EXIT) from None
            raise InputError(str(exc)) from None
    if not as_json:
        typer.echo(f"node {descriptor.name} created in {directory}; its descriptor for the coordinator:", err=True)
    typer.echo(descriptor.to_json())


@app.command("run")
def run(directory: Annotated[Path, typer.Option("--dir", help="The node's directory.")]) -> None:
    """Serve the node over HTTP until interrupted."""
    from harbour.node.server import serve

    with reported_errors():
        node = _open(directory, offline=False)
        try:
            serve(node, ready=lambda: print(f"node {node.config.name} listening on {node.config.url}", flush=True))
        finally:
            node.close()


@app.command("offline")
def offline(
    directory: Annotated[Path, typer.Option("--dir", help="The node's directory.")],
    request: Annotated[Path, typer.Option("--in", help="Request file carried from the coordinator.")],
    response: Annotated[Path, typer.Option("--out", help="Response file to carry back (must not exist).")],
) -> None:
    """Answer one request file (one round of a session) on a node with no network."""
    with reported_errors():
        try:
            data = request.read_bytes()
        except OSError as exc:
            raise InputError(f"--in: cannot read {request}: {exc.strerror}") from None
        if response.exists():
            raise InputError(f"--out: {response} exists; responses are never overwritten")
        node = _open(directory, offline=True)
        try:
            answer = node.handle(data)
        finally:
            node.close()
        write_atomic(response, answer, mode=0o644, overwrite=False)
        try:
            rpc.parse_response(answer, node.config.name)
        except (rpc.NodeError, rpc.RequestError) as exc:
            typer.echo(f"Error: {exc}", err=True)
            sys.exit(FAILURE_EXIT)
