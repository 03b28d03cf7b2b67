"""A custody service without signer nodes, and a real HTTP receiver, for the webhook and event-stream tests.

Governance changes (a new user, proposed by one admin and signed by the other)
are real transactions that move through ``submitted``, ``pending_approval``,
``approved`` and ``confirmed`` without any signer node, so the notification
paths can be tested in-process, against real sockets, in well under a second each.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custody_env import HOME_PASSPHRASE
from harbour.custody import config as cfg
from harbour.custody import statements
from harbour.custody.service import Actor, Custody, Founder

_names = itertools.count()


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(self.body)
        return document


@dataclass
class Receiver:
    """An HTTP server on loopback that records every POST and answers with the statuses it is given, in turn."""

    statuses: list[int] = field(default_factory=list)
    """Answers for the first requests; 200 once they run out."""
    received: list[Received] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def __enter__(self) -> Receiver:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                with lock:
                    owner.received.append(Received(dict(self.headers), body, time.time()))
                    status = owner.statuses.pop(0) if owner.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.server.request_queue_size = 128  # the default 5 drops a burst of connections (a 1 s SYN retry)
        self.server.daemon_threads = True
        self.server.server_bind()
        self.server.server_activate()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}/hooks/harbour"

    def types(self) -> list[str]:
        return [r.event["type"] for r in self.received]


def public_hex(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


@dataclass
class Org:
    custody: Custody
    actors: dict[str, Actor]
    tokens: dict[str, str]
    keys: dict[str, Ed25519PrivateKey]

    def admin(self) -> Actor:
        return self.actors["admin"]

    def govern(self, proposal: dict[str, Any]) -> dict[str, Any]:
        """Sign a governance proposal as both admins until it lands."""
        out = proposal
        for who in ("admin", "admin2"):
            request = self.custody.approval_request(self.actors[who], proposal["id"])
            subject = statements.from_request(request, proposal["id"])
            out = self.custody.approve(
                self.actors[who], proposal["id"], signature=subject.sign(self.keys[who], subject.statement()).hex()
            )
            if out["state"] != "pending_approval":
                break
        assert out["state"] == "confirmed", out
        return out

    def change(self) -> dict[str, Any]:
        """One governance change (a new viewer): four state changes and two approvals, all notified."""
        proposal = self.custody.create_user(self.admin(), name=f"viewer {next(_names)}", roles=["viewer"])
        return self.govern(proposal)


def organisation(custody: Custody, name: str) -> Org:
    keys = {who: Ed25519PrivateKey.generate() for who in ("admin", "admin2")}
    founders = [Founder(f"{name} {who}", ["admin"], public_hex(key)) for who, key in keys.items()]
    founders += [Founder(f"{name} auditor", ["auditor"], None), Founder(f"{name} viewer", ["viewer"], None)]
    out = custody.bootstrap(name, founders, quorum=1)
    ids = {u["name"]: u["id"] for u in out["users"]}
    tokens = {c["name"].removeprefix(f"{name} "): c["token"] for c in out["credentials"]}
    for who in ("auditor", "viewer"):
        tokens[who] = custody.issue_credential(custody.authenticate(tokens["admin"]), ids[f"{name} {who}"])["token"]
    actors = {who: custody.authenticate(token) for who, token in tokens.items()}
    return Org(custody, actors, tokens, keys)


def open_service(home: Path, database: str | None = None, *, start: bool = True) -> cfg.Deployment:
    """A service with no signer nodes on ``home`` (made if new), private webhook addresses allowed."""
    if (home / cfg.CONFIG_FILE).exists():
        config = cfg.CustodyConfig.load(home)
    else:
        config = cfg.init_home(home, passphrase=HOME_PASSPHRASE, database=database, webhook_allow_private=True)
    deployment = cfg.open_deployment(config, start=start, pipeline_options={"poll": 0.05, "deposit_poll": 5.0})
    deployment.custody.settings.webhook_retry_base = 0.05
    deployment.custody.settings.webhook_retry_cap = 0.2
    deployment.custody.dispatcher.poll = 0.05
    return deployment


def wait_for(predicate: Callable[[], bool], timeout: float = 45.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")
