"""The node's request handling in one process: every malformed or unauthorised request is refused.

The same :meth:`NodeService.handle` answers HTTP and the cold node's files, so
these tests call it directly with hostile bytes and check the refusal, the log,
and that the node keeps working afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import pickle
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest

from harbour.mpc import runner
from harbour.mpc.ecdsa_sign import EcdsaSigner
from harbour.node import approval, rpc, signlog
from harbour.node.coordinator import ClusterKey, Coordinator, admin_params
from harbour.node.identity import NodeDescriptor
from harbour.node.keyfile import MIN_N
from harbour.node.service import NodeService, NodeStartError, init_node

PASS = "node passphrase"


class Local:
    """A transport that calls the node in this process."""

    def __init__(self, node: NodeService) -> None:
        self.node = node

    async def call(self, request: bytes, timeout: float) -> bytes:
        return self.node.handle(request)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def trio(tmp_path: Path) -> Any:
    authority = approval.AuthorityKey.generate()
    clock = Clock()
    nodes, descriptors = [], []
    for i in range(1, 4):
        d = init_node(
            tmp_path / f"n{i}",
            name=f"n{i}",
            listen=f"127.0.0.1:{7300 + i}",
            authorities=[authority.public_bytes],
            passphrase=PASS,
            kdf_n=MIN_N,
        )
        descriptors.append(d)
        nodes.append(NodeService.open(tmp_path / f"n{i}", passphrase=PASS, clock=clock))
    yield authority, nodes, descriptors, clock
    for node in nodes:
        node.close()


def coordinator(nodes: list[NodeService], descriptors: list[NodeDescriptor]) -> Coordinator:
    return Coordinator(transports={d.node_id: Local(n) for d, n in zip(descriptors, nodes, strict=True)})


def keygen(authority: approval.AuthorityKey, nodes: Any, descriptors: Any, scheme: str) -> ClusterKey:
    params = admin_params("keygen", scheme=scheme, threshold=2, nodes=descriptors)
    cert = approval.issue(authority, kind="keygen", key_id="", params=params, now=int(time.time()), expires_in=300)

    async def go() -> ClusterKey:
        async with coordinator(nodes, descriptors) as co:
            key: ClusterKey = await co.keygen(descriptors, 2, scheme, cert)
            return key

    result: ClusterKey = asyncio.run(go())
    return result


def answer(node: NodeService, request: dict[str, Any] | bytes) -> dict[str, Any]:
    data = request if isinstance(request, bytes) else rpc.encode(request)
    obj = cbor2.loads(node.handle(data))
    assert isinstance(obj, dict)
    return obj


def refused(node: NodeService, request: dict[str, Any] | bytes, reason: str) -> str:
    obj = answer(node, request)
    assert obj["ok"] is False, obj
    assert obj["reason"] == reason, obj
    message = obj["error"]
    assert isinstance(message, str)
    return message


# -- party state serialises ------------------------------------------------------------------


def test_a_signing_party_pickles_between_rounds() -> None:
    """Points pickle as their encoding, so a cold node can keep a party between two files."""
    shares = runner.keygen("ecdsa-secp256k1", 2, 3)
    sid = bytes(32)
    parties = {i: EcdsaSigner(sid, shares[i], [1, 2], hashlib.sha256(b"m").digest()) for i in (1, 2)}
    queue = [e for i in (1, 2) for e in parties[i].start()]
    while queue:
        env = queue.pop(0)
        dest = env.recipient if env.recipient is not None else 3 - env.sender
        parties[dest] = pickle.loads(pickle.dumps(parties[dest]))
        queue.extend(parties[dest].receive(env))
    assert parties[1].result == parties[2].result


# -- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "not valid CBOR"),
        (b"\xff\x00", "not valid CBOR"),
        (cbor2.dumps([1, 2]), "canonical CBOR map"),
        (cbor2.dumps({"v": 2, "op": "describe"}), "version"),
        (cbor2.dumps({"v": 1, "op": "steal"}, canonical=True), "unknown op"),
        (cbor2.dumps({"v": 1, "op": "describe", "x": 1}, canonical=True), "fields are wrong"),
        (cbor2.dumps({"op": "describe", "v": 1}), "canonical"),  # keys out of canonical order
        (rpc.encode({"op": "abort", "session_id": b"short"}), "session_id"),
        (rpc.encode({"op": "abort", "session_id": True}), "wrong type"),
        (rpc.encode({"op": "key", "key_id": "../../etc/passwd"}), "key_id"),
        (rpc.encode({"op": "deliver", "session_id": bytes(32), "messages": ["text"]}), "byte strings"),
        (rpc.encode({"op": "commit", "session_id": bytes(32), "fingerprint": bytes(31), "acks": {}}), "fingerprint"),
        (
            rpc.encode({"op": "start", "session_id": bytes(32), "kind": "mint", "certificate": b"", "args": {}}),
            "unknown session kind",
        ),
        (
            rpc.encode(
                {
                    "op": "start",
                    "session_id": bytes(32),
                    "kind": "sign",
                    "certificate": b"",
                    "args": {"key_id": "k", "path": "m", "message": b"", "signers": [1]},
                }
            ),
            "1..1024 bytes",
        ),
        (
            rpc.encode(
                {
                    "op": "start",
                    "session_id": bytes(32),
                    "kind": "sign",
                    "certificate": b"",
                    "args": {"key_id": "k", "path": "m", "message": b"m", "signers": [1, 1]},
                }
            ),
            "twice",
        ),
        (
            rpc.encode(
                {
                    "op": "start",
                    "session_id": bytes(32),
                    "kind": "keygen",
                    "certificate": b"",
                    "args": {"key_id": "k", "scheme": "frost-secp256k1", "threshold": 2, "roster": [[1, "{}"]]},
                }
            ),
            "roster entry",
        ),
    ],
)
def test_malformed_requests_are_refused(trio: Any, data: bytes, needle: str) -> None:
    _, nodes, _, _ = trio
    assert needle in refused(nodes[0], data, "bad-request")
    assert answer(nodes[0], {"op": "describe"})["ok"] is True


def test_oversized_request_is_refused_unread(trio: Any) -> None:
    _, nodes, _, _ = trio
    assert "larger than" in refused(nodes[0], b"\x00" * (rpc.MAX_REQUEST + 1), "bad-request")


def test_duplicate_roster_entries_are_refused(trio: Any) -> None:
    _, nodes, descriptors, _ = trio
    roster = [[1, descriptors[0].to_json()], [2, descriptors[0].to_json()]]
    request = {
        "op": "start",
        "session_id": bytes(32),
        "kind": "keygen",
        "certificate": b"",
        "args": {"key_id": "k", "scheme": "frost-secp256k1", "threshold": 2, "roster": roster},
    }
    assert "one node under two party numbers" in refused(nodes[0], request, "bad-request")


# -- requests the node will not act on ---------------------------------------------------------


def test_keygen_without_this_node_is_refused(trio: Any) -> None:
    _authority, nodes, descriptors, _ = trio
    roster = rpc.roster_value({1: descriptors[1], 2: descriptors[2]})
    request = {
        "op": "start",
        "session_id": bytes(32),
        "kind": "keygen",
        "certificate": b"",
        "args": {"key_id": "k", "scheme": "frost-secp256k1", "threshold": 2, "roster": roster},
    }
    assert "not in the session's roster" in refused(nodes[0], request, "bad-request")


def test_sign_with_unknown_key_or_foreign_signers_is_refused(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    base = {"op": "start", "session_id": bytes(32), "kind": "sign", "certificate": b""}
    args = {"key_id": "nokey", "path": "m", "message": bytes(32), "signers": [1, 2]}
    assert "no share of key" in refused(nodes[0], {**base, "args": args}, "unknown-key")
    args = {"key_id": key.key_id, "path": "m", "message": bytes(32), "signers": [2, 3]}
    assert "not one of the signers" in refused(nodes[0], {**base, "args": args}, "bad-request")
    args = {"key_id": key.key_id, "path": "m", "message": bytes(32), "signers": [1]}
    assert "at least 2" in refused(nodes[0], {**base, "args": args}, "bad-request")
    args = {"key_id": key.key_id, "path": "m/01", "message": bytes(32), "signers": [1, 2]}
    assert "m/01" in refused(nodes[0], {**base, "args": args}, "bad-request")
    args = {"key_id": key.key_id, "path": "m", "message": bytes(32), "signers": [1, 2]}
    assert "malformed" in refused(nodes[0], {**base, "args": args}, "approval")
    outcomes = [e.outcome for e in signlog.entries(nodes[0].directory / "sign.log") if e.kind == "sign"]
    assert outcomes == ["refused"], "only the request that reached the approval check is logged"


def test_keygen_must_use_the_certificate_key_name(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    params = admin_params("keygen", scheme="frost-secp256k1", threshold=2, nodes=descriptors)
    cert = approval.issue(
        authority, kind="keygen", key_id="treasury", params=params, now=int(time.time()), expires_in=60
    )
    request = {
        "op": "start",
        "session_id": bytes(32),
        "kind": "keygen",
        "certificate": cert,
        "args": {
            "key_id": "other",
            "scheme": "frost-secp256k1",
            "threshold": 2,
            "roster": rpc.roster_value(dict(enumerate(descriptors, start=1))),
        },
    }
    assert "'treasury'" in refused(nodes[0], request, "bad-request")


def test_keygen_certificate_binds_the_committee(trio: Any, tmp_path: Path) -> None:
    authority, nodes, descriptors, _ = trio
    params = admin_params("keygen", scheme="frost-secp256k1", threshold=2, nodes=descriptors[:2])
    cert = approval.issue(authority, kind="keygen", key_id="", params=params, now=int(time.time()), expires_in=60)
    sid = bytes(range(32))
    request = {
        "op": "start",
        "session_id": sid,
        "kind": "keygen",
        "certificate": cert,
        "args": {
            "key_id": f"key-{sid[:8].hex()}",
            "scheme": "frost-secp256k1",
            "threshold": 2,
            "roster": rpc.roster_value(dict(enumerate(descriptors, start=1))),
        },
    }
    assert "params" in refused(nodes[0], request, "approval")


def test_a_used_session_id_is_refused(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    msg = bytes(32)
    sid = bytes([7]) * 32
    start = {
        "op": "start",
        "session_id": sid,
        "kind": "sign",
        "args": {"key_id": key.key_id, "path": "m", "message": msg, "signers": [1, 2]},
    }
    cert = approval.issue(authority, kind="sign", key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=60)
    assert answer(nodes[0], {**start, "certificate": cert})["ok"] is True
    cert2 = approval.issue(
        authority, kind="sign", key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=60
    )
    refused(nodes[0], {**start, "certificate": cert2}, "session-exists")


def test_idle_sessions_time_out_and_are_logged(trio: Any) -> None:
    authority, nodes, descriptors, clock = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    sid = bytes([9]) * 32
    msg = bytes(32)
    cert = approval.issue(authority, kind="sign", key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=60)
    start = {
        "op": "start",
        "session_id": sid,
        "kind": "sign",
        "certificate": cert,
        "args": {"key_id": key.key_id, "path": "m", "message": msg, "signers": [1, 2]},
    }
    assert answer(nodes[0], start)["ok"] is True
    clock.now += nodes[0].config.session_timeout + 1
    refused(nodes[0], {"op": "deliver", "session_id": sid, "messages": []}, "finished-session")
    last = list(signlog.entries(nodes[0].directory / "sign.log"))[-1]
    assert last.outcome == "aborted" and "timed out" in last.reason


def test_commit_needs_every_acknowledgement(trio: Any) -> None:
    """A coordinator cannot make a node switch to a new share before every member holds one."""
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    cert = approval.issue(authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60)

    async def run_only() -> tuple[bytes, dict[int, dict[str, Any]]]:
        async with coordinator(nodes, descriptors) as co:
            args = {"key_id": key.key_id}
            return await co._run("refresh", cert, key.roster, {p: args for p in key.roster})

    sid, results = asyncio.run(run_only())
    fingerprint = bytes(results[1]["fingerprint"])
    acks = {descriptors[p - 1].node_id: bytes(r["ack"]) for p, r in results.items()}
    partial = dict(list(acks.items())[:2])
    commit = {"op": "commit", "session_id": sid, "fingerprint": fingerprint}
    assert "no valid acknowledgement" in refused(nodes[0], {**commit, "acks": partial}, "commit")
    forged = {**acks, descriptors[2].node_id: bytes(64)}
    assert "no valid acknowledgement" in refused(nodes[0], {**commit, "acks": forged}, "commit")
    wrong = {**commit, "fingerprint": bytes(32), "acks": acks}
    assert "fingerprint" in refused(nodes[0], wrong, "commit")
    # while staged, a second admin session on the key is refused
    cert2 = approval.issue(authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60)
    again = {
        "op": "start",
        "session_id": bytes([5]) * 32,
        "kind": "refresh",
        "certificate": cert2,
        "args": {"key_id": key.key_id},
    }
    refused(nodes[0], again, "pending")
    assert answer(nodes[0], {**commit, "acks": acks})["ok"] is True
    refused(nodes[0], {**commit, "acks": acks}, "unknown-session")


def test_setup_compromised_blocks_that_pair_until_refresh(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "ecdsa-secp256k1")
    nodes[0].store.put(f"compromised/{key.key_id}", cbor2.dumps([2]))
    msg = bytes(32)
    cert = approval.issue(authority, kind="sign", key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=60)
    start = {
        "op": "start",
        "session_id": bytes([3]) * 32,
        "kind": "sign",
        "certificate": cert,
        "args": {"key_id": key.key_id, "path": "m", "message": msg, "signers": [1, 2]},
    }
    assert "refresh" in refused(nodes[0], start, "setup-compromised")
    start["args"] = {**start["args"], "signers": [1, 3]}  # type: ignore[dict-item]
    assert answer(nodes[0], start)["ok"] is True, "the other pair still signs"
    refresh = approval.issue(
        authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60
    )

    async def go() -> None:
        async with coordinator(nodes, descriptors) as co:
            await co.refresh(key, refresh)

    asyncio.run(go())
    assert not nodes[0].store.exists(f"compromised/{key.key_id}")


# -- start-up -------------------------------------------------------------------------------------


def test_wrong_passphrase_refuses_to_start(tmp_path: Path) -> None:
    authority = approval.AuthorityKey.generate()
    init_node(
        tmp_path / "n",
        name="n",
        listen="127.0.0.1:7400",
        authorities=[authority.public_bytes],
        passphrase=PASS,
        kdf_n=MIN_N,
    )
    with pytest.raises(NodeStartError, match="passphrase"):
        NodeService.open(tmp_path / "n", passphrase="not it")


def test_a_damaged_descriptor_refuses_to_start(tmp_path: Path) -> None:
    authority = approval.AuthorityKey.generate()
    init_node(
        tmp_path / "n",
        name="n",
        listen="127.0.0.1:7400",
        authorities=[authority.public_bytes],
        passphrase=PASS,
        kdf_n=MIN_N,
    )
    other = init_node(
        tmp_path / "m",
        name="n",
        listen="127.0.0.1:7400",
        authorities=[authority.public_bytes],
        passphrase=PASS,
        kdf_n=MIN_N,
    )
    (tmp_path / "n" / "descriptor.json").write_text(other.to_json())
    with pytest.raises(NodeStartError, match="does not match"):
        NodeService.open(tmp_path / "n", passphrase=PASS)


def test_init_needs_an_authority_and_a_fresh_directory(tmp_path: Path) -> None:
    with pytest.raises(NodeStartError, match="authority"):
        init_node(tmp_path / "n", name="n", listen="127.0.0.1:7400", authorities=[], passphrase=PASS, kdf_n=MIN_N)
    authority = approval.AuthorityKey.generate()
    init_node(
        tmp_path / "n",
        name="n",
        listen="127.0.0.1:7400",
        authorities=[authority.public_bytes],
        passphrase=PASS,
        kdf_n=MIN_N,
    )
    with pytest.raises(NodeStartError, match="already holds a node"):
        init_node(
            tmp_path / "n",
            name="n",
            listen="127.0.0.1:7400",
            authorities=[authority.public_bytes],
            passphrase=PASS,
            kdf_n=MIN_N,
        )


def test_no_share_or_identity_in_the_clear(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    keygen(authority, nodes, descriptors, "frost-secp256k1")
    share_bytes = [n.store.get(name) for n in nodes for name in n.store.names("keys/")]
    identity = nodes[0].identity.to_bytes()
    for path in nodes[0].directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert identity not in data
            for blob in share_bytes:
                assert cbor2.loads(blob)["share"] not in data
