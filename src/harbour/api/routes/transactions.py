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
        source_address=body.source_address,
        fee_level=body.fee_level,
        max_fee_per_gas=body.max_fee_per_gas,
        max_priority_fee_per_gas=body.max_priority_fee_per_gas,
    )


@router.post(
    "/transactions/estimate",
    summary="The gas and, per fee level, the caps and maximum fee a withdrawal would be submitted with",
    **returns(shapes.FeeEstimate),
)
def estimate(custody: Custody, actor: Actor, body: schemas.Estimate) -> Json:
    return custody.estimate(actor, vault_id=body.vault_id, asset=body.asset, to=body.to, amount=body.amount)


@router.get("/transactions", summary="List transactions", description=PAGE_DOC, **returns(shapes.TransactionPage))
def list_transactions(
    custody: Custody,
    actor: Actor,
    page: Paging,
    state: Annotated[str | None, Query(pattern=schemas.STATE_PATTERN, description="Only this state.")] = None,
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


@router.post(
    "/transactions/{tx_id}/cancel",
    summary="Cancel before signing; a broadcast withdrawal, by replacing it with a zero-value self-transfer",
    description="Before signing the transaction itself is cancelled and returned. Once broadcast it can only be "
    "replaced at its nonce: a new transaction paying nothing to the vault's own address, with the fees of the "
    "body (docs/custody.md#stuck-transactions), approved like a withdrawal, is returned.",
    **returns(shapes.Transaction),
)
def cancel(custody: Custody, actor: Actor, tx_id: TxId, body: schemas.Replacement | None = None) -> Json:
    fees = body or schemas.Replacement()
    return custody.cancel(
        actor,
        tx_id,
        fee_level=fees.fee_level,
        max_fee_per_gas=fees.max_fee_per_gas,
        max_priority_fee_per_gas=fees.max_priority_fee_per_gas,
    )


@router.post(
    "/transactions/{tx_id}/speed-up",
    summary="Replace a stuck broadcast withdrawal with the same payment at higher fees (a new transaction)",
    **returns(shapes.Transaction, 201),
)
def speed_up(custody: Custody, actor: Actor, tx_id: TxId, body: schemas.Replacement) -> Json:
    return custody.speed_up(
        actor,
        tx_id,
        fee_level=body.fee_level,
        max_fee_per_gas=body.max_fee_per_gas,
        max_priority_fee_per_gas=body.max_priority_fee_per_gas,
    )
