"""Three ``harbour custody serve`` processes on one PostgreSQL, killed at random and restarted in turn.

The deployment is the tests' usual one (three signer-node processes, 2-of-3 ECDSA
vaults) on anvil and a PostgreSQL database of the test server; the service runs
only as CLI processes of one home, each on its own port (:mod:`custody_services`).
Clients submit withdrawals from two source addresses over HTTP to whichever
process answers, while one process at a time is killed with SIGKILL every few
seconds and started again; then the three are restarted one after another, as a
deploy does, with withdrawals still arriving. Afterwards:

- none lost and none twice: one transaction per idempotency key, every one confirmed;
- no submission was answered with a server error (a deadlock is retried, not a 500);
- each source address's nonces are 0, 1, 2, ... without a gap, and the chain's
  count of its mined transactions is exactly that many;
- each withdrawal was signed into the database once and sent once (one
  ``transaction.signed`` and one ``transaction.broadcast`` audit event), and the
  hash it was confirmed under is the one committed;
- the signer nodes signed each digest in one session, except where a process was
  killed while it signed and another took over its expired lease, which the
  taker says in its log (or where an attempt failed at the coordinator and was
  retried, as a single process does too): the same unsigned transaction signed
  again, of which only the one committed signature was ever sent.

Then what an operator watches, read from the same processes as an operator would:
each one's stderr parsed line by line as JSON (a request's line carries the id the
client sent, the pipeline's lines the withdrawal's id), and each one's ``/metrics``
(and each node's) scraped over HTTP and parsed with prometheus_client's own parser,
around one more withdrawal.

A SQLite home, by contrast, refuses a second ``serve`` with a clear message, and
takes one again once the first was killed (the kernel drops the lock).

The run here is 30 + 12 withdrawals; ``bench/custody_processes.py --chaos`` runs
the same with 200.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from sqlalchemy import func, select

from custody_env import ETH, HOME_PASSPHRASE, CustodyEnv
from custody_services import Service, Services, check, distinct_ports, submit
from harbour.chains.ethereum import checksum_address
from harbour.custody import claims, db
from harbour.custody import config as cfg
from harbour.custody import models as m
from harbour.custody.errors import Invalid
from harbour.node.localnet import free_port
from postgres import PostgresServer

ALLOW_ALL = {"rules": [{"name": "allow-all", "action": "allow"}]}
LEASE = 4
"""Seconds: a killed process's withdrawals are taken over this long after its last renewal."""
CHAOS = 30
ROLLING = 12
CLIENTS = 6


@dataclass
class Cluster:
    env: CustodyEnv
    services: Services
    database: str
    chain_url: str
    vaults: list[tuple[str, str]]
    node_metrics: list[str]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, postgres_server: PostgresServer, anvil: str) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("multiproc")
    database = postgres_server.create_database("multiproc")
    env = CustodyEnv(root, chain_url=anvil, database=database)
    ports = distinct_ports(len(env.nodes))
    for node, port in zip(env.nodes, ports, strict=True):  # set in the environment, as a unit file would
        node.env.update({"HARBOUR_METRICS_LISTEN": f"127.0.0.1:{port}", "HARBOUR_LOG_FORMAT": "json"})
    with env:
        env.organisation()
        env.set_policy(ALLOW_ALL)
        vaults = [env.vault(name=f"hot-{i}", fund=10 * ETH) for i in range(2)]
        env.config.lease = LEASE
        env.config.save()
        env.close()  # from here on the service is the CLI processes only
        services = Services(env.home, 3)
        try:
            services.start()
            yield Cluster(env, services, database, anvil, vaults, [f"http://127.0.0.1:{p}/metrics" for p in ports])
        finally:
            services.stop()
    postgres_server.drop_database("multiproc")


def _submit_batch(
    cluster: Cluster, keys: list[str], spread: float, ids: dict[str, str], errors: list[int], deadline: float
) -> None:
    """Submit ``keys`` from CLIENTS threads over about ``spread`` seconds; fills ids (key -> transaction id)."""
    token = cluster.env.people["initiator"].token
    lock = threading.Lock()
    pause = spread * CLIENTS / max(len(keys), 1)

    def client(mine: list[str]) -> None:
        for key in mine:
            i = int(key.rsplit("-", 1)[1])
            vault_id, _ = cluster.vaults[i % len(cluster.vaults)]
            to = checksum_address((0x5000 + i).to_bytes(20, "big"))
            body = {"vault_id": vault_id, "asset": "ETH", "to": to, "amount": str(1000 + i)}
            view, failed = submit(cluster.services, token, body, key, deadline)
            with lock:
                ids[key] = view["id"]
                errors.append(failed)
            time.sleep(pause)

    threads = [threading.Thread(target=client, args=(keys[c::CLIENTS],)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_three_processes_killed_and_restarted_lose_nothing_and_sign_and_send_each_withdrawal_once(
    cluster: Cluster,
) -> None:
    services, rng = cluster.services, random.Random(20261207)
    ids: dict[str, str] = {}
    errors: list[int] = []
    deadline = time.monotonic() + 150

    stop = threading.Event()

    def chaos() -> None:  # every few seconds while withdrawals arrive, and at least three times
        while not (stop.is_set() and len(services.crashes) >= 3) and time.monotonic() < deadline:
            time.sleep(rng.uniform(1.5, 3.0))
            services.crash(rng)

    chaos_thread = threading.Thread(target=chaos)
    chaos_thread.start()
    try:
        _submit_batch(cluster, [f"chaos-{i}" for i in range(CHAOS)], 10.0, ids, errors, deadline)
    finally:
        stop.set()
        chaos_thread.join()
    assert len(services.crashes) >= 3

    # a rolling deploy with withdrawals arriving: each old process stops (SIGTERM) once a new one serves
    rolling = threading.Thread(
        target=_submit_batch,
        args=(cluster, [f"roll-{i}" for i in range(CHAOS, CHAOS + ROLLING)], 10.0, ids, errors, deadline),
    )
    rolling.start()
    services.roll()
    rolling.join()

    assert len(ids) == CHAOS + ROLLING
    outcome = check(
        cluster.database,
        cluster.chain_url,
        dict(cluster.vaults),
        ids,
        services,
        [n.directory for n in cluster.env.nodes],
        timeout=max(deadline - time.monotonic(), 30),
    )
    assert outcome.checks == dict.fromkeys(outcome.checks, True), outcome.problems
    assert len(outcome.checks) == 6
    assert sum(errors) == 0, f"{sum(errors)} submissions were answered with a server error"
    assert set(outcome.double_signed) <= set(outcome.takeovers) | outcome.retried


# -- logs and metrics ------------------------------------------------------------------------------------------------

REQUEST_ID = "client-chosen.id:0042"


def _scrape(url: str) -> dict[str, list[Sample]]:
    answer = httpx.get(url, timeout=10.0)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=")
    return {family.name: family.samples for family in text_string_to_metric_families(answer.text)}


def _value(scraped: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled series not created yet (a counter appears at its first count)."""
    family = name.removesuffix("_total").removesuffix("_count").removesuffix("_sum")
    found = [
        s.value
        for s in scraped.get(family, [])
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def _signed_by_nodes(cluster: Cluster) -> float:
    total = 0.0
    for url in cluster.node_metrics:
        samples = _scrape(url).get("harbour_node_sessions", [])
        total += sum(s.value for s in samples if s.name.endswith("_total") and s.labels["outcome"] == "signed")
    return total


@dataclass
class Watched:
    """One withdrawal submitted to one process with the client's request id, and what was scraped around it."""

    service: Service
    tx_id: str
    token: str
    before: dict[str, list[Sample]]
    after: dict[str, list[Sample]]
    others: list[dict[str, list[Sample]]]
    nodes_before: float
    nodes_after: float


@pytest.fixture(scope="module")
def watched(cluster: Cluster) -> Watched:
    services = cluster.services
    services.wait_ready()
    target, others = services.services[0], services.services[1:]
    token = cluster.env.people["initiator"].token
    before, nodes_before = _scrape(target.metrics_url), _signed_by_nodes(cluster)
    vault_id, _ = cluster.vaults[0]
    body = {"vault_id": vault_id, "asset": "ETH", "to": checksum_address(b"\x51" * 20), "amount": "1000"}
    headers = {"Authorization": f"Bearer {token}", "X-Request-ID": REQUEST_ID, "Idempotency-Key": "observed-1"}
    answer = httpx.post(target.url + "/v1/transactions", json=body, headers=headers, timeout=30.0)
    assert answer.status_code == 201, answer.text
    assert answer.headers["x-request-id"] == REQUEST_ID
    tx_id = answer.json()["id"]
    deadline, state = time.monotonic() + 90, ""
    while time.monotonic() < deadline and state not in ("confirmed", "failed"):
        time.sleep(0.1)
        polled = httpx.get(f"{target.url}/v1/transactions/{tx_id}", headers={"Authorization": f"Bearer {token}"})
        state = polled.json()["state"]
    assert state == "confirmed"
    return Watched(
        target,
        tx_id,
        token,
        before,
        _scrape(target.metrics_url),
        [_scrape(o.metrics_url) for o in others],
        nodes_before,
        _signed_by_nodes(cluster),
    )


def test_every_log_line_is_one_json_object_and_a_request_carries_the_clients_id(watched: Watched) -> None:
    records, others = watched.service.lines()
    assert all(line.startswith("custody API on http://127.0.0.1:") for line in others), others  # stdout's one line
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert record["time"].endswith("Z") and record["time"][10] == "T", record
    requests = [r for r in records if r["logger"] == "harbour.api.requests"]
    (mine,) = [r for r in requests if r.get("request_id") == REQUEST_ID]
    assert (mine["method"], mine["route"], mine["status"]) == ("POST", "/v1/transactions", 201)
    assert mine["duration_ms"] > 0
    generated = {r["request_id"] for r in requests} - {REQUEST_ID}
    assert generated, "the polls without an id got ids of their own"
    assert all(len(other) == 36 for other in generated)
    assert watched.token.rsplit("_", 1)[1] not in watched.service.output()


def test_the_pipelines_lines_about_a_withdrawal_carry_its_transaction_id(watched: Watched) -> None:
    records, _ = watched.service.lines()
    about = [r for r in records if r.get("transaction_id") == watched.tx_id]
    messages = [r["message"] for r in about]
    assert any("signed by nodes" in message for message in messages), messages
    assert any("sent to the chain" in message for message in messages), messages
    assert all(r["logger"].startswith("harbour.custody.") for r in about), about


def test_each_process_serves_its_own_metrics_and_the_deployments_figures_alike(
    cluster: Cluster, watched: Watched
) -> None:
    engine = db.make_engine(cluster.database)
    try:
        with engine.connect() as connection:
            confirmed = connection.scalar(
                select(func.count())
                .select_from(m.Transaction)
                .where(m.Transaction.kind == "withdrawal", m.Transaction.state == "confirmed")
            )
    finally:
        engine.dispose()
    assert confirmed is not None and confirmed >= 1
    for scraped in [watched.after, *watched.others]:  # the deployment's figures, from the database and the chain
        assert _value(scraped, "harbour_database_up") == 1
        assert _value(scraped, "harbour_chain_up") == 1
        assert _value(scraped, "harbour_withdrawals", state="signing") == 0
        assert _value(scraped, "harbour_withdrawals", state="confirmed") == confirmed
        head, lag = _value(scraped, "harbour_chain_head_block"), _value(scraped, "harbour_chain_lag_blocks")
        assert head > 0 and 0 <= lag <= head
    # this process's own figures moved by exactly this withdrawal: one signing, one submission
    before, after = watched.before, watched.after
    signed = "harbour_signing_seconds_count"
    assert _value(after, signed, outcome="signed") - _value(before, signed, outcome="signed") == 1
    created = {"method": "POST", "route": "/v1/transactions", "status": "201"}
    assert (
        _value(after, "harbour_api_requests_total", **created) - _value(before, "harbour_api_requests_total", **created)
        == 1
    )
    polls = {"method": "GET", "route": "/v1/transactions/{tx_id}", "status": "200"}
    assert _value(after, "harbour_api_requests_total", **polls) >= 1
    routes = {s.labels["route"] for s in after["harbour_api_requests"]}
    assert not any(watched.tx_id in route for route in routes), routes  # templates, never ids
    assert _value(after, "harbour_pipeline_queue_depth", queue="in_flight") == 0
    assert _value(after, "harbour_pipeline_queue_depth", queue="submitted") == 0
    assert watched.nodes_after - watched.nodes_before == 2, "a 2-of-3 vault: two nodes signed it"


def test_the_nodes_count_their_keys_and_sessions_on_a_listener_of_their_own(cluster: Cluster) -> None:
    for node, url in zip(cluster.env.nodes, cluster.node_metrics, strict=True):
        scraped = _scrape(url)
        vaults = len(cluster.vaults)
        assert _value(scraped, "harbour_node_keys") == vaults, "each vault's key"
        assert _value(scraped, "harbour_node_sessions_total", kind="keygen", outcome="staged") == vaults
        assert _value(scraped, "harbour_node_session_seconds_count", kind="keygen", outcome="staged") == vaults
        records = [json.loads(line) for line in node.log_path.read_text().splitlines() if line.startswith("{")]
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
        assert httpx.get(node.descriptor.url + "/metrics", timeout=10.0).status_code == 404


def test_metrics_are_not_on_the_api_port(cluster: Cluster) -> None:
    served = cluster.services.services[0]
    assert httpx.get(served.url + "/metrics", timeout=10.0).status_code == 404
    assert httpx.post(served.metrics_url, timeout=10.0).status_code == 405


# -- SQLite: one process -------------------------------------------------------------------------------------------


def _serve(home: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harbour.cli.main",
            "custody",
            "serve",
            "--home",
            str(home),
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_second_service_on_one_sqlite_file_refuses_to_start_and_a_killed_ones_lock_is_gone(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = cfg.init_home(home, passphrase=HOME_PASSPHRASE)
    first = Service(home, free_port(), "first")
    first.start()
    try:
        second = _serve(home, free_port())
        out, err = second.communicate(timeout=120)
        assert second.returncode == 1, (out, err)
        message = err.decode()
        assert message.startswith("error: another custody service is running on the SQLite database"), message
        assert "use PostgreSQL to run several" in message
        assert str(home / "custody.db") in message
        assert first.answers(), "the first one serves on"
        with pytest.raises(Invalid, match="another custody service"):
            claims.single_process(config.database)
    finally:
        first.kill()
    lock = claims.single_process(config.database)  # kill -9 left no lock behind: the kernel dropped it
    assert lock is not None
    lock.close()
