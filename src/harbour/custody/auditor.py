"""The auditor's reads of the audit log: pages of events, the signed head, and the proofs against it.

Only auditors and admins read the log, and only their own organisation's
events: the head and the consistency proofs are of the whole log (one tree for
the service), but an inclusion proof is handed out only for an event of the
caller's organisation.
"""

from __future__ import annotations

from typing import Any

from harbour.custody.actors import Actor, require
from harbour.custody.audit import AuditLog
from harbour.custody.errors import Invalid, NotFound
from harbour.custody.uow import UnitOfWork
from harbour.custody.views import Page


class Auditor:
    def __init__(self, uow: UnitOfWork, audit: AuditLog) -> None:
        self.uow = uow
        self.audit = audit

    def audit_events(self, actor: Actor, page: Page) -> dict[str, Any]:
        require(actor, "auditor", "admin")
        after = None
        if page.cursor is not None:
            if not page.cursor.isdigit() or len(page.cursor) > 18:
                raise Invalid("cursor is not one this service issued")
            after = int(page.cursor)
        with self.uow.read() as s:
            events = self.audit.events(s, org_id=actor.org_id, after=after, limit=page.limit + 1)
        more = len(events) > page.limit
        events = events[: page.limit]
        return {"items": events, "next_cursor": str(events[-1]["index"]) if more else None}

    def audit_head(self, actor: Actor) -> dict[str, Any]:
        require(actor, "auditor", "admin")
        with self.uow.read() as s:
            return self.audit.head(s)

    def audit_proof(self, actor: Actor, index: int, tree_size: int | None = None) -> dict[str, Any]:
        require(actor, "auditor", "admin")
        with self.uow.read() as s:
            proof = self.audit.inclusion(s, index, tree_size)
        if proof["event"].get("org_id") != actor.org_id:
            raise NotFound(f"no audit event {index} in this organisation")
        return proof

    def audit_consistency(self, actor: Actor, old: int, new: int) -> dict[str, Any]:
        require(actor, "auditor", "admin")
        with self.uow.read() as s:
            return self.audit.consistency(s, old, new)
