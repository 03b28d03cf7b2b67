"""Who must approve a transaction: groups of approvers, each with a threshold, combined with ``all`` or ``any``.

A requirement is what a matched ``require_approval`` rule hands on: the service
stores it with the transaction (as :meth:`ApprovalRequirement.to_json` writes it)
and counts approvals against it until it is met, long after the policy that set it
may have changed. It is its own module because it lives that long, and because the
signer nodes count the same quorum with the same matcher (:mod:`harbour.governance.matching`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal, cast

from harbour.governance import matching
from harbour.governance.policy.checks import (
    check_id,
    fail,
    kind_of,
    read_choice,
    read_id_set,
    read_integer,
    read_object,
    read_text,
)

MAX_GROUPS: Final = 16

Combine = Literal["all", "any"]
COMBINES: Final[tuple[Combine, ...]] = ("all", "any")


@dataclass(frozen=True)
class ApprovalGroup:
    name: str
    members: frozenset[str]
    threshold: int

    def __post_init__(self) -> None:
        check_id(self.name, "group name")
        if isinstance(self.members, str | bytes):
            raise TypeError("members must be a collection of user ids, not a single string")
        object.__setattr__(self, "members", frozenset(self.members))
        if not self.members:
            raise ValueError(f"group {self.name!r} has no members")
        for member in self.members:
            check_id(member, "every group member")
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
        check_id(approver, "every approver")
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
    matcher is :mod:`harbour.governance.matching`, so the signer nodes count alike.
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
        return parse_approvals(doc, "approvals")

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


def parse_approvals(doc: object, path: str) -> ApprovalRequirement:
    """The ``approvals`` object at ``path`` of a document; a fault raises PolicyError naming its path."""
    obj = read_object(doc, path, ("combine", "groups"))
    combine = cast(Combine, read_choice(obj["combine"], f"{path}.combine", COMBINES))
    groups_doc = obj["groups"]
    if not isinstance(groups_doc, list | tuple):
        fail(f"{path}.groups", f"expected an array, got {kind_of(groups_doc)}")
    if not groups_doc:
        fail(f"{path}.groups", "needs at least one group")
    if len(groups_doc) > MAX_GROUPS:
        fail(f"{path}.groups", f"more than {MAX_GROUPS} groups")
    groups: list[ApprovalGroup] = []
    for i, group_doc in enumerate(groups_doc):
        gpath = f"{path}.groups[{i}]"
        g = read_object(group_doc, gpath, ("name", "members", "threshold"))
        name = read_text(g["name"], f"{gpath}.name")
        if any(name == other.name for other in groups):
            fail(f"{gpath}.name", f"duplicate group name {name!r}")
        members = read_id_set(g["members"], f"{gpath}.members")
        if type(g["threshold"]) is int and g["threshold"] > len(members):
            fail(f"{gpath}.threshold", f"{g['threshold']} exceeds the {len(members)} members")
        threshold = read_integer(g["threshold"], f"{gpath}.threshold", 1, len(members))
        groups.append(ApprovalGroup(name, members, threshold))
    return ApprovalRequirement(combine, tuple(groups))
