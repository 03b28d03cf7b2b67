"""Rotating a node's identity: the statement, the rotation across a cluster, and what it takes from a thief.

A node's identity key authenticates it in every session; whoever steals it can
answer in the node's place. ``harbour node rotate-keys`` gives the node a new key
and writes a statement signed by both; the other nodes take it only with a
``rotate`` certificate from the authority, and from then on the stolen key is a
stranger to them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from typer.testing import CliRunner

from harbour.cli.authority import app as authority_app
from harbour.cli.node import app as node_app
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.envelope import Envelope
from harbour.node import approval, rpc, signlog
from harbour.node.config import NodeStartError, rotate_identity
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator, admin_params
from harbour.node.handshake import SessionKeys
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.rotation import MAX_STATEMENT_LEN, Rotation, RotationError
from harbour.node.sealed import read_header, sign_public
from harbour.node.service import NodeService
from harbour.node.store import SecretStore
from test_node_service import PASS, Local, answer, commit_request, make_nodes, refused, run_to_staged, start_request

URL = "http://127.0.0.1:7301"
DOMAIN = b"harbour/node-rotation/v1\x00"
"""As documented in node/rotation.py, written out here so a change to it shows."""

cli = CliRunner()


def documented_body(old: NodeDescriptor, new: NodeDescriptor) -> bytes:
    return DOMAIN + cbor2.dumps({"old": old.to_json(), "new": new.to_json()}, canonical=True)


def statement_of(old: NodeIdentity, new: NodeIdentity, old_desc: NodeDescriptor, new_desc: NodeDescriptor) -> bytes:
    """A statement about any two descriptors, each signature by the key given (so only the rule under test fails)."""
    body = documented_body(old_desc, new_desc)
    return Rotation(old_desc, new_desc, old.sign(body), new.sign(body)).encode()


def canonical(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


def edited(statement: bytes, **changes: Any) -> bytes:
    doc = json.loads(statement)
    doc.update(changes)
    return canonical({k: v for k, v in doc.items() if v is not None})


# -- the statement ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pair() -> tuple[NodeIdentity, NodeIdentity]:
    return NodeIdentity.generate(), NodeIdentity.generate()


def test_a_statement_round_trips_and_approves_exactly_its_two_node_ids(pair: tuple[NodeIdentity, NodeIdentity]) -> None:
    old, new = pair
    rotation = Rotation.make(old, new, "n1", URL)
    assert Rotation.decode(rotation.encode()) == rotation
    assert rotation.params == {"old": old.node_id, "new": new.node_id}
    assert rotation.old == old.descriptor("n1", URL) and rotation.new == new.descriptor("n1", URL)


def test_the_statement_file_is_the_documented_canonical_json(pair: tuple[NodeIdentity, NodeIdentity]) -> None:
    old, new = pair
    data = Rotation.make(old, new, "n1", URL).encode()
    doc = json.loads(data)
    assert data == canonical(doc)
    assert doc["format"] == "harbour-node-rotation" and doc["version"] == 1
    assert doc["old"] == json.loads(old.descriptor("n1", URL).to_json())
    assert doc["new"] == json.loads(new.descriptor("n1", URL).to_json())
    body = documented_body(old.descriptor("n1", URL), new.descriptor("n1", URL))
    for identity, field in ((old, "old_signature"), (new, "new_signature")):
        Ed25519PublicKey.from_public_bytes(identity.sign_pk).verify(bytes.fromhex(doc[field]), body)


def _flip(hex_signature: str) -> str:
    raw = bytearray(bytes.fromhex(hex_signature))
    raw[0] ^= 1
    return bytes(raw).hex()


def _swap(statement: bytes) -> bytes:
    doc = json.loads(statement)
    return edited(statement, old_signature=doc["new_signature"], new_signature=doc["old_signature"])


def _other_descriptor(field: str) -> Callable[[bytes], bytes]:
    def edit(statement: bytes) -> bytes:
        other = NodeIdentity.generate().descriptor("n1", URL)
        return edited(statement, **{field: json.loads(other.to_json())})

    return edit


def _bad_node_id(statement: bytes) -> bytes:
    doc = json.loads(statement)
    return edited(statement, old={**doc["old"], "node_id": doc["new"]["node_id"]})


Bad = Callable[[NodeIdentity, NodeIdentity], bytes]


def _renamed(old: NodeIdentity, new: NodeIdentity) -> bytes:
    return statement_of(old, new, old.descriptor("n1", URL), new.descriptor("n9", URL))


def _moved(old: NodeIdentity, new: NodeIdentity) -> bytes:
    return statement_of(old, new, old.descriptor("n1", URL), new.descriptor("n1", "http://10.0.0.9:7301"))


def _good(old: NodeIdentity, new: NodeIdentity) -> bytes:
    return Rotation.make(old, new, "n1", URL).encode()


BAD_STATEMENTS: dict[str, tuple[Bad, str]] = {
    "old signature forged": (
        lambda o, n: edited(_good(o, n), old_signature=_flip(json.loads(_good(o, n))["old_signature"])),
        "signature by the old key",
    ),
    "new signature forged": (
        lambda o, n: edited(_good(o, n), new_signature=_flip(json.loads(_good(o, n))["new_signature"])),
        "signature by the new key",
    ),
    "signatures swapped": (lambda o, n: _swap(_good(o, n)), "signature by the old key"),
    "old signed by a third key": (
        lambda o, n: statement_of(NodeIdentity.generate(), n, o.descriptor("n1", URL), n.descriptor("n1", URL)),
        "signature by the old key",
    ),
    "the same key twice": (lambda o, n: Rotation.make(o, o, "n1", URL).encode(), "the new identity is the old one"),
    "name changed": (_renamed, "not the node's name or address"),
    "url changed": (_moved, "not the node's name or address"),
    "old descriptor of another node": (lambda o, n: _other_descriptor("old")(_good(o, n)), "signature by the old key"),
    "new descriptor of another node": (lambda o, n: _other_descriptor("new")(_good(o, n)), "does not verify"),
    "a descriptor whose node id is another's": (lambda o, n: _bad_node_id(_good(o, n)), "malformed"),
    "compact JSON": (
        lambda o, n: json.dumps(json.loads(_good(o, n)), sort_keys=True).encode(),
        "not in its canonical form",
    ),
    "keys out of order": (
        lambda o, n: (json.dumps(dict(reversed(json.loads(_good(o, n)).items())), indent=2) + "\n").encode(),
        "not in its canonical form",
    ),
    "no final newline": (lambda o, n: _good(o, n).rstrip(b"\n"), "not in its canonical form"),
    "uppercase hex signature": (
        lambda o, n: edited(_good(o, n), old_signature=json.loads(_good(o, n))["old_signature"].upper()),
        "not in its canonical form",
    ),
    "oversized": (
        lambda o, n: _good(o, n) + b" " * (MAX_STATEMENT_LEN + 1 - len(_good(o, n))),
        f"at most {MAX_STATEMENT_LEN} bytes",
    ),
    "not JSON": (lambda o, n: b"\xff" + _good(o, n), "not JSON"),
    "wrong format": (lambda o, n: edited(_good(o, n), format="harbour-node-descriptor"), "not a Harbour node rotation"),
    "version 2": (lambda o, n: edited(_good(o, n), version=2), "unsupported rotation statement version"),
    "version true": (lambda o, n: edited(_good(o, n), version=True), "unsupported rotation statement version"),
    "version 1.0": (lambda o, n: edited(_good(o, n), version=1.0), "unsupported rotation statement version"),
    "an extra field": (lambda o, n: edited(_good(o, n), reason="stolen"), "not a Harbour node rotation"),
    "a missing field": (lambda o, n: edited(_good(o, n), new_signature=None), "not a Harbour node rotation"),
    "a short signature": (
        lambda o, n: edited(_good(o, n), old_signature=json.loads(_good(o, n))["old_signature"][:-2]),
        "64 bytes",
    ),
    "a JSON array": (lambda o, n: b"[]\n", "not a Harbour node rotation"),
}


@pytest.mark.parametrize(("make", "needle"), BAD_STATEMENTS.values(), ids=BAD_STATEMENTS.keys())
def test_a_bad_statement_is_refused(pair: tuple[NodeIdentity, NodeIdentity], make: Bad, needle: str) -> None:
    with pytest.raises(RotationError, match=needle):
        Rotation.decode(make(*pair))


# -- a rotation across three nodes --------------------------------------------------------------------


@dataclass
class Rotated:
    """Three nodes with a FROST and an ECDSA key; node 1's identity was rotated, its old one stolen before."""

    root: Path
    authority: approval.AuthorityKey
    nodes: list[NodeService]
    before: list[NodeDescriptor]
    clock: Any
    keys: list[str]
    stolen: NodeIdentity
    statement: bytes
    certificate: bytes
    told: dict[str, list[str]]
    cli_output: dict[str, Any]

    @property
    def rotation(self) -> Rotation:
        return Rotation.decode(self.statement)

    @property
    def descriptors(self) -> list[NodeDescriptor]:
        return [node.descriptor for node in self.nodes]

    def coordinator(self, **kw: Any) -> Coordinator:
        return Coordinator(
            state_dir=self.root / "coordinator",
            transports={node.identity.node_id: Local(node) for node in self.nodes} | kw.pop("transports", {}),
            **kw,
        )

    def cert(self, kind: str, *, key_id: str = "", **what: Any) -> bytes:
        return approval.issue(self.authority, kind=kind, key_id=key_id, now=int(self.clock()), expires_in=60, **what)

    def log(self, party: int, kind: str) -> list[signlog.Entry]:
        return [e for e in signlog.entries(self.nodes[party - 1].directory / "sign.log") if e.kind == kind]

    def roster(self, party: int, key_id: str) -> dict[int, NodeDescriptor]:
        return rpc.parse_roster(answer(self.nodes[party - 1], {"op": "key", "key_id": key_id})["roster"])


def taken(node: NodeService, request: dict[str, Any]) -> list[str]:
    """The keys whose rosters a node updated on a rotate request it accepted."""
    obj = answer(node, request)
    assert obj["ok"] is True, obj
    keys: list[str] = obj["keys"]
    return keys


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


@pytest.fixture(scope="module")
def rotated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rotated]:
    root = tmp_path_factory.mktemp("rotation")
    authority, nodes, before, clock = make_nodes(root, 3)
    transports = {d.node_id: Local(n) for d, n in zip(before, nodes, strict=True)}

    async def keygens() -> list[str]:
        async with Coordinator(state_dir=root / "coordinator", transports=transports) as co:
            made = []
            for scheme in ("frost-secp256k1", ECDSA_SCHEME):
                params = admin_params("keygen", scheme=scheme, threshold=2, nodes=before)
                cert = approval.issue(
                    authority, kind="keygen", key_id="", params=params, now=int(clock()), expires_in=60
                )
                made.append((await co.keygen(before, 2, scheme, cert)).key_id)
            return made

    keys = run(keygens())
    stolen = NodeIdentity.from_bytes(nodes[0].store.get("identity"))  # what a thief copied off node 1
    directory = nodes[0].directory
    nodes[0].close()
    out = cli.invoke(
        node_app, ["rotate-keys", "--dir", str(directory), "--json"], env={"HARBOUR_NODE_PASSPHRASE": PASS}
    )
    assert out.exit_code == 0, out.output
    (root / "authority").mkdir()
    authority.save(root / "authority")
    args = ["certify", "--dir", str(root / "authority"), "--kind", "rotate", "--rotation",
            str(directory / "rotation.json"), "--expires-in", "600", "--out", str(root / "rotate.cert")]  # fmt: skip
    made = cli.invoke(authority_app, args, env={"HARBOUR_AUTHORITY_PASSPHRASE": None})
    assert made.exit_code == 0, made.output
    statement, certificate = (directory / "rotation.json").read_bytes(), (root / "rotate.cert").read_bytes()

    async def tell() -> dict[str, list[str]]:
        async with Coordinator(state_dir=root / "coordinator", transports=transports) as co:
            told: dict[str, list[str]] = await co.rotate(statement, certificate, before[1:])
            return told

    told = run(tell())
    nodes[0] = NodeService.open(directory, passphrase=PASS, clock=clock)
    state = Rotated(
        root, authority, nodes, before, clock, keys, stolen, statement, certificate, told, json.loads(out.stdout)
    )
    yield state
    for node in state.nodes:
        node.close()


def test_the_rotated_node_reopens_with_the_new_identity_and_without_the_old_key(rotated: Rotated) -> None:
    node, rotation = rotated.nodes[0], rotated.rotation
    assert rotation.old == rotated.before[0] and rotation.old.node_id == rotated.stolen.node_id
    assert node.identity.node_id == rotation.new.node_id != rotated.stolen.node_id
    assert (node.directory / "descriptor.json").read_text().strip() == rotation.new.to_json()
    assert rotated.cli_output["old_node_id"] == rotation.old.node_id
    assert rotated.cli_output["new_node_id"] == rotation.new.node_id
    assert rotated.cli_output["descriptor"] == json.loads(rotation.new.to_json())
    assert not node.store.exists("identity-next")
    stolen = rotated.stolen.to_bytes()
    assert all(node.store.get(name) != stolen for name in node.store.names()), "the old private key is gone"


def test_every_roster_on_every_node_names_the_new_descriptor(rotated: Rotated) -> None:
    new, old = rotated.rotation.new, rotated.rotation.old
    assert rotated.told == {"n2": sorted(rotated.keys), "n3": sorted(rotated.keys)}
    for party in (1, 2, 3):
        for key_id in rotated.keys:
            roster = rotated.roster(party, key_id)
            assert roster[1] == new
            assert old.node_id not in {d.node_id for d in roster.values()}
            assert roster[2] == rotated.before[1] and roster[3] == rotated.before[2]


def test_the_coordinator_key_records_name_the_new_descriptor(rotated: Rotated) -> None:
    co = rotated.coordinator()
    for key_id in rotated.keys:
        assert co.load_key(key_id).roster == {1: rotated.rotation.new, 2: rotated.before[1], 3: rotated.before[2]}


def test_the_rotated_node_signs_and_refreshes_under_its_new_identity(rotated: Rotated) -> None:
    message = hashlib.sha256(b"after the rotation").digest()

    async def go() -> list[tuple[list[int], list[int]]]:
        async with rotated.coordinator() as co:
            done = []
            for key_id in rotated.keys:
                key = co.load_key(key_id)
                first = await co.sign(
                    key, message, rotated.cert("sign", key_id=key_id, digests=[message], signers=[1, 2])
                )
                fresh = await co.refresh(key, rotated.cert("refresh", key_id=key_id, params={}))
                assert fresh.roster[1] == rotated.rotation.new
                after = await co.sign(
                    co.load_key(key_id), message, rotated.cert("sign", key_id=key_id, digests=[message], signers=[1, 3])
                )
                done.append((first.signers, after.signers))
            return done

    assert run(go()) == [([1, 2], [1, 3])] * 2


def test_the_same_statement_again_is_answered_with_no_keys(rotated: Rotated) -> None:
    for party in (2, 3):
        logged = len(rotated.log(party, "rotate"))
        again = {"op": "rotate", "statement": rotated.statement, "certificate": b""}
        assert taken(rotated.nodes[party - 1], again) == [], "no certificate needed to change nothing"
        assert len(rotated.log(party, "rotate")) == logged, "nothing happened, so nothing is logged"


def test_node_2_logs_the_rotation_with_its_certificate(rotated: Rotated) -> None:
    cert, _ = approval.parse(rotated.certificate)
    for party in (2, 3):
        committed = [e for e in rotated.log(party, "rotate") if e.outcome == "committed"]
        assert len(committed) == 1
        entry = committed[0]
        assert entry.certificate_hash == approval.certificate_hash(rotated.certificate)
        assert (entry.authority_id, entry.nonce) == (cert.authority_id, cert.nonce.hex())
        assert rotated.rotation.old.node_id in entry.reason and rotated.rotation.new.node_id in entry.reason
        assert "2 key(s)" in entry.reason and entry.key_id == "" and entry.path == "m"


# -- the point: the stolen key no longer stands for node 1 --------------------------------------------


class Impostor:
    """Signs with the stolen key under whatever node id it claims."""

    def __init__(self, key: NodeIdentity, node_id: str) -> None:
        self._key, self.node_id = key, node_id

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)


def thief(rotated: Rotated, claims_new_id: bool) -> tuple[NodeIdentity, dict[str, int]]:
    """The stolen key, as itself or claiming node 1's new id; and the roster that thief believes in."""
    node_1 = rotated.rotation.new.node_id if claims_new_id else rotated.stolen.node_id
    roster = {node_1: 1, rotated.before[1].node_id: 2, rotated.before[2].node_id: 3}
    identity = cast(NodeIdentity, Impostor(rotated.stolen, node_1)) if claims_new_id else rotated.stolen
    return identity, roster


class InNode1sPlace:
    """What the thief runs where the coordinator expects node 1: a hello made with the stolen key."""

    def __init__(self, identity: NodeIdentity, roster: dict[str, int]) -> None:
        self.identity, self.roster = identity, roster

    async def call(self, request: bytes, timeout: float) -> bytes:
        obj = cbor2.loads(request)
        if obj["op"] == "start":
            keys = SessionKeys(self.identity, obj["session_id"], self.roster)
            return rpc.ok(out=[], done=False, hello=keys.hello)
        return rpc.ok(out=[], done=False)


FORGERIES = [
    pytest.param(False, "unknown-sender", id="as the old node id"),
    pytest.param(True, "bad-signature", id="claiming the new node id"),
]


@pytest.mark.parametrize(("claims_new_id", "why"), FORGERIES)
@pytest.mark.parametrize("party", [2, 3])
def test_a_hello_made_with_the_old_key_cannot_take_node_1s_place(
    rotated: Rotated, party: int, claims_new_id: bool, why: str
) -> None:
    identity, roster = thief(rotated, claims_new_id)
    key_id = rotated.keys[0]
    message = hashlib.sha256(f"drain via {party} {why}".encode()).digest()
    cert = rotated.cert("sign", key_id=key_id, digests=[message], signers=[1, party])

    async def go() -> None:
        transports = {rotated.rotation.new.node_id: InNode1sPlace(identity, roster)}
        async with rotated.coordinator(transports=transports) as co:
            await co.sign(co.load_key(key_id), message, cert)

    with pytest.raises(ClusterError) as err:
        run(go())
    assert err.value.reason == "sealed" and err.value.node == f"n{party}" and why in str(err.value)
    outcomes = [e.outcome for e in rotated.log(party, "sign") if message.hex() in e.digests]
    assert outcomes == ["started", "aborted"], "the session ended, nothing was signed"


@pytest.mark.parametrize(("claims_new_id", "why"), FORGERIES)
@pytest.mark.parametrize("party", [2, 3])
def test_a_public_message_signed_with_the_old_key_is_refused(
    rotated: Rotated, party: int, claims_new_id: bool, why: str
) -> None:
    identity, roster = thief(rotated, claims_new_id)
    node, key_id = rotated.nodes[party - 1], rotated.keys[0]  # FROST: its first round is public, signed
    message = hashlib.sha256(f"commitments via {party} {why}".encode()).digest()
    sid = hashlib.sha256(message).digest()
    cert = rotated.cert("sign", key_id=key_id, digests=[message], signers=[1, party])
    args = {"key_id": key_id, "path": "m", "message": message, "signers": [1, party]}
    started = answer(node, start_request("sign", args, certificate=cert, sid=sid))
    header = read_header(started["out"][0])
    assert header.to_node == rotated.rotation.new.node_id, "node 2 itself writes to node 1's new identity"
    forged = sign_public(
        identity,
        Envelope(header.session_id, header.protocol, header.round, 1, None, b"commitments"),
        to_node=node.identity.node_id,
        seq=0,
        roster=roster,
    )
    deliver = {"op": "deliver", "session_id": sid, "hellos": [], "messages": [forged]}
    assert f"({why})" in refused(node, deliver, "sealed")
    assert [e.outcome for e in rotated.log(party, "sign") if e.session_id == sid.hex()] == ["started", "aborted"]


def test_the_same_hello_and_message_made_with_node_1s_new_key_are_taken(rotated: Rotated) -> None:
    """The control: what refused the thief is the key, not the shape of what he sent."""
    node_1 = rotated.nodes[0].identity
    roster = {node_1.node_id: 1, rotated.before[1].node_id: 2, rotated.before[2].node_id: 3}
    key_id = rotated.keys[0]
    message = hashlib.sha256(b"control: the hello").digest()
    cert = rotated.cert("sign", key_id=key_id, digests=[message], signers=[1, 2])

    async def go() -> None:
        async with rotated.coordinator(transports={node_1.node_id: InNode1sPlace(node_1, roster)}) as co:
            await co.sign(co.load_key(key_id), message, cert)

    with pytest.raises(ClusterError) as err:
        run(go())
    assert err.value.reason == "stalled", "node 2 took the hello and waited for node 1's commitments"

    message = hashlib.sha256(b"control: the message").digest()
    sid = hashlib.sha256(message).digest()
    cert = rotated.cert("sign", key_id=key_id, digests=[message], signers=[1, 2])
    args = {"key_id": key_id, "path": "m", "message": message, "signers": [1, 2]}
    header = read_header(answer(rotated.nodes[1], start_request("sign", args, certificate=cert, sid=sid))["out"][0])
    envelope = Envelope(header.session_id, header.protocol, header.round, 1, None, b"commitments")
    signed = sign_public(node_1, envelope, to_node=rotated.before[1].node_id, seq=0, roster=roster)
    deliver = {"op": "deliver", "session_id": sid, "hellos": [], "messages": [signed]}
    refused(rotated.nodes[1], deliver, "protocol")  # past every check of who sent it, refused only as nonsense


def test_the_thief_cannot_rotate_node_1_again_even_with_a_valid_certificate(rotated: Rotated) -> None:
    own = Rotation.make(rotated.stolen, NodeIdentity.generate(), "n1", URL)
    cert = rotated.cert("rotate", params=own.params)
    for party in (2, 3):
        request = {"op": "rotate", "statement": own.encode(), "certificate": cert}
        assert "rotated to another identity already" in refused(rotated.nodes[party - 1], request, "rotated")
    assert rotated.roster(2, rotated.keys[0])[1] == rotated.rotation.new


def test_the_rotated_node_itself_refuses_a_second_rotation_of_its_old_identity(rotated: Rotated) -> None:
    own = Rotation.make(rotated.stolen, NodeIdentity.generate(), "n1", URL)
    request = {"op": "rotate", "statement": own.encode(), "certificate": rotated.cert("rotate", params=own.params)}
    refused(rotated.nodes[0], request, "rotated")


def committee_with(rotated: Rotated, kind: str, party: int) -> dict[str, Any]:
    """A start request whose committee names node 1's old identity (the thief) as a member."""
    old = rotated.rotation.old
    if kind == "keygen":
        roster = {1: old, 2: rotated.before[1], 3: rotated.before[2]}
        args: dict[str, Any] = {"key_id": "k", "scheme": "frost-secp256k1", "threshold": 2}
        return start_request(kind, {**args, "roster": rpc.roster_value(roster)}, sid=bytes([0x0D, party]) * 16)
    key = rotated.roster(party, rotated.keys[0])
    info = answer(rotated.nodes[party - 1], {"op": "key", "key_id": rotated.keys[0]})
    args = {
        "key_id": rotated.keys[0],
        "threshold": 2,
        "dealers": rpc.roster_value(key),
        "roster": rpc.roster_value({2: rotated.before[1], 3: rotated.before[2], 4: old}),
        "public": info["public"],
        "chain_code": info["chain_code"],
        "holdings": [],  # a key of no organisation: no holding statements
    }
    return start_request(kind, args, sid=bytes([0x0E, party]) * 16)


@pytest.mark.parametrize("kind", ["keygen", "reshare"])
@pytest.mark.parametrize("party", [2, 3])
def test_a_committee_naming_the_old_identity_is_refused(rotated: Rotated, kind: str, party: int) -> None:
    message = refused(rotated.nodes[party - 1], committee_with(rotated, kind, party), "rotated")
    assert rotated.stolen.node_id in message


# -- refusals -----------------------------------------------------------------------------------------


def node_3_statement(rotated: Rotated) -> Rotation:
    """A rotation of node 3, which no authority approved."""
    return Rotation.make(rotated.nodes[2].identity, NodeIdentity.generate(), "n3", "http://127.0.0.1:7303")


BAD_CERTIFICATES: dict[str, tuple[Callable[[Rotated, Rotation], bytes], str]] = {
    "none": (lambda r, s: b"", "malformed"),
    "node 1's certificate": (lambda r, s: r.certificate, "params"),
    "for other node ids": (lambda r, s: r.cert("rotate", params={**s.params, "new": r.stolen.node_id}), "params"),
    "a refresh certificate": (lambda r, s: r.cert("refresh", key_id=r.keys[0], params={}), "kind"),
    "its nonce spent on node 1's rotation": (
        lambda r, s: r.cert("rotate", params=s.params, nonce=approval.parse(r.certificate)[0].nonce),
        "replayed",
    ),
    "by another authority": (
        lambda r, s: approval.issue(
            approval.AuthorityKey.generate(),
            kind="rotate",
            key_id="",
            params=s.params,
            now=int(r.clock()),
            expires_in=60,
        ),
        "untrusted",
    ),
}


@pytest.mark.parametrize(("certify", "why"), BAD_CERTIFICATES.values(), ids=BAD_CERTIFICATES.keys())
def test_a_rotation_without_its_own_certificate_is_refused_and_logged(
    rotated: Rotated, certify: Callable[[Rotated, Rotation], bytes], why: str
) -> None:
    statement = node_3_statement(rotated)
    cert = certify(rotated, statement)
    request = {"op": "rotate", "statement": statement.encode(), "certificate": cert}
    assert f"({why})" in refused(rotated.nodes[1], request, "approval")
    assert rotated.roster(2, rotated.keys[0])[3] == rotated.before[2], "node 3 is still itself on node 2"
    last = rotated.log(2, "rotate")[-1]
    assert last.outcome == "refused" and last.reason.startswith(f"{why}:")
    assert last.certificate_hash == approval.certificate_hash(cert)


def test_a_node_refuses_a_rotation_of_its_own_identity_by_request(rotated: Rotated) -> None:
    own = Rotation.make(rotated.nodes[1].identity, NodeIdentity.generate(), "n2", "http://127.0.0.1:7302")
    request = {"op": "rotate", "statement": own.encode(), "certificate": rotated.cert("rotate", params=own.params)}
    assert "harbour node rotate-keys" in refused(rotated.nodes[1], request, "bad-request")
    assert answer(rotated.nodes[1], {"op": "describe"})["descriptor"] == rotated.before[1].to_json()


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[tuple[approval.AuthorityKey, list[NodeService], list[NodeDescriptor], Any]]:
    made = make_nodes(tmp_path, 3)
    yield made
    for node in made[1]:
        node.close()


def frost_key(authority: approval.AuthorityKey, nodes: list[NodeService], descriptors: list[NodeDescriptor]) -> str:
    params = admin_params("keygen", scheme="frost-secp256k1", threshold=2, nodes=descriptors)
    cert = approval.issue(authority, kind="keygen", key_id="vault", params=params, now=int(_now(nodes)), expires_in=60)

    async def go() -> ClusterKey:
        async with Coordinator(transports={d.node_id: Local(n) for d, n in zip(descriptors, nodes, strict=True)}) as co:
            key: ClusterKey = await co.keygen(descriptors, 2, "frost-secp256k1", cert)
            return key

    return cast(str, run(go()).key_id)


def _now(nodes: list[NodeService]) -> float:
    return nodes[0].clock()


def rotate_request(authority: approval.AuthorityKey, node_1: NodeService) -> dict[str, Any]:
    rotation = Rotation.make(node_1.identity, NodeIdentity.generate(), "n1", node_1.config.url)
    cert = approval.issue(
        authority, kind="rotate", key_id="", params=rotation.params, now=int(_now([node_1])), expires_in=60
    )
    return {"op": "rotate", "statement": rotation.encode(), "certificate": cert}


def test_a_staged_result_naming_the_node_holds_its_rotation_until_committed_or_discarded(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key_id = frost_key(authority, nodes, descriptors)
    roster = dict(enumerate(descriptors, start=1))
    cert = approval.issue(authority, kind="refresh", key_id=key_id, params={}, now=int(_now(nodes)), expires_in=60)
    sid, results = run_to_staged(nodes, descriptors, "refresh", cert, roster, {p: {"key_id": key_id} for p in roster})
    request = rotate_request(authority, nodes[0])
    for node in nodes[1:]:
        assert "commit or discard it first" in refused(node, request, "pending")
    assert answer(nodes[1], commit_request(sid, results, roster))["ok"] is True
    assert taken(nodes[1], request) == [key_id], "committed: node 2 takes it"
    discard = approval.issue(
        authority, kind="refresh", key_id=key_id, params={"discard": sid.hex()}, now=int(_now(nodes)), expires_in=60
    )
    assert answer(nodes[2], {"op": "abort", "session_id": sid, "certificate": discard})["ok"] is True
    assert taken(nodes[2], request) == [key_id], "discarded: node 3 takes it"


def test_a_running_session_with_the_node_holds_its_rotation_until_it_ends(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key_id = frost_key(authority, nodes, descriptors)
    message, sid = bytes(32), bytes([0x5E]) * 32
    cert = approval.issue(
        authority, kind="sign", key_id=key_id, digests=[message], signers=[1, 2], now=int(_now(nodes)), expires_in=60
    )
    args = {"key_id": key_id, "path": "m", "message": message, "signers": [1, 2]}
    assert answer(nodes[1], start_request("sign", args, certificate=cert, sid=sid))["ok"] is True
    request = rotate_request(authority, nodes[0])
    assert sid.hex() in refused(nodes[1], request, "pending")
    assert answer(nodes[1], {"op": "abort", "session_id": sid, "certificate": b""})["ok"] is True
    assert taken(nodes[1], request) == [key_id]


def identity_of(directory: Path) -> str:
    with SecretStore.open(directory / "store", passphrase=PASS) as store:
        return NodeIdentity.from_bytes(store.get("identity")).node_id


def test_rotate_keys_refuses_a_node_with_a_staged_result(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key_id = frost_key(authority, nodes, descriptors)
    roster = dict(enumerate(descriptors, start=1))
    cert = approval.issue(authority, kind="refresh", key_id=key_id, params={}, now=int(_now(nodes)), expires_in=60)
    run_to_staged(nodes, descriptors, "refresh", cert, roster, {p: {"key_id": key_id} for p in roster})
    directory = nodes[0].directory
    nodes[0].close()
    with pytest.raises(NodeStartError, match="staged or open sessions"):
        rotate_identity(directory, passphrase=PASS)
    assert identity_of(directory) == descriptors[0].node_id and not (directory / "rotation.json").exists()
    nodes[0] = NodeService.open(directory, passphrase=PASS)


def test_rotate_keys_refuses_a_cold_node_with_an_open_session(trio: Any) -> None:
    authority, nodes, descriptors, clock = trio
    key_id = frost_key(authority, nodes, descriptors)
    directory = nodes[0].directory
    nodes[0].close()
    cold = NodeService.open(directory, passphrase=PASS, offline=True, clock=clock)
    message = bytes(32)
    cert = approval.issue(
        authority, kind="sign", key_id=key_id, digests=[message], signers=[1, 2], now=int(clock()), expires_in=60
    )
    args = {"key_id": key_id, "path": "m", "message": message, "signers": [1, 2]}
    try:
        assert answer(cold, start_request("sign", args, certificate=cert))["ok"] is True
    finally:
        cold.close()  # the session is kept, encrypted in the store, for the next request file
    with pytest.raises(NodeStartError, match="staged or open sessions"):
        rotate_identity(directory, passphrase=PASS)
    assert identity_of(directory) == descriptors[0].node_id
    nodes[0] = NodeService.open(directory, passphrase=PASS)


def test_rotate_keys_refuses_a_running_node(trio: Any) -> None:
    _, nodes, descriptors, _ = trio
    with pytest.raises(NodeStartError, match="stop it first"):
        rotate_identity(nodes[0].directory, passphrase=PASS)
    assert nodes[0].identity.node_id == descriptors[0].node_id


def test_an_interrupted_rotation_finishes_with_the_identity_it_had_set_aside(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key_id = frost_key(authority, nodes, descriptors)
    directory = nodes[0].directory
    nodes[0].close()
    aside = NodeIdentity.generate()
    with SecretStore.open(directory / "store", passphrase=PASS) as store:
        store.put("identity-next", aside.to_bytes())  # where a run stopped right after choosing its key
    rotation = rotate_identity(directory, passphrase=PASS)
    assert (rotation.old.node_id, rotation.new.node_id) == (descriptors[0].node_id, aside.node_id)
    nodes[0] = NodeService.open(directory, passphrase=PASS)
    assert nodes[0].identity.node_id == aside.node_id
    assert rpc.parse_roster(answer(nodes[0], {"op": "key", "key_id": key_id})["roster"])[1] == rotation.new


def test_a_rotation_interrupted_after_the_swap_finishes_the_same_statement(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    frost_key(authority, nodes, descriptors)
    directory = nodes[0].directory
    nodes[0].close()
    first = rotate_identity(directory, passphrase=PASS)
    statement = (directory / "rotation.json").read_bytes()
    # Put back what a crash after the swap and before the clean-up leaves: the key aside, the old descriptor.
    with SecretStore.open(directory / "store", passphrase=PASS) as store:
        store.put("identity-next", store.get("identity"))
    (directory / "descriptor.json").write_text(descriptors[0].to_json() + "\n")
    again = rotate_identity(directory, passphrase=PASS)
    assert again == first and (directory / "rotation.json").read_bytes() == statement
    nodes[0] = NodeService.open(directory, passphrase=PASS)
    assert nodes[0].identity.node_id == first.new.node_id


def test_a_rotation_interrupted_before_its_descriptor_is_written_finishes_the_same_statement(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    frost_key(authority, nodes, descriptors)
    directory = nodes[0].directory
    nodes[0].close()
    first = rotate_identity(directory, passphrase=PASS)
    (directory / "descriptor.json").write_text(descriptors[0].to_json() + "\n")  # the last write never happened
    try:
        again = rotate_identity(directory, passphrase=PASS)
    finally:
        nodes[0] = NodeService.open(directory, passphrase=PASS)
    assert (again.old.node_id, again.new.node_id) == (first.old.node_id, first.new.node_id)
