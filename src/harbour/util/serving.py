"""Running a uvicorn server and saying when it listens.

The custody API and the signer node both serve with uvicorn, and their callers
(the CLI, localnet, tests) wait for the socket before they go on. Uvicorn only
offers a ``started`` flag, so both poll it the same way here.

This module imports nothing from Harbour, so any layer may use it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

POLL_SECONDS = 0.01


async def serve_announcing_ready(server: uvicorn.Server, ready: Callable[[], None] | None) -> None:
    """Serve until ``server`` stops; call ``ready`` once it listens (never, if it fails to start)."""
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(POLL_SECONDS)
    if server.started and ready is not None:
        ready()
    await task
