"""A FROST key and its signatures, produced in this process and checked before use.

The CLI's demonstrations and benchmarks all go through here, so what they print
is what a verifier of each scheme expects: the public key in the scheme's own
encoding (compressed SEC1, Ed25519, or the BIP-341 x-only output key) and a
signature checked against that key here, after the session, not only by the
signers inside it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harbour.cli.params import RunFailure
from harbour.crypto.group import Point
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc import runner, taproot
from harbour.mpc.ciphersuite import suite_by_name
from harbour.mpc.frost_party import signing_public_key
from harbour.mpc.keyshare import KeyShare

Shares = Mapping[int, KeyShare]


def _xonly(point: Point) -> bytes:
    assert isinstance(point, Secp256k1Point)
    return point.x_bytes


def key_fields(scheme: str, group_public_key: Point) -> dict[str, bytes]:
    """``public_key`` as the scheme's verifiers take it; ``internal_key`` for Taproot.

    A Taproot output commits to the tweaked key ``Q`` (BIP-341, key path only), so
    that is the key signatures verify under; the untweaked even-y key ``P`` is
    what a wallet needs to rebuild the output or add a script tree later.
    """
    suite = suite_by_name(scheme)
    if suite.bip340:
        return {
            "public_key": _xonly(taproot.output_key(group_public_key, None)),
            "internal_key": _xonly(taproot.even_y(group_public_key)),
        }
    return {"public_key": group_public_key.encode()}


def public_key(shares: Shares) -> bytes:
    """The key the signatures of ``shares`` verify under, as in :func:`key_fields`."""
    share = next(iter(shares.values()))
    return key_fields(share.scheme, share.group_public_key)["public_key"]


def verify(scheme: str, group_public_key: Point, message: bytes, signature: bytes) -> bool:
    suite = suite_by_name(scheme)
    return suite.verify(signing_public_key(suite, group_public_key), message, signature)


def check_signature(shares: Shares, message: bytes, signature: bytes) -> None:
    """Raise :class:`RunFailure` unless ``signature`` verifies under the key of ``shares``."""
    share = next(iter(shares.values()))
    if not verify(share.scheme, share.group_public_key, message, signature):
        raise RunFailure(f"the {share.scheme} signature does not verify against the group key")


def sign_verified(shares: Shares, signers: Sequence[int], message: bytes) -> bytes:
    """One signing session among ``signers``, and an independent check of its result."""
    signature = runner.sign(shares, signers, message)
    check_signature(shares, message, signature)
    return signature


def contract(shares: Shares, signers: Sequence[int], message: bytes, signature: bytes) -> dict[str, Any]:
    """The JSON object ``harbour mpc demo --json`` prints; other tools read these names."""
    share = next(iter(shares.values()))
    keys = {name: value.hex() for name, value in key_fields(share.scheme, share.group_public_key).items()}
    return {
        "scheme": share.scheme,
        "threshold": share.threshold,
        "parties": len(share.parties),
        "signers": sorted(signers),
        **keys,
        "message": message.hex(),
        "signature": signature.hex(),
    }
