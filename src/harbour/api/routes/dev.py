"""``/v1/dev``: the development faucet, which answers only on a development chain (:mod:`harbour.custody.faucet`)."""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.routing import Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("development")


@router.post(
    "/dev/fund",
    summary="Fund an address on a development chain",
    description="Sends ETH from the development chain's prefunded account and waits until it is mined. Answers "
    "409 on any chain that is not a development chain (the embedded chain, or a node initialised with "
    "`--dev-chain`).",
    **returns(shapes.Funding),
)
def fund(custody: Custody, actor: Actor, body: schemas.DevFund) -> Json:
    return custody.dev_fund(actor, address=body.address, amount=body.amount)
