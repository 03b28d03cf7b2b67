"""``harbour key``: key ceremonies on encrypted share files, driven through the command line.

Other tools read the key directory (``party-<i>.share``, ``public.json``) and the
JSON the commands print, so what they produce is checked here with code that shares
nothing with Harbour's: eth-keys' pure-Python backend for addresses and ECDSA
signatures, bip_utils for BIP-32, PyNaCl (libsodium) for Ed25519 and coincurve
(libsecp256k1) for FROST(secp256k1) and Taproot. Every refusal is checked for its
exit code (2: bad input, 1: a failed run), its one-line message, and for leaving the
files exactly as they were.

Keys are made once per module and copied for the tests that change them: every share
file costs a scrypt derivation to write and to read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import shutil
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import nacl.bindings as sodium
import nacl.exceptions
import nacl.signing
import pytest
from bip_utils import Bip32KeyData, Bip32Secp256k1
from coincurve import PublicKey, PublicKeyXOnly
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from eth_account import Account
from eth_keys.backends.native.main import NativeECCBackend
from eth_keys.main import lazy_key_api as keys
from typer.testing import CliRunner, Result

from cli_checks import one_document, problem
from harbour.chains.ethereum import address_from_public_key
from harbour.cli.main import app
from harbour.crypto.hashing import tagged_hash
from harbour.crypto.secp256k1 import SECP256K1, Secp256k1Point
from harbour.mpc import runner as mpc_runner
from harbour.mpc.ciphersuite import FROST_SECP256K1
from harbour.mpc.ecdsa_setup import compromised_peers
from harbour.mpc.envelope import Envelope, ProtocolAbort, encode_payload
from harbour.node import backup, keyfile
from harbour.util import files as util_files

cli = CliRunner()
native = NativeECCBackend()

PASSPHRASE_ENV = "HARBOUR_PASSPHRASE"
RECOVERY_PASSPHRASE_ENV = "HARBOUR_RECOVERY_PASSPHRASE"
PASSPHRASE = "correct horse battery staple"
NO_PASSPHRASE: dict[str, str | None] = {PASSPHRASE_ENV: None}

Args = list[str | Path]  # a command line as the tests build it: words and paths mixed

ECDSA = "ecdsa-secp256k1"
FROST_SCHEMES = ["frost-secp256k1", "frost-ed25519", "frost-taproot"]
SECP_SCHEMES = ["frost-secp256k1", "frost-taproot", ECDSA]
N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
L = 2**252 + 27742317777372353535851937790883648493

_HEAD = ["scheme", "threshold", "parties", "signers", "public_key"]
_TAIL = ["message", "signature"]
CONTRACTS = {
    "frost-secp256k1": [*_HEAD, *_TAIL],
    "frost-ed25519": [*_HEAD, *_TAIL],
    "frost-taproot": [*_HEAD, "internal_key", *_TAIL],
    ECDSA: [*_HEAD, "address", *_TAIL, "recovery_id"],
}
"""What ``harbour mpc demo --json`` prints per scheme; ``key sign --json`` prints the same."""
NAMING_FIELDS = {"frost-secp256k1": [], "frost-ed25519": [], "frost-taproot": ["internal_key"], ECDSA: ["address"]}
KEY_LEN = {"frost-secp256k1": 33, "frost-ed25519": 32, "frost-taproot": 32, ECDSA: 33}

MESSAGE = b"pay 250.00 HKD-T to account 7".hex()
DIGEST = hashlib.sha256(b"transfer 100.00 HKD-T to vault 7").hexdigest()

# The private key of eth-account's documentation and its address.
VECTOR_KEY = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
VECTOR_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
# RFC 8032 section 7.1, test 1: secret key (seed) and public key.
RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


# -- running the command line ----------------------------------------------------------------------


def invoke(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    """``harbour <args>`` in this process, with the passphrase in the environment unless ``env`` says otherwise."""
    return cli.invoke(app, [str(a) for a in args], env={PASSPHRASE_ENV: PASSPHRASE, **(env or {})})


def ok(*args: str | Path, env: Mapping[str, str | None] | None = None) -> Result:
    result = invoke("key", *args, env=env)
    assert result.exit_code == 0, result.output
    assert result.exception is None
    return result


def ok_json(*args: str | Path, env: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Run a ``harbour key`` command with ``--json``: one JSON object on stdout and nothing else."""
    result = ok(*args, "--json", env=env)
    assert result.stderr == ""
    obj: dict[str, Any] = one_document(result)
    return obj


def refused(
    args: list[str | Path],
    needle: str,
    *,
    code: int = 2,
    env: Mapping[str, str | None] | None = None,
    stdout_empty: bool = True,
) -> Result:
    """``harbour key <args>`` fails with ``code`` and one ``error:`` line naming ``needle``, no traceback."""
    result = invoke("key", *args, env=env)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("hint: ")]
    assert lines[-1] == errors[0], "the error is the last thing printed (before any hint)"
    assert needle in errors[0], errors[0]
    assert "Traceback" not in result.output
    if stdout_empty:
        assert result.stdout == ""
    return result


def demo_json(scheme: str, signers: str, message: str) -> dict[str, Any]:
    result = invoke(
        "mpc", "demo", "--json", "--scheme", scheme, "-t", "2", "-n", "3", "--signers", signers, "-m", message
    )
    assert result.exit_code == 0, result.output
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


# -- files -----------------------------------------------------------------------------------------


def public_doc(directory: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((directory / "public.json").read_text())
    return doc


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file of a directory (hidden ones too) with its bytes and mode."""
    return {p.name: (p.read_bytes(), mode(p)) for p in sorted(directory.iterdir())}


def share_file(directory: Path, party: int) -> Path:
    return directory / f"party-{party}.share"


def copy_key(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def generate(directory: Path, scheme: str, t: int = 2, n: int = 3) -> dict[str, Any]:
    doc = ok_json("generate", "--scheme", scheme, "-t", str(t), "-n", str(n), "--out", directory)
    assert doc == public_doc(directory), "--json prints what public.json holds"
    return doc


def sign(directory: Path, parties: str, message: str = MESSAGE, *extra: str) -> dict[str, Any]:
    return ok_json("sign", "--dir", directory, "--parties", parties, "--message", message, *extra)


# -- independent verifiers -------------------------------------------------------------------------


def frost_verifies(obj: Mapping[str, Any]) -> bool:
    """libsodium for Ed25519, libsecp256k1's BIP-340 for Taproot, RFC 9591's equation for secp256k1."""
    pk, msg, sig = (bytes.fromhex(obj[k]) for k in ("public_key", "message", "signature"))
    if obj["scheme"] == "frost-ed25519":
        try:
            nacl.signing.VerifyKey(pk).verify(msg, sig)
        except nacl.exceptions.BadSignatureError:
            return False
        return True
    if obj["scheme"] == "frost-taproot":
        return bool(PublicKeyXOnly(pk).verify(sig, msg))
    R, z = sig[:33], int.from_bytes(sig[33:], "big")
    if not 0 < z < N:
        return False
    c = FROST_SECP256K1.H2(R + pk + msg)
    lhs = PublicKey.from_secret(z.to_bytes(32, "big"))
    rhs = PublicKey.combine_keys([PublicKey(R), PublicKey(pk).multiply(c.to_bytes(32, "big"))])
    return bool(lhs.format() == rhs.format())


def ecdsa_signer(obj: Mapping[str, Any]) -> str:
    """The address an ECDSA signature recovers to (eth-keys, pure Python); s must be low."""
    sig = bytes.fromhex(obj["signature"])
    r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
    assert len(sig) == 64 and 0 < r < N and 0 < s <= N // 2
    signature = keys.Signature(vrs=(obj["recovery_id"], r, s), backend=native)
    address: str = signature.recover_public_key_from_msg_hash(bytes.fromhex(obj["message"])).to_checksum_address()
    return address


def eth_address(compressed_hex: str) -> str:
    address: str = keys.PublicKey.from_compressed_bytes(bytes.fromhex(compressed_hex)).to_checksum_address()
    return address


def flipped(hex_text: str) -> str:
    data = bytearray(bytes.fromhex(hex_text))
    data[-1] ^= 1
    return data.hex()


def lagrange_at_zero(ids: list[int], order: int) -> dict[int, int]:
    out = {}
    for i in ids:
        num = den = 1
        for j in ids:
            if j != i:
                num, den = num * j % order, den * (j - i) % order
        out[i] = num * pow(den, -1, order) % order
    return out


def interpolated_key(doc: Mapping[str, Any], ids: list[int]) -> str:
    """The group key from the verification shares of ``ids``, by Lagrange in the exponent (coincurve/libsodium)."""
    shares = {i: bytes.fromhex(doc["verification_shares"][str(i)]) for i in ids}
    if doc["curve"] == "ed25519":
        total = None
        for i, coeff in lagrange_at_zero(ids, L).items():
            term = sodium.crypto_scalarmult_ed25519_noclamp(coeff.to_bytes(32, "little"), shares[i])
            total = term if total is None else sodium.crypto_core_ed25519_add(total, term)
        assert total is not None
        return total.hex()
    terms = [PublicKey(shares[i]).multiply(c.to_bytes(32, "big")) for i, c in lagrange_at_zero(ids, N).items()]
    return PublicKey.combine_keys(terms).format().hex()


def taproot_output_key(internal_hex: str) -> str:
    """BIP-341 key path: x(lift_x(P) + hash_TapTweak(P)·G)."""
    internal = bytes.fromhex(internal_hex)
    return PublicKey(b"\x02" + internal).add(tagged_hash("TapTweak", internal)).format()[1:].hex()


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Path]]:
    """One 2-of-3 key directory per scheme for the module; tests that change a key work on a copy.

    The shared directories must end the module exactly as they were made.
    """
    cache: dict[str, tuple[Path, dict[str, tuple[bytes, int]]]] = {}

    def get(scheme: str) -> Path:
        if scheme not in cache:
            directory = tmp_path_factory.mktemp(scheme) / "key"
            generate(directory, scheme)
            cache[scheme] = (directory, snapshot(directory))
        return cache[scheme][0]

    yield get
    for directory, files in cache.values():
        assert snapshot(directory) == files, f"a test changed the shared key {directory}"


@pytest.fixture(scope="module")
def frost_key(made: Callable[[str], Path]) -> Path:
    return made("frost-secp256k1")


@pytest.fixture(scope="module")
def ecdsa_key(made: Callable[[str], Path]) -> Path:
    return made(ECDSA)


@pytest.fixture(scope="module")
def other_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second frost-secp256k1 key under the same passphrase: its files must never pass for the first's."""
    directory = tmp_path_factory.mktemp("other") / "key"
    generate(directory, "frost-secp256k1")
    return directory


@pytest.fixture
def frost_copy(frost_key: Path, tmp_path: Path) -> Path:
    return copy_key(frost_key, tmp_path / "key")


@pytest.fixture
def ecdsa_copy(ecdsa_key: Path, tmp_path: Path) -> Path:
    return copy_key(ecdsa_key, tmp_path / "key")


@dataclass(frozen=True)
class Recovery:
    kind: str
    private: Path
    public: Path
    fingerprint: str


def make_recovery_key(directory: Path, kind: backup.RecoveryKind) -> Recovery:
    directory.mkdir(parents=True, exist_ok=True)
    private, public = directory / "recovery.pem", directory / "recovery.pub.pem"
    fingerprint = backup.generate_recovery_key(kind, private, public)
    return Recovery(kind, private, public, fingerprint)


@pytest.fixture(scope="session")
def rsa_recovery(tmp_path_factory: pytest.TempPathFactory) -> Recovery:
    """One RSA-4096 recovery key for the whole run: generating one takes a second or more."""
    return make_recovery_key(tmp_path_factory.mktemp("rsa-recovery"), "rsa")


@pytest.fixture(scope="module")
def x25519_recovery(tmp_path_factory: pytest.TempPathFactory) -> Recovery:
    return make_recovery_key(tmp_path_factory.mktemp("x25519-recovery"), "x25519")


@pytest.fixture(params=["x25519", "rsa"])
def recovery(request: pytest.FixtureRequest, x25519_recovery: Recovery, rsa_recovery: Recovery) -> Recovery:
    return x25519_recovery if request.param == "x25519" else rsa_recovery


@pytest.fixture
def frost_backups(frost_key: Path, x25519_recovery: Recovery, tmp_path: Path) -> Path:
    out = tmp_path / "backups"
    ok_json("backup", "--dir", frost_key, "--recovery-public-key", x25519_recovery.public, "--out", out)
    return out


# == generate =======================================================================================


@pytest.mark.parametrize("scheme", [*FROST_SCHEMES, ECDSA])
def test_generate_writes_encrypted_shares_and_public_json(made: Callable[[str], Path], scheme: str) -> None:
    directory = made(scheme)
    doc = public_doc(directory)
    assert sorted(p.name for p in directory.iterdir()) == [
        "party-1.share",
        "party-2.share",
        "party-3.share",
        "public.json",
    ]
    assert mode(directory) == 0o700
    assert mode(directory / "public.json") == 0o644
    for i in (1, 2, 3):
        path = share_file(directory, i)
        assert mode(path) == 0o600
        # Encrypted: the header is public, the share is not, and the passphrase opens it.
        header = keyfile.read_header(path.read_bytes())
        assert (header.scheme, header.party, header.key_fingerprint) == (scheme, i, doc["key_fingerprint"])
        assert header.kdf.n == keyfile.DEFAULT_N
        share = keyfile.load_share(path, PASSPHRASE)
        assert share.identifier == i and share.scheme == scheme
        assert share.secret_share.to_bytes(32, "big").hex() not in path.read_bytes().hex()
        assert share.secret_share.to_bytes(32, "little").hex() not in path.read_bytes().hex()

    expected_fields = [
        "format",
        "version",
        "scheme",
        "curve",
        "threshold",
        "parties",
        "public_key",
        *NAMING_FIELDS[scheme],
        "group_public_key",
        "chain_code",
        "xpub",
        "verification_shares",
        "key_fingerprint",
    ]
    assert list(doc) == expected_fields
    curve = "ed25519" if scheme == "frost-ed25519" else "secp256k1"
    assert (doc["format"], doc["version"], doc["scheme"], doc["curve"]) == ("harbour-public-key", 1, scheme, curve)
    assert (doc["threshold"], doc["parties"]) == (2, [1, 2, 3])
    assert len(bytes.fromhex(doc["public_key"])) == KEY_LEN[scheme]
    assert len(bytes.fromhex(doc["chain_code"])) == 32
    assert len(doc["key_fingerprint"]) == 64
    assert set(doc["verification_shares"]) == {"1", "2", "3"}
    # Any two verification shares interpolate to the group key.
    for ids in ([1, 2], [1, 3], [2, 3]):
        assert interpolated_key(doc, ids) == doc["group_public_key"]

    if scheme == "frost-ed25519":
        assert doc["xpub"] is None
        assert doc["public_key"] == doc["group_public_key"]
    else:
        ctx = Bip32Secp256k1.FromExtendedKey(doc["xpub"])
        assert ctx.PublicKey().RawCompressed().ToHex() == doc["group_public_key"]
        assert ctx.ChainCode().ToHex() == doc["chain_code"]
        assert (ctx.Depth().ToInt(), ctx.Index().ToInt()) == (0, 0)
    if scheme == ECDSA:
        point = SECP256K1.decode_point(bytes.fromhex(doc["public_key"]))
        assert isinstance(point, Secp256k1Point)
        assert doc["address"] == address_from_public_key(point) == eth_address(doc["public_key"])
        assert doc["public_key"] == doc["group_public_key"]
    if scheme == "frost-secp256k1":
        assert doc["public_key"] == doc["group_public_key"]
    if scheme == "frost-taproot":
        assert doc["internal_key"] == doc["group_public_key"][2:], "the even-y x-only group key"
        assert doc["public_key"] == taproot_output_key(doc["internal_key"])


def test_generate_readable_output(tmp_path: Path) -> None:
    result = ok("generate", "--scheme", "frost-ed25519", "-t", "1", "-n", "2", "--out", tmp_path / "k")
    doc = public_doc(tmp_path / "k")
    assert result.stdout.strip() == (
        f"frost-ed25519 1-of-2 key written to {tmp_path / 'k'}; public key {doc['public_key']}"
    )


def test_generate_into_an_existing_empty_directory(tmp_path: Path) -> None:
    directory = tmp_path / "empty"
    directory.mkdir()
    generate(directory, "frost-ed25519", 2, 2)
    assert sorted(p.name for p in directory.iterdir()) == ["party-1.share", "party-2.share", "public.json"]


def test_generate_refuses_a_directory_that_holds_a_key(frost_copy: Path) -> None:
    before = snapshot(frost_copy)
    args: list[str | Path] = ["generate", "--scheme", "frost-secp256k1", "-t", "2", "-n", "3", "--out", frost_copy]
    refused(args, "already holds a key")
    assert snapshot(frost_copy) == before
    # One share file left is enough to refuse.
    (frost_copy / "public.json").unlink()
    share_file(frost_copy, 2).unlink()
    share_file(frost_copy, 3).unlink()
    before = snapshot(frost_copy)
    refused(args, "already holds a key")
    assert snapshot(frost_copy) == before


def test_generate_refuses_a_directory_that_holds_backups(frost_backups: Path) -> None:
    before = snapshot(frost_backups)
    refused(["generate", "-s", "frost-ed25519", "-t", "2", "-n", "3", "--out", frost_backups], "already holds")
    assert snapshot(frost_backups) == before


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["-s", "frost-rsa", "-t", "2", "-n", "3"], None, "unknown scheme"),
        (["-s", "frost-ed25519", "-t", "4", "-n", "3"], None, "cannot exceed"),
        (["-s", "frost-ed25519", "-t", "0", "-n", "3"], None, "at least 1"),
        (["-s", "frost-ed25519", "-t", "2", "-n", "256"], None, "at most 255"),
        (["-s", "frost-ed25519", "-t", "2", "-n", "3"], NO_PASSPHRASE, "no passphrase"),
        (["-s", "frost-ed25519", "-t", "2", "-n", "3"], {PASSPHRASE_ENV: ""}, "must not be empty"),
    ],
)
def test_generate_bad_input_writes_nothing(
    tmp_path: Path, args: list[str], env: dict[str, str | None] | None, needle: str
) -> None:
    out = tmp_path / "new"
    refused(["generate", *args, "--out", out], needle, env=env)
    assert not out.exists()


# == sign ===========================================================================================


@pytest.mark.parametrize("scheme", FROST_SCHEMES)
def test_sign_frost_prints_the_demo_contract(made: Callable[[str], Path], scheme: str) -> None:
    directory = made(scheme)
    doc = public_doc(directory)
    obj = sign(directory, "3,1")
    assert list(obj) == list(demo_json(scheme, "1,3", MESSAGE)) == CONTRACTS[scheme]
    assert (obj["scheme"], obj["threshold"], obj["parties"], obj["signers"]) == (scheme, 2, 3, [1, 3])
    assert obj["message"] == MESSAGE
    for name in ("public_key", *NAMING_FIELDS[scheme]):
        assert obj[name] == doc[name]
    assert frost_verifies(obj)
    assert not frost_verifies({**obj, "signature": flipped(obj["signature"])})
    assert not frost_verifies({**obj, "message": flipped(obj["message"])})


def test_sign_frost_with_more_than_t_parties(frost_key: Path) -> None:
    obj = sign(frost_key, "1,2,3", "")
    assert obj["signers"] == [1, 2, 3] and obj["message"] == ""
    assert frost_verifies(obj)


def test_sign_ecdsa_recovers_to_the_address(ecdsa_key: Path) -> None:
    doc = public_doc(ecdsa_key)
    obj = sign(ecdsa_key, "2,3", "0x" + DIGEST.upper())
    assert list(obj) == list(demo_json(ECDSA, "2,3", DIGEST)) == CONTRACTS[ECDSA]
    assert (obj["scheme"], obj["threshold"], obj["parties"], obj["signers"]) == (ECDSA, 2, 3, [2, 3])
    assert obj["message"] == DIGEST
    assert (obj["public_key"], obj["address"]) == (doc["public_key"], doc["address"])
    assert obj["recovery_id"] in (0, 1)
    assert ecdsa_signer(obj) == doc["address"]
    assert ecdsa_signer({**obj, "message": flipped(DIGEST)}) != doc["address"]


def test_sign_ecdsa_under_a_child_key(ecdsa_key: Path) -> None:
    doc = public_doc(ecdsa_key)
    obj = sign(ecdsa_key, "1,3", DIGEST, "--path", "m/0/7")
    child = ok_json("derive", "--dir", ecdsa_key, "--path", "m/0/7", env=NO_PASSPHRASE)
    expected = Bip32Secp256k1.FromExtendedKey(doc["xpub"]).DerivePath("m/0/7")
    assert list(obj) == [*CONTRACTS[ECDSA], "path"] and obj["path"] == "m/0/7"
    assert obj["public_key"] == child["public_key"] == expected.PublicKey().RawCompressed().ToHex()
    assert obj["public_key"] != doc["public_key"]
    assert obj["address"] == child["address"] == eth_address(child["public_key"])
    assert child["xpub"] == expected.PublicKey().ToExtended()
    assert child["chain_code"] == expected.ChainCode().ToHex()
    assert ecdsa_signer(obj) == child["address"]


@pytest.mark.parametrize("scheme", FROST_SCHEMES)
def test_sign_frost_under_a_child_key(made: Callable[[str], Path], scheme: str) -> None:
    directory = made(scheme)
    obj = sign(directory, "2,3", MESSAGE, "--path", "m/0/7")
    child = ok_json("derive", "--dir", directory, "--path", "m/0/7", env=NO_PASSPHRASE)
    assert list(obj) == [*CONTRACTS[scheme], "path"] and obj["path"] == "m/0/7"
    for name in ("public_key", *NAMING_FIELDS[scheme]):
        assert obj[name] == child[name]
    assert obj["public_key"] != public_doc(directory)["public_key"]
    assert frost_verifies(obj)


def test_sign_readable_output(frost_key: Path) -> None:
    result = ok("sign", "--dir", frost_key, "--parties", "1,2", "--message", MESSAGE)
    lines = result.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == CONTRACTS["frost-secp256k1"]
    assert f"message: {MESSAGE}" in lines


def test_sign_wrong_passphrase(frost_key: Path) -> None:
    before = snapshot(frost_key)
    refused(
        ["sign", "--dir", frost_key, "--parties", "1,3", "--message", MESSAGE],
        "wrong passphrase",
        env={PASSPHRASE_ENV: "not the passphrase"},
    )
    assert snapshot(frost_key) == before


@pytest.mark.parametrize(("env", "needle"), [(NO_PASSPHRASE, "no passphrase"), ({PASSPHRASE_ENV: ""}, "empty")])
def test_sign_without_a_passphrase(frost_key: Path, env: dict[str, str | None], needle: str) -> None:
    refused(["sign", "--dir", frost_key, "--parties", "1,3", "--message", MESSAGE], needle, env=env)


def test_sign_truncated_share(frost_copy: Path) -> None:
    path = share_file(frost_copy, 3)
    path.write_bytes(path.read_bytes()[:-20])
    result = refused(["sign", "--dir", frost_copy, "--parties", "1,3", "--message", MESSAGE], "truncated")
    assert str(path) in result.stderr
    # The other parties still sign.
    assert frost_verifies(sign(frost_copy, "1,2"))


def test_sign_share_of_another_key(frost_copy: Path, other_key: Path) -> None:
    shutil.copy2(share_file(other_key, 3), share_file(frost_copy, 3))
    refused(["sign", "--dir", frost_copy, "--parties", "1,3", "--message", MESSAGE], "another key")


def test_sign_share_of_another_party_renamed(frost_copy: Path) -> None:
    shutil.copy2(share_file(frost_copy, 2), share_file(frost_copy, 1))
    refused(
        ["sign", "--dir", frost_copy, "--parties", "1,3", "--message", MESSAGE],
        "holds the share of party 2, not 1",
    )


def test_sign_missing_share(frost_copy: Path) -> None:
    share_file(frost_copy, 3).unlink()
    refused(["sign", "--dir", frost_copy, "--parties", "2,3", "--message", MESSAGE], "party 3")


def test_sign_edited_public_json(frost_copy: Path) -> None:
    doc = public_doc(frost_copy)
    other = Bip32Secp256k1.FromSeed(bytes(32)).PublicKey().ToExtended()
    (frost_copy / "public.json").write_text(json.dumps({**doc, "xpub": other}))
    refused(["sign", "--dir", frost_copy, "--parties", "1,3", "--message", MESSAGE], "xpub does not match")
    (frost_copy / "public.json").write_text(json.dumps({**doc, "threshold": 3}))
    refused(["sign", "--dir", frost_copy, "--parties", "1,3", "--message", MESSAGE], "key_fingerprint")
    (frost_copy / "public.json").write_text(json.dumps(doc)[:-10])
    refused(["sign", "--dir", frost_copy, "--parties", "1,3", "--message", MESSAGE], "not valid JSON")


@pytest.mark.parametrize(
    ("parties", "message", "extra", "needle"),
    [
        ("1", MESSAGE, [], "needs 2 signers, got 1"),
        ("1,4", MESSAGE, [], "[4] are not parties of this key"),
        ("0,1", MESSAGE, [], "[0] are not parties of this key"),
        ("1,1", MESSAGE, [], "distinct"),
        ("1,x", MESSAGE, [], "comma-separated"),
        ("1,2", "zz", [], "--message"),
        ("1,2", MESSAGE, ["--path", "m/0'/7"], "hardened"),
        ("1,2", MESSAGE, ["--path", "0/7"], "starts with 'm'"),
    ],
)
def test_sign_bad_input(frost_key: Path, parties: str, message: str, extra: list[str], needle: str) -> None:
    refused(["sign", "--dir", frost_key, "--parties", parties, "--message", message, *extra], needle)


@pytest.mark.parametrize(
    ("parties", "message", "needle"),
    [
        ("1,2,3", DIGEST, "signs with exactly 2 parties"),
        ("1", DIGEST, "signs with exactly 2 parties"),
        ("1,2", MESSAGE, "32-byte digest"),
    ],
)
def test_sign_ecdsa_bad_input(ecdsa_key: Path, parties: str, message: str, needle: str) -> None:
    refused(["sign", "--dir", ecdsa_key, "--parties", parties, "--message", message], needle)


def test_sign_not_a_key_directory(tmp_path: Path) -> None:
    refused(["sign", "--dir", tmp_path, "--parties", "1,2", "--message", MESSAGE], "public.json not found")


# == refresh ========================================================================================


def test_refresh_replaces_every_share_and_keeps_the_key(frost_copy: Path) -> None:
    before = snapshot(frost_copy)
    doc = public_doc(frost_copy)
    old_shares = {i: keyfile.load_share(share_file(frost_copy, i), PASSPHRASE) for i in (1, 2, 3)}
    out = ok_json("refresh", "--dir", frost_copy)
    after = snapshot(frost_copy)
    new = public_doc(frost_copy)
    assert out == new
    assert sorted(after) == sorted(before), "no file left over or added"
    for i in (1, 2, 3):
        name = f"party-{i}.share"
        assert after[name][0] != before[name][0]
        assert after[name][1] == 0o600
        share = keyfile.load_share(share_file(frost_copy, i), PASSPHRASE)
        assert share.secret_share != old_shares[i].secret_share
        assert new["verification_shares"][str(i)] != doc["verification_shares"][str(i)]
    for name in ("public_key", "group_public_key", "chain_code", "xpub", "threshold", "parties"):
        assert new[name] == doc[name]
    assert new["key_fingerprint"] != doc["key_fingerprint"], "a new sharing of the same key"
    for ids in ([1, 2], [2, 3]):
        assert interpolated_key(new, ids) == doc["group_public_key"]
    obj = sign(frost_copy, "1,3")
    assert obj["public_key"] == doc["public_key"] and frost_verifies(obj)


def test_refresh_ecdsa_then_sign(ecdsa_copy: Path) -> None:
    doc = public_doc(ecdsa_copy)
    out = ok_json("refresh", "--dir", ecdsa_copy)
    assert (out["public_key"], out["address"]) == (doc["public_key"], doc["address"])
    assert out["verification_shares"] != doc["verification_shares"]
    for parties in ("1,2", "2,3"):
        assert ecdsa_signer(sign(ecdsa_copy, parties, DIGEST)) == doc["address"]


def test_refresh_old_share_mixed_with_new_ones_is_refused(frost_copy: Path) -> None:
    old = share_file(frost_copy, 1).read_bytes()
    ok_json("refresh", "--dir", frost_copy)
    share_file(frost_copy, 1).write_bytes(old)
    refused(
        ["sign", "--dir", frost_copy, "--parties", "1,2", "--message", MESSAGE],
        "another key (or of an earlier refresh)",
    )
    before = snapshot(frost_copy)
    refused(["refresh", "--dir", frost_copy], "another key (or of an earlier refresh)")
    assert snapshot(frost_copy) == before


def test_refresh_protocol_failure_changes_nothing(frost_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def abort(*args: object, **kwargs: object) -> None:
        raise ProtocolAbort([2], "party 2 sent an inconsistent refresh share")

    monkeypatch.setattr(mpc_runner, "refresh", abort)
    before = snapshot(frost_copy)
    refused(["refresh", "--dir", frost_copy], "party 2 sent an inconsistent refresh share", code=1)
    assert snapshot(frost_copy) == before


def test_refresh_failing_while_writing_changes_nothing(frost_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk after two of the new files are staged: the staged files are removed, the old ones stay."""
    real = util_files.write_atomic
    written: list[Path] = []

    def flaky(path: Path, data: bytes, **kwargs: Any) -> None:
        written.append(Path(path))
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        real(path, data, **kwargs)

    monkeypatch.setattr(util_files, "write_atomic", flaky)
    before = snapshot(frost_copy)
    refused(["refresh", "--dir", frost_copy], "No space left on device", code=1)
    assert [p.name for p in written[:2]] == [".party-1.share.pending", ".party-2.share.pending"]
    assert snapshot(frost_copy) == before


def test_refresh_with_an_unreadable_share_changes_nothing(frost_copy: Path) -> None:
    path = share_file(frost_copy, 3)
    path.write_bytes(path.read_bytes()[:100])
    before = snapshot(frost_copy)
    refused(["refresh", "--dir", frost_copy], "truncated")
    assert snapshot(frost_copy) == before


def test_refresh_needs_every_share(frost_copy: Path) -> None:
    share_file(frost_copy, 2).unlink()
    before = snapshot(frost_copy)
    refused(["refresh", "--dir", frost_copy], "party 2")
    assert snapshot(frost_copy) == before


@pytest.mark.parametrize(
    "args",
    [
        ["sign", "--parties", "1,2", "--message", MESSAGE],
        ["refresh"],
        ["repair", "--helpers", "1,2", "--lost", "3"],
        ["derive", "--path", "m/0/7"],
        ["reshare", "--parties", "1,2", "--new-threshold", "2", "--new-parties", "3", "--out", "{tmp}/new"],
        ["backup", "--recovery-public-key", "{recovery}", "--out", "{tmp}/backups"],
    ],
)
def test_interrupted_update_makes_the_directory_refused(
    frost_copy: Path, x25519_recovery: Recovery, tmp_path: Path, args: list[str]
) -> None:
    shutil.copy2(share_file(frost_copy, 1), frost_copy / ".party-1.share.pending")
    before = snapshot(frost_copy)
    filled = [a.format(tmp=tmp_path, recovery=x25519_recovery.public) for a in args]
    refused([filled[0], "--dir", frost_copy, *filled[1:]], "interrupted update (.party-1.share.pending)")
    assert snapshot(frost_copy) == before
    assert not (tmp_path / "new").exists() and not (tmp_path / "backups").exists()


# == reshare ========================================================================================


def test_reshare_ecdsa_2_of_3_to_3_of_5(ecdsa_key: Path, tmp_path: Path) -> None:
    before = snapshot(ecdsa_key)
    doc = public_doc(ecdsa_key)
    out = tmp_path / "new"
    new = ok_json(
        "reshare", "--dir", ecdsa_key, "--parties", "1,3", "--new-threshold", "3", "--new-parties", "5", "--out", out
    )
    assert new == public_doc(out)
    assert snapshot(ecdsa_key) == before, "the old directory is left as it was"
    assert sorted(p.name for p in out.iterdir()) == [*(f"party-{i}.share" for i in range(1, 6)), "public.json"]
    assert all(mode(share_file(out, i)) == 0o600 for i in range(1, 6))
    assert (new["threshold"], new["parties"]) == (3, [1, 2, 3, 4, 5])
    for name in ("public_key", "address", "group_public_key", "chain_code", "xpub"):
        assert new[name] == doc[name]
    assert interpolated_key(new, [1, 3, 5]) == doc["group_public_key"]
    obj = sign(out, "2,4,5", DIGEST)
    assert (obj["threshold"], obj["parties"], obj["signers"]) == (3, 5, [2, 4, 5])
    assert ecdsa_signer(obj) == doc["address"]
    refused(["sign", "--dir", out, "--parties", "1,2", "--message", DIGEST], "exactly 3 parties")


def test_reshare_frost_to_a_larger_committee(frost_key: Path, tmp_path: Path) -> None:
    doc = public_doc(frost_key)
    out = tmp_path / "new"
    new = ok_json(
        "reshare", "--dir", frost_key, "--parties", "2,3", "--new-threshold", "3", "--new-parties", "5", "--out", out
    )
    assert (new["public_key"], new["xpub"], new["threshold"]) == (doc["public_key"], doc["xpub"], 3)
    obj = sign(out, "1,3,5")
    assert obj["public_key"] == doc["public_key"] and frost_verifies(obj)
    refused(["sign", "--dir", out, "--parties", "1,2", "--message", MESSAGE], "needs 3 signers, got 2")


@pytest.mark.parametrize(
    ("parties", "t2", "n2", "needle"),
    [
        ("1", "3", "5", "at least 2 current parties"),
        ("1,4", "3", "5", "[4] are not parties"),
        ("1,2", "6", "5", "cannot exceed"),
        ("1,2", "0", "5", "at least 1"),
    ],
)
def test_reshare_bad_input(frost_key: Path, tmp_path: Path, parties: str, t2: str, n2: str, needle: str) -> None:
    out = tmp_path / "new"
    args: list[str | Path] = ["reshare", "--dir", frost_key, "--parties", parties]
    refused([*args, "--new-threshold", t2, "--new-parties", n2, "--out", out], needle)
    assert not out.exists()


def test_reshare_into_a_directory_holding_a_key(frost_key: Path, other_key: Path, tmp_path: Path) -> None:
    target = copy_key(other_key, tmp_path / "target")
    before = snapshot(target)
    args: list[str | Path] = ["reshare", "--dir", frost_key, "--parties", "1,2"]
    refused([*args, "--new-threshold", "2", "--new-parties", "3", "--out", target], "already holds a key")
    assert snapshot(target) == before
    refused([*args, "--new-threshold", "2", "--new-parties", "3", "--out", frost_key], "already holds a key")


def test_reshare_refuses_a_share_with_another_chain_code(tmp_path: Path) -> None:
    """Two imports of one key as 1-of-2 share a fingerprint (a constant polynomial) but not a chain code."""
    key_file = write_key_file(tmp_path, VECTOR_KEY)
    for name, code in (("a", "aa" * 32), ("b", "bb" * 32)):
        args: Args = ["import", "-s", "frost-secp256k1", "--private-key-file", key_file, "-t", "1", "-n", "2"]
        ok_json(*args, "--out", tmp_path / name, "--chain-code", code)
    assert public_doc(tmp_path / "a")["key_fingerprint"] == public_doc(tmp_path / "b")["key_fingerprint"]
    shutil.copy2(share_file(tmp_path / "a", 1), share_file(tmp_path / "b", 1))
    refused(["sign", "--dir", tmp_path / "b", "--parties", "1", "--message", "00"], "another chain code")
    out = tmp_path / "c"
    args = ["reshare", "--dir", tmp_path / "b", "--parties", "1", "--new-threshold", "1", "--new-parties", "2"]
    refused([*args, "--out", out], "another chain code")
    assert not out.exists()


# == derive =========================================================================================


@pytest.mark.parametrize("scheme", SECP_SCHEMES)
def test_derive_matches_bip_utils(made: Callable[[str], Path], scheme: str) -> None:
    directory = made(scheme)
    doc = public_doc(directory)
    for path in ("m/0/7", "m/2147483647/0/1"):
        child = ok_json("derive", "--dir", directory, "--path", path, env=NO_PASSPHRASE)
        expected = Bip32Secp256k1.FromExtendedKey(doc["xpub"]).DerivePath(path)
        key = expected.PublicKey().RawCompressed().ToHex()
        assert list(child) == ["scheme", "path", "public_key", *NAMING_FIELDS[scheme], "chain_code", "xpub"]
        assert (child["scheme"], child["path"]) == (scheme, path)
        assert child["chain_code"] == expected.ChainCode().ToHex()
        assert child["xpub"] == expected.PublicKey().ToExtended()
        if scheme == "frost-taproot":
            assert child["internal_key"] == key[2:]
            assert child["public_key"] == taproot_output_key(key[2:])
        else:
            assert child["public_key"] == key
        if scheme == ECDSA:
            assert child["address"] == eth_address(key)


def test_derive_ed25519_has_no_xpub(made: Callable[[str], Path]) -> None:
    directory = made("frost-ed25519")
    child = ok_json("derive", "--dir", directory, "--path", "m/0/7", env=NO_PASSPHRASE)
    assert list(child) == ["scheme", "path", "public_key", "chain_code"]
    assert child["public_key"] != public_doc(directory)["public_key"]
    assert len(bytes.fromhex(child["public_key"])) == 32 and len(bytes.fromhex(child["chain_code"])) == 32


def test_derive_root_is_the_key_itself(ecdsa_key: Path) -> None:
    doc = public_doc(ecdsa_key)
    child = ok_json("derive", "--dir", ecdsa_key, "--path", "m", env=NO_PASSPHRASE)
    assert (child["public_key"], child["address"], child["xpub"]) == (doc["public_key"], doc["address"], doc["xpub"])


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("m/0'/7", "hardened"),
        ("m/0/7h", "hardened"),
        ("m/2147483648", "index 2147483648 is hardened"),
        ("0/7", "starts with 'm'"),
        ("m/x", "not a decimal index"),
        ("m/-1", "not a decimal index"),
        ("m/\u0663", "not a decimal index"),
    ],
)
def test_derive_bad_paths(frost_key: Path, path: str, needle: str) -> None:
    refused(["derive", "--dir", frost_key, "--path", path], needle, env=NO_PASSPHRASE)


# == repair =========================================================================================


def test_repair_frost_restores_the_same_share(frost_copy: Path) -> None:
    doc = public_doc(frost_copy)
    lost = share_file(frost_copy, 3)
    original = keyfile.load_share(lost, PASSPHRASE)
    untouched = {n: v for n, v in snapshot(frost_copy).items() if n != "party-3.share"}
    lost.unlink()
    refused(["sign", "--dir", frost_copy, "--parties", "1,3", "--message", MESSAGE], "party 3")

    assert ok_json("repair", "--dir", frost_copy, "--helpers", "1,2", "--lost", "3") == doc
    assert mode(lost) == 0o600
    repaired = keyfile.load_share(lost, PASSPHRASE)
    assert repaired.identifier == 3
    assert repaired.secret_share == original.secret_share
    assert repaired.public == original.public
    assert repaired.extensions == original.extensions, "the chain code comes back too"
    after = snapshot(frost_copy)
    assert {n: v for n, v in after.items() if n != "party-3.share"} == untouched
    for parties in ("1,3", "2,3"):
        assert frost_verifies(sign(frost_copy, parties))


def test_repair_a_damaged_share_keeps_it_aside(frost_copy: Path) -> None:
    lost = share_file(frost_copy, 2)
    original = keyfile.load_share(lost, PASSPHRASE)
    damaged = lost.read_bytes()[:-1]
    lost.write_bytes(damaged)
    ok_json("repair", "--dir", frost_copy, "--helpers", "1,3", "--lost", "2")
    assert keyfile.load_share(lost, PASSPHRASE).secret_share == original.secret_share
    assert (frost_copy / "party-2.share.unreadable").read_bytes() == damaged
    assert frost_verifies(sign(frost_copy, "2,3"))


def test_repair_ecdsa_rewrites_every_share(ecdsa_copy: Path) -> None:
    doc = public_doc(ecdsa_copy)
    original = keyfile.load_share(share_file(ecdsa_copy, 2), PASSPHRASE)
    before = snapshot(ecdsa_copy)
    share_file(ecdsa_copy, 2).unlink()
    assert ok_json("repair", "--dir", ecdsa_copy, "--helpers", "1,3", "--lost", "2") == doc
    after = snapshot(ecdsa_copy)
    assert sorted(after) == sorted(before), "nothing staged is left behind"
    for i in (1, 2, 3):
        assert after[f"party-{i}.share"][0] != before[f"party-{i}.share"][0], "a new pairwise setup for everyone"
        assert after[f"party-{i}.share"][1] == 0o600
    assert after["public.json"] == before["public.json"]
    assert keyfile.load_share(share_file(ecdsa_copy, 2), PASSPHRASE).secret_share == original.secret_share
    for parties in ("1,2", "2,3"):
        assert ecdsa_signer(sign(ecdsa_copy, parties, DIGEST)) == doc["address"]


def test_repair_an_intact_share_is_refused(frost_copy: Path) -> None:
    before = snapshot(frost_copy)
    refused(["repair", "--dir", frost_copy, "--helpers", "1,2", "--lost", "3"], "has not lost it")
    assert snapshot(frost_copy) == before


@pytest.mark.parametrize(
    ("helpers", "lost", "needle"),
    [
        ("1", "3", "exactly 2 helpers"),
        ("1,2,4", "3", "[4] are not parties"),
        ("1,3", "3", "cannot also be a helper"),
        ("1,2", "4", "[4] are not parties"),
        ("1,1", "3", "distinct"),
    ],
)
def test_repair_bad_input(frost_copy: Path, helpers: str, lost: str, needle: str) -> None:
    share_file(frost_copy, 3).unlink()
    before = snapshot(frost_copy)
    refused(["repair", "--dir", frost_copy, "--helpers", helpers, "--lost", lost], needle)
    assert snapshot(frost_copy) == before


def test_repair_with_a_wrong_passphrase_writes_nothing(frost_copy: Path) -> None:
    share_file(frost_copy, 3).unlink()
    before = snapshot(frost_copy)
    refused(
        ["repair", "--dir", frost_copy, "--helpers", "1,2", "--lost", "3"],
        "wrong passphrase",
        env={PASSPHRASE_ENV: "not the passphrase"},
    )
    assert snapshot(frost_copy) == before


# == import =========================================================================================


def write_key_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "private.hex"
    path.write_text(text)
    return path


def test_import_ecdsa_known_key(tmp_path: Path) -> None:
    key_file = write_key_file(tmp_path, "0x" + VECTOR_KEY + "\n")
    chain_code = bytes(range(32)).hex()
    out = tmp_path / "imported"
    args: list[str | Path] = ["import", "--scheme", ECDSA, "--private-key-file", key_file, "-t", "2", "-n", "3"]
    doc = ok_json(*args, "--out", out, "--chain-code", chain_code)
    assert doc == public_doc(out)
    assert doc["address"] == VECTOR_ADDRESS
    assert doc["public_key"] == keys.PrivateKey(bytes.fromhex(VECTOR_KEY)).public_key.to_compressed_bytes().hex()
    assert doc["chain_code"] == chain_code
    wallet = Bip32Secp256k1.FromPrivateKey(bytes.fromhex(VECTOR_KEY), Bip32KeyData(chain_code=bytes(range(32))))
    assert doc["xpub"] == wallet.PublicKey().ToExtended()
    assert all(mode(share_file(out, i)) == 0o600 for i in (1, 2, 3))
    assert ecdsa_signer(sign(out, "1,3", DIGEST)) == VECTOR_ADDRESS
    # A child key signs as the same wallet's child does.
    child = sign(out, "2,3", DIGEST, "--path", "m/0/7")
    assert ecdsa_signer(child) == eth_address(wallet.DerivePath("m/0/7").PublicKey().RawCompressed().ToHex())


def test_import_ed25519_seed(tmp_path: Path) -> None:
    key_file = write_key_file(tmp_path, RFC8032_SEED)
    out = tmp_path / "imported"
    doc = ok_json(
        "import", "--scheme", "frost-ed25519", "--private-key-file", key_file, "-t", "2", "-n", "3", "--out", out
    )
    assert doc["public_key"] == RFC8032_PUBLIC
    assert doc["public_key"] == bytes(nacl.signing.SigningKey(bytes.fromhex(RFC8032_SEED)).verify_key).hex()
    assert doc["xpub"] is None and len(bytes.fromhex(doc["chain_code"])) == 32
    obj = sign(out, "1,2")
    assert obj["public_key"] == RFC8032_PUBLIC and frost_verifies(obj)


def test_import_random_chain_code_when_none_given(tmp_path: Path) -> None:
    key_file = write_key_file(tmp_path, VECTOR_KEY)
    codes = set()
    for name in ("a", "b"):
        args: Args = ["import", "-s", "frost-secp256k1", "--private-key-file", key_file, "-t", "1", "-n", "2"]
        doc = ok_json(*args, "--out", tmp_path / name)
        codes.add(doc["chain_code"])
        assert doc["public_key"] == keys.PrivateKey(bytes.fromhex(VECTOR_KEY)).public_key.to_compressed_bytes().hex()
    assert len(codes) == 2


@pytest.mark.parametrize(
    ("scheme", "text", "needle"),
    [
        (ECDSA, "00" * 31, "32 bytes, got 31"),
        (ECDSA, "00" * 33, "32 bytes, got 33"),
        (ECDSA, "", "32 bytes, got 0"),
        (ECDSA, "zz" * 32, "in hex"),
        (ECDSA, "0x" + "1" * 63, "in hex"),
        (ECDSA, "00" * 32, "not a valid secp256k1 private key"),
        (ECDSA, f"{N:064x}", "not a valid secp256k1 private key"),
        ("frost-taproot", "ff" * 32, "not a valid secp256k1 private key"),
        ("frost-ed25519", "00" * 31, "32 bytes, got 31"),
        ("frost-ed25519", RFC8032_SEED + "00", "32 bytes, got 33"),
    ],
)
def test_import_bad_key_file(tmp_path: Path, scheme: str, text: str, needle: str) -> None:
    key_file = write_key_file(tmp_path, text)
    out = tmp_path / "imported"
    refused(["import", "-s", scheme, "--private-key-file", key_file, "-t", "2", "-n", "3", "--out", out], needle)
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--chain-code", "abcd"], "--chain-code must be 32 bytes"),
        (["--chain-code", "zz" * 32], "--chain-code must be hex"),
        (["-t", "3", "-n", "2"], "cannot exceed"),
        (["-s", "frost-rsa"], "unknown scheme"),
    ],
)
def test_import_bad_options(tmp_path: Path, extra: list[str], needle: str) -> None:
    key_file = write_key_file(tmp_path, VECTOR_KEY)
    out = tmp_path / "imported"
    refused(["import", "-s", ECDSA, "--private-key-file", key_file, "-t", "2", "-n", "3", "--out", out, *extra], needle)
    assert not out.exists()


def test_import_missing_key_file_and_existing_key(tmp_path: Path, frost_copy: Path) -> None:
    args: list[str | Path] = ["import", "-s", ECDSA, "-t", "2", "-n", "3"]
    refused([*args, "--private-key-file", tmp_path / "absent", "--out", tmp_path / "x"], "cannot read")
    before = snapshot(frost_copy)
    key_file = write_key_file(tmp_path, VECTOR_KEY)
    refused([*args, "--private-key-file", key_file, "--out", frost_copy], "already holds a key")
    assert snapshot(frost_copy) == before


# == backup, verify-backup, recover ================================================================


def report_of(result: Result) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(result.stdout)
    return obj


def recover(
    backups: Path, recovery: Recovery, *extra: str | Path, env: Mapping[str, str | None] | None = None
) -> tuple[dict[str, Any], str, str]:
    """``key recover --yes --out FILE --json``: the result, stderr (which carries the warning) and the key file's hex.

    The key is in the file only (owner-only), never in what the command prints.
    """
    out = backups.parent / f"recovered-{secrets.token_hex(4)}.hex"
    args: Args = ["recover", "--yes", "--backups", backups, "--recovery-private-key", recovery.private, "--out", out]
    result = ok(*args, "--json", *extra, env=env)
    obj: dict[str, Any] = one_document(result)
    assert obj.pop("private_key_file") == str(out)
    assert mode(out) == 0o600
    key = out.read_text()
    assert re.fullmatch("[0-9a-f]{64}\n", key), key
    assert key.strip() not in result.output, "the private key is never printed"
    return obj, result.stderr, key.strip()


def test_backup_verify_and_recover(ecdsa_key: Path, recovery: Recovery, tmp_path: Path) -> None:
    doc = public_doc(ecdsa_key)
    before = snapshot(ecdsa_key)
    out = tmp_path / "backups"
    report = ok_json("backup", "--dir", ecdsa_key, "--recovery-public-key", recovery.public, "--out", out)
    assert report == {
        "scheme": ECDSA,
        "key_fingerprint": doc["key_fingerprint"],
        "threshold": 2,
        "parties": [1, 2, 3],
        "present": [1, 2, 3],
        "missing": [],
        "complete": True,
        "sufficient": True,
        "recovery_type": recovery.kind,
        "recovery_fingerprint": recovery.fingerprint,
    }
    assert snapshot(ecdsa_key) == before
    assert sorted(p.name for p in out.iterdir()) == ["party-1.backup", "party-2.backup", "party-3.backup"]
    for i in (1, 2, 3):
        secret = keyfile.load_share(share_file(ecdsa_key, i), PASSPHRASE).secret_share.to_bytes(32, "big")
        assert secret.hex() not in (out / f"party-{i}.backup").read_bytes().hex()

    verified = ok_json("verify-backup", "--dir", out, "--public", ecdsa_key / "public.json", env=NO_PASSPHRASE)
    assert verified == report

    obj, stderr, key = recover(out, recovery, env=NO_PASSPHRASE)
    assert stderr.startswith("WARNING: disaster recovery")
    assert list(obj) == ["scheme", "public_key", "address", "chain_code", "parties_used"]
    private = keys.PrivateKey(bytes.fromhex(key), backend=native)
    assert private.public_key.to_compressed_bytes().hex() == doc["public_key"] == obj["public_key"]
    assert private.public_key.to_checksum_address() == doc["address"] == obj["address"]
    assert (obj["scheme"], obj["chain_code"], obj["parties_used"]) == (ECDSA, doc["chain_code"], [1, 2, 3])
    wallet = Bip32Secp256k1.FromPrivateKey(
        private.to_bytes(), Bip32KeyData(chain_code=bytes.fromhex(obj["chain_code"]))
    )
    assert wallet.PublicKey().ToExtended() == doc["xpub"]
    checked, _, same = recover(out, recovery, "--public", ecdsa_key / "public.json", env=NO_PASSPHRASE)
    assert (checked, same) == (obj, key)


def test_recover_readable_output_and_warning(frost_backups: Path, x25519_recovery: Recovery, tmp_path: Path) -> None:
    out = tmp_path / "key.hex"
    args: Args = ["recover", "--yes", "--backups", frost_backups, "--recovery-private-key", x25519_recovery.private]
    result = ok(*args, "--out", out)
    assert "WARNING" in result.stderr and "WHOLE private key" in result.stderr
    assert "WARNING" not in result.stdout
    assert result.stdout.splitlines()[0].startswith("scheme: frost-secp256k1")
    assert f"private_key_file: {out}" in result.stdout.splitlines()
    assert out.read_text().strip() not in result.output and "private_key:" not in result.output


def test_recover_never_prints_the_key_and_needs_a_file(frost_backups: Path, x25519_recovery: Recovery) -> None:
    args: Args = ["recover", "--yes", "--backups", frost_backups, "--recovery-private-key", x25519_recovery.private]
    refused(args, "the key is never printed")
    problem(invoke("key", *args, "--json"), 2, "the key is never printed")


def test_recover_asks_for_confirmation(frost_backups: Path, x25519_recovery: Recovery, tmp_path: Path) -> None:
    out = tmp_path / "key.hex"
    args: Args = ["recover", "--backups", frost_backups, "--recovery-private-key", x25519_recovery.private]
    # Without a terminal (as here: CliRunner's stdin is not a tty) and without --yes: refused, nothing written.
    refused([*args, "--out", out], "confirm on a terminal, or give --yes")
    assert not out.exists()


def test_too_few_backups(frost_key: Path, frost_backups: Path, x25519_recovery: Recovery) -> None:
    doc = public_doc(frost_key)
    public_json = frost_key / "public.json"
    (frost_backups / "party-3.backup").unlink()
    report = ok_json("verify-backup", "--dir", frost_backups, "--public", public_json)
    assert (report["present"], report["missing"], report["complete"], report["sufficient"]) == (
        [1, 2],
        [3],
        False,
        True,
    )
    obj, _, key = recover(frost_backups, x25519_recovery)
    assert obj["parties_used"] == [1, 2] and obj["public_key"] == doc["public_key"]
    assert PublicKey.from_secret(bytes.fromhex(key)).format().hex() == doc["public_key"]

    (frost_backups / "party-1.backup").unlink()
    args: list[str | Path] = ["verify-backup", "--dir", frost_backups, "--public", public_json, "--json"]
    result = refused(args, "only 1 of the 2 backups needed", code=1, stdout_empty=False)
    report = report_of(result)
    assert (report["present"], report["missing"], report["sufficient"]) == ([2], [1, 3], False)
    recover_args: list[str | Path] = [
        "recover",
        "--yes",
        "--out",
        frost_backups.parent / "k.hex",
        "--backups",
        frost_backups,
    ]
    json_refusal = invoke("key", *recover_args, "--recovery-private-key", x25519_recovery.private, "--json")
    problem(json_refusal, 2, "need 2 valid shares, have 1")
    (frost_backups / "party-2.backup").unlink()
    refused([*recover_args, "--recovery-private-key", x25519_recovery.private], "no backups")
    args = ["verify-backup", "--dir", frost_backups, "--public", public_json]
    result = refused(args, "only 0 of the 2", code=1, stdout_empty=False)
    assert "present: []" in result.stdout


def test_recover_keystore(ecdsa_key: Path, x25519_recovery: Recovery, tmp_path: Path) -> None:
    doc = public_doc(ecdsa_key)
    backups = tmp_path / "backups"
    ok_json("backup", "--dir", ecdsa_key, "--recovery-public-key", x25519_recovery.public, "--out", backups)
    keystore = tmp_path / "keystore.json"
    args: Args = ["recover", "--yes", "--backups", backups, "--recovery-private-key", x25519_recovery.private]
    target = tmp_path / "written.json"
    result = ok(*args, "--keystore", target, "--json")  # a keystore costs seconds of scrypt: one is written
    content = target.read_text()
    private = Account.decrypt(content, PASSPHRASE).hex()
    # Only the file holds the key: neither the JSON on stdout nor stderr carries it.
    assert private not in result.output.lower()
    assert "private_key" not in result.stdout
    obj = json.loads(result.stdout)
    assert obj["keystore"] == str(target) and obj["address"] == doc["address"]
    assert mode(target) == 0o600
    assert json.loads(content)["address"].lower() == doc["address"][2:].lower()
    assert keys.PrivateKey(bytes.fromhex(private), backend=native).public_key.to_checksum_address() == doc["address"]
    # An existing keystore is never replaced.
    refused([*args, "--keystore", target], "exists")
    assert target.read_text() == content
    # The keystore needs a passphrase of its own, and a strong one: the floor applies, without the override too.
    refused([*args, "--keystore", keystore], "no passphrase", env=NO_PASSPHRASE)
    weak = {PASSPHRASE_ENV: "hunter2", "HARBOUR_ALLOW_WEAK_PASSPHRASE": None}
    refused([*args, "--keystore", keystore], f"{PASSPHRASE_ENV} is too weak", env=weak)
    assert not keystore.exists()


def test_recover_ed25519_and_no_keystore(
    made: Callable[[str], Path], x25519_recovery: Recovery, tmp_path: Path
) -> None:
    directory = made("frost-ed25519")
    doc = public_doc(directory)
    backups = tmp_path / "backups"
    ok_json("backup", "--dir", directory, "--recovery-public-key", x25519_recovery.public, "--out", backups)
    obj, _, key = recover(backups, x25519_recovery)
    assert (obj["scheme"], obj["public_key"], obj["address"]) == ("frost-ed25519", doc["public_key"], None)
    scalar = int(key, 16)
    assert 0 < scalar < L
    assert sodium.crypto_scalarmult_ed25519_base_noclamp(scalar.to_bytes(32, "little")).hex() == doc["public_key"]
    keystore = tmp_path / "keystore.json"
    refused(
        [
            "recover",
            "--yes",
            "--backups",
            backups,
            "--recovery-private-key",
            x25519_recovery.private,
            "--keystore",
            keystore,
        ],
        "secp256k1 keys only",
    )
    assert not keystore.exists()


def test_recover_with_the_wrong_recovery_key(
    frost_backups: Path, rsa_recovery: Recovery, x25519_recovery: Recovery, tmp_path: Path
) -> None:
    other = make_recovery_key(tmp_path / "other", "x25519")
    for wrong in (other, rsa_recovery):
        refused(
            [
                "recover",
                "--yes",
                "--out",
                tmp_path / "k.hex",
                "--backups",
                frost_backups,
                "--recovery-private-key",
                wrong.private,
            ],
            "wrong recovery private key",
        )
    refused(
        [
            "recover",
            "--yes",
            "--out",
            tmp_path / "k.hex",
            "--backups",
            frost_backups,
            "--recovery-private-key",
            x25519_recovery.public,
        ],
        "cannot load the recovery private key",
    )


def test_backup_of_another_key_mixed_in(
    frost_key: Path, other_key: Path, frost_backups: Path, x25519_recovery: Recovery, tmp_path: Path
) -> None:
    other_backups = tmp_path / "other-backups"
    ok_json("backup", "--dir", other_key, "--recovery-public-key", x25519_recovery.public, "--out", other_backups)
    shutil.copy2(other_backups / "party-3.backup", frost_backups / "party-3.backup")
    refused(["verify-backup", "--dir", frost_backups, "--public", frost_key / "public.json"], "backup of another key")
    refused(
        [
            "recover",
            "--yes",
            "--out",
            tmp_path / "k.hex",
            "--backups",
            frost_backups,
            "--recovery-private-key",
            x25519_recovery.private,
        ],
        "backup of another key",
    )


def test_backups_of_an_earlier_sharing_are_refused(frost_copy: Path, x25519_recovery: Recovery, tmp_path: Path) -> None:
    old = tmp_path / "old-backups"
    ok_json("backup", "--dir", frost_copy, "--recovery-public-key", x25519_recovery.public, "--out", old)
    ok_json("refresh", "--dir", frost_copy)
    # The old backups still recover the same key, but are not backups of this sharing.
    refused(["verify-backup", "--dir", old, "--public", frost_copy / "public.json"], "another sharing of the same key")
    obj, _, _ = recover(old, x25519_recovery)
    assert obj["public_key"] == public_doc(frost_copy)["public_key"]
    new = tmp_path / "new-backups"
    ok_json("backup", "--dir", frost_copy, "--recovery-public-key", x25519_recovery.public, "--out", new)
    shutil.copy2(old / "party-2.backup", new / "party-2.backup")
    refused(
        [
            "recover",
            "--yes",
            "--out",
            tmp_path / "k.hex",
            "--backups",
            new,
            "--recovery-private-key",
            x25519_recovery.private,
        ],
        "another sharing of the same key",
    )


def test_backups_to_different_recovery_keys_are_refused(
    frost_key: Path, frost_backups: Path, rsa_recovery: Recovery, tmp_path: Path
) -> None:
    rsa_backups = tmp_path / "rsa-backups"
    ok_json("backup", "--dir", frost_key, "--recovery-public-key", rsa_recovery.public, "--out", rsa_backups)
    shutil.copy2(rsa_backups / "party-1.backup", frost_backups / "party-1.backup")
    refused(
        ["verify-backup", "--dir", frost_backups, "--public", frost_key / "public.json"],
        "different recovery keys",
    )


def test_backup_bad_input(frost_key: Path, frost_backups: Path, x25519_recovery: Recovery, tmp_path: Path) -> None:
    before = snapshot(frost_backups)
    args: list[str | Path] = ["backup", "--dir", frost_key, "--recovery-public-key"]
    refused([*args, x25519_recovery.public, "--out", frost_backups], "already holds")
    assert snapshot(frost_backups) == before
    out = tmp_path / "new"
    refused([*args, x25519_recovery.private, "--out", out], "not a PEM public key")
    refused([*args, tmp_path / "absent.pem", "--out", out], "cannot read")
    small = tmp_path / "small"
    small.mkdir()
    pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    (small / "rsa2048.pub.pem").write_bytes(pem)
    refused([*args, small / "rsa2048.pub.pem", "--out", out], "at least 4096 bits")
    refused([*args, x25519_recovery.public, "--out", out], "wrong passphrase", env={PASSPHRASE_ENV: "nope"})
    assert not out.exists()


def test_recovery_key_command_with_an_encrypted_private_key(frost_key: Path, tmp_path: Path) -> None:
    weak = {RECOVERY_PASSPHRASE_ENV: "recovery passphrase", "HARBOUR_ALLOW_WEAK_PASSPHRASE": None}
    refused(["recovery-key", "--type", "x25519", "--out", tmp_path / "rk"], "is too weak", env=weak)
    assert not (tmp_path / "rk").exists()
    env = {RECOVERY_PASSPHRASE_ENV: "quartz meadow lantern ferry"}
    made_key = ok_json("recovery-key", "--type", "x25519", "--out", tmp_path / "rk", env=env)
    private, public = Path(made_key["private_key"]), Path(made_key["public_key"])
    assert b"ENCRYPTED" in private.read_bytes() and mode(private) == 0o600
    assert made_key["fingerprint"] == backup.recovery_key_fingerprint(public.read_bytes())
    backups = tmp_path / "backups"
    ok_json("backup", "--dir", frost_key, "--recovery-public-key", public, "--out", backups)
    args: Args = ["recover", "--yes", "--backups", backups, "--recovery-private-key", private]
    result = ok(*args, "--out", tmp_path / "key.hex", "--json", env=env)
    assert json.loads(result.stdout)["public_key"] == public_doc(frost_key)["public_key"]
    bad: Args = [*args, "--out", tmp_path / "other.hex"]
    refused(bad, "wrong passphrase", env={RECOVERY_PASSPHRASE_ENV: "not it"})
    refused(bad, "no passphrase", env={RECOVERY_PASSPHRASE_ENV: None})
    refused(["recovery-key", "--type", "x25519", "--out", tmp_path / "rk"], "already holds a recovery key", env=env)


def harbour_strict(*args: str | Path, env: Mapping[str, str | None]) -> Result:
    """``harbour key <args>`` without the test run's override of the passphrase floor."""
    return cli.invoke(app, ["key", *map(str, args)], env={"HARBOUR_ALLOW_WEAK_PASSPHRASE": None, **env})


def test_existing_files_open_under_any_passphrase_but_new_ones_need_a_strong_one(tmp_path: Path) -> None:
    """A key directory made under a weak passphrase (before the floor, or with the override) keeps working."""
    old = tmp_path / "old"
    weak = {"HARBOUR_PASSPHRASE": "hunter2"}
    made = harbour_strict("generate", "-s", "frost-secp256k1", "-t", "2", "-n", "3", "--out", old,
                   env={**weak, "HARBOUR_ALLOW_WEAK_PASSPHRASE": "1"})  # fmt: skip
    assert made.exit_code == 0, made.output
    signed = harbour_strict("sign", "--dir", old, "--parties", "1,2", "-m", "00", env=weak)
    assert signed.exit_code == 0 and signed.stderr == "", signed.output
    # A reshare writes a new directory: its passphrase is a new file's, and the floor applies.
    new = tmp_path / "new"
    reshared = harbour_strict("reshare", "--dir", old, "--parties", "1,2", "--new-threshold", "2",
                       "--new-parties", "3", "--out", new, env=weak)  # fmt: skip
    assert reshared.exit_code == 2 and "HARBOUR_PASSPHRASE is too weak" in reshared.stderr
    assert not new.exists()


def test_refresh_of_a_one_of_n_key_is_bad_input(tmp_path: Path) -> None:
    target = tmp_path / "k"
    generate(target, "frost-secp256k1", 1, 2)
    before = snapshot(target)
    refused(["refresh", "--dir", target], "1-of-n")
    assert snapshot(target) == before


def test_generate_into_a_regular_file_is_refused_before_keygen(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"not a directory")
    refused(["generate", "-s", "frost-secp256k1", "-t", "2", "-n", "3", "--out", target], "not a directory")
    assert target.read_bytes() == b"not a directory"


def test_verify_backup_of_a_missing_directory_says_so(frost_key: Path, tmp_path: Path) -> None:
    refused(["verify-backup", "--dir", tmp_path / "nowhere", "--public", frost_key / "public.json"], "not a directory")


def test_repairing_twice_keeps_every_damaged_copy(frost_copy: Path) -> None:
    path = share_file(frost_copy, 3)
    for damage in (b"first damaged copy", b"second damaged copy"):
        path.write_bytes(damage)
        ok("repair", "--dir", frost_copy, "--helpers", "1,2", "--lost", "3")
    kept = sorted(p.read_bytes() for p in frost_copy.glob("party-3.share.unreadable*"))
    assert kept == [b"first damaged copy", b"second damaged copy"]


def _cheating_bob(monkeypatch: pytest.MonkeyPatch) -> None:
    """Party 2's OT-extension message to party 1 fails party 1's KOS check in every ECDSA session."""
    honest = mpc_runner.run

    def run(parties: Any, intercept: Any = None, stats: Any = None) -> Any:
        def tamper(env: Envelope, dest: int) -> Envelope | None:
            delivered = intercept(env, dest) if intercept else env
            ours = delivered is not None and delivered.protocol == f"sign/{ECDSA}"
            if not ours or (delivered.round, delivered.sender, dest) != (1, 2, 1):
                return delivered
            body = cbor2.loads(delivered.payload)
            body.pop("v")
            body["vole"] = body["vole"][:-1] + bytes([body["vole"][-1] ^ 1])  # t̃
            return dataclasses.replace(delivered, payload=encode_payload(body))

        return honest(parties, tamper, stats)

    monkeypatch.setattr(mpc_runner, "run", run)


def marks(directory: Path) -> dict[int, set[int]]:
    """The compromised marks inside each share file of an ECDSA key directory."""
    paths = sorted(directory.glob("party-*.share"))
    shares = [keyfile.load_share(path, PASSPHRASE) for path in paths]
    return {share.identifier: set(compromised_peers(share)) for share in shares}


def without_side_files(directory: Path) -> None:
    """Delete everything but the share files and public.json."""
    for path in directory.iterdir():
        if path.name != "public.json" and not (path.name.startswith("party-") and path.suffix == ".share"):
            path.unlink()


def test_a_kos_failure_is_recorded_inside_the_share_files(ecdsa_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a failed KOS check the pair's setup may be leaking Δ: both of its share
    files are rewritten with the mark, and no other file is written."""
    before = set(p.name for p in ecdsa_copy.iterdir())
    _cheating_bob(monkeypatch)
    refused(["sign", "--dir", ecdsa_copy, "--parties", "1,2", "--message", DIGEST], "KOS check", code=1)
    assert set(p.name for p in ecdsa_copy.iterdir()) == before
    assert marks(ecdsa_copy) == {1: {2}, 2: {1}, 3: set()}


def test_deleting_side_files_does_not_lift_a_recorded_kos_failure(
    ecdsa_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as cheat:
        _cheating_bob(cheat)
        refused(["sign", "--dir", ecdsa_copy, "--parties", "1,2", "--message", DIGEST], "KOS check", code=1)
    without_side_files(ecdsa_copy)
    refused(["sign", "--dir", ecdsa_copy, "--parties", "1,2", "--message", DIGEST], "harbour key refresh")
    # The other pairs' setups are untouched and still sign.
    for parties in ("1,3", "2,3"):
        assert ecdsa_signer(sign(ecdsa_copy, parties, DIGEST)) == public_doc(ecdsa_copy)["address"]


def test_a_refresh_lifts_a_recorded_kos_failure(ecdsa_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as cheat:
        _cheating_bob(cheat)
        refused(["sign", "--dir", ecdsa_copy, "--parties", "1,2", "--message", DIGEST], "KOS check", code=1)
    ok("refresh", "--dir", ecdsa_copy)
    assert marks(ecdsa_copy) == {1: set(), 2: set(), 3: set()}
    assert ecdsa_signer(sign(ecdsa_copy, "1,2", DIGEST)) == public_doc(ecdsa_copy)["address"]


def test_an_older_versions_kos_record_is_moved_into_the_shares(ecdsa_copy: Path) -> None:
    """setup-compromised.json, written by older versions, still blocks the pair; the
    next sign moves it into the share files, so deleting it afterwards lifts nothing."""
    flagged = ecdsa_copy / "setup-compromised.json"
    flagged.write_text(json.dumps({"peers": [2], "signers": [1, 2], "reason": "KOS check failed"}))
    refused(["sign", "--dir", ecdsa_copy, "--parties", "1,2", "--message", DIGEST], "harbour key refresh")
    assert not flagged.exists()
    assert marks(ecdsa_copy) == {1: {2}, 2: {1}, 3: set()}
    without_side_files(ecdsa_copy)
    refused(["sign", "--dir", ecdsa_copy, "--parties", "2,1", "--message", DIGEST], "harbour key refresh")
    ok("refresh", "--dir", ecdsa_copy)
    assert ecdsa_signer(sign(ecdsa_copy, "1,2", DIGEST)) == public_doc(ecdsa_copy)["address"]


def test_an_older_versions_kos_record_blocks_pairs_not_signing_now(ecdsa_copy: Path) -> None:
    (ecdsa_copy / "setup-compromised.json").write_text(json.dumps({"peers": [3], "signers": [2, 3]}))
    assert ecdsa_signer(sign(ecdsa_copy, "1,2", DIGEST)) == public_doc(ecdsa_copy)["address"]
    assert marks(ecdsa_copy) == {1: set(), 2: {3}, 3: {2}}
    refused(["sign", "--dir", ecdsa_copy, "--parties", "2,3", "--message", DIGEST], "harbour key refresh")


@pytest.mark.parametrize(
    "content",
    [b"not json", b"[]", b'{"peers": [], "signers": [1, 2]}', b'{"peers": [9], "signers": [1]}', b'{"peers": [2]}'],
    ids=["not-json", "list", "no-peers", "unknown-party", "no-signers"],
)
def test_an_unreadable_kos_record_blocks_every_signature(ecdsa_copy: Path, content: bytes) -> None:
    flagged = ecdsa_copy / "setup-compromised.json"
    flagged.write_bytes(content)
    before = snapshot(ecdsa_copy)
    refused(["sign", "--dir", ecdsa_copy, "--parties", "1,3", "--message", DIGEST], "cannot be read")
    assert snapshot(ecdsa_copy) == before
    ok("refresh", "--dir", ecdsa_copy)
    assert not flagged.exists()
