"""``/v1/transactions``: withdrawals (idempotent), a policy dry run, and reading and cancelling transactions."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import IdempotencyKey, Paging, TxId
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("transactions")


@router.post(
    "/transactions",
    summary="Submit a withdrawal",
    description="Needs an `Idempotency-Key`: retrying with the same key and body returns the same "
    "transaction and never creates a second withdrawal.",
    **returns(shapes.Transaction, 201),
)
def submit_withdrawal(
    custody: Custody, actor: Actor, body: schemas.Withdrawal, idempotency_key: IdempotencyKey
) -> Json:
    return custody.submit_withdrawal(
        actor,
        vault_id=body.vault_id,
        asset=body.asset,
        to=body.to,
        amount=body.amount,
        idempotency_key=idempotency_key,
        note=body.note,
        request_id=body.id,
        signature=body.signature,
    )


@router.get("/transactions", summary="List transactions", description=PAGE_DOC, **returns(shapes.TransactionPage))
def list_transactions(
    custody: Custody,
    actor: Actor,
    page: Paging,
    state: Annotated[schemas.TransactionState | None, Query(description="Only this state.")] = None,
) -> Json:
    return custody.list_transactions(actor, page, state)


@router.post(
    "/transactions/explain",
    summary="What the policy would decide for a withdrawal (nothing is written)",
    **returns(shapes.Explanation),
)
def explain(custody: Custody, actor: Actor, body: schemas.Explain) -> Json:
    return custody.explain(actor, vault_id=body.vault_id, asset=body.asset, to=body.to, amount=body.amount)


@router.get("/transactions/{tx_id}", summary="A transaction and its approvals", **returns(shapes.Transaction))
def get_transaction(custody: Custody, actor: Actor, tx_id: TxId) -> Json:
    return custody.get_transaction(actor, tx_id)


@router.post("/transactions/{tx_id}/cancel", summary="Cancel before signing", **returns(shapes.Transaction))
def cancel(custody: Custody, actor: Actor, tx_id: TxId) -> Json:
    return custody.cancel(actor, tx_id)
