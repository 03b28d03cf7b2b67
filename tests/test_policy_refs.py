"""What a policy names, and what the CLI says about a policy and a waiting transaction, on real governance states.

Three pure parts, checked without a server: the custody service's resolution of
names in a proposed policy and its refusal of members who cannot approve
(:mod:`harbour.custody.policyrefs`, also run on a genesis), the line
``harbour status`` prints for what a transaction waits for
(:mod:`harbour.cli.waiting`), and the rules ``harbour approve`` shows for a
policy change, marked against the policy in force (:mod:`harbour.cli.policyview`).
The same paths run end to end against a real API in tests/test_cli_custody.py.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.cli import policyview
from harbour.cli.policyview import review
from harbour.cli.waiting import waiting_for
from harbour.custody import genesis, policyrefs
from harbour.custody.errors import Invalid
from harbour.governance import changes as c
from harbour.governance.policy import Policy
from harbour.governance.state import AddressEntry, OrgState, User

KEY = bytes(range(32))
TINA, TOM, TARIQ, CARLA, VIC, DORA, IVAN = (f"00000000-0000-4000-8000-00000000000{i}" for i in range(1, 8))
USERS = {
    TINA: User(TINA, "Tina", frozenset({"approver"}), KEY),
    TOM: User(TOM, "tom", frozenset({"approver"}), bytes(32)),
    TARIQ: User(TARIQ, "tariq", frozenset({"approver", "admin"}), b"\1" * 32),
    CARLA: User(CARLA, "carla", frozenset({"approver"}), None),
    VIC: User(VIC, "vic", frozenset({"viewer"}), b"\2" * 32),
    DORA: User(DORA, "dora", frozenset({"approver"}), b"\3" * 32, disabled=True),
    IVAN: User(IVAN, "ivan", frozenset({"initiator"}), None),
}
EXCHANGE = AddressEntry("book-1", "Exchange 1", "0x" + "11" * 20, True)


def rule(members: list[str], threshold: int = 1, name: str = "one-time", **match: Any) -> dict[str, Any]:
    return {
        "name": name,
        "match": match,
        "action": "require_approval",
        "approvals": {"combine": "all", "groups": [{"name": "treasury", "members": members, "threshold": threshold}]},
    }


def state(policy: dict[str, Any] | None = None) -> OrgState:
    return OrgState(
        org="org-1",
        genesis=b"\0" * 32,
        seq=3,
        head=b"\4" * 32,
        quorum=1,
        users=USERS,
        policy=None if policy is None else Policy.from_document(policy),
        address_book={EXCHANGE.id: EXCHANGE},
        vaults={},
        assets={},
        credentials={},
        nodes={},
    )


def resolved(document: dict[str, Any]) -> Policy:
    return policyrefs.resolve(Policy.from_document(document), USERS.values(), (), [EXCHANGE])


# -- names in a proposed policy ---------------------------------------------------------------------------------


def test_members_named_by_user_name_become_their_ids_compared_as_the_log_compares_names() -> None:
    policy = resolved({"rules": [rule(["tina", "ＴＯＭ", TARIQ], 2, initiators=["Ivan"])]})
    assert policy.rules[0].approvals is not None
    assert policy.rules[0].approvals.groups[0].members == {TINA, TOM, TARIQ}
    assert policy.rules[0].match.initiators == frozenset({IVAN})
    assert policyrefs.refusal(policy, USERS, (), [EXCHANGE]) is None


def test_address_book_entries_are_named_by_name_too() -> None:
    policy = resolved({"rules": [{"name": "ok", "match": {"destination": {"kind": "whitelisted",
                                                                          "entries": ["exchange 1"]}},
                                  "action": "allow"}]})  # fmt: skip
    assert policy.rules[0].match.destination is not None
    assert policy.rules[0].match.destination.entries == frozenset({"book-1"})


def test_a_member_named_twice_by_name_and_by_id_is_refused() -> None:
    with pytest.raises(Invalid, match="names user 'Tina' twice"):
        resolved({"rules": [rule(["tina", TINA], 1)]})


@pytest.mark.parametrize(
    ("member", "why"),
    [
        ("tnia", "'tnia' is no user of the organisation"),
        ("carla", "'carla' (00000000-0000-4000-8000-000000000004) has no approval key to sign with"),
        ("vic", "'vic' (00000000-0000-4000-8000-000000000005) does not hold the approver role"),
        ("dora", "'dora' (00000000-0000-4000-8000-000000000006) is disabled"),
        ("00000000-0000-4000-8000-000000000099", "is no user of the organisation"),
    ],
)
def test_a_member_who_cannot_approve_is_refused_naming_the_rule_group_and_member(member: str, why: str) -> None:
    problem = policyrefs.refusal(resolved({"rules": [rule(["tina", member], 1)]}), USERS, (), [EXCHANGE])
    assert problem is not None and problem.startswith("rule 'one-time', group 'treasury': member ")
    assert why in problem and "could never count" in problem


def test_unknown_initiators_vaults_and_entries_are_refused() -> None:
    for match, needle in [
        ({"initiators": ["ivna"]}, "(initiators) names 'ivna', no user"),
        ({"vaults": ["cold-1"]}, "(vaults) names 'cold-1', no vault"),
        ({"destination": {"kind": "address_book", "entries": ["exchange 2"]}}, "names 'exchange 2', no address-book"),
    ]:
        document = {"rules": [{"name": "r", "match": match, "action": "allow"}]}
        problem = policyrefs.refusal(resolved(document), USERS, (), [EXCHANGE])
        assert problem is not None and needle in problem, problem


def test_a_genesis_policy_may_name_the_founders_by_name_and_is_refused_when_one_cannot_approve() -> None:
    alice, bob_key = (Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex() for _ in range(2))
    founders = [
        genesis.Founder("alice", ("admin",), alice),
        genesis.Founder("bob", ("approver",), bob_key),
        genesis.Founder("ivan", ("initiator",)),
    ]
    charter = genesis.Charter("Acme", founders, policy={"rules": [rule(["Bob"], 1)]})
    changes, _ = genesis._changes(charter)
    bob = next(ch.id for ch in changes if isinstance(ch, c.AddUser) and ch.name == "bob")
    policy = next(ch for ch in changes if isinstance(ch, c.SetPolicy)).policy()
    assert policy.rules[0].approvals is not None and policy.rules[0].approvals.groups[0].members == {bob}
    with pytest.raises(Invalid, match=r"'ivan' .* does not hold the approver role"):
        genesis._changes(genesis.Charter("Acme", founders, policy={"rules": [rule(["bob", "ivan"], 1)]}))


def test_a_founder_named_like_a_uuid_is_refused_as_users_made_later_are() -> None:
    key = Ed25519PrivateKey.generate().public_key().public_bytes_raw().hex()
    for shaped in (TINA, TINA.upper()):
        with pytest.raises(Invalid, match=r"^user name '.*' has the form of a UUID"):
            genesis._changes(genesis.Charter("Acme", [genesis.Founder(shaped, ("admin",), key)]))


# -- what a transaction waits for -------------------------------------------------------------------------------

NAMES = {u.id: u.name for u in USERS.values()}
REQUIREMENT = {"combine": "all", "groups": [{"name": "treasury", "members": [TINA, TOM, TARIQ], "threshold": 2}]}


def tx(state: str = "pending_approval", approvals: tuple[tuple[str, bool], ...] = (), **more: Any) -> dict[str, Any]:
    given = [{"approver_id": who, "decision": "approve", "expired": expired} for who, expired in approvals]
    return {"kind": "withdrawal", "state": state, "initiator_id": IVAN, "requirement": REQUIREMENT,
            "approvals": given, "sub_status": None, "error": None, **more}  # fmt: skip


def test_a_pending_withdrawal_says_how_many_more_and_who_can_still_approve_by_name() -> None:
    assert waiting_for(tx(), NAMES) == "needs 2 more from treasury: tariq, Tina, tom"
    assert waiting_for(tx(approvals=((TOM, False),)), NAMES) == "needs 1 more from treasury: tariq, Tina"
    # An expired approval does not count; ids the credential cannot name are shown as they are.
    assert waiting_for(tx(approvals=((TOM, True),)), {}) == f"needs 2 more from treasury: {TINA}, {TOM}, {TARIQ}"


def test_the_initiator_never_counts_and_a_requirement_no_one_can_meet_says_so() -> None:
    requirement = {"combine": "all", "groups": [{"name": "pair", "members": [TINA, IVAN], "threshold": 2}]}
    line = waiting_for(tx(requirement=requirement), NAMES)
    assert line == "needs 2 more from pair: Tina (cannot be met: too few members can still approve)"


def test_a_governance_change_asks_for_its_proposers_signature_first() -> None:
    requirement = {"combine": "all", "groups": [{"name": "admins", "members": [TARIQ], "threshold": 1}]}
    change = tx(kind="governance", initiator_id=TINA, requirement=requirement)
    assert waiting_for(change, NAMES) == "needs the proposer's own signature: Tina; needs 1 more from admins: tariq"
    assert waiting_for({**change, "approvals": [{"approver_id": TINA, "decision": "approve"}]}, NAMES) == (
        "needs 1 more from admins: tariq"
    )


def test_other_states_say_what_holds_them_with_their_sub_status_and_final_ones_nothing() -> None:
    held = waiting_for(tx("approved", sub_status="waiting-for-fees", error="base fee above the cap"), NAMES)
    assert held == "waiting for the signer nodes to sign it [waiting-for-fees: base fee above the cap]"
    assert waiting_for(tx("broadcast"), NAMES) == "waiting for its block and confirmations"
    assert waiting_for(tx("confirmed"), NAMES) is None and waiting_for(tx("rejected"), NAMES) is None


# -- a policy change as approve shows it ---------------------------------------------------------------------------


def test_approve_shows_the_rules_by_name_marked_against_the_policy_in_force() -> None:
    before = {"rules": [rule([TINA, TOM, TARIQ], 2), {"name": "small", "action": "allow"}]}
    after = Policy.from_document({"rules": [rule([TINA, TOM, TARIQ], 1), {"name": "small", "action": "allow"}]})
    lines = review(after, state(before))
    assert lines[0] == f"  policy:  {after.digest()} replaces {Policy.from_document(before).digest()}"
    assert "    - rule 1 'one-time': approvals (all) group 'treasury': 2 of 'tariq', 'Tina', 'tom'" in lines
    assert "    + rule 1 'one-time': approvals (all) group 'treasury': 1 of 'tariq', 'Tina', 'tom'" in lines
    assert "      rule 2 'small': allow when any" in lines, "unchanged rules are shown unmarked"
    assert lines[1].startswith("  rules:   1 line(s) added (+), 1 removed (-)")


def test_approve_says_when_a_proposed_policy_has_the_rules_in_force() -> None:
    document = {"rules": [rule([TINA, TOM], 1, initiators=[IVAN])]}
    lines = review(Policy.from_document(document), state(document))
    assert lines[1] == "  rules:   the same as the policy in force (only its form differs)"


def test_approve_quotes_every_name_gives_an_id_beside_one_beyond_ascii_and_leaves_unknown_ids_bare() -> None:
    lookalike = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
    users = {**USERS, lookalike: User(lookalike, "t\u0456na", frozenset({"approver"}), b"\4" * 32)}  # Cyrillic i
    destination = {"kind": "address_book", "entries": [EXCHANGE.id]}
    document = {"rules": [rule([TINA, lookalike], 1, initiators=[IVAN], vaults=["vault-9"], destination=destination)]}
    lines = policyview.policy_lines(Policy.from_document(document), replace(state(), users=users))
    assert lines == [
        'rule 1 \'one-time\': require_approval when {"destination": {"entries": ["Exchange 1"], '
        '"kind": "address_book"}, "initiators": ["ivan"], "vaults": [vault-9]}',
        "rule 1 'one-time': approvals (all) group 'treasury': 1 of 'Tina', 't\u0456na' (id 7c9e6679)",
    ]


def test_approve_shows_the_canonical_documents_of_two_different_policies_that_read_alike(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lines are for reading; the digests decide. Lines that lost a difference do not hide it."""
    before, after = {"rules": [rule([TINA, TOM], 2)]}, Policy.from_document({"rules": [rule([TINA, TOM], 1)]})
    monkeypatch.setattr(policyview, "policy_lines", lambda policy, state: ["the same words"])
    lines = review(after, state(before))
    assert lines[1:] == [
        "  rules:   1 line(s) added (+), 1 removed (-), against the policy in force",
        "  note:    the two policies read alike rule by rule, but differ: their canonical documents follow",
        f"    - {Policy.from_document(before).canonical_json().decode()}",
        f"    + {after.canonical_json().decode()}",
    ]
