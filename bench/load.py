"""An overdrawn vault under concurrent withdrawals: how long 200 take to settle, and that the books reconcile.

Usage: ``python bench/load.py [--withdrawals N] [--clients C]``.

This was the suite's load test; it is here because it takes minutes on a small
machine, and the suite keeps the same run with 20 withdrawals
(``tests/test_custody.py``). The deployment is ``bench/custody.py``'s: a custody
home with a SQLite file, three ``harbour node run`` processes, the embedded chain,
an organisation whose policy allows everything and a 2-of-3 ECDSA vault funded with
100 ETH.

``C`` client threads (16) submit ``N`` withdrawals (200) of 0.6 ETH each to eight
recipients; every tenth is submitted twice with the same idempotency key, as a
client retrying would. 100 ETH pays for 166 of them, so the rest must be rejected
for insufficient funds, whatever order they arrive in. Once every withdrawal is
final the books are checked: only ``confirmed`` and ``rejected``, rejections only
for insufficient funds, the confirmed ones on nonces 0, 1, 2, ... without a gap,
the vault's on-chain balance equal to its funding less the amounts and fees paid,
the recipients holding exactly what was sent, one row per withdrawal and an audit
log that verifies. The JSON gives the times and each check; the script exits 1 if
a check fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from custody import DRAIN_TIMEOUT, ETH, FUNDING, Setup, _drain, deployment  # bench/custody.py
from harbour import __version__
from harbour.chains.ethereum import checksum_address
from harbour.custody import auditverify
from harbour.custody import models as m

AMOUNT = 6 * ETH // 10
RECIPIENTS = [checksum_address(i.to_bytes(20, "big")) for i in range(0x1000, 0x1008)]


def submit_all(setup: Setup, count: int, clients: int) -> list[str]:
    """Every withdrawal's id, retried submissions included (they must name the same withdrawal)."""

    def submit(i: int) -> list[str]:
        def once() -> str:
            view = setup.custody.submit_withdrawal(
                setup.initiator,
                vault_id=setup.vault_id,
                asset="ETH",
                to=RECIPIENTS[i % len(RECIPIENTS)],
                amount=AMOUNT,
                idempotency_key=f"load-{i}",
            )
            return str(view["id"])

        return [once(), once()] if i % 10 == 0 else [once()]

    with ThreadPoolExecutor(clients) as pool:
        return [ids for batch in pool.map(submit, range(count)) for ids in batch]


def check(setup: Setup, count: int, funding: int, ids: list[str]) -> dict[str, Any]:
    custody, chain = setup.custody, setup.deployment.chain
    unique = list(dict.fromkeys(ids))
    with custody.readers() as s:
        rows = list(s.execute(select(m.Transaction).where(m.Transaction.id.in_(unique))).scalars())
        kind = m.Transaction.kind == "withdrawal"
        withdrawals = s.scalar(select(func.count()).select_from(m.Transaction).where(kind))
        audit_ok = auditverify.verify_log(custody.audit, s).ok
    states: dict[str, int] = {}
    for row in rows:
        states[row.state] = states.get(row.state, 0) + 1
    confirmed = [r for r in rows if r.state == "confirmed"]
    fees = sum(int(r.fee or 0) for r in confirmed)
    paid = len(confirmed) * AMOUNT
    checks = {
        "retries_name_the_same_withdrawal": len(unique) == count,
        "only_confirmed_or_rejected": set(states) <= {"confirmed", "rejected"},
        "rejected_only_for_insufficient_funds": all(
            "insufficient" in (r.error or "") for r in rows if r.state == "rejected"
        ),
        "nonces_without_gaps": sorted(r.nonce for r in confirmed if r.nonce is not None) == list(range(len(confirmed))),
        "chain_nonce_matches": chain.nonce(setup.address, "latest") == len(confirmed),
        "vault_balance_reconciles": chain.balance(setup.address) == funding - paid - fees,
        "recipients_hold_what_was_sent": sum(chain.balance(r) for r in RECIPIENTS) == paid,
        "one_row_per_withdrawal": withdrawals == count,
        "audit_log_verifies": audit_ok,
    }
    return {"states": states, "confirmed": len(confirmed), "fees_wei": fees, "checks": checks}


def run(count: int, clients: int) -> dict[str, Any]:
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="harbour-bench-load-") as tmp, deployment(Path(tmp), None) as setup:
        funding = setup.deployment.chain.balance(setup.address)
        ready_s = time.perf_counter() - started
        began = time.perf_counter()
        ids = submit_all(setup, count, clients)
        submitted_s = time.perf_counter() - began
        drained = _drain(setup.custody, list(dict.fromkeys(ids)), timeout=max(DRAIN_TIMEOUT, count * 1.0))
        settled_s = time.perf_counter() - began
        result = check(setup, count, funding, ids)
    result["checks"]["every_withdrawal_final"] = drained
    return {
        "benchmark": "load",
        "harbour": __version__,
        "python": platform.python_version(),
        "parameters": {
            "withdrawals": count,
            "clients": clients,
            "funding_eth": FUNDING // ETH,
            "amount_wei": AMOUNT,
            "recipients": len(RECIPIENTS),
            "retried": len(range(0, count, 10)),
            "database": "sqlite file",
            "chain": "embedded",
        },
        "setup_s": round(ready_s, 1),
        "submission_s": round(submitted_s, 2),
        "settled_s": round(settled_s, 2),
        "settled_per_s": round(count / settled_s, 1),
        **result,
        "ok": all(result["checks"].values()),
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--withdrawals", type=int, default=200, help="withdrawals submitted (default 200)")
    parser.add_argument("--clients", type=int, default=16, help="client threads (default 16)")
    args = parser.parse_args(argv)
    if min(args.withdrawals, args.clients) < 1:
        parser.error("--withdrawals and --clients must be positive")
    result = run(args.withdrawals, args.clients)
    print(json.dumps(result, indent=2))
    if not result["ok"]:
        print("error: a check failed (see checks)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
