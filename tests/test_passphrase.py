"""The passphrase strength floor: what it refuses and why, at every place a new passphrase is chosen.

The test run sets the floor's override for everyone else (tests/conftest.py); every
test here runs without it unless it is about the override. Each entry point is the
real command, in this process, refused with exit 2, the variable it read, the
reason and what would pass, and nothing written. That opening what exists is never
judged is tested with the files themselves (tests/test_cli_key.py, tests/test_cli_authority.py).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from harbour.cli.main import app
from harbour.node.approval import AuthorityKey
from harbour.util.passphrase import EVALUATED_LENGTH, OVERRIDE_ENV, WeakPassphrase, check_new, estimate
from helpers import pem_needs_password

cli = CliRunner()
STRONG = "correct horse battery staple"


@pytest.fixture(autouse=True)
def _no_override(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(OVERRIDE_ENV, raising=False)
    yield


def harbour(*args: str | Path, env: Mapping[str, str | None]) -> Result:
    return cli.invoke(app, [str(a) for a in args], env={OVERRIDE_ENV: None, **env})


# -- the floor ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weak",
    [
        "x",
        "password",
        "Password123!",  # four character classes, and a few thousand guesses
        "hunter2hunter2",
        "a" * 40,
        "qwertyuiop[]",
        "correct horse",
        "harbourcustodypassphrase",  # the words of the product itself
        "19741231",
    ],
)
def test_guessable_passphrases_are_refused_saying_why_and_what_passes(weak: str) -> None:
    with pytest.raises(WeakPassphrase) as refused:
        check_new(weak, "HARBOUR_X", env={})
    message = str(refused.value)
    assert message.startswith("HARBOUR_X is too weak: ")
    assert "guesses would find it, and at least 10^10 are needed" in message
    assert "four or more uncommon words picked at random" in message


def test_a_named_weakness_is_part_of_the_reason() -> None:
    with pytest.raises(WeakPassphrase, match="similar to a commonly used password"):
        check_new("Password123!", "HARBOUR_X", env={})


@pytest.mark.parametrize("strong", [STRONG, "tidal wagon lemur fossil", "kV9#qL2!xR7$mW4@", "Zürich fjord quiche 1847"])
def test_hard_to_guess_passphrases_pass(strong: str) -> None:
    check_new(strong, "HARBOUR_X", env={})
    assert estimate(strong).strong


def test_words_of_the_context_count_as_guessed() -> None:
    assert estimate("bluefinnode bluefinnode").strong
    assert not estimate("bluefinnode bluefinnode", context=("bluefinnode",)).strong


def test_composed_and_decomposed_accents_are_one_passphrase() -> None:
    composed = "crème brûlée façade"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert estimate(composed) == estimate(decomposed)


def test_only_the_first_characters_are_estimated_and_the_rest_only_adds() -> None:
    # zxcvbn's time grows with the length: a megabyte of passphrase is judged by its start, not refused or hung on.
    assert not estimate("a" * 1_000_000).strong
    assert estimate(STRONG + "a" * 1_000_000).strong
    assert estimate("a" * EVALUATED_LENGTH + STRONG).guesses == estimate("a" * EVALUATED_LENGTH).guesses


def test_the_override_accepts_a_weak_passphrase_and_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    check_new("x", "HARBOUR_X", env={OVERRIDE_ENV: "1"})
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {OVERRIDE_ENV}=1: accepting a weak HARBOUR_X") and "tests and evaluation" in err
    check_new(STRONG, "HARBOUR_X", env={OVERRIDE_ENV: "1"})
    assert capsys.readouterr().err == "", "a strong passphrase needs no override and gets no warning"


@pytest.mark.parametrize("value", ["0", "true", "yes", ""])
def test_the_override_is_exactly_1(value: str) -> None:
    with pytest.raises(WeakPassphrase):
        check_new("x", "HARBOUR_X", env={OVERRIDE_ENV: value})


def test_an_empty_passphrase_is_refused_even_with_the_override() -> None:
    with pytest.raises(WeakPassphrase, match="it is empty"):
        check_new("", "HARBOUR_X", env={OVERRIDE_ENV: "1"})


# -- every place a new passphrase is chosen ----------------------------------------------------------------------------


def _authority_pub(root: Path) -> Path:
    directory = root / "auth"
    directory.mkdir()
    AuthorityKey.generate().save(directory)
    return directory / "authority.pub"


def _key_file(root: Path) -> Path:
    path = root / "key.hex"
    path.write_text("4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318\n")
    return path


EntryPoint = Callable[[Path], tuple[list[str | Path], str, Path]]
"""From a scratch directory: the command line, the variable its new passphrase comes from, and what it would create."""

ENTRY_POINTS: dict[str, EntryPoint] = {
    "node init": lambda root: (
        ["node", "init", "--dir", root / "n1", "--name", "n1", "--listen", "127.0.0.1:7001",
         "--authority", _authority_pub(root)],
        "HARBOUR_NODE_PASSPHRASE",
        root / "n1",
    ),
    "key generate": lambda root: (
        ["key", "generate", "-s", "frost-secp256k1", "-t", "2", "-n", "3", "--out", root / "k"],
        "HARBOUR_PASSPHRASE",
        root / "k",
    ),
    "key import": lambda root: (
        ["key", "import", "-s", "ecdsa-secp256k1", "--private-key-file", _key_file(root), "-t", "2", "-n", "3",
         "--out", root / "k"],
        "HARBOUR_PASSPHRASE",
        root / "k",
    ),
    "key recovery-key": lambda root: (
        ["key", "recovery-key", "--type", "x25519", "--out", root / "rk"],
        "HARBOUR_RECOVERY_PASSPHRASE",
        root / "rk",
    ),
    "approver-key new": lambda root: (
        ["approver-key", "new", "--out", root / "approver.pem"],
        "HARBOUR_APPROVER_PASSPHRASE",
        root / "approver.pem",
    ),
    "authority init": lambda root: (
        ["authority", "init", "--out", root / "authority"],
        "HARBOUR_AUTHORITY_PASSPHRASE",
        root / "authority",
    ),
    "custody init": lambda root: (
        ["custody", "init", "--home", root / "home"],
        "HARBOUR_CUSTODY_PASSPHRASE",
        root / "home" / "custody.json",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_every_new_passphrase_is_held_to_the_floor(name: str, tmp_path: Path) -> None:
    args, variable, target = ENTRY_POINTS[name](tmp_path)
    result = harbour(*args, env={variable: "hunter2"})
    assert result.exit_code == 2, result.output
    assert f"{variable} is too weak" in result.stderr and "four or more uncommon words" in result.stderr
    assert "Traceback" not in result.output and "hunter2" not in result.output
    assert not target.exists(), "nothing is written for a refused passphrase"


def test_with_the_override_a_weak_passphrase_is_taken_with_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "approver.pem"
    made = harbour("approver-key", "new", "--out", out, env={"HARBOUR_APPROVER_PASSPHRASE": "x", OVERRIDE_ENV: "1"})
    assert made.exit_code == 0, made.output
    assert f"warning: {OVERRIDE_ENV}=1" in made.stderr
    assert pem_needs_password(out.read_bytes())
