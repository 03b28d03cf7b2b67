"""Break-glass recovery: the whole private key, reassembled from at least ``t`` backups.

This is the one place a Harbour key exists whole, so it trusts no record: the set
must be one sharing of one key encrypted to this recovery key, each share must
match its verification share, and the interpolated key must match the group key.
:func:`keystore_json` then lets a recovered Ethereum key move funds from any wallet.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from harbour.chains.ethereum import address_from_public_key
from harbour.crypto.secp256k1 import N as SECP256K1_ORDER
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.crypto.shamir import interpolate_at_zero
from harbour.mpc.keyshare import SCHEME_CURVES, PublicKeyPackage
from harbour.node.backup.audit import _check_set, _label, _other_key, _parse_all, verify_backups
from harbour.node.backup.encryption import _open
from harbour.node.backup.errors import BackupError
from harbour.node.backup.recovery_key import _spki_fingerprint, load_recovery_private_key


@dataclass(frozen=True)
class RecoveredKey:
    """The whole private key, reassembled from backups.

    ``private_key`` is the scalar ``x`` with ``x·G`` the group key. For Ed25519 schemes
    it is that scalar, not an RFC 8032 seed, so it cannot be imported into ordinary
    Ed25519 wallets (they hash a seed to get the scalar). ``rejected`` names backups
    that were given but not used, and why: a tampered backup in a vault is an incident
    even when recovery succeeds without it.
    """

    scheme: str
    curve: str
    key_fingerprint: str
    private_key: int = field(repr=False)
    public_key: bytes
    ethereum_address: str | None
    chain_code: bytes | None = field(repr=False)
    parties_used: tuple[int, ...]
    rejected: Mapping[int, str]


def recover_private_key(
    backups: Sequence[bytes],
    recovery_private_key_pem: bytes,
    passphrase: bytes | None = None,
    *,
    public: PublicKeyPackage | None = None,
) -> RecoveredKey:
    """Decrypt the backups, check every share, and reassemble the group private key.

    The set must be of one sharing of one key, without duplicates, all encrypted to
    the given recovery key (else BackupError before anything is decrypted). A backup
    that does not decrypt, or whose share does not match its verification share, is
    set aside (see ``RecoveredKey.rejected``); with fewer than ``t`` usable shares
    this raises. The key is Lagrange-interpolated from all usable shares and must
    satisfy ``x·G =`` the group key. Pass ``public`` (the key's public package from a
    trusted source) to also audit the set as :func:`verify_backups` does, since the
    records themselves can be written by anyone holding the recovery public key.
    """
    if not backups:
        raise BackupError("no backups given")
    private = load_recovery_private_key(recovery_private_key_pem, passphrase)
    records = _parse_all(backups)
    if public is not None:
        verify_backups(backups, public)
    first = records[0]
    for index, record in enumerate(records[1:], start=1):
        if record.key_fingerprint != first.key_fingerprint:
            raise _other_key(index, record, first.key_fingerprint, first.group_public_key)
        if (record.scheme, record.threshold, record.parties, record.group_public_key) != (
            first.scheme,
            first.threshold,
            first.parties,
            first.group_public_key,
        ):
            raise BackupError(
                f"{_label(index, record)} and {_label(0, first)} carry the same key fingerprint but disagree "
                "about the scheme, threshold, parties or group key: one of them was edited"
            )
    _, recovery_fp = _check_set(records)
    mine = _spki_fingerprint(private.public_key())
    if recovery_fp != mine:
        raise BackupError(
            f"wrong recovery private key: the backups are encrypted to recovery key {recovery_fp}, "
            f"this private key's is {mine}"
        )

    shares: dict[int, int] = {}
    chain_codes: set[bytes | None] = set()
    rejected: dict[int, str] = {}
    for record in records:
        try:
            secret, chain_code = _open(record, private)
        except ValueError as exc:
            rejected[record.party] = str(exc)
            continue
        shares[record.party] = secret
        chain_codes.add(chain_code)

    t, n = first.threshold, len(first.parties)
    if len(shares) < t:
        found = ", ".join(str(r.party) for r in records)
        why = "; ".join(f"party {i} {reason}" for i, reason in sorted(rejected.items()))
        raise BackupError(
            f"too few backups to recover this {t}-of-{n} key: need {t} valid shares, have {len(shares)} "
            f"(backups found for parties {found or 'none'}" + (f"; rejected: {why})" if why else ")")
        )
    if len(chain_codes) > 1:
        raise BackupError("the backups disagree about the key's chain code")
    group = first.group
    private_key = interpolate_at_zero(shares, group.order)
    if group.base_mul(private_key) != first.group_public_key:
        raise BackupError(
            "the reassembled key does not match the group public key: the backups' shares are inconsistent "
            "(forged or mixed backups)"
        )
    curve = SCHEME_CURVES[first.scheme]
    group_key = first.group_public_key
    address = address_from_public_key(group_key) if isinstance(group_key, Secp256k1Point) else None
    return RecoveredKey(
        scheme=first.scheme,
        curve=curve,
        key_fingerprint=first.key_fingerprint,
        private_key=private_key,
        public_key=group_key.encode(),
        ethereum_address=address,
        chain_code=next(iter(chain_codes)),
        parties_used=tuple(sorted(shares)),
        rejected=rejected,
    )


def keystore_json(key: RecoveredKey | int, passphrase: str, *, iterations: int | None = None) -> str:
    """An Ethereum V3 keystore (Web3 Secret Storage) of a recovered secp256k1 key.

    It lets the recovered key be imported into standard wallets to move funds. The
    keystore is scrypt-encrypted by eth-account; ``iterations`` (scrypt's ``n``) is
    for tests only. Ed25519 keys are refused: a keystore would hold a number that no
    Ethereum tool could use correctly.
    """
    if isinstance(key, RecoveredKey):
        if key.curve != "secp256k1":
            raise BackupError(f"a {key.scheme} key is not a secp256k1 key: Ethereum keystores hold secp256k1 keys only")
        scalar = key.private_key
    else:
        scalar = key
    if type(scalar) is not int or not 0 < scalar < SECP256K1_ORDER:
        raise BackupError("not a secp256k1 private key (must be an integer in 1..n-1)")
    if not passphrase:
        raise BackupError("refusing an empty keystore passphrase")
    from eth_account import Account  # imported here: it is slow to import and only recovery needs it

    keystore = Account.encrypt(scalar.to_bytes(32, "big"), passphrase, kdf="scrypt", iterations=iterations)
    return json.dumps(keystore)
