"""Protocol properties over random parameters: any t-of-n key from the DKG signs
with any signer set of at least t, sharings interpolate back, encodings are canonical."""

from __future__ import annotations

import dataclasses
from typing import Any

import cbor2
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from nacl.signing import VerifyKey

from harbour.crypto.ed25519 import ED25519
from harbour.crypto.group import Group, GroupError
from harbour.crypto.hashing import Transcript
from harbour.crypto.secp256k1 import SECP256K1
from harbour.crypto.shamir import interpolate_at_zero, trusted_dealer_keygen
from harbour.mpc import runner
from harbour.mpc.ciphersuite import suite_by_name
from harbour.mpc.envelope import Envelope, ProtocolAbort
from harbour.mpc.frost_party import signing_public_key
from harbour.mpc.keyshare import KeyShare

SCHEMES = ["frost-secp256k1", "frost-ed25519", "frost-taproot"]
PROTOCOL = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CHEAP = settings(max_examples=60, deadline=None)

groups = st.sampled_from([SECP256K1, ED25519])


@st.composite
def threshold_setups(draw: st.DrawFn, max_n: int = 10) -> tuple[int, int, list[int]]:
    """(t, n, signers): 1 <= t <= n <= max_n, and a sorted signer set of size t..n."""
    n = draw(st.integers(1, max_n))
    t = draw(st.integers(1, n))
    size = draw(st.integers(t, n))
    signers = draw(st.lists(st.integers(1, n), min_size=size, max_size=size, unique=True))
    return t, n, sorted(signers)


def scalars(group: Group) -> st.SearchStrategy[int]:
    return st.integers(1, group.order - 1)


# -- DKG + signing ---------------------------------------------------------------------------------


@PROTOCOL
@given(scheme=st.sampled_from(SCHEMES), setup=threshold_setups(), message=st.binary(max_size=64))
def test_dkg_then_any_t_or_more_signers_produce_a_valid_signature(
    scheme: str, setup: tuple[int, int, list[int]], message: bytes
) -> None:
    t, n, signers = setup
    suite = suite_by_name(scheme)
    shares = runner.keygen(scheme, t, n)
    pk = shares[1].group_public_key
    assert all(s.group_public_key == pk for s in shares.values())
    sig = runner.sign(shares, signers, message)
    assert suite.verify(signing_public_key(suite, pk), message, sig)
    assert not suite.verify(signing_public_key(suite, pk), message + b"\x00", sig)
    if scheme == "frost-ed25519":
        assert VerifyKey(pk.encode()).verify(message, sig) == message


@PROTOCOL
@given(scheme=st.sampled_from(SCHEMES), setup=threshold_setups(max_n=6))
def test_dkg_shares_interpolate_to_the_group_key_at_any_signer_set(
    scheme: str, setup: tuple[int, int, list[int]]
) -> None:
    t, n, signers = setup
    shares = runner.keygen(scheme, t, n)
    g = shares[1].group
    secret = interpolate_at_zero({i: shares[i].secret_share for i in signers}, g.order)
    assert g.base_mul(secret) == shares[1].group_public_key
    for share in shares.values():
        share.check_consistent()
        assert KeyShare.deserialize(share.serialize()) == share


@PROTOCOL
@given(scheme=st.sampled_from(SCHEMES), n=st.integers(2, 6), data=st.data())
def test_a_tampered_dkg_share_is_always_blamed_on_its_sender(scheme: str, n: int, data: st.DataObject) -> None:
    t = data.draw(st.integers(1, n), label="t")
    sender = data.draw(st.integers(1, n), label="sender")
    recipient = data.draw(st.integers(1, n).filter(lambda r: r != sender), label="recipient")
    g = suite_by_name(scheme).group

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 2 and env.sender == sender and dest == recipient:
            body = cbor2.loads(env.payload)
            body["share"] = g.encode_scalar(g.decode_scalar(body["share"]) + 1)
            return dataclasses.replace(env, payload=cbor2.dumps(body, canonical=True))
        return env

    try:
        runner.keygen(scheme, t, n, intercept=intercept)
    except ProtocolAbort as abort:
        assert abort.culprits == frozenset({sender})
    else:
        raise AssertionError("a tampered share went unnoticed")


@PROTOCOL
@given(scheme=st.sampled_from(SCHEMES), setup=threshold_setups(max_n=6), data=st.data())
def test_a_tampered_signature_share_is_always_blamed_on_its_sender(
    scheme: str, setup: tuple[int, int, list[int]], data: st.DataObject
) -> None:
    t, n, signers = setup
    assume(len(signers) >= 2)
    cheater = data.draw(st.sampled_from(signers), label="cheater")
    shares = runner.keygen(scheme, t, n)
    g = shares[1].group

    def intercept(env: Envelope, dest: int) -> Envelope | None:
        if env.round == 2 and env.sender == cheater:
            body = cbor2.loads(env.payload)
            body["share"] = g.encode_scalar(g.decode_scalar(body["share"]) + 1)
            return dataclasses.replace(env, payload=cbor2.dumps(body, canonical=True))
        return env

    try:
        runner.sign(shares, signers, b"property", intercept=intercept)
    except ProtocolAbort as abort:
        assert abort.culprits == frozenset({cheater})
    else:
        raise AssertionError("a tampered signature share went unnoticed")


# -- sharing -------------------------------------------------------------------------------------


@CHEAP
@given(group=groups, setup=threshold_setups(max_n=12), data=st.data())
def test_trusted_dealer_shares_interpolate_back_from_any_t_subset(
    group: Group, setup: tuple[int, int, list[int]], data: st.DataObject
) -> None:
    t, n, signers = setup
    secret = data.draw(scalars(group), label="secret")
    dealt = trusted_dealer_keygen(group, secret, t, n)
    assert interpolate_at_zero({i: dealt.shares[i] for i in signers}, group.order) == secret
    if t > 1:
        fewer = signers[: t - 1]
        assert interpolate_at_zero({i: dealt.shares[i] for i in fewer}, group.order) != secret


# -- encodings -----------------------------------------------------------------------------------


@CHEAP
@given(group=groups, data=st.data())
def test_point_encoding_round_trips(group: Group, data: st.DataObject) -> None:
    k = data.draw(scalars(group), label="k")
    p = group.base_mul(k)
    assert group.decode_point(p.encode()) == p
    assert group.decode_point((-p).encode()) == -p


@CHEAP
@given(group=groups, data=st.data())
def test_decode_point_accepts_only_canonical_encodings(group: Group, data: st.DataObject) -> None:
    raw = data.draw(st.binary(min_size=group.point_len, max_size=group.point_len), label="raw")
    try:
        p = group.decode_point(raw)
    except GroupError:
        return
    assert p.encode() == raw
    assert not p.is_identity()


@CHEAP
@given(group=groups, raw=st.binary(min_size=32, max_size=32))
def test_decode_scalar_accepts_exactly_the_range(group: Group, raw: bytes) -> None:
    value = int.from_bytes(raw, "big" if group is SECP256K1 else "little")
    try:
        k = group.decode_scalar(raw)
    except GroupError:
        assert value >= group.order
        return
    assert k == value < group.order
    assert group.encode_scalar(k) == raw


@CHEAP
@given(group=groups, data=st.data())
def test_scalar_arithmetic_matches_point_arithmetic(group: Group, data: st.DataObject) -> None:
    a = data.draw(scalars(group), label="a")
    b = data.draw(scalars(group), label="b")
    assert group.base_mul(a) + group.base_mul(b) == group.base_mul(a + b)
    assert group.base_mul(a) * b == group.base_mul(a * b)
    assert (group.base_mul(a) - group.base_mul(a)).is_identity()


items = st.lists(
    st.tuples(
        st.text(max_size=4),
        st.one_of(st.binary(max_size=6), st.text(max_size=6), st.integers(0, 2**70)),
    ),
    max_size=4,
)


def transcript_of(entries: list[tuple[str, Any]]) -> bytes:
    t = Transcript("property")
    for label, value in entries:
        t.append(label, value)
    return t.digest()


def _typed(entries: list[tuple[str, Any]]) -> list[tuple[str, str, Any]]:
    return [(label, type(value).__name__, value) for label, value in entries]


@CHEAP
@given(a=items, b=items)
def test_transcripts_of_different_items_never_collide(a: list[tuple[str, Any]], b: list[tuple[str, Any]]) -> None:
    if _typed(a) == _typed(b):
        assert transcript_of(a) == transcript_of(b)
    else:
        assert transcript_of(a) != transcript_of(b)


@CHEAP
@given(
    sid=st.binary(min_size=32, max_size=32),
    protocol=st.text(max_size=20),
    rnd=st.integers(0, 2**32),
    sender=st.integers(0, 2**16),
    recipient=st.one_of(st.none(), st.integers(0, 2**16)),
    payload=st.binary(max_size=100),
)
def test_envelope_encoding_round_trips(
    sid: bytes, protocol: str, rnd: int, sender: int, recipient: int | None, payload: bytes
) -> None:
    env = Envelope(sid, protocol, rnd, sender, recipient, payload)
    assert Envelope.decode(env.encode()) == env
