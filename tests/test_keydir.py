"""The key-directory format without the command line: public.json, shares, staging."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from harbour.cli import session
from harbour.cli.params import SCHEMES
from harbour.mpc import runner
from harbour.node import keydir

FAST = "correct horse battery staple"


@pytest.mark.parametrize("scheme", SCHEMES)
def test_public_json_names_the_key_as_the_command_line_does(scheme: str, tmp_path: Path) -> None:
    shares = runner.keygen(scheme, 2, 3)
    share = shares[1]
    assert keydir.key_fields(scheme, share.group_public_key) == session.key_fields(scheme, share.group_public_key)
    doc = keydir.write_new_key(tmp_path / "k", shares, FAST)
    loaded, public = keydir.load_public(tmp_path / "k")
    assert loaded == doc and public == share.public
    assert keydir.load_shares(tmp_path / "k", [1, 3], public, FAST, doc) == {1: shares[1], 3: shares[3]}


def test_an_edited_public_json_is_refused_with_a_key_directory_error(tmp_path: Path) -> None:
    shares = runner.keygen("frost-ed25519", 2, 2)
    keydir.write_new_key(tmp_path, shares, FAST)
    doc = json.loads((tmp_path / keydir.PUBLIC).read_text())
    doc["threshold"] = 1
    with pytest.raises(keydir.KeyDirError, match=r"malformed|does not match"):
        keydir.parse_public(json.dumps(doc).encode(), "public.json")
    with pytest.raises(keydir.KeyDirError, match="already holds a key"):
        keydir.check_new_directory(tmp_path)


def test_a_staged_update_left_behind_makes_the_directory_unusable(tmp_path: Path) -> None:
    shares = runner.keygen("frost-secp256k1", 2, 2)
    keydir.write_new_key(tmp_path, shares, FAST)
    keydir.pending_path(keydir.share_path(tmp_path, 1)).write_bytes(b"half of a refresh")
    with pytest.raises(keydir.KeyDirError, match="interrupted update"):
        keydir.load_public(tmp_path)


def test_the_format_module_does_not_need_the_command_line() -> None:
    tree = ast.parse(Path(keydir.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.startswith(("typer", "harbour.cli"))}
