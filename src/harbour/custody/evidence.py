"""The evidence a withdrawal's signer nodes judge it by: version 2, citing the organisation's governance log.

Every vault key the service makes is a key of its organisation, so the nodes
decide each withdrawal themselves from the organisation's log
(``docs/nodes.md``, "Organisations"): its policy, its approvers and their keys,
its vaults, assets and address book. The evidence therefore carries no quorum,
only what the log cannot know: the transaction and its intent, who initiated
it, the head of the log the service decided at, and the approvers' signatures.
It is pure: the caller reads the approvals and the verified log.
"""

from __future__ import annotations

from collections.abc import Iterable

from harbour.chains.eip1559 import Eip1559Transaction
from harbour.governance import decide
from harbour.governance.state import GovernanceLog, OrgState
from harbour.node import quorum


def counting(
    state: OrgState, initiator_id: str, approvals: Iterable[tuple[str, bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    """``(public key, signature)`` of each ``(user id, public key, signature)`` approval ``state`` counts.

    That is an approval by an enabled approver under the key the log gives them
    now, and never the initiator's: a node refuses evidence carrying the
    initiator's approval, and one bad signature among the approvals refuses
    them all, so anything the log does not count stays here.
    """
    return [
        (public, signature)
        for user_id, public, signature in approvals
        if user_id != initiator_id and decide.approvers(state, [public]) == {user_id}
    ]


def build_governed_evidence(
    *,
    log: GovernanceLog,
    transaction_id: str,
    intent: quorum.Intent,
    transaction: Eip1559Transaction,
    initiator_id: str,
    approvals: Iterable[tuple[str, bytes, bytes]],
    initiation: bytes = b"",
) -> quorum.GovernedEvidence:
    """Version-2 evidence for a withdrawal from a key of the organisation whose verified log is ``log``.

    It cites ``log.head``: sign with :meth:`harbour.custody.signer.Signer.sign` given
    the same ``log``, which brings the nodes to that head first. ``approvals`` are the
    recorded ``"approve"`` decisions as ``(user id, public key, signature)``, signed
    over the statement naming the log's own ``org``; those the log counts go
    (:func:`counting`), and the nodes count them again. ``initiation`` is the
    initiator's signature over the request, if they signed it. EvidenceError (a
    ValueError) if they are more than the nodes accept.
    """
    return quorum.GovernedEvidence(
        org=log.genesis_hash.hex(),
        transaction_id=transaction_id,
        intent=intent,
        transaction=transaction,
        initiator=initiator_id,
        head=log.head,
        approvals=counting(log.state, initiator_id, approvals),
        initiation=initiation,
    )
