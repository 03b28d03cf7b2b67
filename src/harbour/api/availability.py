"""A dependency that cannot be reached is a 503 with ``Retry-After``, never a 500 with a traceback.

The service stands on three things it does not control: the database, the
chain's JSON-RPC node and the signer nodes. When one of them is down, every
request that needs it fails in the same way, and the right answer is "try again
later" (503, problem type ``unavailable``, ``Retry-After``), which a client can
act on, rather than "the server is broken" (500), which it cannot. The log gets
one line naming the dependency and the request, not a traceback per request
(and :mod:`harbour.api.logfilter` folds the repeats).

:func:`dependency_of` is the one place that decides whether an exception means
a dependency is unreachable: a connection-level database error (SQLAlchemy's
``OperationalError``, ``InterfaceError``, or the pool's timeout), any
:class:`~harbour.chains.evm.ChainError` (the client wraps every failure of the
node in it), or a :class:`~harbour.node.driving.ClusterError` whose reason says
a node did not answer. Integrity errors, programming errors and everything else
stay 500s: those are bugs, and hiding them behind "try later" would hide them.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import exc as sa
from starlette.requests import Request

from harbour.api.problems import ProblemResponse, log, problem
from harbour.chains.evm import ChainError
from harbour.node.driving import ClusterError

RETRY_AFTER: Final = 5
"""Seconds a client should wait before trying again: long enough for a restart to be noticed."""
UNREACHABLE_REASONS: Final = frozenset({"unreachable", "timeout", "quorum"})
"""ClusterError reasons that mean too few nodes answered, not that a node refused."""
DATABASE_ERRORS: Final = (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, sa.DisconnectionError)
_WORDS: Final = {
    "database": "the database cannot be reached",
    "chain": "the chain node did not answer as expected",
    "nodes": "the signer nodes cannot be reached",
}


def dependency_of(exc: BaseException) -> str | None:
    """``"database"``, ``"chain"`` or ``"nodes"`` when ``exc`` means that dependency is down; else None."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:  # a wrapped cause counts as itself
        seen.add(id(current))
        if isinstance(current, DATABASE_ERRORS):
            return "database"
        if isinstance(current, ChainError):
            return "chain"
        if isinstance(current, ClusterError) and current.reason in UNREACHABLE_REASONS:
            return "nodes"
        current = current.__cause__ or current.__context__
    return None


def unavailable(path: str, dependency: str) -> ProblemResponse:
    return problem(
        503,
        f"{_WORDS.get(dependency, 'a dependency is unavailable')}; try again later",
        instance=path,
        code="unavailable",
        extra={"dependency": dependency},
        headers={"Retry-After": str(RETRY_AFTER)},
    )


def dependency_problem(request: Request, exc: Exception) -> ProblemResponse:
    """The exception handler for :data:`HANDLED`: 503 when a dependency is down; else the 500 it always was."""
    dependency = dependency_of(exc)
    if dependency is None:
        raise exc  # not an outage: the last-resort handler logs it with its traceback
    log.error("%s unavailable in %s %s: %s", dependency, request.method, request.url.path, _first_line(exc))
    return unavailable(request.url.path, dependency)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


HANDLED: Final = (*DATABASE_ERRORS, ChainError, ClusterError)
"""The exception classes the app hands to :func:`dependency_problem`."""
