"""``/v1/assets``: what the organisation holds (ETH or an ERC-20 token); adding or disabling one is a governance change.

An ERC-20 is proposed only once its contract answers as the token declared
(:mod:`harbour.chains.tokeninfo`): an asset the log names cannot be taken out of it.
"""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import AssetId, Paging
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


@router.patch(
    "/assets/{asset_id}",
    summary="Propose disabling or enabling an asset",
    description=PENDING + " `disabled: true` (`asset.disable`): no withdrawal of it is accepted or signed until "
    "`disabled: false` (`asset.enable`) lands; its balances stay shown.",
    **returns(shapes.GovernanceTransaction, 202),
)
def update_asset(custody: Custody, actor: Actor, asset_id: AssetId, body: schemas.UpdateAsset) -> Json:
    return custody.update_asset(actor, asset_id, disabled=body.disabled)


@router.delete(
    "/assets/{asset_id}",
    summary="Propose disabling an asset",
    description=PENDING + " The asset stays registered and shown, disabled; `PATCH` enables it again.",
    **returns(shapes.GovernanceTransaction, 202),
)
def disable_asset(custody: Custody, actor: Actor, asset_id: AssetId) -> Json:
    return custody.update_asset(actor, asset_id, disabled=True)
