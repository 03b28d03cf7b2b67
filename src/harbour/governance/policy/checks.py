"""Every input check of the policy package, in one place, so no part of it trusts what it is handed.

Two kinds of input reach a policy. A JSON document comes from an administrator and
is read by the ``read_*`` functions, which refuse anything that would otherwise
silently weaken the policy (an unknown key, a float amount, an id with an invisible
character) with a :class:`PolicyError` that starts with the JSON path of the fault.
Python values come from the service and are checked by the ``check_*`` functions,
which raise ``TypeError``/``ValueError`` as any constructor would: a malformed
argument is a programming error, not a bad document.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MAX_AMOUNT: Final = 2**256 - 1
"""The largest amount a document may name: any uint256 balance or transfer fits."""
MAX_LIST: Final = 1_000
MAX_NAME_LENGTH: Final = 128

_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CLOCK = re.compile(r"([01][0-9]|2[0-4]):([0-5][0-9])")
_REJECTED_ZONES: Final = frozenset({"localtime", "posixrules", "Factory"})


class PolicyError(ValueError):
    """A malformed policy document; the message starts with the JSON path of the fault."""


# --------------------------------------------------------------------------- Python arguments


def check_id(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise TypeError(f"{what} must be a non-empty string, got {value!r}")


def check_amount(value: object, what: str) -> None:
    # bool is an int subclass, and True passing for 1 wei is exactly the kind of slip to refuse.
    if type(value) is not int:
        raise TypeError(f"{what} must be an int in base units, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{what} must not be negative, got {value}")


def check_time(value: object, what: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise TypeError(f"{what} must be a timezone-aware datetime, got {value!r}")


# --------------------------------------------------------------------------- JSON documents


def fail(path: str, message: str) -> NoReturn:
    raise PolicyError(f"{path}: {message}")


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def kind_of(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def read_object(
    value: object, path: str, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        fail(path or "document", f"expected an object, got {kind_of(value)}")
    allowed = required + optional
    for key in value:
        if not isinstance(key, str):
            fail(path or "document", f"keys must be strings, got {key!r}")
        if key not in allowed:
            fail(_key(path, key), f"unknown key (allowed: {', '.join(allowed)})")
    for key in required:
        if key not in value:
            fail(_key(path, key), "required")
    return value


def read_text(value: object, path: str, limit: int = MAX_NAME_LENGTH, *, multiline: bool = False) -> str:
    if not isinstance(value, str):
        fail(path, f"expected a string, got {kind_of(value)}")
    if not value:
        fail(path, "must not be empty")
    if len(value) > limit:
        fail(path, f"longer than {limit} characters")
    if value != value.strip():
        fail(path, f"leading or trailing whitespace in {value!r}")
    for char in value:
        # Control and invisible formatting characters (bidi overrides, zero-width) let two ids look alike.
        if unicodedata.category(char) in ("Cc", "Cf", "Cs") and not (multiline and char == "\n"):
            fail(path, f"control, format or surrogate character {char!r}")
    return value


def read_id_set(value: object, path: str) -> frozenset[str]:
    if not isinstance(value, list | tuple):
        fail(path, f"expected an array of strings, got {kind_of(value)}")
    if not value:
        fail(path, "must not be empty (omit the key to match anything)")
    if len(value) > MAX_LIST:
        fail(path, f"more than {MAX_LIST} entries")
    seen: set[str] = set()
    for i, item in enumerate(value):
        text = read_text(item, f"{path}[{i}]")
        if text in seen:
            fail(f"{path}[{i}]", f"duplicate {text!r}")
        seen.add(text)
    return frozenset(seen)


def read_amount(value: object, path: str) -> int:
    """A JSON integer or a canonical decimal string (clients that parse JSON into doubles lose precision above 2^53)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        fail(path, f"expected an integer or a decimal string of base units, got {kind_of(value)}")
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value) or len(value) > 78:
            fail(path, f"{value!r} is not a canonical decimal string (digits only, no sign, no leading zeros)")
        value = int(value)
    if value < 0:
        fail(path, f"must not be negative, got {value}")
    if value > MAX_AMOUNT:
        fail(path, "larger than 2^256 - 1")
    return value


def read_integer(value: object, path: str, low: int, high: int) -> int:
    if type(value) is not int:
        fail(path, f"expected an integer, got {kind_of(value)}")
    if not low <= value <= high:
        fail(path, f"must be between {low} and {high}, got {value}")
    return value


def read_choice(value: object, path: str, options: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in options:
        fail(path, f"expected one of {', '.join(options)}, got {value!r}")
    return value


def read_clock(value: object, path: str, *, end: bool) -> int:
    if not isinstance(value, str) or not (m := _CLOCK.fullmatch(value)):
        fail(path, f"expected a time HH:MM, got {value!r}")
    minutes = int(m[1]) * 60 + int(m[2])
    if minutes > 24 * 60 or (minutes == 24 * 60 and not end):
        fail(path, f"{value!r} is not a time of day{' (24:00 is allowed only as to)' if minutes == 1440 else ''}")
    return minutes


def read_zone(value: object, path: str) -> str:
    if not isinstance(value, str) or not value:
        fail(path, f"expected an IANA time zone name such as 'Asia/Hong_Kong', got {value!r}")
    # Host-specific or non-civil zone files would make a decision depend on the machine it ran on.
    if value in _REJECTED_ZONES or value.startswith(("posix/", "right/")):
        fail(path, f"{value!r} is not a portable IANA time zone")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        fail(path, f"unknown time zone {value!r}")
    return value
