"""FROST signing, Harbour beside the Zcash Foundation's Rust crates, printed as JSON.

Usage: ``python bench/frost_rust.py [--runs N]``; needs ``frost-rs``, a dev
dependency (``make install`` brings it, on CPython up to 3.12): Python bindings (a
third party's PyO3 build, not a Zcash Foundation release) of the Zcash
Foundation's ``frost-core`` 1.x crates (frost-secp256k1, frost-ed25519). The
script says so and exits with status 2 when the bindings are missing.

One signature is timed from the signers' round one to a verified signature,
key generation excluded, for two ciphersuites both sides implement,
FROST(secp256k1, SHA-256) and FROST(Ed25519, SHA-512), at 2-of-3, 7-of-10 and
15-of-20. The implementations take turns sample by sample, so a machine that
slows down slows both. Three figures per configuration:

``rust``
    frost-rs as its bindings are meant to be used: ``preprocess`` (round one) for
    each signer, ``sign`` (round two) for each signer, one ``aggregate`` (which
    verifies the signature first and checks shares only on failure), then
    ``verify``. Every value crosses the binding as serialised bytes, so each call
    deserialises and validates what it is given.
``harbour``
    the same call sequence through ``mpc/frost.py``, with the same
    serialisation: each signer decodes and validates the commitment list it is
    sent, computes its share and encodes it; the coordinator decodes the
    commitments and shares, aggregates (verify first, shares checked only on
    failure) and the signature is verified once more.
``harbour_parties``
    for reference, a session of the sans-I/O ``FrostSigner`` parties through the
    in-memory runner (``harbour bench mpc``'s figure): no coordinator, so every
    signer decodes every envelope and aggregates and verifies for itself, which
    is ``t`` aggregations where the other two figures have one.

Times are medians of this thread's CPU time (``time.thread_time``), because
on a shared machine other processes stretch wall-clock samples of either
side at random; the wall-clock medians and their ratio are printed beside
them. ``ratio`` is ``harbour / rust``; ``targets`` compares it at 15-of-20
with 0.7, reporting a miss rather than raising, as the other benchmarks do
(the figures depend on the machine); ``cross_check`` records that a Harbour
signature verifies under frost-rs's verifier, given a public key package that
carries Harbour's group key.
"""

from __future__ import annotations

import argparse
import base64
import gc
import importlib
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from harbour import __version__
from harbour.crypto.group import Point
from harbour.mpc import frost, runner
from harbour.mpc.ciphersuite import Ciphersuite, suite_by_name
from harbour.mpc.keyshare import KeyShare

CONFIGS = ((2, 3), (7, 10), (15, 20))
# Harbour scheme name: frost-rs module
SUITES = {"frost-secp256k1": "utility_secp256k1", "frost-ed25519": "utility_ed25519"}
MESSAGE = bytes(range(32))
DEFAULT_RUNS = 21
# Harbour's signing at 15-of-20 should take at most this share of frost-rs's time.
TARGET_RATIO = 0.7
TARGET_CONFIG = "15-of-20"


def load_frost_rs() -> ModuleType | None:
    try:
        return importlib.import_module("frost_rs")
    except ImportError:
        return None


def _time_ms(fn: Callable[[], object]) -> tuple[float, float]:
    """Wall-clock and CPU time of one call, in ms.

    As harbour.cli.bench: no garbage collection inside a sample. CPU time is this
    thread's (both implementations run in it), so other processes on a shared
    machine inflate the wall-clock figure but hardly the CPU one.
    """
    gc.disable()
    try:
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        return (time.perf_counter() - wall) * 1000, (time.thread_time() - cpu) * 1000
    finally:
        gc.enable()


class RustSide:
    """One frost-rs key (from its own DKG) and its signing session."""

    def __init__(self, module: Any, t: int, n: int) -> None:
        self.m = module
        self.t = t
        ids = [module.get_id() for _ in range(n)]
        secret1, public1 = {}, {}
        for i in ids:
            secret1[i], public1[i] = module.round1(i, t, n)
        secret2, public2 = {}, {}
        for i in ids:
            secret2[i], public2[i] = module.round2(secret1[i], {k: v for k, v in public1.items() if k != i})
        self.key_packages: dict[str, str] = {}
        pubkey_packages = {}
        for i in ids:
            self.key_packages[i], pubkey_packages[i] = module.round3(
                secret2[i],
                {k: v for k, v in public1.items() if k != i},
                {k: v[i] for k, v in public2.items() if i in v},
            )
        self.pubkey_package: str = pubkey_packages[ids[0]]
        self.signers = ids[:t]

    def sign(self) -> str:
        m = self.m
        nonces, commitments = {}, {}
        for i in self.signers:
            nonces[i], commitments[i] = m.preprocess(self.key_packages[i])
        shares = {i: m.sign(MESSAGE, commitments, nonces[i], self.key_packages[i]) for i in self.signers}
        signature: str = m.aggregate(MESSAGE, commitments, shares, self.pubkey_package)
        if not m.verify(MESSAGE, self.pubkey_package, signature):
            raise RuntimeError("frost-rs produced a signature that does not verify")
        return signature

    def header(self) -> bytes:
        """The serialisation header (version and ciphersuite id) of its key packages."""
        return base64.urlsafe_b64decode(self.pubkey_package)[:5]


class HarbourSide:
    """A Harbour key (from Harbour's DKG) signed in frost-rs's call sequence."""

    def __init__(self, suite: Ciphersuite, t: int, n: int) -> None:
        self.suite = suite
        self.shares: dict[int, KeyShare] = runner.keygen(suite.name, t, n)
        self.signers = list(range(1, t + 1))
        any_share = self.shares[1]
        self.public_key = any_share.group_public_key
        self.verification_shares = any_share.verification_shares
        self.keys = {
            i: frost.SigningKey(i, s.secret_share, s.group_public_key, s.verification_shares)
            for i, s in self.shares.items()
            if i in self.signers
        }

    def _decode_commitments(self, wire: Mapping[int, bytes]) -> list[frost.NonceCommitment]:
        g = self.suite.group
        k = g.point_len
        return [frost.NonceCommitment(i, g.decode_point(b[:k]), g.decode_point(b[k:])) for i, b in wire.items()]

    def sign(self) -> bytes:
        suite, g = self.suite, self.suite.group
        nonces = {i: frost.commit(suite, i, self.keys[i].secret_share) for i in self.signers}
        wire = {i: c.commitment.hiding.encode() + c.commitment.binding.encode() for i, c in nonces.items()}
        shares: dict[int, bytes] = {}
        for i in self.signers:
            ctx = frost.signing_context(suite, self.public_key, self._decode_commitments(wire), MESSAGE)
            shares[i] = g.encode_scalar(frost.sign_share(suite, self.keys[i], nonces[i], ctx))
        ctx = frost.signing_context(suite, self.public_key, self._decode_commitments(wire), MESSAGE)
        decoded = {i: g.decode_scalar(z) for i, z in shares.items()}
        signature = frost.aggregate(suite, ctx, decoded, self.public_key, self.verification_shares, MESSAGE)
        if not suite.verify(self.public_key, MESSAGE, signature):
            raise RuntimeError("Harbour produced a signature that does not verify")
        return signature

    def sign_parties(self) -> bytes:
        return runner.sign(self.shares, self.signers, MESSAGE)

    def pubkey_package(self, header: bytes) -> str:
        """Harbour's public key in frost-rs's serialisation of a public key package.

        ``header ‖ count ‖ (identifier ‖ verification share)* ‖ group key``: the
        identifier is the scalar's encoding (big-endian for secp256k1,
        little-endian for Ed25519) and the count a one-byte varint (n < 128).
        """
        g = self.suite.group
        parts = [header, bytes([len(self.verification_shares)])]
        for i, point in sorted(self.verification_shares.items()):
            parts.append(g.encode_scalar(i) + point.encode())
        parts.append(self.public_key.encode())
        return base64.urlsafe_b64encode(b"".join(parts)).decode()


def _encode_public(point: Point) -> str:
    return point.encode().hex()


def measure(module: Any, scheme: str, t: int, n: int, runs: int) -> dict[str, Any]:
    suite = suite_by_name(scheme)
    rust = RustSide(getattr(module, SUITES[scheme]), t, n)
    harbour = HarbourSide(suite, t, n)
    cases: dict[str, Callable[[], object]] = {
        "rust": rust.sign,
        "harbour": harbour.sign,
        "harbour_parties": harbour.sign_parties,
    }
    for fn in cases.values():  # warm-up
        fn()
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(runs):
        for name, fn in cases.items():
            w, c = _time_ms(fn)
            wall[name].append(w)
            cpu[name].append(c)
    med = {name: statistics.median(s) for name, s in cpu.items()}
    med_wall = {name: statistics.median(s) for name, s in wall.items()}
    signature = harbour.sign()
    package = harbour.pubkey_package(rust.header())
    encoded = base64.urlsafe_b64encode(signature).decode()
    cross = bool(rust.m.verify(MESSAGE, package, encoded))
    cross_negative = bool(rust.m.verify(MESSAGE[::-1], package, encoded))
    return {
        "rust_ms": round(med["rust"], 3),
        "harbour_ms": round(med["harbour"], 3),
        "harbour_parties_ms": round(med["harbour_parties"], 3),
        "ratio": round(med["harbour"] / med["rust"], 3),
        "ratio_parties": round(med["harbour_parties"] / med["rust"], 3),
        "wall_ms": {name: round(m, 3) for name, m in med_wall.items()},
        "wall_ratio": round(med_wall["harbour"] / med_wall["rust"], 3),
        "cross_check": {
            "harbour_signature_verifies_under_frost_rs": cross,
            "same_signature_refused_for_another_message": not cross_negative,
            "group_public_key": _encode_public(harbour.public_key),
        },
    }


def run(module: Any, runs: int) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, dict[str, Any]] = {}
    for scheme in SUITES:
        results[scheme] = {}
        for t, n in CONFIGS:
            print(f"measuring {scheme} {t}-of-{n}", file=sys.stderr)
            results[scheme][f"{t}-of-{n}"] = measure(module, scheme, t, n, runs)
    return {
        "benchmark": "frost_rust",
        "harbour": __version__,
        "frost_rs": _version("frost_rs"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "runs": runs,
        "unit": "ms of CPU time (median over runs, implementations interleaved); wall_ms: wall-clock medians",
        "note": "sign = round one and two of every signer, one aggregation (verify first), one verification",
        "results": results,
        "targets": [
            {
                "scheme": scheme,
                "config": TARGET_CONFIG,
                "max_ratio": TARGET_RATIO,
                "ratio": results[scheme][TARGET_CONFIG]["ratio"],
                "met": results[scheme][TARGET_CONFIG]["ratio"] <= TARGET_RATIO,
            }
            for scheme in SUITES
        ],
        "elapsed_s": round(time.perf_counter() - started, 1),
    }


def _version(distribution: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed signatures per implementation and size")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    module = load_frost_rs()
    if module is None:
        print(
            "bench/frost_rust.py needs the frost-rs package (the Zcash Foundation's FROST crates for Python): "
            "make install (it is a dev dependency; wheels exist for CPython up to 3.12)",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(run(module, args.runs), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
