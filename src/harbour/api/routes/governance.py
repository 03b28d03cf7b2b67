"""``/v1/governance``: the organisation's quorum-signed governance log, entry by entry, and its head."""

from __future__ import annotations

from harbour.api.interface import Json
from harbour.api.params import Paging
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("governance")


@router.get(
    "/governance/entries",
    summary="The governance log's entries, oldest first",
    description=PAGE_DOC + " Each entry is decoded for reading and also given as its signed encoding, to verify.",
    **returns(shapes.GovernanceEntryPage),
)
def governance_entries(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.governance_entries(actor, page)


@router.get("/governance/head", summary="The newest entry and the quorum in force", **returns(shapes.GovernanceHead))
def governance_head(custody: Custody, actor: Actor) -> Json:
    return custody.governance_head(actor)
