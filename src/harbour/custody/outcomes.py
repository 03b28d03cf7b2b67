"""Why a transaction stopped, or why it waits: a machine-readable sub-status beside the human text.

Every refusal and failure a transaction can meet sets two fields together,
through :func:`record`: ``error`` (a sentence for a person, free to change) and
``sub_status`` (one code from :data:`CODES`, documented in docs/api.md, which an
integrator branches on and which never changes meaning). A transaction that is
only waiting (signing will be retried, fees rose) carries a code too, and
:func:`clear` removes both once it moves on.
"""

from __future__ import annotations

from typing import Final

from harbour.custody import models as m

# -- refused before any signing ---------------------------------------------------------------------------
POLICY_BLOCKED: Final = "policy-blocked"
"""A rule of the policy in force blocks it (or no rule matched: default deny)."""
POLICY_CHANGED: Final = "policy-changed"
"""A governance entry that landed while it waited no longer allows it."""
INSUFFICIENT_FUNDS: Final = "insufficient-funds"
"""The source cannot pay the amount and the maximum fee on top of what is in flight."""
REJECTED_BY_APPROVER: Final = "rejected-by-approver"
SUPERSEDED: Final = "superseded"
"""A governance proposal made on a head that is no longer the head."""
INITIATOR_DISABLED: Final = "initiator-disabled"
CANCELLED_BY_USER: Final = "cancelled-by-user"

# -- refused or failed on the way to the chain -------------------------------------------------------------
UNSIGNABLE: Final = "unsignable"
"""The nodes could never sign it as it stands (its vault key is not this organisation's on the nodes)."""
NODE_REFUSED: Final = "node-refused"
"""The signer nodes judged it and refused; ``error`` carries the node's reason."""
EARLIER_NONCE_FAILED: Final = "earlier-nonce-failed"
"""An earlier withdrawal from the same address was refused, so this one's nonce was released."""
ESTIMATE_REVERTED: Final = "estimate-reverted"
"""Its gas estimate failed when it was built: the chain says it would revert (``error`` carries the reason)."""
ABOVE_MAX_FEE: Final = "above-max-fee"
"""When it was built it needed more gas than its approved maximum fee pays for (custody/fees.py)."""
REVERTED: Final = "reverted"
"""Mined, but the transaction reverted (or a token reported that nothing moved)."""
DROPPED: Final = "dropped"
"""The chain forgot it and its nonce was then used by a transaction this service did not send."""
REPLACED: Final = "replaced"
"""Another transaction at the same nonce was mined instead (a speed-up, a cancel, or the one it was to replace)."""
TOKEN_NO_TRANSFER: Final = "token-no-transfer"  # noqa: S105 (a code, not a secret)
"""Mined without reverting, but the token logged no Transfer to the destination: it returned false, nothing moved."""

# -- confirmed, with something the recipient's side must know ----------------------------------------------
TOKEN_FEE_DEDUCTED: Final = "token-fee-deducted"  # noqa: S105 (a code, not a secret)
"""Confirmed, but the token delivered less than the amount (a fee on transfer): ``delivered`` says how much."""

# -- waiting, retried without anyone acting --------------------------------------------------------------------
WAITING_FOR_FUNDS: Final = "waiting-for-funds"
"""The source cannot pay it now on top of what is in flight; it waits (an admin can still cancel)."""
WAITING_FOR_FEES: Final = "waiting-for-fees"
"""Today's base fee is above what its approved maximum fee pays per gas; it is built when fees fall."""
SIGNING_RETRY: Final = "signing-retry"
"""A signing attempt failed for a reason that may pass (a node down); it is retried."""
BROADCAST_RETRY: Final = "broadcast-retry"
"""The chain refused or could not be reached; the same signed bytes are sent again."""

CODES: Final = frozenset(
    {
        POLICY_BLOCKED,
        POLICY_CHANGED,
        INSUFFICIENT_FUNDS,
        REJECTED_BY_APPROVER,
        SUPERSEDED,
        INITIATOR_DISABLED,
        CANCELLED_BY_USER,
        UNSIGNABLE,
        NODE_REFUSED,
        EARLIER_NONCE_FAILED,
        ESTIMATE_REVERTED,
        ABOVE_MAX_FEE,
        REVERTED,
        DROPPED,
        REPLACED,
        TOKEN_NO_TRANSFER,
        TOKEN_FEE_DEDUCTED,
        WAITING_FOR_FUNDS,
        WAITING_FOR_FEES,
        SIGNING_RETRY,
        BROADCAST_RETRY,
    }
)


def record(tx: m.Transaction, code: str, text: str) -> None:
    """Say why ``tx`` stopped or waits: ``code`` for a program, ``text`` for a person."""
    if code not in CODES:
        raise ValueError(f"unknown sub-status {code!r}")
    tx.sub_status, tx.error = code, text


def clear(tx: m.Transaction) -> None:
    """``tx`` moved on: whatever it waited for is over."""
    tx.sub_status, tx.error = None, None
