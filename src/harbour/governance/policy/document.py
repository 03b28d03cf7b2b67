"""The policy document: JSON in (parsed strictly, every fault named by its JSON path), canonical JSON out.

A custodian's policy is data an administrator edits and an auditor reads, so the
document (format and semantics in ``docs/policy.md``) is the policy's identity:
:meth:`Policy.to_document` is canonical and :meth:`Policy.digest` hashes it, so an
approval or an audit entry can name the exact version it was decided under.
Parsing and writing sit together so that every key read has its written form
beside it; the checks on each value are :mod:`~harbour.governance.policy.checks`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, cast

from harbour.governance.policy.approvals import parse_approvals
from harbour.governance.policy.checks import (
    PolicyError,
    fail,
    kind_of,
    read_amount,
    read_choice,
    read_clock,
    read_id_set,
    read_integer,
    read_object,
    read_text,
    read_zone,
)
from harbour.governance.policy.model import (
    ACTIONS,
    DAYS,
    DESTINATION_KINDS,
    PERS,
    Action,
    AmountRange,
    CountLimit,
    DestinationCondition,
    DestinationKind,
    Match,
    Per,
    Rule,
    Sweep,
    TimeWindow,
    Velocity,
    clock_text,
)
from harbour.util.strictjson import MAX_DEPTH, DuplicateKey, NotJsonConstant, TooDeep, loads_strict

FORMAT_VERSION: Final = 1
MAX_WINDOW_SECONDS: Final = 366 * 86_400
MAX_COUNT: Final = 1_000_000_000
MAX_RULES: Final = 1_000
MAX_DESCRIPTION_LENGTH: Final = 2_000
MAX_SWEEPS: Final = 100


@dataclass(frozen=True)
class Policy:
    """An ordered list of rules. Build it with :meth:`from_document`, which validates; the constructor does not."""

    rules: tuple[Rule, ...]
    sweeps: tuple[Sweep, ...] = ()
    """The organisation's sweep settings, one per asset (written only when there are any, so a policy without
    them keeps the document and digest it had before sweeps existed)."""

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

    def depends_on_initiator(self) -> bool:
        """Whether who asked for a withdrawal can change the decision: a rule names initiators or roles, or limits per
        initiator. Then only a request its initiator signed is decided (:mod:`harbour.governance.request`)."""
        for rule in self.rules:
            match = rule.match
            if match.initiators is not None or match.roles is not None:
                return True
            if any(limit is not None and limit.per == "initiator" for limit in (match.velocity, match.count)):
                return True
        return False

    def to_document(self) -> dict[str, Any]:
        """The canonical document: keys sorted, sets sorted, amounts as decimal strings."""
        doc: dict[str, Any] = {"rules": [_rule_doc(r) for r in self.rules], "version": FORMAT_VERSION}
        if self.sweeps:
            doc["sweeps"] = [
                {"asset": w.asset, "initiator": w.initiator, "threshold": str(w.threshold)}
                | ({"gas_top_up": True} if w.gas_top_up else {})
                for w in self.sweeps
            ]
        return cast(dict[str, Any], _sorted_keys(doc))

    def canonical_json(self) -> bytes:
        return json.dumps(self.to_document(), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self) -> str:
        """SHA-256 (hex) of the canonical JSON: the identity of this policy version."""
        return hashlib.sha256(self.canonical_json()).hexdigest()


# --------------------------------------------------------------------------- parsing


def _parse_policy(doc: object) -> Policy:
    obj = read_object(doc, "", ("rules",), ("version", "sweeps"))
    if "version" in obj and (type(obj["version"]) is not int or obj["version"] != FORMAT_VERSION):
        fail("version", f"unsupported format version {obj['version']!r} (this engine reads {FORMAT_VERSION})")
    rules_doc = obj["rules"]
    if not isinstance(rules_doc, list | tuple):
        fail("rules", f"expected an array, got {kind_of(rules_doc)}")
    if len(rules_doc) > MAX_RULES:
        fail("rules", f"more than {MAX_RULES} rules")
    rules: list[Rule] = []
    names: dict[str, int] = {}
    for i, rule_doc in enumerate(rules_doc):
        rule = _parse_rule(rule_doc, f"rules[{i}]")
        folded = rule.name.casefold()
        if folded in names:
            fail(f"rules[{i}].name", f"duplicate rule name {rule.name!r} (also rules[{names[folded]}])")
        names[folded] = i
        rules.append(rule)
    return Policy(tuple(rules), _parse_sweeps(obj["sweeps"]) if "sweeps" in obj else ())


def _parse_sweeps(doc: object) -> tuple[Sweep, ...]:
    if not isinstance(doc, list | tuple):
        fail("sweeps", f"expected an array, got {kind_of(doc)}")
    if len(doc) > MAX_SWEEPS:
        fail("sweeps", f"more than {MAX_SWEEPS} sweep settings")
    sweeps: list[Sweep] = []
    for i, item in enumerate(doc):
        path = f"sweeps[{i}]"
        obj = read_object(item, path, ("asset", "threshold", "initiator"), ("gas_top_up",))
        asset = read_text(obj["asset"], f"{path}.asset")
        if any(w.asset == asset for w in sweeps):
            fail(f"{path}.asset", f"{asset!r} has a sweep setting already: one per asset")
        threshold = read_amount(obj["threshold"], f"{path}.threshold")
        if threshold <= 0:
            fail(f"{path}.threshold", "must be above zero: a sweep of nothing pays a fee for nothing")
        top_up = obj.get("gas_top_up", False)
        if type(top_up) is not bool:
            fail(f"{path}.gas_top_up", f"expected true or false, got {kind_of(top_up)}")
        sweeps.append(Sweep(asset, threshold, read_text(obj["initiator"], f"{path}.initiator"), top_up))
    return tuple(sorted(sweeps, key=lambda w: w.asset))


def _parse_rule(doc: object, path: str) -> Rule:
    obj = read_object(doc, path, ("name", "action"), ("description", "match", "approvals"))
    name = read_text(obj["name"], f"{path}.name")
    action = cast(Action, read_choice(obj["action"], f"{path}.action", ACTIONS))
    description = (
        read_text(obj["description"], f"{path}.description", MAX_DESCRIPTION_LENGTH, multiline=True)
        if "description" in obj
        else None
    )
    match = _parse_match(obj["match"], f"{path}.match") if "match" in obj else Match()
    approvals = None
    if action == "require_approval":
        if "approvals" not in obj:
            fail(f"{path}.approvals", "required when action is require_approval")
        approvals = parse_approvals(obj["approvals"], f"{path}.approvals")
    elif "approvals" in obj:
        fail(f"{path}.approvals", f"allowed only when action is require_approval, not {action}")
    return Rule(name, action, match, approvals, description)


def _parse_match(doc: object, path: str) -> Match:
    keys = ("initiators", "roles", "vaults", "destination", "assets", "amount", "velocity", "count", "time")
    obj = read_object(doc, path, (), keys)
    sets = {k: read_id_set(obj[k], f"{path}.{k}") for k in ("initiators", "roles", "vaults", "assets") if k in obj}
    assets = sets.get("assets")
    destination = _parse_destination(obj["destination"], f"{path}.destination") if "destination" in obj else None
    amount = None
    if "amount" in obj:
        amount = _parse_amount_range(obj["amount"], f"{path}.amount")
        if assets is None:
            fail(f"{path}.amount", "an amount limit needs match.assets, since base units differ between assets")
    velocity = None
    if "velocity" in obj:
        velocity = _parse_velocity(obj["velocity"], f"{path}.velocity")
        if velocity.asset is None and assets is None:
            fail(
                f"{path}.velocity", "needs an asset (velocity.asset or match.assets): base units differ between assets"
            )
        if velocity.asset is not None and assets is not None and velocity.asset not in assets:
            fail(f"{path}.velocity.asset", f"{velocity.asset!r} is not in match.assets, so the rule could never match")
    count = _parse_count(obj["count"], f"{path}.count") if "count" in obj else None
    if count is not None and count.asset is not None and assets is not None and count.asset not in assets:
        fail(f"{path}.count.asset", f"{count.asset!r} is not in match.assets, so the rule could never match")
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
    obj = read_object(doc, path, ("kind",), ("entries",))
    kind = cast(DestinationKind, read_choice(obj["kind"], f"{path}.kind", DESTINATION_KINDS))
    entries = None
    if "entries" in obj:
        if kind not in ("address_book", "whitelisted"):
            fail(f"{path}.entries", f"allowed only with kind address_book or whitelisted, not {kind}")
        entries = read_id_set(obj["entries"], f"{path}.entries")
    return DestinationCondition(kind, entries)


def _parse_amount_range(doc: object, path: str) -> AmountRange:
    obj = read_object(doc, path, (), ("min", "max"))
    if not obj:
        fail(path, "needs min, max or both")
    low = read_amount(obj["min"], f"{path}.min") if "min" in obj else None
    high = read_amount(obj["max"], f"{path}.max") if "max" in obj else None
    if low is not None and high is not None and low > high:
        fail(f"{path}.max", f"{high} is below min {low}")
    return AmountRange(low, high)


def _parse_window(obj: Mapping[str, Any], path: str) -> tuple[int, Per, str | None]:
    window = read_integer(obj["window_seconds"], f"{path}.window_seconds", 1, MAX_WINDOW_SECONDS)
    per = cast(Per, read_choice(obj["per"], f"{path}.per", PERS))
    asset = read_text(obj["asset"], f"{path}.asset") if "asset" in obj else None
    return window, per, asset


def _parse_velocity(doc: object, path: str) -> Velocity:
    obj = read_object(doc, path, ("window_seconds", "max_amount", "per"), ("asset",))
    window, per, asset = _parse_window(obj, path)
    return Velocity(window, read_amount(obj["max_amount"], f"{path}.max_amount"), per, asset)


def _parse_count(doc: object, path: str) -> CountLimit:
    obj = read_object(doc, path, ("window_seconds", "max_count", "per"), ("asset",))
    window, per, asset = _parse_window(obj, path)
    return CountLimit(window, read_integer(obj["max_count"], f"{path}.max_count", 0, MAX_COUNT), per, asset)


def _parse_time(doc: object, path: str) -> TimeWindow:
    obj = read_object(doc, path, ("timezone",), ("days", "from", "to"))
    zone = read_zone(obj["timezone"], f"{path}.timezone")
    days = None
    if "days" in obj:
        days = read_id_set(obj["days"], f"{path}.days")
        for i, day in enumerate(obj["days"]):
            if day not in DAYS:
                fail(f"{path}.days[{i}]", f"expected one of {', '.join(DAYS)}, got {day!r}")
    if ("from" in obj) != ("to" in obj):
        fail(f"{path}.{'to' if 'from' in obj else 'from'}", "from and to go together")
    start = end = None
    if "from" in obj:
        start = read_clock(obj["from"], f"{path}.from", end=False)
        end = read_clock(obj["to"], f"{path}.to", end=True)
        if start == end:
            fail(f"{path}.to", "equals from; omit both for the whole day")
    if days is None and start is None:
        fail(path, "needs days, from/to or both")
    return TimeWindow(zone, days, start, end)


# --------------------------------------------------------------------------- writing


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
            time["from"], time["to"] = clock_text(m.time.start), clock_text(m.time.end)
        match["time"] = time
    doc = {"name": rule.name, "action": rule.action, "match": match}
    if rule.description is not None:
        doc["description"] = rule.description
    if rule.approvals is not None:
        doc["approvals"] = rule.approvals.to_json()
    return doc
