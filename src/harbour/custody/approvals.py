"""Approvals: what an approver is asked to sign, their signed decisions, and cancellation.

An approval is a signature by the approver's own Ed25519 key over the
transaction's statement (:mod:`harbour.custody.statements`), checked here
against the key the user registered; for a withdrawal the same signatures travel
to the signer nodes, which check them again. When the approvals recorded meet
the requirement the policy set at submission, the transaction becomes
``approved``: a withdrawal is handed to the pipeline after the commit, a policy
change comes into force (:meth:`harbour.custody.governance.Governance.activate`)
unless another version came into force meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import inputs, statements, states
from harbour.custody import models as m
from harbour.custody.actors import Actor, require
from harbour.custody.errors import Conflict, Forbidden, Invalid
from harbour.custody.governance import Governance
from harbour.custody.transactions import intent, requirement, view
from harbour.custody.uow import UnitOfWork
from harbour.governance import policy as pol
from harbour.node.quorum import Decision


def subject(s: Session, tx: m.Transaction) -> statements.Subject:
    """What the approvers of ``tx`` decide on, from its rows."""
    if tx.kind == statements.POLICY_CHANGE:
        assert tx.policy_document is not None
        digest = pol.Policy.from_document(tx.policy_document).digest()
        return statements.PolicyChangeApproval(org=tx.org_id, transaction_id=tx.id, digest=digest)
    vault = s.get(m.Vault, tx.vault_id)
    source = s.get(m.Address, tx.source_address_id)
    assert vault is not None and source is not None
    return statements.WithdrawalApproval(
        org=tx.org_id, transaction_id=tx.id, key_id=vault.key_id, path=source.path, intent=intent(s, tx)
    )


class Approvals:
    def __init__(self, uow: UnitOfWork, governance: Governance, on_approved: Callable[[str], None]) -> None:
        self.uow = uow
        self.governance = governance
        self.on_approved = on_approved
        """Called after commit with the id of a withdrawal that became approved."""

    def approval_request(self, actor: Actor, tx_id: str) -> dict[str, Any]:
        """What an approver signs, with the facts to check it against (the CLI rebuilds the statement itself)."""
        require(actor, "approver", "admin")
        with self.uow.read() as s:
            tx = self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            about = subject(s, tx)
            return {
                "transaction": view(s, tx),
                "statement": about.statement().hex(),
                "org": tx.org_id,
                **about.request_fields(),
            }

    def approve(self, actor: Actor, tx_id: str, *, signature: str) -> dict[str, Any]:
        return self._decide(actor, tx_id, signature, "approve")

    def reject(self, actor: Actor, tx_id: str, *, signature: str) -> dict[str, Any]:
        return self._decide(actor, tx_id, signature, "reject")

    def _decide(self, actor: Actor, tx_id: str, signature: str, decision: Decision) -> dict[str, Any]:
        with self.uow.tx() as s:
            tx = self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            s.refresh(tx, with_for_update=True)
            policy_change = tx.kind == statements.POLICY_CHANGE
            require(actor, "admin" if policy_change else "approver")
            if tx.state != states.PENDING_APPROVAL:
                raise Conflict(f"transaction {tx.id} is {tx.state}, not pending approval")
            if tx.initiator_id == actor.user_id:
                raise Forbidden("the initiator of a transaction cannot approve or reject it")
            if s.scalar(
                select(m.Approval).where(m.Approval.transaction_id == tx.id, m.Approval.approver_id == actor.user_id)
            ):
                raise Conflict(f"{actor.name} has already decided on transaction {tx.id}")
            user = s.get(m.User, actor.user_id)
            assert user is not None
            if user.approval_key is None:
                raise Forbidden(f"{actor.name} has no approval key registered")
            about = subject(s, tx)
            statement = about.statement(decision)
            if not inputs.is_signature_hex(signature) or not about.verifies(
                bytes.fromhex(user.approval_key), bytes.fromhex(signature), statement
            ):
                raise Invalid(
                    f"the signature does not verify under {actor.name}'s approval key over this transaction's statement"
                )
            s.add(
                m.Approval(
                    transaction_id=tx.id,
                    approver_id=actor.user_id,
                    decision=decision,
                    public_key=user.approval_key,
                    signature=signature,
                )
            )
            self.uow.event(s, actor, f"approval.{decision}", tx.id, public_key=user.approval_key, signature=signature)
            s.flush()
            if decision == "reject":
                tx.error = f"rejected by {actor.name}"
                self.uow.move(s, actor, tx, states.REJECTED, by=actor.user_id)
            else:
                self._count(s, tx, policy_change)
            out = view(s, tx)
        if not policy_change and out["state"] == states.APPROVED:
            self.on_approved(tx.id)
        return out

    def _count(self, s: Session, tx: m.Transaction, policy_change: bool) -> None:
        """Approve ``tx`` if the approvals recorded now meet its requirement (a policy change: and still applies)."""
        approvers = set(
            s.scalars(
                select(m.Approval.approver_id).where(
                    m.Approval.transaction_id == tx.id, m.Approval.decision == "approve"
                )
            )
        )
        met = requirement(tx).satisfied(approvers, tx.initiator_id)
        current = self.governance.superseded(s, tx) if policy_change else None
        if met and current is not None:
            # Approved against an older policy than the one now in force: never let it win silently.
            tx.error = f"superseded: proposed against version {tx.policy_version}, version {current} is in force"
            self.uow.move(s, None, tx, states.REJECTED, reason="superseded", version=current)
        elif met:
            self.uow.move(s, None, tx, states.APPROVED, approvers=sorted(approvers))
            if policy_change:
                self.governance.activate(s, tx)

    def cancel(self, actor: Actor, tx_id: str) -> dict[str, Any]:
        with self.uow.tx() as s:
            tx = self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            s.refresh(tx, with_for_update=True)
            if tx.initiator_id != actor.user_id and "admin" not in actor.roles:
                raise Forbidden("only the initiator or an admin can cancel a transaction")
            states.check(tx.kind, tx.state, states.CANCELLED)
            self.uow.move(s, actor, tx, states.CANCELLED)
            return view(s, tx)
