"""Opening: what a receiving node checks, in order, before it believes a sealed message.

The recipient trusts nothing the relay hands it: the message must be addressed to
this node, for a session it runs, from a peer it was configured with, next in that
peer's sequence (:class:`~harbour.node.sealed.replay.ReplayGuard`), authenticated
by the pair key (or signed, for a public round only), and the envelope inside must
say what the header says. The checks run cheapest first and nothing is decoded
before it is authenticated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from harbour.mpc.envelope import Envelope
from harbour.node.identity import NodeDescriptor
from harbour.node.sealed.errors import SealedError
from harbour.node.sealed.replay import ReplayGuard
from harbour.node.sealed.wire import Roster, _check_roster, _nonce, _parse, _signed_message

KeyLookup = Callable[[bytes, str, str], bytes | None]
"""``(phase session id, sender node id, recipient node id) -> the pair's key``, or None if not agreed yet."""

IsPublic = Callable[[bytes, str, int], bool]
"""``(phase session id, protocol, round) -> whether that round's messages are public``."""


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
