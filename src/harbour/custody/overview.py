"""A deployment at a glance, for its operator: the signer nodes, the chain, the database and the pipeline.

``harbour custody status --home DIR`` reads the home's configuration and asks
each part directly, without starting the service or migrating anything: every
node for its signed status (reachable? safe, i.e. not signing on the service's
word alone, :mod:`harbour.custody.nodesafety`? obeying this home's authority?), the chain node for its chain id
and head block, the database for its schema revision, and the transactions table
for the withdrawals in each state and the oldest one still waiting. The database
and chain probes are the service's own readiness checks
(:mod:`harbour.custody.readiness`). An embedded chain lives inside the
``harbour custody serve`` process, so for it the service's ``/v1/ready`` is
asked instead.
"""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Final

from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from harbour.custody import db, readiness, states
from harbour.custody import models as m
from harbour.custody.config import CustodyConfig, authority_public
from harbour.custody.errors import CustodyError
from harbour.custody.nodesafety import examine
from harbour.node.tls import TlsError

PROBE_TIMEOUT: Final = 5.0


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def nodes(config: CustodyConfig, timeout: float = PROBE_TIMEOUT) -> list[dict[str, Any]]:
    try:
        descriptors = config.descriptors()
    except CustodyError as exc:
        return [{"name": None, "reachable": False, "safe": False, "trusts_authority": False, "detail": exc.detail}]
    try:
        files = config.node_client_tls()
        tls = None if files is None else files.client_context()
    except TlsError as exc:
        return [
            {"name": None, "reachable": False, "safe": False, "trusts_authority": False, "detail": f"node_tls: {exc}"}
        ]
    paths = [config.home / n for n in config.nodes]
    authority = authority_public(config.home)
    out = []
    for verdict in examine(paths, descriptors, timeout, tls=tls):
        problem = verdict.problem()
        status = verdict.status
        out.append(
            {
                "name": verdict.descriptor.name,
                "node_id": verdict.descriptor.node_id,
                "url": verdict.descriptor.url,
                "reachable": verdict.reachable,
                "safe": verdict.safe,
                "trusts_authority": verdict.trusts(authority),
                "keys": len(status.keys) if status is not None else None,
                "sessions_running": status.sessions if status is not None else None,
                "detail": "serves organisations only" if problem is None else problem[0],
                "hint": None if problem is None else problem[1],
            }
        )
    return out


def chain(config: CustodyConfig) -> dict[str, Any]:
    if config.chain == "embedded":
        return _embedded_chain(config)
    from harbour.chains.evm import EvmClient

    try:
        client = EvmClient.connect(config.chain, dev=config.dev_chain, timeout=PROBE_TIMEOUT)
    except Exception as exc:  # any failure to reach it is "not reachable", with the reason
        return {"kind": "json-rpc", "reachable": False, "chain_id": None, "head_block": None, "detail": str(exc)}
    try:
        check = readiness.chain(client)
        head = client.block_number() if check.status == "ok" else None
    except Exception as exc:
        return {"kind": "json-rpc", "reachable": False, "chain_id": None, "head_block": None, "detail": str(exc)}
    finally:
        client.close()
    return {
        "kind": "json-rpc",
        "reachable": check.status == "ok",
        "chain_id": client.chain_id if check.status == "ok" else None,
        "head_block": head,
        "detail": check.detail,
    }


def _embedded_chain(config: CustodyConfig) -> dict[str, Any]:
    """The embedded chain is inside the serving process: what that process's ``/v1/ready`` says of it."""
    url = f"http://{config.listen}/v1/ready"
    out: dict[str, Any] = {"kind": "embedded", "reachable": False, "chain_id": None, "head_block": None}
    try:
        with urllib.request.urlopen(url, timeout=PROBE_TIMEOUT) as answer:
            document = json.loads(answer.read())
    except urllib.error.HTTPError as exc:  # 503: not ready, with the same document
        try:
            document = json.loads(exc.read())
        except ValueError:
            return {**out, "detail": f"the service at {url} answered {exc.code}"}
    except (OSError, ValueError):
        return {
            **out,
            "detail": f"the embedded chain lives inside `harbour custody serve`, which does not answer at {url}",
        }
    check = document.get("checks", {}).get("chain", {}) if isinstance(document, dict) else {}
    status = check.get("status") if isinstance(check, dict) else None
    return {**out, "reachable": status == "ok", "detail": f"from the service's /v1/ready: {check.get('detail')}"}


def database(config: CustodyConfig) -> tuple[dict[str, Any], Any]:
    """The database's reachability and schema revision, and a session factory when it answers (else None)."""
    url = make_url(config.database)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        detail = f"no database file at {url.database} (the service creates it when it first starts)"
        return {"reachable": False, "revision": None, "head": db.head_revision(), "detail": detail}, None
    try:
        engine = db.make_engine(config.database)
    except ValueError as exc:
        return {"reachable": False, "revision": None, "head": db.head_revision(), "detail": str(exc)}, None
    check = readiness.database(db.session_factory(engine))
    if check.status != "ok":
        engine.dispose()
        return {"reachable": False, "revision": None, "head": db.head_revision(), "detail": check.detail}, None
    revision, head = db.current_revision(engine), db.head_revision()
    detail = "at the newest schema" if revision == head else f"schema {revision}, this code expects {head}"
    return {"reachable": True, "revision": revision, "head": head, "detail": detail}, engine


def pipeline(engine: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """Withdrawals by state, and the oldest one not yet in a final state."""
    now = now or dt.datetime.now(dt.UTC)
    sessions = db.session_factory(engine)
    with sessions() as s:
        counts = dict(
            s.execute(
                select(m.Transaction.state, func.count())
                .where(m.Transaction.kind == "withdrawal")
                .group_by(m.Transaction.state)
            ).all()
        )
        oldest = s.execute(
            select(m.Transaction.id, m.Transaction.state, m.Transaction.created_at)
            .where(m.Transaction.kind == "withdrawal", m.Transaction.state.not_in(states.FINAL))
            .order_by(m.Transaction.created_at, m.Transaction.id)
            .limit(1)
        ).first()
    waiting = None
    if oldest is not None:
        waiting = {
            "id": oldest.id,
            "state": oldest.state,
            "created_at": iso(oldest.created_at),
            "waiting_seconds": int((now - oldest.created_at).total_seconds()),
        }
    return {"withdrawals": {state: counts.get(state, 0) for state in states.STATES}, "oldest_waiting": waiting}


def overview(config: CustodyConfig) -> dict[str, Any]:
    """``{ok, nodes, chain, database, pipeline}``: ``ok`` when every part answers and every node is safe.

    (And obeys this home's approval authority: a node that does not refuses every certificate.)
    """
    found = nodes(config)
    chain_state = chain(config)
    database_state, engine = database(config)
    try:
        work = pipeline(engine) if engine is not None and database_state["revision"] is not None else None
    finally:
        if engine is not None:
            engine.dispose()
    ok = (
        bool(found)
        and all(n["reachable"] and n["safe"] and n["trusts_authority"] for n in found)
        and chain_state["reachable"]
        and database_state["reachable"]
    )
    return {"ok": ok, "nodes": found, "chain": chain_state, "database": database_state, "pipeline": work}
