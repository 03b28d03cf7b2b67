"""The one quorum matcher (governance/matching.py), on its own: any member type, the same answers.

The policy engine and the signer nodes are tested through it in test_policy.py,
test_quorum.py and test_quorum_equivalence.py; these are the matcher's own edges.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from harbour.governance import matching


@dataclass(frozen=True)
class G:
    members: frozenset[int]
    threshold: int


def g(threshold: int, *members: int) -> G:
    return G(frozenset(members), threshold)


def test_members_can_be_any_ordered_values() -> None:
    groups = [g(1, 1, 2), g(1, 1)]
    assert matching.counted("all", groups, [2, 1, 1]) == [[2], [1]]
    assert matching.satisfied("all", groups, {1, 2}) and not matching.satisfied("all", groups, {1})


def test_a_person_moves_to_the_one_group_only_they_can_fill() -> None:
    groups = [g(2, 1, 2, 3), g(1, 1)]
    assert matching.counted("all", groups, {1, 2, 3}) == [[2, 3], [1]]


def test_the_initiator_never_counts_and_strangers_count_for_nothing() -> None:
    groups = [g(2, 1, 2, 3)]
    assert matching.counted("all", groups, {1, 2, 9}, initiator=1) == [[2]]
    assert not matching.satisfied("all", groups, {1, 2, 9}, initiator=1)
    assert matching.satisfied("any", groups, {2, 3}, initiator=1)
    assert matching.satisfiable("all", groups, initiator=1)
    assert not matching.satisfiable("all", [g(3, 1, 2, 3)], initiator=1)


def test_all_of_no_groups_needs_nobody_and_any_of_none_is_never_met() -> None:
    assert matching.satisfied("all", [], set())
    assert not matching.satisfied("any", [], {1, 2})


def test_any_counts_up_to_each_threshold_and_may_count_a_person_twice() -> None:
    groups = [g(1, 1, 2), g(2, 1, 2, 3)]
    assert matching.counted("any", groups, {1, 2}) == [[1], [1, 2]]


def test_more_seats_than_people_is_not_met_without_searching() -> None:
    huge = [g(10**6, *range(3))]
    assert not matching.satisfied("all", huge, {0, 1, 2})


def test_an_unknown_combine_is_refused() -> None:
    with pytest.raises(ValueError, match="combine"):
        matching.satisfied("most", [g(1, 1)], {1})  # type: ignore[arg-type]
