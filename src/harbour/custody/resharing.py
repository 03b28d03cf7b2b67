"""Resharing a vault's key onto another committee of signer nodes: a node brought in, or one retired.

The key stays (the same public key and chain code, so the same addresses and
balances); its shares are dealt anew to the committee an admin names, at the
threshold they name, by the signer nodes' resharing ceremony under the
service's authority certificate (:meth:`harbour.custody.signer.Signer.reshare`).
Members leaving the committee delete their shares as it commits.

The ceremony runs at the admin's request; what it may do is bounded by what the
admin quorum signed already, because the nodes check it: a node new to the key
must be one the log names (``node.add``), and the threshold never goes below the
one the vault was approved at and stays above half the committee. Its result
is then a governance change, ``vault.reshare`` (:mod:`harbour.governance.committee`),
proposed here with every new holder's signed statement, because who holds the
organisation's key is the admins' to approve and the log is where an auditor
reads it. Until it lands, the nodes sign for the vault only as the holders the
log states (a node the reshare brought in takes part in no signature) and the
vault's row shows the old committee; once it lands, both follow the new one.

Checked before any node is asked: an admin, a vault of the log, names of nodes
the deployment has and the log names, a threshold the rules allow, a change
that changes something, no withdrawal of the vault being signed (a reshare does
not start under a signature, and a withdrawal that comes to be signed during
the ceremony waits: :class:`harbour.custody.signer.KeyBusy`), and the key's
threshold of its members answering.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from harbour.custody import models as m
from harbour.custody import states
from harbour.custody.actors import Actor, require
from harbour.custody.errors import Conflict, Forbidden, Invalid, NotFound, Unavailable
from harbour.custody.governance import Governance, check_can_change
from harbour.custody.ledger import Ledger
from harbour.custody.signer import KeyBusy, Signer
from harbour.custody.uow import UnitOfWork
from harbour.governance import changes as c
from harbour.governance import committee
from harbour.governance.holding import Holding
from harbour.governance.state import OrgState
from harbour.node.coordinator import ClusterError
from harbour.node.identity import NodeDescriptor


def _threshold(threshold: object, members: int, current: int) -> int:
    """The threshold, if the rules allow it for ``members`` nodes and a key at ``current``; else Invalid or Conflict."""
    if type(threshold) is not int or threshold < 2:
        raise Invalid("threshold must be an integer of at least 2 (a 1-of-n key is a single point of failure)")
    if threshold > members:
        raise Conflict(f"threshold must be 2..{members}: the new committee has {members} node(s)")
    if threshold < current:
        raise Conflict(
            f"the threshold never goes below the {current} the vault's key is held at now (the signer nodes refuse "
            f"a lower one): ask for {current} or more"
        )
    if 2 * threshold <= members:
        raise Conflict(
            f"threshold must be above half the {members} nodes ({members // 2 + 1} or more): then any two signer "
            "sets share a node, which keeps velocity limits and one payment per request exact"
        )
    return threshold


class Resharing:
    def __init__(self, uow: UnitOfWork, signer: Signer, ledger: Ledger, governance: Governance) -> None:
        self.uow = uow
        self.signer = signer
        self.ledger = ledger
        self.governance = governance

    def _members(self, nodes: object) -> list[NodeDescriptor]:
        if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) for n in nodes):
            raise Invalid("nodes is a non-empty list of the signer nodes' names")
        if len(set(nodes)) != len(nodes):
            raise Invalid("a node is listed twice")
        try:
            return [self.signer.node(n) for n in nodes]
        except KeyError as exc:
            configured = ", ".join(sorted(d.name for d in self.signer.nodes)) or "none"
            raise NotFound(
                f"this deployment has no signer node named {exc.args[0]!r} (custody.json: nodes; configured: "
                f"{configured})"
            ) from None

    def reshare(self, actor: Actor, vault_id: str, *, nodes: list[str], threshold: int) -> dict[str, Any]:
        """Reshare vault ``vault_id``'s key onto ``nodes`` at ``threshold``, then propose ``vault.reshare``."""
        require(actor, "admin")
        members = self._members(nodes)
        with self.uow.read() as s:
            row = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
            key_id, old_nodes = row.key_id, list(row.nodes)
            signing = s.scalar(
                select(func.count())
                .select_from(m.Transaction)
                .where(
                    m.Transaction.vault_id == row.id,
                    m.Transaction.state == states.SIGNING,
                    m.Transaction.raw.is_(None),
                )
            )
            state = self.ledger.state(s, actor.org_id)
        proposer = state.users.get(actor.user_id)
        if proposer is None or not proposer.active_admin:
            raise Forbidden(f"{actor.name} is not an enabled admin with an approval key in the governance log")
        check_can_change(state)
        vault = state.vaults.get(row.id)
        if vault is None:
            raise Conflict(f"vault {row.name!r} is not bound in the governance log yet: its vault.add has not landed")
        current = vault.holding
        threshold = _threshold(threshold, len(members), current.threshold)
        strangers = [d.name for d in members if d.sign_pk not in state.nodes]
        if strangers:
            raise Conflict(
                f"the governance log does not name node(s) {', '.join(strangers)} as the organisation's: a vault's key "
                "is reshared only onto nodes a node.add the admins signed names (harbour governance add-node)"
            )
        holders = tuple(sorted(d.sign_pk for d in members))
        if (holders, threshold) == (current.holders, current.threshold):
            raise Conflict(f"vault {vault.name!r} is held by these nodes at threshold {threshold} already")
        if signing:
            raise Conflict(
                f"{signing} withdrawal(s) from vault {vault.name!r} are being signed: a reshare does not start under "
                "a signature; try again once they are signed"
            )
        genesis = self.ledger.log(actor.org_id).genesis
        try:
            key = self.signer.key(key_id)
            involved = list({d.node_id: d for d in [*key.roster.values(), *members]}.values())
            answering = self.signer.answering(involved)
            reached = [d for d in involved if answering[d.name] and d.sign_pk in state.nodes]
            self.signer.enrol(genesis, reached)
            # The dealers check the newcomers against their own copy of the log: it must name them.
            self.signer.push(self.ledger.log(actor.org_id), reached)
            new, left_behind = self.signer.reshare(key_id, members, threshold)
        except KeyBusy as exc:
            raise Conflict(str(exc)) from None
        except ClusterError as exc:
            if exc.reason == "too-few-nodes":
                raise Conflict(str(exc)) from None
            raise Unavailable(f"resharing vault {vault.name!r} on the signer nodes failed: {exc}") from exc
        except Exception as exc:
            raise Unavailable(f"resharing vault {vault.name!r} on the signer nodes failed: {exc}") from exc
        names = [d.name for _, d in sorted(new.roster.items())]
        with self.uow.tx() as s:
            self.uow.event(
                s,
                actor,
                "vault.reshared",
                row.id,
                key_id=key_id,
                nodes=names,
                threshold=threshold,
                previous_nodes=old_nodes,
                previous_threshold=current.threshold,
                not_dealing=left_behind,
            )
        try:
            statements = self.signer.holdings(key_id, list(new.roster.values()))
        except Exception as exc:
            raise Unavailable(
                f"vault {vault.name!r} was reshared onto {', '.join(names)}, but their holding statements could not "
                f"be read to propose the vault.reshare that records it: {exc}; asking for the same reshare again "
                "runs it and proposes it"
            ) from exc
        holding = Holding(
            org=current.org,
            key_id=key_id,
            public_key=current.public_key,
            chain_code=current.chain_code,
            threshold=threshold,
            holders=holders,
        )
        change = committee.ReshareVault(row.id, holding, tuple(statements))

        def build(now: OrgState) -> list[c.Change]:
            return [change]

        details = {"reshares": {row.id: {"nodes": names, "threshold": threshold, "not_dealing": left_behind}}}
        return self.governance.propose(actor, build, details=details)
