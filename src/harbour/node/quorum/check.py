"""The node's own check of the approvers' evidence before it signs a withdrawal.

A custody service that is compromised could ask for any signature; what it cannot
make is the approvers' signatures. So a node accepts a sign certificate's evidence
only once it has seen, itself, that the transaction is the digest and carries out
the intent, that the intent pays from the key being signed with and that every
approval is valid and none is the initiator's. Then:

- version 1 (:func:`check_evidence`, keys of no organisation): the quorum the
  evidence names holds among the approvers the node trusts, with at least its own
  minimum of them;
- version 2 (:func:`check_governed`, keys of an organisation): the evidence cites
  the head of the organisation's log the node holds, and the policy in force
  there, with the users, vaults, assets and address book of that log, lets the
  withdrawal be signed with these approvals and this history
  (:func:`harbour.governance.decide.judge`, the service's own decision).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from harbour.chains.ethereum import address_from_public_key
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.governance.decide import Withdrawal, judge
from harbour.governance.fields import GovernanceError
from harbour.governance.policy import Decision, PastTx
from harbour.governance.state import OrgState
from harbour.node.certificate import ApprovalError, Reason
from harbour.node.quorum.evidence import Evidence, GovernedEvidence, decode_evidence
from harbour.node.quorum.fields import EvidenceError
from harbour.node.quorum.intent import ETH, carries_out
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
    _check_transaction(evidence, key_id=key_id, path=path, digest=digest, child_public_key=child_public_key)
    statement = evidence.statement(key_id=key_id, path=path)
    seen = _approvers(evidence, evidence.quorum.initiator, statement, f"org {evidence.org!r}", key_id, path)

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


def check_governed(
    evidence: GovernedEvidence,
    *,
    key_id: str,
    path: str,
    digest: bytes,
    child_public_key: Secp256k1Point,
    state: OrgState,
    history: Sequence[PastTx],
    at: datetime,
) -> tuple[Decision, str, str]:
    """Accept version-2 evidence for signing ``digest`` with ``key_id`` at ``path``, or raise ApprovalError.

    ``state`` is the node's own state of the organisation the key belongs to (the
    caller checked that ``evidence.org`` names it), ``history`` the withdrawals that
    count toward its limits (the signers' records, this one left out) and ``at``
    the node's clock. Returns the decision, the vault paid from and the asset's
    symbol (what the node records). Reasons: those of :func:`check_evidence` for the transaction and
    the approvals; ``governance`` (the evidence cites another head than the
    node's: push the log first); ``quorum`` (the policy needs approvals that are
    missing); ``policy`` (the policy blocks it, or the log does not know the key's
    vault, the asset or the initiator, or the policy depends on who initiated and
    the request lacks its initiator's valid signature); ``transaction`` also when the
    intent states no maximum fee, or the transaction may pay more than it.
    """
    if evidence.head != state.head:
        raise ApprovalError(
            "governance",
            f"the evidence cites governance head {evidence.head.hex()} of organisation {evidence.org}, but this "
            f"node's head is {state.head.hex()} (entry {state.seq}): push the log's missing entries to the node first",
        )
    _check_transaction(evidence, key_id=key_id, path=path, digest=digest, child_public_key=child_public_key)
    if evidence.intent.max_fee is None:
        raise ApprovalError(
            "transaction",
            "the approved intent states no maximum fee: a key of an organisation signs only a transaction whose "
            "fees its approvers capped",
        )
    initiator = state.users.get(evidence.initiator)
    statement = evidence.statement(org_name=state.org, key_id=key_id, path=path)
    where = f"org {state.org!r} ({evidence.org[:16]})"
    approved = _approvers(evidence, initiator.approval_key if initiator else None, statement, where, key_id, path)
    intent = evidence.intent
    request = Withdrawal(
        key_id=key_id,
        initiator=evidence.initiator,
        contract=None if intent.asset == ETH else intent.asset,
        destination=intent.recipient,
        amount=intent.amount,
        transaction_id=evidence.transaction_id,
        signature=evidence.initiation or None,
        chain_id=intent.chain_id,
        source=intent.sender,
        replaces=intent.replaces,
    )
    try:
        decision = judge(state, request, at=at, history=history, approved_by=approved)
    except GovernanceError as exc:
        reason: Reason = "quorum" if exc.reason == "quorum" else "policy"
        raise ApprovalError(reason, f"organisation {state.org!r} at entry {state.seq}: {exc}") from None
    vault, asset = state.vault_of_key(key_id), state.asset_for(request.contract)
    assert vault is not None and asset is not None  # judge found both, or it refused
    return decision, vault.id, asset.symbol


def _check_transaction(
    evidence: Evidence | GovernedEvidence, *, key_id: str, path: str, digest: bytes, child_public_key: Secp256k1Point
) -> None:
    """The transaction is the digest signed, does exactly what the intent says, from this key's own address."""
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


def _approvers(
    evidence: Evidence | GovernedEvidence,
    initiator: bytes | None,
    statement: bytes,
    where: str,
    key_id: str,
    path: str,
) -> set[bytes]:
    """The approvers' keys, each signature checked: one bad, repeated or self-approval refuses them all."""
    seen: set[bytes] = set()
    for public, signature in evidence.approvals:
        if public in seen:
            raise ApprovalError("approvals", f"approver {public.hex()} is listed twice")
        seen.add(public)
        if public == initiator:
            raise ApprovalError(
                "approvals", f"the initiator ({public.hex()}) approved their own transaction; that never counts"
            )
        if not verify_approval(public, signature, statement):
            raise ApprovalError(
                "approvals",
                f"the approval by {public.hex()} is not a valid signature over this transaction's statement "
                f"({where}, transaction {evidence.transaction_id!r}, key {key_id}, path {path})",
            )
    return seen


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


def read_evidence(data: bytes) -> Evidence | GovernedEvidence:
    """A certificate's evidence of either version; ApprovalError("evidence") if malformed."""
    try:
        return decode_evidence(data)
    except EvidenceError as exc:
        raise ApprovalError("evidence", f"malformed approval evidence: {exc}") from None
