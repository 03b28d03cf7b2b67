"""The signer nodes an organisation's log names: the nodes its vault keys may be made on and reshared to.

The genesis names the deployment's nodes (:mod:`harbour.custody.genesis`); after
that a node joins or leaves the organisation only by a governance entry its admin
quorum signed (``node.add``, ``node.remove``), since the nodes refuse to make or
reshare an organisation's key onto a node its log does not name. A ``node.add``
is proposed by the node's name in this deployment, and its identity key is the
one the deployment's descriptor holds (custody.json ``nodes``), never one a
request carries: the admins see the key in ``harbour approve`` and compare it
with the one the node's operator reads from their node. A node that rotated its
identity key (``harbour node rotate-keys``) is still named by the log under its
old key; adding it again proposes one entry that removes the old key and adds
the new one, so the admins see both.
"""

from __future__ import annotations

from typing import Any

from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Conflict, Invalid, NotFound, Unavailable
from harbour.custody.governance import Governance
from harbour.custody.ledger import Ledger
from harbour.custody.shapes import GovernanceNodes
from harbour.custody.signer import Signer
from harbour.custody.uow import UnitOfWork
from harbour.governance import changes as c
from harbour.governance.state import OrgState
from harbour.node.identity import IdentityError, NodeDescriptor, check_name, compute_node_id


def _name(value: object) -> str:
    try:
        return check_name(value)
    except IdentityError as exc:
        raise Invalid(str(exc)) from None


def _named(state: OrgState, name: str) -> bytes | None:
    """The identity key the log names ``name`` by, if it names such a node."""
    return next((key for key, named in state.nodes.items() if named == name), None)


class Nodes:
    def __init__(self, uow: UnitOfWork, ledger: Ledger, governance: Governance, signer: Signer) -> None:
        self.uow = uow
        self.ledger = ledger
        self.governance = governance
        self.signer = signer

    def _configured(self, name: str) -> NodeDescriptor:
        try:
            return self.signer.node(name)
        except KeyError:
            configured = ", ".join(sorted(d.name for d in self.signer.nodes)) or "none"
            raise NotFound(
                f"this deployment has no signer node named {name!r} (custody.json: nodes; configured: {configured}): "
                "a node is added by the name of a descriptor the service was started with"
            ) from None

    def add(self, actor: Actor, name: str) -> dict[str, Any]:
        """Propose ``node.add`` for the deployment's node ``name``, with its descriptor's identity key.

        If the log names a node ``name`` under another key (the node rotated its
        identity), the same entry removes that key first (``node.remove``). The
        organisation is enrolled on the node first (Unavailable if it cannot be).
        """
        require(actor, "admin")
        descriptor = self._configured(_name(name))
        key = descriptor.sign_pk
        try:  # the node keeps the log from now on, so every entry that lands reaches it (this one included)
            self.signer.enrol(self.ledger.log(actor.org_id).genesis, [descriptor])
        except Exception as exc:
            raise Unavailable(f"enrolling the organisation on node {name!r} failed (nothing proposed): {exc}") from exc

        def build(state: OrgState) -> list[c.Change]:
            if key in state.nodes:
                raise Conflict(
                    f"the governance log names node {state.nodes[key]!r} with identity key {key.hex()} already"
                )
            old = _named(state, name)
            added = c.AddNode(name, key)
            return [added] if old is None else [c.RemoveNode(old), added]

        return self.governance.propose(actor, build)

    def remove(self, actor: Actor, name: str) -> dict[str, Any]:
        """Propose ``node.remove`` for the node the log names ``name`` (configured here or not: it may be retired)."""
        require(actor, "admin")
        _name(name)

        def build(state: OrgState) -> list[c.Change]:
            key = _named(state, name)
            if key is None:
                raise NotFound(f"the governance log names no signer node {name!r}")
            return [c.RemoveNode(key)]

        return self.governance.propose(actor, build)

    def list(self, actor: Actor) -> dict[str, Any]:
        """The nodes the log names, then the deployment's nodes it does not, each saying which it is."""
        require(actor, *ANYONE)
        with self.uow.read() as s:
            state = self.ledger.state(s, actor.org_id)
        configured = {d.sign_pk for d in self.signer.nodes}
        rows = [(name, key, True, key in configured) for key, name in sorted(state.nodes.items(), key=_by_name)]
        rows += [(d.name, d.sign_pk, False, True) for d in self.signer.nodes if d.sign_pk not in state.nodes]
        return GovernanceNodes.model_validate(
            {
                "seq": state.seq,
                "nodes": [
                    {
                        "name": name,
                        "identity_key": key.hex(),
                        "node_id": compute_node_id(key),
                        "in_log": in_log,
                        "configured": here,
                    }
                    for name, key, in_log, here in rows
                ],
            }
        ).model_dump(mode="json")


def _by_name(item: tuple[bytes, str]) -> tuple[str, bytes]:
    return item[1], item[0]
