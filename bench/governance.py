"""What judging withdrawals from a governance log costs a signer node, printed as JSON.

Usage: ``python bench/governance.py [--quick] [--sessions N] [--entries E] [--warmup W]``.

Three node processes on 127.0.0.1 (as ``bench/cluster.py`` starts them) and two
organisations whose governance logs have ``E`` entries each (1,000 by default:
the genesis and ``E - 1`` entries, each adding an address-book entry and signed by
two admins). ``acme`` allows every withdrawal without human approval; ``rota``
has a velocity limit too high to be reached, so its signers exchange history
statements on every session. Both are enrolled on the nodes and their logs
pushed; each has a 2-of-3 threshold-ECDSA key bound to it, and a third key
belongs to no organisation.

Measured, sequentially, on one coordinator, the three kinds of session
interleaved (one of each in turn, so a slow spell of the machine hits all alike):

- ``plain``: a certificate only, as ``bench/cluster.py`` signs (the figure before
  organisations existed);
- ``governed``: version-2 evidence for ``acme``'s key through
  ``Coordinator.sign_for_org``: the coordinator asks each signer for its head (one
  request each), each node decodes the evidence, checks the head, the transaction
  and the intent, decides with the policy in force, pins the transaction id and
  records the withdrawal (two fsynced writes);
- ``governed_with_history``: the same for ``rota``, plus each signer's history
  statement (one more request each) and every node verifying both statements.

Each is timed from the coordinator's call to the verified signature, the
certificate and evidence made before. Also: enrolling and pushing the log, and a
node restart that replays both logs (from spawn to answering). The target is the
one the work was held to: ``governed`` p50 within 10% of ``plain`` p50.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour import __version__
from harbour.chains.eip1559 import Eip1559Transaction, parse_address
from harbour.chains.ethereum import address_from_public_key, checksum_address
from harbour.crypto.secp256k1 import Secp256k1Point
from harbour.governance import changes as c
from harbour.governance import holding
from harbour.governance.log import GENESIS_PARENT, Entry, SignedEntry, signed
from harbour.governance.state import GovernanceLog
from harbour.mpc import hd
from harbour.node import approval
from harbour.node.coordinator import ClusterKey, Coordinator, admin_params
from harbour.node.identity import NodeDescriptor
from harbour.node.localnet import LocalNode, create_nodes, running
from harbour.node.quorum import ETH, GovernedEvidence, Intent

PASSPHRASE = "harbour benchmark passphrase"  # a throw-away store in a temporary directory
SCHEME = "ecdsa-secp256k1"
PATH = "m/0"
CHAIN = 1337
SIGNERS = [1, 2]
ADMINS = ("admin-a", "admin-b")
INITIATOR = "ivan"
RECIPIENT = checksum_address(bytes.fromhex("a1" * 20))
DEFAULTS = {"sessions": 60, "entries": 1000, "warmup": 3}
QUICK = {"sessions": 15, "entries": 1000, "warmup": 2}
TARGET_RATIO = 1.10


class OrgLog:
    """An organisation's log as the benchmark builds it, and its admins' keys to extend it."""

    def __init__(self, name: str, policy: dict[str, Any], nodes: list[NodeDescriptor], entries: int) -> None:
        """A genesis (the nodes, two admins, quorum 1, the policy) and address additions up to ``entries - 1``.

        The last entry, the vault's (:meth:`add_vault`), comes once its key exists, making ``entries``.
        """
        self.name = name
        self.keys = {a: Ed25519PrivateKey.generate() for a in ADMINS}
        raw = {a: k.public_key().public_bytes_raw() for a, k in self.keys.items()}
        genesis = Entry(
            org=name,
            seq=0,
            prev=GENESIS_PARENT,
            proposer=ADMINS[0],
            at=int(time.time()),
            changes=(
                c.SetQuorum(1),
                *(c.AddNode(d.name, d.sign_pk) for d in nodes),
                *(c.AddUser(a, a, frozenset({"admin"}), raw[a]) for a in ADMINS),
                c.AddUser(INITIATOR, INITIATOR, frozenset({"initiator"}), None),
                c.AddAsset("eth", "ETH", None, 18),
                c.policy_change(policy),
            ),
        )
        self.log = GovernanceLog(SignedEntry(genesis.encode(), ()))
        for seq in range(1, entries - 1):
            address = checksum_address(seq.to_bytes(20, "big"))
            self.append(c.AddAddress(f"a{seq}", "a", address, True))

    def append(self, *changes: c.Change) -> None:
        log = self.log
        entry = Entry(self.name, log.state.seq + 1, log.head, ADMINS[0], int(time.time()), changes)
        log.append(signed(entry, [self.keys[a] for a in ADMINS]))

    def add_vault(self, statements: list[bytes]) -> None:
        stated, _, _ = holding.parse(statements[0])
        self.append(c.AddVault("main", "main", stated.holding, tuple(statements)))


def _stats(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    p95 = statistics.quantiles(ordered, n=100, method="inclusive")[94] if len(ordered) > 1 else ordered[0]
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(p95, 2),
        "mean_ms": round(statistics.fmean(ordered), 2),
        "sessions": len(ordered),
    }


class Bench:
    def __init__(self, authority: approval.AuthorityKey, nodes: list[LocalNode], entries: int) -> None:
        self.authority = authority
        self.nodes = nodes
        self.descriptors = [n.descriptor for n in nodes]
        allow = {"rules": [{"name": "allow", "action": "allow"}]}
        limit = {"window_seconds": 3600, "max_amount": str(10**30), "per": "source", "asset": "ETH"}
        velocity = {
            "rules": [
                {"name": "velocity", "match": {"velocity": limit}, "action": "block"},
                {"name": "allow", "action": "allow"},
            ]
        }
        started = time.perf_counter()
        self.orgs = {
            "acme": OrgLog("acme", allow, self.descriptors, entries),
            "rota": OrgLog("rota", velocity, self.descriptors, entries),
        }
        self.logs = {name: o.log for name, o in self.orgs.items()}
        self.build_s = time.perf_counter() - started
        self.keys: dict[str, ClusterKey] = {}
        self.nonce = 0

    def cert(self, kind: str, key_id: str = "", **what: Any) -> bytes:
        return approval.issue(self.authority, kind=kind, key_id=key_id, now=int(time.time()), expires_in=600, **what)

    async def setup(self, co: Coordinator) -> dict[str, float]:
        figures: dict[str, float] = {}
        for name, log in self.logs.items():
            started = time.perf_counter()
            await co.enrol(self.descriptors, log.genesis, self.cert("enrol", params={"org": log.genesis_hash.hex()}))
            figures[f"{name}_enrol_s"] = round(time.perf_counter() - started, 3)
        for key_id, org in (("plain-key", ""), ("acme-key", "acme"), ("rota-key", "rota")):
            org_hex = self.logs[org].genesis_hash.hex() if org else ""
            params = admin_params("keygen", scheme=SCHEME, threshold=2, nodes=self.descriptors, org=org_hex)
            self.keys[key_id] = await co.keygen(self.descriptors, 2, SCHEME, self.cert("keygen", key_id, params=params))
            if org:
                self.orgs[org].add_vault(await co.holdings(self.descriptors, key_id))
        for name, log in self.logs.items():
            started = time.perf_counter()
            await co.push(self.descriptors, log)
            figures[f"{name}_push_s"] = round(time.perf_counter() - started, 3)
        return figures

    def _address(self, key: ClusterKey) -> str:
        child = hd.derive(key.public.group, key.public.group_public_key, key.chain_code, PATH).public_key
        assert isinstance(child, Secp256k1Point)
        return address_from_public_key(child)

    def prepare(self, kind: str) -> Callable[[Coordinator], Any]:
        """One session of ``kind``, its certificate made now (untimed); returns the timed call."""
        if kind == "plain":
            key, message = self.keys["plain-key"], secrets.token_bytes(32)
            cert = self.cert("sign", key.key_id, path=PATH, digests=[message], signers=SIGNERS)
            return lambda co: co.sign(key, message, cert, path=PATH)
        org = "acme" if kind == "governed" else "rota"
        key, log = self.keys[f"{org}-key"], self.logs[org]
        self.nonce += 1
        intent = Intent(CHAIN, self._address(key), RECIPIENT, ETH, 10**15, max_fee=21_000 * 2)
        tx = Eip1559Transaction(
            chain_id=CHAIN, nonce=self.nonce, max_priority_fee_per_gas=1, max_fee_per_gas=2, gas_limit=21_000,
            to=parse_address(RECIPIENT), value=intent.amount, data=b"",
        )  # fmt: skip
        evidence = GovernedEvidence(
            org=log.genesis_hash.hex(),
            transaction_id=f"tx-{kind}-{self.nonce}",
            intent=intent,
            transaction=tx,
            initiator=INITIATOR,
            head=log.head,
            approvals=(),
        )
        digest = tx.signing_hash()
        cert = self.cert("sign", key.key_id, path=PATH, digests=[digest], signers=SIGNERS, evidence=evidence.encode())
        return lambda co: co.sign_for_org(key, digest, lambda _: cert, log=log, path=PATH, signers=SIGNERS)

    async def latency(self, co: Coordinator, sessions: int, warmup: int) -> dict[str, dict[str, float]]:
        kinds = ("plain", "governed", "governed_with_history")
        samples: dict[str, list[float]] = {k: [] for k in kinds}
        for round_ in range(warmup + sessions):
            for kind in kinds:
                step = self.prepare(kind)
                started = time.perf_counter()
                await step(co)
                if round_ >= warmup:
                    samples[kind].append((time.perf_counter() - started) * 1000)
        return {k: _stats(v) for k, v in samples.items()}


def _restart_s(node: LocalNode) -> float:
    node.stop()
    started = time.perf_counter()
    node.start()
    return round(time.perf_counter() - started, 3)


def run(counts: dict[str, int]) -> dict[str, Any]:
    started = time.perf_counter()
    authority = approval.AuthorityKey.generate()
    with tempfile.TemporaryDirectory(prefix="harbour-bench-") as tmp:
        nodes = create_nodes(Path(tmp), 3, [authority.public_bytes], passphrase=PASSPHRASE)
        bench = Bench(authority, nodes, counts["entries"])
        with running(nodes):

            async def measure() -> tuple[dict[str, float], dict[str, Any]]:
                async with Coordinator(timeout=60) as co:
                    print(f"enrolling two {counts['entries']}-entry logs, three keys", file=sys.stderr)
                    setup = await bench.setup(co)
                    print(f"{counts['sessions']} sessions of each kind, interleaved", file=sys.stderr)
                    return setup, await bench.latency(co, counts["sessions"], counts["warmup"])

            setup, latency = asyncio.run(measure())
            setup["node_restart_with_both_logs_s"] = _restart_s(nodes[2])
    ratio = latency["governed"]["p50_ms"] / latency["plain"]["p50_ms"]
    return {
        "benchmark": "governance",
        "harbour": __version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "unit": "ms per signing session, from the coordinator's call to the verified signature",
        "note": "2-of-3 threshold ECDSA, three node processes and one coordinator on one machine, HTTP over "
        "127.0.0.1; certificates and evidence made before each timed call; the three kinds interleaved",
        "parameters": counts | {"log_build_s": round(bench.build_s, 2)},
        "setup": setup,
        "latency": latency,
        "target": {
            "metric": "governed p50 / plain p50",
            "limit": f"<= {TARGET_RATIO}",
            "measured": round(ratio, 3),
            "met": ratio <= TARGET_RATIO,
        },
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer sessions (a smoke run, noisier figures)")
    parser.add_argument("--sessions", type=int, help="timed sessions of each kind (default 60)")
    parser.add_argument("--entries", type=int, help="entries in each governance log (default 1000)")
    parser.add_argument("--warmup", type=int, help="untimed rounds first (default 3)")
    args = parser.parse_args(argv)
    counts = dict(QUICK if args.quick else DEFAULTS)
    for name in ("sessions", "entries", "warmup"):
        if getattr(args, name) is not None:
            counts[name] = getattr(args, name)
    if counts["sessions"] < 1 or counts["entries"] < 1 or counts["warmup"] < 0:
        parser.error("--sessions and --entries must be at least 1, --warmup at least 0")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    print(json.dumps(run(counts), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
