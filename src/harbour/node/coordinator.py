"""The coordinator: starts sessions on signer nodes and relays their sealed messages.

It is trusted with nothing (node/driving.py says why): what it decides is
liveness, which nodes to ask and when to give up. It is built in layers, one
concept each: :class:`~harbour.node.driving.SessionDriver` reaches nodes and
drives one session; :class:`~harbour.node.ceremonies.KeyCeremonies` runs the
admin sessions that end in a commit (keygen, refresh, reshare) and keeps the key
records; this module adds what is left: choosing who signs, spreading
concurrent signing sessions over the nodes, checking each signature before it
is returned, and handing a node's identity rotation to its peers.

Signing picks a live t-subset: nodes that answer ``describe`` within a short time,
the least busy first, then in party order. What the signature is, and how it is
checked, is the key's scheme's to say (:mod:`harbour.mpc.schemes`).
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from harbour.crypto.group import Point
from harbour.governance.state import GovernanceLog
from harbour.mpc import hd
from harbour.mpc.schemes import Signature, scheme_by_name
from harbour.node import approval
from harbour.node.ceremonies import KeyCeremonies, admin_params, assign_parties
from harbour.node.clusterkey import ClusterKey, SignOutcome, recorded_keys
from harbour.node.driving import (
    DEFAULT_TIMEOUT,
    FRESH,
    PING_TIMEOUT,
    ClusterError,
    Relay,
    run_sync,
)
from harbour.node.governing import GovernanceDriving
from harbour.node.identity import NodeDescriptor
from harbour.node.orgs.judging import has_limits
from harbour.node.rotation import Rotation, rotate_roster
from harbour.node.transport import FileTransport, HttpTransport, Transport


class Coordinator(KeyCeremonies, GovernanceDriving):
    """Drives sessions; use as ``async with Coordinator(...) as c``."""

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        offline: Mapping[str, Path] | None = None,
        relay: Relay | None = None,
        transports: Mapping[str, Transport] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(
            state_dir=state_dir, timeout=timeout, offline=offline, relay=relay, transports=transports, tls=tls
        )
        self._busy: dict[str, int] = {}  # node id -> signing sessions this coordinator has running on it
        self._org_locks: dict[str, asyncio.Lock] = {}  # org -> held from its statements until every signer started

    async def pick_signers(self, key: ClusterKey) -> list[int]:
        """A live t-subset: the live nodes with the fewest of this coordinator's signing sessions running.

        The lowest parties win a tie, so one session at a time always goes to the first
        t, and concurrent sessions spread over every node.
        """
        up = await self.live(key.roster.values())
        ranked = sorted((self._busy.get(d.node_id, 0), p) for p, d in key.roster.items() if d.node_id in up)
        signers = [p for _, p in ranked][: key.threshold]
        if len(signers) < key.threshold:
            down = [d.name for d in key.roster.values() if d.node_id not in up]
            raise ClusterError(
                "too-few-nodes", f"only {len(signers)} of {key.threshold} needed nodes answer; down: {down}"
            )
        return sorted(signers)

    async def sign(
        self,
        key: ClusterKey,
        message: bytes,
        certificate: bytes | Callable[[list[int]], bytes],
        *,
        path: str = "m",
        signers: Sequence[int] | None = None,
    ) -> SignOutcome:
        """One signature by the signers the certificate names, verified here before it is returned.

        A sign certificate names its signers, and the nodes refuse any others. Given
        ``certificate`` as a function instead, the coordinator first chooses the signers
        (``signers``, or :meth:`pick_signers`) and asks it for the certificate of that set:
        how a service that is its own authority spreads concurrent sessions over the nodes.
        """
        if callable(certificate):
            chosen = sorted(signers) if signers is not None else await self.pick_signers(key)
            certificate = certificate(chosen)
        else:
            named = _certificate_signers(certificate)
            if signers is not None and named and sorted(signers) != named:
                raise ClusterError("bad-request", f"the certificate names signers {named}, not {sorted(signers)}")
            chosen = named or (sorted(signers) if signers is not None else await self.pick_signers(key))
        return await self._sign(key, message, certificate, chosen, path)

    async def sign_for_org(
        self,
        key: ClusterKey,
        message: bytes,
        certificate: Callable[[list[int]], bytes],
        *,
        log: GovernanceLog,
        path: str = "m",
        signers: Sequence[int] | None = None,
    ) -> SignOutcome:
        """One signature with a key of an organisation, on the version-2 evidence the certificate carries.

        ``log`` is the caller's verified log of the key's organisation, the one the
        evidence was decided on (its ``head`` is ``log.head``); ``certificate`` makes
        the certificate for the chosen signers (``signers``, or :meth:`pick_signers`).
        Before the session every signer's log is brought to that head (:meth:`push`,
        which skips a node this coordinator saw there already; if a signer refuses
        for its head, every signer is asked again and the session retried once, with
        a new certificate); when the policy in force has velocity or count limits,
        each signer's history statement for this session is gathered and handed to
        all of them. Until every signer has accepted its start, no other such session
        of the organisation begins here: each signer records the withdrawal when it
        accepts, and a statement made before that would be stale (the node refuses it).
        """
        chosen = sorted(signers) if signers is not None else await self.pick_signers(key)
        members = [key.roster[p] for p in chosen]
        org = log.genesis_hash.hex()
        if key.org and key.org != org:
            raise ClusterError("governance", f"key {key.key_id} belongs to organisation {key.org}, not {org}")
        try:
            return await self._sign_for_org(key, message, certificate, log, path, chosen)
        except ClusterError as exc:
            if exc.reason != "approval" or "approval refused (governance)" not in str(exc):
                raise
        # A signer's log was not where this coordinator last saw it: ask every signer again, and retry once.
        self.forget_heads(members, org)
        return await self._sign_for_org(key, message, certificate, log, path, chosen)

    async def _sign_for_org(
        self,
        key: ClusterKey,
        message: bytes,
        certificate: Callable[[list[int]], bytes],
        log: GovernanceLog,
        path: str,
        chosen: list[int],
    ) -> SignOutcome:
        members = [key.roster[p] for p in chosen]
        org = log.genesis_hash.hex()
        await self.push(members, log)
        if not has_limits(log.state.policy):
            return await self._sign(key, message, certificate(chosen), chosen, path)
        lock = self._org_locks.setdefault(org, asyncio.Lock())
        await lock.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                lock.release()

        try:
            sid = secrets.token_bytes(32)
            histories = await self.statements(members, org, sid)
            return await self._sign(
                key, message, certificate(chosen), chosen, path, sid=sid, histories=histories, on_started=release
            )
        finally:
            release()

    async def _sign(
        self,
        key: ClusterKey,
        message: bytes,
        certificate: bytes,
        chosen: list[int],
        path: str,
        *,
        sid: bytes | None = None,
        histories: list[bytes] | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> SignOutcome:
        members = {p: key.roster[p] for p in chosen}
        args: dict[str, Any] = {"key_id": key.key_id, "path": path, "message": message, "signers": chosen}
        if histories is not None:
            args["histories"] = histories
        for d in members.values():
            self._busy[d.node_id] = self._busy.get(d.node_id, 0) + 1
        try:
            _, results = await self._run("sign", certificate, members, {p: args for p in members}, sid, on_started)
        finally:
            for d in members.values():
                self._busy[d.node_id] -= 1
        signatures = {bytes(r["signature"]) for r in results.values()}
        if len(signatures) != 1:
            raise ClusterError("bad-result", "the signers returned different signatures")
        raw = signatures.pop()
        group_key = key.public.group_public_key
        if path != "m":
            group_key = hd.derive(key.public.group, group_key, key.chain_code, path).public_key
        try:
            signature = scheme_by_name(key.scheme).signature_from(raw, next(iter(results.values())).get("recovery_id"))
        except ValueError as exc:
            raise ClusterError("bad-result", str(exc)) from exc
        if not verify_signature(key.scheme, group_key, message, signature):
            raise ClusterError("bad-result", "the signature does not verify under the key")
        return SignOutcome(key, chosen, message, path, signature, group_key)

    async def rotate(
        self, statement: bytes, certificate: bytes, nodes: Sequence[NodeDescriptor]
    ) -> dict[str, list[str]]:
        """Hand a node's rotation statement to ``nodes``; each updates the rosters of its keys.

        Returns, per node name, the keys it updated; this coordinator's own key
        records are updated too, so later sessions reach the node at its new identity.
        """
        rotation = Rotation.decode(statement)
        request = {"op": "rotate", "statement": statement, "certificate": certificate}
        answers = await asyncio.gather(*(self._call(d, request) for d in nodes), return_exceptions=True)
        failed = [(d.name, a) for d, a in zip(nodes, answers, strict=True) if isinstance(a, BaseException)]
        if failed:
            name, error = failed[0]
            raise ClusterError(
                getattr(error, "reason", "unreachable"),
                f"node {name} did not take the rotation: {error}; the others did, so run it again on that node",
                name,
            )
        for key_id in recorded_keys(self.state_dir):
            key = self.load_key(key_id)
            roster = rotate_roster(key.roster, rotation)
            if roster is not None:
                self.save_key(replace(key, roster=roster))
        out: dict[str, list[str]] = {}
        for descriptor, answer in zip(nodes, answers, strict=True):
            assert isinstance(answer, dict)
            keys = answer.get("keys")
            if type(keys) is not list or not all(isinstance(k, str) for k in keys):
                raise ClusterError("bad-response", "malformed answer to rotate", descriptor.name)
            out[descriptor.name] = keys
        return out


def verify_signature(scheme: str, group_key: Point, message: bytes, signature: Signature) -> bool:
    """Whether ``signature`` is valid for ``message`` under ``group_key``, by the rules of ``scheme``."""
    return scheme_by_name(scheme).verify(group_key, message, signature)


def _certificate_signers(certificate: bytes) -> list[int]:
    """The signers a sign certificate names (empty if it is not one): the nodes accept no others."""
    try:
        return list(approval.parse(certificate)[0].signers)
    except approval.ApprovalError:
        return []


__all__ = [
    "DEFAULT_TIMEOUT",
    "FRESH",
    "PING_TIMEOUT",
    "ClusterError",
    "ClusterKey",
    "Coordinator",
    "FileTransport",
    "HttpTransport",
    "Relay",
    "SignOutcome",
    "admin_params",
    "assign_parties",
    "run_sync",
    "verify_signature",
]
