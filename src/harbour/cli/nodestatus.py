"""``harbour node status``: ask a running node how it is, in its own signed words.

The node answers a fresh challenge with its status signed by its identity key
(:mod:`harbour.node.status`), checked here against the descriptor the operator
holds, so what is shown is that node's answer and not a relay's. Exit 0 when it
answered, 1 when it did not (or the answer is not its own), 2 for unusable input.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from harbour.node.config import DESCRIPTOR_FILE
from harbour.node.driving import ClusterError, ask_statuses
from harbour.node.identity import IdentityError, NodeDescriptor
from harbour.node.status import NodeStatus

STATUS_TIMEOUT = 5.0


def iso(seconds: int | float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def refuse(message: str, code: int, *, as_json: bool, title: str, status: int, hints: tuple[str, ...] = ()) -> NoReturn:
    """One ``error:`` line (and ``hint:`` lines) on stderr, or under ``--json`` one problem document on stdout."""
    if as_json:
        problem = {"type": "about:blank", "title": title, "status": status, "detail": message, "exit_code": code}
        if hints:
            problem["hints"] = list(hints)
        typer.echo(json.dumps(problem, indent=2))
    else:
        typer.echo(f"error: {message}", err=True)
        for hint in hints:
            typer.echo(f"hint: {hint}", err=True)
    raise typer.Exit(code)


def status_document(descriptor: NodeDescriptor, status: NodeStatus) -> dict[str, Any]:
    """The JSON shape of one node's status (``harbour node status --json``, and each node of ``custody status``)."""
    return {
        "name": descriptor.name,
        "node_id": descriptor.node_id,
        "url": descriptor.url,
        "reachable": True,
        "authenticated": True,
        "version": status.software,
        "time": iso(status.time),
        "offline": status.offline,
        "keys": {"count": len(status.keys), "key_ids": list(status.keys)},
        "sessions_running": status.sessions,
        "certificate_ledger": status.ledger,
        "organisations": [{"org": org, "seq": seq} for org, seq in status.organisations],
        "settings": status.settings.document(),
        "signs_on_authority_alone": status.settings.signs_on_authority_alone,
    }


def status_lines(descriptor: NodeDescriptor, status: NodeStatus) -> list[str]:
    settings = status.settings
    keys = ", ".join(status.keys)
    orgs = ", ".join(f"{org[:16]} (head at entry {seq})" for org, seq in status.organisations)
    return [
        f"node {descriptor.name} ({descriptor.node_id}) at {descriptor.url}: answers, signed by its identity key",
        f"version: harbour {status.software}; its clock: {iso(status.time)}",
        f"keys held: {len(status.keys)}" + (f" ({keys})" if keys else ""),
        f"sessions running: {status.sessions}",
        f"certificate ledger: {status.ledger} nonce(s) spent",
        f"organisations enrolled: {len(status.organisations)}" + (f" ({orgs})" if orgs else ""),
        f"organisations_only: {str(settings.organisations_only).lower()}",
        f"approvers: {settings.approvers}; min_approvals: {settings.min_approvals}; "
        f"require_evidence: {str(settings.require_evidence).lower()}",
        f"authorities: {', '.join(settings.authorities)}",
        "signs on an approval authority's word alone: " + ("YES" if settings.signs_on_authority_alone else "no"),
    ]


def read_descriptor(path: Path, *, as_json: bool) -> NodeDescriptor:
    try:
        return NodeDescriptor.from_json(path.read_bytes())
    except OSError as exc:
        refuse(f"cannot read {path}: {exc.strerror}", 2, as_json=as_json, title="unusable input", status=400)
    except IdentityError as exc:
        refuse(f"{path}: {exc}", 2, as_json=as_json, title="unusable input", status=400)


def status(
    directory: Annotated[
        Path | None, typer.Option("--dir", help="The node's directory (its descriptor.json names it).")
    ] = None,
    descriptor_file: Annotated[
        Path | None, typer.Option("--descriptor", help="The node's descriptor file, instead of --dir.")
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the answer.")] = STATUS_TIMEOUT,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document and nothing else.")] = False,
) -> None:
    """Ask a running node for its status: keys, sessions, ledger, organisations, approval settings."""
    if directory is not None and descriptor_file is None:
        path = directory / DESCRIPTOR_FILE
    elif descriptor_file is not None and directory is None:
        path = descriptor_file
    else:
        refuse("give the node's --dir or its --descriptor file", 2, as_json=as_json, title="unusable input", status=400)
    if not 0 < timeout <= 300:
        refuse("--timeout must be in (0, 300] seconds", 2, as_json=as_json, title="unusable input", status=400)
    descriptor = read_descriptor(path, as_json=as_json)
    answer = ask_statuses([descriptor], timeout)[descriptor.node_id]
    if isinstance(answer, ClusterError):
        refuse(
            f"node {descriptor.name} at {descriptor.url} gave no status: {answer}",
            1,
            as_json=as_json,
            title="node did not answer",
            status=503,
            hints=(f"is it running? start it with `harbour node run --dir DIR` (it serves {descriptor.url})",),
        )
    if as_json:
        typer.echo(json.dumps(status_document(descriptor, answer), indent=2))
        return
    for line in status_lines(descriptor, answer):
        typer.echo(line)
