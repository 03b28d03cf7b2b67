"""Key directories: one encrypted share file per party and ``public.json``, as ``harbour key`` keeps them.

A key directory holds one encrypted file per party, ``party-<i>.share``
(:mod:`harbour.node.keyfile`: scrypt and AES-256-GCM, versioned, written
atomically), and ``public.json``: everything public about the key, which every
share read from the directory is checked against. The file names and JSON fields
are a contract other tools read (docs/keyfiles.md).

Every file is replaced atomically. Rewriting several shares (a refresh, a repair
of an ECDSA key) first writes each new share beside the old one as
``.party-<i>.share.pending`` and only then renames them; a directory left with
pending files by an interruption is refused by :func:`load_public`, rather than
mixing shares of two generations.

This module reads and writes the files; the commands that run the ceremonies are
``harbour.cli.key``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from harbour.chains.ethereum import address_from_public_key
from harbour.crypto.group import GroupError, Point
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc import hd, taproot
from harbour.mpc.ciphersuite import suite_by_name
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.ecdsa_setup import mark_compromised
from harbour.mpc.keyshare import GROUPS, SCHEME_CURVES, KeyShare, KeyShareError, PublicKeyPackage, group_by_name
from harbour.node import keyfile
from harbour.util import files

PUBLIC: Final = "public.json"
COMPROMISED: Final = "setup-compromised.json"
"""Where older versions recorded a failed KOS check. Now the marks live inside the
share files (:func:`~harbour.mpc.ecdsa_setup.mark_compromised`); a file left by an
older version is moved into them by the next ``sign``, and removed by a refresh."""
PUBLIC_FORMAT: Final = "harbour-public-key"
PUBLIC_VERSION: Final = 1
MAX_PUBLIC_LEN: Final = 1 << 20


class KeyDirError(ValueError):
    """A key directory, or a file in it, that cannot be used; the message names the file and says why."""


def share_path(directory: Path, party: int) -> Path:
    return directory / f"party-{party}.share"


def pending_path(path: Path) -> Path:
    """Where a new version of ``path`` is staged until every file of the update is written."""
    return path.with_name(f".{path.name}.pending")


# -- public.json ---------------------------------------------------------------------


def _secp256k1(point: Point) -> Secp256k1Point:
    assert isinstance(point, Secp256k1Point)
    return point


def key_fields(scheme: str, group_public_key: Point) -> dict[str, bytes | str]:
    """``public_key`` as the scheme's verifiers take it, and what else names the key.

    A Taproot output commits to the tweaked key ``Q`` (BIP-341, key path only), so
    that is the key signatures verify under; the untweaked even-y key ``P`` is
    what a wallet needs to rebuild the output or add a script tree later. An
    ECDSA key is also an Ethereum account, named by its EIP-55 ``address``.
    """
    if scheme == ECDSA_SCHEME:
        point = _secp256k1(group_public_key)
        return {"public_key": point.encode(), "address": address_from_public_key(point)}
    suite = suite_by_name(scheme)
    if suite.bip340:
        return {
            "public_key": _secp256k1(taproot.output_key(group_public_key, None)).x_bytes,
            "internal_key": _secp256k1(taproot.even_y(group_public_key)).x_bytes,
        }
    return {"public_key": group_public_key.encode()}


def _public_fields(public: PublicKeyPackage, code: bytes | None) -> dict[str, Any]:
    """The fields of public.json that follow from the key and chain code (checked on load)."""
    out: dict[str, Any] = {}
    for name, value in key_fields(public.scheme, public.group_public_key).items():
        out[name] = value.hex() if isinstance(value, bytes) else value
    out["xpub"] = hd.xpub(public.group_public_key, code) if code is not None and public.curve == "secp256k1" else None
    return out


def public_document(share: KeyShare) -> dict[str, Any]:
    """What ``public.json`` holds: the key as verifiers and wallets name it, and its sharing."""
    public = share.public
    doc: dict[str, Any] = {
        "format": PUBLIC_FORMAT,
        "version": PUBLIC_VERSION,
        "scheme": share.scheme,
        "curve": share.curve,
        "threshold": share.threshold,
        "parties": list(share.parties),
    }
    for name, value in key_fields(share.scheme, share.group_public_key).items():
        doc[name] = value.hex() if isinstance(value, bytes) else value
    doc["group_public_key"] = share.group_public_key.encode().hex()
    code = share.extensions.get(hd.CHAIN_CODE)
    doc["chain_code"] = code.hex() if code is not None else None
    doc["xpub"] = hd.xpub(share.group_public_key, code) if code is not None and share.curve == "secp256k1" else None
    doc["verification_shares"] = {str(i): share.verification_shares[i].encode().hex() for i in share.parties}
    doc["key_fingerprint"] = keyfile.public_fingerprint(public)
    return doc


def parse_public(data: bytes, where: str) -> tuple[dict[str, Any], PublicKeyPackage]:
    """Parse and check ``public.json``: well-formed, self-consistent, fingerprint matching."""
    if len(data) > MAX_PUBLIC_LEN:
        raise KeyDirError(f"{where} is far larger than a public-key file")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise KeyDirError(f"{where} is not valid JSON (truncated or corrupted?)") from None
    if not isinstance(doc, dict) or doc.get("format") != PUBLIC_FORMAT:
        raise KeyDirError(f"{where} is not a Harbour public-key file")
    if doc.get("version") != PUBLIC_VERSION:
        raise KeyDirError(f"{where} has unsupported version {doc.get('version')!r}")
    try:
        scheme, curve = doc["scheme"], doc["curve"]
        if SCHEME_CURVES.get(scheme) != curve or curve not in GROUPS:
            raise KeyDirError(f"{where}: unknown scheme or curve {scheme!r}/{curve!r}")
        g = group_by_name(curve)
        parties = tuple(int(i) for i in doc["parties"])
        shares = doc["verification_shares"]
        if not isinstance(shares, dict) or set(shares) != {str(i) for i in parties}:
            raise KeyDirError(f"{where}: need exactly one verification share per party")
        public = PublicKeyPackage(
            scheme=scheme,
            curve=curve,
            threshold=int(doc["threshold"]),
            parties=parties,
            group_public_key=g.decode_point(bytes.fromhex(doc["group_public_key"])),
            verification_shares={int(i): g.decode_point(bytes.fromhex(v)) for i, v in shares.items()},
        )
        public.check_consistent()
    except KeyDirError:
        raise
    except (KeyError, TypeError, ValueError, GroupError, KeyShareError) as exc:
        raise KeyDirError(f"{where} is malformed: {exc}") from None
    if doc.get("key_fingerprint") != keyfile.public_fingerprint(public):
        raise KeyDirError(f"{where}: key_fingerprint does not match the key it describes (edited?)")
    code = chain_code_of(doc)
    expected = _public_fields(public, code)
    edited = [name for name, value in expected.items() if doc.get(name) != value]
    if edited:
        verb = "does" if len(edited) == 1 else "do"
        raise KeyDirError(f"{where}: {', '.join(edited)} {verb} not match the key it describes (edited?)")
    return doc, public


def load_public(directory: Path) -> tuple[dict[str, Any], PublicKeyPackage]:
    """``public.json`` of a key directory, refused while files of an interrupted update are there."""
    path = directory / PUBLIC
    if not path.is_file():
        raise KeyDirError(f"{path} not found: --dir must be a key directory made by 'harbour key generate'")
    pending = sorted(p.name for p in directory.glob(".*.pending"))
    if pending:
        raise KeyDirError(
            f"{directory} holds files of an interrupted update ({', '.join(pending)}): "
            "restore the directory from a copy before using it"
        )
    return parse_public(path.read_bytes(), str(path))


def chain_code_of(doc: Mapping[str, Any]) -> bytes | None:
    code = doc.get("chain_code")
    if code is None:
        return None
    try:
        raw = bytes.fromhex(code)
    except (TypeError, ValueError):
        raise KeyDirError("public.json: chain_code is not hex") from None
    if len(raw) != 32:
        raise KeyDirError("public.json: chain_code is not 32 bytes")
    return raw


# -- shares on disk ------------------------------------------------------------------


def load_shares(
    directory: Path, ids: Sequence[int], public: PublicKeyPackage, secret: str, doc: Mapping[str, Any]
) -> dict[int, KeyShare]:
    """Decrypt the listed parties' files; each must be a share of exactly this key (and chain code)."""
    chain_code = chain_code_of(doc)
    out = {}
    for i in ids:
        path = share_path(directory, i)
        if not path.is_file():
            raise KeyDirError(f"no share file for party {i}: {path} is missing")
        try:
            share = keyfile.load_share(path, secret)
        except keyfile.KeyFileError as exc:
            raise KeyDirError(f"{path}: {exc}") from None
        if share.identifier != i:
            raise KeyDirError(f"{path} holds the share of party {share.identifier}, not {i}")
        if share.public != public:
            raise KeyDirError(f"{path} is a share of another key (or of an earlier refresh), not of {PUBLIC}")
        if share.extensions.get(hd.CHAIN_CODE) != chain_code:
            raise KeyDirError(f"{path} has another chain code than {PUBLIC}")
        out[i] = share
    return out


def check_new_directory(directory: Path) -> None:
    """Refuse a directory that already holds a key or backups: a new key never mixes with an old one."""
    if directory.exists() and not directory.is_dir():
        raise KeyDirError(f"{directory} exists and is not a directory")
    if directory.exists() and (
        (directory / PUBLIC).exists() or any(directory.glob("party-*.share")) or any(directory.glob("party-*.backup"))
    ):
        raise KeyDirError(f"{directory} already holds a key or backups: choose a new directory")


def write_new_key(directory: Path, shares: Mapping[int, KeyShare], secret: str) -> dict[str, Any]:
    """Encrypt every share first, then create the directory and write each file atomically."""
    check_new_directory(directory)
    blobs = {i: keyfile.encrypt_share(share, secret) for i, share in shares.items()}
    doc = public_document(next(iter(shares.values())))
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    for i, blob in sorted(blobs.items()):
        files.write_atomic(share_path(directory, i), blob, overwrite=False)
    files.write_atomic(directory / PUBLIC, _json_bytes(doc), mode=0o644, overwrite=False)
    return doc


def replace_shares(directory: Path, shares: Mapping[int, KeyShare], secret: str) -> dict[str, Any]:
    """Rewrite several shares and public.json of one key: staged, then renamed."""
    blobs = {i: keyfile.encrypt_share(share, secret) for i, share in shares.items()}
    doc = public_document(next(iter(shares.values())))
    staged: list[tuple[Path, Path]] = []
    try:
        for i, blob in sorted(blobs.items()):
            final = share_path(directory, i)
            files.write_atomic(pending_path(final), blob)
            staged.append((pending_path(final), final))
        pending_public = pending_path(directory / PUBLIC)
        files.write_atomic(pending_public, _json_bytes(doc), mode=0o644)
        staged.append((pending_public, directory / PUBLIC))
    except BaseException:
        for pending, _ in staged:
            pending.unlink(missing_ok=True)
        raise
    for pending, final in staged:
        os.replace(pending, final)
    files.fsync_directory(directory)
    return doc


def _json_bytes(doc: Mapping[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


def set_aside(path: Path) -> None:
    """Rename an unreadable share file out of the way without overwriting an earlier one."""
    n = 0
    while True:
        target = path.with_name(f"{path.name}.unreadable" + (f".{n}" if n else ""))
        if not target.exists():
            os.replace(path, target)
            return
        n += 1


# -- marks of a failed KOS check left by older versions ------------------------------


def legacy_marks(directory: Path, public: PublicKeyPackage) -> dict[int, set[int]]:
    """The pairs an older version's setup-compromised.json blocks, as marks per party.

    That file named the peers that failed the check and the session's signers, not
    which signer saw the failure, so every named peer is marked against every other
    signer, on both sides. A file that cannot be read blocks everything.
    """
    path = directory / COMPROMISED
    if not path.exists():
        return {}
    refusal = KeyDirError(
        f"{path} records a failed KOS check but cannot be read: run 'harbour key refresh' before signing again"
    )
    try:
        record = json.loads(path.read_bytes())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError):
        raise refusal from None
    if not isinstance(record, dict):
        raise refusal
    peers, signers = record.get("peers"), record.get("signers")
    if not isinstance(peers, list) or not isinstance(signers, list) or not peers:
        raise refusal
    if not all(type(i) is int and i in public.parties for i in (*peers, *signers)):
        raise refusal
    marks: dict[int, set[int]] = {}
    for p in peers:
        for s in signers:
            if s != p:
                marks.setdefault(s, set()).add(p)
                marks.setdefault(p, set()).add(s)
    if not marks:
        raise refusal
    return marks


def move_legacy_marks(
    directory: Path, public: PublicKeyPackage, secret: str, doc: Mapping[str, Any], marks: Mapping[int, set[int]]
) -> None:
    """Record an older version's setup-compromised.json inside the shares, then remove it."""
    shares = load_shares(directory, sorted(marks), public, secret, doc)
    replace_shares(directory, {i: mark_compromised(shares[i], peers) for i, peers in marks.items()}, secret)
    (directory / COMPROMISED).unlink()
    files.fsync_directory(directory)
