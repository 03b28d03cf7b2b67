"""Free text people type (names, labels, notes): one normal form, one bound, one comparison.

A name is shown to the admins and approvers who sign governance entries, to
auditors reading the logs and to operators at a terminal, so it must read the
same everywhere. Text is therefore refused if it holds a character that does
not stand for itself:

- control characters (``Cc``: C0, DEL, C1), which move a terminal's cursor or
  end a log line;
- format characters (``Cf``): the bidirectional controls U+202A..U+202E,
  U+2066..U+2069, U+200E/U+200F and U+061C, which make ``alice`` display as
  another name (the "Trojan Source" attack), zero-width joiners and spaces, the
  byte-order mark, tags;
- line and paragraph separators (``Zl``, ``Zp``), surrogates (``Cs``, which
  JSON's ``\\ud800`` escapes can produce), private-use characters (``Co``) and
  unassigned code points (``Cn``): whatever a later Unicode version makes of
  those, a name accepted today must mean the same to every verifier later;
- the few characters whose canonical form is longer than themselves (U+0958,
  U+FB2C, ...), so that normalising never lengthens text past its bound.

Accepted text is put in Unicode Normalization Form C (UAX #15), trimmed, and,
for a name, every run of spaces (any ``Zs``) becomes one U+0020, in the manner
of the PRECIS nickname profile (RFC 8266 §2.2). Two names are the same name when
their :func:`name_key` (NFKC, then case folding, then NFKC again: RFC 8266's
comparison, with Unicode's default caseless matching) is equal, so ``bob``,
``Bob``, ``bob `` and a fullwidth ``ｂｏｂ`` are one name.

The same code decides in the API (its schema states the refused characters with
:func:`refused_class`), in the custody service and in every verifier of the
governance log (:func:`is_name` on each name an entry carries), so a name the
service refuses is refused by the nodes too. This module imports nothing from
Harbour, so every layer may use it.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Final

MAX_NAME: Final = 128
"""Characters in a name (users, vaults, address-book entries, address labels)."""
MAX_NOTE: Final = 256
"""Characters in a withdrawal's note."""

_REFUSED_CATEGORIES: Final = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_INVISIBLE: Final = (
    (0x00AD, 0x00AD),
    (0x034F, 0x034F),
    (0x061C, 0x061C),
    (0x115F, 0x1160),
    (0x17B4, 0x17B5),
    (0x180B, 0x180F),
    (0x200B, 0x200F),
    (0x202A, 0x202E),
    (0x2060, 0x206F),
    (0x2800, 0x2800),
    (0x3164, 0x3164),
    (0xFE00, 0xFE0F),
    (0xFEFF, 0xFEFF),
    (0xFFA0, 0xFFA0),
    (0xFFF0, 0xFFF8),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0000, 0xE0FFF),
)
"""Characters that show nothing: Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt; most are
format characters already, but variation selectors, the combining grapheme joiner and the Hangul fillers are
not) and the blank Braille pattern. ``alice`` followed by one of them would be another name that looks the same."""


_INVISIBLE_CODES: Final = frozenset(code for low, high in _INVISIBLE for code in range(low, high + 1))


def _refused(code: int) -> bool:
    char = chr(code)
    if code in _INVISIBLE_CODES:
        return True
    return unicodedata.category(char) in _REFUSED_CATEGORIES or len(unicodedata.normalize("NFC", char)) > 1


@functools.cache
def refused_ranges() -> tuple[tuple[int, int], ...]:
    """Every refused code point, as inclusive ranges (from this interpreter's Unicode database; built once)."""
    found: list[tuple[int, int]] = []
    start: int | None = None
    for code in range(sys.maxunicode + 2):
        refused = code <= sys.maxunicode and _refused(code)
        if refused and start is None:
            start = code
        elif not refused and start is not None:
            found.append((start, code - 1))
            start = None
    return tuple(found)


def _class_item(code: int) -> str:
    # Escapes for the BMP (``\\uXXXX`` reads the same in Python's and ECMA-262's regular expressions);
    # a character beyond it is written as itself, which both read as one code point.
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


@functools.cache
def refused_class() -> str:
    """The refused characters as the inside of a regular-expression character class."""
    return "".join(
        _class_item(low) if low == high else f"{_class_item(low)}-{_class_item(high)}" for low, high in refused_ranges()
    )


def name_pattern() -> str:
    """What a name may be sent as: no refused character, and something besides spaces."""
    refused = refused_class()
    return f"^[^{refused}]*[^{refused}\\s][^{refused}]*$"


def note_pattern() -> str:
    """What a note may be sent as: no refused character."""
    return f"^[^{refused_class()}]*$"


_SPACES: Final = re.compile(r"\s+")


class TextError(ValueError):
    """Text refused: a character that does not stand for itself, or too long, or empty."""


def refused_character(value: str) -> str | None:
    """The first refused character of ``value``, written as ``U+XXXX`` and its Unicode name; None if none."""
    char = next((c for c in value if _refused(ord(c))), None)
    if char is None:
        return None
    return f"U+{ord(char):04X} ({unicodedata.name(char, unicodedata.category(char))})"


def _checked(value: object, what: str, limit: int) -> str:
    if not isinstance(value, str):
        raise TextError(f"{what} must be text")
    if len(value) > limit:
        raise TextError(f"{what} is {len(value)} characters; at most {limit} are allowed")
    bad = refused_character(value)
    if bad is not None:
        raise TextError(
            f"{what} contains {bad}: control, format (such as bidirectional), separator, private-use, "
            "unassigned and surrogate characters are refused"
        )
    return unicodedata.normalize("NFC", value)


def name(value: object, what: str = "name", limit: int = MAX_NAME) -> str:
    """``value`` as a name in its one form (NFC, trimmed, spaces collapsed); TextError if refused."""
    text = _SPACES.sub(" ", _checked(value, what, limit)).strip()
    if not text:
        raise TextError(f"{what} must have 1 to {limit} characters besides spaces")
    return text


def note(value: object, what: str = "note", limit: int = MAX_NOTE) -> str | None:
    """``value`` as a note (NFC, trimmed); None for a note that is empty once trimmed."""
    return _checked(value, what, limit).strip() or None


def is_name(value: object, limit: int = MAX_NAME) -> bool:
    """Whether ``value`` is a name already in its one form: what a verifier of a signed record accepts."""
    try:
        return name(value, limit=limit) == value
    except TextError:
        return False


@functools.lru_cache(maxsize=65536)
def name_key(value: str) -> str:
    """What names are compared by: equal keys are the same name (case, width and spacing aside)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", value).casefold())
    return _SPACES.sub(" ", folded).strip()
