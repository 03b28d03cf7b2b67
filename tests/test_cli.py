"""The ``harbour`` command line: the JSON contract, bad input, the demo and the bench.

``harbour mpc demo --json`` is read by other tools, so its signatures are checked
here without going through the code that made them: PyNaCl (libsodium) for
Ed25519, libsecp256k1's BIP-340 verifier for Taproot, and RFC 9591's equation
recomputed with coincurve for FROST(secp256k1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.signing
import pytest
from coincurve import PublicKey, PublicKeyXOnly
from typer.testing import CliRunner

from cli_checks import error_line, one_document, problem
from harbour.cli.main import app
from harbour.crypto.hashing import tagged_hash
from harbour.mpc.ciphersuite import FROST_SECP256K1

runner = CliRunner()

CONTRACT = ["scheme", "threshold", "parties", "signers", "public_key", "message", "signature"]
TAPROOT_CONTRACT = ["scheme", "threshold", "parties", "signers", "public_key", "internal_key", "message", "signature"]
KEY_LEN = {"frost-secp256k1": 33, "frost-ed25519": 32, "frost-taproot": 32}
SIG_LEN = {"frost-secp256k1": 65, "frost-ed25519": 64, "frost-taproot": 64}
SCHEMES = list(KEY_LEN)
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def demo_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["mpc", "demo", "--json", *args])
    assert result.stderr == ""
    obj: dict[str, Any] = one_document(result)
    return obj


def verify_independently(obj: dict[str, Any]) -> bool:
    pk, msg, sig = (bytes.fromhex(obj[k]) for k in ("public_key", "message", "signature"))
    scheme = obj["scheme"]
    if scheme == "frost-ed25519":
        try:
            nacl.signing.VerifyKey(pk).verify(msg, sig)
        except nacl.exceptions.BadSignatureError:
            return False
        return True
    if scheme == "frost-taproot":
        return bool(PublicKeyXOnly(pk).verify(sig, msg))
    # RFC 9591 section 5.3 / appendix B: z·G == R + c·PK with c = H2(R || PK || msg).
    R, z = sig[:33], int.from_bytes(sig[33:], "big")
    c = FROST_SECP256K1.H2(R + pk + msg)
    if not 0 < z < N:
        return False
    lhs = PublicKey.from_secret(z.to_bytes(32, "big"))
    rhs = PublicKey.combine_keys([PublicKey(R), PublicKey(pk).multiply(c.to_bytes(32, "big"))])
    return bool(lhs.format() == rhs.format())


def flipped(hex_text: str) -> str:
    data = bytearray(bytes.fromhex(hex_text))
    data[-1] ^= 1
    return data.hex()


# -- harbour mpc demo: the JSON contract ---------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_demo_json_contract(scheme: str) -> None:
    obj = demo_json("--scheme", scheme, "-t", "2", "-n", "3", "--message", "48656c6c6f")
    assert list(obj) == (TAPROOT_CONTRACT if scheme == "frost-taproot" else CONTRACT)
    assert obj["scheme"] == scheme
    assert (obj["threshold"], obj["parties"], obj["signers"]) == (2, 3, [1, 2])
    assert obj["message"] == "48656c6c6f"
    assert len(bytes.fromhex(obj["public_key"])) == KEY_LEN[scheme]
    assert len(bytes.fromhex(obj["signature"])) == SIG_LEN[scheme]
    assert verify_independently(obj)
    assert not verify_independently({**obj, "signature": flipped(obj["signature"])})
    assert not verify_independently({**obj, "message": "48656c6c6e"})


def test_demo_taproot_output_key_commits_to_internal_key() -> None:
    """BIP-341 key path: public_key = x(lift_x(internal_key) + hash_TapTweak(internal_key)·G)."""
    obj = demo_json("--scheme", "frost-taproot")
    internal = bytes.fromhex(obj["internal_key"])
    assert len(internal) == 32
    tweak = tagged_hash("TapTweak", internal)
    output = PublicKey(b"\x02" + internal).add(tweak)
    assert output.format()[1:].hex() == obj["public_key"]


def test_demo_signers_subset_and_order() -> None:
    obj = demo_json("-s", "frost-ed25519", "-t", "3", "-n", "5", "--signers", "5, 2,4", "--message", "0xABCD")
    assert obj["signers"] == [2, 4, 5]
    assert obj["message"] == "abcd"
    assert verify_independently(obj)


def test_demo_empty_message_and_one_of_one() -> None:
    obj = demo_json("-s", "frost-taproot", "-t", "1", "-n", "1", "--message", "")
    assert obj["message"] == "" and obj["signers"] == [1]
    assert verify_independently(obj)


def test_demo_without_json_renders_the_same_fields() -> None:
    result = runner.invoke(app, ["mpc", "demo", "-s", "frost-secp256k1", "--message", "00"])
    assert result.exit_code == 0, result.output
    for field in CONTRACT:
        assert field in result.stdout
    assert "✓" in result.stdout


def test_demo_refuses_an_unverified_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harbour.cli.session.verify", lambda *args: False)
    result = runner.invoke(app, ["mpc", "demo", "--json"])
    problem(result, 1, "does not verify")
    result = runner.invoke(app, ["mpc", "demo"])
    error_line(result, 1, "does not verify")


# -- bad input: exit 2, one line on stderr, no traceback ---------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--message", "zz"], "--message"),
        (["--message", "abc"], "--message"),
        (["-t", "4", "-n", "3"], "cannot exceed"),
        (["-t", "2", "-n", "256"], "at most 255"),
        (["-t", "0", "-n", "3"], "at least 1"),
        (["--scheme", "frost-rsa"], "unknown scheme"),
        (["--signers", "1,4"], "not a party: 4"),
        (["--signers", "0,1"], "not a party: 0"),
        (["-t", "2", "--signers", "1"], "at least 2 signers"),
        (["--signers", "1,1"], "more than once"),
        (["--signers", "1,x"], "comma-separated"),
    ],
)
def test_demo_bad_input(args: list[str], needle: str) -> None:
    result = runner.invoke(app, ["mpc", "demo", *args])
    error_line(result, 2, needle)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    problem(runner.invoke(app, ["mpc", "demo", "--json", *args]), 2, needle)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--runs", "0"], "at least 1"),
        (["--keygen-runs", "0"], "at least 1"),
        (["-t", "3", "-n", "2"], "cannot exceed"),
        (["--scheme", "ecdsa"], "unknown scheme"),
    ],
)
def test_bench_bad_input(args: list[str], needle: str) -> None:
    problem(runner.invoke(app, ["bench", "mpc", "--json", *args]), 2, needle)
    error_line(runner.invoke(app, ["bench", "mpc", *args]), 2, needle)


# -- harbour bench mpc ----------------------------------------------------------------------


@pytest.mark.parametrize("scheme", SCHEMES)
def test_bench_json(scheme: str) -> None:
    result = runner.invoke(app, ["bench", "mpc", "--scheme", scheme, "-t", "2", "-n", "3", "--runs", "2", "--json"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert (obj["scheme"], obj["threshold"], obj["parties"], obj["runs"]) == (scheme, 2, 3, 2)
    for field in ("keygen_ms", "sign_ms"):
        assert isinstance(obj[field], float) and 0 < obj[field] < 10_000
    assert obj["keygen_min_ms"] <= obj["keygen_ms"] <= obj["keygen_p90_ms"]
    assert obj["sign_min_ms"] <= obj["sign_ms"] <= obj["sign_p90_ms"]
    # Two broadcast rounds from two signers: four envelopes, each a few hundred bytes at most.
    assert obj["sign_envelopes"] == 4
    assert isinstance(obj["sign_bytes"], int) and 4 * 64 < obj["sign_bytes"] < 4 * 400


def test_bench_readable() -> None:
    result = runner.invoke(app, ["bench", "mpc", "--runs", "1"])
    assert result.exit_code == 0, result.output
    assert "sign_ms" in result.stdout and "keygen_ms" in result.stdout


# -- harbour demo -------------------------------------------------------------------------------


def test_harbour_demo_prints_a_verified_table() -> None:
    result = runner.invoke(app, ["mpc", "tour"])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for scheme in SCHEMES:
        assert scheme in out
    assert "{1, 3}" in out and "{2, 3}" in out
    assert "refused ✓" in out and "need at least 2 signers, got 1" in out
    assert "┃ scheme" in out and "keygen ms" in out and "sign ms" in out


def test_harbour_demo_fails_when_a_signature_does_not_verify(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harbour.cli.session.verify", lambda *args: False)
    result = runner.invoke(app, ["mpc", "tour"])
    assert result.exit_code == 1
    assert "check(s) failed" in result.stdout


# -- the installed entry point ---------------------------------------------------------------


def test_console_script() -> None:
    script = Path(sys.executable).with_name("harbour")
    assert script.exists(), "the harbour console script is installed with the package"
    args = ["--scheme", "frost-ed25519", "-t", "2", "-n", "3", "--signers", "1,3", "--message", "00112233"]
    proc = subprocess.run(
        [str(script), "mpc", "demo", *args, "--json"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    obj = json.loads(proc.stdout)
    assert obj["signers"] == [1, 3]
    nacl.signing.VerifyKey(bytes.fromhex(obj["public_key"])).verify(
        bytes.fromhex(obj["message"]), bytes.fromhex(obj["signature"])
    )
    bad = subprocess.run(
        [str(script), "mpc", "demo", "-t", "5", "-n", "3"], capture_output=True, text=True, timeout=60, check=False
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("harbour ")
