"""The genesis of a governance log: unsigned, trusted by its hash, and the only entry that needs no quorum.

A signature on a genesis could prove nothing (no state before it says whose key
counts), so a genesis carries none and one that does is refused; it still has to
name a quorum and an admin with a key who proposed it. The first entry after it
is checked against the admins it names.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harbour.governance import changes as c
from harbour.governance.fields import GovernanceError
from harbour.governance.log import GENESIS_PARENT, Entry, SignedEntry, signed
from harbour.governance.state import GovernanceLog, genesis_state

ALICE, BOB = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def genesis(*extra: c.Change, quorum: bool = True, proposer: str = "alice") -> Entry:
    founders: tuple[c.Change, ...] = (
        c.AddUser("alice", "alice", frozenset({"admin"}), raw(ALICE)),
        c.AddUser("bob", "bob", frozenset({"admin"}), raw(BOB)),
    )
    return Entry(
        org="org-1",
        seq=0,
        prev=GENESIS_PARENT,
        proposer=proposer,
        at=1_800_000_000,
        changes=((c.SetQuorum(1),) if quorum else ()) + founders + extra,
    )


def test_an_unsigned_genesis_puts_its_admins_and_quorum_in_force() -> None:
    state = genesis_state(SignedEntry(genesis().encode(), ()))
    assert state.quorum == 1 and set(state.admins().values()) == {"alice", "bob"}
    assert state.seq == 0 and state.head == SignedEntry(genesis().encode(), ()).hash


def test_a_signed_genesis_is_refused() -> None:
    for keys in ([ALICE], [ALICE, BOB]):
        with pytest.raises(GovernanceError, match="carries no signatures") as refused:
            genesis_state(signed(genesis(), keys))
        assert refused.value.reason == "malformed"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (genesis(quorum=False), "sets the admin quorum"),
        (genesis(proposer="mallory"), "not one of its admins"),
        (
            Entry(
                "org-1",
                0,
                GENESIS_PARENT,
                "ann",
                1,
                (c.SetQuorum(1), c.AddUser("ann", "ann", frozenset({"admin"}), None)),
            ),
            "at least one admin with an approval key",
        ),
    ],
)
def test_a_genesis_without_a_quorum_or_a_keyed_admin_proposer_is_refused(entry: Entry, message: str) -> None:
    with pytest.raises(GovernanceError, match=message):
        genesis_state(SignedEntry(entry.encode(), ()))


def test_the_entry_after_the_genesis_needs_the_proposer_and_the_quorum_it_named() -> None:
    log = GovernanceLog(SignedEntry(genesis().encode(), ()))
    nxt = Entry("org-1", 1, log.head, "alice", 1_800_000_001, (c.SetWhitelisted("x", True),))
    with pytest.raises(GovernanceError, match="1 are needed"):
        log.append(signed(nxt, [ALICE]))
    with pytest.raises(GovernanceError, match="did not sign"):
        log.append(signed(nxt, [BOB]))
    policy = c.policy_change({"rules": []})
    ok = Entry("org-1", 1, log.head, "alice", 1_800_000_001, (policy,))
    assert log.append(signed(ok, [ALICE, BOB])).seq == 1
