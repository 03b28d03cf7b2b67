"""``harbour mpc tour``: every threshold scheme end to end in one process, no nodes and no chain.

For each scheme (the three FROST schemes and threshold ECDSA): a 2-of-3 key by
distributed key generation, two signatures by different pairs of its parties
(both verify under the one public key: no party and no fixed pair is special),
and one party's attempt to sign alone, which the signing session refuses.
Threshold ECDSA signs the SHA-256 digest of the message, since ECDSA signs a
digest and leaves the choice of hash to the chain.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from harbour.cli import output, session
from harbour.cli.params import SCHEMES, JsonOption
from harbour.mpc import runner
from harbour.mpc.envelope import ProtocolAbort, UsageError
from harbour.mpc.schemes import scheme_by_name

THRESHOLD, PARTIES = 2, 3
SIGNER_SETS: tuple[tuple[int, ...], ...] = ((1, 3), (2, 3))
LONE_SIGNER = (1,)
MESSAGE = b"Harbour demo: transfer 100.00 HKD-T to vault 7"
DIGEST = hashlib.sha256(MESSAGE).digest()
STEPS_PER_SCHEME = 1 + len(SIGNER_SETS) + 1
OK, FAIL = "[green]✓[/green]", "[bold red]✗[/bold red]"

T = TypeVar("T")


@dataclass
class Row:
    """One line of the final table; ``ok`` is whether the line shows the expected outcome."""

    scheme: str
    signers: tuple[int, ...]
    public_key: str = ""
    signature: str = ""
    outcome: str = ""
    ok: bool = False
    keygen_ms: float | None = None
    sign_ms: float | None = None
    address: str = ""


def short(hex_text: str) -> str:
    return f"{hex_text[:8]}…{hex_text[-6:]}" if len(hex_text) > 16 else hex_text


def fmt(signers: tuple[int, ...]) -> str:
    return "{" + ", ".join(map(str, signers)) + "}"


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    value = fn()
    return value, (time.perf_counter() - start) * 1000


def signed_bytes(scheme: str) -> bytes:
    """What the scheme signs: the message for FROST, its SHA-256 digest for ECDSA."""
    return DIGEST if scheme_by_name(scheme).signs_digest else MESSAGE


def sign_row(scheme: str, shares: session.Shares, signers: tuple[int, ...], public_key: str) -> Row:
    row = Row(scheme, signers, public_key)
    message = signed_bytes(scheme)
    try:
        signature, row.sign_ms = timed(lambda: session.sign(shares, signers, message))
    except (ProtocolAbort, RuntimeError) as exc:
        row.outcome = f"✗ {exc}"
        return row
    row.signature = short(session.signature_bytes(signature).hex())
    row.ok = session.verify(scheme, shares[signers[0]].group_public_key, message, signature)
    row.outcome = "✓" if row.ok else "✗ does not verify"
    return row


def lone_signer_row(scheme: str, shares: session.Shares, public_key: str) -> Row:
    """One party of a 2-of-3 key tries to sign alone: here the refusal is the success."""
    row = Row(scheme, LONE_SIGNER, public_key, signature="none")
    try:
        session.sign(shares, LONE_SIGNER, signed_bytes(scheme))
    except UsageError as exc:
        row.outcome, row.ok = f"refused ✓ ({exc})", True
    else:
        row.signature, row.outcome = "PRODUCED", "✗ one party signed alone"
    return row


def run_scheme(scheme: str, step: Callable[[str], None]) -> list[Row]:
    """Every row of one scheme; a failure becomes a row with ``ok=False``, not an exception."""
    try:
        shares, keygen_ms = timed(lambda: runner.keygen(scheme, THRESHOLD, PARTIES))
    except (ProtocolAbort, RuntimeError) as exc:
        step(f"{FAIL} {scheme}: key generation failed: {exc}")
        return [Row(scheme, (), outcome=f"✗ DKG failed: {exc}")]
    public_key = short(session.public_key(shares).hex())
    step(f"{OK} {scheme}: {THRESHOLD}-of-{PARTIES} key by DKG in {keygen_ms:.1f} ms, public key {public_key}")
    rows = []
    for signers in SIGNER_SETS:
        row = sign_row(scheme, shares, signers, public_key)
        rows.append(row)
        step(
            f"{OK if row.ok else FAIL} {scheme}: signers {fmt(signers)} signed in {row.sign_ms or 0:.2f} ms, "
            f"verified {row.outcome}"
        )
    rows[0].keygen_ms = keygen_ms
    rows[0].address = str(session.key_fields(scheme, shares[1].group_public_key).get("address", ""))
    lone = lone_signer_row(scheme, shares, public_key)
    rows.append(lone)
    step(f"{OK if lone.ok else FAIL} {scheme}: party 1 alone tried to sign: {lone.outcome}")
    return rows


def table(rows: list[Row]) -> Table:
    out = Table(
        title=f"Threshold signatures {THRESHOLD}-of-{PARTIES}, message {MESSAGE.decode()!r}",
        caption="\n".join(
            f"{row.scheme} signs SHA-256(message); Ethereum address {row.address}" for row in rows if row.address
        )
        or None,
    )
    out.add_column("scheme")
    out.add_column("t-of-n", justify="center")
    out.add_column("signers", justify="center")
    out.add_column("public key")
    out.add_column("signature")
    out.add_column("verified", justify="center")
    out.add_column("keygen ms", justify="right")
    out.add_column("sign ms", justify="right")
    for i, row in enumerate(rows):
        if i and row.scheme != rows[i - 1].scheme:
            out.add_section()
        outcome = row.outcome.split(" (")[0]
        out.add_row(
            row.scheme,
            f"{THRESHOLD}-of-{PARTIES}",
            fmt(row.signers),
            row.public_key,
            row.signature,
            f"[green]{outcome}[/green]" if row.ok else f"[bold red]{outcome}[/bold red]",
            "" if row.keygen_ms is None else f"{row.keygen_ms:.1f}",
            "" if row.sign_ms is None else f"{row.sign_ms:.2f}",
        )
    return out


def tour(as_json: JsonOption = False) -> None:
    """Run the MPC demonstration: DKG and threshold signing for every FROST scheme and threshold ECDSA."""
    console = Console(stderr=as_json)  # under --json, stdout is the rows' document and nothing else
    if not console.is_terminal:  # a log or a pipe: don't squeeze the table into 80 columns
        console.width = max(console.width, 120)
    rows: list[Row] = []
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task("MPC", total=len(SCHEMES) * STEPS_PER_SCHEME)

        def step(line: str) -> None:
            progress.console.print(line)
            progress.advance(task)

        for scheme in SCHEMES:
            progress.update(task, description=scheme)
            rows.extend(run_scheme(scheme, step))
    failed = [r for r in rows if not r.ok]
    if as_json:
        output.emit({"rows": [dataclasses.asdict(r) for r in rows], "failed": len(failed)}, True)
        if failed:
            raise typer.Exit(1)
        return
    console.print()
    console.print(table(rows))
    lone = next((r for r in rows if r.signers == LONE_SIGNER and r.ok), None)
    if lone is not None:
        reason = lone.outcome.partition("(")[2].rstrip(")")
        console.print(f"refused ✓: one party of a {THRESHOLD}-of-{PARTIES} key cannot sign alone: {reason}.")
    if failed:
        console.print(f"{FAIL} {len(failed)} check(s) failed.")
        raise typer.Exit(1)
    console.print(f"{OK} Every signature verified under its scheme's group public key.")
