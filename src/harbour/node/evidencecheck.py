"""The check of a sign certificate's evidence, which the node runs just before it spends the certificate.

:func:`harbour.node.approval.verify` calls it on a certificate that passed every
other check (:mod:`harbour.node.planning` builds the call). A key of an
organisation is judged by that organisation's governance log
(:func:`harbour.node.orgs.judging.judge_withdrawal`), then its transaction id is
pinned and the withdrawal recorded; any other key by version-1 evidence and the
node's own approver settings (:mod:`harbour.node.quorum`), then pinned, unless the
node serves organisations only (``organisations_only``): then never.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.mpc import hd
from harbour.mpc.schemes import scheme_by_name
from harbour.node import approval, quorum
from harbour.node.config import NodeConfig
from harbour.node.identity import NodeIdentity
from harbour.node.jobs import SignJob
from harbour.node.orgs.history import History, HistoryFull, log_reason
from harbour.node.orgs.judging import judge_withdrawal
from harbour.node.orgs.registry import Organisations
from harbour.node.session import Session
from harbour.node.store import SecretStore


class EvidenceChecks:
    """The evidence checks of one node; holds references to the node's parts, no state of its own."""

    def __init__(
        self,
        *,
        store: SecretStore,
        config: NodeConfig,
        identity: NodeIdentity,
        orgs: Organisations,
        history: History,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.config = config
        self.identity = identity
        self.orgs = orgs
        self.history = history
        self.clock = clock

    def check(
        self, session: Session, job: SignJob, digest: bytes, histories: list[bytes]
    ) -> Callable[[approval.Certificate], None]:
        """The check :func:`approval.verify` runs on a sign certificate before spending it.

        The child key comes from the node's own share (the job derived it for
        ``path``), never from the request, so the intent's sender is compared with
        the account this node is actually about to sign for. A key of an
        organisation is judged by that organisation's log (:meth:`_governed_check`);
        any other by the version-1 evidence and the node's own approver settings.
        """

        def check(cert: approval.Certificate) -> None:
            config = self.config
            org = self.orgs.binding(session.key_id)
            strangers = [o for o in self.orgs.claimants(session.key_id) if o != org]
            if strangers:
                bound = f"bound to organisation {org}" if org else "bound to no organisation"
                raise approval.ApprovalError(
                    "governance",
                    f"key {session.key_id} is a vault of organisation {', '.join(strangers)} by its signed log, but "
                    f"{bound} on this node: it was made outside that organisation's rules and is never signed for",
                )
            if org is not None:
                self._governed_check(cert, session, job, digest, org, histories)
                return
            if config.organisations_only:
                raise approval.ApprovalError(
                    "no-organisation",
                    f"key {session.key_id} belongs to no organisation, and this node serves organisations only "
                    "(organisations_only): it signs only with keys of an enrolled organisation, on evidence judged "
                    "from that organisation's governance log, never on the authority's word alone",
                )
            if cert.evidence is None:
                if config.require_evidence:
                    raise approval.ApprovalError(
                        "evidence",
                        "this node signs only with the approvers' evidence in the certificate (require_evidence), "
                        "and this certificate has none",
                    )
                return
            child = job.share.group_public_key
            if not scheme_by_name(job.share.scheme).recoverable or not isinstance(child, Secp256k1Point):
                raise approval.ApprovalError(
                    "evidence",
                    f"approval evidence describes an Ethereum transaction, which key {session.key_id} "
                    f"({job.share.scheme}) does not sign",
                )
            evidence = quorum.read_evidence(cert.evidence)
            if isinstance(evidence, quorum.GovernedEvidence):
                raise approval.ApprovalError(
                    "governance",
                    f"key {session.key_id} belongs to no organisation on this node, so version-2 evidence "
                    f"(organisation {evidence.org}) cannot be judged for it",
                )
            quorum.check_evidence(
                evidence,
                key_id=session.key_id,
                path=session.path,
                digest=digest,
                child_public_key=child,
                trusted_approvers=config.trusted_approvers,
                min_approvals=config.min_approvals,
            )
            self._pin(
                evidence.org,
                evidence.transaction_id,
                evidence.statement(key_id=session.key_id, path=session.path),
                evidence.transaction.nonce,
            )
            approvers = ",".join(k.hex()[:16] for k, _ in evidence.approvals)
            session.note = (
                f"evidence: org {evidence.org!r} transaction {evidence.transaction_id!r} "
                f"nonce {evidence.transaction.nonce} approvers {approvers}"
            )

        return check

    def _governed_check(
        self,
        cert: approval.Certificate,
        session: Session,
        job: SignJob,
        digest: bytes,
        org: str,
        histories: list[bytes],
    ) -> None:
        """Judge a withdrawal from a key of ``org`` (:func:`judge_withdrawal`), check its pin, then record it.

        The record and the pin are kept here, before the certificate's nonce is
        spent and before any round: two sessions accepted one after the other each
        count the other, even if neither has finished. They last in the session's
        ``started`` entry, which the node writes (and fsyncs) next.
        """
        child = job.share.group_public_key
        if not scheme_by_name(job.share.scheme).recoverable or not isinstance(child, Secp256k1Point):
            raise approval.ApprovalError(
                "evidence",
                f"key {session.key_id} ({job.share.scheme}) belongs to organisation {org}, whose withdrawals are "
                "Ethereum transactions: it signs nothing else",
            )
        now = int(self.clock())
        signers = {session.roster[p].node_id: session.roster[p] for p in job.signers}
        judged = judge_withdrawal(
            cert,
            orgs=self.orgs,
            history=self.history,
            org=org,
            key_id=session.key_id,
            path=session.path,
            digest=digest,
            child_public_key=child,
            me=self.identity.node_id,
            signers=signers,
            session_id=session.session_id,
            statements_given=histories,
            now=now,
        )
        self._as_stated(org, session, job, child)
        evidence = judged.evidence
        pinned = self.history.pins.get((org, evidence.transaction_id))
        nonce = evidence.transaction.nonce
        if pinned is not None:
            quorum.check_pin(
                pinned, org=org, transaction_id=evidence.transaction_id, statement=judged.statement, nonce=nonce
            )
        sender = evidence.intent.sender
        self.history.nonces.check(org, sender, nonce, evidence.transaction_id, evidence.intent.replaces)
        try:
            self.history.record(org, judged.record, now=now, window=judged.window)
        except HistoryFull as exc:
            raise approval.ApprovalError("history", str(exc)) from None
        self.history.pins[(org, evidence.transaction_id)] = quorum.pin_value(judged.statement, nonce)
        self.history.nonces.add(org, sender, nonce, evidence.transaction_id)
        # The session's ``started`` entry is where the record and the pin last: a restarted node reads them back.
        session.note = log_reason(
            org,
            judged.record,
            head=evidence.head.hex(),
            nonce=evidence.transaction.nonce,
            sender=sender,
            statement=hashlib.sha256(judged.statement).hexdigest(),
            approvals=len(evidence.approvals),
        )

    def _as_stated(self, org: str, session: Session, job: SignJob, child: Secp256k1Point) -> None:
        """The key this node holds is the one the vault's holders stated to the admins, at its threshold or above.

        ``judge_withdrawal`` found the vault by key id; this checks that the share
        signs for the stated public key (its child at ``path``), that this node is
        one of the holders the log states (``vault.add``, or the last
        ``vault.reshare``), and that no ceremony since lowered the threshold the
        admins approved.
        """
        vault = self.orgs.log(org).state.vault_of_key(session.key_id)
        assert vault is not None  # judged: the key is a vault of the organisation, or it was refused
        stated = vault.holding
        if _child(stated.public_key, stated.chain_code, session.path) != child.encode():
            raise approval.ApprovalError(
                "policy",
                f"key {session.key_id} on this node is not the key vault {vault.id!r} states "
                f"({stated.public_key.hex()}): it is never signed for as that vault",
            )
        if self.identity.sign_pk not in stated.holders:
            # The log's committee is the admins' word on who holds the key: a share from a reshare they have not
            # recorded (``vault.reshare``), or one a retired node kept, signs nothing.
            raise approval.ApprovalError(
                "policy",
                f"this node is not one of the {len(stated.holders)} holders of key {session.key_id} the log states "
                f"for vault {vault.id!r}: its share signs for that vault only once a vault.reshare names it",
            )
        if job.share.threshold < stated.threshold:
            raise approval.ApprovalError(
                "policy",
                f"key {session.key_id} is held at threshold {job.share.threshold} on this node, below the "
                f"{stated.threshold} vault {vault.id!r} was approved at",
            )

    def _pin(self, org: str, transaction_id: str, statement: bytes, nonce: int) -> None:
        """Record (or check) the chain nonce this transaction id is signed as, before the nonce is spent.

        Written before the certificate's nonce: if that then fails (a replay), the
        record describes the same transaction, so it never blocks an honest one.
        """
        name = f"withdrawals/{quorum.pin_name(org, transaction_id)}"
        if self.store.exists(name):
            quorum.check_pin(
                self.store.get(name), org=org, transaction_id=transaction_id, statement=statement, nonce=nonce
            )
            return
        self.store.put(name, quorum.pin_value(statement, nonce))


@functools.lru_cache(maxsize=4096)
def _child(public_key: bytes, chain_code: bytes, path: str) -> bytes:
    """The encoded child key at ``path`` of a stated vault key (BIP-32, public derivation); cached per key and path."""
    parent = SECP256K1.decode_point(public_key)
    return hd.derive(SECP256K1, parent, chain_code, path).public_key.encode()
