"""``/v1/governance``: the organisation's quorum-signed governance log, entry by entry, its head, and its nodes.

The signer nodes the log names are where the organisation's vault keys may be
made; adding or removing one is a governance change (202, signed by the proposer
and the admin quorum) like any other.
"""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import IndexPaging, NodeName
from harbour.api.routing import PAGE_DOC, PENDING, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("governance")


@router.get(
    "/governance/entries",
    summary="The governance log's entries, oldest first",
    description=PAGE_DOC + " Each entry is decoded for reading and also given as its signed encoding, to verify.",
    **returns(shapes.GovernanceEntryPage),
)
def governance_entries(custody: Custody, actor: Actor, page: IndexPaging) -> Json:
    return custody.governance_entries(actor, page)


@router.get("/governance/head", summary="The newest entry and the quorum in force", **returns(shapes.GovernanceHead))
def governance_head(custody: Custody, actor: Actor) -> Json:
    return custody.governance_head(actor)


@router.get(
    "/governance/nodes",
    summary="The signer nodes the log names, and the deployment's nodes it does not",
    description="The organisation's vault keys are made, and reshared, only on the nodes the log names (`in_log`); "
    "`configured` says whether this deployment is configured with the node (custody.json `nodes`, same identity "
    "key).",
    **returns(shapes.GovernanceNodes),
)
def list_nodes(custody: Custody, actor: Actor) -> Json:
    return custody.list_nodes(actor)


@router.post(
    "/governance/nodes",
    summary="Propose adding one of the deployment's signer nodes to the log (`node.add`)",
    description="The node is named as this deployment is configured with it; its identity key is its descriptor's, "
    "which the admins compare with the one its operator reads from the node before they sign. A node the log "
    "names under another key (one that rotated its identity) is removed and added again in the same entry. " + PENDING,
    **returns(shapes.GovernanceTransaction, 202),
)
def add_node(custody: Custody, actor: Actor, body: schemas.AddNode) -> Json:
    return custody.add_node(actor, body.name)


@router.post(
    "/governance/nodes/{name}/remove",
    summary="Propose removing a signer node from the log (`node.remove`)",
    description="No new vault key of the organisation is made on, or reshared to, the node once it lands; keys it "
    "holds already keep their committee. " + PENDING,
    **returns(shapes.GovernanceTransaction, 202),
)
def remove_node(custody: Custody, actor: Actor, name: NodeName) -> Json:
    return custody.remove_node(actor, name)
