"""The quorum: which approvers' keys must have approved, in named groups with thresholds.

The custody service turns its policy into this rule (``"all"`` groups, each
approver counting toward one at most, or ``"any"`` one of them) and the node
counts with the same matcher (:mod:`harbour.governance.matching`) as the policy engine,
so both decide alike. The rule only counts; which signatures are valid and which
keys the node trusts is :mod:`harbour.node.quorum.check`'s business.
"""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass
from typing import Any, Final

from harbour.governance import matching
from harbour.governance.matching import COMBINES, Combine
from harbour.node.quorum.fields import EvidenceError, _public_key, _text, _uint

MAX_GROUPS: Final = 32
MAX_GROUP_MEMBERS: Final = 64
MAX_QUORUM_MEMBERS: Final = 256
"""Members summed over the groups: enough for any committee, small enough that the evidence stays bounded."""
MAX_NAME_LEN: Final = 64


@dataclass(frozen=True)
class Group:
    """At least ``threshold`` of ``members`` (Ed25519 public keys) must approve.

    A group may have fewer members than its threshold, or none (a policy group
    whose users have no approval keys): it is then never met, which is not an
    error under ``"any"``.
    """

    name: str
    threshold: int
    members: frozenset[bytes]

    def __post_init__(self) -> None:
        _text("group name", self.name, MAX_NAME_LEN)
        object.__setattr__(self, "members", frozenset(self.members))
        if len(self.members) > MAX_GROUP_MEMBERS:
            raise EvidenceError(f"group {self.name!r} has more than {MAX_GROUP_MEMBERS} members")
        for member in self.members:
            _public_key(f"a member of group {self.name!r}", member)
        _uint(f"the threshold of group {self.name!r}", self.threshold, 1, MAX_GROUP_MEMBERS)

    def count(self, approvers: Set[bytes]) -> int:
        return len(self.members & approvers)


@dataclass(frozen=True)
class Quorum:
    """Which approvals a transaction needs: ``"all"`` groups satisfied, or ``"any"`` one of them.

    Under ``"all"`` an approver counts toward one group at most: "two of treasury
    and one of compliance" takes three different people even if someone is in both
    groups. The matcher is :mod:`harbour.governance.matching`, the policy engine's too, so
    a node counts exactly as the service did. ``initiator`` is the initiator's
    approval key, if they have one: their approval never counts, and evidence that
    includes it is refused. No groups (with ``"all"``) means the service requires no approval; a
    node's ``min_approvals`` can still insist.
    """

    combine: Combine
    groups: tuple[Group, ...]
    initiator: bytes | None = None

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise EvidenceError(f"combine must be one of {', '.join(COMBINES)}, got {self.combine!r:.80}")
        groups = tuple(self.groups)
        if not all(isinstance(g, Group) for g in groups):
            raise EvidenceError("groups must be Group objects")
        if len(groups) > MAX_GROUPS:
            raise EvidenceError(f"at most {MAX_GROUPS} groups")
        if not groups and self.combine == "any":
            raise EvidenceError("'any' of no groups can never be satisfied; use 'all' of none for no approvals")
        names = [g.name for g in groups]
        if len(set(names)) != len(names):
            raise EvidenceError("two groups have the same name")
        if sum(len(g.members) for g in groups) > MAX_QUORUM_MEMBERS:
            raise EvidenceError(f"at most {MAX_QUORUM_MEMBERS} members over all groups")
        if self.initiator is not None:
            _public_key("initiator", self.initiator)
        object.__setattr__(self, "groups", tuple(sorted(groups, key=lambda g: g.name)))

    @property
    def members(self) -> frozenset[bytes]:
        return frozenset().union(*(g.members for g in self.groups))

    def satisfied(self, approvers: Set[bytes]) -> bool:
        """Whether these approvers (the initiator's key, if among them, is ignored) meet the quorum."""
        return matching.satisfied(self.combine, self.groups, approvers, self.initiator)

    def explain(self, approvers: Set[bytes]) -> str:
        eligible = frozenset(approvers) - {self.initiator}
        parts = [f"{g.name}: {g.count(eligible)} of {g.threshold}" for g in self.groups]
        rule = "all, each approver counting toward one group" if self.combine == "all" else "any"
        return f"{rule} of [{', '.join(parts)}]"

    def to_cbor(self) -> dict[str, Any]:
        return {
            "combine": self.combine,
            "groups": [{"name": g.name, "threshold": g.threshold, "members": sorted(g.members)} for g in self.groups],
            "initiator": self.initiator,
        }

    @classmethod
    def from_cbor(cls, obj: object) -> Quorum:
        if not isinstance(obj, dict) or set(obj) != {"combine", "groups", "initiator"}:
            raise EvidenceError("a quorum is a map of exactly 'combine', 'groups' and 'initiator'")
        groups = obj["groups"]
        if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
            raise EvidenceError(f"groups must be a list of at most {MAX_GROUPS}")
        parsed = []
        for g in groups:
            if not isinstance(g, dict) or set(g) != {"name", "threshold", "members"}:
                raise EvidenceError("a group is a map of exactly 'name', 'threshold' and 'members'")
            members = g["members"]
            if not isinstance(members, list) or len(members) > MAX_GROUP_MEMBERS:
                raise EvidenceError(f"members must be a list of at most {MAX_GROUP_MEMBERS} keys")
            if not all(type(m) is bytes for m in members):
                raise EvidenceError("members must be byte strings")
            parsed.append(Group(g["name"], g["threshold"], frozenset(members)))
        return cls(obj["combine"], tuple(parsed), obj["initiator"])
