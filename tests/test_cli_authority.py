"""``harbour authority``: the files and JSON it produces are a contract nodes and scripts rely on.

Certificates made here are checked with the node's own verification (the
``authority.pub`` a node would be configured with, a fresh nonce ledger), and every
refusal for its exit code (2: bad input), its one ``Error:`` line and for writing
nothing.
"""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from cli_checks import epoch, one_document
from harbour.cli.main import app
from harbour.cli.output import with_iso_times
from harbour.node import approval, nonces
from helpers import pem_needs_password

cli = CliRunner()
ENV = "HARBOUR_AUTHORITY_PASSPHRASE"
PASS = "tidal wagon lemur fossil"
STRICT: dict[str, str | None] = {ENV: PASS, "HARBOUR_ALLOW_WEAK_PASSPHRASE": None}
"""The authority's passphrase, and no override of the strength floor: as an operator runs it."""
D1 = hashlib.sha256(b"transfer 100.00 HKD-T to vault 7").hexdigest()
D2 = hashlib.sha256(b"transfer 5.00 HKD-T to vault 9").hexdigest()
CERT_FIELDS = [
    "version",
    "kind",
    "authority_id",
    "key_id",
    "path",
    "digests",
    "params",
    "issued_at",
    "expires_at",
    "nonce",
]


def invoke(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    return cli.invoke(app, ["authority", *map(str, args)], env={**STRICT, **(env or {})})


def ok_json(*args: str | Path, env: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    result = invoke(*args, "--json", env=env)
    obj: dict[str, Any] = one_document(result)
    return obj


def refused(args: list[str | Path], needle: str, *, code: int = 2, env: Mapping[str, str | None] | None = None) -> None:
    result = invoke(*args, env=env)
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert needle in errors[0], errors[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


@pytest.fixture(scope="module")
def authority_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("authority") / "auth"
    ok_json("init", "--out", out)
    return out


def certify(authority_dir: Path, out: Path, *extra: str) -> dict[str, Any]:
    return ok_json("certify", "--dir", authority_dir, "--expires-in", "300", "--out", out, *extra)


def trusted(authority_dir: Path) -> dict[str, Any]:
    return dict([approval.parse_public_file((authority_dir / "authority.pub").read_bytes())])


# -- init ----------------------------------------------------------------------------------------------


def test_init_encrypts_the_key_by_default(tmp_path: Path) -> None:
    out = tmp_path / "auth"
    result = invoke("init", "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    obj = json.loads(result.stdout)
    assert set(obj) == {"authority_id", "public_key", "private_key_file", "public_key_file", "encrypted"}
    assert obj["encrypted"] is True
    assert obj["private_key_file"] == str(out / "authority.key")
    assert obj["public_key_file"] == str(out / "authority.pub")
    assert stat.S_IMODE(out.stat().st_mode) == 0o700
    assert stat.S_IMODE((out / "authority.key").stat().st_mode) == 0o600
    assert pem_needs_password((out / "authority.key").read_bytes())
    doc = json.loads((out / "authority.pub").read_text())
    assert doc["format"] == "harbour-approval-authority" and doc["algorithm"] == "ed25519"
    assert doc["public_key"] == obj["public_key"] and doc["authority_id"] == obj["authority_id"]
    assert approval.AuthorityKey.load(out, passphrase=PASS.encode()).authority_id == obj["authority_id"]
    with pytest.raises(approval.AuthorityKeyError):
        approval.AuthorityKey.load(out)


def test_init_without_a_passphrase_is_refused_off_a_terminal(tmp_path: Path) -> None:
    refused(["init", "--out", tmp_path / "auth"], f"set {ENV}", env={ENV: None})
    assert not (tmp_path / "auth").exists()


@pytest.mark.parametrize("weak", ["x", "open sesame", "Password123!", "harbourharbour"])
def test_init_refuses_a_weak_passphrase(tmp_path: Path, weak: str) -> None:
    refused(["init", "--out", tmp_path / "auth"], f"{ENV} is too weak", env={ENV: weak})
    assert not (tmp_path / "auth").exists()


def test_init_insecure_plaintext_warns_and_so_does_every_use(tmp_path: Path) -> None:
    out = tmp_path / "auth"
    result = invoke("init", "--out", out, "--insecure-plaintext", "--json", env={ENV: None})
    assert result.exit_code == 0, result.output
    assert "warning: --insecure-plaintext" in result.stderr
    assert json.loads(result.stdout)["encrypted"] is False
    assert not pem_needs_password((out / "authority.key").read_bytes())
    # Such a key (or one made before encryption was the default) still signs, and says how to encrypt it.
    made = invoke(
        "certify", "--dir", out, "--key-id", "k", "-m", D1, "--signers", "1,2", "--expires-in", "60",
        "--out", tmp_path / "c",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert "is not encrypted" in made.stderr and "openssl pkcs8 -topk8" in made.stderr


def test_init_refuses_an_existing_key(authority_dir: Path) -> None:
    before = (authority_dir / "authority.key").read_bytes()
    refused(["init", "--out", authority_dir], "already holds an authority key")
    assert (authority_dir / "authority.key").read_bytes() == before


def test_init_refuses_a_file(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    refused(["init", "--out", tmp_path / "f"], "is a file")


def test_init_refuses_an_empty_passphrase(tmp_path: Path) -> None:
    refused(["init", "--out", tmp_path / "auth"], "empty", env={ENV: ""})
    assert not (tmp_path / "auth").exists()


# -- certify -------------------------------------------------------------------------------------------


def test_certify_any_message_lists_its_approved_digest(authority_dir: Path, tmp_path: Path) -> None:
    """An Ed25519 message is not a digest: the certificate lists the digest the nodes compute for it."""
    message = b"transfer 10 units to account 7"
    obj = certify(
        authority_dir, tmp_path / "c.cert", "--key-id", "ed", "--any-message", message.hex(), "--message", D1,
        "--signers", "1,2",
    )  # fmt: skip
    assert obj["digests"] == [D1, approval.approved_digest(message).hex()]
    assert approval.approved_digest(message) != hashlib.sha256(message).digest(), "domain-separated"


def test_certify_roster_from_descriptor_files(authority_dir: Path, tmp_path: Path) -> None:
    from harbour.node import rpc
    from harbour.node.identity import NodeIdentity

    files, ids = [], []
    for i in range(3):
        descriptor = NodeIdentity.generate().descriptor(f"n{i}", f"http://127.0.0.1:{7000 + i}")
        path = tmp_path / f"n{i}.json"
        path.write_text(descriptor.to_json())
        files.append(str(path))
        ids.append(descriptor.node_id)
    obj = certify(
        authority_dir,
        tmp_path / "k.cert",
        "--kind",
        "keygen",
        "--param",
        "scheme=frost-secp256k1",
        "--param",
        "threshold=2",
        "--nodes",
        ",".join(files),
    )
    assert obj["params"]["roster"] == rpc.roster_hash(list(reversed(ids)))


def test_certify_sign(authority_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c.cert"
    obj = certify(
        authority_dir, out, "--key-id", "hot-1", "--message", D1, "--message", "0x" + D2, "--path", "m/0/7",
        "--signers", "3,1",
    )  # fmt: skip
    assert list(obj) == [*CERT_FIELDS, "signers", "certificate", "sha256"]
    assert obj["signers"] == [1, 3], "sorted: the nodes take exactly this set"
    assert obj["kind"] == "sign" and obj["key_id"] == "hot-1" and obj["path"] == "m/0/7"
    assert obj["digests"] == [D1, D2] and obj["params"] == {}
    assert epoch(obj["expires_at"]) - epoch(obj["issued_at"]) == 300, "times are ISO 8601 UTC"
    assert len(obj["nonce"]) == 32
    assert obj["certificate"] == str(out)
    data = out.read_bytes()
    assert obj["sha256"] == hashlib.sha256(data).hexdigest()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    cert = approval.verify(
        data,
        trusted(authority_dir),
        now=epoch(obj["issued_at"]),
        kind="sign",
        key_id="hot-1",
        path="m/0/7",
        digest=bytes.fromhex(D2),
        signers=[1, 3],
        ledger=nonces.NonceLedger(),
    )
    assert with_iso_times(cert.to_json()) == {k: obj[k] for k in [*CERT_FIELDS, "signers"]}


@pytest.mark.parametrize("kind", ["keygen", "refresh", "reshare"])
def test_certify_admin(kind: str, authority_dir: Path, tmp_path: Path) -> None:
    key_id = [] if kind == "keygen" else ["--key-id", "hot-1"]
    params = ["--param", "scheme=frost-ed25519", "--param", "threshold=2", "--param", "new_parties=-3"]
    obj = certify(authority_dir, tmp_path / "c", "--kind", kind, *key_id, *params)
    assert obj["params"] == {"scheme": "frost-ed25519", "threshold": 2, "new_parties": -3}
    assert obj["digests"] == [] and obj["path"] == "m"
    approval.verify(
        (tmp_path / "c").read_bytes(),
        trusted(authority_dir),
        now=epoch(obj["issued_at"]),
        kind=kind,
        key_id="" if kind == "keygen" else "hot-1",
        path="m",
        params={"scheme": "frost-ed25519", "threshold": 2, "new_parties": -3},
        ledger=nonces.NonceLedger(),
    )


def test_certify_with_encrypted_key(tmp_path: Path) -> None:
    auth = tmp_path / "auth"
    ok_json("init", "--out", auth)
    args: list[str | Path] = [
        "certify", "--dir", auth, "--key-id", "k", "--message", D1, "--signers", "1,2", "--expires-in", "60", "--out"
    ]  # fmt: skip
    refused([*args, tmp_path / "c"], f"set {ENV}", env={ENV: None})
    refused([*args, tmp_path / "c"], "wrong passphrase", env={ENV: PASS + "!"})
    assert not (tmp_path / "c").exists()
    ok_json(*args, tmp_path / "c")


def test_certify_text_output(authority_dir: Path, tmp_path: Path) -> None:
    result = invoke(
        "certify", "--dir", authority_dir, "--key-id", "k", "-m", D1, "--signers", "1,2", "--expires-in", "60",
        "--out", tmp_path / "c",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "kind: sign" in result.stdout and f'digests: ["{D1}"]' in result.stdout


BASE: list[str] = ["--key-id", "k", "--message", D1, "--signers", "1,2", "--expires-in", "300"]
ADMIN: list[str] = ["--key-id", "k", "--expires-in", "300"]


def _without(args: list[str], option: str) -> list[str]:
    i = args.index(option)
    return args[:i] + args[i + 2 :]


def _with(args: list[str], option: str, value: str) -> list[str]:
    return [*_without(args, option), option, value] if option in args else [*args, option, value]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (_with(BASE, "--message", "abcd"), "32-byte digest"),
        (_with(BASE, "--message", D1 + "00"), "got 33 bytes"),
        (_with(BASE, "--message", D1[:-1]), "odd number"),
        (_with(BASE, "--message", "zz" * 32), "hexadecimal"),
        ([*BASE, "--message", "11" * 31], "got 31 bytes"),
        (_with(BASE, "--expires-in", "0"), "--expires-in"),
        (_with(BASE, "--expires-in", "-5"), "--expires-in"),
        (_with(BASE, "--expires-in", "86401"), "--expires-in"),
        (_with(BASE, "--expires-in", "soon"), "--expires-in"),
        (_without(BASE, "--message"), "at least one message"),
        (_without(BASE, "--key-id"), "--key-id is required"),
        ([*BASE, "--param", "threshold=2"], "--param is for"),
        ([*BASE, "--kind", "refresh"], "--message is for sign"),
        ([*ADMIN, "--kind", "refresh", "--path", "m/1"], "--path is for sign"),
        ([*ADMIN, "--kind", "refresh", "--param", "x"], "name=value"),
        ([*ADMIN, "--kind", "refresh", "--param", "a=1", "--param", "a=2"], "twice"),
        ([*ADMIN, "--kind", "refresh", "--param", "A=1"], "param name"),
        ([*BASE, "--kind", "mint"], "--kind"),
        ([*BASE, "--path", "m/0'"], "hardened"),
        ([*BASE, "--path", "m/007"], "'007'"),
        (_with(BASE, "--key-id", "k\tx"), "key_id"),
    ],
)
def test_certify_bad_input(args: list[str], needle: str, authority_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    result = invoke("certify", "--dir", authority_dir, "--out", out, *args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


def test_certify_missing_dir(tmp_path: Path) -> None:
    refused(["certify", "--dir", tmp_path / "nowhere", *BASE, "--out", tmp_path / "c"], "not a directory")
    refused(["certify", "--dir", tmp_path, *BASE, "--out", tmp_path / "c"], "authority.key not found")
    assert not (tmp_path / "c").exists()


def test_certify_never_overwrites(authority_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    out.write_bytes(b"earlier")
    refused(["certify", "--dir", authority_dir, *BASE, "--out", out], "exists")
    assert out.read_bytes() == b"earlier"


def test_certify_refuses_a_mismatched_public_file(authority_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    ok_json("init", "--out", other)
    (other / "authority.pub").write_bytes((authority_dir / "authority.pub").read_bytes())
    refused(["certify", "--dir", other, *BASE, "--out", tmp_path / "c"], "belongs to another key")


# -- show ----------------------------------------------------------------------------------------------


def test_show(authority_dir: Path, tmp_path: Path) -> None:
    made = certify(authority_dir, tmp_path / "c", "--key-id", "k", "--message", D1, "--signers", "1,2")
    shown = ok_json("show", "--cert", tmp_path / "c")
    assert list(shown) == [*CERT_FIELDS, "signers", "signature", "sha256"]
    assert {k: shown[k] for k in CERT_FIELDS} == {k: made[k] for k in CERT_FIELDS}
    assert shown["sha256"] == made["sha256"] and len(shown["signature"]) == 128
    text = invoke("show", "--cert", tmp_path / "c")
    assert text.exit_code == 0 and f"nonce: {made['nonce']}" in text.stdout


def test_show_does_not_verify(tmp_path: Path) -> None:
    """Any well-formed certificate prints, trusted or not: show is for looking, nodes verify."""
    data = approval.issue(approval.AuthorityKey.generate(), kind="refresh", key_id="k", now=1, expires_in=60)
    (tmp_path / "c").write_bytes(data)
    assert ok_json("show", "--cert", tmp_path / "c")["expires_at"] == "1970-01-01T00:01:01Z"


def test_show_refuses_malformed(tmp_path: Path) -> None:
    (tmp_path / "c").write_bytes(b"not a certificate")
    refused(["show", "--cert", tmp_path / "c"], "malformed approval certificate")
    (tmp_path / "big").write_bytes(b"\x00" * (approval.MAX_CERTIFICATE_LEN + 10))
    refused(["show", "--cert", tmp_path / "big"], "more than the")
    refused(["show", "--cert", tmp_path / "missing"], "cannot read")
