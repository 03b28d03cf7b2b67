"""Custody's window onto the signer nodes: key generation and signing, never a share.

The service is threaded (API requests, the signing pool) and the node
coordinator is asyncio, so one event loop runs in a background thread and every
call is submitted to it; the coordinator's kept-alive connections are shared by
all sessions. Each operation carries an approval certificate that this module
issues with the service's authority key; the nodes check it (and, for
withdrawals, the approvers' own signatures inside it) before they join.

For a key of an organisation the nodes decide each withdrawal from the
organisation's governance log: :meth:`Signer.enrol` gives them its genesis once,
:meth:`Signer.keygen` with ``org`` makes the key the organisation's, and
:meth:`Signer.sign` with the ``log`` the evidence was built on
(:func:`harbour.custody.evidence.build_governed_evidence`) brings the signers'
logs up to date before it signs.

A key being reshared (:meth:`Signer.reshare`) signs nothing here until the
ceremony ends, and a reshare does not start while a signing session of the key
runs: the committee a signature is asked of is then always the key's current one.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.governance.log import SignedEntry
from harbour.governance.state import GovernanceLog
from harbour.mpc import hd
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.node import approval
from harbour.node.certificate import ParamValue
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator, admin_params
from harbour.node.driving import PING_TIMEOUT
from harbour.node.identity import NodeDescriptor

T = TypeVar("T")

CERTIFICATE_LIFETIME = 300
"""Seconds a certificate stays valid: long enough for a slow session, short enough to be a one-off."""


class KeyBusy(Exception):
    """The key is in a ceremony, or being signed with, so the other must wait (it may pass: try again)."""


@dataclass(frozen=True)
class Signature:
    y_parity: int
    r: int
    s: int
    signers: tuple[int, ...]


class Signer:
    """Runs keygen and signing sessions on a fixed set of nodes."""

    def __init__(
        self,
        nodes: Sequence[NodeDescriptor],
        authority: approval.AuthorityKey,
        state_dir: Path,
        *,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.nodes = list(nodes)
        self.authority = authority
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="harbour-signer", daemon=True)
        self._thread.start()
        self._coordinator = Coordinator(state_dir=state_dir, timeout=timeout, tls=tls)
        self._keys: dict[str, ClusterKey] = {}
        self._keys_lock = threading.Lock()
        self._signing: dict[str, int] = {}  # key id -> signing sessions running now
        self._resharing: set[str] = set()

    def _run(self, coroutine: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout)

    def live(self, timeout: float) -> dict[str, bool]:
        """Each node's name and whether it answers ``describe`` now, within ``timeout`` seconds (readiness).

        Every node is asked afresh: the coordinator's own notion of live trusts a
        recent answer, which would call a node that just died live.
        """

        async def ask() -> list[object]:
            calls = (self._coordinator.describe(node, timeout) for node in self.nodes)
            return await asyncio.gather(*calls, return_exceptions=True)

        answers = self._run(ask(), timeout + 5)
        return {node.name: isinstance(a, NodeDescriptor) for node, a in zip(self.nodes, answers, strict=True)}

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._run(self._coordinator.__aexit__(None, None, None))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def node(self, name: str) -> NodeDescriptor:
        for descriptor in self.nodes:
            if descriptor.name == name:
                return descriptor
        raise KeyError(name)

    def enrol(self, genesis: SignedEntry, nodes: Sequence[NodeDescriptor] | None = None) -> dict[str, int]:
        """Enrol the organisation of ``genesis`` on ``nodes`` (every node); per node name, the entry its log is at.

        A node that has it already answers with its head and spends nothing, so
        enrolling again is how a node added to the deployment later learns it.
        """
        certificate = self._admin_certificate("enrol", "", {"org": genesis.hash.hex()})
        return self._run(self._coordinator.enrol(self.nodes if nodes is None else nodes, genesis, certificate))

    def push(self, log: GovernanceLog, nodes: Sequence[NodeDescriptor] | None = None) -> dict[str, int]:
        """Bring every node's (or ``nodes``') copy of the organisation's log to ``log``'s head."""
        return self._run(self._coordinator.push(self.nodes if nodes is None else nodes, log))

    def holdings(self, key_id: str, nodes: Sequence[NodeDescriptor]) -> list[bytes]:
        """Each of ``nodes``' signed statement that it holds ``key_id`` for the key's organisation (``vault.add``)."""
        return self._run(self._coordinator.holdings(nodes, key_id))

    def _admin_certificate(self, kind: str, key_id: str, params: Mapping[str, ParamValue]) -> bytes:
        """The authority's certificate for an enrolment, key generation or reshare, valid for a few minutes."""
        return approval.issue(
            self.authority,
            kind=kind,
            key_id=key_id,
            params=params,
            now=int(time.time()),
            expires_in=CERTIFICATE_LIFETIME,
        )

    def keygen(self, key_id: str, threshold: int, nodes: Sequence[NodeDescriptor], *, org: str = "") -> ClusterKey:
        """A new key on ``nodes``; with ``org`` (an enrolled organisation's genesis hash, hex) a key of it."""
        params = admin_params("keygen", scheme=ECDSA_SCHEME, threshold=threshold, nodes=nodes, org=org)
        certificate = self._admin_certificate("keygen", key_id, params)
        key = self._run(self._coordinator.keygen(nodes, threshold, ECDSA_SCHEME, certificate, key_id=key_id))
        self._coordinator.save_key(key)
        with self._keys_lock:
            self._keys[key_id] = key
        return key

    def key(self, key_id: str) -> ClusterKey:
        with self._keys_lock:
            key = self._keys.get(key_id)
            if key is None:
                key = self._keys[key_id] = self._coordinator.load_key(key_id)
            return key

    def child_public_key(self, key_id: str, path: str) -> Secp256k1Point:
        key = self.key(key_id)
        point = key.public.group_public_key
        if path != "m":
            point = hd.derive(key.public.group, point, key.chain_code, path).public_key
        assert isinstance(point, Secp256k1Point)
        return point

    def sign(
        self,
        key_id: str,
        path: str,
        digest: bytes,
        *,
        evidence: bytes | None = None,
        log: GovernanceLog | None = None,
    ) -> Signature:
        """One ECDSA signature over ``digest`` by a live t-subset of the key's nodes.

        For a key of an organisation, ``evidence`` is version 2 and ``log`` the
        verified log it cites (:meth:`Coordinator.sign_for_org`), and only nodes
        the log states as the vault's holders are asked (a node refuses to sign
        as anything else: a reshare the admins have not recorded yet brings in
        no signer). KeyBusy while the key is being reshared.
        """
        with self._signing_key(key_id):
            return self._sign(key_id, path, digest, evidence=evidence, log=log)

    @contextmanager
    def _signing_key(self, key_id: str) -> Iterator[None]:
        with self._keys_lock:
            if key_id in self._resharing:
                raise KeyBusy(f"key {key_id} is being reshared; it is signed with once the ceremony ends")
            self._signing[key_id] = self._signing.get(key_id, 0) + 1
        try:
            yield
        finally:
            with self._keys_lock:
                self._signing[key_id] -= 1
                if not self._signing[key_id]:
                    del self._signing[key_id]

    def _sign(
        self, key_id: str, path: str, digest: bytes, *, evidence: bytes | None, log: GovernanceLog | None
    ) -> Signature:
        key = self.key(key_id)
        extra: dict[str, Any] = {} if evidence is None else {"evidence": evidence}

        def certificate(signers: list[int]) -> bytes:
            # Issued for the signers the coordinator picked: the nodes take no other set.
            return approval.issue(
                self.authority,
                kind="sign",
                key_id=key_id,
                path=path,
                digests=[digest],
                signers=signers,
                now=int(time.time()),
                expires_in=CERTIFICATE_LIFETIME,
                **extra,
            )

        if log is not None:
            vault = log.state.vault_of_key(key_id)
            holders = vault.holding.holders if vault is not None else ()
            signers = self._run(self._holders(key, holders)) if vault is not None else None
            outcome = self._run(
                self._coordinator.sign_for_org(key, digest, certificate, log=log, path=path, signers=signers)
            )
        else:
            outcome = self._run(self._coordinator.sign(key, digest, certificate, path=path))
        signature = outcome.signature
        if not isinstance(signature, EcdsaSignature):
            raise ClusterError("bad-result", "the nodes returned a non-ECDSA signature")
        if signature.recovery_id > 1:
            # R.x >= n: possible with probability ~2^-128; Ethereum's y_parity cannot express it.
            raise ClusterError("bad-result", "signature has an overflowing R.x; sign again")
        return Signature(signature.recovery_id, signature.r, signature.s, tuple(outcome.signers))

    async def _holders(self, key: ClusterKey, holders: Sequence[bytes]) -> list[int] | None:
        """Signers among the key's members the log states as holders; None (the usual choice) if all of them are."""
        if all(d.sign_pk in holders for d in key.roster.values()):
            return None
        stated = {p: d for p, d in key.roster.items() if d.sign_pk in holders}
        up = await self._coordinator.live(stated.values())
        chosen = [p for p, d in sorted(stated.items()) if d.node_id in up][: key.threshold]
        if len(chosen) < key.threshold:
            raise ClusterError(
                "too-few-nodes",
                f"only {len(chosen)} of the {key.threshold} signers needed are live nodes the governance log states "
                "as the vault's holders (a vault.reshare the admins sign records a new committee)",
            )
        return chosen

    def reshare(self, key_id: str, nodes: Sequence[NodeDescriptor], threshold: int) -> tuple[ClusterKey, list[str]]:
        """Move ``key_id`` to ``nodes`` at ``threshold`` (same public key); the new key and the members left behind.

        Every member that answers now deals, so that each leaving the committee
        deletes its share on commit; a member that does not answer keeps a share
        of the old committee, which no node of the new one signs with. Refused
        (ClusterError "too-few-nodes") unless the key's threshold of members
        answer and every node of the new committee answers (a member that holds
        the key takes part only as a dealer). KeyBusy while the key is being
        signed with.
        """
        with self._keys_lock:
            if self._signing.get(key_id) or key_id in self._resharing:
                raise KeyBusy(f"key {key_id} is being signed with or reshared now; try again when that ends")
            self._resharing.add(key_id)
        try:
            key = self.key(key_id)
            answers = self.answering([*key.roster.values(), *nodes])
            dealers = sorted(p for p, d in key.roster.items() if answers[d.name])
            if len(dealers) < key.threshold or any(not answers[d.name] for d in nodes):
                down = sorted(name for name, up in answers.items() if not up)
                raise ClusterError(
                    "too-few-nodes",
                    f"resharing {key_id} needs {key.threshold} of its {len(key.roster)} members, and every node of "
                    f"the new committee, to answer; not answering: {', '.join(down)}",
                )
            left_behind = [d.name for d in key.roster.values() if not answers[d.name]]
            params = admin_params("reshare", threshold=threshold, nodes=nodes, key=key, dealers=dealers)
            certificate = self._admin_certificate("reshare", key_id, params)
            new = self._run(self._coordinator.reshare(key, nodes, threshold, certificate, dealers=dealers))
            with self._keys_lock:
                self._keys[key_id] = new
            return new, left_behind
        finally:
            with self._keys_lock:
                self._resharing.discard(key_id)

    def answering(self, nodes: Sequence[NodeDescriptor]) -> dict[str, bool]:
        """Each of ``nodes`` by name, and whether it answers now (asked afresh, as :meth:`live` does)."""
        unique = list({d.node_id: d for d in nodes}.values())

        async def ask() -> list[object]:
            calls = (self._coordinator.describe(node, PING_TIMEOUT) for node in unique)
            return await asyncio.gather(*calls, return_exceptions=True)

        answers = self._run(ask(), PING_TIMEOUT + 5)
        return {d.name: isinstance(a, NodeDescriptor) for d, a in zip(unique, answers, strict=True)}
