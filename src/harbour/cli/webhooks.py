"""``harbour webhook``: the organisation's webhook endpoints, their delivery logs, and the signing key.

Each command is one request to the custody API (docs/api.md, "Webhooks"). The
public key ``harbour webhook key`` prints is what a receiver pins to check
deliveries (``harbour.custody.webhooksig.verify``).
"""

from __future__ import annotations

from typing import Annotated, Any, Final

import typer

from harbour.cli.accounts import check_id
from harbour.cli.apiclient import (
    DEFAULT_API,
    AllOption,
    ApiOption,
    CursorOption,
    LimitOption,
    TokenOption,
    api_errors,
    connect,
    emit,
    emit_page,
    list_command,
)
from harbour.cli.params import JsonOption
from harbour.cli.tree import choice

app = typer.Typer(help="Webhooks: endpoints that receive signed events, and what was delivered.", no_args_is_help=True)
COLUMNS: Final = ["id", "url", "events", "enabled"]
WebhookIdArgument = Annotated[str, typer.Argument(help="The endpoint's id.")]


@app.command("add")
def add(
    url: Annotated[
        str, typer.Argument(help="An http:// or https:// URL (public addresses unless the operator allows)")
    ],
    event: Annotated[
        list[str] | None, typer.Option("--event", help="An event type to deliver (repeat it); default: all.")
    ] = None,
    description: Annotated[str | None, typer.Option("--description", help="A note for people.")] = None,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """Register an endpoint (admin)."""
    body: dict[str, Any] = {"url": url, "events": event or ["*"]}
    if description is not None:
        body["description"] = description
    with api_errors(), connect(api, token) as client:
        emit(client.post("/v1/webhooks", body), as_json)


list_command(app, "list", "/v1/webhooks", COLUMNS, "List the organisation's webhook endpoints (admin, auditor).")


def _on(path: str, webhook_id: str, api: str, token: str | None, as_json: bool, post: bool) -> None:
    with api_errors():
        checked = check_id(webhook_id, "WEBHOOK_ID")
        with connect(api, token) as client:
            doc = client.post(path.format(checked)) if post else client.get(path.format(checked))
    emit(doc, as_json)


@app.command("show")
def show(
    webhook_id: WebhookIdArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """One endpoint."""
    _on("/v1/webhooks/{}", webhook_id, api, token, as_json, post=False)


@app.command("enable")
def enable(
    webhook_id: WebhookIdArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Enable an endpoint (admin); deliveries that waited are sent."""
    _on("/v1/webhooks/{}/enable", webhook_id, api, token, as_json, post=True)


@app.command("disable")
def disable(
    webhook_id: WebhookIdArgument, api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False
) -> None:
    """Disable an endpoint (admin); its deliveries wait."""
    _on("/v1/webhooks/{}/disable", webhook_id, api, token, as_json, post=True)


@app.command("deliveries")
def deliveries(
    webhook_id: WebhookIdArgument,
    state: Annotated[
        str | None,
        typer.Option("--state", parser=choice(("pending", "delivered", "failed"), "delivery state")),
    ] = None,
    limit: LimitOption = 50,
    cursor: CursorOption = None,
    walk: AllOption = False,
    api: ApiOption = DEFAULT_API,
    token: TokenOption = None,
    as_json: JsonOption = False,
) -> None:
    """An endpoint's delivery log: each delivery's state, attempts and next attempt (admin, auditor)."""
    with api_errors():
        checked = check_id(webhook_id, "WEBHOOK_ID")
        with connect(api, token) as client:
            page = client.pages(f"/v1/webhooks/{checked}/deliveries", limit, cursor, walk, state=state)
    columns = ["id", "event_type", "state", "attempts", "last_status", "next_attempt_at"]
    emit_page(page, columns, as_json)


@app.command("key")
def key(api: ApiOption = DEFAULT_API, token: TokenOption = None, as_json: JsonOption = False) -> None:
    """The organisation's webhook public key, for receivers to pin."""
    with api_errors(), connect(api, token) as client:
        emit(client.get("/v1/webhooks/signing-key"), as_json)
