"""Governance entries: one change set of an organisation, chained by hash and signed by its admins.

An entry names its organisation, its sequence number, the hash of the entry
before it (32 zero bytes for the genesis), the admin who proposed it, when it
was proposed, and its changes (:mod:`harbour.governance.changes`). Its bytes are
canonical CBOR (RFC 8949 section 4.2) and :meth:`Entry.decode` accepts nothing
else, so one entry has one encoding and one hash.

The admins sign the entry's bytes with Ed25519 (RFC 8032) under
:data:`SIGNING_DOMAIN`, the same approval keys they approve withdrawals with,
so a signature on an entry verifies as nothing else. Which signatures make an
entry effective (the proposer's and enough other admins' in force before it)
is :mod:`harbour.governance.state`; a :class:`SignedEntry` only carries them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harbour.governance import fields as f
from harbour.governance.changes import Change, decode_change, encode_change
from harbour.governance.fields import GovernanceError

VERSION: Final = 1
SIGNING_DOMAIN: Final = b"harbour/governance-entry/v1\x00"
"""Prefix of what an admin signs: a signature over an entry verifies as nothing else."""
HASH_DOMAIN: Final = b"harbour/governance-hash/v1\x00"
GENESIS_PARENT: Final = bytes(32)
MAX_CHANGES: Final = 256
MAX_ENTRY_LEN: Final = 512 * 1024
MAX_SIGNATURES: Final = 64
MAX_SEQ: Final = 2**63 - 1

_ENTRY_KEYS: Final = frozenset({"version", "org", "seq", "prev", "proposer", "at", "changes"})
_SIGNED_KEYS: Final = frozenset({"entry", "signatures"})


@dataclass(frozen=True)
class Entry:
    """One change set; ``proposer`` is the user id of the admin who proposed it."""

    org: str
    seq: int
    prev: bytes
    proposer: str
    at: int
    changes: tuple[Change, ...]

    def __post_init__(self) -> None:
        f.text("org", self.org)
        f.uint("seq", self.seq, 0, MAX_SEQ)
        f.digest("prev", self.prev)
        f.text("proposer", self.proposer)
        f.uint("at", self.at, 0, MAX_SEQ)
        changes = tuple(self.changes)
        if not 1 <= len(changes) <= MAX_CHANGES:
            raise GovernanceError("malformed", f"an entry makes 1 to {MAX_CHANGES} changes")
        object.__setattr__(self, "changes", changes)
        if (self.seq == 0) != (self.prev == GENESIS_PARENT):
            raise GovernanceError("malformed", "only the genesis (seq 0) has the all-zero parent, and it must")

    @property
    def genesis(self) -> bool:
        return self.seq == 0

    def encode(self) -> bytes:
        data = bytes(
            cbor2.dumps(
                {
                    "version": VERSION,
                    "org": self.org,
                    "seq": self.seq,
                    "prev": self.prev,
                    "proposer": self.proposer,
                    "at": self.at,
                    "changes": [encode_change(c) for c in self.changes],
                },
                canonical=True,
            )
        )
        if len(data) > MAX_ENTRY_LEN:
            raise GovernanceError("malformed", f"the entry is {len(data)} bytes, more than {MAX_ENTRY_LEN}")
        return data

    def hash(self) -> bytes:
        return entry_hash(self.encode())

    @classmethod
    def decode(cls, data: bytes) -> Entry:
        obj = f.exact_map("an entry", f.canonical(data, "the entry", MAX_ENTRY_LEN), _ENTRY_KEYS)
        if type(obj["version"]) is not int or obj["version"] != VERSION:
            raise GovernanceError(
                "malformed", f"unsupported entry version {obj['version']!r:.20} (this Harbour reads 1)"
            )
        changes = obj["changes"]
        if not isinstance(changes, list):
            raise GovernanceError("malformed", "changes must be a list")
        entry = cls(
            org=obj["org"],
            seq=obj["seq"],
            prev=obj["prev"],
            proposer=obj["proposer"],
            at=obj["at"],
            changes=tuple(decode_change(c) for c in changes),
        )
        if entry.encode() != data:
            raise GovernanceError("malformed", "the entry is not in its canonical form")
        return entry


def entry_hash(data: bytes) -> bytes:
    """The hash the next entry names as ``prev``: SHA-256 over a domain tag and the entry's bytes."""
    return hashlib.sha256(HASH_DOMAIN + bytes(data)).digest()


def sign_entry(private_key: Ed25519PrivateKey, data: bytes) -> bytes:
    """An admin's signature over an entry's bytes (64 bytes)."""
    return private_key.sign(SIGNING_DOMAIN + bytes(data))


def verify_entry_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    if not f.acceptable_key(public_key) or type(signature) is not bytes or len(signature) != f.SIGNATURE_LEN:
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, SIGNING_DOMAIN + bytes(data))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class SignedEntry:
    """An entry's bytes with the admins' ``(public key, signature)`` pairs, sorted by key, each key once."""

    data: bytes
    signatures: tuple[tuple[bytes, bytes], ...]

    def __post_init__(self) -> None:
        signatures = tuple(self.signatures)
        if len(signatures) > MAX_SIGNATURES:
            raise GovernanceError("malformed", f"at most {MAX_SIGNATURES} signatures")
        for item in signatures:
            if not isinstance(item, tuple | list) or len(item) != 2:
                raise GovernanceError("malformed", "a signature is a (public key, signature) pair")
            f.public_key("a signer's key", item[0])
            if type(item[1]) is not bytes or len(item[1]) != f.SIGNATURE_LEN:
                raise GovernanceError("malformed", f"a signature is {f.SIGNATURE_LEN} bytes")
        pairs = tuple(sorted((bytes(k), bytes(s)) for k, s in signatures))
        if len({k for k, _ in pairs}) != len(pairs):
            raise GovernanceError("malformed", "a key signed the entry twice")
        object.__setattr__(self, "signatures", pairs)
        object.__setattr__(self, "entry", Entry.decode(self.data))

    entry: Entry = field(init=False, repr=False, compare=False)
    """:attr:`data` decoded (strictly), set on construction."""

    @property
    def hash(self) -> bytes:
        return entry_hash(self.data)

    def encode(self) -> bytes:
        return bytes(
            cbor2.dumps({"entry": self.data, "signatures": [list(p) for p in self.signatures]}, canonical=True)
        )

    @classmethod
    def decode(cls, data: bytes) -> SignedEntry:
        obj = f.exact_map("a signed entry", f.canonical(data, "the signed entry", MAX_ENTRY_LEN + 8192), _SIGNED_KEYS)
        signatures = obj["signatures"]
        if not isinstance(signatures, list) or not all(isinstance(p, list) and len(p) == 2 for p in signatures):
            raise GovernanceError("malformed", "signatures must be a list of [public key, signature] pairs")
        if type(obj["entry"]) is not bytes:
            raise GovernanceError("malformed", "entry must be bytes")
        signed = cls(obj["entry"], tuple((p[0], p[1]) for p in signatures))
        if signed.encode() != data:
            raise GovernanceError("malformed", "the signed entry is not in its canonical form (signatures unsorted?)")
        return signed


def signed(entry: Entry, keys: Sequence[Ed25519PrivateKey]) -> SignedEntry:
    """``entry`` signed by each of ``keys`` (for tests, the demo and single-process tools)."""
    data = entry.encode()
    pairs = tuple((k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw), sign_entry(k, data)) for k in keys)
    return SignedEntry(data, pairs)
