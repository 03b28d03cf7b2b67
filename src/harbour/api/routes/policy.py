"""``/v1/policy``: the policy in force, its history, and proposals to change it (which need an admin quorum)."""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import IdempotencyKey, Paging
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("policy")


@router.get("/policy", summary="The policy in force", **returns(shapes.Policy))
def get_policy(custody: Custody, actor: Actor) -> Json:
    return custody.get_policy(actor)


@router.get("/policy/versions", summary="Every policy version", description=PAGE_DOC, **returns(shapes.PolicyPage))
def list_policies(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_policies(actor, page)


@router.post(
    "/policy/proposals",
    summary="Propose a new policy",
    description="Creates a governance transaction (a `policy` change) that its proposer and the admin quorum sign; "
    "idempotent like withdrawals.",
    **returns(shapes.GovernanceTransaction, 201),
)
def propose_policy(
    custody: Custody, actor: Actor, body: schemas.PolicyProposal, idempotency_key: IdempotencyKey
) -> Json:
    return custody.propose_policy(actor, body.document, idempotency_key)
