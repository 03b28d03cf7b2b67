"""Hedged randomness (crypto/hedge.py): with a broken generator that returns only zero
bytes, every secret a party draws still differs between sessions, between draws and
between parties, and the protocols still sign correctly; the values are read inside
the parties, not only from their outputs. The helper's output is checked against an
independent restatement of its documented construction."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import cbor2
import pytest

from harbour.crypto import dlog, ecdsa
from harbour.crypto.hedge import HedgedRandom
from harbour.crypto.secp256k1 import SECP256K1
from harbour.crypto.shamir import trusted_dealer_keygen
from harbour.mpc import runner, vole
from harbour.mpc.base_ot import VsotReceiver, VsotSender
from harbour.mpc.ciphersuite import FROST_SECP256K1
from harbour.mpc.dkg import DkgParty
from harbour.mpc.ecdsa_setup import EcdsaSetupParty, setup_of
from harbour.mpc.ecdsa_sign import EcdsaSigner
from harbour.mpc.envelope import Envelope, Party
from harbour.mpc.frost_party import FrostSigner
from harbour.mpc.keyshare import KeyShare
from harbour.mpc.refresh import RefreshParty
from harbour.mpc.repair import RepairParty
from harbour.mpc.reshare import ReshareParty
from harbour.mpc.vole import VoleAlice, VoleBob
from helpers import cached_keygen, session

ECDSA = "ecdsa-secp256k1"
DIGEST = hashlib.sha256(b"hedged randomness").digest()
OTHER_DIGEST = hashlib.sha256(b"another request").digest()


def broken(n: int) -> bytes:
    """A generator that has failed completely: always zero bytes."""
    return bytes(n)


def distinct(values: Sequence[object]) -> bool:
    return len(set(values)) == len(values)


def exchange(parties: Mapping[int, Party[Any]], envelopes: Sequence[Envelope]) -> list[Envelope]:
    """Deliver one batch of envelopes and return what the parties answer."""
    out: list[Envelope] = []
    for env in envelopes:
        targets = [env.recipient] if env.recipient is not None else [i for i in parties if i != env.sender]
        for dest in targets:
            if dest in parties:
                out.extend(parties[dest].receive(env))
    return out


def started(parties: Mapping[int, Party[Any]]) -> list[Envelope]:
    return [env for party in parties.values() for env in party.start()]


@cache
def broken_key() -> Mapping[int, KeyShare]:
    """A 2-of-3 ECDSA key made entirely with the broken generator."""
    return runner.keygen(ECDSA, 2, 3, rng=broken)


# -- the helper itself ---------------------------------------------------------------------------


def _frame(data: bytes) -> bytes:
    return struct.pack(">Q", len(data)) + data


def _restated(fresh: bytes, secret: list[bytes], session_id: bytes, label: str, counter: int, n: int) -> bytes:
    """HedgedRandom's documented output, restated from the Transcript encoding of crypto/hashing.py."""
    h = hashlib.sha512(_frame(b"harbour-transcript-v1") + _frame(b"harbour/hedge/v1"))
    h.update(_frame(b"fresh") + b"b" + _frame(fresh))
    h.update(_frame(b"secret") + b"l" + struct.pack(">Q", len(secret)) + b"".join(_frame(s) for s in secret))
    h.update(_frame(b"session") + b"b" + _frame(session_id))
    h.update(_frame(b"label") + b"s" + _frame(label.encode()))
    h.update(_frame(b"counter") + b"i" + _frame(counter.to_bytes(8, "big")))
    h.update(_frame(b"length") + b"i" + _frame(n.to_bytes(8, "big")))
    return hashlib.shake_256(h.digest()).digest(n)


def test_output_is_shake256_of_the_documented_transcript() -> None:
    fresh = [bytes([k]) * 32 for k in range(3)]
    stream = iter(fresh)
    hedged = HedgedRandom("test/label", b"session id", [b"share", b""], fresh=lambda n: next(stream))
    draws = [hedged(32), hedged(7), hedged(100)]
    assert draws == [
        _restated(fresh[0], [b"share", b""], b"session id", "test/label", 0, 32),
        _restated(fresh[1], [b"share", b""], b"session id", "test/label", 1, 7),
        _restated(fresh[2], [b"share", b""], b"session id", "test/label", 2, 100),
    ]


def test_output_is_pinned() -> None:
    # A change of the construction changes every hedged secret: it must be deliberate.
    hedged = HedgedRandom("test/label", b"session id", [b"share"], fresh=broken)
    assert hedged(32).hex() == "51d085317193ec62496010f61ae0e78e8e3c9d2562d73e35d25afecc1e36e887"


def test_fresh_bytes_are_drawn_for_every_call() -> None:
    asked: list[int] = []

    def source(n: int) -> bytes:
        asked.append(n)
        return bytes(n)

    hedged = HedgedRandom("test", b"s", fresh=source)
    hedged(32)
    hedged(1)
    assert asked == [32, 32]


def test_successive_draws_differ_with_a_broken_generator() -> None:
    hedged = HedgedRandom("test", b"s", [b"k"], fresh=broken)
    assert distinct([hedged(32) for _ in range(100)])


@pytest.mark.parametrize(
    "other",
    [
        HedgedRandom("test/other-label", b"s", [b"k"], fresh=broken),
        HedgedRandom("test", b"other session", [b"k"], fresh=broken),
        HedgedRandom("test", b"s", [b"other secret"], fresh=broken),
        HedgedRandom("test", b"s", [b"k", b""], fresh=broken),
        HedgedRandom("test", b"s", [b"", b"k"], fresh=broken),
    ],
    ids=["label", "session", "secret", "extra-empty-secret", "secret-position"],
)
def test_every_input_changes_the_draw(other: HedgedRandom) -> None:
    assert HedgedRandom("test", b"s", [b"k"], fresh=broken)(32) != other(32)


def test_a_shorter_draw_is_not_a_prefix_of_a_longer_one() -> None:
    assert HedgedRandom("t", b"s", fresh=broken)(32)[:16] != HedgedRandom("t", b"s", fresh=broken)(16)


def test_known_fresh_bytes_without_the_secret_do_not_reproduce_the_draw() -> None:
    fresh = bytes.fromhex("aa" * 32)
    mine = HedgedRandom("t", b"s", [b"the party's secret"], fresh=lambda n: fresh)(32)
    guesses = [HedgedRandom("t", b"s", secret, fresh=lambda n: fresh)(32) for secret in ([], [b""], [b"a guess"])]
    assert mine not in guesses


def test_a_generator_returning_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="returned 16 bytes"):
        HedgedRandom("t", b"s", fresh=lambda n: bytes(16))(32)


def test_a_negative_length_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        HedgedRandom("t", b"s", fresh=broken)(-1)


# -- primitives ------------------------------------------------------------------------------------


def test_dlog_proof_nonces_differ_between_contexts_with_a_broken_generator() -> None:
    proofs = [dlog.prove(SECP256K1, 12345, context, broken) for context in (b"a", b"b")]
    commitments = [p[:33] for p in proofs]
    assert distinct(commitments)


def test_dlog_proof_nonces_differ_between_secrets_with_a_broken_generator() -> None:
    assert dlog.prove(SECP256K1, 1, b"c", broken)[:33] != dlog.prove(SECP256K1, 2, b"c", broken)[:33]


def test_base_ot_sender_keys_differ_between_contexts_with_a_broken_generator() -> None:
    senders = [VsotSender(context, broken) for context in (b"batch one", b"batch two")]
    for s in senders:
        s.message1()
    assert senders[0]._b != senders[1]._b


def test_base_ot_receiver_secrets_differ_per_ot_with_a_broken_generator() -> None:
    # With a_k all equal, the points A_k would take only two values (a·G and a·G + B).
    sender = VsotSender(b"batch", broken)
    message2 = VsotReceiver(b"batch", 0, broken).message2(sender.message1())
    assert distinct([message2[k * 33 : (k + 1) * 33] for k in range(256)])


def test_base_ot_receiver_secrets_depend_on_the_senders_message() -> None:
    # A reused context with a broken generator must not meet a new B with the same a_k.
    first, second = VsotSender(b"batch", broken), VsotSender(b"batch", lambda n: b"\x01" * n)
    points = [VsotReceiver(b"batch", 0, broken).message2(s.message1())[:33] for s in (first, second)]
    assert distinct(points)


def test_dealer_coefficients_are_distinct_with_a_broken_generator() -> None:
    dealt = trusted_dealer_keygen(SECP256K1, 777, 3, 5, broken)
    assert distinct(dealt.commitments)
    other = trusted_dealer_keygen(SECP256K1, 778, 3, 5, broken)
    assert dealt.commitments[1] != other.commitments[1]


# -- threshold ECDSA signing ---------------------------------------------------------------------


def signers_after_round1(
    shares: Mapping[int, KeyShare], digest: bytes = DIGEST, sid: bytes | None = None, **options: Any
) -> tuple[dict[int, EcdsaSigner], list[Envelope]]:
    """Signers 1 and 2, started, and their round-one messages."""
    sid = session() if sid is None else sid
    parties = {i: EcdsaSigner(sid, shares[i], [1, 2], digest, rng=broken, **options) for i in (1, 2)}
    return parties, started(parties)


def instance(party: EcdsaSigner) -> tuple[int, int, bytes]:
    assert party._instance is not None
    return party._instance.r, party._instance.phi, party._instance.salt


def test_instance_key_mask_and_salt_differ_between_sessions_with_a_broken_generator() -> None:
    shares = broken_key()
    first, _ = signers_after_round1(shares)
    second, _ = signers_after_round1(shares)
    r1, phi1, salt1 = instance(first[1])
    r2, phi2, salt2 = instance(second[1])
    assert r1 != r2 and phi1 != phi2 and salt1 != salt2


def test_instance_key_differs_between_digests_in_one_session_id() -> None:
    shares = broken_key()
    sid = session()
    first, _ = signers_after_round1(shares, DIGEST, sid)
    second, _ = signers_after_round1(shares, OTHER_DIGEST, sid)
    assert instance(first[1])[0] != instance(second[1])[0]


def test_draws_within_one_session_differ_with_a_broken_generator() -> None:
    parties, _ = signers_after_round1(broken_key())
    r, phi, salt = instance(parties[1])
    assert r != phi and salt not in (r.to_bytes(32, "big"), phi.to_bytes(32, "big"))


def test_two_signers_with_the_same_broken_generator_draw_different_secrets() -> None:
    parties, _ = signers_after_round1(broken_key())
    assert instance(parties[1]) != instance(parties[2])
    assert parties[1]._bobs[2].b != parties[2]._bobs[1].b


def test_a_hedge_key_changes_the_instance_key() -> None:
    sid = session()
    plain, _ = signers_after_round1(broken_key(), sid=sid)
    keyed, _ = signers_after_round1(broken_key(), sid=sid, hedge_key=b"node secret")
    again, _ = signers_after_round1(broken_key(), sid=sid)
    assert instance(plain[1]) != instance(keyed[1])
    assert instance(plain[1]) == instance(again[1])  # deterministic once the generator is gone


def test_bobs_choice_bits_nonce_and_padding_differ_between_sessions_with_a_broken_generator() -> None:
    shares = broken_key()
    runs = [signers_after_round1(shares) for _ in range(2)]
    bobs = [parties[1]._bobs[2] for parties, _ in runs]
    assert bobs[0]._choices != bobs[1]._choices and bobs[0].b != bobs[1].b
    assert bobs[0]._message1[: vole.NONCE_LEN] != bobs[1]._message1[: vole.NONCE_LEN]
    assert bobs[0]._rows != bobs[1]._rows


_HONEST_RAND = vole._rand


def alice_draws(shares: Mapping[int, KeyShare], monkeypatch: pytest.MonkeyPatch) -> tuple[list[int], bytes]:
    """Party 1's pads (ã_0, ã_1, â) as Alice for party 2, and her nonce, in a fresh session."""
    drawn: list[int] = []

    def record(rng: Any) -> int:
        drawn.append(_HONEST_RAND(rng))
        return drawn[-1]

    monkeypatch.setattr(vole, "_rand", record)
    parties, first = signers_after_round1(shares)
    replies = exchange({1: parties[1]}, [env for env in first if env.sender == 2])
    (reply,) = replies
    body = cbor2.loads(reply.payload)
    return drawn, body["vole"][: vole.NONCE_LEN]


def test_alices_pads_and_nonce_differ_between_sessions_with_a_broken_generator(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shares = broken_key()
    (pads1, nonce1), (pads2, nonce2) = alice_draws(shares, monkeypatch), alice_draws(shares, monkeypatch)
    assert len(pads1) == len(pads2) == 3
    assert distinct(pads1) and set(pads1).isdisjoint(pads2)
    assert nonce1 != nonce2


def test_alices_draws_depend_on_bobs_message_and_her_inputs() -> None:
    """A replayed context with another Bob message or other inputs must not repeat her nonce or pads."""
    setup = setup_of(broken_key()[1]).peers[2]
    bob_setup = setup_of(broken_key()[2]).peers[1]
    context = b"one context, reused"
    message1 = VoleBob(bob_setup.as_bob, context, broken).message1()
    other_message1 = VoleBob(bob_setup.as_bob, context, lambda n: b"\x01" * n).message1()
    inputs = (5, 7)
    reply = VoleAlice(setup.as_alice, context, broken).respond(message1, inputs)[0]
    other_bob = VoleAlice(setup.as_alice, context, broken).respond(other_message1, inputs)[0]
    other_inputs = VoleAlice(setup.as_alice, context, broken).respond(message1, (6, 7))[0]
    nonces = [m[: vole.NONCE_LEN] for m in (reply, other_bob, other_inputs)]
    assert distinct(nonces)


# -- threshold ECDSA setup ----------------------------------------------------------------------


def setup_after_round1(shares: Mapping[int, KeyShare]) -> tuple[dict[int, EcdsaSetupParty], list[Envelope]]:
    sid = session()
    parties = {i: EcdsaSetupParty(sid, share, rng=broken) for i, share in shares.items()}
    return parties, exchange(parties, started(parties))


def test_setup_secrets_differ_between_sessions_with_a_broken_generator() -> None:
    shares = broken_key()
    (first, _), (second, _) = setup_after_round1(shares), setup_after_round1(shares)
    for j in (2, 3):
        assert first[1]._deltas[j] != second[1]._deltas[j]
        assert first[1]._contributions[j] != second[1]._contributions[j]
        assert first[1]._senders[j]._b != second[1]._senders[j]._b


def test_setup_secrets_differ_between_peers_with_a_broken_generator() -> None:
    parties, _ = setup_after_round1(broken_key())
    mine = parties[1]
    assert mine._deltas[2] != mine._deltas[3]
    assert mine._contributions[2] != mine._contributions[3]
    assert mine._senders[2]._b != mine._senders[3]._b


def test_setup_secrets_differ_between_parties_with_a_broken_generator() -> None:
    parties, _ = setup_after_round1(broken_key())
    assert parties[1]._deltas[2] != parties[2]._deltas[1]
    assert parties[1]._senders[2]._b != parties[2]._senders[1]._b


def test_base_ot_receiver_points_are_all_distinct_in_the_setup() -> None:
    _, second_round = setup_after_round1(broken_key())
    for env in second_round:
        points = cbor2.loads(env.payload)["ot"]
        assert distinct([points[k * 33 : (k + 1) * 33] for k in range(256)])


def test_a_kept_setup_made_with_a_broken_generator_has_distinct_deltas() -> None:
    shares = broken_key()
    deltas = [setup_of(shares[i]).peers[j].as_alice.delta for i in shares for j in shares if j != i]
    again = runner.ecdsa_setup(shares, rng=broken)
    deltas += [setup_of(again[i]).peers[j].as_alice.delta for i in again for j in again if j != i]
    assert distinct(deltas)


# -- DKG, refresh, resharing, repair ----------------------------------------------------------------


def dkg_coefficients(me: int, sid: bytes, **options: Any) -> list[int]:
    party = DkgParty(FROST_SECP256K1, sid, me, 3, [1, 2, 3], rng=broken, **options)
    party.start()
    return list(party._coefficients)


def test_dkg_coefficients_differ_between_sessions_with_a_broken_generator() -> None:
    first, second = dkg_coefficients(1, session()), dkg_coefficients(1, session())
    assert distinct(first) and set(first).isdisjoint(second)


def test_dkg_coefficients_differ_between_parties_without_a_hedge_key() -> None:
    sid = session()
    assert set(dkg_coefficients(1, sid)).isdisjoint(dkg_coefficients(2, sid))


def test_dkg_coefficients_depend_on_the_hedge_key() -> None:
    """Without a share, the hedge key is what an attacker who knows the session lacks."""
    sid = session()
    mine = dkg_coefficients(1, sid, hedge_key=b"node one's secret")
    assert dkg_coefficients(1, sid, hedge_key=b"node one's secret") == mine
    assert set(dkg_coefficients(1, sid)).isdisjoint(mine)
    assert set(dkg_coefficients(1, sid, hedge_key=b"a guess")).isdisjoint(mine)


def test_dkg_proof_nonces_differ_between_sessions_with_a_broken_generator() -> None:
    nonces = []
    for _ in range(2):
        party = DkgParty(FROST_SECP256K1, session(), 1, 2, [1, 2], rng=broken)
        (env,) = party.start()
        nonces.append(cbor2.loads(env.payload)["pok"][:33])
    assert distinct(nonces)


def refresh_coefficients(share: KeyShare) -> list[int]:
    party = RefreshParty(session(), share, rng=broken)
    party.start()
    return party._coefficients[1:]


def test_refresh_coefficients_differ_between_sessions_with_a_broken_generator() -> None:
    share = cached_keygen("frost-secp256k1", 3, 5)[1]
    first, second = refresh_coefficients(share), refresh_coefficients(share)
    assert distinct(first) and set(first).isdisjoint(second)


def test_refresh_coefficients_differ_between_parties_with_a_broken_generator() -> None:
    shares = cached_keygen("frost-secp256k1", 3, 5)
    sid = session()
    drawn = []
    for i in (1, 2):
        party = RefreshParty(sid, shares[i], rng=broken)
        party.start()
        drawn += party._coefficients[1:]
    assert distinct(drawn)


def reshare_coefficients(shares: Mapping[int, KeyShare], new_parties: list[int], sid: bytes) -> list[int]:
    public = shares[1].public
    party = ReshareParty(sid, 1, public, [1, 2], 2, new_parties, share=shares[1], rng=broken)
    party.start()
    return party._coefficients[1:]


def test_reshare_coefficients_differ_between_sessions_and_committees_with_a_broken_generator() -> None:
    shares = cached_keygen("frost-secp256k1", 2, 3)
    sid = session()
    drawn = [
        *reshare_coefficients(shares, [1, 2, 3], sid),
        *reshare_coefficients(shares, [1, 2, 3], session()),
        *reshare_coefficients(shares, [1, 2, 4], sid),  # same session id, another committee
    ]
    assert distinct(drawn)


def repair_pieces(shares: Mapping[int, KeyShare], lost: int) -> list[bytes]:
    helpers = [1, 2, 3]
    party = RepairParty(session(), 1, shares[1].public, helpers, lost, share=shares[1], rng=broken)
    return [cbor2.loads(env.payload)["piece"] for env in party.start()]


def test_repair_pieces_differ_within_and_between_sessions_with_a_broken_generator() -> None:
    shares = cached_keygen("frost-secp256k1", 3, 5)
    first, second = repair_pieces(shares, 4), repair_pieces(shares, 4)
    assert len(first) == 2 and distinct(first + second)


# -- and the protocols still work ------------------------------------------------------------------


def test_ecdsa_keygen_and_signing_with_a_broken_generator_verify() -> None:
    shares = broken_key()
    signatures = [runner.sign_ecdsa(shares, [1, 3], d, rng=broken) for d in (DIGEST, OTHER_DIGEST)]
    for digest, sig in zip((DIGEST, OTHER_DIGEST), signatures, strict=True):
        assert ecdsa.verify(shares[1].group_public_key, digest, sig)  # type: ignore[arg-type]
    assert signatures[0].r != signatures[1].r


def test_ecdsa_refresh_with_a_broken_generator_then_signs() -> None:
    shares = runner.refresh(broken_key(), rng=broken)
    sig = runner.sign_ecdsa(shares, [2, 3], DIGEST, rng=broken)
    assert ecdsa.verify(shares[2].group_public_key, DIGEST, sig)  # type: ignore[arg-type]


def test_ecdsa_reshare_and_repair_with_a_broken_generator_then_sign() -> None:
    reshared = runner.reshare(broken_key(), 2, [1, 2, 3, 4], rng=broken)
    repaired = runner.repair({i: reshared[i] for i in (1, 2)}, 4, rng=broken)
    shares = runner.ecdsa_setup({**{i: reshared[i] for i in (1, 2, 3)}, 4: repaired}, rng=broken)
    sig = runner.sign_ecdsa(shares, [1, 4], DIGEST, rng=broken)
    assert ecdsa.verify(shares[1].group_public_key, DIGEST, sig)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["frost-secp256k1", "frost-ed25519"])
def test_frost_keygen_with_a_broken_generator_signs(scheme: str) -> None:
    shares = runner.keygen(scheme, 2, 3, rng=broken)
    assert len({share.group_public_key for share in shares.values()}) == 1
    runner.sign(shares, [1, 2], b"message")


def _frost_nonces(sid: bytes, signers: list[int], message: bytes, hedge_key: bytes = b"") -> tuple[bytes, bytes]:
    """The nonce commitments (D, E): equal exactly when the secret nonces are."""
    share = cached_keygen("frost-secp256k1", 2, 3)[1]
    party = FrostSigner(sid, share, signers, message, rng=broken, hedge_key=hedge_key)
    party.start()
    nonces = party._nonces
    assert nonces is not None
    return nonces.commitment.hiding.encode(), nonces.commitment.binding.encode()


def test_frost_nonces_differ_between_sessions_and_messages_with_a_broken_generator() -> None:
    """RFC 9591's H3(random_bytes || sk) alone repeats with a repeating generator; hedged, it does not."""
    first = _frost_nonces(session(), [1, 2], b"pay 1")
    assert _frost_nonces(session(), [1, 2], b"pay 1") != first
    sid = session()
    assert _frost_nonces(sid, [1, 2], b"pay 1") != _frost_nonces(sid, [1, 2], b"pay 2")
    assert _frost_nonces(sid, [1, 2], b"pay 1") != _frost_nonces(sid, [1, 3], b"pay 1")
    assert _frost_nonces(sid, [1, 2], b"pay 1") != _frost_nonces(sid, [1, 2], b"pay 1", hedge_key=b"node")
    assert len(set(first)) == 2


def test_frost_signs_with_a_broken_generator() -> None:
    shares = cached_keygen("frost-secp256k1", 2, 3)
    runner.sign(shares, [1, 2], b"message", rng=broken)
