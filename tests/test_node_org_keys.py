"""The authority key (with the service) against the binding of keys to organisations, on real node processes.

Five nodes. Organisation ``acme``'s log names nodes 0-2 only; nodes 3 and 4
stand for nodes the attacker runs (it holds the authority key, so it certifies
sessions on any nodes it likes, and it can read its own nodes' stores).

1. Laundering a key into the organisation: a key of no organisation, made on the
   attacker's nodes (so the attacker knows its secret), is reshared onto acme's
   own nodes, the dealers shown a certificate without ``org`` and the new members
   one naming acme (a certificate is not bound across a session's members). The
   new members refuse: the dealers are no nodes of acme's, and none states,
   signed, that it holds the key for acme.
2. Lowering the threshold: a reshare of acme's 2-of-3 vault key to 1-of-3 on the
   same nodes would make each node's share the whole key while the log still
   says 2 of 3. The dealers refuse.
3. One signed request, paid twice: with a 2-of-4 key the signer sets {1,2} and
   {3,4} would share no node. A key of an organisation needs ``2t > n``, so the
   nodes refuse to make one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from cluster import PASSPHRASE, Cluster
from governance_env import Org, bot_policy, whitelist_only
from harbour.crypto.shamir import interpolate_at_zero
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator, admin_params
from harbour.node.identity import NodeDescriptor
from harbour.node.staging import read_key
from harbour.node.store import SecretStore

pytestmark = pytest.mark.process

ECDSA = "ecdsa-secp256k1"


class SplitCertificates(Coordinator):
    """A coordinator that shows some nodes another certificate for the same session."""

    def __init__(self, certificates: Mapping[str, bytes], **options: Any) -> None:
        super().__init__(**options)
        self.certificates = dict(certificates)

    async def _call(
        self, node: NodeDescriptor, request: Mapping[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        if request.get("op") == "start" and node.node_id in self.certificates:
            request = {**request, "certificate": self.certificates[node.node_id]}
        return await super()._call(node, request, timeout)


def call(step: Any, co: Coordinator | None = None) -> Any:
    async def go() -> Any:
        async with co or Coordinator(timeout=60) as c:
            return await step(c)

    return asyncio.run(go())


class Env:
    def __init__(self, root: Path) -> None:
        self.cluster = Cluster(root, 5, node_options={"require_evidence": True})
        d = self.cluster.descriptors
        self.acme = Org(
            "acme",
            policy=whitelist_only(),
            nodes={d[i].name: d[i].sign_pk for i in (0, 1, 2)},
            vaults={"acme-main": "acme-vault", "laundered-vault": "laundered"},
        )

    @property
    def nodes(self) -> list[NodeDescriptor]:
        return self.cluster.descriptors


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    made = Env(tmp_path_factory.mktemp("review"))
    with made.cluster:
        cert = made.cluster.certify("enrol", params={"org": made.acme.org})
        call(lambda co: co.enrol(made.nodes, made.acme.genesis, cert))
        yield made


def _share(env: Env, index: int, key_id: str) -> tuple[int, int]:
    """What the attacker reads from a node it runs: (party, secret share)."""
    node = env.cluster.nodes[index]
    node.stop()
    try:
        with SecretStore.open(node.directory / "store", passphrase=PASSPHRASE) as store:
            share, _ = read_key(store, key_id)
    finally:
        node.start()
    return share.identifier, share.secret_share


def test_a_key_made_on_the_attackers_nodes_cannot_become_the_organisations_vault(env: Env) -> None:
    acme, nodes = env.acme, env.nodes
    attackers = [nodes[3], nodes[4]]
    # 1. A key of no organisation on the attacker's nodes: it knows the secret.
    key: ClusterKey = call(
        lambda co: co.keygen(attackers, 2, ECDSA, env.cluster.keygen_cert(ECDSA, 2, attackers, "laundered"))
    )
    shares = dict(_share(env, i, "laundered") for i in (3, 4))
    secret = interpolate_at_zero(shares, key.public.group.order)
    assert key.public.group.base_mul(secret) == key.public.group_public_key
    # 2. Reshared onto acme's nodes: the dealers see a certificate without org, the new members one naming acme.
    newcomers = [nodes[0], nodes[1], nodes[2]]
    plain = admin_params("reshare", threshold=2, nodes=newcomers, key=key)
    assert "org" not in plain
    dealer_cert = env.cluster.certify("reshare", key.key_id, params=plain)
    member_cert = env.cluster.certify("reshare", key.key_id, params=plain | {"org": acme.org})
    co = SplitCertificates({d.node_id: dealer_cert for d in attackers}, timeout=60)
    with pytest.raises(ClusterError) as exc:
        call(lambda c: c.reshare(key, newcomers, 2, member_cert), co)
    assert exc.value.reason == "approval" and "whose governance log does not name node(s)" in str(exc.value)
    for node in newcomers:  # nothing was staged or kept: none of acme's nodes holds the key
        with pytest.raises(ClusterError) as missing:
            call(lambda c, node=node: c._call(node, {"op": "key", "key_id": "laundered"}))
        assert missing.value.reason == "unknown-key"


def test_a_key_of_no_organisation_on_the_organisations_own_nodes_does_not_join_it_by_reshare(env: Env) -> None:
    """The dealers are acme's nodes but hold the key for no organisation: they state nothing, so no node takes it."""
    acme, nodes = env.acme, env.nodes
    dealers = [nodes[0], nodes[1]]
    key: ClusterKey = call(
        lambda co: co.keygen(dealers, 2, ECDSA, env.cluster.keygen_cert(ECDSA, 2, dealers, "loose-on-acme"))
    )
    newcomers = [nodes[0], nodes[1], nodes[2]]
    plain = admin_params("reshare", threshold=2, nodes=newcomers, key=key)
    dealer_cert = env.cluster.certify("reshare", key.key_id, params=plain)
    member_cert = env.cluster.certify("reshare", key.key_id, params=plain | {"org": acme.org})
    co = SplitCertificates({d.node_id: dealer_cert for d in dealers}, timeout=60)
    with pytest.raises(ClusterError) as exc:
        call(lambda c: c.reshare(key, newcomers, 2, member_cert), co)
    assert exc.value.reason == "approval" and "does not state that it holds" in str(exc.value), exc.value


def test_an_organisations_vault_key_cannot_be_reshared_to_threshold_one(env: Env) -> None:
    acme, nodes = env.acme, env.nodes
    members = [nodes[0], nodes[1], nodes[2]]
    key: ClusterKey = call(
        lambda co: co.keygen(members, 2, ECDSA, env.cluster.keygen_cert(ECDSA, 2, members, "acme-vault", org=acme.org))
    )
    acme.add_vault("acme-vault", call(lambda co: co.holdings(members, "acme-vault")))
    assert acme.log.state.vault_of_key("acme-vault").holding.threshold == 2  # type: ignore[union-attr]
    params = admin_params("reshare", threshold=1, nodes=members, key=key)
    assert params["org"] == acme.org
    with pytest.raises(ClusterError) as exc:
        call(lambda co: co.reshare(key, members, 1, env.cluster.certify("reshare", key.key_id, params=params)))
    assert exc.value.reason == "approval" and "threshold stays at least 2" in str(exc.value), exc.value
    # Nor to 2 of 4 (a newcomer the log does not name aside): two signer sets could share no node.
    wider = admin_params("reshare", threshold=2, nodes=[*members, nodes[3]], key=key)
    with pytest.raises(ClusterError) as exc:
        call(
            lambda co: co.reshare(
                key, [*members, nodes[3]], 2, env.cluster.certify("reshare", key.key_id, params=wider)
            )
        )
    assert exc.value.reason == "approval"


# == 3. one signed request, paid by two disjoint signer sets (2t <= n) ==========================================

CHAIN = 1337
ETHER = 10**18
PATH = "m/0"


def _address(key: ClusterKey) -> str:
    from harbour.chains.ethereum import address_from_public_key
    from harbour.mpc import hd

    return address_from_public_key(
        hd.derive(key.public.group, key.public.group_public_key, key.chain_code, PATH).public_key  # type: ignore[arg-type]
    )


def test_a_signed_request_pays_once_even_with_disjoint_signer_sets(env: Env) -> None:
    """The docs: "A node signs one transaction per transaction id, so one signed request pays once".

    With a 2-of-4 key, signers {1,2} and {3,4} would share no node, and the service
    could use the bot's one signed request (one transaction id) for two transactions
    (two nonces). The nodes make no such key for an organisation; with 3 of 4, any
    two signer sets share a node, which has pinned the transaction id to its nonce.
    """
    from governance_env import INITIATOR, raw
    from harbour.chains.eip1559 import Eip1559Transaction, parse_address
    from harbour.chains.ethereum import checksum_address
    from harbour.governance.request import request_body, sign_request
    from harbour.node.quorum import GovernedEvidence, Intent

    to = checksum_address(bytes.fromhex("a1" * 20))
    bot_rule = bot_policy(INITIATOR, ETHER)
    d = env.nodes
    bots = Org(
        "bots", policy=bot_rule, nodes={d[i].name: d[i].sign_pk for i in range(4)}, vaults={"bots-main": "bots-vault"}
    )
    cert = env.cluster.certify("enrol", params={"org": bots.org})
    call(lambda co: co.enrol(d[:4], bots.genesis, cert))
    members = d[:4]
    with pytest.raises(ClusterError) as exc:
        call(
            lambda co: co.keygen(
                members, 2, ECDSA, env.cluster.keygen_cert(ECDSA, 2, members, "bots-two", org=bots.org)
            )
        )
    assert exc.value.reason == "approval" and "above half the committee" in str(exc.value), exc.value
    key: ClusterKey = call(
        lambda co: co.keygen(members, 3, ECDSA, env.cluster.keygen_cert(ECDSA, 3, members, "bots-vault", org=bots.org))
    )
    bots.add_vault("bots-vault", call(lambda co: co.holdings(members, "bots-vault")))
    intent = Intent(CHAIN, _address(key), to, "ETH", ETHER, max_fee=60_000 * 3 * 10**9)
    tx_id = "tx-the-bots-one-request"
    body = request_body(
        chain_id=CHAIN,
        org=bots.log.genesis_hash,
        transaction_id=tx_id,
        vault="bots-main",
        asset="ETH",
        destination=to,
        amount=ETHER,
    )
    initiation = sign_request(bots.keys[INITIATOR], body)  # the bot signs once
    assert raw(bots.keys[INITIATOR]) == bots.log.state.users[INITIATOR].approval_key

    def pay(nonce: int, signers: list[int]) -> Any:
        tx = Eip1559Transaction(
            chain_id=CHAIN, nonce=nonce, max_priority_fee_per_gas=10**9, max_fee_per_gas=3 * 10**9,
            gas_limit=60_000, to=parse_address(to), value=ETHER, data=b"",
        )  # fmt: skip
        evidence = GovernedEvidence(
            org=bots.org, transaction_id=tx_id, intent=intent, transaction=tx, initiator=INITIATOR,
            head=bots.log.head, approvals=[], initiation=initiation,
        ).encode()  # fmt: skip
        digest = tx.signing_hash()

        def certificate(chosen: list[int]) -> bytes:
            return env.cluster.certify(
                "sign", key.key_id, path=PATH, digests=[digest], signers=sorted(chosen), evidence=evidence
            )

        return call(lambda co: co.sign_for_org(key, digest, certificate, log=bots.log, path=PATH, signers=signers))

    pay(0, [1, 2, 3])
    with pytest.raises(ClusterError) as exc:
        pay(1, [2, 3, 4])  # a second payment of the same signed request
    assert exc.value.reason == "approval", exc.value


def test_a_second_key_under_a_vaults_key_id_is_not_signed_for_as_that_vault(env: Env) -> None:
    """Nodes the admins added later hold no share of the vault's key; one made there under its id is another key."""
    from governance_env import INITIATOR
    from harbour.chains.eip1559 import Eip1559Transaction, parse_address
    from harbour.chains.ethereum import checksum_address
    from harbour.governance import changes as c
    from harbour.governance.request import request_body, sign_request
    from harbour.node.quorum import GovernedEvidence, Intent

    d = env.nodes
    twins = Org(
        "twins",
        policy={"rules": [{"name": "anything", "action": "allow"}]},
        nodes={d[i].name: d[i].sign_pk for i in (0, 1, 2)},
        vaults={"twins-main": "twins-vault"},
    )
    call(lambda co: co.enrol(d, twins.genesis, env.cluster.certify("enrol", params={"org": twins.org})))
    members = d[:3]
    call(
        lambda co: co.keygen(
            members, 2, ECDSA, env.cluster.keygen_cert(ECDSA, 2, members, "twins-vault", org=twins.org)
        )
    )
    twins.add_vault("twins-vault", call(lambda co: co.holdings(members, "twins-vault")))
    twins.propose(c.AddNode(d[3].name, d[3].sign_pk), c.AddNode(d[4].name, d[4].sign_pk))
    call(lambda co: co.push(d, twins.log))
    newcomers = [d[3], d[4]]
    twin: ClusterKey = call(
        lambda co: co.keygen(
            newcomers, 2, ECDSA, env.cluster.keygen_cert(ECDSA, 2, newcomers, "twins-vault", org=twins.org)
        )
    )
    to = checksum_address(bytes.fromhex("a2" * 20))
    intent = Intent(CHAIN, _address(twin), to, "ETH", ETHER, max_fee=21_000 * 3 * 10**9)
    tx = Eip1559Transaction(
        chain_id=CHAIN, nonce=0, max_priority_fee_per_gas=10**9, max_fee_per_gas=3 * 10**9,
        gas_limit=21_000, to=parse_address(to), value=ETHER, data=b"",
    )  # fmt: skip
    body = request_body(
        chain_id=CHAIN,
        org=twins.log.genesis_hash, transaction_id="tx-twin", vault="twins-main", asset="ETH", destination=to,
        amount=ETHER,
    )  # fmt: skip
    evidence = GovernedEvidence(
        org=twins.org, transaction_id="tx-twin", intent=intent, transaction=tx, initiator=INITIATOR,
        head=twins.log.head, approvals=[], initiation=sign_request(twins.keys[INITIATOR], body),
    ).encode()  # fmt: skip
    digest = tx.signing_hash()

    def certificate(chosen: list[int]) -> bytes:
        return env.cluster.certify(
            "sign", twin.key_id, path=PATH, digests=[digest], signers=sorted(chosen), evidence=evidence
        )

    with pytest.raises(ClusterError) as exc:
        call(lambda co: co.sign_for_org(twin, digest, certificate, log=twins.log, path=PATH, signers=[1, 2]))
    assert "is not the key vault 'twins-main' states" in str(exc.value), exc.value
