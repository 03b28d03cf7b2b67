"""Sealed envelopes (version 2): what a relay between signer nodes can and cannot do.

The relay sees every sealed message and may alter, re-target, replay, reorder or drop
it; a corrupted node holds its own identity and session keys and may seal anything.
Every such message is refused with its reason, and a refused message never advances
the replay guard.

Both modes are covered: ``sealed`` (ChaCha20-Poly1305 under the pair key of one
phase and direction, agreed in :mod:`harbour.node.handshake`) and ``signed`` (public
rounds only, Ed25519). :func:`build` writes both out again from the module
docstring alone, with ``cryptography`` directly, so the tests check the documented
format and not merely that the module agrees with itself.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from harbour.crypto.hashing import Transcript
from harbour.mpc.envelope import Envelope, encode_payload
from harbour.node.handshake import SessionKeys, roster_digest
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.sealed import (
    MAX_SEALED_LEN,
    SIGN_DOMAIN,
    KeyLookup,
    ReplayGuard,
    SealedError,
    open_sealed,
    read_header,
    seal,
    sign_public,
)
from helpers import TAGGED_VALUES

SID = bytes(range(32))
PHASE2 = bytes(range(1, 33))  # the session's second protocol: the same nodes, its own id and keys
OTHER_SID = bytes(range(2, 34))  # a session these nodes take no part in
PROTO = "dkg/frost-secp256k1"
SECRET = b"\x5a" * 7 + b"secret share bytes that must never be seen by the relay" + b"\xa5" * 7
COMMITMENT = b"a public commitment"

A, B, C, D = (NodeIdentity.generate() for _ in range(4))  # D is a stranger to everyone
DESCS = {
    n.node_id: n.descriptor(name, f"https://{name}.example:8443") for n, name in zip((A, B, C, D), "abcd", strict=True)
}
ROSTER = {A.node_id: 1, B.node_id: 2, C.node_id: 3}
ROSTERS = {SID: ROSTER, PHASE2: ROSTER}

# Chosen here rather than inside SessionKeys, so that build() can derive the keys on its own.
EPHEMERAL = {n.node_id: X25519PrivateKey.generate() for n in (A, B, C, D)}


def known_by(node: NodeIdentity) -> dict[str, NodeDescriptor]:
    return {nid: d for nid, d in DESCS.items() if nid not in (node.node_id, D.node_id)}


def handshake(nodes: tuple[NodeIdentity, ...] = (A, B, C), *, fixed: bool = True) -> dict[str, SessionKeys]:
    """One session's key agreement between ``nodes``: every node accepts every other's hello."""
    keys = {n.node_id: SessionKeys(n, SID, ROSTER, ephemeral=EPHEMERAL[n.node_id] if fixed else None) for n in nodes}
    for node, mine in keys.items():
        for other in keys.values():
            mine.accept(other.hello, known_senders=known_by(next(n for n in nodes if n.node_id == node)))
    return keys


SESSION = handshake()


def public_rounds(phase: bytes, protocol: str, rnd: int) -> bool:
    """The recipient's protocol: round 1 (commitments) is public, every other round is secret."""
    return protocol == PROTO and rnd == 1


def p2p(
    sender: int = 1, recipient: int | None = 2, rnd: int = 2, payload: bytes = SECRET, sid: bytes = SID
) -> Envelope:
    return Envelope(sid, PROTO, rnd, sender, recipient, encode_payload({"share": payload}))


def commitments(sender: int = 1) -> Envelope:
    return Envelope(SID, PROTO, 1, sender, None, encode_payload({"commitment": COMMITMENT}))


def sealed_to(sender: NodeIdentity, to: NodeIdentity, env: Envelope, seq: int = 0) -> bytes:
    key = SESSION[sender.node_id].key(env.session_id, sender.node_id, to.node_id)
    assert key is not None
    return seal(env, key=key, from_node=sender.node_id, to_node=to.node_id, seq=seq, roster=ROSTER)


def signed_to(sender: NodeIdentity, to: NodeIdentity, env: Envelope, seq: int = 0) -> bytes:
    return sign_public(sender, env, to_node=to.node_id, seq=seq, roster=ROSTER)


def open_as(
    node: NodeIdentity,
    data: bytes,
    guard: ReplayGuard | None = None,
    *,
    rosters: dict[bytes, dict[str, int]] = ROSTERS,
    known: dict[str, NodeDescriptor] | None = None,
    keys: KeyLookup | None = None,
) -> Envelope:
    return open_sealed(
        node.node_id,
        data,
        known_senders=known if known is not None else known_by(node),
        rosters=rosters,
        guard=guard if guard is not None else ReplayGuard(),
        keys=keys if keys is not None else SESSION[node.node_id].key,
        public=public_rounds,
    )


def refused(node: NodeIdentity, data: bytes, reason: str, guard: ReplayGuard | None = None, **kw: Any) -> SealedError:
    with pytest.raises(SealedError) as info:
        open_as(node, data, guard, **kw)
    assert info.value.reason == reason, str(info.value)
    return info.value


def outer(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = cbor2.loads(data)
    return obj


def header_of(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = cbor2.loads(outer(data)["header"])
    return obj


def reencode(obj: Any) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def with_header(data: bytes, **changes: Any) -> bytes:
    """``data`` with header fields replaced and the body (and signature) left as they were."""
    return reencode({**outer(data), "header": reencode({**header_of(data), **changes})})


# -- the documented construction, written out independently ------------------------------------


def raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


def documented_key(phase: bytes, sender: NodeIdentity, recipient: NodeIdentity) -> bytes:
    """The pair key of one phase and direction, as handshake.py derives it from the two ephemeral keys."""
    shared = EPHEMERAL[sender.node_id].exchange(EPHEMERAL[recipient.node_id].public_key())
    (lo, lo_epk), (hi, hi_epk) = sorted((n.node_id, raw_public(EPHEMERAL[n.node_id])) for n in (sender, recipient))
    salt = (
        Transcript("harbour/session-key/v1")
        .append("session", SID)
        .append("roster", roster_digest(ROSTER))
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
        .append("from", sender.node_id)
        .append("to", recipient.node_id)
        .digest()
    )
    return HKDFExpand(algorithm=hashes.SHA256(), length=32, info=info).derive(prk)


def documented_nonce(seq: int) -> bytes:
    return bytes(4) + struct.pack(">Q", seq)


def build(
    sender: NodeIdentity,
    to: NodeIdentity,
    plaintext: bytes,
    header: dict[str, Any] | None = None,
    *,
    mode: str = "sealed",
    key: bytes | None = None,
    outer_v: int = 2,
) -> bytes:
    """A message exactly as the module docstring describes it, for any header and plaintext.

    What a corrupted node can produce with what it holds: in ``sealed`` mode its own
    pair key with ``to`` (unless ``key`` is given), in ``signed`` mode its identity.
    """
    fields: dict[str, Any] = {
        "v": 2,
        "session_id": SID,
        "protocol": PROTO,
        "round": 1 if mode == "signed" else 2,
        "from": sender.node_id,
        "to": to.node_id,
        "from_party": ROSTER.get(sender.node_id, 4),
        "to_party": ROSTER[to.node_id],
        "seq": 0,
        "mode": mode,
        **(header or {}),
    }
    hb = reencode(fields)
    if mode == "sealed":
        pair_key = key if key is not None else documented_key(fields["session_id"], sender, to)
        body = ChaCha20Poly1305(pair_key).encrypt(documented_nonce(fields["seq"]), plaintext, hb)
        return reencode({"v": outer_v, "header": hb, "body": body})
    signature = sender.sign(SIGN_DOMAIN + struct.pack(">I", len(hb)) + hb + plaintext)
    return reencode({"v": outer_v, "header": hb, "body": plaintext, "signature": signature})


# -- honest use ----------------------------------------------------------------------------------


def test_point_to_point_round_trip() -> None:
    env = p2p()
    guard = ReplayGuard()
    assert open_as(B, sealed_to(A, B, env), guard) == env
    assert guard.expected(SID, A.node_id) == 1
    assert guard.expected(SID, C.node_id) == 0


def test_a_public_round_may_travel_signed() -> None:
    env = commitments()
    guard = ReplayGuard()
    assert open_as(B, signed_to(A, B, env), guard) == env
    assert guard.expected(SID, A.node_id) == 1


def test_a_public_round_may_also_travel_sealed() -> None:
    assert open_as(B, sealed_to(A, B, commitments())) == commitments()


@pytest.mark.parametrize("send", [sealed_to, signed_to])
def test_broadcast_is_one_copy_per_recipient(send: Callable[..., bytes]) -> None:
    env = commitments()
    to_b, to_c = send(A, B, env), send(A, C, env)
    assert open_as(B, to_b) == env
    assert open_as(C, to_c) == env
    assert (read_header(to_b).to_party, read_header(to_c).to_party) == (2, 3)
    refused(C, to_b, "not-for-us")
    refused(B, to_c, "not-for-us")


def test_header_is_the_documented_map_and_readable_for_routing() -> None:
    fields = {"v", "session_id", "protocol", "round", "from", "to", "from_party", "to_party", "seq", "mode"}
    for data, mode, rnd, parts in (
        (sealed_to(A, B, p2p(), seq=5), "sealed", 2, {"v", "header", "body"}),
        (signed_to(A, B, commitments(), seq=5), "signed", 1, {"v", "header", "body", "signature"}),
    ):
        assert outer(data)["v"] == 2 and set(outer(data)) == parts
        assert reencode(outer(data)) == data and reencode(header_of(data)) == outer(data)["header"]
        assert set(header_of(data)) == fields and header_of(data)["v"] == 2
        parsed = read_header(data)
        assert (parsed.from_node, parsed.to_node, parsed.from_party, parsed.to_party) == (A.node_id, B.node_id, 1, 2)
        assert (parsed.session_id, parsed.protocol, parsed.round, parsed.seq, parsed.mode) == (SID, PROTO, rnd, 5, mode)
        assert parsed.encode() == outer(data)["header"]


def test_independent_sealed_construction_is_byte_for_byte_the_modules() -> None:
    # the module docstring describes the format precisely enough to reimplement it
    env = p2p()
    for seq in (0, 1, 2**40):
        assert build(A, B, env.encode(), {"seq": seq}) == sealed_to(A, B, env, seq=seq)
    assert open_as(B, build(A, B, env.encode())) == env


def test_independent_signed_construction_is_byte_for_byte_the_modules() -> None:
    env = commitments()
    assert build(A, B, env.encode(), {"seq": 3}, mode="signed") == signed_to(A, B, env, seq=3)
    assert open_as(B, build(A, B, env.encode(), mode="signed")) == env


def test_the_modules_output_decrypts_under_the_independently_derived_key() -> None:
    for phase in (SID, PHASE2):
        env = p2p(sid=phase)
        data = sealed_to(A, B, env, seq=7)
        key = documented_key(phase, A, B)
        assert SESSION[B.node_id].key(phase, A.node_id, B.node_id) == key
        plain = ChaCha20Poly1305(key).decrypt(documented_nonce(7), outer(data)["body"], outer(data)["header"])
        assert plain == env.encode()


def test_relay_cannot_read_the_payload() -> None:
    env = p2p()
    data = sealed_to(A, B, env)
    for secret_part in (SECRET, SECRET[7:-7], env.payload, env.encode()):
        assert secret_part not in data
    assert b"secret share" not in data


def test_signed_mode_is_in_the_clear_by_design() -> None:
    # the reason the recipient refuses this mode for any round that is not public
    assert COMMITMENT in signed_to(A, B, commitments())


# -- keys: per session, phase and direction, and gone with the session ------------------------------


def test_a_sealed_message_before_the_senders_hello_is_refused() -> None:
    a, b = SessionKeys(A, SID, ROSTER), SessionKeys(B, SID, ROSTER)
    a.accept(b.hello, known_senders=known_by(A))  # A has B's hello; B does not have A's yet
    key = a.key(SID, A.node_id, B.node_id)
    assert key is not None
    data = seal(p2p(), key=key, from_node=A.node_id, to_node=B.node_id, seq=0, roster=ROSTER)
    guard = ReplayGuard()
    err = refused(B, data, "no-key", guard, keys=b.key)
    assert err.culprit is None
    assert guard.expected(SID, A.node_id) == 0
    b.accept(a.hello, known_senders=known_by(B))
    assert open_as(B, data, guard, keys=b.key) == p2p()


def test_a_message_under_another_phases_key_does_not_decrypt() -> None:
    data = build(A, B, p2p().encode(), key=documented_key(PHASE2, A, B))
    refused(B, data, "decryption-failed")


def test_a_message_under_the_other_directions_key_does_not_decrypt() -> None:
    data = build(A, B, p2p().encode(), key=documented_key(SID, B, A))
    refused(B, data, "decryption-failed")


def test_every_phase_and_direction_has_its_own_key() -> None:
    pairs = [(s, r) for s in (A, B, C) for r in (A, B, C) if s is not r]
    keys = {documented_key(phase, s, r) for phase in (SID, PHASE2) for s, r in pairs}
    assert len(keys) == 2 * len(pairs)


def test_one_key_and_sequence_number_open_at_most_one_message() -> None:
    # seq is the nonce: once a number is accepted, no other message under it ever is,
    # however authentic, so a nonce is never used twice for anything the recipient acts on
    guard = ReplayGuard()
    first, second = sealed_to(A, B, p2p(payload=b"first")), sealed_to(A, B, p2p(payload=b"second"))
    open_as(B, first, guard)
    refused(B, second, "replay", guard)
    assert guard.expected(SID, A.node_id) == 1


def test_numbers_under_one_key_are_never_repeated_across_a_session() -> None:
    guard = ReplayGuard()
    accepted: list[tuple[bytes, str, str, int]] = []
    for phase in (SID, PHASE2):
        for n, sender in enumerate((A, C) * 3):
            seq = n // 2
            data = sealed_to(sender, B, p2p(sender=ROSTER[sender.node_id], sid=phase, payload=bytes([n])), seq=seq)
            open_as(B, data, guard)
            h = read_header(data)
            accepted.append((h.session_id, h.from_node, h.to_node, h.seq))
            refused(B, data, "replay", guard)
    assert len(set(accepted)) == len(accepted) == 12


def test_resealing_the_same_envelope_under_the_same_number_gives_the_same_bytes() -> None:
    # a retry after a restart shows the relay nothing new
    assert sealed_to(A, B, p2p(), seq=4) == sealed_to(A, B, p2p(), seq=4)
    assert outer(sealed_to(A, B, p2p(), seq=4))["body"] != outer(sealed_to(A, B, p2p(), seq=5))["body"]


def test_a_message_sealed_in_a_session_cannot_be_opened_after_forget() -> None:
    keys = handshake((A, B), fixed=False)
    key = keys[A.node_id].key(SID, A.node_id, B.node_id)
    assert key is not None
    data = seal(p2p(), key=key, from_node=A.node_id, to_node=B.node_id, seq=0, roster=ROSTER)
    assert open_as(B, data, keys=keys[B.node_id].key) == p2p()
    keys[B.node_id].forget()
    refused(B, data, "no-key", keys=keys[B.node_id].key)


# -- tampering by the relay ------------------------------------------------------------------------


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


@pytest.mark.parametrize(("send", "env"), [(sealed_to, p2p()), (signed_to, commitments())])
def test_any_flipped_byte_is_refused_and_leaves_no_trace(send: Callable[..., bytes], env: Envelope) -> None:
    data = send(A, B, env)
    guard = ReplayGuard()
    for i in range(len(data)):
        with pytest.raises(SealedError):
            open_as(B, _flip(data, i), guard)
    assert guard.expected(SID, A.node_id) == 0
    assert open_as(B, data, guard) == env


@pytest.mark.parametrize(
    ("send", "env", "part", "reason"),
    [
        (sealed_to, p2p(), "body", "decryption-failed"),
        (signed_to, commitments(), "body", "bad-signature"),
        (signed_to, commitments(), "signature", "bad-signature"),
    ],
)
def test_flipped_body_or_signature_is_refused_unattributed(
    send: Callable[..., bytes], env: Envelope, part: str, reason: str
) -> None:
    obj = outer(send(A, B, env))
    for i in range(len(obj[part])):
        err = refused(B, reencode({**obj, part: _flip(obj[part], i)}), reason)
        assert err.culprit is None


@pytest.mark.parametrize(("send", "env"), [(sealed_to, p2p()), (signed_to, commitments())])
def test_flipped_header_bytes_are_refused_unattributed(send: Callable[..., bytes], env: Envelope) -> None:
    obj = outer(send(A, B, env))
    reasons = set()
    for i in range(len(obj["header"])):
        with pytest.raises(SealedError) as info:
            open_as(B, reencode({**obj, "header": _flip(obj["header"], i)}))
        assert info.value.culprit is None
        reasons.add(info.value.reason)
    assert {"malformed", "decryption-failed" if send is sealed_to else "bad-signature"} <= reasons


HEADER_EDITS = [
    {"seq": 1},
    {"round": 3},
    {"from_party": 3},
    {"to_party": 3},
    {"session_id": PHASE2},
    {"protocol": "x/y"},
]


def expecting(changes: dict[str, Any]) -> ReplayGuard:
    """A guard that lets the edited message reach the tag or signature: at A's ``seq``, in its session."""
    guard = ReplayGuard()
    for seq in range(changes.get("seq", 0)):
        guard.accept(changes.get("session_id", SID), A.node_id, seq)
    return guard


@pytest.mark.parametrize("changes", HEADER_EDITS)
def test_edited_header_fields_do_not_decrypt(changes: dict[str, Any]) -> None:
    refused(B, with_header(sealed_to(A, B, p2p()), **changes), "decryption-failed", expecting(changes))


@pytest.mark.parametrize("changes", HEADER_EDITS)
def test_edited_header_fields_fail_the_signature(changes: dict[str, Any]) -> None:
    refused(B, with_header(signed_to(A, B, commitments()), **changes), "bad-signature", expecting(changes))


@pytest.mark.parametrize("send", [sealed_to, signed_to])
def test_switching_the_mode_is_refused(send: Callable[..., bytes]) -> None:
    data = send(A, B, commitments())
    other = "signed" if send is sealed_to else "sealed"
    refused(B, with_header(data, mode=other), "malformed")  # the fields no longer fit the mode
    obj = {**outer(data), "header": reencode({**header_of(data), "mode": other})}
    fitted = (
        {k: v for k, v in obj.items() if k != "signature"} if other == "sealed" else {**obj, "signature": bytes(64)}
    )
    refused(B, reencode(fitted), "decryption-failed" if other == "sealed" else "bad-signature")


def test_retargeted_copy_is_refused() -> None:
    data = sealed_to(A, B, commitments())
    # delivered as it is to another node: not addressed to it
    refused(C, data, "not-for-us")
    # the relay rewrites the addressee: the header is the associated data, and C's key is another
    refused(C, with_header(data, to=C.node_id, to_party=3), "decryption-failed")
    refused(C, with_header(signed_to(A, B, commitments()), to=C.node_id, to_party=3), "bad-signature")


def test_sender_spoofing_is_refused() -> None:
    # C seals, under its own key with B, a message whose header says it comes from A
    refused(B, build(C, B, p2p().encode(), {"from": A.node_id, "from_party": 1}), "decryption-failed")
    # C signs a public message whose header says it comes from A
    refused(
        B, build(C, B, commitments().encode(), {"from": A.node_id, "from_party": 1}, mode="signed"), "bad-signature"
    )


def test_another_node_cannot_claim_a_sealed_message() -> None:
    # C takes A's sealed message to B and puts itself as sender: B opens it with the C->B
    # key, which is not the one it was sealed under, and the header is the associated data
    data = with_header(sealed_to(A, B, p2p()), **{"from": C.node_id, "from_party": 3})
    err = refused(B, data, "decryption-failed")
    assert err.culprit is None


def test_another_node_cannot_claim_a_signed_message() -> None:
    # C re-signs A's public message as its own: it is then C's message, with A's party inside
    data = signed_to(A, B, commitments())
    hb = reencode({**header_of(data), "from": C.node_id, "from_party": 3})
    body = outer(data)["body"]
    signature = C.sign(SIGN_DOMAIN + struct.pack(">I", len(hb)) + hb + body)
    err = refused(B, reencode({**outer(data), "header": hb, "signature": signature}), "mismatch")
    assert err.culprit == C.node_id


@pytest.mark.parametrize(("send", "env"), [(sealed_to, p2p()), (signed_to, commitments())])
def test_replay_is_refused(send: Callable[..., bytes], env: Envelope) -> None:
    data = send(A, B, env)
    guard = ReplayGuard()
    open_as(B, data, guard)
    err = refused(B, data, "replay", guard)
    assert err.culprit is None  # the relay's doing, not A's


def test_reordering_and_gaps_are_refused() -> None:
    msgs = [sealed_to(A, B, p2p(rnd=r), seq=r - 1) for r in (1, 2, 3)]
    guard = ReplayGuard()
    open_as(B, msgs[0], guard)
    err = refused(B, msgs[2], "out-of-order", guard)  # seq 2 while 1 is missing
    assert "1 message(s)" in str(err)
    assert guard.expected(SID, A.node_id) == 1
    assert open_as(B, msgs[1], guard).round == 2
    assert open_as(B, msgs[2], guard).round == 3  # delivered again, now in order
    refused(B, msgs[1], "replay", guard)  # seq 1 after seq 2
    assert guard.expected(SID, A.node_id) == 3


def test_first_message_missing_is_detected() -> None:
    refused(B, sealed_to(A, B, p2p(), seq=1), "out-of-order")


def test_signed_and_sealed_messages_share_one_numbering() -> None:
    guard = ReplayGuard()
    open_as(B, signed_to(A, B, commitments(), seq=0), guard)
    refused(B, sealed_to(A, B, p2p(), seq=0), "replay", guard)
    assert open_as(B, sealed_to(A, B, p2p(), seq=1), guard) == p2p()


def test_sequence_numbers_are_per_sender_and_session() -> None:
    guard = ReplayGuard()
    open_as(B, sealed_to(A, B, p2p()), guard)
    open_as(B, sealed_to(C, B, p2p(sender=3)), guard)
    open_as(B, sealed_to(A, B, p2p(sid=PHASE2)), guard)
    assert guard.expected(SID, A.node_id) == guard.expected(SID, C.node_id) == 1
    assert guard.expected(PHASE2, A.node_id) == 1
    assert guard.expected(PHASE2, C.node_id) == guard.expected(OTHER_SID, A.node_id) == 0


# -- a corrupted sender --------------------------------------------------------------------------


INNER_MISMATCHES: dict[str, Callable[[], Envelope]] = {
    "session": lambda: Envelope(PHASE2, PROTO, 2, 1, 2, b"x"),
    "protocol": lambda: Envelope(SID, "frost-sign/frost-secp256k1", 2, 1, 2, b"x"),
    "round": lambda: Envelope(SID, PROTO, 1, 1, 2, b"x"),
    "sender": lambda: Envelope(SID, PROTO, 2, 3, 2, b"x"),
    "recipient": lambda: Envelope(SID, PROTO, 2, 1, 3, b"x"),
}


@pytest.mark.parametrize("field", sorted(INNER_MISMATCHES))
def test_inner_envelope_must_match_its_header(field: str) -> None:
    err = refused(B, build(A, B, INNER_MISMATCHES[field]().encode()), "mismatch")
    assert err.culprit == A.node_id


def test_inner_envelope_of_a_signed_message_must_match_its_header() -> None:
    err = refused(B, build(A, B, Envelope(SID, PROTO, 1, 3, None, b"x").encode(), mode="signed"), "mismatch")
    assert err.culprit == A.node_id


def test_node_cannot_speak_for_another_party() -> None:
    # C seals, under its own key and consistent inside, an envelope as party 1 (A's party)
    spoof = Envelope(SID, PROTO, 2, 1, 2, b"x")
    err = refused(B, build(C, B, spoof.encode(), {"from_party": 1}), "mismatch")
    assert err.culprit == C.node_id
    key = SESSION[C.node_id].key(SID, C.node_id, B.node_id)
    assert key is not None
    with pytest.raises(ValueError, match="this node is party 3"):
        seal(spoof, key=key, from_node=C.node_id, to_node=B.node_id, seq=0, roster=ROSTER)


def test_wrong_recipient_party_is_refused() -> None:
    # a message for party 3 sealed to B's node
    env = Envelope(SID, PROTO, 2, 1, 3, b"x")
    err = refused(B, build(A, B, env.encode(), {"to_party": 3}), "mismatch")
    assert err.culprit == A.node_id


def test_garbage_inside_is_the_senders_fault() -> None:
    err = refused(B, build(A, B, b"not an envelope"), "malformed")
    assert err.culprit == A.node_id


def test_a_signed_message_for_a_secret_round_is_refused_even_with_a_valid_signature() -> None:
    # a sender's bug (or a corrupted sender) must not be able to put a share on the wire in the clear
    guard = ReplayGuard()
    data = signed_to(A, B, p2p())  # round 2 carries shares
    err = refused(B, data, "not-public", guard)
    assert err.culprit == A.node_id
    assert guard.expected(SID, A.node_id) == 0
    err = refused(B, build(A, B, p2p(rnd=2).encode(), {"round": 2}, mode="signed"), "not-public")
    assert err.culprit == A.node_id


FORGERIES: dict[str, Callable[[bytes], bytes]] = {
    "signed by another node": lambda data: C.sign(
        SIGN_DOMAIN + struct.pack(">I", len(outer(data)["header"])) + outer(data)["header"] + outer(data)["body"]
    ),
    "random bytes": lambda data: bytes(range(64)),
    "the sender's signature of another message": lambda data: outer(signed_to(A, B, commitments(), seq=1))["signature"],
    "over the bytes without the domain": lambda data: A.sign(
        struct.pack(">I", len(outer(data)["header"])) + outer(data)["header"] + outer(data)["body"]
    ),
    "over header and body without the length": lambda data: A.sign(
        SIGN_DOMAIN + outer(data)["header"] + outer(data)["body"]
    ),
}


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
def test_a_signed_message_with_a_forged_signature_is_refused(forgery: str) -> None:
    for env in (commitments(), p2p()):  # forged for a secret round: still the signature first, unattributed
        data = signed_to(A, B, env)
        err = refused(B, reencode({**outer(data), "signature": FORGERIES[forgery](data)}), "bad-signature")
        assert err.culprit is None


def test_unknown_sender_is_refused() -> None:
    roster = {**ROSTER, D.node_id: 4}
    for mode, rnd in (("sealed", 2), ("signed", 1)):
        data = build(D, B, Envelope(SID, PROTO, rnd, 4, 2, b"x").encode(), {"from_party": 4}, mode=mode)
        refused(B, data, "unknown-sender", rosters={SID: roster})


def test_known_node_outside_the_session_is_refused() -> None:
    small = {A.node_id: 1, B.node_id: 2}
    err = refused(B, sealed_to(C, B, p2p(sender=3)), "mismatch", rosters={SID: small})
    assert err.culprit == C.node_id


def test_unknown_session_is_refused() -> None:
    refused(B, sealed_to(A, B, p2p()), "unknown-session", rosters={OTHER_SID: ROSTER})


def test_message_from_ourselves_is_refused() -> None:
    data = build(B, B, p2p(sender=2).encode(), {"from_party": 2}, key=bytes(32))
    refused(B, data, "unknown-sender", known=DESCS)


def test_a_nodes_own_message_reflected_back_is_refused() -> None:
    data = sealed_to(B, A, p2p(sender=2, recipient=1))
    refused(B, data, "not-for-us")
    # rewritten to look like A's message to B: the B->A key is not the A->B key
    reflected = with_header(data, **{"from": A.node_id, "to": B.node_id, "from_party": 1, "to_party": 2})
    refused(B, reflected, "decryption-failed")


# -- malformed input --------------------------------------------------------------------------------


@pytest.mark.parametrize(("send", "env"), [(sealed_to, p2p()), (signed_to, commitments())])
def test_truncated_messages_are_refused(send: Callable[..., bytes], env: Envelope) -> None:
    data = send(A, B, env)
    for cut in (0, 1, 2, 10, 50, len(data) // 2, len(data) - 65, len(data) - 17, len(data) - 1):
        refused(B, data[:cut], "malformed")


def test_trailing_bytes_are_refused() -> None:
    err = refused(B, sealed_to(A, B, p2p()) + b"\x00", "malformed")
    assert "unexpected bytes" in str(err)


def test_oversized_input_is_refused_before_parsing() -> None:
    refused(B, b"\xa3" + bytes(MAX_SEALED_LEN), "too-large")


def test_oversized_envelope_cannot_be_sealed() -> None:
    with pytest.raises(ValueError, match="recipients refuse"):
        sealed_to(A, B, Envelope(SID, PROTO, 2, 1, 2, bytes(MAX_SEALED_LEN)))
    with pytest.raises(ValueError, match="recipients refuse"):
        signed_to(A, B, Envelope(SID, PROTO, 1, 1, None, bytes(MAX_SEALED_LEN)))


def test_wrong_versions_are_refused() -> None:
    data = sealed_to(A, B, p2p())
    for v in (1, 3, True, "2"):
        refused(B, reencode({**outer(data), "v": v}), "version")
    refused(B, build(A, B, p2p().encode(), {"v": 1}), "version")
    refused(B, build(A, B, p2p().encode(), outer_v=1), "version")
    refused(B, build(A, B, commitments().encode(), {"v": 1}, mode="signed"), "version")


def test_a_version_1_message_is_refused_as_a_version() -> None:
    # the layout before forward secrecy: a per-message ephemeral key in the header, every message signed
    data = sealed_to(A, B, p2p())
    h = {k: v for k, v in header_of(data).items() if k != "mode"}
    hb = reencode({**h, "v": 1, "epk": raw_public(X25519PrivateKey.generate())})
    body = outer(data)["body"]
    signature = A.sign(b"harbour/sealed/v1\x00" + struct.pack(">I", len(hb)) + hb + body)
    refused(B, reencode({"v": 1, "header": hb, "ciphertext": body, "signature": signature}), "version")


def test_non_canonical_encodings_are_refused() -> None:
    for data in (sealed_to(A, B, p2p()), signed_to(A, B, commitments())):
        obj = outer(data)
        refused(B, cbor2.dumps(dict(reversed(list(obj.items())))), "malformed")
        hb = cbor2.dumps(dict(reversed(list(header_of(data).items()))))
        refused(B, reencode({**obj, "header": hb}), "malformed")


def _header_case(**changes: Any) -> Callable[[dict[str, Any], dict[str, Any]], bytes]:
    return lambda o, h: reencode({**o, "header": reencode({**h, **changes})})


STRUCTURE_CASES: dict[str, Callable[[dict[str, Any], dict[str, Any]], bytes]] = {
    "array": lambda o, h: cbor2.dumps([2, o["header"], o["body"]]),
    "missing body": lambda o, h: reencode({k: v for k, v in o.items() if k != "body"}),
    "extra field": lambda o, h: reencode({**o, "x": 1}),
    "header not bytes": lambda o, h: reencode({**o, "header": h}),
    "empty header": lambda o, h: reencode({**o, "header": b""}),
    "header over 1024 bytes": lambda o, h: reencode({**o, "header": reencode({**h, "protocol": "p" * 1100})}),
    "body not bytes": lambda o, h: reencode({**o, "body": "text"}),
    "ciphertext shorter than the tag": lambda o, h: reencode({**o, "body": bytes(15)}),
    "signature on a sealed message": lambda o, h: reencode({**o, "signature": bytes(64)}),
    "signed mode without signature": _header_case(mode="signed"),
    "header array": lambda o, h: reencode({**o, "header": cbor2.dumps(list(h.values()))}),
    "header extra field": _header_case(x=1),
    "header missing field": lambda o, h: reencode(
        {**o, "header": reencode({k: v for k, v in h.items() if k != "seq"})}
    ),
    "short session id": _header_case(session_id=SID[:31]),
    "bad protocol": _header_case(protocol="dkg\nx"),
    "empty protocol": _header_case(protocol=""),
    "negative round": _header_case(round=-1),
    "round over 32 bits": _header_case(round=2**32),
    "bool seq": _header_case(seq=False),
    "negative seq": _header_case(seq=-1),
    "seq over 63 bits": _header_case(seq=2**63),
    "party 0": _header_case(from_party=0),
    "party 256": _header_case(to_party=256),
    "bool party": _header_case(from_party=True),
    "node id bytes": _header_case(**{"from": bytes(16)}),
    "upper-case node id": _header_case(to=B.node_id.upper()),
    "unknown mode": _header_case(mode="clear"),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE_CASES))
def test_malformed_structure_is_refused(case: str) -> None:
    data = sealed_to(A, B, p2p())
    refused(B, STRUCTURE_CASES[case](outer(data), header_of(data)), "malformed")


@pytest.mark.parametrize(
    "changes",
    [{"signature": bytes(63)}, {"signature": bytes(65)}, {"signature": "x" * 64}],
    ids=["short", "long", "text"],
)
def test_signed_message_with_a_malformed_signature_is_refused(changes: dict[str, Any]) -> None:
    refused(B, reencode({**outer(signed_to(A, B, commitments())), **changes}), "malformed")


@pytest.mark.parametrize("name", sorted(TAGGED_VALUES))
def test_tagged_cbor_is_refused(name: str) -> None:
    refused(B, TAGGED_VALUES[name], "malformed")
    data = sealed_to(A, B, p2p())
    refused(B, reencode({**outer(data), "header": TAGGED_VALUES[name]}), "malformed")


# -- sealing refuses misuse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to_node": A.node_id}, "to itself"),
        ({"to_node": D.node_id}, "roster"),
        ({"envelope": p2p(recipient=3)}, "for party 3"),
        ({"envelope": p2p(sender=2)}, "this node is party 1"),
        ({"envelope": Envelope(SID[:16], PROTO, 2, 1, 2, b"")}, "session ids are 32 bytes"),
        ({"envelope": Envelope(SID, "dkg frost", 2, 1, 2, b"")}, "protocol name"),
        ({"envelope": Envelope(SID, PROTO, 2**32, 1, 2, b"")}, "round"),
        ({"envelope": Envelope(SID, PROTO, True, 1, 2, b"")}, "cannot be sealed: envelope round"),
        ({"seq": -1}, "seq"),
        ({"seq": 2**63}, "seq"),
        ({"seq": True}, "seq"),
        ({"roster": {A.node_id: 1, B.node_id: 1}}, "same party"),
        ({"roster": {A.node_id: 1, B.node_id: 0}}, "party in 1..255"),
        ({"roster": {"alice": 1, B.node_id: 2}}, "node id"),
        ({"key": bytes(31)}, "pair key is 32 bytes"),
        ({"key": bytearray(32)}, "pair key is 32 bytes"),
        ({"key": None}, "pair key is 32 bytes"),
    ],
)
def test_seal_refuses_misuse(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"to_node": B.node_id, "envelope": p2p(), "seq": 0, "roster": ROSTER, "key": bytes(32)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=message) as info:
        seal(
            args["envelope"],
            key=args["key"],
            from_node=A.node_id,
            to_node=args["to_node"],
            seq=args["seq"],
            roster=args["roster"],
        )
    assert not isinstance(info.value, SealedError)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"to_node": A.node_id}, "to itself"),
        ({"to_node": D.node_id}, "roster"),
        ({"envelope": commitments(sender=2)}, "this node is party 1"),
        ({"seq": -1}, "seq"),
    ],
)
def test_sign_public_refuses_misuse(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"to_node": B.node_id, "envelope": commitments(), "seq": 0, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        sign_public(A, args["envelope"], to_node=args["to_node"], seq=args["seq"], roster=ROSTER)
    assert not isinstance(info.value, SealedError)


# -- ReplayGuard persistence -----------------------------------------------------------------------


def test_replay_guard_persists() -> None:
    guard = ReplayGuard()
    msgs = [sealed_to(A, B, p2p(rnd=r), seq=r - 1) for r in (1, 2, 3)]
    open_as(B, msgs[0], guard)
    open_as(B, msgs[1], guard)
    guard.accept(OTHER_SID, C.node_id, 0)
    data = guard.to_bytes()
    restored = ReplayGuard.from_bytes(data)
    assert restored.to_bytes() == data
    assert restored.expected(SID, A.node_id) == 2
    assert restored.expected(OTHER_SID, C.node_id) == 1
    refused(B, msgs[1], "replay", restored)  # a restart does not reopen old messages
    assert open_as(B, msgs[2], restored).round == 3
    assert ReplayGuard.from_bytes(ReplayGuard().to_bytes()).expected(SID, A.node_id) == 0


def test_replay_guard_forget() -> None:
    guard = ReplayGuard()
    guard.accept(SID, A.node_id, 0)
    guard.accept(OTHER_SID, A.node_id, 0)
    guard.forget(SID)
    assert guard.expected(SID, A.node_id) == 0
    assert guard.expected(OTHER_SID, A.node_id) == 1


def test_replay_guard_subset_and_merge_keep_the_highest_number() -> None:
    guard = ReplayGuard()
    for seq in range(3):
        guard.accept(SID, A.node_id, seq)
    guard.accept(OTHER_SID, A.node_id, 0)
    part = guard.subset([SID])
    assert part.expected(SID, A.node_id) == 3 and part.expected(OTHER_SID, A.node_id) == 0
    behind = ReplayGuard()
    behind.accept(SID, A.node_id, 0)
    part.merge(behind)  # an older copy brought back never lowers what was accepted
    assert part.expected(SID, A.node_id) == 3


def _guard_state(entries: list[Any], **changes: Any) -> bytes:
    return reencode({"format": "harbour-replay-guard", "v": 1, "next": entries, **changes})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid CBOR"),
        (cbor2.dumps({"format": "x", "v": 1, "next": []}), "not a Harbour replay guard"),
        (_guard_state([], v=2), "version"),
        (_guard_state([], v=True), "version"),
        (_guard_state([], extra=1), "malformed"),
        (_guard_state([[SID, A.node_id]]), "is not"),
        (_guard_state([[SID[:31], A.node_id, 1]]), "session id"),
        (_guard_state([[SID, "A", 1]]), "node id"),
        (_guard_state([[SID, A.node_id, 0]]), "out-of-range"),
        (_guard_state([[SID, A.node_id, True]]), "out-of-range"),
        (_guard_state([[SID, A.node_id, 1], [SID, A.node_id, 2]]), "not sorted or repeat"),
        (_guard_state([[OTHER_SID, A.node_id, 1], [SID, A.node_id, 1]]), "not sorted or repeat"),
        (_guard_state([]) + b"\x00", "malformed"),
    ],
)
def test_replay_guard_refuses_bad_state(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ReplayGuard.from_bytes(data)


def test_sealed_error_is_a_value_error() -> None:
    assert issubclass(SealedError, ValueError)
