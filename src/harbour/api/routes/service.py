"""``/v1/health``, ``/v1/ready``, ``/v1/me`` and ``/v1/org``: the service itself and who is calling it.

``/v1/health`` is liveness (the process answers) and ``/v1/ready`` readiness
(its database, chain node and signer nodes answer: 503 with ``Retry-After``
when one it cannot work without does not); neither needs a credential, so a
load balancer can ask. Readiness comes from the last probe while it is fresh
(:class:`harbour.custody.readiness.Cached`), so callers cannot make the service
ask its nodes once per request.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict

from harbour import __version__
from harbour.api.availability import RETRY_AFTER
from harbour.api.interface import Json
from harbour.api.problems import problem
from harbour.api.routing import Actor, Custody, problems, resource_router, returns
from harbour.custody import shapes


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["ok"]
    version: str


class Check(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["ok", "degraded", "down"]
    detail: str


class NodeAnswer(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    answers: bool


class NodesCheck(Check):
    nodes: list[NodeAnswer]


class Checks(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    database: Check
    chain: Check
    nodes: NodesCheck


class Readiness(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    ready: bool
    checks: Checks


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


@public.get(
    "/ready",
    summary="Readiness: the database, the chain node and the signer nodes (no credential needed)",
    description="200 when the service can work; 503, a problem document with `Retry-After` and the same "
    "`ready` and `checks` members, when the database or the chain node does not answer, or no signer node "
    "does. Some nodes down is `degraded`, still ready: a threshold of them signs. The answer is cached: the "
    "dependencies are asked at most once a second, however many ask, so it may be about two seconds old.",
    responses=problems(503),
    **returns(Readiness),
)
def ready(custody: Custody, request: Request) -> Any:
    document = Readiness.model_validate(custody.readiness()).model_dump(mode="json")
    if document["ready"]:
        return document
    down = ", ".join(name for name, check in document["checks"].items() if check["status"] == "down")
    return problem(
        503,
        f"not ready: {down} down",
        instance=request.url.path,
        code="unavailable",
        extra=document,
        headers={"Retry-After": str(RETRY_AFTER)},
    )


@router.get("/me", summary="The caller: user, organisation and roles", **returns(Me))
def me(actor: Actor) -> Json:
    return Me(user_id=actor.user_id, org_id=actor.org_id, name=actor.name, roles=sorted(actor.roles)).model_dump(
        mode="json"
    )


@router.get("/org", summary="The caller's organisation", **returns(shapes.Organisation))
def organisation(custody: Custody, actor: Actor) -> Json:
    return custody.organisation(actor)
