"""What a transaction that is not finished waits for, in one line a person can act on.

``harbour status TX`` shows it, and ``--wait`` prints it again each time it
changes, so an operator sees "needs 1 more from treasury: bob" instead of a
silent poll. It is read from the transaction's own view: the approval
requirement the policy stored with it (groups of user ids), the approvals
recorded (expired ones do not count), the initiator (who never counts) and the
sub-status (:mod:`harbour.custody.outcomes`) the service sets while it retries.
Who counts toward which group is the matcher the service and the signer nodes
decide with (:mod:`harbour.governance.matching`), so the line names the same
people the service waits for; users are shown by name where the credential may
list them.

A governance change also needs its proposer's own signature, which the
requirement (the other admins) leaves out, so it is asked for first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

FINAL_STATES: Final = frozenset({"confirmed", "failed", "rejected", "cancelled"})

_STATES: Final = {
    "submitted": "waiting for the policy's decision",
    "pending_policy": "waiting for the policy's decision",
    "approved": "waiting for the signer nodes to sign it",
    "signing": "being signed by the signer nodes",
    "broadcast": "waiting for its block and confirmations",
}


def waiting_for(tx: Mapping[str, Any], names: Mapping[str, str]) -> str | None:
    """What ``tx`` (the API's view) waits for, or None once it is final; ``names`` maps user ids to names."""
    state = str(tx.get("state"))
    if state in FINAL_STATES:
        return None
    text = _approvals(tx, names) if state == "pending_approval" else _STATES.get(state, state)
    code = tx.get("sub_status")
    if code:
        text += f" [{code}: {tx.get('error') or 'no detail'}]"
    return text


def _approvals(tx: Mapping[str, Any], names: Mapping[str, str]) -> str:
    from harbour.governance import matching
    from harbour.governance.policy import ApprovalRequirement, PolicyError

    def who(user_id: str) -> str:
        return names.get(user_id, user_id)

    initiator = str(tx.get("initiator_id"))
    given = {
        str(a.get("approver_id"))
        for a in tx.get("approvals") or []
        if isinstance(a, dict) and a.get("decision") == "approve" and not a.get("expired")
    }
    needs: list[str] = []
    if tx.get("kind") == "governance" and initiator not in given:
        needs.append(f"needs the proposer's own signature: {who(initiator)}")
    try:
        requirement = ApprovalRequirement.from_json(tx.get("requirement"))
    except PolicyError:
        return "; ".join([*needs, "waiting for approvals (the requirement could not be read)"])
    counted = matching.counted(requirement.combine, requirement.groups, given, initiator)
    lines: list[str] = []
    for group, have in zip(requirement.groups, counted, strict=True):
        more = group.threshold - len(have)
        if more <= 0:
            if requirement.combine == "any":
                return "; ".join(needs) or "approvals met: waiting for the service to move it on"
            continue
        can = sorted((who(u) for u in group.members - given - {initiator}), key=str.casefold)
        line = f"{more} more from {group.name}: {', '.join(can) or 'nobody'}"
        if len(can) < more:
            line += " (cannot be met: too few members can still approve)"
        lines.append(line)
    if lines:
        joined = " or ".join(lines) if requirement.combine == "any" else "; ".join(lines)
        needs.append(("needs any of: " if requirement.combine == "any" and len(lines) > 1 else "needs ") + joined)
    return "; ".join(needs) or "approvals met: waiting for the service to move it on"
