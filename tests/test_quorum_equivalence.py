"""The signer nodes accept exactly the approvals the custody service counted, no more and no less.

The service decides with its policy's :class:`ApprovalRequirement` over user ids;
the nodes re-check the evidence the service builds from that requirement
(:func:`harbour.custody.evidence.build_evidence`, the pipeline's own code path)
with their :class:`Quorum` over approval keys. Each test builds both from one
requirement and asks the node through :func:`verify_evidence`, as a node with no
approver list and no floor of its own would.

Only people with an approval key can approve (the service refuses anyone else),
so the approver sets are drawn from key holders; they include people in no group
and the initiator, whose approval the service never counts.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from harbour.chains.eip1559 import Eip1559Transaction, parse_address
from harbour.chains.ethereum import address_from_public_key, checksum_address
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.custody.evidence import build_evidence, eligible_users, node_quorum
from harbour.governance.policy import ApprovalRequirement, PolicyError
from harbour.node.approval import ApprovalError
from harbour.node.quorum import (
    ETH,
    EvidenceError,
    Group,
    Intent,
    approval_statement,
    sign_approval,
    verify_evidence,
)

ORG, TX_ID, KEY_ID, PATH = "org-1", "tx-1", "key-1", "m/0/7"
MEMBERS = ("u0", "u1", "u2", "u3", "u4", "u5")
OUTSIDER = "x"
"""In no group: their approval is verified and counts for nothing."""
NEWCOMER = "i"
"""In no group either: an initiator from outside every group."""
PEOPLE = (*MEMBERS, OUTSIDER, NEWCOMER)


def _child_key() -> Secp256k1Point:
    """A secp256k1 point standing in for the key the nodes sign with (no nodes are started)."""
    point = SECP256K1.base_mul(4242)
    assert isinstance(point, Secp256k1Point)
    return point


CHILD = _child_key()
INTENT = Intent(1337, address_from_public_key(CHILD), checksum_address(bytes.fromhex("a1" * 20)), ETH, 5 * 10**17)
TRANSACTION = Eip1559Transaction(
    chain_id=INTENT.chain_id,
    nonce=0,
    max_priority_fee_per_gas=10**9,
    max_fee_per_gas=3 * 10**9,
    gas_limit=21_000,
    to=parse_address(INTENT.recipient),
    value=INTENT.amount,
    data=b"",
)
STATEMENT = approval_statement(org=ORG, transaction_id=TX_ID, key_id=KEY_ID, path=PATH, intent=INTENT)
PRIVATE = {p: Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"approver " + p.encode()).digest()) for p in PEOPLE}
PUBLIC = {p: k.public_key().public_bytes_raw() for p, k in PRIVATE.items()}
SIGNATURE = {p: sign_approval(k, STATEMENT) for p, k in PRIVATE.items()}


def service_approves(doc: dict[str, Any] | None, initiator: str, approvers: Iterable[str]) -> bool:
    """The service's verdict: no requirement (the rule allowed) or a requirement its approvals meet."""
    return doc is None or ApprovalRequirement.from_json(doc).satisfied(set(approvers), initiator)


def node_refusal(
    doc: dict[str, Any] | None, initiator: str, approvers: Iterable[str], keyless: Iterable[str] = ()
) -> ApprovalError | None:
    """Why a node refuses the evidence the service builds for these approvals, or None if it signs."""
    requirement = ApprovalRequirement.from_json(doc) if doc is not None else None
    keys = {p: PUBLIC[p] for p in eligible_users(requirement) | {initiator} if p not in set(keyless)}
    approvals = [(p, PUBLIC[p], SIGNATURE[p]) for p in sorted(set(approvers))]
    assert all(p not in set(keyless) for p, _, _ in approvals), "a user without an approval key cannot approve"
    evidence = build_evidence(
        org=ORG,
        transaction_id=TX_ID,
        intent=INTENT,
        transaction=TRANSACTION,
        requirement=requirement,
        initiator_id=initiator,
        keys=keys,
        approvals=approvals,
    )
    try:
        verify_evidence(
            evidence.encode(),
            key_id=KEY_ID,
            path=PATH,
            digest=TRANSACTION.signing_hash(),
            child_public_key=CHILD,
            trusted_approvers=None,
            min_approvals=0,
        )
    except ApprovalError as exc:
        return exc
    return None


def assert_agree(
    doc: dict[str, Any] | None, initiator: str, approvers: Iterable[str], keyless: Iterable[str] = ()
) -> bool:
    """Both verdicts are the same, a refusal is about the quorum and nothing else; returns the verdict."""
    approvers = set(approvers)
    service = service_approves(doc, initiator, approvers)
    refusal = node_refusal(doc, initiator, approvers, keyless)
    assert (refusal is None) == service, f"service approves: {service}; node: {refusal or 'signs'}"
    assert refusal is None or refusal.reason == "quorum", refusal
    return service


def group(name: str, members: Iterable[str], threshold: int) -> dict[str, Any]:
    return {"name": name, "members": sorted(members), "threshold": threshold}


# -- the tricky cases ---------------------------------------------------------------------------


def test_one_person_in_two_groups_fills_one_seat_under_all() -> None:
    doc = {"combine": "all", "groups": [group("g1", ["u0", "u1"], 1), group("g2", ["u0"], 1)]}
    assert not assert_agree(doc, NEWCOMER, ["u0"])
    assert not assert_agree(doc, NEWCOMER, ["u1"])
    assert assert_agree(doc, NEWCOMER, ["u0", "u1"])  # u0 must move from g1 to g2
    assert assert_agree({**doc, "combine": "any"}, NEWCOMER, ["u0"])


def test_two_overlapping_groups_need_as_many_people_as_seats() -> None:
    doc = {"combine": "all", "groups": [group("treasury", ["u0", "u1", "u2"], 2), group("ops", ["u1", "u2"], 2)]}
    assert not assert_agree(doc, NEWCOMER, ["u0", "u1", "u2"])
    assert not assert_agree(doc, NEWCOMER, ["u1", "u2", OUTSIDER])


def test_the_initiators_approval_counts_on_neither_side() -> None:
    doc = {"combine": "all", "groups": [group("pair", ["u0", "u1", "u2"], 2)]}
    assert not assert_agree(doc, "u0", ["u0", "u1"])
    assert assert_agree(doc, "u0", ["u0", "u1", "u2"])
    assert not assert_agree({"combine": "any", "groups": [group("solo", ["u0"], 1)]}, "u0", ["u0"])


def test_the_initiators_approval_never_travels_to_the_nodes() -> None:
    """The node refuses evidence carrying the initiator's approval, so the service leaves it out."""
    doc = {"combine": "all", "groups": [group("pair", ["u0", "u1", "u2"], 2)]}
    evidence = build_evidence(
        org=ORG,
        transaction_id=TX_ID,
        intent=INTENT,
        transaction=TRANSACTION,
        requirement=ApprovalRequirement.from_json(doc),
        initiator_id="u0",
        keys=PUBLIC,
        approvals=[(p, PUBLIC[p], SIGNATURE[p]) for p in ("u0", "u1", "u2")],
    )
    assert [key for key, _ in evidence.approvals] == [PUBLIC["u1"], PUBLIC["u2"]]
    assert evidence.quorum.initiator == PUBLIC["u0"]


def test_a_group_left_empty_under_all_is_met_by_nobody() -> None:
    """Without the initiator and a member who has no approval key, the nodes' group has no members."""
    doc = {"combine": "all", "groups": [group("lone", ["u0", "u1"], 1), group("wide", ["u2", "u3"], 1)]}
    keys = {p: PUBLIC[p] for p in PEOPLE if p != "u1"}
    assert node_quorum(ApprovalRequirement.from_json(doc), "u0", keys).groups[0].members == frozenset()
    for approvers in (["u2"], ["u2", "u3", OUTSIDER], ["u0", "u2", "u3"]):
        assert not assert_agree(doc, "u0", approvers, keyless=["u1"])
    assert assert_agree(doc, "u0", ["u1", "u2"])  # once u1 has a key and approves, it is met


def test_a_withdrawal_the_policy_allows_is_all_of_no_groups() -> None:
    assert assert_agree(None, NEWCOMER, [])
    assert assert_agree(None, NEWCOMER, [OUTSIDER])


def test_any_is_met_by_one_group_alone() -> None:
    doc = {"combine": "any", "groups": [group("treasury", ["u0", "u1", "u2"], 3), group("compliance", ["u3"], 1)]}
    assert assert_agree(doc, NEWCOMER, ["u3"])
    assert not assert_agree(doc, NEWCOMER, ["u0", "u1", OUTSIDER])
    assert assert_agree(doc, NEWCOMER, ["u0", "u1", "u2"])


def test_a_threshold_of_zero_is_refused_on_both_sides() -> None:
    with pytest.raises(PolicyError, match="threshold"):
        ApprovalRequirement.from_json({"combine": "all", "groups": [group("g", ["u0"], 0)]})
    with pytest.raises(EvidenceError, match="threshold"):
        Group("g", 0, frozenset({PUBLIC["u0"]}))


# -- every structure ----------------------------------------------------------------------------


@st.composite
def structures(draw: st.DrawFn) -> tuple[dict[str, Any], str, frozenset[str]]:
    """A requirement of 1..6 overlapping groups, an initiator, and the people who have no approval key."""
    groups = []
    for i in range(draw(st.integers(1, 6))):
        members = draw(st.lists(st.sampled_from(MEMBERS), min_size=1, max_size=len(MEMBERS), unique=True))
        groups.append(group(f"g{i}", members, draw(st.integers(1, len(members)))))
    doc = {"combine": draw(st.sampled_from(["all", "any"])), "groups": groups}
    initiator = draw(st.sampled_from([*MEMBERS, NEWCOMER]))
    keyless = draw(st.frozensets(st.sampled_from([*MEMBERS, NEWCOMER])))
    return doc, initiator, keyless


@settings(max_examples=400, deadline=None)
@given(structures(), st.data())
def test_property_the_node_signs_exactly_what_the_service_approved(
    structure: tuple[dict[str, Any], str, frozenset[str]], data: st.DataObject
) -> None:
    doc, initiator, keyless = structure
    approvers = data.draw(st.frozensets(st.sampled_from([p for p in PEOPLE if p not in keyless])), label="approvers")
    assert_agree(doc, initiator, approvers, keyless)


@settings(max_examples=20, deadline=None)
@given(structures())
def test_property_the_verdicts_agree_for_every_approver_set(
    structure: tuple[dict[str, Any], str, frozenset[str]],
) -> None:
    doc, initiator, keyless = structure
    people = [p for p in PEOPLE if p not in keyless]
    for size in range(len(people) + 1):
        for approvers in itertools.combinations(people, size):
            assert_agree(doc, initiator, approvers, keyless)
