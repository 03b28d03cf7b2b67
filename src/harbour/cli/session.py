"""A threshold key and its signatures, produced in this process and checked before use.

The CLI's demonstrations and benchmarks all go through here, so what they print
is what a verifier of each scheme expects: the public key in the scheme's own
encoding (compressed SEC1, Ed25519, or the BIP-341 x-only output key) and a
signature checked against that key here, after the session, not only by the
signers inside it.

FROST signs a message and returns the signature's bytes; threshold ECDSA
(``ecdsa-secp256k1``) signs a 32-byte digest and returns an
:class:`~harbour.crypto.ecdsa.EcdsaSignature`, whose recovery id Ethereum needs
because a transaction names its sender by address, not by public key. Both go
through :func:`sign` and :func:`verify`, so a caller never picks the protocol.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harbour.chains.ethereum import address_from_public_key
from harbour.cli.params import RunFailure
from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.group import Point
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc import runner
from harbour.mpc.keyshare import KeyShare
from harbour.mpc.schemes import Signature as Signature
from harbour.mpc.schemes import scheme_by_name

Shares = Mapping[int, KeyShare]


def key_fields(scheme: str, group_public_key: Point) -> dict[str, bytes | str]:
    """``public_key`` as the scheme's verifiers take it, and what else names the key.

    A Taproot output commits to the tweaked key (BIP-341), which is the
    ``public_key``; the untweaked ``internal_key`` is what a wallet needs to rebuild
    the output. A key whose signatures recover it (threshold ECDSA) is also an
    Ethereum account, named by its EIP-55 ``address``.
    """
    kind = scheme_by_name(scheme)
    fields: dict[str, bytes | str] = dict(kind.key_fields(group_public_key))
    if kind.recoverable and isinstance(group_public_key, Secp256k1Point):
        fields["address"] = address_from_public_key(group_public_key)
    return fields


def public_key(shares: Shares) -> bytes:
    """The key the signatures of ``shares`` verify under, as in :func:`key_fields`."""
    share = next(iter(shares.values()))
    key = key_fields(share.scheme, share.group_public_key)["public_key"]
    assert isinstance(key, bytes)
    return key


def signature_bytes(signature: Signature) -> bytes:
    """The signature as verifiers read it; ECDSA: the 64-byte ``r || s`` (low-s)."""
    return signature.to_bytes() if isinstance(signature, EcdsaSignature) else signature


def verify(scheme: str, group_public_key: Point, message: bytes, signature: Signature) -> bool:
    """Whether ``signature`` is valid for ``message`` under the group key, in the scheme's own terms.

    For ECDSA the recovery id must also recover the group key: it is printed for
    Ethereum, where a wrong one would name another account as the signer.
    """
    return scheme_by_name(scheme).verify(group_public_key, message, signature)


def check_signature(shares: Shares, message: bytes, signature: Signature) -> None:
    """Raise :class:`RunFailure` unless ``signature`` verifies under the key of ``shares``."""
    share = next(iter(shares.values()))
    if not verify(share.scheme, share.group_public_key, message, signature):
        raise RunFailure(f"the {share.scheme} signature does not verify against the group key")


def sign(shares: Shares, signers: Sequence[int], message: bytes, *, stats: runner.RunStats | None = None) -> Signature:
    """One signing session among ``signers`` with the protocol of the shares' scheme."""
    return runner.sign_any(shares, signers, message, stats=stats)


def sign_verified(shares: Shares, signers: Sequence[int], message: bytes) -> Signature:
    """One signing session among ``signers``, and an independent check of its result."""
    signature = sign(shares, signers, message)
    check_signature(shares, message, signature)
    return signature


def contract(shares: Shares, signers: Sequence[int], message: bytes, signature: Signature) -> dict[str, Any]:
    """The JSON object ``harbour mpc demo --json`` prints; other tools read these names."""
    share = next(iter(shares.values()))
    return contract_fields(
        share.scheme, share.threshold, len(share.parties), share.group_public_key, signers, message, signature
    )


def contract_fields(
    scheme: str,
    threshold: int,
    parties: int,
    group_public_key: Point,
    signers: Sequence[int],
    message: bytes,
    signature: Signature,
) -> dict[str, Any]:
    """:func:`contract` from the public facts alone (``harbour cluster sign`` holds no share)."""
    keys = {
        name: value.hex() if isinstance(value, bytes) else value
        for name, value in key_fields(scheme, group_public_key).items()
    }
    signed = {
        name: value.hex() if isinstance(value, bytes) else value
        for name, value in scheme_by_name(scheme).signature_fields(signature).items()
    }
    return {
        "scheme": scheme,
        "threshold": threshold,
        "parties": parties,
        "signers": sorted(signers),
        **keys,
        "message": message.hex(),
        **signed,
    }
