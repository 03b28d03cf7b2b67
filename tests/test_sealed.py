"""Sealed envelopes: what a relay between signer nodes can and cannot do.

The relay sees every sealed message and may alter, re-target, replay, reorder or drop
it; a corrupted node holds its own keys and may seal anything. Every such message is
refused with its reason, and a refused message never advances the replay guard."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from harbour.mpc.envelope import Envelope, encode_payload
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.sealed import (
    KDF_DOMAIN,
    MAX_SEALED_LEN,
    SIGN_DOMAIN,
    ReplayGuard,
    SealedError,
    open_sealed,
    read_header,
    seal,
)
from helpers import TAGGED_VALUES

SID = bytes(range(32))
OTHER_SID = bytes(range(1, 33))
PROTO = "dkg/frost-secp256k1"
SECRET = b"\x5a" * 7 + b"secret share bytes that must never be seen by the relay" + b"\xa5" * 7

A, B, C, D = (NodeIdentity.generate() for _ in range(4))  # D is a stranger to everyone
DESCS = {
    n.node_id: n.descriptor(name, f"https://{name}.example:8443") for n, name in zip((A, B, C, D), "abcd", strict=True)
}
ROSTER = {A.node_id: 1, B.node_id: 2, C.node_id: 3}
ROSTERS = {SID: ROSTER}


def desc(node: NodeIdentity) -> NodeDescriptor:
    return DESCS[node.node_id]


def known_by(node: NodeIdentity) -> dict[str, NodeDescriptor]:
    return {nid: d for nid, d in DESCS.items() if nid not in (node.node_id, D.node_id)}


def p2p(sender: int = 1, recipient: int | None = 2, rnd: int = 2, payload: bytes = SECRET) -> Envelope:
    return Envelope(SID, PROTO, rnd, sender, recipient, encode_payload({"share": payload}))


def open_as(node: NodeIdentity, data: bytes, guard: ReplayGuard | None = None) -> Envelope:
    return open_sealed(
        node, data, known_senders=known_by(node), rosters=ROSTERS, guard=guard if guard is not None else ReplayGuard()
    )


def refused(node: NodeIdentity, data: bytes, reason: str, guard: ReplayGuard | None = None) -> SealedError:
    with pytest.raises(SealedError) as info:
        open_as(node, data, guard)
    assert info.value.reason == reason, str(info.value)
    return info.value


def outer(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = cbor2.loads(data)
    return obj


def header_of(data: bytes) -> dict[str, Any]:
    obj: dict[str, Any] = cbor2.loads(outer(data)["header"])
    return obj


def reencode(obj: dict[str, Any]) -> bytes:
    return cbor2.dumps(obj, canonical=True)


def build(
    signer: NodeIdentity,
    to: NodeIdentity,
    plaintext: bytes,
    header: dict[str, Any] | None = None,
    *,
    outer_v: int = 1,
) -> bytes:
    """The documented construction, written out independently, for any header and plaintext:
    what a corrupted node holding its own signing key can produce."""
    ephemeral = X25519PrivateKey.generate()
    epk = ephemeral.public_key().public_bytes_raw()
    fields: dict[str, Any] = {
        "v": 1,
        "session_id": SID,
        "protocol": PROTO,
        "round": 2,
        "from": signer.node_id,
        "to": to.node_id,
        "from_party": ROSTER.get(signer.node_id, 4),
        "to_party": ROSTER[to.node_id],
        "seq": 0,
        "epk": epk,
        **(header or {}),
    }
    hb = cbor2.dumps(fields, canonical=True)
    shared = ephemeral.exchange(desc(to).enc_public_key())
    info = KDF_DOMAIN + hashlib.sha256(hb).digest()
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=epk + to.enc_pk, info=info).derive(shared)
    ct = ChaCha20Poly1305(key).encrypt(bytes(12), plaintext, hb)
    sig = signer.sign(SIGN_DOMAIN + struct.pack(">I", len(hb)) + hb + ct)
    return reencode({"v": outer_v, "header": hb, "ciphertext": ct, "signature": sig})


# -- honest use ----------------------------------------------------------------------------------


def test_point_to_point_round_trip() -> None:
    env = p2p()
    guard = ReplayGuard()
    data = seal(A, desc(B), env, seq=0, roster=ROSTER)
    assert open_as(B, data, guard) == env
    assert guard.expected(SID, A.node_id) == 1
    assert guard.expected(SID, C.node_id) == 0


def test_broadcast_is_one_copy_per_recipient() -> None:
    env = p2p(recipient=None, rnd=1)
    to_b = seal(A, desc(B), env, seq=0, roster=ROSTER)
    to_c = seal(A, desc(C), env, seq=0, roster=ROSTER)
    assert open_as(B, to_b) == env
    assert open_as(C, to_c) == env
    assert (read_header(to_b).to_party, read_header(to_c).to_party) == (2, 3)
    refused(C, to_b, "not-for-us")
    refused(B, to_c, "not-for-us")


def test_header_is_the_documented_map_and_readable_for_routing() -> None:
    data = seal(A, desc(B), p2p(), seq=5, roster=ROSTER)
    assert set(outer(data)) == {"v", "header", "ciphertext", "signature"}
    h = header_of(data)
    assert set(h) == {"v", "session_id", "protocol", "round", "from", "to", "from_party", "to_party", "seq", "epk"}
    parsed = read_header(data)
    assert (parsed.from_node, parsed.to_node, parsed.from_party, parsed.to_party) == (A.node_id, B.node_id, 1, 2)
    assert (parsed.session_id, parsed.protocol, parsed.round, parsed.seq) == (SID, PROTO, 2, 5)
    assert parsed.encode() == outer(data)["header"]


def test_independent_construction_opens() -> None:
    # the module docstring describes the format precisely enough to reimplement it
    env = p2p()
    assert open_as(B, build(A, B, env.encode())) == env


def test_relay_cannot_read_the_payload() -> None:
    env = p2p()
    data = seal(A, desc(B), env, seq=0, roster=ROSTER)
    for secret_part in (SECRET, SECRET[7:-7], env.payload, env.encode()):
        assert secret_part not in data
    assert b"secret share" not in data


def test_every_seal_uses_a_fresh_ephemeral_key() -> None:
    first = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    second = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    assert header_of(first)["epk"] != header_of(second)["epk"]
    assert outer(first)["ciphertext"] != outer(second)["ciphertext"]


# -- tampering by the relay ------------------------------------------------------------------------


def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1 :]


def test_any_flipped_byte_is_refused_and_leaves_no_trace() -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    guard = ReplayGuard()
    for i in range(len(data)):
        with pytest.raises(SealedError):
            open_as(B, _flip(data, i), guard)
    assert guard.expected(SID, A.node_id) == 0
    assert open_as(B, data, guard) == p2p()


@pytest.mark.parametrize("part", ["ciphertext", "signature"])
def test_flipped_ciphertext_or_signature_fails_the_signature(part: str) -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    obj = outer(data)
    for i in range(len(obj[part])):
        bad = reencode({**obj, part: _flip(obj[part], i)})
        err = refused(B, bad, "bad-signature")
        assert err.culprit is None


def test_flipped_header_bytes_are_refused() -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    obj = outer(data)
    reasons = set()
    for i in range(len(obj["header"])):
        with pytest.raises(SealedError) as info:
            open_as(B, reencode({**obj, "header": _flip(obj["header"], i)}))
        assert info.value.culprit is None
        reasons.add(info.value.reason)
    assert "bad-signature" in reasons and "malformed" in reasons


@pytest.mark.parametrize(
    "changes",
    [{"seq": 1}, {"round": 3}, {"from_party": 3}, {"to_party": 3}, {"session_id": OTHER_SID}, {"protocol": "x/y"}],
)
def test_edited_header_fields_fail_the_signature(changes: dict[str, Any]) -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    obj = outer(data)
    edited = reencode({**obj, "header": reencode({**header_of(data), **changes})})
    rosters = {SID: ROSTER, OTHER_SID: ROSTER}
    with pytest.raises(SealedError) as info:
        open_sealed(B, edited, known_senders=known_by(B), rosters=rosters, guard=ReplayGuard())
    assert info.value.reason == "bad-signature"


def test_retargeted_copy_is_refused() -> None:
    data = seal(A, desc(B), p2p(recipient=None, rnd=1), seq=0, roster=ROSTER)
    # delivered as it is to another node: not addressed to it
    refused(C, data, "not-for-us")
    # the relay rewrites the addressee: the signature no longer covers the header
    obj = outer(data)
    retargeted = reencode({**obj, "header": reencode({**header_of(data), "to": C.node_id, "to_party": 3})})
    refused(C, retargeted, "bad-signature")


def test_sender_spoofing_is_refused() -> None:
    # C signs a message whose header says it comes from A
    refused(B, build(C, B, p2p().encode(), {"from": A.node_id, "from_party": 1}), "bad-signature")


def test_another_node_cannot_claim_a_message() -> None:
    # C takes A's sealed message to B, puts itself as sender and signs it: the header is
    # the AEAD's associated data and part of the key, so the ciphertext no longer opens
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    obj = outer(data)
    hb = reencode({**header_of(data), "from": C.node_id, "from_party": 3})
    sig = C.sign(SIGN_DOMAIN + struct.pack(">I", len(hb)) + hb + obj["ciphertext"])
    err = refused(B, reencode({**obj, "header": hb, "signature": sig}), "decryption-failed")
    assert err.culprit == C.node_id


def test_replay_is_refused() -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    guard = ReplayGuard()
    open_as(B, data, guard)
    err = refused(B, data, "replay", guard)
    assert err.culprit is None  # the relay's doing, not A's
    # an old message re-sealed is no better: A's seq 0 is used up
    refused(B, seal(A, desc(B), p2p(), seq=0, roster=ROSTER), "replay", guard)


def test_reordering_and_gaps_are_refused() -> None:
    msgs = [seal(A, desc(B), p2p(rnd=r), seq=r - 1, roster=ROSTER) for r in (1, 2, 3)]
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
    refused(B, seal(A, desc(B), p2p(), seq=1, roster=ROSTER), "out-of-order")


def test_sequence_numbers_are_per_sender_and_session() -> None:
    guard = ReplayGuard()
    open_as(B, seal(A, desc(B), p2p(), seq=0, roster=ROSTER), guard)
    open_as(B, seal(C, desc(B), p2p(sender=3), seq=0, roster=ROSTER), guard)
    assert guard.expected(SID, A.node_id) == guard.expected(SID, C.node_id) == 1
    assert guard.expected(OTHER_SID, A.node_id) == 0


# -- a corrupted sender --------------------------------------------------------------------------


INNER_MISMATCHES: dict[str, Callable[[], Envelope]] = {
    "session": lambda: Envelope(OTHER_SID, PROTO, 2, 1, 2, b"x"),
    "protocol": lambda: Envelope(SID, "frost-sign/frost-secp256k1", 2, 1, 2, b"x"),
    "round": lambda: Envelope(SID, PROTO, 1, 1, 2, b"x"),
    "sender": lambda: Envelope(SID, PROTO, 2, 3, 2, b"x"),
    "recipient": lambda: Envelope(SID, PROTO, 2, 1, 3, b"x"),
}


@pytest.mark.parametrize("field", sorted(INNER_MISMATCHES))
def test_inner_envelope_must_match_its_header(field: str) -> None:
    err = refused(B, build(A, B, INNER_MISMATCHES[field]().encode()), "mismatch")
    assert err.culprit == A.node_id


def test_node_cannot_speak_for_another_party() -> None:
    # C seals, honestly signed and consistent inside, an envelope as party 1 (A's party)
    spoof = Envelope(SID, PROTO, 2, 1, 2, b"x")
    err = refused(B, build(C, B, spoof.encode(), {"from_party": 1}), "mismatch")
    assert err.culprit == C.node_id
    with pytest.raises(ValueError, match="this node is party 3"):
        seal(C, desc(B), spoof, seq=0, roster=ROSTER)


def test_wrong_recipient_party_is_refused() -> None:
    # a message for party 3 sealed to B's node
    env = Envelope(SID, PROTO, 2, 1, 3, b"x")
    refused(B, build(A, B, env.encode(), {"to_party": 3}), "mismatch")


def test_garbage_inside_is_the_senders_fault() -> None:
    err = refused(B, build(A, B, b"not an envelope"), "malformed")
    assert err.culprit == A.node_id


def test_low_order_ephemeral_key_fails_decryption() -> None:
    err = refused(B, build(A, B, p2p().encode(), {"epk": bytes(32)}), "decryption-failed")
    assert err.culprit == A.node_id


def test_unknown_sender_is_refused() -> None:
    roster = {**ROSTER, D.node_id: 4}
    data = build(D, B, Envelope(SID, PROTO, 2, 4, 2, b"x").encode(), {"from_party": 4})
    with pytest.raises(SealedError) as info:
        open_sealed(B, data, known_senders=known_by(B), rosters={SID: roster}, guard=ReplayGuard())
    assert info.value.reason == "unknown-sender"


def test_known_node_outside_the_session_is_refused() -> None:
    small = {A.node_id: 1, B.node_id: 2}
    data = seal(C, desc(B), p2p(sender=3), seq=0, roster=ROSTER)
    with pytest.raises(SealedError) as info:
        open_sealed(B, data, known_senders=known_by(B), rosters={SID: small}, guard=ReplayGuard())
    assert info.value.reason == "mismatch" and info.value.culprit == C.node_id


def test_unknown_session_is_refused() -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    with pytest.raises(SealedError) as info:
        open_sealed(B, data, known_senders=known_by(B), rosters={OTHER_SID: ROSTER}, guard=ReplayGuard())
    assert info.value.reason == "unknown-session"


def test_message_from_ourselves_is_refused() -> None:
    data = build(B, B, p2p(sender=2).encode(), {"from_party": 2})
    with pytest.raises(SealedError) as info:
        open_sealed(B, data, known_senders=DESCS, rosters=ROSTERS, guard=ReplayGuard())
    assert info.value.reason == "unknown-sender"


# -- malformed input --------------------------------------------------------------------------------


def test_truncated_messages_are_refused() -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    for cut in (0, 1, 2, 10, 50, len(data) // 2, len(data) - 65, len(data) - 1):
        refused(B, data[:cut], "malformed")


def test_trailing_bytes_are_refused() -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    err = refused(B, data + b"\x00", "malformed")
    assert "unexpected bytes" in str(err)


def test_oversized_input_is_refused_before_parsing() -> None:
    refused(B, b"\xa4" + bytes(MAX_SEALED_LEN), "too-large")


def test_oversized_envelope_cannot_be_sealed() -> None:
    with pytest.raises(ValueError, match="recipients refuse"):
        seal(A, desc(B), Envelope(SID, PROTO, 2, 1, 2, bytes(MAX_SEALED_LEN)), seq=0, roster=ROSTER)


def test_wrong_versions_are_refused() -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    refused(B, reencode({**outer(data), "v": 2}), "version")
    refused(B, reencode({**outer(data), "v": True}), "version")
    refused(B, build(A, B, p2p().encode(), {"v": 2}), "version")


def test_non_canonical_encodings_are_refused() -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    obj = outer(data)
    refused(B, cbor2.dumps(dict(reversed(list(obj.items())))), "malformed")
    hb = cbor2.dumps(dict(reversed(list(header_of(data).items()))))
    refused(B, reencode({**obj, "header": hb}), "malformed")


STRUCTURE_CASES: dict[str, Callable[[dict[str, Any], dict[str, Any]], bytes]] = {
    "array": lambda o, h: cbor2.dumps([1, o["header"], o["ciphertext"], o["signature"]]),
    "missing field": lambda o, h: reencode({k: v for k, v in o.items() if k != "signature"}),
    "extra field": lambda o, h: reencode({**o, "x": 1}),
    "header not bytes": lambda o, h: reencode({**o, "header": h}),
    "short signature": lambda o, h: reencode({**o, "signature": o["signature"][:63]}),
    "short ciphertext": lambda o, h: reencode({**o, "ciphertext": b"\x00" * 15}),
    "header array": lambda o, h: reencode({**o, "header": cbor2.dumps(list(h.values()))}),
    "header extra field": lambda o, h: reencode({**o, "header": reencode({**h, "x": 1})}),
    "header missing field": lambda o, h: reencode(
        {**o, "header": reencode({k: v for k, v in h.items() if k != "seq"})}
    ),
    "short session id": lambda o, h: reencode({**o, "header": reencode({**h, "session_id": SID[:31]})}),
    "bad protocol": lambda o, h: reencode({**o, "header": reencode({**h, "protocol": "dkg\nx"})}),
    "negative round": lambda o, h: reencode({**o, "header": reencode({**h, "round": -1})}),
    "bool seq": lambda o, h: reencode({**o, "header": reencode({**h, "seq": False})}),
    "party 0": lambda o, h: reencode({**o, "header": reencode({**h, "from_party": 0})}),
    "party 256": lambda o, h: reencode({**o, "header": reencode({**h, "to_party": 256})}),
    "node id bytes": lambda o, h: reencode({**o, "header": reencode({**h, "from": bytes(16)})}),
    "short epk": lambda o, h: reencode({**o, "header": reencode({**h, "epk": h["epk"][:31]})}),
}


@pytest.mark.parametrize("case", sorted(STRUCTURE_CASES))
def test_malformed_structure_is_refused(case: str) -> None:
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    refused(B, STRUCTURE_CASES[case](outer(data), header_of(data)), "malformed")


@pytest.mark.parametrize("name", sorted(TAGGED_VALUES))
def test_tagged_cbor_is_refused(name: str) -> None:
    refused(B, TAGGED_VALUES[name], "malformed")
    data = seal(A, desc(B), p2p(), seq=0, roster=ROSTER)
    refused(B, reencode({**outer(data), "header": TAGGED_VALUES[name]}), "malformed")


# -- sealing refuses misuse ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"recipient": desc(A)}, "to itself"),
        ({"recipient": desc(D)}, "roster"),
        ({"envelope": p2p(recipient=3)}, "for party 3"),
        ({"envelope": p2p(sender=2)}, "this node is party 1"),
        ({"envelope": Envelope(SID[:16], PROTO, 2, 1, 2, b"")}, "32 bytes"),
        ({"envelope": Envelope(SID, "dkg frost", 2, 1, 2, b"")}, "protocol name"),
        ({"envelope": Envelope(SID, PROTO, 2**32, 1, 2, b"")}, "round"),
        ({"envelope": Envelope(SID, PROTO, True, 1, 2, b"")}, "cannot be sealed: envelope round"),
        ({"seq": -1}, "seq"),
        ({"roster": {A.node_id: 1, B.node_id: 1}}, "same party"),
        ({"roster": {A.node_id: 1, B.node_id: 0}}, "party in 1..255"),
        ({"roster": {"alice": 1, B.node_id: 2}}, "node id"),
    ],
)
def test_seal_refuses_misuse(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"recipient": desc(B), "envelope": p2p(), "seq": 0, "roster": ROSTER, **kwargs}
    with pytest.raises(ValueError, match=message) as info:
        seal(A, args["recipient"], args["envelope"], seq=args["seq"], roster=args["roster"])
    assert not isinstance(info.value, SealedError)


# -- ReplayGuard persistence -----------------------------------------------------------------------


def test_replay_guard_persists() -> None:
    guard = ReplayGuard()
    msgs = [seal(A, desc(B), p2p(rnd=r), seq=r - 1, roster=ROSTER) for r in (1, 2, 3)]
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


def _guard_state(entries: list[Any], **changes: Any) -> bytes:
    return reencode({"format": "harbour-replay-guard", "v": 1, "next": entries, **changes})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not valid CBOR"),
        (cbor2.dumps({"format": "x", "v": 1, "next": []}), "not a Harbour replay guard"),
        (_guard_state([], v=2), "version"),
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
