"""The routes, one module per resource, each an ``APIRouter`` under ``/v1``."""

from __future__ import annotations

from typing import Final

from fastapi import APIRouter

from harbour.api.routes import (
    address_book,
    approvals,
    assets,
    audit,
    deposits,
    dev,
    events,
    exports,
    governance,
    policy,
    service,
    transactions,
    users,
    vaults,
    webhooks,
)

ROUTERS: Final[tuple[APIRouter, ...]] = (
    service.public,
    service.router,
    users.router,
    vaults.router,
    assets.router,
    address_book.router,
    transactions.router,
    approvals.router,
    policy.router,
    governance.router,
    deposits.router,
    dev.router,
    audit.router,
    webhooks.router,
    events.router,
    exports.router,
)
"""Every router, in the order the app includes them (the order a path is matched in)."""
