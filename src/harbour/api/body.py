"""Strict JSON request bodies.

The body is parsed by :func:`parse_json`, not by FastAPI's default: duplicate
object keys (``{"amount": "1", "amount": "1000"}``, read differently by
different parsers), absurdly long integers and non-JSON constants (``NaN``) are
refused as malformed JSON rather than guessed at.
"""

from __future__ import annotations

import json
from typing import Any, Final

from starlette.requests import Request

from harbour.strictjson import nesting_depth

MAX_JSON_INT_DIGITS: Final = 100
"""No field takes an integer longer than this; Python would otherwise parse 4300-digit numbers."""
MAX_JSON_DEPTH: Final = 32


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise ValueError(f"an integer with more than {MAX_JSON_INT_DIGITS} digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


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
        if nesting_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_bounded_int, parse_constant=_no_constant)
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
