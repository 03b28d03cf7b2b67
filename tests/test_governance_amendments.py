"""Amendments in the governance log: renaming and archiving vaults, disabling assets, renaming entries.

Each is checked as the signer nodes check it, on the real log code: its one
encoding (every malformed form refused), what it changes in the state, what it
cannot apply to, that it needs the admin quorum like any change, that a replica
replaying the log reaches the same state, and what a withdrawal decided on that
state meets (an archived vault or a disabled asset is one no node signs for).
"""

from __future__ import annotations

from typing import Any

import pytest

from harbour.governance import amendments as am
from harbour.governance import changes as c
from harbour.governance.decide import Withdrawal, judge
from harbour.governance.fields import GovernanceError
from harbour.governance.log import Entry, signed
from harbour.governance.state import GovernanceLog
from test_governance_log import DEST, KEYS, NOW, entry, vaulted

QUORUM = [KEYS["alice"], KEYS["bob"]]


def land(log: GovernanceLog, *changes: c.Change) -> None:
    log.append(signed(entry(log, "alice", *changes), QUORUM))


def refused_change(log: GovernanceLog, change: c.Change, needle: str) -> None:
    head = log.head
    with pytest.raises(GovernanceError) as refused:
        land(log, change)
    assert refused.value.reason == "change" and needle in str(refused.value), str(refused.value)
    assert log.head == head


def pay(log: GovernanceLog, amount: int = 50, contract: str | None = None) -> str:
    decision = judge(
        log.state,
        Withdrawal(key_id="key-a", initiator="ivy", contract=contract, destination=DEST, amount=amount),
        at=NOW,
        history=[],
        approved_by=(),
    )
    return decision.action


EVERY = [
    am.RenameVault("vault-a", "Treasury 2"),
    am.ArchiveVault("vault-a"),
    am.DisableAsset("eth"),
    am.EnableAsset("eth"),
    am.RenameAddress("book-1", "exchange (cold)"),
]


@pytest.mark.parametrize("change", EVERY, ids=lambda ch: ch.op)
def test_each_amendment_has_one_encoding_and_one_line_for_the_admins(change: am.Amendment) -> None:
    encoded = c.encode_change(change)
    assert c.decode_change(encoded) == change
    again = Entry("org-1", 1, bytes(range(32)), "alice", 5, (change,))
    assert Entry.decode(again.encode()).changes == (change,)
    line = c.describe(change)
    assert change.id in line and line == am.describe(change)


MALFORMED: list[tuple[str, dict[str, Any]]] = [
    ("an unknown field", {"op": "vault.archive", "id": "vault-a", "why": "old"}),
    ("a missing id", {"op": "asset.disable"}),
    ("an id that is not text", {"op": "asset.enable", "id": 7}),
    ("an empty id", {"op": "vault.archive", "id": ""}),
    ("an id with spaces around it", {"op": "asset.disable", "id": " eth"}),
    ("an id too long", {"op": "asset.disable", "id": "a" * 129}),
    ("a missing name", {"op": "vault.rename", "id": "vault-a"}),
    ("a name that is not text", {"op": "vault.rename", "id": "vault-a", "name": b"Treasury"}),
    ("an empty name", {"op": "address.rename", "id": "book-1", "name": ""}),
    ("a name with a control character", {"op": "address.rename", "id": "book-1", "name": "cold\nwallet"}),
    ("a name too long", {"op": "vault.rename", "id": "vault-a", "name": "n" * 129}),
    ("a name with trailing space", {"op": "address.rename", "id": "book-1", "name": "cold "}),
    ("a null name", {"op": "address.rename", "id": "book-1", "name": None}),
    ("an op near a real one", {"op": "vault.unarchive", "id": "vault-a"}),
]


@pytest.mark.parametrize(("what", "obj"), MALFORMED, ids=[w for w, _ in MALFORMED])
def test_a_malformed_amendment_is_refused(what: str, obj: dict[str, Any]) -> None:
    with pytest.raises(GovernanceError) as refused:
        c.decode_change(obj)
    assert refused.value.reason == "malformed", what


def test_an_amendment_needs_the_quorum_like_any_change() -> None:
    log = vaulted()
    alone = signed(entry(log, "alice", am.ArchiveVault("vault-a")), [KEYS["alice"]])
    with pytest.raises(GovernanceError) as refused:
        log.append(alone)
    assert refused.value.reason == "quorum"
    assert not log.state.vaults["vault-a"].archived
    assert pay(log) == "allow"


def test_an_archived_vault_takes_no_withdrawal_and_stays_in_the_state() -> None:
    log = vaulted()
    assert pay(log) == "allow"
    land(log, am.ArchiveVault("vault-a"))
    vault = log.state.vaults["vault-a"]
    assert vault.archived and log.state.vault_of_key("key-a") == vault, "its key is still known as the vault's"
    with pytest.raises(GovernanceError) as refused:
        pay(log)
    assert refused.value.reason == "facts" and "archived" in str(refused.value)
    refused_change(log, am.ArchiveVault("vault-a"), "archived already")
    land(log, am.RenameVault("vault-a", "Old treasury"))  # its name can still be corrected
    assert log.state.vaults["vault-a"].name == "Old treasury" and log.state.vaults["vault-a"].archived


def test_a_disabled_asset_is_refused_until_it_is_enabled_again() -> None:
    log = vaulted()
    land(log, am.DisableAsset("eth"))
    assert log.state.assets["eth"].disabled and log.state.asset_for(None) == log.state.assets["eth"]
    with pytest.raises(GovernanceError) as refused:
        pay(log)
    assert refused.value.reason == "facts" and "ETH (eth) is disabled" in str(refused.value)
    refused_change(log, am.DisableAsset("eth"), "already disabled")
    land(log, am.EnableAsset("eth"))
    assert pay(log) == "allow"
    refused_change(log, am.EnableAsset("eth"), "already enabled")


def test_a_renamed_vault_keeps_its_key_and_names_stay_unique() -> None:
    log = vaulted()
    land(log, am.RenameVault("vault-a", "Treasury"))
    assert log.state.vaults["vault-a"].name == "Treasury" and log.state.vault_of_key("key-a") is not None
    assert pay(log) == "allow"
    refused_change(log, am.RenameVault("vault-a", "Treasury"), "named 'Treasury' already")


def test_a_renamed_entry_keeps_its_address_and_its_whitelisting() -> None:
    log = vaulted()
    land(log, am.RenameAddress("book-1", "exchange (hot)"))
    book = log.state.address_book["book-1"]
    assert (book.name, book.address, book.whitelisted) == ("exchange (hot)", DEST, True)
    assert log.state.entry_for(DEST) == book
    assert pay(log) == "allow", "the small whitelisted payment is still allowed"
    refused_change(log, am.RenameAddress("book-1", "exchange (hot)"), "already")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (am.RenameVault("vault-x", "X"), "no vault 'vault-x'"),
        (am.ArchiveVault("vault-x"), "no vault 'vault-x'"),
        (am.DisableAsset("usdc"), "no asset 'usdc'"),
        (am.EnableAsset("usdc"), "no asset 'usdc'"),
        (am.RenameAddress("book-9", "nine"), "no address-book entry 'book-9'"),
    ],
    ids=lambda v: v.op if isinstance(v, am.Amendment) else "",
)
def test_an_amendment_of_something_the_log_does_not_have_is_refused(change: am.Amendment, needle: str) -> None:
    refused_change(vaulted(), change, needle)


def test_a_removed_entry_cannot_be_renamed() -> None:
    log = vaulted()
    land(log, c.RemoveAddress("book-1"))
    refused_change(log, am.RenameAddress("book-1", "gone"), "no address-book entry")


def test_a_replica_replaying_the_log_reaches_the_same_state() -> None:
    """What a signer node does with the entries it is pushed: the same amendments, the same state."""
    log = vaulted()
    land(log, am.RenameVault("vault-a", "Treasury"), am.RenameAddress("book-1", "exchange (hot)"))
    land(log, am.DisableAsset("eth"))
    land(log, am.EnableAsset("eth"), am.ArchiveVault("vault-a"))
    replica = GovernanceLog(log.genesis)
    replica.extend(log.since(0))
    assert replica.head == log.head and replica.state == log.state
    assert replica.state.vaults["vault-a"].archived and not replica.state.assets["eth"].disabled


def test_one_bad_amendment_refuses_its_whole_entry() -> None:
    log = vaulted()
    with pytest.raises(GovernanceError) as refused:
        land(log, am.RenameVault("vault-a", "Treasury"), am.DisableAsset("nothing"))
    assert refused.value.reason == "change" and "changes[1] (asset.disable)" in str(refused.value)
    assert log.state.vaults["vault-a"].name == "vault-a"


def test_harbour_approve_names_what_each_id_is_in_the_verified_state() -> None:
    from harbour.cli.review import _target

    log = vaulted()
    state = log.state
    lines = [
        _target(state, am.ArchiveVault("vault-a")),
        _target(state, am.DisableAsset("eth")),
        _target(state, am.RenameAddress("book-1", "hot")),
        _target(state, c.SetKey("bob", None)),
    ]
    assert lines == [
        "  target:  vault vault-a is 'vault-a' (key key-a)",
        "  target:  asset eth is ETH (the native coin)",
        f"  target:  address-book entry book-1 is 'exchange' ({DEST})",
        "  target:  user bob is 'Bob' (admin)",
    ]
    assert _target(state, c.SetQuorum(2)) is None


def test_harbour_approve_gives_no_target_line_for_what_the_same_entry_creates() -> None:
    from harbour.cli.review import _target

    state = vaulted().state
    assert _target(state, c.SetWhitelisted("book-new", True)) is None
    assert _target(state, c.SetRoles("newcomer", frozenset({"viewer"}))) is None
    assert _target(state, am.ArchiveVault("vault-new")) is None
    assert _target(state, am.EnableAsset("asset-new")) is None
