"""A custody home's authority and audit keys: encrypted on disk from ``custody init``, needed by what signs.

Each test runs the real commands in this process, with ``HARBOUR_CUSTODY_PASSPHRASE``
as the operator sets it (or unset). The files on disk are read back with the
``cryptography`` loader, as anyone who copied them would.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner, Result

from custody_env import public_hex
from harbour.cli.main import app
from harbour.custody import config as cfg
from harbour.custody import homekeys
from harbour.custody.errors import Invalid
from helpers import pem_needs_password

cli = CliRunner()
ENV = homekeys.PASSPHRASE_ENV
PASS = "anchor velvet pylon thistle"


def harbour(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    return cli.invoke(app, [str(a) for a in args], env={ENV: PASS, **(env or {})})


def bootstrap(home: Path, org: str, env: Mapping[str, str | None] | None = None) -> Result:
    admin = public_hex(Ed25519PrivateKey.generate())
    return harbour("custody", "bootstrap", "--home", home, "--org", org, "--admin", f"root:{admin}", env=env)


def key_files(home: Path) -> list[Path]:
    return [home / "authority" / "authority.key", home / "audit.key"]


def test_custody_init_encrypts_the_authority_and_audit_keys(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = harbour("custody", "init", "--home", home)
    assert made.exit_code == 0 and made.stderr == "", made.output
    for path in key_files(home):
        pem = path.read_bytes()
        assert pem_needs_password(pem), path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(TypeError, match="encrypted"):
            serialization.load_pem_private_key(pem, password=None)
        key = serialization.load_pem_private_key(pem, password=PASS.encode())
        assert isinstance(key, Ed25519PrivateKey)
    audit = serialization.load_pem_private_key((home / "audit.key").read_bytes(), password=PASS.encode())
    assert (home / "audit.pub").read_text().strip() == public_hex(audit)  # type: ignore[arg-type]
    # What others are given needs no passphrase: the authority's public key for the nodes, the audit key for auditors.
    authority = serialization.load_pem_private_key(key_files(home)[0].read_bytes(), password=PASS.encode())
    assert cfg.authority_public(home).hex() == public_hex(authority)  # type: ignore[arg-type]
    assert cfg.audit_public_key(home) == public_hex(audit)  # type: ignore[arg-type]


def test_custody_init_without_a_passphrase_off_a_terminal_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    result = harbour("custody", "init", "--home", home, env={ENV: None})
    assert result.exit_code == 2 and f"set {ENV}" in result.stderr, result.output
    assert not (home / cfg.CONFIG_FILE).exists()


def test_bootstrap_and_serve_need_the_passphrase_and_say_which(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert harbour("custody", "init", "--home", home).exit_code == 0
    commands: list[list[str | Path]] = [["custody", "serve", "--home", home], ["audit", "baseline", "--home", home]]
    for command in commands:
        missing = harbour(*command, env={ENV: None})
        assert missing.exit_code == 2, missing.output
        assert f"is encrypted: set {ENV}" in missing.stderr
        wrong = harbour(*command, env={ENV: PASS + "!"})
        assert wrong.exit_code == 1 and ENV in wrong.stderr, wrong.output
    refused = bootstrap(home, "Acme", env={ENV: None})
    assert refused.exit_code == 2 and f"set {ENV}" in refused.stderr, refused.output
    made = bootstrap(home, "Acme")
    assert made.exit_code == 0 and made.stderr == "", made.output
    # Verifying the audit log is for auditors: the public key is enough.
    verified = harbour("audit", "verify", "--home", home, "--json", env={ENV: None})
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"] is True, verified.output
    # Without audit.pub the public key comes from the key itself, which then needs the passphrase.
    (home / "audit.pub").unlink()
    locked = harbour("audit", "verify", "--home", home, "--json", env={ENV: None})
    assert locked.exit_code == 2 and f"set {ENV}" in locked.stdout, locked.output
    assert harbour("audit", "verify", "--home", home, "--json").exit_code == 0


def test_a_plaintext_home_still_opens_with_a_warning_until_its_keys_are_encrypted(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = harbour("custody", "init", "--home", home, "--insecure-plaintext", env={ENV: None})
    assert made.exit_code == 0 and "--insecure-plaintext" in made.stderr, made.output
    assert not any(pem_needs_password(p.read_bytes()) for p in key_files(home))
    # As a home made before encryption was the default: it opens, and says how to encrypt it.
    (home / "audit.pub").unlink()
    opened = bootstrap(home, "Acme", env={ENV: None})
    assert opened.exit_code == 0, opened.output
    assert "not encrypted" in opened.stderr and f"harbour custody encrypt-keys --home {home}" in opened.stderr
    weak = harbour(
        "custody", "encrypt-keys", "--home", home, env={ENV: "hunter2", "HARBOUR_ALLOW_WEAK_PASSPHRASE": None}
    )
    assert weak.exit_code == 2 and f"{ENV} is too weak" in weak.stderr, weak.output
    assert not any(pem_needs_password(p.read_bytes()) for p in key_files(home))
    before = {p: serialization.load_pem_private_key(p.read_bytes(), None) for p in key_files(home)}
    encrypted = harbour("custody", "encrypt-keys", "--home", home)
    assert encrypted.exit_code == 0, encrypted.output
    for path, key in before.items():
        assert pem_needs_password(path.read_bytes())
        again = serialization.load_pem_private_key(path.read_bytes(), PASS.encode())
        assert public_hex(again) == public_hex(key), "the same key, now encrypted"  # type: ignore[arg-type]
    assert (home / "audit.pub").read_text().strip() == public_hex(before[home / "audit.key"])  # type: ignore[arg-type]
    assert bootstrap(home, "Other", env={ENV: None}).exit_code == 2
    reopened = bootstrap(home, "Other")
    assert reopened.exit_code == 0 and reopened.stderr == "", reopened.output


def test_encrypting_keys_takes_the_home_passphrase_only(tmp_path: Path) -> None:
    """A run interrupted after one key leaves a half-encrypted home: the rest must go under the same passphrase."""
    home = tmp_path / "home"
    cfg.init_home(home, passphrase=None)
    audit = home / "audit.key"
    key = serialization.load_pem_private_key(audit.read_bytes(), None)
    audit.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASS.encode()),
        )
    )
    with pytest.raises(Invalid, match="wrong"):
        homekeys.encrypt_keys(home, "another strong passphrase entirely")
    assert homekeys.plaintext_keys(home) == [home / "authority" / "authority.key"]
    assert homekeys.encrypt_keys(home, PASS) == [home / "authority" / "authority.key"]
    assert homekeys.plaintext_keys(home) == []


def test_an_audit_pub_of_another_key_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cfg.init_home(home, passphrase=PASS)
    (home / "audit.pub").write_text(public_hex(Ed25519PrivateKey.generate()) + "\n")
    with pytest.raises(Invalid, match="belongs to another key"):
        homekeys.audit_key(home, PASS)
