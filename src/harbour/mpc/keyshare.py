"""The key share: what every key-generation protocol outputs and every signer loads.

One structure for every scheme (FROST, Taproot, and the threshold ECDSA built on
the same Shamir sharing), tagged with the scheme and curve and versioned, so a
share file is never used under the wrong protocol. ``serialize`` returns the
secret share in the clear: callers encrypt it before it leaves memory (the
key-file and node layers do).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from harbour.crypto.ed25519 import ED25519
from harbour.crypto.group import Group, GroupError, Point
from harbour.crypto.secp256k1 import SECP256K1
from harbour.crypto.shamir import (
    MAX_PARTIES,
    DealtKey,
    SharingError,
    check_identifiers,
)
from harbour.mpc.ecdsa_record import EXTENSION as ECDSA_SETUP
from harbour.mpc.ecdsa_record import SCHEME as ECDSA_SCHEME
from harbour.mpc.ecdsa_record import checked_setup
from harbour.mpc.keyshare_error import KeyShareError as KeyShareError

KEYSHARE_VERSION = 1
GROUPS: dict[str, Group] = {"secp256k1": SECP256K1, "ed25519": ED25519}
SCHEME_CURVES: dict[str, str] = {
    "frost-secp256k1": "secp256k1",
    "frost-taproot": "secp256k1",
    "frost-ed25519": "ed25519",
    ECDSA_SCHEME: "secp256k1",
}
"""Every scheme a key share may be tagged with, and the curve its share lives on."""


def group_by_name(name: str) -> Group:
    try:
        return GROUPS[name]
    except KeyError:
        raise KeyShareError(f"unknown curve {name!r}") from None


@dataclass(frozen=True)
class PublicKeyPackage:
    """The public outcome of a key generation, identical at every party."""

    scheme: str
    curve: str
    threshold: int
    parties: tuple[int, ...]
    group_public_key: Point
    verification_shares: Mapping[int, Point]

    @property
    def group(self) -> Group:
        return group_by_name(self.curve)

    def fingerprint(self) -> bytes:
        """SHA-256 over the canonical CBOR of everything public about this sharing.

        Names one sharing of one key: scheme, curve, threshold, parties, group key
        and every verification share. A refresh or reshare keeps the group key but
        changes the verification shares, so it changes the fingerprint too: files,
        backups and protocol sessions of shares that cannot be combined are never
        taken for the same key. Protocol transcripts bind it; key files and backups
        record it (in hex).
        """
        obj = {
            "domain": "harbour/public-key-package/v1",
            "scheme": self.scheme,
            "curve": self.curve,
            "threshold": self.threshold,
            "parties": list(self.parties),
            "group_public_key": self.group_public_key.encode(),
            "verification_shares": {i: self.verification_shares[i].encode() for i in self.parties},
        }
        return hashlib.sha256(cbor2.dumps(obj, canonical=True)).digest()

    def check_consistent(self) -> None:
        """Every verification share must lie on one degree ``t - 1`` polynomial with the group key at 0.

        The first ``t`` shares fix the polynomial; the group key and each further share
        must be its value (Lagrange interpolation in the exponent). A single wrong share
        would otherwise make a failed signature blame the wrong signer.
        """
        g = self.group
        base = list(self.parties[: self.threshold])

        def interpolate(x: int) -> Point:
            weights = {}
            for i in base:
                num, den = 1, 1
                for j in base:
                    if j != i:
                        num = num * (x - j) % g.order
                        den = den * (i - j) % g.order
                weights[i] = num * pow(den, -1, g.order) % g.order
            return g.sum(self.verification_shares[i] * weights[i] for i in base)

        if interpolate(0) != self.group_public_key:
            raise KeyShareError("verification shares do not interpolate to the group public key")
        for j in self.parties[self.threshold :]:
            if interpolate(j) != self.verification_shares[j]:
                raise KeyShareError(f"verification share of party {j} is not on the sharing polynomial")


@dataclass(frozen=True)
class KeyShare:
    """One party's share of a t-of-n key, with the public data it needs to sign."""

    scheme: str
    curve: str
    threshold: int
    parties: tuple[int, ...]
    identifier: int
    secret_share: int = field(repr=False)
    group_public_key: Point
    verification_shares: Mapping[int, Point]
    extensions: Mapping[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if SCHEME_CURVES.get(self.scheme) != self.curve:
            raise KeyShareError(f"scheme {self.scheme!r} is unknown or not a scheme on curve {self.curve!r}")
        if type(self.threshold) is not int or type(self.identifier) is not int:
            raise KeyShareError("threshold and identifier must be integers")
        if not all(isinstance(k, str) and isinstance(v, bytes) for k, v in self.extensions.items()):
            raise KeyShareError("extensions map names to byte strings")
        try:
            check_identifiers(self.parties)
        except SharingError as exc:
            raise KeyShareError(str(exc)) from exc
        if not 1 <= self.threshold <= len(self.parties) <= MAX_PARTIES:
            raise KeyShareError("threshold must be between 1 and the number of parties")
        if self.identifier not in self.parties:
            raise KeyShareError("the share's identifier is not one of the parties")
        if set(self.verification_shares) != set(self.parties):
            raise KeyShareError("need exactly one verification share per party")

    @property
    def group(self) -> Group:
        return group_by_name(self.curve)

    @property
    def public(self) -> PublicKeyPackage:
        return PublicKeyPackage(
            self.scheme, self.curve, self.threshold, self.parties, self.group_public_key, self.verification_shares
        )

    def check_consistent(self) -> None:
        """The share matches this party's verification share, which fits the group key."""
        g = self.group
        if not 0 < self.secret_share < g.order:
            raise KeyShareError("secret share out of range")
        if g.base_mul(self.secret_share) != self.verification_shares[self.identifier]:
            raise KeyShareError("secret share does not match this party's verification share")
        self.public.check_consistent()
        if self.scheme == ECDSA_SCHEME and ECDSA_SETUP in self.extensions:
            checked_setup(self.extensions[ECDSA_SETUP], self.identifier, self.parties)

    # -- encoding ------------------------------------------------------------------
    def serialize(self) -> bytes:
        """Canonical CBOR, versioned. Contains the secret share: encrypt before storing."""
        g = self.group
        obj: dict[str, Any] = {
            "v": KEYSHARE_VERSION,
            "scheme": self.scheme,
            "curve": self.curve,
            "t": self.threshold,
            "parties": list(self.parties),
            "id": self.identifier,
            "share": g.encode_scalar(self.secret_share),
            "pk": self.group_public_key.encode(),
            "vs": {i: p.encode() for i, p in self.verification_shares.items()},
            "ext": dict(self.extensions),
        }
        return cbor2.dumps(obj, canonical=True)

    @classmethod
    def deserialize(cls, data: bytes) -> KeyShare:
        """Parse and fully validate; a tampered or truncated encoding raises KeyShareError."""
        try:
            obj = cbor2.loads(data)
        except Exception as exc:
            raise KeyShareError("key share is not valid CBOR (truncated or corrupted?)") from exc
        expected = {"v", "scheme", "curve", "t", "parties", "id", "share", "pk", "vs", "ext"}
        if not isinstance(obj, dict) or set(obj) != expected:
            raise KeyShareError("key share has missing or unexpected fields")
        if obj["v"] != KEYSHARE_VERSION:
            raise KeyShareError(f"unsupported key share version {obj['v']!r}")
        try:
            g = group_by_name(obj["curve"])
            parties = tuple(obj["parties"])
            vs_raw = obj["vs"]
            if not isinstance(vs_raw, dict) or not isinstance(obj["ext"], dict):
                raise KeyShareError("key share maps have the wrong type")
            share = cls(
                scheme=str(obj["scheme"]),
                curve=obj["curve"],
                threshold=obj["t"],
                parties=parties,
                identifier=obj["id"],
                secret_share=g.decode_scalar(obj["share"]),
                group_public_key=g.decode_point(obj["pk"]),
                verification_shares={int(i): g.decode_point(p) for i, p in vs_raw.items()},
                extensions=dict(obj["ext"]),
            )
        except (GroupError, TypeError, ValueError) as exc:
            if isinstance(exc, KeyShareError):
                raise
            raise KeyShareError(f"malformed key share: {exc}") from exc
        if share.serialize() != bytes(data):
            raise KeyShareError("key share encoding is not canonical")
        share.check_consistent()
        return share


def is_own_share(share: KeyShare | None, party: int, public: PublicKeyPackage) -> bool:
    """Whether ``share`` is party ``party``'s own share of the key ``public``.

    A party that contributes from its share (a resharing dealer, a repair helper)
    must hold exactly this, or what it deals would be for another key or another party.
    """
    return share is not None and share.identifier == party and share.public == public


def shares_from_dealer(scheme: str, curve: str, dealt: DealtKey) -> dict[int, KeyShare]:
    """Key shares for a trusted-dealer sharing (RFC 9591 appendix C): importing a key.

    The output is indistinguishable in form from a DKG's, so an imported key signs,
    refreshes and reshares like any other.
    """
    parties = tuple(sorted(dealt.shares))
    return {
        i: KeyShare(
            scheme=scheme,
            curve=curve,
            threshold=dealt.threshold,
            parties=parties,
            identifier=i,
            secret_share=s,
            group_public_key=dealt.group_public_key,
            verification_shares=dict(dealt.verification_shares),
        )
        for i, s in dealt.shares.items()
    }
