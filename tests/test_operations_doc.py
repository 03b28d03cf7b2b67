"""docs/operations.md, run exactly as written, and the refusals of mutual TLS between the coordinator and the nodes.

Every ``sh`` block of the guide, in order, in one shell, in an empty directory:
PostgreSQL roles and a database on the test's server, a CA and certificates made
with openssl, three signer nodes serving mutual TLS, the service on two processes,
an approval key rotated and a lost admin token replaced through the admin quorum,
and the database backed up and restored (PostgreSQL and SQLite). The test adds
only what is around the text: ``harbour`` on the PATH, ``PGHOST``/``PGPORT``/``PGUSER``
naming its server, ``set -e`` (any failing command fails the test), a private HOME,
and stopping what the guide started. Then it reads back what the guide claims.

The other tests are what the guide shows only from the outside: a node whose
``node.json`` lost its TLS setting does not start, a key file others can read is
refused, and the coordinator's transport refuses an ``https://`` node without a
client certificate and is refused by a node for a certificate of another CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from harbour.cli import cluster
from harbour.custody.errors import Invalid
from harbour.node import approval, rpc
from harbour.node.config import NodeConfig, NodeStartError, init_node
from harbour.node.driving import ClusterError, SessionDriver
from harbour.node.identity import NodeDescriptor
from harbour.node.service import NodeService
from harbour.node.tls import TlsError, TlsFiles
from harbour.node.transport import HttpTransport, TransportError
from postgres import PostgresServer, free_port

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "operations.md"
HARBOUR = Path(sys.executable).parent
PASSPHRASE = "node store passphrase, long and random"


def guide() -> str:
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), flags=re.DOTALL)
    assert len(blocks) >= 10, "the guide's walk-through was not found"
    return "\n".join(blocks)


def test_the_operations_guide_runs_as_written(tmp_path: Path, postgres_server: PostgresServer) -> None:
    work = tmp_path / "walk"
    work.mkdir()
    script = "set -e\ntrap 'kill $(cat *.pid) 2>/dev/null || true' EXIT\n" + guide()
    env = {
        **os.environ,
        "PATH": f"{HARBOUR}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "PGHOST": "127.0.0.1",
        "PGPORT": str(postgres_server.port),
        "PGUSER": postgres_server.superuser,
    }
    for name in list(env):
        if name.startswith(("HARBOUR_", "PGPASS", "PGSERVICE", "PGDATABASE", "PGSSL")):
            env.pop(name)
    try:
        done = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        assert done.returncode == 0, f"stdout:\n{done.stdout[-4000:]}\nstderr:\n{done.stderr[-6000:]}"

        # The service's role may change rows, not the schema, and never the logs' history.
        app = f"host=127.0.0.1 port={postgres_server.port} user=harbour_app dbname=custody"
        with psycopg.connect(app, autocommit=True) as connection:
            assert connection.execute("SELECT count(*) FROM governance_entries").fetchone() == (5,)
            for sql in (
                "CREATE TABLE intruder (x int)",
                "DROP TABLE users",
                "DELETE FROM audit_events",
                "UPDATE governance_entries SET seq = seq",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    connection.execute(sql)
    finally:
        postgres_server.execute("DROP DATABASE IF EXISTS custody WITH (FORCE)")
        postgres_server.execute("DROP ROLE IF EXISTS harbour_app")
        postgres_server.execute("DROP ROLE IF EXISTS harbour_owner")

    # What the walk-through claims happened, read back from what it left behind.
    assert "does not verify under carol's approval key" in (work / "old-key.out").read_text()
    assert "unknown or revoked credential (HTTP 401)" in (work / "lost.out").read_text()
    ready = json.loads((work / "ready.json").read_text())
    assert ready["ready"] is True and ready["checks"]["nodes"]["status"] == "ok"
    assert sorted(n["name"] for n in ready["checks"]["nodes"]["nodes"] if n["answers"]) == ["n1", "n2", "n3"]
    pushed = json.loads((work / "push.json").read_text())["nodes"]
    assert sorted((row["node"], row.get("seq")) for row in pushed) == [("n1", 3), ("n2", 3), ("n3", 3)]
    entries = json.loads((work / "entries.json").read_text())["items"]
    carol_old = json.loads((work / "carol.pub.json").read_text())["public_key"]
    carol_new = json.loads((work / "carol-2.pub.json").read_text())["public_key"]
    keys = [{s.get("public_key") for s in entry.get("signers") or []} for entry in entries]
    assert carol_old in keys[1] and carol_new not in keys[1], "bob's entry was signed with carol's old key"
    assert carol_new in keys[3] and carol_old not in keys[3], "erin's entry with carol's new one"
    config = json.loads((work / "custody" / "custody.json").read_text())
    assert config["node_tls"]["cert"] == str(work / "tls" / "custody.crt")
    assert "@" in config["database"] and ":" not in config["database"].split("@")[0].split("//")[1]
    for i in (1, 2, 3):
        assert json.loads((work / f"n{i}" / "descriptor.json").read_text())["url"] == f"https://127.0.0.1:730{i}"
        assert (work / "tls" / f"n{i}.key").stat().st_mode & 0o077 == 0
    backup = work / "small-backup.db"
    assert backup.stat().st_mode & 0o777 == 0o600
    assert (work / "home.tar.cms").read_bytes()[:1] == b"\x30", "the home's archive is DER CMS, not a plain tar"


# -- mutual TLS, from the outside ------------------------------------------------------------------------------------


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _ca(directory: Path, name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(_name(name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "ca.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


def _leaf(
    directory: Path, name: str, ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], server: bool
) -> tuple[Path, Path]:
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(name))
        .issuer_name(ca[1].subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    cert = builder.sign(ca[0], hashes.SHA256())
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return cert_path, key_path


class TlsWorld:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca = _ca(root / "pki", "nodes CA")
        self.other = _ca(root / "other", "another CA")
        self.node_cert = _leaf(root / "pki", "node", self.ca, server=True)
        self.client = TlsFiles(*_leaf(root / "pki", "client", self.ca, server=False), root / "pki" / "ca.crt")
        self.stranger = TlsFiles(*_leaf(root / "other", "client", self.other, server=False), root / "pki" / "ca.crt")
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.node = root / "node"
        authority = approval.AuthorityKey.generate().public_bytes  # approves nothing here: the node is only asked
        init_node(
            self.node,
            name="tlsnode",
            listen=f"127.0.0.1:{self.port}",
            authorities=[authority],
            passphrase=PASSPHRASE,
            kdf_n=2**12,
            tls=TlsFiles(*self.node_cert, root / "pki" / "ca.crt"),
        )


@pytest.fixture(scope="module")
def tls_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsWorld]:
    world = TlsWorld(tmp_path_factory.mktemp("tls"))
    env = {**os.environ, "HARBOUR_NODE_PASSPHRASE": PASSPHRASE}
    log = (world.root / "node.log").open("w")
    process = subprocess.Popen(
        [str(HARBOUR / "harbour"), "node", "run", "--dir", str(world.node)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        for _ in range(300):
            if "listening" in (world.root / "node.log").read_text() or process.poll() is not None:
                break
            asyncio.run(asyncio.sleep(0.1))
        assert "listening on https://" in (world.root / "node.log").read_text(), (world.root / "node.log").read_text()
        yield world
    finally:
        process.terminate()
        process.wait(10)
        log.close()


async def _describe(url: str, tls: TlsFiles | None) -> dict[str, object]:
    transport = HttpTransport(url, None if tls is None else tls.client_context())
    try:
        return rpc.parse_response(await transport.call(rpc.encode({"op": "describe"}), 5.0), "tlsnode")
    finally:
        await transport.aclose()


def test_the_coordinator_with_a_certificate_of_the_nodes_ca_is_answered(tls_world: TlsWorld) -> None:
    answer = asyncio.run(_describe(tls_world.url, tls_world.client))
    assert json.loads(str(answer["descriptor"]))["name"] == "tlsnode"


def test_a_client_certificate_of_another_ca_is_refused_by_the_node(tls_world: TlsWorld) -> None:
    with pytest.raises(TransportError):
        asyncio.run(_describe(tls_world.url, tls_world.stranger))


def test_an_https_node_without_a_client_certificate_is_refused_before_connecting(tls_world: TlsWorld) -> None:
    with pytest.raises(TransportError, match="client certificate"):
        HttpTransport(tls_world.url)


def test_a_coordinator_without_a_client_certificate_calls_an_https_node_unreachable_and_says_why(
    tls_world: TlsWorld,
) -> None:
    descriptor = NodeDescriptor.from_json((tls_world.node / "descriptor.json").read_bytes())

    async def ask(driver: SessionDriver) -> NodeDescriptor:
        async with driver:
            return await driver.describe(descriptor)

    with pytest.raises(ClusterError, match="client certificate") as refused:
        asyncio.run(ask(SessionDriver()))
    assert refused.value.reason == "unreachable"
    assert asyncio.run(ask(SessionDriver(tls=tls_world.client.client_context()))).node_id == descriptor.node_id


def test_a_node_of_another_ca_is_refused_by_the_coordinator(tls_world: TlsWorld) -> None:
    # The coordinator trusts only the CA it was given for the nodes: here the other one.
    wrong = TlsFiles(tls_world.client.cert, tls_world.client.key, tls_world.root / "other" / "ca.crt")
    with pytest.raises(TransportError, match="TLS"):
        asyncio.run(_describe(tls_world.url, wrong))


def test_a_node_json_that_lost_its_tls_setting_does_not_start(tls_world: TlsWorld, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "node"
    shutil.copytree(tls_world.node, copy)
    config = json.loads((copy / "node.json").read_text())
    del config["tls"]
    config["url"] = config["url"].replace("https://", "http://")
    (copy / "node.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with pytest.raises(NodeStartError, match=r"node\.json differs"):
        NodeService.open(copy, passphrase=PASSPHRASE, offline=False)


def test_a_tls_key_others_can_read_is_refused(tls_world: TlsWorld, tmp_path: Path) -> None:
    key = tmp_path / "open.key"
    key.write_bytes(tls_world.client.key.read_bytes())
    key.chmod(0o644)
    with pytest.raises(TlsError, match="chmod 600"):
        TlsFiles(tls_world.client.cert, key, tls_world.client.ca).client_context()
    with pytest.raises(NodeStartError, match="chmod 600"):
        init_node(
            tmp_path / "n",
            name="n",
            listen="127.0.0.1:7999",
            authorities=[bytes(32)],
            passphrase=PASSPHRASE,
            tls=TlsFiles(tls_world.node_cert[0], key, tls_world.client.ca),
        )


def test_a_tls_node_is_never_announced_at_a_plain_http_url(tls_world: TlsWorld, tmp_path: Path) -> None:
    files = TlsFiles(tls_world.node_cert[0], tls_world.node_cert[1], tls_world.client.ca)
    with pytest.raises(NodeStartError, match="https://"):
        init_node(
            tmp_path / "n",
            name="n",
            listen="127.0.0.1:7999",
            url="http://127.0.0.1:7999",
            authorities=[approval.AuthorityKey.generate().public_bytes],
            passphrase=PASSPHRASE,
            tls=files,
        )
    assert not (tmp_path / "n").exists()
    config = json.loads((tls_world.node / "node.json").read_text())
    config["url"] = config["url"].replace("https://", "http://")
    with pytest.raises(NodeStartError, match="https://"):
        NodeConfig.from_json(json.dumps(config))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--tls-cert", "x.crt"], "all three files"),
        (["--tls-cert", "x.crt", "--tls-key", "x.key", "--tls-ca", "ca.crt"], "no such file"),
    ],
)
def test_cluster_tls_options_given_in_part_or_missing_are_unusable_input(
    tmp_path: Path, options: list[str], message: str
) -> None:
    with contextlib.chdir(tmp_path):
        done = CliRunner().invoke(cluster.app, [*options, "refresh", "--key-id", "k", "--certificate", "c"])
    assert done.exit_code == 2, done.output
    assert message in done.output


def test_governance_push_with_tls_settings_in_part_is_unusable_input(tls_world: TlsWorld) -> None:
    from harbour.cli import governance

    done = CliRunner().invoke(
        governance.governance_app,
        ["push", "--nodes", str(tls_world.node / "descriptor.json")],
        env={"HARBOUR_CLUSTER_TLS_CERT": str(tls_world.client.cert), "HARBOUR_TOKEN": "hbk_x_y"},
    )
    assert done.exit_code == 2, done.output
    assert "all three files" in done.output


def test_custody_init_and_serve_refuse_node_tls_settings_in_part_or_exposed(
    tls_world: TlsWorld, tmp_path: Path
) -> None:
    from harbour.cli import custody
    from harbour.custody import config as cfg

    client = tls_world.client
    done = CliRunner().invoke(
        custody.app, ["init", "--home", str(tmp_path / "a"), "--node-tls-cert", str(client.cert)], env={}
    )
    assert done.exit_code == 2 and "all three files" in done.output
    assert not (tmp_path / "a").exists()
    options = ["--node-tls-cert", str(client.cert), "--node-tls-key", str(client.key), "--node-tls-ca", str(client.ca)]
    done = CliRunner().invoke(custody.app, ["init", "--home", str(tmp_path / "b"), *options], env={})
    assert done.exit_code == 0, done.output
    config = cfg.CustodyConfig.load(tmp_path / "b")
    assert config.node_client_tls() == client
    # The key became readable by others after init: the service does not start on it.
    exposed = tmp_path / "exposed.key"
    exposed.write_bytes(client.key.read_bytes())
    exposed.chmod(0o640)
    config.node_tls = {**client.to_json(), "key": str(exposed)}
    with pytest.raises(Invalid, match="chmod 600"):
        cfg.open_deployment(config, start=False)
    config.node_tls = {"cert": "relative.crt", "key": str(client.key), "ca": str(client.ca)}
    with pytest.raises(Invalid, match="absolute"):
        config.check()


def test_tls_settings_that_are_not_three_absolute_paths_are_refused() -> None:
    for bad in ({"cert": "/a", "key": "/b"}, {"cert": "a", "key": "/b", "ca": "/c"}, ["/a", "/b", "/c"]):
        with pytest.raises(TlsError):
            TlsFiles.from_json(bad)
