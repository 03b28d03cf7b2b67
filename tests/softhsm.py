"""A private SoftHSM2 token per test, standing in for the HSM that holds a node's KEK.

Ask for the ``softhsm`` fixture by name: tests/conftest.py registers it for every
test module (``from softhsm import SoftHsm`` for the type). Each test gets its own
token directory and softhsm2.conf under its tmp_path, and SOFTHSM2_CONF points at
it (monkeypatched), so a node subprocess started by the test finds the same token
by inheriting the environment (or by passing ``softhsm.env``).

SoftHSM2 reads its configuration and scans its token directory when the library is
initialised (C_Initialize), and python-pkcs11 initialises a library once per
process. So after creating a token the fixture re-initialises the library in this
process (loading it if need be): otherwise a test would see the previous test's tokens.

Missing SoftHSM2 is a failure, not a skip: ``make test`` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pkcs11
import pytest

from harbour.node.hsm import Pkcs11Config, find_softhsm_module

PIN = "4321-user"
SO_PIN = "8765-officer"
TOKEN_LABEL = "harbour-test"


class SoftHsm(NamedTuple):
    """What a test needs to reach its token: library, configuration, token label and user PIN."""

    module: str
    conf: Path
    token_label: str
    pin: str

    @property
    def env(self) -> dict[str, str]:
        """The environment variable a subprocess needs to see the same tokens."""
        return {"SOFTHSM2_CONF": str(self.conf)}

    def config(self, key_label: str = "harbour-kek", token_label: str | None = None) -> Pkcs11Config:
        return Pkcs11Config(self.module, token_label or self.token_label, key_label)

    def init_token(self, label: str, pin: str = PIN) -> None:
        """Initialise another token in this setup (for tests that need two)."""
        init_token(self.conf, label, pin)
        reinitialize(self.module)

    def delete_token(self, label: str) -> None:
        _util(self.conf, "--delete-token", "--token", label)
        reinitialize(self.module)


def _util(conf: Path, *args: str) -> None:
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    result = subprocess.run(["softhsm2-util", *args], env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        pytest.fail(f"softhsm2-util {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")


def init_token(conf: Path, label: str, pin: str = PIN) -> None:
    _util(conf, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", SO_PIN)


def reinitialize(module: str) -> None:
    """Make this process's copy of the library re-read SOFTHSM2_CONF and its token directory.

    The path is resolved as harbour.node.store resolves it, so this reaches the one
    library instance the store uses.
    """
    pkcs11.lib(os.path.realpath(module)).reinitialize()


def setup_softhsm(directory: Path, label: str = TOKEN_LABEL, pin: str = PIN) -> SoftHsm:
    """A SoftHSM2 configuration and token directory under ``directory``, with one token initialised.

    Does not touch the environment: the caller sets SOFTHSM2_CONF to ``conf``.
    """
    module = find_softhsm_module()
    if module is None or shutil.which("softhsm2-util") is None:
        pytest.fail(
            "SoftHSM2 is not installed (libsofthsm2.so or softhsm2-util not found): "
            "run `make test`, which installs softhsm2"
        )
    tokens = directory / "tokens"
    tokens.mkdir(parents=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(
        f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
    )
    init_token(conf, label, pin)
    return SoftHsm(module, conf, label, pin)


@pytest.fixture
def softhsm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SoftHsm:
    hsm = setup_softhsm(tmp_path / "softhsm")
    monkeypatch.setenv("SOFTHSM2_CONF", str(hsm.conf))
    reinitialize(hsm.module)
    return hsm
