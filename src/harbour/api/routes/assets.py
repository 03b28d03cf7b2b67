"""``/v1/assets``: what the organisation holds (ETH or an ERC-20 token); adding one is a governance change."""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import Paging
from harbour.api.routing import PAGE_DOC, PENDING, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("assets")


@router.post(
    "/assets",
    summary="Propose an asset (ETH or an ERC-20 token)",
    description=PENDING,
    **returns(shapes.GovernanceTransaction, 202),
)
def add_asset(custody: Custody, actor: Actor, body: schemas.AddAsset) -> Json:
    return custody.add_asset(actor, symbol=body.symbol, kind=body.kind, contract=body.contract, decimals=body.decimals)


@router.get("/assets", summary="List assets", description=PAGE_DOC, **returns(shapes.AssetPage))
def list_assets(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_assets(actor, page)
