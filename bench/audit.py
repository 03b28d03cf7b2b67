"""Costs of the custody audit log, as JSON: append (before commit), proofs, checking a proof, verifying the log.

python bench/audit.py [events] [database URL]    (default: 5000 events, SQLite in memory)
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.custody import audit
from harbour.custody.db import Base, make_engine, session_factory

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
        report = log.verify(s)
        result["verify_ms_per_event"] = (time.perf_counter() - started) / events * 1e3
        assert report.ok, report
    engine.dispose()
    return result


def main() -> None:
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    url = sys.argv[2] if len(sys.argv) > 2 else "sqlite://"
    print(json.dumps(measure(url, events), indent=2))


if __name__ == "__main__":
    main()
