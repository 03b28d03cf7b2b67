"""Checking command-line input, and reporting what is wrong with it in one line.

Every check raises :class:`InputError` with a message that names the option and
the rule it breaks; :func:`reported_errors` reports it the CLI's one way
(:mod:`harbour.cli.output`: ``error: ...`` on stderr, or a problem document under
``--json``) with exit code 2 (the code Click uses for usage errors), so a script
that calls ``harbour`` can tell a bad invocation from a failed protocol run (exit
1) and never has to parse a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from harbour.cli.output import FAILURE_EXIT as FAILURE_EXIT  # re-exported: the commands' one import
from harbour.cli.output import USAGE_EXIT as USAGE_EXIT
from harbour.cli.output import fail as fail
from harbour.cli.tree import choice
from harbour.crypto.ecdsa import DIGEST_LEN
from harbour.crypto.shamir import MAX_PARTIES
from harbour.mpc.ciphersuite import SUITES
from harbour.mpc.ecdsa_setup import SCHEME as ECDSA_SCHEME
from harbour.mpc.envelope import ProtocolAbort, UsageError
from harbour.mpc.schemes import SCHEMES as KNOWN_SCHEMES

FROST_SCHEMES: tuple[str, ...] = tuple(SUITES)
ECDSA_SCHEMES: tuple[str, ...] = (ECDSA_SCHEME,)
SCHEMES: tuple[str, ...] = FROST_SCHEMES + ECDSA_SCHEMES


# Options shared by the commands that take a scheme and a t-of-n size.
SchemeOption = Annotated[
    str, typer.Option("--scheme", "-s", parser=choice(SCHEMES, "scheme"), help="The signature scheme.")
]
ThresholdOption = Annotated[int, typer.Option("--threshold", "-t", help="Signers needed (t of t-of-n).")]
PartiesOption = Annotated[
    int, typer.Option("--parties", "-n", help=f"Key holders (n of t-of-n), at most {MAX_PARTIES}.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object and nothing else.")]


HomeOption = Annotated[
    Path, typer.Option("--home", envvar="HARBOUR_CUSTODY_HOME", help="The deployment's home directory.")
]
"""A custody deployment's home directory (``harbour custody`` and ``harbour audit verify``)."""


class InputError(ValueError):
    """A command-line value that cannot be used; the message is shown as is."""


class RunFailure(RuntimeError):
    """A protocol run that did not produce a verified result."""


def is_ecdsa(scheme: str) -> bool:
    """Threshold ECDSA signs a digest with exactly t parties; FROST signs a message with t or more.

    New code asks the scheme object (:func:`harbour.mpc.schemes.scheme_by_name`) for
    the rule it needs instead: ``signs_digest``, ``exact_signers``, ``has_setup``.
    """
    return scheme in ECDSA_SCHEMES


def check_scheme(name: str) -> str:
    if name not in SCHEMES:
        raise InputError(f"--scheme: unknown scheme {name!r}; choose one of {', '.join(SCHEMES)}")
    return name


def check_sizes(threshold: int, parties: int) -> None:
    if threshold < 1:
        raise InputError(f"-t/--threshold must be at least 1, got {threshold}")
    if parties > MAX_PARTIES:
        raise InputError(f"-n/--parties must be at most {MAX_PARTIES}, got {parties}")
    if threshold > parties:
        raise InputError(f"-t/--threshold ({threshold}) cannot exceed -n/--parties ({parties})")


def parse_message(text: str) -> bytes:
    """Hex, with an optional ``0x`` prefix; the empty string is the empty message."""
    digits = text.strip()
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    if len(digits) % 2:
        raise InputError(f"--message must be whole bytes of hex, but {text!r} has an odd number of digits")
    try:
        return bytes.fromhex(digits)
    except ValueError:
        raise InputError(f"--message must be hexadecimal bytes (e.g. 48656c6c6f), got {text!r}") from None


def check_message(scheme: str, message: bytes) -> bytes:
    """ECDSA signs a 32-byte digest, and the caller chooses the hash.

    Ethereum hashes with Keccak-256 and Bitcoin with double SHA-256; hashing here
    would pick one chain's rule for every caller, and padding or truncating would
    sign something other than what was asked, so any other length is refused.
    """
    kind = KNOWN_SCHEMES.get(scheme)
    if kind is not None and kind.signs_digest and len(message) != DIGEST_LEN:
        raise InputError(
            f"--message: {scheme} signs a {DIGEST_LEN}-byte digest (64 hex digits; hash the message first), "
            f"got {len(message)} bytes"
        )
    return message


def parse_signers(text: str | None, threshold: int, parties: int, *, exact: bool = False) -> list[int]:
    """A comma-separated subset of ``1..parties`` with at least ``threshold`` members.

    With ``exact`` (threshold ECDSA, whose signing protocol takes exactly
    ``threshold`` parties) it must have exactly ``threshold``. Defaults to the
    first ``threshold`` parties. Returned sorted, the order in which FROST lists
    the participants.
    """
    if text is None:
        return list(range(1, threshold + 1))
    items = [item.strip() for item in text.split(",")]
    try:
        signers = [int(item) for item in items]
    except ValueError:
        raise InputError(f"--signers must be comma-separated party numbers (e.g. 1,3), got {text!r}") from None
    outside = [i for i in signers if not 1 <= i <= parties]
    if outside:
        raise InputError(f"--signers must be parties in 1..{parties}; not a party: {outside[0]}")
    duplicates = sorted({i for i in signers if signers.count(i) > 1})
    if duplicates:
        raise InputError(f"--signers lists party {duplicates[0]} more than once")
    if len(signers) < threshold:
        raise InputError(
            f"--signers: a {threshold}-of-{parties} key needs at least {threshold} signers, got {len(signers)}"
        )
    if exact and len(signers) != threshold:
        raise InputError(
            f"--signers: a threshold-ECDSA {threshold}-of-{parties} key signs with exactly {threshold} parties, "
            f"got {len(signers)}"
        )
    return sorted(signers)


def read_option_file(path: Path, option: str) -> bytes:
    """The bytes of the file an option names; a file that cannot be read is the caller's input error."""
    try:
        return path.read_bytes()
    except OSError as exc:
        raise InputError(f"{option}: cannot read {path}: {exc.strerror}") from None


@contextmanager
def reported_errors() -> Iterator[None]:
    """Bad input exits 2, a run that fails exits 1; either way one line, no traceback."""
    try:
        yield
    except InputError as exc:
        raise fail(str(exc), USAGE_EXIT) from None
    except (ProtocolAbort, UsageError, RunFailure) as exc:
        raise fail(str(exc), FAILURE_EXIT) from None


def ask_passphrase(env: str, prompt: str, *, new: bool = False, missing: str = "no passphrase") -> str:
    """A passphrase from ``env``, or asked on the terminal (twice when ``new``); a ``new`` one must clear the floor.

    Without either, exit 2 with ``missing`` (what the passphrase is for) and how to give it.
    """
    value = os.environ.get(env)
    source = env
    if value is None:
        if not sys.stdin.isatty():
            raise InputError(f"{missing}: set {env} or run in a terminal to be prompted")
        value = typer.prompt(prompt, hide_input=True, confirmation_prompt=new, err=True)
        source = f"the {prompt[0].lower()}{prompt[1:]}"
    if not value:
        raise InputError("the passphrase must not be empty")
    return new_passphrase(value, source) if new else value


def new_passphrase(value: str, what: str, *, context: tuple[str, ...] = ()) -> str:
    """``value`` if it clears the strength floor (:mod:`harbour.util.passphrase`), else exit 2 saying why."""
    from harbour.util.passphrase import WeakPassphrase, check_new

    try:
        check_new(value, what, context=context)
    except WeakPassphrase as exc:
        raise InputError(str(exc)) from None
    return value
