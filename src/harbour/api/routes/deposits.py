"""``/v1/deposits``: transfers into the organisation's addresses, as seen on chain."""

from __future__ import annotations

from harbour.api.interface import Json
from harbour.api.params import Paging
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("deposits")


@router.get("/deposits", summary="Deposits seen on chain", description=PAGE_DOC, **returns(shapes.DepositPage))
def list_deposits(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_deposits(actor, page)
