"""``harbour approver-key``: an approver's Ed25519 signing key, and reading it to sign an approval.

The key is written owner-only and, by default, encrypted under a passphrase
(``HARBOUR_APPROVER_PASSPHRASE`` or a prompt) that must clear the strength floor
(:mod:`harbour.util.passphrase`); it never leaves this machine. A key file in the
clear (``--insecure-plaintext``, or one made before encryption was the default)
still loads, with a warning saying how to encrypt it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Final

import typer
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.cli.apiclient import api_errors, emit
from harbour.cli.params import InputError, JsonOption, ask_passphrase

PASSPHRASE_ENV: Final = "HARBOUR_APPROVER_PASSPHRASE"  # noqa: S105 (the variable's name)
MAX_KEY_FILE: Final = 64 * 1024

approver_key_app = typer.Typer(help="Approvers' Ed25519 signing keys.", no_args_is_help=True)


@approver_key_app.callback()
def _approver_key() -> None:
    """Approvers' Ed25519 signing keys (a group, so that `approver-key new` keeps its name)."""


def _passphrase(*, new: bool) -> bytes:
    """``HARBOUR_APPROVER_PASSPHRASE`` or a prompt; a ``new`` one is asked twice and must clear the floor."""
    doing = "to encrypt the new key" if new else "the key file is encrypted"
    return ask_passphrase(PASSPHRASE_ENV, "Approver key passphrase", new=new, missing=doing).encode()


def load_approver_key(path: Path) -> Ed25519PrivateKey:
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise InputError(f"--key: {path} is far larger than a key file")
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--key: cannot read {path}: {exc.strerror}") from None
    password = _passphrase(new=False) if b"ENCRYPTED" in data else None
    if password is None:
        typer.echo(f"warning: {path} holds your approver key unencrypted; {encrypt_hint(path)}", err=True)
    try:
        key = serialization.load_pem_private_key(data, password=password)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise InputError(f"--key: {path} is not a PEM private key (or the passphrase is wrong)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"--key: {path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def encrypt_hint(path: Path) -> str:
    """How to encrypt an existing PEM key file in place of a plaintext one (any OpenSSL will do)."""
    return (
        f"encrypt it with 'openssl pkcs8 -topk8 -v2 aes-256-cbc -iter 600000 -in {path} -out {path}.enc' "
        f"and use {path}.enc (then delete {path})"
    )


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


# -- approver keys ----------------------------------------------------------------------------------------


@approver_key_app.command("new")
def approver_key_new(
    out: Annotated[Path, typer.Option("--out", help="Private key file to create (PEM, owner-only); must not exist.")],
    encrypt: Annotated[
        bool,
        typer.Option(
            "--encrypt/--insecure-plaintext",
            help=f"Encrypt the file under a passphrase (${PASSPHRASE_ENV} or a prompt; the default), "
            "or write the key in the clear (tests only).",
        ),
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Create an approver's Ed25519 key pair; print the public key to register with `user create --approval-key`."""
    from harbour.util.files import write_atomic

    with api_errors():
        if out.exists():
            raise InputError(f"--out: {out} exists; choose a new file (a key is never overwritten)")
        if not out.parent.is_dir():
            raise InputError(f"--out: directory {out.parent} does not exist")
        algorithm: serialization.KeySerializationEncryption = serialization.NoEncryption()
        if encrypt:
            algorithm = serialization.BestAvailableEncryption(_passphrase(new=True))
        else:
            typer.echo(f"warning: --insecure-plaintext: {out} holds the key unencrypted (tests only)", err=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, algorithm)
        try:
            write_atomic(out, pem, mode=0o600, overwrite=False)
        except FileExistsError:
            raise InputError(f"--out: {out} exists; choose a new file") from None
        except OSError as exc:
            raise InputError(f"--out: cannot write {out}: {exc.strerror}") from None
    doc = {"public_key": public_hex(key), "private_key_file": str(out), "encrypted": encrypt}
    if as_json:
        emit(doc, True)
    else:
        typer.echo(doc["public_key"])
        typer.echo(f"private key written to {out} (keep it offline; it signs your approvals)", err=True)
