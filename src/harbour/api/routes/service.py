"""``/v1/health``, ``/v1/me`` and ``/v1/org``: the service itself and who is calling it."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from harbour import __version__
from harbour.api.interface import Json
from harbour.api.routing import Actor, Custody, problems, resource_router, returns
from harbour.custody import shapes


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["ok"]
    version: str


class Me(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: str
    org_id: str
    name: str
    roles: list[str]


public = resource_router("service", problems(400, 413, 500))
router = resource_router("service")


@public.get("/health", summary="Liveness (no credential needed)", **returns(Health))
def health() -> Json:
    return Health(status="ok", version=__version__).model_dump(mode="json")


@router.get("/me", summary="The caller: user, organisation and roles", **returns(Me))
def me(actor: Actor) -> Json:
    return Me(user_id=actor.user_id, org_id=actor.org_id, name=actor.name, roles=sorted(actor.roles)).model_dump(
        mode="json"
    )


@router.get("/org", summary="The caller's organisation", **returns(shapes.Organisation))
def organisation(custody: Custody, actor: Actor) -> Json:
    return custody.organisation(actor)
