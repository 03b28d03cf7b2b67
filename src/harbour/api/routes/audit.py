"""``/v1/audit``: the audit log's events, its signed tree head, and RFC 9162 proofs against it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import IndexPaging
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("audit")

TreeSize = Annotated[int, Query(ge=1, le=schemas.MAX_INDEX)]


@router.get(
    "/audit/events", summary="Audit events, oldest first", description=PAGE_DOC, **returns(shapes.AuditEventPage)
)
def audit_events(custody: Custody, actor: Actor, page: IndexPaging) -> Json:
    return custody.audit_events(actor, page)


@router.get("/audit/head", summary="The signed tree head of the audit log", **returns(shapes.TreeHead))
def audit_head(custody: Custody, actor: Actor) -> Json:
    return custody.audit_head(actor)


@router.get("/audit/proof/{index}", summary="Inclusion proof of one event (RFC 9162)", **returns(shapes.InclusionProof))
def audit_proof(
    custody: Custody,
    actor: Actor,
    index: Annotated[int, Path(ge=0, le=schemas.MAX_INDEX)],
    tree_size: Annotated[int | None, Query(ge=1, le=schemas.MAX_INDEX)] = None,
) -> Json:
    return custody.audit_proof(actor, index, tree_size)


@router.get(
    "/audit/consistency",
    summary="Consistency proof between two tree sizes (RFC 9162)",
    **returns(shapes.ConsistencyProof),
)
def audit_consistency(custody: Custody, actor: Actor, old: TreeSize, new: TreeSize) -> Json:
    return custody.audit_consistency(actor, old, new)
