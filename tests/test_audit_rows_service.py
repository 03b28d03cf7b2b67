"""``harbour audit verify`` on the service's own rows, edited in SQL behind its back, on SQLite and PostgreSQL.

One deployment per database (three real signer nodes, the embedded chain) builds
the state once: an organisation and its people, the two-approver policy, a funded
vault (its deposit recorded), an address-book entry, a withdrawal signed,
broadcast and confirmed, and a second one pending with one approval. Each test
gets a copy of that database (a file copy; ``CREATE DATABASE ... TEMPLATE`` on
PostgreSQL), edits it as someone holding only the database credentials would, and
runs the CLI: every edit is reported at its table, row and field, and the
untouched copy verifies clean.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine, Table
from typer.testing import CliRunner

from custody_env import ETH, CustodyEnv, cfg_page
from harbour.cli.main import app
from harbour.custody import audit
from harbour.custody import config as cfg
from harbour.custody import models as m
from harbour.custody.db import make_engine
from helpers import wait_until
from postgres import PostgresServer

pytestmark = pytest.mark.process  # signer nodes

runner = CliRunner()
COLD = "0x" + "c0" * 20
PAID = "0x" + "5a" * 20
_copies = itertools.count()


def table(model: type[Any]) -> Table:
    return model.__table__  # type: ignore[no-any-return]


def populate(env: CustodyEnv) -> dict[str, str]:
    """The state every test starts from; returns the ids the tests edit."""
    env.organisation()
    env.set_policy(env.two_approvers_policy())
    vault_id, _ = env.vault(fund=5 * ETH)
    admin = env.actor("admin")
    env.govern(env.custody.add_address_book_entry(admin, name="cold store", address=COLD))
    entry = next(e for e in env.custody.list_address_book(admin, cfg_page())["items"] if e["address"].lower() == COLD)
    paid = env.custody.submit_withdrawal(env.actor("initiator"), vault_id=vault_id, asset="ETH", to=PAID, amount=ETH)
    env.approve(paid["id"], "approver1")
    env.approve(paid["id"], "approver2")
    wait_until(
        lambda: env.custody.get_transaction(admin, paid["id"])["state"] == "confirmed",
        60,
        message="the first withdrawal to be confirmed",
    )
    wait_until(
        lambda: any(d["state"] == "confirmed" for d in env.custody.list_deposits(admin, cfg_page())["items"]),
        60,
        message="the funding deposit to be confirmed",
    )
    pending = env.custody.submit_withdrawal(
        env.actor("initiator"), vault_id=vault_id, asset="ETH", to=COLD, amount=2 * ETH
    )
    env.approve(pending["id"], "approver1")
    assert env.custody.get_transaction(admin, pending["id"])["state"] == "pending_approval"
    engine = env.custody.uow.sessions.kw["bind"]
    with engine.connect() as c:
        approval = c.scalar(
            sa.select(table(m.Approval).c.id).where(table(m.Approval).c.transaction_id == pending["id"])
        )
    env.close()
    engine.dispose()  # a PostgreSQL template must have no connections
    return {
        "vault": vault_id,
        "entry": entry["id"],
        "paid": paid["id"],
        "pending": pending["id"],
        "approval": approval,
        "initiator": env.user_id("initiator"),
        "approver1": env.user_id("approver1"),
        "org": env.actor("admin").org_id,
        "admin_token": env.people["admin"].token,
    }


@dataclass
class State:
    home: Path
    ids: dict[str, str]
    database: str
    """SQLite: the file; PostgreSQL: the template database's name."""


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CustodyEnv]:
    env = CustodyEnv(tmp_path_factory.mktemp("audit-rows"))
    try:
        env.start_nodes()
        yield env
    finally:
        env.stop()


def _keep_home(env: CustodyEnv, where: Path) -> Path:
    kept = where / "home"
    shutil.copytree(env.home, kept)
    return kept


@pytest.fixture(scope="module")
def sqlite_state(deployment: CustodyEnv, tmp_path_factory: pytest.TempPathFactory) -> State:
    where = tmp_path_factory.mktemp("audit-rows-sqlite")
    deployment.reset(f"sqlite:///{where / 'custody.db'}")
    ids = populate(deployment)
    home = _keep_home(deployment, where)
    return State(home, ids, str(where / "custody.db"))


@pytest.fixture(scope="module")
def postgres_state(
    deployment: CustodyEnv, postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory
) -> State:
    deployment.reset(postgres_server.create_database("audit_rows"))
    ids = populate(deployment)
    return State(_keep_home(deployment, tmp_path_factory.mktemp("audit-rows-postgres")), ids, "audit_rows")


@dataclass
class Copy:
    """A home whose database is a fresh copy of the built state, and an engine on that copy to tamper with."""

    home: Path
    engine: Engine
    ids: dict[str, str]

    def edit(self, statement: Any) -> None:
        with self.engine.begin() as c:
            c.execute(statement)

    def verify(self, *options: str) -> tuple[int, str]:
        result = runner.invoke(app, ["audit", "verify", "--home", str(self.home), *options])
        return result.exit_code, result.output

    def findings(self) -> set[tuple[str, str, str, tuple[str, ...]]]:
        code, out = self.verify("--json")
        report = json.loads(out)
        assert code == (0 if report["ok"] else 1)
        assert report["first_bad_index"] is None, report  # the log itself is intact
        return {(r["table"], r["id"], r["problem"], tuple(r["fields"])) for r in report["rows"]}


@pytest.fixture(params=["sqlite", "postgresql"])
def copy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Copy]:
    home = tmp_path / "home"
    server: PostgresServer | None = None
    if request.param == "sqlite":
        state: State = request.getfixturevalue("sqlite_state")
        shutil.copytree(state.home, home)
        database = tmp_path / "custody.db"
        for suffix in ("", "-wal", "-shm"):
            if Path(state.database + suffix).exists():
                shutil.copyfile(state.database + suffix, str(database) + suffix)
        url = f"sqlite:///{database}"
    else:
        state = request.getfixturevalue("postgres_state")
        server = request.getfixturevalue("postgres_server")
        shutil.copytree(state.home, home)
        name = f"audit_rows_{next(_copies)}"
        url = server.create_database(name, template=state.database)
    config = json.loads((home / cfg.CONFIG_FILE).read_text())
    config["database"] = url
    (home / cfg.CONFIG_FILE).write_text(json.dumps(config))
    engine = make_engine(url)
    try:
        yield Copy(home, engine, state.ids)
    finally:
        engine.dispose()
        if server is not None:
            server.drop_database(name)


def test_the_untouched_database_verifies_clean(copy: Copy) -> None:
    code, out = copy.verify()
    assert code == 0, out
    assert "every signed tree head checks, every business row is as the log left it" in out
    assert copy.findings() == set()


USERS, BOOK, TXS, APPROVALS = table(m.User), table(m.AddressBookEntry), table(m.Transaction), table(m.Approval)

EDITS: dict[str, tuple[Callable[[dict[str, str]], Any], Callable[[dict[str, str]], set[Any]]]] = {
    "a user's roles": (
        lambda i: sa.update(USERS).where(USERS.c.id == i["initiator"]).values(roles=["approver", "initiator"]),
        lambda i: {("users", i["initiator"], "changed", ("roles",))},
    ),
    "an approval key": (
        lambda i: sa.update(USERS).where(USERS.c.id == i["approver1"]).values(approval_key="ee" * 32),
        lambda i: {("users", i["approver1"], "changed", ("approval_key",))},
    ),
    "a whitelisting": (
        lambda i: sa.update(BOOK).where(BOOK.c.id == i["entry"]).values(whitelisted=sa.not_(BOOK.c.whitelisted)),
        lambda i: {("address_book", i["entry"], "changed", ("whitelisted",))},
    ),
    "a pending withdrawal's destination": (
        lambda i: sa.update(TXS).where(TXS.c.id == i["pending"]).values(destination="0x" + "66" * 20),
        lambda i: {("transactions", i["pending"], "changed", ("destination",))},
    ),
    "an amount": (
        lambda i: sa.update(TXS).where(TXS.c.id == i["pending"]).values(amount=4 * ETH),
        lambda i: {("transactions", i["pending"], "changed", ("amount",))},
    ),
    "a confirmed withdrawal's hash and signers": (
        lambda i: sa.update(TXS).where(TXS.c.id == i["paid"]).values(tx_hash="0x" + "00" * 32, signers=[1, 3]),
        lambda i: {("transactions", i["paid"], "changed", ("tx_hash", "signers"))},
    ),
    "an approval's signature": (
        lambda i: sa.update(APPROVALS).where(APPROVALS.c.id == i["approval"]).values(signature="ab" * 64),
        lambda i: {("approvals", i["approval"], "changed", ("signature",))},
    ),
    "an approval deleted": (
        lambda i: sa.delete(APPROVALS).where(APPROVALS.c.id == i["approval"]),
        lambda i: {("approvals", i["approval"], "missing", ())},
    ),
    "an admin inserted": (
        lambda i: sa.insert(USERS).values(
            id="mallory", org_id=i["org"], name="mallory", roles=["admin"], approval_key="77" * 32, disabled=False
        ),
        lambda i: {("users", "mallory", "unlogged", ())},
    ),
}


@pytest.mark.parametrize("name", EDITS)
def test_an_edit_in_sql_is_reported_at_its_row_and_field(copy: Copy, name: str) -> None:
    statement, expected = EDITS[name]
    copy.edit(statement(copy.ids))
    assert copy.findings() == expected(copy.ids)


def test_an_edit_the_service_later_writes_over_is_still_reported(copy: Copy) -> None:
    """The destination edited while pending, then the admin cancels: the cancel's event does not launder the edit."""
    i = copy.ids
    copy.edit(sa.update(TXS).where(TXS.c.id == i["pending"]).values(destination="0x" + "66" * 20))
    deployment = cfg.open_deployment(cfg.CustodyConfig.load(copy.home), start=False)
    try:
        custody = deployment.custody
        assert custody.cancel(custody.authenticate(i["admin_token"]), i["pending"])["state"] == "cancelled"
    finally:
        deployment.close()
        custody.uow.sessions.kw["bind"].dispose()
    assert copy.findings() == {("transactions", i["pending"], "overwritten", ())}
    code, out = copy.verify()
    assert code == 1 and f"transactions {i['pending']}: edited behind the log's back before event" in out


def test_the_cli_reports_every_row_readably_and_exits_non_zero(copy: Copy) -> None:
    i = copy.ids
    copy.edit(sa.update(USERS).where(USERS.c.id == i["initiator"]).values(roles=["admin"], disabled=True))
    copy.edit(sa.update(BOOK).where(BOOK.c.id == i["entry"]).values(whitelisted=True))
    code, out = copy.verify()
    assert code == 1
    assert (
        "audit rows FAILED: the log verifies" in out and "2 row(s) of the database are not as the log left them" in out
    )
    assert f"users {i['initiator']}: roles, disabled changed since event" in out
    assert f"address_book {i['entry']}: whitelisted changed since event" in out
    code, out = copy.verify("--no-rows")
    assert code == 0 and "(rows not checked)" in out


def test_each_row_rides_on_the_events_about_it(copy: Copy) -> None:
    """What an auditor reads in the log: the withdrawal's row on each of its state changes, an approval on itself."""
    events = table(audit.AuditEvent)
    with copy.engine.connect() as c:
        logged = [
            (kind, data.get("rows", {}))
            for kind, data in c.execute(sa.select(events.c.kind, events.c.data).order_by(events.c.index))
        ]

    def kinds(name: str, row_id: str) -> list[str]:
        return [kind for kind, rows in logged if row_id in rows.get(name, {})]

    i = copy.ids
    assert kinds("transactions", i["paid"]) == [
        "transaction.pending_approval",
        "transaction.approved",
        "transaction.signing",
        "transaction.signed",
        "transaction.broadcast",
        "transaction.confirmed",
    ]
    assert kinds("transactions", i["pending"]) == ["transaction.pending_approval"]
    assert kinds("approvals", i["approval"]) == ["approval.approve"]
    # The genesis writes the founding users; an entry's rows ride on the event of the approval that landed it.
    assert kinds("users", i["approver1"]) == ["organisation.created"]
    assert kinds("address_book", i["entry"]) == ["transaction.approved"]
    assert kinds("vaults", i["vault"]) == ["transaction.approved"]
    assert {kind for kind, rows in logged if "deposits" in rows} == {"deposit.detected", "deposit.confirmed"}
