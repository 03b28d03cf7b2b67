"""Keeping signer nodes' governance logs up to date, and gathering their history statements.

A node signs with a key of an organisation only on evidence that cites the head
of the organisation's log the node itself holds, so before such a session the
coordinator brings every signer to the head the service decided at: it asks
each node how far its log goes (``head``) and sends what it lacks (``push``,
in batches). Nothing here is trusted: a node takes an entry only if the
organisation's admin quorum signed it, and answers with the reason if not.

Enrolling an organisation on a node (``enrol``) needs the authority's
certificate naming the genesis hash (kind ``enrol``, params ``{"org": hex}``); one
certificate serves every node, since each spends its nonce in its own ledger.

When the policy has velocity or count limits, each signer's history statement
for the session (``history``) travels to every signer with the start request
(:mod:`harbour.node.orgs.statement` says why).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from harbour.governance.log import SignedEntry
from harbour.governance.state import GovernanceLog
from harbour.node import rpc
from harbour.node.driving import ClusterError, SessionDriver
from harbour.node.identity import NodeDescriptor


class GovernanceDriving(SessionDriver):
    """The organisation requests of a coordinator (a part of :class:`harbour.node.coordinator.Coordinator`).

    It remembers the head it last saw each node at, so signing need not ask a node
    whose log it brought up to date itself: a node that has moved since (restored
    from a copy, or pushed by another coordinator) refuses the session for its head,
    and :meth:`forget_heads` makes the next :meth:`push` ask again.
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._heads: dict[tuple[str, str], bytes] = {}  # (node id, org) -> the head last seen there

    async def enrol(self, nodes: Sequence[NodeDescriptor], genesis: SignedEntry, certificate: bytes) -> dict[str, int]:
        """Enrol the organisation of ``genesis`` on every node; per node name, the entry its log is at.

        ``certificate`` is an ``enrol`` certificate naming ``genesis.hash.hex()`` as
        param ``org``. A node that has the organisation already answers with its head
        and spends nothing.
        """
        request = {"op": "enrol", "genesis": genesis.encode(), "certificate": certificate}
        answers = await asyncio.gather(*(self._call(d, request) for d in nodes))
        return {d.name: _head(a, d)[0] for d, a in zip(nodes, answers, strict=True)}

    async def heads(self, nodes: Sequence[NodeDescriptor], org: str) -> dict[str, tuple[int, bytes]]:
        """Per node name, ``(seq, hash)`` of the last entry of the organisation's log it holds."""
        answers = await asyncio.gather(*(self._call(d, {"op": "head", "org": org}) for d in nodes))
        heads = {d.name: _head(a, d) for d, a in zip(nodes, answers, strict=True)}
        for d in nodes:
            self._heads[(d.node_id, org)] = heads[d.name][1]
        return heads

    def forget_heads(self, nodes: Sequence[NodeDescriptor], org: str) -> None:
        """Ask these nodes for their head again at the next :meth:`push`."""
        for d in nodes:
            self._heads.pop((d.node_id, org), None)

    async def push(self, nodes: Sequence[NodeDescriptor], log: GovernanceLog) -> dict[str, int]:
        """Bring every node's copy of ``log`` to its head; per node name, how many entries it was sent.

        A node this coordinator saw at that head already is not asked again. A node
        whose log holds an entry ``log`` does not (a fork, or a newer log than the
        caller's) is an error: ClusterError("governance").
        """
        org = log.genesis_hash.hex()

        async def one(node: NodeDescriptor) -> int:
            if self._heads.get((node.node_id, org)) == log.head:
                return 0
            for _ in range(3):
                try:
                    return await self._bring(node, log)
                except ClusterError as exc:
                    if exc.reason != "replayed":
                        raise
                    # Another coordinator (or another thread's push) got there first: ask how far it is now.
            return await self._bring(node, log)

        sent = await asyncio.gather(*(one(d) for d in nodes))
        return {d.name: n for d, n in zip(nodes, sent, strict=True)}

    async def _bring(self, node: NodeDescriptor, log: GovernanceLog) -> int:
        """Send ``node`` what it lacks of ``log``, from the head it reports; how many entries were sent."""
        org = log.genesis_hash.hex()
        seq, head = _head(await self._call(node, {"op": "head", "org": org}), node)
        if seq > log.state.seq or log.hashes[seq] != head:
            raise ClusterError(
                "governance",
                f"node {node.name} holds entry {seq} ({head.hex()[:16]}) of organisation {org[:16]}, which this "
                f"log (at entry {log.state.seq}) does not: a fork, or a log newer than the caller's",
                node.name,
            )
        missing = log.since(seq)
        for start in range(0, len(missing), rpc.MAX_PUSH):
            batch = missing[start : start + rpc.MAX_PUSH]
            request = {"op": "push", "org": org, "entries": [e.encode() for e in batch]}
            _head(await self._call(node, request), node)
        self._heads[(node.node_id, org)] = log.head
        return len(missing)

    async def statements(self, nodes: Sequence[NodeDescriptor], org: str, session_id: bytes) -> list[bytes]:
        """Each node's signed history statement for the session ``session_id``."""
        request = {"op": "history", "org": org, "session_id": session_id}
        answers = await asyncio.gather(*(self._call(d, request) for d in nodes))
        out = []
        for descriptor, answer in zip(nodes, answers, strict=True):
            statement = answer.get("statement")
            if type(statement) is not bytes:
                raise ClusterError("bad-response", "malformed answer to history", descriptor.name)
            out.append(statement)
        return out


def _head(answer: dict[str, Any], node: NodeDescriptor) -> tuple[int, bytes]:
    seq, head = answer.get("seq"), answer.get("head")
    if type(seq) is not int or type(head) is not bytes or len(head) != 32:
        raise ClusterError("bad-response", "malformed governance head", node.name)
    return seq, head
