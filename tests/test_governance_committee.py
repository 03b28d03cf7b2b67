"""``vault.reshare`` in the governance log: a vault's key recorded as held by another committee.

Checked on the real log code, as the service, every signer node and each admin's
``harbour approve`` replay it: its one encoding (malformed forms refused), what it
changes (only the committee and threshold), and every way it cannot apply: another
key, nothing changed, a lower threshold, ``2t <= n``, a holder the log does not
name, a statement missing, forged or saying something else. The reshare itself on
node processes is ``tests/test_custody_reshare.py``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance_env import raw, signer_nodes
from harbour.governance import changes as c
from harbour.governance import committee, holding
from harbour.governance.fields import GovernanceError
from harbour.governance.log import Entry, signed
from harbour.governance.state import GovernanceLog
from test_governance_log import KEYS, NODES, entry, vaulted

QUORUM = [KEYS["alice"], KEYS["bob"]]
NEWCOMER = signer_nodes(4)["node-4"]


def land(log: GovernanceLog, *changes: c.Change) -> None:
    log.append(signed(entry(log, "alice", *changes), QUORUM))


def with_node4() -> GovernanceLog:
    """vault-a (key-a, 2 of node-1..node-3), and node-4 named by the log."""
    log = vaulted()
    land(log, c.AddNode("node-4", raw(NEWCOMER)))
    return log


def reshare(
    log: GovernanceLog,
    nodes: dict[str, Ed25519PrivateKey],
    threshold: int,
    *,
    signers: dict[str, Ed25519PrivateKey] | None = None,
    **differs: Any,
) -> committee.ReshareVault:
    """A ``vault.reshare`` of vault-a onto ``nodes``, each of ``signers`` (default: ``nodes``) stating it."""
    held = replace(
        log.state.vaults["vault-a"].holding,
        threshold=threshold,
        holders=tuple(sorted(raw(k) for k in nodes.values())),
        **differs,
    )
    statements = tuple(holding.sign(raw(k), held, k.sign) for k in (signers or nodes).values())
    return committee.ReshareVault("vault-a", held, statements)


def four() -> dict[str, Ed25519PrivateKey]:
    return {**NODES, "node-4": NEWCOMER}


def refused(log: GovernanceLog, change: c.Change, needle: str) -> None:
    head = log.head
    with pytest.raises(GovernanceError) as exc:
        land(log, change)
    assert exc.value.reason == "change" and needle in str(exc.value), str(exc.value)
    assert log.head == head


def test_a_reshare_records_the_new_committee_and_keeps_the_key() -> None:
    log = with_node4()
    before = log.state.vaults["vault-a"]
    change = reshare(log, four(), 3)
    land(log, change)
    after = log.state.vaults["vault-a"]
    assert after.holding.holders == tuple(sorted(raw(k) for k in four().values()))
    assert after.holding.threshold == 3
    assert (after.key_id, after.holding.public_key, after.holding.chain_code, after.name) == (
        before.key_id,
        before.holding.public_key,
        before.holding.chain_code,
        before.name,
    )
    assert log.state.vault_of_key("key-a") == after
    # A replica replaying the log from its genesis reaches the same committee.
    replica = GovernanceLog(log.entries[0])
    replica.extend(log.entries[1:])
    assert replica.state.vaults["vault-a"] == after
    # Then node-1 retires: node-2..node-4 at 3.
    land(log, reshare(log, {k: v for k, v in four().items() if k != "node-1"}, 3))
    assert raw(NODES["node-1"]) not in log.state.vaults["vault-a"].holding.holders


def test_a_reshare_has_one_encoding_and_one_line_for_the_admins() -> None:
    log = with_node4()
    change = reshare(log, four(), 3)
    encoded = c.encode_change(change)
    assert c.decode_change(encoded) == change
    data = Entry(log.state.org, 9, b"\x01" * 32, "alice", 1, (change,)).encode()
    assert Entry.decode(data).changes == (change,)
    line = c.describe(change)
    assert line.startswith(f"vault vault-a's key key-a (public key {change.holding.public_key.hex()}, unchanged)")
    assert "3 of them sign" in line and all(raw(k).hex() in line for k in four().values())


@pytest.mark.parametrize(
    ("what", "edit"),
    [
        ("an unknown key", lambda m: {**m, "extra": 1}),
        ("a missing key", lambda m: {k: v for k, v in m.items() if k != "statements"}),
        ("holders not a list", lambda m: {**m, "holders": "all"}),
        ("a statement that is text", lambda m: {**m, "statements": ["x"]}),
        ("unsorted holders", lambda m: {**m, "holders": list(reversed(m["holders"]))}),
        ("threshold one", lambda m: {**m, "threshold": 1}),
        ("threshold above the committee", lambda m: {**m, "threshold": 5}),
        ("a short public key", lambda m: {**m, "public_key": m["public_key"][:32]}),
        ("an empty vault id", lambda m: {**m, "id": ""}),
        ("too many statements", lambda m: {**m, "statements": [b"x"] * (holding.MAX_HOLDERS + 1)}),
    ],
)
def test_a_malformed_reshare_is_refused(what: str, edit: Any) -> None:
    encoded = c.encode_change(reshare(with_node4(), four(), 3))
    with pytest.raises(GovernanceError) as exc:
        c.decode_change(edit(encoded))
    assert exc.value.reason == "malformed", what


def test_a_reshare_of_another_key_or_of_nothing_is_refused() -> None:
    log = with_node4()
    refused(log, reshare(log, four(), 3, key_id="key-b"), "keeps the vault's key")
    refused(log, reshare(log, four(), 3, public_key=b"\x03" + bytes(32)), "keeps the vault's key")
    refused(log, reshare(log, four(), 3, chain_code=bytes(32)), "keeps the vault's key")
    refused(log, reshare(log, four(), 3, org=bytes(32)), "keeps the vault's key")
    refused(log, reshare(log, NODES, 2), "at this threshold already")
    refused(log, replace(reshare(log, four(), 3), id="vault-z"), "no vault 'vault-z'")


def test_a_reshare_never_lowers_the_threshold_nor_lets_two_signer_sets_share_no_node() -> None:
    log = with_node4()
    refused(log, reshare(log, four(), 2), "2 of 4 lets two signer sets share no node")
    land(log, reshare(log, four(), 3))
    refused(log, reshare(log, {k: v for k, v in four().items() if k != "node-1"}, 2), "never goes below the 3")


def test_a_reshare_onto_a_node_the_log_does_not_name_is_refused() -> None:
    log = vaulted()  # node-4 is not the organisation's
    refused(log, reshare(log, four(), 3), "not the organisation's")


def test_every_new_holder_must_state_exactly_what_the_entry_says() -> None:
    log = with_node4()
    refused(log, reshare(log, four(), 3, signers=NODES), "missing: node-4")
    good = reshare(log, four(), 3)
    refused(log, replace(good, statements=(*good.statements, good.statements[0])), "two holding statements")
    # node-4's statement says 4 of 4, the entry 3 of 4.
    wider = replace(good.holding, threshold=4)
    other = holding.sign(raw(NEWCOMER), wider, NEWCOMER.sign)
    mixed = replace(good, statements=(*good.statements[:3], other))
    refused(log, mixed, "another threshold than the entry's")
    # A statement signed by another key than the holder it names.
    stranger = Ed25519PrivateKey.generate()
    forged = holding.sign(raw(NEWCOMER), good.holding, stranger.sign)
    refused(log, replace(good, statements=(*good.statements[:3], forged)), "not signed by its identity key")


def test_a_reshare_needs_the_admin_quorum_like_any_change() -> None:
    log = with_node4()
    with pytest.raises(GovernanceError) as alone:
        log.append(signed(entry(log, "alice", reshare(log, four(), 3)), [KEYS["alice"]]))
    assert alone.value.reason == "quorum"


def test_harbour_approve_names_the_committees_before_and_after_from_the_verified_state() -> None:
    from harbour.cli.review import _target

    log = with_node4()
    line = _target(log.state, reshare(log, four(), 3))
    old, new = (", ".join(f"{n!r} ({raw(k).hex()[:16]})" for n, k in nodes.items()) for nodes in (NODES, four()))
    assert line == f"  target:  vault vault-a is 'vault-a': held by {old}, 2 signing; then by {new}, 3 signing"
    assert _target(log.state, replace(reshare(log, four(), 3), id="vault-z")) is None
