"""Searching transactions and exporting a vault's statement and history, on a real deployment.

One deployment for the module (three signer-node processes, the embedded chain,
SQLite): a funded vault, four withdrawals (three confirmed to two destinations,
one blocked by the policy), each with an external id. Searches are checked
against what was submitted, and the statement against the chain itself: the
book's closing balance is the address's balance on chain, since every movement
of it was a recorded deposit, withdrawal or fee.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from custody_env import ETH, CustodyEnv, cfg_page
from harbour.api.app import create_app
from harbour.custody.errors import Conflict, Invalid, NotFound
from harbour.custody.exports import history_csv
from harbour.custody.notifyshapes import HistoryLine
from harbour.custody.search import Filters
from harbour.custody.views import Page
from helpers import wait_until
from webhook_env import organisation

pytestmark = pytest.mark.process  # signer nodes

DEST = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
OTHER = "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"


@dataclass
class World:
    env: CustodyEnv
    vault_id: str
    address: str
    txs: list[dict[str, Any]]
    """The four withdrawals as they ended, in submission order."""
    before: dt.datetime
    after: dt.datetime

    def search(self, page: Page | None = None, **filters: Any) -> dict[str, Any]:
        return self.env.custody.search_transactions(
            self.env.actor("viewer"), page or Page(limit=200), Filters(**filters)
        )

    def ids(self, **filters: Any) -> list[str]:
        return [t["id"] for t in self.search(**filters)["items"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    env = CustodyEnv(tmp_path_factory.mktemp("search"))
    with env:
        env.organisation()
        vault_id, address = env.vault(fund=10 * ETH)
        small = {"assets": ["ETH"], "amount": {"max": str(2 * ETH)}}
        env.set_policy({"rules": [{"name": "small ones", "match": small, "action": "allow"}]})
        wait_until(
            lambda: any(
                d["state"] == "confirmed" for d in env.custody.list_deposits(env.actor("admin"), cfg_page())["items"]
            ),
            60,
            message="the funding deposit to be confirmed",
        )
        before = dt.datetime.now(dt.UTC)
        plan = [
            (DEST, ETH, "order-1"),
            (OTHER, ETH // 2, "order-2"),
            (DEST, ETH // 4, "order-3"),
            (DEST, 5 * ETH, "big-1"),
        ]
        submitted = [
            env.custody.submit_withdrawal(
                env.actor("initiator"), vault_id=vault_id, asset="ETH", to=to, amount=amount, external_id=ref
            )
            for to, amount, ref in plan
        ]
        admin = env.actor("admin")
        wait_until(
            lambda: all(
                env.custody.get_transaction(admin, t["id"])["state"] in ("confirmed", "rejected") for t in submitted
            ),
            90,
            message="the withdrawals to be confirmed",
        )
        after = dt.datetime.now(dt.UTC)
        txs = [env.custody.get_transaction(admin, t["id"]) for t in submitted]
        yield World(env, vault_id, address, txs, before, after)


# -- search ------------------------------------------------------------------------------------------------------


def test_the_world_is_as_planned(world: World) -> None:
    assert [t["state"] for t in world.txs] == ["confirmed", "confirmed", "confirmed", "rejected"]
    assert [t["external_id"] for t in world.txs] == ["order-1", "order-2", "order-3", "big-1"]


def test_filters_narrow_the_list(world: World) -> None:
    withdrawals = [t["id"] for t in world.txs]
    assert world.ids(vault_id=world.vault_id) == withdrawals
    assert world.ids(destination=DEST) == [withdrawals[0], withdrawals[2], withdrawals[3]]
    assert world.ids(destination=DEST.lower()) == world.ids(destination=DEST)
    assert world.ids(destination=OTHER, asset="ETH") == [withdrawals[1]]
    assert world.ids(state="rejected", vault_id=world.vault_id) == [withdrawals[3]]
    assert world.ids(initiator_id=world.env.user_id("initiator")) == withdrawals
    assert world.ids(initiator_id=world.env.user_id("viewer")) == []
    assert world.ids(tx_hash=world.txs[1]["tx_hash"]) == [withdrawals[1]]
    assert world.ids(tx_hash=world.txs[1]["tx_hash"].upper().replace("0X", "0x")) == [withdrawals[1]]
    assert world.ids(external_id="order-3") == [withdrawals[2]]
    assert world.ids(asset="USDC") == []


def test_time_ranges_and_updated_since(world: World) -> None:
    withdrawals = [t["id"] for t in world.txs]
    assert world.ids(created_after=world.before.isoformat(), created_before=world.after.isoformat()) == withdrawals
    second = world.txs[1]["created_at"]
    assert world.ids(created_after=second, vault_id=world.vault_id) == withdrawals[1:]
    assert world.ids(created_before=second, vault_id=world.vault_id) == withdrawals[:1]
    newest = max(t["updated_at"] for t in world.txs)
    assert set(world.ids(updated_since=newest)) >= {t["id"] for t in world.txs if t["updated_at"] == newest}
    assert world.ids(updated_since=world.after.isoformat()) == []
    in_utc = world.before.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat()
    assert world.ids(created_after=in_utc, vault_id=world.vault_id) == withdrawals


def test_newest_first_walks_every_item_once(world: World) -> None:
    everything = world.ids()
    assert world.ids(order="desc") == everything[::-1]
    seen: list[str] = []
    cursor = None
    for _ in range(len(everything) + 1):
        page = world.search(Page(limit=2, cursor=cursor), order="desc")
        seen += [t["id"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == everything[::-1]


@pytest.mark.parametrize(
    ("filters", "reason"),
    [
        ({"state": "lost"}, "state must be one of"),
        ({"order": "sideways"}, "order must be"),
        ({"created_after": "2026-01-01T00:00:00"}, "UTC offset"),
        ({"created_after": "yesterday"}, "not an ISO 8601"),
        ({"created_after": "2026-02-01T00:00:00+00:00", "created_before": "2026-01-01T00:00:00+00:00"}, "earlier"),
        ({"created_after": "2026-01-01T00:00:00+00:00", "created_before": "2026-01-01T00:00:00+00:00"}, "earlier"),
        ({"updated_since": "2026-13-01T00:00:00+00:00"}, "not an ISO 8601"),
        ({"tx_hash": "0x1234"}, "64 hex"),
        ({"vault_id": "not-a-vault"}, "vault_id must be an id"),
        ({"initiator_id": "'; drop table users; --"}, "initiator_id must be an id"),
        ({"destination": "0xnot"}, "destination"),
        ({"asset": "eth"}, "symbol"),
        ({"external_id": "has space"}, "external_id"),
    ],
)
def test_bad_filters_are_refused(world: World, filters: dict[str, Any], reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        world.search(**filters)


def test_lookup_by_external_id(world: World) -> None:
    found = world.env.custody.get_transaction_by_external_id(world.env.actor("viewer"), "order-2")
    assert found["id"] == world.txs[1]["id"]
    with pytest.raises(NotFound):
        world.env.custody.get_transaction_by_external_id(world.env.actor("viewer"), "order-404")


def test_an_external_id_is_used_once_per_organisation(world: World) -> None:
    with pytest.raises(Conflict, match="external_id 'order-1'"):
        world.env.custody.submit_withdrawal(
            world.env.actor("initiator"), vault_id=world.vault_id, asset="ETH", to=DEST, amount=1, external_id="order-1"
        )
    assert world.ids(external_id="order-1") == [world.txs[0]["id"]]


def test_another_organisation_neither_finds_nor_lists_them(world: World) -> None:
    stranger = organisation(world.env.custody, "Searching Stranger")
    viewer = stranger.actors["viewer"]
    with pytest.raises(NotFound):
        world.env.custody.get_transaction_by_external_id(viewer, "order-1")
    found = world.env.custody.search_transactions(viewer, Page(limit=200), Filters(vault_id=world.vault_id))
    assert found["items"] == []
    with pytest.raises(NotFound):
        world.env.custody.vault_statement(
            viewer, world.vault_id, start=world.before.isoformat(), end=world.after.isoformat()
        )


def test_search_through_the_api(world: World) -> None:
    client = TestClient(create_app(world.env.custody))
    headers = {"Authorization": f"Bearer {world.env.people['viewer'].token}"}
    response = client.get(
        "/v1/transactions", params={"destination": DEST, "order": "desc", "limit": 2}, headers=headers
    )
    assert response.status_code == 200
    assert [t["id"] for t in response.json()["items"]] == [world.txs[3]["id"], world.txs[2]["id"]]
    by_ref = client.get("/v1/transactions/external/order-2", headers=headers)
    assert by_ref.json()["id"] == world.txs[1]["id"]
    for params in ({"created_after": "2026-01-01T00:00:00"}, {"order": "up"}, {"tx_hash": "0x12"}, {"state": "LOST"}):
        refused = client.get("/v1/transactions", params=params, headers=headers)
        assert refused.status_code == 422, params
        assert refused.headers["content-type"] == "application/problem+json"


# -- exports -------------------------------------------------------------------------------------------------------


def statement(world: World, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    return world.env.custody.vault_statement(
        world.env.actor("auditor"), world.vault_id, start=start.isoformat(), end=end.isoformat()
    )


def test_the_statement_closes_at_the_chain_balance(world: World) -> None:
    doc = statement(world, world.before, world.after)
    (eth,) = doc["balances"]
    assert eth["asset"] == "ETH" and int(eth["opening"]) == 10 * ETH
    paid = sum(int(t["amount"]) for t in world.txs[:3])
    fees = sum(int(t["fee"]) for t in world.txs[:3])
    assert int(eth["debits"]) == paid + fees and int(eth["credits"]) == 0
    assert int(eth["closing"]) == int(eth["opening"]) - paid - fees
    assert int(eth["closing"]) == world.env.chain.balance(world.address)
    kinds = sorted((line["kind"], line["reference"]) for line in doc["lines"])
    assert kinds == sorted((k, t["id"]) for t in world.txs[:3] for k in ("fee", "withdrawal"))
    assert doc["lines"][-1]["balance"] == eth["closing"]


def test_consecutive_statements_chain(world: World) -> None:
    middle = dt.datetime.fromisoformat(world.txs[1]["updated_at"])
    start = world.before - dt.timedelta(days=1)
    first, second, whole = (
        statement(world, start, middle),
        statement(world, middle, world.after),
        statement(world, start, world.after),
    )
    assert first["balances"][0]["closing"] == second["balances"][0]["opening"]
    assert first["lines"] + second["lines"] == whole["lines"]
    assert first["lines"][0]["kind"] == "deposit" and first["lines"][0]["credit"] == str(10 * ETH)
    earlier = statement(world, world.before - dt.timedelta(days=2), world.before - dt.timedelta(days=1))
    assert earlier["balances"][0]["opening"] == earlier["balances"][0]["closing"] == "0"
    assert earlier["lines"] == []


def test_the_statement_as_csv(world: World) -> None:
    client = TestClient(create_app(world.env.custody))
    headers = {"Authorization": f"Bearer {world.env.people['viewer'].token}"}
    params = {"start": world.before.isoformat(), "end": world.after.isoformat()}
    response = client.get(f"/v1/vaults/{world.vault_id}/statement", params={**params, "format": "csv"}, headers=headers)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    doc = client.get(f"/v1/vaults/{world.vault_id}/statement", params=params, headers=headers).json()
    assert [r["kind"] for r in rows] == ["opening", *[line["kind"] for line in doc["lines"]], "closing"]
    assert rows[0]["balance"] == doc["balances"][0]["opening"] and rows[-1]["balance"] == doc["balances"][0]["closing"]


def test_the_history_as_json_and_csv(world: World) -> None:
    doc = world.env.custody.vault_history(
        world.env.actor("viewer"), world.vault_id, start=world.before.isoformat(), end=world.after.isoformat()
    )
    assert [item["id"] for item in doc["items"]] == [t["id"] for t in world.txs]
    assert [item["external_id"] for item in doc["items"]] == ["order-1", "order-2", "order-3", "big-1"]
    client = TestClient(create_app(world.env.custody))
    headers = {"Authorization": f"Bearer {world.env.people['viewer'].token}"}
    params = {"start": world.before.isoformat(), "end": world.after.isoformat(), "format": "csv"}
    response = client.get(f"/v1/vaults/{world.vault_id}/history", params=params, headers=headers)
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["id"] for r in rows] == [t["id"] for t in world.txs]
    assert [r["state"] for r in rows] == ["confirmed", "confirmed", "confirmed", "rejected"]


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [
        ("2026-02-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00", "earlier than end"),
        ("2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00", "earlier than end"),
        ("2024-01-01T00:00:00+00:00", "2026-01-01T00:00:00+00:00", "at most 366 days"),
        ("2026-01-01T00:00:00", "2026-01-02T00:00:00+00:00", "UTC offset"),
        ("2026-01-01", "2026-01-02T00:00:00+00:00", "UTC offset"),
        (None, "2026-01-02T00:00:00+00:00", "needs start and end"),
    ],
)
def test_bad_periods_are_refused(world: World, start: Any, end: str, reason: str) -> None:
    for export in (world.env.custody.vault_statement, world.env.custody.vault_history):
        with pytest.raises(Invalid, match=reason):
            export(world.env.actor("viewer"), world.vault_id, start=start, end=end)


def test_a_csv_cell_cannot_be_a_formula() -> None:
    item: dict[str, Any] = dict.fromkeys(HistoryLine.model_fields)
    item.update(id='=HYPERLINK("http://x")', state="+1", external_id="-2", destination="@cmd")
    text = history_csv({"items": [item]})
    row = next(csv.DictReader(io.StringIO(text)))
    assert (row["id"], row["state"], row["external_id"], row["destination"]) == (
        '\'=HYPERLINK("http://x")',
        "'+1",
        "'-2",
        "'@cmd",
    )
