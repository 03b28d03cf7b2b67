"""``/v1/users`` and ``/v1/credentials``: people, their roles and their API credentials."""

from __future__ import annotations

from harbour.api import schemas
from harbour.api.interface import Json
from harbour.api.params import CredentialId, Paging, UserId
from harbour.api.routing import PAGE_DOC, Actor, Custody, resource_router, returns
from harbour.custody import shapes

router = resource_router("users")


@router.post("/users", summary="Create a user", **returns(shapes.User, 201))
def create_user(custody: Custody, actor: Actor, body: schemas.CreateUser) -> Json:
    return custody.create_user(actor, name=body.name, roles=list(body.roles), approval_key=body.approval_key)


@router.get("/users", summary="List users", description=PAGE_DOC, **returns(shapes.UserPage))
def list_users(custody: Custody, actor: Actor, page: Paging) -> Json:
    return custody.list_users(actor, page)


@router.post(
    "/users/{user_id}/credentials",
    summary="Issue an API credential",
    description="The token is shown once; only its hash is stored.",
    **returns(shapes.Credential, 201),
)
def issue_credential(custody: Custody, actor: Actor, user_id: UserId) -> Json:
    return custody.issue_credential(actor, user_id)


@router.post(
    "/users/{user_id}/disable",
    summary="Disable a user",
    description="Revokes every credential the user holds; recorded approvals are kept.",
    **returns(shapes.User),
)
def disable_user(custody: Custody, actor: Actor, user_id: UserId) -> Json:
    return custody.disable_user(actor, user_id)


@router.post(
    "/credentials/{credential_id}/revoke",
    summary="Revoke an API credential",
    description="The owner of the credential, or an admin, can revoke it; it stops working at once.",
    **returns(shapes.Revoked),
)
def revoke_credential(custody: Custody, actor: Actor, credential_id: CredentialId) -> Json:
    return custody.revoke_credential(actor, credential_id)
