"""The signature schemes a key can be for: one object each, holding everything that differs between them.

A key share is tagged with its scheme's name (mpc/keyshare.py). Code that runs a
protocol on a share (the in-process runner, a signer node's jobs, the CLI) looks
that name up here once, with :func:`scheme_by_name`, and from then on asks the
object: which party generates the key and which (if any) runs after it, which
party signs, what a message must be, how a signature is verified, carried and
shown. It never asks which scheme it holds, so a scheme added here is supported
everywhere, and no caller can forget one of its rules (ZF FROST's ``sign<C>``
takes its ciphersuite as a type parameter for the same reason).

The schemes:

- FROST (RFC 9591), one per ciphersuite of mpc/ciphersuite.py (``frost-secp256k1``,
  ``frost-ed25519``, ``frost-taproot``): the DKG alone makes a key that signs; a
  signature is the suite's encoding, over any message, by ``t`` or more signers.
- threshold ECDSA, DKLs23 (``ecdsa-secp256k1``): the same DKG (with secp256k1's
  proofs of knowledge) followed by the pairwise OT setup (mpc/ecdsa_setup.py), and
  that setup again after every refresh or resharing; it signs a 32-byte digest
  (the caller hashes), with exactly ``t`` signers, and the signature carries the
  recovery id that Ethereum names a sender by.
"""

from __future__ import annotations

import secrets
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

from harbour.crypto import ecdsa
from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.group import Point, RandomBytes
from harbour.crypto.hashing import Transcript
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc import taproot
from harbour.mpc.ciphersuite import FROST_SECP256K1, SUITES, Ciphersuite
from harbour.mpc.dkg import DkgParty
from harbour.mpc.ecdsa_record import EXTENSION as ECDSA_SETUP
from harbour.mpc.ecdsa_record import SCHEME as ECDSA_SCHEME
from harbour.mpc.ecdsa_record import EcdsaSetup
from harbour.mpc.ecdsa_setup import EcdsaSetupParty
from harbour.mpc.ecdsa_sign import EcdsaSigner
from harbour.mpc.envelope import Party, UsageError
from harbour.mpc.frost_party import FrostSigner, signing_public_key
from harbour.mpc.keyshare import SCHEME_CURVES, KeyShare, PublicKeyPackage

Signature = bytes | EcdsaSignature
"""FROST: the suite's encoded signature; threshold ECDSA: ``(r, s)`` with its recovery id."""


class UnknownScheme(UsageError, ValueError):
    """No scheme has that name (a ValueError too, as an unknown ciphersuite always was)."""


def setup_session_id(keygen_session_id: bytes) -> bytes:
    """The session id of the pairwise setup that follows a key generation, refresh or resharing.

    Derived, not chosen, so that every party (and the in-process runner) starts
    the second phase under the same id without another message.
    """
    return Transcript("harbour/ecdsa/setup-session").append("dkg-session", keygen_session_id).digest()[:32]


class Scheme(ABC):
    """What one signature scheme does its own way; everything else is the same for all of them."""

    name: str
    curve: str
    signs_digest: bool = False
    """The message is a :data:`~harbour.crypto.ecdsa.DIGEST_LEN`-byte digest the caller hashed,
    not the message itself."""
    exact_signers: bool = False
    """A signing set is exactly ``t`` parties (otherwise any ``t`` or more)."""
    has_setup: bool = False
    """Key generation, refresh and resharing are each followed by a pairwise setup
    (:meth:`setup_party`), whose OT secrets a replayed round would give away as signing nonces would."""
    recoverable: bool = False
    """A signature recovers its public key, so the key can name an account by its hash (Ethereum's address)."""
    setup_extension: str | None = None
    """The key-share extension holding the pairwise setup, for a caller that keeps decoded setups."""

    @abstractmethod
    def dkg_party(
        self,
        session_id: bytes,
        me: int,
        threshold: int,
        parties: Sequence[int],
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> DkgParty:
        """Party ``me`` of a distributed key generation of a key of this scheme."""

    def setup_party(
        self, session_id: bytes, share: KeyShare, *, rng: RandomBytes = secrets.token_bytes, hedge_key: bytes = b""
    ) -> Party[KeyShare]:
        """The party of the pairwise setup that makes ``share`` ready to sign (only if :attr:`has_setup`)."""
        raise UsageError(f"{self.name} has no pairwise setup")

    def decode_setup(self, raw: bytes) -> Any:
        """The setup stored under :attr:`setup_extension`, decoded and checked canonical, for :meth:`signer`."""
        raise UsageError(f"{self.name} has no pairwise setup")

    @abstractmethod
    def signer(
        self,
        session_id: bytes,
        share: KeyShare,
        signers: Sequence[int],
        message: bytes,
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
        setup: Any = None,
        **options: Any,
    ) -> Party[Any]:
        """One signer of one signing session; its result is a :data:`Signature` verified under the key.

        ``setup`` is the share's :meth:`decode_setup` result if the caller kept one;
        ``options`` are the scheme's own (FROST's ``merkle_root`` and ``tweak``).
        """

    @abstractmethod
    def verify(self, group_public_key: Point, message: bytes, signature: Signature) -> bool:
        """Whether ``signature`` is valid for ``message`` under the group key, in the scheme's own terms."""

    @abstractmethod
    def key_fields(self, group_public_key: Point) -> dict[str, bytes]:
        """``public_key`` as the scheme's verifiers take it, then any other encoding a wallet needs."""

    def signature_fields(self, signature: Signature) -> dict[str, bytes | int]:
        """The signature by the names a signer node sends it under and the CLI prints it with.

        ``signature`` is the bytes verifiers read (ECDSA: the 64-byte ``r || s``, low-s),
        then any part those bytes leave out (ECDSA: the ``recovery_id``).
        """
        if isinstance(signature, EcdsaSignature):
            return {"signature": signature.to_bytes(), "recovery_id": signature.recovery_id}
        return {"signature": signature}

    def signature_from(self, raw: bytes, recovery_id: object = None) -> Signature:
        """The signature a signer node sent as ``raw`` (with its ``recovery_id``, for a recoverable scheme).

        ValueError if it cannot be one.
        """
        return raw


class FrostScheme(Scheme):
    """FROST (RFC 9591) with one ciphersuite."""

    def __init__(self, suite: Ciphersuite) -> None:
        self.suite = suite
        self.name = suite.name
        self.curve = SCHEME_CURVES[suite.name]

    def dkg_party(
        self,
        session_id: bytes,
        me: int,
        threshold: int,
        parties: Sequence[int],
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> DkgParty:
        return DkgParty(self.suite, session_id, me, threshold, parties, rng=rng, hedge_key=hedge_key)

    def signer(
        self,
        session_id: bytes,
        share: KeyShare,
        signers: Sequence[int],
        message: bytes,
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
        setup: Any = None,
        **options: Any,
    ) -> Party[Any]:
        return FrostSigner(session_id, share, signers, message, rng=rng, hedge_key=hedge_key, **options)

    def verify(self, group_public_key: Point, message: bytes, signature: Signature) -> bool:
        if isinstance(signature, EcdsaSignature):
            return False
        return bool(self.suite.verify(signing_public_key(self.suite, group_public_key), message, signature))

    def key_fields(self, group_public_key: Point) -> dict[str, bytes]:
        # A Taproot output commits to the tweaked key Q (BIP-341, key path only), so that
        # is the key signatures verify under; the untweaked even-y key P is what a wallet
        # needs to rebuild the output or add a script tree later.
        if self.suite.bip340:
            return {
                "public_key": _secp256k1(taproot.output_key(group_public_key, None)).x_bytes,
                "internal_key": _secp256k1(taproot.even_y(group_public_key)).x_bytes,
            }
        return {"public_key": group_public_key.encode()}


class Dkls23Scheme(Scheme):
    """Threshold ECDSA on secp256k1: DKLs23 (mpc/ecdsa_setup.py, mpc/ecdsa_sign.py)."""

    name = ECDSA_SCHEME
    curve = "secp256k1"
    signs_digest = True
    exact_signers = True
    has_setup = True
    recoverable = True
    setup_extension = ECDSA_SETUP

    def dkg_party(
        self,
        session_id: bytes,
        me: int,
        threshold: int,
        parties: Sequence[int],
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
    ) -> DkgParty:
        # The key is a Shamir sharing like FROST's; the DKG's proofs of knowledge use
        # secp256k1's FROST suite, and the share is tagged with this scheme.
        return DkgParty(
            FROST_SECP256K1, session_id, me, threshold, parties, scheme=self.name, rng=rng, hedge_key=hedge_key
        )

    def setup_party(
        self, session_id: bytes, share: KeyShare, *, rng: RandomBytes = secrets.token_bytes, hedge_key: bytes = b""
    ) -> Party[KeyShare]:
        return EcdsaSetupParty(session_id, share, rng=rng, hedge_key=hedge_key)

    def decode_setup(self, raw: bytes) -> EcdsaSetup:
        return EcdsaSetup.decode(raw)

    def signer(
        self,
        session_id: bytes,
        share: KeyShare,
        signers: Sequence[int],
        message: bytes,
        *,
        rng: RandomBytes = secrets.token_bytes,
        hedge_key: bytes = b"",
        setup: Any = None,
        **options: Any,
    ) -> Party[Any]:
        return EcdsaSigner(session_id, share, signers, message, rng=rng, hedge_key=hedge_key, setup=setup, **options)

    def verify(self, group_public_key: Point, message: bytes, signature: Signature) -> bool:
        # The recovery id must recover the group key too: Ethereum names the signer by
        # it, and a wrong one would name another account.
        if not isinstance(signature, EcdsaSignature) or not isinstance(group_public_key, Secp256k1Point):
            return False
        if len(message) != ecdsa.DIGEST_LEN or not ecdsa.verify(group_public_key, message, signature):
            return False
        try:
            recovered = ecdsa.recover(message, signature)
        except ValueError:
            return False
        return recovered.encode() == group_public_key.encode()

    def key_fields(self, group_public_key: Point) -> dict[str, bytes]:
        return {"public_key": _secp256k1(group_public_key).encode()}

    def signature_from(self, raw: bytes, recovery_id: object = None) -> Signature:
        if type(recovery_id) is not int or not 0 <= recovery_id <= 3:
            raise ValueError("the ECDSA result has no valid recovery id")
        return EcdsaSignature.from_bytes(raw, recovery_id)


def _secp256k1(point: Point) -> Secp256k1Point:
    if not isinstance(point, Secp256k1Point):
        raise UsageError("not a secp256k1 point")
    return point


SCHEMES: Mapping[str, Scheme] = {
    s.name: s for s in (*(FrostScheme(suite) for suite in SUITES.values()), Dkls23Scheme())
}
"""Every scheme, by name; the same names as :data:`~harbour.mpc.keyshare.SCHEME_CURVES`."""


def scheme_by_name(name: str) -> Scheme:
    try:
        return SCHEMES[name]
    except (KeyError, TypeError):
        raise UnknownScheme(f"unknown scheme {name!r}; known: {', '.join(SCHEMES)}") from None


def scheme_of(share: KeyShare | PublicKeyPackage) -> Scheme:
    """The scheme of a key share or public key package."""
    return scheme_by_name(share.scheme)
