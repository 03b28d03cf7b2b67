"""Which approvers count toward which group of a quorum: the one matcher of the service and the nodes.

A quorum is groups, each needing ``threshold`` of its ``members``, combined
``"all"`` (every group met) or ``"any"`` (one group met). Under ``"all"`` a
person fills one threshold seat at most, so "two of treasury and one of
compliance" takes three people even when someone is in both (separation of
duties); people are given seats by a maximum bipartite matching, so the order of
approvals never matters and a quorum these people can meet is found met. The
initiator never counts, and people outside every group count for nothing.

The custody policy (user ids, :class:`harbour.governance.policy.ApprovalRequirement`)
and a signer node re-checking the evidence (approval keys,
:class:`harbour.node.quorum.Quorum`) both decide here, so a node accepts exactly
what the service approved. Members are any hashable, ordered values; the order
only makes the answer deterministic.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from typing import Any, Final, Literal, Protocol, TypeVar, get_args

Combine = Literal["all", "any"]
COMBINES: Final[tuple[str, ...]] = get_args(Combine)


class Member(Hashable, Protocol):
    """What a quorum's members are made of: user ids (``str``) in custody, approval keys (``bytes``) on a node."""

    def __lt__(self, other: Any, /) -> bool: ...


M = TypeVar("M", bound=Member)
M_co = TypeVar("M_co", bound=Member, covariant=True)


class ThresholdGroup(Protocol[M_co]):
    """A group as the matcher reads it (both layers' group classes already are one)."""

    @property
    def members(self) -> frozenset[M_co]: ...

    @property
    def threshold(self) -> int: ...


def counted(
    combine: Combine, groups: Sequence[ThresholdGroup[M]], approvers: Iterable[M], initiator: M | None = None
) -> list[list[M]]:
    """Who counts toward each group, sorted: at most its threshold, and under ``"all"`` each person once.

    ``approvers`` may repeat someone (they count once) and may include the initiator
    (who never counts) or people in no group (who count for nothing).
    """
    if combine not in COMBINES:
        raise ValueError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r:.80}")
    eligible = _eligible(approvers, initiator)
    if combine == "any":
        return [sorted(g.members & eligible)[: g.threshold] for g in groups]
    return _seated(groups, eligible)


def satisfied(
    combine: Combine, groups: Sequence[ThresholdGroup[M]], approvers: Iterable[M], initiator: M | None = None
) -> bool:
    """Whether these approvers meet the quorum. ``"all"`` of no groups needs nobody; ``"any"`` of none is never met."""
    eligible = _eligible(approvers, initiator)
    if combine == "all" and sum(g.threshold for g in groups) > len(eligible):
        return False  # more seats than people: no matching fills them (and none is tried on hostile sizes)
    have = counted(combine, groups, eligible)
    met = [len(c) >= g.threshold for c, g in zip(have, groups, strict=True)]
    return all(met) if combine == "all" else any(met)


def satisfiable(combine: Combine, groups: Sequence[ThresholdGroup[M]], initiator: M | None = None) -> bool:
    """Whether the quorum can be met at all, every member but the initiator approving."""
    everyone: frozenset[M] = frozenset().union(*(g.members for g in groups))
    return satisfied(combine, groups, everyone, initiator)


def _eligible(approvers: Iterable[M], initiator: M | None) -> frozenset[M]:
    return frozenset(approvers) - ({initiator} if initiator is not None else frozenset())


def _seated(groups: Sequence[ThresholdGroup[M]], eligible: frozenset[M]) -> list[list[M]]:
    """A maximum matching of people to the groups' threshold seats, by breadth-first augmenting paths.

    People are tried in sorted order, each shifting the people on a shortest
    augmenting path one seat along, so the result depends only on the inputs.
    """
    seats = [i for i, g in enumerate(groups) for _ in range(g.threshold)]
    holder: list[M | None] = [None] * len(seats)
    seat_of: dict[M, int] = {}
    seats_for: dict[M, list[int]] = {person: [] for person in eligible}
    start = 0
    for g in groups:  # each person's seats in ascending order, the order the search tries them
        for person in g.members & eligible:
            seats_for[person].extend(range(start, start + g.threshold))
        start += g.threshold

    for approver in sorted(eligible):
        queue: deque[M] = deque([approver])
        reached_by: dict[int, M] = {}
        free: int | None = None
        while queue and free is None:
            person = queue.popleft()
            for seat in seats_for[person]:
                if seat in reached_by:
                    continue
                reached_by[seat] = person
                occupant = holder[seat]
                if occupant is None:
                    free = seat
                    break
                queue.append(occupant)
        while free is not None:  # shift every approver on the path one seat along
            mover = reached_by[free]
            previous = seat_of.get(mover)
            holder[free], seat_of[mover] = mover, free
            free = previous
    seated: list[list[M]] = [[] for _ in groups]
    for seat, who in enumerate(holder):
        if who is not None:
            seated[seats[seat]].append(who)
    return [sorted(c) for c in seated]
