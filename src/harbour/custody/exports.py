"""Statements and transaction history of a vault over a period, as JSON or CSV.

A **statement** is the custody's book of a vault: per asset, the balance at the
start of the period, every movement in it, and the balance at its end. Movements
are the vault's confirmed deposits (credits, at the time custody recorded them)
and its mined withdrawals (debits, at the time their receipt was recorded): the
amount of a confirmed one, in its asset, and the fee of any mined one, confirmed
or reverted, in the native coin. The opening balance is the sum of every such
movement before the start, so ``closing = opening + credits - debits`` holds by
construction; funds that reached an address without being recorded as a deposit
(a contract's internal transfer) are not in the book, and
``GET /v1/vaults/{id}`` shows the chain's own balances to reconcile against.

A **history** is every withdrawal of the vault created in the period, in any
state. Periods are half-open, ``[start, end)``, at most :data:`MAX_PERIOD` long,
and an export holds at most :data:`MAX_ROWS` lines (a longer one is refused:
ask for a shorter period). CSV cells that a spreadsheet would run as a formula
are quoted with a leading apostrophe.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from harbour.custody import models as m
from harbour.custody import notifyshapes as shapes
from harbour.custody import states
from harbour.custody.actors import ANYONE, Actor, require
from harbour.custody.errors import Invalid
from harbour.custody.search import timestamp
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import amount, iso

MAX_PERIOD: Final = dt.timedelta(days=366)
MAX_ROWS: Final = 10_000
FORMATS: Final = ("json", "csv")
_FORMULA: Final = ("=", "+", "-", "@", "\t", "\r")


def period(start: object, end: object) -> tuple[dt.datetime, dt.datetime]:
    """``[start, end)`` checked: both given, with offsets, start before end, at most MAX_PERIOD apart."""
    begin, finish = timestamp(start, "start"), timestamp(end, "end")
    if begin is None or finish is None:
        raise Invalid("an export needs start and end (ISO 8601 times with offsets)")
    if begin >= finish:
        raise Invalid("start must be earlier than end")
    if finish - begin > MAX_PERIOD:
        raise Invalid(f"a period is at most {MAX_PERIOD.days} days; export a longer one in parts")
    return begin, finish


@dataclass(frozen=True)
class Movement:
    at: dt.datetime
    asset_id: str
    kind: str
    credit: int
    debit: int
    tx_hash: str | None
    reference: str


def _movements(s: Session, vault_id: str, native_id: str | None, end: dt.datetime) -> list[Movement]:
    """Every movement of the vault before ``end``, oldest first."""
    out: list[Movement] = []
    deposits = s.execute(
        select(m.Deposit.id, m.Deposit.asset_id, m.Deposit.amount, m.Deposit.tx_hash, m.Deposit.created_at).where(
            m.Deposit.vault_id == vault_id, m.Deposit.state == "confirmed", m.Deposit.created_at < end
        )
    )
    for d in deposits:
        out.append(Movement(d.created_at, d.asset_id, "deposit", d.amount, 0, d.tx_hash, d.id))
    mined = s.execute(
        select(
            m.Transaction.id,
            m.Transaction.state,
            m.Transaction.asset_id,
            m.Transaction.amount,
            m.Transaction.fee,
            m.Transaction.tx_hash,
            m.Transaction.updated_at,
        ).where(
            m.Transaction.vault_id == vault_id,
            m.Transaction.kind == "withdrawal",
            m.Transaction.block_number.is_not(None),
            m.Transaction.state.in_([states.CONFIRMED, states.FAILED]),
            m.Transaction.updated_at < end,
        )
    )
    for row in mined:
        if row.state == states.CONFIRMED and row.asset_id is not None and row.amount:
            out.append(Movement(row.updated_at, row.asset_id, "withdrawal", 0, row.amount, row.tx_hash, row.id))
        if row.fee and native_id is not None:
            out.append(Movement(row.updated_at, native_id, "fee", 0, row.fee, row.tx_hash, row.id))
    out.sort(key=lambda mv: (mv.at, mv.reference, mv.kind))
    return out


class Exports:
    def __init__(self, uow: UnitOfWork) -> None:
        self.uow = uow

    def statement(self, actor: Actor, vault_id: str, start: object, end: object) -> dict[str, Any]:
        require(actor, *ANYONE)
        begin, finish = period(start, end)
        with self.uow.read() as s:
            vault = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
            assets = {a.id: a for a in s.scalars(select(m.Asset).where(m.Asset.org_id == actor.org_id))}
            native = next((a.id for a in assets.values() if a.kind == "native"), None)
            movements = _movements(s, vault.id, native, finish)
        opening: dict[str, int] = {}
        credits: dict[str, int] = {}
        debits: dict[str, int] = {}
        lines: list[dict[str, Any]] = []
        running: dict[str, int] = {}
        for mv in movements:
            running[mv.asset_id] = running.get(mv.asset_id, 0) + mv.credit - mv.debit
            if mv.at < begin:
                opening[mv.asset_id] = running[mv.asset_id]
                continue
            credits[mv.asset_id] = credits.get(mv.asset_id, 0) + mv.credit
            debits[mv.asset_id] = debits.get(mv.asset_id, 0) + mv.debit
            lines.append(
                {
                    "at": iso(mv.at),
                    "asset": assets[mv.asset_id].symbol,
                    "kind": mv.kind,
                    "credit": str(mv.credit),
                    "debit": str(mv.debit),
                    "balance": str(running[mv.asset_id]),
                    "tx_hash": mv.tx_hash,
                    "reference": mv.reference,
                }
            )
        if len(lines) > MAX_ROWS:
            raise Invalid(f"the period has {len(lines)} movements, more than {MAX_ROWS}: ask for a shorter one")
        balances = [
            {
                "asset": assets[asset_id].symbol,
                "opening": str(opening.get(asset_id, 0)),
                "credits": str(credits.get(asset_id, 0)),
                "debits": str(debits.get(asset_id, 0)),
                "closing": str(running.get(asset_id, 0)),
            }
            for asset_id in sorted(assets, key=lambda a: assets[a].symbol)
        ]
        return shapes.Statement.model_validate(
            {"vault_id": vault.id, "start": iso(begin), "end": iso(finish), "balances": balances, "lines": lines}
        ).model_dump(mode="json")

    def history(self, actor: Actor, vault_id: str, start: object, end: object) -> dict[str, Any]:
        require(actor, *ANYONE)
        begin, finish = period(start, end)
        with self.uow.read() as s:
            vault = self.uow.get(s, m.Vault, vault_id, actor.org_id, "vault")
            symbols = dict(s.execute(select(m.Asset.id, m.Asset.symbol).where(m.Asset.org_id == actor.org_id)).all())
            rows = list(
                s.scalars(
                    select(m.Transaction)
                    .where(
                        m.Transaction.org_id == actor.org_id,
                        m.Transaction.vault_id == vault.id,
                        m.Transaction.created_at >= begin,
                        m.Transaction.created_at < finish,
                    )
                    .order_by(m.Transaction.created_at, m.Transaction.id)
                    .limit(MAX_ROWS + 1)
                )
            )
            if len(rows) > MAX_ROWS:
                raise Invalid(f"the period has more than {MAX_ROWS} transactions: ask for a shorter one")
            items = [
                {
                    "id": t.id,
                    "created_at": iso(t.created_at),
                    "updated_at": iso(t.updated_at),
                    "state": t.state,
                    "sub_status": t.sub_status,
                    "asset": symbols.get(t.asset_id) if t.asset_id else None,
                    "amount": amount(t.amount),
                    "destination": t.destination,
                    "external_id": t.external_id,
                    "initiator_id": t.initiator_id,
                    "tx_hash": t.tx_hash,
                    "block_number": t.block_number,
                    "fee": amount(t.fee),
                }
                for t in rows
            ]
        return shapes.History.model_validate(
            {"vault_id": vault.id, "start": iso(begin), "end": iso(finish), "items": items}
        ).model_dump(mode="json")


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def _csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return out.getvalue()


STATEMENT_COLUMNS: Final = ("at", "asset", "kind", "credit", "debit", "balance", "tx_hash", "reference")


def statement_csv(doc: dict[str, Any]) -> str:
    """Opening balances, the lines, closing balances: one table (``kind`` says which a row is)."""
    opening = [(doc["start"], b["asset"], "opening", "", "", b["opening"], "", "") for b in doc["balances"]]
    closing = [(doc["end"], b["asset"], "closing", "", "", b["closing"], "", "") for b in doc["balances"]]
    lines = [[line[c] for c in STATEMENT_COLUMNS] for line in doc["lines"]]
    return _csv(STATEMENT_COLUMNS, [*opening, *lines, *closing])


def history_csv(doc: dict[str, Any]) -> str:
    columns = list(shapes.HistoryLine.model_fields)
    return _csv(columns, ([item[c] for c in columns] for item in doc["items"]))
