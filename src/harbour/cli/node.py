"""``harbour node``: create, serve and (offline) run a signer node.

``init`` makes a node directory: identity keys (encrypted in the node's store),
``node.json`` (configuration) and ``descriptor.json`` (the public descriptor other
nodes and the coordinator are given), and prints the descriptor. ``run`` serves
the node over HTTP. ``offline`` answers one request file for a node that has no
network (a cold node): each round of a session is one file in and one file out.
``approvers`` changes which approvers' keys a stopped node trusts, and whether
it serves organisations only. ``status`` asks a running node how it is
(:mod:`harbour.cli.nodestatus`).

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

from harbour.cli import output
from harbour.cli.authority import read_descriptors  # noqa: F401 (re-exported for the cluster CLI)
from harbour.cli.nodestatus import status as node_status
from harbour.cli.observe import (
    LogFormat,
    LogFormatOption,
    LogLevel,
    LogLevelOption,
    MetricsListenOption,
    configure_logs,
    metrics_endpoint,
    unconfigure_logs,
)
from harbour.cli.params import (
    FAILURE_EXIT,
    InputError,
    JsonOption,
    fail,
    new_passphrase,
    read_option_file,
    reported_errors,
)
from harbour.mpc.ecdsa_setup import SETUP_ABORT_BUDGET
from harbour.node import approval, quorum, rpc
from harbour.node.config import (
    CONFIG_FILE,
    PASSPHRASE_ENV,
    PIN_ENV,
    ROTATION_FILE,
    NodeConfig,
    node_incidents,
    rotate_identity,
    store_secrets,
    update_approvers,
)
from harbour.node.hsm import Pkcs11Config
from harbour.node.identity import IdentityError, is_node_id
from harbour.node.service import NodeService, NodeStartError, init_node
from harbour.node.store import StoreError
from harbour.node.tls import TlsError, TlsFiles
from harbour.util.files import write_atomic

app = typer.Typer(help="Signer nodes: create one, serve it, or run it offline.", no_args_is_help=True)


def _secrets(pkcs11: bool, name: str) -> tuple[str | None, str | None]:
    """A new node's PIN, or its new store passphrase (which must clear the strength floor)."""
    passphrase, pin = os.environ.get(PASSPHRASE_ENV), os.environ.get(PIN_ENV)
    if pkcs11:
        if not pin:
            raise InputError(f"set {PIN_ENV} to the token's user PIN")
        return None, pin
    if not passphrase:
        raise InputError(f"set {PASSPHRASE_ENV} to the passphrase that protects the node's key store")
    return new_passphrase(passphrase, PASSPHRASE_ENV, context=(name,)), None


def _open(directory: Path, *, offline: bool) -> NodeService:
    passphrase, pin = store_secrets(directory)
    try:
        return NodeService.open(directory, passphrase=passphrase, pin=pin, offline=offline)
    except NodeStartError as exc:
        raise fail(f"the node cannot start: {exc}", FAILURE_EXIT) from None


def _approver_key(text: str, option: str) -> bytes:
    """An approver's raw Ed25519 public key, 64 hex digits."""
    text = text.strip().lower().removeprefix("0x")
    try:
        raw = bytes.fromhex(text)
        if len(raw) != quorum.PUBLIC_KEY_LEN:
            raise ValueError
        return quorum.check_public_key(raw)
    except quorum.EvidenceError as exc:
        raise InputError(f"{option}: {exc}") from None
    except ValueError:
        raise InputError(
            f"{option}: an approver key is 64 hex digits (a raw Ed25519 public key), got {text!r:.80}"
        ) from None


def _approver_file(path: Path) -> list[bytes]:
    """One key per line; blank lines and ``#`` comments are ignored."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"--approvers: cannot read {path}: {exc}") from None
    keys = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if line:
            keys.append(_approver_key(line, f"--approvers {path} line {number}"))
    return keys


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
    approver_keys: Annotated[
        list[str] | None,
        typer.Option("--approver", help="An approver's Ed25519 public key (64 hex digits) to trust (repeatable)."),
    ] = None,
    approvers_file: Annotated[
        Path | None, typer.Option("--approvers", help="A file of approver keys to trust, one per line.")
    ] = None,
    min_approvals: Annotated[
        int, typer.Option("--min-approvals", help="Sign only with at least this many distinct approvers.")
    ] = 0,
    require_evidence: Annotated[
        bool,
        typer.Option("--require-evidence", help="Sign only with the approvers' evidence in the certificate."),
    ] = False,
    counter_pkcs11: Annotated[
        bool,
        typer.Option(
            "--counter-pkcs11", help="Keep the rollback counter a cold node needs on the PKCS#11 token (with --pkcs11)."
        ),
    ] = False,
    counter_file: Annotated[
        Path | None,
        typer.Option(
            "--counter-file",
            help="Keep the rollback counter in this new file, on other storage than the node directory.",
        ),
    ] = None,
    organisations_only: Annotated[
        bool,
        typer.Option(
            "--organisations-only",
            help="Make and sign only keys of an enrolled organisation (what a custody deployment's nodes need).",
        ),
    ] = False,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", help="PEM certificate (chain) to serve mutual TLS with.")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", help="PEM private key of --tls-cert (readable by its owner only).")
    ] = None,
    tls_client_ca: Annotated[
        Path | None, typer.Option("--tls-client-ca", help="PEM CA certificate clients must present a certificate of.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a node: identity, configuration and descriptor; prints the descriptor.

    With --tls-cert, --tls-key and --tls-client-ca (all three) the node serves
    HTTPS and accepts only clients with a certificate from that CA; its URL is
    https://. The paths are kept in node.json (sealed in the store).
    """
    with reported_errors():
        try:
            tls = TlsFiles.from_options(tls_cert, tls_key, tls_client_ca)
        except TlsError as exc:
            raise InputError(str(exc)) from None
        approvers = [_approver_key(k, "--approver") for k in approver_keys or []]
        if approvers_file is not None:
            approvers += _approver_file(approvers_file)
        if len(set(approvers)) != len(approvers):
            raise InputError("an approver key is given twice")
        if not 0 <= min_approvals <= quorum.MAX_APPROVALS:
            raise InputError(f"--min-approvals must be 0..{quorum.MAX_APPROVALS}")
        if (approvers or min_approvals) and not require_evidence:
            typer.echo(
                "WARNING: without --require-evidence a certificate without evidence is signed as before, "
                "so the approver list and --min-approvals bind only certificates that carry evidence.",
                err=True,
            )
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
        if counter_pkcs11 and counter_file is not None:
            raise InputError("--counter-pkcs11 and --counter-file are alternatives: one rollback counter per node")
        if counter_pkcs11 and pkcs11 is None:
            raise InputError("--counter-pkcs11 keeps the counter on the node's token: give --pkcs11-module too")
        counter: dict[str, str] | None = None
        if counter_pkcs11:
            counter = {"kind": "pkcs11"}
        elif counter_file is not None:
            counter = {"kind": "file", "path": str(counter_file.absolute())}
        passphrase, pin = _secrets(pkcs11 is not None, name)
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
                approvers=approvers,
                min_approvals=min_approvals,
                require_evidence=require_evidence,
                counter=counter,
                organisations_only=organisations_only,
                tls=tls,
            )
        except (NodeStartError, IdentityError, ValueError) as exc:
            if isinstance(exc, StoreError) and exc.reason not in ("policy", "exists", "name"):
                raise fail(f"cannot create the key store: {exc}", FAILURE_EXIT) from None
            raise InputError(str(exc)) from None
    if counter is None:
        typer.echo(
            "note: this node has no rollback counter (--counter-pkcs11 or --counter-file). Run online it needs "
            "none; run as a cold node (harbour node offline) it refuses signing sessions and threshold-ECDSA key "
            "generation, refresh and resharing, whose saved state a restored copy of its directory could replay "
            "to give its share away.",
            err=True,
        )
    if not organisations_only and not (approvers and require_evidence and min_approvals >= 1):
        typer.echo(
            "note: this node makes and signs keys of no organisation on an approval authority's certificate alone. "
            "For a custody deployment, whose service holds the authority's key, create it with "
            "--organisations-only (custody add-node refuses it otherwise).",
            err=True,
        )
    if not as_json:
        typer.echo(f"node {descriptor.name} created in {directory}; its descriptor for the coordinator:", err=True)
    typer.echo(descriptor.to_json())


@app.command("approvers")
def approvers_command(
    directory: Annotated[Path, typer.Option("--dir", help="The node's directory (the node must be stopped).")],
    add: Annotated[
        list[str] | None, typer.Option("--add", help="An approver key (64 hex digits) to trust (repeatable).")
    ] = None,
    remove: Annotated[
        list[str] | None, typer.Option("--remove", help="An approver key to stop trusting (repeatable).")
    ] = None,
    min_approvals: Annotated[
        int | None, typer.Option("--min-approvals", help="A new floor of distinct approvers.")
    ] = None,
    organisations_only: Annotated[
        bool | None,
        typer.Option(
            "--organisations-only/--any-key",
            help="Make and sign only keys of an enrolled organisation, or (--any-key) keys of none too.",
            show_default=False,
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Change (or, with no option, show) the approvers a node trusts and whether it serves organisations only.

    Re-seals node.json in the store.
    """
    with reported_errors():
        added = [_approver_key(k, "--add") for k in add or []]
        removed = [_approver_key(k, "--remove") for k in remove or []]
        if not added and not removed and min_approvals is None and organisations_only is None:
            try:
                config = NodeConfig.from_json((directory / CONFIG_FILE).read_text())
            except OSError as exc:
                raise InputError(f"--dir: no node in {directory} ({exc.strerror})") from None
            except NodeStartError as exc:
                raise InputError(str(exc)) from None
            differed = False
        else:
            passphrase, pin = store_secrets(directory)
            if passphrase is None and pin is None:
                raise InputError(f"set {PASSPHRASE_ENV} (or {PIN_ENV} for a token) to open the node's store")
            try:
                config, differed = update_approvers(
                    directory,
                    add=added,
                    remove=removed,
                    min_approvals=min_approvals,
                    organisations_only=organisations_only,
                    passphrase=passphrase,
                    pin=pin,
                )
            except NodeStartError as exc:
                raise fail(f"cannot change the approvers: {exc}", FAILURE_EXIT) from None
    if removed and not config.approvers:
        typer.echo(
            "WARNING: the node now trusts no approver list: it takes the quorum members from each certificate's "
            "evidence, so a compromised authority can name its own approvers",
            err=True,
        )
    if differed:
        typer.echo("WARNING: node.json differed from the copy sealed in the store; it was rewritten from it", err=True)
    keys = [a.hex() for a in config.approvers]
    if as_json:
        doc = {
            "approvers": keys,
            "min_approvals": config.min_approvals,
            "require_evidence": config.require_evidence,
            "organisations_only": config.organisations_only,
        }
        output.emit(doc, True)
    else:
        typer.echo(f"approvers: {', '.join(keys) if keys else '(none: the quorum members the evidence names)'}")
        typer.echo(f"min_approvals: {config.min_approvals}")
        typer.echo(f"require_evidence: {str(config.require_evidence).lower()}")
        typer.echo(f"organisations_only: {str(config.organisations_only).lower()}")


@app.command("rotate-keys")
def rotate_keys(
    directory: Annotated[Path, typer.Option("--dir", help="The node's directory (the node must be stopped).")],
    as_json: JsonOption = False,
) -> None:
    """Give the node a new identity key after a suspected compromise; writes rotation.json for the others."""
    with reported_errors():
        passphrase, pin = store_secrets(directory)
        if passphrase is None and pin is None:
            raise InputError(f"set {PASSPHRASE_ENV} (or {PIN_ENV} for a token) to open the node's store")
        try:
            rotation = rotate_identity(directory, passphrase=passphrase, pin=pin)
        except NodeStartError as exc:
            raise fail(f"cannot rotate the node's keys: {exc}", FAILURE_EXIT) from None
    doc = {
        "old_node_id": rotation.old.node_id,
        "new_node_id": rotation.new.node_id,
        "rotation": str(directory / ROTATION_FILE),
        "descriptor": json.loads(rotation.new.to_json()),
    }
    if as_json:
        output.emit(doc, True)
    else:
        typer.echo(f"node {rotation.new.name}: {rotation.old.node_id} -> {rotation.new.node_id}")
        typer.echo(
            f"next: an authority certificate (harbour authority certify --kind rotate --rotation "
            f"{directory / ROTATION_FILE}), then harbour cluster rotate on the other nodes"
        )


@app.command("incidents")
def incidents_command(
    directory: Annotated[Path, typer.Option("--dir", help="The node's directory (the node must be stopped).")],
    clear: Annotated[
        str | None, typer.Option("--clear", help="A peer's node id whose count to reset, once investigated.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """List (or clear one) the base-OT aborts each peer caused in this node's threshold-ECDSA setups."""
    with reported_errors():
        if clear is not None and not is_node_id(clear):
            raise InputError("--clear: a node id is 32 lowercase hex digits")
        passphrase, pin = store_secrets(directory)
        if passphrase is None and pin is None:
            raise InputError(f"set {PASSPHRASE_ENV} (or {PIN_ENV} for a token) to open the node's store")
        try:
            counts, cleared = node_incidents(directory, clear=clear, passphrase=passphrase, pin=pin)
        except NodeStartError as exc:
            raise fail(f"cannot read the node's incidents: {exc}", FAILURE_EXIT) from None
    if as_json:
        output.emit({"incidents": counts, "budget": SETUP_ABORT_BUDGET, "cleared": cleared}, True)
        return
    for node, count in sorted(counts.items()):
        state = "refused for setups" if count >= SETUP_ABORT_BUDGET else "below the budget"
        typer.echo(f"{node}: {count} base-OT abort(s), {state}")
    if not counts:
        typer.echo("no base-OT aborts recorded")
    if cleared:
        typer.echo(f"cleared the count of {clear}")


@app.command("run")
def run(
    directory: Annotated[Path, typer.Option("--dir", help="The node's directory.")],
    log_format: LogFormatOption = LogFormat.auto,
    log_level: LogLevelOption = LogLevel.info,
    metrics_listen: MetricsListenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Serve the node until interrupted (the same as ``python -m harbour.node --dir DIR``).

    HTTP, or HTTPS with client certificates required when it was made with --tls-cert.

    Logs go to stderr, one line per record; --metrics-listen serves its metrics on an
    address of their own (docs/nodes.md, "Observability").
    """
    from harbour.node.server import run as serve_node

    def announce(name: str, url: str) -> None:
        output.emit({"node": name, "url": url, "listening": True}, True)
        sys.stdout.flush()

    with reported_errors():
        try:
            endpoint = metrics_endpoint(metrics_listen)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        configure_logs(log_format, log_level)
        try:
            serve_node(directory, metrics=endpoint, announce=announce if as_json else None)
        except NodeStartError as exc:
            raise fail(f"the node cannot start: {exc}", FAILURE_EXIT) from None
        except OSError as exc:
            raise fail(f"--metrics-listen {metrics_listen}: {exc.strerror or exc}", FAILURE_EXIT) from None
        finally:
            unconfigure_logs()


@app.command("offline")
def offline(
    directory: Annotated[Path, typer.Option("--dir", help="The node's directory.")],
    request: Annotated[Path, typer.Option("--in", help="Request file carried from the coordinator.")],
    response: Annotated[Path, typer.Option("--out", help="Response file to carry back (must not exist).")],
    as_json: JsonOption = False,
) -> None:
    """Answer one request file (one round of a session) on a node with no network."""
    with reported_errors():
        data = read_option_file(request, "--in")
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
        except (rpc.NodeError, rpc.RequestError) as exc:  # the refusal is the response carried back
            raise fail(str(exc), FAILURE_EXIT) from None
    if as_json:
        output.emit({"response": str(response)}, True)


app.command("status")(node_status)
