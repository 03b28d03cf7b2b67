"""The request and response messages between a coordinator and a signer node.

One request in, one response out, each a canonical CBOR map. The same bytes
travel in an HTTP body (``POST /v1/rpc``) to an online node and in a file to a cold
node (``harbour node offline``), so the node has one code path for both.

Requests (every one has ``"v": 2`` and ``"op"``)::

    {"op": "describe"}                                  -> {"descriptor": <JSON text>}
    {"op": "start", "session_id": <32 bytes>, "kind": "sign" | "keygen" | "refresh" | "reshare",
     "certificate": <bytes>, "args": {...}}             -> {"out": [...], "done": bool, "hello": <bytes>,
                                                            "result"?: {...}}
    {"op": "deliver", "session_id": <32 bytes>, "hellos": [<hello>, ...], "messages": [<sealed>, ...]}
                                                        -> {"out": [...], "done": bool, "result"?: {...}}
    {"op": "commit", "session_id": <32 bytes>, "fingerprint": <32 bytes>, "acks": {<node id>: <64 bytes>, ...},
     "receipts": {<node id>: <64 bytes>, ...}}          -> {"key_id": str, "receipt": <64 bytes>}
    {"op": "staged", "session_id": <32 bytes>}          -> {"result": {...}}   (the staged result again)
    {"op": "abort", "session_id": <32 bytes>, "certificate": <bytes>}  -> {}
    {"op": "key", "key_id": str}                        -> {"public": <package>, "roster": [...], "org": str,
                                                            "chain_code": <bytes>, "holding": <bytes>}
    {"op": "rotate", "statement": <bytes>, "certificate": <bytes>}  -> {"keys": [key id, ...]}
    {"op": "enrol", "genesis": <bytes>, "certificate": <bytes>}    -> {"org": str, "seq": int, "head": <32 bytes>}
    {"op": "push", "org": str, "entries": [<bytes>, ...]}          -> {"org", "seq", "head", "appended": int}
    {"op": "head", "org": str}                                     -> {"org", "seq", "head"}
    {"op": "history", "org": str, "session_id": <32 bytes>}        -> {"statement": <bytes>}
    {"op": "status", "challenge": <16..64 bytes>}                  -> {"status": <bytes>, "signature": <64 bytes>}

``org`` is an organisation's genesis hash in hex (:mod:`harbour.node.orgs`):
``enrol`` starts keeping its log (an authority's ``enrol`` certificate), ``push``
appends entries the admins signed (no certificate: the node verifies each),
``head`` says how far the node's log goes, ``history`` is the node's signed
statement of its withdrawal record for one session. ``status`` is the node's
signed answer about itself (:mod:`harbour.node.status`).

``args`` per kind:

- ``sign``: ``{"key_id", "path", "message", "signers": [party, ...]}``, and ``"histories": [<statement>, ...]``
  (the signers' history statements) for a key of an organisation whose policy has velocity or count limits;
- ``keygen``: ``{"key_id", "scheme", "threshold", "roster": [[party, descriptor], ...]}``;
- ``refresh``: ``{"key_id"}``;
- ``reshare``: ``{"key_id", "threshold", "dealers": [[party, descriptor], ...], "roster": [[party, descriptor], ...],
  "public": <package>, "chain_code": <bytes>, "holdings": [<bytes>, ...]}``: the dealers (members of the current
  committee) and the new committee; a node in both has one party number in both. For a key of an organisation,
  ``holdings`` are the dealers' holding statements, which a node new to the key requires (empty otherwise).

A node answers ``start`` with its signed session hello (:mod:`harbour.node.handshake`),
and the coordinator hands every member the other members' hellos in its first
``deliver``; a node seals secret messages only once it has the recipient's.

A response is ``{"v": 2, "ok": true, ...}`` or ``{"v": 2, "ok": false, "reason": str,
"error": str}``; ``reason`` is a short machine-readable word (``approval``,
``sealed``, ``protocol``, ``stale-session``, ``bad-request``, ...).

Everything is parsed strictly (:func:`parse_request`): exact keys, exact types,
bounded sizes and canonical encoding, before the node looks at any value.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

import cbor2

from harbour.crypto.group import GroupError
from harbour.mpc.envelope import SESSION_ID_LEN
from harbour.mpc.keyshare import KeyShareError, PublicKeyPackage, group_by_name
from harbour.node.identity import IdentityError, NodeDescriptor
from harbour.util import cbor

VERSION: Final = 2
"""Version 2 added the session hellos (forward secrecy); a version-1 peer is refused as such."""
MAX_REQUEST: Final = 16 * 2**20
"""A round of a 5-party ECDSA setup is a few hundred kilobytes; far more is refused unread."""
MAX_MESSAGES: Final = 4096
MAX_HELLO: Final = 512
MAX_PARTIES: Final = 255
KEY_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
OPS: Final = (
    "describe",
    "start",
    "deliver",
    "commit",
    "staged",
    "abort",
    "key",
    "rotate",
    "enrol",
    "push",
    "head",
    "history",
    "status",
)
KINDS: Final = ("sign", "keygen", "refresh", "reshare")
ACK_DOMAIN: Final = b"harbour/node/ack/v1\x00"
RECEIPT_DOMAIN: Final = b"harbour/node/commit-receipt/v1\x00"
ROSTER_DOMAIN: Final = b"harbour/node/roster/v1\x00"
MAX_HOLDING: Final = 4096
"""A dealer's holding statement (:data:`harbour.governance.holding.MAX_STATEMENT_LEN`)."""
MAX_PUSH: Final = 256
"""Governance entries in one ``push``: a longer log goes in several requests."""
MAX_ENTRY: Final = 520 * 1024
"""Above the largest signed governance entry (512 KiB of entry, 64 signatures)."""
MAX_STATEMENT: Final = 4 * 2**20
"""Above the largest history statement (:data:`harbour.node.orgs.statement.MAX_STATEMENT_LEN`)."""
_ORG = re.compile(r"[0-9a-f]{64}")


class RequestError(ValueError):
    """A request that is malformed: refused before anything acts on it."""


def _fail(what: str) -> RequestError:
    return RequestError(what)


def encode(obj: Mapping[str, Any]) -> bytes:
    return bytes(cbor2.dumps({"v": VERSION, **obj}, canonical=True))


def _decode(data: bytes, what: str) -> dict[str, Any]:
    if len(data) > MAX_REQUEST:
        raise _fail(f"{what} is larger than {MAX_REQUEST} bytes")
    try:
        decoded = cbor.decode(data)
    except cbor.InvalidCbor as exc:
        raise _fail(f"{what} is not valid CBOR") from exc
    obj = decoded.value
    if type(obj) is not dict or not decoded.canonical:
        raise _fail(f"{what} must be one canonical CBOR map")
    if type(obj.get("v")) is not int or obj["v"] != VERSION:
        raise _fail(f"{what} has an unsupported version {obj.get('v')!r}")
    return obj


def _fields(obj: Mapping[str, Any], schema: Mapping[str, type | tuple[type, ...]], what: str) -> None:
    if set(obj) != set(schema):
        raise _fail(f"{what} fields are wrong: expected {sorted(schema)}, got {sorted(obj)}")
    for key, typ in schema.items():
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, typ):
            raise _fail(f"{what} field {key!r} has the wrong type")


def _session_id(value: object) -> bytes:
    if type(value) is not bytes or len(value) != SESSION_ID_LEN:
        raise _fail(f"session_id must be {SESSION_ID_LEN} bytes")
    return value


def check_key_id(value: object) -> str:
    if not isinstance(value, str) or not KEY_ID.fullmatch(value):
        raise _fail("key_id must be 1-64 characters: letters, digits, '.', '_' or '-', not starting with a symbol")
    return value


def _org(value: object) -> str:
    if not isinstance(value, str) or not _ORG.fullmatch(value):
        raise _fail("org is an organisation's genesis hash: 64 lowercase hex digits")
    return value


def _party(value: object) -> int:
    if type(value) is not int or not 1 <= value <= MAX_PARTIES:
        raise _fail(f"party numbers are integers 1..{MAX_PARTIES}")
    return value


def _parties(value: object, what: str) -> tuple[int, ...]:
    if type(value) is not list or not value or len(value) > MAX_PARTIES:
        raise _fail(f"{what} must be a non-empty list of party numbers")
    parties = tuple(_party(v) for v in value)
    if len(set(parties)) != len(parties):
        raise _fail(f"{what} lists a party twice")
    return tuple(sorted(parties))


def parse_roster(value: object) -> dict[int, NodeDescriptor]:
    """``[[party, descriptor JSON], ...]`` -> party -> descriptor; parties and nodes unique."""
    if type(value) is not list or not value or len(value) > MAX_PARTIES:
        raise _fail("roster must be a non-empty list of [party, descriptor]")
    roster: dict[int, NodeDescriptor] = {}
    for entry in value:
        if type(entry) is not list or len(entry) != 2 or type(entry[1]) is not str:
            raise _fail("roster entries are [party, descriptor JSON]")
        party = _party(entry[0])
        try:
            descriptor = NodeDescriptor.from_json(entry[1])
        except IdentityError as exc:
            raise _fail(f"roster entry for party {party}: {exc}") from exc
        if party in roster:
            raise _fail(f"roster lists party {party} twice")
        roster[party] = descriptor
    if len({d.node_id for d in roster.values()}) != len(roster):
        raise _fail("roster lists one node under two party numbers")
    return roster


def roster_value(roster: Mapping[int, NodeDescriptor]) -> list[list[Any]]:
    return [[party, roster[party].to_json()] for party in sorted(roster)]


def roster_hash(node_ids: Sequence[str]) -> str:
    """What an admin certificate approves as a committee: SHA-256 of the sorted node ids (hex).

    Order-free, so an operator can compute it from the descriptor files alone; the
    party numbers are given by the roster, and every node sees the same one or the
    protocol's own checks fail.
    """
    body = b"".join(bytes.fromhex(n) for n in sorted(node_ids))
    return hashlib.sha256(ROSTER_DOMAIN + body).hexdigest()


def encode_public(public: PublicKeyPackage) -> bytes:
    return bytes(
        cbor2.dumps(
            {
                "scheme": public.scheme,
                "curve": public.curve,
                "t": public.threshold,
                "parties": list(public.parties),
                "pk": public.group_public_key.encode(),
                "vs": {i: public.verification_shares[i].encode() for i in public.parties},
            },
            canonical=True,
        )
    )


def decode_public(data: object) -> PublicKeyPackage:
    """A public key package, fully checked (points valid, shares on one polynomial)."""
    if type(data) is not bytes or len(data) > 65536:
        raise _fail("public must be the bytes of a public key package")
    try:
        obj = cbor2.loads(data)
        _fields(
            obj,
            {"scheme": str, "curve": str, "t": int, "parties": list, "pk": bytes, "vs": dict},
            "public key package",
        )
        group = group_by_name(obj["curve"])
        parties = _parties(obj["parties"], "public key package parties")
        if set(obj["vs"]) != set(parties):
            raise _fail("public key package verification shares do not match its parties")
        public = PublicKeyPackage(
            scheme=obj["scheme"],
            curve=obj["curve"],
            threshold=obj["t"],
            parties=parties,
            group_public_key=group.decode_point(obj["pk"]),
            verification_shares={i: group.decode_point(obj["vs"][i]) for i in parties},
        )
        if not 1 <= public.threshold <= len(parties) or encode_public(public) != bytes(data):
            raise _fail("public key package is inconsistent or not canonical")
        public.check_consistent()
    except RequestError:
        raise
    except (GroupError, KeyShareError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise _fail(f"malformed public key package: {exc}") from exc
    except Exception as exc:  # cbor2's decoder errors
        raise _fail("public key package is not valid CBOR") from exc
    return public


def ack_message(session_id: bytes, key_id: str, fingerprint: bytes) -> bytes:
    """What a node signs when it holds the new share of an admin session, for the commit."""
    return ACK_DOMAIN + session_id + len(key_id).to_bytes(1, "big") + key_id.encode() + fingerprint


def receipt_message(session_id: bytes, key_id: str, fingerprint: bytes) -> bytes:
    """What a node signs once it has committed that share: a leaving member deletes its own only then."""
    return RECEIPT_DOMAIN + session_id + len(key_id).to_bytes(1, "big") + key_id.encode() + fingerprint


# -- requests ----------------------------------------------------------------------------


def parse_request(data: bytes) -> dict[str, Any]:
    """Check a request's shape; returns it with ``args`` and rosters decoded."""
    obj = _decode(data, "request")
    op = obj.get("op")
    if op not in OPS:
        raise _fail(f"unknown op {op!r}; one of {', '.join(OPS)}")
    if op == "describe":
        _fields(obj, {"v": int, "op": str}, "describe request")
    elif op == "key":
        _fields(obj, {"v": int, "op": str, "key_id": str}, "key request")
        check_key_id(obj["key_id"])
    elif op == "rotate":
        _fields(obj, {"v": int, "op": str, "statement": bytes, "certificate": bytes}, "rotate request")
    elif op == "enrol":
        _fields(obj, {"v": int, "op": str, "genesis": bytes, "certificate": bytes}, "enrol request")
        if len(obj["genesis"]) > MAX_ENTRY:
            raise _fail(f"the genesis is at most {MAX_ENTRY} bytes")
    elif op == "push":
        _fields(obj, {"v": int, "op": str, "org": str, "entries": list}, "push request")
        _org(obj["org"])
        entries = obj["entries"]
        if not entries or len(entries) > MAX_PUSH or any(type(e) is not bytes or len(e) > MAX_ENTRY for e in entries):
            raise _fail(f"entries must be a list of 1 to {MAX_PUSH} byte strings of at most {MAX_ENTRY} bytes")
    elif op == "head":
        _fields(obj, {"v": int, "op": str, "org": str}, "head request")
        _org(obj["org"])
    elif op == "history":
        _fields(obj, {"v": int, "op": str, "org": str, "session_id": bytes}, "history request")
        _org(obj["org"])
        _session_id(obj["session_id"])
    elif op == "status":
        _fields(obj, {"v": int, "op": str, "challenge": bytes}, "status request")
        if not 16 <= len(obj["challenge"]) <= 64:
            raise _fail("a status challenge is 16..64 random bytes")
    elif op == "abort":
        _fields(obj, {"v": int, "op": str, "session_id": bytes, "certificate": bytes}, "abort request")
        _session_id(obj["session_id"])
    elif op == "staged":
        _fields(obj, {"v": int, "op": str, "session_id": bytes}, "staged request")
        _session_id(obj["session_id"])
    elif op == "deliver":
        _fields(obj, {"v": int, "op": str, "session_id": bytes, "hellos": list, "messages": list}, "deliver request")
        _session_id(obj["session_id"])
        if len(obj["messages"]) > MAX_MESSAGES or any(type(m) is not bytes for m in obj["messages"]):
            raise _fail(f"messages must be a list of at most {MAX_MESSAGES} byte strings")
        if len(obj["hellos"]) > MAX_PARTIES or any(type(h) is not bytes or len(h) > MAX_HELLO for h in obj["hellos"]):
            raise _fail(f"hellos must be a list of at most {MAX_PARTIES} byte strings of at most {MAX_HELLO} bytes")
    elif op == "commit":
        schema = {"v": int, "op": str, "session_id": bytes, "fingerprint": bytes, "acks": dict, "receipts": dict}
        _fields(obj, schema, "commit request")
        _session_id(obj["session_id"])
        if len(obj["fingerprint"]) != 32:
            raise _fail("fingerprint is 32 bytes")
        for name in ("acks", "receipts"):
            sigs = obj[name]
            if len(sigs) > MAX_PARTIES or any(
                type(k) is not str or type(v) is not bytes or len(v) != 64 for k, v in sigs.items()
            ):
                raise _fail(f"{name} map node ids to 64-byte signatures")
    else:
        _fields(
            obj,
            {"v": int, "op": str, "session_id": bytes, "kind": str, "certificate": bytes, "args": dict},
            "start request",
        )
        _session_id(obj["session_id"])
        obj["args"] = _parse_args(obj["kind"], obj["args"])
    return obj


def _parse_args(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    what = f"{kind} arguments"
    if kind == "sign":
        schema: dict[str, type] = {"key_id": str, "path": str, "message": bytes, "signers": list}
        if "histories" in args:
            schema["histories"] = list
        _fields(args, schema, what)
        if len(args["message"]) > 1024 or not args["message"]:
            raise _fail("the message to sign is 1..1024 bytes")
        if len(args["path"]) > 256:
            raise _fail("path is too long")
        histories = args.get("histories", [])
        if len(histories) > MAX_PARTIES or any(type(h) is not bytes or len(h) > MAX_STATEMENT for h in histories):
            raise _fail(
                f"histories must be a list of at most {MAX_PARTIES} statements of at most {MAX_STATEMENT} bytes"
            )
        return {**args, "key_id": check_key_id(args["key_id"]), "signers": _parties(args["signers"], "signers")}
    if kind == "keygen":
        _fields(args, {"key_id": str, "scheme": str, "threshold": int, "roster": list}, what)
        return {**args, "key_id": check_key_id(args["key_id"]), "roster": parse_roster(args["roster"])}
    if kind == "refresh":
        _fields(args, {"key_id": str}, what)
        return {"key_id": check_key_id(args["key_id"])}
    if kind == "reshare":
        _fields(
            args,
            {
                "key_id": str,
                "threshold": int,
                "dealers": list,
                "roster": list,
                "public": bytes,
                "chain_code": bytes,
                "holdings": list,
            },
            what,
        )
        if len(args["chain_code"]) not in (0, 32):
            raise _fail("chain_code is 32 bytes (or empty for a key without one)")
        holdings = args["holdings"]
        if len(holdings) > MAX_PARTIES or any(type(h) is not bytes or len(h) > MAX_HOLDING for h in holdings):
            raise _fail(f"holdings is a list of at most {MAX_PARTIES} statements of at most {MAX_HOLDING} bytes")
        return {
            **args,
            "key_id": check_key_id(args["key_id"]),
            "dealers": parse_roster(args["dealers"]),
            "roster": parse_roster(args["roster"]),
            "public": decode_public(args["public"]),
        }
    raise _fail(f"unknown session kind {kind!r}; one of {', '.join(KINDS)}")


# -- responses ---------------------------------------------------------------------------


def ok(**fields: Any) -> bytes:
    return encode({"ok": True, **fields})


def error(reason: str, message: str) -> bytes:
    return encode({"ok": False, "reason": reason, "error": message[:2000]})


class NodeError(RuntimeError):
    """A node refused a request; ``reason`` is its machine-readable word, ``node`` who said it."""

    def __init__(self, node: str, reason: str, message: str) -> None:
        super().__init__(f"node {node}: {message}")
        self.node = node
        self.reason = reason
        self.message = message


def parse_response(data: bytes, node: str) -> dict[str, Any]:
    """A node's response as a map; NodeError if it refused, RequestError if it is malformed."""
    obj = _decode(data, f"response from {node}")
    if obj.get("ok") is False:
        reason, message = obj.get("reason"), obj.get("error")
        if type(reason) is not str or type(message) is not str:
            raise _fail(f"error response from {node} is malformed")
        raise NodeError(node, reason, message)
    if obj.get("ok") is not True:
        raise _fail(f"response from {node} has no ok field")
    return obj


def parse_hello(obj: Mapping[str, Any], node: str) -> bytes:
    """The session hello a ``start`` response carries."""
    hello = obj.get("hello")
    if type(hello) is not bytes or not 0 < len(hello) <= MAX_HELLO:
        raise _fail(f"response from {node} to start has no session hello")
    return hello


def parse_round(obj: Mapping[str, Any], node: str) -> tuple[list[bytes], bool, dict[str, Any] | None]:
    """``(outgoing sealed messages, done, result)`` of a start or deliver response."""
    out, done, result = obj.get("out"), obj.get("done"), obj.get("result")
    if type(out) is not list or any(type(m) is not bytes for m in out) or len(out) > MAX_MESSAGES:
        raise _fail(f"response from {node} has malformed messages")
    if type(done) is not bool or (result is not None and type(result) is not dict):
        raise _fail(f"response from {node} has a malformed status")
    if done and result is None:
        raise _fail(f"response from {node} says done without a result")
    return out, done, result
