"""``harbour authority``: the approval authority's key and the certificates it issues.

Signer nodes join a session only with an approval certificate
(node/approval.py) from an authority they trust. These commands are the
authority's side: ``init`` makes its key (``authority.key``, PKCS#8 PEM,
owner-only, encrypted under ``HARBOUR_AUTHORITY_PASSPHRASE`` or a prompted passphrase
unless ``--insecure-plaintext``;
``authority.pub``, the JSON nodes are configured with), ``certify`` signs one
certificate, and ``show`` prints one without verifying it. Exit 2 means bad
input (including a key that cannot be opened), exit 1 a failure to read or write
files.
"""

from __future__ import annotations

import os
import re
import sys
import time
import unicodedata
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from harbour.cli.document import emit_document
from harbour.cli.params import (
    FAILURE_EXIT,
    InputError,
    JsonOption,
    fail,
    new_passphrase,
    parse_message,
    reported_errors,
)
from harbour.cli.tree import choice
from harbour.node import approval, quorum, rpc
from harbour.node.identity import IdentityError, NodeDescriptor
from harbour.node.rotation import MAX_STATEMENT_LEN, Rotation, RotationError
from harbour.util.files import write_atomic

app = typer.Typer(help="Approval authority: its key, and the certificates signer nodes require.", no_args_is_help=True)

PASSPHRASE_ENV = "HARBOUR_AUTHORITY_PASSPHRASE"  # noqa: S105 (the name of the variable, not a secret)
_INT = re.compile(r"-?(0|[1-9][0-9]*)")


@contextmanager
def _errors() -> Iterator[None]:
    """Refused input exits 2, file-system failures 1: one line each, no traceback."""
    with reported_errors():
        try:
            yield
        except (approval.ApprovalError, approval.AuthorityKeyError) as exc:
            raise InputError(str(exc)) from None
        except OSError as exc:
            raise fail(f"file system error: {exc}", FAILURE_EXIT) from None


def read_descriptors(text: str) -> list[NodeDescriptor]:
    """``A.json,B.json,...``: node descriptor files, in order; InputError naming a bad one."""
    descriptors = []
    for name in [part.strip() for part in text.split(",")]:
        if not name:
            raise InputError("--nodes: an empty file name in the list")
        try:
            descriptors.append(NodeDescriptor.from_json(Path(name).read_bytes()))
        except OSError as exc:
            raise InputError(f"--nodes: cannot read {name}: {exc.strerror}") from None
        except IdentityError as exc:
            raise InputError(f"--nodes: {name}: {exc}") from None
    if len({d.node_id for d in descriptors}) != len(descriptors):
        raise InputError("--nodes lists one node twice")
    return descriptors


def _passphrase(env: Mapping[str, str]) -> bytes | None:
    value = env.get(PASSPHRASE_ENV)
    if value is None:
        return None
    if not value:
        raise InputError(f"{PASSPHRASE_ENV} is set but empty")
    # NFC so that a passphrase typed where accents compose differently still opens the key.
    return unicodedata.normalize("NFC", value).encode()


def _read(path: Path, what: str, limit: int = 1 << 20) -> bytes:
    """At most ``limit + 1`` bytes: enough for the reader to see the file is too large."""
    try:
        with path.open("rb") as f:
            return f.read(limit + 1)
    except OSError as exc:
        raise InputError(f"{what}: cannot read {path}: {exc.strerror}") from None


def new_key_passphrase(env: Mapping[str, str]) -> bytes:
    """The passphrase for a new authority key: ``HARBOUR_AUTHORITY_PASSPHRASE`` or a prompt (twice), above the floor."""
    value = env.get(PASSPHRASE_ENV)
    source = PASSPHRASE_ENV
    if value is None:
        if not sys.stdin.isatty():
            raise InputError(
                f"authority.key is encrypted: set {PASSPHRASE_ENV} or run in a terminal to be prompted "
                "(--insecure-plaintext writes it in the clear, for tests)"
            )
        value = typer.prompt("Authority passphrase", hide_input=True, confirmation_prompt=True, err=True)
        source = "the authority passphrase"
    if not value:
        raise InputError(f"{source} is empty")
    value = unicodedata.normalize("NFC", value)
    return new_passphrase(value, source).encode()


@app.command("init")
def init(
    out: Annotated[Path, typer.Option("--out", help="Directory for authority.key and authority.pub.")],
    plaintext: Annotated[
        bool,
        typer.Option("--insecure-plaintext", help="Write authority.key unencrypted (tests only)."),
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Create an approval authority key (never replacing one), encrypted under a passphrase."""
    with _errors():
        private, public = out / approval.PRIVATE_FILE, out / approval.PUBLIC_FILE
        if out.exists() and not out.is_dir():
            raise InputError(f"--out: {out} is a file, not a directory")
        if private.exists() or public.exists():
            raise InputError(f"--out: {out} already holds an authority key")
        secret = None if plaintext else new_key_passphrase(os.environ)
        if secret is None:
            typer.echo(
                "warning: --insecure-plaintext: authority.key is written unencrypted (tests only). "
                "Whoever reads it decides what the signer nodes sign.",
                err=True,
            )
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = approval.AuthorityKey.generate()
        key.save(out, passphrase=secret)
    result = {
        "authority_id": key.authority_id,
        "public_key": key.public_bytes.hex(),
        "private_key_file": str(private),
        "public_key_file": str(public),
        "encrypted": secret is not None,
    }
    emit_document(result, as_json)


def _load_key(directory: Path) -> approval.AuthorityKey:
    private = directory / approval.PRIVATE_FILE
    if not directory.is_dir():
        raise InputError(f"--dir: {directory} is not a directory")
    if not private.is_file():
        raise InputError(f"--dir: {private} not found: make one with 'harbour authority init'")
    secret = _passphrase(os.environ)
    if approval.is_encrypted_pem(_read(private, "--dir")):
        if secret is None:
            if not sys.stdin.isatty():
                raise InputError(f"authority.key is encrypted: set {PASSPHRASE_ENV} or run in a terminal")
            secret = unicodedata.normalize(
                "NFC", typer.prompt("Authority passphrase", hide_input=True, err=True)
            ).encode()
    else:
        secret = None
        typer.echo(
            f"warning: {private} is not encrypted; encrypt it with 'openssl pkcs8 -topk8 -v2 aes-256-cbc "
            f"-iter 600000 -in {private} -out {private}.enc' and move {private}.enc over it",
            err=True,
        )
    return approval.AuthorityKey.load(directory, passphrase=secret)


def _parse_params(items: list[str]) -> dict[str, str | int]:
    """``name=value``; a decimal value is an integer, since nodes compare types too."""
    params: dict[str, str | int] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep:
            raise InputError(f"--param must be name=value, got {item!r}")
        if name in params:
            raise InputError(f"--param {name} is given twice")
        params[name] = int(value) if _INT.fullmatch(value) else value
    return params


def parse_parties(text: str, option: str) -> list[int]:
    """``1,3`` -> [1, 3]: party numbers, each once."""
    try:
        parties = [int(part) for part in text.split(",")]
    except ValueError:
        raise InputError(f"{option} is a comma-separated list of party numbers, got {text!r:.80}") from None
    if not parties or len(set(parties)) != len(parties) or not all(1 <= p <= 255 for p in parties):
        raise InputError(f"{option}: party numbers are 1..255, each given once")
    return sorted(parties)


@app.command("certify")
def certify(
    directory: Annotated[Path, typer.Option("--dir", help="The authority's directory (authority.key).")],
    expires_in: Annotated[
        int, typer.Option("--expires-in", help=f"Seconds the certificate is valid, 1..{approval.MAX_LIFETIME}.")
    ],
    out: Annotated[Path, typer.Option("--out", help="Certificate file to write (must not exist).")],
    key_id: Annotated[str, typer.Option("--key-id", help="The key approved (for keygen: its new id, or empty).")] = "",
    messages: Annotated[
        list[str] | None,
        typer.Option("--message", "-m", help="A 32-byte digest to approve, in hex (sign; repeatable)."),
    ] = None,
    any_messages: Annotated[
        list[str] | None,
        typer.Option(
            "--any-message",
            help="A message of any length in hex (FROST, e.g. Ed25519), approved by its digest (sign; repeatable).",
        ),
    ] = None,
    path: Annotated[str, typer.Option("--path", help="BIP-32 path signed under (sign only), e.g. m/0/7.")] = "m",
    kind: Annotated[
        str, typer.Option("--kind", parser=choice(approval.KINDS, "certificate kind"), help="What it approves.")
    ] = "sign",
    param_items: Annotated[
        list[str] | None,
        typer.Option("--param", help="name=value for keygen/refresh/reshare, e.g. threshold=2 (repeatable)."),
    ] = None,
    nodes: Annotated[
        str | None,
        typer.Option(
            "--nodes", help="Committee descriptor files A.json,B.json,... (keygen/reshare: the roster param)."
        ),
    ] = None,
    dealers: Annotated[
        str | None,
        typer.Option(
            "--dealers", help="Descriptor files of the current members that deal (reshare: the dealers param)."
        ),
    ] = None,
    signers: Annotated[
        str | None,
        typer.Option("--signers", help="The parties that sign, e.g. 1,3 (sign: required; nodes take no others)."),
    ] = None,
    rotation_file: Annotated[
        Path | None,
        typer.Option("--rotation", help="A node's rotation.json (rotate: the old and new node ids)."),
    ] = None,
    evidence_file: Annotated[
        Path | None,
        typer.Option("--evidence", help="Approval evidence (CBOR) for the one transaction digest approved (sign)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Sign one approval certificate for one session."""
    with _errors():
        if kind not in approval.KINDS:
            raise InputError(f"--kind must be one of {', '.join(approval.KINDS)}, got {kind!r}")
        if not 0 < expires_in <= approval.MAX_LIFETIME:
            raise InputError(f"--expires-in must be 1..{approval.MAX_LIFETIME} seconds, got {expires_in}")
        if kind not in ("keygen", *approval.KEYLESS_KINDS) and not key_id:
            raise InputError(f"--key-id is required for a {kind} certificate")
        if kind in approval.KEYLESS_KINDS and key_id:
            raise InputError(f"a {kind} certificate is not about a key: no --key-id")
        digests = [parse_message(m) for m in messages or []]
        for text, digest in zip(messages or [], digests, strict=True):
            if len(digest) != approval.DIGEST_LEN:
                raise InputError(
                    f"--message must be a {approval.DIGEST_LEN}-byte digest (64 hex digits), "
                    f"got {len(digest)} bytes in {text!r}"
                )
        for text in any_messages or []:
            message = parse_message(text)
            if not message:
                raise InputError("--any-message: an empty message")
            digests.append(approval.approved_digest(message))
        params = _parse_params(param_items or [])
        if nodes is not None:
            if kind not in ("keygen", "reshare"):
                raise InputError("--nodes is for keygen and reshare certificates")
            if "roster" in params:
                raise InputError("give the committee either as --nodes or as --param roster=..., not both")
            params["roster"] = rpc.roster_hash([d.node_id for d in read_descriptors(nodes)])
        if dealers is not None:
            if kind != "reshare":
                raise InputError("--dealers is for reshare certificates")
            if "dealers" in params:
                raise InputError("give the dealers either as --dealers or as --param dealers=..., not both")
            params["dealers"] = rpc.roster_hash([d.node_id for d in read_descriptors(dealers)])
        if rotation_file is not None:
            if kind != "rotate":
                raise InputError("--rotation is for rotate certificates")
            try:
                params.update(Rotation.decode(_read(rotation_file, "--rotation", MAX_STATEMENT_LEN)).params)
            except RotationError as exc:
                raise InputError(f"--rotation {rotation_file}: {exc}") from None
        elif kind == "rotate":
            raise InputError("--rotation: a rotate certificate approves the statement harbour node rotate-keys wrote")
        parties = [] if signers is None else parse_parties(signers, "--signers")
        if kind == "sign":
            if not digests:
                raise InputError("--message or --any-message: a sign certificate approves at least one message")
            if params:
                raise InputError("--param is for keygen, refresh and reshare certificates")
            if not parties:
                raise InputError("--signers: a sign certificate names the parties that sign, e.g. --signers 1,2")
        else:
            if digests:
                raise InputError(f"--message is for sign certificates, not {kind}")
            if path != "m":
                raise InputError(f"--path is for sign certificates; a {kind} certificate is for 'm'")
            if parties:
                raise InputError(f"--signers is for sign certificates; in a {kind} every member takes part")
        evidence = None
        if evidence_file is not None:
            evidence = _read(evidence_file, "--evidence", approval.MAX_EVIDENCE_LEN)
            try:
                transaction = quorum.Evidence.decode(evidence).transaction
            except quorum.EvidenceError as exc:
                raise InputError(f"--evidence {evidence_file}: {exc}") from None
            if kind != "sign" or digests != [transaction.signing_hash()]:
                raise InputError(
                    "--evidence goes with a sign certificate of exactly its transaction's digest, "
                    f"--message {transaction.signing_hash().hex()}"
                )
        if out.exists():
            raise InputError(f"--out: {out} exists; a certificate is never overwritten")
        authority = _load_key(directory)
        data = approval.issue(
            authority,
            kind=kind,
            key_id=key_id,
            path=path,
            digests=digests,
            params=params,
            now=int(time.time()),
            expires_in=expires_in,
            evidence=evidence,
            signers=parties,
        )
        cert, _ = approval.parse(data)
        write_atomic(out, data, mode=0o644, overwrite=False)
    emit_document({**cert.to_json(), "certificate": str(out), "sha256": approval.certificate_hash(data)}, as_json)


@app.command("show")
def show(
    cert_file: Annotated[Path, typer.Option("--cert", help="Certificate file to print.")],
    as_json: JsonOption = False,
) -> None:
    """Print a certificate's fields. Parses strictly but does NOT verify the signature."""
    with _errors():
        data = _read(cert_file, "--cert", approval.MAX_CERTIFICATE_LEN)
        cert, sig = approval.parse(data)
    emit_document({**cert.to_json(), "signature": sig.hex(), "sha256": approval.certificate_hash(data)}, as_json)
