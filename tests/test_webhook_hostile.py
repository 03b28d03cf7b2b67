"""Webhook receivers that fight back: one that trickles its answer, one that answers with a huge body.

The receivers are real TCP servers on loopback that speak just enough HTTP to be
hostile: one sends its status line a byte at a time, one its body a byte at a
time (each byte well within any per-read timeout), one a 200 MB body as fast as
the socket takes it. The service under test is the in-process one of
tests/test_webhooks.py, with a short attempt deadline so the tests stay quick. Also
here: the cap on enabled endpoints per organisation, and the refusal of unusable
webhook limits in custody.json.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harbour.custody import config as cfg
from harbour.custody.config import Deployment
from harbour.custody.dispatch import Claimed
from harbour.custody.errors import Conflict, Invalid
from harbour.custody.views import Page
from harbour.custody.webhookhttp import MAX_ANSWER
from webhook_env import Org, Receiver, open_service, organisation, wait_for

DEADLINE = 6.0
HUGE = 200_000_000


@dataclass
class Hostile:
    """A loopback HTTP receiver that answers every request in one hostile ``mode``."""

    mode: str
    """``head``: the status line a byte every 0.1 s; ``body``: the body so; ``huge``: a 200 MB body at once."""
    connections: int = 0
    closed: list[float] = field(default_factory=list)
    """When the service hung up on each answer (the receiver's next send failed)."""
    sent: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _server: socket.socket | None = None

    def __enter__(self) -> Hostile:
        self._server = socket.create_server(("127.0.0.1", 0), backlog=64)
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._server is not None
        self._server.close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.getsockname()[1]}/hook"

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stop.is_set():
            try:
                connection, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            try:
                if self.mode == "huge":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % HUGE)
                    chunk = b"x" * 1_000_000
                    for _ in range(HUGE // len(chunk)):
                        connection.sendall(chunk)
                        self.sent += len(chunk)
                    return
                if self.mode == "body":
                    connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
                while not self._stop.wait(0.1):
                    connection.sendall(b"H" if self.mode == "head" else b"x")
                    self.sent += 1
            except OSError:
                self.closed.append(time.monotonic())


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = open_service(tmp_path_factory.mktemp("hostile") / "custody")
    deployment.custody.settings.webhook_deadline = DEADLINE
    try:
        yield deployment
    finally:
        deployment.close()


def log_of(org: Org, endpoint_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = org.custody.webhook_deliveries(org.admin(), endpoint_id, Page(limit=200))["items"]
    return [attempt for delivery in items for attempt in delivery["log"]]


def test_trickling_receivers_are_cut_off_at_the_deadline_and_hold_up_no_one_else(service: Deployment) -> None:
    hostile, victim = organisation(service.custody, "Trickling Custodian"), organisation(service.custody, "Bystander")
    with Hostile("head") as head, Hostile("body") as body, Receiver() as receiver:
        slow = [hostile.custody.create_webhook(hostile.admin(), url=h.url, events=["*"]) for h in (head, body)]
        hostile.change()  # six deliveries owed to each trickling endpoint
        wait_for(lambda: head.connections >= 4 and body.connections >= 4, what="the trickling answers to start")
        endpoint = victim.custody.create_webhook(victim.admin(), url=receiver.url, events=["*"])
        victim.change()
        wait_for(lambda: len(receiver.received) >= 6, what="the bystander's deliveries")
        # every bystander delivery went out while the trickling attempts were still open ...
        assert not head.closed and not body.closed, "the bystander waited for the trickling receivers"
        # ... and no more than four attempts to one endpoint were in flight at a time
        assert (head.connections, body.connections) == (4, 4)
        wait_for(lambda: len(log_of(hostile, slow[0]["id"])) >= 4, what="the cut-off attempts logged")
        wait_for(lambda: len(log_of(hostile, slow[1]["id"])) >= 4, what="the cut-off attempts logged")
        for item in slow:
            hostile.custody.set_webhook_enabled(hostile.admin(), item["id"], enabled=False)
        victim.custody.set_webhook_enabled(victim.admin(), endpoint["id"], enabled=False)
        wait_for(lambda: len(head.closed) >= 4 and len(body.closed) >= 4, what="the connections to be closed")
    for item in slow:
        attempts = log_of(hostile, item["id"])
        assert all(a["status_code"] is None for a in attempts), attempts  # none was taken for an answer
        # the first four were cut at the deadline; later ones may have ended when the receivers were stopped
        cut = [a for a in attempts if a["error"].startswith("ReadTimeout")]
        assert len(cut) >= 4, attempts
        for attempt in cut:
            assert DEADLINE * 1000 - 50 <= attempt["duration_ms"] < DEADLINE * 1000 + 1500, attempt
    assert head.sent >= 4 * DEADLINE / 0.1 * 0.7  # it kept sending all along: no per-read timeout could fire
    assert all(
        d["state"] == "delivered"
        for d in victim.custody.webhook_deliveries(victim.admin(), endpoint["id"], Page(limit=200))["items"]
    )


def test_a_huge_answer_is_not_read(service: Deployment) -> None:
    dispatcher = service.custody.dispatcher
    with Hostile("huge") as huge:
        item = Claimed("d-huge", 1, "org-huge", "ep-huge", huge.url, "e-huge", b"{}")
        started = time.monotonic()
        outcome = dispatcher._send(item)
        took = time.monotonic() - started
        wait_for(lambda: len(huge.closed) == 1, what="the receiver to see the connection closed")
    assert outcome.status == 200 and outcome.error is None
    assert MAX_ANSWER <= outcome.read <= MAX_ANSWER + 65536, outcome
    assert took < DEADLINE, took  # it hung up after the first few KiB, not at the deadline
    assert huge.sent < HUGE // 4, huge.sent  # what the kernel buffered before the hang-up, not the body


def test_an_organisation_may_have_only_so_many_enabled_endpoints(service: Deployment) -> None:
    org, other = organisation(service.custody, "Capped Custodian"), organisation(service.custody, "Uncapped")
    settings = service.custody.settings
    settings.webhook_max_endpoints = 2
    url = "http://127.0.0.1:9/hook"
    try:
        first, second = (org.custody.create_webhook(org.admin(), url=url, events=["*"]) for _ in range(2))
        with pytest.raises(Conflict, match=r"2 enabled webhook endpoints.*webhook_max_endpoints = 2") as refused:
            org.custody.create_webhook(org.admin(), url=url, events=["*"])
        assert refused.value.status == 409
        org.custody.set_webhook_enabled(org.admin(), first["id"], enabled=False)
        third = org.custody.create_webhook(org.admin(), url=url, events=["*"])  # room again
        with pytest.raises(Conflict, match="webhook_max_endpoints"):
            org.custody.set_webhook_enabled(org.admin(), first["id"], enabled=True)
        assert org.custody.get_webhook(org.admin(), first["id"])["enabled"] is False
        # disabled endpoints and other organisations' endpoints do not count
        for _ in range(2):
            other.custody.create_webhook(other.admin(), url=url, events=["*"])
        org.custody.set_webhook_enabled(org.admin(), second["id"], enabled=False)
        org.custody.set_webhook_enabled(org.admin(), first["id"], enabled=True)
    finally:
        settings.webhook_max_endpoints = 20
    enabled = [e["id"] for e in org.custody.list_webhooks(org.admin(), Page(limit=200))["items"] if e["enabled"]]
    assert sorted(enabled) == sorted([first["id"], third["id"]])


@pytest.mark.parametrize(
    ("setting", "value", "reason"),
    [
        ("webhook_deadline", 0, r"\(0, 30\]"),
        ("webhook_deadline", 60.0, r"\(0, 30\]"),
        ("webhook_deadline", "15", r"\(0, 30\]"),
        ("webhook_deadline", True, r"\(0, 30\]"),
        ("webhook_max_endpoints", 0, "positive integer"),
        ("webhook_max_endpoints", 2.5, "positive integer"),
    ],
)
def test_custody_json_refuses_unusable_webhook_limits(tmp_path: Path, setting: str, value: object, reason: str) -> None:
    document = {"database": f"sqlite:///{tmp_path}/custody.db", setting: value}
    (tmp_path / cfg.CONFIG_FILE).write_text(json.dumps(document))
    with pytest.raises(Invalid, match=reason):
        cfg.CustodyConfig.load(tmp_path)
