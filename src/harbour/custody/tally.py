"""Which recorded approvals count now: the one place that counts them, against the governance state.

An approval is a signature the service checked when it was given. Whether it
still counts is decided when it is counted, from the state the log puts in force
at that moment: it counts only while it has not expired
(:attr:`~harbour.custody.settings.Settings.approval_lifetime`) and while its
signer is still an enabled user of the role it approved in, with the very key
it signed with. So an approval by someone disabled, demoted or re-keyed since,
or one forged into the database under a key the log never registered, counts
for nothing: the signer nodes will judge the same signatures the same way.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.governance import decide
from harbour.governance.log import SignedEntry
from harbour.governance.state import OrgState


def live(s: Session, tx: m.Transaction, now: dt.datetime) -> list[m.Approval]:
    """The transaction's approve decisions that have not expired, oldest first."""
    rows = s.scalars(
        select(m.Approval)
        .where(m.Approval.transaction_id == tx.id, m.Approval.decision == "approve", m.Approval.expired.is_(False))
        .order_by(m.Approval.created_at)
    )
    return [a for a in rows if a.expires_at > now]


def approvers(s: Session, tx: m.Transaction, state: OrgState, now: dt.datetime) -> frozenset[str]:
    """The user ids whose live approvals of a withdrawal count under ``state``."""
    return counted(state, [(a.approver_id, bytes.fromhex(a.public_key)) for a in live(s, tx, now)])


def counted(state: OrgState, approvals: Iterable[tuple[str, bytes]]) -> frozenset[str]:
    """Of these ``(user id, public key)`` approvals, the user ids that count under ``state``.

    The row's user and the key's holder must be one person (the state gives each
    key to one user), an enabled approver holding that key now.
    """
    given = list(approvals)
    eligible = decide.approvers(state, {public for _, public in given})
    counting = set()
    for user_id, public in given:
        user = state.users.get(user_id)
        if user_id in eligible and user is not None and user.approval_key == public:
            counting.add(user_id)
    return frozenset(counting)


def entry_signatures(s: Session, tx: m.Transaction, state: OrgState, now: dt.datetime) -> SignedEntry:
    """The governance entry of ``tx`` with the live signatures of admins whose current key signed it."""
    assert tx.entry is not None
    admins = state.admins()
    pairs = {}
    for approval in live(s, tx, now):
        public = bytes.fromhex(approval.public_key)
        if admins.get(public) == approval.approver_id:
            pairs[public] = bytes.fromhex(approval.signature)
    return SignedEntry(tx.entry, tuple(pairs.items()))
