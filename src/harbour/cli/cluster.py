"""``harbour cluster``: drive sessions across signer nodes (the coordinator).

The coordinator keeps a record of each key it created (public key package, chain
code, which node is which party) in its state directory (``--state``, default
``$HARBOUR_CLUSTER_DIR`` or ``~/.harbour/cluster``); it holds no secret. Every
command needs an approval certificate the nodes will accept (``harbour authority
certify``); for keygen and reshare the certificate's ``roster`` param is
``harbour authority certify --nodes ...`` over the same descriptor files.

A node with no network is reached through a directory (``--offline NAME=DIR``):
request files appear there, and the operator carries each to the node, runs
``harbour node offline`` and brings the response file back to the same directory.

Nodes that serve mutual TLS (``https://`` URLs) are reached with a client
certificate: ``harbour cluster --tls-cert F --tls-key F --tls-ca F COMMAND``
(or ``$HARBOUR_CLUSTER_TLS_CERT``, ``_KEY``, ``_CA``), the CA being the one the
nodes' own certificates chain to.

``--json`` prints one object: ``cluster sign`` the same fields as ``harbour mpc
demo`` (plus ``key_id`` and ``path``). Exit 2: bad input; exit 1: the session failed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from harbour.cli import output
from harbour.cli import session as cli_session
from harbour.cli.authority import read_descriptors
from harbour.cli.document import emit_document
from harbour.cli.params import (
    FAILURE_EXIT,
    InputError,
    JsonOption,
    SchemeOption,
    check_scheme,
    fail,
    parse_message,
    read_option_file,
    reported_errors,
)
from harbour.crypto.ecdsa import DIGEST_LEN
from harbour.mpc.schemes import scheme_by_name
from harbour.node import rpc
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator, run_sync
from harbour.node.identity import NodeDescriptor
from harbour.node.rotation import Rotation, RotationError
from harbour.node.tls import CLIENT_ENV, TlsError, TlsFiles

app = typer.Typer(help="Coordinate signer nodes: keygen, sign, refresh, reshare.", no_args_is_help=True)

STATE_ENV = "HARBOUR_CLUSTER_DIR"

StateOption = Annotated[Path | None, typer.Option("--state", help=f"Coordinator state directory (${STATE_ENV}).")]
OfflineOption = Annotated[
    list[str] | None, typer.Option("--offline", help="NAME=DIR: reach node NAME by request/response files in DIR.")
]
TimeoutOption = Annotated[float, typer.Option("--timeout", help="Seconds a session may take.")]
CertOption = Annotated[Path, typer.Option("--certificate", help="Approval certificate file for this session.")]

_tls: dict[str, Path | None] = {}
"""The client TLS files given to the group (``harbour cluster --tls-cert ... COMMAND``)."""


@app.callback()
def _group(
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", envvar=CLIENT_ENV[0], help="Client certificate for https:// nodes."),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", envvar=CLIENT_ENV[1], help="Private key of --tls-cert."),
    ] = None,
    tls_ca: Annotated[
        Path | None,
        typer.Option("--tls-ca", envvar=CLIENT_ENV[2], help="CA certificate of the nodes' certificates."),
    ] = None,
) -> None:
    """Coordinate signer nodes: keygen, sign, refresh, reshare."""
    _tls.update(cert=tls_cert, key=tls_key, ca=tls_ca)


def _state(state: Path | None) -> Path:
    if state is not None:
        return state
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".harbour" / "cluster")


def _offline(items: list[str] | None) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for item in items or []:
        name, sep, directory = item.partition("=")
        if not sep or not name or not directory:
            raise InputError(f"--offline must be NAME=DIR, got {item!r}")
        out[name] = Path(directory)
    return out


def _committee(nodes: str, threshold: int) -> list[NodeDescriptor]:
    descriptors = read_descriptors(nodes)
    if not 1 <= threshold <= len(descriptors):
        raise InputError(f"-t must be 1..{len(descriptors)} for {len(descriptors)} nodes")
    return descriptors


def _coordinator(state: Path | None, offline: list[str] | None, timeout: float) -> Coordinator:
    if not 0 < timeout <= 3600:
        raise InputError("--timeout must be 0..3600 seconds")
    try:
        files = TlsFiles.from_options(_tls.get("cert"), _tls.get("key"), _tls.get("ca"))
        tls = None if files is None else files.client_context()
    except TlsError as exc:
        raise InputError(str(exc)) from None
    return Coordinator(state_dir=_state(state), offline=_offline(offline), timeout=timeout, tls=tls)


def key_document(key: ClusterKey) -> dict[str, Any]:
    keys = {
        k: v.hex() if isinstance(v, bytes) else v
        for k, v in cli_session.key_fields(key.scheme, key.public.group_public_key).items()
    }
    return {
        "key_id": key.key_id,
        "scheme": key.scheme,
        "threshold": key.threshold,
        "parties": [
            {"party": p, "name": d.name, "node_id": d.node_id, "url": d.url} for p, d in sorted(key.roster.items())
        ],
        **keys,
        "group_key": key.public.group_public_key.encode().hex(),
        "chain_code": key.chain_code.hex(),
        "fingerprint": key.public.fingerprint().hex(),
    }


def _run(coordinator: Coordinator, job: Any, what: str = "session") -> Any:
    async def go() -> Any:
        async with coordinator:
            return await job(coordinator)

    try:
        with output.progress(f"{what} with the signer nodes (cold nodes: carry each request file over)"):
            return run_sync(go())
    except ClusterError as exc:
        raise fail(f"session failed ({exc.reason}): {exc}", FAILURE_EXIT) from None


def _load(coordinator: Coordinator, key_id: str) -> ClusterKey:
    try:
        rpc.check_key_id(key_id)
        return coordinator.load_key(key_id)
    except rpc.RequestError as exc:
        raise InputError(f"--key-id: {exc}") from None
    except ClusterError as exc:
        raise InputError(str(exc)) from None


@app.command("keygen")
def keygen(
    nodes: Annotated[str, typer.Option("--nodes", help="Descriptor files A.json,B.json,... (party 1, 2, ...).")],
    threshold: Annotated[int, typer.Option("--threshold", "-t", help="Signers needed.")],
    scheme: SchemeOption,
    certificate: CertOption,
    state: StateOption = None,
    offline: OfflineOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Generate a new key across the nodes (distributed: no node ever holds it)."""
    with reported_errors():
        scheme = check_scheme(scheme)
        descriptors = _committee(nodes, threshold)
        cert = read_option_file(certificate, "--certificate")
        coordinator = _coordinator(state, offline, timeout)
        key = _run(coordinator, lambda c: c.keygen(descriptors, threshold, scheme, cert), "key generation")
    emit_document(key_document(key), as_json)


@app.command("sign")
def sign(
    key_id: Annotated[str, typer.Option("--key-id", help="The key (from cluster keygen).")],
    message: Annotated[str, typer.Option("--message", "-m", help="Message in hex (ECDSA: a 32-byte digest).")],
    certificate: CertOption,
    path: Annotated[str, typer.Option("--path", help="BIP-32 path to sign under, e.g. m/0/3.")] = "m",
    signers: Annotated[
        str | None, typer.Option("--signers", help="Parties to sign with (default: those the certificate names).")
    ] = None,
    state: StateOption = None,
    offline: OfflineOption = None,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Sign with the parties the certificate names (its authority chose them)."""
    with reported_errors():
        data = parse_message(message)
        coordinator = _coordinator(state, offline, timeout)
        key = _load(coordinator, key_id)
        if scheme_by_name(key.scheme).signs_digest and len(data) != DIGEST_LEN:
            raise InputError("--message: threshold ECDSA signs a 32-byte digest (64 hex digits)")
        chosen = None
        if signers is not None:
            try:
                chosen = sorted({int(s) for s in signers.split(",")})
            except ValueError:
                raise InputError("--signers is a comma-separated list of party numbers") from None
            if not set(chosen) <= set(key.roster) or len(chosen) < key.threshold:
                raise InputError(f"--signers must be at least {key.threshold} of the parties {sorted(key.roster)}")
        cert = read_option_file(certificate, "--certificate")
        outcome = _run(coordinator, lambda c: c.sign(key, data, cert, path=path, signers=chosen), "signing")
    doc = cli_session.contract_fields(
        key.scheme, key.threshold, len(key.roster), outcome.group_public_key, outcome.signers, data, outcome.signature
    )
    emit_document({**doc, "key_id": key.key_id, "path": path}, as_json)


@app.command("refresh")
def refresh(
    key_id: Annotated[str, typer.Option("--key-id", help="The key to refresh.")],
    certificate: CertOption,
    state: StateOption = None,
    offline: OfflineOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """New shares of the same key on the same nodes (all must be up)."""
    with reported_errors():
        coordinator = _coordinator(state, offline, timeout)
        key = _load(coordinator, key_id)
        cert = read_option_file(certificate, "--certificate")
        new = _run(coordinator, lambda c: c.refresh(key, cert), "refresh")
    emit_document(key_document(new), as_json)


@app.command("reshare")
def reshare(
    key_id: Annotated[str, typer.Option("--key-id", help="The key to move.")],
    nodes: Annotated[str, typer.Option("--nodes", help="Descriptor files of the new committee.")],
    threshold: Annotated[int, typer.Option("--threshold", "-t", help="The new threshold.")],
    certificate: CertOption,
    state: StateOption = None,
    offline: OfflineOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Move the key to a new committee and/or threshold; the public key stays the same."""
    with reported_errors():
        descriptors = _committee(nodes, threshold)
        coordinator = _coordinator(state, offline, timeout)
        key = _load(coordinator, key_id)
        cert = read_option_file(certificate, "--certificate")
        new = _run(coordinator, lambda c: c.reshare(key, descriptors, threshold, cert), "resharing")
    emit_document(key_document(new), as_json)


def _session(text: str) -> bytes:
    try:
        sid = bytes.fromhex(text)
    except ValueError:
        sid = b""
    if len(sid) != 32:
        raise InputError("--session is the 64-hex-digit session id the failed command printed")
    return sid


@app.command("finish")
def finish(
    session: Annotated[str, typer.Option("--session", help="The session id (hex) of the interrupted commit.")],
    nodes: Annotated[str, typer.Option("--nodes", help="Descriptor files of the session's members, old and new.")],
    state: StateOption = None,
    offline: OfflineOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Finish an interrupted keygen/refresh/reshare commit from what the nodes staged."""
    with reported_errors():
        sid = _session(session)
        descriptors = read_descriptors(nodes)
        coordinator = _coordinator(state, offline, timeout)
        key = _run(coordinator, lambda c: c.finish(sid, descriptors))
    emit_document(key_document(key), as_json)


@app.command("discard")
def discard(
    session: Annotated[str, typer.Option("--session", help="The session id (hex) whose staged shares to discard.")],
    nodes: Annotated[str, typer.Option("--nodes", help="Descriptor files of the session's members.")],
    certificate: CertOption,
    state: StateOption = None,
    offline: OfflineOption = None,
    timeout: TimeoutOption = 60.0,
    as_json: JsonOption = False,
) -> None:
    """Discard a staged result (needs the authority's certificate with --param discard=SESSION)."""
    with reported_errors():
        sid = _session(session)
        descriptors = read_descriptors(nodes)
        cert = read_option_file(certificate, "--certificate")
        coordinator = _coordinator(state, offline, timeout)
        names = _run(coordinator, lambda c: c.discard(sid, cert, descriptors))
    emit_document({"session": sid.hex(), "discarded_on": names}, as_json)


@app.command("rotate")
def rotate(
    rotation: Annotated[
        Path, typer.Option("--rotation", help="The rotation.json that harbour node rotate-keys wrote.")
    ],
    nodes: Annotated[str, typer.Option("--nodes", help="Descriptor files of the other nodes to tell.")],
    certificate: CertOption,
    state: StateOption = None,
    offline: OfflineOption = None,
    timeout: TimeoutOption = 30.0,
    as_json: JsonOption = False,
) -> None:
    """Tell the other nodes (and this coordinator's key records) a node's new identity."""
    with reported_errors():
        statement = read_option_file(rotation, "--rotation")
        try:
            parsed = Rotation.decode(statement)
        except RotationError as exc:
            raise InputError(f"--rotation {rotation}: {exc}") from None
        descriptors = read_descriptors(nodes)
        cert = read_option_file(certificate, "--certificate")
        coordinator = _coordinator(state, offline, timeout)
        updated = _run(coordinator, lambda c: c.rotate(statement, cert, descriptors))
    emit_document({"old_node_id": parsed.old.node_id, "new_node_id": parsed.new.node_id, "updated": updated}, as_json)


@app.command("show")
def show(
    key_id: Annotated[str, typer.Option("--key-id", help="The key.")],
    state: StateOption = None,
    as_json: JsonOption = False,
) -> None:
    """Print what the coordinator knows of a key (for certificates: group_key, parties)."""
    with reported_errors():
        key = _load(Coordinator(state_dir=_state(state)), key_id)
    emit_document(key_document(key), as_json)
