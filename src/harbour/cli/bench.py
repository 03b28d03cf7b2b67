"""Timing key generation and signing: ``harbour bench mpc``, ``bench/frost.py`` and ``bench/ecdsa.py``.

All of them run every party in this one process, so the times are the
protocol's CPU cost with a free network: a DKG is all n parties through every
round (for threshold ECDSA followed by the pairwise OT setup of every pair); a
signing session is every signer's rounds (two for FROST, three for DKLs23),
aggregation and the check of the result each signer makes before releasing it.
Medians are reported because a run can be slowed by the machine; ``min`` shows
the floor and ``p90`` the spread.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from harbour.cli import output, session
from harbour.cli.params import (
    InputError,
    JsonOption,
    PartiesOption,
    SchemeOption,
    ThresholdOption,
    check_scheme,
    check_sizes,
    reported_errors,
)
from harbour.mpc import runner
from harbour.mpc.schemes import SCHEMES as KNOWN_SCHEMES

app = typer.Typer(help="Benchmarks (printed as JSON with --json).", no_args_is_help=True)

DEFAULT_RUNS = 20
BENCH_MESSAGE = bytes(range(32))


def default_keygen_runs(parties: int, runs: int, scheme: str = "") -> int:
    """A DKG costs about n²·t group operations: fewer runs for large n keep a bench short.

    A pairwise setup after the DKG (threshold ECDSA's) adds 2·256 base OTs for every
    pair of parties (about 150 ms for 2-of-3, 2 s for 7-of-10), so it is capped sooner.
    """
    kind = KNOWN_SCHEMES.get(scheme)
    if parties <= (3 if kind is not None and kind.has_setup else 10):
        return runs
    return max(1, min(runs, 5))


def _time_ms(fn: Callable[[], object]) -> float:
    # Like timeit: no garbage collection inside a sample, so that cleaning up after
    # earlier runs is not charged to whichever run happens to trigger it. (No
    # gc.collect() before it either: a full collection evicts the caches and adds
    # about 0.1 ms to a 2-of-3 signature that no real signer pays.)
    gc.disable()
    try:
        start = time.perf_counter()
        fn()
        return (time.perf_counter() - start) * 1000
    finally:
        gc.enable()


def _summary(prefix: str, samples: list[float]) -> dict[str, float]:
    p90 = statistics.quantiles(samples, n=10, method="inclusive")[8] if len(samples) > 1 else samples[0]
    return {
        f"{prefix}_ms": round(statistics.median(samples), 3),
        f"{prefix}_min_ms": round(min(samples), 3),
        f"{prefix}_p90_ms": round(p90, 3),
    }


def measure(
    scheme: str, threshold: int, parties: int, runs: int = DEFAULT_RUNS, keygen_runs: int | None = None
) -> dict[str, Any]:
    """Median DKG and signing times of a t-of-n key, and the bytes a session sends.

    Signing uses the first ``threshold`` parties, over a 32-byte message (which
    is also an ECDSA digest). ``sign_bytes`` and
    ``keygen_bytes`` count each envelope once (a broadcast is one message), as
    encoded on the wire.
    """
    check_scheme(scheme)
    check_sizes(threshold, parties)
    keygen_runs = default_keygen_runs(parties, runs, scheme) if keygen_runs is None else keygen_runs
    if runs < 1 or keygen_runs < 1:
        raise InputError("--runs and --keygen-runs must be at least 1")
    keygen_stats = runner.RunStats()
    shares = runner.keygen(scheme, threshold, parties, stats=keygen_stats)  # also warms up
    keygen = [_time_ms(lambda: runner.keygen(scheme, threshold, parties)) for _ in range(keygen_runs)]

    signers = list(range(1, threshold + 1))
    sign_stats = runner.RunStats()
    signature = session.sign(shares, signers, BENCH_MESSAGE, stats=sign_stats)  # warm-up, and the byte count
    session.check_signature(shares, BENCH_MESSAGE, signature)
    sign = [_time_ms(lambda: session.sign(shares, signers, BENCH_MESSAGE)) for _ in range(runs)]
    return {
        "scheme": scheme,
        "threshold": threshold,
        "parties": parties,
        "runs": runs,
        "keygen_runs": keygen_runs,
        **_summary("keygen", keygen),
        **_summary("sign", sign),
        "sign_bytes": sign_stats.bytes,
        "sign_envelopes": sign_stats.envelopes,
        "keygen_bytes": keygen_stats.bytes,
        "keygen_envelopes": keygen_stats.envelopes,
    }


@app.command("mpc")
def bench_mpc(
    scheme: SchemeOption = "frost-secp256k1",
    threshold: ThresholdOption = 2,
    parties: PartiesOption = 3,
    runs: Annotated[int, typer.Option("--runs", "-r", help="Timed signing sessions and DKGs.")] = DEFAULT_RUNS,
    keygen_runs: Annotated[
        int | None,
        typer.Option(
            "--keygen-runs", help="Timed DKGs; default: --runs, at most 5 beyond n=10 (ecdsa-secp256k1: n=3)."
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Median time of a t-of-n DKG and of one signing session by parties 1..t."""
    with reported_errors():
        result = measure(scheme, threshold, parties, runs, keygen_runs)
    if as_json:
        output.emit(result, True)
        return
    table = Table(title=f"{scheme} {threshold}-of-{parties}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for name, value in result.items():
        table.add_row(name, str(value))
    Console().print(table)
