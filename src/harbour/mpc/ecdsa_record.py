"""The DKLs23 pairwise setup as a key share stores it, under its ``dkls23`` extension.

The setup protocol (mpc/ecdsa_setup.py) makes it and the signer (mpc/ecdsa_sign.py)
uses it, but the key share itself (mpc/keyshare.py) must check it too, since a
share that decodes must be usable: so the stored form lives here, below all three,
and needs nothing but the OT-extension setups it is made of. See
mpc/ecdsa_setup.py for what each part is.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any

import cbor2

from harbour.mpc.keyshare_error import KeyShareError
from harbour.mpc.ot_extension import ExtensionReceiverSetup, ExtensionSenderSetup

SCHEME = "ecdsa-secp256k1"
"""The scheme whose key shares carry this setup."""
EXTENSION = "dkls23"
"""The key-share extension the encoded setup is stored under."""
SETUP_VERSION = 1
SEED_LEN = 32


@dataclass(frozen=True)
class PairSetup:
    """What one party keeps for one peer."""

    as_bob: ExtensionReceiverSetup = field(repr=False)
    as_alice: ExtensionSenderSetup = field(repr=False)
    zero_seed: bytes = field(repr=False)


@dataclass(frozen=True)
class EcdsaSetup:
    """This party's pairwise setup with every other party of the key.

    ``compromised`` names the peers whose setup with us must not sign any more
    (a failed KOS check: :class:`~harbour.mpc.ecdsa_sign.SetupCompromised`). It
    lives here, inside the encrypted and authenticated key share, so that it
    cannot be lifted by deleting a file; only a new setup (a refresh, a
    resharing, a repair) replaces it. Without marks the encoding is exactly the
    one made before marks existed; with marks it gains a ``"compromised"`` list,
    which older readers refuse rather than ignore.
    """

    peers: dict[int, PairSetup] = field(repr=False)
    compromised: frozenset[int] = frozenset()
    source: bytes = field(default=b"", repr=False, compare=False)
    """The exact bytes :meth:`decode` read this from (empty for a setup built here), so a caller that
    keeps decoded setups can hand one to a signer that checks it is its share's own."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.compromised) - set(self.peers))
        if unknown:
            raise KeyShareError(f"ECDSA setup marks parties {unknown} compromised, but has no setup with them")

    def encode(self) -> bytes:
        obj: dict[str, Any] = {
            "v": SETUP_VERSION,
            "peers": {
                j: {"bob": p.as_bob.encode(), "alice": p.as_alice.encode(), "zero": p.zero_seed}
                for j, p in self.peers.items()
            },
        }
        if self.compromised:
            obj["compromised"] = sorted(self.compromised)
        return bytes(cbor2.dumps(obj, canonical=True))

    @classmethod
    def decode(cls, data: bytes) -> EcdsaSetup:
        try:
            obj = cbor2.loads(data)
        except Exception as exc:
            raise KeyShareError("ECDSA setup is not valid CBOR") from exc
        if not isinstance(obj, dict) or set(obj) - {"compromised"} != {"v", "peers"} or obj["v"] != SETUP_VERSION:
            raise KeyShareError("ECDSA setup has the wrong version or shape")
        compromised = _decode_marks(obj.get("compromised"))
        peers: dict[int, PairSetup] = {}
        raw_peers: Any = obj["peers"]
        if not isinstance(raw_peers, dict):
            raise KeyShareError("ECDSA setup peers must be a map")
        for j, p in raw_peers.items():
            if type(j) is not int or not isinstance(p, dict) or set(p) != {"bob", "alice", "zero"}:
                raise KeyShareError("ECDSA setup has a malformed peer entry")
            try:
                if not isinstance(p["zero"], bytes) or len(p["zero"]) != SEED_LEN:
                    raise ValueError("zero-sharing seed has the wrong length")
                peers[j] = PairSetup(
                    ExtensionReceiverSetup.decode(p["bob"]), ExtensionSenderSetup.decode(p["alice"]), p["zero"]
                )
            except (ValueError, TypeError) as exc:
                raise KeyShareError(f"ECDSA setup for peer {j} is malformed: {exc}") from exc
        setup = cls(peers, compromised, bytes(data))
        if setup.encode() != setup.source:
            raise KeyShareError("ECDSA setup encoding is not canonical")
        return setup


def _decode_marks(raw: object) -> frozenset[int]:
    """Absent, or a non-empty, strictly increasing list of party identifiers: one encoding per set."""
    if raw is None:
        return frozenset()
    if not isinstance(raw, list) or not raw or not all(type(j) is int for j in raw):
        raise KeyShareError("ECDSA setup compromised marks must be a non-empty list of party identifiers")
    if raw != sorted(set(raw)):
        raise KeyShareError("ECDSA setup compromised marks must be sorted, without duplicates")
    return frozenset(raw)


def checked_setup(
    raw: bytes, identifier: int, parties: Collection[int], decoded: EcdsaSetup | None = None
) -> EcdsaSetup:
    """Party ``identifier``'s setup decoded from ``raw``, checked to cover exactly its peers in ``parties``.

    ``decoded`` is that setup as a caller already decoded it; it is used only if it
    was decoded from exactly ``raw``.
    """
    setup = decoded if decoded is not None and decoded.source == raw else EcdsaSetup.decode(raw)
    if set(setup.peers) != set(parties) - {identifier}:
        raise KeyShareError("ECDSA setup does not cover exactly the other parties of the key")
    return setup
