"""Transaction policy: ordered rules, the first that matches decides, and default deny.

A custodian's policy is data an administrator edits and an auditor reads, so it
lives in a JSON document (format and semantics in ``docs/policy.md``) that is
parsed strictly: an unknown key, a float amount or a threshold larger than its
group is a mistake that would otherwise silently weaken the policy, so it is a
:class:`PolicyError` naming the JSON path. :meth:`Policy.to_document` is
canonical, and :meth:`Policy.digest` hashes it, so an approval or an audit entry
can name the exact policy version it was decided under.

The module is pure: the transaction, the current time (``TxFacts.at``) and the
earlier transactions that count toward velocity limits are all arguments. The
same inputs always give the same :class:`Decision`, which is what lets
:func:`explain` be a faithful dry run and an audit be replayed.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal, NoReturn, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from harbour.node import matching
from harbour.util.strictjson import MAX_DEPTH, DuplicateKey, NotJsonConstant, TooDeep, loads_strict

FORMAT_VERSION: Final = 1
MAX_AMOUNT: Final = 2**256 - 1
"""The largest amount a document may name: any uint256 balance or transfer fits."""
MAX_WINDOW_SECONDS: Final = 366 * 86_400
MAX_COUNT: Final = 1_000_000_000
MAX_RULES: Final = 1_000
MAX_GROUPS: Final = 16
MAX_LIST: Final = 1_000
MAX_NAME_LENGTH: Final = 128
MAX_DESCRIPTION_LENGTH: Final = 2_000

Action = Literal["allow", "block", "require_approval"]
Combine = Literal["all", "any"]
Per = Literal["source", "destination", "initiator"]
DestinationKind = Literal["any", "address_book", "whitelisted", "one_time"]

ACTIONS: Final[tuple[Action, ...]] = ("allow", "block", "require_approval")
COMBINES: Final[tuple[Combine, ...]] = ("all", "any")
PERS: Final[tuple[Per, ...]] = ("source", "destination", "initiator")
DESTINATION_KINDS: Final[tuple[DestinationKind, ...]] = ("any", "address_book", "whitelisted", "one_time")
DAYS: Final = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CLOCK = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_REJECTED_ZONES: Final = frozenset({"localtime", "posixrules", "Factory"})
_PER_LABEL: Final = {"source": "source vault", "destination": "destination", "initiator": "initiator"}


class PolicyError(ValueError):
    """A malformed policy document; the message starts with the JSON path of the fault."""


# --------------------------------------------------------------------------- facts


def _check_id(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a non-empty string, got {value!r}")


def _check_amount(value: object, what: str) -> None:
    # bool is an int subclass, and True passing for 1 wei is exactly the kind of slip to refuse.
    if type(value) is not int:
        raise TypeError(f"{what} must be an int in base units, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")


def _check_time(value: object, what: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise TypeError(f"{what} must be a timezone-aware datetime, got {value!r}")


def _address_key(address: str) -> str:
    """Hex addresses compare case-insensitively (EIP-55 case is only a checksum)."""
    return address.lower() if _HEX_ADDRESS.fullmatch(address) else address


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
            _check_id(getattr(self, name), name)
        roles: object = self.initiator_roles
        if isinstance(roles, str | bytes) or not isinstance(roles, Iterable):
            raise TypeError(f"initiator_roles must be a collection of strings, got {roles!r}")
        roles = frozenset(roles)
        for role in roles:
            _check_id(role, "every initiator role")
        object.__setattr__(self, "initiator_roles", roles)
        if self.address_book_entry is not None:
            _check_id(self.address_book_entry, "address_book_entry")
        if type(self.whitelisted) is not bool:
            raise TypeError(f"whitelisted must be a bool, got {self.whitelisted!r}")
        if self.whitelisted and self.address_book_entry is None:
            raise ValueError("a whitelisted destination must name its address_book_entry")
        _check_amount(self.amount, "amount")
        _check_time(self.at, "at")


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
            _check_id(getattr(self, name), name)
        _check_amount(self.amount, "amount")
        _check_time(self.at, "at")


# --------------------------------------------------------------------------- approvals


@dataclass(frozen=True)
class ApprovalGroup:
    name: str
    members: frozenset[str]
    threshold: int

    def __post_init__(self) -> None:
        _check_id(self.name, "group name")
        if isinstance(self.members, str | bytes):
            raise TypeError("members must be a collection of user ids, not a single string")
        object.__setattr__(self, "members", frozenset(self.members))
        if not self.members:
            raise ValueError(f"group {self.name!r} has no members")
        for member in self.members:
            _check_id(member, "every group member")
        if type(self.threshold) is not int or not 1 <= self.threshold <= len(self.members):
            raise ValueError(f"group {self.name!r}: threshold must be 1..{len(self.members)}, got {self.threshold!r}")

    def to_json(self) -> dict[str, Any]:
        return {"members": sorted(self.members), "name": self.name, "threshold": self.threshold}


def _approver_set(approvers: Iterable[str]) -> frozenset[str]:
    # A single string is iterable too, and "alice" must not count as approvals from a, l, i, c, e.
    if isinstance(approvers, str | bytes):
        raise TypeError("approvers must be a collection of user ids, not a single string")
    ids = frozenset(approvers)
    for approver in ids:
        _check_id(approver, "every approver")
    return ids


@dataclass(frozen=True)
class ApprovalRequirement:
    """Groups of approvers, each with a threshold, all of which (``all``) or one of which (``any``) must be met.

    The initiator's own approval never counts, so one person cannot both ask and
    agree. Under ``all`` an approver counts toward at most one group: "two from
    treasury and one from compliance" takes three different people even when
    someone belongs to both groups (separation of duties). Approvers are assigned
    to groups by a maximum bipartite matching, so the order of approvals never
    matters and a requirement that can be met with these people is found met. The
    matcher is :mod:`harbour.node.matching`, so the signer nodes count alike.
    """

    combine: Combine
    groups: tuple[ApprovalGroup, ...]

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, got {self.combine!r}")
        object.__setattr__(self, "groups", tuple(self.groups))
        if not self.groups or not all(isinstance(g, ApprovalGroup) for g in self.groups):
            raise ValueError("an approval requirement needs at least one ApprovalGroup")
        names = [g.name for g in self.groups]
        if len(set(names)) != len(names):
            raise ValueError(f"group names must be unique, got {names}")

    @classmethod
    def from_json(cls, doc: object) -> ApprovalRequirement:
        """Parse the ``approvals`` object of a rule (as :meth:`to_json` writes it); raises PolicyError."""
        return _parse_approvals(doc, "approvals")

    def to_json(self) -> dict[str, Any]:
        return {"combine": self.combine, "groups": [g.to_json() for g in self.groups]}

    def satisfied(self, approvers: Iterable[str], initiator_id: str) -> bool:
        """Whether these approvals meet the requirement; duplicates count once, the initiator never."""
        return matching.satisfied(self.combine, self.groups, _approver_set(approvers), initiator_id)

    def satisfiable(self, initiator_id: str) -> bool:
        """Whether the requirement can be met at all once the initiator is excluded."""
        return matching.satisfiable(self.combine, self.groups, initiator_id)

    def missing(self, approvers: Iterable[str], initiator_id: str) -> list[str]:
        """What is still needed, one line per unmet group (empty when satisfied)."""
        given = _approver_set(approvers)
        counted = matching.counted(self.combine, self.groups, given, initiator_id)
        lines: list[str] = []
        for group, have in zip(self.groups, counted, strict=True):
            need = group.threshold - len(have)
            if need <= 0:
                if self.combine == "any":
                    return []
                continue
            candidates = sorted(group.members - given - {initiator_id})
            line = f"{group.name}: {need} more approval{'s' if need > 1 else ''} of {group.threshold}"
            line += f" from {', '.join(candidates) or 'nobody'}"
            if have:
                line += f" (counted: {', '.join(have)})"
            if len(candidates) < need:
                line += " - cannot be met"
                if initiator_id in group.members:
                    line += " (the initiator is a member and cannot approve)"
            lines.append(line)
        if self.combine == "any" and lines:
            return ["any one of: " + "; ".join(lines)]
        return lines


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


@dataclass(frozen=True)
class Policy:
    """An ordered list of rules. Build it with :meth:`from_document`, which validates; the constructor does not."""

    rules: tuple[Rule, ...]

    @classmethod
    def from_document(cls, doc: object) -> Policy:
        """Parse a policy document (already decoded JSON); anything malformed raises PolicyError."""
        return _parse_policy(doc)

    @classmethod
    def from_json(cls, text: str | bytes) -> Policy:
        """Decode and parse JSON text, refusing duplicate keys (the decoder would silently keep the last)."""
        try:
            as_text = text.decode("utf-8") if isinstance(text, bytes) else text
            doc = loads_strict(as_text, max_depth=MAX_DEPTH)
        except TooDeep:
            raise PolicyError(f"document: nested too deeply (more than {MAX_DEPTH} levels)") from None
        except DuplicateKey as exc:
            raise PolicyError(f"document: duplicate key {exc.key!r} in a JSON object") from None
        except NotJsonConstant as exc:
            raise PolicyError(f"document: {exc.name} is not a valid amount or number") from None
        except ValueError as exc:  # includes JSONDecodeError and UnicodeDecodeError
            raise PolicyError(f"document: not valid JSON: {exc}") from None
        except RecursionError:
            raise PolicyError("document: nested too deeply") from None
        return _parse_policy(doc)

    def max_window_seconds(self) -> int:
        """The longest velocity or count window (0 if none): how far back the caller must load history."""
        windows = [
            limit.window_seconds
            for rule in self.rules
            for limit in (rule.match.velocity, rule.match.count)
            if limit is not None
        ]
        return max(windows, default=0)

    def to_document(self) -> dict[str, Any]:
        """The canonical document: keys sorted, sets sorted, amounts as decimal strings."""
        return cast(
            dict[str, Any], _sorted_keys({"rules": [_rule_doc(r) for r in self.rules], "version": FORMAT_VERSION})
        )

    def canonical_json(self) -> bytes:
        return json.dumps(self.to_document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON: the identity of this policy version."""
        return hashlib.sha256(self.canonical_json()).hexdigest()


# --------------------------------------------------------------------------- parsing


def _fail(path: str, message: str) -> NoReturn:
    raise PolicyError(f"{path}: {message}")


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def _object(value: object, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        _fail(path or "document", f"expected an object, got {_kind(value)}")
    allowed = required + optional
    for key in value:
        if not isinstance(key, str):
            _fail(path or "document", f"keys must be strings, got {key!r}")
        if key not in allowed:
            _fail(_key(path, key), f"unknown key (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            _fail(_key(path, key), "required")
    return value


def _text(value: object, path: str, limit: int = MAX_NAME_LENGTH, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        _fail(path, f"expected a string, got {_kind(value)}")
    if not value:
        _fail(path, "must not be empty")
    if len(value) > limit:
        _fail(path, f"longer than {limit} characters")
    if value != value.strip():
        _fail(path, f"leading or trailing whitespace in {value!r}")
    for char in value:
        # Control and invisible formatting characters (bidi overrides, zero-width) let two ids look alike.
        if unicodedata.category(char) in ("Cc", "Cf", "Cs") and not (multiline and char == "\n"):
            _fail(path, f"control, format or surrogate character {char!r}")
    return value


def _id_set(value: object, path: str) -> frozenset[str]:
    if not isinstance(value, list | tuple):
        _fail(path, f"expected an array of strings, got {_kind(value)}")
    if not value:
        _fail(path, "must not be empty (omit the key to match anything)")
    if len(value) > MAX_LIST:
        _fail(path, f"more than {MAX_LIST} entries")
    seen: set[str] = set()
    for i, item in enumerate(value):
        text = _text(item, f"{path}[{i}]")
        if text in seen:
            _fail(f"{path}[{i}]", f"duplicate {text!r}")
        seen.add(text)
    return frozenset(seen)


def _amount(value: object, path: str) -> int:
    """A JSON integer or a canonical decimal string (clients that parse JSON into doubles lose precision above 2^53)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        _fail(path, f"expected an integer or a decimal string of base units, got {_kind(value)}")
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value) or len(value) > 78:
            _fail(path, f"{value!r} is not a canonical decimal string (digits only, no sign, no leading zeros)")
        value = int(value)
    if value < 0:
        _fail(path, f"must not be negative, got {value}")
    if value > MAX_AMOUNT:
        _fail(path, "larger than 2^256 - 1")
    return value


def _integer(value: object, path: str, low: int, high: int) -> int:
    if type(value) is not int:
        _fail(path, f"expected an integer, got {_kind(value)}")
    if not low <= value <= high:
        _fail(path, f"must be between {low} and {high}, got {value}")
    return value


def _choice(value: object, path: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        _fail(path, f"expected one of {', '.join(options)}, got {value!r}")
    return value


def _clock(value: object, path: str, *, end: bool) -> int:
    if not isinstance(value, str) or not (m := _CLOCK.fullmatch(value)):
        _fail(path, f"expected a time HH:MM, got {value!r}")
    minutes = int(m[1]) * 60 + int(m[2])
    if minutes > 24 * 60 or (minutes == 24 * 60 and not end):
        _fail(path, f"{value!r} is not a time of day{' (24:00 is allowed only as to)' if minutes == 1440 else ''}")
    return minutes


def _zone(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        _fail(path, f"expected an IANA time zone name such as 'Asia/Hong_Kong', got {value!r}")
    # Host-specific or non-civil zone files would make a decision depend on the machine it ran on.
    if value in _REJECTED_ZONES or value.startswith(("posix/", "right/")):
        _fail(path, f"{value!r} is not a portable IANA time zone")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        _fail(path, f"unknown time zone {value!r}")
    return value


def _parse_policy(doc: object) -> Policy:
    obj = _object(doc, "", ("rules",), ("version",))
    if "version" in obj and (type(obj["version"]) is not int or obj["version"] != FORMAT_VERSION):
        _fail("version", f"unsupported format version {obj['version']!r} (this engine reads {FORMAT_VERSION})")
    rules_doc = obj["rules"]
    if not isinstance(rules_doc, list | tuple):
        _fail("rules", f"expected an array, got {_kind(rules_doc)}")
    if len(rules_doc) > MAX_RULES:
        _fail("rules", f"more than {MAX_RULES} rules")
    rules: list[Rule] = []
    names: dict[str, int] = {}
    for i, rule_doc in enumerate(rules_doc):
        rule = _parse_rule(rule_doc, f"rules[{i}]")
        folded = rule.name.casefold()
        if folded in names:
            _fail(f"rules[{i}].name", f"duplicate rule name {rule.name!r} (also rules[{names[folded]}])")
        names[folded] = i
        rules.append(rule)
    return Policy(tuple(rules))


def _parse_rule(doc: object, path: str) -> Rule:
    obj = _object(doc, path, ("name", "action"), ("description", "match", "approvals"))
    name = _text(obj["name"], f"{path}.name")
    action = cast(Action, _choice(obj["action"], f"{path}.action", ACTIONS))
    description = (
        _text(obj["description"], f"{path}.description", MAX_DESCRIPTION_LENGTH, multiline=True)
        if "description" in obj
        else None
    )
    match = _parse_match(obj["match"], f"{path}.match") if "match" in obj else Match()
    approvals = None
    if action == "require_approval":
        if "approvals" not in obj:
            _fail(f"{path}.approvals", "required when action is require_approval")
        approvals = _parse_approvals(obj["approvals"], f"{path}.approvals")
    elif "approvals" in obj:
        _fail(f"{path}.approvals", f"allowed only when action is require_approval, not {action}")
    return Rule(name, action, match, approvals, description)


def _parse_match(doc: object, path: str) -> Match:
    keys = ("initiators", "roles", "vaults", "destination", "assets", "amount", "velocity", "count", "time")
    obj = _object(doc, path, (), keys)
    sets = {k: _id_set(obj[k], f"{path}.{k}") for k in ("initiators", "roles", "vaults", "assets") if k in obj}
    assets = sets.get("assets")
    destination = _parse_destination(obj["destination"], f"{path}.destination") if "destination" in obj else None
    amount = None
    if "amount" in obj:
        amount = _parse_amount_range(obj["amount"], f"{path}.amount")
        if assets is None:
            _fail(f"{path}.amount", "an amount limit needs match.assets, since base units differ between assets")
    velocity = None
    if "velocity" in obj:
        velocity = _parse_velocity(obj["velocity"], f"{path}.velocity")
        if velocity.asset is None and assets is None:
            _fail(
                f"{path}.velocity", "needs an asset (velocity.asset or match.assets): base units differ between assets"
            )
        if velocity.asset is not None and assets is not None and velocity.asset not in assets:
            _fail(f"{path}.velocity.asset", f"{velocity.asset!r} is not in match.assets, so the rule could never match")
    count = _parse_count(obj["count"], f"{path}.count") if "count" in obj else None
    if count is not None and count.asset is not None and assets is not None and count.asset not in assets:
        _fail(f"{path}.count.asset", f"{count.asset!r} is not in match.assets, so the rule could never match")
    time = _parse_time(obj["time"], f"{path}.time") if "time" in obj else None
    return Match(
        initiators=sets.get("initiators"),
        roles=sets.get("roles"),
        vaults=sets.get("vaults"),
        destination=destination,
        assets=assets,
        amount=amount,
        velocity=velocity,
        count=count,
        time=time,
    )


def _parse_destination(doc: object, path: str) -> DestinationCondition:
    obj = _object(doc, path, ("kind",), ("entries",))
    kind = cast(DestinationKind, _choice(obj["kind"], f"{path}.kind", DESTINATION_KINDS))
    entries = None
    if "entries" in obj:
        if kind not in ("address_book", "whitelisted"):
            _fail(f"{path}.entries", f"allowed only with kind address_book or whitelisted, not {kind}")
        entries = _id_set(obj["entries"], f"{path}.entries")
    return DestinationCondition(kind, entries)


def _parse_amount_range(doc: object, path: str) -> AmountRange:
    obj = _object(doc, path, (), ("min", "max"))
    if not obj:
        _fail(path, "needs min, max or both")
    low = _amount(obj["min"], f"{path}.min") if "min" in obj else None
    high = _amount(obj["max"], f"{path}.max") if "max" in obj else None
    if low is not None and high is not None and low > high:
        _fail(f"{path}.max", f"{high} is below min {low}")
    return AmountRange(low, high)


def _parse_window(obj: Mapping[str, Any], path: str) -> tuple[int, Per, str | None]:
    window = _integer(obj["window_seconds"], f"{path}.window_seconds", 1, MAX_WINDOW_SECONDS)
    per = cast(Per, _choice(obj["per"], f"{path}.per", PERS))
    asset = _text(obj["asset"], f"{path}.asset") if "asset" in obj else None
    return window, per, asset


def _parse_velocity(doc: object, path: str) -> Velocity:
    obj = _object(doc, path, ("window_seconds", "max_amount", "per"), ("asset",))
    window, per, asset = _parse_window(obj, path)
    return Velocity(window, _amount(obj["max_amount"], f"{path}.max_amount"), per, asset)


def _parse_count(doc: object, path: str) -> CountLimit:
    obj = _object(doc, path, ("window_seconds", "max_count", "per"), ("asset",))
    window, per, asset = _parse_window(obj, path)
    return CountLimit(window, _integer(obj["max_count"], f"{path}.max_count", 0, MAX_COUNT), per, asset)


def _parse_time(doc: object, path: str) -> TimeWindow:
    obj = _object(doc, path, ("timezone",), ("days", "from", "to"))
    zone = _zone(obj["timezone"], f"{path}.timezone")
    days = None
    if "days" in obj:
        days = _id_set(obj["days"], f"{path}.days")
        for i, day in enumerate(obj["days"]):
            if day not in DAYS:
                _fail(f"{path}.days[{i}]", f"expected one of {', '.join(DAYS)}, got {day!r}")
    if ("from" in obj) != ("to" in obj):
        _fail(f"{path}.{'to' if 'from' in obj else 'from'}", "from and to go together")
    start = end = None
    if "from" in obj:
        start = _clock(obj["from"], f"{path}.from", end=False)
        end = _clock(obj["to"], f"{path}.to", end=True)
        if start == end:
            _fail(f"{path}.to", "equals from; omit both for the whole day")
    if days is None and start is None:
        _fail(path, "needs days, from/to or both")
    return TimeWindow(zone, days, start, end)


def _parse_approvals(doc: object, path: str) -> ApprovalRequirement:
    obj = _object(doc, path, ("combine", "groups"))
    combine = cast(Combine, _choice(obj["combine"], f"{path}.combine", COMBINES))
    groups_doc = obj["groups"]
    if not isinstance(groups_doc, list | tuple):
        _fail(f"{path}.groups", f"expected an array, got {_kind(groups_doc)}")
    if not groups_doc:
        _fail(f"{path}.groups", "needs at least one group")
    if len(groups_doc) > MAX_GROUPS:
        _fail(f"{path}.groups", f"more than {MAX_GROUPS} groups")
    groups: list[ApprovalGroup] = []
    for i, group_doc in enumerate(groups_doc):
        gpath = f"{path}.groups[{i}]"
        g = _object(group_doc, gpath, ("name", "members", "threshold"))
        name = _text(g["name"], f"{gpath}.name")
        if any(name == other.name for other in groups):
            _fail(f"{gpath}.name", f"duplicate group name {name!r}")
        members = _id_set(g["members"], f"{gpath}.members")
        if type(g["threshold"]) is int and g["threshold"] > len(members):
            _fail(f"{gpath}.threshold", f"{g['threshold']} exceeds the {len(members)} members")
        threshold = _integer(g["threshold"], f"{gpath}.threshold", 1, len(members))
        groups.append(ApprovalGroup(name, members, threshold))
    return ApprovalRequirement(combine, tuple(groups))


# --------------------------------------------------------------------------- writing


def _clock_text(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def _rule_doc(rule: Rule) -> dict[str, Any]:
    m = rule.match
    match: dict[str, Any] = {}
    for key in ("initiators", "roles", "vaults", "assets"):
        values = getattr(m, key)
        if values is not None:
            match[key] = sorted(values)
    if m.destination is not None:
        match["destination"] = {"kind": m.destination.kind}
        if m.destination.entries is not None:
            match["destination"]["entries"] = sorted(m.destination.entries)
    if m.amount is not None:
        match["amount"] = {k: str(v) for k, v in (("min", m.amount.min), ("max", m.amount.max)) if v is not None}
    for key, limit in (("velocity", m.velocity), ("count", m.count)):
        if limit is None:
            continue
        doc: dict[str, Any] = {"window_seconds": limit.window_seconds, "per": limit.per}
        if isinstance(limit, Velocity):
            doc["max_amount"] = str(limit.max_amount)
        else:
            doc["max_count"] = limit.max_count
        if limit.asset is not None:
            doc["asset"] = limit.asset
        match[key] = doc
    if m.time is not None:
        time: dict[str, Any] = {"timezone": m.time.timezone}
        if m.time.days is not None:
            time["days"] = [d for d in DAYS if d in m.time.days]
        if m.time.start is not None and m.time.end is not None:
            time["from"], time["to"] = _clock_text(m.time.start), _clock_text(m.time.end)
        match["time"] = time
    doc = {"name": rule.name, "action": rule.action, "match": match}
    if rule.description is not None:
        doc["description"] = rule.description
    if rule.approvals is not None:
        doc["approvals"] = rule.approvals.to_json()
    return doc


# --------------------------------------------------------------------------- evaluation


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
        span = f" {_clock_text(cond.start)}-{_clock_text(cond.end)}"
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
