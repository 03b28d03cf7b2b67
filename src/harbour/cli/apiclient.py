"""The custody commands' client of the REST API: options, requests, errors and output.

Every custody command talks to a running API (``--api URL``, default
``$HARBOUR_API`` or http://127.0.0.1:8700) with a bearer credential (``--token``
or, better, ``$HARBOUR_TOKEN``: a command-line argument is visible to every user
of the machine through the process list). The API's problem documents are
reported as every ``harbour`` error is (:mod:`harbour.cli.output`): one
``error: <detail>`` line on stderr, or under ``--json`` the API's problem
document itself (with ``exit_code``) on stdout; a 400, 404 or 422 exits 2 like
any bad command-line input, anything else the API refuses exits 1.

Requests that are safe to repeat (reads, and creations carrying an idempotency
key) are retried on a connection failure, so a dropped connection after a
withdrawal was accepted cannot leave the operator guessing whether to resend it;
they are also retried when the API answers 503 (a dependency is down), after the
``Retry-After`` it gives (at most :data:`MAX_RETRY_AFTER` seconds, and
:data:`RETRIES` attempts in all). Anything else is sent once.

An https API is verified against the system's certificate authorities, or
against ``$HARBOUR_CA_FILE`` (a PEM bundle) for a private one. A credential
issued with a request-signing key needs ``$HARBOUR_SIGNING_KEY``: the path of
the PEM Ed25519 private key, with which every request is then signed
(:mod:`harbour.util.request_signing`).
"""

from __future__ import annotations

import json
import os
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Annotated, Any, Final

import httpx
import typer
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from harbour.cli import credentials, output
from harbour.cli.params import USAGE_EXIT, InputError, JsonOption, fail
from harbour.util import request_signing

API_ENV: Final = "HARBOUR_API"
TOKEN_ENV: Final = "HARBOUR_TOKEN"  # noqa: S105 (the variable's name, not a token)
CA_ENV: Final = "HARBOUR_CA_FILE"
SIGNING_KEY_ENV: Final = "HARBOUR_SIGNING_KEY"
DEFAULT_API: Final = "http://127.0.0.1:8700"
TIMEOUT: Final = 30.0
RETRIES: Final = 3
RETRY_DELAY: Final = 0.5
MAX_RETRY_AFTER: Final = 15.0
"""The longest a 503's Retry-After makes the client wait before trying again."""
MAX_LIMIT: Final = 200

ApiOption = Annotated[
    str, typer.Option("--api", envvar=API_ENV, help=f"Custody API base URL (${API_ENV}).", show_default=True)
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token",
        envvar=TOKEN_ENV,
        help=f"API credential (hbk_...); prefer ${TOKEN_ENV}, since arguments are visible in the process list.",
        show_envvar=False,
    ),
]
LimitOption = Annotated[int, typer.Option("--limit", help=f"Items per page, 1..{MAX_LIMIT}.")]
CursorOption = Annotated[str | None, typer.Option("--cursor", help="Start after this cursor (from --json output).")]
AllOption = Annotated[bool, typer.Option("--all", help="Follow next_cursor until the last page.")]


class ApiError(RuntimeError):
    """The API refused the request (a problem document) or could not be reached."""

    def __init__(self, detail: str, status: int | None = None, problem: Mapping[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.problem = dict(problem or {})


def _describe(response: httpx.Response) -> ApiError:
    problem: Any = None
    with suppress(ValueError):
        problem = response.json()
    if isinstance(problem, dict) and isinstance(problem.get("detail"), str):
        detail = problem["detail"]
        errors = problem.get("errors")
        if isinstance(errors, list) and len(errors) > 1:
            detail += "; " + "; ".join(
                f"{e.get('location')}: {e.get('message')}" for e in errors[1:5] if isinstance(e, dict)
            )
        return ApiError(f"{detail} (HTTP {response.status_code})", response.status_code, problem)
    text = response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
    return ApiError(f"HTTP {response.status_code} from the API: {text}", response.status_code)


def _retry_after(response: httpx.Response, attempt: int) -> float:
    """Seconds to wait after a 503: its Retry-After (delta seconds), bounded; else a short back-off."""
    value = response.headers.get("retry-after", "")
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    return RETRY_DELAY * attempt


def _verify(ca_file: str | None) -> ssl.SSLContext | bool:
    if not ca_file:
        return True
    try:
        return ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise InputError(f"${CA_ENV}: cannot use {ca_file} as a CA bundle: {exc}") from None


def _signing_key(path: str | None) -> Ed25519PrivateKey | None:
    if not path:
        return None
    try:
        key = serialization.load_pem_private_key(open(path, "rb").read(), password=None)  # noqa: SIM115
    except (OSError, ValueError, TypeError) as exc:
        raise InputError(f"${SIGNING_KEY_ENV}: cannot read an unencrypted PEM private key from {path}: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"${SIGNING_KEY_ENV}: {path} is not an Ed25519 private key")
    return key


class Client:
    """A synchronous client of one API with one credential.

    ``ca_file`` and ``signing_key`` default to ``$HARBOUR_CA_FILE`` and
    ``$HARBOUR_SIGNING_KEY`` (a PEM file's path, see the module docstring).
    """

    def __init__(
        self,
        api: str,
        token: str | None,
        *,
        timeout: float = TIMEOUT,
        transport: Any = None,
        ca_file: str | None = None,
        signing_key: Ed25519PrivateKey | None = None,
    ) -> None:
        api = api.strip().rstrip("/")
        if not api.startswith(("http://", "https://")) or len(api) > 2048:
            raise InputError(f"--api must be an http:// or https:// URL, got {api!r}")
        if token is not None and (not token.isascii() or not token.isprintable() or " " in token):
            raise InputError("--token: a credential is printable ASCII without spaces (hbk_...)")
        self.api = api
        self.token = token
        self.signing_key = signing_key or _signing_key(os.environ.get(SIGNING_KEY_ENV))
        verify = _verify(ca_file or os.environ.get(CA_ENV))
        self._http = httpx.Client(
            base_url=api, timeout=timeout, transport=transport, follow_redirects=False, verify=verify
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        retry: bool | None = None,
        timeout: float | None = None,
        auth: bool = True,
    ) -> Any:
        """Send one request and return the decoded JSON, raising ApiError for anything but 2xx.

        ``retry`` defaults to True for GET and for a request with an
        ``Idempotency-Key``; those are repeated after a connection failure or a 503.
        """
        sent_headers = {"Accept": "application/json", **(headers or {})}
        if auth:
            if not self.token:
                raise InputError(f"no credential: run harbour login, or set ${TOKEN_ENV}")
            sent_headers["Authorization"] = f"Bearer {self.token}"
        query = {k: v for k, v in (params or {}).items() if v is not None}
        idempotent = method == "GET" or any(k.lower() == "idempotency-key" for k in sent_headers)
        attempts = RETRIES if (retry if retry is not None else idempotent) else 1
        for attempt in range(1, attempts + 1):
            request = self._http.build_request(
                method,
                path,
                json=body,
                params=query,
                headers=sent_headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            if self.signing_key is not None and auth:  # each attempt its own nonce: a resend is no replay
                target = request.url.raw_path.decode("latin-1")
                request.headers.update(request_signing.sign(self.signing_key, method, target, request.content))
            try:
                response = self._http.send(request)
            except httpx.TransportError as exc:
                if attempt < attempts:
                    time.sleep(RETRY_DELAY * attempt)
                    continue
                raise ApiError(f"cannot reach the custody API at {self.api}: {exc or type(exc).__name__}") from None
            if response.status_code == 503 and attempt < attempts:
                time.sleep(_retry_after(response, attempt))
                continue
            break
        if not response.is_success:
            raise _describe(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(f"the API at {self.api} answered with something that is not JSON") from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.request("POST", path, body=body, **kwargs)

    def pages(self, path: str, limit: int, cursor: str | None, walk: bool, **params: Any) -> dict[str, Any]:
        """One page, or with ``walk`` every page from ``cursor`` on, as one ``{items, next_cursor}``."""
        check_limit(limit)
        items: list[Any] = []
        while True:
            page = self.get(path, limit=limit, cursor=cursor, **params)
            if not isinstance(page, dict) or not isinstance(page.get("items"), list):
                raise ApiError(f"the API's answer to {path} is not a page of items")
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not walk or not cursor:
                return {"items": items, "next_cursor": cursor}


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InputError(f"--limit must be 1..{MAX_LIMIT}, got {limit}")
    return limit


@contextmanager
def api_errors() -> Iterator[None]:
    """Bad input, or the API's 400/404/422: exit 2; any other refusal, or no answer: exit 1."""
    try:
        yield
    except InputError as exc:
        raise fail(str(exc), USAGE_EXIT) from None
    except ApiError as exc:
        code = output.exit_code_for_status(exc.status)
        raise fail(exc.detail, code, status=exc.status, api_problem=exc.problem) from None


@contextmanager
def connect(api: str, token: str | None, *, timeout: float = TIMEOUT) -> Iterator[Client]:
    """A client of ``api`` with ``token``; what is not given explicitly comes from the profile in use."""
    api, token, ca_file = credentials.resolve(api, token, DEFAULT_API)
    client = Client(api, token, timeout=timeout, ca_file=ca_file)
    try:
        yield client
    finally:
        client.close()


# -- output -----------------------------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return ",".join(str(v) for v in value)
    if isinstance(value, list | dict):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def emit(doc: Any, as_json: bool) -> None:
    """``--json``: the API's JSON document; otherwise aligned ``key: value`` lines."""
    if as_json:
        output.emit(doc, True)
        return
    if isinstance(doc, dict):
        width = max((len(k) for k in doc), default=0)
        for key, value in doc.items():
            typer.echo(f"{key + ':':<{width + 1}} {_cell(value)}")
    else:
        typer.echo(_cell(doc))


def emit_page(page: Mapping[str, Any], columns: Sequence[str], as_json: bool) -> None:
    """A page as a table of ``columns`` (``--json``: the whole page, every field)."""
    if as_json:
        output.emit(page, True)
        return
    rows = [[_cell(item.get(c)) if isinstance(item, dict) else _cell(item) for c in columns] for item in page["items"]]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    typer.echo("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in rows:
        typer.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if page.get("next_cursor"):
        typer.echo(f"(more: --cursor {page['next_cursor']}, or --all)", err=True)


note = output.note


def emit_proposal(tx: Mapping[str, Any], as_json: bool) -> None:
    """Print a governance transaction (a proposed change): what it changes, and how it lands."""
    if as_json:
        emit(tx, True)
        return
    emit({k: tx.get(k) for k in ("id", "kind", "state", "seq")}, False)
    for change in tx.get("changes") or []:
        if isinstance(change, dict):
            typer.echo(f"  - {change.get('description')}")
    note(f"it lands once signed by you and the admin quorum: harbour approve {tx.get('id')} --key YOUR_KEY", False)


def list_command(app: typer.Typer, name: str, path: str, columns: Sequence[str], summary: str) -> None:
    """Register ``name`` on ``app``: a paged list of ``path`` shown as ``columns`` (every list command's shape)."""

    def command(
        limit: LimitOption = 50,
        cursor: CursorOption = None,
        walk: AllOption = False,
        api: ApiOption = DEFAULT_API,
        token: TokenOption = None,
        as_json: JsonOption = False,
    ) -> None:
        with api_errors(), connect(api, token) as client:
            page = client.pages(path, limit, cursor, walk)
        emit_page(page, columns, as_json)

    command.__doc__ = summary
    command.__name__ = f"{name}_list"
    app.command(name)(command)
