"""Signer nodes re-check the approvers' evidence: every forged or stretched approval is refused.

Pure tests of node/quorum.py first (encodings, the quorum rule), then the same
checks through :meth:`NodeService.handle` in one process: a refused start is
logged as ``refused``, starts no session and leaves the certificate unspent.
One threshold-ECDSA key is generated for the whole module on three nodes that
trust the approvers differently.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from itertools import count
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from harbour.chains.eip1559 import Eip1559Transaction, erc20_transfer_data, parse_address
from harbour.chains.ethereum import address_from_public_key, checksum_address
from harbour.cli.node import app
from harbour.crypto.ecdsa import EcdsaSignature
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.mpc import hd
from harbour.node import approval, rpc, signlog
from harbour.node.approval import MAX_EVIDENCE_LEN
from harbour.node.config import NodeConfig, update_approvers
from harbour.node.coordinator import ClusterKey, Coordinator, admin_params
from harbour.node.identity import NodeDescriptor
from harbour.node.keyfile import MIN_N
from harbour.node.quorum import (
    APPROVAL_DOMAIN,
    ETH,
    MAX_APPROVALS,
    Evidence,
    EvidenceError,
    Group,
    Intent,
    Quorum,
    approval_statement,
    check_evidence,
    parse_statement,
    sign_approval,
    verify_approval,
)
from harbour.node.service import NodeService, NodeStartError, init_node

PASS = "node passphrase"
CHAIN = 1337
PATH = "m/0/5"
RECIPIENT = checksum_address(bytes.fromhex("a1b2c3d4e5f6" * 3 + "abcd"))
THIEF = checksum_address(bytes.fromhex("6f" * 20))
TOKEN = checksum_address(bytes.fromhex("7a" * 20))


def _miscased(address: str) -> str:
    """The address with the case of one letter flipped: its EIP-55 checksum fails."""
    i = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    return address[:i] + address[i].swapcase() + address[i + 1 :]


ETHER = 10**18
SMALL_ORDER_KEY = bytes(32)  # encodes a point of order 4 on edwards25519


def _raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


APPROVERS = {name: Ed25519PrivateKey.generate() for name in ("a", "b", "c", "d", "e", "x", "initiator")}
PUB = {name: _raw(key) for name, key in APPROVERS.items()}
TRUSTED = [PUB[n] for n in ("a", "b", "c", "d", "e", "initiator")]  # "x" is a stranger to nodes 2 and 3
_ids = count(1)


def treasury(threshold: int = 2) -> Group:
    return Group("treasury", threshold, frozenset({PUB["a"], PUB["b"], PUB["c"]}))


def compliance(threshold: int = 1) -> Group:
    return Group("compliance", threshold, frozenset({PUB["d"], PUB["e"]}))


def two_of_treasury() -> Quorum:
    return Quorum("all", (treasury(2),), initiator=PUB["initiator"])


# -- a key on three nodes -------------------------------------------------------------------------


class Local:
    def __init__(self, node: NodeService) -> None:
        self.node = node

    async def call(self, request: bytes, timeout: float) -> bytes:
        return self.node.handle(request)


class Net:
    """Node 1 trusts the evidence's quorum; node 2 only TRUSTED; node 3 also needs 2 approvers and evidence."""

    def __init__(self, root: Path) -> None:
        self.authority = approval.AuthorityKey.generate()
        settings: list[dict[str, Any]] = [
            {},
            {"approvers": TRUSTED, "min_approvals": 1},
            {"approvers": TRUSTED, "min_approvals": 2, "require_evidence": True},
        ]
        self.nodes: list[NodeService] = []
        self.descriptors: list[NodeDescriptor] = []
        for i, extra in enumerate(settings, start=1):
            self.descriptors.append(
                init_node(
                    root / f"n{i}",
                    name=f"n{i}",
                    listen=f"127.0.0.1:{7500 + i}",
                    authorities=[self.authority.public_bytes],
                    passphrase=PASS,
                    kdf_n=MIN_N,
                    **extra,
                )
            )
            self.nodes.append(NodeService.open(root / f"n{i}", passphrase=PASS))
        params = admin_params("keygen", scheme="ecdsa-secp256k1", threshold=2, nodes=self.descriptors)
        cert = approval.issue(
            self.authority, kind="keygen", key_id="vault", params=params, now=int(time.time()), expires_in=300
        )
        self.key: ClusterKey = self.run(lambda co: co.keygen(self.descriptors, 2, "ecdsa-secp256k1", cert))

    def coordinator(self) -> Coordinator:
        return Coordinator(transports={d.node_id: Local(n) for d, n in zip(self.descriptors, self.nodes, strict=True)})

    def run(self, step: Any) -> Any:
        async def go() -> Any:
            async with self.coordinator() as co:
                return await step(co)

        return asyncio.run(go())

    def child(self, path: str = PATH) -> Secp256k1Point:
        point = hd.derive(self.key.public.group, self.key.public.group_public_key, self.key.chain_code, path)
        assert isinstance(point.public_key, Secp256k1Point)
        return point.public_key

    def address(self, path: str = PATH) -> str:
        return address_from_public_key(self.child(path))

    def certificate(
        self, digest: bytes, evidence: bytes | None, *, path: str = PATH, signers: Sequence[int] = (1, 2)
    ) -> bytes:
        return approval.issue(
            self.authority,
            kind="sign",
            signers=signers,
            key_id=self.key.key_id,
            path=path,
            digests=[digest],
            now=int(time.time()),
            expires_in=300,
            evidence=evidence,
        )


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    made = Net(tmp_path_factory.mktemp("quorum"))
    yield made
    for node in made.nodes:
        node.close()


# -- building evidence ----------------------------------------------------------------------------


def eth_intent(net: Net, **changes: Any) -> Intent:
    fields: dict[str, Any] = {
        "chain_id": CHAIN,
        "sender": net.address(),
        "recipient": RECIPIENT,
        "asset": ETH,
        "amount": ETHER,
    }
    return Intent(**{**fields, **changes})


def transaction(intent: Intent, **changes: Any) -> Eip1559Transaction:
    if intent.asset == ETH:
        to, value, data = parse_address(intent.recipient), intent.amount, b""
    else:
        to, value, data = (
            parse_address(intent.asset),
            0,
            erc20_transfer_data(parse_address(intent.recipient), intent.amount),
        )
    fields: dict[str, Any] = {
        "chain_id": intent.chain_id,
        "nonce": 0,
        "max_priority_fee_per_gas": 10**9,
        "max_fee_per_gas": 3 * 10**9,
        "gas_limit": 60_000,
        "to": to,
        "value": value,
        "data": data,
    }
    return Eip1559Transaction(**{**fields, **changes})


def evidence(
    net: Net,
    *,
    intent: Intent | None = None,
    tx: Eip1559Transaction | None = None,
    quorum_: Quorum | None = None,
    approvers: tuple[str, ...] = ("a", "b"),
    signed_intent: Intent | None = None,
    tx_id: str | None = None,
    signed_tx_id: str | None = None,
) -> Evidence:
    """Evidence that holds unless a keyword says otherwise; ``signed_*`` is what the approvers actually saw."""
    intent = intent or eth_intent(net)
    tx_id = tx_id or f"tx-{next(_ids)}"
    statement = approval_statement(
        org="org-1",
        transaction_id=signed_tx_id or tx_id,
        key_id=net.key.key_id,
        path=PATH,
        intent=signed_intent or intent,
    )
    return Evidence(
        org="org-1",
        transaction_id=tx_id,
        intent=intent,
        transaction=tx or transaction(intent),
        quorum=quorum_ or two_of_treasury(),
        approvals=[(PUB[n], sign_approval(APPROVERS[n], statement)) for n in approvers],
    )


def start(
    node: NodeService, net: Net, ev: Evidence | None, *, data: bytes | None = None, digest: bytes | None = None
) -> tuple[dict[str, Any], bytes, bytes]:
    """Send one sign ``start`` for the evidence's transaction; (answer, certificate, session id)."""
    digest = digest or (ev.transaction.signing_hash() if ev is not None else secrets.token_bytes(32))
    party = next(p for p, d in net.key.roster.items() if d.node_id == node.identity.node_id)
    other = 1 if party != 1 else 2
    encoded = data if data is not None else (ev.encode() if ev is not None else None)
    cert = net.certificate(digest, encoded, signers=sorted([party, other]))
    sid = secrets.token_bytes(32)
    request = {
        "op": "start",
        "session_id": sid,
        "kind": "sign",
        "certificate": cert,
        "args": {"key_id": net.key.key_id, "path": PATH, "message": digest, "signers": sorted([party, other])},
    }
    obj = cbor2.loads(node.handle(rpc.encode(request)))
    assert isinstance(obj, dict)
    return obj, cert, sid


def spent(node: NodeService, cert: bytes) -> bool:
    parsed, _ = approval.parse(cert)
    return (parsed.authority_id, parsed.nonce) in node.ledger


def accepted(node: NodeService, net: Net, ev: Evidence) -> None:
    obj, cert, sid = start(node, net, ev)
    assert obj["ok"] is True, obj
    assert spent(node, cert)
    assert node.handle(rpc.encode({"op": "abort", "session_id": sid, "certificate": b""}))


def refused(node: NodeService, net: Net, ev: Evidence | None, reason: str, needle: str, **kw: Any) -> signlog.Entry:
    obj, cert, sid = start(node, net, ev, **kw)
    assert obj["ok"] is False and obj["reason"] == "approval", obj
    assert f"approval refused ({reason})" in obj["error"], obj["error"]
    assert needle in obj["error"], obj["error"]
    assert not spent(node, cert), "a refused certificate stays unspent"
    assert sid not in node.sessions, "nothing runs, so nothing is signed"
    last = list(signlog.entries(node.directory / "sign.log"))[-1]
    assert last.outcome == "refused" and last.reason.startswith(f"{reason}: ")
    assert last.certificate_hash == approval.certificate_hash(cert)
    return last


# == pure: intents, statements, quorums, encodings ================================================


def test_intent_json_round_trip() -> None:
    intent = Intent(CHAIN, RECIPIENT, THIEF, TOKEN, 2**256 - 1)
    doc = intent.to_json()
    assert doc == {"chain_id": CHAIN, "from": RECIPIENT, "to": THIEF, "asset": TOKEN, "amount": str(2**256 - 1)}
    assert Intent.from_json(json.loads(json.dumps(doc))) == intent


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"chain_id": 0}, "chain_id"),
        ({"chain_id": True}, "chain_id"),
        ({"chain_id": 2**64}, "chain_id"),
        ({"sender": RECIPIENT.lower()}, "EIP-55 form"),
        ({"recipient": "0x" + "11" * 19}, "recipient"),
        ({"recipient": _miscased(RECIPIENT)}, "checksum"),
        ({"asset": "eth"}, "asset"),
        ({"asset": TOKEN.lower()}, "asset"),
        ({"amount": 0}, "amount"),
        ({"amount": 1.0}, "amount"),
        ({"amount": 2**256}, "amount"),
    ],
)
def test_bad_intents_are_refused(changes: dict[str, Any], needle: str) -> None:
    fields: dict[str, Any] = {"chain_id": CHAIN, "sender": RECIPIENT, "recipient": THIEF, "asset": ETH, "amount": 5}
    fields |= changes
    with pytest.raises(EvidenceError, match=needle):
        Intent(**fields)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"chain_id": CHAIN, "from": RECIPIENT, "to": THIEF, "asset": ETH}, "exactly the fields"),
        ({"chain_id": CHAIN, "from": RECIPIENT, "to": THIEF, "asset": ETH, "amount": 5}, "decimal string"),
        ({"chain_id": CHAIN, "from": RECIPIENT, "to": THIEF, "asset": ETH, "amount": "05"}, "decimal string"),
        ({"chain_id": CHAIN, "from": RECIPIENT, "to": THIEF, "asset": ETH, "amount": "-5"}, "decimal string"),
        ({"chain_id": CHAIN, "from": RECIPIENT, "to": THIEF, "asset": ETH, "amount": "٥"}, "decimal string"),
        ({"chain_id": "1", "from": RECIPIENT, "to": THIEF, "asset": ETH, "amount": "5"}, "chain_id"),
        ([], "exactly the fields"),
    ],
)
def test_bad_intent_json_is_refused(doc: Any, needle: str) -> None:
    with pytest.raises(EvidenceError, match=needle):
        Intent.from_json(doc)


def test_the_statement_binds_every_field_and_parses_back() -> None:
    intent = Intent(CHAIN, RECIPIENT, THIEF, ETH, 5)
    base: dict[str, Any] = {"org": "o", "transaction_id": "t", "key_id": "k", "path": "m/1", "intent": intent}
    statement = approval_statement(**base)
    assert parse_statement(statement) == {**base, "decision": "approve"}
    variants: list[dict[str, Any]] = [
        {"org": "o2"},
        {"transaction_id": "t2"},
        {"key_id": "k2"},
        {"path": "m/2"},
        {"intent": replace(intent, amount=6)},
        {"intent": replace(intent, recipient=RECIPIENT)},
        {"decision": "reject"},
    ]
    assert len({statement, *(approval_statement(**(base | v)) for v in variants)}) == len(variants) + 1
    signature = sign_approval(APPROVERS["a"], statement)
    assert verify_approval(PUB["a"], signature, statement)
    assert not verify_approval(PUB["b"], signature, statement)
    assert not verify_approval(PUB["a"], signature, approval_statement(**(base | {"decision": "reject"})))
    assert not verify_approval(PUB["a"], APPROVERS["a"].sign(statement), statement), "the domain tag is required"
    assert not verify_approval(SMALL_ORDER_KEY, signature, statement)


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xff", "not valid CBOR"),
        (cbor2.dumps({"b": 1, "a": 2}), "canonical"),
        (cbor2.dumps({"version": 1}, canonical=True), "exactly"),
    ],
)
def test_bad_statements_are_refused(data: bytes, needle: str) -> None:
    with pytest.raises(EvidenceError, match=needle):
        parse_statement(data)
    with pytest.raises(EvidenceError, match="path"):
        approval_statement(
            org="o", transaction_id="t", key_id="k", path="m/01", intent=Intent(1, RECIPIENT, THIEF, ETH, 1)
        )


def test_quorum_rules() -> None:
    a, b, c, d, i = (PUB[n] for n in ("a", "b", "c", "d", "initiator"))
    both = Quorum("all", (treasury(2), compliance(1)))
    assert both.satisfied({a, b, d}) and not both.satisfied({a, b}) and not both.satisfied({a, d})
    either = Quorum("any", (treasury(2), compliance(1)))
    assert either.satisfied({d}) and either.satisfied({a, c}) and not either.satisfied({a})
    # under "all", one person in two groups fills one seat only (four eyes)
    overlap = Quorum("all", (Group("g1", 1, frozenset({a, b})), Group("g2", 1, frozenset({a}))))
    assert not overlap.satisfied({a}) and overlap.satisfied({a, b})
    assert Quorum("any", overlap.groups).satisfied({a})
    # the initiator never counts, even as a member
    own = Quorum("all", (Group("g", 2, frozenset({a, i})),), initiator=i)
    assert not own.satisfied({a, i})
    assert Quorum("all", ()).satisfied(set()), "no groups: the service requires no approval"
    assert not Quorum("all", (Group("empty", 1, frozenset()),)).satisfied({a}), "a group of nobody is never met"
    assert "treasury: 1 of 2" in both.explain({a, d})


@pytest.mark.parametrize(
    ("build", "needle"),
    [
        (lambda: Quorum("most", ()), "combine"),  # type: ignore[arg-type]
        (lambda: Quorum("any", ()), "never be satisfied"),
        (lambda: Quorum("all", (treasury(), treasury())), "same name"),
        (lambda: Quorum("all", tuple(Group(f"g{i}", 1, frozenset({PUB["a"]})) for i in range(33))), "at most 32"),
        (lambda: Group("g", 0, frozenset({PUB["a"]})), "threshold"),
        (lambda: Group("g", 65, frozenset({PUB["a"]})), "threshold"),
        (lambda: Group("", 1, frozenset({PUB["a"]})), "group name"),
        (lambda: Group("g", 1, frozenset({PUB["a"][:31]})), "32-byte"),
        (lambda: Group("g", 1, frozenset({SMALL_ORDER_KEY})), "small order"),
        (lambda: Quorum("all", (), initiator=b"\x01" * 31), "initiator"),
    ],
)
def test_bad_quorums_are_refused(build: Any, needle: str) -> None:
    with pytest.raises(EvidenceError, match=needle):
        build()


def _pure_evidence(**changes: Any) -> Evidence:
    """Evidence for a fixed key (no nodes): a secp256k1 point standing in for the child key."""
    from harbour.crypto.secp256k1 import SECP256K1

    child = SECP256K1.base_mul(12345)
    assert isinstance(child, Secp256k1Point)
    intent = Intent(CHAIN, address_from_public_key(child), RECIPIENT, ETH, ETHER)
    statement = approval_statement(org="o", transaction_id="t", key_id="k", path="m", intent=intent)
    fields: dict[str, Any] = {
        "org": "o",
        "transaction_id": "t",
        "intent": intent,
        "transaction": transaction(intent),
        "quorum": two_of_treasury(),
        "approvals": [(PUB[n], sign_approval(APPROVERS[n], statement)) for n in ("a", "b")],
    }
    return Evidence(**(fields | changes))


def test_evidence_round_trips_and_checks_without_nodes() -> None:
    from harbour.crypto.secp256k1 import SECP256K1

    ev = _pure_evidence()
    data = ev.encode()
    assert Evidence.decode(data) == ev
    child = SECP256K1.base_mul(12345)
    assert isinstance(child, Secp256k1Point)
    kw: dict[str, Any] = {"key_id": "k", "path": "m", "child_public_key": child, "min_approvals": 2}
    check_evidence(ev, digest=ev.transaction.signing_hash(), trusted_approvers=None, **kw)
    check_evidence(ev, digest=ev.transaction.signing_hash(), trusted_approvers=frozenset(TRUSTED), **kw)
    with pytest.raises(approval.ApprovalError, match="at least 3"):
        check_evidence(ev, digest=ev.transaction.signing_hash(), trusted_approvers=None, **(kw | {"min_approvals": 3}))


def test_the_largest_evidence_fits_in_a_certificate() -> None:
    keys = [_raw(Ed25519PrivateKey.generate()) for _ in range(MAX_APPROVALS)]
    groups = tuple(
        Group(f"{'g' * 62}{i:02d}", 64, frozenset(keys[(i * 8) % 64 :] + keys[: (i * 8) % 64])) for i in range(4)
    )
    ev = _pure_evidence(
        org="o" * 128,
        transaction_id="t" * 128,
        quorum=Quorum("all", groups, initiator=keys[0]),
        approvals=[(k, bytes(64)) for k in keys],
    )
    ev = replace(ev, transaction=replace(ev.transaction, data=bytes(4096)))
    data = ev.encode()
    assert len(data) <= MAX_EVIDENCE_LEN
    authority = approval.AuthorityKey.generate()
    cert = approval.issue(
        authority,
        kind="sign",
        signers=[1, 2],
        key_id="k" * 128,
        path="m" + "/2147483647" * 23,
        digests=[bytes(32)],
        now=0,
        expires_in=60,
        evidence=data,
    )
    assert len(cert) <= approval.MAX_CERTIFICATE_LEN
    assert approval.parse(cert)[0].evidence == data


def test_old_certificates_keep_their_bytes() -> None:
    """No evidence, no field: a certificate without evidence encodes exactly as before."""
    authority = approval.AuthorityKey.generate()
    cert = approval.issue(
        authority, kind="sign", signers=[1, 2], key_id="k", digests=[bytes(32)], now=0, expires_in=60, nonce=bytes(16)
    )
    body = cbor2.loads(cbor2.loads(cert)["cert"])
    assert "evidence" not in body and approval.parse(cert)[0].evidence is None
    assert "evidence" not in approval.parse(cert)[0].to_json()


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"kind": "refresh", "evidence": b"x"}, "carries no evidence"),
        ({"digests": [bytes(32), b"\x01" * 32], "evidence": b"x"}, "exactly one digest"),
        ({"evidence": b""}, "evidence must be"),
        ({"evidence": b"x" * (MAX_EVIDENCE_LEN + 1)}, "evidence must be"),
    ],
)
def test_certificates_refuse_misplaced_evidence(kwargs: dict[str, Any], needle: str) -> None:
    authority = approval.AuthorityKey.generate()
    fields: dict[str, Any] = {
        "kind": "sign", "key_id": "k", "digests": [bytes(32)], "signers": [1, 2], "now": 0, "expires_in": 60
    }  # fmt: skip
    if kwargs.get("kind") == "refresh":
        fields |= {"digests": [], "params": {}, "signers": []}
    with pytest.raises(approval.ApprovalError, match=needle):
        approval.issue(authority, **(fields | kwargs))


def test_a_null_evidence_field_is_malformed() -> None:
    authority = approval.AuthorityKey.generate()
    cert = approval.issue(authority, kind="sign", signers=[1, 2], key_id="k", digests=[bytes(32)], now=0, expires_in=60)
    body = dict(cbor2.loads(cbor2.loads(cert)["cert"])) | {"evidence": None}
    raw = cbor2.dumps(body, canonical=True)
    data = cbor2.dumps({"cert": raw, "sig": authority.sign(approval.DOMAIN + raw)}, canonical=True)
    with pytest.raises(approval.ApprovalError, match="evidence must be bytes"):
        approval.parse(data)


def _evidence_map() -> dict[str, Any]:
    return dict(cbor2.loads(_pure_evidence().encode()))


def _with(**changes: Any) -> bytes:
    return bytes(cbor2.dumps(_evidence_map() | changes, canonical=True))


def _quorum_with(**changes: Any) -> bytes:
    return _with(quorum=_evidence_map()["quorum"] | changes)


MALFORMED: dict[str, tuple[bytes, str]] = {
    "not CBOR": (b"\xff\x00", "not valid CBOR"),
    "trailing byte": (_pure_evidence().encode() + b"\x00", "not canonical CBOR"),
    "not a map": (cbor2.dumps([1, 2]), "map of exactly"),
    "extra field": (_with(note="hi"), "map of exactly"),
    "version 2": (_with(version=2), "version"),
    "version true": (_with(version=True), "version"),
    "empty org": (_with(org=""), "org"),
    "tx id not text": (_with(transaction_id=b"t"), "transaction_id"),
    "amount as integer": (_with(intent=_evidence_map()["intent"] | {"amount": 10**18}), "decimal string"),
    "transaction field missing": (_with(transaction={"chain_id": "1"}), "transaction"),
    "transaction nonce not canonical": (
        _with(transaction=_evidence_map()["transaction"] | {"nonce": "00"}),
        "canonical decimal",
    ),
    "unsorted groups": (
        _quorum_with(
            groups=[
                {"name": "z", "threshold": 1, "members": [PUB["a"]]},
                {"name": "a", "threshold": 1, "members": [PUB["b"]]},
            ]
        ),
        "canonical form",
    ),
    "unsorted members": (
        _quorum_with(groups=[{"name": "g", "threshold": 1, "members": sorted([PUB["a"], PUB["b"]], reverse=True)}]),
        "canonical form",
    ),
    "member twice": (
        _quorum_with(groups=[{"name": "g", "threshold": 1, "members": [PUB["a"], PUB["a"]]}]),
        "canonical form",
    ),
    "member not bytes": (_quorum_with(groups=[{"name": "g", "threshold": 1, "members": ["aa"]}]), "byte strings"),
    "small-order member": (
        _quorum_with(groups=[{"name": "g", "threshold": 1, "members": [SMALL_ORDER_KEY]}]),
        "small order",
    ),
    "threshold as text": (
        _quorum_with(groups=[{"name": "g", "threshold": "1", "members": [PUB["a"]]}]),
        "threshold",
    ),
    "quorum field missing": (_with(quorum={"combine": "all", "groups": []}), "quorum is a map"),
    "too many approvals": (_with(approvals=[[PUB["a"], bytes(64)]] * (MAX_APPROVALS + 1)), "at most 64"),
    "approval not a pair": (_with(approvals=[[PUB["a"]]]), "pair"),
    "short signature": (_with(approvals=[[PUB["a"], bytes(63)]]), "64 bytes"),
    "short approver key": (_with(approvals=[[PUB["a"][:31], bytes(64)]]), "32-byte"),
    "oversized": (b"\x00" * (MAX_EVIDENCE_LEN + 1), "more than"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_evidence_is_refused(case: str) -> None:
    data, needle = MALFORMED[case]
    with pytest.raises(EvidenceError, match=needle):
        Evidence.decode(data)


# == through the node ============================================================================


def test_approved_withdrawal_is_signed(net: Net) -> None:
    """2 of treasury approve; nodes 1 and 2 check and sign; the signature is the vault's account's."""
    ev = evidence(net)
    digest = ev.transaction.signing_hash()
    cert = net.certificate(digest, ev.encode())
    outcome = net.run(lambda co: co.sign(net.key, digest, cert, path=PATH, signers=[1, 2]))
    assert isinstance(outcome.signature, EcdsaSignature)
    assert address_from_public_key(outcome.group_public_key) == ev.intent.sender
    raw = ev.transaction.signed(outcome.signature.recovery_id, outcome.signature.r, outcome.signature.s)
    assert raw[0] == 2
    for node in net.nodes[:2]:
        started = [e for e in signlog.entries(node.directory / "sign.log") if e.outcome == "started"][-1]
        assert f"transaction {ev.transaction_id!r}" in started.reason


def test_node_with_a_floor_signs_with_enough_approvers(net: Net) -> None:
    ev = evidence(net, quorum_=Quorum("all", (treasury(2), compliance(1))), approvers=("a", "c", "e"))
    accepted(net.nodes[2], net, ev)


def test_erc20_withdrawal_is_accepted(net: Net) -> None:
    ev = evidence(net, intent=eth_intent(net, asset=TOKEN, amount=5_000_000))
    assert ev.transaction.value == 0 and len(ev.transaction.data) == 68
    for node in net.nodes:
        accepted(node, net, ev)


def test_forged_approval_signature(net: Net) -> None:
    ev = evidence(net)
    forged = [(ev.approvals[0][0], bytes(64)), ev.approvals[1]]
    refused(net.nodes[0], net, replace(ev, approvals=forged), "approvals", "not a valid signature")


def test_one_bad_signature_refuses_even_if_the_rest_meet_the_quorum(net: Net) -> None:
    ev = evidence(net, approvers=("a", "b", "c"))
    flipped = bytes([ev.approvals[2][1][0] ^ 1]) + ev.approvals[2][1][1:]
    approvals = [*ev.approvals[:2], (ev.approvals[2][0], flipped)]
    refused(net.nodes[0], net, replace(ev, approvals=approvals), "approvals", PUB["c"].hex())


@pytest.mark.parametrize(
    "what",
    ["amount", "recipient", "transaction id", "sender"],
)
def test_approval_of_something_else(net: Net, what: str) -> None:
    """The approvers signed another statement: the service changed what they saw."""
    seen = eth_intent(net)  # what the approvers were shown and signed
    if what == "transaction id":
        ev = evidence(net, intent=seen, signed_tx_id="tx-approved-elsewhere")
    elif what == "sender":
        ev = evidence(net, intent=seen, signed_intent=replace(seen, sender=THIEF))
    else:
        paid = replace(seen, amount=10 * seen.amount) if what == "amount" else replace(seen, recipient=THIEF)
        ev = evidence(net, intent=paid, signed_intent=seen)
    refused(net.nodes[0], net, ev, "approvals", "not a valid signature over this transaction's statement")


def test_approvals_for_another_address_of_the_vault(net: Net) -> None:
    """Approvals to pay from one address of the vault do not pay from the address being signed for."""
    ev = evidence(net)
    other = net.address("m/0/6")
    intent = replace(ev.intent, sender=other)
    statement = approval_statement(
        org="org-1", transaction_id=ev.transaction_id, key_id=net.key.key_id, path="m/0/6", intent=intent
    )
    moved = replace(
        ev,
        intent=intent,
        approvals=[(PUB[n], sign_approval(APPROVERS[n], statement)) for n in ("a", "b")],
    )
    refused(net.nodes[0], net, moved, "intent", f"is the account {ev.intent.sender}")


def test_duplicate_approver(net: Net) -> None:
    ev = evidence(net, approvers=("a",))
    refused(net.nodes[0], net, replace(ev, approvals=[ev.approvals[0], ev.approvals[0]]), "approvals", "listed twice")


def test_initiator_approving_their_own_transaction(net: Net) -> None:
    q = Quorum("all", (Group("ops", 2, frozenset({PUB["a"], PUB["initiator"]})),), initiator=PUB["initiator"])
    ev = evidence(net, quorum_=q, approvers=("a", "initiator"))
    refused(net.nodes[0], net, ev, "approvals", "initiator")


def test_approver_not_in_the_nodes_list(net: Net) -> None:
    """Node 1 takes the quorum from the evidence; node 2 does not count an approval by a key it does not trust."""
    q = Quorum("all", (Group("treasury", 2, frozenset({PUB["a"], PUB["x"]})),))
    ev = evidence(net, quorum_=q, approvers=("a", "x"))
    accepted(net.nodes[0], net, ev)
    refused(net.nodes[1], net, ev, "quorum", f"does not trust them: {PUB['x'].hex()}")


def test_an_untrusted_member_who_did_not_approve_is_no_obstacle(net: Net) -> None:
    """The service's group may name people the node does not know; trusted approvals alone can meet it."""
    q = Quorum("all", (Group("treasury", 1, frozenset({PUB["a"], PUB["x"]})),))
    accepted(net.nodes[1], net, evidence(net, quorum_=q, approvers=("a",)))


def test_service_invented_quorum_is_refused_by_a_node_with_a_list(net: Net) -> None:
    """A compromised service names two keys of its own as the quorum: only the configured list stops it."""
    fakes = [Ed25519PrivateKey.generate() for _ in range(2)]
    intent = eth_intent(net, recipient=THIEF)
    tx_id = f"tx-{next(_ids)}"
    statement = approval_statement(org="org-1", transaction_id=tx_id, key_id=net.key.key_id, path=PATH, intent=intent)
    ev = Evidence(
        "org-1",
        tx_id,
        intent,
        transaction(intent),
        Quorum("all", (Group("treasury", 2, frozenset(_raw(k) for k in fakes)),)),
        [(_raw(k), sign_approval(k, statement)) for k in fakes],
    )
    accepted(net.nodes[0], net, ev)
    refused(net.nodes[1], net, ev, "quorum", "does not trust them")


@pytest.mark.parametrize(
    ("q", "approvers", "needle"),
    [
        (Quorum("all", (treasury(2),)), ("a",), "treasury: 1 of 2"),
        (Quorum("all", (treasury(2), compliance(1))), ("a", "b"), "compliance: 0 of 1"),
        (Quorum("any", (treasury(3), compliance(2))), ("a", "b", "d"), "any of"),
        (
            Quorum("all", (Group("g1", 1, frozenset({PUB["a"]})), Group("g2", 1, frozenset({PUB["a"], PUB["b"]})))),
            ("a",),
            "one group",
        ),
        (Quorum("all", (treasury(2),)), ("a", "x"), "treasury: 1 of 2"),
    ],
    ids=["all-short", "all-missing-group", "any-none-met", "all-one-person-two-groups", "outsider-does-not-count"],
)
def test_quorum_not_met(net: Net, q: Quorum, approvers: tuple[str, ...], needle: str) -> None:
    refused(net.nodes[0], net, evidence(net, quorum_=q, approvers=approvers), "quorum", needle)


def test_any_quorum_met_by_one_group(net: Net) -> None:
    accepted(net.nodes[0], net, evidence(net, quorum_=Quorum("any", (treasury(3), compliance(1))), approvers=("d",)))


def test_transaction_hash_differs_from_the_digest(net: Net) -> None:
    ev = evidence(net)
    refused(
        net.nodes[0], net, ev, "transaction", "not the digest", digest=transaction(ev.intent, nonce=9).signing_hash()
    )


@pytest.mark.parametrize(
    ("asset", "tx_changes", "needle"),
    [
        (ETH, {"to": parse_address(THIEF)}, f"pays {THIEF}"),
        (ETH, {"value": 10 * ETHER}, "sends"),
        (ETH, {"data": b"\x01"}, "call data"),
        (TOKEN, {"to": parse_address(THIEF)}, "not the token"),
        (TOKEN, {"data": erc20_transfer_data(parse_address(THIEF), ETHER)}, "not transfer("),
        (TOKEN, {"data": erc20_transfer_data(parse_address(RECIPIENT), 2 * ETHER)}, "not transfer("),
        (TOKEN, {"value": 1}, "sends no ETH"),
        (ETH, {"chain_id": 1}, "for chain 1"),
    ],
    ids=["eth-to", "eth-value", "eth-data", "erc20-token", "erc20-recipient", "erc20-amount", "erc20-value", "chain"],
)
def test_transaction_does_not_carry_out_the_intent(
    net: Net, asset: str, tx_changes: dict[str, Any], needle: str
) -> None:
    intent = eth_intent(net, asset=asset)
    ev = evidence(net, intent=intent, tx=transaction(intent, **tx_changes))
    refused(net.nodes[0], net, ev, "transaction", needle)


def test_sender_is_not_the_keys_address(net: Net) -> None:
    refused(net.nodes[0], net, evidence(net, intent=eth_intent(net, sender=THIEF)), "intent", f"pays from {THIEF}")


def test_node_requiring_evidence_refuses_a_plain_certificate(net: Net) -> None:
    refused(net.nodes[2], net, None, "evidence", "has none")
    obj, _, sid = start(net.nodes[0], net, None)
    assert obj["ok"] is True, "a node that does not require evidence signs as before"
    net.nodes[0].handle(rpc.encode({"op": "abort", "session_id": sid, "certificate": b""}))


def test_min_approvals_floor(net: Net) -> None:
    ev = evidence(net, quorum_=Quorum("all", (treasury(1),)), approvers=("a",))
    accepted(net.nodes[1], net, ev)
    refused(net.nodes[2], net, ev, "quorum", "at least 2")


def test_no_approval_quorum_meets_only_a_zero_floor(net: Net) -> None:
    ev = evidence(net, quorum_=Quorum("all", ()), approvers=())
    accepted(net.nodes[0], net, ev)
    refused(net.nodes[2], net, ev, "quorum", "at least 2")


@pytest.mark.parametrize(
    "case", ["not CBOR", "extra field", "unsorted members", "short signature", "amount as integer"]
)
def test_malformed_evidence_at_the_node(net: Net, case: str) -> None:
    data, needle = MALFORMED[case]
    refused(net.nodes[0], net, None, "evidence", needle, data=data)


def test_approvals_pay_once(net: Net) -> None:
    """A second chain nonce for the same approved transaction is refused; a fee replacement is not."""
    ev = evidence(net)
    accepted(net.nodes[0], net, ev)
    accepted(net.nodes[0], net, replace(ev, transaction=replace(ev.transaction, max_fee_per_gas=5 * 10**9)))
    again = replace(ev, transaction=replace(ev.transaction, nonce=1))
    refused(net.nodes[0], net, again, "reused", "chain nonce 0")


# == configuration ==============================================================================


def _node(tmp_path: Path, **extra: Any) -> Path:
    init_node(
        tmp_path / "n",
        name="n",
        listen="127.0.0.1:7600",
        authorities=[approval.AuthorityKey.generate().public_bytes],
        passphrase=PASS,
        kdf_n=MIN_N,
        **extra,
    )
    return tmp_path / "n"


def test_an_edited_approver_list_refuses_to_start(tmp_path: Path) -> None:
    directory = _node(tmp_path, approvers=[PUB["a"]], min_approvals=1, require_evidence=True)
    path = directory / "node.json"
    config = json.loads(path.read_text())
    assert config["approvers"] == [PUB["a"].hex()] and config["min_approvals"] == 1 and config["require_evidence"]
    for change in ({"approvers": [PUB["a"].hex(), PUB["x"].hex()]}, {"require_evidence": False}):
        path.write_text(json.dumps(config | change, indent=2, sort_keys=True) + "\n")
        with pytest.raises(NodeStartError, match="edited"):
            NodeService.open(directory, passphrase=PASS)


def test_approvers_change_only_through_the_sealed_copy(tmp_path: Path) -> None:
    directory = _node(tmp_path, approvers=[PUB["a"]], min_approvals=1)
    config, differed = update_approvers(directory, add=[PUB["b"], PUB["a"]], min_approvals=2, passphrase=PASS)
    assert config.approvers == (PUB["a"], PUB["b"]) and config.min_approvals == 2 and not differed
    node = NodeService.open(directory, passphrase=PASS)
    try:
        assert node.config.trusted_approvers == frozenset({PUB["a"], PUB["b"]})
        with pytest.raises(NodeStartError, match="stop it first"):
            update_approvers(directory, remove=[PUB["b"]], passphrase=PASS)
    finally:
        node.close()
    with pytest.raises(NodeStartError, match="more than the 1"):
        update_approvers(directory, remove=[PUB["b"]], passphrase=PASS)
    with pytest.raises(NodeStartError, match="passphrase"):
        update_approvers(directory, add=[PUB["c"]], passphrase="wrong")
    # an edit of the file is undone from the sealed copy, not built upon
    path = directory / "node.json"
    path.write_text(path.read_text().replace(PUB["b"].hex(), PUB["x"].hex()))
    config, differed = update_approvers(directory, add=[PUB["c"]], passphrase=PASS)
    assert differed and PUB["x"] not in config.approvers and config.approvers == (PUB["a"], PUB["b"], PUB["c"])
    NodeService.open(directory, passphrase=PASS).close()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"approvers": [PUB["a"], PUB["a"]]}, "twice"),
        ({"approvers": [SMALL_ORDER_KEY]}, "small order"),
        ({"approvers": [PUB["a"]], "min_approvals": 2}, "more than the 1"),
        ({"approvers": [PUB["a"]], "min_approvals": 0}, "at least 1"),
        ({"min_approvals": MAX_APPROVALS + 1}, "min_approvals"),
        ({"min_approvals": -1}, "min_approvals"),
    ],
)
def test_bad_approval_settings_are_refused(tmp_path: Path, extra: dict[str, Any], needle: str) -> None:
    with pytest.raises(NodeStartError, match=needle):
        _node(tmp_path, **extra)


@pytest.mark.parametrize(
    "later",
    [
        ("approvers", "min_approvals", "require_evidence", "counter", "organisations_only"),
        ("organisations_only",),
    ],
)
def test_a_node_json_from_before_approvers_still_starts(tmp_path: Path, later: tuple[str, ...]) -> None:
    """Nodes created before these settings have none of the later fields; they mean none set."""
    directory = _node(tmp_path)
    from harbour.node.store import SecretStore

    doc = json.loads((directory / "node.json").read_text())
    for name in later:
        del doc[name]
    old = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    (directory / "node.json").write_text(old)
    with SecretStore.open(directory / "store", passphrase=PASS) as store:
        store.put("config", old.encode())
    node = NodeService.open(directory, passphrase=PASS)
    try:
        assert node.config.trusted_approvers is None and node.config.min_approvals == 0
        assert not node.config.require_evidence and not node.config.organisations_only
    finally:
        node.close()


def test_cli_init_and_approvers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("HARBOUR_NODE_PASSPHRASE", PASS)
    authority = approval.AuthorityKey.generate()
    authority.save(tmp_path)
    keys = tmp_path / "approvers.txt"
    keys.write_text(f"# treasury\n{PUB['a'].hex()}\n\n{PUB['b'].hex()}  # bob\n")
    directory = tmp_path / "n"
    base = ["init", "--dir", str(directory), "--name", "n", "--listen", "127.0.0.1:7601"]
    base += ["--authority", str(tmp_path / "authority.pub")]
    bad = runner.invoke(app, [*base, "--approver", "zz"])
    assert bad.exit_code == 2 and "64 hex digits" in bad.output
    result = runner.invoke(
        app,
        [*base, "--approvers", str(keys), "--approver", PUB["c"].hex(), "--min-approvals", "2", "--require-evidence"],
    )
    assert result.exit_code == 0, result.output
    config = json.loads((directory / "node.json").read_text())
    assert config["approvers"] == [PUB[n].hex() for n in ("c", "a", "b")]
    assert config["min_approvals"] == 2 and config["require_evidence"] is True
    result = runner.invoke(app, ["approvers", "--dir", str(directory), "--remove", PUB["a"].hex(), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["approvers"] == [PUB["c"].hex(), PUB["b"].hex()]
    result = runner.invoke(app, ["approvers", "--dir", str(directory)])
    assert result.exit_code == 0 and f"approvers: {PUB['c'].hex()}, {PUB['b'].hex()}" in result.stdout
    result = runner.invoke(app, ["approvers", "--dir", str(directory), "--remove", PUB["b"].hex()])
    assert result.exit_code == 1 and "more than the 1" in result.output


def test_approval_domain_is_distinct() -> None:
    domains: set[bytes] = {APPROVAL_DOMAIN, approval.DOMAIN, approval.MESSAGE_DOMAIN}
    assert len(domains) == 3 and all(d.endswith(b"\x00") for d in domains)


def test_authority_certifies_with_evidence(tmp_path: Path) -> None:
    from harbour.cli.authority import app as authority_app

    runner = CliRunner()
    approval.AuthorityKey.generate().save(tmp_path)
    ev = _pure_evidence()
    (tmp_path / "evidence.cbor").write_bytes(ev.encode())
    digest = ev.transaction.signing_hash().hex()
    base = ["certify", "--dir", str(tmp_path), "--key-id", "k", "--signers", "1,2", "--expires-in", "60", "--evidence"]
    base += [str(tmp_path / "evidence.cbor")]
    result = runner.invoke(authority_app, [*base, "--message", digest, "--out", str(tmp_path / "c1"), "--json"])
    assert result.exit_code == 0, result.output
    assert approval.parse((tmp_path / "c1").read_bytes())[0].evidence == ev.encode()
    result = runner.invoke(authority_app, [*base, "--message", "00" * 32, "--out", str(tmp_path / "c2")])
    assert result.exit_code == 2 and digest in result.output and not (tmp_path / "c2").exists()
    (tmp_path / "bad.cbor").write_bytes(b"\xff")
    result = runner.invoke(
        authority_app, [*base[:-1], str(tmp_path / "bad.cbor"), "--message", digest, "--out", str(tmp_path / "x")]
    )
    assert result.exit_code == 2 and "not valid CBOR" in result.output


@pytest.mark.parametrize("value", ["true", 1, None])
def test_a_node_json_whose_organisations_only_is_not_a_boolean_is_refused(tmp_path: Path, value: object) -> None:
    directory = _node(tmp_path)
    doc = json.loads((directory / "node.json").read_text())
    doc["organisations_only"] = value
    with pytest.raises(NodeStartError, match="organisations_only must be true or false"):
        NodeConfig.from_json(json.dumps(doc))
