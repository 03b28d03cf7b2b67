"""The custody REST API: the FastAPI application over :class:`harbour.custody.service.Custody`.

The routes live in :mod:`harbour.api.routes`, one module per resource, each route
guarded by :class:`harbour.api.routing.GuardedRoute` (authentication and roles
before the body is read) and declaring its body as a model of
:mod:`harbour.custody.shapes`, so ``/openapi.json`` is the exact contract. This
module assembles them with the layers every request passes: the body limit, the
last-resort error handler, and the handlers that turn every error into an RFC
9457 problem document (:mod:`harbour.api.problems`; a dependency that is down is
a 503, :mod:`harbour.api.availability`).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from harbour import __version__
from harbour.api.authlimit import FailedAuthentications
from harbour.api.availability import HANDLED, dependency_problem
from harbour.api.body import parse_json
from harbour.api.interface import CustodyService
from harbour.api.middleware import BodyLimit, Guard, RequestLog
from harbour.api.problems import MEDIA_TYPE, custody_problem, http_problem, validation_problem
from harbour.api.routes import ROUTERS
from harbour.api.routing import PUBLIC_ROUTES, allowed_methods
from harbour.api.schemas import MAX_AMOUNT, MAX_INDEX
from harbour.api.terms import Nonces
from harbour.custody.errors import CustodyError
from harbour.custody.metrics import ServiceMetrics

__all__ = ["PUBLIC_ROUTES", "create_app", "parse_json"]


def _http_problem(request: Request, exc: Exception) -> Response:
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
        methods = allowed_methods(request.url.path)
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(methods)}
    return http_problem(request, exc)


def create_app(
    custody: CustodyService,
    *,
    failed_authentications: FailedAuthentications | None = None,
    metrics: ServiceMetrics | None = None,
) -> FastAPI:
    """The app over ``custody``; ``failed_authentications`` sets the limits on failed logins (default: the
    documented ones, :mod:`harbour.api.authlimit`); ``metrics`` counts the requests (None: not counted)."""
    app = FastAPI(
        title="Harbour custody API",
        version=__version__,
        description=(
            "Vaults, addresses, withdrawals with policy and approval quorum, deposits, and a verifiable "
            "audit log. Errors are RFC 9457 problem documents (`application/problem+json`). "
            "See docs/api.md for roles, idempotency and pagination."
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.state.custody = custody
    app.state.failed_authentications = failed_authentications or FailedAuthentications()
    app.state.nonces = Nonces(custody.use_request_nonce)
    app.add_exception_handler(CustodyError, custody_problem)
    for unavailable in HANDLED:
        app.add_exception_handler(unavailable, dependency_problem)
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_middleware(BodyLimit)
    app.add_middleware(Guard)
    app.add_middleware(RequestLog, metrics=metrics)  # outermost: every answer has its id, every request its line
    for router in ROUTERS:
        app.include_router(router)
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _problems_as_problem_json(original_openapi())
            _exact_bounds(original_openapi())
        return original_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    return app


_EXACT_BOUNDS: Final = {float(bound): bound for bound in (MAX_AMOUNT, MAX_INDEX)}
"""Bounds a double cannot hold, by the double FastAPI's OpenAPI model (``maximum: float``) turns them into."""


def _exact_bounds(node: Any) -> None:
    """Every ``minimum``/``maximum`` of :data:`_EXACT_BOUNDS` as the integer it is: ``2**256 - 1``, not ``1.16e77``."""
    if isinstance(node, dict):
        for key in ("minimum", "maximum"):
            value = node.get(key)
            if isinstance(value, float) and value in _EXACT_BOUNDS:
                node[key] = _EXACT_BOUNDS[value]
            elif isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                node[key] = int(value)
        for child in node.values():
            _exact_bounds(child)
    elif isinstance(node, list):
        for child in node:
            _exact_bounds(child)


def _problems_as_problem_json(schema: dict[str, Any]) -> None:
    """FastAPI files every response model under application/json; problems are application/problem+json."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if MEDIA_TYPE in content and "application/json" in content:
                    content[MEDIA_TYPE] = content.pop("application/json")
