"""Transaction policy: each condition alone and together, first match, default deny, approvals, explain.

Fixed instants (``T0`` is Monday 2024-05-06 12:00 UTC, 20:00 in Hong Kong) make
every window boundary exact; each malformed document is its own case and must be
refused with the JSON path of the fault; property tests check the invariants a
custodian relies on (no crash, default deny, a later rule never overrides an
earlier decision, canonical documents).
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.governance.policy import (
    ApprovalGroup,
    ApprovalRequirement,
    PastTx,
    Policy,
    PolicyError,
    TxFacts,
    evaluate,
    explain,
)

T0 = datetime(2024, 5, 6, 12, 0, tzinfo=UTC)  # a Monday
ADDR = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
]
ETH = 10**18
DOCS = Path(__file__).resolve().parent.parent / "docs" / "policy.md"


def facts(**changes: Any) -> TxFacts:
    base: dict[str, Any] = {
        "initiator_id": "alice",
        "initiator_roles": frozenset({"trader"}),
        "vault_id": "hot",
        "asset": "ETH",
        "destination": ADDR[0],
        "address_book_entry": None,
        "whitelisted": False,
        "amount": ETH,
        "at": T0,
    }
    base.update(changes)
    return TxFacts(**base)


def past(**changes: Any) -> PastTx:
    base: dict[str, Any] = {
        "initiator_id": "alice",
        "vault_id": "hot",
        "asset": "ETH",
        "destination": ADDR[0],
        "amount": ETH,
        "at": T0 - timedelta(minutes=5),
    }
    base.update(changes)
    return PastTx(**base)


def rule(name: str = "r", action: str = "allow", approvals: Any = None, **match: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "action": action, "match": match}
    if approvals is not None:
        doc["approvals"] = approvals
    return doc


def policy(*rules: dict[str, Any]) -> Policy:
    return Policy.from_document({"rules": list(rules)})


def matches(match: dict[str, Any], f: TxFacts | None = None, history: tuple[PastTx, ...] = ()) -> bool:
    decision = evaluate(policy(rule(**match)), f or facts(), history)
    assert decision.action == ("allow" if decision.rule else "block")
    return decision.rule == "r"


def two_of_treasury_one_of_compliance() -> dict[str, Any]:
    return {
        "combine": "all",
        "groups": [
            {"name": "treasury", "members": ["tariq", "tina", "tom"], "threshold": 2},
            {"name": "compliance", "members": ["carla", "chen"], "threshold": 1},
        ],
    }


def docs_json_blocks() -> list[Any]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)```", DOCS.read_text(), re.S)]


# --------------------------------------------------------------------------- single conditions

CONDITIONS = [
    ("initiator listed", {"initiators": ["alice", "bob"]}, {}, True),
    ("initiator not listed", {"initiators": ["bob"]}, {}, False),
    ("role held", {"roles": ["admin", "trader"]}, {}, True),
    ("role not held", {"roles": ["admin"]}, {}, False),
    ("no roles at all", {"roles": ["trader"]}, {"initiator_roles": frozenset()}, False),
    ("vault listed", {"vaults": ["hot"]}, {}, True),
    ("vault not listed", {"vaults": ["cold"]}, {}, False),
    ("asset listed", {"assets": ["ETH", "USDT"]}, {}, True),
    ("asset not listed", {"assets": ["USDT"]}, {}, False),
    ("asset is case-sensitive", {"assets": ["eth"]}, {}, False),
    ("any destination, one-time", {"destination": {"kind": "any"}}, {}, True),
    (
        "any destination, book",
        {"destination": {"kind": "any"}},
        {"address_book_entry": "e1", "whitelisted": True},
        True,
    ),
    ("one-time, one-time", {"destination": {"kind": "one_time"}}, {}, True),
    ("one-time, book", {"destination": {"kind": "one_time"}}, {"address_book_entry": "e1"}, False),
    ("address book, book", {"destination": {"kind": "address_book"}}, {"address_book_entry": "e1"}, True),
    (
        "address book, whitelisted",
        {"destination": {"kind": "address_book"}},
        {"address_book_entry": "e1", "whitelisted": True},
        True,
    ),
    ("address book, one-time", {"destination": {"kind": "address_book"}}, {}, False),
    (
        "address book entries, listed",
        {"destination": {"kind": "address_book", "entries": ["e1", "e2"]}},
        {"address_book_entry": "e2"},
        True,
    ),
    (
        "address book entries, other",
        {"destination": {"kind": "address_book", "entries": ["e1"]}},
        {"address_book_entry": "e2"},
        False,
    ),
    (
        "whitelisted, whitelisted",
        {"destination": {"kind": "whitelisted"}},
        {"address_book_entry": "e1", "whitelisted": True},
        True,
    ),
    ("whitelisted, book only", {"destination": {"kind": "whitelisted"}}, {"address_book_entry": "e1"}, False),
    ("whitelisted, one-time", {"destination": {"kind": "whitelisted"}}, {}, False),
    (
        "whitelisted entries, listed",
        {"destination": {"kind": "whitelisted", "entries": ["e1"]}},
        {"address_book_entry": "e1", "whitelisted": True},
        True,
    ),
    (
        "whitelisted entries, other",
        {"destination": {"kind": "whitelisted", "entries": ["e1"]}},
        {"address_book_entry": "e9", "whitelisted": True},
        False,
    ),
    (
        "whitelisted entries, listed but not whitelisted",
        {"destination": {"kind": "whitelisted", "entries": ["e1"]}},
        {"address_book_entry": "e1"},
        False,
    ),
    ("amount at max", {"assets": ["ETH"], "amount": {"max": str(ETH)}}, {}, True),
    ("amount above max", {"assets": ["ETH"], "amount": {"max": ETH - 1}}, {}, False),
    ("amount at min", {"assets": ["ETH"], "amount": {"min": ETH}}, {}, True),
    ("amount below min", {"assets": ["ETH"], "amount": {"min": str(ETH + 1)}}, {}, False),
    ("amount in range", {"assets": ["ETH"], "amount": {"min": 1, "max": 2 * ETH}}, {}, True),
    ("amount zero, min 0", {"assets": ["ETH"], "amount": {"min": 0, "max": 0}}, {"amount": 0}, True),
    ("amount of another asset", {"assets": ["USDT"], "amount": {"max": ETH}}, {}, False),
    ("amount beyond 2^53", {"assets": ["ETH"], "amount": {"max": str(2**64)}}, {"amount": 2**64 + 1}, False),
    ("no conditions", {}, {}, True),
]


@pytest.mark.parametrize(("match", "changes", "expected"), [c[1:] for c in CONDITIONS], ids=[c[0] for c in CONDITIONS])
def test_single_condition(match: dict[str, Any], changes: dict[str, Any], expected: bool) -> None:
    assert matches(match, facts(**changes)) is expected


def test_conditions_combine_with_and_and_every_failure_is_reported() -> None:
    match: dict[str, Any] = {
        "initiators": ["alice"],
        "roles": ["trader"],
        "vaults": ["hot"],
        "destination": {"kind": "whitelisted"},
        "assets": ["ETH"],
        "amount": {"max": ETH},
        "time": {"timezone": "UTC", "days": ["mon"]},
    }
    whitelisted: dict[str, Any] = {"address_book_entry": "e1", "whitelisted": True}
    assert matches(match, facts(**whitelisted))
    changes: list[dict[str, Any]] = [
        {"initiator_id": "bob"},
        {"vault_id": "cold"},
        {"amount": ETH + 1},
        {"at": T0 + timedelta(days=1)},
    ]
    for change in changes:
        assert not matches(match, facts(**whitelisted, **change)), change
    assert not matches(match, facts())  # one-time destination
    trace = explain(policy(rule(**match)), facts(initiator_id="bob", amount=2 * ETH), ()).trace[0]
    failed = [r for r in trace.reasons if "does not match" in r]
    assert [r.split()[0] for r in failed] == ["initiators", "destination", "amount"]
    assert len(trace.reasons) == 7


# --------------------------------------------------------------------------- order and default deny


def test_first_match_wins() -> None:
    p = policy(
        rule("deny-bob", "block", initiators=["bob"]),
        rule("allow-hot", "allow", vaults=["hot"]),
        rule("block-all", "block"),
    )
    assert evaluate(p, facts(initiator_id="bob"), ()).rule == "deny-bob"
    d = evaluate(p, facts(), ())
    assert (d.action, d.rule, d.rule_index) == ("allow", "allow-hot", 1)
    d = evaluate(p, facts(vault_id="cold"), ())
    assert (d.action, d.rule, d.rule_index) == ("block", "block-all", 2)


def test_default_deny() -> None:
    d = evaluate(policy(rule("bob-only", initiators=["bob"])), facts(), ())
    assert (d.action, d.rule, d.rule_index, d.requirement) == ("block", None, None, None)
    assert d.reasons == ("no rule matched: default deny",)
    assert [t.matched for t in d.trace] == [False]


def test_empty_policy_denies_everything() -> None:
    d = evaluate(Policy.from_document({"rules": []}), facts(), ())
    assert (d.action, d.rule, d.trace) == ("block", None, ())


def test_require_approval_returns_the_rules_requirement() -> None:
    p = policy(rule("one-time", "require_approval", two_of_treasury_one_of_compliance()))
    d = evaluate(p, facts(), ())
    assert d.action == "require_approval"
    assert d.requirement == p.rules[0].approvals
    assert d.requirement is not None and d.requirement.to_json() == two_of_treasury_one_of_compliance()


# --------------------------------------------------------------------------- velocity and count


def velocity(per: str = "source", window: int = 3600, limit: int = 100, asset: str | None = None) -> dict[str, Any]:
    v: dict[str, Any] = {"window_seconds": window, "max_amount": limit, "per": per}
    if asset is not None:
        v["asset"] = asset
    return {"assets": ["ETH", "USDT"], "velocity": v}


@pytest.mark.parametrize(
    ("offset", "counted"),
    [
        (timedelta(hours=1), False),  # exactly the window old: out
        (timedelta(hours=1) - timedelta(microseconds=1), True),
        (timedelta(minutes=30), True),
        (timedelta(0), True),  # the same instant: in
        (-timedelta(seconds=1), False),  # later than the transaction: out
        (timedelta(days=3), False),
    ],
)
def test_velocity_window_boundaries(offset: timedelta, counted: bool) -> None:
    history = (past(amount=60, at=T0 - offset),)
    assert matches(velocity(), facts(amount=50), history) is counted


def test_velocity_must_exceed_the_limit() -> None:
    history = (past(amount=60), past(amount=0))
    assert not matches(velocity(limit=100), facts(amount=40), history)  # 60 + 40 = 100 is not above 100
    assert matches(velocity(limit=100), facts(amount=41), history)
    assert matches(velocity(limit=100), facts(amount=101), ())  # one transaction alone can break it
    assert not matches(velocity(limit=0), facts(amount=0), ())
    assert matches(velocity(limit=0), facts(amount=1), ())


def test_velocity_is_per_asset() -> None:
    history = (past(amount=90, asset="USDT"),)
    assert not matches(velocity(), facts(amount=50), history)
    assert matches(velocity(), facts(amount=50, asset="USDT"), history)


def test_velocity_asset_pins_the_unit() -> None:
    history = (past(amount=90, asset="USDT"),)
    assert matches(velocity(asset="USDT"), facts(amount=50, asset="USDT"), history)
    assert not matches(velocity(asset="USDT"), facts(amount=10**30), history)  # ETH is not what the limit is on
    reasons = explain(policy(rule(**velocity(asset="USDT"))), facts(), history).trace[0].reasons
    assert "velocity does not match: the limit is on USDT, the transaction moves ETH" in reasons


@pytest.mark.parametrize(
    ("per", "same", "other"),
    [
        ("source", {"vault_id": "hot", "initiator_id": "zed", "destination": ADDR[1]}, {"vault_id": "cold"}),
        ("destination", {"vault_id": "cold", "initiator_id": "zed"}, {"destination": ADDR[1]}),
        ("initiator", {"vault_id": "cold", "destination": ADDR[2]}, {"initiator_id": "bob"}),
    ],
)
def test_velocity_aggregation_key(per: str, same: dict[str, Any], other: dict[str, Any]) -> None:
    assert matches(velocity(per), facts(amount=50), (past(amount=60, **same),))
    assert not matches(velocity(per), facts(amount=50), (past(amount=60, **other),))
    assert not matches(velocity(per), facts(amount=50), (past(amount=60, **other), past(amount=50, **same)))


def test_velocity_per_destination_ignores_address_case() -> None:
    history = (past(amount=60, destination=ADDR[0].lower()), past(amount=1, destination="0x" + ADDR[0][2:].upper()))
    assert matches(velocity("destination"), facts(amount=40), history)


def test_velocity_reason_names_the_arithmetic() -> None:
    d = explain(policy(rule(**velocity())), facts(amount=50), (past(amount=60),))
    assert d.reasons[-1] == (
        "velocity matches: 60 earlier + 50 = 110 exceeds 100 (per source vault 'hot', ETH, last 3600 s)"
    )


def count(max_count: int, per: str = "source", asset: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"window_seconds": 3600, "max_count": max_count, "per": per}
    if asset is not None:
        c["asset"] = asset
    return {"count": c}


def test_count() -> None:
    history = (past(), past(asset="USDT"), past(vault_id="cold"), past(at=T0 - timedelta(hours=1)))
    assert not matches(count(3), facts(), history)  # 2 in the window for vault hot, + 1 = 3
    assert matches(count(2), facts(), history)
    assert matches(count(0), facts(), ())
    assert not matches(count(1), facts(), ())
    assert not matches(count(1, asset="ETH"), facts(), (past(asset="USDT"),))
    assert matches(count(1, asset="ETH"), facts(), (past(),))
    assert not matches(count(0, asset="USDT"), facts(), ())  # the limit is on USDT only
    assert matches(count(1, per="initiator"), facts(), (past(vault_id="cold"),))
    assert not matches(count(1, per="destination"), facts(), (past(destination=ADDR[2]),))


def test_max_window_seconds() -> None:
    assert policy().max_window_seconds() == 0
    assert policy(rule(vaults=["hot"])).max_window_seconds() == 0
    p = policy(rule("a", **velocity(window=86_400)), rule("b", **count(1)), rule("c", **velocity(window=60)))
    assert p.max_window_seconds() == 86_400


def test_window_total_ignores_history_order() -> None:
    history = tuple(past(amount=i, at=T0 - timedelta(minutes=i)) for i in range(1, 100))
    p = policy(rule(**velocity(limit=1000, window=1800)))
    a, b = evaluate(p, facts(amount=0), history), evaluate(p, facts(amount=0), history[::-1])
    assert a == b
    assert a.trace[0].reasons[-1].startswith("velocity does not match: 435 earlier")  # 1 + ... + 29


# --------------------------------------------------------------------------- time windows


def at_hk(day: int, hour: int, minute: int = 0) -> datetime:
    """May 2024: the 6th is a Monday; Hong Kong is UTC+8 all year."""
    return datetime(2024, 5, day, hour, minute, tzinfo=timezone(timedelta(hours=8))).astimezone(UTC)


@pytest.mark.parametrize(
    ("window", "when", "expected"),
    [
        ({"from": "09:00", "to": "17:00"}, at_hk(6, 9, 0), True),  # from is inclusive
        ({"from": "09:00", "to": "17:00"}, at_hk(6, 16, 59), True),
        ({"from": "09:00", "to": "17:00"}, at_hk(6, 17, 0), False),  # to is exclusive
        ({"from": "09:00", "to": "17:00"}, at_hk(6, 8, 59), False),
        ({"from": "22:00", "to": "06:00"}, at_hk(6, 23, 0), True),  # wraps midnight
        ({"from": "22:00", "to": "06:00"}, at_hk(7, 5, 59), True),
        ({"from": "22:00", "to": "06:00"}, at_hk(7, 6, 0), False),
        ({"from": "22:00", "to": "06:00"}, at_hk(6, 21, 59), False),
        ({"from": "00:00", "to": "24:00"}, at_hk(6, 23, 59), True),
        ({"from": "18:00", "to": "24:00"}, at_hk(6, 23, 59), True),
        ({"from": "18:00", "to": "24:00"}, at_hk(7, 0, 0), False),
        ({"days": ["mon"]}, at_hk(6, 0, 0), True),
        ({"days": ["mon"]}, at_hk(5, 23, 59), False),  # Sunday in Hong Kong
        ({"days": ["mon"]}, datetime(2024, 5, 6, 17, 0, tzinfo=UTC), False),  # Monday in UTC, Tuesday 01:00 in HK
        ({"days": ["sat", "sun"]}, at_hk(11, 12), True),
        ({"days": ["fri"], "from": "22:00", "to": "06:00"}, at_hk(10, 23, 0), True),
        ({"days": ["fri"], "from": "22:00", "to": "06:00"}, at_hk(11, 2, 0), True),  # Saturday, in Friday's window
        ({"days": ["fri"], "from": "22:00", "to": "06:00"}, at_hk(10, 2, 0), False),  # Friday, in Thursday's window
        ({"days": ["mon"], "from": "22:00", "to": "06:00"}, at_hk(6, 2, 0), False),  # Monday 02:00 is Sunday night
    ],
)
def test_time_window_hong_kong(window: dict[str, Any], when: datetime, expected: bool) -> None:
    assert matches({"time": {"timezone": "Asia/Hong_Kong", **window}}, facts(at=when)) is expected


def test_time_window_follows_daylight_saving() -> None:
    window = {"time": {"timezone": "Europe/London", "from": "09:00", "to": "10:00"}}
    assert matches(window, facts(at=datetime(2024, 1, 15, 9, 30, tzinfo=UTC)))  # GMT
    assert not matches(window, facts(at=datetime(2024, 7, 15, 9, 30, tzinfo=UTC)))  # 10:30 BST
    assert matches(window, facts(at=datetime(2024, 7, 15, 8, 30, tzinfo=UTC)))


def test_time_accepts_any_aware_datetime() -> None:
    window = {"time": {"timezone": "UTC", "from": "12:00", "to": "13:00"}}
    assert matches(window, facts(at=T0.astimezone(timezone(timedelta(hours=-5)))))


def test_time_at_the_ends_of_the_calendar() -> None:
    """No datetime arithmetic overflows: a local time beyond year 9999 simply does not match."""
    p = policy(rule(time={"timezone": "Asia/Hong_Kong", "days": ["mon"]}), rule("v", **velocity(limit=0)))
    last, first = datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)
    d = explain(p, facts(at=last, amount=0), (past(at=first), past(at=last, amount=1)))
    assert d.trace[0].reasons == (f"time does not match: {last.isoformat()} cannot be expressed in Asia/Hong_Kong",)
    assert d.rule == "v"  # the transaction at the same instant counts, the one at year 1 does not
    assert evaluate(p, facts(at=first), (past(at=last),)).rule == "r"  # 0001-01-01 08:00 in Hong Kong, a Monday


def test_time_reason_names_the_window_day() -> None:
    p = policy(rule(time={"timezone": "Asia/Hong_Kong", "days": ["fri"], "from": "22:00", "to": "06:00"}))
    d = evaluate(p, facts(at=at_hk(11, 2, 0)), ())
    assert d.reasons == (
        "time matches: sat 2024-05-11 02:00 Asia/Hong_Kong is within fri 22:00-06:00 (window opened on fri)",
    )


# --------------------------------------------------------------------------- approvals


def requirement(doc: dict[str, Any] | None = None) -> ApprovalRequirement:
    return ApprovalRequirement.from_json(doc or two_of_treasury_one_of_compliance())


def test_approvals_all() -> None:
    req = requirement()
    assert req.satisfied(["tina", "tom", "carla"], "alice")
    assert req.satisfied({"tina", "tariq", "chen", "mallory"}, "alice")
    assert not req.satisfied(["tina", "tom"], "alice")
    assert not req.satisfied(["tina", "carla"], "alice")
    assert not req.satisfied([], "alice")
    assert req.missing(["tina", "carla"], "alice") == ["treasury: 1 more approval of 2 from tariq, tom (counted: tina)"]
    assert req.missing([], "alice") == [
        "treasury: 2 more approvals of 2 from tariq, tina, tom",
        "compliance: 1 more approval of 1 from carla, chen",
    ]
    assert req.missing(["tina", "tom", "carla"], "alice") == []


def test_approvals_any() -> None:
    req = requirement({**two_of_treasury_one_of_compliance(), "combine": "any"})
    assert req.satisfied(["chen"], "alice")
    assert req.satisfied(["tina", "tom"], "alice")
    assert not req.satisfied(["tina"], "alice")
    assert req.missing(["tina"], "alice") == [
        "any one of: treasury: 1 more approval of 2 from tariq, tom (counted: tina); "
        "compliance: 1 more approval of 1 from carla, chen"
    ]
    assert req.missing(["chen"], "alice") == []


def test_initiator_never_counts() -> None:
    req = requirement()
    assert not req.satisfied(["tina", "tom", "carla"], "tina")
    assert req.satisfied(["tina", "tom", "tariq", "carla"], "tina")
    assert req.missing(["tina", "tom", "carla"], "tina") == ["treasury: 1 more approval of 2 from tariq (counted: tom)"]
    assert req.satisfiable("tina")


def test_unsatisfiable_when_the_initiator_is_needed() -> None:
    req = requirement({"combine": "all", "groups": [{"name": "pair", "members": ["ann", "ben"], "threshold": 2}]})
    assert req.satisfiable("zoe")
    assert not req.satisfiable("ann")
    assert not req.satisfied(["ann", "ben"], "ann")
    assert req.missing(["ben"], "ann") == [
        "pair: 1 more approval of 2 from nobody (counted: ben) - cannot be met "
        "(the initiator is a member and cannot approve)"
    ]


def test_duplicate_approvals_count_once() -> None:
    req = requirement()
    assert not req.satisfied(["tina", "tina", "tina", "carla"], "alice")
    assert not req.satisfied(iter(["chen", "chen", "tom"]), "alice")


def test_one_person_counts_toward_one_group_under_all() -> None:
    doc = {
        "combine": "all",
        "groups": [
            {"name": "g1", "members": ["a", "b"], "threshold": 1},
            {"name": "g2", "members": ["a"], "threshold": 1},
        ],
    }
    req = requirement(doc)
    assert not req.satisfied(["a"], "x")
    assert not req.satisfied(["b"], "x")
    assert req.satisfied(["a", "b"], "x")  # needs a moved from g1 to g2 (an augmenting path)
    assert req.satisfied(["b", "a"], "x")
    assert requirement({**doc, "combine": "any"}).satisfied(["a"], "x")


def test_approvers_must_be_a_collection_of_ids() -> None:
    req = requirement()
    with pytest.raises(TypeError, match="not a single string"):
        req.satisfied("tina", "alice")
    with pytest.raises(TypeError):
        req.satisfied([1, 2], "alice")  # type: ignore[list-item]


def test_requirement_objects_validate_themselves() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ApprovalGroup("g", frozenset({"a"}), 2)
    with pytest.raises(ValueError, match="threshold"):
        ApprovalGroup("g", frozenset({"a"}), True)
    with pytest.raises(ValueError, match="no members"):
        ApprovalGroup("g", frozenset(), 1)
    group = ApprovalGroup("g", frozenset({"a"}), 1)
    with pytest.raises(ValueError, match="unique"):
        ApprovalRequirement("all", (group, group))
    with pytest.raises(ValueError, match="combine"):
        ApprovalRequirement("most", (group,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        ApprovalRequirement("any", ())
    assert ApprovalRequirement.from_json(ApprovalRequirement("any", (group,)).to_json()) == ApprovalRequirement(
        "any", (group,)
    )
    with pytest.raises(PolicyError, match=r"^approvals\.groups\[0\]\.threshold: "):
        ApprovalRequirement.from_json({"combine": "all", "groups": [{"name": "g", "members": ["a"], "threshold": 2}]})


# --------------------------------------------------------------------------- explain


def test_explain_trace() -> None:
    p = policy(
        rule("big", "block", assets=["ETH"], amount={"min": 100 * ETH}),
        rule("bob", "block", initiators=["bob"], vaults=["cold"]),
        rule("hot", "allow", vaults=["hot"]),
        rule("later", "block"),
        rule("last", "allow"),
    )
    f = facts()
    d = explain(p, f, ())
    assert (d.action, d.rule, d.rule_index) == ("allow", "hot", 2)
    assert [(t.index, t.name, t.matched, t.reached) for t in d.trace] == [
        (0, "big", False, True),
        (1, "bob", False, True),
        (2, "hot", True, True),
        (3, "later", False, False),
        (4, "last", False, False),
    ]
    assert d.trace[0].reasons == (
        "assets matches: 'ETH' among 'ETH'",
        f"amount does not match: {ETH} is below the minimum {100 * ETH}",
    )
    assert d.trace[1].reasons == (
        "initiators does not match: 'alice' among 'bob'",
        "vaults does not match: 'hot' among 'cold'",
    )
    assert d.reasons == d.trace[2].reasons == ("vaults matches: 'hot' among 'hot'",)
    assert d.trace[3].reasons == ("not reached: rule 'hot' (rules[2]) decided",)
    e = evaluate(p, f, ())
    assert (e.action, e.rule, e.rule_index, e.reasons, e.requirement) == (
        d.action,
        d.rule,
        d.rule_index,
        d.reasons,
        d.requirement,
    )
    assert e.trace == d.trace[:3]


def test_explain_default_deny_lists_every_rule() -> None:
    p = policy(rule("a", initiators=["bob"]), rule("b", vaults=["cold"]))
    d = explain(p, facts(), ())
    assert d.rule is None and [t.reached for t in d.trace] == [True, True]
    assert d == evaluate(p, facts(), ())


def test_decision_to_json() -> None:
    p = policy(
        rule("one-time", "require_approval", two_of_treasury_one_of_compliance(), destination={"kind": "one_time"})
    )
    doc = explain(p, facts(), ()).to_json()
    assert json.loads(json.dumps(doc)) == doc
    assert doc == {
        "action": "require_approval",
        "reasons": ["destination matches: one-time (not in the address book); wanted one-time"],
        "requirement": two_of_treasury_one_of_compliance(),
        "rule": "one-time",
        "rule_index": 0,
        "trace": [
            {
                "index": 0,
                "matched": True,
                "name": "one-time",
                "reached": True,
                "reasons": ["destination matches: one-time (not in the address book); wanted one-time"],
            }
        ],
    }


def test_evaluate_refuses_wrong_argument_types() -> None:
    p = policy()
    with pytest.raises(TypeError, match="Policy"):
        evaluate({"rules": []}, facts(), ())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TxFacts"):
        evaluate(p, past(), ())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="PastTx"):
        evaluate(p, facts(), [facts()])  # type: ignore[list-item]


# --------------------------------------------------------------------------- facts


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"amount": True}, TypeError),
        ({"amount": 1.0}, TypeError),
        ({"amount": "1"}, TypeError),
        ({"amount": -1}, ValueError),
        ({"at": datetime(2024, 5, 6, 12, 0)}, TypeError),  # naive
        ({"at": "2024-05-06T12:00:00Z"}, TypeError),
        ({"whitelisted": True}, ValueError),  # without an address-book entry
        ({"whitelisted": 1, "address_book_entry": "e1"}, TypeError),
        ({"initiator_roles": "admin"}, TypeError),
        ({"initiator_roles": frozenset({1})}, TypeError),
        ({"initiator_id": ""}, TypeError),
        ({"vault_id": None}, TypeError),
        ({"address_book_entry": ""}, TypeError),
    ],
)
def test_bad_facts(changes: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        facts(**changes)


@pytest.mark.parametrize("changes", [{"amount": False}, {"amount": 2.5}, {"at": datetime(2024, 1, 1)}, {"asset": ""}])
def test_bad_past_transactions(changes: dict[str, Any]) -> None:
    with pytest.raises((TypeError, ValueError)):
        past(**changes)


def test_roles_may_be_any_collection() -> None:
    assert facts(initiator_roles={"a", "b"}).initiator_roles == frozenset({"a", "b"})
    assert facts(initiator_roles=["a", "a"]).initiator_roles == frozenset({"a"})


# --------------------------------------------------------------------------- documents


def docs_policy() -> dict[str, Any]:
    blocks = docs_json_blocks()
    return next(
        b for b in blocks if isinstance(b, dict) and b.get("rules") and b["rules"][0]["name"] == "over-daily-velocity"
    )


def test_documented_example_policy() -> None:
    p = Policy.from_document(docs_policy())
    wl = {"address_book_entry": "exchange-1", "whitelisted": True}
    day = tuple(past(amount=30 * ETH, at=T0 - timedelta(hours=h)) for h in (1, 5, 20))  # 90 ETH today
    assert evaluate(p, facts(amount=5 * ETH, **wl), ()).rule == "small-whitelisted"
    assert evaluate(p, facts(amount=11 * ETH, **wl), ()).rule is None  # larger whitelisted: default deny
    assert evaluate(p, facts(amount=5 * ETH, **wl), day).rule == "small-whitelisted"
    assert evaluate(p, facts(amount=11 * ETH, **wl), day).rule == "over-daily-velocity"
    d = evaluate(p, facts(amount=50 * ETH), ())
    assert d.rule == "one-time-destination" and d.requirement is not None
    assert not d.requirement.satisfied(["tina", "tom"], "alice")
    assert d.requirement.satisfied(["tina", "tom", "chen"], "alice")
    assert evaluate(p, facts(amount=5 * ETH, address_book_entry="exchange-1"), ()).rule is None  # not whitelisted


def test_documented_other_rules_parse() -> None:
    rules = next(b for b in docs_json_blocks() if isinstance(b, list))
    p = Policy.from_document({"rules": rules})
    assert [r.name for r in p.rules] == ["frozen-vault", "burst", "night", "weekend", "usd-stablecoins-small"]
    assert evaluate(p, facts(at=at_hk(11, 12)), ()).rule == "weekend"
    assert evaluate(p, facts(at=at_hk(6, 8, 59)), ()).rule == "night"
    assert evaluate(p, facts(at=at_hk(6, 9)), ()).rule is None


def test_round_trip_and_canonical_form() -> None:
    doc = docs_policy()
    p = Policy.from_document(doc)
    canonical = p.to_document()
    assert Policy.from_document(canonical) == p
    assert Policy.from_document(canonical).to_document() == canonical
    assert list(canonical) == ["rules", "version"]
    assert list(canonical["rules"][2]) == ["action", "approvals", "match", "name"]
    assert canonical["rules"][2]["approvals"]["groups"][0]["members"] == ["tariq", "tina", "tom"]
    assert canonical["rules"][0]["match"]["velocity"]["max_amount"] == "100000000000000000000"
    assert p.canonical_json() == json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    assert p.digest() == hashlib.sha256(p.canonical_json()).hexdigest()
    assert Policy.from_json(json.dumps(doc)) == p


def test_equivalent_documents_have_one_digest() -> None:
    a = {
        "rules": [
            {
                "name": "r",
                "action": "allow",
                "match": {
                    "initiators": ["b", "a"],
                    "assets": ["ETH"],
                    "amount": {"max": 5},
                    "time": {"timezone": "UTC", "days": ["sun", "mon"]},
                },
            }
        ]
    }
    b = {
        "version": 1,
        "rules": [
            {
                "match": {
                    "time": {"days": ["mon", "sun"], "timezone": "UTC"},
                    "amount": {"max": "5"},
                    "assets": ["ETH"],
                    "initiators": ["a", "b"],
                },
                "action": "allow",
                "name": "r",
            }
        ],
    }
    assert Policy.from_document(a) == Policy.from_document(b)
    assert Policy.from_document(a).digest() == Policy.from_document(b).digest()


def test_digest_is_stable_and_sensitive() -> None:
    p = Policy.from_document(docs_policy())
    assert p.digest() == Policy.from_document(docs_policy()).digest()
    assert re.fullmatch(r"[0-9a-f]{64}", p.digest())
    changed = docs_policy()
    changed["rules"][2]["approvals"]["groups"][0]["threshold"] = 3
    assert Policy.from_document(changed).digest() != p.digest()
    reordered = docs_policy()
    reordered["rules"].reverse()
    assert Policy.from_document(reordered).digest() != p.digest()
    assert Policy.from_document({"rules": []}).digest() == hashlib.sha256(b'{"rules":[],"version":1}').hexdigest()


def test_from_json_refuses_what_a_plain_decoder_accepts() -> None:
    with pytest.raises(PolicyError, match="duplicate key 'action'"):
        Policy.from_json('{"rules": [{"name": "r", "action": "block", "action": "allow"}]}')
    with pytest.raises(PolicyError, match="NaN"):
        Policy.from_json(
            '{"rules": [{"name": "r", "action": "allow", "match": {"assets": ["E"], "amount": {"max": NaN}}}]}'
        )
    with pytest.raises(PolicyError, match=r"^document: not valid JSON"):
        Policy.from_json('{"rules": [')
    with pytest.raises(PolicyError, match=r"^document: not valid JSON"):
        Policy.from_json(b'{"rules": ["\xff"]}')
    with pytest.raises(PolicyError, match=r"^document: nested too deeply"):
        Policy.from_json("[" * 100_000 + "]" * 100_000)
    with pytest.raises(PolicyError, match=r"^rules\[0\]\.match\.amount\.max: expected an integer or a decimal string"):
        Policy.from_json(
            '{"rules": [{"name": "r", "action": "allow", "match": {"assets": ["E"], "amount": {"max": 1e18}}}]}'
        )


def _valid() -> dict[str, Any]:
    return {
        "rules": [
            {
                "name": "r0",
                "action": "require_approval",
                "match": {
                    "assets": ["ETH"],
                    "amount": {"min": 1, "max": 10},
                    "velocity": {"window_seconds": 60, "max_amount": 5, "per": "source"},
                    "count": {"window_seconds": 60, "max_count": 5, "per": "initiator"},
                    "time": {"timezone": "UTC", "days": ["mon"], "from": "09:00", "to": "17:00"},
                    "destination": {"kind": "whitelisted", "entries": ["e1"]},
                },
                "approvals": {"combine": "all", "groups": [{"name": "g", "members": ["a", "b"], "threshold": 2}]},
            },
            {"name": "r1", "action": "block"},
        ]
    }


def _edit(path: str, value: Any) -> dict[str, Any]:
    """The valid document with the value at a dotted path (``rules.0.match.amount.max``) replaced (``...``: removed)."""
    doc = copy.deepcopy(_valid())
    *parents, last = path.split(".")
    node: Any = doc
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    key: Any = int(last) if isinstance(node, list) else last
    if value is ...:
        del node[key]
    else:
        node[key] = value
    return doc


M = "rules.0.match"
A = "rules.0.approvals"
MALFORMED: list[tuple[str, Any, str]] = [
    ("not an object", [], "document: expected an object"),
    ("no rules", {}, "rules: required"),
    ("unknown top-level key", {"rules": [], "owner": "x"}, "owner: unknown key"),
    ("version 2", {"rules": [], "version": 2}, "version: unsupported"),
    ("version true", {"rules": [], "version": True}, "version: unsupported"),
    ("rules an object", {"rules": {}}, "rules: expected an array"),
    ("too many rules", {"rules": [{"name": f"r{i}", "action": "block"} for i in range(1001)]}, "rules: more than"),
    ("rule not an object", {"rules": [1]}, "rules[0]: expected an object"),
    ("non-string key", {"rules": [{"name": "r", "action": "block", 1: 2}]}, "rules[0]: keys must be strings"),
    ("rule without name", _edit("rules.1.name", ...), "rules[1].name: required"),
    ("rule without action", _edit("rules.1.action", ...), "rules[1].action: required"),
    ("unknown rule key", _edit("rules.1.priority", 1), "rules[1].priority: unknown key"),
    ("empty name", _edit("rules.1.name", ""), "rules[1].name: must not be empty"),
    ("name not a string", _edit("rules.1.name", 7), "rules[1].name: expected a string, got an integer"),
    ("name with whitespace", _edit("rules.1.name", " r1"), "rules[1].name: leading or trailing whitespace"),
    ("name with control char", _edit("rules.1.name", "r\x001"), "rules[1].name: control"),
    ("name with bidi override", _edit("rules.1.name", "r\u202e1"), "rules[1].name: control"),
    ("name too long", _edit("rules.1.name", "r" * 129), "rules[1].name: longer than"),
    ("duplicate name", _edit("rules.1.name", "R0"), "rules[1].name: duplicate rule name"),
    ("description a list", _edit("rules.1.description", ["x"]), "rules[1].description: expected a string"),
    ("unknown action", _edit("rules.1.action", "deny"), "rules[1].action: expected one of"),
    ("action null", _edit("rules.1.action", None), "rules[1].action: expected one of"),
    ("approval without approvals", _edit(A, ...), "rules[0].approvals: required"),
    (
        "approvals on block",
        _edit("rules.1.approvals", _valid()["rules"][0]["approvals"]),
        "rules[1].approvals: allowed",
    ),
    ("match a list", _edit(M, []), "rules[0].match: expected an object, got an array"),
    ("unknown condition", _edit(f"{M}.amounts", {}), "rules[0].match.amounts: unknown key"),
    ("empty initiators", _edit(f"{M}.initiators", []), "rules[0].match.initiators: must not be empty"),
    ("initiators a string", _edit(f"{M}.initiators", "alice"), "rules[0].match.initiators: expected an array"),
    ("initiator an int", _edit(f"{M}.initiators", [1]), "rules[0].match.initiators[0]: expected a string"),
    ("duplicate initiator", _edit(f"{M}.initiators", ["a", "a"]), "rules[0].match.initiators[1]: duplicate"),
    ("role null", _edit(f"{M}.roles", ["ok", None]), "rules[0].match.roles[1]: expected a string, got null"),
    ("empty vault id", _edit(f"{M}.vaults", [""]), "rules[0].match.vaults[0]: must not be empty"),
    ("empty assets", _edit(f"{M}.assets", []), "rules[0].match.assets: must not be empty"),
    ("destination kind", _edit(f"{M}.destination.kind", "internal"), "rules[0].match.destination.kind: expected"),
    ("destination no kind", _edit(f"{M}.destination", {}), "rules[0].match.destination.kind: required"),
    (
        "entries with one_time",
        _edit(f"{M}.destination", {"kind": "one_time", "entries": ["e1"]}),
        "rules[0].match.destination.entries: allowed only",
    ),
    ("entries empty", _edit(f"{M}.destination.entries", []), "rules[0].match.destination.entries: must not"),
    ("amount without assets", _edit(f"{M}.assets", ...), "rules[0].match.amount: an amount limit needs"),
    ("amount empty", _edit(f"{M}.amount", {}), "rules[0].match.amount: needs min, max or both"),
    ("amount unknown key", _edit(f"{M}.amount.maximum", 1), "rules[0].match.amount.maximum: unknown key"),
    ("amount float", _edit(f"{M}.amount.max", 10.0), "rules[0].match.amount.max: expected an integer"),
    ("amount bool", _edit(f"{M}.amount.max", True), "rules[0].match.amount.max: expected an integer"),
    ("amount null", _edit(f"{M}.amount.max", None), "rules[0].match.amount.max: expected an integer"),
    ("amount negative", _edit(f"{M}.amount.min", -1), "rules[0].match.amount.min: must not be negative"),
    ("amount exponent", _edit(f"{M}.amount.max", "1e18"), "rules[0].match.amount.max: '1e18' is not a canonical"),
    ("amount leading zero", _edit(f"{M}.amount.max", "010"), "rules[0].match.amount.max: '010' is not a canonical"),
    ("amount signed", _edit(f"{M}.amount.max", "+10"), "rules[0].match.amount.max: '+10' is not a canonical"),
    ("amount negative string", _edit(f"{M}.amount.min", "-1"), "rules[0].match.amount.min: '-1' is not a canonical"),
    ("amount fraction", _edit(f"{M}.amount.max", "1.5"), "rules[0].match.amount.max: '1.5' is not a canonical"),
    ("amount spaces", _edit(f"{M}.amount.max", " 10"), "rules[0].match.amount.max: ' 10' is not a canonical"),
    ("amount empty string", _edit(f"{M}.amount.max", ""), "rules[0].match.amount.max: '' is not a canonical"),
    ("amount unicode digits", _edit(f"{M}.amount.max", "١٠"), "rules[0].match.amount.max: '١٠' is not a canonical"),
    ("amount above uint256", _edit(f"{M}.amount.max", 2**256), "rules[0].match.amount.max: larger than"),
    ("amount min above max", _edit(f"{M}.amount.min", 11), "rules[0].match.amount.max: 10 is below min 11"),
    (
        "velocity no window",
        _edit(f"{M}.velocity.window_seconds", ...),
        "rules[0].match.velocity.window_seconds: required",
    ),
    ("velocity window 0", _edit(f"{M}.velocity.window_seconds", 0), "rules[0].match.velocity.window_seconds: must be"),
    ("velocity window < 0", _edit(f"{M}.velocity.window_seconds", -60), "rules[0].match.velocity.window_seconds: must"),
    (
        "velocity window float",
        _edit(f"{M}.velocity.window_seconds", 60.0),
        "rules[0].match.velocity.window_seconds: exp",
    ),
    (
        "velocity window text",
        _edit(f"{M}.velocity.window_seconds", "60"),
        "rules[0].match.velocity.window_seconds: exp",
    ),
    ("velocity window bool", _edit(f"{M}.velocity.window_seconds", True), "rules[0].match.velocity.window_seconds: ex"),
    (
        "velocity window huge",
        _edit(f"{M}.velocity.window_seconds", 10**12),
        "rules[0].match.velocity.window_seconds: m",
    ),
    ("velocity per", _edit(f"{M}.velocity.per", "vault"), "rules[0].match.velocity.per: expected one of"),
    ("velocity no per", _edit(f"{M}.velocity.per", ...), "rules[0].match.velocity.per: required"),
    ("velocity max float", _edit(f"{M}.velocity.max_amount", 5.5), "rules[0].match.velocity.max_amount: expected"),
    ("velocity unknown key", _edit(f"{M}.velocity.limit", 5), "rules[0].match.velocity.limit: unknown key"),
    (
        "velocity without any asset",
        _edit(M, {"velocity": {"window_seconds": 60, "max_amount": 5, "per": "source"}}),
        "rules[0].match.velocity: needs an asset",
    ),
    ("velocity asset not in assets", _edit(f"{M}.velocity.asset", "USDT"), "rules[0].match.velocity.asset: 'USDT'"),
    ("count max negative", _edit(f"{M}.count.max_count", -1), "rules[0].match.count.max_count: must be between"),
    ("count max text", _edit(f"{M}.count.max_count", "5"), "rules[0].match.count.max_count: expected an integer"),
    ("count window 0", _edit(f"{M}.count.window_seconds", 0), "rules[0].match.count.window_seconds: must be"),
    ("count asset not in assets", _edit(f"{M}.count.asset", "BTC"), "rules[0].match.count.asset: 'BTC'"),
    ("count empty asset", _edit(f"{M}.count.asset", ""), "rules[0].match.count.asset: must not be empty"),
    ("time no timezone", _edit(f"{M}.time.timezone", ...), "rules[0].match.time.timezone: required"),
    ("time unknown zone", _edit(f"{M}.time.timezone", "Mars/Olympus"), "rules[0].match.time.timezone: unknown"),
    ("time path zone", _edit(f"{M}.time.timezone", "../etc/passwd"), "rules[0].match.time.timezone: unknown"),
    ("time absolute zone", _edit(f"{M}.time.timezone", "/etc/localtime"), "rules[0].match.time.timezone: unknown"),
    ("time host zone", _edit(f"{M}.time.timezone", "localtime"), "rules[0].match.time.timezone: 'localtime' is not"),
    ("time zone an offset", _edit(f"{M}.time.timezone", 8), "rules[0].match.time.timezone: expected an IANA"),
    ("time hour 25", _edit(f"{M}.time.from", "25:00"), "rules[0].match.time.from: expected a time HH:MM"),
    ("time one-digit hour", _edit(f"{M}.time.from", "9:00"), "rules[0].match.time.from: expected a time HH:MM"),
    ("time minute 60", _edit(f"{M}.time.from", "09:60"), "rules[0].match.time.from: expected a time HH:MM"),
    ("time seconds", _edit(f"{M}.time.from", "09:00:00"), "rules[0].match.time.from: expected a time HH:MM"),
    ("time from 24:00", _edit(f"{M}.time.from", "24:00"), "rules[0].match.time.from: '24:00' is not a time of day"),
    ("time to 24:01", _edit(f"{M}.time.to", "24:01"), "rules[0].match.time.to: '24:01' is not a time of day"),
    ("time from without to", _edit(f"{M}.time.to", ...), "rules[0].match.time.to: from and to go together"),
    ("time to without from", _edit(f"{M}.time.from", ...), "rules[0].match.time.from: from and to go together"),
    ("time from equals to", _edit(f"{M}.time.to", "09:00"), "rules[0].match.time.to: equals from"),
    ("time bad day", _edit(f"{M}.time.days", ["monday"]), "rules[0].match.time.days[0]: expected one of mon"),
    ("time day capitalised", _edit(f"{M}.time.days", ["tue", "Mon"]), "rules[0].match.time.days[1]: expected one of"),
    ("time no days", _edit(f"{M}.time.days", []), "rules[0].match.time.days: must not be empty"),
    ("time duplicate day", _edit(f"{M}.time.days", ["mon", "mon"]), "rules[0].match.time.days[1]: duplicate"),
    ("time only a zone", _edit(f"{M}.time", {"timezone": "UTC"}), "rules[0].match.time: needs days"),
    ("approvals a list", _edit(A, []), "rules[0].approvals: expected an object"),
    ("combine missing", _edit(f"{A}.combine", ...), "rules[0].approvals.combine: required"),
    ("combine bad", _edit(f"{A}.combine", "and"), "rules[0].approvals.combine: expected one of all, any"),
    ("groups empty", _edit(f"{A}.groups", []), "rules[0].approvals.groups: needs at least one group"),
    ("groups an object", _edit(f"{A}.groups", {}), "rules[0].approvals.groups: expected an array"),
    (
        "too many groups",
        _edit(f"{A}.groups", [{"name": f"g{i}", "members": ["a"], "threshold": 1} for i in range(17)]),
        "rules[0].approvals.groups: more than 16",
    ),
    ("group a string", _edit(f"{A}.groups", ["treasury"]), "rules[0].approvals.groups[0]: expected an object"),
    ("group no members", _edit(f"{A}.groups.0.members", ...), "rules[0].approvals.groups[0].members: required"),
    ("group empty members", _edit(f"{A}.groups.0.members", []), "rules[0].approvals.groups[0].members: must not"),
    ("group member twice", _edit(f"{A}.groups.0.members", ["a", "a"]), "rules[0].approvals.groups[0].members[1]: dup"),
    ("group no threshold", _edit(f"{A}.groups.0.threshold", ...), "rules[0].approvals.groups[0].threshold: required"),
    ("threshold 0", _edit(f"{A}.groups.0.threshold", 0), "rules[0].approvals.groups[0].threshold: must be between"),
    ("threshold > members", _edit(f"{A}.groups.0.threshold", 3), "rules[0].approvals.groups[0].threshold: 3 exceeds"),
    ("threshold bool", _edit(f"{A}.groups.0.threshold", True), "rules[0].approvals.groups[0].threshold: expected"),
    ("threshold float", _edit(f"{A}.groups.0.threshold", 1.0), "rules[0].approvals.groups[0].threshold: expected"),
    ("threshold text", _edit(f"{A}.groups.0.threshold", "2"), "rules[0].approvals.groups[0].threshold: expected"),
    ("group unknown key", _edit(f"{A}.groups.0.weight", 1), "rules[0].approvals.groups[0].weight: unknown key"),
    (
        "duplicate group",
        _edit(f"{A}.groups", [{"name": "g", "members": ["a"], "threshold": 1}] * 2),
        "rules[0].approvals.groups[1].name: duplicate",
    ),
]


@pytest.mark.parametrize(("doc", "message"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_document(doc: Any, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        Policy.from_document(doc)
    assert str(info.value).startswith(message), str(info.value)


def test_the_valid_base_document_is_valid() -> None:
    assert Policy.from_document(_valid()).to_document()["rules"][1] == {"action": "block", "match": {}, "name": "r1"}


# --------------------------------------------------------------------------- properties

USERS = ["u1", "u2", "u3", "u4"]
ROLES = ["trader", "admin"]
VAULTS = ["v1", "v2"]
ASSETS = ["ETH", "USDT"]
ENTRIES = ["e1", "e2"]
ZONES = ["UTC", "Asia/Hong_Kong", "Europe/London", "America/New_York"]


def subset(values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=len(values), unique=True)


amounts = st.integers(0, 1000)
doc_amounts = st.one_of(amounts, amounts.map(str))
clock = st.integers(0, 24 * 60 - 1).map(lambda m: f"{m // 60:02d}:{m % 60:02d}")


@st.composite
def time_conditions(draw: st.DrawFn) -> dict[str, Any]:
    t: dict[str, Any] = {"timezone": draw(st.sampled_from(ZONES))}
    with_days, with_hours = draw(st.sampled_from([(True, False), (False, True), (True, True)]))
    if with_days:
        t["days"] = draw(subset(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]))
    if with_hours:
        start, end = draw(clock), draw(st.one_of(clock, st.just("24:00")))
        if start != end:
            t["from"], t["to"] = start, end
        elif not with_days:
            t["days"] = ["mon"]
    return t


@st.composite
def approvals_docs(draw: st.DrawFn) -> dict[str, Any]:
    groups = []
    for i in range(draw(st.integers(1, 3))):
        members = draw(subset(USERS))
        groups.append({"name": f"g{i}", "members": members, "threshold": draw(st.integers(1, len(members)))})
    return {"combine": draw(st.sampled_from(["all", "any"])), "groups": groups}


@st.composite
def rule_docs(draw: st.DrawFn, name: str) -> dict[str, Any]:
    match: dict[str, Any] = {}
    for key, values in (("initiators", USERS), ("roles", ROLES), ("vaults", VAULTS), ("assets", ASSETS)):
        if draw(st.integers(0, 3)) == 0:
            match[key] = draw(subset(values))
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["any", "address_book", "whitelisted", "one_time"]))
        match["destination"] = {"kind": kind}
        if kind in ("address_book", "whitelisted") and draw(st.booleans()):
            match["destination"]["entries"] = draw(subset(ENTRIES))
    if "assets" in match and draw(st.booleans()):
        low, high = sorted((draw(amounts), draw(amounts)))
        match["amount"] = draw(st.sampled_from([{"min": low}, {"max": high}, {"min": low, "max": high}]))
    for key, limit in (("velocity", "max_amount"), ("count", "max_count")):
        if draw(st.integers(0, 2)) == 0:
            cond = {
                "window_seconds": draw(st.integers(1, 3 * 86_400)),
                "per": draw(st.sampled_from(["source", "destination", "initiator"])),
                limit: draw(doc_amounts if limit == "max_amount" else st.integers(0, 5)),
            }
            if draw(st.booleans()):
                cond["asset"] = draw(st.sampled_from(match.get("assets", ASSETS)))
            elif key == "velocity" and "assets" not in match:
                continue
            match[key] = cond
    if draw(st.integers(0, 3)) == 0:
        match["time"] = draw(time_conditions())
    action = draw(st.sampled_from(["allow", "block", "require_approval"]))
    doc = {"name": name, "action": action, "match": match}
    if action == "require_approval":
        doc["approvals"] = draw(approvals_docs())
    return doc


@st.composite
def policies(draw: st.DrawFn, max_rules: int = 5) -> dict[str, Any]:
    n = draw(st.integers(0, max_rules))
    return {"rules": [draw(rule_docs(f"rule-{i}")) for i in range(n)]}


instants = st.integers(-3 * 86_400, 8 * 86_400).map(lambda s: T0 + timedelta(seconds=s))


@st.composite
def tx_facts(draw: st.DrawFn) -> TxFacts:
    entry = draw(st.one_of(st.none(), st.sampled_from(ENTRIES)))
    return TxFacts(
        initiator_id=draw(st.sampled_from(USERS)),
        initiator_roles=frozenset(draw(st.lists(st.sampled_from(ROLES), max_size=2))),
        vault_id=draw(st.sampled_from(VAULTS)),
        asset=draw(st.sampled_from(ASSETS)),
        destination=draw(st.sampled_from(ADDR)),
        address_book_entry=entry,
        whitelisted=entry is not None and draw(st.booleans()),
        amount=draw(amounts),
        at=draw(instants),
    )


past_txs = st.builds(
    PastTx,
    initiator_id=st.sampled_from(USERS),
    vault_id=st.sampled_from(VAULTS),
    asset=st.sampled_from(ASSETS),
    destination=st.sampled_from([*ADDR, ADDR[0].lower()]),
    amount=amounts,
    at=instants,
)
histories = st.lists(past_txs, max_size=12)
FAST = settings(max_examples=150, deadline=None)


@FAST
@given(policies(), tx_facts(), histories)
def test_property_decisions_are_well_formed(doc: dict[str, Any], f: TxFacts, history: list[PastTx]) -> None:
    p = Policy.from_document(doc)
    d = evaluate(p, f, history)
    e = explain(p, f, history)
    assert (d.action, d.rule, d.rule_index, d.requirement, d.reasons) == (
        e.action,
        e.rule,
        e.rule_index,
        e.requirement,
        e.reasons,
    )
    assert len(e.trace) == len(p.rules)
    assert d.trace == e.trace[: len(d.trace)]
    if d.rule_index is None:
        # default deny exactly when no rule matches
        assert d.action == "block" and d.rule is None and d.requirement is None
        assert not any(t.matched for t in e.trace) and all(t.reached for t in e.trace)
    else:
        chosen = p.rules[d.rule_index]
        assert (d.rule, d.action, d.requirement) == (chosen.name, chosen.action, chosen.approvals)
        assert [t.matched for t in d.trace] == [False] * d.rule_index + [True]
        assert not any(t.reached for t in e.trace[d.rule_index + 1 :])
    assert evaluate(p, f, history[::-1]) == d
    json.dumps(e.to_json())


@FAST
@given(policies(max_rules=4), rule_docs("trailing"), tx_facts(), histories)
def test_property_a_trailing_rule_never_overrides(
    doc: dict[str, Any], extra: dict[str, Any], f: TxFacts, history: list[PastTx]
) -> None:
    before = evaluate(Policy.from_document(doc), f, history)
    after = evaluate(Policy.from_document({"rules": [*doc["rules"], extra]}), f, history)
    if before.rule is not None:
        assert after == before
    else:
        assert after.rule in (None, "trailing")


@FAST
@given(policies())
def test_property_round_trip(doc: dict[str, Any]) -> None:
    p = Policy.from_document(doc)
    canonical = p.to_document()
    again = Policy.from_document(json.loads(json.dumps(canonical)))
    assert again == p and again.to_document() == canonical and again.digest() == p.digest()
    assert Policy.from_json(p.canonical_json()) == p


def assignable(req: ApprovalRequirement, approvers: set[str]) -> bool:
    """Brute force: is there a way to give each approver at most one group so every group reaches its threshold?"""
    people = sorted(approvers)
    for choice in itertools.product([None, *range(len(req.groups))], repeat=len(people)):
        counts = [0] * len(req.groups)
        for person, g in zip(people, choice, strict=True):
            if g is not None and person in req.groups[g].members:
                counts[g] += 1
        if all(c >= g.threshold for c, g in zip(counts, req.groups, strict=True)):
            return True
    return False


@settings(max_examples=300, deadline=None)
@given(approvals_docs(), st.lists(st.sampled_from([*USERS, "outsider"]), max_size=6), st.sampled_from(USERS))
def test_property_approvals(doc: dict[str, Any], approvers: list[str], initiator: str) -> None:
    req = ApprovalRequirement.from_json(doc)
    ok = req.satisfied(approvers, initiator)
    eligible = set(approvers) - {initiator}
    if req.combine == "all":
        assert ok == assignable(req, eligible)
    else:
        assert ok == any(len(g.members & eligible) >= g.threshold for g in req.groups)
    assert ok == (req.missing(approvers, initiator) == [])
    assert req.satisfied([*approvers, initiator], initiator) == ok  # the initiator never counts
    assert req.satisfied(approvers[::-1] * 2, initiator) == ok  # order and duplicates do not matter
    if ok:
        assert req.satisfied([*approvers, *USERS], initiator)  # more approvals never hurt
        assert req.satisfiable(initiator)
