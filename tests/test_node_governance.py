"""Signer nodes keep their organisations' governance logs and decide withdrawals themselves.

Four real node processes on loopback (``require_evidence`` on), one authority
that this module also uses as an attacker would: it holds the authority key, so
it can forge any certificate and any evidence, as a compromised custody service
could. What it cannot forge are the admins' signatures on log entries, the
approvers' signatures on statements and the nodes' own statements, and every
test shows the nodes refusing what those do not vouch for.

Organisation ``acme`` has a velocity limit and a key ``acme-vault`` on nodes 1-3
(2-of-3); ``bolt`` allows whitelisted destinations only, with its own key. The
tests run in file order and share the cluster (module scope).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import cbor2
import coincurve
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cluster import Cluster
from governance_env import ADMINS, INITIATOR, Org, bot_policy, raw, two_approvers, velocity_policy, whitelist_only
from harbour.chains.eip1559 import Eip1559Transaction, erc20_transfer_data, parse_address
from harbour.chains.ethereum import address_from_public_key, checksum_address
from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.custody.evidence import build_governed_evidence
from harbour.custody.signer import Signer
from harbour.governance import amendments as am
from harbour.governance import changes as c
from harbour.governance import holding
from harbour.governance.fields import GovernanceError
from harbour.governance.request import request_body, sign_request
from harbour.mpc import hd
from harbour.node import approval, rpc
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator, admin_params
from harbour.node.identity import NodeIdentity
from harbour.node.orgs import statement as statements
from harbour.node.quorum import ETH, GovernedEvidence, Intent, approval_statement, decode_evidence, sign_approval

ECDSA = "ecdsa-secp256k1"
CHAIN = 1337
MAX_FEE = 60_000 * 6 * 10**9
"""The most a test withdrawal may pay in fees: twice what it is built with (a speed-up fits)."""
PATH = "m/0"
ETHER = 10**18
LIMIT = 5 * ETHER
LISTED = checksum_address(bytes.fromhex("a1" * 20))
UNLISTED = checksum_address(bytes.fromhex("b2" * 20))
TOKEN = checksum_address(bytes.fromhex("7a" * 20))
_nonces = itertools.count()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _with(step: Callable[[Coordinator], Any]) -> Any:
    async with Coordinator(timeout=60) as co:
        return await step(co)


def call(step: Callable[[Coordinator], Any]) -> Any:
    return run(_with(step))


class Env:
    def __init__(self, root: Path) -> None:
        self.cluster = Cluster(root, 4, node_options={"require_evidence": True})
        self.acme = self.org(
            "acme",
            named=(0, 1, 2),
            policy=velocity_policy(LIMIT),
            vaults={"acme-main": "acme-vault"},
            book=[("listed", LISTED, True)],
        )
        self.bolt = self.org(
            "bolt",
            policy=whitelist_only(),
            vaults={"bolt-main": "bolt-vault"},
            assets=[("asset-eth", "ETH", None)],
            book=[("listed", LISTED, True), ("known", UNLISTED, False)],
        )
        self.rota = self.org("rota", policy=velocity_policy(LIMIT), vaults={"rota-main": "rota-vault"})
        self.keys: dict[str, ClusterKey] = {}

    @property
    def nodes(self) -> list[Any]:
        return self.cluster.descriptors

    def enrol(self, org: Org, nodes: Sequence[int] = (0, 1, 2, 3)) -> dict[str, int]:
        cert = self.cluster.certify("enrol", params={"org": org.org})
        heads: dict[str, int] = call(lambda co: co.enrol([self.nodes[i] for i in nodes], org.genesis, cert))
        return heads

    def keygen(self, org: Org, key_id: str, nodes: Sequence[int] = (0, 1, 2)) -> ClusterKey:
        """A key of ``org`` on ``nodes``; if ``org`` names it as a vault, the ``vault.add`` with its holdings."""
        members = [self.nodes[i] for i in nodes]
        cert = self.cluster.keygen_cert(ECDSA, 2, members, key_id, org=org.org)
        key: ClusterKey = call(lambda co: co.keygen(members, 2, ECDSA, cert))
        self.keys[key_id] = key
        if key_id in org.vaults:
            org.add_vault(key_id, call(lambda co: co.holdings(members, key_id)))
            call(lambda co: co.push(members, org.log))  # as the service pushes an entry as it lands
        return key

    def org(self, name: str, named: Sequence[int] = (0, 1, 2, 3), **options: Any) -> Org:
        """An organisation whose genesis names these of the cluster's nodes (all four by default)."""
        return Org(name, nodes={self.nodes[i].name: self.nodes[i].sign_pk for i in named}, **options)

    def address(self, key: ClusterKey, path: str = PATH) -> str:
        child = hd.derive(key.public.group, key.public.group_public_key, key.chain_code, path).public_key
        assert isinstance(child, Secp256k1Point)
        return address_from_public_key(child)

    def withdrawal(
        self,
        org: Org,
        key: ClusterKey,
        amount: int,
        *,
        to: str = LISTED,
        asset: str = ETH,
        approvers: Sequence[str] = (),
        extra_approvals: Sequence[tuple[Ed25519PrivateKey, str]] = (),
        head: bytes | None = None,
        initiator: str = INITIATOR,
        evidence_org: str | None = None,
        signed_by: Ed25519PrivateKey | None = None,
    ) -> tuple[bytes, bytes, str]:
        """``(digest, evidence, transaction id)`` of a withdrawal the approvers named signed.

        ``signed_by``: the key that signed the request, as its initiator would (none: unsigned).
        """
        tx_id = f"tx-{secrets.token_hex(6)}"
        intent = Intent(CHAIN, self.address(key), to, asset, amount, max_fee=MAX_FEE)
        if asset == ETH:
            target, value, data = parse_address(to), amount, b""
        else:
            target, value, data = parse_address(asset), 0, erc20_transfer_data(parse_address(to), amount)
        tx = Eip1559Transaction(
            chain_id=CHAIN,
            nonce=next(_nonces),
            max_priority_fee_per_gas=10**9,
            max_fee_per_gas=3 * 10**9,
            gas_limit=60_000,
            to=target,
            value=value,
            data=data,
        )
        statement = approval_statement(org=org.name, transaction_id=tx_id, key_id=key.key_id, path=PATH, intent=intent)
        approvals = [(raw(org.keys[n]), sign_approval(org.keys[n], statement)) for n in approvers]
        approvals += [(raw(k), sign_approval(k, statement)) for k, _ in extra_approvals]
        evidence = GovernedEvidence(
            org=evidence_org or org.org,
            transaction_id=tx_id,
            intent=intent,
            transaction=tx,
            initiator=initiator,
            head=org.log.head if head is None else head,
            approvals=approvals,
            initiation=b"" if signed_by is None else sign_request(signed_by, self.request(org, key, tx_id, intent)),
        )
        return tx.signing_hash(), evidence.encode(), tx_id

    def request(self, org: Org, key: ClusterKey, tx_id: str, intent: Intent) -> bytes:
        """What an initiator signs for this withdrawal, named as the log names its vault and asset."""
        vault = org.log.state.vault_of_key(key.key_id)
        asset = org.log.state.asset_for(None if intent.asset == ETH else intent.asset)
        assert vault is not None and asset is not None
        return request_body(
            chain_id=intent.chain_id,
            org=org.log.genesis_hash,
            transaction_id=tx_id,
            vault=vault.id,
            asset=asset.symbol,
            destination=intent.recipient,
            amount=intent.amount,
        )

    def sign_cert(self, key: ClusterKey, digest: bytes, evidence: bytes | None, signers: Sequence[int]) -> bytes:
        return self.cluster.certify(
            "sign", key.key_id, path=PATH, digests=[digest], signers=sorted(signers), evidence=evidence
        )

    def sign(self, org: Org, key: ClusterKey, digest: bytes, evidence: bytes, signers: Sequence[int] = (1, 2)) -> Any:
        """Sign as an honest coordinator would: push, statements, the certificate for these signers."""
        return call(
            lambda co: co.sign_for_org(
                key,
                digest,
                lambda chosen: self.sign_cert(key, digest, evidence, chosen),
                log=org.log,
                path=PATH,
                signers=signers,
            )
        )

    def start(
        self,
        key: ClusterKey,
        digest: bytes,
        certificate: bytes,
        signers: Sequence[int],
        histories: list[bytes] | None,
        sid: bytes | None = None,
    ) -> Any:
        """Run a session the way an attacker's coordinator would: its own choice of statements, no push."""
        members = {p: key.roster[p] for p in signers}
        args: dict[str, Any] = {"key_id": key.key_id, "path": PATH, "message": digest, "signers": sorted(signers)}
        if histories is not None:
            args["histories"] = histories
        return call(lambda co: co._run("sign", certificate, members, {p: args for p in members}, sid))

    def rpc(self, node: int, request: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = call(lambda co: co._call(self.nodes[node], request))
        return answer


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    made = Env(tmp_path_factory.mktemp("governance"))
    with made.cluster:
        made.enrol(made.acme)
        made.enrol(made.bolt, nodes=(0, 1, 2))
        made.keygen(made.acme, "acme-vault")
        made.keygen(made.bolt, "bolt-vault")
        made.enrol(made.rota, nodes=(0, 1, 2))
        made.keygen(made.rota, "rota-vault")
        yield made


def refused(exc: pytest.ExceptionInfo[ClusterError], reason: str, needle: str = "") -> None:
    assert f"approval refused ({reason})" in str(exc.value), str(exc.value)
    assert needle in str(exc.value), str(exc.value)


def verify(key: ClusterKey, digest: bytes, signature: EcdsaSignature) -> None:
    """The signature checked by libsecp256k1 (coincurve), not by Harbour."""
    child = hd.derive(key.public.group, key.public.group_public_key, key.chain_code, PATH).public_key
    compact = signature.to_bytes() + bytes([signature.recovery_id])
    recovered = coincurve.PublicKey.from_signature_and_message(compact, digest, hasher=None)
    assert recovered.format() == child.encode()


# == enrolling and pushing =====================================================================================


def test_an_enrolled_node_reports_the_genesis_head(env: Env) -> None:
    fresh = env.org("fresh", policy=whitelist_only())
    assert env.enrol(fresh) == {d.name: 0 for d in env.nodes}
    heads = call(lambda co: co.heads(env.nodes, fresh.org))
    assert set(heads.values()) == {(0, fresh.log.genesis_hash)}
    assert env.enrol(fresh) == {d.name: 0 for d in env.nodes}, "enrolling again changes nothing"


def test_enrolling_needs_an_enrol_certificate_for_that_genesis(env: Env) -> None:
    other = env.org("other", policy=whitelist_only())
    stranger = approval.AuthorityKey.generate()
    foreign = approval.issue(stranger, kind="enrol", key_id="", params={"org": other.org}, now=0, expires_in=60)
    for cert, needle in [
        (env.cluster.certify("enrol", params={"org": env.acme.org}), "params"),
        (foreign, "untrusted"),
    ]:

        async def enrol(co: Coordinator, cert: bytes = cert) -> Any:
            return await co.enrol([env.nodes[3]], other.genesis, cert)

        with pytest.raises(ClusterError) as exc:
            call(enrol)
        assert exc.value.reason == "approval" and needle in str(exc.value)
    with pytest.raises(ClusterError) as exc:
        env.rpc(3, {"op": "head", "org": other.org})
    assert exc.value.reason == "unknown-org"


def test_a_genesis_with_signatures_or_garbage_is_refused(env: Env) -> None:
    signed_genesis = cbor2.dumps(
        {"entry": env.acme.genesis.data, "signatures": [[raw(env.acme.keys["admin-a"]), bytes(64)]]}, canonical=True
    )
    for data, reason in [(signed_genesis, "malformed"), (b"\x00", "malformed")]:
        with pytest.raises(ClusterError) as exc:
            env.rpc(3, {"op": "enrol", "genesis": data, "certificate": b""})
        assert exc.value.reason == reason, exc.value


def test_push_brings_every_node_to_the_head(env: Env) -> None:
    call(lambda co: co.push(env.nodes, env.acme.log))
    env.acme.propose(c.AddAddress("unlisted", "unlisted", UNLISTED, False))
    sent = call(lambda co: co.push(env.nodes, env.acme.log))
    assert sent == {d.name: 1 for d in env.nodes}
    assert call(lambda co: co.push(env.nodes, env.acme.log)) == {d.name: 0 for d in env.nodes}
    heads = call(lambda co: co.heads(env.nodes, env.acme.org))
    assert set(heads.values()) == {(env.acme.log.state.seq, env.acme.log.head)}


def push(env: Env, node: int, org: Org, *entries: bytes) -> dict[str, Any]:
    return env.rpc(node, {"op": "push", "org": org.org, "entries": list(entries)})


def test_pushed_entries_are_refused_with_the_reason(env: Env) -> None:
    """Replayed, forked, out of order, under quorum, badly signed, foreign, malformed: each named over RPC."""
    org = env.acme
    call(lambda co: co.push(env.nodes, org.log))
    head = org.log.state.seq
    held = org.log.entries[-1]
    fork = org.entry(c.AddAddress("x", "x", TOKEN, False), seq=head, prev=held.entry.prev)
    gap = org.entry(c.AddAddress("x", "x", TOKEN, False), seq=head + 2)
    alone = org.entry(c.AddAddress("x", "x", TOKEN, False), signers=["admin-a"])
    stranger = Ed25519PrivateKey.generate()
    by_stranger = org.entry(c.AddAddress("x", "x", TOKEN, False))
    by_stranger = type(by_stranger)(by_stranger.data, ((raw(stranger), bytes(64)), *by_stranger.signatures[:1]))
    good = org.entry(c.AddAddress("x", "x", TOKEN, False))
    forged = type(good)(good.data, tuple((k, bytes(64)) for k, _ in good.signatures))
    foreign = env.bolt.entry(c.AddAddress("x", "x", TOKEN, False), seq=head + 1, prev=org.log.head)
    for entry, reason in [
        (held.encode(), "replayed"),
        (fork.encode(), "forked"),
        (gap.encode(), "order"),
        (alone.encode(), "quorum"),
        (by_stranger.encode(), "signer"),
        (forged.encode(), "signature"),
        (foreign.encode(), "organisation"),
        (b"\xa0", "malformed"),
    ]:
        with pytest.raises(ClusterError) as exc:
            push(env, 3, org, entry)
        assert exc.value.reason == reason, (reason, exc.value)
    assert env.rpc(3, {"op": "head", "org": org.org})["seq"] == head, "nothing refused was appended"


def test_a_removed_admins_signature_does_not_count(env: Env) -> None:
    org = env.acme
    call(lambda co: co.push(env.nodes, org.log))
    removal = org.propose(c.DisableUser("admin-c"))
    late = org.entry(c.AddAddress("late", "late", TOKEN, False), proposer="admin-c", signers=["admin-c", "admin-a"])
    with pytest.raises(ClusterError) as exc:
        push(env, 3, org, removal.encode(), late.encode())
    assert exc.value.reason == "signer" and "admin-c" in str(exc.value), exc.value
    assert "1 appended before it" in str(exc.value)
    assert env.rpc(3, {"op": "head", "org": org.org})["head"] == removal.hash


def test_one_bad_entry_refuses_it_and_the_rest(env: Env) -> None:
    org = env.acme
    call(lambda co: co.push(env.nodes, org.log))
    first = org.propose(c.AddAddress("first", "first", checksum_address(bytes(18) + b"\x10\x01"), False))
    bad = org.entry(c.AddAddress("nope", "nope", TOKEN, False), signers=["admin-a"])
    with pytest.raises(ClusterError) as exc:
        push(env, 2, org, first.encode(), bad.encode(), first.encode())
    assert exc.value.reason == "quorum"
    answer = env.rpc(2, {"op": "head", "org": org.org})
    assert answer["head"] == first.hash
    assert call(lambda co: co.push(env.nodes, org.log)) == {"node1": 1, "node2": 1, "node3": 0, "node4": 1}


def test_push_requests_are_bounded(env: Env) -> None:
    requests: list[tuple[dict[str, Any], str]] = [
        ({"op": "push", "org": env.acme.org, "entries": []}, "entries"),
        ({"op": "push", "org": env.acme.org, "entries": [b"x"] * (rpc.MAX_PUSH + 1)}, "entries"),
        ({"op": "push", "org": env.acme.org.upper(), "entries": [b"x"]}, "org"),
        ({"op": "head", "org": "acme"}, "org"),
        ({"op": "history", "org": env.acme.org, "session_id": b"short"}, "session_id"),
    ]
    for request, needle in requests:
        with pytest.raises(ClusterError) as exc:
            env.rpc(0, request)
        assert exc.value.reason == "bad-request" and needle in str(exc.value), exc.value


# == signing with a key of an organisation =====================================================================


def test_an_allowed_withdrawal_is_signed_without_human_approval(env: Env) -> None:
    key = env.keys["acme-vault"]
    assert key.org == env.acme.org
    digest, evidence, _ = env.withdrawal(env.acme, key, ETHER)
    outcome = env.sign(env.acme, key, digest, evidence, signers=(1, 2))
    assert isinstance(outcome.signature, EcdsaSignature)
    verify(key, digest, outcome.signature)


def test_a_key_of_an_organisation_refuses_plain_and_version_1_certificates(env: Env) -> None:
    key = env.keys["acme-vault"]
    digest = secrets.token_bytes(32)
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, env.sign_cert(key, digest, None, (1, 2)), (1, 2), None)
    refused(exc, "evidence", "belongs to organisation")


def test_a_rule_for_one_initiator_signs_only_what_that_initiator_asked_for(env: Env) -> None:
    """A bot may pay small sums without approval; a compromised service names the bot for a payment of its own."""
    bot_rule = bot_policy(INITIATOR, ETHER)
    org = env.org("bots", policy=bot_rule, vaults={"bots-main": "bots-vault"})
    env.enrol(org, nodes=(0, 1, 2))
    key = env.keygen(org, "bots-vault")
    digest, evidence, _ = env.withdrawal(org, key, ETHER)
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, digest, evidence)
    refused(exc, "policy", "must be signed by its initiator")
    intruder = Ed25519PrivateKey.generate()
    digest, evidence, _ = env.withdrawal(org, key, ETHER, signed_by=intruder)
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, digest, evidence)
    refused(exc, "policy", "not its initiator's")
    digest, evidence, _ = env.withdrawal(org, key, ETHER, signed_by=org.keys[INITIATOR])
    verify(key, digest, env.sign(org, key, digest, evidence).signature)


def test_a_non_whitelisted_destination_is_refused_by_the_nodes(env: Env) -> None:
    key = env.keys["bolt-vault"]
    digest, evidence, _ = env.withdrawal(env.bolt, key, ETHER, to=UNLISTED)
    with pytest.raises(ClusterError) as exc:
        env.sign(env.bolt, key, digest, evidence)
    refused(exc, "policy", "default deny")
    digest, evidence, _ = env.withdrawal(env.bolt, key, ETHER, to=LISTED)
    verify(key, digest, env.sign(env.bolt, key, digest, evidence).signature)


def test_whitelisting_takes_an_entry_the_admins_signed(env: Env) -> None:
    """A compromised service cannot whitelist: its own entry lacks the quorum, so the nodes stay where they were."""
    key, org = env.keys["bolt-vault"], env.bolt
    forged = org.entry(c.SetWhitelisted("known", True), signers=["admin-a"])
    with pytest.raises(ClusterError) as exc:
        push(env, 0, org, forged.encode())
    assert exc.value.reason == "quorum"
    org.propose(c.SetWhitelisted("known", True))
    digest, evidence, _ = env.withdrawal(org, key, ETHER, to=UNLISTED)
    verify(key, digest, env.sign(org, key, digest, evidence).signature)


def test_evidence_citing_an_old_head_is_refused(env: Env) -> None:
    key, org = env.keys["bolt-vault"], env.bolt
    old = org.log.head
    org.propose(c.SetWhitelisted("known", False))
    call(lambda co: co.push(env.nodes[:3], org.log))
    digest, evidence, _ = env.withdrawal(org, key, ETHER, to=UNLISTED, head=old)
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, env.sign_cert(key, digest, evidence, (1, 2)), (1, 2), None)
    refused(exc, "governance", f"node's head is {org.log.head.hex()}")
    assert old.hex() in str(exc.value)


def test_evidence_citing_a_head_the_nodes_lack_is_refused_until_pushed(env: Env) -> None:
    key, org = env.keys["bolt-vault"], env.bolt
    org.propose(c.SetWhitelisted("known", True))
    digest, evidence, _ = env.withdrawal(org, key, ETHER, to=UNLISTED)
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, env.sign_cert(key, digest, evidence, (1, 2)), (1, 2), None)
    refused(exc, "governance", "push")
    verify(key, digest, env.sign(org, key, digest, evidence).signature)


def test_a_node_rolled_back_is_pushed_again_and_the_session_retried(env: Env) -> None:
    """A coordinator skips asking a node it saw at the head; a node that lost entries since makes it ask again."""
    key, org = env.keys["bolt-vault"], env.bolt
    org.propose(c.AddAddress("rolled", "rolled", checksum_address(bytes.fromhex("c4" * 20)), False))
    node = env.cluster.nodes[1]

    async def scenario(co: Coordinator) -> list[Any]:
        digest, evidence, _ = env.withdrawal(org, key, ETHER)
        first = await co.sign_for_org(key, digest, lambda s: env.sign_cert(key, digest, evidence, s), log=org.log,
                                      path=PATH, signers=(1, 2))  # fmt: skip
        node.stop()  # the node's copy of the newest entry is lost, as a restored backup would lose it
        (node.directory / "store" / "objects" / "govlog" / f"{org.org}.{org.log.state.seq}").unlink()
        node.start()
        digest, evidence, _ = env.withdrawal(org, key, ETHER)
        second = await co.sign_for_org(key, digest, lambda s: env.sign_cert(key, digest, evidence, s), log=org.log,
                                       path=PATH, signers=(1, 2))  # fmt: skip
        return [first, second]

    for outcome in run(_with(scenario)):
        assert isinstance(outcome.signature, EcdsaSignature)
    assert env.rpc(1, {"op": "head", "org": org.org})["head"] == org.log.head


# -- what a service whose database was edited would claim --------------------------------------------------------


def test_an_approver_the_log_does_not_have_counts_for_nothing(env: Env) -> None:
    org = env.org("care", policy=two_approvers(), vaults={"care-main": "care-vault"}, book=[("listed", LISTED, True)])
    env.enrol(org, nodes=(0, 1, 2))
    key = env.keygen(org, "care-vault")
    mallory = Ed25519PrivateKey.generate()
    digest, evidence, _ = env.withdrawal(org, key, ETHER, approvers=["alice"], extra_approvals=[(mallory, "mallory")])
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, digest, evidence)
    refused(exc, "quorum", "missing")
    digest, evidence, _ = env.withdrawal(org, key, ETHER, approvers=["alice", "bob"])
    verify(key, digest, env.sign(org, key, digest, evidence).signature)


def test_the_initiator_approving_themselves_is_refused(env: Env) -> None:
    key = env.keys["acme-vault"]
    digest, evidence, _ = env.withdrawal(env.acme, key, ETHER, approvers=[INITIATOR])
    with pytest.raises(ClusterError) as exc:
        env.sign(env.acme, key, digest, evidence)
    refused(exc, "approvals", "initiator")


def test_an_unknown_initiator_is_refused(env: Env) -> None:
    key = env.keys["acme-vault"]
    digest, evidence, _ = env.withdrawal(env.acme, key, ETHER, initiator="mallory")
    with pytest.raises(ClusterError) as exc:
        env.sign(env.acme, key, digest, evidence)
    refused(exc, "policy", "initiator 'mallory'")


def test_a_key_that_is_no_vault_of_the_organisation_is_refused(env: Env) -> None:
    key = env.keygen(env.acme, "acme-loose")
    digest, evidence, _ = env.withdrawal(env.acme, key, ETHER)
    with pytest.raises(ClusterError) as exc:
        env.sign(env.acme, key, digest, evidence)
    refused(exc, "policy", "is not a vault")


def test_an_asset_the_organisation_did_not_register_is_refused(env: Env) -> None:
    key = env.keys["acme-vault"]
    digest, evidence, _ = env.withdrawal(env.acme, key, 10, asset=TOKEN)
    with pytest.raises(ClusterError) as exc:
        env.sign(env.acme, key, digest, evidence)
    refused(exc, "policy", "is not an asset")


def test_a_disabled_asset_is_refused_by_the_nodes_until_the_admins_enable_it(env: Env) -> None:
    """The nodes replay ``asset.disable`` from the log pushed to them: no withdrawal of it is signed."""
    key, org = env.keys["bolt-vault"], env.bolt
    org.propose(am.DisableAsset("asset-eth"))
    digest, evidence, _ = env.withdrawal(org, key, ETHER, to=LISTED)
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, digest, evidence)
    refused(exc, "policy", "is disabled")
    org.propose(am.EnableAsset("asset-eth"))
    digest, evidence, _ = env.withdrawal(org, key, ETHER, to=LISTED)
    verify(key, digest, env.sign(org, key, digest, evidence).signature)


def test_a_key_of_one_organisation_cannot_be_signed_for_with_anothers_governance(env: Env) -> None:
    key = env.keys["acme-vault"]
    digest, evidence, _ = env.withdrawal(env.bolt, key, ETHER)
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, env.sign_cert(key, digest, evidence, (1, 2)), (1, 2), None)
    refused(exc, "governance", f"belongs to organisation {env.acme.org}")
    with pytest.raises(ClusterError) as exc:
        call(
            lambda co: co.sign_for_org(
                key, digest, lambda s: env.sign_cert(key, digest, evidence, s), log=env.bolt.log, path=PATH
            )
        )
    assert exc.value.reason == "governance"


def test_a_keygen_certificate_for_an_organisation_the_nodes_lack_is_refused(env: Env) -> None:
    stranger = env.org("stranger", policy=whitelist_only())
    cert = env.cluster.keygen_cert(ECDSA, 2, env.nodes[:3], "stranger-vault", org=stranger.org)
    with pytest.raises(ClusterError) as exc:
        call(lambda co: co.keygen(env.nodes[:3], 2, ECDSA, cert))
    assert exc.value.reason == "unknown-org"


def test_the_custody_signer_enrols_makes_a_key_of_the_organisation_and_signs_for_it(env: Env, tmp_path: Path) -> None:
    """What custody/signer.py and custody/evidence.py give the service, end to end on the nodes."""
    org = env.org("cust", policy=two_approvers(), vaults={"cust-main": "cust-vault"}, book=[("listed", LISTED, True)])
    signer = Signer(env.nodes[:3], env.cluster.authority, tmp_path)
    try:
        assert signer.enrol(org.genesis) == {"node1": 0, "node2": 0, "node3": 0}
        org.propose(c.SetWhitelisted("listed", False))
        assert signer.push(org.log) == {"node1": 1, "node2": 1, "node3": 1}
        key = signer.keygen("cust-vault", 2, env.nodes[:3], org=org.org)
        assert key.org == org.org
        org.add_vault(key.key_id, signer.holdings(key.key_id, env.nodes[:3]))
        intent = Intent(CHAIN, env.address(key), LISTED, ETH, ETHER, max_fee=21_000 * 2)
        tx = Eip1559Transaction(
            chain_id=CHAIN, nonce=0, max_priority_fee_per_gas=1, max_fee_per_gas=2, gas_limit=21_000,
            to=parse_address(LISTED), value=ETHER, data=b"",
        )  # fmt: skip
        statement = approval_statement(org=org.name, transaction_id="w-1", key_id=key.key_id, path=PATH, intent=intent)
        recorded = [
            (who, raw(org.keys[who]), sign_approval(org.keys[who], statement)) for who in ("alice", "bob", INITIATOR)
        ]
        org.propose(c.SetWhitelisted("listed", True))  # the nodes are brought to this head by the signing
        evidence = build_governed_evidence(
            log=org.log, transaction_id="w-1", intent=intent, transaction=tx, initiator_id=INITIATOR, approvals=recorded
        )
        assert [k for k, _ in evidence.approvals] == [raw(org.keys["alice"]), raw(org.keys["bob"])]
        signature = signer.sign(key.key_id, PATH, tx.signing_hash(), evidence=evidence.encode(), log=org.log)
        assert len(signature.signers) == 2
        ecdsa = EcdsaSignature(signature.r, signature.s, signature.y_parity)
        verify(key, tx.signing_hash(), ecdsa)
    finally:
        signer.close()


# == velocity limits across signer sets ========================================================================


def test_pair_rotation_cannot_exceed_the_velocity_limit(env: Env) -> None:
    """2-of-3 and a limit of 5 ETH an hour: 2 + 2 through {1,2} and {1,3}; 2 more through {2,3} is refused.

    Each pair shares a node with the others, and the signers judge with the union of
    their records, so the third pair sees both earlier withdrawals.
    """
    org, key = env.rota, env.keys["rota-vault"]
    for pair in [(1, 2), (1, 3)]:
        digest, evidence, _ = env.withdrawal(org, key, 2 * ETHER)
        verify(key, digest, env.sign(org, key, digest, evidence, signers=pair).signature)
    digest, evidence, _ = env.withdrawal(org, key, 2 * ETHER)
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, digest, evidence, signers=(2, 3))
    refused(exc, "policy", "4000000000000000000 earlier + 2000000000000000000")
    digest, evidence, _ = env.withdrawal(org, key, ETHER)  # what is left of the limit still goes
    verify(key, digest, env.sign(org, key, digest, evidence, signers=(2, 3)).signature)


def test_a_session_without_every_signers_statement_is_refused(env: Env) -> None:
    org, key = env.rota, env.keys["rota-vault"]
    digest, evidence, _ = env.withdrawal(org, key, ETHER // 10)
    cert = env.sign_cert(key, digest, evidence, (1, 3))
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, cert, (1, 3), None)
    refused(exc, "history", "missing")
    sid = secrets.token_bytes(32)
    own = call(lambda co: co.statements([env.nodes[0]], org.org, sid))
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, cert, (1, 3), own, sid)
    refused(exc, "history", "missing: node3")


def test_a_statement_not_signed_by_the_node_is_refused(env: Env) -> None:
    """The attacker writes node 3's statement itself, with an empty record."""
    org, key = env.rota, env.keys["rota-vault"]
    digest, evidence, _ = env.withdrawal(org, key, 2 * ETHER)
    sid = secrets.token_bytes(32)
    real = call(lambda co: co.statements([env.nodes[0]], org.org, sid))
    fake = statements.sign(
        NodeIdentity.generate(),
        statements.HistoryStatement(env.nodes[2].node_id, sid, org.org, org.log.head, ()),
    )
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, env.sign_cert(key, digest, evidence, (1, 3)), (1, 3), [*real, fake], sid)
    refused(exc, "history", "not signed by its identity key")


def test_a_statement_for_another_session_is_refused(env: Env) -> None:
    org, key = env.rota, env.keys["rota-vault"]
    digest, evidence, _ = env.withdrawal(org, key, ETHER // 10)
    old = call(lambda co: co.statements([env.nodes[0], env.nodes[2]], org.org, secrets.token_bytes(32)))
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, env.sign_cert(key, digest, evidence, (1, 3)), (1, 3), old)
    refused(exc, "history", "for session")


def test_a_stale_statement_is_refused_by_the_node_that_made_it(env: Env) -> None:
    """Node 3's statement is taken before a withdrawal it then signs, and replayed in a later session.

    Node 2 cannot tell (the statement is node 3's, for this session), but node 3
    sees its own record grew since, so the session runs on no node.
    """
    org = env.org("stale", policy=velocity_policy(LIMIT), vaults={"stale-main": "stale-vault"})
    env.enrol(org, nodes=(0, 1, 2))
    key = env.keygen(org, "stale-vault")
    call(lambda co: co.push(env.nodes[:3], org.log))  # node 3 at the head, as the statement must be
    first, evidence, _ = env.withdrawal(org, key, 2 * ETHER)
    verify(key, first, env.sign(org, key, first, evidence, signers=(1, 2)).signature)
    sid = secrets.token_bytes(32)
    early = call(lambda co: co.statements([env.nodes[2]], org.org, sid))  # node 3: nothing yet
    digest, evidence, _ = env.withdrawal(org, key, 2 * ETHER)
    verify(key, digest, env.sign(org, key, digest, evidence, signers=(1, 3)).signature)
    digest, evidence, _ = env.withdrawal(org, key, 2 * ETHER)
    fresh = call(lambda co: co.statements([env.nodes[1]], org.org, sid))
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, env.sign_cert(key, digest, evidence, (2, 3)), (2, 3), fresh + early, sid)
    refused(exc, "history", "lacks withdrawals it has recorded since")
    assert exc.value.node == "node3"


def test_a_restarted_node_still_counts_what_it_signed(env: Env) -> None:
    """The records live in the nodes' signing logs: after a restart of every signer the limit still holds."""
    org = env.org("memo", policy=velocity_policy(LIMIT), vaults={"memo-main": "memo-vault"})
    env.enrol(org, nodes=(0, 1, 2))
    key = env.keygen(org, "memo-vault")
    for pair in [(1, 2), (1, 3)]:
        digest, evidence, _ = env.withdrawal(org, key, 2 * ETHER)
        verify(key, digest, env.sign(org, key, digest, evidence, signers=pair).signature)
    for node in env.cluster.nodes[1:3]:
        node.stop()
        node.start()
    digest, evidence, _ = env.withdrawal(org, key, 2 * ETHER)
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, digest, evidence, signers=(2, 3))
    refused(exc, "policy", "4000000000000000000 earlier")


def test_approvals_pay_once_also_after_a_restart(env: Env) -> None:
    """The same transaction id with another chain nonce is a second payment: refused, also by a node that
    restarted since (it reads its pins back from its signing log)."""
    key, org = env.keys["bolt-vault"], env.bolt
    digest, evidence, _ = env.withdrawal(org, key, ETHER)
    verify(key, digest, env.sign(org, key, digest, evidence, signers=(1, 3)).signature)
    first = decode_evidence(evidence)
    assert isinstance(first, GovernedEvidence)
    # The same transaction id and approvals, another chain nonce: a second payment.
    retry = replace(first, transaction=replace(first.transaction, nonce=first.transaction.nonce + 1000))
    node = env.cluster.nodes[2]
    node.stop()
    node.start()
    for signers in [(1, 3), (2, 3)]:
        with pytest.raises(ClusterError) as exc:
            env.sign(org, key, retry.transaction.signing_hash(), retry.encode(), signers=signers)
        refused(exc, "reused", "pay once")
    assert exc.value.node == "node3"
    # Another transaction id at the nonce node 3 signed before its restart, naming none it replaces: refused by
    # node 3 from the record it read back (node 2 never signed at that nonce, so only node 3 can know).
    other = replace(first, transaction_id="tx-another-at-that-nonce")
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, other.transaction.signing_hash(), other.encode(), signers=(2, 3))
    refused(exc, "reused", "names none it replaces")
    assert exc.value.node == "node3"
    # A replacement with other fees at the same nonce is signed: only one of the two can be mined. (Node 2
    # pinned the second nonce when it accepted that session, which node 3 refused: a pin errs on refusing.)
    # Within the maximum fee the approvers signed, that is: above it, refused.
    fees = first.transaction.max_fee_per_gas * 3
    greedy = replace(first, transaction=replace(first.transaction, max_fee_per_gas=fees))
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, greedy.transaction.signing_hash(), greedy.encode(), signers=(1, 3))
    refused(exc, "transaction", "above the approved maximum fee")
    fees = first.transaction.max_fee_per_gas * 2
    bumped = replace(first, transaction=replace(first.transaction, max_fee_per_gas=fees))
    digest = bumped.transaction.signing_hash()
    verify(key, digest, env.sign(org, key, digest, bumped.encode(), signers=(1, 3)).signature)


def test_a_forged_certificate_above_the_limit_is_refused(env: Env) -> None:
    """The authority's key signs whatever it likes; the nodes still count the limit against their records."""
    org, key = env.rota, env.keys["rota-vault"]
    digest, evidence, _ = env.withdrawal(org, key, LIMIT + 1)
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, digest, evidence, signers=(1, 2))
    refused(exc, "policy", "exceeds")


# == the binding outlives restarts and key ceremonies ==========================================================


def test_the_binding_survives_a_restart(env: Env) -> None:
    call(lambda co: co.push([env.nodes[0]], env.acme.log))
    node = env.cluster.nodes[0]
    node.stop()
    node.start()
    answer = env.rpc(0, {"op": "key", "key_id": "acme-vault"})
    assert answer["org"] == env.acme.org
    assert env.rpc(0, {"op": "head", "org": env.acme.org})["head"] == env.acme.log.head
    key = env.keys["acme-vault"]
    digest = secrets.token_bytes(32)
    with pytest.raises(ClusterError) as exc:
        env.start(key, digest, env.sign_cert(key, digest, None, (1, 2)), (1, 2), None)
    refused(exc, "evidence", "belongs to organisation")
    digest, evidence, _ = env.withdrawal(env.acme, key, ETHER)
    verify(key, digest, env.sign(env.acme, key, digest, evidence, signers=(1, 2)).signature)


def test_a_refresh_keeps_the_binding_and_must_name_the_organisation(env: Env) -> None:
    key = env.keys["acme-vault"]
    without = env.cluster.certify("refresh", key.key_id, params={})
    with pytest.raises(ClusterError) as exc:
        call(lambda co: co.refresh(key, without))
    assert exc.value.reason == "approval" and "params" in str(exc.value)
    other = env.cluster.certify("refresh", key.key_id, params={"org": env.bolt.org})
    with pytest.raises(ClusterError) as exc:
        call(lambda co: co.refresh(key, other))
    assert exc.value.reason == "approval"
    refreshed: ClusterKey = call(lambda co: co.refresh(key, env.cluster.refresh_cert(key)))
    assert refreshed.org == env.acme.org
    env.keys["acme-vault"] = refreshed
    digest, evidence, _ = env.withdrawal(env.acme, refreshed, ETHER)
    verify(refreshed, digest, env.sign(env.acme, refreshed, digest, evidence, signers=(2, 3)).signature)


def test_an_organisations_key_is_reshared_only_to_nodes_its_admins_named(env: Env) -> None:
    """With the authority key alone, resharing a vault key to nodes of one's choosing would give away the key.

    Acme's log names nodes 0-2. A reshare onto node 3 is refused until the admins
    sign a ``node.add`` for it (the committee change), and then it goes.
    """
    org = env.acme
    org.vaults["acme-moving"] = "acme-second"
    key = env.keygen(org, "acme-moving")
    newcomers = [env.nodes[1], env.nodes[2], env.nodes[3]]
    params = admin_params("reshare", threshold=2, nodes=newcomers, key=key)
    for wrong in ({k: v for k, v in params.items() if k != "org"}, params | {"org": env.bolt.org}):

        async def reshare(
            co: Coordinator, cert: bytes = env.cluster.certify("reshare", key.key_id, params=wrong)
        ) -> Any:
            return await co.reshare(key, newcomers, 2, cert)

        with pytest.raises(ClusterError) as exc:
            call(reshare)
        assert exc.value.reason in ("approval", "unknown-org"), exc.value
    with pytest.raises(ClusterError) as exc:
        call(lambda co: co.reshare(key, newcomers, 2, env.cluster.certify("reshare", key.key_id, params=params)))
    assert exc.value.reason == "approval" and f"does not name node(s) {env.nodes[3].name}" in str(exc.value)
    assert env.rpc(0, {"op": "key", "key_id": "acme-moving"})["org"] == org.org
    with pytest.raises(ClusterError) as exc:
        env.rpc(3, {"op": "key", "key_id": "acme-moving"})
    assert exc.value.reason == "unknown-key"
    # The admins name node 3; once their entry reaches the dealers, the same reshare goes.
    org.propose(c.AddNode(env.nodes[3].name, env.nodes[3].sign_pk))
    call(lambda co: co.push(env.nodes, org.log))
    moved: ClusterKey = call(
        lambda co: co.reshare(key, newcomers, 2, env.cluster.certify("reshare", key.key_id, params=params))
    )
    assert moved.org == org.org
    assert env.rpc(3, {"op": "key", "key_id": "acme-moving"})["org"] == org.org
    digest, evidence, _ = env.withdrawal(org, moved, ETHER)
    verify(moved, digest, env.sign(org, moved, digest, evidence, signers=sorted(moved.roster)[:2]).signature)


def test_a_key_of_an_organisation_is_made_only_on_nodes_its_admins_named(env: Env) -> None:
    stranger = env.org("named-two", named=(0, 1), policy=whitelist_only())
    env.enrol(stranger)
    with pytest.raises(ClusterError) as exc:
        env.keygen(stranger, "named-two-key", nodes=(0, 1, 2))
    assert exc.value.reason == "approval" and f"does not name node(s) {env.nodes[2].name}" in str(exc.value)
    for node in (0, 1, 2):
        with pytest.raises(ClusterError) as missing:
            env.rpc(node, {"op": "key", "key_id": "named-two-key"})
        assert missing.value.reason == "unknown-key"


def test_admins_not_in_the_log_cannot_change_it(env: Env) -> None:
    """The whole admin quorum of one organisation means nothing to another's log."""
    entry = env.bolt.entry(c.AddAddress("grab", "grab", "0x" + "66" * 20, True), seq=env.acme.log.state.seq + 1)
    with pytest.raises(ClusterError) as exc:
        push(env, 0, env.acme, entry.encode())
    assert exc.value.reason == "organisation"
    assert ADMINS[0] in env.acme.log.state.users


def test_a_vault_key_made_outside_its_organisation_never_becomes_its_vault(env: Env) -> None:
    """The authority makes a new vault's key with no organisation, or bound to another one it controls.

    The ``vault.add`` the admins sign must carry every holder's statement that it
    holds the key for *this* organisation: a key of no organisation has none, and
    one bound elsewhere has statements that say so, so the admins' own log, and
    every node the entry is pushed to, refuse it before any funds are paid in.
    """
    members = [env.nodes[i] for i in (0, 1, 2)]
    call(lambda co: co.keygen(members, 2, ECDSA, env.cluster.keygen_cert(ECDSA, 2, members, "acme-unbound")))
    with pytest.raises(ClusterError) as exc:
        call(lambda co: co.holdings(members, "acme-unbound"))
    assert exc.value.reason == "governance" and "for no organisation" in str(exc.value)
    env.keygen(env.bolt, "acme-captured")
    stated = call(lambda co: co.holdings(members, "acme-captured"))
    captured = holding.parse(stated[0])[0].holding
    assert captured.org == env.bolt.log.genesis_hash
    with pytest.raises(GovernanceError, match="not this one"):
        env.acme.propose(c.AddVault("acme-captured-vault", "captured", captured, tuple(stated)))
    # Relabelled as acme's, the holding no longer matches what its holders signed: every node refuses the entry.
    relabelled = replace(captured, org=env.acme.log.genesis_hash)
    entry = env.acme.entry(c.AddVault("acme-captured-vault", "captured", relabelled, tuple(stated)))
    call(lambda co: co.push(env.nodes, env.acme.log))  # every node at the head: the entry is the next one
    for node in (0, 3):
        with pytest.raises(ClusterError) as exc:
            push(env, node, env.acme, entry.encode())
        assert exc.value.reason == "change" and "for organisation" in str(exc.value), exc.value
    assert all(env.rpc(i, {"op": "head", "org": env.acme.org})["head"] == env.acme.log.head for i in range(4))


def test_an_archived_vault_is_refused_by_the_nodes(env: Env) -> None:
    """Last: archiving is for good. The key stays the vault's (its statements still name it), and is not signed for."""
    key, org = env.keys["bolt-vault"], env.bolt
    org.propose(am.ArchiveVault("bolt-main"))
    digest, evidence, _ = env.withdrawal(org, key, ETHER, to=LISTED)
    with pytest.raises(ClusterError) as exc:
        env.sign(org, key, digest, evidence)
    refused(exc, "policy", "is archived")
