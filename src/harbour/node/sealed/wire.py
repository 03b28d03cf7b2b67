"""The wire format of a sealed message: its header, its framing, and the parser both ends share.

Everything here is public (the relay reads the header to route on ``to``) and
nothing here is trusted: :func:`read_header` checks structure only, and a node acts
on a message only once :func:`harbour.node.sealed.receive.open_sealed` has
authenticated it. The format is described in :mod:`harbour.node.sealed`.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cbor2

from harbour.crypto.shamir import MAX_PARTIES
from harbour.mpc.envelope import SESSION_ID_LEN
from harbour.node.identity import is_node_id
from harbour.node.sealed.errors import SealedError
from harbour.util import cbor

SEALED_VERSION = 2
MAX_SEALED_LEN = 4 * 2**20
"""Refused unread above this: four times the largest payload a protocol accepts."""
MAX_HEADER_LEN = 1024
MAX_PROTOCOL_LEN = 128
MAX_ROUND = 2**32 - 1
MAX_SEQ = 2**63 - 1
SIGNATURE_LEN = 64
KEY_LEN = 32
TAG_LEN = 16
SIGN_DOMAIN = b"harbour/sealed/sign/v2\x00"

Mode = Literal["sealed", "signed"]
MODES: tuple[Mode, ...] = ("sealed", "signed")

_PROTOCOL = re.compile(r"[A-Za-z0-9._/-]{1,128}")
_SEALED_KEYS = frozenset({"v", "header", "body"})
_SIGNED_KEYS = frozenset({"v", "header", "body", "signature"})
_HEADER_KEYS = frozenset(
    {"v", "session_id", "protocol", "round", "from", "to", "from_party", "to_party", "seq", "mode"}
)
_LEN = struct.Struct(">I")

Roster = Mapping[str, int]
"""One session's participants: node id -> the party index that node plays in it."""


@dataclass(frozen=True, slots=True)
class SealedHeader:
    """The clear part of a sealed message: routing, binding and ordering data."""

    session_id: bytes
    protocol: str
    round: int
    from_node: str
    to_node: str
    from_party: int
    to_party: int
    seq: int
    mode: Mode

    def encode(self) -> bytes:
        return cbor2.dumps(
            {
                "v": SEALED_VERSION,
                "session_id": self.session_id,
                "protocol": self.protocol,
                "round": self.round,
                "from": self.from_node,
                "to": self.to_node,
                "from_party": self.from_party,
                "to_party": self.to_party,
                "seq": self.seq,
                "mode": self.mode,
            },
            canonical=True,
        )


def _nonce(seq: int) -> bytes:
    return bytes(4) + seq.to_bytes(8, "big")


def _signed_message(header: bytes, body: bytes) -> bytes:
    return SIGN_DOMAIN + _LEN.pack(len(header)) + header + body


def _is_party(value: object) -> bool:
    return type(value) is int and 1 <= value <= MAX_PARTIES


def _check_roster(roster: Roster) -> None:
    for node, party in roster.items():
        if not is_node_id(node) or not _is_party(party):
            raise ValueError(f"roster entry {node!r}: {party!r} is not node id -> party in 1..{MAX_PARTIES}")
    if len(set(roster.values())) != len(roster):
        raise ValueError("roster gives two nodes the same party")


@dataclass(frozen=True, slots=True)
class _Parsed:
    header: SealedHeader
    header_bytes: bytes
    body: bytes
    signature: bytes | None


def _malformed(what: str) -> SealedError:
    return SealedError("malformed", f"malformed sealed message: {what}")


def _canonical_map(data: bytes, what: str) -> dict[Any, Any]:
    """One canonical CBOR map and nothing after it, with a supported ``v``."""
    try:
        decoded = cbor.decode(data)
    except cbor.InvalidCbor as exc:
        raise _malformed(f"the {what} is truncated or not valid CBOR") from exc
    obj = decoded.value
    if type(obj) is not dict:
        raise _malformed(f"the {what} is not a CBOR map")
    if type(obj.get("v")) is not int or obj["v"] != SEALED_VERSION:
        raise SealedError("version", f"unsupported sealed message version {obj.get('v')!r} in the {what}")
    if not decoded.canonical:
        if decoded.trailing:
            raise _malformed(f"{decoded.trailing} unexpected bytes after the {what}")
        raise _malformed(f"the {what} is not canonically encoded")
    return obj


def _header_from(obj: dict[Any, Any]) -> SealedHeader:
    if set(obj) != _HEADER_KEYS:
        raise _malformed("the header has missing or unexpected fields")
    sid, protocol, rnd, seq, mode = obj["session_id"], obj["protocol"], obj["round"], obj["seq"], obj["mode"]
    if type(sid) is not bytes or len(sid) != SESSION_ID_LEN:
        raise _malformed(f"the session id must be {SESSION_ID_LEN} bytes")
    if type(protocol) is not str or not _PROTOCOL.fullmatch(protocol):
        raise _malformed("the protocol name is not 1..128 of A-Z a-z 0-9 . _ / -")
    if type(rnd) is not int or not 0 <= rnd <= MAX_ROUND:
        raise _malformed("the round is not an integer in range")
    if not is_node_id(obj["from"]) or not is_node_id(obj["to"]):
        raise _malformed("from and to must be node ids (32 lowercase hex digits)")
    if not _is_party(obj["from_party"]) or not _is_party(obj["to_party"]):
        raise _malformed(f"party indices must be integers in 1..{MAX_PARTIES}")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise _malformed(f"seq must be an integer in 0..{MAX_SEQ}")
    if mode not in MODES:
        raise _malformed(f"mode must be one of {', '.join(MODES)}")
    return SealedHeader(sid, protocol, rnd, obj["from"], obj["to"], obj["from_party"], obj["to_party"], seq, mode)


def _parse(data: bytes) -> _Parsed:
    if len(data) > MAX_SEALED_LEN:
        raise SealedError("too-large", f"a sealed message of {len(data)} bytes exceeds {MAX_SEALED_LEN}")
    data = bytes(data)
    outer = _canonical_map(data, "message")
    if set(outer) not in (_SEALED_KEYS, _SIGNED_KEYS):
        raise _malformed("missing or unexpected fields")
    header_bytes, body, signature = outer["header"], outer["body"], outer.get("signature")
    if type(header_bytes) is not bytes or not 0 < len(header_bytes) <= MAX_HEADER_LEN:
        raise _malformed(f"the header must be 1..{MAX_HEADER_LEN} bytes")
    if type(body) is not bytes:
        raise _malformed("the body must be bytes")
    header = _header_from(_canonical_map(header_bytes, "header"))
    if header.mode == "sealed":
        if signature is not None:
            raise _malformed("a sealed message carries no signature")
        if len(body) < TAG_LEN:
            raise _malformed("the ciphertext is shorter than its authentication tag")
    elif type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
        raise _malformed(f"a signed message carries a {SIGNATURE_LEN}-byte signature")
    return _Parsed(header, header_bytes, body, signature)


def read_header(data: bytes) -> SealedHeader:
    """The header of a sealed message, structurally checked but NOT authenticated.

    For a relay that routes on ``to_node`` and for logs; a node acts only on what
    :func:`open_sealed` returns.
    """
    return _parse(data).header
