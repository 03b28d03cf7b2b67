"""Errors as RFC 9457 problem documents (``application/problem+json``).

Every refusal the API makes, whether the custody service raised it, FastAPI's
request validation found it, the router had no such path or method, or an
unexpected exception escaped, leaves as one shape: ``type`` (a URI naming the
kind of problem, ``https://harbour.dev/problems/<code>``), ``title`` (fixed per
type), ``status``, ``detail`` (what is wrong with *this* request) and
``instance`` (the request path). A client can branch on ``type`` and show
``detail`` to a person; it never has to parse FastAPI's or Starlette's own error
shapes. Validation problems also list each offending field under ``errors``.

A problem never echoes the submitted values (a body may hold a credential or be
64 KiB of junk) and a 500 never says more than that the request failed: the
exception goes to the server log, not to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from harbour.custody.errors import CustodyError

PROBLEM_BASE: Final = "https://harbour.dev/problems/"
MEDIA_TYPE: Final = "application/problem+json"
MAX_LISTED_ERRORS: Final = 20
"""A body can fail validation in thousands of places; the first few say enough."""

log = logging.getLogger("harbour.api")

_HTTP_CODES: Final[dict[int, tuple[str, str]]] = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Missing or invalid credential"),
    403: ("forbidden", "Your role does not allow this"),
    404: ("not-found", "No such resource"),
    405: ("method-not-allowed", "Method not allowed"),
    406: ("not-acceptable", "Not acceptable"),
    409: ("conflict", "Conflicts with the current state"),
    413: ("payload-too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid", "Invalid request"),
    429: ("too-many-requests", "Too many failed attempts"),
    500: ("internal-error", "Internal server error"),
    503: ("unavailable", "A dependency is unavailable"),
}
_RESERVED: Final = frozenset({"type", "title", "status", "detail", "instance"})


class FieldError(BaseModel):
    model_config = ConfigDict(extra="forbid")

    location: str = Field(examples=["body.amount"])
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document; open, as the RFC lets a problem type add members.

    :func:`problem` builds every problem through this model, so what the schema
    declares for errors is what is sent.
    """

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=["https://harbour.dev/problems/forbidden"])
    title: str
    status: int
    detail: str
    instance: str
    errors: list[FieldError] = Field(
        default_factory=list, description="Validation problems only: each offending field's location and message."
    )


class ProblemResponse(JSONResponse):
    media_type = MEDIA_TYPE


def problem_type(code: str) -> str:
    return PROBLEM_BASE + code


def problem(
    status: int,
    detail: str,
    *,
    instance: str,
    code: str | None = None,
    title: str | None = None,
    extra: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    """One problem response; ``code``/``title`` default to the status's usual ones."""
    default_code, default_title = _HTTP_CODES.get(status, ("", "Error"))
    code = code or default_code
    body: dict[str, Any] = {
        "type": problem_type(code) if code else "about:blank",
        "title": title or default_title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    for key, value in (extra or {}).items():
        if key not in _RESERVED:
            body[key] = value
    document = Problem.model_validate(body).model_dump(mode="json", exclude_unset=True)
    return ProblemResponse(document, status_code=status, headers=dict(headers or {}))


def custody_problem(request: Request, exc: Exception) -> ProblemResponse:
    assert isinstance(exc, CustodyError)
    headers = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="harbour"'
    if exc.status == 503:
        headers["Retry-After"] = "5"
    if exc.status == 429:
        headers["Retry-After"] = str(exc.extra.get("retry_after", 1))
    return problem(
        exc.status,
        exc.detail,
        instance=request.url.path,
        code=exc.code,
        title=exc.title,
        extra=exc.extra,
        headers=headers,
    )


def _location(error: Mapping[str, Any]) -> str:
    loc: Sequence[Any] = error.get("loc", ())
    if error.get("type") == "json_invalid":
        loc = loc[:1]  # the character offset FastAPI appends is not a field
    return ".".join(str(part) for part in loc)


def _message(error: Mapping[str, Any]) -> str:
    if error.get("type") == "json_invalid":
        reason = (error.get("ctx") or {}).get("error")
        return f"the body is not valid JSON ({reason})" if reason else "the body is not valid JSON"
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    if error.get("type") == "model_attributes_type" and tuple(error.get("loc", ())) == ("body",):
        return "the body must be a JSON object sent as application/json"
    return str(error.get("msg", "invalid value"))


def validation_problem(request: Request, exc: Exception) -> ProblemResponse:
    """FastAPI's 422 as a problem: where each error is and what it is, never the value sent."""
    assert isinstance(exc, RequestValidationError)
    errors = [{"location": _location(e), "message": _message(e)} for e in exc.errors()]
    first = errors[0] if errors else {"location": "request", "message": "invalid"}
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return problem(
        422,
        f"{first['location']}: {first['message']}{more}",
        instance=request.url.path,
        extra={"errors": errors[:MAX_LISTED_ERRORS]},
    )


def http_problem(request: Request, exc: Exception) -> ProblemResponse:
    """The router's own 404/405 (and any HTTPException) as a problem, keeping its headers (``Allow``)."""
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 404:
        detail = f"there is no resource at {request.url.path}"
    elif status == 405:
        allow = (exc.headers or {}).get("Allow") or (exc.headers or {}).get("allow")
        detail = f"{request.method} is not allowed on {request.url.path}" + (f"; use {allow}" if allow else "")
    else:
        detail = str(exc.detail)
    return problem(status, detail, instance=request.url.path, headers=exc.headers)


def internal_problem(path: str) -> ProblemResponse:
    return problem(
        500,
        "the server could not complete the request; the error has been logged",
        instance=path,
    )
