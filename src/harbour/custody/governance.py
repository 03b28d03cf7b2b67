"""Policy governance: which policy version is in force, and how a new one comes into force.

A policy change is a transaction like a withdrawal: an admin proposes a
document, enough *other* admins approve it (:mod:`harbour.custody.approvals`),
and only then does it become the next version (:meth:`Governance.activate`).
Every decision reads the version in force through :meth:`Governance.current`,
which parses each stored version once.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody import states, views
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.settings import Settings
from harbour.custody.transactions import Transactions, view
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page
from harbour.governance import policy as pol

MAX_CACHED_POLICIES: Final = 1_000


class Governance:
    def __init__(self, uow: UnitOfWork, settings: Settings, transactions: Transactions) -> None:
        self.uow = uow
        self.settings = settings
        self.transactions = transactions
        self._policies: dict[tuple[str, str], pol.Policy] = {}  # (policy row id, digest) -> parsed

    def current(self, s: Session, org_id: str) -> tuple[m.Policy, pol.Policy]:
        """The organisation's policy in force: its row and the parsed document."""
        row = s.scalar(select(m.Policy).where(m.Policy.org_id == org_id).order_by(m.Policy.version.desc()).limit(1))
        if row is None:
            raise Conflict("the organisation has no policy")
        parsed = self._policies.get((row.id, row.digest))
        if parsed is None:  # a version never changes: parse each once
            parsed = pol.Policy.from_document(row.document)
            if len(self._policies) >= MAX_CACHED_POLICIES:
                self._policies.clear()
            self._policies[(row.id, row.digest)] = parsed
        return row, parsed

    def get_policy(self, actor: Actor) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.policy(self.current(s, actor.org_id)[0])

    def list_policies(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.page_document(
                s, select(m.Policy).where(m.Policy.org_id == actor.org_id), m.Policy, page, views.policy
            )

    def propose_policy(
        self, actor: Actor, document: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """A policy change: a transaction that takes effect once enough other admins approve it."""
        require(actor, "admin")
        try:
            policy = pol.Policy.from_document(document)
        except pol.PolicyError as exc:
            raise Invalid(f"policy: {exc}") from None
        request_hash = hashlib.sha256(json.dumps(["policy", policy.digest()]).encode()).hexdigest()
        if idempotency_key is not None:
            found = self.transactions.idempotent(actor, idempotency_key, request_hash)
            if found is not None:
                return found
        with self.uow.tx() as s:
            users = s.scalars(select(m.User).where(m.User.org_id == actor.org_id, m.User.disabled.is_(False)))
            admins = frozenset(u.id for u in users if "admin" in u.roles and u.approval_key is not None)
            quorum_size = self.settings.policy_quorum
            if len(admins - {actor.user_id}) < quorum_size:
                raise Conflict(
                    f"a policy change needs {quorum_size} admin(s) other than the proposer to approve it; "
                    f"the organisation has {len(admins - {actor.user_id})}"
                )
            requirement = pol.ApprovalRequirement(
                combine="all", groups=(pol.ApprovalGroup(name="admins", members=admins, threshold=quorum_size),)
            )
            now = self.uow.clock()
            tx = m.Transaction(
                org_id=actor.org_id,
                kind="policy_change",
                state=states.SUBMITTED,
                initiator_id=actor.user_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                policy_document=policy.to_document(),
                requirement=requirement.to_json(),
                policy_version=self.current(s, actor.org_id)[0].version,
                created_at=now,
                updated_at=now,
            )
            s.add(tx)
            s.flush()
            self.uow.event(
                s,
                actor,
                "transaction.submitted",
                tx.id,
                kind="policy_change",
                digest=policy.digest(),
                base_version=tx.policy_version,
            )
            self.uow.move(s, actor, tx, states.PENDING_APPROVAL, requirement=tx.requirement)
            return view(s, tx)

    def superseded(self, s: Session, tx: m.Transaction) -> int | None:
        """The version in force if the approved change ``tx`` was proposed against another one, else None."""
        current = self.current(s, tx.org_id)[0].version
        return current if current != tx.policy_version else None

    def activate(self, s: Session, tx: m.Transaction) -> None:
        """Make the approved policy change ``tx`` the organisation's next policy version."""
        assert tx.policy_document is not None
        policy = pol.Policy.from_document(tx.policy_document)
        current = s.scalar(select(func.max(m.Policy.version)).where(m.Policy.org_id == tx.org_id)) or 0
        s.add(
            m.Policy(
                org_id=tx.org_id,
                version=current + 1,
                document=policy.to_document(),
                digest=policy.digest(),
                transaction_id=tx.id,
            )
        )
        self.uow.event(
            s,
            None,
            "policy.activated",
            tx.org_id,
            org_id=tx.org_id,
            version=current + 1,
            digest=policy.digest(),
            transaction=tx.id,
        )
        self.uow.move(s, None, tx, states.CONFIRMED, version=current + 1)
