"""A whole custody deployment for tests: a home, three signer-node processes, a chain, an organisation.

``CustodyEnv`` starts real ``harbour node run`` processes on loopback, opens the
service on the embedded chain (or a JSON-RPC URL such as anvil's) and a database
URL (SQLite file by default), creates an organisation from its genesis entry with
two admins (admin quorum 1: every governance change is signed by its proposer
and the other admin), an initiator, three approvers, an auditor and a viewer
(approvers and admins with their own Ed25519 approval keys), and can make a
2-of-3 vault with a funded address. Tests then act through ``env.custody`` as
those users; :meth:`CustodyEnv.govern` signs a proposed governance change as the
admins, so that a test changes users, assets, vaults or the policy the way the
service allows and no other.

Starting the nodes is most of what a deployment costs, and a test needs fresh
nodes only when it changes how they are configured. So a module can start one
``CustodyEnv`` and give each test :meth:`CustodyEnv.reset`: a new database and a
new embedded chain under the same home and the same running nodes (a node a test
killed is started again). The nodes keep the keys earlier tests made; each vault
gets a new random key id, so nothing one test does is seen by the next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harbour.chains.evm import EvmClient
from harbour.custody import config as cfg
from harbour.custody import statements
from harbour.custody.service import Actor, Custody, Founder
from harbour.node.localnet import LocalNode, create_nodes

PASSPHRASE = "custody test nodes"
HOME_PASSPHRASE = "custody test home keys"
"""Encrypts the test homes' authority and audit keys; tests/conftest.py exports it as HARBOUR_CUSTODY_PASSPHRASE."""
ETH = 10**18


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@dataclass
class Person:
    name: str
    actor: Actor
    token: str
    key: Ed25519PrivateKey | None


class CustodyEnv:
    def __init__(
        self,
        root: Path,
        *,
        chain_url: str | None = None,
        database: str | None = None,
        confirmations: int = 1,
        nodes: int = 3,
        node_options: dict[str, Any] | None = None,
        pipeline_options: dict[str, Any] | None = None,
    ) -> None:
        self.root = root
        self.home = root / "custody"
        self.config = cfg.init_home(
            self.home,
            passphrase=HOME_PASSPHRASE,
            database=database,
            chain=chain_url or "embedded",
            dev_chain=chain_url is not None,
            confirmations=confirmations,
        )
        # Nodes that serve organisations only, as `harbour custody add-node` requires of a deployment's nodes.
        self.node_options = {"organisations_only": True, **(node_options or {})}
        self.nodes: list[LocalNode] = create_nodes(
            root / "nodes",
            nodes,
            [cfg.authority_public(self.home)],
            passphrase=PASSPHRASE,
            node_options=self.node_options,
        )
        self.config.nodes = [str(n.directory / "descriptor.json") for n in self.nodes]
        self.config.save()
        # a short signing lease: a test that reopens the service on PostgreSQL waits for its predecessor's to expire
        self.pipeline_options = pipeline_options or {"poll": 0.05, "deposit_poll": 0.2, "lease": 3}
        self.deployment: cfg.Deployment | None = None
        self.people: dict[str, Person] = {}
        self._chain: EvmClient | None = None

    # -- lifecycle --------------------------------------------------------------------------------------

    def start_nodes(self) -> None:
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()

    def open(self, start: bool = True) -> cfg.Deployment:
        """(Re)open the service; the embedded chain is kept across reopenings, like a real node would be."""
        self.deployment = cfg.open_deployment(
            self.config, chain=self._chain, start=start, pipeline_options=self.pipeline_options
        )
        self._chain = self.deployment.chain
        return self.deployment

    def close(self) -> None:
        if self.deployment is not None:
            self.deployment.close()
            self.deployment = None

    def stop(self) -> None:
        self.close()
        for node in self.nodes:
            node.stop()

    def reset(self, database: str, *, chain_url: str | None = None) -> CustodyEnv:
        """Start over on ``database`` (fresh) and a fresh embedded chain, with the same home and nodes.

        With ``chain_url`` the service runs on that JSON-RPC chain instead (anvil's,
        as it is). Nodes a test stopped or killed are started again; nobody is in the
        new database until :meth:`organisation` is called.
        """
        self.close()
        self.config.database = database
        self.config.chain = chain_url or "embedded"
        self.config.dev_chain = chain_url is not None
        self.config.save()
        self._chain = None
        self.people = {}
        stopped = [node for node in self.nodes if node.process is None or node.process.poll() is not None]
        for node in stopped:
            node.start(wait=False)
        for node in stopped:
            node.wait_ready()
        self.open()
        return self

    def __enter__(self) -> CustodyEnv:
        self.start_nodes()
        try:
            self.open()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def custody(self) -> Custody:
        assert self.deployment is not None
        return self.deployment.custody

    @property
    def chain(self) -> EvmClient:
        """The chain outlives the service: it can be read while the service is down."""
        assert self._chain is not None
        return self._chain

    # -- people -----------------------------------------------------------------------------------------

    def organisation(
        self, policy: dict[str, Any] | None = None, *, approvers: int = 3, admins: int = 2, quorum: int = 1
    ) -> dict[str, Any]:
        """The organisation from its genesis: ``admins`` admins ("admin", "admin2", ...) and everyone else."""
        cast = [("admin" if i == 0 else f"admin{i + 1}", ["admin"], True) for i in range(admins)]
        cast += [("initiator", ["initiator"], True)]
        cast += [(f"approver{i}", ["approver"], True) for i in range(1, approvers + 1)]
        cast += [("auditor", ["auditor"], False), ("viewer", ["viewer"], False)]
        keys = {name: Ed25519PrivateKey.generate() if key else None for name, _, key in cast}
        founders = [
            Founder("alice-admin" if name == "admin" else name, roles, public_hex(k) if (k := keys[name]) else None)
            for name, roles, _ in cast
        ]
        out = self.custody.bootstrap("Harbour Test Custodian", founders, quorum=quorum, policy=policy)
        tokens = {c["name"]: c["token"] for c in out["credentials"]}
        ids = {u["name"]: u["id"] for u in out["users"]}
        for name, _, _ in cast:
            shown = "alice-admin" if name == "admin" else name
            if shown not in tokens:  # not an admin: one admin issues it, at once
                tokens[shown] = self.custody.issue_credential(self.actor("admin"), ids[shown])["token"]
            self.people[name] = Person(shown, self.custody.authenticate(tokens[shown]), tokens[shown], keys[name])
        return out

    def add_person(self, name: str, roles: list[str], *, key: bool = False) -> Person:
        """A new user through governance (proposed by admin, signed by the admins), with a credential."""
        private = Ed25519PrivateKey.generate() if key else None
        proposal = self.custody.create_user(
            self.actor("admin"), name=name, roles=roles, approval_key=public_hex(private) if private else None
        )
        self.govern(proposal)
        issued = self.custody.issue_credential(self.actor("admin"), proposal["changes"][0]["id"])
        if issued["transaction"] is not None:  # an admin's credential is a governance change too
            self.govern(issued["transaction"])
        person = Person(name, self.custody.authenticate(issued["token"]), issued["token"], private)
        self.people[name] = person
        return person

    def add_people(self, names: list[str], roles: list[str]) -> list[Person]:
        """Many users with approval keys in one governance entry, each with a credential (not admins)."""
        from harbour.custody.models import new_id
        from harbour.governance import changes

        keys = {name: Ed25519PrivateKey.generate() for name in names}
        ids = {name: new_id() for name in names}
        users = [
            changes.AddUser(
                ids[n], n, frozenset(roles), keys[n].public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
            )
            for n in names
        ]
        self.govern(self.custody.governance.propose(self.actor("admin"), lambda state: users))
        people = []
        for name in names:
            token = self.custody.issue_credential(self.actor("admin"), ids[name])["token"]
            self.people[name] = Person(name, self.custody.authenticate(token), token, keys[name])
            people.append(self.people[name])
        return people

    def govern(self, proposal: dict[str, Any], signers: tuple[str, ...] = ("admin", "admin2")) -> dict[str, Any]:
        """Sign a proposed governance change as ``signers`` in turn (its proposer among them) until it lands."""
        assert proposal["kind"] == "governance" and proposal["state"] == "pending_approval", proposal
        out = proposal
        for who in signers:
            out = self.approve(proposal["id"], who)
            if out["state"] != "pending_approval":
                break
        assert out["state"] == "confirmed", out
        return out

    def actor(self, name: str) -> Actor:
        return self.people[name].actor

    def user_id(self, name: str) -> str:
        return self.people[name].actor.user_id

    def two_approvers_policy(self, members: list[str] | None = None, threshold: int = 2) -> dict[str, Any]:
        ids = [self.user_id(n) for n in (members or ["approver1", "approver2", "approver3"])]
        return {
            "rules": [
                {
                    "name": "treasury approval",
                    "match": {},
                    "action": "require_approval",
                    "approvals": {
                        "combine": "all",
                        "groups": [{"name": "treasury", "members": ids, "threshold": threshold}],
                    },
                }
            ]
        }

    def set_policy(self, document: dict[str, Any]) -> dict[str, Any]:
        """Propose as admin, sign as admin and admin2: the governance path, not a back door."""
        return self.govern(self.custody.propose_policy(self.actor("admin"), document))

    # -- vaults and money -------------------------------------------------------------------------------

    def vault(self, name: str = "treasury", fund: int = 10 * ETH) -> tuple[str, str]:
        """A 2-of-3 vault with its first address funded with ``fund`` wei; returns (vault id, address)."""
        admin = self.actor("admin")
        if not any(a["symbol"] == "ETH" for a in self.custody.list_assets(admin, cfg_page())["items"]):
            self.govern(self.custody.add_asset(admin, symbol="ETH", kind="native", decimals=18))
        vault_id = self.govern(self.custody.create_vault(admin, name=name, threshold=2))["changes"][0]["id"]
        address = self.custody.derive_address(admin, vault_id)["address"]
        if fund:
            self.chain.fund(address, fund)
        return vault_id, address

    def approve(self, tx_id: str, who: str) -> dict[str, Any]:
        return self.decide(tx_id, who, "approve")

    def decide(self, tx_id: str, who: str, decision: str) -> dict[str, Any]:
        person = self.people[who]
        assert person.key is not None
        request = self.custody.approval_request(person.actor, tx_id)
        subject = statements.from_request(request, tx_id)
        assert subject.statement() == bytes.fromhex(request["statement"])
        assert decision in ("approve", "reject")
        signature = subject.sign(person.key, subject.statement("approve" if decision == "approve" else "reject"))
        method = self.custody.approve if decision == "approve" else self.custody.reject
        return method(person.actor, tx_id, signature=signature.hex())


def cfg_page() -> Any:
    from harbour.custody.views import Page

    return Page(limit=200)
