"""Query, path and header parameters the routes share, each bounded so the schema states the rules."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Query
from pydantic import Field, WithJsonSchema

from harbour.api import schemas
from harbour.custody.views import MAX_LIMIT, Page

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1..{MAX_LIMIT}.")]
_CursorText = Annotated[
    str,
    Field(pattern=schemas.CURSOR_PATTERN),
    WithJsonSchema({"type": "string", "pattern": schemas.CURSOR_PATTERN, "format": "page-cursor"}),
]
Cursor = Annotated[
    _CursorText | None,
    Query(description="The `next_cursor` of the previous page (opaque; one the API did not issue is 422)."),
]
IndexCursor = Annotated[
    str | None,
    Query(
        pattern=schemas.INDEX_CURSOR_PATTERN,
        description="The `next_cursor` of the previous page: the index (sequence number) of the last item it held.",
    ),
]
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=schemas.IDEMPOTENCY_PATTERN,
        description="Client-chosen key, 1..128 of `A-Za-z0-9._:-`: a retry with the same key and body returns "
        "the transaction already created; the same key with another body is a 409.",
    ),
]
UtcTime = Annotated[
    str,
    Field(pattern=schemas.TIME_PATTERN),
    WithJsonSchema({"type": "string", "pattern": schemas.TIME_PATTERN, "format": "utc-time"}),
]
"""An ISO 8601 time with its UTC offset, e.g. ``2026-12-07T09:30:00Z``."""
UserId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
CredentialId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
VaultId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
EntryId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
AssetId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
TxId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
NodeName = Annotated[str, Path(pattern=schemas.NODE_NAME_PATTERN, description="A node name the log names.")]


def _page(limit: Limit = 50, cursor: Cursor = None) -> Page:
    return Page(limit=limit, cursor=cursor)


def _index_page(limit: Limit = 50, cursor: IndexCursor = None) -> Page:
    return Page(limit=limit, cursor=cursor)


Paging = Annotated[Page, Depends(_page)]
"""``?limit=&cursor=`` as a :class:`harbour.custody.views.Page`."""
IndexPaging = Annotated[Page, Depends(_index_page)]
"""``?limit=&cursor=`` of a log (audit events, governance entries), whose cursor is an index."""
