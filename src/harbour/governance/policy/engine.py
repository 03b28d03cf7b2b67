"""Deciding a transaction: ordered rules, the first that matches decides, and default deny.

The engine is pure: the transaction, the current time (``TxFacts.at``) and the
earlier transactions that count toward velocity limits are all arguments. The
same inputs always give the same :class:`Decision`, which is what lets
:func:`explain` be a faithful dry run and an audit be replayed. Every reason it
gives is a sentence a reviewer can check against the document, so evaluation
never short-circuits a rule's conditions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from harbour.governance.policy.document import Policy
from harbour.governance.policy.model import (
    DAYS,
    AmountRange,
    CountLimit,
    Decision,
    DestinationCondition,
    PastTx,
    Per,
    Rule,
    RuleTrace,
    TimeWindow,
    TxFacts,
    Velocity,
    clock_text,
)

_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_PER_LABEL: Final = {"source": "source vault", "destination": "destination", "initiator": "initiator"}


def _address_key(address: str) -> str:
    """Hex addresses compare case-insensitively (EIP-55 case is only a checksum)."""
    return address.lower() if _HEX_ADDRESS.fullmatch(address) else address


def _listing(values: Iterable[str]) -> str:
    return ", ".join(repr(v) for v in sorted(values))


def _outcome(name: str, ok: bool, detail: str) -> tuple[bool, str]:
    return ok, f"{name} {'matches' if ok else 'does not match'}: {detail}"


class _Context:
    """One evaluation's facts and history, with window totals computed once per (per, window, asset)."""

    def __init__(self, facts: TxFacts, history: Sequence[PastTx]) -> None:
        self.facts = facts
        self.history = history
        self._windows: dict[tuple[Per, int, str | None], tuple[int, int]] = {}

    def window(self, per: Per, seconds: int, asset: str | None) -> tuple[int, int]:
        """(count, total amount) of earlier transactions with ``at - seconds < tx.at <= at``, same key, asset."""
        key = (per, seconds, asset)
        if key not in self._windows:
            f, span, zero = self.facts, timedelta(seconds=seconds), timedelta(0)
            destination = _address_key(f.destination)
            count = total = 0
            for tx in self.history:
                if asset is not None and tx.asset != asset:
                    continue
                if per == "source" and tx.vault_id != f.vault_id:
                    continue
                if per == "initiator" and tx.initiator_id != f.initiator_id:
                    continue
                if per == "destination" and _address_key(tx.destination) != destination:
                    continue
                # Compared as a difference, so no datetime arithmetic can overflow near year 1 or 9999.
                if zero <= f.at - tx.at < span:
                    count += 1
                    total += tx.amount
            self._windows[key] = (count, total)
        return self._windows[key]

    def scope(self, per: Per) -> str:
        value = {
            "source": self.facts.vault_id,
            "destination": self.facts.destination,
            "initiator": self.facts.initiator_id,
        }
        return f"per {_PER_LABEL[per]} {value[per]!r}"


def _check_destination(cond: DestinationCondition, f: TxFacts) -> tuple[bool, str]:
    entry = f.address_book_entry
    where = "one-time (not in the address book)" if entry is None else f"address-book entry {entry!r}"
    if entry is not None:
        where += " (whitelisted)" if f.whitelisted else " (not whitelisted)"
    if cond.kind == "any":
        return _outcome("destination", True, f"{where}; any destination")
    if cond.kind == "one_time":
        return _outcome("destination", entry is None, f"{where}; wanted one-time")
    if entry is None:
        return _outcome("destination", False, f"{where}; wanted {cond.kind.replace('_', '-')}")
    if cond.kind == "whitelisted" and not f.whitelisted:
        return _outcome("destination", False, f"{where}; wanted whitelisted")
    if cond.entries is not None:
        return _outcome("destination", entry in cond.entries, f"{where}; wanted one of {_listing(cond.entries)}")
    return _outcome("destination", True, f"{where}; wanted {cond.kind.replace('_', '-')}")


def _check_amount_range(cond: AmountRange, amount: int) -> tuple[bool, str]:
    if cond.min is not None and amount < cond.min:
        return _outcome("amount", False, f"{amount} is below the minimum {cond.min}")
    if cond.max is not None and amount > cond.max:
        return _outcome("amount", False, f"{amount} is above the maximum {cond.max}")
    low = "" if cond.min is None else f"{cond.min} <= "
    high = "" if cond.max is None else f" <= {cond.max}"
    return _outcome("amount", True, f"{low}{amount}{high}")


def _check_velocity(cond: Velocity, ctx: _Context) -> tuple[bool, str]:
    f = ctx.facts
    if cond.asset is not None and cond.asset != f.asset:
        return _outcome("velocity", False, f"the limit is on {cond.asset}, the transaction moves {f.asset}")
    _, total = ctx.window(cond.per, cond.window_seconds, f.asset)
    after = total + f.amount
    ok = after > cond.max_amount
    scope = f"{ctx.scope(cond.per)}, {f.asset}, last {cond.window_seconds} s"
    relation = "exceeds" if ok else "does not exceed"
    return _outcome("velocity", ok, f"{total} earlier + {f.amount} = {after} {relation} {cond.max_amount} ({scope})")


def _check_count(cond: CountLimit, ctx: _Context) -> tuple[bool, str]:
    f = ctx.facts
    if cond.asset is not None and cond.asset != f.asset:
        return _outcome("count", False, f"the limit is on {cond.asset}, the transaction moves {f.asset}")
    count, _ = ctx.window(cond.per, cond.window_seconds, cond.asset)
    ok = count + 1 > cond.max_count
    scope = f"{ctx.scope(cond.per)}, {cond.asset or 'all assets'}, last {cond.window_seconds} s"
    relation = "exceeds" if ok else "does not exceed"
    return _outcome("count", ok, f"{count} earlier + 1 = {count + 1} {relation} {cond.max_count} ({scope})")


def _check_time_window(cond: TimeWindow, at: datetime) -> tuple[bool, str]:
    try:
        local = at.astimezone(ZoneInfo(cond.timezone))
    except (OverflowError, ValueError):
        return _outcome("time", False, f"{at.isoformat()} cannot be expressed in {cond.timezone}")
    minute = local.hour * 60 + local.minute
    weekday = local.weekday()
    when = f"{DAYS[weekday]} {local:%Y-%m-%d %H:%M} {cond.timezone}"
    inside, opened = True, weekday
    span = ""
    if cond.start is not None and cond.end is not None:
        span = f" {clock_text(cond.start)}-{clock_text(cond.end)}"
        if cond.start < cond.end:
            inside = cond.start <= minute < cond.end
        elif minute >= cond.start:
            pass
        elif minute < cond.end:
            opened = (weekday - 1) % 7  # the after-midnight part belongs to the day the window opened
        else:
            inside = False
    days = "every day" if cond.days is None else ",".join(d for d in DAYS if d in cond.days)
    wanted = f"{days}{span}"
    if not inside:
        return _outcome("time", False, f"{when} is outside {wanted}")
    if cond.days is not None and DAYS[opened] not in cond.days:
        note = "" if opened == weekday else f" (in the window opened on {DAYS[opened]})"
        return _outcome("time", False, f"{when}{note} is not on {days}")
    note = "" if opened == weekday else f" (window opened on {DAYS[opened]})"
    return _outcome("time", True, f"{when} is within {wanted}{note}")


def _check_rule(rule: Rule, ctx: _Context) -> tuple[bool, tuple[str, ...]]:
    """Every condition is checked (none short-circuits), so a trace lists all that failed."""
    m, f = rule.match, ctx.facts
    results: list[tuple[bool, str]] = []
    if m.initiators is not None:
        results.append(
            _outcome("initiators", f.initiator_id in m.initiators, f"{f.initiator_id!r} among {_listing(m.initiators)}")
        )
    if m.roles is not None:
        held = m.roles & f.initiator_roles
        detail = f"initiator holds {_listing(held)}" if held else f"initiator holds none of {_listing(m.roles)}"
        results.append(_outcome("roles", bool(held), detail))
    if m.vaults is not None:
        results.append(_outcome("vaults", f.vault_id in m.vaults, f"{f.vault_id!r} among {_listing(m.vaults)}"))
    if m.destination is not None:
        results.append(_check_destination(m.destination, f))
    if m.assets is not None:
        results.append(_outcome("assets", f.asset in m.assets, f"{f.asset!r} among {_listing(m.assets)}"))
    if m.amount is not None:
        results.append(_check_amount_range(m.amount, f.amount))
    if m.velocity is not None:
        results.append(_check_velocity(m.velocity, ctx))
    if m.count is not None:
        results.append(_check_count(m.count, ctx))
    if m.time is not None:
        results.append(_check_time_window(m.time, f.at))
    if not results:
        return True, ("no conditions: matches every transaction",)
    return all(ok for ok, _ in results), tuple(reason for _, reason in results)


def _run(policy: Policy, facts: TxFacts, history: Sequence[PastTx], complete: bool) -> Decision:
    if not isinstance(policy, Policy):
        raise TypeError(f"policy must be a Policy, got {type(policy).__name__}")
    if not isinstance(facts, TxFacts):
        raise TypeError(f"facts must be TxFacts, got {type(facts).__name__}")
    past = tuple(history)
    for tx in past:
        if not isinstance(tx, PastTx):
            raise TypeError(f"history must hold PastTx, got {type(tx).__name__}")
    ctx = _Context(facts, past)
    trace: list[RuleTrace] = []
    for index, rule in enumerate(policy.rules):
        matched, reasons = _check_rule(rule, ctx)
        trace.append(RuleTrace(index, rule.name, matched, True, reasons))
        if matched:
            if complete:
                skipped = f"not reached: rule {rule.name!r} (rules[{index}]) decided"
                trace.extend(
                    RuleTrace(i, r.name, False, False, (skipped,)) for i, r in enumerate(policy.rules) if i > index
                )
            return Decision(rule.action, rule.name, index, rule.approvals, reasons, tuple(trace))
    return Decision("block", None, None, None, ("no rule matched: default deny",), tuple(trace))


def evaluate(policy: Policy, facts: TxFacts, history: Sequence[PastTx]) -> Decision:
    """Decide a transaction: the first matching rule's action, or block when none matches.

    The trace holds the rules tried, up to and including the deciding one.
    """
    return _run(policy, facts, history, complete=False)


def explain(policy: Policy, facts: TxFacts, history: Sequence[PastTx]) -> Decision:
    """The same decision as :func:`evaluate`, with every rule in the trace (those after the decision as not reached)."""
    return _run(policy, facts, history, complete=True)
