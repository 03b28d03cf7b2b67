"""Errors the custody service raises, each with the HTTP status and problem type the API reports.

The API turns them into RFC 9457 problem documents (``type``, ``title``,
``status``, ``detail``); the CLI prints ``detail``. The service raises them
before writing anything, so a refused request leaves no trace but its audit event
where one is due.
"""

from __future__ import annotations

from typing import Any, ClassVar


class CustodyError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad-request"
    title: ClassVar[str] = "Bad request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class Unauthorized(CustodyError):
    status = 401
    code = "unauthorized"
    title = "Missing or invalid credential"


class Forbidden(CustodyError):
    status = 403
    code = "forbidden"
    title = "Your role does not allow this"


class NotFound(CustodyError):
    status = 404
    code = "not-found"
    title = "No such resource"


class Conflict(CustodyError):
    status = 409
    code = "conflict"
    title = "Conflicts with the current state"


class Invalid(CustodyError):
    status = 422
    code = "invalid"
    title = "Invalid request"


class Unavailable(CustodyError):
    status = 503
    code = "unavailable"
    title = "A dependency is unavailable"


class TooManyAttempts(CustodyError):
    """Too many failed authentications from this address or for this credential; ``retry_after`` seconds."""

    status = 429
    code = "too-many-requests"
    title = "Too many failed attempts"
