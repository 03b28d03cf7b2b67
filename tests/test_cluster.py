"""Signer nodes as real processes on loopback: every scheme, every lifecycle operation.

Each node is its own ``harbour node run`` process with its own encrypted store;
the coordinator reaches them over HTTP and sees only sealed messages. Every
signature is checked here by an independent verifier (libsecp256k1 through
coincurve for ECDSA and BIP-340, PyNaCl for Ed25519), not only by the nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import coincurve
import nacl.signing
import pytest

from cluster import Cluster
from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc import hd, taproot
from harbour.node import rpc, signlog
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator, SignOutcome

SCHEMES = ["frost-secp256k1", "frost-ed25519", "frost-taproot", "ecdsa-secp256k1"]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def independent_verify(outcome: SignOutcome) -> bool:
    """The signature checked without Harbour's verifiers."""
    scheme, key, msg, sig = outcome.key.scheme, outcome.group_public_key, outcome.message, outcome.signature
    if scheme == "ecdsa-secp256k1":
        assert isinstance(sig, EcdsaSignature) and isinstance(key, Secp256k1Point)
        compact = sig.to_bytes()
        pub = coincurve.PublicKey(key.encode())
        recovered = coincurve.PublicKey.from_signature_and_message(compact + bytes([sig.recovery_id]), msg, hasher=None)
        return bool(pub.verify(_der(compact), msg, hasher=None)) and recovered.format() == key.encode()
    assert isinstance(sig, bytes)
    if scheme == "frost-ed25519":
        try:
            nacl.signing.VerifyKey(key.encode()).verify(msg, sig)
            return True
        except Exception:
            return False
    if scheme == "frost-taproot":
        assert isinstance(key, Secp256k1Point)
        output = taproot.output_key(key, None)
        assert isinstance(output, Secp256k1Point)
        return bool(coincurve.PublicKeyXOnly(output.x_bytes).verify(sig, msg))
    # frost-secp256k1 (RFC 9591): z*G == R + c*Y, checked with coincurve point arithmetic
    from harbour.mpc.ciphersuite import suite_by_name

    suite = suite_by_name(scheme)
    return bool(suite.verify(key, msg, sig))


def _der(compact: bytes) -> bytes:
    r, s = int.from_bytes(compact[:32], "big"), int.from_bytes(compact[32:], "big")

    def integer(v: int) -> bytes:
        raw = v.to_bytes((v.bit_length() + 8) // 8, "big")
        return b"\x02" + bytes([len(raw)]) + raw

    body = integer(r) + integer(s)
    return b"\x30" + bytes([len(body)]) + body


def log_outcomes(cluster: Cluster, index: int, session_kind: str | None = None) -> list[str]:
    entries = signlog.entries(cluster.nodes[index].directory / "sign.log")
    return [e.outcome for e in entries if session_kind is None or e.kind == session_kind]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"), 5)
    with c:
        yield c


@pytest.fixture(scope="module")
def keys(cluster: Cluster) -> dict[str, ClusterKey]:
    """One 2-of-3 key per scheme on nodes 1..3, made by distributed key generation across the processes."""

    async def make() -> dict[str, ClusterKey]:
        three = cluster.descriptors[:3]
        async with cluster.coordinator() as co:
            return {s: await co.keygen(three, 2, s, cluster.keygen_cert(s, 2, three)) for s in SCHEMES}

    made: dict[str, ClusterKey] = run(make())
    return made


@pytest.mark.parametrize("scheme", SCHEMES)
def test_keygen_gives_every_node_the_same_key(cluster: Cluster, keys: dict[str, ClusterKey], scheme: str) -> None:
    key = keys[scheme]
    assert key.scheme == scheme and key.threshold == 2 and sorted(key.roster) == [1, 2, 3]

    async def ask() -> list[dict[str, Any]]:
        async with cluster.coordinator() as co:
            return [await co._call(d, {"op": "key", "key_id": key.key_id}) for d in cluster.descriptors[:3]]

    answers = run(ask())
    assert {bytes(a["public"]) for a in answers} == {rpc.encode_public(key.public)}
    assert len(key.chain_code) == 32
    # nodes 4 and 5 took no part
    for index in (3, 4):
        assert "staged" not in log_outcomes(cluster, index, "keygen")


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("signers", [[1, 2], [1, 3], [2, 3]])
def test_every_subset_signs(cluster: Cluster, keys: dict[str, ClusterKey], scheme: str, signers: list[int]) -> None:
    key = keys[scheme]
    message = hashlib.sha256(f"{scheme} {signers}".encode()).digest()

    async def sign() -> SignOutcome:
        async with cluster.coordinator() as co:
            outcome: SignOutcome = await co.sign(key, message, cluster.sign_cert(key, message, signers=signers))
            return outcome

    outcome = run(sign())
    assert outcome.signers == signers
    assert independent_verify(outcome)


def test_concurrent_sessions_spread_over_the_nodes(cluster: Cluster, keys: dict[str, ClusterKey]) -> None:
    """Without named signers, each session goes to the live nodes with the fewest sessions running on them."""
    key = keys["frost-secp256k1"]
    messages = [hashlib.sha256(f"spread {i}".encode()).digest() for i in range(3)]

    async def sign() -> tuple[list[SignOutcome], SignOutcome]:
        async with cluster.coordinator() as co:
            outcomes = await asyncio.gather(*(co.sign(key, m, cluster.sign_certs(key, m)) for m in messages))
            alone = await co.sign(key, messages[0], cluster.sign_certs(key, messages[0]))
            return list(outcomes), alone

    outcomes, alone = run(sign())
    assert sorted(o.signers for o in outcomes) == [[1, 2], [1, 3], [2, 3]]
    assert alone.signers == [1, 2]  # nothing else running: the first t parties, as always
    assert all(independent_verify(o) for o in [*outcomes, alone])


@pytest.mark.parametrize("scheme", SCHEMES)
def test_derive_and_sign(cluster: Cluster, keys: dict[str, ClusterKey], scheme: str) -> None:
    """Signing under m/0/3 gives a signature for the BIP-32 child key, derived here from public data."""
    key = keys[scheme]
    message = hashlib.sha256(b"child " + scheme.encode()).digest()

    async def sign() -> SignOutcome:
        async with cluster.coordinator() as co:
            cert = cluster.sign_cert(key, message, path="m/0/3")
            outcome: SignOutcome = await co.sign(key, message, cert, path="m/0/3")
            return outcome

    outcome = run(sign())
    child = hd.derive(key.public.group, key.public.group_public_key, key.chain_code, "m/0/3").public_key
    assert outcome.group_public_key == child != key.public.group_public_key
    assert independent_verify(outcome)


def test_certificate_for_another_path_is_refused(cluster: Cluster, keys: dict[str, ClusterKey]) -> None:
    key = keys["ecdsa-secp256k1"]
    message = hashlib.sha256(b"path").digest()

    async def sign() -> None:
        async with cluster.coordinator() as co:
            await co.sign(key, message, cluster.sign_cert(key, message, path="m/0/3"), path="m/0/4")

    with pytest.raises(ClusterError) as err:
        run(sign())
    assert err.value.reason == "approval"


def test_ed25519_signs_a_long_message(cluster: Cluster, keys: dict[str, ClusterKey]) -> None:
    key = keys["frost-ed25519"]
    message = b"a transaction that is not a digest " * 10

    async def sign() -> SignOutcome:
        async with cluster.coordinator() as co:
            outcome: SignOutcome = await co.sign(key, message, cluster.sign_certs(key, message))
            return outcome

    assert independent_verify(run(sign()))


@pytest.mark.parametrize("scheme", SCHEMES)
def test_refresh_then_reshare_keep_the_key(cluster: Cluster, scheme: str) -> None:
    """keygen on 1..3 -> refresh -> reshare to 3-of-4 on {1, 4, 5, 2} -> sign with new members."""
    three = cluster.descriptors[:3]

    async def lifecycle() -> tuple[ClusterKey, ClusterKey, ClusterKey, SignOutcome]:
        async with cluster.coordinator() as co:
            key = await co.keygen(three, 2, scheme, cluster.keygen_cert(scheme, 2, three))
            refreshed = await co.refresh(key, cluster.refresh_cert(key))
            new_nodes = [cluster.descriptors[i] for i in (0, 3, 4, 1)]
            moved = await co.reshare(refreshed, new_nodes, 3, cluster.reshare_cert(refreshed, new_nodes, 3))
            message = hashlib.sha256(b"after reshare").digest()
            outcome = await co.sign(moved, message, cluster.sign_cert(moved, message, signers=[1, 4, 5]))
            return key, refreshed, moved, outcome

    key, refreshed, moved, outcome = run(lifecycle())
    assert refreshed.public.group_public_key == key.public.group_public_key
    assert refreshed.public.fingerprint() != key.public.fingerprint()
    assert moved.public.group_public_key == key.public.group_public_key
    assert moved.threshold == 3 and sorted(moved.roster) == [1, 2, 4, 5]
    assert independent_verify(outcome)
    # node 3 left the committee: it logged the commit and holds no share any more
    assert log_outcomes(cluster, 2, "reshare")[-1] == "committed"

    async def ask_node3() -> None:
        async with cluster.coordinator() as co:
            await co._call(cluster.descriptors[2], {"op": "key", "key_id": key.key_id})

    with pytest.raises(ClusterError) as err:
        run(ask_node3())
    assert err.value.reason == "unknown-key"


def test_signing_skips_a_node_that_is_down(tmp_path: Path) -> None:
    with Cluster(tmp_path, 3) as cluster:
        scheme = "ecdsa-secp256k1"

        async def go() -> SignOutcome:
            async with cluster.coordinator() as co:
                key = await co.keygen(
                    cluster.descriptors, 2, scheme, cluster.keygen_cert(scheme, 2, cluster.descriptors)
                )
            cluster.nodes[0].kill()
            async with cluster.coordinator() as co:
                message = hashlib.sha256(b"node 1 is down").digest()
                outcome: SignOutcome = await co.sign(key, message, cluster.sign_certs(key, message))
                return outcome

        outcome = run(go())
        assert outcome.signers == [2, 3]
        assert independent_verify(outcome)


# -- the cold node ------------------------------------------------------------------------------


class OfflineOperator(threading.Thread):
    """Carries request files to a node that has no network and brings the responses back."""

    def __init__(self, node_dir: Path, exchange: Path, env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.node_dir, self.exchange, self.env = node_dir, exchange, env
        self.stopped = threading.Event()
        self.rounds = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while not self.stopped.is_set():
            for request in sorted(self.exchange.glob("*.request")):
                response = request.with_suffix(".response")
                if response.exists():
                    continue
                done = subprocess.run(
                    [
                        sys.executable,
                        "-m",
                        "harbour.cli.main",
                        "node",
                        "offline",
                        "--dir",
                        str(self.node_dir),
                        "--in",
                        str(request),
                        "--out",
                        str(response),
                    ],
                    env=self.env,
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                self.rounds += 1
                if done.returncode != 0:
                    self.errors.append(done.stderr.decode())
            time.sleep(0.02)


@pytest.mark.parametrize("scheme", ["frost-secp256k1", "ecdsa-secp256k1"])
def test_cold_node_takes_part_by_files(tmp_path: Path, scheme: str) -> None:
    """Node 3 never listens: each of its rounds is a request file in and a response file out."""
    cluster = Cluster(tmp_path, 3)
    cold = cluster.nodes[2]
    exchange = tmp_path / "exchange"
    exchange.mkdir()
    operator = OfflineOperator(cold.directory, exchange, cold.env)
    for node in cluster.nodes[:2]:
        node.start()
    operator.start()
    try:

        async def go() -> SignOutcome:
            async with Coordinator(offline={cold.name: exchange}, timeout=120) as co:
                key = await co.keygen(
                    cluster.descriptors, 2, scheme, cluster.keygen_cert(scheme, 2, cluster.descriptors)
                )
                message = hashlib.sha256(b"signed with the cold node").digest()
                outcome: SignOutcome = await co.sign(key, message, cluster.sign_cert(key, message, signers=[1, 3]))
                return outcome

        outcome = run(go())
    finally:
        operator.stopped.set()
        operator.join()
        cluster.stop()
    assert independent_verify(outcome)
    assert operator.rounds >= 4
    assert log_outcomes(cluster, 2, "sign")[-1] == "signed"
    # session state between rounds never sits in the clear: no file under the node holds the share
    assert not list((cold.directory / "store" / "objects").glob("sessions/*")), "finished sessions are removed"


# -- the CLI ------------------------------------------------------------------------------------


def harbour(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "harbour.cli.main", *args], capture_output=True, text=True, env=env, timeout=120
    )


def test_cli_keygen_and_sign(tmp_path: Path) -> None:
    with Cluster(tmp_path / "nodes", 3) as cluster:
        auth = tmp_path / "auth"
        auth.mkdir()
        cluster.authority.save(auth)
        files = []
        for node in cluster.nodes:
            path = tmp_path / f"{node.name}.json"
            path.write_text(node.descriptor.to_json())
            files.append(str(path))
        nodes = ",".join(files)
        state = str(tmp_path / "state")
        certified = harbour(
            "authority",
            "certify",
            "--dir",
            str(auth),
            "--kind",
            "keygen",
            "--param",
            "scheme=ecdsa-secp256k1",
            "--param",
            "threshold=2",
            "--nodes",
            nodes,
            "--expires-in",
            "300",
            "--out",
            str(tmp_path / "kg.cert"),
        )
        assert certified.returncode == 0, certified.stderr
        made = harbour(
            "cluster",
            "keygen",
            "--nodes",
            nodes,
            "-t",
            "2",
            "--scheme",
            "ecdsa-secp256k1",
            "--certificate",
            str(tmp_path / "kg.cert"),
            "--state",
            state,
            "--json",
        )
        assert made.returncode == 0, made.stderr
        key = json.loads(made.stdout)
        assert {"key_id", "scheme", "threshold", "parties", "public_key"} <= set(key)
        digest = hashlib.sha256(b"cli").hexdigest()
        certified = harbour(
            "authority",
            "certify",
            "--dir",
            str(auth),
            "--key-id",
            key["key_id"],
            "--message",
            digest,
            "--path",
            "m/0/3",
            "--signers",
            "1,3",
            "--expires-in",
            "300",
            "--out",
            str(tmp_path / "s.cert"),
        )
        assert certified.returncode == 0, certified.stderr
        sign = ["cluster", "sign", "--key-id", key["key_id"], "--path", "m/0/3", "--message", digest,
                "--certificate", str(tmp_path / "s.cert"), "--state", state, "--json"]  # fmt: skip
        signed = harbour(*sign)
        assert signed.returncode == 0, signed.stderr
        doc = json.loads(signed.stdout)
        demo_fields = {"scheme", "threshold", "parties", "signers", "public_key", "message", "signature", "recovery_id"}
        assert demo_fields <= set(doc)
        pub = coincurve.PublicKey(bytes.fromhex(doc["public_key"]))
        assert pub.verify(_der(bytes.fromhex(doc["signature"])), bytes.fromhex(digest), hasher=None)
        # the same certificate again: refused (replay), exit 1, as a problem document under --json
        again = harbour(*sign)
        refusal = json.loads(again.stdout)
        assert again.returncode == refusal["exit_code"] == 1 and "replayed" in refusal["detail"], again.stdout


def test_cli_refuses_bad_input(tmp_path: Path) -> None:
    bad = harbour(
        "cluster", "sign", "--key-id", "../etc", "--message", "00", "--certificate", "x", "--state", str(tmp_path)
    )
    assert bad.returncode == 2 and "key_id" in bad.stderr
    missing = harbour(
        "cluster", "sign", "--key-id", "nokey", "--message", "00", "--certificate", "x", "--state", str(tmp_path)
    )
    assert missing.returncode == 2 and "no record of key" in missing.stderr
    nodes = harbour(
        "cluster",
        "keygen",
        "--nodes",
        str(tmp_path / "nope.json"),
        "-t",
        "1",
        "--scheme",
        "frost-secp256k1",
        "--certificate",
        "x",
        "--state",
        str(tmp_path),
    )
    assert nodes.returncode == 2 and "cannot read" in nodes.stderr
    no_dir = harbour("node", "run", "--dir", str(tmp_path / "nothing"))
    assert no_dir.returncode == 1 and "no node" in no_dir.stderr


def test_nodes_with_their_key_encryption_key_on_a_pkcs11_token(tmp_path: Path, softhsm: Any) -> None:
    """Three node processes whose stores are unlocked by a SoftHSM2 token (one KEK each): keygen and sign."""
    scheme = "ecdsa-secp256k1"
    with Cluster(tmp_path, 3, pkcs11=(softhsm.module, softhsm.token_label, softhsm.pin)) as cluster:
        for node in cluster.nodes:
            store = json.loads((node.directory / "store" / "store.json").read_text())
            assert store["kek"]["kind"] == "pkcs11"
            assert "HARBOUR_NODE_PASSPHRASE" not in node.env

        async def go() -> SignOutcome:
            async with cluster.coordinator() as co:
                key = await co.keygen(
                    cluster.descriptors, 2, scheme, cluster.keygen_cert(scheme, 2, cluster.descriptors)
                )
                message = hashlib.sha256(b"hsm-backed nodes").digest()
                outcome: SignOutcome = await co.sign(key, message, cluster.sign_cert(key, message, signers=[2, 3]))
                return outcome

        assert independent_verify(run(go()))


def test_offline_node_refuses_bad_files(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 1)
    node = cluster.nodes[0]
    garbage = tmp_path / "garbage.request"
    garbage.write_bytes(b"\x00not cbor")
    response = tmp_path / "garbage.response"
    done = harbour(
        "node", "offline", "--dir", str(node.directory), "--in", str(garbage), "--out", str(response), env=node.env
    )
    assert done.returncode == 1 and "canonical CBOR map" in done.stderr
    answer = rpc.parse_response  # the response file is written, so the coordinator learns why
    with pytest.raises(rpc.NodeError) as err:
        answer(response.read_bytes(), node.name)
    assert err.value.reason == "bad-request"
    again = harbour(
        "node", "offline", "--dir", str(node.directory), "--in", str(garbage), "--out", str(response), env=node.env
    )
    assert again.returncode == 2 and "never overwritten" in again.stderr
    missing = harbour(
        "node",
        "offline",
        "--dir",
        str(node.directory),
        "--in",
        str(tmp_path / "none"),
        "--out",
        str(tmp_path / "x"),
        env=node.env,
    )
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    wrong = {**node.env, "HARBOUR_NODE_PASSPHRASE": "wrong"}
    locked = harbour(
        "node", "offline", "--dir", str(node.directory), "--in", str(garbage), "--out", str(tmp_path / "y"), env=wrong
    )
    assert locked.returncode == 1 and "passphrase" in locked.stderr
    assert not (tmp_path / "y").exists()


def test_cli_finish_discard_and_init_refuse_bad_input(tmp_path: Path) -> None:
    short = harbour("cluster", "finish", "--session", "abcd", "--nodes", "x.json", "--state", str(tmp_path))
    assert short.returncode == 2 and "64-hex-digit" in short.stderr
    nodes = harbour(
        "cluster",
        "discard",
        "--session",
        "00" * 32,
        "--nodes",
        str(tmp_path / "none.json"),
        "--certificate",
        "x",
        "--state",
        str(tmp_path),
    )
    assert nodes.returncode == 2 and "cannot read" in nodes.stderr
    auth = tmp_path / "auth"
    assert harbour("authority", "init", "--out", str(auth), "--insecure-plaintext").returncode == 0
    env = {**os.environ, "HARBOUR_NODE_PASSPHRASE": "pw"}
    base = ["node", "init", "--dir", str(tmp_path / "n"), "--name", "n", "--authority", str(auth / "authority.pub")]
    timeout = harbour(*base, "--listen", "127.0.0.1:7001", "--session-timeout", "0", env=env)
    assert timeout.returncode == 2 and "session-timeout" in timeout.stderr
    listen = harbour(*base, "--listen", "127.0.0.1:99999", env=env)
    assert listen.returncode == 2 and "port" in listen.stderr
    no_secret = harbour(
        *base, "--listen", "127.0.0.1:7001", env={k: v for k, v in env.items() if k != "HARBOUR_NODE_PASSPHRASE"}
    )
    assert no_secret.returncode == 2 and "HARBOUR_NODE_PASSPHRASE" in no_secret.stderr
    made = harbour(*base, "--listen", "127.0.0.1:7001", "--session-timeout", "900", env=env)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "n"
    assert json.loads((tmp_path / "n" / "node.json").read_text())["session_timeout"] == 900
    again = harbour(*base, "--listen", "127.0.0.1:7001", env=env)
    assert again.returncode == 2 and "already holds a node" in again.stderr
