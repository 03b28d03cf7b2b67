"""Key ceremonies on signer nodes: key generation, refresh, resharing, and finishing or discarding one.

Each is a session (node/driving.py) that ends with a commit, because a key must
never be half-replaced: the coordinator passes every new member's signed
acknowledgement of the new key's fingerprint to every member, and only then do
nodes replace their shares; members leaving the key delete theirs only on every
new member's receipt. A commit that stops half-way leaves the new shares
staged, to be finished (:meth:`KeyCeremonies.finish`) or, if no member has
committed, discarded with the authority's certificate.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from harbour.node import approval, rpc
from harbour.node.clusterkey import ClusterKey, load_key, save_key
from harbour.node.driving import DEFAULT_TIMEOUT, ClusterError, Relay, SessionDriver, run_all
from harbour.node.identity import NodeDescriptor
from harbour.node.transport import Transport


class KeyCeremonies(SessionDriver):
    """The admin sessions of a coordinator, and the key records they leave under ``state_dir``."""

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
        super().__init__(timeout=timeout, offline=offline, relay=relay, transports=transports, tls=tls)
        self.state_dir = Path(state_dir) if state_dir is not None else None

    async def keygen(
        self,
        nodes: Sequence[NodeDescriptor],
        threshold: int,
        scheme: str,
        certificate: bytes,
        *,
        key_id: str | None = None,
        session_id: bytes | None = None,
    ) -> ClusterKey:
        """A new key on ``nodes`` (party i is ``nodes[i-1]``); named by the certificate, or by the session.

        A certificate with the param ``org`` makes a key of that organisation (which
        every node must have enrolled): the record kept here remembers it, so later
        admin certificates can name it (:func:`admin_params`).
        """
        sid = session_id or secrets.token_bytes(32)
        name = key_id or _certificate_key_id(certificate) or f"key-{sid[:8].hex()}"
        roster = {i: d for i, d in enumerate(nodes, start=1)}
        args = {"key_id": name, "scheme": scheme, "threshold": threshold, "roster": rpc.roster_value(roster)}
        _, results = await self._run("keygen", certificate, roster, {p: args for p in roster}, sid)
        return await self._commit(sid, name, roster, results, org=_certificate_org(certificate))

    async def refresh(self, key: ClusterKey, certificate: bytes) -> ClusterKey:
        """New shares of the same key on the same nodes (every node must be up)."""
        args = {"key_id": key.key_id}
        sid, results = await self._run("refresh", certificate, key.roster, {p: args for p in key.roster})
        return await self._commit(sid, key.key_id, key.roster, results, org=key.org)

    async def holdings(self, nodes: Sequence[NodeDescriptor], key_id: str) -> list[bytes]:
        """Each node's signed statement that it holds ``key_id`` for the key's organisation.

        Nothing here checks them: whoever applies the ``vault.add`` that carries
        them does (:func:`harbour.governance.holding.check`).
        """
        answers = await asyncio.gather(*(self._call(d, {"op": "key", "key_id": key_id}) for d in nodes))
        out = []
        for descriptor, answer in zip(nodes, answers, strict=True):
            statement = answer.get("holding")
            if type(statement) is not bytes or not statement:
                raise ClusterError(
                    "governance", f"node {descriptor.name} holds {key_id!r} for no organisation", descriptor.name
                )
            out.append(statement)
        return out

    async def reshare(
        self,
        key: ClusterKey,
        new_nodes: Sequence[NodeDescriptor],
        new_threshold: int,
        certificate: bytes,
        *,
        dealers: Sequence[int] | None = None,
    ) -> ClusterKey:
        """Move the key to ``new_nodes`` with ``new_threshold``; nodes staying keep their party number."""
        if dealers is None:
            up = await self.live(key.roster.values())
            # Every live member deals, so that each one leaving the committee deletes its share on commit.
            dealers = [p for p, d in sorted(key.roster.items()) if d.node_id in up]
        if len(dealers) < key.threshold:
            raise ClusterError("too-few-nodes", f"resharing needs {key.threshold} live members of the key")
        dealer_roster = {p: key.roster[p] for p in dealers}
        new_roster = assign_parties(key.roster, new_nodes)
        members = dict(dealer_roster)
        members.update(new_roster)
        # A node new to a key of an organisation takes it only with every dealer's statement that it holds it so.
        holdings = await self.holdings(list(dealer_roster.values()), key.key_id) if key.org else []
        args = {
            "key_id": key.key_id,
            "threshold": new_threshold,
            "dealers": rpc.roster_value(dealer_roster),
            "roster": rpc.roster_value(new_roster),
            "public": rpc.encode_public(key.public),
            "chain_code": key.chain_code,
            "holdings": holdings,
        }
        sid, results = await self._run("reshare", certificate, members, {p: args for p in members})
        new_results = {p: r for p, r in results.items() if p in new_roster}
        new_key = await self._commit(
            sid,
            key.key_id,
            new_roster,
            new_results,
            also=[dealer_roster[p] for p in dealer_roster if p not in new_roster],
            org=key.org,
        )
        if new_key.public.group_public_key != key.public.group_public_key:
            raise ClusterError("bad-result", "the reshared key has another group public key")
        return new_key

    async def _commit(
        self,
        sid: bytes,
        key_id: str,
        roster: Mapping[int, NodeDescriptor],
        results: Mapping[int, dict[str, Any]],
        also: Sequence[NodeDescriptor] = (),
        *,
        org: str | None,
    ) -> ClusterKey:
        publics = {bytes(r.get("public", b"")) for r in results.values()}
        fingerprints = {bytes(r.get("fingerprint", b"")) for r in results.values()}
        if len(publics) != 1 or len(fingerprints) != 1 or b"" in publics:
            raise ClusterError("bad-result", "the nodes do not agree on the new key")
        public = rpc.decode_public(publics.pop())
        fingerprint = fingerprints.pop()
        if public.fingerprint() != fingerprint:
            raise ClusterError("bad-result", "the nodes report a fingerprint that is not their key's")
        acks = {roster[p].node_id: bytes(r["ack"]) for p, r in results.items()}
        request: dict[str, Any] = {
            "op": "commit", "session_id": sid, "fingerprint": fingerprint, "acks": acks, "receipts": {}
        }  # fmt: skip
        answers = await asyncio.gather(*(self._call(d, request) for d in roster.values()), return_exceptions=True)
        failed = [a for a in answers if isinstance(a, BaseException)]
        try:
            if failed:
                raise failed[0]
            receipts = {}
            for descriptor, answer in zip(roster.values(), answers, strict=True):
                assert isinstance(answer, dict)
                receipt = answer.get("receipt")
                if type(receipt) is not bytes or len(receipt) != 64:
                    raise ClusterError("bad-response", f"node {descriptor.name} committed without a receipt")
                receipts[descriptor.node_id] = receipt
            # Members that leave delete their share only now, on every new member's receipt.
            await run_all(self._call(d, {**request, "receipts": receipts}) for d in also)
        except ClusterError as exc:
            some_committed = len(failed) < len(answers)
            advice = (
                "some members have committed, so it must be finished, never discarded"
                if some_committed
                else "finish it, or discard it with the authority's certificate"
            )
            raise ClusterError(
                exc.reason,
                f"{exc}; the new shares of session {sid.hex()} are staged: {advice} "
                f"('harbour cluster finish --session {sid.hex()}')",
                exc.node,
            ) from exc
        codes = {bytes(r.get("chain_code", b"")) for r in results.values()}
        if org is None:  # finishing a commit: the nodes know whose key it is
            info = await self._call(next(iter(roster.values())), {"op": "key", "key_id": key_id})
            org = info.get("org") if isinstance(info.get("org"), str) else ""
        key = ClusterKey(key_id, public, dict(roster), codes.pop() if len(codes) == 1 else b"", org or "")
        self.save_key(key)
        return key

    async def finish(self, sid: bytes, nodes: Sequence[NodeDescriptor]) -> ClusterKey:
        """Finish an admin session whose commit was interrupted (a coordinator that stopped half-way).

        ``nodes`` are the session's members that can be reached, old and new: every
        member of the new committee still holding the staged share, or having
        committed it, gives its acknowledgement again; then all commit, and members
        leaving the key delete their share on the receipts.
        """
        answers = await asyncio.gather(
            *(self._call(d, {"op": "staged", "session_id": sid}) for d in nodes), return_exceptions=True
        )
        roster: dict[int, NodeDescriptor] | None = None
        results: dict[int, dict[str, Any]] = {}
        leaving: list[NodeDescriptor] = []
        for descriptor, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, BaseException):
                if isinstance(answer, ClusterError) and answer.reason == "unknown-session":
                    continue  # not a member of that session, or it never staged
                raise answer
            try:
                member_roster = rpc.parse_roster(answer.get("roster"))
            except rpc.RequestError as exc:
                raise ClusterError("bad-response", str(exc), descriptor.name) from exc
            if roster is None:
                roster = member_roster
            elif {p: d.node_id for p, d in roster.items()} != {p: d.node_id for p, d in member_roster.items()}:
                raise ClusterError("bad-result", "the nodes disagree about the new committee")
            party = next((p for p, d in member_roster.items() if d.node_id == descriptor.node_id), None)
            result = answer.get("result")
            if not isinstance(result, dict):
                raise ClusterError("bad-response", "staged result missing", descriptor.name)
            if party is None:
                leaving.append(descriptor)
            else:
                results[party] = result
        if roster is None:
            raise ClusterError("unknown-session", f"no node has a staged or committed result of session {sid.hex()}")
        missing = [d.name for p, d in roster.items() if p not in results]
        if missing:
            raise ClusterError(
                "too-few-nodes", f"every new member must answer to finish the commit; missing: {missing}"
            )
        key_id = {str(r.get("key_id")) for r in results.values()}
        if len(key_id) != 1:
            raise ClusterError("bad-result", "the nodes disagree about the key id")
        name = key_id.pop()
        try:
            rpc.check_key_id(name)
        except rpc.RequestError as exc:
            raise ClusterError("bad-result", f"the nodes name the key {name!r}: {exc}") from exc
        return await self._commit(sid, name, roster, results, also=leaving, org=None)

    async def discard(self, sid: bytes, certificate: bytes, nodes: Sequence[NodeDescriptor]) -> list[str]:
        """Discard a staged result on every node holding it (the authority's discard certificate); their names.

        Refused if any of ``nodes`` has committed that session already: its members
        then hold the new generation, and discarding the others' would lose the key.
        """
        states = await asyncio.gather(
            *(self._call(d, {"op": "staged", "session_id": sid}) for d in nodes), return_exceptions=True
        )
        for descriptor, state in zip(nodes, states, strict=True):
            if isinstance(state, ClusterError) and state.reason == "unknown-session":
                continue
            if isinstance(state, BaseException):
                raise ClusterError("unreachable", f"cannot tell whether {descriptor.name} committed: {state}")
            if state.get("committed") is not False:
                raise ClusterError(
                    "committed",
                    f"node {descriptor.name} has committed session {sid.hex()}: finish it "
                    "('harbour cluster finish'), never discard it",
                    descriptor.name,
                )

        async def one(descriptor: NodeDescriptor) -> str | None:
            try:
                await self._call(descriptor, {"op": "abort", "session_id": sid, "certificate": certificate})
            except ClusterError as exc:
                if exc.reason == "unknown-session":
                    return None
                raise
            return descriptor.name

        names = await asyncio.gather(*(one(d) for d in nodes))
        return [n for n in names if n is not None]

    # -- key records ----------------------------------------------------------------------

    def save_key(self, key: ClusterKey) -> None:
        save_key(self.state_dir, key)

    def load_key(self, key_id: str) -> ClusterKey:
        return load_key(self.state_dir, key_id)


def assign_parties(
    current: Mapping[int, NodeDescriptor], new_nodes: Sequence[NodeDescriptor]
) -> dict[int, NodeDescriptor]:
    """Party numbers for a new committee: a node that stays keeps its number, a newcomer takes the next free one."""
    by_node = {d.node_id: p for p, d in current.items()}
    taken = set(current)
    roster: dict[int, NodeDescriptor] = {}
    for descriptor in new_nodes:
        party = by_node.get(descriptor.node_id)
        if party is None:
            party = next(i for i in range(1, 256) if i not in taken)
            taken.add(party)
        roster[party] = descriptor
    return roster


def admin_params(
    kind: str,
    *,
    scheme: str = "",
    threshold: int = 0,
    nodes: Sequence[NodeDescriptor] = (),
    key: ClusterKey | None = None,
    dealers: Sequence[int] | None = None,
    org: str = "",
) -> dict[str, str | int]:
    """The ``params`` an admin certificate must carry for the nodes to accept it.

    keygen: the scheme, threshold and committee, and ``org`` for a key of an
    organisation; refresh: nothing beyond the key id; reshare: the new threshold
    and committee, the dealers (by default every member of the key) and the key's
    group key, public-package fingerprint and chain code (a member new to the key
    has only the certificate to check them against). Refresh and reshare of a key
    of an organisation name it too (from the key record).
    """
    if kind == "keygen":
        params: dict[str, str | int] = {
            "scheme": scheme,
            "threshold": threshold,
            "roster": rpc.roster_hash([d.node_id for d in nodes]),
        }
        return params | ({"org": org} if org else {})
    if kind == "refresh":
        return {"org": key.org} if key is not None and key.org else {}
    if kind == "reshare":
        if key is None:
            raise ValueError("reshare params need the key")
        parties = sorted(key.roster) if dealers is None else sorted(dealers)
        reshare: dict[str, str | int] = {
            "threshold": threshold,
            "roster": rpc.roster_hash([d.node_id for d in nodes]),
            "dealers": rpc.roster_hash([key.roster[p].node_id for p in parties]),
            "group_key": key.public.group_public_key.encode().hex(),
            "fingerprint": key.public.fingerprint().hex(),
            "chain_code": key.chain_code.hex(),
        }
        return reshare | ({"org": key.org} if key.org else {})
    raise ValueError(f"no admin params for {kind!r}")


def _certificate_org(certificate: bytes) -> str:
    try:
        org = approval.parse(certificate)[0].params.get("org", "")
    except approval.ApprovalError:
        return ""
    return org if isinstance(org, str) else ""


def _certificate_key_id(certificate: bytes) -> str:
    try:
        return approval.parse(certificate)[0].key_id
    except approval.ApprovalError:
        return ""
