"""Signer nodes that serve organisations only, their signed status, and a custody deployment that insists on them.

Three ``python -m harbour.node`` processes, shared by the module. A FROST key of
no organisation is made while every node still takes the authority's word for
it; then node1 is stopped, switched to ``organisations_only`` with the command
an operator runs (``harbour node approvers --organisations-only``) and started
again, while node2 and node3 are left as they were.

The attacker holds the approval authority's key (a compromised custody service
does): it certifies a keygen of no organisation, and a signature and a refresh
with the key of none. The restricted node refuses each, logs the refusal and
leaves the certificate unspent, so no session runs. ``harbour custody add-node`` and ``custody init
--nodes`` then refuse node3, a stopped node and a relay answering in a node's
name, and accept the restricted one.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from cluster import PASSPHRASE, Cluster
from harbour.cli.main import app
from harbour.custody import config as cfg
from harbour.node import signlog, status
from harbour.node.config import DESCRIPTOR_FILE, LOG_FILE, NodeConfig, init_node
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator
from harbour.node.identity import NodeDescriptor
from harbour.node.keyfile import MIN_N
from harbour.node.localnet import free_port
from harbour.node.server import NodeApp
from harbour.node.service import NodeService

runner = CliRunner()
SCHEME = "frost-secp256k1"


@dataclass
class World:
    cluster: Cluster
    key: ClusterKey
    root: Path

    def node_dir(self, i: int) -> Path:
        return self.cluster.nodes[i - 1].directory

    def descriptor(self, i: int) -> Path:
        return self.node_dir(i) / DESCRIPTOR_FILE


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("nodesafe")
    cluster = Cluster(root, 3)
    with cluster:
        nodes = cluster.descriptors

        async def keygen() -> ClusterKey:
            async with Coordinator(timeout=30) as co:
                return await co.keygen(nodes, 2, SCHEME, cluster.keygen_cert(SCHEME, 2, nodes))

        key = asyncio.run(keygen())
        assert key.org == ""
        for node in cluster.nodes[:1]:
            node.stop()
            result = runner.invoke(
                app,
                ["node", "approvers", "--dir", str(node.directory), "--organisations-only"],
                env={"HARBOUR_NODE_PASSPHRASE": PASSPHRASE},
            )
            assert result.exit_code == 0, result.output
            assert "organisations_only: true" in result.output
            node.start()
        yield World(cluster, key, root)


def run(step: Any) -> Any:
    async def go() -> Any:
        async with Coordinator(timeout=30) as co:
            return await step(co)

    return asyncio.run(go())


def node_status(world: World, i: int) -> dict[str, Any]:
    result = runner.invoke(app, ["node", "status", "--dir", str(world.node_dir(i)), "--json"])
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.output)
    return document


def refusals(world: World, i: int) -> list[str]:
    return [e.reason for e in signlog.entries(world.node_dir(i) / LOG_FILE) if e.outcome == "refused"]


# -- the node refuses what the authority alone certifies --------------------------------------------------------------


def test_the_setting_is_sealed_in_the_store_with_the_rest_of_node_json(world: World) -> None:
    config = NodeConfig.from_json((world.node_dir(1) / "node.json").read_text())
    assert config.organisations_only and not config.signs_on_authority_alone
    untouched = NodeConfig.from_json((world.node_dir(3) / "node.json").read_text())
    assert not untouched.organisations_only and untouched.signs_on_authority_alone


def test_a_keygen_certificate_naming_no_organisation_is_refused_and_left_unspent(world: World) -> None:
    nodes = world.cluster.descriptors
    ledger = node_status(world, 1)["certificate_ledger"]
    certificate = world.cluster.keygen_cert(SCHEME, 2, nodes)
    with pytest.raises(ClusterError) as refused:
        run(lambda co: co.keygen(nodes, 2, SCHEME, certificate))
    assert refused.value.node == "node1"
    assert refused.value.reason == "approval"
    assert "approval refused (no-organisation)" in str(refused.value)
    assert "names no organisation" in str(refused.value)
    assert any(r.startswith("no-organisation:") for r in refusals(world, 1))
    assert node_status(world, 1)["certificate_ledger"] == ledger
    assert node_status(world, 1)["keys"]["key_ids"] == [world.key.key_id]


@pytest.mark.parametrize("signers", [[1, 2], [1, 3]])
def test_a_signature_with_a_key_of_no_organisation_is_refused_by_a_restricted_signer(
    world: World, signers: list[int]
) -> None:
    message = secrets.token_bytes(32)
    certificate = world.cluster.sign_cert(world.key, message, signers=signers)
    with pytest.raises(ClusterError) as refused:
        run(lambda co: co.sign(world.key, message, certificate))
    assert refused.value.reason == "approval"
    assert f"key {world.key.key_id} belongs to no organisation" in str(refused.value)
    assert "organisations_only" in str(refused.value)


def test_a_refresh_or_reshare_of_a_key_of_no_organisation_is_refused(world: World) -> None:
    with pytest.raises(ClusterError, match=r"no-organisation.*does not refresh such a key"):
        run(lambda co: co.refresh(world.key, world.cluster.refresh_cert(world.key)))
    nodes = world.cluster.descriptors
    with pytest.raises(ClusterError, match=r"no-organisation.*does not reshare such a key"):
        run(lambda co: co.reshare(world.key, nodes, 2, world.cluster.reshare_cert(world.key, nodes, 2)))


# -- the node's signed status, and its health probes ------------------------------------------------------------------


def test_status_reports_keys_ledger_organisations_and_settings_signed_by_the_node(world: World) -> None:
    safe, loose = node_status(world, 1), node_status(world, 3)
    assert safe["reachable"] and safe["authenticated"]
    assert safe["keys"] == {"count": 1, "key_ids": [world.key.key_id]}
    assert safe["sessions_running"] == 0 and safe["certificate_ledger"] >= 1
    assert safe["organisations"] == []
    assert safe["settings"]["organisations_only"] is True
    assert safe["signs_on_authority_alone"] is False
    assert safe["time"].endswith("Z") and safe["version"]
    assert loose["settings"]["organisations_only"] is False and loose["signs_on_authority_alone"] is True
    text = runner.invoke(app, ["node", "status", "--descriptor", str(world.descriptor(3))])
    assert text.exit_code == 0, text.output
    assert "signs on an approval authority's word alone: YES" in text.output


def test_status_of_a_node_that_does_not_answer_exits_1_with_a_clear_message(world: World, tmp_path: Path) -> None:
    descriptor = json.loads(world.descriptor(1).read_text())
    descriptor["url"] = f"http://127.0.0.1:{free_port()}"
    gone = tmp_path / "gone.json"
    gone.write_text(json.dumps(descriptor))
    result = runner.invoke(app, ["node", "status", "--descriptor", str(gone)])
    assert result.exit_code == 1
    assert result.output.startswith("error: node node1 at http://127.0.0.1:") and "gave no status" in result.output
    as_json = runner.invoke(app, ["node", "status", "--descriptor", str(gone), "--json"])
    problem = json.loads(as_json.output)
    assert as_json.exit_code == 1 and problem["exit_code"] == 1 and problem["status"] == 503
    both = runner.invoke(app, ["node", "status", "--dir", str(world.node_dir(1)), "--descriptor", str(gone)])
    assert both.exit_code == 2 and "error:" in both.output


def test_a_status_answer_not_signed_by_the_nodes_key_or_for_another_challenge_is_refused(world: World) -> None:
    descriptor = NodeDescriptor.from_json(world.descriptor(1).read_bytes())
    challenge = status.new_challenge()
    claimed = status.NodeStatus(
        node=descriptor.node_id,
        challenge=challenge,
        time=0,
        software="0",
        offline=False,
        keys=(),
        sessions=0,
        ledger=0,
        organisations=(),
        settings=status.Settings(True, 0, 0, False, ()),
    )
    relay = Ed25519PrivateKey.generate()
    with pytest.raises(status.StatusError, match="not signed by node node1's identity key"):
        status.verified(status.answer(claimed, relay.sign), descriptor, challenge)
    genuine = run(lambda co: co._call(descriptor, {"op": "status", "challenge": challenge}))
    assert status.verified(genuine, descriptor, challenge).settings.organisations_only
    with pytest.raises(status.StatusError, match="another challenge"):
        status.verified(genuine, descriptor, status.new_challenge())
    with pytest.raises(ClusterError, match=r"16\.\.64"):
        run(lambda co: co._call(descriptor, {"op": "status", "challenge": b"short"}))


def test_health_and_ready_answer_over_http(world: World) -> None:
    url = world.cluster.descriptors[0].url
    for path, field in (("/health", "status"), ("/ready", "ready")):
        with urllib.request.urlopen(url + path, timeout=5) as answer:
            document = json.loads(answer.read())
        assert answer.status == 200 and document["node_id"] == world.cluster.descriptors[0].node_id
        assert document[field] in ("ok", True)
    with pytest.raises(urllib.error.HTTPError) as wrong:
        urllib.request.urlopen(urllib.request.Request(url + "/ready", method="POST"), timeout=5)
    assert wrong.value.code == 404


def test_ready_says_503_once_the_store_is_closed(tmp_path: Path) -> None:
    init_node(tmp_path / "n", name="n", listen="127.0.0.1:1", authorities=[bytes(32)], passphrase="p" * 12, kdf_n=MIN_N)
    node = NodeService.open(tmp_path / "n", passphrase="p" * 12)
    try:
        assert NodeApp(node)._probe("/ready")[0] == 200
        node.store.close()
        code, body = NodeApp(node)._probe("/ready")
        assert code == 503 and json.loads(body) == {
            "ready": False,
            "name": "n",
            "node_id": node.descriptor.node_id,
            "detail": "the key store is closed",
        }
        assert NodeApp(node)._probe("/health")[0] == 200
    finally:
        node.log.close()
        node.ledger.close()


# -- custody: add-node and init refuse a node that would sign on the service's word alone -----------------------------


def test_add_node_refuses_an_unrestricted_node_and_says_how_to_fix_it(world: World, tmp_path: Path) -> None:
    home = tmp_path / "custody"
    assert runner.invoke(app, ["custody", "init", "--home", str(home)]).exit_code == 0
    result = runner.invoke(app, ["custody", "add-node", "--home", str(home), str(world.descriptor(3))])
    assert result.exit_code == 1
    assert "error: node node3" in result.output and "would sign on this service's word alone" in result.output
    assert f"hint: stop it, run `harbour node approvers --dir {world.node_dir(3)} --organisations-only`" in (
        result.output
    )
    assert json.loads((home / cfg.CONFIG_FILE).read_text())["nodes"] == []


def test_add_node_refuses_a_node_that_does_not_answer(world: World, tmp_path: Path) -> None:
    home = tmp_path / "custody"
    assert runner.invoke(app, ["custody", "init", "--home", str(home)]).exit_code == 0
    descriptor = json.loads(world.descriptor(2).read_text())
    descriptor["url"] = f"http://127.0.0.1:{free_port()}"
    gone = tmp_path / "n2" / DESCRIPTOR_FILE
    gone.parent.mkdir()
    gone.write_text(json.dumps(descriptor))
    result = runner.invoke(app, ["custody", "add-node", "--home", str(home), "--wait", "0.5", str(gone)])
    assert result.exit_code == 1 and "gave no status" in result.output
    assert f"hint: start it (harbour node run --dir {gone.parent})" in result.output


def test_add_node_accepts_a_restricted_node_and_warns_of_another_authority(world: World, tmp_path: Path) -> None:
    home = tmp_path / "custody"
    assert runner.invoke(app, ["custody", "init", "--home", str(home)]).exit_code == 0
    paths = [str(world.descriptor(1))]
    result = runner.invoke(app, ["custody", "add-node", "--home", str(home), *paths])
    assert result.exit_code == 0, result.output
    assert "1 signer node(s) configured" in result.output
    # The cluster's nodes obey the cluster's authority, not this home's: said, not refused.
    assert "warning: node node1 does not trust this deployment's approval authority" in result.output
    assert json.loads((home / cfg.CONFIG_FILE).read_text())["nodes"] == [str(Path(p).resolve()) for p in paths]


def test_init_with_nodes_refuses_an_unrestricted_node_and_creates_nothing(world: World, tmp_path: Path) -> None:
    home = tmp_path / "custody"
    nodes = f"{world.descriptor(1)},{world.descriptor(3)}"
    result = runner.invoke(app, ["custody", "init", "--home", str(home), "--nodes", nodes])
    assert result.exit_code == 1 and "node node3" in result.output
    assert not (home / cfg.CONFIG_FILE).exists()
    good = runner.invoke(app, ["custody", "init", "--home", str(home), "--nodes", str(world.descriptor(1))])
    assert good.exit_code == 0, good.output


# -- custody status -------------------------------------------------------------------------------------------------


def test_custody_status_summarises_nodes_chain_database_and_pipeline(world: World, tmp_path: Path) -> None:
    home = tmp_path / "custody"
    nodes = [str(world.descriptor(i)) for i in (1, 3)]
    cfg.init_home(home, passphrase=None, nodes=nodes, listen=f"127.0.0.1:{free_port()}")  # no service listens there
    for name in ("authority.key", "authority.pub"):  # the home's authority is the one the cluster's nodes obey
        (home / "authority" / name).unlink()
    world.cluster.authority.save(home / "authority")
    result = runner.invoke(app, ["custody", "status", "--home", str(home), "--json"])
    assert result.exit_code == 1  # node3 is unsafe, no database yet, and the embedded chain's service is not up
    report = json.loads(result.output)
    assert [(n["name"], n["reachable"], n["safe"]) for n in report["nodes"]] == [
        ("node1", True, True),
        ("node3", True, False),
    ]
    assert "--organisations-only" in report["nodes"][1]["hint"]
    assert [n["trusts_authority"] for n in report["nodes"]] == [True, True]
    assert report["chain"]["kind"] == "embedded" and report["chain"]["reachable"] is False
    assert report["database"]["reachable"] is False and "no database file" in report["database"]["detail"]
    assert report["pipeline"] is None
    assert not (home / "custody.db").exists()  # asked, not created: the service creates and migrates it
    text = runner.invoke(app, ["custody", "status", "--home", str(home)])
    assert "node3: UNSAFE" in text.output and "node1: safe" in text.output
    assert "does not trust" not in text.output
    assert "fix: stop it, run `harbour node approvers" in text.output


@pytest.mark.parametrize(
    ("organisations_only", "approvers", "require_evidence", "min_approvals", "alone"),
    [
        (True, 0, False, 0, False),
        (False, 2, True, 1, False),  # its own approvers' evidence on every signature
        (False, 0, False, 0, True),
        (False, 2, False, 1, True),  # a certificate without evidence is still signed
        (False, 0, True, 0, True),  # evidence, but any quorum the service claims
        (False, 2, True, 0, True),
    ],
)
def test_which_settings_sign_on_the_authoritys_word_alone(
    organisations_only: bool, approvers: int, require_evidence: bool, min_approvals: int, alone: bool
) -> None:
    settings = status.Settings(organisations_only, approvers, min_approvals, require_evidence, ())
    assert settings.signs_on_authority_alone is alone


def test_node_init_writes_the_setting_and_says_what_a_node_without_it_does(world: World, tmp_path: Path) -> None:
    (tmp_path / "auth").mkdir()
    world.cluster.authority.save(tmp_path / "auth")
    pub = str(tmp_path / "auth" / "authority.pub")
    env = {"HARBOUR_NODE_PASSPHRASE": "a node passphrase"}
    base = ["node", "init", "--name", "n", "--listen", "127.0.0.1:7999", "--authority", pub]
    safe = runner.invoke(app, [*base, "--dir", str(tmp_path / "safe"), "--organisations-only"], env=env)
    assert safe.exit_code == 0, safe.output
    assert "note: this node makes and signs keys of no organisation" not in safe.output
    assert json.loads((tmp_path / "safe" / "node.json").read_text())["organisations_only"] is True
    loose = runner.invoke(app, [*base, "--dir", str(tmp_path / "loose")], env=env)
    assert loose.exit_code == 0, loose.output
    assert "note: this node makes and signs keys of no organisation" in loose.output
    assert "--organisations-only" in loose.output
    assert json.loads((tmp_path / "loose" / "node.json").read_text())["organisations_only"] is False
