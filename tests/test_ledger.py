"""The service's copy of each governance log: replayed once, extended as entries land, never ahead of the database.

The custody service decides from a cached, verified replay of each organisation's
log (``custody/ledger.py``). These tests drive it through the real service
modules on a SQLite file (no nodes, no chain) at the moments a cache gets wrong:
a reader whose snapshot predates an entry, and a landing that rolls back after
its entry was seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harbour.custody import db, statements
from harbour.custody.actors import Actor
from harbour.custody.approvals import Approvals
from harbour.custody.audit import AuditLog
from harbour.custody.genesis import Charter, Founder, Founding
from harbour.custody.governance import Governance, lock_organisation
from harbour.custody.ledger import Ledger
from harbour.custody.settings import Settings
from harbour.custody.transactions import Transactions
from harbour.custody.uow import UnitOfWork
from harbour.custody.users import Users
from harbour.governance import changes
from harbour.governance.log import Entry, signed
from harbour.governance.state import OrgState

ALICE, BOB = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@dataclass
class Service:
    uow: UnitOfWork
    ledger: Ledger
    governance: Governance
    approvals: Approvals
    org: str
    alice: Actor
    bob: Actor
    replays: list[str]

    def land(self, proposal: dict[str, Any]) -> dict[str, Any]:
        out = proposal
        for actor, key in ((self.alice, ALICE), (self.bob, BOB)):
            subject = statements.from_request(self.approvals.approval_request(actor, proposal["id"]), proposal["id"])
            out = self.approvals.approve(actor, proposal["id"], signature=subject.sign(key, subject.statement()).hex())
        assert out["state"] == "confirmed", out
        return out

    def fresh_head(self) -> int:
        with self.uow.read() as s:
            return self.ledger.state(s, self.org).seq


@pytest.fixture
def service(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Service]:
    engine = db.make_engine(sqlite_url)
    uow = UnitOfWork(
        db.session_factory(engine),
        AuditLog(Ed25519PrivateKey.generate()),
        readers=db.session_factory(db.readonly(engine)),
    )
    ledger = Ledger(uow)
    replays: list[str] = []
    real = ledger._replay

    def counted(s: Any, org: str) -> Any:
        replays.append(org)
        return real(s, org)

    monkeypatch.setattr(ledger, "_replay", counted)
    governance = Governance(uow, ledger, Transactions(uow))
    approvals = Approvals(uow, ledger, governance, Settings(), lambda tx_id: None, lambda org_id: None)
    founders = [Founder("alice", ("admin",), public_hex(ALICE)), Founder("bob", ("admin",), public_hex(BOB))]
    out = Founding(uow, ledger, 1337).bootstrap(Charter("Ledger Custodian", founders))
    users = Users(uow, ledger, governance, 1337)
    alice, bob = (users.authenticate(c["token"]) for c in out["credentials"])
    yield Service(uow, ledger, governance, approvals, out["organisation"]["id"], alice, bob, replays)
    engine.dispose()


def only(change: changes.Change) -> Callable[[OrgState], list[changes.Change]]:
    return lambda state: [change]


def test_the_log_is_replayed_once_and_extended_as_entries_land(service: Service) -> None:
    assert service.fresh_head() == 0
    for i in range(3):
        book = changes.AddAddress(f"entry-{i}", f"counterparty {i}", f"0x{i + 0x1000:040x}", False)
        service.land(service.governance.propose(service.alice, only(book)))
    assert service.fresh_head() == 3
    assert service.replays == [service.org]  # the first lookup replayed; every later one extended


def test_a_reader_behind_the_head_gets_the_state_at_its_own_head(service: Service) -> None:
    with service.uow.read() as stale:
        before = service.ledger.state(stale, service.org)  # the snapshot starts here
        service.land(service.governance.propose(service.alice, lambda state: [changes.SetQuorum(1)]))
        assert service.fresh_head() == 1
        again = service.ledger.state(stale, service.org)
        assert again is before and again.seq == 0  # its own head's state, not the newer one
    assert service.fresh_head() == 1
    assert service.replays == [service.org]  # and the cache was neither thrown away nor rebuilt


def test_an_entry_seen_by_a_landing_that_rolls_back_leaves_no_trace(service: Service) -> None:
    genesis_head = service.ledger.log(service.org).head
    phantom = Entry(service.org, 1, genesis_head, service.alice.user_id, 1, (changes.SetQuorum(1),))
    entry = signed(phantom, [ALICE, BOB])
    with pytest.raises(RuntimeError, match="after recording"), service.uow.tx() as s:
        lock_organisation(s, service.org)
        service.ledger.record(s, service.org, entry, None)
        assert service.ledger.state(s, service.org).seq == 1  # the landing's own view holds the entry
        raise RuntimeError("the landing failed after recording its entry")
    assert service.fresh_head() == 0
    assert service.ledger.log(service.org).head == genesis_head
    landed = service.land(service.governance.propose(service.bob, lambda state: [changes.SetQuorum(1)]))
    log = service.ledger.log(service.org)
    assert log.state.seq == 1 and log.head.hex() != entry.hash.hex() and landed["seq"] == 1
    assert log.entries[1].entry.proposer == service.bob.user_id
