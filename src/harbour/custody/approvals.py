"""Approvals: what an approver is asked to sign, their signed decisions, their expiry, and cancellation.

An approval is a signature by the approver's own Ed25519 key over the
transaction's statement (:mod:`harbour.custody.statements`), checked here
against the key the governance log gives the approver now; who may approve and
whose approval counts are read from the log's state too (:mod:`harbour.custody.tally`).

- A withdrawal is approved by approvers; the initiator never approves their own.
  When the approvals that count meet the requirement the policy set, it becomes
  ``approved`` and is handed to the pipeline after the commit; the same
  signatures travel to the signer nodes, which check them again.
- A governance change is signed by admins, its proposer first among them: the
  signatures are the entry's (:mod:`harbour.custody.governance`), and it lands
  as soon as they make the entry effective. An admin who rejects it is recorded
  (signed and audited) but ends nothing, and only its proposer cancels it: one
  admin alone must not be able to stop the quorum, least of all from disabling
  that admin.

An approval counts for :attr:`~harbour.custody.settings.Settings.approval_lifetime`
seconds; after that it is marked expired (an audit event) and no longer counts,
and its signer may approve again, as they may after their key was rotated.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import inputs, outcomes, statements, states, tally
from harbour.custody import models as m
from harbour.custody.actors import Actor, require
from harbour.custody.errors import Conflict, Forbidden, Invalid
from harbour.custody.governance import Governance, lock_organisation
from harbour.custody.ledger import Ledger
from harbour.custody.settings import Settings
from harbour.custody.transactions import GOVERNANCE, intent, requirement, view
from harbour.custody.uow import UnitOfWork
from harbour.governance.state import OrgState
from harbour.node.quorum import Decision


def subject(s: Session, tx: m.Transaction) -> statements.Subject:
    """What the approvers of ``tx`` decide on, from its rows."""
    if tx.kind == GOVERNANCE:
        assert tx.entry is not None
        return statements.GovernanceApproval(org=tx.org_id, transaction_id=tx.id, data=tx.entry)
    vault = s.get(m.Vault, tx.vault_id)
    source = s.get(m.Address, tx.source_address_id)
    assert vault is not None and source is not None
    return statements.WithdrawalApproval(
        org=tx.org_id, transaction_id=tx.id, key_id=vault.key_id, path=source.path, intent=intent(s, tx)
    )


class Approvals:
    def __init__(
        self,
        uow: UnitOfWork,
        ledger: Ledger,
        governance: Governance,
        settings: Settings,
        on_approved: Callable[[str], None],
        on_landed: Callable[[str], None],
    ) -> None:
        self.uow = uow
        self.ledger = ledger
        self.governance = governance
        self.settings = settings
        self.on_approved = on_approved
        """Called after commit with the id of a withdrawal that became approved."""
        self.on_landed = on_landed
        """Called after commit with the organisation id whose governance log an entry extended."""

    def approval_request(self, actor: Actor, tx_id: str) -> dict[str, Any]:
        """What an approver signs, with the facts to check it against (the CLI rebuilds the statement itself)."""
        require(actor, "approver", "admin")
        with self.uow.read() as s:
            tx = self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            about = subject(s, tx)
            return {
                "transaction": view(s, tx, self.uow.clock()),
                "statement": about.statement().hex(),
                "org": tx.org_id,
                **about.request_fields(),
            }

    def approve(self, actor: Actor, tx_id: str, *, signature: str) -> dict[str, Any]:
        return self._decide(actor, tx_id, signature, "approve")

    def reject(self, actor: Actor, tx_id: str, *, signature: str) -> dict[str, Any]:
        return self._decide(actor, tx_id, signature, "reject")

    def _decide(self, actor: Actor, tx_id: str, signature: str, decision: Decision) -> dict[str, Any]:
        approved: list[str] = []
        landed: list[str] = []

        def work(s: Session) -> dict[str, Any]:
            tx = self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            governance = tx.kind == GOVERNANCE
            if governance:
                lock_organisation(s, tx.org_id)  # before the transaction's row: the order a landing takes them in
            s.refresh(tx, with_for_update=True)
            require(actor, "admin" if governance else "approver")
            if tx.state != states.PENDING_APPROVAL:
                raise Conflict(f"transaction {tx.id} is {tx.state}, not pending approval")
            state = self.ledger.state(s, tx.org_id)
            key = self._signer_key(state, actor, tx, governance)
            now = self.uow.clock()
            earlier = s.scalar(
                select(m.Approval).where(m.Approval.transaction_id == tx.id, m.Approval.approver_id == actor.user_id)
            )
            if earlier is not None and not _void(earlier, key, now):
                raise Conflict(f"{actor.name} has already decided on transaction {tx.id}")
            about = subject(s, tx)
            if not inputs.is_signature_hex(signature) or not about.verifies(
                key, bytes.fromhex(signature), about.statement(decision)
            ):
                raise Invalid(
                    f"the signature does not verify under {actor.name}'s approval key over this transaction's statement"
                )
            row = earlier or m.Approval(transaction_id=tx.id, approver_id=actor.user_id)
            row.decision, row.public_key, row.signature = decision, key.hex(), signature
            row.created_at, row.expires_at = now, now + dt.timedelta(seconds=self.settings.approval_lifetime)
            row.expired = False
            s.add(row)
            self.uow.event(
                s,
                actor,
                f"approval.{decision}",
                tx.id,
                public_key=key.hex(),
                signature=signature,
                renewed=earlier is not None,
            )
            s.flush()
            if decision == "reject" and governance:
                pass  # recorded: one admin's refusal is no veto over what the quorum signs
            elif decision == "reject":
                outcomes.record(tx, outcomes.REJECTED_BY_APPROVER, f"rejected by {actor.name}")
                self.uow.move(s, actor, tx, states.REJECTED, by=actor.user_id)
            elif governance:
                approved.extend(self.governance.consider(s, tx))
                if tx.state == states.CONFIRMED:
                    landed.append(tx.org_id)
            elif requirement(tx).satisfied(tally.approvers(s, tx, state, now), tx.initiator_id):
                self.uow.move(s, None, tx, states.APPROVED, approvers=sorted(tally.approvers(s, tx, state, now)))
                approved.append(tx.id)
            return view(s, tx, now)

        out = self.uow.write(work)
        for org_id in landed:
            self.on_landed(org_id)
        for withdrawal in approved:
            self.on_approved(withdrawal)
        return out

    @staticmethod
    def _signer_key(state: OrgState, actor: Actor, tx: m.Transaction, governance: bool) -> bytes:
        """The approval key the governance log gives ``actor`` now, if they may decide on ``tx`` at all."""
        user = state.users.get(actor.user_id)
        if governance:
            if user is None or not user.active_admin:
                raise Forbidden(f"{actor.name} is not an enabled admin with an approval key in the governance log")
        else:
            if tx.initiator_id == actor.user_id:
                raise Forbidden("the initiator of a transaction cannot approve or reject it")
            if user is None or user.disabled or "approver" not in user.roles:
                raise Forbidden(f"{actor.name} is not an enabled approver in the governance log")
        if user.approval_key is None:
            raise Forbidden(f"{actor.name} has no approval key registered")
        return user.approval_key

    def expire_due(self) -> int:
        """Mark every approval past its time on a transaction still pending, each with an audit event."""
        now = self.uow.clock()
        with self.uow.read() as s:
            due = s.scalar(
                select(m.Approval.id)
                .join(m.Transaction, m.Transaction.id == m.Approval.transaction_id)
                .where(
                    m.Transaction.state == states.PENDING_APPROVAL,
                    m.Approval.decision == "approve",
                    m.Approval.expired.is_(False),
                    m.Approval.expires_at <= now,
                )
                .limit(1)
            )
        if due is None:  # the common case, without taking the write lock
            return 0

        def work(s: Session) -> int:
            rows = s.execute(
                select(m.Approval, m.Transaction.org_id)
                .join(m.Transaction, m.Transaction.id == m.Approval.transaction_id)
                .where(
                    m.Transaction.state == states.PENDING_APPROVAL,
                    m.Approval.decision == "approve",
                    m.Approval.expired.is_(False),
                    m.Approval.expires_at <= now,
                )
                .with_for_update()
            ).all()
            for approval, org_id in rows:
                approval.expired = True
                self.uow.event(
                    s,
                    None,
                    "approval.expired",
                    approval.transaction_id,
                    org_id=org_id,
                    approver_id=approval.approver_id,
                    given_at=approval.created_at.isoformat(),
                )
            return len(rows)

        return self.uow.write(work)

    def cancel(self, actor: Actor, tx_id: str) -> dict[str, Any]:
        """Cancel before signing: the initiator or an admin; a governance change, its proposer only."""
        with self.uow.tx() as s:
            tx = self.uow.get(s, m.Transaction, tx_id, actor.org_id, "transaction")
            s.refresh(tx, with_for_update=True)
            if tx.kind == GOVERNANCE and tx.initiator_id != actor.user_id:
                raise Forbidden(
                    "only its proposer can cancel a governance change: another admin declines by not signing"
                )
            if tx.initiator_id != actor.user_id and "admin" not in actor.roles:
                raise Forbidden("only the initiator or an admin can cancel a transaction")
            states.check(tx.kind, tx.state, states.CANCELLED)
            outcomes.record(tx, outcomes.CANCELLED_BY_USER, f"cancelled by {actor.name}")
            self.uow.move(s, actor, tx, states.CANCELLED)
            return view(s, tx, self.uow.clock())


def _void(approval: m.Approval, key: bytes, now: dt.datetime) -> bool:
    """Whether an approval counts no more, so its signer may give it again: expired, or under a key since rotated."""
    expired = approval.expired or approval.expires_at <= now
    return approval.decision == "approve" and (expired or approval.public_key != key.hex())
