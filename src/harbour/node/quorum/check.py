"""The node's own check of the approvers' evidence before it signs a withdrawal.

A custody service that is compromised could ask for any signature; what it cannot
make is the approvers' signatures. So a node accepts a sign certificate's evidence
only once it has seen, itself, that the transaction is the digest and carries out
the intent, that the intent pays from the key being signed with, that every
approval is valid and none is the initiator's, and that the quorum holds among
the approvers it trusts, with at least its own minimum of them.
"""

from __future__ import annotations

from harbour.chains.ethereum import address_from_public_key
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.node.certificate import ApprovalError
from harbour.node.quorum.evidence import Evidence
from harbour.node.quorum.fields import EvidenceError
from harbour.node.quorum.intent import carries_out
from harbour.node.quorum.statement import verify_approval


def check_evidence(
    evidence: Evidence,
    *,
    key_id: str,
    path: str,
    digest: bytes,
    child_public_key: Secp256k1Point,
    trusted_approvers: frozenset[bytes] | None,
    min_approvals: int,
) -> None:
    """Accept the evidence for signing ``digest`` with the key ``key_id`` at ``path``, or raise ApprovalError.

    ``child_public_key`` is the node's own derivation of the key at ``path``;
    ``trusted_approvers`` the approver keys the node was configured with (None:
    take the quorum's members from the evidence); ``min_approvals`` the node's own
    floor of distinct approvers, whatever the quorum says. Reasons: ``transaction``
    (not this digest, or not this intent), ``intent`` (not this key's address),
    ``approvals`` (a bad, repeated or self-approval), ``quorum`` (not enough approvals
    by keys the node trusts: with a configured list, only those keys count).
    """
    if min_approvals < 0:
        raise ValueError("min_approvals is not negative")
    tx, intent = evidence.transaction, evidence.intent
    if tx.signing_hash() != digest:
        raise ApprovalError(
            "transaction",
            f"the evidence's transaction hashes to {tx.signing_hash().hex()}, not the digest {digest.hex()} signed",
        )
    problem = carries_out(tx, intent)
    if problem is not None:
        raise ApprovalError("transaction", f"the transaction does not carry out the approved intent: {problem}")
    own = address_from_public_key(child_public_key)
    if intent.sender != own:
        raise ApprovalError(
            "intent", f"the intent pays from {intent.sender}, but key {key_id} at {path} is the account {own}"
        )

    statement = evidence.statement(key_id=key_id, path=path)
    seen: set[bytes] = set()
    for public, signature in evidence.approvals:
        if public in seen:
            raise ApprovalError("approvals", f"approver {public.hex()} is listed twice")
        seen.add(public)
        if public == evidence.quorum.initiator:
            raise ApprovalError(
                "approvals", f"the initiator ({public.hex()}) approved their own transaction; that never counts"
            )
        if not verify_approval(public, signature, statement):
            raise ApprovalError(
                "approvals",
                f"the approval by {public.hex()} is not a valid signature over this transaction's statement "
                f"(org {evidence.org!r}, transaction {evidence.transaction_id!r}, key {key_id}, path {path})",
            )

    members = evidence.quorum.members
    counted = seen & members
    strangers = sorted(counted - trusted_approvers) if trusted_approvers is not None else []
    if trusted_approvers is not None:
        # A key the node was not given never counts, whatever the service's quorum says; the
        # service cannot know the node's list, so naming one is not by itself a refusal.
        counted &= trusted_approvers
    if not evidence.quorum.satisfied(counted):
        ignored = f"; not counted, as this node does not trust them: {', '.join(k.hex() for k in strangers)}"
        raise ApprovalError(
            "quorum", f"the quorum is not met: {evidence.quorum.explain(counted)}{ignored if strangers else ''}"
        )
    if len(counted) < min_approvals:
        raise ApprovalError(
            "quorum", f"{len(counted)} approver(s) in the quorum approved; this node requires at least {min_approvals}"
        )


def verify_evidence(
    data: bytes,
    *,
    key_id: str,
    path: str,
    digest: bytes,
    child_public_key: Secp256k1Point,
    trusted_approvers: frozenset[bytes] | None,
    min_approvals: int,
) -> Evidence:
    """:meth:`Evidence.decode` then :func:`check_evidence`; ApprovalError("evidence") if malformed."""
    try:
        evidence = Evidence.decode(data)
    except EvidenceError as exc:
        raise ApprovalError("evidence", f"malformed approval evidence: {exc}") from None
    check_evidence(
        evidence,
        key_id=key_id,
        path=path,
        digest=digest,
        child_public_key=child_public_key,
        trusted_approvers=trusted_approvers,
        min_approvals=min_approvals,
    )
    return evidence
