"""Faults and attacks against real signer-node processes on loopback.

A hostile relay (the coordinator's ``relay`` hook) tampers with, reorders, drops
and replays sealed messages; a signer is SIGKILLed mid-session and restarted;
certificates are missing, expired, replayed or for something else; a node is
started with the wrong passphrase or PIN; twenty sessions run at once on one key;
and a node's HTTP endpoint is sent garbage. In every case the outcome is checked
where it matters: what the coordinator got back, and what each node wrote in its
own hash-chained signing log.

The nodes and keys that tests do not disturb are made once per module; the tests
that kill or restart nodes have their own cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cbor2
import coincurve
import httpx
import pytest

from cluster import Cluster, Node
from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc.ciphersuite import suite_by_name
from harbour.node import approval, rpc, signlog
from harbour.node.coordinator import ClusterError, ClusterKey, SignOutcome, verify_signature
from harbour.node.sealed import read_header
from softhsm import SoftHsm

ECDSA = "ecdsa-secp256k1"
FROST = "frost-secp256k1"
SCHEMES = [ECDSA, FROST]
TIMEOUT = 10.0
"""The coordinator's session timeout here: a failure must be reported long before it."""
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def session_entries(node: Node, session_id: bytes) -> list[signlog.Entry]:
    """The node's log entries for one session, read through the hash chain's checks."""
    return [e for e in signlog.entries(node.directory / "sign.log") if e.session_id == session_id.hex()]


def outcomes(node: Node, session_id: bytes) -> list[str]:
    return [e.outcome for e in session_entries(node, session_id)]


def post(node: Node, request: Mapping[str, Any]) -> dict[str, Any]:
    """One RPC straight to a node, bypassing the coordinator; the decoded answer."""
    return post_raw(node, rpc.encode(request))


def post_raw(node: Node, body: bytes) -> dict[str, Any]:
    response = httpx.post(
        node.descriptor.url + "/v1/rpc", content=body, headers={"content-type": "application/cbor"}, timeout=10
    )
    assert response.status_code == 200, response.text
    answer = cbor2.loads(response.content)
    assert isinstance(answer, dict)
    return answer


def sign_start(session_id: bytes, key: ClusterKey, message: bytes, certificate: bytes, **args: Any) -> dict[str, Any]:
    return {
        "op": "start",
        "session_id": session_id,
        "kind": "sign",
        "certificate": certificate,
        "args": {"key_id": key.key_id, "path": "m", "message": message, "signers": [1, 2], **args},
    }


async def sign(
    cluster: Cluster,
    key: ClusterKey,
    message: bytes,
    *,
    certificate: bytes | None = None,
    relay: Callable[[str, list[bytes]], list[bytes]] | None = None,
    signers: Sequence[int] | None = None,
) -> SignOutcome:
    async with cluster.coordinator(relay=relay, timeout=TIMEOUT) as co:
        cert = cluster.sign_cert(key, message, signers=signers) if certificate is None else certificate
        outcome: SignOutcome = await co.sign(key, message, cert, signers=signers)
        return outcome


def ecdsa_ok(key: Secp256k1Point, message: bytes, signature: EcdsaSignature) -> bool:
    """libsecp256k1's own verdict on a digest (no hashing), with the signature in DER."""

    def integer(v: int) -> bytes:
        raw = v.to_bytes((v.bit_length() + 8) // 8, "big")
        return b"\x02" + bytes([len(raw)]) + raw

    body = integer(signature.r) + integer(signature.s)
    der = b"\x30" + bytes([len(body)]) + body
    return bool(coincurve.PublicKey(key.encode()).verify(der, message, hasher=None))


def frost_ok(key: Secp256k1Point, message: bytes, signature: bytes) -> bool:
    """RFC 9591 (secp256k1): z·G == R + c·PK, the points added by libsecp256k1."""
    suite = suite_by_name(FROST)
    R, z = signature[:33], int.from_bytes(signature[33:], "big")
    if len(signature) != 65 or not 0 < z < N:
        return False
    c = suite.H2(R + key.encode() + message)
    lhs = coincurve.PublicKey.from_secret(z.to_bytes(32, "big"))
    rhs = coincurve.PublicKey.combine_keys(
        [coincurve.PublicKey(R), coincurve.PublicKey(key.encode()).multiply(c.to_bytes(32, "big"))]
    )
    return bool(lhs.format() == rhs.format()) and bool(suite.verify(key, message, signature))


def independently_ok(outcome: SignOutcome, message: bytes) -> bool:
    key, sig = outcome.group_public_key, outcome.signature
    assert isinstance(key, Secp256k1Point)
    if isinstance(sig, EcdsaSignature):
        return ecdsa_ok(key, message, sig)
    return frost_ok(key, message, sig)


# -- the shared cluster ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("faults"), 3)
    with c:
        yield c


@pytest.fixture(scope="module")
def keys(cluster: Cluster) -> dict[str, ClusterKey]:
    """A 2-of-3 key per scheme on the three nodes, by distributed key generation."""

    async def make() -> dict[str, ClusterKey]:
        nodes = cluster.descriptors
        async with cluster.coordinator(timeout=TIMEOUT) as co:
            return {s: await co.keygen(nodes, 2, s, cluster.keygen_cert(s, 2, nodes)) for s in SCHEMES}

    made: dict[str, ClusterKey] = run(make())
    return made


# -- 1. a hostile relay ----------------------------------------------------------------------


class HostileRelay:
    """Delivers faithfully but for one attack on the sealed messages.

    ``tamper``, ``drop`` and ``reorder`` strike the victim's first batch, before any
    signer can finish, so a signature anywhere would mean the attack went unnoticed.
    ``reorder``: every batch carries one message per sender and recipient, so the
    victim's first message is held back and delivered after the same sender's next
    one (seq n+1, then n). ``replay`` gives every recipient of the second batch the
    message it already accepted in the first, ahead of the new one.
    """

    def __init__(self, attack: str, victim: str) -> None:
        self.attack = attack
        self.victim = victim
        self.batches: dict[str, int] = {}
        self.delivered: dict[str, list[bytes]] = {}
        self.held: list[bytes] = []
        self.session_id: bytes | None = None
        self.struck = False

    def __call__(self, to: str, messages: list[bytes]) -> list[bytes]:
        if not messages:  # a delivery of the peers' hellos only (threshold ECDSA's first round waits for them)
            return messages
        self.session_id = read_header(messages[0]).session_id
        batch = self.batches[to] = self.batches.get(to, 0) + 1
        out = self.strike(to, batch, list(messages))
        self.delivered.setdefault(to, []).extend(out)
        return out

    def strike(self, to: str, batch: int, messages: list[bytes]) -> list[bytes]:
        victim = to == self.victim
        if self.attack == "tamper" and victim and batch == 1:
            messages[0] = flip_ciphertext_byte(messages[0])
            self.struck = True
        elif self.attack == "drop" and victim and batch == 1:
            messages.pop(0)
            self.struck = True
        elif self.attack == "reorder" and victim and batch == 1:
            self.held.append(messages.pop(0))
        elif self.attack == "reorder" and victim and batch == 2:
            held = self.held.pop()
            sender = read_header(held).from_node
            later = [i for i, m in enumerate(messages) if read_header(m).from_node == sender]
            assert later, "the sender sent nothing more to swap with"
            messages.insert(later[0] + 1, held)
            seqs = [read_header(m).seq for m in messages if read_header(m).from_node == sender]
            assert seqs == [seqs[1] + 1, seqs[1]]  # the same sender's two messages, swapped
            self.struck = True
        elif self.attack == "replay" and batch == 2:
            accepted = self.delivered[to][0]
            assert read_header(accepted).seq < read_header(messages[0]).seq
            messages.insert(0, accepted)
            self.struck = True
        return messages


def flip_ciphertext_byte(sealed: bytes) -> bytes:
    """The same sealed message with one bit of its body flipped (still well-formed CBOR)."""
    outer = cbor2.loads(sealed)
    body = bytearray(outer["body"])
    body[len(body) // 2] ^= 0x01
    altered = bytes(cbor2.dumps({**outer, "body": bytes(body)}, canonical=True))
    assert len(altered) == len(sealed) and altered != sealed
    return altered


SEALED_REASON = {"drop": "out-of-order", "reorder": "out-of-order", "replay": "replay"}
TAMPER_REASON = {
    FROST: "bad-signature",  # FROST's first round is public: signed, in the clear, before the session keys
    ECDSA: "decryption-failed",  # threshold ECDSA's first round is secret: sealed under the pair key
}


@pytest.mark.parametrize("scheme", SCHEMES)
@pytest.mark.parametrize("attack", ["tamper", "reorder", "drop", "replay"])
def test_relay_attack_aborts_the_session_everywhere(
    cluster: Cluster, keys: dict[str, ClusterKey], scheme: str, attack: str
) -> None:
    """Every alteration of the message stream is caught by the recipient and nothing is signed.

    A dropped message is noticed when the sender's next one arrives out of sequence
    (the recipient cannot tell "dropped" from "late", and the coordinator never
    waits: the session fails at once).
    """
    key = keys[scheme]
    message = digest(f"relay attack {attack} {scheme}")
    victim = cluster.nodes[0]
    relay = HostileRelay(attack, victim.descriptor.node_id)
    with pytest.raises(ClusterError) as caught:
        run(sign(cluster, key, message, relay=relay))
    assert relay.struck and relay.session_id is not None
    error = caught.value
    reason = TAMPER_REASON[scheme] if attack == "tamper" else SEALED_REASON[attack]
    assert error.reason == "sealed", error
    assert f"({reason})" in str(error)
    if attack != "replay":
        assert error.node == victim.name
    sid = relay.session_id
    # The signers (parties 1 and 2) abandoned the session; party 3 never heard of it.
    for node in cluster.nodes[:2]:
        assert outcomes(node, sid) == ["started", "aborted"], node.name
    assert outcomes(cluster.nodes[2], sid) == []
    refused = [e for e in session_entries(victim, sid) if e.outcome == "aborted"]
    assert reason in refused[0].reason
    # The nodes are not left broken: a fresh session signs.
    fresh = run(sign(cluster, key, message))
    assert verify_signature(scheme, fresh.group_public_key, message, fresh.signature)
    assert independently_ok(fresh, message)


def test_replay_from_an_earlier_session_is_refused(cluster: Cluster, keys: dict[str, ClusterKey]) -> None:
    """A message from a finished session, replayed into a new one, is refused as foreign."""
    key = keys[FROST]
    message = digest("cross-session replay")
    recorded: list[tuple[str, bytes]] = []

    def record(to: str, messages: list[bytes]) -> list[bytes]:
        recorded.extend((to, m) for m in messages)
        return messages

    run(sign(cluster, key, message, relay=record))
    old_to, old = recorded[0]
    new_sid: list[bytes] = []

    def replay(to: str, messages: list[bytes]) -> list[bytes]:
        new_sid.append(read_header(messages[0]).session_id)
        return [old, *messages] if to == old_to else messages

    with pytest.raises(ClusterError) as caught:
        run(sign(cluster, key, message, relay=replay))
    assert caught.value.reason == "sealed" and "(unknown-session)" in str(caught.value)
    for node in cluster.nodes[:2]:
        assert outcomes(node, new_sid[0]) == ["started", "aborted"]


# -- 2. a signer killed mid-session ----------------------------------------------------------


def test_node_killed_mid_signing_fails_cleanly_and_never_rejoins(tmp_path: Path) -> None:
    """A crash costs one session, never a nonce.

    A DKLs23 signer's instance secrets (its nonce share ``r_i``, the mask ``φ_i`` and
    the multiplication inputs built on them: everything a presignature is made of)
    live only in the memory of its party object; an online node never writes a
    session to disk, so SIGKILL destroys them. After the restart the node
    finds the session ``started`` but not finished in its log, records it as
    aborted and refuses it as stale, whether asked to continue it (``deliver``) or
    to begin it again (``start``): so no party is ever rebuilt for that session,
    and no nonce can be used on two sessions. Each new session draws fresh
    nonces: the same digest signed again (by another subset, then by the restarted
    node) gives a different ``r``, and the killed session gave no signature at all.
    """
    cluster = Cluster(tmp_path, 3)
    with cluster:
        key: ClusterKey = run(_keygen(cluster, ECDSA))
        victim = cluster.nodes[1]
        message = digest("payment 42")
        sids: list[bytes] = []

        def crash(to: str, messages: list[bytes]) -> list[bytes]:
            if messages and not sids:
                sids.append(read_header(messages[0]).session_id)
                victim.kill()  # after round 1: every signer has started and sent its first message
            return messages

        began = time.monotonic()
        with pytest.raises(ClusterError) as caught:
            run(sign(cluster, key, message, relay=crash, signers=[1, 2]))
        assert time.monotonic() - began < TIMEOUT / 2, "the failure waited for the timeout"
        assert caught.value.reason == "unreachable" and caught.value.node == victim.name
        sid = sids[0]
        assert outcomes(cluster.nodes[0], sid) == ["started", "aborted"]

        second = run(sign(cluster, key, message, signers=[1, 3]))
        assert second.signers == [1, 3]
        assert isinstance(second.signature, EcdsaSignature)
        assert independently_ok(second, message)

        _restart(victim)
        entries = session_entries(victim, sid)
        assert [e.outcome for e in entries] == ["started", "aborted"]
        assert "restarted" in entries[1].reason
        answer = post(victim, {"op": "deliver", "session_id": sid, "hellos": [], "messages": []})
        assert answer["ok"] is False and answer["reason"] == "stale-session", answer
        certificate = cluster.sign_cert(key, message)
        answer = post(victim, sign_start(sid, key, message, certificate))
        assert answer["ok"] is False and answer["reason"] == "stale-session", answer
        # The survivor will not reuse the session id either.
        answer = post(cluster.nodes[0], sign_start(sid, key, message, cluster.sign_cert(key, message)))
        assert answer["ok"] is False and answer["reason"] == "session-exists", answer
        # The stale start was refused before the certificate was looked at: it is still good.
        third = run(sign(cluster, key, message, certificate=certificate, signers=[1, 2]))
        assert isinstance(third.signature, EcdsaSignature) and independently_ok(third, message)
        assert third.signature.r != second.signature.r
        for node in cluster.nodes:
            assert "signed" not in outcomes(node, sid)


async def _keygen(cluster: Cluster, scheme: str) -> ClusterKey:
    nodes = cluster.descriptors
    async with cluster.coordinator(timeout=TIMEOUT) as co:
        key: ClusterKey = await co.keygen(nodes, 2, scheme, cluster.keygen_cert(scheme, 2, nodes))
        return key


def _restart(node: Node) -> None:
    """Start a killed node again (its old process's pipes closed first)."""
    if node.process is not None:
        for pipe in (node.process.stdout, node.process.stderr):
            if pipe is not None:
                pipe.close()
    node.start()


# -- 3. approval certificates ----------------------------------------------------------------


def _bad_certificate(case: str, cluster: Cluster, key: ClusterKey, message: bytes) -> bytes:
    d = approval.approved_digest(message)
    if case == "missing":
        return b""
    if case == "expired":
        return cluster.certify(
            "sign", key.key_id, digests=[d], signers=[1, 2, 3], now=int(time.time()) - 1000, expires_in=300
        )
    if case == "replayed":
        certificate = cluster.sign_cert(key, message, signers=[1, 2, 3])
        run(sign(cluster, key, message, certificate=certificate, signers=[1, 2, 3]))  # spent on every node
        return certificate
    if case == "digest":
        return cluster.sign_cert(key, message + b"-another", signers=[1, 2, 3])
    if case == "key":
        return cluster.certify("sign", "another-key", digests=[d], signers=[1, 2, 3])
    if case == "path":
        return cluster.certify("sign", key.key_id, path="m/0/1", digests=[d], signers=[1, 2, 3])
    assert case == "untrusted"
    stranger = approval.AuthorityKey.generate()
    return approval.issue(
        stranger, kind="sign", key_id=key.key_id, digests=[d], signers=[1, 2, 3], now=int(time.time()), expires_in=300
    )


APPROVAL_REASON = {
    "missing": "malformed",
    "expired": "expired",
    "replayed": "replayed",
    "digest": "digest",
    "key": "key",
    "path": "path",
    "untrusted": "untrusted",
}


@pytest.mark.parametrize("case", list(APPROVAL_REASON))
def test_bad_certificate_is_refused_by_every_node(cluster: Cluster, keys: dict[str, ClusterKey], case: str) -> None:
    key = keys[FROST]  # FROST signs with any t or more parties, so one session can spend a certificate everywhere
    message = f"bad certificate: {case}".encode()
    certificate = _bad_certificate(case, cluster, key, message)
    reason = APPROVAL_REASON[case]

    with pytest.raises(ClusterError) as caught:
        run(sign(cluster, key, message, certificate=certificate))
    assert caught.value.reason == "approval" and f"({reason})" in str(caught.value)

    # Each node decides for itself: asked directly, every one refuses and logs why.
    for node in cluster.nodes:
        sid = hashlib.sha256(f"{case} {node.name}".encode()).digest()
        answer = post(node, sign_start(sid, key, message, certificate, signers=[1, 2, 3]))
        assert answer["ok"] is False and answer["reason"] == "approval", answer
        assert f"({reason})" in answer["error"]
        entries = session_entries(node, sid)
        assert [e.outcome for e in entries] == ["refused"], node.name
        assert entries[0].reason.startswith(f"{reason}: ")
        assert entries[0].certificate_hash == approval.certificate_hash(certificate)


# -- 4. the wrong passphrase or PIN ----------------------------------------------------------


def _run_node(node: Node, env: Mapping[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "harbour.cli.main", "node", "run", "--dir", str(node.directory)],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done, time.monotonic() - began


def test_wrong_passphrase_stops_the_node(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 1)
    node = cluster.nodes[0]
    done, took = _run_node(node, {**node.env, "HARBOUR_NODE_PASSPHRASE": "not the passphrase"})
    assert done.returncode != 0 and took < 15
    assert "passphrase" in done.stderr.lower() and "cannot start" in done.stderr, done.stderr
    # The same node with its passphrase serves: the refusal was the passphrase's.
    node.start()
    try:
        assert post(node, {"op": "describe"})["ok"] is True
    finally:
        node.stop()


def test_wrong_pin_stops_a_pkcs11_node(tmp_path: Path, softhsm: SoftHsm) -> None:
    cluster = Cluster(tmp_path / "nodes", 1, pkcs11=(softhsm.module, softhsm.token_label, softhsm.pin))
    node = cluster.nodes[0]
    done, took = _run_node(node, {**node.env, "HARBOUR_NODE_PIN": "0000-wrong"})
    assert done.returncode != 0 and took < 15
    assert "pin" in done.stderr.lower() and "cannot start" in done.stderr, done.stderr
    node.start()
    try:
        assert post(node, {"op": "describe"})["ok"] is True
    finally:
        node.stop()


# -- 5. concurrency --------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_twenty_concurrent_sessions_on_one_key(cluster: Cluster, keys: dict[str, ClusterKey], scheme: str) -> None:
    key = keys[scheme]
    messages = [digest(f"concurrent {scheme} {i}") for i in range(20)]
    before = [outcomes_of(node, key.key_id).count("signed") for node in cluster.nodes]

    async def all_at_once() -> list[SignOutcome]:
        async with cluster.coordinator(timeout=TIMEOUT) as co:
            results: list[SignOutcome] = await asyncio.gather(
                *(co.sign(key, m, cluster.sign_certs(key, m)) for m in messages)
            )
            return results

    results = run(all_at_once())
    assert [r.message for r in results] == messages
    for i, outcome in enumerate(results):
        assert verify_signature(scheme, outcome.group_public_key, messages[i], outcome.signature)
        assert independently_ok(outcome, messages[i])
        for j, other in enumerate(messages):
            if j != i:
                assert not independently_ok(outcome, other), (i, j)
    signatures = [r.signature for r in results]
    nonces = [s.r if isinstance(s, EcdsaSignature) else s[:33] for s in signatures]
    assert len(set(nonces)) == 20
    after = [outcomes_of(node, key.key_id).count("signed") for node in cluster.nodes]
    signed = [a - b for a, b in zip(after, before, strict=True)]
    # two signers per session, and sessions running at once are spread over all three nodes
    assert sum(signed) == 40 and all(n >= 6 for n in signed), signed


def outcomes_of(node: Node, key_id: str) -> list[str]:
    return [e.outcome for e in signlog.entries(node.directory / "sign.log") if e.key_id == key_id]


# -- 6. bad requests to a node's endpoint ----------------------------------------------------

SID = bytes(32)


def _sign_args(**changes: Any) -> dict[str, Any]:
    return {"key_id": "k", "path": "m", "message": b"m", "signers": [1, 2], **changes}


def _keygen_start(roster: Any) -> bytes:
    args = {"key_id": "k", "scheme": FROST, "threshold": 2, "roster": roster}
    return rpc.encode({"op": "start", "session_id": SID, "kind": "keygen", "certificate": b"", "args": args})


def _descriptor_json(cluster: Cluster, i: int) -> str:
    return cluster.descriptors[i].to_json()


BAD_REQUESTS: dict[str, tuple[Callable[[Cluster], bytes], str]] = {
    "not-cbor": (lambda c: b"\xff\x00this is not CBOR", "not valid CBOR"),
    "not-a-map": (lambda c: cbor2.dumps([1, "describe"]), "canonical CBOR map"),
    "not-canonical": (lambda c: cbor2.dumps({"op": "describe", "v": 2}), "canonical CBOR map"),
    "wrong-version": (lambda c: cbor2.dumps({"v": 1, "op": "describe"}, canonical=True), "version"),
    "wrong-op": (lambda c: rpc.encode({"op": "sign-everything"}), "unknown op"),
    "extra-field": (lambda c: rpc.encode({"op": "describe", "please": True}), "fields are wrong"),
    "long-session-id": (
        lambda c: rpc.encode({"op": "deliver", "session_id": bytes(4096), "hellos": [], "messages": []}),
        "session_id must be 32 bytes",
    ),
    "long-message": (
        lambda c: rpc.encode(
            {
                "op": "start",
                "session_id": SID,
                "kind": "sign",
                "certificate": b"",
                "args": _sign_args(message=bytes(4096)),
            }
        ),
        "1..1024 bytes",
    ),
    "long-key-id": (lambda c: rpc.encode({"op": "key", "key_id": "k" * 1000}), "key_id must be"),
    "long-path": (
        lambda c: rpc.encode(
            {"op": "start", "session_id": SID, "kind": "sign", "certificate": b"", "args": _sign_args(path="m/0" * 200)}
        ),
        "path is too long",
    ),
    "too-many-messages": (
        lambda c: rpc.encode(
            {"op": "deliver", "session_id": SID, "hellos": [], "messages": [b""] * (rpc.MAX_MESSAGES + 1)}
        ),
        "at most",
    ),
    "roster-not-a-list": (lambda c: _keygen_start("node1,node2"), "roster"),
    "roster-party-zero": (lambda c: _keygen_start([[0, _descriptor_json(c, 0)], [1, _descriptor_json(c, 1)]]), "party"),
    "roster-garbage-descriptor": (lambda c: _keygen_start([[1, "{not json"], [2, _descriptor_json(c, 1)]]), "party 1"),
    "roster-party-twice": (
        lambda c: _keygen_start([[1, _descriptor_json(c, 0)], [1, _descriptor_json(c, 1)]]),
        "party 1 twice",
    ),
    "roster-node-twice": (
        lambda c: _keygen_start([[1, _descriptor_json(c, 0)], [2, _descriptor_json(c, 0)]]),
        "one node under two party numbers",
    ),
}


def _still_serves(node: Node) -> None:
    answer = post(node, {"op": "describe"})
    assert answer["ok"] is True and answer["descriptor"] == node.descriptor.to_json()


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_request_is_refused_and_the_node_carries_on(cluster: Cluster, case: str) -> None:
    node = cluster.nodes[0]
    build, says = BAD_REQUESTS[case]
    answer = post_raw(node, build(cluster))
    assert answer["ok"] is False and answer["reason"] == "bad-request", answer
    assert says in answer["error"], answer["error"]
    _still_serves(node)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/v1/rpc", 405), ("PUT", "/v1/rpc", 405), ("POST", "/v1/other", 404), ("GET", "/", 404)],
)
def test_wrong_method_or_path_is_refused(cluster: Cluster, method: str, path: str, status: int) -> None:
    node = cluster.nodes[0]
    response = httpx.request(method, node.descriptor.url + path, content=rpc.encode({"op": "describe"}), timeout=10)
    assert response.status_code == status
    _still_serves(node)


def test_oversized_body_is_refused_unread(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    response = httpx.post(node.descriptor.url + "/v1/rpc", content=bytes(rpc.MAX_REQUEST + 1), timeout=30)
    assert response.status_code == 413
    _still_serves(node)


def test_ecdsa_start_with_more_than_t_signers_is_refused_before_the_certificate_is_spent(
    cluster: Cluster, keys: dict[str, ClusterKey]
) -> None:
    """Threshold ECDSA (DKLs23) signs with exactly t parties, so a start naming more is a bad request.

    It must be refused as one before the approval is checked: a certificate is
    spent when it is accepted, and a request that can never run must not burn the
    approval an authority gave for a real payment (nor log a session as started).
    """
    key = keys[ECDSA]
    message = digest("ECDSA with every party")
    certificate = cluster.sign_cert(key, message)
    node = cluster.nodes[0]
    sid = hashlib.sha256(b"ecdsa with three signers").digest()
    answer = post(node, sign_start(sid, key, message, certificate, signers=[1, 2, 3]))
    assert answer["ok"] is False and answer["reason"] == "bad-request", answer
    assert outcomes(node, sid) == []
    outcome = run(sign(cluster, key, message, certificate=certificate))
    assert independently_ok(outcome, message)


def test_node_signs_after_a_barrage_of_bad_requests(cluster: Cluster, keys: dict[str, ClusterKey]) -> None:
    for build, _ in BAD_REQUESTS.values():
        for node in cluster.nodes:
            assert post_raw(node, build(cluster))["reason"] == "bad-request"
    for node in cluster.nodes:
        _still_serves(node)
    for scheme in SCHEMES:
        message = digest(f"after the barrage {scheme}")
        outcome = run(sign(cluster, keys[scheme], message))
        assert independently_ok(outcome, message)
