"""Compromised marks (mpc/ecdsa_setup.py): after a failed KOS check the pair's setup is
marked inside the key share itself, so the mark is encrypted and authenticated with
the share; a marked share refuses to sign with the marked peer, the marks have exactly
one encoding, a setup without marks keeps the encoding it always had, and only a new
pairwise setup (refresh, resharing, a new setup run) clears them."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Any

import cbor2
import pytest

from harbour.crypto import ecdsa
from harbour.mpc import runner
from harbour.mpc.ecdsa_setup import (
    EXTENSION,
    EcdsaSetup,
    compromised_peers,
    mark_compromised,
    setup_of,
)
from harbour.mpc.ecdsa_sign import EcdsaSigner, SetupCompromised
from harbour.mpc.envelope import UsageError
from harbour.mpc.keyshare import KeyShare, KeyShareError
from helpers import cached_keygen, session

ECDSA = "ecdsa-secp256k1"
DIGEST = hashlib.sha256(b"compromised marks").digest()


def key() -> Mapping[int, KeyShare]:
    return cached_keygen(ECDSA, 2, 3)


def raw_setup(share: KeyShare) -> dict[str, Any]:
    obj: dict[str, Any] = cbor2.loads(share.extensions[EXTENSION])
    return obj


def encoded(obj: dict[str, Any]) -> bytes:
    return bytes(cbor2.dumps(obj, canonical=True))


# -- encoding ----------------------------------------------------------------------------------------


def test_a_fresh_setup_carries_no_marks() -> None:
    assert all(compromised_peers(share) == frozenset() for share in key().values())


def test_a_setup_without_marks_keeps_the_encoding_it_always_had() -> None:
    """Shares and files written before marks existed load, and are written back byte for byte."""
    share = key()[1]
    setup = setup_of(share)
    former = {
        "v": 1,
        "peers": {
            j: {"bob": p.as_bob.encode(), "alice": p.as_alice.encode(), "zero": p.zero_seed}
            for j, p in setup.peers.items()
        },
    }
    assert share.extensions[EXTENSION] == cbor2.dumps(former, canonical=True)
    assert KeyShare.deserialize(share.serialize()).serialize() == share.serialize()


def test_marks_are_a_sorted_list_beside_the_peers() -> None:
    marked = mark_compromised(mark_compromised(key()[1], [3]), [2])
    obj = raw_setup(marked)
    assert set(obj) == {"v", "peers", "compromised"} and obj["compromised"] == [2, 3]
    assert obj["peers"] == raw_setup(key()[1])["peers"]


def test_marks_survive_serialisation_of_the_share() -> None:
    marked = mark_compromised(key()[1], [2])
    again = KeyShare.deserialize(marked.serialize())
    assert compromised_peers(again) == {2}
    assert again.serialize() == marked.serialize()


def test_marks_accumulate_and_marking_twice_changes_nothing() -> None:
    once = mark_compromised(key()[2], [1])
    assert mark_compromised(once, [1]) == once
    assert compromised_peers(mark_compromised(once, [3])) == {1, 3}


@pytest.mark.parametrize("peers", [[1], [9], [0]], ids=["itself", "not-a-party", "zero"])
def test_marking_a_party_that_is_not_a_peer_is_refused(peers: list[int]) -> None:
    with pytest.raises(UsageError, match="not peers"):
        mark_compromised(key()[1], peers)


def test_a_share_without_a_setup_has_no_marks_to_read() -> None:
    bare = dataclasses.replace(key()[1], extensions={})
    with pytest.raises(KeyShareError, match="lacks its pairwise setup"):
        compromised_peers(bare)


@pytest.mark.parametrize(
    ("marks", "match"),
    [
        ([], "non-empty list"),
        ([3, 2], "sorted"),
        ([2, 2], "sorted"),
        ([True], "party identifiers"),
        (["2"], "party identifiers"),
        ([2.0], "party identifiers"),
        (2, "non-empty list"),
        ({2: 1}, "non-empty list"),
        ([9], "no setup with them"),
        ([1], "no setup with them"),
        ([-2], "no setup with them"),
    ],
    ids=[
        "empty",
        "unsorted",
        "duplicate",
        "bool",
        "text",
        "float",
        "not-a-list",
        "map",
        "unknown-party",
        "ourselves",
        "negative",
    ],
)
def test_malformed_marks_are_refused(marks: Any, match: str) -> None:
    obj = raw_setup(key()[1])
    obj["compromised"] = marks
    data = encoded(obj)
    with pytest.raises(KeyShareError, match=match):
        EcdsaSetup.decode(data)
    share = dataclasses.replace(key()[1], extensions={**key()[1].extensions, EXTENSION: data})
    with pytest.raises(KeyShareError):
        KeyShare.deserialize(share.serialize())


def test_a_setup_with_another_unknown_field_is_still_refused() -> None:
    obj = raw_setup(key()[1])
    obj["compromise"] = [2]
    with pytest.raises(KeyShareError, match="wrong version or shape"):
        EcdsaSetup.decode(encoded(obj))


def test_marks_in_a_non_canonical_encoding_are_refused() -> None:
    data = mark_compromised(key()[1], [2]).extensions[EXTENSION]
    # The same map with its keys in another order.
    obj = cbor2.loads(data)
    reordered = cbor2.dumps({"compromised": obj["compromised"], "peers": obj["peers"], "v": 1})
    assert reordered != data
    with pytest.raises(KeyShareError, match="not canonical"):
        EcdsaSetup.decode(reordered)


# -- signing -----------------------------------------------------------------------------------------


def test_a_marked_share_refuses_to_sign_with_the_marked_peer() -> None:
    marked = mark_compromised(key()[1], [2])
    with pytest.raises(UsageError, match=r"parties \[2\] is marked compromised.*refresh"):
        EcdsaSigner(session(), marked, [1, 2], DIGEST)


def test_a_marked_share_still_signs_with_other_peers() -> None:
    shares = {**key(), 1: mark_compromised(key()[1], [2])}
    sig = runner.sign_ecdsa(shares, [1, 3], DIGEST)
    assert ecdsa.verify(shares[1].group_public_key, DIGEST, sig)  # type: ignore[arg-type]


def test_the_runner_refuses_a_marked_pair_before_any_message() -> None:
    shares = {**key(), 2: mark_compromised(key()[2], [1])}
    with pytest.raises(UsageError, match="marked compromised"):
        runner.sign_ecdsa(shares, [1, 2], DIGEST)


def test_recording_a_compromise_marks_both_sides_of_the_pair() -> None:
    abort = SetupCompromised(frozenset({2}), "KOS check failed", party=1)
    recorded = runner.record_compromise(key(), abort)
    assert sorted(recorded) == [1, 2]
    assert compromised_peers(recorded[1]) == {2} and compromised_peers(recorded[2]) == {1}
    for i in (1, 2):
        with pytest.raises(UsageError, match="marked compromised"):
            EcdsaSigner(session(), recorded[i], [1, 2], DIGEST)


def test_recording_a_compromise_of_unknown_origin_marks_the_peer_against_everyone() -> None:
    recorded = runner.record_compromise(key(), SetupCompromised(frozenset({2}), "KOS check failed"))
    assert {i: compromised_peers(s) for i, s in recorded.items()} == {1: {2}, 2: {1, 3}, 3: {2}}


def test_recording_a_compromise_needs_the_shares_of_both_sides() -> None:
    abort = SetupCompromised(frozenset({2}), "KOS check failed", party=1)
    with pytest.raises(UsageError, match=r"parties \[2\]"):
        runner.record_compromise({1: key()[1]}, abort)


# -- only a new setup clears the marks -------------------------------------------------------------


def marked_key() -> dict[int, KeyShare]:
    return runner.record_compromise(key(), SetupCompromised(frozenset({2}), "KOS", party=1)) | {3: key()[3]}


def test_a_refresh_clears_the_marks() -> None:
    new = runner.refresh(marked_key())
    assert all(compromised_peers(s) == frozenset() for s in new.values())
    runner.sign_ecdsa(new, [1, 2], DIGEST)


def test_a_new_setup_run_clears_the_marks() -> None:
    new = runner.ecdsa_setup(marked_key())
    assert all(compromised_peers(s) == frozenset() for s in new.values())
    runner.sign_ecdsa(new, [1, 2], DIGEST)


def test_a_resharing_clears_the_marks() -> None:
    new = runner.reshare(marked_key(), 2, [1, 2, 3])
    assert all(compromised_peers(s) == frozenset() for s in new.values())
    runner.sign_ecdsa(new, [1, 2], DIGEST)


def test_a_signer_uses_a_setup_decoded_elsewhere_only_if_it_is_its_shares_own() -> None:
    """A node hands signers the setups it keeps decoded; one decoded from other bytes is ignored, not trusted."""
    from harbour.mpc.ecdsa_setup import EXTENSION, EcdsaSetup
    from harbour.mpc.ecdsa_sign import EcdsaSigner

    shares = cached_keygen("ecdsa-secp256k1", 2, 3)
    own = EcdsaSetup.decode(shares[1].extensions[EXTENSION])
    other = EcdsaSetup.decode(shares[2].extensions[EXTENSION])
    digest = bytes(32)
    assert EcdsaSigner(session(), shares[1], [1, 2], digest, setup=own).setup is own
    ignored = EcdsaSigner(session(), shares[1], [1, 2], digest, setup=other).setup
    assert ignored is not other and ignored == own
