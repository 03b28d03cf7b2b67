"""``/v1/vaults/{vault_id}/statement`` and ``/history``: a vault's book and its withdrawals over a period.

JSON by default, CSV with ``format=csv`` (:mod:`harbour.custody.exports` says
what a statement counts and how cells are written).
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from fastapi import Query
from fastapi.responses import Response

from harbour.api.interface import Json
from harbour.api.params import UtcTime, VaultId
from harbour.api.routing import Actor, Custody, resource_router, returns
from harbour.custody import exports
from harbour.custody import notifyshapes as shapes

router = resource_router("exports")
CSV: Final = "text/csv"
Start = Annotated[
    UtcTime, Query(description="Start of the period (ISO 8601 with offset), included; earlier than `end`.")
]
End = Annotated[
    UtcTime, Query(description="End of the period (ISO 8601 with offset), excluded; at most 366 days after `start`.")
]
Format = Annotated[Literal["json", "csv"], Query(description="`json` (default) or `csv`.")]
CSV_RESPONSE: Final[dict[int | str, dict[str, Any]]] = {200: {"content": {CSV: {"schema": {"type": "string"}}}}}


def _csv(text: str, name: str) -> Response:
    return Response(
        content=text,
        media_type=f"{CSV}; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
    )


@router.get(
    "/vaults/{vault_id}/statement",
    summary="A vault's statement: opening and closing balances per asset, and every movement between",
    responses=CSV_RESPONSE,
    **returns(shapes.Statement),
)
def vault_statement(
    custody: Custody, actor: Actor, vault_id: VaultId, start: Start, end: End, format: Format = "json"
) -> Json | Response:
    doc = custody.vault_statement(actor, vault_id, start=start, end=end)
    return _csv(exports.statement_csv(doc), f"statement-{vault_id}") if format == "csv" else doc


@router.get(
    "/vaults/{vault_id}/history",
    summary="A vault's withdrawals created in a period, in any state",
    responses=CSV_RESPONSE,
    **returns(shapes.History),
)
def vault_history(
    custody: Custody, actor: Actor, vault_id: VaultId, start: Start, end: End, format: Format = "json"
) -> Json | Response:
    doc = custody.vault_history(actor, vault_id, start=start, end=end)
    return _csv(exports.history_csv(doc), f"history-{vault_id}") if format == "csv" else doc
