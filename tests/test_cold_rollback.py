"""A cold node put back to an older copy of itself, attacked through the real node code.

tests/test_rollback_attack.py runs the attack on parties in memory: a DKLs23 signer
restored to just after it sent round two, and asked for round three again with its
co-signer's ψ changed, gives its key share away. Here the victim is node 3, a cold
node opened for one request and closed after it (as ``harbour node offline`` runs),
rolled back by copying its whole directory. The attacker is node 1, an online node:
it reads the messages between itself and the victim with its own session keys, and
seals its forged round two with them. The rollback counter (harbour.node.counter)
is what stops the attack; the control test puts the counter back with the directory,
and the same attack code then recovers the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest

from harbour.crypto.ecdsa import EcdsaSignature
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.envelope import Envelope
from harbour.node import approval, rpc, signlog
from harbour.node.coordinator import ClusterKey, Coordinator, admin_params, verify_signature
from harbour.node.identity import NodeDescriptor
from harbour.node.sealed import ReplayGuard, open_sealed, read_header, seal
from harbour.node.service import NodeService, init_node
from harbour.node.staging import read_key
from rollback_attack import EcdsaAnswer, ExtractionError, ecdsa_extract_share, ecdsa_forge_round2, recover_group_secret
from softhsm import SoftHsm
from test_node_service import PASS, Local, answer, keygen, make_nodes, start_request

ATTACKER, VICTIM = 1, 3
SIGNERS = [ATTACKER, VICTIM]
DIGEST = hashlib.sha256(b"sweep the cold vault").digest()
FROST_SCHEME = "frost-secp256k1"


class ColdNode:
    """A node that answers by request files: opened for each request and closed after it."""

    def __init__(self, directory: Path, *, pin: str | None = None) -> None:
        self.directory = directory
        self.secret: dict[str, Any] = {"pin": pin} if pin is not None else {"passphrase": PASS}

    def handle(self, request: bytes) -> bytes:
        node = NodeService.open(self.directory, offline=True, **self.secret)
        try:
            return node.handle(request)
        finally:
            node.close()

    async def call(self, request: bytes, timeout: float) -> bytes:
        """The coordinator's transport to this node."""
        return self.handle(request)

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        reply = cbor2.loads(self.handle(rpc.encode(request)))
        assert isinstance(reply, dict)
        return reply


@contextlib.contextmanager
def cold(nodes: list[NodeService], index: int) -> Iterator[ColdNode]:
    """``nodes[index]`` answers by request files inside the block, and is an online node again after it."""
    directory = nodes[index].directory
    nodes[index].close()
    try:
        yield ColdNode(directory)
    finally:
        nodes[index] = NodeService.open(directory, passphrase=PASS)


def deliver(sid: bytes, messages: Sequence[bytes] = (), hellos: Sequence[bytes] = ()) -> dict[str, Any]:
    return {"op": "deliver", "session_id": sid, "hellos": list(hellos), "messages": list(messages)}


def ok(reply: dict[str, Any]) -> dict[str, Any]:
    assert reply["ok"] is True, reply
    return reply


def entries_of(directory: Path, sid: bytes) -> list[signlog.Entry]:
    return [e for e in signlog.entries(directory / "sign.log") if e.session_id == sid.hex()]


def saved_sessions(directory: Path) -> list[str]:
    """The session records in a node's store (the objects are encrypted, their names are not)."""
    folder = directory / "store" / "objects" / "sessions"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def sign_certificate(authority: approval.AuthorityKey, key: ClusterKey) -> bytes:
    return approval.issue(
        authority,
        kind="sign",
        signers=SIGNERS,
        key_id=key.key_id,
        digests=[DIGEST],
        now=int(time.time()),
        expires_in=300,
    )


def sign_args(key: ClusterKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "path": "m", "message": DIGEST, "signers": SIGNERS}


def sign(transports: dict[str, Any], key: ClusterKey, certificate: bytes) -> None:
    """A whole signing session by signers 1 and 3; the coordinator checks the signature, and so do we."""

    async def go() -> None:
        async with Coordinator(transports=transports) as co:
            outcome = await co.sign(key, DIGEST, certificate, signers=SIGNERS)
        assert verify_signature(key.scheme, key.public.group_public_key, DIGEST, outcome.signature)

    asyncio.run(go())


# -- the victim, the attacker, and the attack ---------------------------------------------------


@dataclass
class Cluster:
    """Three nodes sharing a 2-of-3 threshold-ECDSA key; node 3 answers only by request files."""

    authority: approval.AuthorityKey
    online: list[NodeService]
    """Nodes 1 (the attacker) and 2."""
    descriptors: list[NodeDescriptor]
    key: ClusterKey
    victim: ColdNode
    counter: Path | None
    """The victim's rollback counter file, if it has one."""

    @property
    def attacker(self) -> NodeService:
        return self.online[0]

    def transports(self) -> dict[str, Any]:
        nodes: list[NodeService | ColdNode] = [*self.online, self.victim]
        return {
            d.node_id: n if isinstance(n, ColdNode) else Local(n) for d, n in zip(self.descriptors, nodes, strict=True)
        }


def make_cluster(
    authority: approval.AuthorityKey,
    nodes: list[NodeService],
    descriptors: list[NodeDescriptor],
    victim: ColdNode,
    counter: Path | None,
) -> Iterator[Cluster]:
    try:
        try:
            key = keygen(authority, nodes, descriptors, ECDSA_SCHEME)
        finally:
            nodes[2].close()  # from here on node 3 is cold
        yield Cluster(authority, nodes[:2], descriptors, key, victim, counter)
    finally:
        for node in nodes[:2]:
            node.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The victim's counter is a file beside its directory, not in it."""
    authority, nodes, descriptors, _ = make_nodes(tmp_path, 3, counters=True)
    yield from make_cluster(authority, nodes, descriptors, ColdNode(tmp_path / "n3"), tmp_path / "n3.counter")


@pytest.fixture
def token_cluster(tmp_path: Path, softhsm: SoftHsm) -> Iterator[Cluster]:
    """The victim's store and counter are on a PKCS#11 token."""
    authority, nodes, descriptors, _ = make_nodes(tmp_path, 2, counters=True)
    directory = tmp_path / "n3"
    descriptors.append(
        init_node(
            directory,
            name="n3",
            listen="127.0.0.1:7303",
            authorities=[authority.public_bytes],
            pkcs11=softhsm.config(),
            pin=softhsm.pin,
            counter={"kind": "pkcs11"},
        )
    )
    nodes.append(NodeService.open(directory, pin=softhsm.pin))
    yield from make_cluster(authority, nodes, descriptors, ColdNode(directory, pin=softhsm.pin), None)


@dataclass
class Keys:
    """The attacker's session keys with the victim, taken from its own live session."""

    nodes: dict[str, NodeDescriptor]
    """The attacker and the victim, by node id."""
    roster: dict[str, int]
    pair: dict[tuple[str, str], bytes]
    """(sender, recipient) -> key."""

    @classmethod
    def of(cls, attacker: NodeService, sid: bytes, victim: NodeDescriptor) -> Keys:
        session = attacker.sessions[sid]
        assert session.keys is not None
        me, them = attacker.identity.node_id, victim.node_id
        pair: dict[tuple[str, str], bytes] = {}
        for a, b in ((me, them), (them, me)):
            key = session.keys.key(sid, a, b)
            assert key, "the hellos are in: both keys are agreed"
            pair[(a, b)] = key
        return cls({me: attacker.descriptor, them: victim}, session.node_roster, pair)

    def read(self, messages: Sequence[bytes]) -> list[Envelope]:
        """Open messages between the attacker and the victim, either way."""
        opened = []
        for data in messages:
            header = read_header(data)
            guard = ReplayGuard()
            for seq in range(header.seq):  # the attacker keeps no replay state: it reads each message alone
                guard.accept(header.session_id, header.from_node, seq)
            opened.append(
                open_sealed(
                    header.to_node,
                    data,
                    known_senders=self.nodes,
                    rosters={header.session_id: self.roster},
                    guard=guard,
                    keys=lambda _phase, sender, recipient: self.pair.get((sender, recipient)),
                    public=lambda *_: False,
                )
            )
        return opened


@dataclass
class RunA:
    """The honest session as the attacker saw it, and what it needs to make the victim answer again."""

    sid: bytes
    keys: Keys
    to_victim: bytes
    """The attacker's sealed round two to the victim."""
    round2_received: list[Envelope]
    """The victim's round-two envelope to the attacker."""
    honest: EcdsaAnswer

    def forge_round_two(self) -> tuple[Envelope, bytes]:
        """The attacker's round two with ψ changed, sealed as the real one was: same key, same number."""
        [sent] = self.keys.read([self.to_victim])
        header = read_header(self.to_victim)
        forged = ecdsa_forge_round2(sent, 1)
        key = self.keys.pair[(header.from_node, header.to_node)]
        sealed = seal(
            forged, key=key, from_node=header.from_node, to_node=header.to_node, seq=header.seq, roster=self.keys.roster
        )
        return forged, sealed


def sign_with_a_copy(c: Cluster, copy_victim: Callable[[], None]) -> RunA:
    """Run A, request by request; ``copy_victim`` runs right after the victim answered with its round two."""
    attacker, victim = c.attacker, c.victim
    sid = secrets.token_bytes(32)
    start = start_request("sign", sign_args(c.key), certificate=sign_certificate(c.authority, c.key), sid=sid)
    a0, v0 = ok(answer(attacker, start)), ok(victim.ask(start))
    a1 = ok(answer(attacker, deliver(sid, hellos=[v0["hello"]])))  # the attacker's round one
    keys = Keys.of(attacker, sid, c.descriptors[VICTIM - 1])
    v1 = ok(victim.ask(deliver(sid, hellos=[a0["hello"]])))  # the victim's round one
    a2 = ok(answer(attacker, deliver(sid, v1["out"])))  # the attacker's round two
    v2 = ok(victim.ask(deliver(sid, a1["out"])))  # the victim's round two
    copy_victim()
    a3 = ok(answer(attacker, deliver(sid, v2["out"])))
    v3 = ok(victim.ask(deliver(sid, a2["out"])))  # the victim's round three
    a4 = ok(answer(attacker, deliver(sid, v3["out"])))
    v4 = ok(victim.ask(deliver(sid, a3["out"])))
    assert a4["done"] and v4["done"], "run A ends in a signature on both"
    result = v4["result"]
    signature = EcdsaSignature.from_bytes(bytes(result["signature"]), result["recovery_id"])
    assert verify_signature(ECDSA_SCHEME, c.key.public.group_public_key, DIGEST, signature)

    [to_victim] = a2["out"]
    [sent] = keys.read([to_victim])
    [round3] = keys.read(v3["out"])
    return RunA(sid, keys, to_victim, keys.read(v2["out"]), EcdsaAnswer(sent, round3))


def steal_share(c: Cluster, run: RunA, forged: Envelope, reply: dict[str, Any]) -> int:
    """The attack: the victim's Shamir share from its round three in run A and in its reply to the forged ψ."""
    again = [env for env in run.keys.read(reply.get("out", [])) if env.round == 3]
    answers = [run.honest, *(EcdsaAnswer(forged, env) for env in again)]
    share, _ = read_key(c.attacker.store, c.key.key_id)
    return ecdsa_extract_share(VICTIM, share, run.sid, SIGNERS, DIGEST, run.round2_received, answers[0], answers[-1])


def roll_back_after_round_two(
    c: Cluster, tmp_path: Path, *, counter_too: bool
) -> tuple[RunA, Envelope, dict[str, Any]]:
    """The victim's reply to the forged round two, after run A and its whole directory put back.

    The copy is taken right after the victim answered with its round two; with
    ``counter_too`` its counter file is copied and put back with it.
    """
    saved = tmp_path / "saved"
    counter = c.counter

    def copy_victim() -> None:
        shutil.copytree(c.victim.directory, saved, symlinks=True)
        if counter_too:
            assert counter is not None
            shutil.copy2(counter, tmp_path / "counter.copy")

    run = sign_with_a_copy(c, copy_victim)
    shutil.rmtree(c.victim.directory)
    shutil.copytree(saved, c.victim.directory, symlinks=True)
    if counter_too:
        assert counter is not None
        shutil.copy2(tmp_path / "counter.copy", counter)
    forged, sealed = run.forge_round_two()
    return run, forged, c.victim.ask(deliver(run.sid, [sealed]))


def assert_refused_as_rolled_back(c: Cluster, run: RunA, forged: Envelope, reply: dict[str, Any]) -> None:
    assert reply["ok"] is False and reply["reason"] == "stale-session", reply
    assert "out" not in reply
    last = entries_of(c.victim.directory, run.sid)[-1]
    assert last.outcome == "aborted"
    assert "saved state was refused" in last.reason and "rollback counter" in last.reason, last.reason
    with pytest.raises(ExtractionError, match="same ψ"):  # only run A's answer: nothing to subtract it from
        steal_share(c, run, forged, reply)


# -- the rollback attack --------------------------------------------------------------------------


def test_a_cold_node_refuses_its_whole_directory_put_back_after_round_two(cluster: Cluster, tmp_path: Path) -> None:
    run, forged, reply = roll_back_after_round_two(cluster, tmp_path, counter_too=False)
    assert_refused_as_rolled_back(cluster, run, forged, reply)


def test_with_its_counter_put_back_too_the_same_attack_gives_the_whole_key(cluster: Cluster, tmp_path: Path) -> None:
    """The control: a counter that lives inside the snapshot protects nothing, so the counter is what stops it."""
    run, forged, reply = roll_back_after_round_two(cluster, tmp_path, counter_too=True)
    assert ok(reply)["done"] is False, "the victim answered round three a second time"
    stolen = steal_share(cluster, run, forged, reply)
    own, _ = read_key(cluster.attacker.store, cluster.key.key_id)
    secret = recover_group_secret({VICTIM: stolen, ATTACKER: own.secret_share}, cluster.key.public)
    public = cluster.key.public
    assert public.group.base_mul(secret) == public.group_public_key


def test_a_cold_node_with_its_counter_on_the_token_refuses_its_directory_put_back(
    token_cluster: Cluster, tmp_path: Path
) -> None:
    run, forged, reply = roll_back_after_round_two(token_cluster, tmp_path, counter_too=False)
    assert_refused_as_rolled_back(token_cluster, run, forged, reply)


# -- a cold node without a counter ------------------------------------------------------------------


@pytest.fixture
def no_counters(tmp_path: Path) -> Iterator[Any]:
    made = make_nodes(tmp_path, 3, counters=False)
    yield made
    for node in made[1]:
        node.close()


@pytest.mark.parametrize("scheme", [ECDSA_SCHEME, FROST_SCHEME])
def test_a_cold_node_without_a_counter_refuses_to_sign_before_spending_the_certificate(
    no_counters: Any, scheme: str
) -> None:
    authority, nodes, descriptors, _ = no_counters
    key = keygen(authority, nodes, descriptors, scheme)
    certificate = sign_certificate(authority, key)
    sid = secrets.token_bytes(32)
    with cold(nodes, VICTIM - 1) as victim:
        reply = victim.ask(start_request("sign", sign_args(key), certificate=certificate, sid=sid))
        assert reply["ok"] is False and reply["reason"] == "no-counter", reply
        assert "rollback counter" in reply["error"]
        assert entries_of(victim.directory, sid) == [] and saved_sessions(victim.directory) == []
    # The same certificate, online: it was never spent.
    sign({d.node_id: Local(n) for d, n in zip(descriptors, nodes, strict=True)}, key, certificate)


def test_a_cold_node_without_a_counter_still_takes_part_in_a_frost_keygen(no_counters: Any) -> None:
    """Answering a FROST keygen round twice sends the same values twice: nothing to protect."""
    authority, nodes, descriptors, _ = no_counters
    params = admin_params("keygen", scheme=FROST_SCHEME, threshold=2, nodes=descriptors)
    certificate = approval.issue(
        authority, kind="keygen", key_id="", params=params, now=int(time.time()), expires_in=300
    )
    with cold(nodes, VICTIM - 1) as victim:
        transports: dict[str, Any] = {d.node_id: Local(n) for d, n in zip(descriptors[:2], nodes[:2], strict=True)}
        transports[descriptors[VICTIM - 1].node_id] = victim

        async def go() -> ClusterKey:
            async with Coordinator(transports=transports) as co:
                made: ClusterKey = await co.keygen(descriptors, 2, FROST_SCHEME, certificate)
                return made

        key = asyncio.run(go())
        held = ok(victim.ask({"op": "key", "key_id": key.key_id}))
        assert rpc.decode_public(held["public"]) == key.public
        assert saved_sessions(victim.directory) == []


def test_a_cold_node_without_a_counter_refuses_a_threshold_ecdsa_keygen(no_counters: Any) -> None:
    """Its pairwise setup (base OTs), answered twice from one saved state, would reuse its secrets as signing does."""
    authority, nodes, descriptors, _ = no_counters
    params = admin_params("keygen", scheme=ECDSA_SCHEME, threshold=2, nodes=descriptors)
    certificate = approval.issue(
        authority, kind="keygen", key_id="vault", params=params, now=int(time.time()), expires_in=300
    )
    roster = rpc.roster_value(dict(enumerate(descriptors, start=1)))
    args = {"key_id": "vault", "scheme": ECDSA_SCHEME, "threshold": 2, "roster": roster}
    with cold(nodes, VICTIM - 1) as victim:
        reply = victim.ask(start_request("keygen", args, certificate=certificate, sid=secrets.token_bytes(32)))
        assert reply["ok"] is False and reply["reason"] == "no-counter", reply


# -- an online node, and a crash between the counter and the record ----------------------------------


@pytest.mark.parametrize("kind", ["sign", "keygen"])
def test_a_restarted_online_node_refuses_to_continue_a_session_and_never_kept_one_on_disk(
    tmp_path: Path, kind: str
) -> None:
    authority, nodes, descriptors, _ = make_nodes(tmp_path, 3)
    try:
        if kind == "sign":
            key = keygen(authority, nodes, descriptors, ECDSA_SCHEME)
            args, certificate = sign_args(key), sign_certificate(authority, key)
        else:
            params = admin_params("keygen", scheme=FROST_SCHEME, threshold=2, nodes=descriptors)
            certificate = approval.issue(
                authority, kind="keygen", key_id="vault", params=params, now=int(time.time()), expires_in=300
            )
            roster = rpc.roster_value(dict(enumerate(descriptors, start=1)))
            args = {"key_id": "vault", "scheme": FROST_SCHEME, "threshold": 2, "roster": roster}
        sid = secrets.token_bytes(32)
        start = start_request(kind, args, certificate=certificate, sid=sid)
        first, other = ok(answer(nodes[0], start)), ok(answer(nodes[2], start))
        peer = ok(answer(nodes[2], deliver(sid, hellos=[first["hello"]])))
        to_first = [m for m in other["out"] + peer["out"] if read_header(m).to_node == descriptors[0].node_id]
        assert to_first, "node 3 has a round for node 1"
        assert sid in nodes[0].sessions and saved_sessions(nodes[0].directory) == []

        nodes[0].close()
        nodes[0] = NodeService.open(nodes[0].directory, passphrase=PASS)
        reply = answer(nodes[0], deliver(sid, to_first, hellos=[other["hello"]]))
        assert reply["ok"] is False and reply["reason"] == "stale-session", reply
        assert saved_sessions(nodes[0].directory) == []
        last = entries_of(nodes[0].directory, sid)[-1]
        assert last.outcome == "aborted" and "restarted" in last.reason
    finally:
        for node in nodes:
            node.close()


def test_a_cold_node_whose_counter_moved_on_without_its_record_drops_the_session_and_serves_new_ones(
    cluster: Cluster,
) -> None:
    """A crash after the counter moved on and before the records were written: the state is behind the counter."""
    c = cluster
    sid = secrets.token_bytes(32)
    start = start_request("sign", sign_args(c.key), certificate=sign_certificate(c.authority, c.key), sid=sid)
    first, _ = ok(answer(c.attacker, start)), ok(c.victim.ask(start))
    assert saved_sessions(c.victim.directory) == [sid.hex()]

    assert c.counter is not None
    state = json.loads(c.counter.read_text())
    c.counter.write_text(json.dumps({**state, "value": state["value"] + 1}))

    reply = c.victim.ask(deliver(sid, hellos=[first["hello"]]))
    assert reply["ok"] is False and reply["reason"] == "stale-session", reply
    last = entries_of(c.victim.directory, sid)[-1]
    assert last.outcome == "aborted" and "rollback counter" in last.reason
    assert saved_sessions(c.victim.directory) == [], "dropped, not kept for later"
    again = c.victim.ask(deliver(sid, hellos=[first["hello"]]))
    assert again["ok"] is False and again["reason"] == "finished-session", again

    sign(c.transports(), c.key, sign_certificate(c.authority, c.key))


def test_node_init_says_what_a_node_without_a_counter_refuses_and_keeps_the_counter_it_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from harbour.cli.node import app as node_app

    monkeypatch.setenv("HARBOUR_NODE_PASSPHRASE", PASS)
    authority = approval.AuthorityKey.generate()
    authority.save(tmp_path)
    base = ["init", "--name", "n", "--listen", "127.0.0.1:7009", "--authority", str(tmp_path / "authority.pub")]
    runner = CliRunner()
    plain = runner.invoke(node_app, [*base, "--dir", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    assert "no rollback counter" in plain.stderr and "refuses signing sessions" in plain.stderr
    counter = tmp_path / "other-disk" / "n.counter"
    counter.parent.mkdir()
    kept = runner.invoke(node_app, [*base, "--dir", str(tmp_path / "kept"), "--counter-file", str(counter)])
    assert kept.exit_code == 0, kept.output
    assert "no rollback counter" not in kept.stderr
    config = json.loads((tmp_path / "kept" / "node.json").read_text())
    assert config["counter"] == {"kind": "file", "path": str(counter)}
    assert json.loads(counter.read_text())["value"] == 0
    inside = runner.invoke(
        node_app, [*base, "--dir", str(tmp_path / "inside"), "--counter-file", str(tmp_path / "inside" / "c")]
    )
    assert inside.exit_code == 2 and "outside the node directory" in inside.stderr
    twice = runner.invoke(node_app, [*base, "--dir", str(tmp_path / "twice"), "--counter-file", str(counter)])
    assert twice.exit_code == 2 and "never shared or reused" in twice.stderr
    token = runner.invoke(node_app, [*base, "--dir", str(tmp_path / "token"), "--counter-pkcs11"])
    assert token.exit_code == 2 and "--pkcs11-module" in token.stderr
