"""Forward secrecy of the signer nodes, end to end: the security review's attack, run on real nodes.

Before the session handshakes (:mod:`harbour.node.handshake`), every sealed message
was encrypted to the recipient's long-term key, which a refresh never rotated. The
coordinator sees every byte. So an attacker who steals node 1 (a copy of its
directory and its passphrase) before a refresh, records the refresh at the
coordinator and steals node 2 after it, could open node 1's refresh messages,
rebuild node 1's new share from its old one and combine it with node 2's new share:
the group key, although it never held two nodes at once.

Here three (four for the reshare) nodes run in this process behind a coordinator
that records every request, response and relayed message. The attacker's best
effort (:func:`open_what_it_can`, then :func:`rebuild_refreshed_share` or
:func:`rebuild_reshared_share`, then :func:`combine`) gets everything it holds:
node 1's store from before, node 2's from after, every hello and every message.
It must open nothing and rebuild no key. Each control test runs the very same code
with one thing more, node 1's session keys as a thief inside node 1 *during* the
session would find them (a thief no protocol can stop), and rebuilds the group
secret: the attack code works, and the ephemeral keys are what stops it.

Each protocol is run and recorded once per module; its tests differ only in what
the attacker is given.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from harbour.crypto.shamir import interpolate_at_zero, lagrange_coefficient
from harbour.mpc.envelope import Envelope
from harbour.mpc.keyshare import KeyShare
from harbour.node import approval, rpc
from harbour.node.config import STORE_DIR
from harbour.node.coordinator import ClusterKey, Coordinator, admin_params
from harbour.node.handshake import HandshakeError, SessionKeys
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.sealed import KeyLookup, ReplayGuard, SealedError, SealedHeader, open_sealed, read_header
from harbour.node.service import NodeService
from harbour.node.staging import Refusal, read_key
from harbour.node.store import SecretStore
from helpers import documented_pair_key
from test_node_service import PASS, Local, keygen, make_nodes

SCHEME = "frost-secp256k1"
CURVE25519_P = 2**255 - 19


# -- what the attacker holds -----------------------------------------------------------------------


@dataclass
class Stolen:
    """One node as a thief has it: a copy of its directory opened with the passphrase."""

    identity: NodeIdentity
    objects: dict[str, bytes]
    """Every object of its secret store, decrypted."""
    share: KeyShare | None
    """Its share of the key, if it holds one."""


def steal(node: NodeService, key_id: str, into: Path) -> Stolen:
    """Copy the node's directory and read all of its store, as someone with the copy and the passphrase would."""
    shutil.copytree(node.directory, into)
    store = SecretStore.open(into / STORE_DIR, passphrase=PASS)
    try:
        objects = {name: store.get(name) for name in store.names()}
        share: KeyShare | None = None
        with contextlib.suppress(Refusal):  # a member that left the key has none
            share = read_key(store, key_id)[0]
        return Stolen(NodeIdentity.from_bytes(store.get("identity")), objects, share)
    finally:
        store.close()


@dataclass
class Wire:
    """Everything the coordinator saw: every request with its response, and every message it relayed."""

    exchanges: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    """(node id, request, response) in the order they happened."""
    relayed: list[bytes] = field(default_factory=list)

    def hellos(self) -> list[bytes]:
        """Every session hello: in the ``start`` responses and in the ``deliver`` requests."""
        found: dict[bytes, None] = {}
        for _, request, response in self.exchanges:
            asked, answered = cbor2.loads(request), cbor2.loads(response)
            if asked.get("op") == "start" and "hello" in answered:
                found[answered["hello"]] = None
            if asked.get("op") == "deliver":
                found.update(dict.fromkeys(asked["hellos"]))
        return list(found)

    def start_args(self, node_id: str) -> dict[str, Any]:
        """The arguments the coordinator started ``node_id``'s session with."""
        for to, request, _ in self.exchanges:
            asked = cbor2.loads(request)
            if to == node_id and asked.get("op") == "start":
                return dict(asked["args"])
        raise LookupError(node_id)


class Tap:
    """A transport to an in-process node that records each request and response on the wire."""

    def __init__(self, node: NodeService, wire: Wire) -> None:
        self.local = Local(node)
        self.node_id = node.identity.node_id
        self.wire = wire

    async def call(self, request: bytes, timeout: float) -> bytes:
        response = await self.local.call(request, timeout)
        self.wire.exchanges.append((self.node_id, request, response))
        return response


class Insider:
    """A thief inside node 1 while the session runs: it copies the session keys out of the node's memory.

    Only the control tests give the attacker what this finds. Holding a node *during*
    a session is holding it across the refresh, which no protocol can defend against.
    """

    def __init__(self, node: NodeService) -> None:
        self.node = node
        self.state: dict[str, Any] | None = None
        self.keys: SessionKeys | None = None
        """The node's own SessionKeys object (not a copy), to see what the node holds once the session ends."""

    def look(self) -> None:
        for session in self.node.sessions.values():
            if session.keys is not None and session.keys.live:
                self.state = session.keys.to_cbor()
                self.keys = session.keys


# -- the attack ----------------------------------------------------------------------------------------


def secrets_in(value: object, depth: int = 0) -> Iterator[bytes]:
    """Every 32-byte string in a stored object, looking inside nested CBOR (identity seeds, shares, keys)."""
    if isinstance(value, bytes):
        if len(value) == 32:
            yield value
        if depth < 4:
            try:
                inner = cbor2.loads(value)
            except Exception:  # most byte strings are not CBOR
                return
            if not isinstance(inner, bytes):
                yield from secrets_in(inner, depth + 1)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from secrets_in(k, depth)
            yield from secrets_in(v, depth)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from secrets_in(v, depth)


def montgomery_u(ed25519_public: bytes) -> bytes:
    """An Ed25519 public key as the X25519 public key of the same secret: u = (1 + y) / (1 - y) mod p."""
    y = int.from_bytes(ed25519_public, "little") & ((1 << 255) - 1)
    return ((1 + y) * pow(1 - y, -1, CURVE25519_P) % CURVE25519_P).to_bytes(32, "little")


def hello_body(hello: bytes) -> dict[str, Any]:
    body: dict[str, Any] = cbor2.loads(cbor2.loads(hello)["hello"])
    return body


def documented_key(
    shared: bytes, body_a: dict[str, Any], body_b: dict[str, Any], phase: bytes, sender: str, recipient: str
) -> bytes:
    """The pair key of one phase and direction, as handshake.py's docstring derives it from an X25519 result."""
    return documented_pair_key(shared, body_a, body_b, phase, sender, recipient)


def guard_before(header: SealedHeader) -> ReplayGuard:
    """The recipient's replay state just before this message came, so that opening gets as far as the key."""
    guard = ReplayGuard()
    for seq in range(header.seq):
        guard.accept(header.session_id, header.from_node, seq)
    return guard


def always(key: bytes) -> KeyLookup:
    """A key lookup that answers ``key`` for every phase and direction: one guess tried on a message."""
    return lambda phase, sender, recipient: key


def secret_messages_of(wire: Wire, node_id: str) -> list[bytes]:
    """The encrypted messages the coordinator relayed to or from ``node_id`` (signed ones are public anyway)."""
    return [
        data
        for data in wire.relayed
        if (h := read_header(data)).mode == "sealed" and node_id in (h.from_node, h.to_node)
    ]


def open_what_it_can(
    stolen: Sequence[Stolen],
    wire: Wire,
    descriptors: Sequence[NodeDescriptor],
    victim: str,
    insider_states: Sequence[dict[str, Any]] = (),
) -> list[Envelope]:
    """Every recorded secret message to or from ``victim`` that the attacker opens with :func:`open_sealed`.

    Keys tried on each message (from ``sender`` to ``recipient`` in phase ``phase``):

    - every 32-byte string in every stolen store, as it is (a key kept long-term);
    - X25519 of every such string, and of its SHA-512 half (the Ed25519 seed's scalar,
      the usual Ed25519-to-X25519 conversion), with every public key there is: each
      hello's ephemeral key and each node's identity key mapped to Curve25519; the
      result as it is, and through the documented derivation with the pair's hellos;
    - the node's own code: a ``SessionKeys`` built from each stolen identity that
      accepts every recorded hello, and one rebuilt from each ``insider_states``
      (``SessionKeys.to_cbor()`` copied out of a node during the session).
    """
    bodies = {str(body["from"]): body for body in map(hello_body, wire.hellos())}
    roster = {node: int(body["party"]) for node, body in bodies.items()}
    session_id = next(iter(bodies.values()))["session_id"]
    known = {d.node_id: d for d in descriptors}

    found = {s for thief in stolen for obj in thief.objects.values() for s in secrets_in(obj)}
    found |= {state["secret"] for state in insider_states}
    privates = [X25519PrivateKey.from_private_bytes(s) for s in found]
    privates += [X25519PrivateKey.from_private_bytes(hashlib.sha512(s).digest()[:32]) for s in found]
    publics = [body["epk"] for body in bodies.values()] + [montgomery_u(d.sign_pk) for d in descriptors]
    shared: set[bytes] = set()
    for private in privates:
        for public in publics:
            with contextlib.suppress(ValueError):  # a low-order result
                shared.add(private.exchange(X25519PublicKey.from_public_bytes(public)))

    replicas = []
    for thief in stolen:
        if thief.identity.node_id not in roster:
            continue
        peers = {node: d for node, d in known.items() if node in roster and node != thief.identity.node_id}
        made = [SessionKeys(thief.identity, session_id, roster)]
        for state in insider_states:
            with contextlib.suppress(ValueError):  # another node's state
                made.append(SessionKeys.from_cbor(state, thief.identity, session_id, roster, peers))
        for replica in made:
            for hello in wire.hellos():
                with contextlib.suppress(HandshakeError):  # the node's real hello is not the replica's own
                    replica.accept(hello, known_senders=peers)
        replicas += made

    opened = []
    for data in secret_messages_of(wire, victim):
        h = read_header(data)
        pair = (bodies[h.from_node], bodies[h.to_node])
        candidates = [*found, *shared]
        candidates += [documented_key(s, *pair, h.session_id, h.from_node, h.to_node) for s in shared]
        candidates += [k for r in replicas if (k := r.key(h.session_id, h.from_node, h.to_node)) is not None]
        for key in dict.fromkeys(candidates):
            try:
                envelope = open_sealed(
                    h.to_node,
                    data,
                    known_senders=known,
                    rosters={h.session_id: roster},
                    guard=guard_before(h),
                    keys=always(key),
                    public=lambda phase, protocol, rnd: False,
                )
            except SealedError:
                continue
            opened.append(envelope)
            break
    return opened


def round_shares(
    opened: Sequence[Envelope], protocol: str, rnd: int, share: KeyShare
) -> tuple[dict[int, int], dict[int, int]]:
    """The ``share`` scalars of one round's opened messages: (received by the victim, by sender; sent, by recipient)."""
    incoming: dict[int, int] = {}
    outgoing: dict[int, int] = {}
    for env in opened:
        if env.protocol != protocol or env.round != rnd:
            continue
        value = share.group.decode_scalar(cbor2.loads(env.payload)["share"])
        if env.sender == share.identifier:
            assert env.recipient is not None
            outgoing[env.recipient] = value
        elif env.recipient == share.identifier:
            incoming[env.sender] = value
    return incoming, outgoing


def rebuild_refreshed_share(old: KeyShare, opened: Sequence[Envelope]) -> int | None:
    """Node 1's share after a refresh, from its old share and its opened round-two messages; None if short.

    The refresh (mpc/refresh.py; Herzberg et al. 1995, section 3): party ``i`` deals
    ``δ_i`` of degree ``t - 1`` with ``δ_i(0) = 0`` and sends ``δ_i(j)`` to party ``j``
    in round two; party ``j``'s new share is ``x'_j = x_j + Σ_i δ_i(j)``. Node 1 keeps
    ``δ_1(1)`` to itself, but with ``t = 2``, ``δ_1(x) = a·x``, so any ``δ_1(k)`` it sent
    gives ``δ_1(1) = δ_1(k) / k``; the others' ``δ_j(1)`` are what it received.
    """
    if old.threshold != 2:
        raise ValueError("this attack is written for degree-one polynomials (t = 2)")
    order = old.group.order
    incoming, outgoing = round_shares(opened, f"refresh/{old.scheme}", 2, old)
    if set(incoming) != set(old.parties) - {old.identifier} or not outgoing:
        return None
    k, delta_1_k = min(outgoing.items())
    delta_1_1 = delta_1_k * pow(k, -1, order) % order
    return (old.secret_share + delta_1_1 + sum(incoming.values())) % order


def rebuild_reshared_share(old: KeyShare, dealers: Sequence[int], opened: Sequence[Envelope]) -> int | None:
    """Node 1's share after a reshare in which it deals and stays, from its old share and opened dealings.

    The reshare (mpc/reshare.py; Wong, Wang and Wing 2002, section 4): dealer ``i`` in
    ``D`` deals ``g_i`` of degree ``t' - 1`` with ``g_i(0) = w_i = λ_i(D)·x_i`` and sends
    ``g_i(j)`` to each new party ``j`` in round one; ``x'_j = Σ_{i∈D} g_i(j)``. Node 1
    keeps ``g_1(1)``, but with ``t' = 2``, ``g_1(x) = g_1(0) + b·x``, so its old share
    gives ``g_1(0)`` and any ``g_1(k)`` it sent gives ``g_1(1) = g_1(0) + (g_1(k) - g_1(0)) / k``;
    the other dealers' ``g_j(1)`` are what it received.
    """
    order = old.group.order
    incoming, outgoing = round_shares(opened, f"reshare/{old.scheme}", 1, old)
    if set(incoming) != set(dealers) - {old.identifier} or not outgoing:
        return None
    g_1_0 = lagrange_coefficient(list(dealers), old.identifier, order) * old.secret_share % order
    k, g_1_k = min(outgoing.items())
    g_1_1 = (g_1_0 + (g_1_k - g_1_0) * pow(k, -1, order)) % order
    return (g_1_1 + sum(incoming.values())) % order


def combine(share_1: int, other: KeyShare, party_1: int = 1) -> int | None:
    """The group secret from two shares by Lagrange interpolation at 0, if ``x·G`` is the group key."""
    group = other.group
    x = interpolate_at_zero({party_1: share_1, other.identifier: other.secret_share}, group.order)
    return x if x and group.base_mul(x) == other.group_public_key else None


@dataclass
class Loot:
    opened: list[Envelope]
    """The recorded secret messages to or from node 1 that the attacker opened."""
    share_1: int | None
    """Node 1's new share, if the attacker rebuilt it."""
    group_secret: int | None


# -- one recorded session per protocol ----------------------------------------------------------------


@dataclass
class RecordedSession:
    kind: str
    nodes: list[NodeService]
    descriptors: list[NodeDescriptor]
    key: ClusterKey
    """The key before the session."""
    node_1_before: Stolen
    node_2_after: Stolen
    wire: Wire
    insider: Insider

    @property
    def node_1(self) -> str:
        return self.descriptors[0].node_id

    def attack(self, *, with_node_1s_session_keys: bool = False) -> Loot:
        """The attacker's best effort with node 1 stolen before, node 2 after, and the recording."""
        states = [self.insider.state] if with_node_1s_session_keys and self.insider.state is not None else []
        opened = open_what_it_can(
            [self.node_1_before, self.node_2_after], self.wire, self.descriptors, self.node_1, states
        )
        old = self.node_1_before.share
        assert old is not None
        if self.kind == "refresh":
            share_1 = rebuild_refreshed_share(old, opened)
        else:
            dealers = sorted(rpc.parse_roster(self.wire.start_args(self.node_1)["dealers"]))
            share_1 = rebuild_reshared_share(old, dealers, opened)
        new_2 = self.node_2_after.share
        assert new_2 is not None
        return Loot(opened, share_1, None if share_1 is None else combine(share_1, new_2, old.identifier))


def record(
    kind: str,
    root: Path,
    count: int,
    run: Callable[[Coordinator, approval.AuthorityKey, ClusterKey, list[NodeDescriptor]], Any],
) -> Iterator[RecordedSession]:
    """Make the key on nodes 1..3, steal node 1, run the session recorded, commit, steal node 2."""
    authority, nodes, descriptors, _ = make_nodes(root, count)
    try:
        key = keygen(authority, nodes[:3], descriptors[:3], SCHEME)
        node_1_before = steal(nodes[0], key.key_id, root / "stolen-node-1-before")
        wire, insider = Wire(), Insider(nodes[0])

        def relay(recipient: str, messages: list[bytes]) -> list[bytes]:
            wire.relayed.extend(messages)
            insider.look()
            return messages

        async def go() -> None:
            transports = {d.node_id: Tap(n, wire) for d, n in zip(descriptors, nodes, strict=True)}
            async with Coordinator(transports=transports, relay=relay) as co:
                await run(co, authority, key, descriptors)

        asyncio.run(go())
        node_2_after = steal(nodes[1], key.key_id, root / "stolen-node-2-after")
        yield RecordedSession(kind, nodes, descriptors, key, node_1_before, node_2_after, wire, insider)
    finally:
        for node in nodes:
            node.close()


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedSession]:
    """A 2-of-3 FROST key on nodes 1, 2 and 3, refreshed once, the refresh recorded at the coordinator."""

    async def refresh(co: Coordinator, authority: approval.AuthorityKey, key: ClusterKey, _: Any) -> None:
        cert = approval.issue(
            authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60
        )
        await co.refresh(key, cert)

    yield from record("refresh", tmp_path_factory.mktemp("refresh"), 3, refresh)


@pytest.fixture(scope="module")
def reshared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RecordedSession]:
    """A 2-of-3 FROST key on nodes 1, 2 and 3, reshared to 2-of-3 on nodes 1, 2 and 4, recorded."""

    async def reshare(
        co: Coordinator, authority: approval.AuthorityKey, key: ClusterKey, descriptors: list[NodeDescriptor]
    ) -> None:
        committee = [descriptors[0], descriptors[1], descriptors[3]]
        params = admin_params("reshare", threshold=2, nodes=committee, key=key)
        cert = approval.issue(
            authority, kind="reshare", key_id=key.key_id, params=params, now=int(time.time()), expires_in=60
        )
        await co.reshare(key, committee, 2, cert)

    yield from record("reshare", tmp_path_factory.mktemp("reshare"), 4, reshare)


# -- refresh ----------------------------------------------------------------------------------------


def test_stealing_node_1_before_a_refresh_and_node_2_after_it_does_not_give_the_key(refreshed: RecordedSession) -> None:
    run = refreshed
    old_1, new_2 = run.node_1_before.share, run.node_2_after.share
    assert old_1 is not None and new_2 is not None
    assert old_1.identifier == 1 and new_2.identifier == 2
    assert len(run.wire.hellos()) == 3
    assert len(secret_messages_of(run.wire, run.node_1)) == 4, "δ_1(2), δ_1(3) out; δ_2(1), δ_3(1) in"
    tried = {s for obj in run.node_1_before.objects.values() for s in secrets_in(obj)}
    assert cbor2.loads(run.node_1_before.objects["identity"])["sign_sk"] in tried
    assert old_1.group.encode_scalar(old_1.secret_share) in tried
    assert combine(old_1.secret_share, new_2) is None, "shares of two generations do not combine (the refresh)"

    loot = run.attack()

    assert loot.opened == []
    assert loot.share_1 is None and loot.group_secret is None


def test_the_same_attack_succeeds_with_node_1s_session_keys_so_they_are_what_protects_the_key(
    refreshed: RecordedSession,
) -> None:
    run = refreshed
    loot = run.attack(with_node_1s_session_keys=True)

    assert len(loot.opened) == len(secret_messages_of(run.wire, run.node_1)) == 4
    assert loot.share_1 == read_key(run.nodes[0].store, run.key.key_id)[0].secret_share
    assert loot.group_secret is not None
    assert run.key.public.group.base_mul(loot.group_secret) == run.key.public.group_public_key


# -- reshare ----------------------------------------------------------------------------------------


def test_stealing_node_1_before_a_reshare_and_node_2_after_it_does_not_give_the_key(reshared: RecordedSession) -> None:
    run = reshared
    old_1, new_2 = run.node_1_before.share, run.node_2_after.share
    assert old_1 is not None and new_2 is not None
    assert old_1.parties == (1, 2, 3) and new_2.parties == (1, 2, 4)
    assert len(run.wire.hellos()) == 4
    assert len(secret_messages_of(run.wire, run.node_1)) == 9, "dealings 1→2, 1→4, 2→1, 3→1; echoes 1→2,3,4, 2→1, 4→1"
    assert combine(old_1.secret_share, new_2) is None, "shares of two generations do not combine (the reshare)"

    loot = run.attack()

    assert loot.opened == []
    assert loot.share_1 is None and loot.group_secret is None


def test_the_same_attack_on_a_reshare_succeeds_with_node_1s_session_keys(reshared: RecordedSession) -> None:
    run = reshared
    loot = run.attack(with_node_1s_session_keys=True)

    assert len(loot.opened) == len(secret_messages_of(run.wire, run.node_1)) == 9
    assert loot.share_1 == read_key(run.nodes[0].store, run.key.key_id)[0].secret_share
    assert loot.group_secret is not None
    assert run.key.public.group.base_mul(loot.group_secret) == run.key.public.group_public_key


# -- after the session --------------------------------------------------------------------------------


@pytest.mark.parametrize("recording", ["refreshed", "reshared"])
def test_once_the_session_ends_node_1_holds_nothing_that_opens_what_was_recorded(
    recording: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    run: RecordedSession = request.getfixturevalue(recording)
    keys = run.insider.keys
    assert keys is not None and run.nodes[0].sessions == {}
    assert not keys.live
    for data in secret_messages_of(run.wire, run.node_1):
        h = read_header(data)
        assert keys.key(h.session_id, h.from_node, h.to_node) is None
    with pytest.raises(ValueError, match="forgotten"):
        keys.to_cbor()
    # Everything every node keeps now, stolen together, opens nothing either.
    everyone = [steal(node, run.key.key_id, tmp_path / f"n{i}") for i, node in enumerate(run.nodes, start=1)]
    assert open_what_it_can(everyone, run.wire, run.descriptors, run.node_1) == []


# -- a cold node ---------------------------------------------------------------------------------------


class ColdTap:
    """Node 1 as a cold node: opened for each request file, as ``harbour node offline`` does, and recorded.

    After every request the tap copies the node's directory, as a backup taken
    between two of the operator's trips would.
    """

    def __init__(self, directory: Path, wire: Wire, node_id: str, snapshots: Path) -> None:
        self.directory, self.wire, self.node_id, self.snapshots = directory, wire, node_id, snapshots
        self.copies: list[Path] = []

    async def call(self, request: bytes, timeout: float) -> bytes:
        node = NodeService.open(self.directory, passphrase=PASS, offline=True)
        try:
            response = node.handle(request)
        finally:
            node.close()
        self.wire.exchanges.append((self.node_id, request, response))
        copy = self.snapshots / f"copy-{len(self.copies)}"
        shutil.copytree(self.directory, copy)
        self.copies.append(copy)
        return response


@dataclass
class ColdRecording:
    session: RecordedSession
    node_1_after: Stolen
    """Node 1's directory once the refresh is over."""
    mid_session: list[Stolen]
    """Copies of node 1's directory taken between two request files, while the refresh ran."""


@pytest.fixture(scope="module")
def refreshed_cold(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ColdRecording]:
    """The refresh of :func:`refreshed`, with node 1 a cold node answering request files."""
    root = tmp_path_factory.mktemp("refresh-cold")
    authority, nodes, descriptors, _ = make_nodes(root, 3)
    try:
        key = keygen(authority, nodes, descriptors, SCHEME)
        node_1_before = steal(nodes[0], key.key_id, root / "stolen-node-1-before")
        cold_dir = nodes[0].directory
        nodes[0].close()
        wire = Wire()
        (root / "snapshots").mkdir()
        cold = ColdTap(cold_dir, wire, descriptors[0].node_id, root / "snapshots")

        def relay(recipient: str, messages: list[bytes]) -> list[bytes]:
            wire.relayed.extend(messages)
            return messages

        async def go() -> None:
            others = zip(descriptors[1:], nodes[1:], strict=True)
            transports: dict[str, Any] = {d.node_id: Tap(n, wire) for d, n in others}
            transports[descriptors[0].node_id] = cold
            async with Coordinator(transports=transports, relay=relay) as co:
                cert = approval.issue(
                    authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60
                )
                await co.refresh(key, cert)

        asyncio.run(go())
        nodes[0] = NodeService.open(cold_dir, passphrase=PASS)
        node_2_after = steal(nodes[1], key.key_id, root / "stolen-node-2-after")
        node_1_after = steal(nodes[0], key.key_id, root / "stolen-node-1-after")
        copies = [steal_copy(copy, key.key_id) for copy in cold.copies]
        mid = [copy for copy in copies if any(name.startswith("sessions/") for name in copy.objects)]
        insider = Insider(nodes[0])
        session = RecordedSession("refresh", nodes, descriptors, key, node_1_before, node_2_after, wire, insider)
        yield ColdRecording(session, node_1_after, mid)
    finally:
        for node in nodes:
            node.close()


def steal_copy(directory: Path, key_id: str) -> Stolen:
    """A copy of a node directory already taken, read with the passphrase."""
    store = SecretStore.open(directory / STORE_DIR, passphrase=PASS)
    try:
        objects = {name: store.get(name) for name in store.names()}
        share: KeyShare | None = None
        with contextlib.suppress(Refusal):
            share = read_key(store, key_id)[0]
        return Stolen(NodeIdentity.from_bytes(store.get("identity")), objects, share)
    finally:
        store.close()


def test_a_cold_node_1_gives_the_same_protection_once_its_session_ended(refreshed_cold: ColdRecording) -> None:
    """The cold node kept its ephemeral key between files, encrypted in its store, and deleted it at the end."""
    run = refreshed_cold.session
    after = refreshed_cold.node_1_after
    assert not any(name.startswith("sessions/") for name in after.objects), "the session record is gone"
    opened = open_what_it_can([run.node_1_before, run.node_2_after, after], run.wire, run.descriptors, run.node_1)
    assert opened == []
    assert run.attack().group_secret is None


def test_a_copy_of_the_cold_node_taken_between_two_files_opens_that_session(refreshed_cold: ColdRecording) -> None:
    """The documented limit: mid-session, the session's ephemeral key is in the cold node's store.

    A backup of the directory taken between two request files, opened with the
    passphrase, holds it; the same attack code then opens node 1's messages and
    rebuilds the key. Hence docs/nodes.md: no copy of a cold node while a session is open.
    """
    run = refreshed_cold.session
    assert refreshed_cold.mid_session, "the cold node kept its session between files"
    opened = open_what_it_can([refreshed_cold.mid_session[-1], run.node_2_after], run.wire, run.descriptors, run.node_1)
    assert len(opened) == len(secret_messages_of(run.wire, run.node_1))
    old = run.node_1_before.share
    new_2 = run.node_2_after.share
    assert old is not None and new_2 is not None
    share_1 = rebuild_refreshed_share(old, opened)
    assert share_1 is not None
    secret = combine(share_1, new_2, old.identifier)
    assert secret is not None
    assert run.key.public.group.base_mul(secret) == run.key.public.group_public_key
