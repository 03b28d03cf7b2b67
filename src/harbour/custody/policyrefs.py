"""What a proposed policy names: users, vaults and address-book entries, by id or by name, each one that exists.

A policy in force is the canonical document in the governance log, and the
signer nodes count approvals against the user ids it holds, so the document the
admins sign holds ids. People write names (``"members": ["tina", "tom"]``, as
docs/policy.md does), so before a policy is proposed (and in a genesis) each
value that is not an id of the organisation but is the name of exactly one
user, vault or address-book entry (compared by :func:`harbour.util.text.name_key`,
as the log keeps names unique) is replaced by that id: the signed policy is the
one the author meant, and ``harbour approve`` shows it with the names beside.

Then everything it names must exist, and everyone whose approval it asks for
must be able to give one: a member of an approval group is an enabled user with
the approver role and an approval key (:func:`harbour.governance.decide.approvers`
counts no one else). A policy that waits for someone who cannot sign would put
every matching withdrawal in a wait no one can end, so it is refused (HTTP 422)
naming the rule, the group and the member, instead of becoming the policy in force.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Protocol

from harbour.custody.errors import Invalid
from harbour.governance import policy as pol
from harbour.governance.state import User
from harbour.util.text import name_key


class Named(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def name(self) -> str: ...


class _Names:
    """One kind of thing (users, vaults, entries): its ids, and its names' keys."""

    def __init__(self, noun: str, things: Iterable[Named]) -> None:
        self.noun = noun
        self.ids = {t.id: t.name for t in things}
        self.by_key: dict[str, list[str]] = {}
        for ident, name in self.ids.items():
            self.by_key.setdefault(name_key(name), []).append(ident)

    def one(self, value: str) -> str:
        """The id ``value`` is (an id comes first) or names (exactly one thing); unchanged if neither."""
        if value in self.ids:
            return value
        found = self.by_key.get(name_key(value), [])
        return found[0] if len(found) == 1 else value

    def many(self, values: frozenset[str], where: str) -> frozenset[str]:
        resolved: dict[str, str] = {}
        for value in sorted(values):
            ident = self.one(value)
            if ident in resolved:
                raise Invalid(
                    f"policy: {where} names {self.noun} {self.ids.get(ident, ident)!r} twice "
                    f"({resolved[ident]!r} and {value!r})"
                )
            resolved[ident] = value
        return frozenset(resolved)

    def unknown(self, values: Iterable[str]) -> list[str]:
        return sorted(v for v in values if v not in self.ids)


def resolve(
    policy: pol.Policy,
    users: Iterable[Named],
    vaults: Iterable[Named] = (),
    entries: Iterable[Named] = (),
) -> pol.Policy:
    """``policy`` with every user, vault and address-book entry it names by name named by id instead.

    Invalid if one thing is named twice in one list (by its name and its id).
    A value that is neither an id nor a name is left as it is: :func:`refusal` names it.
    """
    who, which, book = _Names("user", users), _Names("vault", vaults), _Names("address-book entry", entries)
    rules = []
    for rule in policy.rules:
        where = f"rule {rule.name!r}"
        match = rule.match
        if match.initiators is not None:
            match = replace(match, initiators=who.many(match.initiators, f"{where} (initiators)"))
        if match.vaults is not None:
            match = replace(match, vaults=which.many(match.vaults, f"{where} (vaults)"))
        if match.destination is not None and match.destination.entries is not None:
            entries_ = book.many(match.destination.entries, f"{where} (destination entries)")
            match = replace(match, destination=replace(match.destination, entries=entries_))
        approvals = rule.approvals
        if approvals is not None:
            groups = tuple(
                replace(g, members=who.many(g.members, f"{where}, group {g.name!r}")) for g in approvals.groups
            )
            approvals = replace(approvals, groups=groups)
        rules.append(replace(rule, match=match, approvals=approvals))
    sweeps = tuple(replace(s, initiator=who.one(s.initiator)) for s in policy.sweeps)
    return replace(policy, rules=tuple(rules), sweeps=sweeps)


def refusal(
    policy: pol.Policy,
    users: Mapping[str, User],
    vaults: Iterable[Named] = (),
    entries: Iterable[Named] = (),
) -> str | None:
    """Why ``policy`` names something that does not exist or someone who cannot approve (None: it does not)."""
    which, book = _Names("vault", vaults), _Names("address-book entry", entries)
    for rule in policy.rules:
        where = f"rule {rule.name!r}"
        match = rule.match
        unknown = sorted(u for u in match.initiators or () if u not in users)
        if unknown:
            return f"{where} (initiators) names {_listed(unknown)}, no user of the organisation (by id or name)"
        unknown = which.unknown(match.vaults or ())
        if unknown:
            return f"{where} (vaults) names {_listed(unknown)}, no vault of the organisation (by id or name)"
        unknown = book.unknown(match.destination.entries or ()) if match.destination else []
        if unknown:
            return (
                f"{where} (destination entries) names {_listed(unknown)}, no address-book entry of the "
                "organisation (by id or name)"
            )
        for group in rule.approvals.groups if rule.approvals else ():
            for member in sorted(group.members):
                problem = _cannot_approve(users.get(member), member)
                if problem:
                    return f"{where}, group {group.name!r}: member {problem}, so their approval could never count"
    return None


def _cannot_approve(user: User | None, member: str) -> str | None:
    if user is None:
        return f"{member!r} is no user of the organisation (by id or name)"
    named = f"{user.name!r} ({user.id})"
    if user.disabled:
        return f"{named} is disabled"
    if "approver" not in user.roles:
        return f"{named} does not hold the approver role"
    if user.approval_key is None:
        return f"{named} has no approval key to sign with"
    return None


def _listed(values: list[str]) -> str:
    return ", ".join(repr(v) for v in values)
