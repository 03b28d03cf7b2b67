"""The custody REST API: FastAPI routes over :class:`harbour.custody.service.Custody`.

Every route under ``/v1`` except ``/v1/health`` authenticates the caller
(``Authorization: Bearer <token>``) and checks the caller's roles against
:data:`harbour.api.roles.ROUTE_ROLES` *before* the request body is parsed or the
service is called; the service then checks roles again. Errors of every kind are
RFC 9457 problem documents (:mod:`harbour.api.problems`).

Route functions are plain ``def``: the service blocks (database transactions,
MPC keygen across the signer nodes, chain calls), so FastAPI runs each request in
its worker threadpool instead of stalling the event loop.

The body is parsed by :func:`parse_json`, not by FastAPI's default: duplicate
object keys (``{"amount": "1", "amount": "1000"}``, read differently by
different parsers), absurdly long integers and non-JSON constants (``NaN``) are
refused as malformed JSON rather than guessed at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Final

from fastapi import APIRouter, FastAPI, Header, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from harbour import __version__
from harbour.api import responses as views
from harbour.api import schemas
from harbour.api.interface import CustodyService, Json
from harbour.api.middleware import BodyLimit, Guard
from harbour.api.problems import custody_problem, http_problem, validation_problem
from harbour.api.roles import ROUTE_ROLES
from harbour.custody.errors import CustodyError, Forbidden, Unauthorized
from harbour.custody.views import MAX_LIMIT, Page
from harbour.util.strictjson import loads_strict

PUBLIC_ROUTES: Final = frozenset({("GET", "/v1/health")})
MAX_JSON_INT_DIGITS: Final = 100
"""No field takes an integer longer than this; Python would otherwise parse 4300-digit numbers."""
MAX_JSON_DEPTH: Final = 32
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]{1,512}=*")
"""RFC 6750 b64token, bounded."""

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="An API credential (`hbk_...`) from `POST /v1/users/{user_id}/credentials`.",
)


# -- JSON bodies ------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    """Strict JSON: UTF-8, no duplicate keys, no NaN/Infinity, integers of at most 100 digits, depth at most 32.

    The depth is checked before parsing: the chain library raises the interpreter's
    recursion limit to 100000 for the EVM, and at that limit the C JSON decoder
    overflows the thread's stack (a crash, not a RecursionError) on ``[[[[...``
    long before the 64 KiB body limit. Every failure is a
    :class:`json.JSONDecodeError`, which FastAPI reports as a 422 ``json_invalid``
    error (a bare ValueError would be a 500).
    """
    try:
        text = body.decode("utf-8")
        return loads_strict(text, max_depth=MAX_JSON_DEPTH, max_int_digits=MAX_JSON_INT_DIGITS)
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError:
        raise json.JSONDecodeError("not UTF-8", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), "", 0) from None


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json


# -- authentication and roles ----------------------------------------------------


def _describe(method: str, path: str) -> str:
    return f"{method} {path}"


def authorise(custody: CustodyService, request: Request, method: str, path: str) -> Any:
    """The caller's actor, if the credential is valid and one of its roles may use this route."""
    headers = request.headers.getlist("authorization")
    if not headers:
        raise Unauthorized("this request needs an 'Authorization: Bearer <token>' header")
    if len(headers) > 1:
        raise Unauthorized("send one Authorization header, not several")
    scheme, _, token = headers[0].strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN.fullmatch(token):
        raise Unauthorized("the Authorization header must be 'Bearer <token>' with an API credential")
    actor = custody.authenticate(token)
    allowed = ROUTE_ROLES.get((method, path))
    if allowed is None:
        raise Forbidden(f"{_describe(method, path)} is not open to any role")
    roles = frozenset(actor.roles)
    if not roles & allowed:
        have = ", ".join(sorted(roles)) or "none"
        raise Forbidden(
            f"{_describe(method, path)} needs one of the roles {', '.join(sorted(allowed))}; you have {have}"
        )
    return actor


class GuardedRoute(APIRoute):
    """A route that authenticates and checks roles before FastAPI reads the body.

    Doing it here rather than in a dependency means an unauthenticated or
    unauthorised request is refused (401/403) before its body is parsed or
    validated, so it learns nothing and costs nothing.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        for method in self.methods or ():
            allowed = ROUTE_ROLES.get((method, self.path))
            if allowed is not None:
                self.openapi_extra = {**(self.openapi_extra or {}), "x-roles": sorted(allowed)}
                self.description = (self.description or "").strip() + f"\n\nRoles: {', '.join(sorted(allowed))}."

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        path = self.path

        async def guarded(request: Request) -> Response:
            request = StrictJsonRequest(request.scope, request.receive)
            method = "GET" if request.method == "HEAD" else request.method
            if (method, path) not in PUBLIC_ROUTES:
                custody: CustodyService = request.app.state.custody
                request.state.actor = await run_in_threadpool(authorise, custody, request, method, path)
            return await handler(request)

        return guarded


def _actor(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)]) -> Any:
    return request.state.actor


Actor = Annotated[Any, Security(_actor)]
"""The authenticated caller, as checked by :class:`GuardedRoute` (the bearer scheme is for the OpenAPI schema)."""


def allowed_methods(path: str) -> list[str]:
    """Every method some route serves at ``path`` (the router's own 405 names only the first route's)."""
    return sorted({method for pattern, method in _ROUTE_PATTERNS if pattern.fullmatch(path)})


_ROUTE_PATTERNS: Final = [
    (re.compile(re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(template))), method)
    for method, template in (*ROUTE_ROLES, *PUBLIC_ROUTES)
]


def _http_problem(request: Request, exc: Exception) -> Response:
    if isinstance(exc, StarletteHTTPException) and exc.status_code == 405:
        methods = allowed_methods(request.url.path)
        if methods:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(methods)}
    return http_problem(request, exc)


# -- parameters -------------------------------------------------------------------

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"Items per page, 1..{MAX_LIMIT}.")]
Cursor = Annotated[
    str | None,
    Query(pattern=schemas.CURSOR_PATTERN, description="The `next_cursor` of the previous page (opaque)."),
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
UserId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
CredentialId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
VaultId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]
TxId = Annotated[str, Path(pattern=schemas.UUID_PATTERN)]


def _doc(model: Any, status: int = 200) -> dict[str, Any]:
    """Document the response as ``model`` without validating it at run time (see responses.py)."""
    return {"status_code": status, "response_model": None, "responses": {status: {"model": model}}}


_PROBLEM: Final = {"model": views.Problem, "content": {"application/problem+json": {}}}
ERRORS: Final[dict[int | str, dict[str, Any]]] = {
    401: {**_PROBLEM, "description": "No credential, or not a valid one"},
    403: {**_PROBLEM, "description": "The caller's role does not allow this"},
    404: {**_PROBLEM, "description": "No such resource (in the caller's organisation)"},
    409: {**_PROBLEM, "description": "Conflicts with the current state (or an idempotency key reused)"},
    413: {**_PROBLEM, "description": "Body larger than 64 KiB"},
    422: {**_PROBLEM, "description": "Malformed or invalid request; `errors` lists the fields"},
    500: {**_PROBLEM, "description": "Unexpected server error (details are logged, not returned)"},
    503: {**_PROBLEM, "description": "A dependency (signer nodes, chain) is unavailable"},
}

PAGE_DOC: Final = "Returns `{items, next_cursor}`; pass `next_cursor` back as `cursor` until it is null."


def _page(limit: int, cursor: str | None) -> Page:
    return Page(limit=limit, cursor=cursor)


# -- the application --------------------------------------------------------------


def create_app(custody: CustodyService) -> FastAPI:
    app = FastAPI(
        title="Harbour custody API",
        version=__version__,
        description=(
            "Vaults, addresses, withdrawals with policy and approval quorum, deposits, and a verifiable "
            "audit log. Errors are RFC 9457 problem documents (`application/problem+json`). "
            "See docs/api.md for roles, idempotency and pagination."
        ),
        docs_url=None,
        redoc_url=None,
    )
    app.state.custody = custody
    app.add_exception_handler(CustodyError, custody_problem)
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(StarletteHTTPException, _http_problem)
    app.add_middleware(BodyLimit)
    app.add_middleware(Guard)
    app.include_router(build_router(custody))
    original_openapi = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _problems_as_problem_json(original_openapi())
        return original_openapi()

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _problems_as_problem_json(schema: dict[str, Any]) -> None:
    """FastAPI files every response model under application/json; problems are application/problem+json."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if "application/problem+json" in content and "application/json" in content:
                    content["application/problem+json"] = content.pop("application/json")


def build_router(custody: CustodyService) -> APIRouter:
    """Every route under /v1, each a :class:`GuardedRoute`."""
    r = APIRouter(prefix="/v1", route_class=GuardedRoute, responses=ERRORS)

    @r.get("/health", tags=["service"], summary="Liveness (no credential needed)", **_doc(views.Health))
    def health() -> Json:
        return {"status": "ok", "version": __version__}

    @r.get("/me", tags=["service"], summary="The caller: user, organisation and roles", **_doc(views.Me))
    def me(actor: Actor) -> Json:
        return {
            "user_id": actor.user_id,
            "org_id": actor.org_id,
            "name": actor.name,
            "roles": sorted(actor.roles),
        }

    @r.get("/org", tags=["service"], summary="The caller's organisation", **_doc(views.Organisation))
    def organisation(actor: Actor) -> Json:
        return custody.organisation(actor)

    # users and credentials
    @r.post("/users", tags=["users"], summary="Create a user", **_doc(views.User, 201))
    def create_user(actor: Actor, body: schemas.CreateUser) -> Json:
        return custody.create_user(actor, name=body.name, roles=list(body.roles), approval_key=body.approval_key)

    @r.get("/users", tags=["users"], summary="List users", description=PAGE_DOC, **_doc(views.Page[views.User]))
    def list_users(actor: Actor, limit: Limit = 50, cursor: Cursor = None) -> Json:
        return custody.list_users(actor, _page(limit, cursor))

    @r.post(
        "/users/{user_id}/credentials",
        tags=["users"],
        summary="Issue an API credential",
        description="The token is shown once; only its hash is stored.",
        **_doc(views.Credential, 201),
    )
    def issue_credential(actor: Actor, user_id: UserId) -> Json:
        return custody.issue_credential(actor, user_id)

    @r.post(
        "/users/{user_id}/disable",
        tags=["users"],
        summary="Disable a user",
        description="Revokes every credential the user holds; recorded approvals are kept.",
        **_doc(views.User),
    )
    def disable_user(actor: Actor, user_id: UserId) -> Json:
        return custody.disable_user(actor, user_id)

    @r.post(
        "/credentials/{credential_id}/revoke",
        tags=["users"],
        summary="Revoke an API credential",
        description="The owner of the credential, or an admin, can revoke it; it stops working at once.",
        **_doc(views.Revoked),
    )
    def revoke_credential(actor: Actor, credential_id: CredentialId) -> Json:
        return custody.revoke_credential(actor, credential_id)

    # vaults and addresses
    @r.post(
        "/vaults",
        tags=["vaults"],
        summary="Create a vault",
        description="Runs distributed key generation on the signer nodes; no node ever holds the key.",
        **_doc(views.Vault, 201),
    )
    def create_vault(actor: Actor, body: schemas.CreateVault) -> Json:
        return custody.create_vault(actor, name=body.name, threshold=body.threshold, nodes=body.nodes)

    @r.get("/vaults", tags=["vaults"], summary="List vaults", description=PAGE_DOC, **_doc(views.Page[views.Vault]))
    def list_vaults(actor: Actor, limit: Limit = 50, cursor: Cursor = None) -> Json:
        return custody.list_vaults(actor, _page(limit, cursor))

    @r.get("/vaults/{vault_id}", tags=["vaults"], summary="A vault with its balances", **_doc(views.VaultDetail))
    def get_vault(actor: Actor, vault_id: VaultId) -> Json:
        return custody.get_vault(actor, vault_id)

    @r.post("/vaults/{vault_id}/addresses", tags=["vaults"], summary="Derive a new address", **_doc(views.Address, 201))
    def derive_address(actor: Actor, vault_id: VaultId, body: schemas.DeriveAddress | None = None) -> Json:
        return custody.derive_address(actor, vault_id, label=body.label if body is not None else None)

    @r.get(
        "/vaults/{vault_id}/addresses",
        tags=["vaults"],
        summary="List a vault's addresses",
        description=PAGE_DOC,
        **_doc(views.Page[views.Address]),
    )
    def list_addresses(actor: Actor, vault_id: VaultId, limit: Limit = 50, cursor: Cursor = None) -> Json:
        return custody.list_addresses(actor, vault_id, _page(limit, cursor))

    # assets and the address book
    @r.post("/assets", tags=["assets"], summary="Add an asset (ETH or an ERC-20 token)", **_doc(views.Asset, 201))
    def add_asset(actor: Actor, body: schemas.AddAsset) -> Json:
        return custody.add_asset(
            actor, symbol=body.symbol, kind=body.kind, contract=body.contract, decimals=body.decimals
        )

    @r.get("/assets", tags=["assets"], summary="List assets", description=PAGE_DOC, **_doc(views.Page[views.Asset]))
    def list_assets(actor: Actor, limit: Limit = 50, cursor: Cursor = None) -> Json:
        return custody.list_assets(actor, _page(limit, cursor))

    @r.post(
        "/address-book", tags=["address book"], summary="Add an address-book entry", **_doc(views.AddressBookEntry, 201)
    )
    def add_address_book_entry(actor: Actor, body: schemas.AddAddressBookEntry) -> Json:
        return custody.add_address_book_entry(actor, name=body.name, address=body.address, whitelisted=body.whitelisted)

    @r.get(
        "/address-book",
        tags=["address book"],
        summary="List the address book",
        description=PAGE_DOC,
        **_doc(views.Page[views.AddressBookEntry]),
    )
    def list_address_book(actor: Actor, limit: Limit = 50, cursor: Cursor = None) -> Json:
        return custody.list_address_book(actor, _page(limit, cursor))

    # transactions
    @r.post(
        "/transactions",
        tags=["transactions"],
        summary="Submit a withdrawal",
        description="Needs an `Idempotency-Key`: retrying with the same key and body returns the same "
        "transaction and never creates a second withdrawal.",
        **_doc(views.Transaction, 201),
    )
    def submit_withdrawal(actor: Actor, body: schemas.Withdrawal, idempotency_key: IdempotencyKey) -> Json:
        return custody.submit_withdrawal(
            actor,
            vault_id=body.vault_id,
            asset=body.asset,
            to=body.to,
            amount=body.amount,
            idempotency_key=idempotency_key,
            note=body.note,
        )

    @r.get(
        "/transactions",
        tags=["transactions"],
        summary="List transactions",
        description=PAGE_DOC,
        **_doc(views.Page[views.Transaction]),
    )
    def list_transactions(
        actor: Actor,
        limit: Limit = 50,
        cursor: Cursor = None,
        state: Annotated[str | None, Query(pattern=schemas.STATE_PATTERN, description="Only this state.")] = None,
    ) -> Json:
        return custody.list_transactions(actor, _page(limit, cursor), state)

    @r.post(
        "/transactions/explain",
        tags=["transactions"],
        summary="What the policy would decide for a withdrawal (nothing is written)",
        **_doc(views.Explanation),
    )
    def explain(actor: Actor, body: schemas.Explain) -> Json:
        return custody.explain(actor, vault_id=body.vault_id, asset=body.asset, to=body.to, amount=body.amount)

    @r.get(
        "/transactions/{tx_id}",
        tags=["transactions"],
        summary="A transaction and its approvals",
        **_doc(views.Transaction),
    )
    def get_transaction(actor: Actor, tx_id: TxId) -> Json:
        return custody.get_transaction(actor, tx_id)

    @r.get(
        "/transactions/{tx_id}/approval-request",
        tags=["transactions"],
        summary="What an approver signs",
        description="The statement (hex) and the fields it is made from; a client must recompute the "
        "statement from the fields before signing it.",
        **_doc(views.ApprovalRequest),
    )
    def approval_request(actor: Actor, tx_id: TxId) -> Json:
        return custody.approval_request(actor, tx_id)

    @r.post(
        "/transactions/{tx_id}/approve",
        tags=["transactions"],
        summary="Approve (signed statement)",
        **_doc(views.Transaction),
    )
    def approve(actor: Actor, tx_id: TxId, body: schemas.Decision) -> Json:
        return custody.approve(actor, tx_id, signature=body.signature)

    @r.post(
        "/transactions/{tx_id}/reject",
        tags=["transactions"],
        summary="Reject (signed statement)",
        **_doc(views.Transaction),
    )
    def reject(actor: Actor, tx_id: TxId, body: schemas.Decision) -> Json:
        return custody.reject(actor, tx_id, signature=body.signature)

    @r.post(
        "/transactions/{tx_id}/cancel",
        tags=["transactions"],
        summary="Cancel before signing",
        **_doc(views.Transaction),
    )
    def cancel(actor: Actor, tx_id: TxId) -> Json:
        return custody.cancel(actor, tx_id)

    # policy
    @r.get("/policy", tags=["policy"], summary="The policy in force", **_doc(views.Policy))
    def get_policy(actor: Actor) -> Json:
        return custody.get_policy(actor)

    @r.get(
        "/policy/versions",
        tags=["policy"],
        summary="Every policy version",
        description=PAGE_DOC,
        **_doc(views.Page[views.Policy]),
    )
    def list_policies(actor: Actor, limit: Limit = 50, cursor: Cursor = None) -> Json:
        return custody.list_policies(actor, _page(limit, cursor))

    @r.post(
        "/policy/proposals",
        tags=["policy"],
        summary="Propose a new policy",
        description="Creates a policy-change transaction that needs an admin quorum; idempotent like withdrawals.",
        **_doc(views.Transaction, 201),
    )
    def propose_policy(actor: Actor, body: schemas.PolicyProposal, idempotency_key: IdempotencyKey) -> Json:
        return custody.propose_policy(actor, body.document, idempotency_key)

    # deposits
    @r.get(
        "/deposits",
        tags=["deposits"],
        summary="Deposits seen on chain",
        description=PAGE_DOC,
        **_doc(views.Page[views.Deposit]),
    )
    def list_deposits(actor: Actor, limit: Limit = 50, cursor: Cursor = None) -> Json:
        return custody.list_deposits(actor, _page(limit, cursor))

    # audit
    @r.get(
        "/audit/events",
        tags=["audit"],
        summary="Audit events, oldest first",
        description=PAGE_DOC,
        **_doc(views.Page[views.AuditEvent]),
    )
    def audit_events(actor: Actor, limit: Limit = 50, cursor: Cursor = None) -> Json:
        return custody.audit_events(actor, _page(limit, cursor))

    @r.get("/audit/head", tags=["audit"], summary="The signed tree head of the audit log", **_doc(views.AuditDocument))
    def audit_head(actor: Actor) -> Json:
        return custody.audit_head(actor)

    @r.get(
        "/audit/proof/{index}",
        tags=["audit"],
        summary="Inclusion proof of one event (RFC 9162)",
        **_doc(views.AuditDocument),
    )
    def audit_proof(
        actor: Actor,
        index: Annotated[int, Path(ge=0, le=2**62)],
        tree_size: Annotated[int | None, Query(ge=1, le=2**62)] = None,
    ) -> Json:
        return custody.audit_proof(actor, index, tree_size)

    @r.get(
        "/audit/consistency",
        tags=["audit"],
        summary="Consistency proof between two tree sizes (RFC 9162)",
        **_doc(views.AuditDocument),
    )
    def audit_consistency(
        actor: Actor,
        old: Annotated[int, Query(ge=1, le=2**62)],
        new: Annotated[int, Query(ge=1, le=2**62)],
    ) -> Json:
        return custody.audit_consistency(actor, old, new)

    return r
