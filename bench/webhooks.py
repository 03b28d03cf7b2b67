"""Webhook delivery, as JSON: latency from a committed state change to the receiver, and throughput.

python bench/webhooks.py [changes] [database URL]    (default: 40 changes, a SQLite file)

Each change is a governance change (a new user, proposed and signed by two
admins): six events, each delivered to one endpoint, a real HTTP server on
loopback that answers 200 at once. ``latency_*_ms`` is from the event's
``created_at`` (taken inside the committing transaction, just before COMMIT)
to the moment the receiver read the request, with the service's own delivery
worker running as in production (woken by the commit). ``drain_per_s`` is the
rate at which one worker empties a backlog of ``changes * 6`` deliveries
written while it was stopped.
"""

from __future__ import annotations

import datetime as dt
import json
import statistics
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from harbour.custody import config as cfg
from harbour.custody import statements
from harbour.custody.service import Actor, Custody, Founder

PASSPHRASE = "harbour benchmark passphrase"  # the keys of a throw-away custody home in a temporary directory
received: list[tuple[float, bytes]] = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        at = time.time()
        with lock:
            received.append((at, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops connections a busy worker opens at once (a 1 s SYN retry)
    daemon_threads = True


def _public(key: Ed25519PrivateKey) -> str:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()


def make_changes(custody: Custody, admins: list[Actor], keys: list[Ed25519PrivateKey], count: int, tag: str) -> None:
    """``count`` governance changes, each proposed by the first admin and signed by both."""
    for i in range(count):
        tx = custody.create_user(admins[0], name=f"{tag} {i}", roles=["viewer"])
        for admin, key in zip(admins, keys, strict=True):
            request = custody.approval_request(admin, tx["id"])
            subject = statements.from_request(request, tx["id"])
            signature = subject.sign(key, subject.statement()).hex()
            if custody.approve(admin, tx["id"], signature=signature)["state"] != "pending_approval":
                break


def wait_for(count: int, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while len(received) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(received)} of {count} deliveries arrived")
        time.sleep(0.01)


def main(count: int, database: str | None) -> dict[str, Any]:
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    home = Path(tempfile.mkdtemp(prefix="harbour-bench-")) / "custody"
    config = cfg.init_home(home, passphrase=PASSPHRASE, database=database, webhook_allow_private=True)
    result: dict[str, Any] = {"changes": count, "events": count * 6}

    # live: the worker runs, as in production, woken by each commit
    live = cfg.open_deployment(config)
    custody = live.custody
    result["database"] = custody.uow.sessions.kw["bind"].dialect.name
    keys = [Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()]
    out = custody.bootstrap("bench", [Founder(f"bench a{i}", ["admin"], _public(k)) for i, k in enumerate(keys)])
    admins = [custody.authenticate(c["token"]) for c in out["credentials"]]
    custody.create_webhook(admins[0], url=url, events=["*"])
    started = time.perf_counter()
    make_changes(custody, admins, keys, count, "live")
    wait_for(count * 6)
    elapsed = time.perf_counter() - started
    latencies = []
    for at, body in received:
        created = dt.datetime.fromisoformat(json.loads(body)["created_at"]).timestamp()
        latencies.append((at - created) * 1e3)
    latencies.sort()
    result["latency_p50_ms"] = round(statistics.median(latencies), 2)
    result["latency_p90_ms"] = round(latencies[int(len(latencies) * 0.9)], 2)
    result["latency_max_ms"] = round(latencies[-1], 2)
    result["live_events_per_s"] = round(len(received) / elapsed, 1)
    live.close()

    # drain: a backlog written while no worker ran, then one worker empties it
    received.clear()
    stopped = cfg.open_deployment(config, start=False)
    custody = stopped.custody
    custody.create_webhook(admins[0], url=url, events=["*"])  # a second endpoint: the first one's rows pile up too
    make_changes(custody, admins, keys, count, "backlog")
    owed = count * 6 * 2
    started = time.perf_counter()
    while len(received) < owed:
        if not custody.dispatcher.once():
            break
    drain = time.perf_counter() - started
    result["backlog"] = owed
    result["drain_per_s"] = round(len(received) / drain, 1)
    stopped.close()
    server.shutdown()
    return result


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    url = sys.argv[2] if len(sys.argv) > 2 else None
    print(json.dumps(main(n, url), indent=2))
