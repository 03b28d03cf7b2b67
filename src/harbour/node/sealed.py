"""Sealed envelopes: protocol messages between nodes, authenticated and (unless public) encrypted.

Signer nodes talk through a coordinator that stores and forwards their messages and
is not trusted. Every :class:`~harbour.mpc.envelope.Envelope` a node sends is
therefore *sealed* to exactly one recipient node, so that the relay can neither read
a message, forge one, send one to another node, nor replay, reorder or drop one
without the recipient noticing. A broadcast envelope (``recipient=None``) is sealed
once per recipient party; each copy is a separate message with its own sequence
number.

A sealed message is one canonical CBOR map ``{"v": 2, "header": <bytes>, "body":
<bytes>}``, with ``"signature": <64 bytes>`` added in the ``signed`` mode. The
header is itself canonical CBOR, readable by the relay (it routes on ``to``)::

    {"v": 2, "session_id": <32 bytes>, "protocol": str, "round": int,
     "from": <sender node id>, "to": <recipient node id>,
     "from_party": int, "to_party": int, "seq": int, "mode": "sealed" | "signed"}

Two modes:

- ``sealed`` (every secret message, and every message once the pair has a key):
  ``body = ChaCha20-Poly1305(key, nonce = 4 zero bytes || u64(seq), envelope.encode(),
  aad = header)`` (RFC 8439), where ``key`` is the pair's key for this phase and
  direction, agreed from the two nodes' *ephemeral* session keys
  (:mod:`harbour.node.handshake`). Only the two nodes of the pair ever held it, and
  neither does once the session is over: a message recorded today cannot be opened
  with anything stolen tomorrow (forward secrecy). The sequence number is unique per
  key, so the nonce is never reused.
- ``signed`` (only a round the protocol declares public, sent before the peer's
  hello has arrived: FROST's commitments, the DKG's first broadcast): ``body`` is
  the envelope in the clear and ``signature = Ed25519(sender, SIGN_DOMAIN ||
  u32(len(header)) || header || body)`` (RFC 8032). The recipient refuses this mode
  for any round its own protocol does not declare public, so a bug on the sender's
  side cannot put a secret on the wire in the clear.

What each part buys:

- The relay cannot read a secret: only the two ends of the pair derive its key.
- It cannot forge or alter: the AEAD tag (or the signature) covers the header and
  body, under a key only the two ends have (or the sender's identity key).
  Changing ``to`` (re-targeting) breaks it, and a copy delivered unchanged to
  another node is not addressed to it and not under its key.
- A node cannot speak for another party: the decrypted envelope must carry the
  header's session, protocol, round and sender party, and be addressed to the
  header's recipient party (or be a broadcast), and the party numbers must be the
  ones the session's roster gives the two nodes.
- Replay, reordering and dropping: ``seq`` counts the messages from one sender to
  one recipient in one phase (0, 1, 2, ...), and :class:`ReplayGuard` accepts only
  the next one. An old number is a replay; a number ahead of the expected one means
  a message before it is missing (dropped, or held back by the relay) and is refused
  until the missing one has been accepted. A message dropped after the last one
  delivered shows as a round that never completes; :meth:`ReplayGuard.expected`
  says how many were accepted from whom.

Out of scope: hiding who talks to whom, when, and how much (the header and sizes
are in the clear), and the relay withholding messages (liveness). A ``sealed``
message is authenticated by a key both ends hold, so a recipient cannot prove to
a third party who wrote it; culprit attribution (:attr:`SealedError.culprit`) is
for the recipient's own decisions, as it always was.

This module is sans-I/O: it turns bytes into bytes and keeps the replay state in a
plain object the node persists (:meth:`ReplayGuard.to_bytes`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import cbor2
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from harbour.crypto.shamir import MAX_PARTIES
from harbour.mpc.envelope import SESSION_ID_LEN, Envelope
from harbour.node.identity import NodeDescriptor, NodeIdentity, is_node_id
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
GUARD_FORMAT = "harbour-replay-guard"
GUARD_VERSION = 1

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

KeyLookup = Callable[[bytes, str, str], bytes | None]
"""``(phase session id, sender node id, recipient node id) -> the pair's key``, or None if not agreed yet."""

IsPublic = Callable[[bytes, str, int], bool]
"""``(phase session id, protocol, round) -> whether that round's messages are public``."""

Reason = Literal[
    "too-large",
    "malformed",
    "version",
    "not-for-us",
    "unknown-session",
    "unknown-sender",
    "no-key",
    "bad-signature",
    "decryption-failed",
    "not-public",
    "mismatch",
    "replay",
    "out-of-order",
]


class SealedError(ValueError):
    """A sealed message refused, and why.

    ``reason`` is for code: ``"too-large"``, ``"malformed"`` (truncated, not canonical,
    wrong fields or types), ``"version"``, ``"not-for-us"``, ``"unknown-session"``,
    ``"unknown-sender"``, ``"no-key"`` (sealed before the sender's hello arrived),
    ``"bad-signature"``, ``"decryption-failed"``, ``"not-public"`` (a secret round sent
    unencrypted), ``"mismatch"`` (header, roster and inner envelope disagree),
    ``"replay"``, ``"out-of-order"``.

    ``culprit`` is the sender's node id when the fault is in content the sender
    authenticated (so it is the sender's doing, not the relay's); otherwise ``None``,
    since an unauthenticated message may come from anyone.
    """

    def __init__(self, reason: Reason, message: str, culprit: str | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.culprit = culprit


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


# -- the construction ---------------------------------------------------------------------------


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


def _header(envelope: Envelope, from_node: str, to_node: str, seq: int, roster: Roster, mode: Mode) -> bytes:
    """Check what the sender is about to say and encode its header (ValueError on a sender's mistake)."""
    _check_roster(roster)
    if to_node == from_node:
        raise ValueError("a node does not seal messages to itself")
    if type(seq) is not int or not 0 <= seq <= MAX_SEQ:
        raise ValueError(f"seq must be an integer in 0..{MAX_SEQ}")
    try:  # the dataclass does not check its field types; the recipient's decoder will
        if Envelope.decode(envelope.encode()) != envelope:
            raise ValueError("it does not survive its own encoding")
    except ValueError as exc:
        raise ValueError(f"the envelope cannot be sealed: {exc}") from exc
    if len(envelope.session_id) != SESSION_ID_LEN:
        raise ValueError(f"session ids are {SESSION_ID_LEN} bytes")
    if not _PROTOCOL.fullmatch(envelope.protocol):
        raise ValueError(f"protocol name {envelope.protocol!r} is not 1..{MAX_PROTOCOL_LEN} of A-Z a-z 0-9 . _ / -")
    if envelope.round > MAX_ROUND:
        raise ValueError(f"round {envelope.round} is out of range")
    from_party = roster.get(from_node)
    to_party = roster.get(to_node)
    if from_party is None or to_party is None:
        raise ValueError("both the sender and the recipient must be in the session's roster")
    if envelope.sender != from_party:
        raise ValueError(f"the envelope's sender is party {envelope.sender}, but this node is party {from_party}")
    if envelope.recipient is not None and envelope.recipient != to_party:
        raise ValueError(f"the envelope is for party {envelope.recipient}, but that node is party {to_party}")
    return SealedHeader(
        envelope.session_id,
        envelope.protocol,
        envelope.round,
        from_node,
        to_node,
        from_party,
        to_party,
        seq,
        mode,
    ).encode()


def _finish(obj: dict[str, Any]) -> bytes:
    sealed: bytes = cbor2.dumps(obj, canonical=True)
    if len(sealed) > MAX_SEALED_LEN:
        raise ValueError(
            f"the sealed message would be {len(sealed)} bytes; recipients refuse more than {MAX_SEALED_LEN}"
        )
    return sealed


def seal(envelope: Envelope, *, key: bytes, from_node: str, to_node: str, seq: int, roster: Roster) -> bytes:
    """Encrypt ``envelope`` from ``from_node`` to ``to_node`` under their pair key for this phase and direction.

    ``roster`` maps the node ids of the envelope's session to their party indices; it
    decides which party this copy is for, so a broadcast envelope is sealed by calling
    this once per recipient node. ``seq`` is the number of messages this sender has
    already sent to this recipient in this phase: the caller keeps that counter (and
    persists it with the session), because the recipient refuses any other number,
    and it is the AEAD nonce. Raises ValueError for arguments that would make a
    message the recipient must refuse.
    """
    if type(key) is not bytes or len(key) != KEY_LEN:
        raise ValueError(f"a pair key is {KEY_LEN} bytes")
    header = _header(envelope, from_node, to_node, seq, roster, "sealed")
    body = ChaCha20Poly1305(key).encrypt(_nonce(seq), envelope.encode(), header)
    return _finish({"v": SEALED_VERSION, "header": header, "body": body})


def sign_public(sender: NodeIdentity, envelope: Envelope, *, to_node: str, seq: int, roster: Roster) -> bytes:
    """Send ``envelope`` in the clear, signed by ``sender``'s identity: for a public round only.

    The caller decides that the round is public (its protocol says so); the recipient
    checks the same against its own protocol and refuses otherwise.
    """
    header = _header(envelope, sender.node_id, to_node, seq, roster, "signed")
    body = envelope.encode()
    signature = sender.sign(_signed_message(header, body))
    return _finish({"v": SEALED_VERSION, "header": header, "body": body, "signature": signature})


# -- parsing ------------------------------------------------------------------------------------


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


# -- opening ------------------------------------------------------------------------------------


def open_sealed(
    me: str,
    data: bytes,
    *,
    known_senders: Mapping[str, NodeDescriptor],
    rosters: Mapping[bytes, Roster],
    guard: ReplayGuard,
    keys: KeyLookup,
    public: IsPublic,
) -> Envelope:
    """Check and open a sealed message addressed to node ``me``; the envelope inside, or SealedError.

    ``known_senders`` are the nodes this node trusts, by node id (installed by the
    operator, never learnt from the relay). ``rosters`` maps each session phase this
    node takes part in to its roster; a message for any other session is refused.
    ``keys`` gives the pair key agreed with the sender for a phase and direction
    (None before its hello); ``public`` says which rounds may travel unencrypted. The
    guard records the message only once every check has passed, so a refused message
    leaves no trace and a forged one cannot use up a sequence number.

    Checks run cheapest first, and nothing is decoded before it is authenticated:
    size, structure, addressee, session, sender, sequence, then the tag (or the
    signature and that the round is public), roster, inner envelope.
    """
    parsed = _parse(data)
    h = parsed.header
    if h.to_node != me:
        raise SealedError("not-for-us", f"message is addressed to node {h.to_node}, not to this node ({me})")
    roster = rosters.get(h.session_id)
    if roster is None:
        raise SealedError("unknown-session", f"this node takes no part in session {h.session_id.hex()}")
    _check_roster(roster)
    sender = known_senders.get(h.from_node)
    if sender is None or h.from_node == me:
        raise SealedError("unknown-sender", f"message claims to come from node {h.from_node}, which is not known here")
    if sender.node_id != h.from_node:
        raise ValueError(f"known_senders lists node {sender.node_id} under the id {h.from_node}")
    guard.check(h.session_id, h.from_node, h.seq)
    if h.mode == "sealed":
        key = keys(h.session_id, h.from_node, me)
        if key is None:
            raise SealedError(
                "no-key", f"a sealed message from node {h.from_node} arrived before its hello: no key to open it"
            )
        try:
            plaintext = ChaCha20Poly1305(key).decrypt(_nonce(h.seq), parsed.body, parsed.header_bytes)
        except InvalidTag:
            raise SealedError(
                "decryption-failed", f"message from node {h.from_node} does not decrypt: forged, altered or misdirected"
            ) from None
    else:
        assert parsed.signature is not None
        try:
            sender.sign_public_key().verify(parsed.signature, _signed_message(parsed.header_bytes, parsed.body))
        except InvalidSignature:
            raise SealedError(
                "bad-signature", f"signature does not verify under the key of node {h.from_node}: forged or altered"
            ) from None
        plaintext = parsed.body

    # From here on the sender authenticated everything we look at: faults are the sender's.
    culprit = h.from_node
    if h.mode == "signed" and not public(h.session_id, h.protocol, h.round):
        raise SealedError(
            "not-public",
            f"node {h.from_node} sent round {h.round} of {h.protocol} unencrypted, and that round is not public",
            culprit,
        )
    if roster.get(h.from_node) != h.from_party:
        raise SealedError(
            "mismatch",
            f"node {h.from_node} claims to be party {h.from_party}, which is not its party in this session",
            culprit,
        )
    if roster.get(me) != h.to_party:
        raise SealedError(
            "mismatch", f"message is for party {h.to_party}, which is not this node's party in this session", culprit
        )
    try:
        env = Envelope.decode(plaintext)
    except ValueError as exc:
        raise SealedError("malformed", f"the envelope inside is malformed: {exc}", culprit) from exc
    if (env.session_id, env.protocol, env.round, env.sender) != (h.session_id, h.protocol, h.round, h.from_party):
        raise SealedError(
            "mismatch", "the envelope inside has another session, protocol, round or sender than its header", culprit
        )
    if env.recipient is not None and env.recipient != h.to_party:
        raise SealedError(
            "mismatch", f"the envelope inside is for party {env.recipient}, its header for {h.to_party}", culprit
        )
    guard.accept(h.session_id, h.from_node, h.seq)
    return env


# -- replay protection ---------------------------------------------------------------------------


class ReplayGuard:
    """Per session and sender, the next sequence number this node will accept.

    Only the exact next number is accepted (contiguous, hence strictly increasing):
    a lower one is a replay, a higher one means messages in between are missing. The
    refused message is not recorded, so once the missing one arrives the relay may
    deliver it again. One integer per (session, sender) is the whole state, so it is
    small enough to persist after every message; a node that restarts from an older
    copy would accept replays of what it accepted since, so persist before acting.
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[tuple[bytes, str], int] = {}

    def expected(self, session_id: bytes, sender: str) -> int:
        """The next seq accepted from ``sender`` in the session: also how many were accepted."""
        return self._next.get((bytes(session_id), sender), 0)

    def check(self, session_id: bytes, sender: str, seq: int) -> None:
        """Raise SealedError unless ``seq`` is the next one; records nothing."""
        want = self.expected(session_id, sender)
        if seq < want:
            raise SealedError(
                "replay", f"message {seq} from node {sender} in this session was already accepted (replayed)"
            )
        if seq > want:
            raise SealedError(
                "out-of-order",
                f"message {seq} from node {sender} arrived while {want} is expected: "
                f"{seq - want} message(s) before it are missing (dropped or reordered)",
            )

    def accept(self, session_id: bytes, sender: str, seq: int) -> None:
        """Record ``seq`` as accepted; SealedError if it is not the next one."""
        self.check(session_id, sender, seq)
        self._next[(bytes(session_id), sender)] = seq + 1

    def forget(self, session_id: bytes) -> None:
        """Drop a finished session's state.

        Only safe once the session is also refused as unknown (out of the rosters
        given to :func:`open_sealed`); otherwise its old messages would be new again.
        """
        for key in [k for k in self._next if k[0] == session_id]:
            del self._next[key]

    def subset(self, session_ids: Iterable[bytes]) -> ReplayGuard:
        """A copy holding only these sessions' state (to persist one session on its own)."""
        wanted = {bytes(s) for s in session_ids}
        guard = ReplayGuard()
        guard._next = {k: v for k, v in self._next.items() if k[0] in wanted}
        return guard

    def merge(self, other: ReplayGuard) -> None:
        """Take over ``other``'s state (a persisted session brought back)."""
        for key, nxt in other._next.items():
            self._next[key] = max(nxt, self._next.get(key, 0))

    def to_bytes(self) -> bytes:
        """``{"format", "v": 1, "next": [[session_id, sender, next_seq], ...]}`` in canonical CBOR, sorted."""
        entries = [[sid, sender, nxt] for (sid, sender), nxt in sorted(self._next.items())]
        return cbor2.dumps({"format": GUARD_FORMAT, "v": GUARD_VERSION, "next": entries}, canonical=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> ReplayGuard:
        """Strict inverse of :meth:`to_bytes` (ValueError on anything else)."""
        data = bytes(data)
        try:
            decoded = cbor.decode(data)
        except cbor.InvalidCbor as exc:
            raise ValueError("replay guard state is truncated or corrupted (not valid CBOR)") from exc
        obj, canonical = decoded.value, decoded.canonical
        if type(obj) is not dict or obj.get("format") != GUARD_FORMAT:
            raise ValueError("not a Harbour replay guard state")
        if type(obj.get("v")) is not int or obj["v"] != GUARD_VERSION:
            raise ValueError(f"unsupported replay guard version {obj.get('v')!r}")
        if set(obj) != {"format", "v", "next"} or type(obj["next"]) is not list or not canonical:
            raise ValueError("replay guard state is malformed")
        guard = cls()
        previous: tuple[bytes, str] | None = None
        for entry in obj["next"]:
            if type(entry) is not list or len(entry) != 3:
                raise ValueError("replay guard entry is not [session_id, sender, next_seq]")
            sid, sender, nxt = entry
            if type(sid) is not bytes or len(sid) != SESSION_ID_LEN or not is_node_id(sender):
                raise ValueError("replay guard entry has a malformed session id or node id")
            if type(nxt) is not int or not 1 <= nxt <= MAX_SEQ + 1:
                raise ValueError("replay guard entry has an out-of-range sequence number")
            if previous is not None and (sid, sender) <= previous:
                raise ValueError("replay guard entries are not sorted or repeat")
            previous = (sid, sender)
            guard._next[(sid, sender)] = nxt
        return guard
