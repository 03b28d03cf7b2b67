"""``/v1/users`` and ``/v1/credentials``: people, their roles and keys, and their API credentials.

Creating a user and changing one (roles, approval key, disabled or not) are
governance changes: each answers 202 with the governance transaction, which the
proposer and the admin quorum sign (``POST /v1/transactions/{id}/approve``); the
user changes when it lands. A credential for an admin is one too; anyone else's
is issued at once.
"""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import CredentialId, Paging, UserId
from harbour.api.routing import PAGE_DOC, PENDING, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("users")


@router.post("/users", summary="Propose a new user", description=PENDING, **returns(shapes.GovernanceTransaction, 202))
def create_user(custody: Custody, actor: Actor, body: schemas.CreateUser) -> Json:
    return custody.create_user(actor, name=body.name, roles=list(body.roles), approval_key=body.approval_key)


@router.get("/users", summary="List users", description=PAGE_DOC, **returns(shapes.UserPage))
def list_users(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_users(actor, page)


@router.post(
    "/users/{user_id}/credentials",
    summary="Issue an API credential",
    description="The token is shown once; only its hash is stored. For an admin the credential is a governance "
    "change (`transaction`), and the token works once it lands.",
    **returns(shapes.Credential, 201),
)
def issue_credential(custody: Custody, actor: Actor, user_id: UserId) -> Json:
    return custody.issue_credential(actor, user_id)


@router.post(
    "/users/{user_id}/disable",
    summary="Propose disabling a user",
    description=PENDING + " Once it lands, every credential the user holds is revoked, their unsigned withdrawals "
    "are cancelled and their approvals stop counting.",
    **returns(shapes.GovernanceTransaction, 202),
)
def disable_user(custody: Custody, actor: Actor, user_id: UserId) -> Json:
    return custody.disable_user(actor, user_id)


@router.post(
    "/users/{user_id}/enable",
    summary="Propose re-enabling a user",
    description=PENDING + " The user needs a new credential.",
    **returns(shapes.GovernanceTransaction, 202),
)
def enable_user(custody: Custody, actor: Actor, user_id: UserId) -> Json:
    return custody.enable_user(actor, user_id)


@router.post(
    "/users/{user_id}/roles",
    summary="Propose new roles for a user",
    description=PENDING,
    **returns(shapes.GovernanceTransaction, 202),
)
def set_roles(custody: Custody, actor: Actor, user_id: UserId, body: schemas.SetRoles) -> Json:
    return custody.set_roles(actor, user_id, roles=list(body.roles))


@router.post(
    "/users/{user_id}/approval-key",
    summary="Propose registering or rotating a user's approval key",
    description=PENDING,
    **returns(shapes.GovernanceTransaction, 202),
)
def set_approval_key(custody: Custody, actor: Actor, user_id: UserId, body: schemas.SetApprovalKey) -> Json:
    return custody.set_approval_key(actor, user_id, approval_key=body.approval_key)


@router.post(
    "/credentials/{credential_id}/revoke",
    summary="Revoke an API credential",
    description="The owner of the credential, or an admin unless it is another admin's, can revoke it; it stops "
    "working at once.",
    **returns(shapes.Revoked),
)
def revoke_credential(custody: Custody, actor: Actor, credential_id: CredentialId) -> Json:
    return custody.revoke_credential(actor, credential_id)


@router.patch(
    "/users/{user_id}",
    summary="Propose changing a user: roles, approval key (rotation), disabled or enabled",
    description=PENDING + " Every field given becomes one change of the same entry (a new key before new roles); "
    "a field equal to what is in force is left out, and a request that changes nothing is a 409.",
    **returns(shapes.GovernanceTransaction, 202),
)
def update_user(custody: Custody, actor: Actor, user_id: UserId, body: schemas.UpdateUser) -> Json:
    return custody.update_user(actor, user_id, **body.given())


@router.delete(
    "/users/{user_id}",
    summary="Propose disabling a user",
    description=PENDING + " The same change as `POST /v1/users/{user_id}/disable`: the user stays, disabled, "
    "with their history, and `PATCH` with `disabled: false` enables them again.",
    **returns(shapes.GovernanceTransaction, 202),
)
def delete_user(custody: Custody, actor: Actor, user_id: UserId) -> Json:
    return custody.disable_user(actor, user_id)
