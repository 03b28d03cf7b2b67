"""Costs of the custody audit log, as JSON: append (before commit), proofs, checking a proof, verifying the log;
and of row digests: a unit of work that changes a covered field against one that changes a field left out
(the difference is reading the row back, hashing it and a larger event), and verify's cost per row.

python bench/audit.py [events] [database URL]    (default: 5000 events, SQLite in memory)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.custody import audit, auditverify
from harbour.custody import models as m
from harbour.custody.db import Base, make_engine, session_factory
from harbour.custody.uow import UnitOfWork

DATA = {"vault_id": "0f8f3b52-5d7e-4e39-9a39-0d1e36d3b0a1", "amount": "1000000000000000000", "to": "0x" + "ab" * 20}


def measure(url: str, events: int) -> dict[str, Any]:
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    sessions = session_factory(engine)
    log = audit.AuditLog(Ed25519PrivateKey.generate())
    result: dict[str, Any] = {"database": engine.dialect.name, "events": events}
    with sessions() as s:
        if log.size(s):
            raise SystemExit("the database already holds an audit log: give an empty one")
    with sessions() as s, s.begin():
        started = time.perf_counter()
        for _ in range(events):
            log.append(s, org_id="org", actor_id="user", kind="transaction.approved", subject="tx", data=DATA)
        result["append_ms"] = (time.perf_counter() - started) / events * 1e3
    with sessions() as s:
        started = time.perf_counter()
        proof = log.inclusion(s, events // 3)
        result["inclusion_proof_ms"] = (time.perf_counter() - started) * 1e3
        started = time.perf_counter()
        consistency = log.consistency(s, events // 2)
        result["consistency_proof_ms"] = (time.perf_counter() - started) * 1e3
        audit.check_inclusion_proof(proof, log.public_key)  # warm up (the first strptime imports a module)
        rounds = 200
        started = time.perf_counter()
        for _ in range(rounds):
            audit.check_inclusion_proof(proof, log.public_key)
        result["check_proof_ms"] = (time.perf_counter() - started) / rounds * 1e3
        audit.check_consistency_proof(consistency, log.public_key)
        started = time.perf_counter()
        report = auditverify.verify_log(log, s)
        result["verify_ms_per_event"] = (time.perf_counter() - started) / events * 1e3
        assert report.ok, report
    engine.dispose()
    return result


def measure_rows(url: str, units: int) -> dict[str, Any]:
    """Units of work that each change one address (a covered field, or the label, which is left out) and record it."""
    engine = make_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    key = Ed25519PrivateKey.generate()
    uow = UnitOfWork(session_factory(engine), audit.AuditLog(key))
    with uow.tx() as s:
        org = m.Organisation(name="bench", genesis="00" * 32)
        s.add(org)
        s.flush()
        vault = m.Vault(
            org_id=org.id, name="v", key_id="k", scheme="s", threshold=2, nodes=[], public_key="", chain_code=""
        )
        s.add(vault)
        s.flush()
        address = m.Address(vault_id=vault.id, index=0, path="m/0", address="0x" + "ab" * 20)
        s.add(address)
        s.flush()
        uow.event(s, None, "bench.setup", None, org_id=org.id)
    result: dict[str, Any] = {"units": units}
    rounds = 10  # the two kinds of unit alternate, and each keeps its best round: a shared machine is noisy
    best = {"label": float("inf"), "path": float("inf")}
    for _ in range(rounds):
        for field in best:
            started = time.perf_counter()
            for n in range(units // rounds):

                def work(s: Any, n: int = n, field: str = field) -> None:
                    row = s.get(m.Address, address.id)
                    setattr(row, field, f"m/{n}")
                    uow.event(s, None, "bench.changed", row.id, org_id=org.id, field=field)

                uow.write(work)
            best[field] = min(best[field], (time.perf_counter() - started) / (units // rounds) * 1e3)
    result["unit_left_out_field_ms"], result["unit_covered_field_ms"] = best["label"], best["path"]
    result["row_digest_ms"] = result["unit_covered_field_ms"] - result["unit_left_out_field_ms"]
    rows = units
    with uow.tx() as s:
        s.add_all(
            [m.User(org_id=org.id, name=f"u{n}", roles=["viewer"], approval_key=f"{n:064x}") for n in range(rows)]
        )
        uow.event(s, None, "bench.users", None, org_id=org.id)
    with uow.read() as s:
        started = time.perf_counter()
        assert auditverify.verify(s, key.public_key(), rows=False).ok
        log_only = time.perf_counter() - started
    with uow.read() as s:
        started = time.perf_counter()
        assert auditverify.verify(s, key.public_key()).ok
        result["verify_ms_per_row"] = (time.perf_counter() - started - log_only) / rows * 1e3
    engine.dispose()
    return result


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    url = sys.argv[2] if len(sys.argv) > 2 else "sqlite://"
    print(json.dumps({**measure(url, events), "rows": measure_rows(url, min(events, 2000))}, indent=2))


if __name__ == "__main__":
    main()
