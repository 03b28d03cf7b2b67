"""Session handshakes: every pair key of a session comes from that session's ephemeral keys.

What is tested, and why:

- three nodes that exchange hellos agree on one key per pair, phase and direction,
  and share nothing across sessions;
- the hello and the key derivation are the documented ones, rebuilt here from
  ``cryptography`` and :class:`~harbour.crypto.hashing.Transcript` alone, so another
  implementation could interoperate;
- every hello a relay or a dishonest peer could send is refused with its reason
  (and its culprit only when the sender signed the fault), and leaves nothing behind;
- the state a cold node keeps between files round-trips and is checked coming back;
- forward secrecy, the reason the handshake exists: an attacker who steals a node's
  identity before a session and records all of it opens nothing addressed to that
  node, and once the session is forgotten neither can the node itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import struct
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from harbour.crypto.hashing import Transcript
from harbour.mpc.envelope import Envelope, encode_payload
from harbour.node.handshake import HELLO_DOMAIN, MAX_HELLO_LEN, HandshakeError, SessionKeys, roster_digest
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.sealed import ReplayGuard, SealedError, open_sealed, read_header, seal
from helpers import TAGGED_VALUES, documented_pair_key

SID = bytes(range(32))
PHASE2 = hashlib.sha256(b"the session's second protocol").digest()
OTHER_SID = bytes(range(1, 33))
PROTO = "refresh/frost-secp256k1"

# D is a stranger to everyone; E is a node B's operator installed, which is not in this session.
A, B, C, D, E = (NodeIdentity.generate() for _ in range(5))
NODES = (A, B, C)
DESCS = {
    n.node_id: n.descriptor(name, f"https://{name}.example:8443")
    for n, name in zip((A, B, C, D, E), "abcde", strict=True)
}
ROSTER = {A.node_id: 1, B.node_id: 2, C.node_id: 3}
OTHER_ROSTER = {A.node_id: 1, B.node_id: 3, C.node_id: 2}  # the same nodes, the parties dealt otherwise


def peers_of(node: NodeIdentity) -> dict[str, NodeDescriptor]:
    """The session's other participants, from the node's own roster: what a node passes as ``known_senders``."""
    return {nid: DESCS[nid] for nid in ROSTER if nid != node.node_id}


def agreed(session_id: bytes = SID) -> dict[str, SessionKeys]:
    """A, B and C's keys for one session, after each accepted the two others' hellos."""
    keys = {n.node_id: SessionKeys(n, session_id, ROSTER) for n in NODES}
    for node, other in itertools.permutations(NODES, 2):
        assert keys[node.node_id].accept(keys[other.node_id].hello, known_senders=peers_of(node)) == other.node_id
    return keys


def raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def body_of(hello: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = cbor2.loads(cbor2.loads(hello)["hello"])
    return obj


def reencode(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


# -- the documented construction, written out independently ------------------------------------


def documented_roster_digest(roster: dict[str, int]) -> bytes:
    nodes = sorted(roster)
    return (
        Transcript("harbour/session-roster/v1")
        .append_list("nodes", [bytes.fromhex(n) for n in nodes])
        .append_list("parties", [struct.pack(">H", roster[n]) for n in nodes])
        .digest()
    )


def documented_hello(
    identity: NodeIdentity, *, signer: NodeIdentity | None = None, outer: dict[str, Any] | None = None, **fields: Any
) -> bytes:
    """A hello as the module documents it, with any field replaced, signed by ``signer`` (default: its sender)."""
    body = reencode(
        {
            "v": 1,
            "session_id": SID,
            "roster": documented_roster_digest(ROSTER),
            "from": identity.node_id,
            "party": ROSTER.get(identity.node_id, 4),
            "epk": raw_public(X25519PrivateKey.generate()),
            **fields,
        }
    )
    signature = (signer or identity).sign(HELLO_DOMAIN + body)
    return reencode({"v": 1, "hello": body, "signature": signature, **(outer or {})})


def _sender(value: Any) -> dict[str, Any]:
    """The body field ``from``, which, being a Python keyword, cannot be passed to ``documented_hello`` by name."""
    return {"from": value}


def documented_key(shared: bytes, hello_1: bytes, hello_2: bytes, phase: bytes, sender: str, recipient: str) -> bytes:
    """The pair key of one phase and direction, from the X25519 result and the pair's two hellos."""
    return documented_pair_key(shared, body_of(hello_1), body_of(hello_2), phase, sender, recipient)


def refused(
    keys: SessionKeys, data: bytes, reason: str, known: dict[str, NodeDescriptor] | None = None
) -> HandshakeError:
    with pytest.raises(HandshakeError) as info:
        keys.accept(data, known_senders=known if known is not None else peers_of(B))
    assert info.value.reason == reason, str(info.value)
    return info.value


def fresh_b() -> SessionKeys:
    return SessionKeys(B, SID, ROSTER)


# -- agreement -----------------------------------------------------------------------------------


def test_three_nodes_agree_on_each_pairs_key_in_each_direction_and_phase() -> None:
    keys = agreed()
    seen = set()
    for sender, recipient in itertools.permutations(NODES, 2):
        for phase in (SID, PHASE2):
            key = keys[sender.node_id].key(phase, sender.node_id, recipient.node_id)
            assert key is not None and len(key) == 32
            assert keys[recipient.node_id].key(phase, sender.node_id, recipient.node_id) == key
            seen.add(key)
    assert len(seen) == 6 * 2  # every direction and phase its own key


def test_another_session_has_other_keys() -> None:
    first, second = agreed(SID), agreed(OTHER_SID)
    for sender, recipient in itertools.permutations(NODES, 2):
        pair = (sender.node_id, recipient.node_id)
        assert first[sender.node_id].key(SID, *pair) != second[sender.node_id].key(SID, *pair)


def test_a_third_node_does_not_hold_a_pairs_key() -> None:
    keys = agreed()
    assert keys[C.node_id].key(SID, A.node_id, B.node_id) is None
    assert keys[C.node_id].key(SID, C.node_id, C.node_id) is None


def test_no_key_until_the_peers_hello_is_accepted() -> None:
    a, b = SessionKeys(A, SID, ROSTER), fresh_b()
    assert not b.has(A.node_id) and b.key(SID, A.node_id, B.node_id) is None
    assert b.accept(a.hello, known_senders=peers_of(B)) == A.node_id
    assert b.has(A.node_id) and b.key(SID, A.node_id, B.node_id) is not None
    assert b.key(SID, C.node_id, B.node_id) is None


def test_every_session_has_a_fresh_ephemeral_key() -> None:
    assert body_of(SessionKeys(A, SID, ROSTER).hello)["epk"] != body_of(SessionKeys(A, SID, ROSTER).hello)["epk"]


def test_the_session_keys_do_not_show_in_their_repr() -> None:
    keys = agreed()[A.node_id]
    secret = keys.to_cbor()["secret"]
    pair = keys.key(SID, A.node_id, B.node_id)
    assert pair is not None
    assert secret.hex() not in repr(keys) and pair.hex() not in repr(keys)


# -- the documented format -----------------------------------------------------------------------


def test_the_hello_is_the_documented_canonical_cbor_signed_by_the_identity() -> None:
    ephemeral = X25519PrivateKey.generate()
    hello = SessionKeys(A, SID, ROSTER, ephemeral=ephemeral).hello
    outer = cbor2.loads(hello)
    assert len(hello) <= MAX_HELLO_LEN and reencode(outer) == hello
    assert set(outer) == {"v", "hello", "signature"} and outer["v"] == 1
    body = cbor2.loads(outer["hello"])
    assert reencode(body) == outer["hello"]
    assert body == {
        "v": 1,
        "session_id": SID,
        "roster": documented_roster_digest(ROSTER),
        "from": A.node_id,
        "party": 1,
        "epk": raw_public(ephemeral),
    }
    Ed25519PublicKey.from_public_bytes(A.sign_pk).verify(outer["signature"], HELLO_DOMAIN + outer["hello"])
    assert documented_hello(A, epk=raw_public(ephemeral)) == hello  # Ed25519 is deterministic


def test_the_roster_digest_is_the_documented_transcript() -> None:
    assert roster_digest(ROSTER) == documented_roster_digest(ROSTER)
    assert roster_digest(dict(reversed(list(ROSTER.items())))) == roster_digest(ROSTER)
    assert roster_digest(OTHER_ROSTER) != roster_digest(ROSTER)
    assert roster_digest({A.node_id: 1, B.node_id: 2}) != roster_digest(ROSTER)


def test_the_pair_key_is_the_documented_derivation() -> None:
    ephemeral = {n.node_id: X25519PrivateKey.generate() for n in NODES}
    keys = {n.node_id: SessionKeys(n, SID, ROSTER, ephemeral=ephemeral[n.node_id]) for n in NODES}
    for me, peer in itertools.permutations(NODES, 2):
        keys[me.node_id].accept(keys[peer.node_id].hello, known_senders=peers_of(me))
        shared = ephemeral[me.node_id].exchange(ephemeral[peer.node_id].public_key())
        hellos = (keys[me.node_id].hello, keys[peer.node_id].hello)
        for phase in (SID, PHASE2):
            for sender, recipient in ((me, peer), (peer, me)):
                expected = documented_key(shared, *hellos, phase, sender.node_id, recipient.node_id)
                assert keys[me.node_id].key(phase, sender.node_id, recipient.node_id) == expected


# -- hellos that are refused ---------------------------------------------------------------------


def test_a_hello_from_a_stranger_is_refused() -> None:
    stranger = SessionKeys(D, SID, {**ROSTER, D.node_id: 4}).hello
    err = refused(fresh_b(), stranger, "unknown-sender")
    assert err.culprit is None
    refused(fresh_b(), documented_hello(D), "unknown-sender")


def test_a_hello_from_a_known_node_outside_the_session_is_refused() -> None:
    # E's descriptor is installed on B, but B's peers in this session are A and C
    refused(fresh_b(), documented_hello(E), "unknown-sender")


def test_a_hello_in_our_own_name_that_is_not_ours_is_refused() -> None:
    b = fresh_b()
    refused(b, SessionKeys(B, SID, ROSTER).hello, "unknown-sender", known=DESCS)
    assert not b.has(B.node_id)


def test_our_own_hello_is_ignored() -> None:
    b = fresh_b()
    assert b.accept(b.hello, known_senders=peers_of(B)) is None
    assert not b.has(B.node_id) and b.key(SID, B.node_id, B.node_id) is None


def test_a_hello_signed_by_another_node_is_refused() -> None:
    err = refused(fresh_b(), documented_hello(A, signer=C), "bad-signature")
    assert err.culprit is None


def test_a_hello_signed_over_the_body_without_its_domain_is_refused() -> None:
    hello = documented_hello(A)
    body = cbor2.loads(hello)["hello"]
    refused(fresh_b(), reencode({**cbor2.loads(hello), "signature": A.sign(body)}), "bad-signature")


@pytest.mark.parametrize("field", ["session_id", "roster", "party", "epk"])
def test_an_altered_hello_is_refused(field: str) -> None:
    # the relay swaps one field and keeps the signature
    hello = SessionKeys(A, SID, ROSTER).hello
    values = {"session_id": OTHER_SID, "roster": roster_digest(OTHER_ROSTER), "party": 3, "epk": bytes([9]) * 32}
    altered = reencode({**body_of(hello), field: values[field]})
    err = refused(fresh_b(), reencode({**cbor2.loads(hello), "hello": altered}), "bad-signature")
    assert err.culprit is None


def test_any_flipped_byte_of_a_hello_is_refused_and_leaves_nothing_behind() -> None:
    a, b = SessionKeys(A, SID, ROSTER), fresh_b()
    for i in range(len(a.hello)):
        flipped = a.hello[:i] + bytes([a.hello[i] ^ 0x01]) + a.hello[i + 1 :]
        with pytest.raises(HandshakeError):
            b.accept(flipped, known_senders=peers_of(B))
    assert not b.has(A.node_id)
    assert b.accept(a.hello, known_senders=peers_of(B)) == A.node_id


def test_a_hello_for_another_session_is_refused() -> None:
    err = refused(fresh_b(), SessionKeys(A, OTHER_SID, ROSTER).hello, "mismatch")
    assert "another session" in str(err)


def test_a_relay_replaying_a_hello_from_an_earlier_session_does_not_frame_its_sender() -> None:
    earlier = SessionKeys(A, OTHER_SID, ROSTER).hello  # A signed this, honestly, for the earlier session
    assert refused(fresh_b(), earlier, "mismatch").culprit is None


def test_a_hello_with_another_roster_is_refused_without_blaming_the_sender() -> None:
    # the sender was given another roster than we were: the coordinator's doing, most likely
    other = SessionKeys(A, SID, OTHER_ROSTER).hello
    err = refused(fresh_b(), other, "mismatch")
    assert err.culprit is None


@pytest.mark.parametrize("party", [3, 4, 0, 256, True, "1", None])
def test_a_hello_claiming_another_party_is_refused(party: Any) -> None:
    err = refused(fresh_b(), documented_hello(A, party=party), "mismatch")
    assert err.culprit == A.node_id


P = 2**255 - 19
LOW_ORDER_POINTS = {
    # Curve25519 u-coordinates of order 1, 2, 4 and 8 (and their non-canonical encodings
    # above p, and with the ignored top bit set): X25519 with any of them is all zeros
    "zero": bytes(32),
    "one": (1).to_bytes(32, "little"),
    "order 8 (a)": bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
    "order 8 (b)": bytes.fromhex("5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157"),
    "p - 1": (P - 1).to_bytes(32, "little"),
    "p": P.to_bytes(32, "little"),
    "p + 1": (P + 1).to_bytes(32, "little"),
    "zero with the top bit set": bytes(31) + b"\x80",
}


@pytest.mark.parametrize("point", sorted(LOW_ORDER_POINTS))
def test_a_low_order_ephemeral_key_is_refused(point: str) -> None:
    b = fresh_b()
    err = refused(b, documented_hello(A, epk=LOW_ORDER_POINTS[point]), "bad-key")
    assert err.culprit == A.node_id
    assert not b.has(A.node_id)


@pytest.mark.parametrize("epk", [bytes(31), bytes(33), "k" * 32, 5], ids=["short", "long", "text", "integer"])
def test_an_ephemeral_key_of_the_wrong_shape_is_refused(epk: Any) -> None:
    err = refused(fresh_b(), documented_hello(A, epk=epk), "malformed")
    assert err.culprit == A.node_id


def test_a_second_different_hello_from_one_peer_is_equivocation() -> None:
    b = fresh_b()
    first = SessionKeys(A, SID, ROSTER).hello
    b.accept(first, known_senders=peers_of(B))
    key = b.key(SID, A.node_id, B.node_id)
    err = refused(b, SessionKeys(A, SID, ROSTER).hello, "equivocation")
    assert err.culprit == A.node_id
    assert b.key(SID, A.node_id, B.node_id) == key


def test_the_same_hello_twice_is_accepted() -> None:
    # a relay may deliver twice
    b, hello = fresh_b(), SessionKeys(A, SID, ROSTER).hello
    assert b.accept(hello, known_senders=peers_of(B)) == A.node_id
    key = b.key(SID, A.node_id, B.node_id)
    assert b.accept(hello, known_senders=peers_of(B)) == A.node_id
    assert b.key(SID, A.node_id, B.node_id) == key


def test_an_oversized_hello_is_refused() -> None:
    # signed and otherwise valid: the size is checked before anything is parsed
    for data in (documented_hello(A, padding=bytes(MAX_HELLO_LEN)), bytes(MAX_HELLO_LEN + 1)):
        assert f"at most {MAX_HELLO_LEN} bytes" in str(refused(fresh_b(), data, "malformed"))


def _reversed_map(data: bytes) -> bytes:
    return cbor2.dumps(dict(reversed(list(cbor2.loads(data).items()))))


MALFORMED_HELLOS: dict[str, Callable[[bytes], bytes]] = {
    "empty": lambda h: b"",
    "truncated by one byte": lambda h: h[:-1],
    "truncated by half": lambda h: h[: len(h) // 2],
    "trailing byte": lambda h: h + b"\x00",
    "outer map not canonical": _reversed_map,
    "body not canonical": lambda h: documented_hello(A, outer={"hello": _reversed_map(cbor2.loads(h)["hello"])}),
    "array": lambda h: reencode(list(cbor2.loads(h).values())),
    "outer field missing": lambda h: reencode({k: v for k, v in cbor2.loads(h).items() if k != "v"}),
    "outer field extra": lambda h: documented_hello(A, outer={"x": 1}),
    "body field extra": lambda h: documented_hello(A, x=1),
    "body not bytes": lambda h: reencode({**cbor2.loads(h), "hello": body_of(h)}),
    "signature short": lambda h: reencode({**cbor2.loads(h), "signature": bytes(63)}),
    "signature text": lambda h: reencode({**cbor2.loads(h), "signature": "s" * 64}),
    "outer version 2": lambda h: documented_hello(A, outer={"v": 2}),
    "outer version true": lambda h: documented_hello(A, outer={"v": True}),
    "body version 2": lambda h: documented_hello(A, v=2),
    "sender not a node id": lambda h: documented_hello(A, **_sender(A.node_id.upper())),
    "sender as bytes": lambda h: documented_hello(A, **_sender(bytes.fromhex(A.node_id))),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_HELLOS))
def test_a_malformed_hello_is_refused(case: str) -> None:
    b = fresh_b()
    refused(b, MALFORMED_HELLOS[case](SessionKeys(A, SID, ROSTER).hello), "malformed")
    assert not b.has(A.node_id)


@pytest.mark.parametrize("name", sorted(TAGGED_VALUES))
def test_tagged_cbor_in_a_hello_is_refused(name: str) -> None:
    refused(fresh_b(), TAGGED_VALUES[name], "malformed")
    refused(fresh_b(), documented_hello(A, outer={"hello": TAGGED_VALUES[name]}), "malformed")


def test_a_handshake_error_is_a_value_error() -> None:
    assert issubclass(HandshakeError, ValueError)


def test_a_node_not_in_the_roster_cannot_start_a_session() -> None:
    with pytest.raises(ValueError, match="not in the session's roster"):
        SessionKeys(D, SID, ROSTER)
    with pytest.raises(ValueError, match="32 bytes"):
        SessionKeys(A, SID[:16], ROSTER)


# -- forgetting, and the state a cold node keeps -----------------------------------------------------


def test_forget_drops_every_key_and_the_state() -> None:
    keys = agreed()[B.node_id]
    assert keys.live and keys.key(SID, A.node_id, B.node_id) is not None
    keys.forget()
    assert not keys.live
    for sender, recipient in itertools.permutations(NODES, 2):
        for phase in (SID, PHASE2):
            assert keys.key(phase, sender.node_id, recipient.node_id) is None
    with pytest.raises(ValueError, match="forgotten"):
        keys.to_cbor()


def test_the_cold_state_round_trips_with_the_same_keys() -> None:
    keys = agreed()[B.node_id]
    state = keys.to_cbor()
    assert set(state) == {"format", "v", "secret", "hello", "peers"}
    assert set(state["peers"]) == {A.node_id, C.node_id}
    restored = SessionKeys.from_cbor(cbor2.loads(reencode(state)), B, SID, ROSTER, peers_of(B))
    assert restored.hello == keys.hello
    assert restored.has(A.node_id) and restored.has(C.node_id)
    for phase in (SID, PHASE2):
        for peer in (A, C):
            for sender, recipient in ((peer, B), (B, peer)):
                want = keys.key(phase, sender.node_id, recipient.node_id)
                assert restored.key(phase, sender.node_id, recipient.node_id) == want
    assert restored.to_cbor() == state


def test_the_cold_state_before_any_peer_round_trips() -> None:
    keys = fresh_b()
    restored = SessionKeys.from_cbor(keys.to_cbor(), B, SID, ROSTER, peers_of(B))
    a = SessionKeys(A, SID, ROSTER)
    keys.accept(a.hello, known_senders=peers_of(B))
    restored.accept(a.hello, known_senders=peers_of(B))
    assert restored.key(SID, A.node_id, B.node_id) == keys.key(SID, A.node_id, B.node_id)


def test_a_cold_state_from_another_session_is_refused() -> None:
    state = SessionKeys(B, OTHER_SID, ROSTER).to_cbor()
    with pytest.raises(ValueError, match="not this node's for this session"):
        SessionKeys.from_cbor(state, B, SID, ROSTER, peers_of(B))


def test_a_cold_state_whose_secret_does_not_match_its_hello_is_refused() -> None:
    state = {**fresh_b().to_cbor(), "secret": fresh_b().to_cbor()["secret"]}
    with pytest.raises(ValueError, match="not this node's for this session"):
        SessionKeys.from_cbor(state, B, SID, ROSTER, peers_of(B))


@pytest.mark.parametrize(
    ("peer_hello", "message"),
    [
        (lambda: documented_hello(A, signer=C), "does not check"),
        (lambda: SessionKeys(A, OTHER_SID, ROSTER).hello, "does not check"),
        (lambda: documented_hello(E), "does not check"),
        (lambda: b"\x00", "does not check"),
    ],
    ids=["forged", "another session", "outside the session", "garbage"],
)
def test_a_cold_state_whose_peer_hello_does_not_verify_is_refused(
    peer_hello: Callable[[], bytes], message: str
) -> None:
    state = fresh_b().to_cbor()
    state["peers"] = {A.node_id: peer_hello()}
    with pytest.raises(ValueError, match=message):
        SessionKeys.from_cbor(state, B, SID, ROSTER, peers_of(B))


def test_a_cold_state_filing_a_hello_under_another_node_is_refused() -> None:
    state = fresh_b().to_cbor()
    state["peers"] = {C.node_id: SessionKeys(A, SID, ROSTER).hello}
    with pytest.raises(ValueError, match="another node's"):
        SessionKeys.from_cbor(state, B, SID, ROSTER, peers_of(B))


@pytest.mark.parametrize(
    "changes",
    [
        {"format": "x"},
        {"v": 2},
        {"secret": bytes(31)},
        {"hello": "text"},
        {"peers": []},
        {"peers": {A.node_id: "text"}},
        {"extra": 1},
    ],
    ids=["format", "version", "short secret", "hello text", "peers list", "peer hello text", "extra field"],
)
def test_a_malformed_cold_state_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        SessionKeys.from_cbor({**fresh_b().to_cbor(), **changes}, B, SID, ROSTER, peers_of(B))


# -- the attack: a node's identity stolen before the session ----------------------------------------


def montgomery_u(ed25519_public: bytes) -> bytes:
    """An Ed25519 public key as a Curve25519 u-coordinate: u = (1 + y) / (1 - y)."""
    y = int.from_bytes(ed25519_public, "little") & ((1 << 255) - 1)
    return ((1 + y) * pow(1 - y, -1, P) % P).to_bytes(32, "little")


def attackers_best_effort(
    stolen: list[bytes], hellos: list[bytes], recorded: list[bytes], ephemeral_secrets: tuple[bytes, ...] = ()
) -> list[bytes]:
    """Every recorded message the attacker opens with what it holds: stolen identities, hellos, traffic.

    It turns each stolen Ed25519 seed into X25519 private keys (the seed as it is, and
    the Ed25519 secret scalar, the usual conversion), gathers every public key there is
    (each hello's ephemeral key, each node's identity key mapped to Curve25519), runs
    X25519 on every combination and tries each result as a key, raw and through the
    documented derivation with every pair of hellos. It also runs the node's own code
    with a stolen identity: a new SessionKeys that accepts every recorded hello.
    """
    seeds = [cbor2.loads(identity)["sign_sk"] for identity in stolen]
    privates = [X25519PrivateKey.from_private_bytes(s) for s in ephemeral_secrets]
    for seed in seeds:
        privates += [
            X25519PrivateKey.from_private_bytes(seed),
            X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32]),
        ]
    publics = [body_of(h)["epk"] for h in hellos] + [montgomery_u(d.sign_pk) for d in DESCS.values()]
    shared = [private.exchange(X25519PublicKey.from_public_bytes(public)) for private in privates for public in publics]
    replicas = []
    for identity in stolen:
        thief = NodeIdentity.from_bytes(identity)
        replica = SessionKeys(thief, SID, ROSTER)
        for hello in hellos:
            with contextlib.suppress(HandshakeError):  # the node's real hello: not the replica's own
                replica.accept(hello, known_senders=peers_of(thief))
        replicas.append(replica)

    opened = []
    for data in recorded:
        message = cbor2.loads(data)
        header = cbor2.loads(message["header"])
        phase, sender, recipient = header["session_id"], header["from"], header["to"]
        candidates = [*seeds, *shared]
        candidates += [
            documented_key(s, h1, h2, phase, sender, recipient)
            for s in shared
            for h1, h2 in itertools.combinations(hellos, 2)
        ]
        candidates += [k for r in replicas if (k := r.key(phase, sender, recipient)) is not None]
        for key in candidates:
            try:
                nonce = bytes(4) + struct.pack(">Q", header["seq"])
                opened.append(ChaCha20Poly1305(key).decrypt(nonce, message["body"], message["header"]))
                break
            except InvalidTag:
                continue
    return opened


def envelope(phase: bytes, sender: NodeIdentity, recipient: NodeIdentity, rnd: int) -> Envelope:
    share = hashlib.sha256(phase + sender.sign_pk + recipient.sign_pk + bytes([rnd])).digest()
    return Envelope(
        phase, PROTO, rnd, ROSTER[sender.node_id], ROSTER[recipient.node_id], encode_payload({"share": share})
    )


def seal_with(keys: SessionKeys, env: Envelope, recipient: NodeIdentity, seq: int = 0) -> bytes:
    key = keys.key(env.session_id, keys.node_id, recipient.node_id)
    assert key is not None
    return seal(env, key=key, from_node=keys.node_id, to_node=recipient.node_id, seq=seq, roster=ROSTER)


def open_with(keys: SessionKeys, data: bytes, guard: ReplayGuard | None = None) -> Envelope:
    """Open as the node that holds ``keys``, in a session whose rounds are all secret."""
    return open_sealed(
        keys.node_id,
        data,
        known_senders={nid: d for nid, d in DESCS.items() if nid in ROSTER and nid != keys.node_id},
        rosters={SID: ROSTER, PHASE2: ROSTER},
        guard=guard if guard is not None else ReplayGuard(),
        keys=keys.key,
        public=lambda phase, protocol, rnd: False,
    )


def test_a_thief_of_a_nodes_identity_before_a_session_cannot_open_what_it_records_of_that_session() -> None:
    """The attacker here records everything (as the relay may) and sends nothing; see the next test."""
    # Before the session, the attacker copies B's whole identity.
    stolen_b = B.to_bytes()

    # The session: every hello and every sealed message crosses the relay, which records them.
    keys = agreed()
    hellos = [keys[n.node_id].hello for n in NODES]
    sent: list[tuple[Envelope, bytes]] = []
    for phase, rnd in itertools.product((SID, PHASE2), (2, 3)):
        for sender, recipient in ((A, B), (C, B), (B, A), (B, C)):
            env = envelope(phase, sender, recipient, rnd)
            sent.append((env, seal_with(keys[sender.node_id], env, recipient, seq=rnd - 2)))
    recorded = [data for _, data in sent]
    to_b = [(env, data) for env, data in sent if env.recipient == ROSTER[B.node_id]]

    # The legitimate recipient, holding the session's keys, opens every message to it.
    guard = ReplayGuard()
    assert [open_with(keys[B.node_id], data, guard) for _, data in to_b] == [env for env, _ in to_b]

    # The attacker, with B's identity, every hello and every message, opens nothing.
    assert attackers_best_effort([stolen_b], hellos, recorded) == []
    # Nor can it now sign a hello of its own in B's name and have it used: A holds B's already.
    in_bs_name = SessionKeys(NodeIdentity.from_bytes(stolen_b), SID, ROSTER).hello
    with pytest.raises(HandshakeError) as refusal:
        keys[A.node_id].accept(in_bs_name, known_senders=peers_of(A))
    assert refusal.value.reason == "equivocation"

    # The same effort with B's ephemeral secret (what a thief *during* the session would
    # find) opens everything B sent or received: the attack code is not what fails.
    secret = keys[B.node_id].to_cbor()["secret"]
    assert attackers_best_effort([stolen_b], hellos, recorded, (secret,)) == [env.encode() for env, _ in sent]

    # The session ends and every node forgets it. Afterwards B cannot open its own
    # recorded traffic either, and stealing every identity now gains nothing.
    for node in NODES:
        keys[node.node_id].forget()
    for _, data in to_b:
        h = read_header(data)
        as_it_was = ReplayGuard()  # B's guard when the message first came, so that it gets as far as the key
        for earlier in range(h.seq):
            as_it_was.accept(h.session_id, h.from_node, earlier)
        with pytest.raises(SealedError) as info:
            open_with(keys[B.node_id], data, as_it_was)
        assert info.value.reason == "no-key"
    with pytest.raises(ValueError, match="forgotten"):
        keys[B.node_id].to_cbor()
    assert attackers_best_effort([n.to_bytes() for n in NODES], hellos, recorded) == []


def test_a_thief_who_delivers_its_own_hello_first_takes_the_nodes_place_and_the_session_aborts() -> None:
    """The documented limit: whoever holds an identity during a session can speak in its name.

    A relay holding B's stolen identity hands A a hello of its own in B's name instead
    of B's. A then seals to the thief, not to B; but B's first sealed message to A does
    not decrypt there, and B's real hello is equivocation, so the session aborts rather
    than go on without B. Rotating a suspect identity before the next session closes this.
    """
    thief = SessionKeys(NodeIdentity.from_bytes(B.to_bytes()), SID, ROSTER)
    a, b = SessionKeys(A, SID, ROSTER), fresh_b()
    assert a.accept(thief.hello, known_senders=peers_of(A)) == B.node_id
    for keys in (thief, b):
        keys.accept(a.hello, known_senders=peers_of(B))

    to_b = seal_with(a, envelope(SID, A, B, 2), B)
    assert open_with(thief, to_b) == envelope(SID, A, B, 2)
    with pytest.raises(SealedError) as info:
        open_with(b, to_b)
    assert info.value.reason == "decryption-failed"

    with pytest.raises(SealedError) as info:
        open_with(a, seal_with(b, envelope(SID, B, A, 2), A))
    assert info.value.reason == "decryption-failed"
    with pytest.raises(HandshakeError) as refusal:
        a.accept(b.hello, known_senders=peers_of(A))
    assert refusal.value.reason == "equivocation"
