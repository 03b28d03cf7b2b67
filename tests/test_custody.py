"""The custody service end to end: real signer-node processes, the embedded chain, SQLite.

The module starts three ``harbour node run`` processes once (tests/custody_env.py);
each test gets its own service on them with a fresh database and a fresh embedded
chain, and an organisation with an admin, a second admin, an initiator, three
approvers, an auditor and a viewer. Tests that configure the nodes differently
start their own. The main path, idempotency and the two crash recoveries run on
PostgreSQL as well. Balances are read back from the chain, never from the service's
own rows. The 200-withdrawal load run is ``bench/load.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select

from custody_env import ETH, CustodyEnv, public_hex
from harbour.custody import auditverify
from harbour.custody import models as m
from harbour.custody.errors import Conflict, Forbidden, Invalid, NotFound
from harbour.custody.service import Founder
from harbour.custody.views import Page
from helpers import wait_until

DEST = "0x2222222222222222222222222222222222222222"
OTHER = "0x3333333333333333333333333333333333333333"
FINAL = ("confirmed", "failed", "rejected", "cancelled")


def wait_final(env: CustodyEnv, tx_id: str, timeout: float = 60.0, states: tuple[str, ...] = FINAL) -> dict[str, Any]:
    def final() -> dict[str, Any] | None:
        tx: dict[str, Any] = env.custody.get_transaction(env.actor("admin"), tx_id)
        return tx if tx["state"] in states else None

    return wait_until(final, timeout, message=f"transaction {tx_id} to reach one of {states}")


def allow_all() -> dict[str, Any]:
    return {"rules": [{"name": "auto-approve", "action": "allow"}]}


def new_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyEnv]:
    """A custody home and its three running signer nodes, shared by the module's tests."""
    shared = CustodyEnv(tmp_path_factory.mktemp("custody"))
    try:
        shared.start_nodes()
        yield shared
    finally:
        shared.stop()


def fresh(request: pytest.FixtureRequest, backend: str = "sqlite") -> CustodyEnv:
    """The module's nodes with a new service on a fresh database (SQLite or PostgreSQL) and a fresh chain."""
    deployment: CustodyEnv = request.getfixturevalue("deployment")
    url: str = request.getfixturevalue("sqlite_url" if backend == "sqlite" else "postgres_db_url")
    request.addfinalizer(deployment.close)
    return deployment.reset(url)


@pytest.fixture(params=["sqlite"])
def env(request: pytest.FixtureRequest) -> CustodyEnv:
    """A fresh service and organisation with the two-approver policy (on PostgreSQL too where a test asks)."""
    e = fresh(request, request.param)
    e.organisation()
    e.set_policy(e.two_approvers_policy())
    return e


BOTH_DATABASES = pytest.mark.parametrize("env", ["sqlite", "postgresql"], indirect=True)


def withdraw(env: CustodyEnv, vault_id: str, amount: int, to: str = DEST, **extra: Any) -> dict[str, Any]:
    return env.custody.submit_withdrawal(
        env.actor("initiator"), vault_id=vault_id, asset="ETH", to=to, amount=amount, **extra
    )


# -- the main path -------------------------------------------------------------------------------------------


@BOTH_DATABASES
def test_withdrawal_needs_two_approvals_then_is_signed_broadcast_and_confirmed(env: CustodyEnv) -> None:
    vault_id, address = env.vault(fund=10 * ETH)
    tx = withdraw(env, vault_id, 3 * ETH, idempotency_key="w-1")
    assert tx["state"] == "pending_approval"
    assert tx["decision"]["rule"] == "treasury approval"

    assert env.approve(tx["id"], "approver1")["state"] == "pending_approval"
    assert env.chain.balance(DEST) == 0
    assert env.approve(tx["id"], "approver2")["state"] == "approved"
    done = wait_final(env, tx["id"])

    assert done["state"] == "confirmed", done["error"]
    assert done["nonce"] == 0 and len(done["signers"]) == 2
    receipt = env.chain.receipt(bytes.fromhex(done["tx_hash"][2:]))
    assert receipt is not None and receipt.status == 1
    assert env.chain.balance(DEST) == 3 * ETH
    assert env.chain.balance(address) == 10 * ETH - 3 * ETH - int(done["fee"])
    assert env.chain.nonce(address, "latest") == 1

    # Every step is in the audit log, in order, and the log verifies.
    kinds = [e["kind"] for e in all_events(env) if e["subject"] == tx["id"]]
    assert kinds == [
        "transaction.submitted",
        "transaction.pending_policy",
        "transaction.pending_approval",
        "approval.approve",
        "approval.approve",
        "transaction.approved",
        "transaction.signing",
        "transaction.signed",
        "transaction.broadcast",
        "transaction.confirmed",
    ]
    with env.custody.uow.read() as s:
        assert auditverify.verify_log(env.custody.audit, s).ok


def all_events(env: CustodyEnv) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        page = env.custody.audit_events(env.actor("auditor"), Page(limit=200, cursor=cursor))
        out.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return out


@BOTH_DATABASES
def test_retried_submission_with_the_same_idempotency_key_is_one_withdrawal(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    first = withdraw(env, vault_id, ETH, idempotency_key="same")
    again = withdraw(env, vault_id, ETH, idempotency_key="same")
    assert again["id"] == first["id"]
    with pytest.raises(Conflict, match="different request"):
        withdraw(env, vault_id, 2 * ETH, idempotency_key="same")
    with env.custody.uow.read() as s:
        assert len(list(s.scalars(select(m.Transaction).where(m.Transaction.kind == "withdrawal")))) == 1


# -- policy and approvals ------------------------------------------------------------------------------------


def test_a_blocking_rule_rejects_and_nothing_is_signed(env: CustodyEnv) -> None:
    vault_id, address = env.vault()
    env.govern(env.custody.add_address_book_entry(env.actor("admin"), name="sanctioned", address=OTHER))
    entry = env.custody.list_address_book(env.actor("admin"), Page())["items"][0]["id"]
    policy = env.two_approvers_policy()
    policy["rules"].insert(
        0,
        {
            "name": "never to sanctioned",
            "match": {"destination": {"kind": "address_book", "entries": [entry]}},
            "action": "block",
        },
    )
    env.set_policy(policy)
    tx = withdraw(env, vault_id, ETH, to=OTHER)
    assert tx["state"] == "rejected"
    assert "never to sanctioned" in tx["error"] and tx["sub_status"] == "policy-blocked"
    assert tx["nonce"] is None and tx["tx_hash"] is None
    explained = env.custody.explain(env.actor("initiator"), vault_id=vault_id, asset="ETH", to=OTHER, amount=ETH)
    assert explained["action"] == "block" and explained["rule"] == "never to sanctioned"
    time.sleep(0.3)
    assert env.chain.nonce(address, "latest") == 0


def test_the_default_is_to_deny(tmp_path: Path) -> None:
    with CustodyEnv(tmp_path) as env:
        env.organisation()  # initial policy: no rules
        vault_id, _ = env.vault()
        tx = withdraw(env, vault_id, ETH)
        assert tx["state"] == "rejected"
        assert "default deny" in tx["error"]


def test_approvers_cannot_approve_twice_their_own_or_without_the_role(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    own = env.add_person("initiator-approver", ["initiator", "approver"], key=True)
    policy = env.two_approvers_policy(["approver1", "approver2", "initiator-approver"])
    env.set_policy(policy)
    tx = env.custody.submit_withdrawal(own.actor, vault_id=vault_id, asset="ETH", to=DEST, amount=ETH)
    with pytest.raises(Forbidden, match="initiator"):
        env.approve(tx["id"], "initiator-approver")
    env.approve(tx["id"], "approver1")
    with pytest.raises(Conflict, match="already decided"):
        env.approve(tx["id"], "approver1")
    with pytest.raises(Forbidden):
        env.custody.approve(env.actor("viewer"), tx["id"], signature="00" * 64)
    with pytest.raises(Forbidden):
        env.custody.approve(env.actor("auditor"), tx["id"], signature="00" * 64)
    # A signature over another transaction's statement is refused.
    other = env.custody.submit_withdrawal(own.actor, vault_id=vault_id, asset="ETH", to=DEST, amount=ETH)
    request = env.custody.approval_request(env.actor("approver2"), other["id"])
    key = env.people["approver2"].key
    assert key is not None
    from harbour.node import quorum

    forged = quorum.sign_approval(key, bytes.fromhex(request["statement"])).hex()
    with pytest.raises(Invalid, match="does not verify"):
        env.custody.approve(env.actor("approver2"), tx["id"], signature=forged)
    assert env.custody.get_transaction(env.actor("admin"), tx["id"])["state"] == "pending_approval"
    # One rejection ends it; later approvals are refused.
    assert env.decide(tx["id"], "approver2", "reject")["state"] == "rejected"
    with pytest.raises(Conflict, match="not pending approval"):
        env.approve(tx["id"], "approver3")


def test_policy_changes_need_the_proposer_and_another_admin(env: CustodyEnv) -> None:
    before = env.custody.get_policy(env.actor("viewer"))["version"]
    change = env.custody.propose_policy(env.actor("admin"), allow_all())
    assert change["state"] == "pending_approval" and change["kind"] == "governance"
    with pytest.raises(Forbidden):
        env.approve(change["id"], "approver1")
    with pytest.raises(Forbidden):
        env.custody.propose_policy(env.actor("initiator"), allow_all())
    assert env.approve(change["id"], "admin2")["state"] == "pending_approval"  # the proposer has not signed
    assert env.custody.get_policy(env.actor("viewer"))["version"] == before
    landed = env.approve(change["id"], "admin")
    assert landed["state"] == "confirmed"
    current = env.custody.get_policy(env.actor("viewer"))
    assert current["version"] == before + 1 and current["transaction_id"] == change["id"]
    assert current["seq"] == landed["seq"]
    assert current["document"]["rules"][0]["name"] == "auto-approve"


# -- money -----------------------------------------------------------------------------------------------------


def test_a_withdrawal_above_the_balance_is_rejected(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, address = env.vault(fund=2 * ETH)
    tx = withdraw(env, vault_id, 3 * ETH)
    assert tx["state"] == "rejected" and "insufficient ETH" in tx["error"]
    assert tx["sub_status"] == "insufficient-funds"
    # In-flight withdrawals are reserved: the second of two 1.5 ETH withdrawals cannot be paid.
    env.set_policy(env.two_approvers_policy())
    first = withdraw(env, vault_id, 3 * ETH // 4)
    second = withdraw(env, vault_id, 3 * ETH // 4)
    third = withdraw(env, vault_id, 3 * ETH // 4)
    assert [first["state"], second["state"], third["state"]] == ["pending_approval", "pending_approval", "rejected"]
    assert env.chain.balance(address) == 2 * ETH


def test_erc20_deposit_is_detected_and_tokens_withdrawn(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, address = env.vault(fund=ETH)
    token = env.chain.deploy_token("Hong Kong Dollar Token", "HKDT", 6, 10**15)
    env.govern(env.custody.add_asset(env.actor("admin"), symbol="HKDT", kind="erc20", contract=token, decimals=6))
    env.chain.token_transfer(token, address, 5_000_000_000)
    deposits = wait_for(
        lambda: [
            d
            for d in env.custody.list_deposits(env.actor("viewer"), Page())["items"]
            if d["asset"] == "HKDT" and d["state"] == "confirmed"
        ]
    )
    assert deposits[0]["amount"] == "5000000000"
    tx = env.custody.submit_withdrawal(
        env.actor("initiator"), vault_id=vault_id, asset="HKDT", to=DEST, amount=1_234_567
    )
    done = wait_final(env, tx["id"])
    assert done["state"] == "confirmed", done["error"]
    assert env.chain.token_balance(token, DEST) == 1_234_567
    assert env.chain.token_balance(token, address) == 5_000_000_000 - 1_234_567
    vault = env.custody.get_vault(env.actor("viewer"), vault_id)
    assert vault["balances"]["HKDT"] == str(5_000_000_000 - 1_234_567)
    too_much = env.custody.submit_withdrawal(
        env.actor("initiator"), vault_id=vault_id, asset="HKDT", to=DEST, amount=10**12
    )
    assert too_much["state"] == "rejected" and "insufficient HKDT" in too_much["error"]


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    return wait_until(check, timeout)


def test_deposits_are_recorded_once_across_restarts_and_rescans(env: CustodyEnv) -> None:
    _, address = env.vault(fund=ETH)
    env.chain.fund(address, 2 * ETH)
    wait_for(lambda: len(env.custody.list_deposits(env.actor("viewer"), Page())["items"]) == 2)
    env.close()
    env.open()
    with env.custody.sessions() as s, s.begin():  # forget how far the scanner got: it rescans from block 0
        s.execute(delete(m.ChainCursor))
    env.chain.fund(address, 3 * ETH)
    items = wait_for(
        lambda: (lambda i: i if len(i) == 3 else None)(env.custody.list_deposits(env.actor("viewer"), Page())["items"])
    )
    assert sorted(int(d["amount"]) for d in items) == [ETH, 2 * ETH, 3 * ETH]
    time.sleep(0.5)
    assert len(env.custody.list_deposits(env.actor("viewer"), Page())["items"]) == 3


# -- faults ----------------------------------------------------------------------------------------------------


def test_a_signer_node_down_another_pair_signs(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, _ = env.vault()
    env.nodes[0].kill()
    done = wait_final(env, withdraw(env, vault_id, ETH)["id"])
    assert done["state"] == "confirmed", done["error"]
    assert done["signers"] == [2, 3]


@BOTH_DATABASES
def test_restart_after_signing_before_broadcast_sends_the_same_transaction_once(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, address = env.vault()
    assert env.deployment is not None
    crashed = threading.Event()

    def crash(address: str) -> None:
        crashed.set()  # the process "dies" here: signed bytes committed, nothing sent

    env.deployment.pipeline._sender.drain = crash  # type: ignore[method-assign]
    tx = withdraw(env, vault_id, ETH)
    wait_for(crashed.is_set)
    before = env.custody.get_transaction(env.actor("admin"), tx["id"])
    assert before["state"] == "signing" and before["tx_hash"] is not None
    env.close()
    assert env.chain.nonce(address, "latest") == 0

    env.open()
    done = wait_final(env, tx["id"])
    assert done["state"] == "confirmed", done["error"]
    assert (done["tx_hash"], done["nonce"]) == (before["tx_hash"], 0)
    assert env.chain.nonce(address, "latest") == 1
    assert env.chain.balance(DEST) == ETH


@BOTH_DATABASES
def test_restart_after_the_nonce_before_the_signature_signs_the_same_nonce_again(env: CustodyEnv) -> None:
    env.set_policy(env.two_approvers_policy())
    vault_id, address = env.vault()
    assert env.deployment is not None
    crashed = threading.Event()

    def crash(tx_id: str) -> bool:
        crashed.set()  # dies after the nonce was committed, before a signature was stored
        return False

    env.deployment.pipeline._sign = crash  # type: ignore[method-assign]
    tx = withdraw(env, vault_id, ETH)
    env.approve(tx["id"], "approver1")
    env.approve(tx["id"], "approver2")
    wait_for(crashed.is_set)
    before = env.custody.get_transaction(env.actor("admin"), tx["id"])
    env.close()
    assert before["state"] == "signing" and before["nonce"] == 0 and before["tx_hash"] is None

    env.open()
    done = wait_final(env, tx["id"])
    assert done["state"] == "confirmed", done["error"]
    assert done["nonce"] == 0 and done["digest"] == before["digest"]
    assert env.chain.nonce(address, "latest") == 1
    assert env.chain.balance(DEST) == ETH


def test_20_concurrent_withdrawals_end_confirmed_or_rejected_and_reconcile(env: CustodyEnv) -> None:
    """Overdrawn by concurrent submissions (with client retries): each one ends final, nothing is lost.

    The same run with 200 withdrawals against 100 ETH, timed, is ``bench/load.py``.
    """
    env.set_policy(allow_all())
    funding = 10 * ETH
    vault_id, address = env.vault(fund=funding)
    amount = 6 * ETH // 10
    recipients = [f"0x{i:040x}" for i in range(0x1000, 0x1000 + 8)]

    def submit(i: int) -> dict[str, Any]:
        key = f"load-{i}"
        tx = withdraw(env, vault_id, amount, to=env_checksum(recipients[i % 8]), idempotency_key=key)
        if i % 10 == 0:  # a client retry: must return the same withdrawal
            assert (
                withdraw(env, vault_id, amount, to=env_checksum(recipients[i % 8]), idempotency_key=key)["id"]
                == tx["id"]
            )
        return tx

    with ThreadPoolExecutor(8) as pool:
        submitted = list(pool.map(submit, range(20)))
    assert len({t["id"] for t in submitted}) == 20
    final = [wait_final(env, t["id"], timeout=60) for t in submitted]
    by_state: dict[str, list[dict[str, Any]]] = {}
    for t in final:
        by_state.setdefault(t["state"], []).append(t)
    assert set(by_state) <= {"confirmed", "rejected"}, {k: len(v) for k, v in by_state.items()}
    confirmed = by_state["confirmed"]
    rejected = by_state.get("rejected", [])
    assert all("insufficient" in t["error"] for t in rejected)
    assert len(confirmed) + len(rejected) == 20
    assert len(confirmed) >= 15  # 10 ETH pays 16 of 0.6 ETH, less the gas reserved in flight

    nonces = sorted(t["nonce"] for t in confirmed)
    assert nonces == list(range(len(confirmed)))
    assert env.chain.nonce(address, "latest") == len(confirmed)
    fees = sum(int(t["fee"]) for t in confirmed)
    assert env.chain.balance(address) == funding - len(confirmed) * amount - fees
    assert sum(env.chain.balance(env_checksum(r)) for r in recipients) == len(confirmed) * amount
    with env.custody.sessions() as s:
        assert len(list(s.scalars(select(m.Transaction).where(m.Transaction.kind == "withdrawal")))) == 20
        assert auditverify.verify_log(env.custody.audit, s).ok


def env_checksum(address: str) -> str:
    from harbour.chains.eip1559 import parse_address
    from harbour.chains.ethereum import checksum_address

    return checksum_address(parse_address(address))


def test_unknown_and_foreign_objects_are_not_found(env: CustodyEnv) -> None:
    vault_id, _ = env.vault()
    with pytest.raises(NotFound):
        env.custody.get_transaction(env.actor("viewer"), "no-such-id")
    with pytest.raises(NotFound):
        env.custody.get_vault(env.actor("viewer"), "0" * 36)
    other = env.custody.bootstrap("Another Custodian", [Founder("mallory", ("admin",), public_hex(new_key()))])
    mallory = env.custody.authenticate(other["credentials"][0]["token"])
    with pytest.raises(NotFound):
        env.custody.get_vault(mallory, vault_id)
    assert env.custody.list_vaults(mallory, Page())["items"] == []
    with pytest.raises(Invalid):
        env.custody.submit_withdrawal(env.actor("initiator"), vault_id=vault_id, asset="ETH", to="0x12", amount=1)
    with pytest.raises(Invalid):
        env.custody.submit_withdrawal(env.actor("initiator"), vault_id=vault_id, asset="ETH", to=DEST, amount=0)
    with pytest.raises(Invalid):
        env.custody.submit_withdrawal(env.actor("initiator"), vault_id=vault_id, asset="ETH", to=DEST, amount=1.5)  # type: ignore[arg-type]


# -- the same flows on a real Ethereum node and on PostgreSQL ----------------------------------------------------


def test_withdrawals_on_anvil(tmp_path: Path, anvil: str) -> None:
    with CustodyEnv(tmp_path, chain_url=anvil) as env:
        env.organisation()
        env.set_policy(env.two_approvers_policy())
        vault_id, address = env.vault(fund=5 * ETH)
        tx = withdraw(env, vault_id, 2 * ETH)
        env.approve(tx["id"], "approver2")
        env.approve(tx["id"], "approver3")
        done = wait_final(env, tx["id"])
        assert done["state"] == "confirmed", done["error"]
        assert env.chain.balance(DEST) >= 2 * ETH
        assert env.chain.balance(address) == 5 * ETH - 2 * ETH - int(done["fee"])
        deposits = wait_for(lambda: env.custody.list_deposits(env.actor("viewer"), Page())["items"])
        assert [d["amount"] for d in deposits] == [str(5 * ETH)]
        env.set_policy(allow_all())
        start = env.chain.nonce(address, "latest")
        with ThreadPoolExecutor(8) as pool:
            many = list(pool.map(lambda i: withdraw(env, vault_id, ETH // 100), range(20)))
        final = [wait_final(env, t["id"]) for t in many]
        assert {t["state"] for t in final} == {"confirmed"}
        assert sorted(t["nonce"] for t in final) == list(range(start, start + 20))


def test_withdrawals_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text("CREATE DATABASE custody_flow"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/custody_flow"
    try:
        with CustodyEnv(tmp_path, database=url) as env:
            env.organisation()
            env.set_policy(allow_all())
            vault_id, address = env.vault(fund=10 * ETH)
            with ThreadPoolExecutor(8) as pool:
                many = list(
                    pool.map(lambda i: withdraw(env, vault_id, ETH // 2, idempotency_key=f"pg-{i % 30}"), range(40))
                )
            assert len({t["id"] for t in many}) == 30
            final = [wait_final(env, t["id"]) for t in {t["id"]: t for t in many}.values()]
            assert {t["state"] for t in final} <= {"confirmed", "rejected"}
            confirmed = [t for t in final if t["state"] == "confirmed"]
            assert sorted(t["nonce"] for t in confirmed) == list(range(len(confirmed)))
            fees = sum(int(t["fee"]) for t in confirmed)
            assert env.chain.balance(address) == 10 * ETH - len(confirmed) * ETH // 2 - fees
            with env.custody.uow.read() as s:
                assert auditverify.verify_log(env.custody.audit, s).ok
    finally:
        admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text("DROP DATABASE IF EXISTS custody_flow WITH (FORCE)"))
        admin.dispose()


# -- regressions from the security review ------------------------------------------------------------------------


@pytest.fixture
def lite(request: pytest.FixtureRequest) -> CustodyEnv:
    e = fresh(request)
    e.organisation()
    return e


def test_a_stale_policy_proposal_cannot_replace_a_newer_policy(lite: CustodyEnv) -> None:
    lenient = lite.custody.propose_policy(lite.actor("admin"), allow_all())
    lite.approve(lenient["id"], "admin")
    lite.set_policy(lite.two_approvers_policy())  # adopted meanwhile
    version = lite.custody.get_policy(lite.actor("viewer"))["version"]
    late = lite.custody.get_transaction(lite.actor("admin"), lenient["id"])
    assert late["state"] == "rejected" and "superseded" in late["error"] and late["sub_status"] == "superseded"
    with pytest.raises(Conflict, match="not pending approval"):
        lite.approve(lenient["id"], "admin2")
    assert lite.custody.get_policy(lite.actor("viewer"))["version"] == version


def test_small_order_approval_keys_are_refused(lite: CustodyEnv) -> None:
    identity = "01" + "00" * 31  # the Ed25519 identity point: (R = identity, S = 0) verifies for every message
    with pytest.raises(Invalid, match="approval_key"):
        lite.custody.create_user(lite.actor("admin"), name="forger", roles=["approver"], approval_key=identity)
    with pytest.raises(Invalid, match="approval_key"):
        lite.custody.set_approval_key(lite.actor("admin"), lite.user_id("approver1"), approval_key=identity)


def test_the_same_approval_key_may_serve_two_organisations(lite: CustodyEnv) -> None:
    key = lite.people["approver1"].actor
    public = next(
        u for u in lite.custody.list_users(lite.actor("admin"), Page(limit=200))["items"] if u["id"] == key.user_id
    )
    other = lite.custody.bootstrap(
        "Second Custodian",
        [
            Founder("root2", ("admin",), public_hex(new_key())),
            Founder("same-person", ("approver",), public["approval_key"]),
        ],
    )
    made = next(u for u in other["users"] if u["name"] == "same-person")
    assert made["approval_key"] == public["approval_key"]


def test_a_committee_larger_than_a_quorum_the_nodes_could_carry_is_judged_from_the_log(lite: CustodyEnv) -> None:
    """Seventy approvers in one group: the nodes read the group from the policy they hold, not from the evidence.

    Version-1 evidence carried the quorum (at most 64 members to a group), so such
    a policy could never be signed; version 2 carries only the approvals given.
    """
    big = lite.add_people([f"a{i:02d}" for i in range(70)], ["approver"])
    members = [p.actor.user_id for p in big]
    lite.set_policy(
        {
            "rules": [
                {
                    "name": "huge committee",
                    "action": "require_approval",
                    "approvals": {"combine": "all", "groups": [{"name": "all", "members": members, "threshold": 2}]},
                },
            ]
        }
    )
    vault_id, address = lite.vault()
    tx = withdraw(lite, vault_id, ETH)
    lite.approve(tx["id"], "a00")
    lite.approve(tx["id"], "a69")
    done = wait_final(lite, tx["id"])
    assert done["state"] == "confirmed", done["error"]
    assert lite.chain.nonce(address, "latest") == 1


def test_a_fee_rise_after_approval_above_its_maximum_fee_waits_without_taking_a_nonce(lite: CustodyEnv) -> None:
    lite.set_policy(lite.two_approvers_policy())
    vault_id, address = lite.vault(fund=ETH)
    normal = lite.chain.base_fee
    first = withdraw(lite, vault_id, ETH - 10**15)  # leaves 0.001 ETH: plenty for gas at today's fees
    second = withdraw(lite, vault_id, 10**14)
    assert first["state"] == second["state"] == "pending_approval"
    base_fee = normal()
    lite.chain.base_fee = lambda: base_fee * 1000  # type: ignore[method-assign]
    for tx in (first, second):
        lite.approve(tx["id"], "approver1")
        lite.approve(tx["id"], "approver2")
    view = wait_for(
        lambda: (lambda v: v if v["error"] else None)(lite.custody.get_transaction(lite.actor("admin"), first["id"]))
    )
    assert view["state"] == "approved" and view["nonce"] is None and "waiting for fees to fall" in view["error"]
    assert view["sub_status"] == "waiting-for-fees"
    assert lite.custody.cancel(lite.actor("initiator"), first["id"])["state"] == "cancelled"
    lite.chain.base_fee = normal  # type: ignore[method-assign]
    done = wait_final(lite, second["id"])
    assert done["state"] == "confirmed" and done["nonce"] == 0
    assert lite.chain.nonce(address, "latest") == 1


def test_disabling_a_user_and_revoking_credentials(lite: CustodyEnv) -> None:
    from harbour.custody.errors import Unauthorized

    admin, initiator = lite.actor("admin"), lite.people["initiator"]
    second = lite.custody.issue_credential(admin, initiator.actor.user_id)["token"]
    own_id = second.split("_")[1]
    with pytest.raises(Forbidden):
        lite.custody.revoke_credential(lite.actor("viewer"), own_id)  # someone else's credential
    assert lite.custody.revoke_credential(initiator.actor, own_id)["revoked"] is True
    with pytest.raises(Unauthorized):
        lite.custody.authenticate(second)
    lite.custody.authenticate(initiator.token)  # the other credential still works
    with pytest.raises(Forbidden):
        lite.custody.disable_user(lite.actor("approver1"), initiator.actor.user_id)
    proposal = lite.custody.disable_user(admin, initiator.actor.user_id)
    lite.custody.authenticate(initiator.token)  # nothing changes until the admins have signed it
    lite.govern(proposal)
    users = {u["id"]: u for u in lite.custody.list_users(admin, Page(limit=200))["items"]}
    assert users[initiator.actor.user_id]["disabled"] is True
    with pytest.raises(Unauthorized):
        lite.custody.authenticate(initiator.token)
    with pytest.raises(Conflict, match="disabled"):
        lite.custody.issue_credential(admin, initiator.actor.user_id)
    events = all_events(lite)
    assert "credential.revoked" in [e["kind"] for e in events]
    landed = [e for e in events if e["kind"] == "governance.entry"][-1]
    assert landed["data"]["changes"] == [f"disable user {initiator.actor.user_id}"]


# -- group commit (SQLite) -------------------------------------------------------------------------


def _grouped(lite: CustodyEnv, works: list[Any]) -> list[tuple[str, Any]]:
    """Run ``works`` through UnitOfWork.write from one thread each, all queued before any runs: one group."""
    custody = lite.custody
    outcomes: list[tuple[str, Any]] = [("", None)] * len(works)

    def call(i: int) -> None:
        try:
            outcomes[i] = ("ok", custody.uow.write(works[i]))
        except Exception as exc:
            outcomes[i] = ("error", exc)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    with custody.uow._writer:  # held here: every call queues up behind it
        for thread in threads:
            thread.start()
        wait_for(lambda: len(custody.uow._waiting) == len(works))
    for thread in threads:
        thread.join()
    return outcomes


def _event_work(custody: Any, name: str, fail: bool = False) -> Any:
    def work(s: Any) -> str:
        custody.uow.event(s, None, "test.grouped", name, org_id=None)
        custody.uow.event(s, None, "test.grouped", name + "-again", org_id=None)
        if fail:
            raise Conflict(f"{name} refused after writing")
        return name

    return work


def test_a_failing_write_in_a_group_is_rolled_back_alone(lite: CustodyEnv) -> None:
    custody = lite.custody
    works = [_event_work(custody, "a"), _event_work(custody, "b", fail=True), _event_work(custody, "c")]
    outcomes = _grouped(lite, works)
    assert outcomes[0] == ("ok", "a") and outcomes[2] == ("ok", "c")
    assert outcomes[1][0] == "error" and isinstance(outcomes[1][1], Conflict)
    with custody.readers() as s:
        events = custody.audit.events(s, org_id=None, limit=1000)
        subjects = [e["subject"] for e in events if e["kind"] == "test.grouped"]
        assert subjects == ["a", "a-again", "c", "c-again"]  # b's events went with its savepoint
        assert auditverify.verify_log(custody.audit, s).ok
    assert custody.uow.write(_event_work(custody, "d")) == "d"  # the log goes on from the right index


def test_a_failed_group_commit_fails_every_caller_and_writes_nothing(lite: CustodyEnv) -> None:
    from sqlalchemy import event

    custody = lite.custody
    with custody.readers() as s:
        before = custody.audit.size(s)

    def sabotage(s: Any) -> str:
        def fail(connection: Any) -> None:
            raise OSError("disk full")

        event.listen(s.connection(), "commit", fail, once=True)  # the group's COMMIT, not a savepoint's release
        return "sabotage"

    outcomes = _grouped(lite, [_event_work(custody, "a"), sabotage, _event_work(custody, "c")])
    assert [kind for kind, _ in outcomes] == ["error"] * 3
    assert all(isinstance(error, OSError) for _, error in outcomes)
    with custody.readers() as s:
        assert custody.audit.size(s) == before
        assert auditverify.verify_log(custody.audit, s).ok
    assert custody.uow.write(_event_work(custody, "after")) == "after"
