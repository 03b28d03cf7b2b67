"""Webhooks against a real HTTP receiver: signed deliveries from the outbox, retries, the delivery log, refusals.

The service runs in-process on SQLite with the embedded chain and no signer
nodes; its transactions are governance changes, which pass through the same
states and approvals as withdrawals. Receivers are real HTTP servers on loopback
started by the tests, so the operator's ``webhook_allow_private`` is on here, and
the tests that check the default refusals turn it off.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from harbour.custody import notices as n
from harbour.custody.config import Deployment
from harbour.custody.errors import Conflict, Forbidden, Invalid, NotFound
from harbour.custody.views import Page
from harbour.custody.webhooksig import (
    ID_HEADER,
    ReplayGuard,
    verify,
)
from webhook_env import Org, Receiver, open_service, organisation, wait_for

CHANGE_TYPES = {
    "transaction.submitted",
    "transaction.pending_approval",
    "transaction.approved",
    "transaction.confirmed",
    "approval.approve",
}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = open_service(tmp_path_factory.mktemp("webhooks") / "custody")
    try:
        yield deployment
    finally:
        deployment.close()


@pytest.fixture(scope="module")
def org(service: Deployment) -> Org:
    return organisation(service.custody, "Webhook Test Custodian")


@pytest.fixture(scope="module")
def other(service: Deployment) -> Org:
    return organisation(service.custody, "Another Custodian")


def deliveries(org: Org, endpoint_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = org.custody.webhook_deliveries(org.admin(), endpoint_id, Page(limit=200))["items"]
    return items


def public_key(org: Org) -> bytes:
    return bytes.fromhex(org.custody.webhook_signing_key(org.actors["viewer"])["public_key"])


# -- deliveries ----------------------------------------------------------------------------------------------------


def test_every_state_change_and_approval_reaches_the_receiver_signed(org: Org) -> None:
    with Receiver() as receiver:
        endpoint = org.custody.create_webhook(org.admin(), url=receiver.url, events=["*"])
        tx = org.change()
        wait_for(lambda: len(receiver.received) >= 6, what="six deliveries")
        time.sleep(0.2)  # nothing more is owed
    assert len(receiver.received) == 6
    assert set(receiver.types()) == CHANGE_TYPES
    assert receiver.types().count("approval.approve") == 2
    key, guard = public_key(org), ReplayGuard()
    ids = [verify(key, endpoint["id"], r.headers, r.body, replay=guard) for r in receiver.received]
    assert len(set(ids)) == 6
    confirmed = next(r.event for r in receiver.received if r.event["type"] == "transaction.confirmed")
    assert confirmed["subject"] == tx["id"]
    assert confirmed["data"]["transaction"]["state"] == "confirmed"
    assert confirmed["data"]["change"]["previous"] == "approved"
    log = deliveries(org, endpoint["id"])
    assert {d["state"] for d in log} == {"delivered"}
    assert all(d["attempts"] == 1 and d["log"][0]["status_code"] == 200 for d in log)
    org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)


def test_only_the_event_types_an_endpoint_wants_are_delivered(org: Org) -> None:
    with Receiver() as receiver:
        endpoint = org.custody.create_webhook(
            org.admin(), url=receiver.url, events=["transaction.pending_approval", "transaction.confirmed"]
        )
        org.change()
        wait_for(lambda: len(receiver.received) >= 2, what="two deliveries")
        time.sleep(0.2)
    assert sorted(receiver.types()) == ["transaction.confirmed", "transaction.pending_approval"]
    org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)


def test_a_receiver_that_answers_500_is_retried_until_it_answers_200(org: Org) -> None:
    with Receiver(statuses=[500, 503]) as receiver:
        endpoint = org.custody.create_webhook(org.admin(), url=receiver.url, events=["transaction.confirmed"])
        org.change()
        wait_for(lambda: len(receiver.received) >= 3, what="three attempts")
        wait_for(lambda: deliveries(org, endpoint["id"])[0]["state"] == "delivered", what="the delivery")
    (delivery,) = deliveries(org, endpoint["id"])
    assert [a["status_code"] for a in delivery["log"]] == [500, 503, 200]
    assert [a["number"] for a in delivery["log"]] == [1, 2, 3]
    assert delivery["log"][0]["error"] == "the receiver answered 500"
    assert delivery["attempts"] == 3 and delivery["next_attempt_at"] is None and delivery["last_status"] == 200
    # every attempt is the same event, signed afresh
    assert len({r.headers[ID_HEADER] for r in receiver.received}) == 1
    assert all(r.headers["Harbour-Webhook-Attempt"] == str(i) for i, r in enumerate(receiver.received, 1))
    key = public_key(org)
    for r in receiver.received:
        verify(key, endpoint["id"], r.headers, r.body)
    org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)


def test_a_delivery_that_never_succeeds_fails_after_the_last_attempt(service: Deployment, org: Org) -> None:
    settings = service.custody.settings
    settings.webhook_max_attempts = 3
    try:
        with Receiver(statuses=[500] * 10) as receiver:
            endpoint = org.custody.create_webhook(org.admin(), url=receiver.url, events=["transaction.confirmed"])
            org.change()
            wait_for(lambda: deliveries(org, endpoint["id"])[0]["state"] == "failed", what="the delivery to fail")
            time.sleep(0.3)
        (delivery,) = deliveries(org, endpoint["id"])
        assert len(receiver.received) == 3
        assert delivery["attempts"] == 3 and delivery["next_attempt_at"] is None
        assert [a["status_code"] for a in delivery["log"]] == [500, 500, 500]
        failed = org.custody.webhook_deliveries(org.admin(), endpoint["id"], Page(), "failed")["items"]
        assert [d["id"] for d in failed] == [delivery["id"]]
    finally:
        settings.webhook_max_attempts = 10
        org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)


def test_an_unreachable_receiver_is_logged_without_a_status_and_retried(org: Org) -> None:
    with Receiver() as receiver:
        url = receiver.url
    endpoint = org.custody.create_webhook(org.admin(), url=url, events=["transaction.confirmed"])
    org.change()
    wait_for(lambda: len(deliveries(org, endpoint["id"])[0]["log"]) >= 2, what="a second attempt logged")
    org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)
    delivery = deliveries(org, endpoint["id"])[0]
    assert delivery["state"] == "pending"
    assert delivery["log"][0]["status_code"] is None and "Connect" in delivery["log"][0]["error"]


def test_deliveries_written_before_a_crash_are_sent_after_the_restart(tmp_path: Path) -> None:
    home = tmp_path / "custody"
    with Receiver() as receiver:
        first = open_service(home, start=False)  # no delivery worker: the outbox only fills
        org = organisation(first.custody, "Restarted Custodian")
        org.custody.create_webhook(org.admin(), url=receiver.url, events=["*"])
        tx = org.change()
        engine = first.custody.uow.sessions.kw["bind"]
        with engine.connect() as c:
            owed = c.scalar(
                select(func.count()).select_from(n.WebhookDelivery).where(n.WebhookDelivery.state == "pending")
            )
        assert owed == 6 and receiver.received == []
        first.close()
        second = open_service(home)
        try:
            wait_for(lambda: len(receiver.received) >= 6, what="the owed deliveries")
        finally:
            second.close()
    assert {r.event["subject"] for r in receiver.received} == {tx["id"]}
    assert set(receiver.types()) == CHANGE_TYPES


def test_the_published_key_is_the_organisations_own(org: Org, other: Org) -> None:
    mine, theirs = public_key(org), public_key(other)
    assert mine != theirs and len(mine) == 32
    assert org.custody.webhook_signing_key(org.actors["viewer"])["algorithm"] == "ed25519"


# -- refusals ----------------------------------------------------------------------------------------------------


def test_the_service_refuses_a_loopback_url_unless_the_operator_allows_it(service: Deployment, org: Org) -> None:
    settings = service.custody.settings
    settings.webhook_allow_private = False
    try:
        with pytest.raises(Conflict, match="webhook_allow_private"):
            org.custody.create_webhook(org.admin(), url="http://127.0.0.1:9/hook", events=["*"])
    finally:
        settings.webhook_allow_private = True
    created = org.custody.create_webhook(org.admin(), url="http://127.0.0.1:9/hook", events=["*"])
    org.custody.set_webhook_enabled(org.admin(), created["id"], enabled=False)


def test_a_delivery_to_a_url_no_longer_allowed_is_not_sent(service: Deployment, org: Org) -> None:
    with Receiver() as receiver:
        endpoint = org.custody.create_webhook(org.admin(), url=receiver.url, events=["transaction.confirmed"])
        service.custody.settings.webhook_allow_private = False
        try:
            org.change()
            wait_for(lambda: len(deliveries(org, endpoint["id"])[0]["log"]) >= 1, what="an attempt logged")
        finally:
            service.custody.settings.webhook_allow_private = True
            org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)
    assert receiver.received == []
    assert "loopback, private or reserved" in deliveries(org, endpoint["id"])[0]["log"][0]["error"]


@pytest.mark.parametrize(
    ("events", "reason"),
    [([], "non-empty"), (["transaction.teleported"], "unknown event types"), ("*", "non-empty"), ([1], "non-empty")],
)
def test_unknown_or_missing_event_types_are_refused(org: Org, events: Any, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        org.custody.create_webhook(org.admin(), url="http://127.0.0.1:9/hook", events=events)


def test_only_admins_register_and_change_endpoints(org: Org) -> None:
    endpoint = org.custody.create_webhook(org.admin(), url="http://127.0.0.1:9/hook", events=["*"], description="x")
    org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)
    for who in ("auditor", "viewer"):
        with pytest.raises(Forbidden):
            org.custody.create_webhook(org.actors[who], url="http://127.0.0.1:9/hook", events=["*"])
        with pytest.raises(Forbidden):
            org.custody.set_webhook_enabled(org.actors[who], endpoint["id"], enabled=True)
    with pytest.raises(Forbidden):
        org.custody.webhook_deliveries(org.actors["viewer"], endpoint["id"], Page())
    listed = org.custody.list_webhooks(org.actors["auditor"], Page(limit=200))["items"]
    assert endpoint["id"] in {e["id"] for e in listed}


def test_another_organisations_endpoints_are_not_found(org: Org, other: Org) -> None:
    endpoint = org.custody.create_webhook(org.admin(), url="http://127.0.0.1:9/hook", events=["*"])
    org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)
    intruder = other.admin()
    calls: list[Callable[[], object]] = [
        lambda: other.custody.get_webhook(intruder, endpoint["id"]),
        lambda: other.custody.set_webhook_enabled(intruder, endpoint["id"], enabled=True),
        lambda: other.custody.webhook_deliveries(intruder, endpoint["id"], Page()),
    ]
    for call in calls:
        with pytest.raises(NotFound):
            call()
    assert endpoint["id"] not in {e["id"] for e in other.custody.list_webhooks(intruder, Page(limit=200))["items"]}
    assert org.custody.get_webhook(org.admin(), endpoint["id"])["enabled"] is False


def test_another_organisations_changes_are_never_delivered_to_this_one(org: Org, other: Org) -> None:
    with Receiver() as receiver:
        endpoint = org.custody.create_webhook(org.admin(), url=receiver.url, events=["*"])
        other.change()
        org.change()
        wait_for(lambda: len(receiver.received) >= 6, what="this organisation's deliveries")
        time.sleep(0.2)
    org.custody.set_webhook_enabled(org.admin(), endpoint["id"], enabled=False)
    assert len(receiver.received) == 6
    assert {r.event["org_id"] for r in receiver.received} == {org.admin().org_id}


# -- several workers on one PostgreSQL ---------------------------------------------------------------------------


def test_workers_sharing_postgresql_deliver_each_event_exactly_once(postgres_db_url: str, tmp_path: Path) -> None:
    home = tmp_path / "custody"
    with Receiver() as receiver:
        first = open_service(home, postgres_db_url, start=False)
        second = open_service(home, start=False)  # the same home and database, its own connections and worker
        try:
            org = organisation(first.custody, "Shared Database Custodian")
            org.custody.create_webhook(org.admin(), url=receiver.url, events=["*"])
            for _ in range(4):
                org.change()
            owed = 24
            first.custody.dispatcher.batch = second.custody.dispatcher.batch = 3

            def work(deployment: Deployment, sent: list[int]) -> None:
                while len(receiver.received) < owed:
                    sent.append(deployment.custody.dispatcher.once())

            counts: tuple[list[int], list[int]] = ([], [])
            threads = [threading.Thread(target=work, args=(d, c)) for d, c in zip((first, second), counts, strict=True)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
        finally:
            first.close()
            second.close()
    ids = [r.headers[ID_HEADER] for r in receiver.received]
    assert len(ids) == owed and len(set(ids)) == owed
    assert sum(counts[0]) + sum(counts[1]) == owed
    assert sum(counts[0]) > 0 and sum(counts[1]) > 0, counts


def test_a_worker_skips_rows_another_worker_holds(postgres_db_url: str, tmp_path: Path) -> None:
    deployment = open_service(tmp_path / "custody", postgres_db_url, start=False)
    try:
        org = organisation(deployment.custody, "Locking Custodian")
        org.custody.create_webhook(org.admin(), url="http://127.0.0.1:9/hook", events=["*"])
        org.change()
        engine = deployment.custody.uow.sessions.kw["bind"]
        with engine.connect() as other_worker, other_worker.begin():
            held = (
                other_worker.execute(
                    select(n.WebhookDelivery.id).order_by(n.WebhookDelivery.event_seq).limit(2).with_for_update()
                )
                .scalars()
                .all()
            )
            dispatcher = deployment.custody.dispatcher
            dispatcher.per_endpoint = dispatcher.per_org = 8  # the one endpoint may have all rows claimed at once
            started = time.monotonic()
            claimed = dispatcher._claim()
            assert time.monotonic() - started < 5  # it did not wait for the other worker's locks
        assert len(held) == 2 and len(claimed) == 4
        assert not {c.delivery_id for c in claimed} & set(held)
    finally:
        deployment.close()
