"""What the signer nodes are asked to sign for a withdrawal, and what their answer means for it.

A withdrawal is signed with its vault's key, a key of the organisation
(:mod:`harbour.custody.vaults`), so each signer node judges it from the
organisation's governance log itself. The request (:func:`prepare`) carries the
version-2 evidence (:func:`harbour.custody.evidence.build_governed_evidence`)
built on the service's verified log as committed now, and that log, which
:meth:`harbour.custody.signer.Signer.sign` pushes to the signers before the
session, so the head the evidence cites is theirs.

A refusal (:func:`refusal`) is final when a retry cannot change it: the nodes
judged the withdrawal and said no (the policy, the approvals, the transaction),
and the node's own words become the withdrawal's error. It is retried when the
next attempt may see something else: a node whose log was not at the head the
evidence cites (an entry landed meanwhile: the next attempt reads the log
again and pushes it), a history statement that went stale under concurrent
sessions, a node down or a session aborted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from sqlalchemy import select

from harbour.chains.eip1559 import Eip1559Transaction
from harbour.custody import evidence, transactions
from harbour.custody import models as m
from harbour.custody.service import Custody
from harbour.governance.state import GovernanceLog
from harbour.node.coordinator import ClusterError

PERMANENT: Final = frozenset({"approval", "bad-request", "unknown-key", "malformed", "bad-key-file"})
"""Coordinator and node reasons a retry cannot change (anything else is retried)."""
RETRIED_REFUSALS: Final = frozenset({"governance", "history"})
"""Reasons a node refuses a certificate for that the next attempt can change: its log's head, stale statements."""
_REFUSED = re.compile(r"approval refused \(([a-z-]+)\)")


class Unsignable(Exception):
    """The nodes could never sign this withdrawal as it stands: fail it (the message says why)."""


@dataclass(frozen=True)
class Request:
    """One signing request: the vault key and path, the digest, the evidence, and the log it cites."""

    key_id: str
    path: str
    digest: bytes
    evidence: bytes
    log: GovernanceLog


def prepare(custody: Custody, tx_id: str) -> Request:
    """The request for the withdrawal ``tx_id`` (in ``signing``), on the organisation's log as committed now.

    The approvals sent are those recorded as ``approve`` and not expired while
    the withdrawal waited, by users the log still makes approvers under the key
    they signed with; the initiator's never. Unsignable if the vault's key is not
    a key of this organisation on the nodes, or the evidence exceeds what they accept.
    """
    with custody.uow.read() as s:
        tx = s.get(m.Transaction, tx_id)
        assert tx is not None and tx.unsigned is not None and tx.digest is not None
        vault = s.get(m.Vault, tx.vault_id)
        source = s.get(m.Address, tx.source_address_id)
        assert vault is not None and source is not None
        org_id, initiator, key_id, path = tx.org_id, tx.initiator_id, vault.key_id, source.path
        initiation = b"" if tx.initiator_signature is None else bytes.fromhex(tx.initiator_signature)
        intent = transactions.intent(s, tx)
        unsigned = Eip1559Transaction.from_json(tx.unsigned)
        digest = bytes.fromhex(tx.digest)
        approvals = [
            (a.approver_id, bytes.fromhex(a.public_key), bytes.fromhex(a.signature))
            for a in s.scalars(
                select(m.Approval)
                .where(
                    m.Approval.transaction_id == tx.id,
                    m.Approval.decision == "approve",
                    m.Approval.expired.is_(False),
                )
                .order_by(m.Approval.created_at)
            )
        ]
    log = custody.ledger.log(org_id)
    org = log.genesis_hash.hex()
    bound = custody.signer.key(key_id).org
    if bound != org:
        whose = f"organisation {bound}" if bound else "no organisation"
        raise Unsignable(
            f"vault key {key_id} belongs to {whose} on the signer nodes, not to this organisation ({org}): the nodes "
            "sign with it only what that organisation's governance allows; make a vault of this organisation and "
            "move the funds"
        )
    try:
        built = evidence.build_governed_evidence(
            log=log,
            transaction_id=tx_id,
            intent=intent,
            transaction=unsigned,
            initiator_id=initiator,
            approvals=approvals,
            initiation=initiation,
        )
        data = built.encode()
    except ValueError as exc:  # EvidenceError: beyond what the nodes accept, so it will never be signable
        raise Unsignable(f"cannot build the evidence for the signer nodes: {exc}") from None
    return Request(key_id, path, digest, data, log)


def refusal(exc: ClusterError) -> str | None:
    """The error a withdrawal fails with for ``exc``, or None if signing it again may succeed."""
    if exc.reason not in PERMANENT:
        return None
    found = _REFUSED.search(str(exc)) if exc.reason == "approval" else None
    if found is not None and found.group(1) in RETRIED_REFUSALS:
        return None
    return f"the signer nodes refused: {exc}"  # the message names the node and gives its reason
