"""Key-share files: a share comes back only with the right passphrase from an unmodified
file, every kind of damage is refused with a reason, and writes are atomic and private."""

from __future__ import annotations

import os
import stat
import struct
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from harbour.mpc.keyshare import KeyShare
from harbour.node import keyfile
from harbour.node.keyfile import (
    DEFAULT_N,
    MAGIC,
    KeyFileError,
    decrypt_share,
    encrypt_share,
    load_share,
    public_fingerprint,
    read_header,
    save_share,
)
from harbour.util.files import write_atomic
from helpers import cached_keygen

FAST_N = 2**12
PASS = "correct horse battery staple"
SCHEMES = ["frost-secp256k1", "frost-ed25519", "ecdsa-secp256k1"]


def share_of(scheme: str = "frost-secp256k1", me: int = 1) -> KeyShare:
    return cached_keygen(scheme, 2, 3)[me]


@pytest.fixture(scope="module")
def sealed() -> bytes:
    return encrypt_share(share_of(), PASS, kdf_n=FAST_N)


def split(data: bytes) -> tuple[int, dict[str, Any], bytes]:
    """(header length, header map, ciphertext) of a key-share file."""
    (length,) = struct.unpack(">I", data[4:8])
    return length, cbor2.loads(data[8 : 8 + length]), data[8 + length :]


def rebuild(header: dict[str, Any], ciphertext: bytes) -> bytes:
    encoded = cbor2.dumps(header, canonical=True)
    return MAGIC + struct.pack(">I", len(encoded)) + encoded + ciphertext


def refused(data: bytes, reason: str | set[str], match: str | None = None, passphrase: str = PASS) -> KeyFileError:
    with pytest.raises(KeyFileError, match=match) as info:
        decrypt_share(data, passphrase)
    reasons = {reason} if isinstance(reason, str) else reason
    assert info.value.reason in reasons, (info.value.reason, str(info.value))
    return info.value


# -- round trips --------------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_round_trip(scheme: str) -> None:
    share = share_of(scheme, 2)
    data = encrypt_share(share, PASS, kdf_n=FAST_N)
    assert decrypt_share(data, PASS) == share
    assert share.serialize() not in data
    header = read_header(data)
    assert (header.scheme, header.party, header.version) == (scheme, 2, 1)
    assert header.key_fingerprint == public_fingerprint(share.public)
    assert (header.kdf.n, header.kdf.r, header.kdf.p, len(header.kdf.salt)) == (FAST_N, 8, 1, 16)
    assert header.cipher == "aes-256-gcm" and len(header.nonce) == 12


def test_each_encryption_is_fresh() -> None:
    a, b = (encrypt_share(share_of(), PASS, kdf_n=FAST_N) for _ in range(2))
    assert a != b
    assert read_header(a).kdf.salt != read_header(b).kdf.salt
    assert read_header(a).nonce != read_header(b).nonce


def test_default_cost_is_recorded_and_affordable() -> None:
    start = time.perf_counter()
    data = encrypt_share(share_of(), PASS)
    assert read_header(data).kdf.n == DEFAULT_N
    assert time.perf_counter() - start < 1.0


def test_passphrase_is_unicode_normalised() -> None:
    data = encrypt_share(share_of(), "caf\u00e9", kdf_n=FAST_N)
    assert decrypt_share(data, "cafe\u0301") == share_of()


def test_fingerprint_names_one_sharing() -> None:
    a, b = share_of("frost-secp256k1"), share_of("frost-ed25519")
    assert public_fingerprint(a.public) == public_fingerprint(share_of("frost-secp256k1", 3).public)
    assert public_fingerprint(a.public) != public_fingerprint(b.public)
    other = dict(a.verification_shares)
    other[1], other[2] = other[2], other[1]
    assert public_fingerprint(replace(a.public, verification_shares=other)) != public_fingerprint(a.public)


def test_empty_passphrase_refused() -> None:
    with pytest.raises(KeyFileError, match="empty passphrase"):
        encrypt_share(share_of(), "", kdf_n=FAST_N)


@pytest.mark.parametrize("n", [2**11, 2**21, 3 * 2**12])
def test_writer_refuses_costs_out_of_bounds(n: int) -> None:
    with pytest.raises(KeyFileError, match="scrypt n"):
        encrypt_share(share_of(), PASS, kdf_n=n)


def test_writer_refuses_inconsistent_share() -> None:
    bad = replace(share_of(), secret_share=share_of().secret_share + 1)
    with pytest.raises(ValueError, match="does not match"):
        encrypt_share(bad, PASS, kdf_n=FAST_N)


# -- wrong passphrase and damage ------------------------------------------------------------------------


def test_wrong_passphrase(sealed: bytes) -> None:
    refused(sealed, "passphrase", "wrong passphrase, or the file was modified", passphrase="wrong")


def test_not_a_key_file() -> None:
    refused(b"", "format", "not a Harbour key-share file")
    refused(b'{"json": true}', "format", "not a Harbour key-share file")
    refused(b"\x00" * 100, "format", "not a Harbour key-share file")


def test_unsupported_version(sealed: bytes) -> None:
    _, header, ciphertext = split(sealed)
    refused(rebuild({**header, "version": 2}, ciphertext), "format", "unsupported key-share file version 2")
    refused(rebuild({**header, "format": "other"}, ciphertext), "format", "not a Harbour key-share file")
    refused(rebuild({**header, "cipher": "chacha20-poly1305"}, ciphertext), "format", "unsupported cipher")


def test_every_header_byte_matters(sealed: bytes) -> None:
    """Flipping any bit of the prefix or header is refused, whichever check catches it."""
    length, _, _ = split(sealed)
    for pos in range(8 + length):
        for flip in (0x01, 0x80):
            data = bytearray(sealed)
            data[pos] ^= flip
            refused(bytes(data), {"format", "corrupt", "kdf", "passphrase"})


@pytest.mark.parametrize("where", ["nonce", "ciphertext-first", "ciphertext-middle", "tag-first", "tag-last"])
def test_single_byte_corruption(sealed: bytes, where: str) -> None:
    length, header, ciphertext = split(sealed)
    start = 8 + length
    pos = {
        "nonce": sealed.index(header["nonce"]) + 5,
        "ciphertext-first": start,
        "ciphertext-middle": start + len(ciphertext) // 2,
        "tag-first": len(sealed) - 16,
        "tag-last": len(sealed) - 1,
    }[where]
    data = bytearray(sealed)
    data[pos] ^= 0x04
    refused(bytes(data), "passphrase", "wrong passphrase, or the file was modified")


def test_truncation_anywhere(sealed: bytes) -> None:
    length, _, _ = split(sealed)
    for cut in [0, 2, 4, 6, 8, 9, 8 + length // 2, 8 + length, 8 + length + 1, len(sealed) - 16, len(sealed) - 1]:
        err = refused(sealed[:cut], {"format", "corrupt"})
        if cut >= 4:
            assert "truncated" in str(err) or "corrupted" in str(err)
    refused(sealed[:-1], "corrupt", "truncated")


def test_appended_garbage(sealed: bytes) -> None:
    refused(sealed + b"\x00", "corrupt", "1 unexpected bytes after the ciphertext")
    refused(sealed + sealed, "corrupt", "unexpected bytes")


@pytest.mark.parametrize(
    ("field", "value"),
    [("party", 2), ("scheme", "frost-taproot"), ("key_fingerprint", "0" * 64), ("ciphertext_length", None)],
)
def test_edited_metadata_breaks_decryption(sealed: bytes, field: str, value: Any) -> None:
    _, header, ciphertext = split(sealed)
    if field == "ciphertext_length":  # move the tag boundary consistently
        header[field] -= 1
        ciphertext = ciphertext[:-1]
    else:
        header[field] = value
    edited = rebuild(header, ciphertext)
    assert getattr(read_header(edited), field) == header[field]
    refused(edited, "passphrase", "wrong passphrase, or the file was modified")


def test_header_that_lies_about_the_share_is_refused() -> None:
    """A writer who knows the passphrase can still mislabel; the reader compares."""
    share = share_of()
    honest = encrypt_share(share, PASS, kdf_n=FAST_N)
    _, header, _ = split(honest)
    for field, value, match in [
        ("party", 2, "party 2"),
        ("scheme", "frost-taproot", "scheme"),
        ("key_fingerprint", "0" * 64, "fingerprint"),
    ]:
        lying = {**header, field: value}
        encoded = cbor2.dumps(lying, canonical=True)
        aad = MAGIC + struct.pack(">I", len(encoded)) + encoded
        key = keyfile.ScryptParams(FAST_N, 8, 1, header["kdf"]["salt"]).derive(PASS)
        data = aad + AESGCM(key).encrypt(header["nonce"], share.serialize(), aad)
        refused(data, "mismatch", match)


def test_decrypted_garbage_is_a_corrupted_share() -> None:
    _, header, _ = split(encrypt_share(share_of(), PASS, kdf_n=FAST_N))
    plaintext = b"\xa0"  # an empty CBOR map: decrypts fine, is no key share
    header["ciphertext_length"] = len(plaintext) + 16
    encoded = cbor2.dumps(header, canonical=True)
    aad = MAGIC + struct.pack(">I", len(encoded)) + encoded
    key = keyfile.ScryptParams(FAST_N, 8, 1, header["kdf"]["salt"]).derive(PASS)
    refused(aad + AESGCM(key).encrypt(header["nonce"], plaintext, aad), "share", "decrypted key share is corrupted")


@pytest.mark.parametrize(
    ("kdf", "match"),
    [
        ({"n": 2**40}, "scrypt n"),
        ({"n": 2**21}, "scrypt n"),
        ({"n": 2**16 + 1}, "power of two"),
        ({"n": 2}, "scrypt n"),
        ({"n": 2**20, "r": 16}, "1 GiB"),
        ({"r": 10**9}, "scrypt r"),
        ({"r": 0}, "scrypt r"),
        ({"p": 2**30}, "scrypt p"),
        ({"n": 2**20, "r": 8, "p": 4}, "work"),
        ({"n": "32768"}, "integer"),
        ({"salt": b"short"}, "salt"),
        ({"name": "argon2id"}, "unsupported key derivation"),
    ],
)
def test_absurd_kdf_parameters_refused_quickly(sealed: bytes, kdf: dict[str, Any], match: str) -> None:
    _, header, ciphertext = split(sealed)
    header["kdf"].update(kdf)
    data = rebuild(header, ciphertext)
    start = time.perf_counter()
    refused(data, "kdf", match)
    with pytest.raises(KeyFileError, match=match):
        read_header(data)
    assert time.perf_counter() - start < 0.2


def test_malformed_headers(sealed: bytes) -> None:
    _, header, ciphertext = split(sealed)
    refused(rebuild({**header, "extra": 1}, ciphertext), "corrupt", "unexpected fields")
    refused(rebuild({**header, "nonce": b"\x00" * 8}, ciphertext), "corrupt", "nonce")
    refused(rebuild({**header, "party": 0}, ciphertext), "corrupt", "party")
    refused(rebuild({**header, "scheme": "rsa"}, ciphertext), "corrupt", "unknown scheme")
    refused(rebuild({**header, "key_fingerprint": "AB" * 32}, ciphertext), "corrupt", "fingerprint")
    refused(rebuild({**header, "ciphertext_length": 2**40}, ciphertext), "corrupt", "ciphertext length")
    refused(MAGIC + struct.pack(">I", 9999) + sealed[8:], "corrupt", "header length 9999 is implausible")
    big_length = MAGIC + struct.pack(">I", 100) + b"\xa0" * 10
    refused(big_length, "corrupt", "truncated")
    refused(MAGIC + struct.pack(">I", 1) + b"\xff", "corrupt", "not valid CBOR")
    refused(MAGIC + struct.pack(">I", 1) + b"\x01", "corrupt", "not a map")


# -- files ----------------------------------------------------------------------------------------------


def test_save_and_load(tmp_path: Path) -> None:
    path = tmp_path / "party-1.share"
    save_share(path, share_of(), PASS, kdf_n=FAST_N)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_share(path, PASS) == share_of()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["party-1.share"]


def test_save_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "share"
    save_share(path, share_of(me=1), PASS, kdf_n=FAST_N)
    with pytest.raises(FileExistsError):
        save_share(path, share_of(me=2), PASS, kdf_n=FAST_N)
    assert load_share(path, PASS) == share_of(me=1)
    save_share(path, share_of(me=2), PASS, kdf_n=FAST_N, overwrite=True)
    assert load_share(path, PASS) == share_of(me=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["share"]


def test_write_atomic_mode_even_with_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_atomic(tmp_path / "f", b"data")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600
    assert (tmp_path / "f").read_bytes() == b"data"


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_failed_write_keeps_old_file_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str
) -> None:
    path = tmp_path / "share"
    write_atomic(path, b"old")

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk on fire"):
        write_atomic(path, b"new")
    monkeypatch.undo()
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["share"]


def test_load_refuses_huge_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyfile, "MAX_FILE_LEN", 64)
    path = tmp_path / "big"
    path.write_bytes(MAGIC + b"\x00" * 100)
    with pytest.raises(KeyFileError, match="too large"):
        load_share(path, PASS)
