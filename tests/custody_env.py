"""A whole custody deployment for tests: a home, three signer-node processes, a chain, an organisation.

``CustodyEnv`` starts real ``harbour node run`` processes on loopback, opens the
service on the embedded chain (or a JSON-RPC URL such as anvil's) and a database
URL (SQLite file by default), creates an organisation with an admin, an
initiator, three approvers, an auditor and a viewer (approvers and admins with
their own Ed25519 approval keys), and can make a 2-of-3 vault with a funded
address. Tests then act through ``env.custody`` as those users.

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
from harbour.custody.service import Actor, Custody
from harbour.node.localnet import LocalNode, create_nodes

PASSPHRASE = "custody test nodes"
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
            database=database,
            chain=chain_url or "embedded",
            dev_chain=chain_url is not None,
            confirmations=confirmations,
        )
        self.node_options = node_options or {}
        self.nodes: list[LocalNode] = create_nodes(
            root / "nodes",
            nodes,
            [cfg.authority_public(self.home)],
            passphrase=PASSPHRASE,
            node_options=self.node_options,
        )
        self.config.nodes = [str(n.directory / "descriptor.json") for n in self.nodes]
        self.config.save()
        self.pipeline_options = pipeline_options or {"poll": 0.05, "deposit_poll": 0.2}
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

    def reset(self, database: str) -> CustodyEnv:
        """Start over on ``database`` (fresh) and a fresh embedded chain, with the same home and nodes.

        Nodes a test stopped or killed are started again; nobody is in the new
        database until :meth:`organisation` is called.
        """
        self.close()
        self.config.database = database
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

    def organisation(self, policy: dict[str, Any] | None = None, *, approvers: int = 3) -> None:
        admin_key = Ed25519PrivateKey.generate()
        out = self.custody.bootstrap("Harbour Test Custodian", "alice-admin", public_hex(admin_key), policy)
        admin = self.custody.authenticate(out["token"])
        self.people["admin"] = Person("alice-admin", admin, out["token"], admin_key)
        self.add_person("admin2", ["admin"], key=True)
        self.add_person("initiator", ["initiator"], key=True)
        for i in range(1, approvers + 1):
            self.add_person(f"approver{i}", ["approver"], key=True)
        self.add_person("auditor", ["auditor"])
        self.add_person("viewer", ["viewer"])

    def add_person(self, name: str, roles: list[str], *, key: bool = False) -> Person:
        private = Ed25519PrivateKey.generate() if key else None
        user = self.custody.create_user(
            self.actor("admin"), name=name, roles=roles, approval_key=public_hex(private) if private else None
        )
        token = self.custody.issue_credential(self.actor("admin"), user["id"])["token"]
        person = Person(name, self.custody.authenticate(token), token, private)
        self.people[name] = person
        return person

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
        """Propose as admin, approve as admin2: the policy-change path, not a back door."""
        tx = self.custody.propose_policy(self.actor("admin"), document)
        return self.approve(tx["id"], "admin2")

    # -- vaults and money -------------------------------------------------------------------------------

    def vault(self, name: str = "treasury", fund: int = 10 * ETH) -> tuple[str, str]:
        """A 2-of-3 vault with its first address funded with ``fund`` wei; returns (vault id, address)."""
        admin = self.actor("admin")
        if not any(a["symbol"] == "ETH" for a in self.custody.list_assets(admin, cfg_page())["items"]):
            self.custody.add_asset(admin, symbol="ETH", kind="native", decimals=18)
        vault = self.custody.create_vault(admin, name=name, threshold=2)
        address = self.custody.derive_address(admin, vault["id"])["address"]
        if fund:
            self.chain.fund(address, fund)
        return vault["id"], address

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
