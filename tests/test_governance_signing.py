"""Custody withdrawals judged by the signer nodes themselves, from the organisation's governance log: the attacks.

Three ``harbour node run`` processes, hardened as far as a node's own settings go
(``require_evidence``, and ``min_approvals`` 2, which a key of an organisation
does not use: the organisation's policy decides), are shared by the module; each
test gets a fresh service on them (a new SQLite database and embedded chain;
anvil for the single-admin drain) and a fresh organisation: two admins (quorum
1), an initiator, three approvers. Every vault key is a key of the organisation,
so each node decides each withdrawal from the log it verified itself: the
policy, the approvers and their keys, the vaults, the assets and the address
book. The service's word counts for nothing there.

The attacker is, in turn: one admin with her own token and key; whoever can
write the service's database (SQL on its tables, not the API); and a
compromised service that holds the authority key too, so it issues any
certificate with any evidence (:func:`forge` does that for it). Each time the
nodes refuse, with their reason, and nothing moves on chain.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import insert, select, update

from custody_env import ETH, CustodyEnv, cfg_page, public_hex
from drain import one_admin_drain
from governance_env import bot_policy
from harbour.chains.eip1559 import Eip1559Transaction, parse_address
from harbour.chains.ethereum import checksum_address
from harbour.crypto.secp256k1 import SECP256K1
from harbour.custody import models as m
from harbour.custody import signing, states, tally
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.service import Founder
from harbour.custody.signer import Signature
from harbour.custody.views import Page
from harbour.governance import changes as c
from harbour.governance.holding import Holding
from harbour.governance.log import SignedEntry, sign_entry
from harbour.governance.request import request_body, sign_request
from harbour.node import signlog
from harbour.node.config import LOG_FILE
from harbour.node.coordinator import ClusterError, Coordinator
from harbour.node.identity import NodeDescriptor
from harbour.node.quorum import ETH as NATIVE
from harbour.node.quorum import GovernedEvidence, Intent, approval_statement, sign_approval
from helpers import wait_until

DEST = "0x2222222222222222222222222222222222222222"
ELSEWHERE = "0x3333333333333333333333333333333333333333"
KNOWN = "0x3333333333333333333333333333333333333333"
STRANGER = "0x4444444444444444444444444444444444444444"
PATH = "m/0"
FINAL = ("confirmed", "failed", "rejected", "cancelled")
HARDENED = {"require_evidence": True, "min_approvals": 2}


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyEnv]:
    shared = CustodyEnv(tmp_path_factory.mktemp("signing"), node_options=HARDENED)
    try:
        shared.start_nodes()
        yield shared
    finally:
        shared.stop()


@pytest.fixture
def env(request: pytest.FixtureRequest, deployment: CustodyEnv, sqlite_url: str) -> CustodyEnv:
    request.addfinalizer(deployment.close)
    deployment.reset(sqlite_url)
    deployment.organisation()
    return deployment


# -- helpers -------------------------------------------------------------------------------------------------------


def allow_all() -> dict[str, Any]:
    return {"rules": [{"name": "anything goes", "action": "allow"}]}


def withdraw(env: CustodyEnv, vault_id: str, amount: int, to: str = DEST) -> dict[str, Any]:
    return env.custody.submit_withdrawal(env.actor("initiator"), vault_id=vault_id, asset="ETH", to=to, amount=amount)


def view(env: CustodyEnv, tx_id: str) -> dict[str, Any]:
    return env.custody.get_transaction(env.actor("admin"), tx_id)


def wait_final(env: CustodyEnv, tx_id: str) -> dict[str, Any]:
    return wait_until(lambda: (lambda t: t if t["state"] in FINAL else None)(view(env, tx_id)), 60)


def org_id(env: CustodyEnv) -> str:
    return env.actor("admin").org_id


def genesis_hex(env: CustodyEnv) -> str:
    return env.custody.governance_log(org_id(env)).genesis_hash.hex()


def on_nodes(env: CustodyEnv, step: Callable[[Coordinator], Any]) -> Any:
    """Run ``step`` with a coordinator of the test's own (as anyone who can reach the nodes can)."""

    async def run() -> Any:
        async with Coordinator(timeout=30) as co:
            return await step(co)

    return asyncio.run(run())


def rpc(env: CustodyEnv, node: NodeDescriptor, request: dict[str, Any]) -> dict[str, Any]:
    answer: dict[str, Any] = on_nodes(env, lambda co: co._call(node, request))
    return answer


def node_heads(env: CustodyEnv) -> set[tuple[int, bytes]]:
    heads = on_nodes(env, lambda co: co.heads(env.custody.signer.nodes, genesis_hex(env)))
    return set(heads.values())


def service_head(env: CustodyEnv) -> tuple[int, bytes]:
    head = env.custody.governance_head(env.actor("viewer"))
    return head["seq"], bytes.fromhex(head["hash"])


def sql(env: CustodyEnv, *statements: Any) -> None:
    """Write to the service's tables directly, in one database transaction, as someone holding the database."""
    with env.custody.sessions() as s, s.begin():
        for statement in statements:
            s.execute(statement)


def force_approved(env: CustodyEnv, tx_id: str) -> dict[str, Any]:
    """The compromised service marks a withdrawal approved in SQL and hands it to its pipeline; its final view."""
    sql(env, update(m.Transaction).where(m.Transaction.id == tx_id).values(state=states.APPROVED, error=None))
    assert env.deployment is not None
    env.deployment.pipeline.submit(tx_id)
    return wait_final(env, tx_id)


def forge(
    env: CustodyEnv,
    vault_id: str,
    *,
    to: str,
    amount: int,
    approvers: Sequence[Ed25519PrivateKey] = (),
    transaction_id: str | None = None,
    initiation: bytes = b"",
    max_fee: int | Literal["as built"] | None = "as built",
    fee_factor: int = 1,
    replaces: str | None = None,
) -> Signature:
    """As a compromised service that holds the authority key: a withdrawal of its own making, signed if the nodes agree.

    It builds the transaction, the version-2 evidence (citing the log's real head,
    which the nodes hold) with approvals by ``approvers`` over the withdrawal's
    statement, and has :class:`harbour.custody.signer.Signer` issue the certificate
    with the authority key and push the log first. The intent's maximum fee is
    what the transaction may pay unless ``max_fee`` says otherwise (None: none
    stated); ``fee_factor`` multiplies the fee cap; ``replaces`` names the
    transaction it replaces at its nonce.
    """
    vault = env.custody.get_vault(env.actor("admin"), vault_id)
    sender = vault["addresses"][0]["address"]
    recipient = checksum_address(parse_address(to))
    cap, tip = env.chain.fees()
    tx = Eip1559Transaction(
        chain_id=env.chain.chain_id,
        nonce=env.chain.nonce(sender, "pending"),
        max_priority_fee_per_gas=tip,
        max_fee_per_gas=cap * fee_factor,
        gas_limit=21_000,
        to=parse_address(recipient),
        value=amount,
        data=b"",
    )
    tx_id = transaction_id or m.new_id()
    stated = tx.gas_limit * tx.max_fee_per_gas if max_fee == "as built" else max_fee
    intent = Intent(env.chain.chain_id, sender, recipient, NATIVE, amount, max_fee=stated, replaces=replaces)
    statement = approval_statement(
        org=org_id(env), transaction_id=tx_id, key_id=vault["key_id"], path=PATH, intent=intent
    )
    log = env.custody.governance_log(org_id(env))
    evidence = GovernedEvidence(
        org=log.genesis_hash.hex(),
        transaction_id=tx_id,
        intent=intent,
        transaction=tx,
        initiator=env.user_id("initiator"),
        head=log.head,
        approvals=[(k.public_key().public_bytes_raw(), sign_approval(k, statement)) for k in approvers],
        initiation=initiation,
    )
    return env.custody.signer.sign(vault["key_id"], PATH, tx.signing_hash(), evidence=evidence.encode(), log=log)


def refused_by_nodes(env: CustodyEnv, vault_id: str, reason: str, needle: str, **forged: Any) -> None:
    with pytest.raises(ClusterError) as exc:
        forge(env, vault_id, **forged)
    assert f"approval refused ({reason})" in str(exc.value), exc.value
    assert needle in str(exc.value), exc.value


def key(person: Any) -> Ed25519PrivateKey:
    assert person.key is not None
    private: Ed25519PrivateKey = person.key
    return private


# -- the wiring ----------------------------------------------------------------------------------------------------


def test_bootstrap_enrols_the_genesis_and_every_vault_key_belongs_to_the_organisation(env: CustodyEnv) -> None:
    names = sorted(d.name for d in env.custody.signer.nodes)
    genesis = env.custody.governance_log(org_id(env)).genesis
    assert node_heads(env) == {(0, genesis.hash)}
    vault_id, _ = env.vault(fund=0)
    key_id = env.custody.get_vault(env.actor("admin"), vault_id)["key_id"]
    for node in env.custody.signer.nodes:
        answer = rpc(env, node, {"op": "key", "key_id": key_id})
        assert answer["org"] == genesis.hash.hex()
    # Each entry that landed (the asset, the vault) was pushed to every node at once, not at the first signature.
    wait_until(lambda: node_heads(env) == {service_head(env)}, message="every node at the service's head")
    again = env.custody.bootstrap(
        "Second Custodian", [Founder("root", ("admin",), public_hex(Ed25519PrivateKey.generate()))]
    )
    assert again["enrolled"] == names


def test_an_allow_rule_signs_on_hardened_nodes_without_any_human_approval(env: CustodyEnv) -> None:
    """The nodes' own floor (two approvers) is for keys of no organisation: this one's policy says allow."""
    env.set_policy(allow_all())
    vault_id, address = env.vault(fund=5 * ETH)
    done = wait_final(env, withdraw(env, vault_id, 2 * ETH)["id"])
    assert done["state"] == "confirmed", done["error"]
    assert done["approvals"] == [] and env.chain.balance(DEST) == 2 * ETH
    assert env.chain.balance(address) == 3 * ETH - int(done["fee"])
    judged = []
    for node in env.nodes:
        for entry in signlog.entries(node.directory / LOG_FILE):
            if entry.outcome == "started" and entry.reason.startswith("governed ") and done["id"] in entry.reason:
                judged.append(node.name)
    assert len(judged) == 2, "each signer judged it from the organisation's log and recorded it"


def _bot_policy(env: CustodyEnv) -> dict[str, Any]:
    """The initiator (a payments bot) may pay up to 1 ETH without approval; nobody else may pay anything."""
    return bot_policy(env.user_id("initiator"), ETH)


def _signed(env: CustodyEnv, vault_id: str, amount: int, signer: Ed25519PrivateKey) -> dict[str, str]:
    request_id = m.new_id()
    body = request_body(
        chain_id=env.chain.chain_id,
        org=bytes.fromhex(genesis_hex(env)),
        transaction_id=request_id,
        vault=vault_id,
        asset="ETH",
        destination=DEST,
        amount=amount,
    )
    return {"request_id": request_id, "signature": sign_request(signer, body).hex()}


def test_a_rule_for_one_initiator_pays_only_what_that_initiator_signed(env: CustodyEnv) -> None:
    env.set_policy(_bot_policy(env))
    vault_id, _ = env.vault(fund=5 * ETH)
    bot = env.actor("initiator")
    # Unsigned, or signed by a key that is not the bot's: refused at once, and nothing is recorded.
    with pytest.raises(Invalid, match="must be signed by its initiator"):
        env.custody.submit_withdrawal(bot, vault_id=vault_id, asset="ETH", to=DEST, amount=ETH // 2)
    forged = _signed(env, vault_id, ETH // 2, Ed25519PrivateKey.generate())
    with pytest.raises(Invalid, match="not its initiator's"):
        env.custody.submit_withdrawal(bot, vault_id=vault_id, asset="ETH", to=DEST, amount=ETH // 2, **forged)
    listed = env.custody.list_transactions(env.actor("viewer"), Page(limit=100))["items"]
    assert [t for t in listed if t["kind"] == "withdrawal"] == []
    # Signed by the bot: allowed by the rule, on the nodes' own judgement, and paid.
    mine = _signed(env, vault_id, ETH // 2, key(env.people["initiator"]))
    tx = env.custody.submit_withdrawal(bot, vault_id=vault_id, asset="ETH", to=DEST, amount=ETH // 2, **mine)
    assert tx["id"] == mine["request_id"] and tx["initiator_signature"] == mine["signature"]
    assert wait_final(env, tx["id"])["state"] == "confirmed"
    # The same signed request again is the same transaction id: refused, never paid twice.
    with pytest.raises(Conflict, match="used once"):
        env.custody.submit_withdrawal(bot, vault_id=vault_id, asset="ETH", to=DEST, amount=ETH // 2, **mine)
    assert env.chain.balance(DEST) == ETH // 2


def test_a_compromised_service_cannot_pay_in_an_initiators_name(env: CustodyEnv) -> None:
    """The service names the bot as the initiator of a payment the bot never signed: the nodes refuse it."""
    env.set_policy(_bot_policy(env))
    vault_id, address = env.vault(fund=5 * ETH)
    refused_by_nodes(env, vault_id, "policy", "must be signed by its initiator", to=DEST, amount=ETH // 2)
    # The bot signed a payment of 0.5 ETH to DEST; the service pays 0.5 ETH and 1 wei, or pays it elsewhere.
    mine = _signed(env, vault_id, ETH // 2, key(env.people["initiator"]))
    signed_by_bot: dict[str, Any] = {
        "transaction_id": mine["request_id"],
        "initiation": bytes.fromhex(mine["signature"]),
    }
    refused_by_nodes(env, vault_id, "policy", "not its initiator's", to=DEST, amount=ETH // 2 + 1, **signed_by_bot)
    refused_by_nodes(env, vault_id, "policy", "not its initiator's", to=ELSEWHERE, amount=ETH // 2, **signed_by_bot)
    assert env.chain.nonce(address, "latest") == 0
    # What the bot signed, exactly, the nodes sign.
    assert forge(env, vault_id, to=DEST, amount=ETH // 2, **signed_by_bot).signers


def test_a_signer_node_behind_on_the_log_is_brought_to_the_head_by_the_signing(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, _ = env.vault()
    # Each entry is pushed to the nodes as it lands, in the background: node 1 misses only the next one.
    wait_until(lambda: node_heads(env) == {service_head(env)}, message="every node at the service's head")
    env.nodes[0].kill()
    env.govern(env.custody.add_address_book_entry(env.actor("admin"), name="known", address=KNOWN))
    env.nodes[0].start()
    behind = on_nodes(env, lambda co: co.heads(env.custody.signer.nodes[:1], genesis_hex(env)))
    assert behind == {"node1": (service_head(env)[0] - 1, env.custody.governance_log(org_id(env)).hashes[-2])}
    env.nodes[2].kill()  # so the signers are nodes 1 and 2: the one behind must take part
    try:
        done = wait_final(env, withdraw(env, vault_id, ETH)["id"])
    finally:
        env.nodes[2].start()
    assert done["state"] == "confirmed", done["error"]
    # Node 1 signed (node 3 was down), and the signing itself brought its log to the service's head.
    assert node_heads(env) == {service_head(env)}


def test_nodes_ahead_of_the_service_make_signing_wait_and_retry_until_it_catches_up(env: CustodyEnv) -> None:
    """The admins push an entry to the nodes themselves before the service lands it (anyone may push).

    The service's log is then behind the nodes': a signing it starts cites an
    older head, so it is retried, not failed, and goes through once the entry
    lands in the service too.
    """
    env.set_policy(allow_all())
    vault_id, _ = env.vault()
    proposal = env.custody.add_address_book_entry(env.actor("admin"), name="known", address=KNOWN)
    with env.custody.sessions() as s:
        data = s.scalar(select(m.Transaction.entry).where(m.Transaction.id == proposal["id"]))
    assert data is not None
    signatures = [
        (key(env.people[who]).public_key().public_bytes_raw(), sign_entry(key(env.people[who]), data))
        for who in ("admin", "admin2")
    ]
    ahead = env.custody.governance_log(org_id(env))
    ahead.append(SignedEntry(data, tuple(signatures)))
    on_nodes(env, lambda co: co.push(env.custody.signer.nodes, ahead))
    tx = withdraw(env, vault_id, ETH)
    waiting = wait_until(lambda: (lambda t: t if t["error"] else None)(view(env, tx["id"])), 30)
    assert waiting["state"] == "signing" and "signing failed, will retry: governance" in waiting["error"]
    assert waiting["sub_status"] == "signing-retry"
    env.govern(proposal)
    done = wait_final(env, tx["id"])
    assert done["state"] == "confirmed", done["error"]


def test_a_key_of_no_organisation_is_never_made_and_never_becomes_a_vault(env: CustodyEnv) -> None:
    """The deployment's nodes serve organisations only: a keygen without ``org`` is refused on the authority's word.

    And a key claimed without every holder's statement (as one made elsewhere would be) is no ``vault.add``.
    """
    admin = env.actor("admin")
    signer = env.custody.signer
    with pytest.raises(ClusterError, match=r"approval refused \(no-organisation\)"):
        signer.keygen(f"loose-{secrets.token_hex(4)}", 2, signer.nodes)
    genesis = env.custody.ledger.log(admin.org_id).genesis_hash
    claimed = Holding(
        org=genesis,
        key_id=f"loose-{secrets.token_hex(4)}",
        public_key=SECP256K1.base_mul(secrets.randbelow(2**255) + 1).encode(),
        chain_code=secrets.token_bytes(32),
        threshold=2,
        holders=tuple(sorted(d.sign_pk for d in signer.nodes)),
    )
    with pytest.raises(Conflict, match="every holder's statement is needed"):
        env.custody.governance.propose(admin, lambda state: [c.AddVault(m.new_id(), "old", claimed, ())])


@pytest.mark.parametrize(
    ("error", "final"),
    [
        (ClusterError("approval", "node node2: approval refused (policy): blocked", "node2"), True),
        (ClusterError("approval", "node node2: approval refused (quorum): missing", "node2"), True),
        (ClusterError("approval", "node node1: approval refused (reused): pay once", "node1"), True),
        (ClusterError("approval", "node node1: approval refused (governance): push first", "node1"), False),
        (ClusterError("approval", "node node3: approval refused (history): stale", "node3"), False),
        (ClusterError("governance", "node node1 holds entry 4, which this log does not"), False),
        (ClusterError("unknown-key", "node node1: no key vault-1", "node1"), True),
        (ClusterError("unreachable", "node node1 did not answer", "node1"), False),
        (ClusterError("timeout", "session timed out after 30 s"), False),
    ],
)
def test_a_refusal_fails_the_withdrawal_only_if_a_retry_cannot_change_it(error: ClusterError, final: bool) -> None:
    message = signing.refusal(error)
    assert (message is not None) == final
    assert message is None or str(error) in message


# -- one admin alone, on anvil -------------------------------------------------------------------------------------


def test_one_admins_drain_is_refused_at_its_first_step_and_moves_nothing_on_anvil(
    request: pytest.FixtureRequest, deployment: CustodyEnv, sqlite_url: str, anvil: str
) -> None:
    """The drain the issue confirmed on anvil, against the wired service: the service refuses each step (drain.py).

    At the nodes, each of her entries, signed by her and by the sock puppet whose
    key she holds, is refused: the puppet is no admin before the entry that
    would create it, and alone she is not the quorum. Nothing moves on anvil.
    """
    request.addfinalizer(deployment.close)
    env = deployment.reset(sqlite_url, chain_url=anvil)
    assert env.chain.chain_id == 31337  # anvil's, not the embedded chain's
    env.organisation()
    env.set_policy(env.two_approvers_policy())
    vault_id, address = env.vault(fund=5 * ETH)
    head = service_head(env)
    drain = one_admin_drain(env, vault_id)

    alice = key(env.people["admin"])
    for proposal in (drain.puppet, drain.lenient, drain.ghost):
        with env.custody.sessions() as s:
            data = s.scalar(select(m.Transaction.entry).where(m.Transaction.id == proposal["id"]))
        assert data is not None
        by_two = SignedEntry(
            data,
            tuple((k.public_key().public_bytes_raw(), sign_entry(k, data)) for k in (alice, drain.sock)),
        )
        alone = SignedEntry(data, ((alice.public_key().public_bytes_raw(), sign_entry(alice, data)),))
        for forged, reason in ((by_two, "signer"), (alone, "quorum")):
            for node in env.custody.signer.nodes:
                with pytest.raises(ClusterError) as exc:
                    rpc(env, node, {"op": "push", "org": genesis_hex(env), "entries": [forged.encode()]})
                assert exc.value.reason == reason, exc.value
    assert node_heads(env) == {head}
    time.sleep(1.0)  # the pipeline would have picked up anything approved by now
    assert view(env, drain.withdrawal["id"])["state"] == "pending_approval"
    assert env.chain.balance(address) == 5 * ETH and env.chain.nonce(address, "latest") == 0


# -- fees and nonces ------------------------------------------------------------------------------------------------


def test_the_nodes_refuse_a_transaction_that_may_pay_more_in_fees_than_its_approvers_signed(env: CustodyEnv) -> None:
    env.set_policy(allow_all())
    vault_id, _ = env.vault(fund=5 * ETH)
    cap, _ = env.chain.fees()
    signed = 21_000 * cap
    refused_by_nodes(
        env, vault_id, "transaction", f"above the approved maximum fee of {signed} wei",
        to=DEST, amount=ETH, max_fee=signed, fee_factor=2,
    )  # fmt: skip
    refused_by_nodes(env, vault_id, "transaction", "states no maximum fee", to=DEST, amount=ETH, max_fee=None)
    forge(env, vault_id, to=DEST, amount=ETH, max_fee=2 * signed)  # within what was signed: signed


def test_the_nodes_sign_a_second_transaction_at_a_nonce_only_as_an_approved_replacement(env: CustodyEnv) -> None:
    """The compromised service swaps an approved payment for another at its nonce: refused; a replacement is signed."""
    env.set_policy(allow_all())
    vault_id, _ = env.vault(fund=5 * ETH)
    first = m.new_id()
    forge(env, vault_id, to=DEST, amount=ETH, transaction_id=first)  # signed, never sent: the nonce waits
    refused_by_nodes(env, vault_id, "reused", "names none it replaces", to=ELSEWHERE, amount=ETH)
    refused_by_nodes(
        env, vault_id, "reused", "names 'nothing-signed' as the one it replaces",
        to=ELSEWHERE, amount=ETH, replaces="nothing-signed",
    )  # fmt: skip
    forge(env, vault_id, to=DEST, amount=ETH, fee_factor=2, replaces=first)  # a speed-up of the first: signed


# -- the database edited directly --------------------------------------------------------------------------------


def test_an_approver_written_into_the_database_counts_at_neither_the_service_nor_the_nodes(env: CustodyEnv) -> None:
    env.set_policy(env.two_approvers_policy())
    vault_id, address = env.vault()
    tx = withdraw(env, vault_id, ETH)
    env.approve(tx["id"], "approver1")
    # A user row with the approver role and a key the attacker holds, and an approval by it, in SQL.
    mallory, mallory_id = Ed25519PrivateKey.generate(), m.new_id()
    statement = bytes.fromhex(env.custody.approval_request(env.actor("admin"), tx["id"])["statement"])
    now = env.custody.clock()
    sql(
        env,
        insert(m.User).values(
            id=mallory_id,
            org_id=org_id(env),
            name="mallory",
            roles=["approver"],
            approval_key=public_hex(mallory),
            disabled=False,
            created_at=now,
        ),
        insert(m.Approval).values(
            id=m.new_id(),
            transaction_id=tx["id"],
            approver_id=mallory_id,
            decision="approve",
            public_key=public_hex(mallory),
            signature=sign_approval(mallory, statement).hex(),
            expires_at=now + dt.timedelta(days=1),
            expired=False,
            created_at=now,
        ),
    )
    # The service counts from the log: when an entry lands and it judges the withdrawal again, still one of two.
    env.govern(env.custody.add_address_book_entry(env.actor("admin"), name="known", address=KNOWN))
    assert view(env, tx["id"])["state"] == "pending_approval"
    with env.custody.uow.read() as s:
        row = s.get(m.Transaction, tx["id"])
        assert row is not None
        state = env.custody.ledger.state(s, org_id(env))
        assert tally.approvers(s, row, state, env.custody.clock()) == {env.user_id("approver1")}

    # Marked approved in SQL, the pipeline sends the approvals the log counts: the nodes refuse, and say why.
    failed = force_approved(env, tx["id"])
    assert failed["state"] == "failed" and failed["nonce"] is None, failed
    assert "approval refused (quorum)" in failed["error"] and "needs approvals that are missing" in failed["error"]
    # Built from the edited state, with her approval in it, as a compromised service would: refused too.
    refused_by_nodes(
        env, vault_id, "quorum", "missing", to=DEST, amount=ETH, approvers=[key(env.people["approver1"]), mallory]
    )
    # The refused withdrawal's nonce was released: the next one takes it, and nothing waits behind a gap.
    honest = withdraw(env, vault_id, ETH)
    env.approve(honest["id"], "approver1")
    env.approve(honest["id"], "approver2")
    done = wait_final(env, honest["id"])
    assert done["state"] == "confirmed" and done["nonce"] == 0
    assert env.chain.nonce(address, "latest") == 1


def test_a_policy_loosened_in_the_database_does_not_loosen_what_the_nodes_sign(env: CustodyEnv) -> None:
    env.set_policy(env.two_approvers_policy())
    vault_id, address = env.vault()
    current = env.custody.get_policy(env.actor("viewer"))
    document = {"rules": [{"action": "allow", "match": {}, "name": "anything goes"}], "version": 1}
    sql(
        env,
        insert(m.Policy).values(
            id=m.new_id(),
            org_id=org_id(env),
            version=current["version"] + 1,
            document=document,
            digest="00" * 32,
            seq=current["seq"],
            transaction_id=None,
            created_at=env.custody.clock(),
        ),
    )
    # The service shows the row (a projection for listing), but decides from the log.
    assert env.custody.get_policy(env.actor("viewer"))["document"]["rules"][0]["name"] == "anything goes"
    tx = withdraw(env, vault_id, ETH)
    assert tx["state"] == "pending_approval" and tx["decision"]["rule"] == "treasury approval"
    failed = force_approved(env, tx["id"])
    assert failed["state"] == "failed" and "approval refused (quorum)" in failed["error"]
    assert failed["sub_status"] == "node-refused"
    refused_by_nodes(env, vault_id, "quorum", "treasury approval", to=DEST, amount=ETH)
    assert env.chain.nonce(address, "latest") == 0


def test_a_destination_whitelisted_in_the_database_is_not_whitelisted_at_the_nodes(env: CustodyEnv) -> None:
    policy = env.two_approvers_policy()
    policy["rules"].insert(
        0, {"name": "whitelisted go", "match": {"destination": {"kind": "whitelisted"}}, "action": "allow"}
    )
    env.set_policy(policy)
    vault_id, address = env.vault()
    env.govern(env.custody.add_address_book_entry(env.actor("admin"), name="known", address=KNOWN))
    sql(env, update(m.AddressBookEntry).where(m.AddressBookEntry.address == KNOWN).values(whitelisted=True))
    listed = env.custody.list_address_book(env.actor("admin"), cfg_page())["items"]
    assert [e["whitelisted"] for e in listed] == [True]  # the table says so
    tx = withdraw(env, vault_id, ETH, to=KNOWN)
    assert tx["state"] == "pending_approval" and tx["decision"]["rule"] == "treasury approval"  # the log does not
    failed = force_approved(env, tx["id"])
    assert failed["state"] == "failed" and "approval refused (quorum)" in failed["error"]
    assert failed["sub_status"] == "node-refused"
    refused_by_nodes(env, vault_id, "quorum", "treasury approval", to=KNOWN, amount=ETH)
    assert env.chain.nonce(address, "latest") == 0


# -- a compromised service with the authority key ----------------------------------------------------------------


def test_a_forged_certificate_above_the_velocity_limit_is_refused_by_the_vaults_nodes(env: CustodyEnv) -> None:
    """3 ETH an hour from the vault, no approval needed below it: the nodes count the limit against their records."""
    velocity = {"window_seconds": 3600, "max_amount": str(3 * ETH), "per": "source", "asset": "ETH"}
    env.set_policy(
        {
            "rules": [
                {"name": "over the limit", "match": {"velocity": velocity}, "action": "block"},
                {"name": "below it", "action": "allow"},
            ]
        }
    )
    vault_id, address = env.vault()
    first = wait_final(env, withdraw(env, vault_id, 2 * ETH)["id"])
    assert first["state"] == "confirmed", first["error"]
    # The authority key certifies another 2 ETH, which the rule would allow if the first did not count.
    refused_by_nodes(env, vault_id, "policy", "exceeds", to=DEST, amount=2 * ETH)
    # The service's own history, edited so it forgets the first: the service allows, the nodes do not.
    sql(env, update(m.Transaction).where(m.Transaction.id == first["id"]).values(state=states.FAILED))
    fooled = withdraw(env, vault_id, 2 * ETH)
    assert fooled["decision"]["rule"] == "below it"
    failed = wait_final(env, fooled["id"])
    assert (
        failed["state"] == "failed" and "approval refused (policy)" in failed["error"] and "exceeds" in failed["error"]
    )
    within = wait_final(env, withdraw(env, vault_id, ETH)["id"])  # what is left of the limit still goes
    assert within["state"] == "confirmed", within["error"]
    assert env.chain.nonce(address, "latest") == 2 and env.chain.balance(DEST) == 3 * ETH


def test_a_whitelist_only_rule_refuses_at_the_nodes_a_destination_not_whitelisted(env: CustodyEnv) -> None:
    env.set_policy(
        {"rules": [{"name": "whitelisted only", "match": {"destination": {"kind": "whitelisted"}}, "action": "allow"}]}
    )
    vault_id, address = env.vault()
    admin = env.actor("admin")
    env.govern(env.custody.add_address_book_entry(admin, name="counterparty", address=DEST, whitelisted=True))
    env.govern(env.custody.add_address_book_entry(admin, name="known", address=KNOWN))
    done = wait_final(env, withdraw(env, vault_id, ETH)["id"])
    assert done["state"] == "confirmed" and done["approvals"] == [], done["error"]
    assert withdraw(env, vault_id, ETH, to=KNOWN)["state"] == "rejected"
    approvers = [key(env.people[f"approver{i}"]) for i in (1, 2, 3)]
    for to in (KNOWN, STRANGER):  # in the book but not whitelisted; not in the book at all
        refused_by_nodes(env, vault_id, "policy", "default deny", to=to, amount=ETH, approvers=approvers)
    assert env.chain.nonce(address, "latest") == 1 and env.chain.balance(KNOWN) == 0
