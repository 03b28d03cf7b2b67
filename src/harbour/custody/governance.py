"""Governance changes: proposing an entry of the organisation's log, and landing it once its admins signed it.

Every change to who may do what (users, roles, approval keys, admin
credentials, the policy, the address book, assets, vault keys, the admin quorum)
is one entry of the organisation's governance log (:mod:`harbour.governance`).
An admin proposes it: the service builds the entry on the current head, with
every id it creates assigned now, dry-runs it on the state in force (a change
that cannot apply is refused here, as a 409, not later), and stores it as a
transaction of kind ``governance``. The proposer and ``quorum`` other enabled
admins then sign the entry's bytes (:mod:`harbour.custody.approvals`). It lands
the moment :meth:`harbour.governance.state.OrgState.admit` accepts the signatures
recorded: the entry is stored, its projection rows written
(:mod:`harbour.custody.projection`), every other pending proposal superseded
(its parent is no longer the head, so it can never be admitted), and pending
withdrawals judged again under what it put in force (:mod:`harbour.custody.pending`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody import outcomes, pending, policyrefs, projection, states, sweep, tally, views
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Conflict, Forbidden, Invalid
from harbour.custody.ledger import Ledger, policy_versions
from harbour.custody.transactions import GOVERNANCE, Transactions, view
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page
from harbour.governance import changes as c
from harbour.governance import policy as pol
from harbour.governance.fields import GovernanceError
from harbour.governance.log import Entry, SignedEntry
from harbour.governance.state import OrgState

Build = Callable[[OrgState], Sequence[c.Change]]
"""Makes a proposal's changes from the state in force (ids assigned now); raises CustodyError to refuse."""


def lock_organisation(s: Session, org_id: str) -> None:
    """Serialise governance on one organisation: proposals and landings read the head under this lock."""
    s.execute(select(m.Organisation.id).where(m.Organisation.id == org_id).with_for_update())


def check_can_change(state: OrgState) -> None:
    """Conflict when no entry could ever gather its signatures: fewer admins than the proposer and the quorum."""
    admins, need = len(state.admins()), state.quorum + 1
    if admins < need:
        raise Conflict(
            f"the organisation has {admins} admin(s) who can sign governance changes, and every change needs the "
            f"proposer and {state.quorum} other admin(s), {need} in all: it operates within its genesis and "
            "cannot change it"
        )


class Governance:
    def __init__(self, uow: UnitOfWork, ledger: Ledger, transactions: Transactions) -> None:
        self.uow = uow
        self.ledger = ledger
        self.transactions = transactions

    # -- proposing ---------------------------------------------------------------------------------------

    def propose(
        self,
        actor: Actor,
        build: Build,
        *,
        details: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        request_hash: str | None = None,
    ) -> dict[str, Any]:
        """Record a proposed entry as a governance transaction pending its admins' signatures (the proposer's too)."""
        require(actor, "admin")
        if idempotency_key is not None:
            assert request_hash is not None
            found = self.transactions.idempotent(actor, idempotency_key, request_hash)
            if found is not None:
                return found

        def work(s: Session) -> dict[str, Any]:
            lock_organisation(s, actor.org_id)
            state = self.ledger.state(s, actor.org_id)
            proposer = state.users.get(actor.user_id)
            if proposer is None or not proposer.active_admin:
                raise Forbidden(f"{actor.name} is not an enabled admin with an approval key in the governance log")
            check_can_change(state)
            data = self._entry(state, actor, build(state))
            now = self.uow.clock()
            others = sorted(set(state.admins().values()) - {actor.user_id})
            requirement = pol.ApprovalRequirement(
                "all", (pol.ApprovalGroup("admins", frozenset(others), state.quorum),)
            ).to_json()
            tx = m.Transaction(
                org_id=actor.org_id,
                kind=GOVERNANCE,
                state=states.SUBMITTED,
                initiator_id=actor.user_id,
                idempotency_key=idempotency_key,
                request_hash=request_hash,
                entry=data,
                details=details,
                requirement=requirement,
                policy_version=self.ledger.policy_version(s, actor.org_id),
                created_at=now,
                updated_at=now,
            )
            s.add(tx)
            s.flush()
            entry = Entry.decode(data)
            self.uow.event(
                s,
                actor,
                "transaction.submitted",
                tx.id,
                kind=GOVERNANCE,
                seq=entry.seq,
                prev=entry.prev.hex(),
                changes=[c.describe(change) for change in entry.changes],
            )
            self.uow.move(s, actor, tx, states.PENDING_APPROVAL, requirement=requirement)
            return view(s, tx, now)

        return self.uow.write(work)

    def _entry(self, state: OrgState, actor: Actor, changes: Sequence[c.Change]) -> bytes:
        """The entry's bytes, checked in their strict form and dry-run on ``state``."""
        try:
            entry = Entry(
                org=state.org,
                seq=state.seq + 1,
                prev=state.head,
                proposer=actor.user_id,
                at=int(self.uow.clock().timestamp()),
                changes=tuple(changes),
            )
            data = entry.encode()
            Entry.decode(data)  # the changes' fields pass the same checks every verifier applies
        except GovernanceError as exc:
            raise Invalid(f"the change is not one the governance log can hold: {exc}") from None
        try:
            state.apply(SignedEntry(data, ()))
        except GovernanceError as exc:
            raise Conflict(f"the change does not apply to the state in force (entry {state.seq}): {exc}") from None
        return data

    # -- landing -----------------------------------------------------------------------------------------

    def consider(self, s: Session, tx: m.Transaction) -> list[str]:
        """Land ``tx`` if the signatures recorded now make its entry effective; the withdrawals that approved.

        The caller holds the organisation's lock (:func:`lock_organisation`),
        taken before the transaction's row, so a landing and a proposal never
        deadlock. A proposal whose parent is no longer the head is superseded.
        """
        state = self.ledger.state(s, tx.org_id)
        assert tx.entry is not None
        entry = Entry.decode(tx.entry)
        if (entry.seq, entry.prev) != (state.seq + 1, state.head):
            self.supersede(s, tx, state)
            return []
        signed = tally.entry_signatures(s, tx, state, self.uow.clock())
        try:
            state.admit(signed)
        except GovernanceError as exc:
            if exc.reason == "quorum":
                return []  # not yet: more admins must sign
            raise
        return self._land(s, tx, state, signed)

    def _land(self, s: Session, tx: m.Transaction, state: OrgState, signed: SignedEntry) -> list[str]:
        after = state.apply(signed)
        version = self.ledger.policy_version(s, tx.org_id) + policy_versions(signed)
        self.ledger.record(s, tx.org_id, signed, tx.id)
        projection.project(self.uow, s, signed, policy_version=version, transaction_id=tx.id, details=tx.details)
        admins = state.admins()
        signers = sorted(admins[k] for k, _ in signed.signatures)
        self.uow.move(s, None, tx, states.APPROVED, signers=signers)
        self.uow.event(
            s,
            None,
            "governance.entry",
            tx.org_id,
            org_id=tx.org_id,
            seq=signed.entry.seq,
            hash=signed.hash.hex(),
            prev=signed.entry.prev.hex(),
            proposer=signed.entry.proposer,
            signers=signers,
            transaction=tx.id,
            changes=[c.describe(change) for change in signed.entry.changes],
        )
        self.uow.move(s, None, tx, states.CONFIRMED, seq=signed.entry.seq, hash=signed.hash.hex())
        for other in s.scalars(
            select(m.Transaction)
            .where(
                m.Transaction.org_id == tx.org_id,
                m.Transaction.kind == GOVERNANCE,
                m.Transaction.state == states.PENDING_APPROVAL,
                m.Transaction.id != tx.id,
            )
            .with_for_update()
        ):
            self.supersede(s, other, after)
        return pending.follow(self.uow, s, state, after, version)

    def supersede(self, s: Session, tx: m.Transaction, state: OrgState) -> None:
        """Reject a proposal made on a head that is no longer the head: it can never be admitted."""
        assert tx.entry is not None
        entry = Entry.decode(tx.entry)
        outcomes.record(
            tx,
            outcomes.SUPERSEDED,
            f"superseded: proposed as entry {entry.seq} after {entry.prev.hex()[:16]}, but entry {state.seq} "
            f"({state.head.hex()[:16]}) landed first; propose it again",
        )
        self.uow.move(s, None, tx, states.REJECTED, reason="superseded", head=state.seq)

    # -- the policy ----------------------------------------------------------------------------------------

    def get_policy(self, actor: Actor) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            row = s.scalar(
                select(m.Policy).where(m.Policy.org_id == actor.org_id).order_by(m.Policy.version.desc()).limit(1)
            )
            if row is None:
                raise Conflict("the organisation has no policy in force")
            return views.policy(row)

    def list_policies(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, *ANYONE)
        with self.uow.read() as s:
            return views.page_document(
                s, select(m.Policy).where(m.Policy.org_id == actor.org_id), m.Policy, page, views.policy
            )

    def propose_policy(
        self, actor: Actor, document: dict[str, Any], idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """A governance change that puts ``document`` in force once the admin quorum signs it.

        Names in it become ids, and a member who cannot approve is refused (:mod:`harbour.custody.policyrefs`).
        """
        require(actor, "admin")
        try:
            written = pol.Policy.from_document(document)
        except pol.PolicyError as exc:
            raise Invalid(f"policy: {exc}") from None
        request_hash = hashlib.sha256(json.dumps(["policy", written.digest()]).encode()).hexdigest()

        def build(state: OrgState) -> list[c.Change]:
            vaults, entries = state.vaults.values(), state.address_book.values()
            policy = policyrefs.resolve(written, state.users.values(), vaults, entries)
            problem = policyrefs.refusal(policy, state.users, vaults, entries) or sweep.refusal(state, policy)
            if problem is not None:
                raise Invalid(f"policy: {problem}")
            return [c.policy_change(policy.to_document())]

        return self.propose(actor, build, idempotency_key=idempotency_key, request_hash=request_hash)
