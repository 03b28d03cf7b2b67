"""What a policy is made of and what it says: the transaction facts, the conditions, the rules and a decision.

These are plain frozen values with no behaviour but their own checks. Reading them
from a document is :mod:`~harbour.governance.policy.document`, deciding with them is
:mod:`~harbour.governance.policy.engine`; keeping the three apart lets a reader check
the format, the semantics and the vocabulary each on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from harbour.governance.policy.approvals import ApprovalRequirement
from harbour.governance.policy.checks import check_amount, check_id, check_time

Action = Literal["allow", "block", "require_approval"]
Per = Literal["source", "destination", "initiator"]
DestinationKind = Literal["any", "address_book", "whitelisted", "one_time"]

ACTIONS: Final[tuple[Action, ...]] = ("allow", "block", "require_approval")
PERS: Final[tuple[Per, ...]] = ("source", "destination", "initiator")
DESTINATION_KINDS: Final[tuple[DestinationKind, ...]] = ("any", "address_book", "whitelisted", "one_time")
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


# --------------------------------------------------------------------------- facts


@dataclass(frozen=True)
class TxFacts:
    """What the policy sees of a transaction being requested.

    ``at`` is when the request is evaluated (the caller's clock, never read here);
    ``initiator_roles`` may be given as any collection of strings and is stored as a frozenset.
    """

    initiator_id: str
    initiator_roles: frozenset[str]
    vault_id: str
    asset: str
    destination: str
    address_book_entry: str | None
    whitelisted: bool
    amount: int
    at: datetime

    def __post_init__(self) -> None:
        for name in ("initiator_id", "vault_id", "asset", "destination"):
            check_id(getattr(self, name), name)
        roles: object = self.initiator_roles
        if isinstance(roles, str | bytes) or not isinstance(roles, Iterable):
            raise TypeError(f"initiator_roles must be a collection of strings, got {roles!r}")
        roles = frozenset(roles)
        for role in roles:
            check_id(role, "every initiator role")
        object.__setattr__(self, "initiator_roles", roles)
        if self.address_book_entry is not None:
            check_id(self.address_book_entry, "address_book_entry")
        if type(self.whitelisted) is not bool:
            raise TypeError(f"whitelisted must be a bool, got {self.whitelisted!r}")
        if self.whitelisted and self.address_book_entry is None:
            raise ValueError("a whitelisted destination must name its address_book_entry")
        check_amount(self.amount, "amount")
        check_time(self.at, "at")


@dataclass(frozen=True)
class PastTx:
    """An earlier transaction that counts toward velocity and count limits.

    The caller passes those that did or may still move funds (not rejected,
    cancelled or failed), and never the transaction being evaluated itself.
    """

    initiator_id: str
    vault_id: str
    asset: str
    destination: str
    amount: int
    at: datetime

    def __post_init__(self) -> None:
        for name in ("initiator_id", "vault_id", "asset", "destination"):
            check_id(getattr(self, name), name)
        check_amount(self.amount, "amount")
        check_time(self.at, "at")


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class DestinationCondition:
    """``entries`` (only with ``address_book`` and ``whitelisted``) narrows the match to those entry ids."""

    kind: DestinationKind
    entries: frozenset[str] | None = None


@dataclass(frozen=True)
class AmountRange:
    """Inclusive bounds in base units of the transaction's asset."""

    min: int | None = None
    max: int | None = None


@dataclass(frozen=True)
class Velocity:
    """Matches when this transaction would take the window's total above ``max_amount``."""

    window_seconds: int
    max_amount: int
    per: Per
    asset: str | None = None


@dataclass(frozen=True)
class CountLimit:
    """Matches when this transaction would take the window's count above ``max_count``."""

    window_seconds: int
    max_count: int
    per: Per
    asset: str | None = None


@dataclass(frozen=True)
class TimeWindow:
    """Local days and a half-open ``[start, end)`` in minutes after midnight; ``start > end`` wraps midnight."""

    timezone: str
    days: frozenset[str] | None = None
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class Match:
    """Every present condition must hold (AND); a list condition holds when any listed value does (OR)."""

    initiators: frozenset[str] | None = None
    roles: frozenset[str] | None = None
    vaults: frozenset[str] | None = None
    destination: DestinationCondition | None = None
    assets: frozenset[str] | None = None
    amount: AmountRange | None = None
    velocity: Velocity | None = None
    count: CountLimit | None = None
    time: TimeWindow | None = None


@dataclass(frozen=True)
class Rule:
    """``approvals`` is set exactly when ``action`` is ``require_approval``."""

    name: str
    action: Action
    match: Match = field(default_factory=Match)
    approvals: ApprovalRequirement | None = None
    description: str | None = None


@dataclass(frozen=True)
class Sweep:
    """Sweep ``asset`` from a vault's deposit addresses into its main address once one holds ``threshold`` or more.

    Not a rule: it decides nothing. Each sweep is a withdrawal that ``initiator``
    submits and the rules decide like any other (docs/custody.md, Source addresses
    and sweeping); being in the policy, the setting is adopted by the admin quorum.
    """

    asset: str
    threshold: int
    initiator: str
    gas_top_up: bool = False
    """For a token: when a deposit address holding the threshold has no ETH for the sweep's gas, send it that
    from the main address first (a sweep of its own, decided like any withdrawal)."""


@dataclass(frozen=True)
class RuleTrace:
    """One rule as evaluation saw it; ``reached`` is False for rules after the deciding one."""

    index: int
    name: str
    matched: bool
    reached: bool
    reasons: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "matched": self.matched,
            "name": self.name,
            "reached": self.reached,
            "reasons": list(self.reasons),
        }


@dataclass(frozen=True)
class Decision:
    """The outcome and its grounds: kept with the transaction so an auditor sees why it was allowed."""

    action: Action
    rule: str | None
    rule_index: int | None
    requirement: ApprovalRequirement | None
    reasons: tuple[str, ...]
    trace: tuple[RuleTrace, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reasons": list(self.reasons),
            "requirement": None if self.requirement is None else self.requirement.to_json(),
            "rule": self.rule,
            "rule_index": self.rule_index,
            "trace": [t.to_json() for t in self.trace],
        }


def clock_text(minutes: int) -> str:
    """Minutes after midnight as ``HH:MM``, the way documents and traces write a time of day."""
    return f"{minutes // 60:02d}:{minutes % 60:02d}"
