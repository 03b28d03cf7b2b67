"""``harbour audit``: the log that proves what happened, checked without trusting the server.

``audit verify-proof INDEX`` does not trust the server's word that an event is
in the log: it fetches the signed tree head and the inclusion proof, checks the
head's signature against the audit public key (``--audit-key``), recomputes the
event's leaf hash and verifies the RFC 9162 audit path to the signed root.
``audit verify-consistency --old N [--new M] [--old-root R]`` likewise checks
that the log of size M (default: now) extends the log of size N, starting from
the root the auditor recorded for N.

``audit verify`` and ``audit baseline`` work on the deployment's own database
and keys (``--home``): the first recomputes the whole log and compares every
business row with the log's row digests; the second, once, records the rows of a
deployment whose log predates row digests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from harbour.cli.apiclient import (
    DEFAULT_API,
    ApiError,
    ApiOption,
    TokenOption,
    api_errors,
    connect,
    emit,
    list_command,
)
from harbour.cli.params import HomeOption, InputError, JsonOption

audit_app = typer.Typer(
    help="The audit log: events, signed heads, inclusion and consistency proofs.", no_args_is_help=True
)


list_command(
    audit_app,
    "events",
    "/v1/audit/events",
    ["index", "at", "kind", "subject", "actor_id"],
    "Audit events, oldest first (auditor, admin).",
)


@audit_app.command("head")
def audit_head(
    audit_key: Annotated[
        str | None,
        typer.Option("--audit-key", envvar="HARBOUR_AUDIT_KEY", help="Verify the head's signature with this key."),
    ] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The signed tree head: size and root of the log (record them to check consistency later)."""
    from harbour.custody.auditproof import ProofError, check_head

    with api_errors():
        key = read_audit_key(audit_key) if audit_key is not None else None
        with connect(api, token) as client:
            head = client.get("/v1/audit/head")
        if key is not None:
            try:
                check_head(head, key)
            except ProofError as exc:
                raise ProofFailed(f"the head does NOT verify: {exc}") from None
    emit({**head, "verified": key is not None}, as_json)


@audit_app.command("proof")
def audit_proof(
    index: Annotated[int, typer.Argument(help="Event index (0-based).")],
    tree_size: Annotated[int | None, typer.Option("--tree-size", help="Prove against this log size.")] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """The inclusion proof of one event, as the server sends it (use verify-proof to check it)."""
    with api_errors():
        if index < 0 or (tree_size is not None and tree_size < 1):
            raise InputError("INDEX must be at least 0 and --tree-size at least 1")
        with connect(api, token) as client:
            proof = client.get(f"/v1/audit/proof/{index}", tree_size=tree_size)
    emit(proof, as_json)


AuditKeyOption = Annotated[
    str,
    typer.Option(
        "--audit-key",
        envvar="HARBOUR_AUDIT_KEY",
        help="The audit log's Ed25519 public key, from your own records: 64 hex digits, or a file holding them "
        "(or a PEM public key). Never taken from the server being checked.",
    ),
]


def _is_hex_key(text: str) -> bool:
    """Whether ``text`` is a raw 32-byte key in hex (either case), as given on the command line or in a file."""
    return len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def read_audit_key(value: str) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    text = value.strip()
    if not _is_hex_key(text):
        path = Path(text)
        try:
            if path.stat().st_size > 16 * 1024:
                raise InputError(f"--audit-key: {path} is far larger than a public key")
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"--audit-key is 64 hex digits or a readable file; {text!r}: {exc.strerror}") from None
        if b"-----BEGIN" in data:
            try:
                key = serialization.load_pem_public_key(data)
            except (ValueError, TypeError):
                raise InputError(f"--audit-key: {path} is not a PEM public key") from None
            if not isinstance(key, Ed25519PublicKey):
                raise InputError(f"--audit-key: {path} is not an Ed25519 public key")
            return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        text = data.decode("ascii", "replace").strip()
        if not _is_hex_key(text):
            raise InputError(f"--audit-key: {path} does not hold a 64-hex-digit public key")
    return bytes.fromhex(text)


@audit_app.command("verify-proof")
def audit_verify_proof(
    index: Annotated[int, typer.Argument(help="Event index (0-based).")],
    audit_key: AuditKeyOption,
    tree_size: Annotated[int | None, typer.Option("--tree-size", help="Prove against this log size.")] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fetch an event's inclusion proof and verify it here: signed head, leaf hash, audit path."""
    from harbour.custody.auditproof import ProofError, check_inclusion_proof

    with api_errors():
        key = read_audit_key(audit_key)
        if index < 0 or (tree_size is not None and tree_size < 1):
            raise InputError("INDEX must be at least 0 and --tree-size at least 1")
        with connect(api, token) as client:
            proof = client.get(f"/v1/audit/proof/{index}", tree_size=tree_size)
        try:
            check_inclusion_proof(proof, key)
        except ProofError as exc:
            raise ProofFailed(f"the proof of event {index} does NOT verify: {exc}") from None
    head = proof["head"]
    doc = {
        "verified": True,
        "index": index,
        "tree_size": proof["tree_size"],
        "root": head["root"],
        "head_timestamp": head["timestamp"],
        "event": proof["event"],
    }
    if as_json:
        emit(doc, True)
    else:
        event = proof["event"]
        typer.echo(
            f"verified: event {index} ({event.get('kind')} {event.get('subject')}) is in the log of size "
            f"{proof['tree_size']} with root {head['root']}, signed at {head['timestamp']}"
        )


@audit_app.command("verify-consistency")
def audit_verify_consistency(
    old: Annotated[int, typer.Option("--old", help="The log size you recorded earlier.")],
    audit_key: AuditKeyOption,
    new: Annotated[int | None, typer.Option("--new", help="The later size (default: the current head).")] = None,
    old_root: Annotated[
        str | None, typer.Option("--old-root", help="The root you recorded for --old (hex); checked if given.")
    ] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify that the log now extends the log you saw before (nothing rewritten, only appended)."""
    from harbour.custody.auditproof import ProofError, check_consistency_proof, check_head

    with api_errors():
        key = read_audit_key(audit_key)
        if old < 1 or (new is not None and new < old):
            raise InputError("--old must be at least 1 and --new at least --old")
        if old_root is not None and (len(old_root) != 64 or not all(c in "0123456789abcdef" for c in old_root)):
            raise InputError("--old-root is 64 lowercase hex digits")
        with connect(api, token) as client:
            if new is None:
                head = client.get("/v1/audit/head")
                try:
                    check_head(head, key)
                except ProofError as exc:
                    raise ProofFailed(f"the current head does NOT verify: {exc}") from None
                new = int(head["tree_size"])
            proof = client.get("/v1/audit/consistency", old=old, new=new)
        kept = {"tree_size": old, "root": old_root} if old_root is not None else None
        try:
            check_consistency_proof(proof, key, old_head=kept)
        except ProofError as exc:
            raise ProofFailed(f"the log of size {new} does NOT extend the log of size {old}: {exc}") from None
    doc = {
        "verified": True,
        "old_size": old,
        "new_size": new,
        "old_root": proof["old_head"]["root"],
        "new_root": proof["new_head"]["root"],
    }
    if as_json:
        emit(doc, True)
    else:
        typer.echo(
            f"verified: the log of size {new} (root {doc['new_root']}) extends size {old} (root {doc['old_root']})"
        )


class ProofFailed(ApiError):
    """A proof from the server that does not verify: reported like an API failure (exit 1)."""


@audit_app.command("verify")
def audit_verify(
    home: HomeOption,
    public_key: Annotated[
        str | None,
        typer.Option("--public-key", help="The audit key (hex) from your own records; default: HOME/audit.key."),
    ] = None,
    heads: Annotated[
        Path | None, typer.Option("--heads", help="Signed tree heads kept outside the server (JSON list).")
    ] = None,
    rows: Annotated[
        bool,
        typer.Option("--rows/--no-rows", help="Also check every business row against the log's row digests."),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Recompute the audit log from the database, check every signed tree head, and every row against the log."""
    # The database log needs SQLAlchemy and the deployment's configuration; the
    # commands above check heads and proofs alone, so only this one loads them.
    from harbour.cli.custody import exit_error, load_deployment
    from harbour.custody import auditverify, db
    from harbour.custody import config as cfg
    from harbour.custody.errors import CustodyError

    config = load_deployment(home)
    try:
        key = public_key or cfg.audit_public_key(config.home)
    except CustodyError as exc:
        raise exit_error(exc.detail, 2 if "missing" in exc.extra else 1) from None
    kept: list[dict[str, Any]] = []
    if heads is not None:
        try:
            kept = json.loads(heads.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise exit_error(f"{heads}: {exc}", 2) from None
        if not isinstance(kept, list):
            raise exit_error(f"{heads}: expected a JSON list of signed tree heads", 2)
    engine = db.make_engine(config.database)
    try:
        with db.session_factory(db.readonly(engine))() as session:
            report = auditverify.verify(session, key, heads=kept, rows=rows)
    finally:
        engine.dispose()
    if as_json:
        emit(report.to_json(), True)  # the report is the document, failed or not
    elif report.ok:
        checked = ", every business row is as the log left it" if rows else " (rows not checked)"
        typer.echo(f"audit log verified: {report.size} events, every signed tree head checks{checked}")
    elif report.rows:
        typer.echo(
            f"error: audit rows FAILED: the log verifies ({report.size} events), but {len(report.rows)} row(s) of the "
            "database are not as the log left them:",
            err=True,
        )
        for finding in report.rows:
            typer.echo(f"  {finding.describe()}", err=True)
    else:
        typer.echo(f"error: audit log FAILED at entry {report.first_bad_index}: {report.problem}", err=True)
    if not report.ok:
        raise typer.Exit(1)


@audit_app.command("baseline")
def audit_baseline(home: HomeOption, as_json: JsonOption = False) -> None:
    """Once, after upgrading a deployment whose audit log predates row digests: record every row as it is now."""
    from harbour.cli.custody import exit_error, load_deployment
    from harbour.custody import config as cfg
    from harbour.custody import db
    from harbour.custody.audit import AuditLog
    from harbour.custody.auditverify import record_baseline
    from harbour.custody.errors import CustodyError

    config = load_deployment(home)
    try:
        log = AuditLog(cfg.audit_signing_key(config.home, config.passphrase))
    except CustodyError as exc:
        raise exit_error(exc.detail, 2 if "missing" in exc.extra else 1) from None
    engine = db.make_engine(config.database)
    try:
        with db.session_factory(engine)() as session, session.begin():
            count = record_baseline(log, session)
            size = log.size(session)
    except CustodyError as exc:
        raise exit_error(exc.detail) from None
    finally:
        engine.dispose()
    if as_json:
        emit({"rows": count, "tree_size": size}, True)
    else:
        typer.echo(f"baseline recorded: {count} rows, the log now holds {size} events")
