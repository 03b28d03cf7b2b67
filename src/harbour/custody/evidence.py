"""The approvers' evidence a withdrawal's signer nodes re-check, built from its policy requirement.

The service decides with user ids (:class:`harbour.governance.policy.ApprovalRequirement`);
a signer node knows only approval keys (:class:`harbour.node.quorum.Quorum`). This
module is the one place that turns the first into the second, so that a node
accepts exactly the approvals the service counted (``docs/nodes.md``, "Approvers'
evidence"). It is pure: the caller reads the users' keys and the approvals.

For a key of an organisation the nodes hold the organisation's governance log and
decide themselves, so its evidence (version 2, :func:`build_governed_evidence`)
carries no quorum: only the head of the log the service decided at, the initiator
and the approvals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harbour.chains.eip1559 import Eip1559Transaction
from harbour.governance.policy import ApprovalRequirement
from harbour.governance.state import GovernanceLog
from harbour.node import quorum


def eligible_users(requirement: ApprovalRequirement | None) -> frozenset[str]:
    """Whose approvals can count: the members of some group (none without a requirement)."""
    if requirement is None:
        return frozenset()
    return frozenset().union(*(g.members for g in requirement.groups))


def node_quorum(requirement: ApprovalRequirement | None, initiator_id: str, keys: Mapping[str, bytes]) -> quorum.Quorum:
    """The requirement with every user id replaced by the user's approval key.

    ``keys`` holds the key of each member and of the initiator who has one. A member
    without a key cannot approve, so they are left out (a group may be left smaller
    than its threshold: never met, as at the service); the initiator is left out of
    every group and named as ``initiator``. No requirement is ``all`` of no groups.
    """
    groups: list[quorum.Group] = []
    if requirement is not None:
        for group in requirement.groups:
            members = frozenset(keys[u] for u in group.members if u in keys and u != initiator_id)
            groups.append(quorum.Group(name=group.name, threshold=group.threshold, members=members))
    combine = requirement.combine if requirement is not None else "all"
    return quorum.Quorum(combine=combine, groups=tuple(groups), initiator=keys.get(initiator_id))


def node_approvals(
    requirement: ApprovalRequirement | None, initiator_id: str, approvals: Iterable[tuple[str, bytes, bytes]]
) -> tuple[tuple[bytes, bytes], ...]:
    """``(public key, signature)`` of each ``(user id, public key, signature)`` approval that can count.

    The initiator's never does, and a node refuses evidence that carries it (as a
    sign of a service that counted it), so it stays here whatever was recorded.
    """
    counting = eligible_users(requirement) - {initiator_id}
    return tuple((public, signature) for user_id, public, signature in approvals if user_id in counting)


def build_evidence(
    *,
    org: str,
    transaction_id: str,
    intent: quorum.Intent,
    transaction: Eip1559Transaction,
    requirement: ApprovalRequirement | None,
    initiator_id: str,
    keys: Mapping[str, bytes],
    approvals: Iterable[tuple[str, bytes, bytes]],
) -> quorum.Evidence:
    """The evidence for one withdrawal: :func:`node_quorum` and :func:`node_approvals` with the transaction.

    ``approvals`` are the recorded ``"approve"`` decisions as ``(user id, public key, signature)``;
    EvidenceError (a ValueError) if the quorum is beyond what the nodes accept.
    """
    return quorum.Evidence(
        org=org,
        transaction_id=transaction_id,
        intent=intent,
        transaction=transaction,
        quorum=node_quorum(requirement, initiator_id, keys),
        approvals=node_approvals(requirement, initiator_id, approvals),
    )


def build_governed_evidence(
    *,
    log: GovernanceLog,
    transaction_id: str,
    intent: quorum.Intent,
    transaction: Eip1559Transaction,
    initiator_id: str,
    approvals: Iterable[tuple[str, bytes, bytes]],
) -> quorum.GovernedEvidence:
    """Version-2 evidence for a withdrawal from a key of the organisation whose verified log is ``log``.

    It cites ``log.head``: sign with :meth:`harbour.custody.signer.Signer.sign` given
    the same ``log``, which brings the nodes to that head first. ``approvals`` are the
    recorded ``"approve"`` decisions as ``(user id, public key, signature)``, signed
    over the statement naming the log's own ``org``; the initiator's is left out (a
    node refuses evidence carrying it), every other one goes, and the nodes count
    those of the approvers the log says are in force.
    """
    return quorum.GovernedEvidence(
        org=log.genesis_hash.hex(),
        transaction_id=transaction_id,
        intent=intent,
        transaction=transaction,
        initiator=initiator_id,
        head=log.head,
        approvals=tuple((public, signature) for user_id, public, signature in approvals if user_id != initiator_id),
    )
