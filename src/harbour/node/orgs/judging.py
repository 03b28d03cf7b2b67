"""Judging a withdrawal from an organisation's key: the node's own decision, from its own log and history.

A key bound to an organisation (:meth:`harbour.node.orgs.registry.Organisations.bind`)
signs only on version-2 evidence (:class:`harbour.node.quorum.GovernedEvidence`)
that names that organisation and cites the head of its log this node holds. The
node then decides exactly as the service did (:func:`harbour.node.quorum.check_governed`,
which is :func:`harbour.governance.decide.judge`), with what it verified itself:
the state of its log, the approvers' signatures, its own clock, and as history
its own record, joined, when the policy has velocity or count limits, with the
other signers' statements for this session (:mod:`harbour.node.orgs.statement`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.governance.policy import Policy
from harbour.node.certificate import ApprovalError, Certificate
from harbour.node.identity import NodeDescriptor
from harbour.node.orgs import statement as statements
from harbour.node.orgs.history import History
from harbour.node.orgs.records import Record, union
from harbour.node.orgs.registry import Organisations
from harbour.node.quorum import Evidence, GovernedEvidence, check_governed, read_evidence


@dataclass(frozen=True)
class Judged:
    """A withdrawal the node accepted to sign: its evidence, and the record it adds to the node's history."""

    evidence: GovernedEvidence
    record: Record
    window: int
    """The policy's longest velocity or count window (0: none), which the record is kept for."""
    statement: bytes
    """The approval statement the approvers signed (what the node pins the transaction id to)."""


def has_limits(policy: Policy | None) -> bool:
    """Whether ``policy`` counts past withdrawals: only then do signers exchange history statements."""
    return policy is not None and any(r.match.velocity or r.match.count for r in policy.rules)


def judge_withdrawal(
    cert: Certificate,
    *,
    orgs: Organisations,
    history: History,
    org: str,
    key_id: str,
    path: str,
    digest: bytes,
    child_public_key: Secp256k1Point,
    me: str,
    signers: Mapping[str, NodeDescriptor],
    session_id: bytes,
    statements_given: Sequence[bytes],
    now: int,
) -> Judged:
    """Accept the certificate's evidence for a key of ``org``, or raise ApprovalError.

    ``signers`` are the session's signers (node id -> descriptor, from the key's
    roster, this node included) and ``statements_given`` the history statements
    the coordinator handed over with the start request.
    """
    if cert.evidence is None:
        raise ApprovalError(
            "evidence",
            f"key {key_id} belongs to organisation {org}: it signs only on version-2 evidence, and this "
            "certificate carries none",
        )
    evidence = read_evidence(cert.evidence)
    if isinstance(evidence, Evidence):
        raise ApprovalError(
            "evidence",
            f"key {key_id} belongs to organisation {org}: it signs only on version-2 evidence (the organisation's "
            "own policy and approvers), not on version 1 (a quorum the service names)",
        )
    if evidence.org != org:
        raise ApprovalError(
            "governance",
            f"key {key_id} belongs to organisation {org}; the evidence is for organisation {evidence.org}",
        )
    state = orgs.log(org).state
    window = state.policy.max_window_seconds() if state.policy is not None else 0
    records = history.window(org, now, window)
    # With another head than the node's, check_governed refuses for that: the log, not a statement, is stale.
    if has_limits(state.policy) and evidence.head == state.head:
        found = statements.verify(statements_given, signers=signers, session_id=session_id, org=org, head=state.head)
        missing = statements.stale(found[me], records)
        if missing:
            raise ApprovalError(
                "history",
                f"this node's history statement for this session lacks withdrawals it has recorded since "
                f"({', '.join(missing[:5])}): ask for its statement again",
            )
        records += [r for node, s in found.items() if node != me for r in s.records]
    at = datetime.fromtimestamp(now, UTC)
    # A replacement pays instead of the transaction it replaces (one nonce, one is mined): not on top of it.
    replaced = evidence.intent.replaces
    past = [r.past(now) for r in union(records, evidence.transaction_id) if r.transaction_id != replaced]
    _, vault_id, asset = check_governed(
        evidence,
        key_id=key_id,
        path=path,
        digest=digest,
        child_public_key=child_public_key,
        state=state,
        history=past,
        at=at,
    )
    record = Record(
        transaction_id=evidence.transaction_id,
        vault_id=vault_id,
        asset=asset,
        destination=evidence.intent.recipient,
        amount=evidence.intent.amount,
        initiator=evidence.initiator,
        at=now,
    )
    statement = evidence.statement(org_name=state.org, key_id=key_id, path=path)
    return Judged(evidence, record, window, statement)
