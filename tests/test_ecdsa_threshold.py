"""Threshold ECDSA (DKLs23) signs with every signing set of a key, and what it produces
is an ordinary low-s Ethereum signature: checked by libsecp256k1 through coincurve's
public API and recovered by eth-keys' pure-Python backend and by eth-account, which
share no code with the signing protocol. Also: the ECDSA key share and its pairwise
setup survive serialisation, and every damaged setup is refused when it is loaded."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cbor2
import coincurve
import pytest
from eth_account import Account
from eth_keys.backends.native.main import NativeECCBackend
from eth_keys.main import KeyAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.chains.ethereum import address_from_public_key, keccak256
from harbour.crypto import ecdsa
from harbour.crypto.secp256k1 import N, Secp256k1Point
from harbour.mpc import runner
from harbour.mpc.ecdsa_setup import EXTENSION, SCHEME, EcdsaSetupParty, setup_of
from harbour.mpc.ecdsa_sign import EcdsaSigner
from harbour.mpc.envelope import UsageError
from harbour.mpc.keyshare import KeyShare, KeyShareError
from helpers import cached_keygen, session, without_ecdsa_setup

ETH_KEYS = KeyAPI(NativeECCBackend)
DIGEST = keccak256(b"transfer 100 HKD-stablecoin to the settlement account")


def ecdsa_key(t: int, n: int) -> Mapping[int, KeyShare]:
    return cached_keygen(SCHEME, t, n)


def group_key(shares: Mapping[int, KeyShare]) -> Secp256k1Point:
    pk = next(iter(shares.values())).group_public_key
    assert isinstance(pk, Secp256k1Point)
    return pk


def der(r: int, s: int) -> bytes:
    """A minimal DER ``ECDSA-Sig-Value``, built by hand so the check does not reuse harbour code."""

    def integer(x: int) -> bytes:
        body = x.to_bytes((x.bit_length() + 8) // 8, "big")  # a leading zero when the top bit is set
        return b"\x02" + bytes([len(body)]) + body

    seq = integer(r) + integer(s)
    return b"\x30" + bytes([len(seq)]) + seq


def assert_ethereum_signature(sig: ecdsa.EcdsaSignature, pk: Secp256k1Point, digest: bytes) -> None:
    """Valid, low-s, and recovering to the group key's address in three independent implementations."""
    assert 0 < sig.r < N and 0 < sig.s <= ecdsa.HALF_ORDER
    assert sig.recovery_id in (0, 1)
    assert ecdsa.verify(pk, digest, sig)
    pk33 = pk.encode()
    assert coincurve.PublicKey(pk33).verify(der(sig.r, sig.s), digest, hasher=None)
    # libsecp256k1 accepts only the low-s form: the high-s twin of the same signature fails.
    assert not coincurve.PublicKey(pk33).verify(der(sig.r, N - sig.s), digest, hasher=None)
    address = address_from_public_key(pk)
    uncompressed = coincurve.PublicKey(pk33).format(compressed=False)
    assert ETH_KEYS.PublicKey(uncompressed[1:]).to_checksum_address() == address
    recovered = ETH_KEYS.Signature(vrs=(sig.recovery_id, sig.r, sig.s)).recover_public_key_from_msg_hash(digest)
    assert recovered.to_checksum_address() == address
    assert Account._recover_hash(digest, vrs=(27 + sig.recovery_id, sig.r, sig.s)) == address
    assert sig.v == 27 + sig.recovery_id


# -- every signing set signs ------------------------------------------------------------------------


SIGNING_SETS = [(2, 3, subset) for subset in itertools.combinations(range(1, 4), 2)] + [
    (3, 5, subset) for subset in itertools.combinations(range(1, 6), 3)
]


@pytest.mark.parametrize(("t", "n", "signers"), SIGNING_SETS, ids=[f"{t}-of-{n}-{s}" for t, n, s in SIGNING_SETS])
def test_every_signing_set_of_t_parties_signs(t: int, n: int, signers: tuple[int, ...]) -> None:
    shares = ecdsa_key(t, n)
    digest = keccak256(f"payment signed by {signers}".encode())
    sig = runner.sign_ecdsa(shares, signers, digest)
    assert_ethereum_signature(sig, group_key(shares), digest)


def test_a_ten_of_fifteen_key_signs_with_a_random_signing_set() -> None:
    shares = runner.keygen(SCHEME, 10, 15)
    signers = sorted(random.sample(range(1, 16), 10))
    sig = runner.sign_ecdsa(shares, signers, DIGEST)
    assert_ethereum_signature(sig, group_key(shares), DIGEST)
    for share in shares.values():
        assert set(setup_of(share).peers) == set(range(1, 16)) - {share.identifier}


@given(
    digest=st.binary(min_size=32, max_size=32),
    signers=st.sampled_from(list(itertools.combinations(range(1, 4), 2))),
)
@settings(max_examples=8, deadline=None)
def test_any_digest_and_signing_set_gives_a_valid_signature(digest: bytes, signers: tuple[int, ...]) -> None:
    shares = ecdsa_key(2, 3)
    assert_ethereum_signature(runner.sign_ecdsa(shares, signers, digest), group_key(shares), digest)


@pytest.mark.parametrize(
    "digest",
    [bytes(32), b"\xff" * 32, N.to_bytes(32, "big"), (N - 1).to_bytes(32, "big"), (N + 1).to_bytes(32, "big")],
    ids=["zero", "all-ones", "order", "order-1", "order+1"],
)
def test_edge_digests_sign(digest: bytes) -> None:
    # e is the digest as an integer, not reduced: digests at or above n must be
    # reduced exactly as libsecp256k1 reduces them.
    shares = ecdsa_key(2, 3)
    assert_ethereum_signature(runner.sign_ecdsa(shares, [1, 3], digest), group_key(shares), digest)


def test_every_signer_returns_the_same_signature() -> None:
    shares = ecdsa_key(3, 5)
    sid = session()
    parties = {i: EcdsaSigner(sid, shares[i], [2, 4, 5], DIGEST) for i in (2, 4, 5)}
    results = runner.run(parties)
    assert len(set(results.values())) == 1
    assert_ethereum_signature(results[2], group_key(shares), DIGEST)


# -- the key share ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5)])
def test_ecdsa_key_share_round_trips(t: int, n: int) -> None:
    for share in ecdsa_key(t, n).values():
        data = share.serialize()
        again = KeyShare.deserialize(data)
        assert again == share
        assert again.serialize() == data
        assert again.scheme == "ecdsa-secp256k1" and again.curve == "secp256k1"
        assert EXTENSION == "dkls23" and EXTENSION in again.extensions
        assert setup_of(again).encode() == again.extensions[EXTENSION]


def test_deserialized_share_signs() -> None:
    shares = {i: KeyShare.deserialize(s.serialize()) for i, s in ecdsa_key(2, 3).items()}
    sig = runner.sign_ecdsa(shares, [2, 3], DIGEST)
    assert_ethereum_signature(sig, group_key(shares), DIGEST)


@pytest.mark.parametrize(("t", "n"), [(2, 3), (3, 5)])
def test_setups_cover_exactly_the_other_parties(t: int, n: int) -> None:
    for share in ecdsa_key(t, n).values():
        share.check_consistent()
        assert set(setup_of(share).peers) == set(share.parties) - {share.identifier}


def test_share_without_the_setup_cannot_sign() -> None:
    shares = {i: without_ecdsa_setup(s) for i, s in ecdsa_key(2, 3).items()}
    # A share between the DKG and the setup loads (a node may persist it), but never signs.
    assert KeyShare.deserialize(shares[1].serialize()) == shares[1]
    with pytest.raises(UsageError, match="pairwise setup"):
        EcdsaSigner(session(), shares[1], [1, 2], DIGEST)
    with pytest.raises(UsageError, match="pairwise setup"):
        runner.sign_ecdsa(shares, [1, 2], DIGEST)


def test_share_carrying_another_partys_setup_is_refused() -> None:
    shares = ecdsa_key(2, 3)
    swapped = dataclasses.replace(shares[1], extensions={EXTENSION: shares[2].extensions[EXTENSION]})
    with pytest.raises(KeyShareError, match="exactly the other parties"):
        KeyShare.deserialize(swapped.serialize())
    with pytest.raises(UsageError, match="exactly the other parties"):
        EcdsaSigner(session(), swapped, [1, 2], DIGEST)


SetupEdit = Callable[[dict[str, Any]], None]


def _drop_last_peer(obj: dict[str, Any]) -> None:
    del obj["peers"][max(obj["peers"])]


def _add_self_as_peer(obj: dict[str, Any]) -> None:
    obj["peers"][1] = dict(obj["peers"][2])


def _edit_peer(key: str, change: Callable[[Any], Any]) -> SetupEdit:
    def edit(obj: dict[str, Any]) -> None:
        obj["peers"][2][key] = change(obj["peers"][2][key])

    return edit


STRUCTURAL_EDITS: dict[str, SetupEdit] = {
    "version-2": lambda obj: obj.update(v=2),
    "missing-peer": _drop_last_peer,
    "self-as-peer": _add_self_as_peer,
    "peer-id-as-text": lambda obj: obj["peers"].update({"2": obj["peers"].pop(2)}),
    "peers-as-list": lambda obj: obj.update(peers=list(obj["peers"].values())),
    "extra-field": lambda obj: obj.update(extra=b""),
    "extra-peer-field": lambda obj: obj["peers"][2].update(x=b""),
    "zero-seed-short": _edit_peer("zero", lambda z: z[:-1]),
    "zero-seed-long": _edit_peer("zero", lambda z: z + b"\x00"),
    "zero-seed-as-text": _edit_peer("zero", lambda z: z.hex()[:32]),
    "bob-short": _edit_peer("bob", lambda b: b[:-1]),
    "bob-long": _edit_peer("bob", lambda b: b + b"\x00"),
    "alice-short": _edit_peer("alice", lambda a: a[:-1]),
    "alice-long": _edit_peer("alice", lambda a: a + b"\x00"),
    "alice-as-int": _edit_peer("alice", lambda a: 5),
}


def with_setup_bytes(share: KeyShare, raw: bytes) -> bytes:
    return bytes(dataclasses.replace(share, extensions={**share.extensions, EXTENSION: raw}).serialize())


@pytest.mark.parametrize("edit", list(STRUCTURAL_EDITS))
def test_tampered_setup_is_refused_at_deserialize(edit: str) -> None:
    share = ecdsa_key(2, 3)[1]
    obj = cbor2.loads(share.extensions[EXTENSION])
    STRUCTURAL_EDITS[edit](obj)
    with pytest.raises(KeyShareError):
        KeyShare.deserialize(with_setup_bytes(share, cbor2.dumps(obj, canonical=True)))


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-1],
        lambda raw: raw[: len(raw) // 2],
        lambda raw: raw[:1],
        lambda raw: b"",
        lambda raw: raw + b"\x00",
        lambda raw: cbor2.dumps([1, 2]),
    ],
    ids=["one-byte-short", "half", "one-byte", "empty", "trailing-byte", "not-a-map"],
)
def test_truncated_or_garbled_setup_is_refused_at_deserialize(damage: Callable[[bytes], bytes]) -> None:
    share = ecdsa_key(2, 3)[1]
    with pytest.raises(KeyShareError):
        KeyShare.deserialize(with_setup_bytes(share, damage(share.extensions[EXTENSION])))


def test_non_canonical_setup_encoding_is_refused_at_deserialize() -> None:
    share = ecdsa_key(3, 5)[1]
    obj = cbor2.loads(share.extensions[EXTENSION])
    # The same content with the peers in descending order and "peers" before "v".
    reordered = {"peers": dict(sorted(obj["peers"].items(), reverse=True)), "v": obj["v"]}
    raw = cbor2.dumps(reordered)
    assert raw != share.extensions[EXTENSION] and cbor2.loads(raw) == obj
    with pytest.raises(KeyShareError, match="canonical"):
        KeyShare.deserialize(with_setup_bytes(share, raw))


@pytest.mark.parametrize("kind", ["text", "list"])
def test_setup_with_a_non_bytes_ot_entry_is_refused_at_deserialize(kind: str) -> None:
    share = ecdsa_key(2, 3)[1]
    obj = cbor2.loads(share.extensions[EXTENSION])
    size = len(obj["peers"][2]["bob"])
    obj["peers"][2]["bob"] = "a" * size if kind == "text" else [0] * size
    with pytest.raises(KeyShareError):
        KeyShare.deserialize(with_setup_bytes(share, cbor2.dumps(obj, canonical=True)))


# -- shares of one scheme never sign under another ----------------------------------------------------


def test_frost_share_is_refused_by_the_ecdsa_protocols() -> None:
    frost_shares = cached_keygen("frost-secp256k1", 2, 3)
    with pytest.raises(UsageError, match="ecdsa-secp256k1"):
        EcdsaSigner(session(), frost_shares[1], [1, 2], DIGEST)
    with pytest.raises(UsageError, match="ecdsa-secp256k1"):
        runner.sign_ecdsa(frost_shares, [1, 2], DIGEST)
    with pytest.raises(UsageError, match="ecdsa-secp256k1"):
        EcdsaSetupParty(session(), frost_shares[1])


def test_ecdsa_share_is_refused_by_frost_signing() -> None:
    with pytest.raises(UsageError, match="sign_ecdsa"):
        runner.sign(ecdsa_key(2, 3), [1, 2], DIGEST)


@pytest.mark.parametrize(
    ("me", "signers", "digest"),
    [
        (1, [1], DIGEST),
        (1, [1, 2, 3], DIGEST),
        (1, [1, 1], DIGEST),
        (1, [1, 4], DIGEST),
        (1, [0, 1], DIGEST),
        (3, [1, 2], DIGEST),
        (1, [1, 2], DIGEST[:31]),
        (1, [1, 2], DIGEST + b"\x00"),
        (1, [1, 2], b""),
    ],
    ids=[
        "fewer-than-t",
        "more-than-t",
        "duplicate",
        "not-a-key-party",
        "zero-id",
        "me-not-signing",
        "digest-31",
        "digest-33",
        "digest-empty",
    ],
)
def test_signer_construction_refuses(me: int, signers: Sequence[int], digest: bytes) -> None:
    with pytest.raises(UsageError):
        EcdsaSigner(session(), ecdsa_key(2, 3)[me], signers, digest)


def test_signer_session_id_of_wrong_length_is_refused() -> None:
    with pytest.raises(UsageError, match="32 bytes"):
        EcdsaSigner(bytes(31), ecdsa_key(2, 3)[1], [1, 2], DIGEST)


def test_sign_ecdsa_refuses_a_signer_without_a_share() -> None:
    shares = dict(ecdsa_key(2, 3))
    del shares[2]
    with pytest.raises(UsageError, match="no key share"):
        runner.sign_ecdsa(shares, [1, 2], DIGEST)
