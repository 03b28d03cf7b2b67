"""Disaster-recovery backups: the key comes back from any t backups with the recovery key,
a set can be audited without it, and every wrong, edited or missing backup is named."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from eth_account import Account

from harbour.chains.ethereum import address_from_public_key
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.crypto.shamir import interpolate_at_zero
from harbour.mpc import runner
from harbour.mpc.keyshare import KeyShare
from harbour.node import backup
from harbour.node.backup import (
    BackupError,
    generate_recovery_key,
    keystore_json,
    make_backup,
    parse_backup,
    read_backups,
    recover_private_key,
    recovery_key_fingerprint,
    save_backup,
    verify_backups,
)
from harbour.node.keyfile import public_fingerprint
from helpers import cached_keygen

SCHEMES = ["frost-secp256k1", "frost-ed25519", "ecdsa-secp256k1"]


@dataclass(frozen=True)
class RecoveryKey:
    kind: backup.RecoveryKind
    private: bytes
    public: bytes


def _generate(directory: Path, kind: backup.RecoveryKind, passphrase: bytes | None = None) -> RecoveryKey:
    fingerprint = generate_recovery_key(
        kind, directory / "recovery.pem", directory / "recovery.pub", passphrase=passphrase
    )
    key = RecoveryKey(kind, (directory / "recovery.pem").read_bytes(), (directory / "recovery.pub").read_bytes())
    assert recovery_key_fingerprint(key.public) == fingerprint
    return key


@pytest.fixture(scope="session")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> RecoveryKey:
    """One RSA-4096 recovery key for the run: generating one takes up to a second or two."""
    return _generate(tmp_path_factory.mktemp("rsa"), "rsa")


@pytest.fixture(scope="module")
def x25519_key(tmp_path_factory: pytest.TempPathFactory) -> RecoveryKey:
    return _generate(tmp_path_factory.mktemp("x25519"), "x25519")


@pytest.fixture(scope="module")
def other_x25519_key(tmp_path_factory: pytest.TempPathFactory) -> RecoveryKey:
    return _generate(tmp_path_factory.mktemp("x25519-other"), "x25519")


@pytest.fixture(params=["x25519", "rsa"])
def recovery(request: pytest.FixtureRequest, x25519_key: RecoveryKey, rsa_key: RecoveryKey) -> RecoveryKey:
    return x25519_key if request.param == "x25519" else rsa_key


def shares_of(scheme: str = "frost-secp256k1") -> Mapping[int, KeyShare]:
    return cached_keygen(scheme, 2, 3)


def backups_of(shares: Mapping[int, KeyShare], key: RecoveryKey, parties: tuple[int, ...] = (1, 2, 3)) -> list[bytes]:
    return [make_backup(shares[i], key.public) for i in parties]


def edit(data: bytes, **changes: Any) -> bytes:
    obj = cbor2.loads(data)
    obj.update(changes)
    return bytes(cbor2.dumps(obj, canonical=True))


# -- recovery round trips -----------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_recovery_round_trip(scheme: str, recovery: RecoveryKey) -> None:
    shares = shares_of(scheme)
    first = shares[1]
    records = backups_of(shares, recovery)
    expected = interpolate_at_zero({i: s.secret_share for i, s in shares.items()}, first.group.order)
    # Loading an RSA-4096 private key (with its consistency checks) takes ~0.2 s: fewer subsets there.
    subsets = [(0, 1), (1, 2), (0, 2), (0, 1, 2)] if recovery.kind == "x25519" else [(0, 2), (0, 1, 2)]
    for subset in subsets:
        got = recover_private_key([records[k] for k in subset], recovery.private)
        assert got.private_key == expected
        assert got.parties_used == tuple(k + 1 for k in subset)
        assert not got.rejected
    assert first.group.base_mul(got.private_key) == first.group_public_key
    assert got.public_key == first.group_public_key.encode()
    assert got.scheme == scheme and got.curve == first.curve
    assert got.key_fingerprint == public_fingerprint(first.public)
    assert got.chain_code == first.extensions.get("chain_code")
    assert str(got.private_key) not in repr(got)
    if isinstance(first.group_public_key, Secp256k1Point):
        assert got.ethereum_address == address_from_public_key(first.group_public_key)
        keystore = keystore_json(got, "vault passphrase", iterations=2**10)
        assert json.loads(keystore)["address"].lower() == got.ethereum_address[2:].lower()
        assert int.from_bytes(Account.decrypt(keystore, "vault passphrase"), "big") == expected
    else:
        assert got.ethereum_address is None
        with pytest.raises(BackupError, match="secp256k1"):
            keystore_json(got, "vault passphrase")


def test_backup_hides_the_share(x25519_key: RecoveryKey) -> None:
    share = shares_of("ecdsa-secp256k1")[2]
    data = make_backup(share, x25519_key.public)
    assert share.group.encode_scalar(share.secret_share) not in data
    assert share.extensions["chain_code"] not in data
    assert len(data) < 2048  # the scalar and chain code, not the ECDSA pairwise setup
    record = parse_backup(data)
    assert (record.party, record.threshold, record.parties) == (2, 2, (1, 2, 3))
    assert record.verification_share == share.verification_shares[2]
    assert record.recovery_fingerprint == recovery_key_fingerprint(x25519_key.public)
    assert make_backup(share, x25519_key.public) != data  # fresh ephemeral key and nonce


def test_encrypted_recovery_private_key(tmp_path: Path) -> None:
    key = _generate(tmp_path, "x25519", passphrase=b"offline safe")
    assert b"ENCRYPTED" in key.private
    records = backups_of(shares_of(), key, (1, 3))
    assert recover_private_key(records, key.private, b"offline safe").parties_used == (1, 3)
    with pytest.raises(BackupError, match="wrong passphrase"):
        recover_private_key(records, key.private, b"guess")
    with pytest.raises(BackupError, match="encrypted"):
        recover_private_key(records, key.private)


def test_keystore_of_plain_integers() -> None:
    keystore = keystore_json(12345, "pw", iterations=2**10)
    assert int.from_bytes(Account.decrypt(keystore, "pw"), "big") == 12345
    for bad in (0, 2**256, -1):
        with pytest.raises(BackupError, match="secp256k1 private key"):
            keystore_json(bad, "pw")
    with pytest.raises(BackupError, match="empty"):
        keystore_json(12345, "")


# -- files --------------------------------------------------------------------------------------------


def test_backup_files(tmp_path: Path, x25519_key: RecoveryKey) -> None:
    shares = shares_of()
    paths = [save_backup(tmp_path, shares[i], x25519_key.public) for i in (3, 1)]
    assert [p.name for p in paths] == ["party-3.backup", "party-1.backup"]
    with pytest.raises(FileExistsError):
        save_backup(tmp_path, shares[1], x25519_key.public)
    report = verify_backups(read_backups(tmp_path), shares[1].public)
    assert report.present == (1, 3) and report.missing == (2,)
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in paths)


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    _generate(tmp_path, "x25519")
    before = (tmp_path / "recovery.pem").read_bytes()
    with pytest.raises(FileExistsError):
        _generate(tmp_path, "x25519")
    assert (tmp_path / "recovery.pem").read_bytes() == before
    assert (tmp_path / "recovery.pem").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "recovery.pub").stat().st_mode & 0o777 == 0o644


# -- auditing a set without decrypting ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("parties", "complete", "sufficient"),
    [((1, 2, 3), True, True), ((3, 1), False, True), ((2,), False, False), ((), False, False)],
)
def test_verify_reports_coverage(
    recovery: RecoveryKey, parties: tuple[int, ...], complete: bool, sufficient: bool
) -> None:
    shares = shares_of()
    report = verify_backups(backups_of(shares, recovery, parties), shares[1].public)
    assert report.present == tuple(sorted(parties))
    assert report.missing == tuple(i for i in (1, 2, 3) if i not in parties)
    assert (report.complete, report.sufficient) == (complete, sufficient)
    assert report.threshold == 2 and report.key_fingerprint == public_fingerprint(shares[1].public)
    if parties:
        assert report.recovery_fingerprint == recovery_key_fingerprint(recovery.public)
        verify_backups(backups_of(shares, recovery, parties), shares[1].public, recovery_public_key_pem=recovery.public)


def test_verify_against_the_expected_recovery_key(x25519_key: RecoveryKey, other_x25519_key: RecoveryKey) -> None:
    shares = shares_of()
    with pytest.raises(BackupError, match="not to the given one"):
        verify_backups(
            backups_of(shares, x25519_key), shares[1].public, recovery_public_key_pem=other_x25519_key.public
        )


def test_duplicate_party(x25519_key: RecoveryKey) -> None:
    shares = shares_of()
    one = make_backup(shares[1], x25519_key.public)
    for dup in (one, make_backup(shares[1], x25519_key.public)):
        sets = [one, dup, make_backup(shares[2], x25519_key.public)]
        with pytest.raises(BackupError, match="more than one backup of party 1"):
            verify_backups(sets, shares[1].public)
        with pytest.raises(BackupError, match="more than one backup of party 1"):
            recover_private_key(sets, x25519_key.private)


def test_backup_of_another_key(x25519_key: RecoveryKey) -> None:
    shares = shares_of()
    stranger = runner.keygen("frost-secp256k1", 2, 3)[2]
    mixed = [make_backup(shares[1], x25519_key.public), make_backup(stranger, x25519_key.public)]
    with pytest.raises(BackupError, match=r"backup #2 \(party 2\) is a backup of another key"):
        verify_backups(mixed, shares[1].public)
    with pytest.raises(BackupError, match="another key"):
        recover_private_key(mixed, x25519_key.private)
    ed = shares_of("frost-ed25519")
    with pytest.raises(BackupError, match="another key"):
        verify_backups([make_backup(ed[1], x25519_key.public)], shares[1].public)


def test_backup_of_a_refreshed_sharing(x25519_key: RecoveryKey) -> None:
    """Same group key, different polynomial: the shares cannot be combined."""
    shares = shares_of()
    refreshed = runner.refresh(shares)
    assert refreshed[2].group_public_key == shares[2].group_public_key
    mixed = [make_backup(shares[1], x25519_key.public), make_backup(refreshed[2], x25519_key.public)]
    with pytest.raises(BackupError, match="another sharing of the same key"):
        verify_backups(mixed, shares[1].public)
    with pytest.raises(BackupError, match="another sharing of the same key"):
        recover_private_key(mixed, x25519_key.private)
    assert recover_private_key(backups_of(refreshed, x25519_key, (2, 3)), x25519_key.private).private_key == (
        recover_private_key(backups_of(shares, x25519_key, (1, 2)), x25519_key.private).private_key
    )


def test_edited_verification_share(recovery: RecoveryKey) -> None:
    shares = shares_of()
    records = backups_of(shares, recovery)
    edited = edit(records[0], verification_share=shares[2].verification_shares[2].encode())
    with pytest.raises(BackupError, match=r"backup #1 \(party 1\): its verification share differs"):
        verify_backups([edited, records[1]], shares[1].public)
    # Without the public package the edit is still caught: the metadata is associated data.
    with pytest.raises(BackupError, match="need 2 valid shares, have 1") as info:
        recover_private_key([edited, records[1]], recovery.private)
    assert "party 1 cannot be decrypted" in str(info.value)
    with pytest.raises(BackupError, match="verification share differs"):
        recover_private_key([edited, records[1], records[2]], recovery.private, public=shares[1].public)
    got = recover_private_key([edited, records[1], records[2]], recovery.private)
    assert got.parties_used == (2, 3)
    assert "cannot be decrypted" in got.rejected[1]


@pytest.mark.parametrize(
    "changes",
    [{"threshold": 1}, {"party": 3}, {"scheme": "frost-taproot"}, {"nonce": bytes(12)}, {"parties": [1, 2, 3, 4]}],
)
def test_edited_metadata_does_not_decrypt(x25519_key: RecoveryKey, changes: dict[str, Any]) -> None:
    shares = shares_of()
    edited = edit(make_backup(shares[1], x25519_key.public), **changes)
    parse_backup(edited)  # still well-formed
    with pytest.raises(BackupError, match="cannot be decrypted"):
        recover_private_key([edited], x25519_key.private)


def test_mixed_recovery_keys(x25519_key: RecoveryKey, rsa_key: RecoveryKey, other_x25519_key: RecoveryKey) -> None:
    shares = shares_of()
    for second in (rsa_key, other_x25519_key):
        mixed = [make_backup(shares[1], x25519_key.public), make_backup(shares[2], second.public)]
        with pytest.raises(BackupError, match="different recovery keys"):
            verify_backups(mixed, shares[1].public)
        with pytest.raises(BackupError, match="different recovery keys"):
            recover_private_key(mixed, x25519_key.private)


def test_wrong_recovery_private_key(
    x25519_key: RecoveryKey, rsa_key: RecoveryKey, other_x25519_key: RecoveryKey
) -> None:
    records = backups_of(shares_of(), x25519_key)
    for wrong in (other_x25519_key, rsa_key):
        with pytest.raises(BackupError, match="wrong recovery private key"):
            recover_private_key(records, wrong.private)
    with pytest.raises(BackupError, match="wrong recovery private key"):
        recover_private_key(backups_of(shares_of(), rsa_key), x25519_key.private)


def test_too_few_backups(recovery: RecoveryKey) -> None:
    records = backups_of(shares_of(), recovery, (3,))
    with pytest.raises(BackupError, match=r"need 2 valid shares, have 1 \(backups found for parties 3\)"):
        recover_private_key(records, recovery.private)
    with pytest.raises(BackupError, match="no backups"):
        recover_private_key([], recovery.private)


def test_share_inconsistent_with_its_commitment(x25519_key: RecoveryKey, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record written with the right metadata but a wrong share (anyone with the
    recovery public key could) passes the audit, and is caught once decrypted."""
    shares = shares_of()
    good = backups_of(shares, x25519_key)
    with monkeypatch.context() as m:
        m.setattr(KeyShare, "check_consistent", lambda self: None)
        forged = make_backup(replace(shares[1], secret_share=shares[1].secret_share + 1), x25519_key.public)
    verify_backups([forged, good[1]], shares[1].public)
    with pytest.raises(BackupError, match="party 1 decrypts to a share that does not match its public verification"):
        recover_private_key([forged, good[1]], x25519_key.private)
    got = recover_private_key([forged, good[1], good[2]], x25519_key.private)
    assert got.parties_used == (2, 3) and "does not match" in got.rejected[1]


def test_forged_consistent_looking_share_is_caught_by_the_group_key(
    x25519_key: RecoveryKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Records that agree with themselves but not with the group key: refused, never returned."""
    shares = shares_of()
    g = shares[1].group
    fake = shares[2].secret_share + 7
    forged_share = replace(
        shares[2], secret_share=fake, verification_shares={**shares[2].verification_shares, 2: g.base_mul(fake)}
    )
    real_fingerprint = public_fingerprint(shares[1].public)
    with monkeypatch.context() as m:
        m.setattr(KeyShare, "check_consistent", lambda self: None)
        m.setattr(backup.encryption, "public_fingerprint", lambda public: real_fingerprint)
        forged = make_backup(forged_share, x25519_key.public)
    honest = make_backup(shares[1], x25519_key.public)
    with pytest.raises(BackupError, match="does not match the group public key"):
        recover_private_key([honest, forged], x25519_key.private)
    with pytest.raises(BackupError, match="verification share differs"):
        verify_backups([honest, forged], shares[1].public)


# -- malformed input ----------------------------------------------------------------------------------


def test_malformed_and_truncated(x25519_key: RecoveryKey) -> None:
    shares = shares_of()
    data = make_backup(shares[1], x25519_key.public)
    for cut in (0, 1, 10, len(data) // 2, len(data) - 1):
        with pytest.raises(BackupError, match="truncated or corrupted"):
            parse_backup(data[:cut])
    cases = [
        (data + b"\x00", "1 unexpected bytes after the record"),
        (b"\x00" * 20, "not a Harbour backup"),
        (b"\xff" * 20_000, "far larger"),
        (edit(data, format="harbour-keyshare"), "not a Harbour backup"),
        (edit(data, version=2), "unsupported backup version 2"),
        (edit(data, extra=1), "missing or unexpected fields"),
        (edit(data, scheme="rsa"), "unknown scheme"),
        (edit(data, party=4), "party 4 is not one of the parties"),
        (edit(data, parties=[1, 1, 2]), "not unique"),
        (edit(data, threshold=4), "threshold 4"),
        (edit(data, key_fingerprint="xyz"), "key fingerprint"),
        (edit(data, recovery={"type": "dsa", "fingerprint": "0" * 64}), "unknown recovery key type"),
        (edit(data, encapsulation=b"\x00" * 31), "wrong length"),
        (edit(data, nonce=b"\x00"), "nonce"),
        (edit(data, ciphertext=b""), "ciphertext"),
        (edit(data, group_public_key=b"\x02" + b"\xff" * 32), "invalid public point"),
        (edit(data, cipher="des"), "unsupported cipher"),
    ]
    for bad, match in cases:
        with pytest.raises(BackupError, match=match):
            parse_backup(bad)
    non_canonical = cbor2.dumps(dict(reversed(cbor2.loads(data).items())))
    assert non_canonical != data
    with pytest.raises(BackupError, match="not canonically encoded"):
        parse_backup(non_canonical)
    with pytest.raises(BackupError, match=r"backup #2: .*truncated"):
        verify_backups([data, data[:-5]], shares[1].public)
    with pytest.raises(BackupError, match=r"backup #1: "):
        recover_private_key([b"junk"], x25519_key.private)


def test_refuses_weak_or_unsupported_recovery_keys(x25519_key: RecoveryKey) -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = small.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(BackupError, match="at least 4096 bits"):
        make_backup(shares_of()[1], pem)
    with pytest.raises(BackupError, match="not a PEM public key"):
        make_backup(shares_of()[1], b"-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    with pytest.raises(BackupError, match="not a PEM public key"):
        make_backup(shares_of()[1], x25519_key.private)


def test_refuses_to_back_up_an_inconsistent_share(x25519_key: RecoveryKey) -> None:
    bad = replace(shares_of()[1], secret_share=shares_of()[1].secret_share + 1)
    with pytest.raises(BackupError, match="inconsistent key share"):
        make_backup(bad, x25519_key.public)
