"""What the API's authentication guards cost per request, as JSON: the failed-login buckets (a check and a
recorded failure), a request signature (signing on the client, verifying on the server), a signed request's
nonce recorded in the database (a SQLite file, one write transaction each; a hundredth of the iterations), and
the log filter folding a repeated line.

python bench/auth_guards.py [iterations]    (default: 20000)
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.api.authlimit import FailedAuthentications
from harbour.api.logfilter import RepeatFilter
from harbour.api.terms import Nonces
from harbour.custody import db
from harbour.custody.audit import AuditLog
from harbour.custody.requestnonces import RequestNonces
from harbour.custody.uow import UnitOfWork
from harbour.util import request_signing as rs


def per_call_us(n: int, call: Callable[[int], Any]) -> float:
    started = time.perf_counter()
    for i in range(n):
        call(i)
    return (time.perf_counter() - started) / n * 1e6


def nonce_check_us(n: int) -> float:
    """One signed request's nonce, recorded in a fresh SQLite database as the service does."""
    with tempfile.TemporaryDirectory() as directory:
        engine = db.make_engine(f"sqlite:///{directory}/custody.db")
        db.upgrade(engine)
        store = RequestNonces(UnitOfWork(db.session_factory(engine), AuditLog(Ed25519PrivateKey.generate())))
        nonces = Nonces(store.use)
        try:
            return per_call_us(n, lambda i: nonces.fresh("credential", f"nonce-{i:012d}"))
        finally:
            engine.dispose()


def measure(n: int) -> dict[str, Any]:
    logging.getLogger("harbour.api.auth").disabled = True  # the buckets, not the logging, are measured
    limits = FailedAuthentications(burst=10, refill=6.0)
    key = Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes_raw()
    body = b'{"vault_id":"6f1c2a64-3f5e-4d8b-9a51-2c7e0f4b8d13","asset":"ETH","amount":"1"}'
    headers = rs.sign(key, "POST", "/v1/transactions", body)
    signed = rs.message("POST", "/v1/transactions", body, headers[rs.TIMESTAMP], headers[rs.NONCE])
    folding = RepeatFilter(60)
    record = logging.LogRecord("harbour.api", logging.ERROR, __file__, 1, "database unavailable", None, None)
    return {
        "iterations": n,
        "bucket_check_us": per_call_us(n, lambda i: limits.retry_after(f"id-{i % 1000}", f"10.0.{i % 250}.1")),
        "failure_recorded_us": per_call_us(n, lambda i: limits.failed(f"id-{i}", f"10.{i % 250}.0.1", "unknown")),
        "sign_us": per_call_us(n, lambda i: rs.sign(key, "POST", "/v1/transactions", body)),
        "verify_us": per_call_us(n, lambda i: rs.verify(public, headers[rs.SIGNATURE], signed)),
        "nonce_check_us": nonce_check_us(max(1, n // 100)),
        "folded_log_line_us": per_call_us(n, lambda i: folding.filter(record)),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000), indent=2))
