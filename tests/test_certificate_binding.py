"""What an approval certificate binds, so that whoever relays it cannot stretch it.

Two findings of the security review, each shown as the attack and the control that
proves the binding (and nothing else) stops it:

- a sign certificate names the key and digest but not the signer set: with
  ``n >= 2t`` one certificate gave two disjoint sets of ``t`` nodes a signature each,
  since every node keeps its own nonce ledger;
- a reshare certificate bound the group key, chain code and new roster, but a node
  new to the key took the old key's public package and the dealer set from the
  coordinator.

Then the authority's command line, which must refuse to write the certificates
that would carry either gap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from typer.testing import CliRunner

from harbour.cli.authority import app as authority_app
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.node import approval, rpc, signlog
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator, admin_params, assign_parties
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.rotation import Rotation
from harbour.node.service import NodeService
from test_node_service import Local, answer, keygen, make_nodes, start_request

SCHEMES = ["frost-secp256k1", ECDSA_SCHEME]


class Cluster:
    """Nodes in this process, their authority, and one 2-of-n key on them."""

    def __init__(self, root: Path, n: int, scheme: str, *, key_on: int | None = None) -> None:
        made = make_nodes(root, n)
        self.authority: approval.AuthorityKey = made[0]
        self.nodes: list[NodeService] = made[1]
        self.descriptors: list[NodeDescriptor] = made[2]
        self.clock: Any = made[3]
        members = key_on or n
        self.key: ClusterKey = keygen(self.authority, self.nodes[:members], self.descriptors[:members], scheme)
        self.calls: list[tuple[str, str]] = []
        """(node name, op) of every request a coordinator made, in order."""

    def node(self, party: int) -> NodeService:
        return self.nodes[party - 1]

    def descriptor(self, party: int) -> NodeDescriptor:
        return self.descriptors[party - 1]

    def coordinator(self) -> Coordinator:
        return Coordinator(
            transports={d.node_id: Recorded(n, self.calls) for d, n in zip(self.descriptors, self.nodes, strict=True)}
        )

    def sign_cert(self, signers: list[int], message: bytes, key: ClusterKey | None = None) -> bytes:
        return approval.issue(
            self.authority,
            kind="sign",
            key_id=(key or self.key).key_id,
            digests=[message],
            signers=signers,
            now=int(self.clock()),
            expires_in=60,
        )

    def admin_cert(self, kind: str, params: dict[str, str | int], key: ClusterKey | None = None) -> bytes:
        return approval.issue(
            self.authority,
            kind=kind,
            key_id=(key or self.key).key_id,
            params=params,
            now=int(self.clock()),
            expires_in=60,
        )

    def close(self) -> None:
        for node in self.nodes:
            node.close()


class Recorded(Local):
    """A node in this process; every request the coordinator sends it is written down."""

    def __init__(self, node: NodeService, calls: list[tuple[str, str]]) -> None:
        super().__init__(node)
        self.calls = calls

    async def call(self, request: bytes, timeout: float) -> bytes:
        self.calls.append((self.node.config.name, cbor2.loads(request)["op"]))
        return await super().call(request, timeout)


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def log_of(node: NodeService, kind: str) -> list[signlog.Entry]:
    return [e for e in signlog.entries(node.directory / "sign.log") if e.kind == kind]


@pytest.fixture(scope="module", params=SCHEMES)
def quartet(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Four nodes holding one 2-of-4 key: two disjoint signer sets exist."""
    cluster = Cluster(tmp_path_factory.mktemp("quartet"), 4, request.param)
    yield cluster
    cluster.close()


# -- one sign certificate, one signer set --------------------------------------------------------------


def test_one_sign_certificate_yields_one_signature_even_with_two_disjoint_signer_sets(quartet: Cluster) -> None:
    message = b"pay 5 BTC to the exchange".ljust(32, b".")
    cert = quartet.sign_cert([1, 2], message)

    async def first() -> Any:
        async with quartet.coordinator() as co:
            return await co.sign(quartet.key, message, cert)

    assert run(first()).signers == [1, 2]

    # The attacker relays the same certificate to the other half of the committee.
    sid = bytes([0xA7]) * 32
    args = {"key_id": quartet.key.key_id, "path": "m", "message": message, "signers": [3, 4]}
    for party in (3, 4):
        node = quartet.node(party)
        refusal = answer(node, start_request("sign", args, certificate=cert, sid=sid))
        assert refusal["ok"] is False and refusal["reason"] == "approval", refusal
        assert "(signers)" in refusal["error"] and "[1, 2]" in refusal["error"]
        assert [e.outcome for e in log_of(node, "sign") if e.session_id == sid.hex()] == ["refused"]
        assert not node.sessions
    for party in (1, 2, 3, 4):
        signed = [e.outcome for e in log_of(quartet.node(party), "sign") if message.hex() in e.digests]
        assert signed == (["started", "signed"] if party <= 2 else ["refused"]), "one signature, by nodes 1 and 2"


def test_a_certificate_naming_the_other_half_does_sign_so_only_the_binding_stopped_the_replay(
    quartet: Cluster,
) -> None:
    """The control: nodes 3 and 4 do sign this digest when the certificate names them."""
    message = b"pay 5 BTC to the exchange, again".ljust(32, b".")
    first, second = quartet.sign_cert([1, 2], message), quartet.sign_cert([3, 4], message)

    async def both() -> tuple[Any, Any]:
        async with quartet.coordinator() as co:
            return await co.sign(quartet.key, message, first), await co.sign(quartet.key, message, second)

    one, two = run(both())
    assert (one.signers, two.signers) == ([1, 2], [3, 4])
    assert {e.outcome for e in log_of(quartet.node(3), "sign")} >= {"started", "signed"}


def test_a_coordinator_told_other_signers_than_the_certificate_names_contacts_no_node(quartet: Cluster) -> None:
    message = b"rebalance the hot wallet".ljust(32, b".")
    cert = quartet.sign_cert([1, 2], message)
    quartet.calls.clear()

    async def go(signers: list[int] | None) -> Any:
        async with quartet.coordinator() as co:
            return await co.sign(quartet.key, message, cert, signers=signers)

    with pytest.raises(ClusterError) as err:
        run(go([1, 3]))
    assert err.value.reason == "bad-request" and "[1, 2]" in str(err.value)
    assert quartet.calls == [], "refused before any node was asked anything"
    assert run(go(None)).signers == [1, 2], "and the certificate was not spent"


def test_a_certificate_function_is_asked_for_the_signers_the_coordinator_chose(quartet: Cluster) -> None:
    message = b"sweep deposits".ljust(32, b".")
    asked: list[list[int]] = []

    def certify(signers: list[int]) -> bytes:
        asked.append(list(signers))
        return quartet.sign_cert(signers, message)

    async def go(signers: list[int] | None) -> Any:
        async with quartet.coordinator() as co:
            return await co.sign(quartet.key, message, certify, signers=signers)

    quartet.calls.clear()
    chosen = run(go([2, 4]))
    assert asked == [[2, 4]] and chosen.signers == [2, 4]
    assert sorted(name for name, op in quartet.calls if op == "start") == ["n2", "n4"]
    picked = run(go(None))
    assert asked[1] == picked.signers and len(picked.signers) == 2
    assert set(picked.signers) <= {1, 2, 3, 4}


# -- a reshare certificate binds the old key and the dealers ------------------------------------------


@pytest.fixture
def refreshed(tmp_path: Path) -> Iterator[tuple[Cluster, ClusterKey]]:
    """A 2-of-3 key on nodes 1..3 (node 4 is new to it), refreshed once: also the key as it was before."""
    cluster = Cluster(tmp_path, 4, "frost-secp256k1", key_on=3)
    stale = cluster.key

    async def refresh() -> ClusterKey:
        async with cluster.coordinator() as co:
            fresh: ClusterKey = await co.refresh(stale, cluster.admin_cert("refresh", {}))
            return fresh

    cluster.key = run(refresh())
    yield cluster, stale
    cluster.close()


NEW_COMMITTEE = (1, 2, 4)


def reshare_start(
    cluster: Cluster, cert: bytes, *, public: ClusterKey, dealers: dict[int, NodeDescriptor]
) -> dict[str, Any]:
    """What the coordinator sends node 4 to move the key to nodes 1, 2 and 4."""
    roster = assign_parties(cluster.key.roster, [cluster.descriptor(p) for p in NEW_COMMITTEE])
    args = {
        "key_id": cluster.key.key_id,
        "threshold": 2,
        "dealers": rpc.roster_value(dealers),
        "roster": rpc.roster_value(roster),
        "public": rpc.encode_public(public.public),
        "chain_code": cluster.key.chain_code,
        "holdings": [],  # a key of no organisation: no holding statements
    }
    return start_request("reshare", args, certificate=cert, sid=bytes([0x4E]) * 32)


def honest_reshare_cert(cluster: Cluster) -> bytes:
    nodes = [cluster.descriptor(p) for p in NEW_COMMITTEE]
    return cluster.admin_cert("reshare", admin_params("reshare", threshold=2, nodes=nodes, key=cluster.key))


def assert_nothing_staged(node: NodeService) -> None:
    assert not node.store.names("pending/") and not node.store.names("keys/")
    assert not node.sessions
    assert [e.outcome for e in log_of(node, "reshare")] == ["refused"], "refused at the start, never started"


def test_a_new_member_refuses_a_stale_public_package_the_certificate_does_not_name(
    refreshed: tuple[Cluster, ClusterKey],
) -> None:
    cluster, stale = refreshed
    assert stale.public.group_public_key == cluster.key.public.group_public_key, "same key: only the package differs"
    nodes = [cluster.descriptor(p) for p in NEW_COMMITTEE]
    certified = admin_params("reshare", threshold=2, nodes=nodes, key=cluster.key)
    sent = admin_params("reshare", threshold=2, nodes=nodes, key=stale)
    assert [k for k in certified if certified[k] != sent[k]] == ["fingerprint"], "only the new binding differs"
    cert = honest_reshare_cert(cluster)
    request = reshare_start(cluster, cert, public=stale, dealers=cluster.key.roster)
    refusal = answer(cluster.node(4), request)
    assert refusal["ok"] is False and refusal["reason"] == "approval", refusal
    assert "(params)" in refusal["error"] and stale.public.fingerprint().hex() in refusal["error"]
    assert_nothing_staged(cluster.node(4))


def stranger(name: str = "n3") -> NodeDescriptor:
    return NodeIdentity.generate().descriptor(name, "http://127.0.0.1:7303")


@pytest.mark.parametrize(
    "dealt_by",
    [
        pytest.param(lambda c: {p: c.key.roster[p] for p in (1, 2)}, id="fewer dealers than certified"),
        pytest.param(lambda c: {**c.key.roster, 3: stranger()}, id="a stranger in dealer 3's place"),
    ],
)
def test_a_new_member_refuses_dealers_the_certificate_does_not_name(
    refreshed: tuple[Cluster, ClusterKey], dealt_by: Any
) -> None:
    cluster, _ = refreshed
    cert = honest_reshare_cert(cluster)
    request = reshare_start(cluster, cert, public=cluster.key, dealers=dealt_by(cluster))
    refusal = answer(cluster.node(4), request)
    assert refusal["ok"] is False and refusal["reason"] == "approval", refusal
    assert "(params)" in refusal["error"] and "dealers" in refusal["error"]
    assert_nothing_staged(cluster.node(4))


def test_a_reshare_certificate_for_the_real_old_key_and_dealers_is_accepted(
    refreshed: tuple[Cluster, ClusterKey],
) -> None:
    """The control, with the very certificate node 4 refused under the attacks (a refusal spends nothing)."""
    cluster, stale = refreshed
    cert = honest_reshare_cert(cluster)
    attack = reshare_start(cluster, cert, public=stale, dealers=cluster.key.roster)
    assert answer(cluster.node(4), attack)["reason"] == "approval"
    message = bytes(range(32))

    async def go() -> tuple[ClusterKey, Any]:
        async with cluster.coordinator() as co:
            moved: ClusterKey = await co.reshare(cluster.key, [cluster.descriptor(p) for p in NEW_COMMITTEE], 2, cert)
            signed = await co.sign(moved, message, cluster.sign_cert([2, 4], message, moved))
            return moved, signed

    moved, signed = run(go())
    assert sorted(moved.roster) == [1, 2, 4]
    assert moved.public.group_public_key == cluster.key.public.group_public_key
    assert signed.signers == [2, 4]


# -- the authority's command line ---------------------------------------------------------------------


cli = CliRunner()
DIGEST = "ab" * 32


@pytest.fixture(scope="module")
def authority_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("authority")
    approval.AuthorityKey.generate().save(directory)
    return directory


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Descriptor files of three nodes, and a rotation statement of the first."""
    directory = tmp_path_factory.mktemp("files")
    out = {}
    old = NodeIdentity.generate()
    for i, identity in enumerate([old, NodeIdentity.generate(), NodeIdentity.generate()], start=1):
        out[f"n{i}"] = directory / f"n{i}.json"
        out[f"n{i}"].write_text(identity.descriptor(f"n{i}", f"http://127.0.0.1:{7300 + i}").to_json())
    out["rotation"] = directory / "rotation.json"
    out["rotation"].write_bytes(Rotation.make(old, NodeIdentity.generate(), "n1", "http://127.0.0.1:7301").encode())
    return out


def certify(authority_dir: Path, out: Path, *args: str) -> Any:
    return cli.invoke(
        authority_app,
        ["certify", "--dir", str(authority_dir), "--expires-in", "300", "--out", str(out), *args],
        env={"HARBOUR_AUTHORITY_PASSPHRASE": None},
    )


SIGN = ["--key-id", "k", "--message", DIGEST]
REFRESH = ["--kind", "refresh", "--key-id", "k"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        pytest.param(SIGN, "a sign certificate names the parties that sign", id="sign without --signers"),
        pytest.param([*REFRESH, "--signers", "1,2"], "--signers is for sign certificates", id="--signers on refresh"),
        pytest.param([*SIGN, "--signers", "0,1"], "party numbers are 1..255", id="party 0"),
        pytest.param([*SIGN, "--signers", "1,256"], "party numbers are 1..255", id="party 256"),
        pytest.param([*SIGN, "--signers", "1,1"], "each given once", id="a party twice"),
        pytest.param([*SIGN, "--signers", "x"], "comma-separated list of party numbers", id="not a number"),
        pytest.param([*SIGN, "--signers", ""], "comma-separated list of party numbers", id="empty"),
        pytest.param(
            ["--kind", "keygen", "--dealers", "{n1}"], "--dealers is for reshare certificates", id="--dealers on keygen"
        ),
        pytest.param(
            [*REFRESH, "--dealers", "{n1}"], "--dealers is for reshare certificates", id="--dealers on refresh"
        ),
        pytest.param(
            ["--kind", "reshare", "--key-id", "k", "--dealers", "{n1},{n1}"],
            "lists one node twice",
            id="a dealer twice",
        ),
        pytest.param(
            ["--kind", "reshare", "--key-id", "k", "--dealers", "{n1}", "--param", "dealers=00"],
            "not both",
            id="--dealers and a dealers param",
        ),
        pytest.param(
            ["--kind", "rotate"], "a rotate certificate approves the statement", id="rotate without --rotation"
        ),
        pytest.param(
            ["--kind", "rotate", "--rotation", "{rotation}", "--key-id", "k"],
            "is not about a key",
            id="rotate with --key-id",
        ),
        pytest.param(
            [*SIGN, "--signers", "1,2", "--rotation", "{rotation}"], "--rotation is for rotate", id="--rotation on sign"
        ),
        pytest.param(
            ["--kind", "rotate", "--rotation", "{n1}"], "not a Harbour node rotation", id="rotate of a descriptor"
        ),
    ],
)
def test_certify_refuses_a_certificate_that_binds_too_little(
    args: list[str], needle: str, authority_dir: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "cert"
    result = certify(authority_dir, out, *[a.format(**files) for a in args])
    assert result.exit_code == 2, result.output
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.output and result.stdout == ""
    assert not out.exists()


def test_certify_writes_the_signers_dealers_and_rotation_the_nodes_check(
    authority_dir: Path, files: dict[str, Path], tmp_path: Path
) -> None:
    """The controls: each option lands in the certificate as the node will compare it."""
    made: dict[str, approval.Certificate] = {}
    for name, args in {
        "sign": [*SIGN, "--signers", "3,1"],
        "reshare": ["--kind", "reshare", "--key-id", "k", "--dealers", "{n1},{n2},{n3}", "--nodes", "{n2},{n3}"],
        "rotate": ["--kind", "rotate", "--rotation", "{rotation}"],
    }.items():
        result = certify(authority_dir, tmp_path / name, *[a.format(**files) for a in args])
        assert result.exit_code == 0, result.output
        made[name], _ = approval.parse((tmp_path / name).read_bytes())
    ids = {name: NodeDescriptor.from_json(files[name].read_text()).node_id for name in ("n1", "n2", "n3")}
    assert made["sign"].signers == (1, 3)
    assert made["reshare"].params["dealers"] == rpc.roster_hash(list(ids.values()))
    assert made["reshare"].params["roster"] == rpc.roster_hash([ids["n2"], ids["n3"]])
    rotation = Rotation.decode(files["rotation"].read_bytes())
    assert dict(made["rotate"].params) == rotation.params and made["rotate"].key_id == ""
    assert made["rotate"].issued_at <= time.time()
