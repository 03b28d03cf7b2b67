"""What an outside auditor runs on the custody audit log: signed tree heads, inclusion and consistency proofs.

An auditor holds the log's public key from their own records and fetches heads and
proofs over the API; checking them must not need the operator's database, its
driver or the custody service, so this module imports neither SQLAlchemy nor
anything of the service (``tests/test_audit.py`` checks that in a fresh
interpreter). It is a module beside :mod:`harbour.custody.audit` rather than inside
an ``audit/`` package because importing a package runs its ``__init__`` first, and
that ``__init__`` would have to load the database log to keep
``harbour.custody.audit`` importable as before. The log imports this module, so
the service signs and hashes with exactly the encodings an auditor checks.

Each event is a leaf of an RFC 9162 Merkle tree (:mod:`harbour.crypto.merkle`);
a leaf is the canonical JSON (:func:`canonical_json`) of the event's index,
timestamp, organisation, actor, kind, subject and data (:func:`leaf_content`).
What a tree head's signature binds (:func:`head_message`)::

    "harbour/audit-tree-head/v1" 0x00 || len(log_id) (1 byte) || log_id
      || tree_size (8 bytes, big-endian) || timestamp (microseconds since 1970, 8 bytes) || root (32 bytes)

See docs/audit.md for what verification does and does not detect.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from harbour.crypto import merkle

LOG_ID: Final = "harbour-custody"
HEAD_DOMAIN: Final = b"harbour/audit-tree-head/v1\x00"
MAX_DEPTH: Final = 32
HASH_HEX: Final = re.compile(r"[0-9a-f]{64}")
"""A node hash as heads, proofs and the log's rows write it: 64 lowercase hex digits."""
_HEX64 = re.compile(r"[0-9a-f]{128}")
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_EPOCH: Final = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TIME_FORMAT: Final = "%Y-%m-%dT%H:%M:%S.%fZ"


class ProofError(ValueError):
    """A proof or signed tree head does not verify; the message says which check failed."""


# -- encodings ----------------------------------------------------------------------------------------------------


def format_time(at: dt.datetime) -> str:
    """The one textual form of a timestamp the log hashes and signs: UTC, microseconds, ``Z``."""
    if at.tzinfo is None:
        raise ValueError("audit timestamps must be timezone-aware")
    return at.astimezone(dt.UTC).strftime(_TIME_FORMAT)


def parse_time(text: str) -> dt.datetime:
    """Inverse of :func:`format_time`; refuses any other spelling of the same instant."""
    if not isinstance(text, str):
        raise ValueError("a timestamp is a string")
    try:
        at = dt.datetime.strptime(text, _TIME_FORMAT).replace(tzinfo=dt.UTC)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is not of the form 2025-01-31T12:00:00.000000Z") from None
    if format_time(at) != text:
        raise ValueError(f"timestamp {text!r} is not in canonical form")
    return at


def _micros(at: dt.datetime) -> int:
    return (at - _EPOCH) // dt.timedelta(microseconds=1)


def canonical_json(value: Any) -> bytes:
    """UTF-8 JSON with sorted keys and no whitespace; no floats (they do not round-trip exactly).

    This is RFC 8785 (JCS) for documents whose integers lie within 2^53 and whose keys
    stay in the Basic Multilingual Plane (JCS writes numbers as doubles and sorts keys by
    UTF-16 unit); beyond that, integers are written in full and keys sort by code point.
    The service's data keeps integers small and amounts as decimal strings.
    """
    _check_json(value, "data", 0)
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except UnicodeEncodeError:
        raise ValueError("audit data holds a string that is not valid Unicode (a lone surrogate)") from None


def _check_json(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"audit data nests deeper than {MAX_DEPTH} levels at {where}")
    if value is None or isinstance(value, str | bool | int):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_json(item, f"{where}[{i}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"audit data keys are strings, not {type(key).__name__} ({where})")
            _check_json(item, f"{where}.{key}", depth + 1)
        return
    what = "a float (use an integer or a decimal string)" if isinstance(value, float) else type(value).__name__
    raise TypeError(f"audit data at {where} is {what}, which has no exact canonical JSON form")


def leaf_content(event: Mapping[str, Any]) -> bytes:
    """The bytes a leaf hashes, from an event as the log lists it (:meth:`~harbour.custody.audit.AuditLog.events`)."""
    content = {key: event[key] for key in ("index", "at", "org_id", "actor_id", "kind", "subject", "data")}
    if type(content["index"]) is not int or not isinstance(content["at"], str):
        raise ValueError("an event's index is an integer and its timestamp a string")
    if not isinstance(content["data"], dict):
        raise ValueError("an event's data is an object")
    return canonical_json(content)


def event_leaf_fields(row: Any, index: int) -> dict[str, Any]:
    """The fields of a stored event ``row`` that its leaf hashes (what :func:`leaf_content` reads), at ``index``.

    The log's API view and the verifier both build them here, so what is shown is what is hashed.
    """
    return {
        "index": index,
        "at": format_time(row.at),
        "org_id": row.org_id,
        "actor_id": row.actor_id,
        "kind": row.kind,
        "subject": row.subject,
        "data": row.data,
    }


def head_message(log_id: str, tree_size: int, timestamp: dt.datetime, root: bytes) -> bytes:
    """What a tree head's signature covers (fixed layout, domain-separated; see the module docstring)."""
    name = log_id.encode()
    micros = _micros(timestamp)
    if not 0 < len(name) < 256:
        raise ValueError("a log id is 1..255 bytes of UTF-8")
    if not 0 <= tree_size < 2**64 or not 0 <= micros < 2**64 or len(root) != merkle.HASH_LEN:
        raise ValueError("a tree head has a size and timestamp in 0..2^64-1 and a 32-byte root")
    return HEAD_DOMAIN + bytes([len(name)]) + name + struct.pack(">QQ", tree_size, micros) + root


def public_key_of(key: Ed25519PublicKey | bytes | str) -> Ed25519PublicKey:
    """An Ed25519 public key from the object, its 32 raw bytes or their hex."""
    if isinstance(key, Ed25519PublicKey):
        return key
    if isinstance(key, str):
        if not _HEX_KEY.fullmatch(key):
            raise ValueError("an Ed25519 public key is 64 hex digits")
        key = bytes.fromhex(key)
    if len(key) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(key)


def raw_public_key(key: Ed25519PublicKey) -> bytes:
    """The key's 32 raw bytes: their hex is how heads, the API and an auditor's records write it."""
    return key.public_bytes(Encoding.Raw, PublicFormat.Raw)


def verifier(key: Ed25519PublicKey | bytes | str) -> Any:
    """libsodium's verifier: 2.4 times as fast as OpenSSL's here, which is most of verifying a whole log's time."""
    return VerifyKey(raw_public_key(public_key_of(key)))


def signature_valid(key: Any, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` on ``message`` verifies under a :func:`verifier`; a malformed one simply does not."""
    try:
        key.verify(message, signature)
    except (BadSignatureError, TypeError, ValueError):
        return False
    return True


# -- signed tree heads and proofs ---------------------------------------------------------------------------------


def check_head(head: Mapping[str, Any], public_key: Ed25519PublicKey | bytes | str, *, log_id: str = LOG_ID) -> None:
    """Raise :class:`ProofError` unless ``head`` is a tree head of ``log_id`` signed by ``public_key``.

    A malformed ``public_key`` is the caller's own mistake, not a failed proof: a plain ``ValueError``.
    """
    key = verifier(public_key)
    try:
        size, root_hex, stamp, signature = head["tree_size"], head["root"], head["timestamp"], head["signature"]
        if head["log_id"] != log_id:
            raise ProofError(f"the head is of log {head['log_id']!r}, not {log_id!r}")
        if type(size) is not int or size < 0:
            raise ProofError("the head's tree_size is not a non-negative integer")
        if not isinstance(root_hex, str) or not HASH_HEX.fullmatch(root_hex):
            raise ProofError("the head's root is not 64 lowercase hex digits")
        if not isinstance(signature, str) or not _HEX64.fullmatch(signature):
            raise ProofError("the head's signature is not 128 lowercase hex digits")
        message = head_message(log_id, size, parse_time(stamp), bytes.fromhex(root_hex))
        if not signature_valid(key, bytes.fromhex(signature), message):
            raise ProofError(f"the signature on the head of size {size} does not verify")
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProofError):
            raise
        raise ProofError(f"malformed tree head: {e}") from None


def check_inclusion_proof(
    proof: Mapping[str, Any], public_key: Ed25519PublicKey | bytes | str, *, log_id: str = LOG_ID
) -> None:
    """Raise :class:`ProofError` unless the event in ``proof`` is in the signed tree head it carries.

    The leaf hash is recomputed from the event itself (a stated ``leaf_hash`` must agree
    with it), the audit path is checked against the head's root with RFC 9162 section
    2.1.3.2, and the head's signature against the auditor's own copy of the public key.
    """
    verifier(public_key)
    try:
        head, event, path = proof["head"], proof["event"], proof["audit_path"]
        index, size = proof["index"], proof["tree_size"]
        check_head(head, public_key, log_id=log_id)
        if type(index) is not int or type(size) is not int or event["index"] != index or head["tree_size"] != size:
            raise ProofError("the proof's index and tree size disagree with its event and head")
        leaf = merkle.leaf_hash(leaf_content(event))
        if proof.get("leaf_hash", leaf.hex()) != leaf.hex():
            raise ProofError("the stated leaf hash is not the hash of the event")
        if not isinstance(path, list) or not all(isinstance(p, str) and HASH_HEX.fullmatch(p) for p in path):
            raise ProofError("the audit path is not a list of 64-digit hex hashes")
        nodes = [bytes.fromhex(p) for p in path]
        if not merkle.verify_inclusion(index, size, leaf, nodes, bytes.fromhex(head["root"])):
            raise ProofError(f"event {index} is not in the tree of size {size} with this root")
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProofError):
            raise
        raise ProofError(f"malformed inclusion proof: {e}") from None


def check_consistency_proof(
    proof: Mapping[str, Any],
    public_key: Ed25519PublicKey | bytes | str,
    *,
    log_id: str = LOG_ID,
    old_head: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`ProofError` unless the proof's new head extends its old head (RFC 9162 section 2.1.4.2).

    ``old_head`` is the head the auditor kept from before: the proof must start from it.
    """
    verifier(public_key)
    try:
        old, new, path = proof["old_head"], proof["new_head"], proof["proof"]
        check_head(old, public_key, log_id=log_id)
        check_head(new, public_key, log_id=log_id)
        if old_head is not None and (old_head["tree_size"], old_head["root"]) != (old["tree_size"], old["root"]):
            raise ProofError("the proof does not start from the head the auditor holds")
        if (proof["old_size"], proof["new_size"]) != (old["tree_size"], new["tree_size"]):
            raise ProofError("the proof's sizes disagree with its heads")
        if not isinstance(path, list) or not all(isinstance(p, str) and HASH_HEX.fullmatch(p) for p in path):
            raise ProofError("the consistency path is not a list of 64-digit hex hashes")
        nodes = [bytes.fromhex(p) for p in path]
        old_root, new_root = bytes.fromhex(old["root"]), bytes.fromhex(new["root"])
        if not merkle.verify_consistency(old["tree_size"], new["tree_size"], old_root, new_root, nodes):
            raise ProofError(f"the tree of size {new['tree_size']} does not extend the tree of size {old['tree_size']}")
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ProofError):
            raise
        raise ProofError(f"malformed consistency proof: {e}") from None


def _ok(check: Callable[[], None]) -> bool:
    try:
        check()
    except ProofError:
        return False
    return True


def verify_head(head: Mapping[str, Any], public_key: Ed25519PublicKey | bytes | str, *, log_id: str = LOG_ID) -> bool:
    return _ok(lambda: check_head(head, public_key, log_id=log_id))


def verify_inclusion_proof(
    proof: Mapping[str, Any], public_key: Ed25519PublicKey | bytes | str, *, log_id: str = LOG_ID
) -> bool:
    return _ok(lambda: check_inclusion_proof(proof, public_key, log_id=log_id))


def verify_consistency_proof(
    proof: Mapping[str, Any],
    public_key: Ed25519PublicKey | bytes | str,
    *,
    log_id: str = LOG_ID,
    old_head: Mapping[str, Any] | None = None,
) -> bool:
    return _ok(lambda: check_consistency_proof(proof, public_key, log_id=log_id, old_head=old_head))


# -- recomputing a whole log ------------------------------------------------------------------------------------


class Finding(Protocol):
    """A row the log does not explain (:class:`harbour.custody.rowdigest.RowFinding`, which builds on this module)."""

    @property
    def table(self) -> str: ...

    @property
    def row_id(self) -> str: ...

    @property
    def problem(self) -> str: ...

    @property
    def fields(self) -> tuple[str, ...]: ...

    @property
    def index(self) -> int | None: ...

    def describe(self) -> str: ...

    def to_json(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of recomputing a whole log: what ``harbour audit verify`` prints."""

    ok: bool
    size: int
    """Events checked (the log's size when ``ok``)."""
    first_bad_index: int | None
    """The first entry that fails; None when ``ok`` or when only the state row, an external head or rows are wrong."""
    problem: str
    rows: tuple[Finding, ...] = ()
    """The business rows the log does not explain (:mod:`harbour.custody.rowdigest`), once the log itself checks."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "size": self.size,
            "first_bad_index": self.first_bad_index,
            "problem": self.problem,
            "rows": [finding.to_json() for finding in self.rows],
        }


class LogChecker:
    """The running recomputation of a whole log, one entry at a time in index order; the first failure wins.

    :func:`harbour.custody.audit.verify` feeds it the database's rows; an entry is any
    object with their attributes (``position``, the index; ``at``, a datetime;
    ``org_id``, ``actor_id``, ``kind``, ``subject``, ``data``; ``leaf_hash``, ``root``
    and ``signature`` in hex), so a log exported by other means is checked alike.
    ``kept`` maps sizes to signed heads an auditor kept, already checked with :func:`check_head`.
    """

    def __init__(self, key: Ed25519PublicKey, log_id: str, kept: Mapping[int, Mapping[str, Any]]) -> None:
        self.key, self.log_id, self.kept = verifier(key), log_id, kept
        self.frontier: list[bytes] = []
        self.size = 0
        self.previous: dt.datetime | None = None
        self.vouched = 0
        """The largest kept head found equal so far: every event below it is as the auditor saw it."""

    def bad(self, index: int | None, problem: str) -> VerifyReport:
        return VerifyReport(False, self.size, index, problem)

    def kept_root(self, size: int, root: bytes) -> VerifyReport | None:
        head = self.kept.get(size)
        if head is None:
            return None
        if head["root"] != root.hex():
            return self.bad(
                self.vouched,
                f"the log's tree of size {size} differs from the signed head kept for that size: "
                f"events {self.vouched}..{size - 1} were rewritten by someone holding the signing key",
            )
        self.vouched = size
        return None

    def entry(self, row: Any) -> VerifyReport | None:
        i = self.size
        if row.position != i:
            if row.position > i:
                return self.bad(i, f"event {i} is missing (the next stored event is {row.position})")
            return self.bad(i, f"unexpected event index {row.position} where {i} was due")
        try:
            leaf = merkle.leaf_hash(leaf_content(event_leaf_fields(row, i)))
        except (AttributeError, TypeError, ValueError) as e:
            return self.bad(i, f"event {i} cannot be encoded: {e}")
        if row.leaf_hash != leaf.hex():
            return self.bad(i, f"event {i}'s content does not match its stored leaf hash")
        frontier = merkle.frontier_append(self.frontier, i, leaf)
        root = merkle.frontier_root(frontier)
        if row.root != root.hex():
            return self.bad(i, f"event {i}'s stored root is not the root of the first {i + 1} events")
        if self.previous is not None and row.at < self.previous:
            return self.bad(i, f"event {i} is timestamped before event {i - 1}")
        try:
            message = head_message(self.log_id, i + 1, row.at, root)
            signed = signature_valid(self.key, bytes.fromhex(row.signature), message)
        except (TypeError, ValueError):
            signed = False
        if not signed:
            return self.bad(i, f"the signed tree head of event {i} (size {i + 1}) does not verify")
        report = self.kept_root(i + 1, root)
        if report:
            return report
        self.frontier, self.size, self.previous = frontier, i + 1, row.at
        return None
