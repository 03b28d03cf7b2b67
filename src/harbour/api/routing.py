"""What every route shares: authentication and roles before the body is read, the service, and declared errors.

Every route under ``/v1`` except ``/v1/health`` and ``/v1/ready`` authenticates the caller
(``Authorization: Bearer <token>``), holds the request to its credential's
terms (:mod:`harbour.api.terms`), counts failures (:mod:`harbour.api.authlimit`),
and checks the caller's roles against
:data:`harbour.api.roles.ROUTE_ROLES` *before* the request body is parsed or the
service is called; the service then checks roles again.

Route functions are plain ``def``: the service blocks (database transactions,
MPC keygen across the signer nodes, chain calls), so FastAPI runs each request in
its worker threadpool instead of stalling the event loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Request, Response, Security
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.routing import Match
from starlette.types import Scope

from harbour.api import terms
from harbour.api.authlimit import FailedAuthentications, credential_id_of
from harbour.api.body import StrictJsonRequest
from harbour.api.interface import CustodyService, Principal
from harbour.api.problems import Problem, log
from harbour.api.roles import ROUTE_ROLES
from harbour.custody.errors import Forbidden, TooManyAttempts, Unauthorized

PUBLIC_ROUTES: Final = frozenset({("GET", "/v1/health"), ("GET", "/v1/ready")})
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]{1,512}=*")
"""RFC 6750 b64token, bounded."""

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API credential (`hbk_...`) from `POST /v1/users/{user_id}/credentials`.",
)


def _bearer(request: Request) -> str:
    headers = request.headers.getlist("authorization")
    if not headers:
        raise Unauthorized("this request needs an 'Authorization: Bearer <token>' header")
    if len(headers) > 1:
        raise Unauthorized("send one Authorization header, not several")
    scheme, _, token = headers[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        raise Unauthorized("the Authorization header must be 'Bearer <token>' with an API credential")
    return token


def _target(request: Request) -> str:
    """The raw path and query as the client sent them: what a request signature covers."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string") or b""
    return (raw + (b"?" + query if query else b"")).decode("latin-1")


def authenticate(custody: CustodyService, request: Request, method: str, path: str, body: bytes) -> Any:
    """The caller's actor, if the token is valid and the request keeps its credential's terms.

    Every refusal here is a failed authentication: logged and counted per
    credential id and client address (:mod:`harbour.api.authlimit`), and once
    either has failed too often, refused with 429 before the token is looked at.
    """
    limiter: FailedAuthentications = request.app.state.failed_authentications
    address = request.client.host if request.client else "unknown"
    header = request.headers.get("authorization", "")
    credential_id = credential_id_of(header.partition(" ")[2].strip())
    wait = limiter.retry_after(credential_id, address)
    if wait:
        raise TooManyAttempts(f"too many failed authentications; try again in {wait} s", retry_after=wait)
    try:
        actor = custody.authenticate(_bearer(request))
        terms.check_address(actor.terms, address)
        terms.check_signature(
            actor.terms,
            actor.credential_id or "",
            method,
            _target(request),
            body,
            dict(request.headers),
            request.app.state.nonces,
        )
    except (Unauthorized, Forbidden) as exc:
        if limiter.failed(credential_id, address, exc.detail) and credential_id is not None:
            try:
                custody.record_auth_burst(credential_id, address)
            except Exception:  # the refusal stands whether or not the audit log could take the event
                log.warning("could not record the burst of failures for credential %s in the audit log", credential_id)
        raise
    return actor


def authorise(custody: CustodyService, request: Request, method: str, path: str, body: bytes = b"") -> Any:
    """The caller's actor, if the credential is valid, its terms kept, and one of its roles may use this route."""
    actor = authenticate(custody, request, method, path, body)
    terms.check_scope(actor.terms, method, path)
    allowed = ROUTE_ROLES.get((method, path))
    if allowed is None:
        raise Forbidden(f"{method} {path} is not open to any role")
    roles = frozenset(actor.roles)
    if not roles & allowed:
        have = ", ".join(sorted(roles)) or "none"
        raise Forbidden(f"{method} {path} needs one of the roles {', '.join(sorted(allowed))}; you have {have}")
    return actor


def recheck(custody: CustodyService, request: Request, method: str, path: str) -> Any:
    """The caller's actor again, for a long response: the credential and its user are still good.

    The token is looked up again (revoked, expired, its user disabled or their
    roles changed), and the client address, scope and roles checked again; the
    request's signature is not, since it was verified when the request came and
    its nonce is now spent. Not a login: a refusal here is not counted as a
    failed authentication.
    """
    actor = custody.authenticate(_bearer(request))
    terms.check_address(actor.terms, request.client.host if request.client else None)
    terms.check_scope(actor.terms, method, path)
    allowed = ROUTE_ROLES.get((method, path), frozenset())
    if not frozenset(actor.roles) & allowed:
        raise Forbidden(f"{method} {path} is no longer open to this credential's roles")
    return actor


class GuardedRoute(APIRoute):
    """A route that authenticates and checks roles before FastAPI reads the body.

    Doing it here rather than in a dependency means an unauthenticated or
    unauthorised request is refused (401/403) before its body is parsed or
    validated, so it learns nothing and costs nothing.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        for method in self.methods or ():
            allowed = ROUTE_ROLES.get((method, self.path))
            if allowed is not None:
                self.openapi_extra = {**(self.openapi_extra or {}), "x-roles": sorted(allowed)}
                self.description = (self.description or "").strip() + f"\n\nRoles: {', '.join(sorted(allowed))}."

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """No match where a route with more fixed segments claims the path (``/transactions/explain`` is not a tx_id).

        Without this, ``GET /v1/transactions/explain`` would reach ``GET
        /v1/transactions/{tx_id}`` and be refused as a malformed id, where the
        schema says the path has POST only: it is a 405 naming POST.
        """
        match, child = super().matches(scope)
        claimed = match is not Match.NONE and scope.get("type") == "http" and self.path in _KNOWN
        if claimed and self.path not in claimants(scope["path"]):
            return Match.NONE, {}
        return match, child

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        path = self.path

        async def guarded(request: Request) -> Response:
            request = StrictJsonRequest(request.scope, request.receive)
            method = "GET" if request.method == "HEAD" else request.method
            if (method, path) not in PUBLIC_ROUTES:
                custody: CustodyService = request.app.state.custody
                body = await request.body()  # small: BodyLimit has read it already; a signature covers it
                request.state.actor = await run_in_threadpool(authorise, custody, request, method, path, body)
            return await handler(request)

        return guarded


def _actor(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Any:
    return request.state.actor


def _custody(request: Request) -> CustodyService:
    custody: CustodyService = request.app.state.custody
    return custody


Actor = Annotated[Principal, Security(_actor)]
"""The authenticated caller, as checked by :class:`GuardedRoute` (the bearer scheme is for the OpenAPI schema)."""
Custody = Annotated[CustodyService, Depends(_custody)]
"""The custody service the app was created with."""


def claimants(path: str) -> frozenset[str]:
    """The route templates that serve ``path``: of those matching it, the ones with the most fixed segments."""
    matching = [(fixed, template) for pattern, fixed, template in _TEMPLATES if pattern.fullmatch(path)]
    most = max((fixed for fixed, _ in matching), default=0)
    return frozenset(template for fixed, template in matching if fixed == most)


def allowed_methods(path: str) -> list[str]:
    """Every method the route templates serving ``path`` have (the router's own 405 names only the first route's)."""
    served = claimants(path)
    return sorted({method for method, template in (*ROUTE_ROLES, *PUBLIC_ROUTES) if template in served})


_TEMPLATES: Final = [
    (
        re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))),
        sum(1 for segment in template.split("/") if not segment.startswith("{")),
        template,
    )
    for template in sorted({template for _, template in (*ROUTE_ROLES, *PUBLIC_ROUTES)})
]
_KNOWN: Final = frozenset(template for _, _, template in _TEMPLATES)


# -- what a route declares --------------------------------------------------------------------------

_ERROR_DESCRIPTIONS: Final = {
    400: "Malformed HTTP (a Content-Length that is not a number)",
    401: "No credential, or not a valid one (or an unsigned or badly signed request for a signing credential)",
    403: "The caller's role does not allow this",
    404: "No such resource (in the caller's organisation)",
    409: "Conflicts with the current state (or an idempotency key reused)",
    413: "Body larger than 64 KiB",
    422: "Malformed or invalid request; `errors` lists the fields",
    429: "Too many failed authentications from this address or for this credential; see `Retry-After`",
    500: "Unexpected server error (details are logged, not returned)",
    503: "A dependency (signer nodes, chain) is unavailable",
}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """Problem documents (``application/problem+json``) declared for these statuses."""
    return {
        status: {
            "model": Problem,
            "content": {"application/problem+json": {}},
            "description": _ERROR_DESCRIPTIONS[status],
        }
        for status in statuses
    }


GUARDED_ERRORS: Final = problems(400, 401, 403, 404, 409, 413, 422, 429, 500, 503)
"""What a route behind a credential may answer besides success: the service may refuse any request."""


def returns(model: Any, status: int = 200) -> dict[str, Any]:
    """Route keywords: ``status`` with ``model`` as the body (validated, so a view that drifts is a 500).

    Fields a view leaves out stay out (``exclude_unset``), rather than appearing as
    null: a transaction's ``approvals`` exists only where the service sends it.
    """
    return {"status_code": status, "response_model": model, "response_model_exclude_unset": True}


def resource_router(tag: str, responses: dict[int | str, dict[str, Any]] = GUARDED_ERRORS) -> APIRouter:
    """A router for one resource under ``/v1``, its routes guarded and its errors declared.

    The prefix is the router's own, not added when the app includes it: FastAPI
    includes a router by reference, so a route's ``path`` (which the role table
    is keyed by) is the one it was created with.
    """
    return APIRouter(prefix="/v1", route_class=GuardedRoute, responses=responses, tags=[tag])


PAGE_DOC: Final = "Returns `{items, next_cursor}`; pass `next_cursor` back as `cursor` until it is null."
PENDING: Final = (
    "A governance change: answers with its transaction, which the proposer and the admin quorum sign "
    "(`POST /v1/transactions/{tx_id}/approve`); the change takes effect when it lands."
)
