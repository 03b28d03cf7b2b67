"""Sealing: what a sending node checks about its own message, and the bytes it sends.

The sender refuses here (with ValueError, never :class:`SealedError`) every
message its recipient would refuse, so a bug on the sending side shows where it
is made, not as an aborted session somewhere else. Which mode to use is the
caller's decision: :func:`seal` once the pair has a key, :func:`sign_public` only
for a round its protocol declares public.
"""

from __future__ import annotations

from typing import Any

import cbor2
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from harbour.mpc.envelope import SESSION_ID_LEN, Envelope
from harbour.node.identity import NodeIdentity
from harbour.node.sealed.wire import (
    _PROTOCOL,
    KEY_LEN,
    MAX_PROTOCOL_LEN,
    MAX_ROUND,
    MAX_SEALED_LEN,
    MAX_SEQ,
    SEALED_VERSION,
    Mode,
    Roster,
    SealedHeader,
    _check_roster,
    _nonce,
    _signed_message,
)


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
