"""What checking free text costs, printed as JSON: one name or note, and replaying a log of many named users.

Usage: ``python bench/names.py [users]`` (default 2,000).

- ``name_us``, ``note_us``, ``key_us``: :func:`harbour.util.text.name` on a
  40-character name with an accent and a space run, :func:`~harbour.util.text.note`
  on a 200-character note, :func:`~harbour.util.text.name_key` on a fresh name;
- ``schema_pattern_s``: building the refused-character class the API's schema
  states, once per process (the first ``/openapi.json``);
- ``replay_s``, ``replay_us_per_entry``: a verifier replaying a governance log
  of ``users`` entries, each adding one user (every name checked for its normal
  form and against every name in force), from its genesis.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.governance import changes as c
from harbour.governance.log import GENESIS_PARENT, Entry, SignedEntry, signed
from harbour.governance.state import GovernanceLog
from harbour.util import text


def _per_call_us(call: Any, values: list[str]) -> float:
    started = time.perf_counter()
    for value in values:
        call(value)
    return (time.perf_counter() - started) / len(values) * 1e6


def measure(users: int) -> dict[str, Any]:
    result: dict[str, Any] = {"users": users}
    started = time.perf_counter()
    text.refused_class()
    result["schema_pattern_s"] = time.perf_counter() - started
    names = [f"  Zoe\u0308   Quinn-{i:06d} of the treasury desk " for i in range(2000)]
    result["name_us"] = _per_call_us(text.name, names)
    result["note_us"] = _per_call_us(text.note, [("payout " * 28)[:200] + str(i) for i in range(2000)])
    result["key_us"] = _per_call_us(text.name_key, [f"Fresh Name {i}" for i in range(2000)])

    admins = {name: Ed25519PrivateKey.generate() for name in ("admin-a", "admin-b")}
    founders: list[c.Change] = [c.SetQuorum(1)]
    founders += [
        c.AddUser(name, name, frozenset({"admin"}), key.public_key().public_bytes_raw()) for name, key in admins.items()
    ]
    genesis = Entry(org="bench", seq=0, prev=GENESIS_PARENT, proposer="admin-a", at=0, changes=tuple(founders))
    genesis_signed = SignedEntry(genesis.encode(), ())
    log = GovernanceLog(genesis_signed)
    entries = []
    for i in range(users):
        change = c.AddUser(f"user-{i}", f"Person {i:06d}", frozenset({"viewer"}), None)
        entry = Entry(org="bench", seq=i + 1, prev=log.head, proposer="admin-a", at=0, changes=(change,))
        made = signed(entry, list(admins.values()))
        log.append(made)
        entries.append(made)
    replay = GovernanceLog(genesis_signed)
    started = time.perf_counter()
    replay.extend(entries)
    elapsed = time.perf_counter() - started
    result["replay_s"] = elapsed
    result["replay_us_per_entry"] = elapsed / users * 1e6
    return result


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    print(json.dumps(measure(int(args[0]) if args else 2000), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
