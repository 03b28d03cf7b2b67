"""Strict JSON request bodies.

The body is parsed by :func:`parse_json`, not by FastAPI's default: duplicate
object keys (``{"amount": "1", "amount": "1000"}``, read differently by
different parsers), absurdly long integers and non-JSON constants (``NaN``) are
refused as malformed JSON rather than guessed at.

A number written with a fraction or an exponent is read exactly (as a decimal,
never through a double): ``2.0`` and ``1e18`` are the integers they equal, as
JSON Schema's ``integer`` says they are, so the schema's integers are exactly
what the API takes; ``1.5`` stays a fraction, which no field accepts.
"""

from __future__ import annotations

import decimal
import json
from typing import Any, Final

from starlette.requests import Request

from harbour.util.strictjson import loads_strict

MAX_JSON_INT_DIGITS: Final = 100
"""No field takes an integer longer than this; Python would otherwise parse 4300-digit numbers."""
MAX_JSON_DEPTH: Final = 32


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
        return loads_strict(
            text, max_depth=MAX_JSON_DEPTH, max_int_digits=MAX_JSON_INT_DIGITS, parse_float=_exact_number
        )
    except json.JSONDecodeError:
        raise
    except UnicodeDecodeError:
        raise json.JSONDecodeError("not UTF-8", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", "", 0) from None
    except ValueError as exc:
        raise json.JSONDecodeError(str(exc), "", 0) from None


def _exact_number(token: str) -> int | float:
    """An integral number as that integer (bounded like any other), anything else as the float it was."""
    value = decimal.Decimal(token)
    if value == value.to_integral_value() and (value.is_zero() or value.adjusted() < MAX_JSON_INT_DIGITS):
        return int(value)
    if value == value.to_integral_value():
        raise ValueError(f"an integer with more than {MAX_JSON_INT_DIGITS} digits")
    return float(token)


class StrictJsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json(await self.body())
        return self._json
