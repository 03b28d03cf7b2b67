"""The node's request handling in one process: every malformed or unauthorised request is refused.

The same :meth:`NodeService.handle` answers HTTP and the cold node's files, so
these tests call it directly with hostile bytes and check the refusal, the log,
and that the node keeps working afterwards.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest

from harbour.mpc.ecdsa_setup import compromised_peers
from harbour.node import approval, compromise, rpc, signlog
from harbour.node.coordinator import ClusterError, ClusterKey, Coordinator, admin_params
from harbour.node.identity import NodeDescriptor
from harbour.node.keyfile import MIN_N
from harbour.node.service import NodeService, NodeStartError, init_node
from harbour.node.staging import read_key

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


def make_nodes(root: Path, n: int, *, counters: bool = True) -> Any:
    """``n`` nodes in this process, trusting one new authority, on one adjustable clock.

    With ``counters`` each has a rollback counter file beside (not inside) its directory,
    which it needs to serve signing sessions as a cold node.
    """
    authority = approval.AuthorityKey.generate()
    clock = Clock()
    nodes, descriptors = [], []
    for i in range(1, n + 1):
        d = init_node(
            root / f"n{i}",
            name=f"n{i}",
            listen=f"127.0.0.1:{7300 + i}",
            authorities=[authority.public_bytes],
            passphrase=PASS,
            kdf_n=MIN_N,
            counter={"kind": "file", "path": str(root / f"n{i}.counter")} if counters else None,
        )
        descriptors.append(d)
        nodes.append(NodeService.open(root / f"n{i}", passphrase=PASS, clock=clock))
    return authority, nodes, descriptors, clock


@pytest.fixture
def trio(tmp_path: Path) -> Any:
    made = make_nodes(tmp_path, 3)
    yield made
    for node in made[1]:
        node.close()


@pytest.fixture
def quartet(tmp_path: Path) -> Any:
    made = make_nodes(tmp_path, 4)
    yield made
    for node in made[1]:
        node.close()


def commit_request(sid: bytes, results: dict[int, dict[str, Any]], roster: dict[int, NodeDescriptor]) -> dict[str, Any]:
    """The commit a coordinator sends after the session: every member's acknowledgement, no receipts."""
    fingerprint = bytes(next(iter(results[p] for p in roster))["fingerprint"])
    acks = {roster[p].node_id: bytes(results[p]["ack"]) for p in roster}
    return {"op": "commit", "session_id": sid, "fingerprint": fingerprint, "acks": acks, "receipts": {}}


def stage_reshare_to_2_3_4(authority: Any, nodes: Any, descriptors: Any, key: ClusterKey) -> Any:
    """Reshare a key of nodes 1..3 to nodes 2..4 (node 1 leaves), up to the staged results."""
    new_roster = {2: descriptors[1], 3: descriptors[2], 4: descriptors[3]}
    params = admin_params("reshare", threshold=2, nodes=list(new_roster.values()), key=key)
    cert = approval.issue(
        authority, kind="reshare", key_id=key.key_id, params=params, now=int(time.time()), expires_in=60
    )
    args = {
        "key_id": key.key_id,
        "threshold": 2,
        "dealers": rpc.roster_value(key.roster),
        "roster": rpc.roster_value(new_roster),
        "public": rpc.encode_public(key.public),
        "chain_code": key.chain_code,
        "holdings": [],  # a key of no organisation: no holding statements
    }
    members = {**key.roster, **new_roster}
    sid, results = run_to_staged(nodes, descriptors, "reshare", cert, members, {p: args for p in members})
    return sid, results, new_roster


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


def start_request(
    kind: str, args: dict[str, Any], *, certificate: bytes = b"", sid: bytes = bytes(32)
) -> dict[str, Any]:
    return {"op": "start", "session_id": sid, "kind": kind, "certificate": certificate, "args": args}


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


# -- malformed requests -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"", "not valid CBOR"),
        (b"\xff\x00", "not valid CBOR"),
        (cbor2.dumps([1, 2]), "canonical CBOR map"),
        (cbor2.dumps({"v": 1, "op": "describe"}), "version"),
        (cbor2.dumps({"v": 2, "op": "steal"}, canonical=True), "unknown op"),
        (cbor2.dumps({"v": 2, "op": "describe", "x": 1}, canonical=True), "fields are wrong"),
        (cbor2.dumps({"op": "describe", "v": 2}), "canonical"),  # keys out of canonical order
        (rpc.encode({"op": "abort", "session_id": b"short", "certificate": b""}), "session_id"),
        (rpc.encode({"op": "abort", "session_id": True, "certificate": b""}), "wrong type"),
        (rpc.encode({"op": "abort", "session_id": bytes(32)}), "fields are wrong"),
        (rpc.encode({"op": "key", "key_id": "../../etc/passwd"}), "key_id"),
        (rpc.encode({"op": "deliver", "session_id": bytes(32), "hellos": [], "messages": ["text"]}), "byte strings"),
        (
            rpc.encode({"op": "commit", "session_id": bytes(32), "fingerprint": bytes(31), "acks": {}, "receipts": {}}),
            "fingerprint",
        ),
        (
            rpc.encode(
                {"op": "commit", "session_id": bytes(32), "fingerprint": bytes(32), "acks": {"x": b"1"}, "receipts": {}}
            ),
            "64-byte signatures",
        ),
        (
            rpc.encode(start_request("mint", {})),
            "unknown session kind",
        ),
        (
            rpc.encode(start_request("sign", {"key_id": "k", "path": "m", "message": b"", "signers": [1]})),
            "1..1024 bytes",
        ),
        (
            rpc.encode(start_request("sign", {"key_id": "k", "path": "m", "message": b"m", "signers": [1, 1]})),
            "twice",
        ),
        (
            rpc.encode(
                start_request(
                    "keygen", {"key_id": "k", "scheme": "frost-secp256k1", "threshold": 2, "roster": [[1, "{}"]]}
                )
            ),
            "roster entry",
        ),
        *(
            (
                rpc.encode(
                    start_request(
                        "reshare",
                        {
                            "key_id": "k",
                            "threshold": 2,
                            "dealers": [],
                            "roster": [],
                            "public": b"",
                            "chain_code": bytes(32),
                            "holdings": holdings,
                        },
                    )
                ),
                needle,
            )
            for holdings, needle in (
                ("statements", "wrong type"),
                (["text"], "holdings is a list"),
                ([bytes(rpc.MAX_HOLDING + 1)], "holdings is a list"),
            )
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
    request = start_request("keygen", {"key_id": "k", "scheme": "frost-secp256k1", "threshold": 2, "roster": roster})
    assert "one node under two party numbers" in refused(nodes[0], request, "bad-request")


# -- requests the node will not act on ---------------------------------------------------------


def test_keygen_without_this_node_is_refused(trio: Any) -> None:
    _authority, nodes, descriptors, _ = trio
    roster = rpc.roster_value({1: descriptors[1], 2: descriptors[2]})
    request = start_request("keygen", {"key_id": "k", "scheme": "frost-secp256k1", "threshold": 2, "roster": roster})
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
    request = start_request(
        "keygen",
        {
            "key_id": "other",
            "scheme": "frost-secp256k1",
            "threshold": 2,
            "roster": rpc.roster_value(dict(enumerate(descriptors, start=1))),
        },
        certificate=cert,
    )
    assert "'treasury'" in refused(nodes[0], request, "bad-request")


def test_keygen_certificate_binds_the_committee(trio: Any, tmp_path: Path) -> None:
    authority, nodes, descriptors, _ = trio
    params = admin_params("keygen", scheme="frost-secp256k1", threshold=2, nodes=descriptors[:2])
    cert = approval.issue(authority, kind="keygen", key_id="", params=params, now=int(time.time()), expires_in=60)
    sid = bytes(range(32))
    request = start_request(
        "keygen",
        {
            "key_id": f"key-{sid[:8].hex()}",
            "scheme": "frost-secp256k1",
            "threshold": 2,
            "roster": rpc.roster_value(dict(enumerate(descriptors, start=1))),
        },
        certificate=cert,
        sid=sid,
    )
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
    cert = approval.issue(
        authority, kind="sign", signers=[1, 2], key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=60
    )
    assert answer(nodes[0], {**start, "certificate": cert})["ok"] is True
    cert2 = approval.issue(
        authority, kind="sign", signers=[1, 2], key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=60
    )
    refused(nodes[0], {**start, "certificate": cert2}, "session-exists")


def test_idle_sessions_time_out_and_are_logged(trio: Any) -> None:
    authority, nodes, descriptors, clock = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    sid = bytes([9]) * 32
    msg = bytes(32)
    cert = approval.issue(
        authority, kind="sign", signers=[1, 2], key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=60
    )
    start = start_request(
        "sign", {"key_id": key.key_id, "path": "m", "message": msg, "signers": [1, 2]}, certificate=cert, sid=sid
    )
    assert answer(nodes[0], start)["ok"] is True
    clock.now += nodes[0].config.session_timeout + 1
    refused(nodes[0], {"op": "deliver", "session_id": sid, "hellos": [], "messages": []}, "finished-session")
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
    commit = {"op": "commit", "session_id": sid, "fingerprint": fingerprint, "receipts": {}}
    assert "no valid acknowledgement" in refused(nodes[0], {**commit, "acks": partial}, "commit")
    forged = {**acks, descriptors[2].node_id: bytes(64)}
    assert "no valid acknowledgement" in refused(nodes[0], {**commit, "acks": forged}, "commit")
    wrong = {**commit, "fingerprint": bytes(32), "acks": acks}
    assert "fingerprint" in refused(nodes[0], wrong, "commit")
    # while staged, a second admin session on the key is refused
    cert2 = approval.issue(authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60)
    again = start_request("refresh", {"key_id": key.key_id}, certificate=cert2, sid=bytes([5]) * 32)
    refused(nodes[0], again, "pending")
    first = answer(nodes[0], {**commit, "acks": acks})
    assert first["ok"] is True
    # committing again returns the same receipt (an interrupted commit can be finished)
    assert answer(nodes[0], {**commit, "acks": acks})["receipt"] == first["receipt"]
    refused(nodes[0], {**commit, "acks": acks, "fingerprint": bytes(32)}, "commit")


def _compromise_block(trio: Any, mark: Callable[[NodeService, str], None]) -> None:
    """``mark`` records a failed KOS check of node 1 with party 2; {1, 2} is refused until a refresh, {1, 3} signs."""
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "ecdsa-secp256k1")
    mark(nodes[0], key.key_id)
    msg = bytes(32)

    def start(signers: list[int], sid: bytes) -> dict[str, Any]:
        now = int(time.time())
        cert = approval.issue(
            authority, kind="sign", signers=signers, key_id=key.key_id, digests=[msg], now=now, expires_in=60
        )
        args = {"key_id": key.key_id, "path": "m", "message": msg, "signers": signers}
        return start_request("sign", args, certificate=cert, sid=sid)

    assert "refresh" in refused(nodes[0], start([1, 2], bytes([3]) * 32), "setup-compromised")
    assert answer(nodes[0], start([1, 3], bytes([4]) * 32))["ok"] is True, "the other pair still signs"
    refresh = approval.issue(
        authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60
    )

    async def go() -> None:
        async with coordinator(nodes, descriptors) as co:
            await co.refresh(key, refresh)

    asyncio.run(go())
    assert not nodes[0].store.exists(f"compromised/{key.key_id}")
    assert compromised_peers(read_key(nodes[0].store, key.key_id)[0]) == frozenset()
    assert answer(nodes[0], start([1, 2], bytes([5]) * 32))["ok"] is True, "the refresh lifted the block"


def test_setup_compromised_blocks_that_pair_until_refresh(trio: Any) -> None:
    def in_the_share(node: NodeService, key_id: str) -> None:
        assert compromise.mark(node.store, key_id, [2]) == {2}

    _compromise_block(trio, in_the_share)


def test_a_compromised_object_left_by_an_older_version_is_honoured_until_refresh(trio: Any) -> None:
    def as_older_versions_did(node: NodeService, key_id: str) -> None:
        node.store.put(f"compromised/{key_id}", cbor2.dumps([2]))

    _compromise_block(trio, as_older_versions_did)


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


# -- findings of the node's security review, each a regression test ---------------------------------


def run_to_staged(nodes: Any, descriptors: Any, kind: str, cert: bytes, members: Any, args: Any) -> Any:
    async def go() -> tuple[bytes, dict[int, dict[str, Any]]]:
        async with coordinator(nodes, descriptors) as co:
            return await co._run(kind, cert, members, args)

    return asyncio.run(go())


def test_a_staged_result_is_discarded_only_on_the_authority_word(trio: Any) -> None:
    """Otherwise a relay could commit a reshare on the leaving members and abort it on the new ones."""
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    cert = approval.issue(authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60)
    sid, results = run_to_staged(
        nodes, descriptors, "refresh", cert, key.roster, {p: {"key_id": key.key_id} for p in key.roster}
    )
    abort = {"op": "abort", "session_id": sid, "certificate": b""}
    assert "authority" in refused(nodes[0], abort, "approval")
    # the staged result (and its acknowledgement) can be fetched again to finish the commit
    staged = answer(nodes[0], {"op": "staged", "session_id": sid})["result"]
    assert staged["ack"] == results[1]["ack"] and staged["fingerprint"] == results[1]["fingerprint"]
    discard = approval.issue(
        authority, kind="refresh", key_id=key.key_id, params={"discard": sid.hex()}, now=int(time.time()), expires_in=60
    )
    assert answer(nodes[0], {**abort, "certificate": discard})["ok"] is True
    refused(nodes[0], {"op": "staged", "session_id": sid}, "unknown-session")
    last = list(signlog.entries(nodes[0].directory / "sign.log"))[-1]
    assert last.outcome == "aborted" and "discarded" in last.reason


def test_a_leaving_member_deletes_its_share_only_on_every_commit_receipt(quartet: Any) -> None:
    authority, nodes, descriptors, _ = quartet
    key = keygen(authority, nodes[:3], descriptors[:3], "frost-secp256k1")
    sid, results, new_roster = stage_reshare_to_2_3_4(authority, nodes, descriptors, key)
    commit = commit_request(sid, results, new_roster)
    assert "commit receipt" in refused(nodes[0], commit, "commit"), "node 1 leaves: acks are not enough"
    assert answer(nodes[0], {"op": "key", "key_id": key.key_id})["ok"] is True, "its share is still there"
    receipts = {}
    for p, node in zip((2, 3, 4), nodes[1:], strict=True):
        receipts[new_roster[p].node_id] = answer(node, commit)["receipt"]
    partial = dict(list(receipts.items())[:2])
    assert "commit receipt" in refused(nodes[0], {**commit, "receipts": partial}, "commit")
    assert answer(nodes[0], {**commit, "receipts": receipts})["ok"] is True
    refused(nodes[0], {"op": "key", "key_id": key.key_id}, "unknown-key")


def test_two_admin_sessions_on_one_key_never_run_together(trio: Any) -> None:
    """Two refreshes committed on different nodes would leave no t shares of one generation."""
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")

    def start(sid: bytes) -> dict[str, Any]:
        cert = approval.issue(
            authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60
        )
        return answer(
            nodes[0],
            start_request("refresh", {"key_id": key.key_id}, certificate=cert, sid=sid),
        )

    assert start(bytes([1]) * 32)["ok"] is True
    second = start(bytes([2]) * 32)
    assert second["ok"] is False and second["reason"] == "pending" and "running" in second["error"]


def test_a_new_key_never_replaces_an_existing_one(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    params = admin_params("keygen", scheme="frost-secp256k1", threshold=2, nodes=descriptors)

    def cert() -> bytes:
        return approval.issue(
            authority, kind="keygen", key_id="vault", params=params, now=int(time.time()), expires_in=60
        )

    roster = dict(enumerate(descriptors, start=1))
    args = {"key_id": "vault", "scheme": "frost-secp256k1", "threshold": 2, "roster": rpc.roster_value(roster)}
    sid1, results1 = run_to_staged(nodes, descriptors, "keygen", cert(), roster, {p: args for p in roster})
    start = start_request("keygen", args, certificate=cert(), sid=bytes([4]) * 32)
    assert "uncommitted" in refused(nodes[0], start, "pending")
    acks = {roster[p].node_id: bytes(r["ack"]) for p, r in results1.items()}
    commit = {
        "op": "commit",
        "session_id": sid1,
        "fingerprint": bytes(results1[1]["fingerprint"]),
        "acks": acks,
        "receipts": {},
    }
    for node in nodes:
        assert answer(node, commit)["ok"] is True
    refused(nodes[0], {**start, "certificate": cert()}, "key-exists")


def test_a_reshare_cannot_change_the_chain_code(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    forged = ClusterKey(key.key_id, key.public, key.roster, bytes(32))
    params = admin_params("reshare", threshold=2, nodes=descriptors, key=forged)
    cert = approval.issue(
        authority, kind="reshare", key_id=key.key_id, params=params, now=int(time.time()), expires_in=60
    )
    args = {
        "key_id": key.key_id,
        "threshold": 2,
        "dealers": rpc.roster_value(key.roster),
        "roster": rpc.roster_value(key.roster),
        "public": rpc.encode_public(key.public),
        "chain_code": bytes(32),
        "holdings": [],  # a key of no organisation: no holding statements
    }
    start = start_request("reshare", args, certificate=cert, sid=bytes([6]) * 32)
    assert "chain code" in refused(nodes[0], start, "bad-request")


def test_a_compromised_pair_ends_sessions_already_running(trio: Any) -> None:
    """Each KOS check a cheating peer gets evaluated may leak a bit: none may run after the first failure."""
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "ecdsa-secp256k1")
    sids = [bytes([10 + i]) * 32 for i in range(3)]
    for sid in sids:
        msg = sid
        cert = approval.issue(
            authority, kind="sign", signers=[1, 2], key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=9
        )
        start = start_request(
            "sign", {"key_id": key.key_id, "path": "m", "message": msg, "signers": [1, 2]}, certificate=cert, sid=sid
        )
        assert answer(nodes[0], start)["ok"] is True
    node = nodes[0]
    node.running.mark_compromised(node.sessions[sids[0]], frozenset({2}))
    assert compromised_peers(read_key(node.store, key.key_id)[0]) == {2}, "marked inside the share"
    assert set(node.sessions) == {sids[0]}, "the other sessions with party 2 ended"
    refused(node, {"op": "deliver", "session_id": sids[1], "hellos": [], "messages": []}, "finished-session")
    compromised = {"op": "deliver", "session_id": sids[0], "hellos": [], "messages": []}
    assert "KOS" in refused(node, compromised, "setup-compromised")


def test_an_edited_configuration_refuses_to_start(tmp_path: Path) -> None:
    """node.json names the authorities the node obeys: adding one by editing the file must not work."""
    authority, intruder = approval.AuthorityKey.generate(), approval.AuthorityKey.generate()
    init_node(
        tmp_path / "n",
        name="n",
        listen="127.0.0.1:7400",
        authorities=[authority.public_bytes],
        passphrase=PASS,
        kdf_n=MIN_N,
    )
    path = tmp_path / "n" / "node.json"
    config = json.loads(path.read_text())
    config["authorities"].append(intruder.public_bytes.hex())
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    with pytest.raises(NodeStartError, match="edited"):
        NodeService.open(tmp_path / "n", passphrase=PASS)


def test_held_messages_for_a_later_phase_are_bounded() -> None:
    from harbour.mpc.envelope import Envelope, ProtocolAbort
    from harbour.mpc.runner import setup_session_id
    from harbour.node.jobs import MAX_HELD, KeygenJob

    sid = bytes(32)
    job = KeygenJob(sid, 1, "ecdsa-secp256k1", 2, [1, 2, 3])
    job.start()
    later = setup_session_id(sid)
    for i in range(MAX_HELD):
        assert job.receive(Envelope(later, "setup/ecdsa-secp256k1", 1, 2, 1, bytes([i % 256]))) == []
    with pytest.raises(ProtocolAbort, match="too many"):
        job.receive(Envelope(later, "setup/ecdsa-secp256k1", 1, 2, 1, b"x"))


class OfflineLocal:
    """A cold node in this process: opened for each request file and closed again, like `harbour node offline`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.after: list[Any] = []

    async def call(self, request: bytes, timeout: float) -> bytes:
        node = NodeService.open(self.directory, passphrase=PASS, offline=True)
        try:
            data = node.handle(request)
        finally:
            node.close()
        if self.after:
            self.after.pop(0)()
        return data


def cold_sign_with_rollback(trio: Any, forge_log_line: bool) -> tuple[ClusterError, Path]:
    """Node 3 answers by files; after its round one, its session file is put back to the copy made after start.

    With ``forge_log_line`` the old ``progress`` line is also appended again, so the
    log's last entry for the session names the state put back.
    """
    authority, nodes, descriptors, _ = trio
    cold_dir = nodes[2].directory
    nodes[2].close()
    cold = OfflineLocal(cold_dir)
    transports: dict[str, Any] = {d.node_id: Local(n) for d, n in zip(descriptors[:2], nodes[:2], strict=True)}
    transports[descriptors[2].node_id] = cold
    params = admin_params("keygen", scheme="frost-secp256k1", threshold=2, nodes=descriptors)
    kg = approval.issue(authority, kind="keygen", key_id="", params=params, now=int(time.time()), expires_in=60)
    sessions = cold_dir / "store" / "objects" / "sessions"
    saved: dict[str, bytes] = {}
    old_line: list[signlog.Entry] = []

    def snapshot() -> None:
        saved.update({p.name: p.read_bytes() for p in sessions.iterdir()})
        old_line.append(list(signlog.entries(cold_dir / "sign.log"))[-1])

    def restore() -> None:
        for name, data in saved.items():
            (sessions / name).write_bytes(data)
        if forge_log_line:
            e = old_line[0]
            with signlog.SignLog.open(cold_dir / "sign.log") as log:
                log.append(
                    time=e.time,
                    kind="sign",
                    session_id=bytes.fromhex(e.session_id),
                    key_id=e.key_id,
                    path=e.path,
                    outcome="progress",
                    reason=e.reason,
                )

    async def go() -> None:
        async with Coordinator(transports=transports) as co:
            key = await co.keygen(descriptors, 2, "frost-secp256k1", kg)
            msg = bytes(32)
            cert = approval.issue(
                authority,
                kind="sign",
                signers=[1, 3],
                key_id=key.key_id,
                digests=[msg],
                now=int(time.time()),
                expires_in=9,
            )
            cold.after = [snapshot, restore]  # after the start: copy; after round one: put the copy back
            await co.sign(key, msg, cert, signers=[1, 3])

    try:
        with pytest.raises(ClusterError) as err:
            asyncio.run(go())
    finally:
        nodes[2] = NodeService.open(cold_dir, passphrase=PASS)  # for the fixture's teardown
    return err.value, cold_dir


def test_a_cold_node_refuses_a_session_state_put_back(trio: Any) -> None:
    """Restoring an older copy of a cold node's session file would replay its nonces: it is refused instead."""
    error, cold_dir = cold_sign_with_rollback(trio, forge_log_line=False)
    assert error.reason == "stale-session"
    outcomes = [e.outcome for e in signlog.entries(cold_dir / "sign.log") if e.kind == "sign"]
    assert outcomes[:2] == ["started", "progress"] and "signed" not in outcomes and outcomes[-1] == "aborted"


def test_an_interrupted_commit_is_finished_from_what_the_nodes_staged(quartet: Any) -> None:
    """The coordinator stopped after one new member committed: another coordinator finishes the reshare."""
    authority, nodes, descriptors, _ = quartet
    key = keygen(authority, nodes[:3], descriptors[:3], "ecdsa-secp256k1")
    sid, results, new_roster = stage_reshare_to_2_3_4(authority, nodes, descriptors, key)
    assert answer(nodes[1], commit_request(sid, results, new_roster))["ok"] is True  # then the coordinator stopped

    async def finish() -> ClusterKey:
        async with coordinator(nodes, descriptors) as co:
            finished: ClusterKey = await co.finish(sid, descriptors)
            msg = bytes(range(32))
            sign_cert = approval.issue(
                authority,
                kind="sign",
                signers=[3, 4],
                key_id=key.key_id,
                digests=[msg],
                now=int(time.time()),
                expires_in=9,
            )
            await co.sign(finished, msg, sign_cert, signers=[3, 4])
            return finished

    finished = asyncio.run(finish())
    assert finished.public.group_public_key == key.public.group_public_key
    assert sorted(finished.roster) == [2, 3, 4]
    refused(nodes[0], {"op": "key", "key_id": key.key_id}, "unknown-key")  # node 1 left and deleted its share


def test_a_staged_result_is_discarded_everywhere_with_one_certificate(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-ed25519")
    cert = approval.issue(authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60)
    sid, _ = run_to_staged(
        nodes, descriptors, "refresh", cert, key.roster, {p: {"key_id": key.key_id} for p in key.roster}
    )
    discard = approval.issue(
        authority, kind="refresh", key_id=key.key_id, params={"discard": sid.hex()}, now=int(time.time()), expires_in=60
    )

    async def go() -> list[str]:
        async with coordinator(nodes, descriptors) as co:
            names: list[str] = await co.discard(sid, discard, descriptors)
            # the key can be refreshed again now
            again = approval.issue(
                authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60
            )
            await co.refresh(key, again)
            return names

    assert asyncio.run(go()) == ["n1", "n2", "n3"]


def test_a_forged_log_line_does_not_bless_an_older_session_state(trio: Any) -> None:
    """Appending a copy of the old `progress` line (the log is not secret) is not enough: its tag binds its place."""
    error, cold_dir = cold_sign_with_rollback(trio, forge_log_line=True)
    assert error.reason == "stale-session"
    assert "signed" not in [e.outcome for e in signlog.entries(cold_dir / "sign.log") if e.kind == "sign"]


def test_a_compromised_peer_blocks_only_sessions_it_signs_in(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "ecdsa-secp256k1")
    compromise.mark(nodes[0].store, key.key_id, [3])
    msg = bytes(32)
    cert = approval.issue(
        authority, kind="sign", signers=[1, 2], key_id=key.key_id, digests=[msg], now=int(time.time()), expires_in=60
    )
    sid = bytes([8]) * 32
    start = start_request(
        "sign", {"key_id": key.key_id, "path": "m", "message": msg, "signers": [1, 2]}, certificate=cert, sid=sid
    )
    assert answer(nodes[0], start)["ok"] is True
    assert answer(nodes[0], {"op": "deliver", "session_id": sid, "hellos": [], "messages": []})["ok"] is True


def test_a_commit_interrupted_by_a_crash_resumes(trio: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from harbour.node.staging import Staging

    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    cert = approval.issue(authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60)
    sid, results = run_to_staged(
        nodes, descriptors, "refresh", cert, key.roster, {p: {"key_id": key.key_id} for p in key.roster}
    )
    acks = {descriptors[p - 1].node_id: bytes(r["ack"]) for p, r in results.items()}
    commit = {
        "op": "commit",
        "session_id": sid,
        "fingerprint": bytes(results[1]["fingerprint"]),
        "acks": acks,
        "receipts": {},
    }
    store = nodes[0].store
    real_put, real_finish = store.put, Staging._finish_commit

    def crash_before_record(name: str, data: bytes) -> None:
        if name.startswith("committed/"):
            raise OSError("power cut")
        real_put(name, data)

    monkeypatch.setattr(store, "put", crash_before_record)
    assert answer(nodes[0], commit)["reason"] == "internal"  # the share was replaced, the record not written
    monkeypatch.setattr(store, "put", real_put)

    def crash_before_cleanup(self: Any, *args: Any) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(Staging, "_finish_commit", crash_before_cleanup)
    assert answer(nodes[0], commit)["reason"] == "internal"  # resumed, record written, clean-up lost
    monkeypatch.setattr(Staging, "_finish_commit", real_finish)
    assert answer(nodes[0], commit)["ok"] is True
    assert not store.names("pending/"), "the staged copy is gone"
    assert [e.outcome for e in signlog.entries(nodes[0].directory / "sign.log")][-1] == "committed"


def test_discard_is_refused_once_a_member_committed(trio: Any) -> None:
    authority, nodes, descriptors, _ = trio
    key = keygen(authority, nodes, descriptors, "frost-secp256k1")
    cert = approval.issue(authority, kind="refresh", key_id=key.key_id, params={}, now=int(time.time()), expires_in=60)
    sid, results = run_to_staged(
        nodes, descriptors, "refresh", cert, key.roster, {p: {"key_id": key.key_id} for p in key.roster}
    )
    acks = {descriptors[p - 1].node_id: bytes(r["ack"]) for p, r in results.items()}
    commit = {
        "op": "commit",
        "session_id": sid,
        "fingerprint": bytes(results[1]["fingerprint"]),
        "acks": acks,
        "receipts": {},
    }
    assert answer(nodes[0], commit)["ok"] is True
    discard = approval.issue(
        authority, kind="refresh", key_id=key.key_id, params={"discard": sid.hex()}, now=int(time.time()), expires_in=60
    )

    async def go() -> list[str]:
        async with coordinator(nodes, descriptors) as co:
            names: list[str] = await co.discard(sid, discard, descriptors)
            return names

    with pytest.raises(ClusterError) as err:
        asyncio.run(go())
    assert err.value.reason == "committed"
    assert len(nodes[1].store.names("pending/")) == 1, "the others' staged shares are kept"
