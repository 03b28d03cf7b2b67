"""How the long-running processes log: one line per record, JSON or text, with the context it happened in.

``harbour custody serve`` and ``harbour node run`` call :func:`configure` once at
start. Every record then becomes one line on stderr:

- ``json``: one object per line, ``time`` (ISO 8601 UTC, milliseconds, ``Z``),
  ``level`` (lowercase), ``logger``, ``message``, then the context fields bound
  where the record was made (``request_id`` for an API request, ``transaction_id``
  in the signing pipeline) and the fields the call gave with ``extra=``; ``exception``
  holds a traceback's text. A log shipper parses it without a grok pattern.
- ``text``: the same facts for a person at a terminal, ``key=value`` after the message.

``auto`` (the default) is ``text`` when stderr is a terminal and ``json`` otherwise:
a service run by systemd or a container writes to a pipe, an operator trying a
command reads a terminal.

Context is a :class:`contextvars.ContextVar`, so it follows the code that set it
through ``await`` and into the threads that copy the context (anyio's worker
threads), and never leaks between two requests served at once. :func:`bound`
sets fields for a block.

Secrets never reach the line: whatever the message, the context or the extra
fields hold, :func:`redact` replaces API tokens (``hbk_<id>_<secret>``), bearer
credentials, passwords in URLs and the values of ``passphrase=``/``password=``/
``token=``/``secret=``/``pin=`` pairs, and extra fields with such names, before
anything is written. Redaction is a last line of defence: the code does not log
secrets on purpose.

This module imports nothing from Harbour, so any layer may use it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import json
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import IO, Final, Literal
from urllib.parse import urlsplit

Format = Literal["json", "text"]
FORMATS: Final = ("auto", "json", "text")
LEVELS: Final = ("debug", "info", "warning", "error")
REDACTED: Final = "[redacted]"

_NOTHING: Final[Mapping[str, str]] = MappingProxyType({})
_CONTEXT: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar("harbour_log_context", default=_NOTHING)

_SECRET_WORDS: Final = ("passphrase", "password", "passwd", "token", "secret", "pin", "authorization", "credential")
_SECRET_NAMES: Final = "|".join([*_SECRET_WORDS, "api_key", "api-key", "apikey", "access_key"])
"""The names of secrets (not secrets): a value after ``NAME=`` or in a field so named is redacted."""
_PATTERNS: Final = (
    # an API token: the credential id may be shown, the secret after it never
    (re.compile(r"\b(hbk_[0-9a-fA-F-]{1,64}_)[0-9a-fA-F]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]+"), rf"\g<1>{REDACTED}"),
    (re.compile(r"(?i)\b(basic\s+)[A-Za-z0-9+/=]{8,}"), rf"\g<1>{REDACTED}"),
    # scheme://user:password@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]*:)[^\s@/]+@"), rf"\g<1>{REDACTED}@"),
    # NAME=value, also as the end of a longer name (access_token=, HARBOUR_CUSTODY_PASSPHRASE=)
    (re.compile(rf"(?i)((?:{_SECRET_NAMES})=)[^\s&,;\"']+"), rf"\g<1>{REDACTED}"),
    (re.compile(rf"(?i)(\"(?:{_SECRET_NAMES})\"\s*:\s*)\"[^\"]*\""), rf'\g<1>"{REDACTED}"'),
)
_SECRET_FIELD: Final = re.compile(rf"(?i)(^|_)({_SECRET_NAMES})($|_)")

_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
"""Attributes every record has: anything else on a record came from ``extra=``."""

_configured = False
_saved: dict[str, int] = {}


def origin(url: str) -> str:
    """``scheme://host[:port]`` of a URL, and ``/...`` if it had more: a provider's key may sit in any part of it.

    What a log or a banner says of a chain node's URL: its path and query (``/v3/KEY``,
    ``?apikey=``) and any user information are never shown.
    """
    parts = urlsplit(url)
    if not parts.scheme or not parts.hostname:
        return "[unparsed url]"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    port = f":{parts.port}" if parts.port is not None else ""
    rest = "/..." if parts.path.strip("/") or parts.query or parts.fragment else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def redact(text: str) -> str:
    """``text`` with every credential-shaped part replaced by ``[redacted]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def context() -> dict[str, str]:
    """The fields bound here (a copy)."""
    return dict(_CONTEXT.get())


@contextlib.contextmanager
def bound(**fields: str) -> Iterator[None]:
    """Add ``fields`` to every record made inside the block (and in what it awaits or runs in copied contexts)."""
    token = _CONTEXT.set({**_CONTEXT.get(), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _value(name: str, value: object) -> object:
    if _SECRET_FIELD.search(name):
        return REDACTED
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def fields(record: logging.LogRecord) -> dict[str, object]:
    """A record's facts: time, level, logger, message, context, extra fields and exception text, redacted."""
    when = dt.datetime.fromtimestamp(record.created, dt.UTC)
    out: dict[str, object] = {
        "time": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
        "message": redact(record.getMessage()),
    }
    bound_fields = getattr(record, "context", None)
    for name, value in (bound_fields if isinstance(bound_fields, dict) else {}).items():
        out.setdefault(name, _value(name, value))
    for name, value in record.__dict__.items():
        if name not in _STANDARD and name != "context" and not name.startswith("_"):
            out.setdefault(name, _value(name, value))
    if record.exc_info:
        out["exception"] = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        out["exception"] = redact(record.exc_text)
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped by JSON)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(fields(record), ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message key=value ...`` with the traceback, if any, on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        facts = fields(record)
        head = [str(facts.pop(k)) for k in ("time", "level", "logger")]
        message = str(facts.pop("message"))
        exception = facts.pop("exception", None)
        pairs = " ".join(f"{k}={_shown(v)}" for k, v in facts.items())
        line = f"{head[0]} {head[1].upper()} {head[2]}: {message}" + (f" {pairs}" if pairs else "")
        return line + (f"\n{exception}" if exception else "")


def _shown(value: object) -> str:
    """A value as ``key=value`` shows it: quoted when it has a space or a quote, so the pairs stay apart."""
    text = str(value)
    return json.dumps(text) if any(c in text for c in ' "=') else text


class _Context(logging.Filter):
    """Copy the bound context onto the record when it is made (a handler may format it in another thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "context"):
            record.context = dict(_CONTEXT.get())
        return True


def resolve(fmt: str, stream: IO[str]) -> Format:
    """``auto`` as ``text`` on a terminal and ``json`` elsewhere; ValueError for an unknown format."""
    if fmt not in FORMATS:
        raise ValueError(f"the log format is one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "auto":
        isatty = getattr(stream, "isatty", None)
        return "text" if isatty is not None and isatty() else "json"
    return "json" if fmt == "json" else "text"


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Whatever ``sys.stderr`` is when a record is written (as :data:`logging.lastResort` does)."""

    def __init__(self) -> None:
        logging.Handler.__init__(self)

    @property
    def stream(self) -> IO[str]:
        return sys.stderr


def configure(fmt: str = "auto", level: str = "info", *, stream: IO[str] | None = None) -> Format:
    """Send every record to ``stream`` (stderr) as :func:`resolve` says; Harbour's loggers at ``level``.

    Other libraries' loggers stay at warning: their info lines (an HTTP client's
    every request) are not the service's story. Calling it again replaces the
    handler; :func:`unconfigure` removes it.
    """
    global _configured
    if level not in LEVELS:
        raise ValueError(f"the log level is one of {', '.join(LEVELS)}, got {level!r}")
    chosen = resolve(fmt, stream if stream is not None else sys.stderr)
    handler: logging.Handler = logging.StreamHandler(stream) if stream is not None else _Stderr()
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    handler.addFilter(_Context())
    unconfigure()
    _saved.update(root=logging.getLogger().level, harbour=logging.getLogger("harbour").level)
    handler._harbour = True  # type: ignore[attr-defined]
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("harbour").setLevel(level.upper())
    _configured = True
    return chosen


def unconfigure() -> None:
    """Undo :func:`configure` (a server that ran in-process, a test): its handler goes, the levels come back."""
    global _configured
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_harbour", False)]:
        root.removeHandler(old)
    if _configured:
        root.setLevel(_saved["root"])
        logging.getLogger("harbour").setLevel(_saved["harbour"])
    _configured = False


def configured() -> bool:
    """Whether :func:`configure` ran in this process (servers then leave logging to it)."""
    return _configured
