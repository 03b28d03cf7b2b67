"""The strength floor every new passphrase must clear, and its one override.

A passphrase that protects a key file is attacked offline: whoever copies the
file guesses as fast as the file's key derivation allows, with no lockout and no
one watching. So a passphrase is judged by how many guesses an attacker who knows
the common choices needs, not by character classes: ``Password123!`` has all
four classes and falls in a few thousand guesses, ``correct horse battery
staple`` has one and does not.

The estimate is zxcvbn's (Wheeler, "zxcvbn: Low-Budget Password Strength
Estimation", USENIX Security 2016): it finds dictionary words (with common
substitutions), names, keyboard walks, repeats, sequences and dates in the
passphrase and counts the guesses of the cheapest way to cover it. The floor is
its top class, at least ``10**10`` guesses, which the paper sizes for an offline
attack on a slow hash. Only the first :data:`EVALUATED_LENGTH` characters are
estimated (zxcvbn's own bound on its running time); characters beyond them can
only add strength.

Only a passphrase being *chosen* is checked: a file made before the floor, or
under the override, still opens with the passphrase it has. Tests and
evaluations that want short passphrases set ``HARBOUR_ALLOW_WEAK_PASSPHRASE=1``,
which accepts any non-empty passphrase and says so on stderr every time.

This module imports nothing from Harbour, so any layer may use it; zxcvbn is
imported on first use, so commands that set no passphrase never load it.
"""

from __future__ import annotations

import math
import os
import sys
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

OVERRIDE_ENV: Final = "HARBOUR_ALLOW_WEAK_PASSPHRASE"
MIN_GUESSES: Final = 10**10
"""zxcvbn's score 4: "strong protection from an offline slow-hash scenario"."""
EVALUATED_LENGTH: Final = 72
CONTEXT: Final = ("harbour", "custody", "passphrase", "password")
"""Words an attacker of a Harbour key file tries first, counted as cheap as dictionary words."""
WHAT_PASSES: Final = "four or more uncommon words picked at random (diceware), or 12 or more random characters"


class WeakPassphrase(ValueError):
    """A new passphrase below the floor; the message says why and what would pass."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what} is too weak: {reason}. A passphrase of {WHAT_PASSES} passes")
        self.what = what
        self.reason = reason


@dataclass(frozen=True)
class Strength:
    """zxcvbn's estimate of one passphrase."""

    guesses: float
    warning: str
    """zxcvbn's named weakness ("This is a top-10 common password."), or empty."""

    @property
    def strong(self) -> bool:
        return self.guesses >= MIN_GUESSES

    @property
    def magnitude(self) -> int:
        """The estimate as a power of ten, as the refusal reports it."""
        return int(math.log10(max(self.guesses, 1.0)))


def estimate(passphrase: str, context: Sequence[str] = ()) -> Strength:
    """How many guesses ``passphrase`` needs, given words of its ``context`` (names, labels) an attacker knows."""
    from zxcvbn import zxcvbn

    text = unicodedata.normalize("NFC", passphrase)[:EVALUATED_LENGTH]
    result = zxcvbn(text, user_inputs=[*CONTEXT, *context], max_length=EVALUATED_LENGTH)
    return Strength(float(result["guesses"]), str(result["feedback"]["warning"] or ""))


def overridden(env: Mapping[str, str] | None = None) -> bool:
    return (os.environ if env is None else env).get(OVERRIDE_ENV) == "1"


def check_new(passphrase: str, what: str, *, context: Sequence[str] = (), env: Mapping[str, str] | None = None) -> None:
    """Refuse a new passphrase below the floor (:class:`WeakPassphrase`); ``what`` names where it came from.

    With the override set, a weak passphrase is accepted and a warning printed on
    stderr; an empty one never is, since it would protect nothing.
    """
    if not passphrase:
        raise WeakPassphrase(what, "it is empty")
    strength = estimate(passphrase, context)
    if strength.strong:
        return
    floor = int(math.log10(MIN_GUESSES))
    reason = (strength.warning.rstrip(".").lower() + ", " if strength.warning else "") + (
        f"about 10^{strength.magnitude} guesses would find it, and at least 10^{floor} are needed"
    )
    if overridden(env):
        sys.stderr.write(
            f"warning: {OVERRIDE_ENV}=1: accepting a weak {what} ({reason}); for tests and evaluation only\n"
        )
        return
    raise WeakPassphrase(what, reason)
