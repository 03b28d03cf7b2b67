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

This package is sans-I/O: it turns bytes into bytes and keeps the replay state in a
plain object the node persists (:meth:`ReplayGuard.to_bytes`). Its modules:
:mod:`.errors` (:class:`SealedError`), :mod:`.wire` (the header and the parser both
ends share), :mod:`.send` (:func:`seal`, :func:`sign_public`), :mod:`.receive`
(:func:`open_sealed`) and :mod:`.replay` (:class:`ReplayGuard`). Everything is
importable from here, as it always was.
"""

from harbour.node.sealed.errors import Reason, SealedError
from harbour.node.sealed.receive import IsPublic, KeyLookup, open_sealed
from harbour.node.sealed.replay import GUARD_FORMAT, GUARD_VERSION, ReplayGuard
from harbour.node.sealed.send import seal, sign_public
from harbour.node.sealed.wire import (
    KEY_LEN,
    MAX_HEADER_LEN,
    MAX_PROTOCOL_LEN,
    MAX_ROUND,
    MAX_SEALED_LEN,
    MAX_SEQ,
    MODES,
    SEALED_VERSION,
    SIGN_DOMAIN,
    SIGNATURE_LEN,
    TAG_LEN,
    Mode,
    Roster,
    SealedHeader,
    read_header,
)

__all__ = [
    "GUARD_FORMAT",
    "GUARD_VERSION",
    "KEY_LEN",
    "MAX_HEADER_LEN",
    "MAX_PROTOCOL_LEN",
    "MAX_ROUND",
    "MAX_SEALED_LEN",
    "MAX_SEQ",
    "MODES",
    "SEALED_VERSION",
    "SIGNATURE_LEN",
    "SIGN_DOMAIN",
    "TAG_LEN",
    "IsPublic",
    "KeyLookup",
    "Mode",
    "Reason",
    "ReplayGuard",
    "Roster",
    "SealedError",
    "SealedHeader",
    "open_sealed",
    "read_header",
    "seal",
    "sign_public",
]
