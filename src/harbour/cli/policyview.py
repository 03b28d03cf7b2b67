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
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harbour.governance.policy import Policy
    from harbour.governance.state import OrgState


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
                match[key] = _named(match[key], names)
        destination = match.get("destination")
        if isinstance(destination, dict) and "entries" in destination:
            match["destination"] = {**destination, "entries": _named(destination["entries"], entries)}
        conditions = json.dumps(match, sort_keys=True, separators=(", ", ": "), ensure_ascii=False) if match else "any"
        lines.append(f"rule {index + 1} {rule.get('name')!r}: {rule.get('action')} when {conditions}")
        approvals = rule.get("approvals")
        if isinstance(approvals, dict):
            for group in approvals.get("groups") or []:
                members = ", ".join(_named(group.get("members") or [], users))
                lines.append(
                    f"rule {index + 1} {rule.get('name')!r}: approvals ({approvals.get('combine')}) "
                    f"group {group.get('name')!r}: {group.get('threshold')} of {members}"
                )
    for setting in doc.get("sweeps") or []:
        top_up = ", with gas top-up" if setting.get("gas_top_up") else ""
        initiator = _named([setting.get("initiator")], users)[0]
        lines.append(f"sweep {setting.get('asset')} at {setting.get('threshold')} by {initiator}{top_up}")
    return lines or ["(no rules: every withdrawal is refused)"]


def review(proposed: Policy, state: OrgState) -> list[str]:
    """The lines ``harbour approve`` shows for a policy change: the proposed rules marked against those in force."""
    after = policy_lines(proposed, state)
    before = policy_lines(state.policy, state) if state.policy is not None else []
    in_force = "none" if state.policy is None else state.policy.digest()
    header = f"  policy:  {proposed.digest()} replaces {in_force}"
    if after == before:
        return [header, "  rules:   the same as the policy in force (only its form differs)"]
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
    return [header, summary, *marked]


def _named(ids: list[Any], names: Mapping[str, str]) -> list[str]:
    """The names of ``ids`` in the order people look them up (the document's order is the ids')."""
    return sorted((names.get(str(i), str(i)) for i in ids), key=str.casefold)
