"""``/v1/transactions``: withdrawals (idempotent), a policy dry run, and reading and cancelling transactions."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Path, Query

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import IdempotencyKey, Paging, TxId, UtcTime
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import shapes
from harbour.custody.search import Filters

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
        external_id=body.external_id,
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


@router.get(
    "/transactions",
    summary="List and search transactions",
    description="Every filter narrows the list; times are ISO 8601 with an offset. " + PAGE_DOC,
    **returns(shapes.TransactionPage),
)
def list_transactions(
    custody: Custody,
    actor: Actor,
    page: Paging,
    state: Annotated[schemas.TransactionState | None, Query(description="Only this state.")] = None,
    vault_id: Annotated[str | None, Query(pattern=schemas.UUID_PATTERN, description="Only this vault's.")] = None,
    asset: Annotated[str | None, Query(pattern=r"^[A-Z0-9]{1,16}$", description="Only this asset.")] = None,
    destination: Annotated[schemas.EthAddress | None, Query(description="Only to it.")] = None,
    initiator_id: Annotated[str | None, Query(pattern=schemas.UUID_PATTERN, description="Only theirs.")] = None,
    created_after: Annotated[UtcTime | None, Query(description="Created at or after.")] = None,
    created_before: Annotated[UtcTime | None, Query(description="Created before.")] = None,
    updated_since: Annotated[UtcTime | None, Query(description="Changed at or after.")] = None,
    tx_hash: Annotated[str | None, Query(pattern=r"^0x[0-9a-fA-F]{64}$", description="Only this chain hash.")] = None,
    external_id: Annotated[str | None, Query(pattern=schemas.EXTERNAL_ID_PATTERN)] = None,
    order: Annotated[Literal["asc", "desc"], Query(description="asc: oldest first; desc: newest first.")] = "asc",
) -> Json:
    filters = Filters(
        vault_id=vault_id,
        asset=asset,
        destination=destination,
        initiator_id=initiator_id,
        state=state,
        created_after=created_after,
        created_before=created_before,
        updated_since=updated_since,
        tx_hash=tx_hash,
        external_id=external_id,
        order=order,
    )
    return custody.search_transactions(actor, page, filters)


@router.get(
    "/transactions/external/{external_id}",
    summary="The transaction with this external id",
    **returns(shapes.Transaction),
)
def get_transaction_by_external_id(
    custody: Custody, actor: Actor, external_id: Annotated[str, Path(pattern=schemas.EXTERNAL_ID_PATTERN)]
) -> Json:
    return custody.get_transaction_by_external_id(actor, external_id)


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
