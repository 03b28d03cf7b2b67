"""Pending withdrawals follow governance: each landed entry judges them again under what it put in force.

A withdrawal waiting for approvals was decided under the state of its
submission. When an entry lands, that state is gone, and the signer nodes will
judge the withdrawal under the new one, so the service does too, at once and in
the same commit as the entry:

- a withdrawal whose initiator the entry disabled is cancelled (pending or
  approved and not yet signing: nobody disabled moves money);
- every other withdrawal pending approval is decided again, as it was submitted
  (its amount, destination and time, the history before it), under the new
  state: refused if the policy now blocks it or cannot describe it any more;
  given the new requirement if the rule that decides it asks for other approvals
  (the approvals recorded count toward it if their signers still may approve);
  approved if the new policy allows it or the approvals recorded now meet it.

Each change is an audit event; a withdrawal whose decision did not change is
left alone.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody import outcomes, states, tally, transactions
from harbour.custody.uow import UnitOfWork
from harbour.governance import decide
from harbour.governance import policy as pol
from harbour.governance.fields import GovernanceError
from harbour.governance.state import OrgState


def follow(uow: UnitOfWork, s: Session, before: OrgState, after: OrgState, policy_version: int) -> list[str]:
    """Bring the organisation's unsigned withdrawals in line with ``after``; the ids that became approved."""
    disabled = {user.id for user in after.users.values() if user.disabled and not _was_disabled(before, user.id)}
    approved: list[str] = []
    rows = s.scalars(
        select(m.Transaction)
        .where(
            m.Transaction.org_id == after.org,
            m.Transaction.kind == transactions.WITHDRAWAL,
            m.Transaction.state.in_([states.PENDING_APPROVAL, states.APPROVED]),
        )
        .order_by(m.Transaction.created_at)
        .with_for_update()
    )
    for tx in list(rows):
        if tx.initiator_id in disabled:
            outcomes.record(
                tx,
                outcomes.INITIATOR_DISABLED,
                f"cancelled: its initiator was disabled by governance entry {after.seq}",
            )
            uow.move(s, None, tx, states.CANCELLED, reason="initiator disabled", entry=after.seq)
        elif tx.state == states.PENDING_APPROVAL and _judge(uow, s, tx, after, policy_version):
            approved.append(tx.id)
    return approved


def _was_disabled(state: OrgState, user_id: str) -> bool:
    user = state.users.get(user_id)
    return user is not None and user.disabled


def _judge(uow: UnitOfWork, s: Session, tx: m.Transaction, state: OrgState, policy_version: int) -> bool:
    """Decide ``tx`` again under ``state``; True if it is approved now."""
    vault = s.get(m.Vault, tx.vault_id)
    asset = s.get(m.Asset, tx.asset_id)
    assert vault is not None and asset is not None and tx.destination is not None and tx.amount is not None
    source = None if tx.source_address_id is None else s.get(m.Address, tx.source_address_id)
    request = decide.Withdrawal(
        key_id=vault.key_id,
        initiator=tx.initiator_id,
        contract=asset.contract,
        destination=tx.destination,
        amount=tx.amount,
        transaction_id=tx.id,
        signature=None if tx.initiator_signature is None else bytes.fromhex(tx.initiator_signature),
        chain_id=tx.chain_id or 0,
        source=source.address if source is not None else None,
        replaces=tx.replaces_id,
    )
    assert state.policy is not None  # a genesis puts one in force, and no change removes it
    past = transactions.history(s, tx.org_id, state.policy, tx.created_at, exclude=tx.id)
    try:
        _, decision = decide.assess(state, request, tx.created_at, past)
    except GovernanceError as exc:
        return _refuse(
            uow, s, tx, state, outcomes.POLICY_CHANGED, f"governance entry {state.seq} no longer allows it: {exc}"
        )
    if decision.action == "block":
        rule = decision.rule or "no rule matched (default deny)"
        return _refuse(
            uow,
            s,
            tx,
            state,
            outcomes.POLICY_BLOCKED,
            f"blocked by the policy in force since entry {state.seq}: {rule}",
        )
    requirement = None if decision.requirement is None else decision.requirement.to_json()
    if (decision.rule, requirement) != ((tx.decision or {}).get("rule"), tx.requirement):
        tx.decision, tx.requirement, tx.policy_version = decision.to_json(), requirement, policy_version
        uow.event(
            s,
            None,
            "transaction.requirement_changed",
            tx.id,
            org_id=tx.org_id,
            entry=state.seq,
            policy_version=policy_version,
            rule=decision.rule,
            action=decision.action,
            requirement=requirement,
        )
    if decision.requirement is None or _met(s, tx, state, decision.requirement, uow):
        uow.move(s, None, tx, states.APPROVED, rule=decision.rule, policy_version=policy_version, entry=state.seq)
        return True
    return False


def _met(s: Session, tx: m.Transaction, state: OrgState, requirement: pol.ApprovalRequirement, uow: UnitOfWork) -> bool:
    return requirement.satisfied(tally.approvers(s, tx, state, uow.clock()), tx.initiator_id)


def _refuse(uow: UnitOfWork, s: Session, tx: m.Transaction, state: OrgState, code: str, reason: str) -> bool:
    outcomes.record(tx, code, reason)
    uow.move(s, None, tx, states.REJECTED, reason=reason, entry=state.seq)
    return False
