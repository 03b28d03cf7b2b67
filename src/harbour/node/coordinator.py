"""The coordinator: starts sessions on signer nodes and relays their sealed messages.

It is trusted with nothing. It cannot read a message (each is encrypted under a
key only the two nodes of the pair derive, from ephemeral keys they drop when the
session ends), forge one (authenticated by that key, or signed by its sender) or
replay, reorder or drop one without the recipient noticing (sequence numbers
inside the authentication); and no node acts without an approval certificate the
coordinator merely carries. What it does decide is liveness: which nodes to ask,
and when to give up.

A session runs as store-and-forward rounds: start every member (each answers with
its signed session hello and any public first-round messages), then, while any
node waits, deliver to each node the messages addressed to it (routed on the
sealed header's ``to``), with the other members' hellos the first time, and
collect what it sends back. A node's refusal or a transport failure aborts the
session on every member.

Signing picks a live t-subset: nodes that answer ``describe`` within a short time,
first in party order. Admin sessions (keygen, refresh, reshare) end with a commit:
the coordinator passes every new member's signed acknowledgement of the new key's
fingerprint to every member, and only then do nodes replace their shares.

Nodes are reached over HTTP (``POST /v1/rpc``), or, for a cold node, by files in a
directory (:class:`FileTransport`): the coordinator writes a request file and
waits for the operator to carry back the response file that ``harbour node
offline`` wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harbour.crypto import ecdsa
from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.group import Point
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc import hd
from harbour.mpc.ciphersuite import suite_by_name
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.frost_party import signing_public_key
from harbour.mpc.keyshare import PublicKeyPackage
from harbour.node import approval, rpc
from harbour.node.identity import NodeDescriptor
from harbour.node.rotation import Rotation, rotate_roster
from harbour.node.sealed import SealedError, read_header
from harbour.node.transport import FileTransport, HttpTransport, Transport
from harbour.util.files import write_atomic

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
class ClusterKey:
    """What the coordinator knows of a key: public data and which node is which party."""

    key_id: str
    public: PublicKeyPackage
    roster: dict[int, NodeDescriptor]
    chain_code: bytes = b""

    @property
    def scheme(self) -> str:
        return self.public.scheme

    @property
    def threshold(self) -> int:
        return self.public.threshold

    def to_json(self) -> str:
        return json.dumps(
            {
                "key_id": self.key_id,
                "public": rpc.encode_public(self.public).hex(),
                "roster": {str(p): json.loads(d.to_json()) for p, d in sorted(self.roster.items())},
                "chain_code": self.chain_code.hex(),
            },
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> ClusterKey:
        try:
            obj = json.loads(text)
            roster = {int(p): NodeDescriptor.from_json(json.dumps(d)) for p, d in obj["roster"].items()}
            public = rpc.decode_public(bytes.fromhex(obj["public"]))
            return cls(rpc.check_key_id(obj["key_id"]), public, roster, bytes.fromhex(obj["chain_code"]))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ClusterError("bad-key-file", f"key file is malformed: {exc}") from exc


@dataclass
class SignOutcome:
    key: ClusterKey
    signers: list[int]
    message: bytes
    path: str
    signature: bytes | EcdsaSignature
    group_public_key: Point
    """The key the signature verifies under (the child key at ``path``)."""


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


class Coordinator:
    """Drives sessions; use as ``async with Coordinator(...) as c``."""

    def __init__(
        self,
        *,
        state_dir: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        offline: Mapping[str, Path] | None = None,
        relay: Relay | None = None,
        transports: Mapping[str, Transport] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.timeout = timeout
        self.offline = {k: Path(v) for k, v in (offline or {}).items()}
        self.relay = relay
        self.transports: dict[str, Transport] = dict(transports or {})
        self._seen: dict[str, float] = {}
        self._busy: dict[str, int] = {}  # node id -> signing sessions this coordinator has running on it
        self._http: dict[str, HttpTransport] = {}

    async def __aenter__(self) -> Coordinator:
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
            transport = self._http[node.node_id] = HttpTransport(node.url)
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

    # -- sessions -------------------------------------------------------------------------

    async def _run(
        self,
        kind: str,
        certificate: bytes,
        members: Mapping[int, NodeDescriptor],
        args: Mapping[int, dict[str, Any]],
        session_id: bytes | None = None,
    ) -> tuple[bytes, dict[int, dict[str, Any]]]:
        """One session on ``members`` (party -> node); each node's result, or ClusterError."""
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
            await _all(
                step(
                    m,
                    {"op": "start", "session_id": sid, "kind": kind, "certificate": certificate, "args": args[m.party]},
                )
                for m in by_id.values()
            )
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
                await _all(
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

    # -- operations -------------------------------------------------------------------------

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
        """A new key on ``nodes`` (party i is ``nodes[i-1]``); named by the certificate, or by the session."""
        sid = session_id or secrets.token_bytes(32)
        name = key_id or _certificate_key_id(certificate) or f"key-{sid[:8].hex()}"
        roster = {i: d for i, d in enumerate(nodes, start=1)}
        args = {"key_id": name, "scheme": scheme, "threshold": threshold, "roster": rpc.roster_value(roster)}
        _, results = await self._run("keygen", certificate, roster, {p: args for p in roster}, sid)
        return await self._commit(sid, name, roster, results)

    async def refresh(self, key: ClusterKey, certificate: bytes) -> ClusterKey:
        """New shares of the same key on the same nodes (every node must be up)."""
        args = {"key_id": key.key_id}
        sid, results = await self._run("refresh", certificate, key.roster, {p: args for p in key.roster})
        return await self._commit(sid, key.key_id, key.roster, results)

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
        args = {
            "key_id": key.key_id,
            "threshold": new_threshold,
            "dealers": rpc.roster_value(dealer_roster),
            "roster": rpc.roster_value(new_roster),
            "public": rpc.encode_public(key.public),
            "chain_code": key.chain_code,
        }
        sid, results = await self._run("reshare", certificate, members, {p: args for p in members})
        new_results = {p: r for p, r in results.items() if p in new_roster}
        new_key = await self._commit(
            sid,
            key.key_id,
            new_roster,
            new_results,
            also=[dealer_roster[p] for p in dealer_roster if p not in new_roster],
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
            await _all(self._call(d, {**request, "receipts": receipts}) for d in also)
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
        key = ClusterKey(key_id, public, dict(roster), codes.pop() if len(codes) == 1 else b"")
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
        return await self._commit(sid, name, roster, results, also=leaving)

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
                raise ClusterError(
                    "bad-request", f"the certificate names signers {named}, not {sorted(signers)}"
                )
            chosen = named or (sorted(signers) if signers is not None else await self.pick_signers(key))
        members = {p: key.roster[p] for p in chosen}
        args = {"key_id": key.key_id, "path": path, "message": message, "signers": chosen}
        for d in members.values():
            self._busy[d.node_id] = self._busy.get(d.node_id, 0) + 1
        try:
            _, results = await self._run("sign", certificate, members, {p: args for p in members})
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
        signature: bytes | EcdsaSignature = raw
        if key.scheme == ECDSA_SCHEME:
            rid = next(iter(results.values())).get("recovery_id")
            if type(rid) is not int or not 0 <= rid <= 3:
                raise ClusterError("bad-result", "the ECDSA result has no valid recovery id")
            signature = EcdsaSignature.from_bytes(raw, rid)
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
        if self.state_dir is not None:
            for path in sorted((self.state_dir / "keys").glob("*.json")):
                key = self.load_key(path.stem)
                roster = rotate_roster(key.roster, rotation)
                if roster is not None:
                    self.save_key(ClusterKey(key.key_id, key.public, roster, key.chain_code))
        out: dict[str, list[str]] = {}
        for descriptor, answer in zip(nodes, answers, strict=True):
            assert isinstance(answer, dict)
            keys = answer.get("keys")
            if type(keys) is not list or not all(isinstance(k, str) for k in keys):
                raise ClusterError("bad-response", "malformed answer to rotate", descriptor.name)
            out[descriptor.name] = keys
        return out

    # -- key records ----------------------------------------------------------------------

    def save_key(self, key: ClusterKey) -> None:
        if self.state_dir is None:
            return
        directory = self.state_dir / "keys"
        directory.mkdir(parents=True, exist_ok=True)
        write_atomic(directory / f"{key.key_id}.json", (key.to_json() + "\n").encode(), mode=0o644)

    def load_key(self, key_id: str) -> ClusterKey:
        rpc.check_key_id(key_id)
        if self.state_dir is None:
            raise ClusterError("unknown-key", "no coordinator state directory is configured")
        path = self.state_dir / "keys" / f"{key_id}.json"
        try:
            return ClusterKey.from_json(path.read_text())
        except OSError as exc:
            raise ClusterError("unknown-key", f"no record of key {key_id} in {self.state_dir}") from exc


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


def verify_signature(scheme: str, group_key: Point, message: bytes, signature: bytes | EcdsaSignature) -> bool:
    if scheme == ECDSA_SCHEME:
        if not isinstance(signature, EcdsaSignature) or not isinstance(group_key, Secp256k1Point):
            return False
        if not ecdsa.verify(group_key, message, signature):
            return False
        return ecdsa.recover(message, signature).encode() == group_key.encode()
    if isinstance(signature, EcdsaSignature):
        return False
    suite = suite_by_name(scheme)
    return bool(suite.verify(signing_public_key(suite, group_key), message, signature))


def admin_params(
    kind: str,
    *,
    scheme: str = "",
    threshold: int = 0,
    nodes: Sequence[NodeDescriptor] = (),
    key: ClusterKey | None = None,
    dealers: Sequence[int] | None = None,
) -> dict[str, str | int]:
    """The ``params`` an admin certificate must carry for the nodes to accept it.

    keygen: the scheme, threshold and committee; refresh: nothing beyond the key id;
    reshare: the new threshold and committee, the dealers (by default every member of
    the key) and the key's group key, public-package fingerprint and chain code (a
    member new to the key has only the certificate to check them against).
    """
    if kind == "keygen":
        return {"scheme": scheme, "threshold": threshold, "roster": rpc.roster_hash([d.node_id for d in nodes])}
    if kind == "refresh":
        return {}
    if kind == "reshare":
        if key is None:
            raise ValueError("reshare params need the key")
        parties = sorted(key.roster) if dealers is None else sorted(dealers)
        return {
            "threshold": threshold,
            "roster": rpc.roster_hash([d.node_id for d in nodes]),
            "dealers": rpc.roster_hash([key.roster[p].node_id for p in parties]),
            "group_key": key.public.group_public_key.encode().hex(),
            "fingerprint": key.public.fingerprint().hex(),
            "chain_code": key.chain_code.hex(),
        }
    raise ValueError(f"no admin params for {kind!r}")


def _certificate_key_id(certificate: bytes) -> str:
    try:
        return approval.parse(certificate)[0].key_id
    except approval.ApprovalError:
        return ""


def _certificate_signers(certificate: bytes) -> list[int]:
    """The signers a sign certificate names (empty if it is not one): the nodes accept no others."""
    try:
        return list(approval.parse(certificate)[0].signers)
    except approval.ApprovalError:
        return []


async def _all(coroutines: Iterable[Any]) -> None:
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


__all__ = [
    "ClusterError",
    "ClusterKey",
    "Coordinator",
    "FileTransport",
    "HttpTransport",
    "SignOutcome",
    "admin_params",
    "assign_parties",
]
