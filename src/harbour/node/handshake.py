"""Session handshakes: fresh X25519 keys for every session, so recorded traffic stays closed.

A coordinator sees every byte that nodes send each other. If those bytes were
encrypted to keys a node keeps for years, someone who stole a node later could open
everything they had recorded: steal node 1 before a refresh, record the refresh,
steal node 2 after it, and node 1's new share (rebuilt from the recorded messages
with its old state) and node 2's would give the key, although no more than one node
was ever held at a time. So no message is encrypted to a long-term key.

Instead each node, for each session, generates an ephemeral X25519 key pair (RFC
7748) and sends a **hello** before its first secret payload: the session id, a
digest of the session's roster (node id -> party), its own node id and party, and
the ephemeral public key, signed with its long-term Ed25519 identity (RFC 8032).
Once a node has a peer's hello it derives their keys (RFC 5869, HKDF-SHA256;
``Transcript`` is the labelled, length-prefixed hash of :mod:`harbour.crypto.hashing`)::

    roster = Transcript("harbour/session-roster/v1")
             .append_list("nodes", node ids as bytes, sorted).append_list("parties", u16 each, same order)
    salt   = Transcript("harbour/session-key/v1").append("session", sid).append("roster", roster)
             .append("lo", node id).append("lo_epk", epk).append("hi", node id).append("hi_epk", epk)
             (lo and hi: the two nodes ordered by node id)
    prk    = HKDF-SHA256(ikm = X25519(own ephemeral, peer's ephemeral), salt, info = "harbour/session-key/pair")
    key    = HKDF-Expand-SHA256(prk, info = Transcript("harbour/session-key/direction/v1")
             .append("phase", phase session id).append("from", sender).append("to", recipient), 32 bytes)

so each phase of the session and each direction has its own key. The ephemeral
private key and everything derived from it are dropped when the session ends (it
finishes, aborts or times out): afterwards nobody holds anything that opens that
session's messages. The long-term key authenticates and never decrypts.

The hello rides with the protocol's first round when that round is public (FROST
commitments, the DKG's commitments and proofs: signed, not encrypted, see
:mod:`harbour.node.sealed`); otherwise the first round waits one round trip for
the peers' hellos. A node accepts one hello per peer and session: a second,
different one is equivocation and aborts the session.

What this does not protect: an attacker who holds a node's identity key *during* a
session (a node still compromised, or its key not yet rotated) can send a hello in
its name and take its place in that session. Rotate a node's identity after a
suspected compromise (``harbour node rotate-keys``) before the next refresh.

Python cannot erase memory (SECURITY.md): "dropped" means no reference is kept; the
private key itself lives in OpenSSL, which clears it when the object is freed, but
the derived symmetric keys are Python byte strings.

This module is sans-I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any, Final, Literal

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from harbour.crypto.hashing import Transcript
from harbour.crypto.shamir import MAX_PARTIES
from harbour.mpc.envelope import SESSION_ID_LEN
from harbour.node.identity import KEY_LEN, NodeDescriptor, NodeIdentity, is_node_id
from harbour.util import cbor

HELLO_VERSION: Final = 1
HELLO_DOMAIN: Final = b"harbour/session-hello/v1\x00"
MAX_HELLO_LEN: Final = 512
SIGNATURE_LEN: Final = 64
DIGEST_LEN: Final = 64
STATE_FORMAT: Final = "harbour-session-keys"

_OUTER: Final = frozenset({"v", "hello", "signature"})
_BODY: Final = frozenset({"v", "session_id", "roster", "from", "party", "epk"})

Roster = Mapping[str, int]
Reason = Literal["malformed", "mismatch", "unknown-sender", "bad-signature", "bad-key", "equivocation"]


class HandshakeError(ValueError):
    """A hello refused, and why; ``culprit`` is the sender's node id when it signed the fault."""

    def __init__(self, reason: Reason, message: str, culprit: str | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.culprit = culprit


def roster_digest(roster: Roster) -> bytes:
    """Every member of the session and its party: what both sides of a hello must agree on."""
    items = sorted(roster.items())
    return (
        Transcript("harbour/session-roster/v1")
        .append_list("nodes", [bytes.fromhex(node) for node, _ in items])
        .append_list("parties", [party.to_bytes(2, "big") for _, party in items])
        .digest()
    )


def _canonical(data: bytes, what: str, keys: frozenset[str]) -> dict[str, Any]:
    try:
        decoded = cbor.decode(data)
    except cbor.InvalidCbor as exc:
        raise HandshakeError("malformed", f"the {what} is not valid CBOR") from exc
    obj = decoded.value
    if type(obj) is not dict or set(obj) != keys or not decoded.canonical:
        raise HandshakeError("malformed", f"the {what} is not one canonical map of the expected fields")
    if type(obj["v"]) is not int or obj["v"] != HELLO_VERSION:
        raise HandshakeError("malformed", f"unsupported {what} version {obj['v']!r}")
    return obj


# Any fixed key will do: it only serves to test that a peer's key is not of low order.
_PROBE: Final = X25519PrivateKey.from_private_bytes(hashlib.sha256(b"harbour/session-hello/probe").digest())


def _check_epk(epk: bytes) -> None:
    """A low-order point would make the shared secret public; OpenSSL refuses the all-zero result."""
    try:
        _PROBE.exchange(X25519PublicKey.from_public_bytes(epk))
    except ValueError as exc:
        raise ValueError("the ephemeral key is a low-order X25519 point") from exc


class SessionKeys:
    """One node's side of one session's key agreement: its ephemeral key, its hello, its peers'.

    Not a dataclass and without a revealing ``repr``. :meth:`forget` drops the secrets;
    a node calls it when the session ends, however it ends.
    """

    __slots__ = ("_digest", "_epk", "_keys", "_peers", "_secret", "hello", "node_id", "roster", "session_id")

    def __init__(
        self,
        identity: NodeIdentity,
        session_id: bytes,
        roster: Roster,
        *,
        ephemeral: X25519PrivateKey | None = None,
        hello: bytes | None = None,
    ) -> None:
        if len(session_id) != SESSION_ID_LEN:
            raise ValueError(f"session ids are {SESSION_ID_LEN} bytes")
        party = roster.get(identity.node_id)
        if party is None:
            raise ValueError("this node is not in the session's roster")
        self.session_id = bytes(session_id)
        self.node_id = identity.node_id
        self.roster = dict(roster)
        self._digest = roster_digest(roster)
        self._secret: X25519PrivateKey | None = ephemeral or X25519PrivateKey.generate()
        epk = self._secret.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._epk = epk
        if hello is None:
            body = cbor2.dumps(
                {
                    "v": HELLO_VERSION,
                    "session_id": self.session_id,
                    "roster": self._digest,
                    "from": self.node_id,
                    "party": party,
                    "epk": epk,
                },
                canonical=True,
            )
            hello = cbor2.dumps(
                {"v": HELLO_VERSION, "hello": body, "signature": identity.sign(HELLO_DOMAIN + body)}, canonical=True
            )
        self.hello: bytes = hello
        self._peers: dict[str, tuple[bytes, bytes]] = {}  # node id -> (its hello, its ephemeral key)
        self._keys: dict[tuple[bytes, str, str], bytes] = {}

    @property
    def live(self) -> bool:
        return self._secret is not None

    def has(self, node_id: str) -> bool:
        """Whether the pair key with ``node_id`` is known (its hello was accepted)."""
        return node_id in self._peers

    def accept(self, data: bytes, *, known_senders: Mapping[str, NodeDescriptor]) -> str | None:
        """Check a peer's hello and remember it; its node id, or None if it is our own hello.

        ``known_senders`` are the session's other participants (from the node's own
        roster, never from the relay). The same hello twice is harmless (a relay may
        deliver again); another one from the same peer raises ``equivocation``.
        """
        data = bytes(data)
        if data == self.hello:
            return None
        if len(data) > MAX_HELLO_LEN:
            raise HandshakeError("malformed", f"a hello is at most {MAX_HELLO_LEN} bytes")
        outer = _canonical(data, "hello", _OUTER)
        body_bytes, signature = outer["hello"], outer["signature"]
        if type(body_bytes) is not bytes or type(signature) is not bytes or len(signature) != SIGNATURE_LEN:
            raise HandshakeError("malformed", "the hello's body or signature has the wrong type or length")
        body = _canonical(body_bytes, "hello body", _BODY)
        sender: str = body["from"]
        if not is_node_id(sender):
            raise HandshakeError("malformed", "the hello's sender is not a node id")
        descriptor = known_senders.get(sender)
        if descriptor is None or sender == self.node_id or descriptor.node_id != sender:
            raise HandshakeError("unknown-sender", f"a hello from node {sender}, which is not a peer in this session")
        try:
            descriptor.sign_public_key().verify(signature, HELLO_DOMAIN + body_bytes)
        except InvalidSignature:
            raise HandshakeError(
                "bad-signature", f"the hello does not verify under the key of node {sender}: forged or altered"
            ) from None
        # Signed by the sender from here on; but a relay can replay an old hello the sender
        # signed honestly, so one for another session (or roster) names no culprit.
        if body["session_id"] != self.session_id:
            raise HandshakeError("mismatch", f"node {sender}'s hello is for another session (a replay?)")
        if body["roster"] != self._digest:
            # The sender was given another roster than we were (by the coordinator, most likely).
            raise HandshakeError("mismatch", f"node {sender} was given another roster for this session than we were")
        party = body["party"]
        if type(party) is not int or not 1 <= party <= MAX_PARTIES or self.roster.get(sender) != party:
            raise HandshakeError("mismatch", f"node {sender}'s hello claims a party it does not have here", sender)
        epk = body["epk"]
        if type(epk) is not bytes or len(epk) != KEY_LEN:
            raise HandshakeError("malformed", f"node {sender}'s ephemeral key is not {KEY_LEN} bytes", sender)
        try:
            _check_epk(epk)
        except ValueError as exc:
            raise HandshakeError("bad-key", f"node {sender}: {exc}", sender) from exc
        previous = self._peers.get(sender)
        if previous is not None:
            if previous[0] != data:
                raise HandshakeError("equivocation", f"node {sender} sent two different hellos", sender)
            return sender
        self._peers[sender] = (data, epk)
        return sender

    def key(self, phase: bytes, sender: str, recipient: str) -> bytes | None:
        """The 32-byte key of messages from ``sender`` to ``recipient`` in one phase, or None if not agreed yet.

        One of the two must be this node. Each phase (a session's second protocol has
        its own session id) and each direction has its own key, so a message number
        is never used twice under one key.
        """
        cached = self._keys.get((phase, sender, recipient))
        if cached is not None:
            return cached
        peer = recipient if sender == self.node_id else sender
        if self.node_id not in (sender, recipient) or peer not in self._peers or self._secret is None:
            return None
        peer_epk = self._peers[peer][1]
        shared = self._secret.exchange(X25519PublicKey.from_public_bytes(peer_epk))
        (lo, lo_epk), (hi, hi_epk) = sorted([(self.node_id, self._epk), (peer, peer_epk)])
        salt = (
            Transcript("harbour/session-key/v1")
            .append("session", self.session_id)
            .append("roster", self._digest)
            .append("lo", lo)
            .append("lo_epk", lo_epk)
            .append("hi", hi)
            .append("hi_epk", hi_epk)
            .digest()
        )
        prk = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"harbour/session-key/pair").derive(shared)
        info = (
            Transcript("harbour/session-key/direction/v1")
            .append("phase", phase)
            .append("from", sender)
            .append("to", recipient)
            .digest()
        )
        key = HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(prk)
        self._keys[(phase, sender, recipient)] = key
        return key

    def forget(self) -> None:
        """Drop the ephemeral private key and every derived key: the session's traffic is closed for good."""
        self._secret = None
        self._keys.clear()

    # -- a cold node keeps this between the files of one session (encrypted in its store)

    def to_cbor(self) -> dict[str, Any]:
        """``{"format", "v": 1, "secret": <32>, "hello": <bytes>, "peers": {node id: hello}}``: SECRET."""
        if self._secret is None:
            raise ValueError("the session keys were forgotten")
        secret = self._secret.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        peers = {node: hello for node, (hello, _) in self._peers.items()}
        return {"format": STATE_FORMAT, "v": 1, "secret": secret, "hello": self.hello, "peers": peers}

    @classmethod
    def from_cbor(
        cls, obj: object, identity: NodeIdentity, session_id: bytes, roster: Roster, known: Mapping[str, NodeDescriptor]
    ) -> SessionKeys:
        """Strict inverse of :meth:`to_cbor`; every stored peer hello is checked again."""
        if type(obj) is not dict or set(obj) != {"format", "v", "secret", "hello", "peers"}:
            raise ValueError("session keys state is malformed")
        if obj["format"] != STATE_FORMAT or type(obj["v"]) is not int or obj["v"] != 1:
            raise ValueError("not a version-1 session keys state")
        secret, hello, peers = obj["secret"], obj["hello"], obj["peers"]
        if type(secret) is not bytes or len(secret) != KEY_LEN or type(hello) is not bytes or type(peers) is not dict:
            raise ValueError("session keys state has fields of the wrong type")
        keys = cls(identity, session_id, roster, ephemeral=X25519PrivateKey.from_private_bytes(secret), hello=hello)
        # Our own hello is checked as a peer would check it: signed by this identity, for this
        # session, roster and party, and carrying the stored key.
        try:
            outer = _canonical(hello, "hello", _OUTER)
            mine = _canonical(outer["hello"], "hello body", _BODY)
            Ed25519PublicKey.from_public_bytes(identity.sign_pk).verify(
                outer["signature"], HELLO_DOMAIN + outer["hello"]
            )
        except (HandshakeError, InvalidSignature, TypeError) as exc:
            raise ValueError("the stored hello is malformed or not signed by this node") from exc
        expected = {
            "v": HELLO_VERSION,
            "session_id": session_id,
            "roster": roster_digest(roster),
            "from": identity.node_id,
            "party": roster[identity.node_id],
            "epk": keys._epk,
        }
        if mine != expected:
            raise ValueError("the stored hello is not this node's for this session, roster and key")
        for node, data in peers.items():
            if type(node) is not str or type(data) is not bytes:
                raise ValueError("session keys state has a malformed peer entry")
            try:
                if keys.accept(data, known_senders=known) != node:
                    raise ValueError(f"the stored hello of {node} is another node's")
            except HandshakeError as exc:
                raise ValueError(f"a stored peer hello does not check: {exc}") from exc
        return keys

    def __repr__(self) -> str:
        return f"SessionKeys(session={self.session_id.hex()[:16]}, peers={sorted(self._peers)})"
