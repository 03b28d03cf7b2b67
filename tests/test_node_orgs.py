"""The parts of a node's organisations, in one process: evidence v2, records, history, statements, the registry.

The same checks run through real node processes in ``test_node_governance.py``;
here every malformed encoding gets its refusal, and the node's decision
(:func:`harbour.node.quorum.check_governed`) is checked against states a test
builds, without nodes.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from governance_env import INITIATOR, Org, allow_all, count_policy, raw, two_approvers, velocity_policy
from harbour.chains.eip1559 import Eip1559Transaction, parse_address
from harbour.chains.ethereum import address_from_public_key, checksum_address
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.governance import changes as c
from harbour.governance.fields import GovernanceError
from harbour.governance.policy import PastTx
from harbour.node import signlog
from harbour.node.certificate import ApprovalError
from harbour.node.identity import NodeIdentity
from harbour.node.keyfile import MIN_N
from harbour.node.orgs import statement as statements
from harbour.node.orgs.history import (
    MAX_RECORDS,
    RETENTION,
    History,
    HistoryFull,
    log_reason,
    parse_log_reason,
)
from harbour.node.orgs.records import Record, union
from harbour.node.orgs.registry import Organisations
from harbour.node.quorum import (
    ETH,
    Evidence,
    EvidenceError,
    GovernedEvidence,
    Intent,
    approval_statement,
    check_governed,
    decode_evidence,
    sign_approval,
)
from harbour.node.quorum.pin import pin_record
from harbour.node.staging import Refusal
from harbour.node.store import SecretStore, StoreError

RECIPIENT = checksum_address(bytes.fromhex("a1" * 20))
ETHER = 10**18
_CHILD = SECP256K1.base_mul(4242)
assert isinstance(_CHILD, Secp256k1Point)
CHILD: Secp256k1Point = _CHILD
SENDER = address_from_public_key(CHILD)
NOW = 1_800_000_000


def org(policy: dict[str, Any] | None = None) -> Org:
    return Org(
        "acme",
        policy=policy or velocity_policy(5 * ETHER),
        vaults={"main": "vault-key"},
        book=[("listed", RECIPIENT, True)],
    )


def evidence(
    o: Org, *, amount: int = ETHER, approvers: tuple[str, ...] = (), to: str = RECIPIENT, **changes: Any
) -> GovernedEvidence:
    intent = Intent(1337, SENDER, to, ETH, amount, max_fee=21_000 * 2)
    tx = Eip1559Transaction(
        chain_id=1337,
        nonce=0,
        max_priority_fee_per_gas=1,
        max_fee_per_gas=2,
        gas_limit=21_000,
        to=parse_address(to),
        value=amount,
        data=b"",
    )
    statement = approval_statement(org=o.name, transaction_id="tx-1", key_id="vault-key", path="m", intent=intent)
    fields: dict[str, Any] = {
        "org": o.org,
        "transaction_id": "tx-1",
        "intent": intent,
        "transaction": tx,
        "initiator": INITIATOR,
        "head": o.log.head,
        "approvals": [(raw(o.keys[n]), sign_approval(o.keys[n], statement)) for n in approvers],
    }
    return GovernedEvidence(**(fields | changes))


def judge(o: Org, ev: GovernedEvidence, history: list[PastTx] | None = None) -> Any:
    return check_governed(
        ev,
        key_id="vault-key",
        path="m",
        digest=ev.transaction.signing_hash(),
        child_public_key=CHILD,
        state=o.log.state,
        history=history or [],
        at=datetime.fromtimestamp(NOW, UTC),
    )


# == evidence, version 2 ========================================================================================


def test_governed_evidence_round_trips_and_v1_still_decodes() -> None:
    ev = evidence(org(), approvers=("alice",))
    assert decode_evidence(ev.encode()) == ev
    with pytest.raises(EvidenceError, match="version 2 evidence where version 1"):
        Evidence.decode(ev.encode())


def _map(ev: GovernedEvidence) -> dict[str, Any]:
    return dict(cbor2.loads(ev.encode()))


def _with(**changes: Any) -> bytes:
    return bytes(cbor2.dumps(_map(evidence(org())) | changes, canonical=True))


MALFORMED: dict[str, tuple[bytes, str]] = {
    "version 3": (_with(version=3), "unsupported evidence version"),
    "extra field": (_with(quorum={}), "map of exactly"),
    "org not hex": (_with(org="acme"), "genesis hash"),
    "org upper case": (_with(org=evidence(org()).org.upper()), "genesis hash"),
    "head short": (_with(head=bytes(31)), "32-byte hash"),
    "head text": (_with(head="00" * 32), "32-byte hash"),
    "initiator empty": (_with(initiator=""), "initiator"),
    "initiator bytes": (_with(initiator=b"ivan"), "initiator"),
    "trailing byte": (evidence(org()).encode() + b"\x00", "not canonical"),
    "too many approvals": (_with(approvals=[[raw(Ed25519PrivateKey.generate()), bytes(64)]] * 65), "at most 64"),
    "small-order approver": (_with(approvals=[[bytes(32), bytes(64)]]), "small order"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_governed_evidence_is_refused(case: str) -> None:
    data, needle = MALFORMED[case]
    with pytest.raises(EvidenceError, match=needle):
        decode_evidence(data)


def test_a_missing_field_is_refused() -> None:
    obj = _map(evidence(org()))
    del obj["initiator"]
    with pytest.raises(EvidenceError, match="map of exactly"):
        decode_evidence(bytes(cbor2.dumps(obj, canonical=True)))


# == the node's decision ========================================================================================


def test_an_allowed_withdrawal_is_judged_with_the_facts_from_the_log() -> None:
    o = org()
    decision, vault, asset = judge(o, evidence(o))
    assert decision.action == "allow" and (vault, asset) == ("main", "ETH")
    assert decision.rule == "allow-rest"


def test_the_evidence_must_cite_the_state_head() -> None:
    o = org()
    ev = evidence(o)
    o.propose(c.SetWhitelisted("listed", False))
    with pytest.raises(ApprovalError, match="push the log") as exc:
        judge(o, ev)
    assert exc.value.reason == "governance"


def test_history_counts_toward_the_velocity_limit() -> None:
    o = org()
    past = [PastTx(INITIATOR, "main", "ETH", RECIPIENT, 4 * ETHER, datetime.fromtimestamp(NOW - 60, UTC))]
    with pytest.raises(ApprovalError, match="exceeds") as exc:
        judge(o, evidence(o, amount=2 * ETHER), past)
    assert exc.value.reason == "policy"
    judge(o, evidence(o, amount=ETHER), past)


def test_history_counts_toward_the_count_limit() -> None:
    o = org(count_policy(2))
    past = [PastTx(INITIATOR, "main", "ETH", RECIPIENT, 1, datetime.fromtimestamp(NOW - s, UTC)) for s in (10, 20)]
    with pytest.raises(ApprovalError, match="2 earlier \\+ 1 = 3 exceeds 2") as exc:
        judge(o, evidence(o), past)
    assert exc.value.reason == "policy"
    judge(o, evidence(o), past[:1])
    old = [replace(p, at=datetime.fromtimestamp(NOW - 7200, UTC)) for p in past]
    judge(o, evidence(o), old)  # outside the hour: not counted


def test_approvals_come_from_the_log() -> None:
    o = org(two_approvers())
    with pytest.raises(ApprovalError, match="missing") as exc:
        judge(o, evidence(o, approvers=("alice",)))
    assert exc.value.reason == "quorum"
    judge(o, evidence(o, approvers=("alice", "bob")))
    o.propose(c.DisableUser("bob"))
    with pytest.raises(ApprovalError, match="missing"):
        judge(o, evidence(o, approvers=("alice", "bob")))


def test_a_bad_or_repeated_approval_refuses_them_all() -> None:
    o = org(two_approvers())
    good = evidence(o, approvers=("alice", "bob"))
    bad = replace(good, approvals=(good.approvals[0], (good.approvals[1][0], bytes(64))))
    with pytest.raises(ApprovalError, match="not a valid signature"):
        judge(o, bad)
    twice = replace(good, approvals=(good.approvals[0], good.approvals[0]))
    with pytest.raises(ApprovalError, match="listed twice"):
        judge(o, twice)


def test_the_statement_names_the_logs_own_org() -> None:
    """Approvals over a statement naming the genesis hash instead of the organisation's id do not verify."""
    o = org(two_approvers())
    ev = evidence(o)
    statement = approval_statement(org=o.org, transaction_id="tx-1", key_id="vault-key", path="m", intent=ev.intent)
    wrong = replace(ev, approvals=[(raw(o.keys[n]), sign_approval(o.keys[n], statement)) for n in ("alice", "bob")])
    with pytest.raises(ApprovalError) as exc:
        judge(o, wrong)
    assert exc.value.reason == "approvals"


def test_the_transaction_must_be_the_digest_and_the_intent() -> None:
    o = org()
    ev = evidence(o)
    with pytest.raises(ApprovalError) as exc:
        check_governed(
            ev,
            key_id="vault-key",
            path="m",
            digest=secrets.token_bytes(32),
            child_public_key=CHILD,
            state=o.log.state,
            history=[],
            at=datetime.fromtimestamp(NOW, UTC),
        )
    assert exc.value.reason == "transaction"
    other = SECP256K1.base_mul(7)
    assert isinstance(other, Secp256k1Point)
    with pytest.raises(ApprovalError) as exc:
        check_governed(
            ev,
            key_id="vault-key",
            path="m",
            digest=ev.transaction.signing_hash(),
            child_public_key=other,
            state=o.log.state,
            history=[],
            at=datetime.fromtimestamp(NOW, UTC),
        )
    assert exc.value.reason == "intent"


def test_a_disabled_initiator_is_refused() -> None:
    o = org()
    o.propose(c.DisableUser(INITIATOR))
    with pytest.raises(ApprovalError, match="not an enabled user") as exc:
        judge(o, evidence(o))
    assert exc.value.reason == "policy"


@pytest.mark.parametrize(
    ("to", "words"),
    [
        (checksum_address(bytes(20)), "the zero address"),
        (checksum_address(bytes(19) + b"\x0a"), "KZG point evaluation (EIP-4844) precompile"),
        (checksum_address(bytes(18) + b"\x01\x00"), "P256VERIFY (EIP-7951) precompile"),
        (SENDER, "the address the withdrawal pays from"),
    ],
)
def test_a_node_refuses_to_sign_a_payment_that_cannot_arrive(to: str, words: str) -> None:
    o = org(allow_all())
    with pytest.raises(ApprovalError, match=re.escape(words)) as exc:
        judge(o, evidence(o, to=to))
    assert exc.value.reason == "policy"


def test_an_address_is_in_the_book_once() -> None:
    """Also within one entry, and free again once removed (the state's index follows both)."""
    o = org()
    other = checksum_address(bytes.fromhex("c3" * 20))
    with pytest.raises(GovernanceError, match="already in the address book"):
        o.propose(c.AddAddress("again", "again", RECIPIENT.lower(), False))
    with pytest.raises(GovernanceError, match="already in the address book"):
        o.propose(c.AddAddress("e1", "e1", other, False), c.AddAddress("e2", "e2", other, False))
    o.propose(c.RemoveAddress("listed"), c.AddAddress("back", "back", RECIPIENT, False))
    entry = o.log.state.entry_for(RECIPIENT.lower())
    assert entry is not None and entry.id == "back"


# == records and their union ====================================================================================


def record(tx: str = "t1", amount: int = ETHER, at: int = NOW, **changes: Any) -> Record:
    fields: dict[str, Any] = {"transaction_id": tx, "vault_id": "main", "asset": "ETH", "destination": RECIPIENT}
    return Record(**(fields | {"amount": amount, "initiator": INITIATOR, "at": at} | changes))


def test_a_record_round_trips_strictly() -> None:
    r = record(amount=2**256 - 1)
    assert Record.from_cbor(r.to_cbor()) == r
    for bad, needle in [
        (r.to_cbor()[:6], "7 fields"),
        ([*r.to_cbor()[:4], "01", *r.to_cbor()[5:]], "leading zeros"),
        ([*r.to_cbor()[:4], 5, *r.to_cbor()[5:]], "decimal string"),
        ([*r.to_cbor()[:3], "not an address", *r.to_cbor()[4:]], "0x and 40 hex"),
        ([*r.to_cbor()[:6], -1], "at must be"),
        ([" t", *r.to_cbor()[1:]], "whitespace"),
    ]:
        with pytest.raises(GovernanceError, match=needle):
            Record.from_cbor(bad)


def test_a_record_from_the_future_counts_as_now() -> None:
    assert record(at=NOW + 30).past(NOW).at == datetime.fromtimestamp(NOW, UTC)


def test_the_union_counts_each_withdrawal_once_and_never_below_any_node() -> None:
    merged = union(
        [record("t1", ETHER, NOW - 10), record("t1", 2 * ETHER, NOW - 20), record("t2"), record("now")], "now"
    )
    by_id = {r.transaction_id: r for r in merged}
    assert set(by_id) == {"t1", "t2"}
    assert by_id["t1"].amount == 2 * ETHER and by_id["t1"].at == NOW - 10


# == a node's history ===========================================================================================

ORG = "ab" * 32


def test_history_keeps_a_transaction_once_and_forgets_past_the_retention() -> None:
    history = History()
    assert history.record(ORG, record("t1", at=NOW - 2 * RETENTION), now=NOW - 2 * RETENTION, window=0)
    assert not history.record(ORG, record("t1"), now=NOW, window=0), "a transaction id is recorded once"
    assert history.record(ORG, record("t2"), now=NOW, window=0)
    assert history.find(ORG, "t1") is None, "older than the retention: forgotten"
    assert [r.transaction_id for r in history.window(ORG, NOW, 60)] == ["t2"]
    assert history.window(ORG, NOW + 61, 60) == []


def test_a_full_window_refuses_rather_than_forgets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harbour.node.orgs.history.MAX_RECORDS", 3)
    history = History()
    for i in range(3):
        history.record(ORG, record(f"old{i}", at=NOW - 100), now=NOW - 100, window=50)
    for i in range(3):  # room is made with the oldest outside the window
        history.record(ORG, record(f"new{i}"), now=NOW, window=50)
    assert set(history.records[ORG]) == {"new0", "new1", "new2"}
    with pytest.raises(HistoryFull, match="within its policy's longest window"):
        history.record(ORG, record("new3"), now=NOW, window=50)
    assert MAX_RECORDS >= 1024


def test_the_largest_record_fits_in_a_signing_log_entry() -> None:
    longest = "x" * 128
    big = Record(longest, longest, "S" * 16, RECIPIENT, 2**256 - 1, longest, NOW)
    reason = log_reason("ab" * 32, big, head="cd" * 32, nonce=2**64 - 1, statement="ef" * 32, approvals=64)
    assert len(reason) <= signlog.MAX_REASON
    assert parse_log_reason(reason) == ("ab" * 32, big)


def test_history_is_restored_from_the_signing_log(tmp_path: Path) -> None:
    with signlog.SignLog.open(tmp_path / "sign.log") as sign_log:

        def started(reason: str, outcome: str = "started", at: int = NOW) -> None:
            sign_log.append(
                time=at, kind="sign", session_id=secrets.token_bytes(32), key_id="k", path="m",
                outcome=outcome, reason=reason,
            )  # fmt: skip

        started(log_reason(ORG, record("old", at=NOW - 2 * RETENTION)))
        started(log_reason(ORG, record("t1")))
        started(log_reason(ORG, record("t1", amount=5)))  # a retry: the first record stands
        started(log_reason(ORG, record("refused")), outcome="refused")
        started("governed {not json")
        started("evidence: a version-1 withdrawal")
        started(log_reason("cd" * 32, record("t2")))
    history = History()
    history.restore(signlog.entries(tmp_path / "sign.log"), lambda org: 0, NOW)
    assert {org: set(r) for org, r in history.records.items()} == {ORG: {"t1"}, "cd" * 32: {"t2"}}
    assert history.find(ORG, "t1") == record("t1")


def test_pins_are_restored_from_the_signing_log(tmp_path: Path) -> None:
    statement_hash = bytes(range(32))
    with signlog.SignLog.open(tmp_path / "sign.log") as sign_log:
        for tx, at in (("t1", NOW), ("ancient", NOW - 400 * 86_400)):
            sign_log.append(
                time=at, kind="sign", session_id=secrets.token_bytes(32), key_id="k", path="m", outcome="started",
                reason=log_reason(ORG, record(tx, at=at), nonce=7, statement=statement_hash.hex()),
            )  # fmt: skip
        sign_log.append(
            time=NOW, kind="sign", session_id=secrets.token_bytes(32), key_id="k", path="m", outcome="started",
            reason=log_reason(ORG, record("no-pin")),
        )  # fmt: skip
    history = History()
    history.restore(signlog.entries(tmp_path / "sign.log"), lambda org: 0, NOW)
    assert history.pins == {(ORG, "t1"): pin_record(statement_hash, 7), (ORG, "ancient"): pin_record(statement_hash, 7)}
    assert set(history.records[ORG]) == {"t1", "no-pin"}, "records are kept for the window, pins for ever"


# == statements =================================================================================================

IDENTITY = NodeIdentity.generate()
PEER = NodeIdentity.generate()
SID = secrets.token_bytes(32)
HEAD = secrets.token_bytes(32)
SIGNERS = {i.node_id: i.descriptor(n, "http://127.0.0.1:1") for i, n in ((IDENTITY, "n1"), (PEER, "n2"))}


def statement(identity: NodeIdentity = IDENTITY, **changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "node": identity.node_id,
        "session_id": SID,
        "org": ORG,
        "head": HEAD,
        "records": (record("t1"), record("t2")),
    }
    return statements.sign(identity, statements.HistoryStatement(**(fields | changes)))


def test_statements_round_trip_and_verify() -> None:
    found = statements.verify([statement(), statement(PEER)], signers=SIGNERS, session_id=SID, org=ORG, head=HEAD)
    assert found[IDENTITY.node_id].node == IDENTITY.node_id and len(found[PEER.node_id].records) == 2


def _raw_statement(**changes: Any) -> bytes:
    _, body, _ = statements.parse(statement())
    obj = dict(cbor2.loads(body)) | changes
    new_body = bytes(cbor2.dumps(obj, canonical=True))
    return bytes(
        cbor2.dumps({"statement": new_body, "signature": IDENTITY.sign(statements.DOMAIN + new_body)}, canonical=True)
    )


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xff", "not valid CBOR"),
        (statement() + b"\x00", "not canonical CBOR"),
        (cbor2.dumps({"statement": b"x"}), r"exactly \['signature', 'statement'\]"),
        (_raw_statement(extra=1), "map of exactly"),
        (_raw_statement(version=2), "not a version 1"),
        (_raw_statement(session_id=b"short"), "32 bytes"),
        (_raw_statement(seq=3), "map of exactly"),
        (_raw_statement(node=7), "node and org are text"),
        (_raw_statement(records=[["t"]]), "7 fields"),
        (_raw_statement(records=[record().to_cbor()] * (MAX_RECORDS + 1)), "at most"),
        (b"\x00" * (statements.MAX_STATEMENT_LEN + 1), "more than the 4194304 allowed"),
    ],
)
def test_malformed_statements_are_refused(data: bytes, needle: str) -> None:
    with pytest.raises(ApprovalError, match=needle) as exc:
        statements.verify([data], signers=SIGNERS, session_id=SID, org=ORG, head=HEAD)
    assert exc.value.reason == "history"


def _forged_by_other() -> bytes:
    """A statement naming the peer, signed by someone else."""
    body = statements.HistoryStatement(PEER.node_id, SID, ORG, HEAD, ()).body()
    return bytes(cbor2.dumps({"statement": body, "signature": IDENTITY.sign(statements.DOMAIN + body)}, canonical=True))


REFUSED_STATEMENTS = [
    ("missing", lambda: [statement()], "missing: n2"),
    ("twice", lambda: [statement(), statement(), statement(PEER)], "two history statements"),
    ("stranger", lambda: [statement(), statement(NodeIdentity.generate())], "not a signer"),
    ("other session", lambda: [statement(), statement(PEER, session_id=secrets.token_bytes(32))], "for session"),
    ("other org", lambda: [statement(), statement(PEER, org="cd" * 32)], "about organisation"),
    ("other head", lambda: [statement(), statement(PEER, head=bytes(32))], "about organisation"),
    ("forged", lambda: [statement(), _forged_by_other()], "not signed by its identity key"),
]


@pytest.mark.parametrize(("case", "given", "needle"), REFUSED_STATEMENTS, ids=[r[0] for r in REFUSED_STATEMENTS])
def test_statements_that_do_not_vouch_are_refused(case: str, given: Any, needle: str) -> None:
    with pytest.raises(ApprovalError, match=needle) as exc:
        statements.verify(given(), signers=SIGNERS, session_id=SID, org=ORG, head=HEAD)
    assert exc.value.reason == "history"


def test_a_statement_is_stale_once_its_node_recorded_more() -> None:
    own = statements.parse(statement())[0]
    assert statements.stale(own, [record("t1"), record("t2")]) == []
    assert statements.stale(own, [record("t2")]) == [], "a record that left the window is no matter"
    assert statements.stale(own, [record("t1"), record("t2"), record("t3")]) == ["t3"]


# == the registry ===============================================================================================


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SecretStore]:
    with SecretStore.create(tmp_path / "store", passphrase="p", kdf_n=MIN_N) as made:
        yield made


def test_organisations_replay_from_the_store(store: SecretStore) -> None:
    o = org()
    orgs = Organisations(store)
    orgs.enrol(o.genesis)
    o.propose(c.SetWhitelisted("listed", False))
    o.propose(c.SetWhitelisted("listed", True))
    assert orgs.push(o.org, o.log.since(0)) == 3  # the vault's entry, then these two
    orgs.bind("vault-key", o.org)
    again = Organisations.load(store)
    assert again.log(o.org).head == o.log.head and again.binding("vault-key") == o.org
    again.bind("vault-key", None)
    assert Organisations.load(store).binding("vault-key") is None


def test_a_stored_entry_that_no_longer_verifies_ends_the_log_there(store: SecretStore) -> None:
    o = org()
    orgs = Organisations(store)
    orgs.enrol(o.genesis)
    o.propose(c.SetWhitelisted("listed", False))
    second = o.propose(c.SetWhitelisted("listed", True))
    orgs.push(o.org, o.log.since(0))
    store.put(f"govlog/{o.org}.1", second.encode())  # in the place of the first
    again = Organisations.load(store)
    assert again.log(o.org).state.seq == 0
    assert store.names("govlog/") == []


def test_pushing_to_an_unknown_organisation_is_refused(store: SecretStore) -> None:
    with pytest.raises(Refusal) as exc:
        Organisations(store).push(ORG, [])
    assert exc.value.reason == "unknown-org"


def test_a_binding_to_no_enrolled_organisation_stops_the_start(store: SecretStore) -> None:
    store.put("bindings/k", ORG.encode())
    with pytest.raises(StoreError, match="names no enrolled organisation"):
        Organisations.load(store)
