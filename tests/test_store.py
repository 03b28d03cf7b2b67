"""The signer node's secret store: objects come back only from an unmodified store with
the right passphrase or PIN, every kind of damage or misuse is refused with a reason,
nothing reaches the disk in the clear, and the HSM's key never leaves the token."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pkcs11
import pytest
from pkcs11 import Attribute, KeyType, ObjectClass
from pkcs11.types import WrapMixin

from harbour.node import keyfile, store
from harbour.node.hsm import Pkcs11Config, TokenError, find_softhsm_module
from harbour.node.store import OBJECT_MAGIC, SecretStore, StoreError
from softhsm import SoftHsm

FAST_N = keyfile.MIN_N
PASS = "correct horse battery staple"
MARKER = b"HARBOUR-PLAINTEXT-MARKER-7f3a"


def refused(reason: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> StoreError:
    with pytest.raises(StoreError) as info:
        fn(*args, **kwargs)
    assert info.value.reason == reason, str(info.value)
    return info.value


def new_passphrase_store(directory: Path) -> SecretStore:
    return SecretStore.create(directory, passphrase=PASS, kdf_n=FAST_N)


def token_session(hsm: SoftHsm, *, rw: bool = False) -> pkcs11.Session:
    library = pkcs11.lib(os.path.realpath(hsm.module))
    return library.get_token(token_label=hsm.token_label).open(rw=rw, user_pin=hsm.pin)


def store_json(directory: Path) -> dict[str, Any]:
    obj = json.loads((directory / "store.json").read_text())
    assert isinstance(obj, dict)
    return obj


def write_store_json(directory: Path, obj: dict[str, Any], *, fix_checksum: bool) -> None:
    if fix_checksum:
        body = {k: v for k, v in obj.items() if k != "checksum"}
        canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
        obj = {**body, "checksum": hashlib.sha256(canonical).hexdigest()}
    (directory / "store.json").write_text(json.dumps(obj))


class Kind:
    """One way of protecting a store, so each behaviour is tested under both KEKs."""

    def __init__(self, name: str, hsm: SoftHsm | None) -> None:
        self.name = name
        self.hsm = hsm

    def create(self, directory: Path, key_label: str = "harbour-kek") -> SecretStore:
        if self.hsm is None:
            return new_passphrase_store(directory)
        return SecretStore.create(directory, pkcs11=self.hsm.config(key_label), pin=self.hsm.pin)

    def open(self, directory: Path) -> SecretStore:
        if self.hsm is None:
            return SecretStore.open(directory, passphrase=PASS)
        return SecretStore.open(directory, pin=self.hsm.pin)


@pytest.fixture(params=["passphrase", "pkcs11"])
def kind(request: pytest.FixtureRequest) -> Kind:
    hsm = request.getfixturevalue("softhsm") if request.param == "pkcs11" else None
    return Kind(request.param, hsm)


# -- round trips ---------------------------------------------------------------------------------------


def test_put_get_round_trip(kind: Kind, tmp_path: Path) -> None:
    s = kind.create(tmp_path / "store")
    assert s.kind == kind.name
    objects = {
        "identity": b"id-key",
        "keys/treasury-1": os.urandom(5000),
        "sessions/ab12": b"",
        "big": os.urandom(2**20),
    }
    for name, data in objects.items():
        s.put(name, data)
    for name, data in objects.items():
        assert s.get(name) == data
        assert s.exists(name)
    assert s.names() == sorted(objects)
    assert s.names("keys/") == ["keys/treasury-1"]
    assert s.names("nothing") == []
    s.put("identity", b"replaced")
    assert s.get("identity") == b"replaced"
    s.delete("sessions/ab12")
    s.delete("sessions/ab12")  # absent: no error
    s.delete("never-existed/x")
    assert not s.exists("sessions/ab12")
    refused("missing", s.get, "sessions/ab12")
    refused("missing", s.get, "keys")  # a prefix, not an object
    assert s.names() == ["big", "identity", "keys/treasury-1"]


def test_reopen_reads_objects(kind: Kind, tmp_path: Path) -> None:
    directory = tmp_path / "store"
    with kind.create(directory) as s:
        s.put("identity", b"node identity")
        s.put("keys/k1", b"share one")
    s.close()  # idempotent
    refused("policy", s.get, "identity")
    again = kind.open(directory)
    assert again.kind == kind.name
    assert again.get("identity") == b"node identity"
    assert again.get("keys/k1") == b"share one"
    assert again.names() == ["identity", "keys/k1"]
    assert "node identity" not in repr(again)


def test_pkcs11_store_opens_in_a_fresh_process(softhsm: SoftHsm, tmp_path: Path) -> None:
    """What a node subprocess does: only SOFTHSM2_CONF (inherited) and the PIN."""
    directory = tmp_path / "store"
    SecretStore.create(directory, pkcs11=softhsm.config(), pin=softhsm.pin).put("keys/k", b"from the parent")
    code = (
        "import sys; from harbour.node.store import SecretStore; "
        "s = SecretStore.open(sys.argv[1], pin=sys.argv[2]); sys.stdout.write(s.get('keys/k').decode())"
    )
    env = {**os.environ, **softhsm.env}
    result = subprocess.run(
        [sys.executable, "-c", code, str(directory), softhsm.pin], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "from the parent"


# -- wrong secrets and missing pieces ------------------------------------------------------------------


def test_wrong_passphrase(tmp_path: Path) -> None:
    new_passphrase_store(tmp_path).put("identity", b"x")
    error = refused("wrong-secret", SecretStore.open, tmp_path, passphrase=PASS + "!")
    assert "passphrase" in str(error)
    refused("wrong-secret", SecretStore.open, tmp_path, passphrase="")


def test_wrong_pin(softhsm: SoftHsm, tmp_path: Path) -> None:
    SecretStore.create(tmp_path, pkcs11=softhsm.config(), pin=softhsm.pin)
    error = refused("wrong-secret", SecretStore.open, tmp_path, pin="0000")
    assert "PIN" in str(error) and softhsm.token_label in str(error)
    refused("wrong-secret", SecretStore.create, tmp_path / "other", pkcs11=softhsm.config("k2"), pin="0000")
    assert SecretStore.open(tmp_path, pin=softhsm.pin).kind == "pkcs11"  # a wrong PIN locks nothing out


def test_missing_store(tmp_path: Path) -> None:
    refused("missing", SecretStore.open, tmp_path / "nowhere", passphrase=PASS)
    refused("missing", SecretStore.open, tmp_path, passphrase=PASS)


def test_missing_token(softhsm: SoftHsm, tmp_path: Path) -> None:
    refused("token", SecretStore.create, tmp_path / "a", pkcs11=softhsm.config(token_label="absent"), pin=softhsm.pin)
    assert not (tmp_path / "a" / "store.json").exists()
    softhsm.init_token("second")
    SecretStore.create(tmp_path / "b", pkcs11=softhsm.config(token_label="second"), pin=softhsm.pin)
    softhsm.delete_token("second")
    error = refused("token", SecretStore.open, tmp_path / "b", pin=softhsm.pin)
    assert "second" in str(error)


def test_missing_key_on_token(softhsm: SoftHsm, tmp_path: Path) -> None:
    SecretStore.create(tmp_path, pkcs11=softhsm.config(), pin=softhsm.pin)
    with token_session(softhsm, rw=True) as session:
        session.get_key(label="harbour-kek").destroy()
    error = refused("token", SecretStore.open, tmp_path, pin=softhsm.pin)
    assert "harbour-kek" in str(error)


def test_key_of_another_store_under_the_label(softhsm: SoftHsm, tmp_path: Path) -> None:
    SecretStore.create(tmp_path / "a", pkcs11=softhsm.config(), pin=softhsm.pin)
    with token_session(softhsm, rw=True) as session:
        session.get_key(label="harbour-kek").destroy()
    SecretStore.create(tmp_path / "b", pkcs11=softhsm.config(), pin=softhsm.pin)
    error = refused("token", SecretStore.open, tmp_path / "a", pin=softhsm.pin)
    assert "another store" in str(error)


def test_extractable_key_under_the_label_refused(softhsm: SoftHsm, tmp_path: Path) -> None:
    SecretStore.create(tmp_path, pkcs11=softhsm.config(), pin=softhsm.pin)
    store_id = bytes.fromhex(store_json(tmp_path)["store_id"])
    with token_session(softhsm, rw=True) as session:
        session.get_key(label="harbour-kek").destroy()
        template = {Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True}
        session.generate_key(KeyType.AES, 256, id=store_id, label="harbour-kek", store=True, template=template)
    error = refused("policy", SecretStore.open, tmp_path, pin=softhsm.pin)
    assert "extractable" in str(error)


def test_missing_library(softhsm: SoftHsm, tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "libpkcs11.so")
    refused("token", SecretStore.create, tmp_path / "a", pkcs11=Pkcs11Config(missing, softhsm.token_label), pin="1")
    link = tmp_path / "libsofthsm2.so"
    link.symlink_to(softhsm.module)
    config = Pkcs11Config(str(link), softhsm.token_label)
    SecretStore.create(tmp_path / "b", pkcs11=config, pin=softhsm.pin).put("x", b"y")
    assert SecretStore.open(tmp_path / "b", pin=softhsm.pin).get("x") == b"y"  # same library, other spelling
    link.unlink()
    error = refused("token", SecretStore.open, tmp_path / "b", pin=softhsm.pin)
    assert str(link) in str(error)


def test_library_writable_by_others_refused(softhsm: SoftHsm, tmp_path: Path) -> None:
    fake = tmp_path / "libevil.so"
    fake.write_bytes(b"\x7fELF not really")
    fake.chmod(0o666)
    error = refused("policy", SecretStore.create, tmp_path / "s", pkcs11=Pkcs11Config(str(fake), "t"), pin="1")
    assert "writable" in str(error)


# -- store.json damage ---------------------------------------------------------------------------------


def _flip_hex(value: str) -> str:
    return ("1" if value[0] == "0" else "0") + value[1:]


DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "truncated": lambda raw: raw[: len(raw) // 2],
    "empty": lambda raw: b"",
    "not-json": lambda raw: b"\x00\xff" + raw,
    "edited-wrapped-key": lambda raw: json.dumps(
        {**(o := json.loads(raw)), "data_key": {**o["data_key"], "wrapped": _flip_hex(o["data_key"]["wrapped"])}}
    ).encode(),
    "edited-store-id": lambda raw: json.dumps(
        {**(o := json.loads(raw)), "store_id": _flip_hex(o["store_id"])}
    ).encode(),
    "edited-version": lambda raw: json.dumps({**json.loads(raw), "version": 2}).encode(),
    "edited-format": lambda raw: json.dumps({**json.loads(raw), "format": "something-else"}).encode(),
    "extra-field": lambda raw: json.dumps({**json.loads(raw), "note": "hi"}).encode(),
    "duplicate-field": lambda raw: raw.replace(b'"version": 1', b'"version": 1, "version": 1', 1),
    "not-an-object": lambda raw: b"[]",
    "huge": lambda raw: raw + b" " * 70_000,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_store_json_is_corrupt(kind: Kind, tmp_path: Path, damage: str) -> None:
    kind.create(tmp_path).put("identity", b"x")
    path = tmp_path / "store.json"
    raw = path.read_bytes()
    damaged = DAMAGE[damage](raw)
    assert damaged != raw
    path.write_bytes(damaged)
    refused("corrupt", kind.open, tmp_path)


def _edit_nonce(obj: dict[str, Any]) -> None:
    obj["data_key"]["nonce"] = _flip_hex(obj["data_key"]["nonce"])


def _edit_store_id(obj: dict[str, Any]) -> None:
    obj["store_id"] = _flip_hex(obj["store_id"])


def _edit_kdf_cost(obj: dict[str, Any]) -> None:
    if obj["kek"]["kind"] == "passphrase":
        obj["kek"]["scrypt"]["n"] = 2**30
    else:
        obj["kek"]["pkcs11"]["module"] = "relative/lib.so"


def _edit_key_label(obj: dict[str, Any]) -> None:
    if obj["kek"]["kind"] == "passphrase":
        obj["kek"]["scrypt"]["salt"] = _flip_hex(obj["kek"]["scrypt"]["salt"])
    else:
        obj["kek"]["pkcs11"]["key_label"] = "other-label"


# Edits that recompute the checksum, as someone editing on purpose would: the AAD of the
# wrapped data key still refuses them. With a passphrase, AES-GCM cannot tell such an edit
# from a wrong passphrase; with a token the PIN is checked separately.
EDITS: list[tuple[Callable[[dict[str, Any]], None], str, str]] = [
    (_edit_nonce, "wrong-secret", "corrupt"),
    (_edit_store_id, "wrong-secret", "token"),
    (_edit_kdf_cost, "corrupt", "corrupt"),
    (_edit_key_label, "wrong-secret", "token"),
]


@pytest.mark.parametrize(("edit", "passphrase_reason", "pkcs11_reason"), EDITS)
def test_deliberate_store_json_edits_refused(
    kind: Kind, tmp_path: Path, edit: Callable[[dict[str, Any]], None], passphrase_reason: str, pkcs11_reason: str
) -> None:
    kind.create(tmp_path).put("identity", b"x")
    obj = store_json(tmp_path)
    edit(obj)
    write_store_json(tmp_path, obj, fix_checksum=True)
    refused(passphrase_reason if kind.name == "passphrase" else pkcs11_reason, kind.open, tmp_path)


# -- object damage -------------------------------------------------------------------------------------


def test_store_json_records_how_to_open(softhsm: SoftHsm, tmp_path: Path) -> None:
    new_passphrase_store(tmp_path / "p")
    SecretStore.create(tmp_path / "h", pkcs11=softhsm.config("kek-1"), pin=softhsm.pin)
    for directory in (tmp_path / "p", tmp_path / "h"):
        obj = store_json(directory)
        assert obj["format"] == "harbour-secret-store" and obj["version"] == 1
        assert len(bytes.fromhex(obj["store_id"])) == 16
        assert obj["data_key"]["cipher"] == "aes-256-gcm" and len(bytes.fromhex(obj["data_key"]["wrapped"])) == 48
    scrypt = store_json(tmp_path / "p")["kek"]["scrypt"]
    assert (scrypt["n"], scrypt["r"], scrypt["p"]) == (FAST_N, keyfile.DEFAULT_R, keyfile.DEFAULT_P)
    assert store_json(tmp_path / "h")["kek"] == {"kind": "pkcs11", "pkcs11": softhsm.config("kek-1").to_json()}
    assert store_json(tmp_path / "p")["store_id"] != store_json(tmp_path / "h")["store_id"]


def test_object_file_format(tmp_path: Path) -> None:
    s = new_passphrase_store(tmp_path)
    s.put("keys/k", b"twelve bytes")
    raw = (tmp_path / "objects" / "keys" / "k").read_bytes()
    assert raw[:4] == OBJECT_MAGIC and raw[4] == 1
    assert len(raw) == 4 + 1 + 12 + len(b"twelve bytes") + 16


@pytest.mark.parametrize("offset", [0, 4, 5, 16, 17, 20, -16, -1])
def test_flipped_byte_is_corrupt(kind: Kind, tmp_path: Path, offset: int) -> None:
    s = kind.create(tmp_path)
    s.put("keys/k", b"a key share")
    path = tmp_path / "objects" / "keys" / "k"
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x01
    path.write_bytes(bytes(raw))
    refused("corrupt", s.get, "keys/k")


@pytest.mark.parametrize("length", [0, 4, 17, 32, -1])
def test_truncated_object_is_corrupt(tmp_path: Path, length: int) -> None:
    s = new_passphrase_store(tmp_path)
    s.put("identity", b"an identity key")
    path = tmp_path / "objects" / "identity"
    raw = path.read_bytes()
    path.write_bytes(raw[:length])
    refused("corrupt", s.get, "identity")
    path.write_bytes(raw + b"\x00")
    refused("corrupt", s.get, "identity")
    path.write_bytes(raw)
    assert s.get("identity") == b"an identity key"


def test_renamed_or_swapped_object_is_corrupt(kind: Kind, tmp_path: Path) -> None:
    s = kind.create(tmp_path)
    s.put("keys/a", b"share of key a")
    s.put("keys/b", b"share of key b")
    objects = tmp_path / "objects"
    os.replace(objects / "keys" / "a", objects / "keys" / "c")
    refused("corrupt", s.get, "keys/c")
    (objects / "sessions").mkdir()
    (objects / "sessions" / "a").write_bytes((objects / "keys" / "b").read_bytes())
    refused("corrupt", s.get, "sessions/a")
    (objects / "keys" / "a").write_bytes((objects / "keys" / "b").read_bytes())
    refused("corrupt", s.get, "keys/a")
    assert s.get("keys/b") == b"share of key b"


def test_object_copied_from_another_store_is_corrupt(kind: Kind, tmp_path: Path) -> None:
    first = kind.create(tmp_path / "first", key_label="kek-first")
    second = kind.create(tmp_path / "second", key_label="kek-second")
    first.put("identity", b"first identity")
    second.put("identity", b"second identity")
    (tmp_path / "second" / "objects" / "identity").write_bytes(
        (tmp_path / "first" / "objects" / "identity").read_bytes()
    )
    refused("corrupt", second.get, "identity")


def test_object_bound_to_its_store_even_under_the_same_data_key(tmp_path: Path) -> None:
    """Two stores never share a data key in normal use; the store id in the AAD is the
    second line, so this builds the case directly through the internal constructor."""
    first = new_passphrase_store(tmp_path / "first")
    first.put("identity", b"first identity")
    data_key = b"\x11" * 32
    header = store._Header(b"\x01" * 16, Pkcs11Config("/m.so", "t"), b"\x00" * 12, b"")
    (tmp_path / "a").mkdir()
    a = SecretStore(tmp_path / "a", header, data_key)
    b = SecretStore(tmp_path / "b", store._Header(b"\x02" * 16, header.kek, header.nonce, b""), data_key)
    a.put("identity", b"a's identity")
    (tmp_path / "b" / "objects").mkdir(parents=True)
    (tmp_path / "b" / "objects" / "identity").write_bytes((tmp_path / "a" / "objects" / "identity").read_bytes())
    refused("corrupt", b.get, "identity")
    twin = SecretStore(tmp_path / "b", header, data_key)  # same id and key: the file is accepted
    assert twin.get("identity") == b"a's identity"


def test_no_plaintext_on_disk(kind: Kind, tmp_path: Path) -> None:
    directory = tmp_path / "store"
    s = kind.create(directory)
    secret = MARKER * 8
    for name in ("identity", "keys/k1", "sessions/s1"):
        s.put(name, secret)
    s.put("keys/k1", secret + b"v2")  # an overwrite leaves no plaintext behind either
    s.delete("sessions/s1")
    needles = [MARKER, MARKER.hex().encode(), MARKER.hex().upper().encode()]
    roots = [tmp_path]  # the store and, for the token, SoftHSM's files
    checked = 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert not any(needle in content for needle in needles), path
                checked += 1
    assert checked >= 3
    for path in directory.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
    assert sorted(p.name for p in (directory / "objects").rglob("*") if p.is_file()) == ["identity", "k1"]
    assert s.get("keys/k1") == secret + b"v2"


# -- names ---------------------------------------------------------------------------------------------

BAD_NAMES = [
    "",
    "/",
    "../x",
    "..",
    ".",
    ".hidden",
    "a/b/c",
    "a//b",
    "/abs",
    "a/",
    "a/..",
    "keys/../../etc",
    "sp ace",
    "é",
    "a\x00b",
    "-dash",
    "x" * 129,
    "ok/" + "y" * 129,
    "back\\slash",
]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_invalid_names_refused(tmp_path: Path, name: str) -> None:
    s = new_passphrase_store(tmp_path)
    refused("name", s.put, name, b"x")
    refused("name", s.get, name)
    refused("name", s.exists, name)
    refused("name", s.delete, name)
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == [tmp_path / "store.json"]


def test_valid_names(tmp_path: Path) -> None:
    s = new_passphrase_store(tmp_path)
    names = ["identity", "keys/treasury-1", "sessions/ab12cd", "A.b_c-9", "x" * 128, "a/" + "z" * 128, "0/0"]
    for name in names:
        s.put(name, name.encode())
    assert s.names() == sorted(names)
    assert all(s.get(name) == name.encode() for name in names)


def test_name_cannot_be_both_object_and_prefix(tmp_path: Path) -> None:
    s = new_passphrase_store(tmp_path)
    s.put("keys", b"an object")
    refused("name", s.put, "keys/a", b"x")
    s.put("sessions/a", b"x")
    refused("name", s.put, "sessions", b"x")
    assert s.get("keys") == b"an object" and s.names() == ["keys", "sessions/a"]


# -- creation policy -----------------------------------------------------------------------------------


def test_create_refuses_an_existing_store(kind: Kind, tmp_path: Path) -> None:
    kind.create(tmp_path).put("identity", b"keep me")
    before = (tmp_path / "store.json").read_bytes()
    refused("exists", kind.create, tmp_path, key_label="another-label")
    assert (tmp_path / "store.json").read_bytes() == before
    assert kind.open(tmp_path).get("identity") == b"keep me"


def test_create_refuses_an_existing_token_key(softhsm: SoftHsm, tmp_path: Path) -> None:
    SecretStore.create(tmp_path / "a", pkcs11=softhsm.config(), pin=softhsm.pin).put("x", b"first")
    error = refused("exists", SecretStore.create, tmp_path / "b", pkcs11=softhsm.config(), pin=softhsm.pin)
    assert "harbour-kek" in str(error)
    assert not (tmp_path / "b" / "store.json").exists()
    assert SecretStore.open(tmp_path / "a", pin=softhsm.pin).get("x") == b"first"


def test_failed_create_removes_the_token_key(softhsm: SoftHsm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(store, "write_atomic", disk_full)
    with pytest.raises(OSError, match="No space"):
        SecretStore.create(tmp_path, pkcs11=softhsm.config(), pin=softhsm.pin)
    with token_session(softhsm) as session:
        assert list(session.get_objects({Attribute.LABEL: "harbour-kek"})) == []


def test_create_needs_exactly_one_secret(softhsm: SoftHsm, tmp_path: Path) -> None:
    config = softhsm.config()
    cases: list[dict[str, Any]] = [
        {},
        {"passphrase": PASS, "pkcs11": config, "pin": softhsm.pin},
        {"passphrase": PASS, "pkcs11": config},
        {"pkcs11": config},
        {"pin": softhsm.pin},
        {"passphrase": PASS, "pin": softhsm.pin},
        {"passphrase": ""},
        {"passphrase": PASS, "kdf_n": keyfile.MIN_N // 2},
        {"passphrase": PASS, "kdf_n": keyfile.MIN_N + 1},
        {"pkcs11": Pkcs11Config("relative/libsofthsm2.so", softhsm.token_label), "pin": softhsm.pin},
        {"pkcs11": Pkcs11Config(softhsm.module, ""), "pin": softhsm.pin},
        {"pkcs11": Pkcs11Config(softhsm.module, "t" * 33), "pin": softhsm.pin},
    ]
    for case in cases:
        refused("policy", SecretStore.create, tmp_path, **case)
        assert not (tmp_path / "store.json").exists(), case
    with token_session(softhsm) as session:
        assert list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})) == []


def test_open_needs_the_right_kind_of_secret(softhsm: SoftHsm, tmp_path: Path) -> None:
    new_passphrase_store(tmp_path / "p")
    SecretStore.create(tmp_path / "h", pkcs11=softhsm.config(), pin=softhsm.pin)
    refused("policy", SecretStore.open, tmp_path / "p", pin=softhsm.pin)
    refused("policy", SecretStore.open, tmp_path / "p", passphrase=PASS, pin=softhsm.pin)
    refused("policy", SecretStore.open, tmp_path / "p")
    refused("policy", SecretStore.open, tmp_path / "h", passphrase=PASS)
    refused("policy", SecretStore.open, tmp_path / "h", passphrase=PASS, pin=softhsm.pin)
    refused("policy", SecretStore.open, tmp_path / "h")


# -- the HSM key ---------------------------------------------------------------------------------------


def test_kek_stays_on_the_token(softhsm: SoftHsm, tmp_path: Path) -> None:
    SecretStore.create(tmp_path, pkcs11=softhsm.config(), pin=softhsm.pin)
    store_id = bytes.fromhex(store_json(tmp_path)["store_id"])
    with token_session(softhsm, rw=True) as session:
        kek = session.get_key(object_class=ObjectClass.SECRET_KEY, label="harbour-kek")
        with pytest.raises(pkcs11.exceptions.AttributeSensitive):
            kek[Attribute.VALUE]
        assert kek[Attribute.TOKEN] and kek[Attribute.PRIVATE]
        assert kek[Attribute.SENSITIVE] and kek[Attribute.ALWAYS_SENSITIVE]
        assert not kek[Attribute.EXTRACTABLE] and kek[Attribute.NEVER_EXTRACTABLE]
        assert not kek[Attribute.WRAP] and not kek[Attribute.UNWRAP] and not kek[Attribute.DERIVE]
        assert kek[Attribute.VALUE_LEN] == 32 and kek[Attribute.ID] == store_id
        # Nor can another key on the token export it, nor can it be made extractable.
        wrapper = session.generate_key(KeyType.AES, 256, label="wrapper", store=False)
        assert isinstance(wrapper, WrapMixin)
        with pytest.raises(pkcs11.exceptions.KeyUnextractable):
            wrapper.wrap_key(kek)
        with pytest.raises(pkcs11.exceptions.PKCS11Error):
            kek[Attribute.EXTRACTABLE] = True


# -- threads -------------------------------------------------------------------------------------------


def test_concurrent_puts_do_not_corrupt(kind: Kind, tmp_path: Path) -> None:
    s = kind.create(tmp_path)
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def writer(worker: int) -> None:
        try:
            start.wait()
            for i in range(25):
                s.put(f"shared/n{i % 5}", f"{worker}:{i}".encode() * 50)
                s.put(f"w{worker}/n{i}", f"{worker}:{i}".encode())
                s.get(f"shared/n{i % 5}")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for n in range(5):
        written = {f"{w}:{i}".encode() * 50 for w in range(8) for i in range(n, 25, 5)}
        assert s.get(f"shared/n{n}") in written
    for worker in range(8):
        for i in range(25):
            assert s.get(f"w{worker}/n{i}") == f"{worker}:{i}".encode()
    assert len(s.names()) == 5 + 8 * 25
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()]  # no temporary files left


# -- configuration -------------------------------------------------------------------------------------


def test_pkcs11_config_json() -> None:
    config = Pkcs11Config("/usr/lib/softhsm/libsofthsm2.so", "node-1", "kek")
    assert Pkcs11Config.from_json(config.to_json()) == config
    assert Pkcs11Config.from_json(json.loads(json.dumps(config.to_json()))) == config
    assert Pkcs11Config("/m.so", "t").key_label == "harbour-kek"
    bad: list[object] = [
        None,
        [],
        {},
        {"module": "/m.so", "token_label": "t"},
        {**config.to_json(), "pin": "1234"},
        {**config.to_json(), "module": 7},
        {**config.to_json(), "module": "relative.so"},
        {**config.to_json(), "token_label": ""},
        {**config.to_json(), "key_label": "a\nb"},
        {**config.to_json(), "token_label": "node-1 "},
    ]
    for obj in bad:
        with pytest.raises(TokenError) as info:
            Pkcs11Config.from_json(obj)
        assert info.value.reason == "corrupt", str(info.value)


def test_find_softhsm_module(softhsm: SoftHsm) -> None:
    module = find_softhsm_module()
    assert module is not None and Path(module).is_file() and module == softhsm.module
