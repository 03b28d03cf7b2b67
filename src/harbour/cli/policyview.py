"""A policy change as an admin reads it before signing: its rules, line by line, marked against the policy in force.

The entry's change line says only ``policy <digest>``; a digest tells no one
that a threshold fell from two to one. So ``harbour approve`` shows the proposed
policy, decoded from the very entry bytes that will be signed, one line per rule
(its conditions, its action, its approval groups) and per sweep setting, with
each line marked ``+`` (new), ``-`` (gone) or left plain (unchanged) against the
policy in force in the log this CLI replayed and verified
(:func:`harbour.cli.review.check_place_in_log`). Users, vaults and address-book
entries appear by their names in that verified state, so ``tina`` reads as tina
and not as a UUID; an id the state does not know is shown as it is.

Two different policies must never read alike, or an admin told "the same"
signs a change unseen. A name is free text (``alice, bob`` is one valid name),
so each is quoted (``'alice, bob'`` is not ``'alice', 'bob'``), with a short id
beside one that holds a character beyond ASCII (where look-alike letters
live), and an id the state does not name stays unquoted, so no name reads as
it. And whether the proposal is the policy in force is decided by the
canonical documents' digests, never by these lines: if two different policies
still read alike line by line, their canonical documents are shown instead.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harbour.governance.policy import Policy
    from harbour.governance.state import OrgState

SAME = "  rules:   the same as the policy in force (only its form differs)"
"""What :func:`review` says when the proposal's canonical document is the one in force (it was written by names,
in another order, ...): said on the digests' word alone."""


@dataclass(frozen=True)
class _Shown:
    """A user, vault or entry as a line shows it, and the key it is listed by (names as people look them up)."""

    text: str
    order: tuple[str, str]


def policy_lines(policy: Policy, state: OrgState) -> list[str]:
    """``policy`` as lines a person reads: one per rule with its approvals, and one per sweep setting."""
    users = {u.id: u.name for u in state.users.values()}
    vaults = {v.id: v.name for v in state.vaults.values()}
    entries = {e.id: e.name for e in state.address_book.values()}
    doc = policy.to_document()
    lines: list[str] = []
    for index, rule in enumerate(doc.get("rules") or []):
        match: dict[str, Any] = dict(rule.get("match") or {})
        for key, names in (("initiators", users), ("vaults", vaults)):
            if key in match:
                match[key] = _named(match[key], names, _json_text)
        destination = match.get("destination")
        if isinstance(destination, dict) and "entries" in destination:
            match["destination"] = {**destination, "entries": _named(destination["entries"], entries, _json_text)}
        conditions = _conditions(match) if match else "any"
        lines.append(f"rule {index + 1} {rule.get('name')!r}: {rule.get('action')} when {conditions}")
        approvals = rule.get("approvals")
        if isinstance(approvals, dict):
            for group in approvals.get("groups") or []:
                members = ", ".join(s.text for s in _named(group.get("members") or [], users))
                lines.append(
                    f"rule {index + 1} {rule.get('name')!r}: approvals ({approvals.get('combine')}) "
                    f"group {group.get('name')!r}: {group.get('threshold')} of {members}"
                )
    for setting in doc.get("sweeps") or []:
        top_up = ", with gas top-up" if setting.get("gas_top_up") else ""
        initiator = _named([setting.get("initiator")], users)[0].text
        lines.append(f"sweep {setting.get('asset')!r} at {setting.get('threshold')} by {initiator}{top_up}")
    return lines or ["(no rules: every withdrawal is refused)"]


def review(proposed: Policy, state: OrgState) -> list[str]:
    """The lines ``harbour approve`` shows for a policy change: the proposed rules marked against those in force."""
    in_force = state.policy
    header = f"  policy:  {proposed.digest()} replaces {'none' if in_force is None else in_force.digest()}"
    if in_force is not None and proposed.digest() == in_force.digest():
        return [header, SAME]
    after = policy_lines(proposed, state)
    before = policy_lines(in_force, state) if in_force is not None else []
    note: list[str] = []
    if in_force is not None and after == before:  # two documents that read alike: show the documents themselves
        after, before = [proposed.canonical_json().decode()], [in_force.canonical_json().decode()]
        note = ["  note:    the two policies read alike rule by rule, but differ: their canonical documents follow"]
    marked: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=before, b=after, autojunk=False).get_opcodes():
        if tag == "equal":
            marked.extend(f"      {line}" for line in after[j1:j2])
            continue
        marked.extend(f"    - {line}" for line in before[i1:i2])
        marked.extend(f"    + {line}" for line in after[j1:j2])
    added = sum(1 for line in marked if line.startswith("    +"))
    removed = sum(1 for line in marked if line.startswith("    -"))
    summary = f"  rules:   {added} line(s) added (+), {removed} removed (-), against the policy in force"
    return [header, summary, *note, *marked]


def _named(ids: list[Any], names: Mapping[str, str], quote: Callable[[str], str] = repr) -> list[_Shown]:
    """``ids`` as a line shows them, in the order people look them up (the document's order is the ids').

    A name is quoted (``quote``: ``repr`` in a line, ``json.dumps`` inside the JSON of a rule's conditions), with
    a short id beside it if it holds a character beyond ASCII; an id the state does not name is shown unquoted.
    """
    shown: list[_Shown] = []
    for ident in map(str, ids):
        name = names.get(ident)
        if name is None:
            shown.append(_Shown(ident, (ident.casefold(), ident)))
            continue
        beside = "" if name.isascii() else f" (id {ident[:8]})"
        shown.append(_Shown(f"{quote(name)}{beside}", (name.casefold(), ident)))
    return sorted(shown, key=lambda s: s.order)


def _conditions(value: Any) -> str:
    """A rule's conditions as JSON (keys sorted), except that the users, vaults and entries in it are as
    :func:`_named` shows them."""
    if isinstance(value, _Shown):
        return value.text
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)}: {_conditions(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_conditions(v) for v in value) + "]"
    return _json_text(value)


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
