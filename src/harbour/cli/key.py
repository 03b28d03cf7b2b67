"""``harbour key``: key ceremonies on passphrase-encrypted key-share files.

The commands of a key directory: one encrypted ``party-<i>.share`` per party and
``public.json``, read and written by :mod:`harbour.node.keydir` (the format, and
how an interrupted update is staged and detected). The passphrase comes from
``HARBOUR_PASSPHRASE`` or a prompt.

Every command checks all of its input before it writes anything; a command that
rewrites several shares (refresh, repair of an ECDSA key) stages them first, so
an interruption leaves a directory the next command refuses, rather than shares
of two generations.

Why one module near 500 lines: it is commands only (eleven of them, each a Typer
signature, its checks and its messages); the file format is in
:mod:`harbour.node.keydir` and the protocols in :mod:`harbour.mpc.runner`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer

from harbour.cli import output, session
from harbour.cli.params import (
    FAILURE_EXIT,
    InputError,
    JsonOption,
    RunFailure,
    SchemeOption,
    ask_passphrase,
    check_message,
    check_scheme,
    check_sizes,
    fail,
    is_ecdsa,
    parse_message,
    read_option_file,
    reported_errors,
)
from harbour.cli.tree import choice
from harbour.crypto.ed25519 import ED25519
from harbour.mpc import hd, runner
from harbour.mpc.ecdsa_setup import compromised_peers
from harbour.mpc.ecdsa_sign import SetupCompromised
from harbour.mpc.keyshare import GROUPS, SCHEME_CURVES, KeyShare, PublicKeyPackage
from harbour.node import backup, keyfile
from harbour.node.keydir import (
    COMPROMISED,
    KeyDirError,
    chain_code_of,
    check_new_directory,
    legacy_marks,
    load_public,
    load_shares,
    move_legacy_marks,
    parse_public,
    replace_shares,
    set_aside,
    share_path,
    write_new_key,
)
from harbour.util import files

app = typer.Typer(help="Key ceremonies on encrypted key-share files (one per party).", no_args_is_help=True)

PASSPHRASE_ENV = "HARBOUR_PASSPHRASE"  # noqa: S105 (the name of the variable, not a secret)
RECOVERY_PASSPHRASE_ENV = "HARBOUR_RECOVERY_PASSPHRASE"  # noqa: S105 (likewise)

DirOption = Annotated[Path, typer.Option("--dir", help="Key directory (party-<i>.share files and public.json).")]
OutOption = Annotated[Path, typer.Option("--out", help="New directory to create; must not hold a key already.")]
PathOption = Annotated[str | None, typer.Option("--path", help="BIP-32 path of a non-hardened child key, e.g. m/0/7.")]


# -- passphrase ----------------------------------------------------------------------


def passphrase(*, new: bool = False) -> str:
    """``HARBOUR_PASSPHRASE``, or a prompt; a ``new`` one (for new files) is asked twice and must clear the floor."""
    return ask_passphrase(PASSPHRASE_ENV, "Key-share passphrase", new=new)


def _ids(text: str, what: str) -> list[int]:
    try:
        ids = [int(item) for item in text.split(",") if item.strip()]
    except ValueError:
        raise InputError(f"{what} must be comma-separated party numbers (e.g. 1,3), got {text!r}") from None
    if not ids or len(set(ids)) != len(ids):
        raise InputError(f"{what} must list distinct party numbers, got {text!r}")
    return sorted(ids)


def _members(ids: Sequence[int], public: PublicKeyPackage, what: str) -> None:
    outside = [i for i in ids if i not in public.parties]
    if outside:
        raise InputError(f"{what}: {outside} are not parties of this key ({list(public.parties)})")


def _emit(doc: Mapping[str, Any], as_json: bool, summary: str) -> None:
    if as_json:
        output.emit(doc, True)
    else:
        typer.echo(summary)


@contextmanager
def _errors() -> Iterator[None]:
    """Usage errors exit 2 and failed runs 1 (params.reported_errors), file-level failures too."""
    with reported_errors():
        try:
            yield
        except (KeyDirError, keyfile.KeyFileError, backup.BackupError, hd.DerivationError) as exc:
            raise InputError(str(exc)) from None
        except OSError as exc:
            raise fail(f"file system error: {exc}", FAILURE_EXIT) from None


# -- commands ------------------------------------------------------------------------


@app.command("generate")
def generate(
    scheme: SchemeOption,
    threshold: Annotated[int, typer.Option("--threshold", "-t", help="Parties needed to sign.")],
    parties: Annotated[int, typer.Option("--parties", "-n", help="Parties holding a share.")],
    out: OutOption,
    as_json: JsonOption = False,
) -> None:
    """Run the distributed key generation in-process and write one encrypted share file per party."""
    with _errors():
        check_scheme(scheme)
        check_sizes(threshold, parties)
        check_new_directory(out)
        secret = passphrase(new=True)
        shares = runner.keygen(scheme, threshold, parties)
        doc = write_new_key(out, shares, secret)
    _emit(doc, as_json, f"{scheme} {threshold}-of-{parties} key written to {out}; public key {doc['public_key']}")


@app.command("sign")
def sign(
    directory: DirOption,
    parties: Annotated[str, typer.Option("--parties", help="Comma-separated signing parties.")],
    message: Annotated[str, typer.Option("--message", "-m", help="Hex message; ECDSA: a 32-byte digest.")],
    path: PathOption = None,
    as_json: JsonOption = False,
) -> None:
    """Sign with the listed parties' shares (under the child key at --path, if given)."""
    with _errors():
        doc, public = load_public(directory)
        signers = _ids(parties, "--parties")
        _members(signers, public, "--parties")
        if is_ecdsa(public.scheme) and len(signers) != public.threshold:
            raise InputError(f"--parties: {public.scheme} signs with exactly {public.threshold} parties")
        if len(signers) < public.threshold:
            raise InputError(f"--parties: this key needs {public.threshold} signers, got {len(signers)}")
        msg = check_message(public.scheme, parse_message(message))
        if path is not None:
            hd.parse_path(path)
            if chain_code_of(doc) is None:
                raise InputError("this key has no chain code, so it has no child keys")
        legacy = legacy_marks(directory, public) if is_ecdsa(public.scheme) else {}
        secret = passphrase()
        if legacy:
            move_legacy_marks(directory, public, secret, doc, legacy)
        loaded = load_shares(directory, signers, public, secret, doc)
        if is_ecdsa(public.scheme):
            _refuse_compromised(loaded, signers)
        shares = runner.derived_shares(loaded, path)
        try:
            signature = session.sign_verified(shares, signers, msg)
        except SetupCompromised as abort:
            # Recorded in the encrypted shares themselves: no file to delete lifts it.
            replace_shares(directory, runner.record_compromise(loaded, abort), secret)
            raise
        result = session.contract(shares, signers, msg, signature)
        if path is not None:
            result["path"] = path
    if as_json:
        output.emit(result, True)
    else:
        for name, value in result.items():
            typer.echo(f"{name}: {value}")


def _refuse_compromised(shares: Mapping[int, KeyShare], signers: Sequence[int]) -> None:
    """Refuse before any session runs if a signer's share marks another signer compromised."""
    pairs = sorted(
        {tuple(sorted((i, j))) for i, share in shares.items() for j in compromised_peers(share) if j in signers}
    )
    if pairs:
        named = ", ".join(f"{a} and {b}" for a, b in pairs)
        raise InputError(
            f"the pairwise setup of parties {named} failed a KOS check and may be leaking: "
            "run 'harbour key refresh' before they sign together again"
        )


@app.command("refresh")
def refresh(directory: DirOption, as_json: JsonOption = False) -> None:
    """Proactive refresh: every share is replaced, the public key stays (needs every party's file)."""
    with _errors():
        doc, public = load_public(directory)
        if public.threshold == 1:
            raise InputError("a 1-of-n key cannot be refreshed: every share is the whole key")
        secret = passphrase()
        shares = load_shares(directory, public.parties, public, secret, doc)
        new = runner.refresh(shares)
        if next(iter(new.values())).group_public_key != public.group_public_key:
            raise RunFailure("the refreshed key has a different public key; nothing was written")
        out = replace_shares(directory, new, secret)
        (directory / COMPROMISED).unlink(missing_ok=True)
    _emit(out, as_json, f"refreshed {len(new)} shares in {directory}; public key unchanged: {out['public_key']}")


@app.command("reshare")
def reshare(
    directory: DirOption,
    parties: Annotated[str, typer.Option("--parties", help="Current parties that deal (at least t).")],
    new_threshold: Annotated[int, typer.Option("--new-threshold", help="Threshold of the new key sharing.")],
    new_parties: Annotated[int, typer.Option("--new-parties", help="Size of the new committee (parties 1..N2).")],
    out: OutOption,
    as_json: JsonOption = False,
) -> None:
    """Move the key to a new committee and/or threshold, written to a new directory; same public key."""
    with _errors():
        doc, public = load_public(directory)
        dealers = _ids(parties, "--parties")
        _members(dealers, public, "--parties")
        if len(dealers) < public.threshold:
            raise InputError(f"--parties: resharing needs at least {public.threshold} current parties")
        check_sizes(new_threshold, new_parties)
        check_new_directory(out)
        secret = passphrase(new=True)
        shares = load_shares(directory, dealers, public, secret, doc)
        new = runner.reshare(shares, new_threshold, list(range(1, new_parties + 1)))
        if next(iter(new.values())).group_public_key != public.group_public_key:
            raise RunFailure("the reshared key has a different public key; nothing was written")
        result = write_new_key(out, new, secret)
    _emit(result, as_json, f"{new_threshold}-of-{new_parties} sharing of the same key written to {out}")


@app.command("derive")
def derive(directory: DirOption, path: Annotated[str, typer.Option("--path")], as_json: JsonOption = False) -> None:
    """The child public key at a non-hardened BIP-32 path (no share or passphrase needed)."""
    with _errors():
        doc, public = load_public(directory)
        code = chain_code_of(doc)
        if code is None:
            raise InputError("this key has no chain code, so it has no child keys")
        child = hd.derive(public.group, public.group_public_key, code, path)
        result: dict[str, Any] = {"scheme": public.scheme, "path": path}
        for name, value in session.key_fields(public.scheme, child.public_key).items():
            result[name] = value.hex() if isinstance(value, bytes) else value
        result["chain_code"] = child.chain_code.hex()
        if public.curve == "secp256k1":
            result["xpub"] = hd.xpub(public.group_public_key, code, child)
    _emit(result, as_json, "\n".join(f"{k}: {v}" for k, v in result.items()))


@app.command("repair")
def repair(
    directory: DirOption,
    helpers: Annotated[str, typer.Option("--helpers", help="Exactly t parties that help.")],
    lost: Annotated[int, typer.Option("--lost", help="The party whose share is lost.")],
    as_json: JsonOption = False,
) -> None:
    """Give a party that lost its share a new copy of it, from t helpers, without rebuilding the key."""
    with _errors():
        doc, public = load_public(directory)
        helper_ids = _ids(helpers, "--helpers")
        _members([*helper_ids, lost], public, "--helpers/--lost")
        if lost in helper_ids:
            raise InputError("--lost cannot also be a helper")
        if len(helper_ids) != public.threshold:
            raise InputError(f"--helpers: repair needs exactly {public.threshold} helpers")
        secret = passphrase()
        lost_path = share_path(directory, lost)
        if lost_path.exists():
            try:
                load_shares(directory, [lost], public, secret, doc)
            except KeyDirError:
                pass
            else:
                raise InputError(f"{lost_path} is a readable share of this key: party {lost} has not lost it")
        shares = load_shares(directory, helper_ids, public, secret, doc)
        repaired = runner.repair(shares, lost)
        if is_ecdsa(public.scheme):
            # Threshold ECDSA also needs the pairwise setup of the repaired party with
            # every other party: re-run it over the whole committee.
            others = [i for i in public.parties if i not in helper_ids and i != lost]
            everyone = {**shares, **load_shares(directory, others, public, secret, doc), lost: repaired}
            new = runner.ecdsa_setup(everyone)
            if lost_path.exists():
                set_aside(lost_path)
            result = replace_shares(directory, new, secret)
            (directory / COMPROMISED).unlink(missing_ok=True)
        else:
            blob = keyfile.encrypt_share(repaired, secret)
            if lost_path.exists():
                # Unreadable (checked above): kept aside, not destroyed, for forensics.
                set_aside(lost_path)
            files.write_atomic(lost_path, blob)
            result = doc
    _emit(result, as_json, f"share of party {lost} repaired from parties {helper_ids}: {lost_path}")


@app.command("import")
def import_key(
    scheme: SchemeOption,
    private_key_file: Annotated[
        Path,
        typer.Option(
            "--private-key-file",
            help="Hex private key: a secp256k1 scalar, or for frost-ed25519 an RFC 8032 32-byte seed.",
        ),
    ],
    threshold: Annotated[int, typer.Option("--threshold", "-t")],
    parties: Annotated[int, typer.Option("--parties", "-n")],
    out: OutOption,
    chain_code: Annotated[
        str | None, typer.Option("--chain-code", help="Hex BIP-32 chain code to keep (default: random).")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Split an existing private key into a t-of-n key (e.g. to move a wallet into custody)."""
    with _errors():
        check_scheme(scheme)
        check_sizes(threshold, parties)
        check_new_directory(out)
        key = _read_private_key(scheme, private_key_file)
        code = None
        if chain_code is not None:
            try:
                code = bytes.fromhex(chain_code)
            except ValueError:
                raise InputError("--chain-code must be hex") from None
            if len(code) != 32:
                raise InputError("--chain-code must be 32 bytes")
        secret = passphrase(new=True)
        shares = runner.import_key(scheme, key, threshold, parties, chain_code=code)
        doc = write_new_key(out, shares, secret)
    _emit(doc, as_json, f"{scheme} key split {threshold}-of-{parties} into {out}; public key {doc['public_key']}")


def _read_private_key(scheme: str, path: Path) -> int:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read --private-key-file: {exc}") from None
    if text[:2].lower() == "0x":
        text = text[2:]
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise InputError("--private-key-file must hold the key in hex") from None
    if len(raw) != 32:
        raise InputError(f"--private-key-file must hold 32 bytes, got {len(raw)}")
    if SCHEME_CURVES[scheme] == "ed25519":
        return ED25519.scalar_from_seed(raw)
    key = int.from_bytes(raw, "big")
    if not 0 < key < GROUPS["secp256k1"].order:
        raise InputError("--private-key-file: not a valid secp256k1 private key (zero or not below the order)")
    return key


@app.command("backup")
def backup_cmd(
    directory: DirOption,
    recovery_public_key: Annotated[Path, typer.Option("--recovery-public-key", help="PEM, X25519 or RSA-4096.")],
    out: OutOption,
    as_json: JsonOption = False,
) -> None:
    """Encrypt every share to a recovery public key, one backup file per party."""
    with _errors():
        doc, public = load_public(directory)
        pem = read_option_file(recovery_public_key, "--recovery-public-key")
        backup.load_recovery_public_key(pem)
        check_new_directory(out)
        shares = load_shares(directory, public.parties, public, passphrase(), doc)
        blobs = {i: backup.make_backup(share, pem) for i, share in shares.items()}
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        for i, blob in sorted(blobs.items()):
            files.write_atomic(out / backup.backup_filename(i), blob, mode=0o644, overwrite=False)
        report = backup.verify_backups(list(blobs.values()), public)
    _emit(_report(report), as_json, f"{len(blobs)} backups written to {out}")


@app.command("verify-backup")
def verify_backup(
    directory: Annotated[Path, typer.Option("--dir", help="Directory of party-<i>.backup files.")],
    public_file: Annotated[Path, typer.Option("--public", help="The key's public.json.")],
    as_json: JsonOption = False,
) -> None:
    """Check a set of backups for completeness against public.json, without decrypting anything."""
    with _errors():
        _, public = parse_public(read_option_file(public_file, "--public"), str(public_file))
        if not directory.is_dir():
            raise InputError(f"--dir: {directory} is not a directory of backups")
        report = backup.verify_backups(backup.read_backups(directory), public)
        result = _report(report)
    _emit(result, as_json, "\n".join(f"{k}: {v}" for k, v in result.items()))
    if not report.sufficient:
        raise fail(
            f"only {len(report.present)} of the {report.threshold} backups needed to recover the key "
            f"(present: {list(report.present)})",
            FAILURE_EXIT,
            as_json=False,  # under --json the report above is the document
        )


def _report(report: backup.BackupReport) -> dict[str, Any]:
    return {
        "scheme": report.scheme,
        "key_fingerprint": report.key_fingerprint,
        "threshold": report.threshold,
        "parties": list(report.parties),
        "present": list(report.present),
        "missing": list(report.missing),
        "complete": report.complete,
        "sufficient": report.sufficient,
        "recovery_type": report.recovery_type,
        "recovery_fingerprint": report.recovery_fingerprint,
    }


@app.command("recover")
def recover(
    backups: Annotated[Path, typer.Option("--backups", help="Directory of party-<i>.backup files.")],
    recovery_private_key: Annotated[Path, typer.Option("--recovery-private-key", help="PEM private key.")],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the private key here (64 hex digits, owner-only); must not exist."),
    ] = None,
    keystore: Annotated[
        Path | None,
        typer.Option("--keystore", help="Write an Ethereum keystore (V3) file here (secp256k1 keys); must not exist."),
    ] = None,
    public_file: Annotated[
        Path | None,
        typer.Option("--public", help="The key's public.json: refuse backups of any other key or sharing."),
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask to confirm (needed without a terminal).")] = False,
    as_json: JsonOption = False,
) -> None:
    """BREAK-GLASS: rebuild the whole private key from t backups into a file (--out or --keystore); never printed."""
    typer.echo(
        "WARNING: disaster recovery. This reassembles the WHOLE private key in this process and writes it to a file.\n"
        "Anyone who reads that file controls every asset of the key. Do this only offline, and move the assets\n"
        "to a new key afterwards.",
        err=True,
    )
    with _errors():
        if out is None and keystore is None:
            raise InputError(
                "give --out FILE (the key in hex) or --keystore FILE (an Ethereum keystore): the key is never printed"
            )
        for option, path in (("--out", out), ("--keystore", keystore)):
            if path is not None and path.exists():
                raise InputError(f"{option}: {path} exists; choose a new file")
            if path is not None and not path.parent.is_dir():
                raise InputError(f"{option}: directory {path.parent} does not exist")
        if out is not None and out == keystore:
            raise InputError("--out and --keystore name the same file")
        pem = read_option_file(recovery_private_key, "--recovery-private-key")
        if not backups.is_dir():
            raise InputError(f"--backups: {backups} is not a directory of backups")
        public = (
            None
            if public_file is None
            else parse_public(read_option_file(public_file, "--public"), str(public_file))[1]
        )
        _confirm_recovery(yes, [p for p in (out, keystore) if p is not None])
        keystore_secret = passphrase(new=True) if keystore is not None else None
        pem_passphrase = None
        if b"ENCRYPTED" in pem:
            pem_passphrase = ask_passphrase(RECOVERY_PASSPHRASE_ENV, "Recovery-key passphrase").encode()
        key = backup.recover_private_key(backup.read_backups(backups), pem, pem_passphrase, public=public)
        if keystore is not None and key.curve != "secp256k1":
            raise InputError(f"--keystore: Ethereum keystores hold secp256k1 keys only, not {key.scheme}")
        result: dict[str, Any] = {
            "scheme": key.scheme,
            "public_key": key.public_key.hex(),
            "address": key.ethereum_address,
            "chain_code": key.chain_code.hex() if key.chain_code is not None else None,
            "parties_used": list(key.parties_used),
        }
        if key.rejected:
            result["rejected"] = {str(i): why for i, why in key.rejected.items()}
        if out is not None:
            files.write_atomic(out, key.private_key.to_bytes(32, "big").hex().encode() + b"\n", overwrite=False)
            result["private_key_file"] = str(out)
        if keystore is not None and keystore_secret is not None:
            files.write_atomic(keystore, backup.keystore_json(key, keystore_secret).encode(), overwrite=False)
            result["keystore"] = str(keystore)
    _emit(result, as_json, "\n".join(f"{k}: {v}" for k, v in result.items()))


def _confirm_recovery(yes: bool, targets: Sequence[Path]) -> None:
    """Break-glass is never run by accident: a terminal's yes, or ``--yes`` from a script that means it."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError("recover reassembles the whole private key: confirm on a terminal, or give --yes")
    named = " and ".join(str(p) for p in targets)
    if not typer.confirm(f"Reassemble the whole private key and write it to {named}?", err=True):
        raise fail("not confirmed: nothing was recovered", FAILURE_EXIT)


@app.command("recovery-key")
def recovery_key(
    kind: Annotated[
        str,
        typer.Option(
            "--type", parser=choice(("x25519", "rsa"), "recovery key type"), help="rsa is RSA-4096, for keys in an HSM."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="New directory for recovery.pem and recovery.pub.pem.")],
    encrypt: Annotated[
        bool, typer.Option("--encrypt/--no-encrypt", help=f"Encrypt the private key with {RECOVERY_PASSPHRASE_ENV}.")
    ] = True,
    as_json: JsonOption = False,
) -> None:
    """Create a recovery key pair: backups are encrypted to its public half, kept offline."""
    with _errors():
        if kind not in ("x25519", "rsa"):
            raise InputError("--type must be x25519 or rsa")
        private, public = out / "recovery.pem", out / "recovery.pub.pem"
        if private.exists() or public.exists():
            raise InputError(f"{out} already holds a recovery key")
        secret = (
            ask_passphrase(RECOVERY_PASSPHRASE_ENV, "Recovery-key passphrase", new=True).encode() if encrypt else None
        )
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        fingerprint = backup.generate_recovery_key(
            "x25519" if kind == "x25519" else "rsa", private, public, passphrase=secret
        )
    result = {"type": kind, "private_key": str(private), "public_key": str(public), "fingerprint": fingerprint}
    _emit(result, as_json, "\n".join(f"{k}: {v}" for k, v in result.items()))
