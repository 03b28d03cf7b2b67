"""Approvers' evidence: what a signer node re-checks before it signs a withdrawal.

An approval certificate (:mod:`harbour.node.approval`) says that the authority
approved a digest. If the authority is a custody service, a compromised service
could approve anything, and its certificate alone would not show that any human
agreed. So each approver signs, with their own Ed25519 key (RFC 8032), an
**approval statement** naming the transaction's intent (chain, sender, recipient,
asset, amount), the organisation's transaction id and the key and path it is
paid from. The service puts into the sign certificate the unsigned transaction,
the quorum it claims the transaction needs and the approvers' signatures
(:class:`Evidence`), and each node checks, on its own (:func:`check_evidence`):

- the transaction is the digest being signed and carries out exactly the intent
  (an ETH payment, or an ERC-20 ``transfer`` with no ETH attached), from the
  address of the key being signed with, on the intent's chain;
- every approval signature is valid over this transaction's statement (one bad
  signature refuses the whole request), no approver is listed twice and the
  initiator does not approve their own transaction;
- the quorum holds among the approvers, every quorum member is an approver the
  node was configured to trust (if it was given a list), and at least the node's
  own minimum number of approvers signed.

The encodings are canonical CBOR (RFC 8949 section 4.2); anything that does not
re-encode to the same bytes is refused, so one evidence has one encoding and a
signature over a statement cannot be read as a signature over another.

Pure: no clock, no files. The node records which chain nonce a transaction id
was signed for (:func:`pin_value`), so one set of approvals pays once.

One concept per module, in the order they build on each other: :mod:`.fields`
(the field checks and :class:`EvidenceError`), :mod:`.intent` (what a withdrawal
does, and whether a transaction does exactly that), :mod:`.statement` (what an
approver signs), :mod:`.rule` (the quorum), :mod:`.evidence` (what a certificate
carries), :mod:`.check` (the node's check) and :mod:`.pin` (one payment per set of
approvals). Everything is importable from here, as it always was.
"""

from harbour.node.quorum.check import check_evidence, check_governed, read_evidence, verify_evidence
from harbour.node.quorum.evidence import (
    EVIDENCE_VERSION,
    GOVERNED_VERSION,
    MAX_APPROVALS,
    Evidence,
    GovernedEvidence,
    decode_evidence,
)
from harbour.node.quorum.fields import MAX_ID_LEN, PUBLIC_KEY_LEN, SIGNATURE_LEN, EvidenceError, check_public_key
from harbour.node.quorum.intent import CHAIN_ID_MAX, ETH, UINT256_MAX, Intent, carries_out
from harbour.node.quorum.pin import check_pin, pin_name, pin_value
from harbour.node.quorum.rule import MAX_GROUP_MEMBERS, MAX_GROUPS, MAX_NAME_LEN, MAX_QUORUM_MEMBERS, Group, Quorum
from harbour.node.quorum.statement import (
    APPROVAL_DOMAIN,
    DECISIONS,
    STATEMENT_TYPE,
    STATEMENT_VERSION,
    Decision,
    approval_statement,
    parse_statement,
    sign_approval,
    verify_approval,
)

__all__ = [
    "APPROVAL_DOMAIN",
    "CHAIN_ID_MAX",
    "DECISIONS",
    "ETH",
    "EVIDENCE_VERSION",
    "GOVERNED_VERSION",
    "MAX_APPROVALS",
    "MAX_GROUPS",
    "MAX_GROUP_MEMBERS",
    "MAX_ID_LEN",
    "MAX_NAME_LEN",
    "MAX_QUORUM_MEMBERS",
    "PUBLIC_KEY_LEN",
    "SIGNATURE_LEN",
    "STATEMENT_TYPE",
    "STATEMENT_VERSION",
    "UINT256_MAX",
    "Decision",
    "Evidence",
    "EvidenceError",
    "GovernedEvidence",
    "Group",
    "Intent",
    "Quorum",
    "approval_statement",
    "carries_out",
    "check_evidence",
    "check_governed",
    "check_pin",
    "check_public_key",
    "decode_evidence",
    "parse_statement",
    "pin_name",
    "pin_value",
    "read_evidence",
    "sign_approval",
    "verify_approval",
    "verify_evidence",
]
