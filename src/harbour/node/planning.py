"""Planning a session: what a ``start`` request asks for, checked before anything is spent.

:class:`Planner` turns a parsed ``start`` request into a :class:`~harbour.node.session.Session`
(its job, roster and party) and the approval check it needs, refusing what can
never run before the certificate is looked at: a key the node does not hold, a
signer set it is not in or whose setup with it is marked compromised, a second
admin session of a key, a roster naming a retired identity, a committee whose
roster, dealers or key package the certificate does not bind. The approval check
itself (:func:`harbour.node.approval.verify`, and for a sign certificate the
evidence check of :mod:`harbour.node.evidencecheck`) runs later, when the node is
ready to spend the certificate.

A key belongs to the organisation its keygen certificate named (param ``org``);
every refresh and reshare certificate of it must name the same one, and none
may name one for a key of no organisation, so no ceremony moves a key between
organisations or in or out of one. A node that serves organisations only
(``organisations_only``) refuses every admin certificate of a key of none, once the
certificate is shown to be the authority's and before it is spent.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harbour.crypto.group import RandomBytes
from harbour.governance import holding
from harbour.governance.fields import GovernanceError
from harbour.mpc.envelope import UsageError
from harbour.mpc.hd import CHAIN_CODE
from harbour.mpc.keyshare import SCHEME_CURVES, KeyShare, KeyShareError, PublicKeyPackage
from harbour.mpc.schemes import scheme_by_name
from harbour.node import approval, coldstate, nonces, rpc
from harbour.node.config import NodeConfig
from harbour.node.evidencecheck import EvidenceChecks
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.jobs import Job, KeygenJob, RefreshJob, ReshareJob, SignJob
from harbour.node.orgs.history import History
from harbour.node.orgs.registry import Organisations, check_org
from harbour.node.session import Session
from harbour.node.staging import Refusal, Staging, read_key
from harbour.node.store import SecretStore


class Planner:
    """Plans the sessions of one node; holds references to the node's state, no state of its own."""

    def __init__(
        self,
        *,
        store: SecretStore,
        identity: NodeIdentity,
        config: NodeConfig,
        trusted: Mapping[str, Any],
        ledger: nonces.NonceLedger,
        staging: Staging,
        sessions: Mapping[bytes, Session],
        compromised: Callable[[str], set[int]],
        hedge_key: bytes,
        offline: bool,
        clock: Callable[[], float],
        orgs: Organisations,
        history: History,
    ) -> None:
        self.orgs = orgs
        self.evidence = EvidenceChecks(
            store=store, config=config, identity=identity, orgs=orgs, history=history, clock=clock
        )
        self.store = store
        self.identity = identity
        self.config = config
        self.trusted = trusted
        self.ledger = ledger
        self.staging = staging
        self.sessions = sessions
        self.compromised = compromised
        self.hedge_key = hedge_key
        self.offline = offline
        self.clock = clock

    def plan(
        self, sid: bytes, kind: str, args: dict[str, Any], certificate: bytes
    ) -> tuple[Session, Callable[[], None]]:
        """The session a start request asks for, and the approval check it needs."""
        now = int(self.clock())
        deadline = self.clock() + self.config.session_timeout
        me_id = self.identity.node_id
        # A cold node rebuilds its sessions by replay, so their randomness comes from a seed it keeps.
        recording = coldstate.Recording.new() if self.offline else None
        rng = recording.rng if recording is not None else secrets.token_bytes

        def verify(**what: Any) -> Callable[[], None]:
            if self.config.organisations_only and what["kind"] != "sign" and "org" not in what["params"]:
                what["evidence_check"] = _no_organisation(what["kind"], what["key_id"])

            def check() -> None:
                approval.verify(certificate, self.trusted, now=now, ledger=self.ledger, **what)

            return check

        try:
            if kind == "sign":
                key_id = args["key_id"]
                share, roster = read_key(self.store, key_id)
                try:
                    path = approval.canonical_path(args["path"])
                except approval.ApprovalError as exc:
                    raise Refusal("bad-request", str(exc)) from exc
                signers = args["signers"]
                self._check_signers(share, signers, key_id)
                message = args["message"]
                if scheme_by_name(share.scheme).signs_digest and len(message) != 32:
                    raise Refusal("bad-request", "threshold ECDSA signs a 32-byte digest")
                digest = approval.approved_digest(message)
                sign_job = SignJob(sid, share, path, signers, message, rng=rng, hedge_key=self.hedge_key)
                session = Session(
                    sid, kind, key_id, path, [digest], certificate, sign_job, roster, share.identifier, deadline
                )
                session.recording = recording
                evidence_check = self.evidence.check(session, sign_job, digest, args.get("histories", []))
                return session, verify(
                    kind="sign",
                    key_id=key_id,
                    path=path,
                    digest=digest,
                    signers=signers,
                    evidence_check=evidence_check,
                )
            if kind == "keygen":
                session, check = self._keygen(sid, args, certificate, deadline, verify, rng)
            elif kind == "refresh":
                key_id = args["key_id"]
                share, roster = read_key(self.store, key_id)
                self._no_pending(key_id)
                job: Job = RefreshJob(sid, share, rng=rng, hedge_key=self.hedge_key)
                session = Session(sid, kind, key_id, "m", [], certificate, job, roster, share.identifier, deadline)
                org = self.orgs.binding(key_id)
                session.staging = {"roster": roster, "base": share.public.fingerprint(), "org": org}
                check = verify(kind="refresh", key_id=key_id, path="m", params=_with_org({}, org))
            else:
                session, check = self._reshare(sid, args, certificate, deadline, verify, me_id, rng)
            session.recording = recording
            return session, check
        except (UsageError, KeyShareError, ValueError) as exc:
            if isinstance(exc, approval.ApprovalError):
                raise
            raise Refusal("bad-request", f"cannot start this {kind} session: {exc}") from exc

    def _check_signers(self, share: KeyShare, signers: tuple[int, ...], key_id: str) -> None:
        if share.identifier not in signers:
            raise Refusal("bad-request", f"this node is party {share.identifier}, not one of the signers {signers}")
        if not set(signers) <= set(share.parties) or len(signers) < share.threshold:
            raise Refusal(
                "bad-request",
                f"signers must be at least {share.threshold} parties of the key {list(share.parties)}",
            )
        bad = self.compromised(key_id) & set(signers)
        if bad:
            raise Refusal(
                "setup-compromised",
                f"the pairwise setup with parties {sorted(bad)} failed a KOS check; refresh key {key_id} first",
            )

    def _no_pending(self, key_id: str) -> None:
        """Refuse a second admin session on a key while one runs or awaits its commit.

        Two refreshes of one key that both finish could be committed on different
        nodes, leaving no t shares of one generation: the key would be lost.
        """
        for session in self.sessions.values():
            if session.kind != "sign" and session.key_id == key_id:
                raise Refusal("pending", f"key {key_id} has an admin session running ({session.session_id.hex()})")
        staged = self.staging.staged_for(key_id)
        if staged is not None:
            raise Refusal("pending", f"key {key_id} has an uncommitted admin session ({staged}); commit or discard it")

    def _keygen(
        self, sid: bytes, args: dict[str, Any], certificate: bytes, deadline: float, verify: Any, rng: RandomBytes
    ) -> tuple[Session, Callable[[], None]]:
        key_id, scheme, threshold = args["key_id"], args["scheme"], args["threshold"]
        roster: dict[int, NodeDescriptor] = args["roster"]
        if scheme not in SCHEME_CURVES:
            raise Refusal("bad-request", f"unknown scheme {scheme!r}")
        me = self._my_party(roster)
        self._no_retired(roster)
        if self.store.exists(f"keys/{key_id}"):
            raise Refusal("key-exists", f"this node already holds a key named {key_id!r}")
        self._no_pending(key_id)
        job = KeygenJob(sid, me, scheme, threshold, sorted(roster), rng=rng, hedge_key=self.hedge_key)
        session = Session(sid, "keygen", key_id, "m", [], certificate, job, roster, me, deadline)
        org = self._certificate_org(certificate)
        if org is not None and not scheme_by_name(scheme).recoverable:
            raise Refusal(
                "bad-request", f"a key of an organisation signs its Ethereum withdrawals: threshold ECDSA, not {scheme}"
            )
        if org is not None:
            _org_threshold(key_id, threshold, len(roster))
            self._org_nodes(org, key_id, roster.values())
        session.staging = {"roster": roster, "base": b"", "org": org}
        params = {
            "scheme": scheme,
            "threshold": threshold,
            "roster": rpc.roster_hash([d.node_id for d in roster.values()]),
        }
        cert_key_id = _certificate_key_id(certificate)
        expected = cert_key_id if cert_key_id else default_key_id(sid)
        if key_id != expected:
            raise Refusal("bad-request", f"the new key must be named {expected!r} (from the certificate or session)")
        return session, verify(kind="keygen", key_id=cert_key_id, path="m", params=_with_org(params, org))

    def _reshare(
        self,
        sid: bytes,
        args: dict[str, Any],
        certificate: bytes,
        deadline: float,
        verify: Any,
        me_id: str,
        rng: RandomBytes,
    ) -> tuple[Session, Callable[[], None]]:
        key_id, threshold = args["key_id"], args["threshold"]
        dealers: dict[int, NodeDescriptor] = args["dealers"]
        new: dict[int, NodeDescriptor] = args["roster"]
        public = args["public"]
        roster = dict(dealers)
        for party, descriptor in new.items():
            if party in roster and roster[party].node_id != descriptor.node_id:
                raise Refusal("bad-request", f"party {party} is two different nodes among dealers and new committee")
            roster[party] = descriptor
        if len({d.node_id for d in roster.values()}) != len(roster):
            raise Refusal("bad-request", "a node has two party numbers in this reshare")
        me = self._my_party(roster)
        self._no_retired(roster)
        share: KeyShare | None = None
        if me in dealers:
            share, stored = read_key(self.store, key_id)
            if share.public != public:
                raise Refusal("bad-request", "the public key package is not the one of the stored key")
            if share.extensions.get(CHAIN_CODE, b"") != args["chain_code"]:
                raise Refusal("bad-request", "the chain code is not the one of the stored key")
            for party, descriptor in dealers.items():
                if party not in stored or stored[party].node_id != descriptor.node_id:
                    raise Refusal("bad-request", f"dealer {party} is not that party of the stored key")
            bound = self.orgs.binding(key_id)
            if bound is not None:
                holders = {d.node_id for d in stored.values()}
                self._org_nodes(bound, key_id, (d for d in new.values() if d.node_id not in holders))
                _org_threshold(key_id, threshold, len(new), share.threshold)
        elif self.store.exists(f"keys/{key_id}"):
            raise Refusal("key-exists", f"this node holds key {key_id!r} already but is not one of the dealers")
        self._no_pending(key_id)
        metadata = {CHAIN_CODE: args["chain_code"]} if args["chain_code"] else {}
        job = ReshareJob(
            sid,
            me,
            public,
            sorted(dealers),
            threshold,
            sorted(new),
            share=share,
            metadata=metadata,
            rng=rng,
            hedge_key=self.hedge_key,
        )
        session = Session(sid, "reshare", key_id, "m", [], certificate, job, roster, me, deadline)
        # A dealer holds the key's organisation. A node new to the key takes it from the certificate only if
        # every dealer states, signed, that it holds this very key for that organisation: the certificate is
        # not bound across the session's members, so a dealer may have been shown another one.
        org = self.orgs.binding(key_id) if share is not None else self._certificate_org(certificate)
        if share is None and org is not None:
            self._org_nodes(org, key_id, dealers.values())
            stated = self._dealers_hold(org, key_id, dealers, public, args["chain_code"], args["holdings"])
            _org_threshold(key_id, threshold, len(new), stated)
            dealing = {d.node_id for d in dealers.values()}
            self._org_nodes(org, key_id, (d for d in new.values() if d.node_id not in dealing))
        session.staging = {"roster": new, "base": public.fingerprint(), "org": org}
        # A node new to the key has nothing but the certificate to check the old key and its
        # dealers against: the authority binds both, not just the group key.
        params = {
            "threshold": threshold,
            "roster": rpc.roster_hash([d.node_id for d in new.values()]),
            "dealers": rpc.roster_hash([d.node_id for d in dealers.values()]),
            "group_key": public.group_public_key.encode().hex(),
            "fingerprint": public.fingerprint().hex(),
            "chain_code": args["chain_code"].hex(),
        }
        return session, verify(kind="reshare", key_id=key_id, path="m", params=_with_org(params, org))

    def _dealers_hold(
        self,
        org: str,
        key_id: str,
        dealers: Mapping[int, NodeDescriptor],
        public: PublicKeyPackage,
        chain_code: bytes,
        statements: list[bytes],
    ) -> int:
        """The key's threshold as every dealer states it, signed, holding ``key_id`` for ``org``; else Refusal.

        Without this, a key of no organisation (made on nodes the authority runs, so
        it knows the secret) could be reshared onto an organisation's nodes under a
        certificate naming the organisation, shown to them alone, and then stated as
        the organisation's vault.
        """
        by_node: dict[bytes, bytes] = {}
        for data in statements:
            try:
                node = holding.parse(data)[0].node
            except GovernanceError as exc:
                raise Refusal("approval", f"a dealer's holding statement is malformed: {exc}") from None
            by_node[node] = data
        thresholds = set()
        for descriptor in dealers.values():
            unstated = f"dealer {descriptor.name} does not state that it holds {key_id!r} for organisation {org[:16]}"
            if descriptor.sign_pk not in by_node:
                raise Refusal("approval", f"{unstated}: it gave no statement")
            try:
                stated = holding.verified(by_node[descriptor.sign_pk], descriptor.sign_pk)
            except GovernanceError as exc:
                raise Refusal("approval", f"{unstated}: {exc}") from None
            wanted = (bytes.fromhex(org), key_id, public.group_public_key.encode(), chain_code)
            if (stated.org, stated.key_id, stated.public_key, stated.chain_code) != wanted:
                raise Refusal(
                    "approval",
                    f"dealer {descriptor.name} states it holds {stated.key_id!r} for organisation "
                    f"{stated.org.hex()[:16]} with another key or chain code: not this reshare's",
                )
            thresholds.add(stated.threshold)
        if len(thresholds) != 1:
            raise Refusal("approval", f"the dealers state different thresholds for {key_id!r}: {sorted(thresholds)}")
        return thresholds.pop()

    def _org_nodes(self, org: str, key_id: str, members: Iterable[NodeDescriptor]) -> None:
        """Refusal unless every one of ``members`` is a node the organisation's admins named (``node.add``).

        The authority alone must not hand an organisation's key to nodes of its
        choosing: ``t`` of them would hold the whole key and sign outside the
        organisation's rules. So a key of an organisation is made only on, and
        reshared only to, nodes its quorum-signed log names (a dealer also lets
        the nodes that hold the key already keep it).
        """
        named = self.orgs.log(org).state.nodes
        strangers = sorted(d.name for d in members if d.sign_pk not in named)
        if strangers:
            raise Refusal(
                "approval",
                f"key {key_id!r} is a key of organisation {org[:16]}, whose governance log does not name node(s) "
                f"{', '.join(strangers)} (a node.add the organisation's admins sign adds a node)",
            )

    def _certificate_org(self, certificate: bytes) -> str | None:
        """The organisation an admin certificate names for the key (its ``org`` param), which must be enrolled."""
        try:
            cert, _ = approval.parse(certificate)
        except approval.ApprovalError:
            return None  # refused as malformed when it is verified
        org = cert.params.get("org")
        if org is None:
            return None
        if not isinstance(org, str):
            raise Refusal("bad-request", "the certificate's org param is an organisation's genesis hash (hex)")
        self.orgs.log(check_org(org))  # Refusal("unknown-org") unless enrolled
        return org

    def _no_retired(self, roster: Mapping[int, NodeDescriptor]) -> None:
        """A node whose identity was rotated away never joins a new committee under its old key."""
        for descriptor in roster.values():
            if self.store.exists(f"rotated/{descriptor.node_id}"):
                raise Refusal("rotated", f"node {descriptor.node_id} was rotated to a new identity; use that one")

    def _my_party(self, roster: Mapping[int, NodeDescriptor]) -> int:
        for party, descriptor in roster.items():
            if descriptor.node_id == self.identity.node_id:
                if descriptor.sign_pk != self.identity.sign_pk:
                    raise Refusal("bad-request", "the roster lists this node with other keys")
                return party
        raise Refusal("bad-request", "this node is not in the session's roster")


def _no_organisation(kind: str, key_id: str) -> Callable[[approval.Certificate], None]:
    """The refusal of an admin session of a key of no organisation, on a node that serves organisations only.

    Run by :func:`approval.verify` once the certificate is the authority's, before its
    nonce is spent: the session is refused and logged like any refused certificate.
    """

    def refuse(_: approval.Certificate) -> None:
        if kind == "keygen":
            what = "this keygen certificate names no organisation (param org), and this node makes no key of none"
        else:
            what = f"key {key_id!r} belongs to no organisation, and this node does not {kind} such a key"
        raise approval.ApprovalError(
            "no-organisation",
            f"{what}: it serves organisations only (organisations_only), so no key is made, signed with, "
            "refreshed or reshared on the authority's word alone",
        )

    return refuse


def _with_org(params: dict[str, Any], org: str | None) -> dict[str, Any]:
    """An admin certificate's params for a key of ``org``: the org is one of them (none for a key of none)."""
    return params if org is None else {**params, "org": org}


def _org_threshold(key_id: str, threshold: int, members: int, current: int = 2) -> None:
    """Refusal unless ``threshold`` of ``members`` suits a key of an organisation.

    At least 2, and no lower than the key's ``current`` one (the admins approved
    the vault at that threshold; a lower one would need no entry of theirs). And
    ``2t > n``: any two signer sets then share a node, which saw every withdrawal
    the other signed, so velocity limits hold exactly and one transaction id (one
    signed request, one set of approvals) is signed at one nonce only.
    """
    if threshold < max(2, current):
        raise Refusal(
            "approval",
            f"key {key_id!r} is a key of an organisation: its threshold stays at least {max(2, current)}, "
            f"not {threshold}",
        )
    if 2 * threshold <= members:
        raise Refusal(
            "approval",
            f"key {key_id!r} is a key of an organisation: {threshold} of {members} lets two signer sets share no "
            f"node; a threshold above half the committee ({members // 2 + 1} or more) is needed",
        )


def _certificate_key_id(certificate: bytes) -> str:
    try:
        cert, _ = approval.parse(certificate)
    except approval.ApprovalError:
        return ""
    return cert.key_id


def default_key_id(session_id: bytes) -> str:
    """The name a new key gets when its keygen certificate leaves it to the node."""
    return f"key-{session_id[:8].hex()}"
