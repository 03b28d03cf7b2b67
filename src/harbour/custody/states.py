"""The transaction state machine: which state may follow which, and nothing else.

Every change of a transaction's state goes through :func:`advance`, so an
illegal jump (a rejected withdrawal becoming approved, a confirmed one being
signed again) is an exception, not a silent overwrite. The diagram, for a
withdrawal::

    submitted -> pending_policy -> approved ----------> signing -> broadcast -> confirmed
                              \\-> pending_approval -/      \\          \\-> failed
                              \\-> rejected   |  \\-> rejected \\-> failed
                                              \\-> cancelled

An approved withdrawal fails before signing only when it cannot be built as it
stands (its gas estimate reverts, or its gas exceeds its approved maximum fee);
a broadcast one fails when it reverts, or another transaction took its nonce.

A governance change is ``submitted -> pending_approval -> approved -> confirmed``
(approved: its admins' signatures make the entry effective; confirmed: it is in
the log, in the same commit), or rejected (by an admin, or superseded by another
entry that landed first) or cancelled.
"""

from __future__ import annotations

from typing import Final

from harbour.custody.errors import Conflict

SUBMITTED: Final = "submitted"
PENDING_POLICY: Final = "pending_policy"
PENDING_APPROVAL: Final = "pending_approval"
APPROVED: Final = "approved"
SIGNING: Final = "signing"
BROADCAST: Final = "broadcast"
CONFIRMED: Final = "confirmed"
FAILED: Final = "failed"
REJECTED: Final = "rejected"
CANCELLED: Final = "cancelled"

STATES: Final = (
    SUBMITTED,
    PENDING_POLICY,
    PENDING_APPROVAL,
    APPROVED,
    SIGNING,
    BROADCAST,
    CONFIRMED,
    FAILED,
    REJECTED,
    CANCELLED,
)
FINAL: Final = frozenset({CONFIRMED, FAILED, REJECTED, CANCELLED})
IN_FLIGHT: Final = frozenset({PENDING_APPROVAL, APPROVED, SIGNING, BROADCAST})
"""States whose amount is committed but not yet reflected on chain (or may be)."""

_NEXT: Final[dict[str, dict[str, frozenset[str]]]] = {
    "withdrawal": {
        SUBMITTED: frozenset({PENDING_POLICY}),
        PENDING_POLICY: frozenset({APPROVED, PENDING_APPROVAL, REJECTED}),
        PENDING_APPROVAL: frozenset({APPROVED, REJECTED, CANCELLED}),
        APPROVED: frozenset({SIGNING, CANCELLED, FAILED}),
        SIGNING: frozenset({BROADCAST, FAILED}),
        BROADCAST: frozenset({CONFIRMED, FAILED}),
    },
    "governance": {
        SUBMITTED: frozenset({PENDING_APPROVAL, REJECTED}),
        PENDING_APPROVAL: frozenset({APPROVED, REJECTED, CANCELLED}),
        APPROVED: frozenset({CONFIRMED}),
    },
}


def allowed(kind: str, current: str) -> frozenset[str]:
    return _NEXT[kind].get(current, frozenset())


def check(kind: str, current: str, new: str) -> None:
    """Raise Conflict unless ``current -> new`` is an edge of the diagram."""
    if new not in allowed(kind, current):
        raise Conflict(f"a {kind.replace('_', ' ')} in state {current} cannot become {new}")
