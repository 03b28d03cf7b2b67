"""The governance log: what makes an entry effective, and every way a relayed log is refused.

Each attack is performed against the real code: an entry signed by an admin who
was removed, a forked log, a replayed entry, an entry out of order, an entry of
another organisation, a lone admin, a key held by two users, malformed and
non-canonical encodings.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from governance_env import node_adds, raw, signer_nodes, stated_vault
from harbour.governance import changes as c
from harbour.governance import holding
from harbour.governance.decide import Refused, Withdrawal, judge
from harbour.governance.fields import GovernanceError
from harbour.governance.log import GENESIS_PARENT, Entry, SignedEntry, sign_entry, signed
from harbour.governance.policy import PastTx, Policy
from harbour.governance.request import request_body, sign_request
from harbour.governance.state import GovernanceLog

ORG = "org-1"
DEST = "0x" + "11" * 20
OTHER = "0x" + "22" * 20
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
CHAIN_ID = 1337


def pub(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


KEYS = {name: Ed25519PrivateKey.generate() for name in ("alice", "bob", "carol", "mallory", "approver", "spare")}
NODES = signer_nodes(3)
"""The organisation's signer nodes, by name: their identity keys state which keys they hold."""


def user(name: str, *roles: str, key: bool = True) -> c.AddUser:
    return c.AddUser(name, name.title(), frozenset(roles), pub(KEYS[name]) if key else None)


POLICY = {
    "version": 1,
    "rules": [
        {
            "name": "over the hourly limit",
            "action": "block",
            "match": {"assets": ["ETH"], "velocity": {"window_seconds": 3600, "max_amount": "1000", "per": "source"}},
        },
        {
            "name": "small to whitelisted",
            "action": "allow",
            "match": {"assets": ["ETH"], "amount": {"max": "100"}, "destination": {"kind": "whitelisted"}},
        },
        {
            "name": "small blocked elsewhere",
            "action": "block",
            "match": {"assets": ["ETH"], "amount": {"max": "100"}},
        },
        {
            "name": "large",
            "action": "require_approval",
            "approvals": {"combine": "all", "groups": [{"name": "desk", "members": ["approver"], "threshold": 1}]},
        },
    ],
}


def genesis(*extra: c.Change, quorum: int = 1, admins: tuple[str, ...] = ("alice", "bob", "carol")) -> SignedEntry:
    founding = (
        c.SetQuorum(quorum),
        *(user(a, "admin") for a in admins),
        user("approver", "approver"),
        c.AddUser("ivy", "Ivy", frozenset({"initiator"}), None),
        c.AddAsset("eth", "ETH", None, 18),
        *node_adds(NODES),
        c.AddAddress("book-1", "exchange", DEST, True),
        c.policy_change(POLICY),
        *extra,
    )
    entry = Entry(ORG, 0, GENESIS_PARENT, admins[0], 0, founding)
    return signed(entry, [])


def entry(log: GovernanceLog, proposer: str, *changes: c.Change, seq: int | None = None) -> Entry:
    head_seq = log.state.seq if seq is None else seq - 1
    return Entry(ORG, head_seq + 1, log.hashes[head_seq], proposer, 100 + head_seq, changes)


def vaulted() -> GovernanceLog:
    """The log of :func:`genesis` and an entry making key-a, which the three nodes hold, vault-a."""
    log = GovernanceLog(genesis())
    vault = stated_vault(log.genesis_hash, "vault-a", "key-a", NODES)
    log.append(signed(entry(log, "alice", vault), [KEYS["alice"], KEYS["bob"]]))
    return log


def test_an_entry_needs_the_proposer_and_the_quorum_of_other_admins() -> None:
    log = GovernanceLog(genesis())
    change = entry(log, "alice", user("mallory", "admin"))
    with pytest.raises(GovernanceError) as alone:
        log.append(signed(change, [KEYS["alice"]]))
    assert alone.value.reason == "quorum"
    with pytest.raises(GovernanceError) as without_proposer:
        log.append(signed(change, [KEYS["bob"], KEYS["carol"]]))
    assert without_proposer.value.reason == "quorum" and "proposer" in str(without_proposer.value)
    state = log.append(signed(change, [KEYS["alice"], KEYS["bob"]]))
    assert state.seq == 1 and "mallory" in state.users


def test_the_single_admin_drain_stops_at_its_first_step() -> None:
    """One admin adds a second admin whose key she holds: without another admin's signature nothing lands."""
    log = GovernanceLog(genesis())
    sock_puppet = entry(log, "alice", user("mallory", "admin"))
    with pytest.raises(GovernanceError) as refused:
        # Mallory's key is not an admin's before the entry: it cannot vouch for its own admission.
        log.append(signed(sock_puppet, [KEYS["alice"], KEYS["mallory"]]))
    assert refused.value.reason == "signer"
    assert "mallory" not in log.state.users


def test_a_removed_admins_signature_never_counts() -> None:
    log = GovernanceLog(genesis())
    log.append(signed(entry(log, "alice", c.DisableUser("carol")), [KEYS["alice"], KEYS["bob"]]))
    later = entry(log, "alice", c.policy_change({"version": 1, "rules": []}))
    with pytest.raises(GovernanceError) as refused:
        log.append(signed(later, [KEYS["alice"], KEYS["carol"]]))
    assert refused.value.reason == "signer" and "not an enabled admin" in str(refused.value)
    # A rotated-away key is as dead as a disabled admin's.
    log.append(signed(entry(log, "alice", c.SetKey("bob", pub(KEYS["spare"]))), [KEYS["alice"], KEYS["bob"]]))
    with pytest.raises(GovernanceError) as old_key:
        log.append(signed(entry(log, "alice", c.EnableUser("carol")), [KEYS["alice"], KEYS["bob"]]))
    assert old_key.value.reason == "signer"
    log.append(signed(entry(log, "alice", c.EnableUser("carol")), [KEYS["alice"], KEYS["spare"]]))
    assert not log.state.users["carol"].disabled


def test_an_invalid_signature_is_refused() -> None:
    log = GovernanceLog(genesis())
    change = entry(log, "alice", c.DisableUser("carol"))
    data = change.encode()
    forged = SignedEntry(data, ((pub(KEYS["alice"]), sign_entry(KEYS["alice"], data)), (pub(KEYS["bob"]), bytes(64))))
    with pytest.raises(GovernanceError) as refused:
        log.append(forged)
    assert refused.value.reason == "signature"
    # Bob's signature over another entry is not a signature over this one.
    other = entry(log, "alice", c.DisableUser("bob")).encode()
    moved = SignedEntry(
        data,
        ((pub(KEYS["alice"]), sign_entry(KEYS["alice"], data)), (pub(KEYS["bob"]), sign_entry(KEYS["bob"], other))),
    )
    with pytest.raises(GovernanceError, match="invalid"):
        log.append(moved)


def test_replayed_forked_and_out_of_order_entries_are_named() -> None:
    log = GovernanceLog(genesis())
    first = signed(entry(log, "alice", c.DisableUser("carol")), [KEYS["alice"], KEYS["bob"]])
    log.append(first)
    with pytest.raises(GovernanceError) as replayed:
        log.append(first)
    assert replayed.value.reason == "replayed"
    fork = signed(entry(log, "bob", c.SetWhitelisted("book-1", False), seq=1), [KEYS["alice"], KEYS["bob"]])
    with pytest.raises(GovernanceError) as forked:
        log.append(fork)
    assert forked.value.reason == "forked"
    ahead = Entry(ORG, 3, bytes(range(32)), "alice", 5, (c.EnableUser("carol"),))
    with pytest.raises(GovernanceError) as gap:
        log.append(signed(ahead, [KEYS["alice"], KEYS["bob"]]))
    assert gap.value.reason == "order"
    wrong_parent = Entry(ORG, 2, log.hashes[0], "alice", 5, (c.EnableUser("carol"),))
    with pytest.raises(GovernanceError) as parent:
        log.append(signed(wrong_parent, [KEYS["alice"], KEYS["bob"]]))
    assert parent.value.reason == "order"
    assert log.state.seq == 1


def test_another_organisations_entry_is_refused() -> None:
    log = GovernanceLog(genesis())
    foreign = Entry("org-2", 1, log.head, "alice", 5, (c.DisableUser("carol"),))
    with pytest.raises(GovernanceError) as refused:
        log.append(signed(foreign, [KEYS["alice"], KEYS["bob"]]))
    assert refused.value.reason == "organisation"


def test_the_last_admins_of_the_quorum_cannot_be_removed() -> None:
    log = GovernanceLog(genesis(quorum=2))
    both = entry(log, "alice", c.DisableUser("bob"))
    with pytest.raises(GovernanceError) as refused:
        log.append(signed(both, [KEYS["alice"], KEYS["bob"], KEYS["carol"]]))
    assert refused.value.reason == "change" and "last admins" in str(refused.value)
    demote = entry(log, "alice", c.SetRoles("carol", frozenset({"viewer"})))
    with pytest.raises(GovernanceError):
        log.append(signed(demote, [KEYS["alice"], KEYS["bob"], KEYS["carol"]]))
    unkey = entry(log, "alice", c.SetKey("carol", None))
    with pytest.raises(GovernanceError):
        log.append(signed(unkey, [KEYS["alice"], KEYS["bob"], KEYS["carol"]]))


def test_an_organisation_with_one_admin_operates_within_its_genesis() -> None:
    log = GovernanceLog(genesis(admins=("alice",)))
    with pytest.raises(GovernanceError) as refused:
        log.append(signed(entry(log, "alice", user("bob", "admin")), [KEYS["alice"]]))
    assert refused.value.reason == "quorum"


def test_one_key_is_one_person() -> None:
    log = GovernanceLog(genesis())
    twin = entry(log, "alice", c.AddUser("twin", "Twin", frozenset({"approver"}), pub(KEYS["approver"])))
    with pytest.raises(GovernanceError) as refused:
        log.append(signed(twin, [KEYS["alice"], KEYS["bob"]]))
    assert refused.value.reason == "change" and "another user" in str(refused.value)


def test_a_policy_naming_unknown_users_is_refused() -> None:
    log = GovernanceLog(genesis())
    bad = {
        "version": 1,
        "rules": [
            {
                "name": "r",
                "action": "require_approval",
                "approvals": {"combine": "all", "groups": [{"name": "g", "members": ["Approver"], "threshold": 1}]},
            }
        ],
    }
    with pytest.raises(GovernanceError) as refused:
        log.append(signed(entry(log, "alice", c.policy_change(bad)), [KEYS["alice"], KEYS["bob"]]))
    assert "Approver" in str(refused.value)


def test_changes_that_do_not_apply_are_refused_with_their_index() -> None:
    log = vaulted()
    for change in (
        c.DisableUser("nobody"),
        user("alice", "viewer"),
        c.AddAddress("book-2", "dup", DEST.upper().replace("0X", "0x"), False),
        stated_vault(log.genesis_hash, "vault-b", "key-a", NODES),
        c.AddNode("node-1", pub(KEYS["spare"])),
        c.AddNode("node-9", raw(NODES["node-1"])),
        c.RemoveNode(pub(KEYS["spare"])),
        c.AddAsset("eth2", "ETH", None, 18),
        c.RemoveAddress("book-9"),
        c.EnableUser("bob"),
        c.IssueCredential("cred", "ivy", bytes(32)),
    ):
        with pytest.raises(GovernanceError) as refused:
            log.append(
                signed(entry(log, "alice", c.SetWhitelisted("book-1", False), change), [KEYS["alice"], KEYS["bob"]])
            )
        assert refused.value.reason == "change" and "changes[1]" in str(refused.value)
    assert log.state.address_book["book-1"].whitelisted  # nothing of a refused entry applies


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(version=2),
        lambda m: m.update(extra=1),
        lambda m: m.update(seq=-1),
        lambda m: m.update(prev=b"short"),
        lambda m: m.update(changes=[]),
        lambda m: m.update(changes=[{"op": "user.disable"}]),
        lambda m: m.update(changes=[{"op": "teleport", "id": "x"}]),
        lambda m: m.update(
            changes=[{"op": "user.add", "id": "x", "name": "X", "roles": ["root"], "approval_key": None}]
        ),
        lambda m: m.update(
            changes=[{"op": "user.add", "id": "x", "name": "X", "roles": ["viewer", "admin"], "approval_key": None}]
        ),
        lambda m: m.update(changes=[{"op": "user.key", "id": "x", "approval_key": bytes(32)}]),
        lambda m: m.update(changes=[{"op": "quorum", "others": 0}]),
        lambda m: m.update(
            changes=[{"op": "address.add", "id": "a", "name": "n", "address": "0x12", "whitelisted": True}]
        ),
        lambda m: m.update(changes=[{"op": "policy", "document": '{"rules":[],"version":1} '}]),
        lambda m: m.update(changes=[{"op": "policy", "document": '{"version":1,"rules":[]}'}]),
        lambda m: m.update(org=" org-1"),
    ],
)
def test_malformed_entries_are_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    log = GovernanceLog(genesis())
    good = entry(log, "alice", c.DisableUser("carol")).encode()
    obj = cbor2.loads(good)
    mutate(obj)
    with pytest.raises(GovernanceError) as refused:
        Entry.decode(cbor2.dumps(obj, canonical=True))
    assert refused.value.reason == "malformed"


def test_non_canonical_encodings_are_refused() -> None:
    log = GovernanceLog(genesis())
    change = signed(entry(log, "alice", c.DisableUser("carol")), [KEYS["alice"], KEYS["bob"]])
    obj = cbor2.loads(change.data)
    with pytest.raises(GovernanceError, match="canonical"):
        Entry.decode(cbor2.dumps(obj, canonical=False) if cbor2.dumps(obj) != change.data else change.data + b"\x00")
    with pytest.raises(GovernanceError, match=r"canonical|trailing"):
        SignedEntry.decode(change.encode() + b"\x00")
    unsorted = cbor2.dumps(
        {"entry": change.data, "signatures": [list(p) for p in reversed(change.signatures)]}, canonical=True
    )
    with pytest.raises(GovernanceError, match=r"unsorted|canonical"):
        SignedEntry.decode(unsorted)
    doubled = [list(change.signatures[0]), list(change.signatures[0])]
    with pytest.raises(GovernanceError, match="twice"):
        SignedEntry.decode(cbor2.dumps({"entry": change.data, "signatures": doubled}, canonical=True))
    assert SignedEntry.decode(change.encode()) == change


def test_a_small_order_key_is_never_an_admin() -> None:
    identity = bytes([1]) + bytes(31)  # the Ed25519 neutral element: "verifies" forged signatures in some libraries
    with pytest.raises(GovernanceError, match="Ed25519"):
        c.decode_change({"op": "user.key", "id": "alice", "approval_key": identity})


def _withdraw(log: GovernanceLog, amount: int, to: str = DEST, approved_by: tuple[bytes, ...] = (), history=()):  # type: ignore[no-untyped-def]
    return judge(
        log.state,
        Withdrawal(key_id="key-a", initiator="ivy", contract=None, destination=to, amount=amount),
        at=NOW,
        history=list(history),
        approved_by=approved_by,
    )


def test_the_decision_comes_from_the_signed_state() -> None:
    log = vaulted()
    assert _withdraw(log, 50).action == "allow"
    with pytest.raises(Refused) as blocked:
        _withdraw(log, 50, to=OTHER)
    assert "small blocked elsewhere" in str(blocked.value)
    with pytest.raises(Refused) as missing:
        _withdraw(log, 500)
    assert missing.value.reason == "quorum" and "desk" in str(missing.value)
    assert _withdraw(log, 500, approved_by=(pub(KEYS["approver"]),)).rule == "large"
    # An approval by a key the state does not hold counts for nothing.
    with pytest.raises(Refused):
        _withdraw(log, 500, approved_by=(pub(KEYS["mallory"]),))
    # Velocity: earlier signed withdrawals from the vault count.
    earlier = [PastTx("ivy", "vault-a", "ETH", DEST, 950, NOW - dt.timedelta(minutes=5))]
    with pytest.raises(Refused) as over:
        _withdraw(log, 60, history=earlier)
    assert "over the hourly limit" in str(over.value)
    # Whitelisting removed by a signed entry: the same payment is now blocked.
    log.append(signed(entry(log, "alice", c.SetWhitelisted("book-1", False)), [KEYS["alice"], KEYS["bob"]]))
    with pytest.raises(Refused):
        _withdraw(log, 50)


def test_requests_the_state_cannot_describe_are_refused() -> None:
    log = vaulted()
    cases = [
        Withdrawal("key-unknown", "ivy", None, DEST, 1),
        Withdrawal("key-a", "nobody", None, DEST, 1),
        Withdrawal("key-a", "ivy", "0x" + "33" * 20, DEST, 1),
    ]
    for request in cases:
        with pytest.raises(GovernanceError) as refused:
            judge(log.state, request, at=NOW, history=[], approved_by=())
        assert refused.value.reason == "facts"


def test_since_gives_what_a_verifier_lacks() -> None:
    log = GovernanceLog(genesis())
    for target in ("carol", "approver"):
        log.append(signed(entry(log, "alice", c.DisableUser(target)), [KEYS["alice"], KEYS["bob"]]))
    replica = GovernanceLog(log.genesis)
    replica.extend(log.since(0))
    assert replica.head == log.head and replica.state == log.state
    assert log.since(2) == []


# -- vault keys: every holder states it holds the key for this organisation ----------------------------------------


def _add_vault(log: GovernanceLog, vault: c.AddVault) -> GovernanceError:
    with pytest.raises(GovernanceError) as refused:
        log.append(signed(entry(log, "alice", vault), [KEYS["alice"], KEYS["bob"]]))
    assert refused.value.reason == "change"
    assert not log.state.vaults
    return refused.value


def _restated(vault: c.AddVault, **changes: object) -> c.AddVault:
    """``vault`` with its holding changed as given, and statements still saying the original."""
    return c.AddVault(vault.id, vault.name, replace(vault.holding, **changes), vault.statements)  # type: ignore[arg-type]


def test_a_vault_whose_every_holder_stated_it_applies() -> None:
    log = vaulted()
    vault = log.state.vaults["vault-a"]
    assert vault.key_id == "key-a" and vault.holding.holders == tuple(sorted(raw(k) for k in NODES.values()))
    assert "2 of 3 node(s)" in c.describe(log.entries[-1].entry.changes[0])


def test_a_key_held_for_another_organisation_is_no_vault_of_this_one() -> None:
    """The authority bound the key to a fake organisation it enrolled: the holders say so, and the entry is refused."""
    log = GovernanceLog(genesis())
    fake = GovernanceLog(genesis(c.AddUser("ghost", "Ghost", frozenset({"viewer"}), None)))
    elsewhere = stated_vault(fake.genesis_hash, "vault-a", "key-a", NODES)
    assert "not this one" in str(_add_vault(log, elsewhere))
    # Relabelling the holding as this organisation's leaves statements that say the other one.
    relabelled = _restated(elsewhere, org=log.genesis_hash)
    assert "organisation" in str(_add_vault(log, relabelled)) and "not this one" in str(_add_vault(log, relabelled))


def test_a_key_held_by_a_node_the_log_does_not_name_is_refused() -> None:
    """Shares given to the authority's own nodes: t of them would hold the whole key."""
    log = GovernanceLog(genesis())
    intruders = {**dict(list(NODES.items())[:2]), "intruder": Ed25519PrivateKey.generate()}
    error = _add_vault(log, stated_vault(log.genesis_hash, "vault-a", "key-a", intruders))
    assert "not the organisation's" in str(error)
    # Once the admins add the node, the same key is a vault.
    log.append(
        signed(entry(log, "alice", c.AddNode("intruder", raw(intruders["intruder"]))), [KEYS["alice"], KEYS["bob"]])
    )
    log.append(
        signed(
            entry(log, "alice", stated_vault(log.genesis_hash, "vault-a", "key-a", intruders)),
            [KEYS["alice"], KEYS["bob"]],
        )
    )
    assert "vault-a" in log.state.vaults


def test_a_removed_node_holds_no_new_vault_key() -> None:
    log = GovernanceLog(genesis())
    log.append(signed(entry(log, "alice", c.RemoveNode(raw(NODES["node-3"]))), [KEYS["alice"], KEYS["bob"]]))
    assert "not the organisation's" in str(_add_vault(log, stated_vault(log.genesis_hash, "vault-a", "key-a", NODES)))


def test_holding_statements_that_are_missing_forged_or_say_otherwise_are_refused() -> None:
    log = GovernanceLog(genesis())
    good = stated_vault(log.genesis_hash, "vault-a", "key-a", NODES)
    missing = c.AddVault(good.id, good.name, good.holding, good.statements[:2])
    assert "missing: node-3" in str(_add_vault(log, missing))
    doubled = c.AddVault(good.id, good.name, good.holding, (*good.statements[:2], good.statements[0]))
    assert "two holding statements" in str(_add_vault(log, doubled))
    # A statement whose signature is another node's.
    forged_body, _, _ = holding.parse(good.statements[0])
    forged = cbor2.dumps(
        {"statement": forged_body.body(), "signature": NODES["node-2"].sign(holding.DOMAIN + forged_body.body())},
        canonical=True,
    )
    swapped = c.AddVault(good.id, good.name, good.holding, (forged, *good.statements[1:]))
    assert "not signed by its identity key" in str(_add_vault(log, swapped))
    # The entry shows one public key (or threshold, chain code) and the nodes stated another.
    other_point = b"\x03" + bytes(range(32))
    for field, value in (("public_key", other_point), ("threshold", 3), ("chain_code", bytes(32))):
        assert "than the entry's" in str(_add_vault(log, _restated(good, **{field: value})))


def test_a_genesis_cannot_add_a_vault() -> None:
    """Nothing can state it holds a key for an organisation whose genesis hash does not exist yet."""
    other = GovernanceLog(genesis())
    with pytest.raises(GovernanceError, match="after the genesis"):
        GovernanceLog(genesis(stated_vault(other.genesis_hash, "vault-a", "key-a", NODES)))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda m: m.update(threshold=1),
        lambda m: m.update(threshold=4),
        lambda m: m.update(holders=list(reversed(m["holders"]))),
        lambda m: m.update(public_key=b"\x04" + bytes(32)),
        lambda m: m.update(chain_code=bytes(31)),
        lambda m: m.update(org=bytes(31)),
        lambda m: m.update(statements=["not bytes"]),
        lambda m: m.update(statements=[b"\xa0"]),
        lambda m: m.pop("statements"),
    ],
)
def test_malformed_vault_changes_are_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    log = GovernanceLog(genesis())
    obj = c.encode_change(stated_vault(log.genesis_hash, "vault-a", "key-a", NODES))
    mutate(obj)
    with pytest.raises(GovernanceError) as refused:
        change = c.decode_change(obj)
        assert isinstance(change, c.AddVault)
        holding.check(change.statements, change.holding, log.state.nodes)
    assert refused.value.reason == "malformed"


# -- signed requests: who asked is the initiator's word when the policy depends on it -------------------------------

BOT_POLICY = {
    "version": 1,
    "rules": [
        {
            "name": "the bot pays small sums",
            "action": "allow",
            "match": {"initiators": ["ivy"], "assets": ["ETH"], "amount": {"max": "10"}},
        },
        {"name": "nobody else", "action": "block"},
    ],
}


def _bot_log() -> GovernanceLog:
    log = vaulted()
    change = (c.SetKey("ivy", pub(KEYS["spare"])), c.policy_change(BOT_POLICY))
    log.append(signed(entry(log, "alice", *change), [KEYS["alice"], KEYS["bob"]]))
    return log


def _request(
    log: GovernanceLog, signer: str = "spare", transaction_id: str = "tx-1", amount: int = 5, signed_id: str = "tx-1"
) -> Withdrawal:
    body = request_body(
        chain_id=CHAIN_ID,
        org=log.genesis_hash,
        transaction_id=signed_id,
        vault="vault-a",
        asset="ETH",
        destination=DEST,
        amount=amount,
    )
    return Withdrawal("key-a", "ivy", None, DEST, amount, transaction_id, sign_request(KEYS[signer], body), CHAIN_ID)


def _judged(log: GovernanceLog, request: Withdrawal) -> str:
    return judge(log.state, request, at=NOW, history=[], approved_by=()).action


def test_a_policy_naming_initiators_decides_only_requests_they_signed() -> None:
    log = _bot_log()
    assert log.state.policy is not None and log.state.policy.depends_on_initiator()
    assert _judged(log, _request(log)) == "allow"
    # A compromised service names the bot as the initiator of a payment the bot never asked for.
    unsigned = Withdrawal("key-a", "ivy", None, DEST, 5, "tx-1", None, CHAIN_ID)
    with pytest.raises(Refused) as missing:
        _judged(log, unsigned)
    assert missing.value.reason == "initiator" and "must be signed by its initiator" in str(missing.value)
    for forged, why in (
        (_request(log, signer="mallory"), "someone else's key"),
        (_request(log, transaction_id="tx-2"), "another transaction's signature"),
    ):
        with pytest.raises(Refused) as refused:
            _judged(log, forged)
        assert refused.value.reason == "initiator", why
    changed = Withdrawal("key-a", "ivy", None, DEST, 6, "tx-1", _request(log).signature, CHAIN_ID)
    with pytest.raises(Refused, match="not its initiator's"):
        _judged(log, changed)  # signed for 5, asked for 6
    elsewhere = Withdrawal("key-a", "ivy", None, OTHER, 5, "tx-1", _request(log).signature, CHAIN_ID)
    with pytest.raises(Refused, match="not its initiator's"):
        _judged(log, elsewhere)
    # The vault's address is the same on every EVM chain: a request signed for one is not paid on another.
    other_chain = Withdrawal("key-a", "ivy", None, DEST, 5, "tx-1", _request(log).signature, CHAIN_ID + 1)
    with pytest.raises(Refused, match="not its initiator's"):
        _judged(log, other_chain)


def test_a_request_signed_before_the_initiators_key_was_rotated_counts_for_nothing() -> None:
    log = _bot_log()
    request = _request(log)
    log.append(signed(entry(log, "alice", c.SetKey("ivy", pub(KEYS["mallory"]))), [KEYS["alice"], KEYS["bob"]]))
    with pytest.raises(Refused, match="not its initiator's"):
        _judged(log, request)
    log.append(signed(entry(log, "alice", c.SetKey("ivy", None)), [KEYS["alice"], KEYS["bob"]]))
    with pytest.raises(Refused, match="no approval key"):
        _judged(log, request)


def test_a_policy_that_does_not_depend_on_the_initiator_needs_no_signature_but_checks_one_given() -> None:
    log = vaulted()
    assert log.state.policy is not None and not log.state.policy.depends_on_initiator()
    assert _judged(log, Withdrawal("key-a", "ivy", None, DEST, 50)) == "allow"
    log.append(signed(entry(log, "alice", c.SetKey("ivy", pub(KEYS["spare"]))), [KEYS["alice"], KEYS["bob"]]))
    body = request_body(
        chain_id=CHAIN_ID,
        org=log.genesis_hash,
        transaction_id="t",
        vault="vault-a",
        asset="ETH",
        destination=DEST,
        amount=50,
    )
    good = Withdrawal("key-a", "ivy", None, DEST, 50, "t", sign_request(KEYS["spare"], body), CHAIN_ID)
    assert _judged(log, good) == "allow"
    bad = Withdrawal("key-a", "ivy", None, DEST, 50, "t", sign_request(KEYS["mallory"], body), CHAIN_ID)
    with pytest.raises(Refused) as refused:
        _judged(log, bad)
    assert refused.value.reason == "initiator"


@pytest.mark.parametrize(
    ("match", "depends"),
    [
        ({"initiators": ["ivy"]}, True),
        ({"roles": ["initiator"]}, True),
        ({"velocity": {"window_seconds": 60, "max_amount": "5", "per": "initiator", "asset": "ETH"}}, True),
        ({"count": {"window_seconds": 60, "max_count": 5, "per": "initiator"}}, True),
        ({"velocity": {"window_seconds": 60, "max_amount": "5", "per": "source", "asset": "ETH"}}, False),
        ({"destination": {"kind": "whitelisted"}}, False),
        ({}, False),
    ],
)
def test_which_policies_depend_on_the_initiator(match: dict[str, object], depends: bool) -> None:
    policy = Policy.from_document({"version": 1, "rules": [{"name": "r", "action": "block", "match": match}]})
    assert policy.depends_on_initiator() is depends
