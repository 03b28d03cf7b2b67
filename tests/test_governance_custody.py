"""Custody governance under attack: every change of who may do what needs the admin quorum, as a signed entry.

An organisation here has three admins (alice, bob, carol; quorum 1: every change
is signed by its proposer and one other), an initiator, three approvers, an
auditor and a viewer, on real signer-node processes and the embedded chain. Each
attack is performed against the real service, as the attacker could: through the
service's own methods with one admin's credential, or by writing to the
database directly. Then what pending work does when governance changes: a new
policy judges pending withdrawals again, disabling a user cancels theirs, and
approvals expire. The landings that lock rows (superseding, re-evaluating,
cancelling, expiring) run on PostgreSQL as well.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from custody_env import ETH, CustodyEnv, public_hex
from drain import one_admin_drain
from harbour.api.app import create_app
from harbour.custody import models as m
from harbour.custody import statements
from harbour.custody.errors import Conflict, Forbidden, Invalid, Unauthorized
from harbour.custody.ledger import LogCorrupted
from harbour.custody.service import Founder
from harbour.custody.views import Page
from harbour.governance import changes
from harbour.governance.log import Entry, SignedEntry
from helpers import wait_until

DEST = "0x2222222222222222222222222222222222222222"
FINAL = ("confirmed", "failed", "rejected", "cancelled")


def allow_all() -> dict[str, Any]:
    return {"rules": [{"name": "anything goes", "action": "allow"}]}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyEnv]:
    """A custody home and its three running signer nodes, shared by the module's tests."""
    shared = CustodyEnv(tmp_path_factory.mktemp("governance"))
    try:
        shared.start_nodes()
        yield shared
    finally:
        shared.stop()


@pytest.fixture(params=["sqlite"])
def env(request: pytest.FixtureRequest, deployment: CustodyEnv) -> CustodyEnv:
    """A fresh service (on PostgreSQL too where a test asks): three admins, quorum 1, the two-approver policy."""
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_db_url")
    request.addfinalizer(deployment.close)
    deployment.reset(url)
    deployment.organisation(admins=3)
    deployment.set_policy(deployment.two_approvers_policy())
    return deployment


BOTH_DATABASES = pytest.mark.parametrize("env", ["sqlite", "postgresql"], indirect=True)


def withdraw(env: CustodyEnv, vault_id: str, amount: int = ETH, who: str = "initiator") -> dict[str, Any]:
    return env.custody.submit_withdrawal(env.actor(who), vault_id=vault_id, asset="ETH", to=DEST, amount=amount)


def view(env: CustodyEnv, tx_id: str) -> dict[str, Any]:
    return env.custody.get_transaction(env.actor("admin"), tx_id)


def wait_final(env: CustodyEnv, tx_id: str) -> dict[str, Any]:
    return wait_until(lambda: (lambda t: t if t["state"] in FINAL else None)(view(env, tx_id)), 60)


def events(env: CustodyEnv, kind: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = env.custody.audit_events(env.actor("auditor"), Page(limit=200, cursor=cursor))
        out.extend(e for e in page["items"] if e["kind"] == kind)
        if (cursor := page["next_cursor"]) is None:
            return out


def head(env: CustodyEnv) -> int:
    seq: int = env.custody.governance_head(env.actor("viewer"))["seq"]
    return seq


# -- one admin alone ---------------------------------------------------------------------------------------------


def test_one_admins_credential_cannot_drain_the_vault(env: CustodyEnv) -> None:
    """Alice's token and key alone: every step of the drain stays a proposal nobody else signed.

    The steps and their refusals are tests/drain.py's; test_governance_signing.py runs
    them on anvil and carries them to the signer nodes.
    """
    vault_id, address = env.vault(fund=5 * ETH)
    one_admin_drain(env, vault_id)
    assert env.chain.balance(address) == 5 * ETH


def test_a_lone_admin_cannot_disable_or_lock_out_the_others(env: CustodyEnv) -> None:
    alice = env.actor("admin")
    for other in ("admin2", "admin3"):
        proposal = env.custody.disable_user(alice, env.user_id(other))
        assert env.approve(proposal["id"], "admin")["state"] == "pending_approval"
        env.custody.authenticate(env.people[other].token)  # still works
    # Revoking another admin's credential would lock them out of governance: refused.
    credential_id = env.people["admin2"].token.split("_")[1]
    with pytest.raises(Conflict, match="one admin alone"):
        env.custody.revoke_credential(alice, credential_id)
    # A non-admin's credential an admin may revoke; an admin may revoke their own.
    initiator = env.people["initiator"].token.split("_")[1]
    assert env.custody.revoke_credential(alice, initiator)["revoked"] is True
    own = env.people["admin3"].token.split("_")[1]
    assert env.custody.revoke_credential(env.actor("admin3"), own)["revoked"] is True
    with pytest.raises(Unauthorized):
        env.custody.authenticate(env.people["admin3"].token)


def test_one_admin_cannot_stop_the_quorum_from_disabling_them(env: CustodyEnv) -> None:
    proposal = env.custody.disable_user(env.actor("admin"), env.user_id("admin3"))
    refused = env.decide(proposal["id"], "admin3", "reject")
    assert refused["state"] == "pending_approval"  # recorded, signed and audited, but no veto
    assert [a["decision"] for a in refused["approvals"]] == ["reject"]
    with pytest.raises(Forbidden, match="only its proposer"):
        env.custody.cancel(env.actor("admin3"), proposal["id"])
    env.govern(proposal)
    with pytest.raises(Unauthorized):
        env.custody.authenticate(env.people["admin3"].token)
    assert [e["subject"] for e in events(env, "approval.reject")] == [proposal["id"]]


def test_the_last_admins_of_the_quorum_cannot_be_disabled_demoted_or_unkeyed(env: CustodyEnv) -> None:
    alice = env.actor("admin")
    env.govern(env.custody.disable_user(alice, env.user_id("admin3")))  # three to two: allowed
    with pytest.raises(Conflict, match="last admins of the quorum"):
        env.custody.disable_user(alice, env.user_id("admin2"))
    with pytest.raises(Conflict, match="last admins of the quorum"):
        env.custody.set_roles(alice, env.user_id("admin2"), roles=["approver"])
    with pytest.raises(Invalid, match="rotated, not removed"):
        env.custody.set_approval_key(alice, env.user_id("admin2"), approval_key=None)
    # Disabling oneself is the same refusal: it would leave one admin where two must sign.
    with pytest.raises(Conflict, match="last admins of the quorum"):
        env.custody.disable_user(alice, alice.user_id)


def test_an_organisation_with_fewer_admins_than_the_quorum_needs_changes_nothing(env: CustodyEnv) -> None:
    key = Ed25519PrivateKey.generate()
    lone = env.custody.bootstrap("Lone Custodian", [Founder("solo", ("admin",), public_hex(key))])
    solo = env.custody.authenticate(lone["credentials"][0]["token"])
    message = (
        r"1 admin\(s\) who can sign .* the proposer and 1 other admin\(s\), 2 in all: it operates within its genesis"
    )
    with pytest.raises(Conflict, match=message):
        env.custody.create_user(solo, name="helper", roles=["admin"], approval_key=public_hex(key))
    with pytest.raises(Conflict, match=message):
        env.custody.propose_policy(solo, allow_all())
    with pytest.raises(Conflict, match=message):  # before any key is generated on the nodes
        env.custody.create_vault(solo, name="vault", threshold=2)
    keys = [Ed25519PrivateKey.generate() for _ in range(2)]
    pair = env.custody.bootstrap(
        "Strict Custodian", [Founder(f"a{i}", ("admin",), public_hex(k)) for i, k in enumerate(keys)], quorum=2
    )
    first = env.custody.authenticate(pair["credentials"][0]["token"])
    with pytest.raises(Conflict, match=r"2 admin\(s\) who can sign .* 3 in all"):
        env.custody.propose_policy(first, allow_all())
    # The API says the same, as a 409 problem.
    client = TestClient(create_app(env.custody))
    response = client.post(
        "/v1/policy/proposals",
        json={"document": allow_all()},
        headers={"Authorization": f"Bearer {lone['credentials'][0]['token']}", "Idempotency-Key": "lone-1"},
    )
    assert response.status_code == 409 and "2 in all" in response.json()["detail"]


def test_a_policy_names_members_by_name_or_id_and_one_who_cannot_approve_is_refused_at_proposal(
    env: CustodyEnv,
) -> None:
    document = env.two_approvers_policy()
    members = document["rules"][0]["approvals"]["groups"][0]["members"]
    members[0] = "Approver1"  # a name, as people write them: the policy in force holds the id
    for wrong, needle in [
        ("approver9", "member 'approver9' is no user of the organisation"),
        ("viewer", "member 'viewer' .* does not hold the approver role"),
        ("initiator", "member 'initiator' .* does not hold the approver role"),
    ]:
        members[1] = wrong
        with pytest.raises(Invalid, match=f"rule 'treasury approval', group 'treasury': {needle}"):
            env.custody.propose_policy(env.actor("admin"), document)
    # The API says the same, as a 422 problem; nothing was proposed.
    response = TestClient(create_app(env.custody)).post(
        "/v1/policy/proposals",
        json={"document": document},
        headers={"Authorization": f"Bearer {env.people['admin'].token}", "Idempotency-Key": "unsatisfiable-1"},
    )
    assert response.status_code == 422 and "'initiator'" in response.json()["detail"], response.text
    members[1] = env.user_id("approver2")
    env.set_policy(document)
    in_force = env.custody.get_policy(env.actor("admin"))["document"]["rules"][0]["approvals"]["groups"][0]
    assert in_force["members"] == sorted(env.user_id(n) for n in ("approver1", "approver2", "approver3"))


def test_only_enabled_admins_propose_and_sign_governance(env: CustodyEnv) -> None:
    with pytest.raises(Forbidden):
        env.custody.propose_policy(env.actor("approver1"), allow_all())
    proposal = env.custody.propose_policy(env.actor("admin"), allow_all())
    with pytest.raises(Forbidden):
        env.approve(proposal["id"], "approver1")  # an approver's key is no admin's
    env.approve(proposal["id"], "admin")
    with pytest.raises(Conflict, match="already decided"):
        env.approve(proposal["id"], "admin")


# -- forged and stale signatures -------------------------------------------------------------------------------------


def forge_approval(env: CustodyEnv, tx_id: str, who: str) -> None:
    """Write ``who``'s valid signature over the transaction's statement straight into the database."""
    person = env.people[who]
    assert person.key is not None
    request = env.custody.approval_request(env.actor("admin"), tx_id)
    subject = statements.from_request(request, tx_id)
    signature = subject.sign(person.key, subject.statement())
    now = env.custody.clock()
    with env.custody.sessions() as s, s.begin():
        s.add(
            m.Approval(
                transaction_id=tx_id,
                approver_id=person.actor.user_id,
                decision="approve",
                public_key=public_hex(person.key),
                signature=signature.hex(),
                expires_at=now + dt.timedelta(days=1),
            )
        )


def test_a_disabled_admins_signature_does_not_count_even_written_into_the_database(env: CustodyEnv) -> None:
    env.govern(env.custody.disable_user(env.actor("admin"), env.user_id("admin3")))
    with pytest.raises(Unauthorized):  # disabling revoked carol's credentials
        env.custody.authenticate(env.people["admin3"].token)
    proposal = env.custody.propose_policy(env.actor("admin"), allow_all())
    forge_approval(env, proposal["id"], "admin3")  # valid over the entry, by a key no longer an admin's
    assert env.approve(proposal["id"], "admin")["state"] == "pending_approval"
    landed = env.approve(proposal["id"], "admin2")
    assert landed["state"] == "confirmed"
    entry = env.custody.governance_entries(env.actor("auditor"), Page(limit=200))["items"][-1]
    assert {s["user_id"] for s in entry["signers"]} == {env.user_id("admin"), env.user_id("admin2")}


def test_a_forged_admin_row_gets_no_admin_rights(env: CustodyEnv) -> None:
    """The users table is a projection: promoting the viewer there changes nothing the service decides."""
    viewer = env.people["viewer"]
    with env.custody.sessions() as s, s.begin():
        s.execute(update(m.User).where(m.User.id == viewer.actor.user_id).values(roles=["admin", "viewer"]))
    assert env.custody.authenticate(viewer.token).roles == frozenset({"viewer"})
    with pytest.raises(Forbidden):
        env.custody.propose_policy(env.custody.authenticate(viewer.token), allow_all())


def test_an_admin_credential_not_issued_by_the_log_carries_no_admin_role(env: CustodyEnv) -> None:
    import hashlib

    secret = bytes(32)
    credential_id = m.new_id()
    with env.custody.sessions() as s, s.begin():
        s.add(
            m.Credential(
                id=credential_id, user_id=env.user_id("admin2"), secret_hash=hashlib.sha256(secret).hexdigest()
            )
        )
    with pytest.raises(Unauthorized, match="governance log"):  # an admin and nothing else: no role is left
        env.custody.authenticate(f"hbk_{credential_id}_{secret.hex()}")


def test_an_edited_governance_entry_stops_the_service_deciding(env: CustodyEnv) -> None:
    with env.custody.sessions() as s:
        data = s.scalar(select(m.GovernanceEntry.data).where(m.GovernanceEntry.seq == 1))
    assert data is not None
    signed = SignedEntry.decode(bytes(data))
    edited = SignedEntry(signed.data, signed.signatures[:1])  # one signature dropped: no longer the quorum
    with env.custody.sessions() as s, s.begin():
        s.execute(
            update(m.GovernanceEntry)
            .where(m.GovernanceEntry.seq == 1)
            .values(data=edited.encode(), hash=edited.hash.hex())
        )
    env.close()
    env.open()  # a new service replays the log from its genesis
    with pytest.raises(LogCorrupted, match="does not verify"):
        env.custody.authenticate(env.people["viewer"].token)


def test_a_rewritten_genesis_is_not_the_pinned_one(env: CustodyEnv) -> None:
    """Whoever holds the database writes a genesis of their own (the viewer an admin, quorum 1): refused."""
    org, viewer = env.actor("admin").org_id, env.user_id("viewer")
    key = public_hex(Ed25519PrivateKey.generate())
    genesis = Entry(
        org=org,
        seq=0,
        prev=bytes(32),
        proposer=viewer,
        at=1_800_000_000,
        changes=(changes.SetQuorum(1), changes.AddUser(viewer, "viewer", frozenset({"admin"}), bytes.fromhex(key))),
    )
    forged = SignedEntry(genesis.encode(), ())
    with env.custody.sessions() as s, s.begin():
        s.execute(
            update(m.GovernanceEntry)
            .where(m.GovernanceEntry.org_id == org, m.GovernanceEntry.seq == 0)
            .values(data=forged.encode(), hash=forged.hash.hex())
        )
    env.close()
    env.open()
    with pytest.raises(LogCorrupted, match="does not start at its genesis"):
        env.custody.authenticate(env.people["viewer"].token)


# -- the log moves one entry at a time -----------------------------------------------------------------------------


@BOTH_DATABASES
def test_a_proposal_on_a_stale_head_is_superseded_when_another_lands(env: CustodyEnv) -> None:
    alice = env.actor("admin")
    first = env.custody.propose_policy(alice, allow_all())
    second = env.custody.create_user(alice, name="late", roles=["viewer"])
    assert first["seq"] == second["seq"] and first["prev"] == second["prev"]  # both on the same head
    env.approve(second["id"], "admin")
    env.govern(first)
    stale = view(env, second["id"])
    assert stale["state"] == "rejected" and "superseded" in stale["error"]
    with pytest.raises(Conflict, match="not pending approval"):
        env.approve(second["id"], "admin2")
    rejected = [e for e in events(env, "transaction.rejected") if e["subject"] == second["id"]]
    assert rejected[0]["data"]["reason"] == "superseded"
    again = env.custody.create_user(alice, name="late", roles=["viewer"])  # proposed anew, on the new head
    assert again["seq"] == first["seq"] + 1
    env.govern(again)


def test_every_landed_entry_is_in_the_log_with_its_signatures_and_audited(env: CustodyEnv) -> None:
    log = env.custody.governance_log(env.actor("admin").org_id)
    entries = env.custody.governance_entries(env.actor("viewer"), Page(limit=200))["items"]
    assert [e["hash"] for e in entries] == [h.hex() for h in log.hashes]
    assert log.state.quorum == 1 and len(log.state.admins()) == 3
    landed = events(env, "governance.entry")
    assert [e["data"]["seq"] for e in landed] == list(range(len(entries)))
    assert landed[-1]["data"]["hash"] == entries[-1]["hash"]
    # The copy the service hands out is the caller's own: extending it changes nothing in the service.
    log.entries.clear()
    assert len(env.custody.governance_log(env.actor("admin").org_id).entries) == len(entries)


# -- pending work follows governance -----------------------------------------------------------------------------


@BOTH_DATABASES
def test_a_new_policy_judges_pending_withdrawals_again(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    one, two, three = (withdraw(env, vault_id, ETH // 10) for _ in range(3))
    env.approve(one["id"], "approver1")
    # From now on a tenth of an ETH needs approver1 alone, and anything else one of approver1 and approver2.
    document = env.two_approvers_policy(["approver1", "approver2"], threshold=1)
    document["rules"].insert(
        0,
        {
            "name": "no tenths",
            "match": {"assets": ["ETH"], "amount": {"min": str(ETH // 10), "max": str(ETH // 10)}},
            "action": "require_approval",
            "approvals": {
                "combine": "all",
                "groups": [{"name": "just one", "members": [env.user_id("approver1")], "threshold": 1}],
            },
        },
    )
    env.set_policy(document)
    assert wait_final(env, one["id"])["state"] == "confirmed"  # approver1's approval meets the new rule
    changed = view(env, two["id"])
    assert changed["state"] == "pending_approval" and changed["decision"]["rule"] == "no tenths"
    assert changed["requirement"]["groups"][0]["members"] == [env.user_id("approver1")]
    noted = [e for e in events(env, "transaction.requirement_changed") if e["subject"] == two["id"]]
    assert noted and noted[0]["data"]["rule"] == "no tenths"
    env.approve(two["id"], "approver2")  # recorded, but the rule now needs approver1
    assert view(env, two["id"])["state"] == "pending_approval"
    env.set_policy({"rules": [{"name": "frozen", "action": "block"}]})
    for tx in (two, three):
        refused = view(env, tx["id"])
        assert refused["state"] == "rejected" and "frozen" in refused["error"]


def test_a_policy_that_depends_on_the_initiator_refuses_pending_withdrawals_they_did_not_sign(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    pending = withdraw(env, vault_id)
    assert pending["state"] == "pending_approval"
    per_initiator = {
        "rules": [
            {
                "name": "initiators approved",
                "match": {"roles": ["initiator"]},
                "action": "require_approval",
                "approvals": env.two_approvers_policy()["rules"][0]["approvals"],
            }
        ]
    }
    env.set_policy(per_initiator)
    refused = view(env, pending["id"])
    assert refused["state"] == "rejected" and "must be signed by its initiator" in refused["error"], refused


def test_a_more_lenient_policy_approves_what_it_allows(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    pending = withdraw(env, vault_id)
    assert pending["state"] == "pending_approval"
    env.set_policy(allow_all())
    done = wait_final(env, pending["id"])
    assert done["state"] == "confirmed" and done["decision"]["rule"] == "anything goes"


def test_a_disabled_approvers_approval_stops_counting(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    tx = withdraw(env, vault_id)
    env.approve(tx["id"], "approver1")
    env.govern(env.custody.disable_user(env.actor("admin"), env.user_id("approver1")))
    env.approve(tx["id"], "approver2")
    assert view(env, tx["id"])["state"] == "pending_approval"  # approver1's no longer counts
    env.approve(tx["id"], "approver3")
    assert wait_final(env, tx["id"])["state"] == "confirmed"


def test_an_approval_under_a_rotated_key_stops_counting(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    tx = withdraw(env, vault_id)
    env.approve(tx["id"], "approver1")
    fresh = Ed25519PrivateKey.generate()
    env.govern(
        env.custody.set_approval_key(env.actor("admin"), env.user_id("approver1"), approval_key=public_hex(fresh))
    )
    env.people["approver1"].key = fresh
    env.approve(tx["id"], "approver2")
    assert view(env, tx["id"])["state"] == "pending_approval"  # the approval under the old key counts no more
    assert env.approve(tx["id"], "approver1")["state"] == "approved"  # given again, under the new key
    assert wait_final(env, tx["id"])["state"] == "confirmed"


@BOTH_DATABASES
def test_disabling_an_initiator_cancels_their_unsigned_withdrawals(env: CustodyEnv) -> None:
    vault_id, address = env.vault()
    assert env.deployment is not None
    env.deployment.pipeline.stop()  # approved withdrawals stay approved: nothing signs them
    pending = withdraw(env, vault_id)
    approved = withdraw(env, vault_id)
    env.approve(approved["id"], "approver1")
    assert env.approve(approved["id"], "approver2")["state"] == "approved"
    other = env.add_person("other-initiator", ["initiator"], key=True)
    kept = env.custody.submit_withdrawal(other.actor, vault_id=vault_id, asset="ETH", to=DEST, amount=ETH)
    env.govern(env.custody.disable_user(env.actor("admin"), env.user_id("initiator")))
    for tx in (pending, approved):
        cancelled = view(env, tx["id"])
        assert cancelled["state"] == "cancelled" and "initiator was disabled" in cancelled["error"]
        assert cancelled["sub_status"] == "initiator-disabled"
    assert view(env, kept["id"])["state"] == "pending_approval"
    reasons = [e["data"]["reason"] for e in events(env, "transaction.cancelled")]
    assert reasons == ["initiator disabled", "initiator disabled"]
    assert env.chain.nonce(address, "latest") == 0


@BOTH_DATABASES
def test_approvals_expire_and_can_be_given_again(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    tx = withdraw(env, vault_id)
    env.approve(tx["id"], "approver1")
    real = env.custody.uow.clock
    shift = dt.timedelta(seconds=env.custody.settings.approval_lifetime + 60)
    env.custody.uow.clock = lambda: real() + shift
    try:
        shown = view(env, tx["id"])["approvals"]
        assert [a["expired"] for a in shown] == [True]
        assert env.custody.expire_approvals() == 1
        assert env.custody.expire_approvals() == 0  # recorded once
        expired = [e for e in events(env, "approval.expired") if e["subject"] == tx["id"]]
        assert expired[0]["data"]["approver_id"] == env.user_id("approver1")
        env.approve(tx["id"], "approver2")
        assert view(env, tx["id"])["state"] == "pending_approval"  # approver1's expired: one counts
        renewed = env.approve(tx["id"], "approver1")  # an expired approval may be given again
        assert renewed["state"] == "approved"
        assert [a["expired"] for a in renewed["approvals"]] == [False, False]
    finally:
        env.custody.uow.clock = real
    assert wait_final(env, tx["id"])["state"] == "confirmed"


def test_an_expired_governance_signature_stops_counting(env: CustodyEnv) -> None:
    proposal = env.custody.propose_policy(env.actor("admin"), allow_all())
    env.approve(proposal["id"], "admin")
    real = env.custody.uow.clock
    shift = dt.timedelta(seconds=env.custody.settings.approval_lifetime + 60)
    env.custody.uow.clock = lambda: real() + shift
    try:
        assert env.approve(proposal["id"], "admin2")["state"] == "pending_approval"  # the proposer's has expired
        assert env.approve(proposal["id"], "admin")["state"] == "confirmed"
    finally:
        env.custody.uow.clock = real
