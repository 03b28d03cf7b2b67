"""A dependency that cannot be reached is a 503 with ``Retry-After``, never a 500 with a traceback.

When the database, the chain node or the signer nodes are down, every request
that needs them fails in the same way, and the right answer is "try again
later" (503, problem type ``unavailable``, ``Retry-After``, and ``dependency``
naming which), which a client can act on, rather than "the server is broken"
(500), which it cannot. The log gets one line naming the dependency and the
request, not a traceback per request (and :mod:`harbour.api.logfilter` folds
the repeats). What counts as an outage is :mod:`harbour.custody.outages`'
decision; anything else stays a 500.
"""

from __future__ import annotations

from typing import Final

from starlette.requests import Request

from harbour.api.problems import ProblemResponse, log, problem
from harbour.custody.outages import OUTAGES, dependency_of, first_line

__all__ = ["HANDLED", "RETRY_AFTER", "dependency_of", "dependency_problem", "unavailable"]

RETRY_AFTER: Final = 5
"""Seconds a client should wait before trying again: long enough for a restart to be noticed."""
_WORDS: Final = {
    "database": "the database cannot be reached",
    "chain": "the chain node did not answer as expected",
    "nodes": "the signer nodes cannot be reached",
}


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
    log.error("%s unavailable in %s %s: %s", dependency, request.method, request.url.path, first_line(exc))
    return unavailable(request.url.path, dependency)


HANDLED: Final = OUTAGES
"""The exception classes the app hands to :func:`dependency_problem`."""
