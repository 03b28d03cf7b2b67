"""The ``harbour`` command line with threshold ECDSA (``ecdsa-secp256k1``).

``harbour mpc demo --json`` prints a key, an Ethereum address and a signature
that other tools use, so they are checked here with eth-keys' pure-Python
backend, which shares no code with libsecp256k1 or with Harbour: the address
must be the public key's, the signature must recover to that address with the
printed recovery id, and ``s`` must be low (EIP-2).
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

import pytest
from eth_keys.backends.native.main import NativeECCBackend
from eth_keys.main import KeyAPI
from typer.testing import CliRunner

from cli_checks import error_line, one_document, problem
from harbour.cli import session
from harbour.cli.main import app
from harbour.cli.mpc import DEFAULT_TEXT
from harbour.cli.params import SCHEMES
from harbour.crypto.ecdsa import EcdsaSignature
from harbour.mpc import runner as mpc_runner
from harbour.mpc.envelope import UsageError
from harbour.mpc.keyshare import KeyShare

runner = CliRunner()
keys = KeyAPI(NativeECCBackend)

SCHEME = "ecdsa-secp256k1"
CONTRACT = [
    "scheme",
    "threshold",
    "parties",
    "signers",
    "public_key",
    "address",
    "message",
    "signature",
    "recovery_id",
]
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
DIGEST = hashlib.sha256(b"transfer 100.00 HKD-T to vault 7").digest()


@cache
def key_2_of_3() -> dict[int, KeyShare]:
    """One DKG and pairwise setup for every test that does not go through the CLI."""
    return mpc_runner.keygen(SCHEME, 2, 3)


def demo_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, ["mpc", "demo", "--json", "--scheme", SCHEME, *args])
    assert result.stderr == ""
    obj: dict[str, Any] = one_document(result)
    return obj


def verify_independently(obj: dict[str, Any]) -> bool:
    """eth-keys (pure Python): the key names the address and the signature recovers to it."""
    pk, digest, sig = (bytes.fromhex(obj[k]) for k in ("public_key", "message", "signature"))
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    if len(digest) != 32 or not (0 < r < N and 0 < s <= N // 2):
        return False
    public = keys.PublicKey.from_compressed_bytes(pk)
    if public.to_checksum_address() != obj["address"]:
        return False
    signature = keys.Signature(vrs=(obj["recovery_id"], r, s))
    if not signature.verify_msg_hash(digest, public):
        return False
    try:
        recovered = signature.recover_public_key_from_msg_hash(digest)
    except Exception:  # eth-keys raises BadSignature, or ValueError for a point off the curve
        return False
    return bool(recovered.to_checksum_address() == obj["address"])


def flipped(hex_text: str) -> str:
    data = bytearray(bytes.fromhex(hex_text))
    data[-1] ^= 1
    return data.hex()


def assert_usage_error(args: list[str], needle: str, command: str = "demo") -> None:
    result = runner.invoke(app, ["mpc", command, "--scheme", SCHEME, *args])
    error_line(result, 2, needle)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    problem(runner.invoke(app, ["mpc", command, "--json", "--scheme", SCHEME, *args]), 2, needle)


def test_ecdsa_is_a_listed_scheme() -> None:
    assert SCHEME in SCHEMES
    result = runner.invoke(app, ["mpc", "demo", "--help"])
    assert result.exit_code == 0 and SCHEME in result.stdout


# -- harbour mpc demo: the JSON contract ----------------------------------------------------


def test_demo_json_contract() -> None:
    obj = demo_json("-t", "2", "-n", "3", "--signers", "1,3", "--message", "0x" + DIGEST.hex().upper())
    assert list(obj) == CONTRACT
    assert (obj["scheme"], obj["threshold"], obj["parties"], obj["signers"]) == (SCHEME, 2, 3, [1, 3])
    assert obj["message"] == DIGEST.hex()
    pk, sig = bytes.fromhex(obj["public_key"]), bytes.fromhex(obj["signature"])
    assert len(pk) == 33 and pk[0] in (2, 3)
    assert len(sig) == 64
    assert int.from_bytes(sig[32:], "big") <= N // 2, "low-s (EIP-2, BIP-62)"
    assert obj["recovery_id"] in (0, 1)
    assert obj["address"].startswith("0x") and len(obj["address"]) == 42
    assert verify_independently(obj)
    assert not verify_independently({**obj, "signature": flipped(obj["signature"])})
    assert not verify_independently({**obj, "message": flipped(obj["message"])})
    assert not verify_independently({**obj, "recovery_id": obj["recovery_id"] ^ 1})


def test_demo_default_message_is_the_sha256_of_the_frost_default() -> None:
    obj = demo_json()
    assert obj["message"] == hashlib.sha256(DEFAULT_TEXT).hexdigest()
    assert (obj["threshold"], obj["parties"], obj["signers"]) == (2, 3, [1, 2])
    assert verify_independently(obj)


def test_demo_without_json_renders_the_same_fields() -> None:
    result = runner.invoke(app, ["mpc", "demo", "-s", SCHEME, "--signers", "2,3"])
    assert result.exit_code == 0, result.output
    for field in CONTRACT:
        assert field in result.stdout
    assert "✓" in result.stdout


def test_frost_default_message_is_unchanged() -> None:
    result = runner.invoke(app, ["mpc", "demo", "--json", "-s", "frost-secp256k1"])
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert obj["message"] == DEFAULT_TEXT.hex()
    assert "address" not in obj and "recovery_id" not in obj


def test_demo_refuses_an_unverified_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harbour.cli.session.verify", lambda *args: False)
    problem(runner.invoke(app, ["mpc", "demo", "--json", "-s", SCHEME]), 1, "does not verify")
    error_line(runner.invoke(app, ["mpc", "demo", "-s", SCHEME]), 1, "does not verify")


# -- bad input: exit 2, one line on stderr, no traceback --------------------------------------


@pytest.mark.parametrize(
    ("message", "got"),
    [
        ("48656c6c6f", "got 5 bytes"),
        ("", "got 0 bytes"),
        ("00" * 31, "got 31 bytes"),
        ("00" * 33, "got 33 bytes"),
        (DIGEST.hex() + DIGEST.hex(), "got 64 bytes"),
    ],
)
def test_demo_refuses_a_message_that_is_not_a_digest(message: str, got: str) -> None:
    assert_usage_error(["--message", message], got)
    assert_usage_error(["--message", message], "32-byte digest")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-t", "2", "-n", "3", "--signers", "1"], "at least 2 signers, got 1"),
        (["-t", "2", "-n", "3", "--signers", "1,2,3"], "exactly 2 parties, got 3"),
        (["-t", "2", "-n", "3", "--signers", "1,4"], "not a party: 4"),
        (["-t", "2", "-n", "3", "--signers", "0,1"], "not a party: 0"),
        (["-t", "2", "-n", "3", "--signers", "2,2"], "more than once"),
        (["-t", "3", "-n", "2"], "cannot exceed"),
        (["--message", "zz"], "--message"),
    ],
)
def test_demo_bad_input(args: list[str], needle: str) -> None:
    assert_usage_error(args, needle)


# -- the session layer: refusals and the independent check, on one cached key ------------------


def test_session_sign_and_verify_on_the_cached_key() -> None:
    shares = key_2_of_3()
    signature = session.sign_verified(shares, [2, 3], DIGEST)
    assert isinstance(signature, EcdsaSignature)
    obj = session.contract(shares, [2, 3], DIGEST, signature)
    assert list(obj) == CONTRACT
    assert verify_independently(obj)
    point = shares[1].group_public_key
    assert session.verify(SCHEME, point, DIGEST, signature)
    assert not session.verify(SCHEME, point, DIGEST[::-1], signature)
    assert not session.verify(SCHEME, point, DIGEST, signature.to_bytes()), "bytes are not an ECDSA signature"
    wrong_id = EcdsaSignature(signature.r, signature.s, signature.recovery_id ^ 1)
    assert not session.verify(SCHEME, point, DIGEST, wrong_id), "the recovery id must recover the group key"
    high_s = EcdsaSignature(signature.r, N - signature.s, signature.recovery_id ^ 1)
    assert not session.verify(SCHEME, point, DIGEST, high_s), "high s is refused"
    assert not session.verify("frost-secp256k1", point, DIGEST, signature)


def test_a_lone_signer_is_refused() -> None:
    with pytest.raises(UsageError, match="exactly 2 parties, got 1"):
        session.sign(key_2_of_3(), [1], DIGEST)


def test_signers_outside_the_key_are_refused() -> None:
    with pytest.raises(UsageError, match=r"no key share for signers \[4\]"):
        session.sign(key_2_of_3(), [1, 4], DIGEST)
    subset = {i: share for i, share in key_2_of_3().items() if i != 3}
    with pytest.raises(UsageError, match=r"no key share for signers \[3\]"):
        session.sign(subset, [1, 3], DIGEST)


def test_frost_signing_refuses_ecdsa_shares() -> None:
    with pytest.raises(UsageError):
        mpc_runner.sign(key_2_of_3(), [1, 2], DIGEST)


# -- harbour bench mpc ------------------------------------------------------------------------


def test_bench_json() -> None:
    args = ["bench", "mpc", "--scheme", SCHEME, "-t", "2", "-n", "3", "--runs", "2", "--keygen-runs", "1", "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    obj = json.loads(result.stdout)
    assert (obj["scheme"], obj["threshold"], obj["parties"], obj["runs"], obj["keygen_runs"]) == (SCHEME, 2, 3, 2, 1)
    for field in ("keygen_ms", "sign_ms"):
        assert isinstance(obj[field], float) and 0 < obj[field] < 60_000
    assert obj["keygen_min_ms"] <= obj["keygen_ms"] <= obj["keygen_p90_ms"]
    assert obj["sign_min_ms"] <= obj["sign_ms"] <= obj["sign_p90_ms"]
    # Three rounds between two signers: one envelope to the other per round each.
    assert obj["sign_envelopes"] == 6
    assert isinstance(obj["sign_bytes"], int) and obj["sign_bytes"] > 1000
    assert isinstance(obj["keygen_bytes"], int) and obj["keygen_bytes"] > obj["sign_bytes"]
    assert isinstance(obj["keygen_envelopes"], int) and obj["keygen_envelopes"] > 0


def test_bench_default_keygen_runs_are_capped_for_ecdsa() -> None:
    from harbour.cli.bench import default_keygen_runs

    assert default_keygen_runs(3, 20, SCHEME) == 20
    assert default_keygen_runs(5, 20, SCHEME) == 5
    assert default_keygen_runs(10, 20, "frost-secp256k1") == 20


# -- harbour demo ---------------------------------------------------------------------------------


def test_harbour_demo_shows_ecdsa_rows() -> None:
    result = runner.invoke(app, ["mpc", "tour"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if SCHEME in line]
    assert any("{1, 3}" in line and "✓" in line for line in lines)
    assert any("{2, 3}" in line and "✓" in line for line in lines)
    assert any("{1}" in line and "refused ✓" in line for line in lines)
    assert "exactly 2 parties, got 1" in result.stdout
    assert "Ethereum address 0x" in result.stdout
