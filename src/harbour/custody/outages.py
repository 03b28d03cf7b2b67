"""Which failures mean a dependency is down (an outage to wait out) rather than a bug.

The service stands on three things it does not control: the database, the
chain's JSON-RPC node and the signer nodes. :func:`dependency_of` is the one
place that decides whether an exception means one of them cannot be reached: a
connection-level database error (SQLAlchemy's ``OperationalError``,
``InterfaceError``, ``DisconnectionError``, or the pool's timeout), any
:class:`~harbour.chains.evm.ChainError` (the client wraps every failure of the
node in it), or a :class:`~harbour.node.driving.ClusterError` whose reason says
the nodes did not answer. Integrity errors, programming errors and everything
else are not outages: hiding them behind "try later" would hide bugs.

The API answers an outage with 503 (:mod:`harbour.api.availability`); the
pipeline's loops log it as one line, not a traceback per poll.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import exc as sa

from harbour.chains.evm import ChainError
from harbour.node.driving import ClusterError

UNREACHABLE_REASONS: Final = frozenset({"unreachable", "timeout", "quorum"})
"""ClusterError reasons that mean too few nodes answered, not that a node refused."""
DATABASE_ERRORS: Final = (sa.OperationalError, sa.InterfaceError, sa.TimeoutError, sa.DisconnectionError)
OUTAGES: Final = (*DATABASE_ERRORS, ChainError, ClusterError)
"""The exception classes :func:`dependency_of` may call an outage."""


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


def first_line(exc: BaseException) -> str:
    """The exception's first line, bounded: enough to name the failure in a log line."""
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
