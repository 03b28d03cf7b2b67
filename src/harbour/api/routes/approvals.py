"""``/v1/transactions/{tx_id}/...``: what an approver signs, and the signed approvals and rejections."""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import TxId
from harbour.api.routing import Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("transactions")


@router.get(
    "/transactions/{tx_id}/approval-request",
    summary="What an approver signs",
    description="The statement (hex) and the fields it is made from; a client must recompute the "
    "statement from the fields before signing it.",
    **returns(shapes.ApprovalRequest),
)
def approval_request(custody: Custody, actor: Actor, tx_id: TxId) -> Json:
    return custody.approval_request(actor, tx_id)


@router.post("/transactions/{tx_id}/approve", summary="Approve (signed statement)", **returns(shapes.Transaction))
def approve(custody: Custody, actor: Actor, tx_id: TxId, body: schemas.Decision) -> Json:
    return custody.approve(actor, tx_id, signature=body.signature)


@router.post("/transactions/{tx_id}/reject", summary="Reject (signed statement)", **returns(shapes.Transaction))
def reject(custody: Custody, actor: Actor, tx_id: TxId, body: schemas.Decision) -> Json:
    return custody.reject(actor, tx_id, signature=body.signature)
