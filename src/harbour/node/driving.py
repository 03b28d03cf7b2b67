"""Driving one session over signer nodes: reaching them, and relaying their sealed messages round by round.

This is the part of the coordinator that is trusted with nothing. It cannot read
a message (each is encrypted under a key only the two nodes of the pair derive,
from ephemeral keys they drop when the session ends), forge one (authenticated
by that key, or signed by its sender) or replay, reorder or drop one without the
recipient noticing (sequence numbers inside the authentication); and no node
acts without an approval certificate the coordinator merely carries. What it
does decide is liveness: which nodes answer, and when to give up.

A session runs as store-and-forward rounds: start every member (each answers with
its signed session hello and any public first-round messages), then, while any
node waits, deliver to each node the messages addressed to it (routed on the
sealed header's ``to``), with the other members' hellos the first time, and
collect what it sends back. A node's refusal or a transport failure aborts the
session on every member.

Nodes are reached over HTTP (``POST /v1/rpc``), or, for a cold node, by files in a
directory (:class:`FileTransport`): the coordinator writes a request file and
waits for the operator to carry back the response file that ``harbour node
offline`` wrote. What a session is for (a key ceremony, a signature) is the
business of the modules built on this one: node/ceremonies.py and
node/coordinator.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from harbour.node import rpc
from harbour.node.identity import NodeDescriptor
from harbour.node.sealed import SealedError, read_header
from harbour.node.status import NodeStatus, StatusError, new_challenge, verified
from harbour.node.transport import FileTransport, HttpTransport, Transport

DEFAULT_TIMEOUT = 30.0
PING_TIMEOUT = 2.0
FRESH = 5.0
"""Seconds a node that answered counts as live without another ping."""

Relay = Callable[[str, list[bytes]], list[bytes]]
"""``(recipient node id, messages about to be delivered) -> messages to deliver``: a test hook."""


class ClusterError(RuntimeError):
    """A session failed; ``reason`` is the node's word for it (or ``unreachable``, ``timeout``...)."""

    def __init__(self, reason: str, message: str, node: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.node = node


@dataclass
class _Member:
    party: int
    descriptor: NodeDescriptor
    done: bool = False
    result: dict[str, Any] | None = None
    inbox: list[bytes] = field(default_factory=list)
    hello: bytes = b""
    greeted: bool = False
    """Whether the other members' hellos were delivered to it."""


class SessionDriver:
    """Reaches nodes and drives sessions on them; use as ``async with ...`` so its connections close."""

    def __init__(
        self,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        offline: Mapping[str, Path] | None = None,
        relay: Relay | None = None,
        transports: Mapping[str, Transport] | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.timeout = timeout
        self.tls = tls
        """The client context ``https://`` nodes are reached with (:mod:`harbour.node.tls`)."""
        self.offline = {k: Path(v) for k, v in (offline or {}).items()}
        self.relay = relay
        self.transports: dict[str, Transport] = dict(transports or {})
        self._seen: dict[str, float] = {}
        self._http: dict[str, HttpTransport] = {}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        http, self._http = self._http, {}
        for transport in http.values():
            await transport.aclose()

    # -- transport ------------------------------------------------------------------------

    def _transport(self, node: NodeDescriptor) -> Transport:
        if node.node_id in self.transports:
            return self.transports[node.node_id]
        for key in (node.name, node.node_id):
            if key in self.offline:
                return FileTransport(self.offline[key])
        transport = self._http.get(node.node_id)
        if transport is None:
            transport = self._http[node.node_id] = HttpTransport(node.url, self.tls)
        return transport

    async def _call(
        self, node: NodeDescriptor, request: Mapping[str, Any], timeout: float | None = None
    ) -> dict[str, Any]:
        data = rpc.encode(request)
        try:
            answer = await self._transport(node).call(data, self.timeout if timeout is None else timeout)
            self._seen[node.node_id] = time.monotonic()
        except (OSError, TimeoutError) as exc:
            self._seen.pop(node.node_id, None)
            raise ClusterError(
                "unreachable", f"node {node.name} ({node.url}) did not answer: {exc!r}", node.name
            ) from exc
        try:
            return rpc.parse_response(answer, node.name)
        except rpc.NodeError as exc:
            raise ClusterError(exc.reason, str(exc), node.name) from exc
        except rpc.RequestError as exc:
            raise ClusterError("bad-response", str(exc), node.name) from exc

    async def describe(self, node: NodeDescriptor, timeout: float = PING_TIMEOUT) -> NodeDescriptor:
        """Ask a node who it is; ClusterError unless it is the node of the descriptor."""
        obj = await self._call(node, {"op": "describe"}, timeout)
        text = obj.get("descriptor")
        if not isinstance(text, str) or NodeDescriptor.from_json(text).node_id != node.node_id:
            raise ClusterError(
                "impostor", f"the node at {node.url} is not {node.name} ({node.node_id[:16]})", node.name
            )
        return node

    async def live(self, nodes: Iterable[NodeDescriptor], timeout: float = PING_TIMEOUT) -> set[str]:
        """Node ids of the nodes that answer ``describe`` in time.

        A node that answered anything in the last :data:`FRESH` seconds counts as
        live without a new ping; one that failed to answer is pinged again.
        """
        nodes = list(nodes)
        now = time.monotonic()
        fresh = {n.node_id for n in nodes if now - self._seen.get(n.node_id, -FRESH) < FRESH}
        ask = [n for n in nodes if n.node_id not in fresh]
        answers = await asyncio.gather(*(self.describe(n, timeout) for n in ask), return_exceptions=True)
        return fresh | {n.node_id for n, a in zip(ask, answers, strict=True) if isinstance(a, NodeDescriptor)}

    async def status(self, node: NodeDescriptor, timeout: float = PING_TIMEOUT) -> NodeStatus:
        """The node's status, signed by its identity key over a fresh challenge (:mod:`harbour.node.status`)."""
        challenge = new_challenge()
        answer = await self._call(node, {"op": "status", "challenge": challenge}, timeout)
        try:
            return verified(answer, node, challenge)
        except StatusError as exc:
            raise ClusterError("bad-status", str(exc), node.name) from exc

    async def statuses(
        self, nodes: Iterable[NodeDescriptor], timeout: float = PING_TIMEOUT
    ) -> dict[str, NodeStatus | ClusterError]:
        """Every node's status (or why there is none), by node id, asked all at once."""
        nodes = list(nodes)
        answers = await asyncio.gather(*(self.status(n, timeout) for n in nodes), return_exceptions=True)
        out: dict[str, NodeStatus | ClusterError] = {}
        for node, answer in zip(nodes, answers, strict=True):
            if isinstance(answer, NodeStatus | ClusterError):
                out[node.node_id] = answer
            elif isinstance(answer, Exception):
                out[node.node_id] = ClusterError("unreachable", f"node {node.name}: {answer!r}", node.name)
            else:
                raise answer
        return out

    # -- sessions -------------------------------------------------------------------------

    async def _run(
        self,
        kind: str,
        certificate: bytes,
        members: Mapping[int, NodeDescriptor],
        args: Mapping[int, dict[str, Any]],
        session_id: bytes | None = None,
        on_started: Callable[[], None] | None = None,
    ) -> tuple[bytes, dict[int, dict[str, Any]]]:
        """One session on ``members`` (party -> node); each node's result, or ClusterError.

        ``on_started`` is called once every member has accepted its ``start``.
        """
        sid = session_id or secrets.token_bytes(32)
        by_id = {d.node_id: _Member(p, d) for p, d in members.items()}
        deadline = time.monotonic() + self.timeout

        def route(sender: _Member, out: list[bytes]) -> None:
            for message in out:
                try:
                    to = read_header(message).to_node
                except SealedError as exc:
                    raise ClusterError(
                        "bad-message", f"node {sender.descriptor.name} sent a malformed message"
                    ) from exc
                if to not in by_id:
                    raise ClusterError("bad-message", f"node {sender.descriptor.name} sent a message to a non-member")
                by_id[to].inbox.append(message)

        async def step(member: _Member, request: dict[str, Any]) -> None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ClusterError("timeout", f"session timed out after {self.timeout:.0f} s")
            obj = await self._call(member.descriptor, request, left)
            try:
                out, done, result = rpc.parse_round(obj, member.descriptor.name)
                if request["op"] == "start":
                    member.hello = rpc.parse_hello(obj, member.descriptor.name)
            except rpc.RequestError as exc:
                raise ClusterError("bad-response", str(exc), member.descriptor.name) from exc
            route(member, out)
            if done:
                member.done, member.result = True, result

        try:
            await run_all(
                step(
                    m,
                    {"op": "start", "session_id": sid, "kind": kind, "certificate": certificate, "args": args[m.party]},
                )
                for m in by_id.values()
            )
            if on_started is not None:
                on_started()
            while not all(m.done for m in by_id.values()):
                batch: list[tuple[_Member, list[bytes], list[bytes]]] = []
                for node_id, member in by_id.items():
                    hellos: list[bytes] = []
                    if not member.greeted:
                        hellos = [m.hello for m in by_id.values() if m is not member]
                        member.greeted = True
                    if member.inbox or hellos:
                        messages, member.inbox = member.inbox, []
                        if self.relay is not None:
                            messages = self.relay(node_id, messages)
                        batch.append((member, hellos, messages))
                if not batch:
                    waiting = [m.descriptor.name for m in by_id.values() if not m.done]
                    raise ClusterError("stalled", f"session stalled: {', '.join(waiting)} wait for messages")
                await run_all(
                    step(m, {"op": "deliver", "session_id": sid, "hellos": hellos, "messages": msgs})
                    for m, hellos, msgs in batch
                    if msgs or hellos or not m.done
                )
        except BaseException:
            await self._abort(sid, by_id.values())
            raise
        return sid, {m.party: m.result or {} for m in by_id.values()}

    async def _abort(self, sid: bytes, members: Iterable[_Member]) -> None:
        async def one(member: _Member) -> None:
            with contextlib.suppress(ClusterError):  # already gone, or it aborted on its own
                request = {"op": "abort", "session_id": sid, "certificate": b""}
                await self._call(member.descriptor, request, PING_TIMEOUT)

        await asyncio.gather(*(one(m) for m in members), return_exceptions=True)


async def run_all(coroutines: Iterable[Any]) -> None:
    """Run concurrently; the first failure cancels the rest and propagates."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def run_sync(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def ask_statuses(
    nodes: Iterable[NodeDescriptor], timeout: float = PING_TIMEOUT, tls: ssl.SSLContext | None = None
) -> dict[str, NodeStatus | ClusterError]:
    """:meth:`SessionDriver.statuses` from synchronous code (a command line); ``tls`` for ``https://`` nodes."""

    async def ask() -> dict[str, NodeStatus | ClusterError]:
        async with SessionDriver(timeout=timeout, tls=tls) as driver:
            return await driver.statuses(nodes, timeout)

    result: dict[str, NodeStatus | ClusterError] = run_sync(ask())
    return result
