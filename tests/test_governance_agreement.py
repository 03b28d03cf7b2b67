"""The custody service and a signer node decide every withdrawal alike: generated organisations, in-process.

Each example is an organisation's governance log (a genesis of admins, users
with roles and approval keys, assets, vaults, an address book and a random
policy; then, perhaps, an entry both admins sign that disables users, rotates
keys and changes the whitelist), a withdrawal, the withdrawals before it and
the approvals recorded for it. It is decided twice:

- the **service's** path (:func:`service_verdict`): the facts from its state and
  the policy's decision (:func:`harbour.governance.decide.withdrawal_facts` and
  :func:`~harbour.governance.decide.decide`, as a submission and a landing
  entry run them), then the approvals by user id that count
  (:func:`harbour.custody.tally.counted`) against the requirement;
- the **node's** path (:func:`node_verdict`): the version-2 evidence the
  pipeline builds (:func:`harbour.custody.evidence.build_governed_evidence`),
  encoded and decoded as a node reads it (:func:`harbour.node.quorum.read_evidence`),
  its history joined as a node joins its signers' records, and the node's check
  (:func:`harbour.node.quorum.check_governed`), which verifies every signature
  and maps approval keys to users itself.

Both must sign or refuse alike, and refuse for the same kind of reason (the
policy, or missing approvals). They could disagree by design only on inputs
each side gathers on its own: the clock and the history (the service's rows,
the node's records). Those are pinned: both decide at the same instant, on the
same earlier withdrawals.

The first property draws everything (most examples end at the policy); the
second draws one rule requiring approvals, so that every example reaches the
count of approvals; fixed cases pin down what is easy to get wrong (one
person in two groups, the initiator, keys and users the log no longer gives a
say). No sockets and no processes: some three thousand examples
in about half a minute on the 2-core machine, so the module is in SLOW_MODULES.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from governance_env import node_adds, stated_vault
from harbour.chains.eip1559 import Eip1559Transaction, erc20_transfer_data, parse_address
from harbour.chains.ethereum import address_from_public_key, checksum_address
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.custody import tally
from harbour.custody.evidence import build_governed_evidence
from harbour.governance import changes as c
from harbour.governance import decide
from harbour.governance.fields import GovernanceError
from harbour.governance.log import GENESIS_PARENT, Entry, SignedEntry, signed
from harbour.governance.policy import PastTx
from harbour.governance.request import request_body, sign_request
from harbour.governance.state import GovernanceLog
from harbour.node.certificate import ApprovalError
from harbour.node.orgs.history import History
from harbour.node.orgs.records import Record, union
from harbour.node.quorum import (
    ETH,
    GovernedEvidence,
    Intent,
    approval_statement,
    check_governed,
    read_evidence,
    sign_approval,
)

Verdict = Literal["sign", "policy", "quorum"]

ORG = "org-agreement"
PATH = "m/0/7"
TX_ID = "tx-agreement"
ADMINS = ("a0", "a1")
USERS = tuple(f"u{i}" for i in range(6))
PEOPLE = (*ADMINS, *USERS)
STRANGERS = ("s0", "s1")
"""User ids of keys the log never registered (a database edit's approvers)."""
ROLES = ("admin", "approver", "auditor", "initiator", "viewer")
TOKEN = checksum_address(bytes.fromhex("7a" * 20))
UNREGISTERED = checksum_address(bytes.fromhex("7b" * 20))
ADDRESSES = tuple(checksum_address(bytes([0xA0 + i]) * 20) for i in range(4))
"""The first three may be in the address book; the last never is (one-time)."""
ENTRY_IDS = ("e0", "e1", "e2")
VAULTS = {"v0": "key-0", "v1": "key-1"}
AT = datetime(2025, 8, 15, 2, 30, tzinfo=UTC)


def _key(i: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"agreement key %d" % i).digest())


KEYS = [_key(i) for i in range(32)]
PUBLIC = [k.public_key().public_bytes_raw() for k in KEYS]
NODES = {f"node-{i}": KEYS[28 + i] for i in range(3)}
"""The signer nodes' identity keys: they state that they hold the vaults' keys."""


def current_key(person: str) -> int:
    """Admins a0, a1 hold keys 0 and 1; user u<i> key 2 + i, and after a rotation 10 + i; strangers 20 + i."""
    return ADMINS.index(person) if person in ADMINS else 2 + USERS.index(person)


def _child_key() -> Secp256k1Point:
    """A secp256k1 point standing in for the vault key's child the node derives from its share."""
    point = SECP256K1.base_mul(4242)
    assert isinstance(point, Secp256k1Point)
    return point


CHILD = _child_key()
SENDER = address_from_public_key(CHILD)


@dataclass(frozen=True)
class Case:
    entries: tuple[SignedEntry, ...]
    """The genesis, then the entries after it."""
    key_id: str
    initiator: str
    contract: str | None
    destination: str
    amount: int
    approvals: tuple[tuple[str, int], ...]
    """(user id, index of the key they signed with) of each ``approve`` recorded."""
    history: tuple[Record, ...]
    at: datetime
    request: tuple[int, str] | None = None
    """(index of the key the request was signed with, transaction id signed for), or None: unsigned."""


def request_signature(case: Case) -> bytes | None:
    """The request's signature as its signer made it: over what the initiator asked for, by vault id and symbol."""
    if case.request is None:
        return None
    index, transaction_id = case.request
    vault = next((v for v, k in VAULTS.items() if k == case.key_id), "no-vault")
    symbol = {None: "ETH", TOKEN: "TKN"}.get(case.contract, "UNREG")
    body = request_body(
        chain_id=1337,
        org=case.entries[0].hash,
        transaction_id=transaction_id,
        vault=vault,
        asset=symbol,
        destination=case.destination,
        amount=case.amount,
    )
    return sign_request(KEYS[index], body)


def replay(case: Case) -> GovernanceLog:
    """The log from the entries' bytes, as the service's ledger and a node's registry each replay it.

    Both replay with :meth:`GovernanceLog.append` and nothing else, so one replay
    stands for both: their states are the same by construction, and what is
    compared is everything each side does with it.
    """
    log = GovernanceLog(SignedEntry.decode(case.entries[0].encode()))
    for entry in case.entries[1:]:
        log.append(SignedEntry.decode(entry.encode()))
    return log


def intent(case: Case) -> Intent:
    contract = ETH if case.contract is None else case.contract
    return Intent(1337, SENDER, case.destination, contract, case.amount, max_fee=60_000 * 3 * 10**9)


def transaction(case: Case) -> Eip1559Transaction:
    if case.contract is None:
        to, value, data = parse_address(case.destination), case.amount, b""
    else:
        to, value, data = (
            parse_address(case.contract),
            0,
            erc20_transfer_data(parse_address(case.destination), case.amount),
        )
    return Eip1559Transaction(
        chain_id=1337,
        nonce=7,
        max_priority_fee_per_gas=10**9,
        max_fee_per_gas=3 * 10**9,
        gas_limit=60_000,
        to=to,
        value=value,
        data=data,
    )


# -- the two paths ---------------------------------------------------------------------------------------------------


def service_verdict(case: Case, log: GovernanceLog) -> Verdict:
    """What the service decides on its ``log``: submission (facts, policy), then its count of approvals by user id."""
    state = log.state
    request = decide.Withdrawal(
        case.key_id, case.initiator, case.contract, case.destination, case.amount, TX_ID, request_signature(case), 1337
    )
    try:
        facts = decide.withdrawal_facts(state, request, case.at)
        decide.check_initiation(state, request, facts)
    except GovernanceError:
        return "policy"  # a Conflict (or Invalid) at submission: the log cannot describe it, or it is not signed
    if state.policy is None:
        return "policy"
    # transactions.history: the earlier withdrawals within the policy's longest window
    window = state.policy.max_window_seconds()
    since = case.at - timedelta(seconds=window)
    earlier = [
        PastTx(r.initiator, r.vault_id, r.asset, r.destination, r.amount, datetime.fromtimestamp(r.at, UTC))
        for r in case.history
        if window and datetime.fromtimestamp(r.at, UTC) > since
    ]
    decision = decide.decide(state, facts, earlier)
    if currently_in_test_context():  # the property's statistics: how often each action decided
        event(f"the policy's decision: {decision.action}")
    if decision.action == "block":
        return "policy"
    if decision.action == "allow":
        return "sign"
    assert decision.requirement is not None
    counted = tally.counted(state, [(user, PUBLIC[index]) for user, index in case.approvals])
    return "sign" if decision.requirement.satisfied(counted, case.initiator) else "quorum"


def node_verdict(case: Case, log: GovernanceLog) -> Verdict:
    """What a node decides at ``log``'s head on the evidence the pipeline builds on the same log."""
    statement = approval_statement(org=ORG, transaction_id=TX_ID, key_id=case.key_id, path=PATH, intent=intent(case))
    recorded = [(user, PUBLIC[index], sign_approval(KEYS[index], statement)) for user, index in case.approvals]
    tx = transaction(case)
    digest = tx.signing_hash()
    built = build_governed_evidence(
        log=log,
        transaction_id=TX_ID,
        intent=intent(case),
        transaction=tx,
        initiator_id=case.initiator,
        approvals=recorded,
        initiation=request_signature(case) or b"",
    )
    evidence = read_evidence(built.encode())
    assert isinstance(evidence, GovernedEvidence)
    state = log.state
    now = int(case.at.timestamp())
    # judge_withdrawal's history: the node's records within the policy's longest window, joined by transaction id
    history = History()
    for record in case.history:
        history.record(ORG, record, now=now, window=0)
    window = state.policy.max_window_seconds() if state.policy is not None else 0
    past = [r.past(now) for r in union(history.window(ORG, now, window), evidence.transaction_id)]
    try:
        check_governed(
            evidence,
            key_id=case.key_id,
            path=PATH,
            digest=digest,
            child_public_key=CHILD,
            state=state,
            history=past,
            at=datetime.fromtimestamp(now, UTC),
        )
    except ApprovalError as exc:
        assert exc.reason in ("policy", "quorum"), exc  # never the evidence's form, signatures or transaction
        return "policy" if exc.reason == "policy" else "quorum"
    return "sign"


def assert_agree(case: Case) -> Verdict:
    log = replay(case)
    service, node = service_verdict(case, log), node_verdict(case, log)
    assert service == node, f"the service decides {service!r}, the node {node!r}"
    return service


# -- generated organisations ---------------------------------------------------------------------------------------


def _subset(draw: st.DrawFn, pool: Sequence[str]) -> list[str]:
    """A non-empty subset of ``pool``, in one draw (a bit mask): generating is most of an example's time."""
    mask = draw(st.integers(1, 2 ** len(pool) - 1))
    return [item for i, item in enumerate(pool) if mask >> i & 1]


@st.composite
def approval_groups(draw: st.DrawFn) -> dict[str, Any]:
    groups = []
    for i in range(draw(st.integers(1, 3))):
        members = _subset(draw, PEOPLE)
        threshold = min(len(members), draw(st.sampled_from([1, 2, 1, 3, len(members)])))
        groups.append({"name": f"g{i}", "members": members, "threshold": threshold})
    return {"combine": draw(st.sampled_from(["all", "any"])), "groups": groups}


@st.composite
def limit(draw: st.DrawFn, assets: list[str] | None, key: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "window_seconds": draw(st.sampled_from([60, 3600, 86_400])),
        "per": draw(st.sampled_from(["source", "destination", "initiator"])),
        key: str(draw(st.integers(0, 2000))) if key == "max_amount" else draw(st.integers(0, 4)),
    }
    if (key == "max_amount" and assets is None) or draw(st.booleans()):
        doc["asset"] = draw(st.sampled_from(assets or ["ETH", "TKN"]))
    return doc


CLOCKS = ("00:00", "08:30", "10:00", "17:00", "23:59")


def _sometimes(draw: st.DrawFn, one_in: int) -> bool:
    return draw(st.integers(0, one_in - 1)) == 0


@st.composite
def rules(draw: st.DrawFn, index: int) -> dict[str, Any]:
    """A rule of a few conditions (each is there one time in three or so, so that rules often match)."""
    match: dict[str, Any] = {}
    if _sometimes(draw, 3):
        match["initiators"] = _subset(draw, PEOPLE)
    if _sometimes(draw, 3):
        match["roles"] = _subset(draw, ROLES)
    if _sometimes(draw, 3):
        match["vaults"] = _subset(draw, ["v0", "v1", "v9"])
    assets = _subset(draw, ["ETH", "TKN", "XYZ"]) if _sometimes(draw, 3) else None
    if assets is not None:
        match["assets"] = assets
        if _sometimes(draw, 2):
            low, high = sorted((draw(st.integers(1, 1000)), draw(st.integers(1, 1000))))
            bounds = draw(st.sampled_from([("min",), ("max",), ("min", "max")]))
            match["amount"] = {k: str(low if k == "min" else high) for k in bounds}
    if _sometimes(draw, 3):
        kind = draw(st.sampled_from(["any", "address_book", "whitelisted", "one_time"]))
        match["destination"] = {"kind": kind}
        if kind in ("address_book", "whitelisted") and _sometimes(draw, 2):
            match["destination"]["entries"] = _subset(draw, ENTRY_IDS)
    if _sometimes(draw, 4):
        match["velocity"] = draw(limit(assets, "max_amount"))
    if _sometimes(draw, 4):
        match["count"] = draw(limit(assets, "max_count"))
    if _sometimes(draw, 5):
        time: dict[str, Any] = {"timezone": draw(st.sampled_from(["UTC", "Asia/Hong_Kong", "America/New_York"]))}
        if _sometimes(draw, 2):
            time["days"] = _subset(draw, ["mon", "tue", "wed", "thu", "fri", "sat", "sun"])
        if "days" not in time or _sometimes(draw, 2):
            start = draw(st.integers(0, len(CLOCKS) - 1))
            end = (start + draw(st.integers(1, len(CLOCKS) - 1))) % len(CLOCKS)
            time["from"], time["to"] = CLOCKS[start], CLOCKS[end]
        match["time"] = time
    action = draw(st.sampled_from(["allow", "block", "require_approval", "require_approval"]))
    rule: dict[str, Any] = {"name": f"r{index}", "action": action, "match": match}
    if action == "require_approval":
        rule["approvals"] = draw(approval_groups())
    return rule


REQUESTS = (None, None, "own", "own", "own", "other-key", "other-transaction")
"""How a generated request is signed: not at all, by its initiator's key in force, by another key, for another id."""


def _request(how: str | None, initiator: str, rotated: set[str]) -> tuple[int, str] | None:
    if how is None:
        return None
    own = (
        20
        if initiator not in PEOPLE
        else 10 + USERS.index(initiator)
        if initiator in rotated
        else current_key(initiator)
    )
    if how == "own":
        return own, TX_ID
    if how == "other-key":
        return (own + 1) % 8, TX_ID
    return own, "tx-another"


@st.composite
def cases(draw: st.DrawFn) -> Case:
    users: list[c.Change] = [c.AddUser(a, a, frozenset({"admin"}), PUBLIC[current_key(a)]) for a in ADMINS]
    for user in USERS:
        roles = frozenset(_subset(draw, ROLES)) | ({"approver"} if not _sometimes(draw, 4) else set())
        keyed = draw(st.integers(0, 4)) > 0
        users.append(c.AddUser(user, user, roles, PUBLIC[current_key(user)] if keyed else None))
    assets: list[c.Change] = []
    if not _sometimes(draw, 10):
        assets.append(c.AddAsset("asset-eth", "ETH", None, 18))
    if not _sometimes(draw, 6):
        assets.append(c.AddAsset("asset-tkn", "TKN", TOKEN, 6))
    book = [
        c.AddAddress(entry, entry, ADDRESSES[i], draw(st.booleans()))
        for i, entry in enumerate(ENTRY_IDS)
        if draw(st.booleans())
    ]
    vaulted = [v for v in VAULTS if v == "v0" or not _sometimes(draw, 6)]
    count = draw(st.sampled_from([1, 2, 3, 4, 2, 3, 0]))  # none: the genesis default, deny everything
    policy = {"rules": [draw(rules(i)) for i in range(count)]}
    if policy["rules"] and _sometimes(draw, 2):  # a last rule without conditions, as most policies end
        policy["rules"][-1]["match"] = {}
    genesis = Entry(
        org=ORG,
        seq=0,
        prev=GENESIS_PARENT,
        proposer="a0",
        at=int(AT.timestamp()) - 86_400,
        changes=(c.SetQuorum(1), *node_adds(NODES), *users, *assets, *book, c.policy_change(policy)),
    )
    entries = [SignedEntry(genesis.encode(), ())]
    rotated: set[str] = set()
    later: list[c.Change] = [stated_vault(entries[0].hash, v, VAULTS[v], NODES) for v in vaulted]
    for user in USERS:
        if _sometimes(draw, 8):
            later.append(c.DisableUser(user))
        if draw(st.integers(0, 4)) == 0:
            later.append(c.SetKey(user, PUBLIC[10 + USERS.index(user)]))
            rotated.add(user)
    for listed in book:
        if draw(st.integers(0, 3)) == 0:
            assert isinstance(listed, c.AddAddress)
            later.append(c.SetWhitelisted(listed.id, not listed.whitelisted))
    entry = Entry(ORG, 1, entries[0].hash, "a0", int(AT.timestamp()) - 3600, tuple(later))
    entries.append(signed(entry, [KEYS[0], KEYS[1]]))

    approvals: list[tuple[str, int]] = []
    for person in PEOPLE:
        choice = draw(st.integers(0, 3))
        if choice in (1, 3):
            approvals.append((person, current_key(person)))
        elif choice == 2 and person in rotated:
            approvals.append((person, 10 + USERS.index(person)))
    approvals += [(s, 20 + i) for i, s in enumerate(STRANGERS) if draw(st.integers(0, 3)) == 0]

    history = tuple(
        Record(
            transaction_id=f"earlier-{i}",
            vault_id=draw(st.sampled_from(list(VAULTS))),
            asset=draw(st.sampled_from(["ETH", "TKN"])),
            destination=draw(st.sampled_from(ADDRESSES)),
            amount=draw(st.integers(1, 1000)),
            initiator=draw(st.sampled_from(PEOPLE)),
            at=int(AT.timestamp()) - draw(st.integers(0, 100_000)),
        )
        for i in range(draw(st.integers(0, 6)))
    )
    initiator = draw(st.sampled_from([*PEOPLE, *USERS, "ghost"]))
    return Case(
        entries=tuple(entries),
        # Mostly what the log knows (a vault, a user, an asset), sometimes what it does not.
        key_id=draw(st.sampled_from(["key-0"] * 8 + ["key-1", "key-1", "key-loose"])),
        initiator=initiator,
        contract=draw(st.sampled_from([None] * 8 + [TOKEN, TOKEN, TOKEN, UNREGISTERED])),
        destination=draw(st.sampled_from(ADDRESSES)),
        amount=draw(st.integers(1, 1000)),
        approvals=tuple(approvals),
        history=history,
        request=_request(draw(st.sampled_from(REQUESTS)), initiator, rotated),
        at=AT + timedelta(minutes=draw(st.integers(0, 7 * 24 * 60 - 1))),
    )


@settings(max_examples=600, deadline=None)
@given(cases())
def test_property_the_service_and_a_node_decide_every_withdrawal_alike(case: Case) -> None:
    event(f"verdict: {assert_agree(case)}")


# -- the cases that are easy to get wrong ------------------------------------------------------------------------


def one_rule(
    approvals: dict[str, Any],
    initiator: str,
    approvers: Sequence[str],
    *,
    keyless: Sequence[str] = (),
    later: Sequence[c.Change] = (),
    keys: dict[str, int] | None = None,
) -> Case:
    """Users u0..u5 (approvers, the initiator an initiator too), one rule requiring ``approvals``, ETH, vault v0.

    ``keyless`` users have no approval key; ``later`` is an entry after the genesis;
    ``keys`` overrides which key an approver signed with.
    """
    users: list[c.Change] = [c.AddUser(a, a, frozenset({"admin"}), PUBLIC[current_key(a)]) for a in ADMINS]
    for user in USERS:
        roles = frozenset({"approver", "initiator"} if user == initiator else {"approver"})
        users.append(c.AddUser(user, user, roles, None if user in keyless else PUBLIC[current_key(user)]))
    policy = {"rules": [{"name": "approved", "action": "require_approval", "approvals": approvals}]}
    genesis = Entry(
        ORG,
        0,
        GENESIS_PARENT,
        "a0",
        int(AT.timestamp()),
        (c.SetQuorum(1), *node_adds(NODES), *users, c.AddAsset("asset-eth", "ETH", None, 18),
         c.policy_change(policy)),
    )  # fmt: skip
    entries = [SignedEntry(genesis.encode(), ())]
    vault = stated_vault(entries[0].hash, "v0", "key-0", NODES)
    entries.append(signed(Entry(ORG, 1, entries[0].hash, "a0", int(AT.timestamp()), (vault, *later)), KEYS[:2]))
    chosen = keys or {}
    return Case(
        entries=tuple(entries),
        key_id="key-0",
        initiator=initiator,
        contract=None,
        destination=ADDRESSES[3],
        amount=500,
        approvals=tuple((who, chosen.get(who, current_key(who) if who in PEOPLE else 20)) for who in approvers),
        history=(),
        at=AT,
    )


def group(name: str, members: Sequence[str], threshold: int) -> dict[str, Any]:
    return {"name": name, "members": sorted(members), "threshold": threshold}


def test_one_person_in_two_groups_fills_one_seat_under_all() -> None:
    both = {"combine": "all", "groups": [group("g1", ["u0", "u1"], 1), group("g2", ["u0"], 1)]}
    assert assert_agree(one_rule(both, "u5", ["u0"])) == "quorum"
    assert assert_agree(one_rule(both, "u5", ["u1"])) == "quorum"
    assert assert_agree(one_rule(both, "u5", ["u0", "u1"])) == "sign"  # u0 must move from g1 to g2
    assert assert_agree(one_rule({**both, "combine": "any"}, "u5", ["u0"])) == "sign"


def test_two_overlapping_groups_need_as_many_people_as_seats() -> None:
    doc = {"combine": "all", "groups": [group("treasury", ["u0", "u1", "u2"], 2), group("ops", ["u1", "u2"], 2)]}
    assert assert_agree(one_rule(doc, "u5", ["u0", "u1", "u2"])) == "quorum"
    assert assert_agree(one_rule(doc, "u5", ["u1", "u2", "s0"])) == "quorum"


def test_the_initiators_approval_counts_on_neither_side_and_never_reaches_the_nodes() -> None:
    doc = {"combine": "all", "groups": [group("pair", ["u0", "u1", "u2"], 2)]}
    assert assert_agree(one_rule(doc, "u0", ["u0", "u1"])) == "quorum"
    case = one_rule(doc, "u0", ["u0", "u1", "u2"])
    assert assert_agree(case) == "sign"
    statement = approval_statement(org=ORG, transaction_id=TX_ID, key_id="key-0", path=PATH, intent=intent(case))
    evidence = build_governed_evidence(
        log=replay(case),
        transaction_id=TX_ID,
        intent=intent(case),
        transaction=transaction(case),
        initiator_id="u0",
        approvals=[(u, PUBLIC[current_key(u)], sign_approval(KEYS[current_key(u)], statement)) for u in ("u0", "u1")],
    )
    assert [k for k, _ in evidence.approvals] == [PUBLIC[current_key("u1")]]


def test_a_group_whose_members_have_no_key_is_met_by_nobody() -> None:
    doc = {"combine": "all", "groups": [group("lone", ["u0", "u1"], 1), group("wide", ["u2", "u3"], 1)]}
    for approvers in (["u2"], ["u2", "u3", "s0"], ["u0", "u2", "u3"]):
        assert assert_agree(one_rule(doc, "u0", approvers, keyless=["u1"])) == "quorum"
    assert assert_agree(one_rule(doc, "u0", ["u1", "u2"])) == "sign"  # once u1 has a key and approves


def test_any_is_met_by_one_group_alone() -> None:
    doc = {"combine": "any", "groups": [group("treasury", ["u0", "u1", "u2"], 3), group("compliance", ["u3"], 1)]}
    assert assert_agree(one_rule(doc, "u5", ["u3"])) == "sign"
    assert assert_agree(one_rule(doc, "u5", ["u0", "u1", "s0"])) == "quorum"
    assert assert_agree(one_rule(doc, "u5", ["u0", "u1", "u2"])) == "sign"


def test_approvals_by_a_disabled_approver_a_rotated_key_or_a_stranger_count_on_neither_side() -> None:
    doc = {"combine": "all", "groups": [group("pair", ["u0", "u1", "u2"], 2)]}
    disabled = one_rule(doc, "u5", ["u0", "u1"], later=[c.DisableUser("u1")])
    assert assert_agree(disabled) == "quorum"
    rotated = one_rule(doc, "u5", ["u0", "u1"], later=[c.SetKey("u1", PUBLIC[11])])
    assert assert_agree(rotated) == "quorum"  # u1 signed with the key the log no longer gives them
    assert (
        assert_agree(one_rule(doc, "u5", ["u0", "u1"], later=[c.SetKey("u1", PUBLIC[11])], keys={"u1": 11})) == "sign"
    )
    assert assert_agree(one_rule(doc, "u5", ["u0", "s0", "s1"])) == "quorum"


@st.composite
def approval_cases(draw: st.DrawFn) -> Case:
    """One rule requiring approvals, and who approved: every withdrawal reaches the count of approvals."""
    keyless = [u for u in USERS if _sometimes(draw, 6)]
    later: list[c.Change] = []
    keys: dict[str, int] = {}
    for user in USERS:
        if _sometimes(draw, 6):
            later.append(c.DisableUser(user))
        if _sometimes(draw, 5):
            later.append(c.SetKey(user, PUBLIC[10 + USERS.index(user)]))
            if _sometimes(draw, 2):  # approved under the new key, else under the old one
                keys[user] = 10 + USERS.index(user)
    approvers = [p for p in (*PEOPLE, *STRANGERS) if p not in keyless and not _sometimes(draw, 3)]
    return one_rule(
        draw(approval_groups()), draw(st.sampled_from(USERS)), approvers, keyless=keyless, later=later, keys=keys
    )


@settings(max_examples=300, deadline=None)
@given(approval_cases())
def test_property_the_service_and_a_node_count_approvals_alike(case: Case) -> None:
    event(f"verdict: {assert_agree(case)}")
