"""Envelopes, aborts and the round-buffering base of every sans-I/O protocol party.

A party never touches a socket, file or clock: it takes :class:`Envelope` objects
in and hands envelopes out, and whatever drives it (the in-memory runner, a signer
node) moves them. Payloads are canonical CBOR maps with a version field, decoded
by :func:`decode_payload`, which checks every key and type before any protocol
code sees the data.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import cbor2

from harbour.crypto.group import Group, GroupError

ENVELOPE_VERSION = 1
PAYLOAD_VERSION = 1
MAX_PAYLOAD = 1 << 20
SESSION_ID_LEN = 32


class ProtocolAbort(Exception):
    """A protocol run cannot continue; ``culprits`` names who misbehaved, when provable.

    An empty ``culprits`` means the fault is detected but the protocol cannot say
    who caused it (for example two parties disagreeing about a broadcast).
    """

    def __init__(self, culprits: Iterable[int], reason: str) -> None:
        self.culprits: frozenset[int] = frozenset(culprits)
        self.reason = reason
        names = ", ".join(str(c) for c in sorted(self.culprits)) or "unidentified"
        super().__init__(f"protocol aborted (culprits: {names}): {reason}")


class UsageError(RuntimeError):
    """The caller drove a party wrongly (not an attack by another party)."""


def loads_cbor(data: bytes) -> Any:
    """``cbor2.loads``, refusing a lone break byte (0xff).

    cbor2 before 6 decodes it as a ``break_marker`` object instead of raising; it
    is not a CBOR data item, so it is refused here like any other malformed input.
    """
    obj = cbor2.loads(data)
    if obj is getattr(cbor2, "break_marker", None):
        raise ValueError("a break byte outside an indefinite-length item is not CBOR")
    return obj


@dataclass(frozen=True, slots=True)
class Envelope:
    """One protocol message. ``recipient=None`` is a broadcast to every party."""

    session_id: bytes
    protocol: str
    round: int
    sender: int
    recipient: int | None
    payload: bytes

    def encode(self) -> bytes:
        """Canonical CBOR: ``[version, session_id, protocol, round, sender, recipient, payload]``."""
        return cbor2.dumps(
            [ENVELOPE_VERSION, self.session_id, self.protocol, self.round, self.sender, self.recipient, self.payload],
            canonical=True,
        )

    @classmethod
    def decode(cls, data: bytes) -> Envelope:
        try:
            obj = loads_cbor(data)
        except Exception as exc:
            raise ValueError(f"envelope is not valid CBOR: {exc}") from exc
        if not isinstance(obj, list) or len(obj) != 7:
            raise ValueError("envelope must be a 7-element CBOR array")
        version, sid, protocol, rnd, sender, recipient, payload = obj
        if version != ENVELOPE_VERSION:
            raise ValueError(f"unsupported envelope version {version!r}")
        if not isinstance(sid, bytes) or not isinstance(protocol, str) or not isinstance(payload, bytes):
            raise ValueError("envelope fields have the wrong types")
        for name, v in (("round", rnd), ("sender", sender)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"envelope {name} must be a non-negative integer")
        if recipient is not None and (isinstance(recipient, bool) or not isinstance(recipient, int)):
            raise ValueError("envelope recipient must be an integer or null")
        env = cls(sid, protocol, rnd, sender, recipient, payload)
        if env.encode() != bytes(data):
            raise ValueError("envelope encoding is not canonical")
        return env

    def __len__(self) -> int:
        return len(self.encode())


def _plain(obj: object, top: bool = True) -> bool:
    """Only the CBOR the protocols use: one map of text keys whose values are bytes,
    text, integers or flat lists of those. No tags, floats, booleans, nulls, nested
    maps or shared references: cbor2 turns semantic tags into arbitrary Python
    objects (tags 28/29 into self-containing lists), which must never reach
    protocol code.
    """
    kind = type(obj)
    if kind in (bytes, str, int):
        return True
    if kind is list:
        return all(type(x) in (bytes, str, int) for x in obj)  # type: ignore[attr-defined]
    if kind is dict and top:
        return all(type(k) is str and _plain(v, False) for k, v in obj.items())  # type: ignore[attr-defined]
    return False


def _canonical_key(key: str) -> tuple[int, bytes]:
    data = key.encode()
    return len(data), data


def _is_canonical(obj: dict[str, Any], encoded: bytes) -> bool:
    """RFC 7049 section 3.9 canonical form, checked by re-encoding.

    For the flat shapes ``_plain`` admits, cbor2's default encoder already writes
    minimal lengths and integers, so putting the map keys in canonical order
    (shorter first, then bytewise) reproduces the canonical encoding exactly.
    """
    ordered = {k: obj[k] for k in sorted(obj, key=_canonical_key)}
    return bool(cbor2.dumps(ordered) == encoded)


def encode_payload(fields: Mapping[str, Any]) -> bytes:
    return cbor2.dumps({"v": PAYLOAD_VERSION, **fields}, canonical=True)


def decode_payload(env: Envelope, schema: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any]:
    """Decode a payload that must be exactly ``{"v": 1, **schema}``; abort on anything else.

    A malformed payload is the sender's fault, so the abort names the sender.
    """
    if len(env.payload) > MAX_PAYLOAD:
        raise ProtocolAbort([env.sender], f"round {env.round} payload is too large")
    try:
        obj = loads_cbor(env.payload)
    except Exception as exc:
        raise ProtocolAbort([env.sender], f"round {env.round} payload is not valid CBOR") from exc
    if type(obj) is not dict or not _plain(obj):
        raise ProtocolAbort(
            [env.sender], f"round {env.round} payload is not one map of bytes, text, integers and flat lists"
        )
    if type(obj.get("v")) is not int or obj["v"] != PAYLOAD_VERSION:
        raise ProtocolAbort([env.sender], f"round {env.round} payload has the wrong version or shape")
    if set(obj) != {"v", *schema}:
        raise ProtocolAbort([env.sender], f"round {env.round} payload has missing or unexpected fields")
    for key, typ in schema.items():
        value = obj[key]
        if isinstance(value, bool) or not isinstance(value, typ):
            raise ProtocolAbort([env.sender], f"round {env.round} payload field {key!r} has the wrong type")
    if not _is_canonical(obj, env.payload):
        raise ProtocolAbort([env.sender], f"round {env.round} payload is not canonically encoded")
    return obj


def echoed_shares(
    envelopes: Iterable[Envelope], group: Group, echo: bytes, what: str
) -> tuple[dict[int, int], list[int]]:
    """Decode ``{"share": scalar, "echo": digest}`` payloads (DKG and FROST round two).

    Returns the shares of the senders whose echo equals ours, and the senders whose
    echo differs; a share that is not a valid scalar aborts naming its sender.
    """
    shares: dict[int, int] = {}
    disagree: list[int] = []
    for env in envelopes:
        body = decode_payload(env, {"share": bytes, "echo": bytes})
        if body["echo"] != echo:
            disagree.append(env.sender)
            continue
        try:
            shares[env.sender] = group.decode_scalar(body["share"])
        except GroupError as exc:
            raise ProtocolAbort([env.sender], f"invalid {what}: {exc}") from exc
    return shares, disagree


R = TypeVar("R")


@dataclass
class _RoundState:
    expected: frozenset[int]
    broadcast: bool
    received: dict[int, Envelope] = field(default_factory=dict)


class Party(ABC, Generic[R]):
    """Base of a protocol party: envelope checks and per-round buffering.

    Subclasses declare, per round, which senders they expect and whether the
    round is broadcast or point-to-point, then implement :meth:`_on_round`, which
    is called once with every envelope of a round, in sender order, when the
    round is complete. Envelopes that arrive early are buffered. Every envelope is
    checked for session, protocol, round, sender and recipient, and a second
    envelope from the same sender in the same round is refused, so a replay or an
    equivocation never reaches protocol code. After an abort the party is dead:
    it refuses every further call.
    """

    protocol: str
    public_rounds: ClassVar[frozenset[int]] = frozenset()
    """Rounds every message of which is public (commitments, proofs of knowledge).

    A signer node may send these signed but unencrypted, before the session's
    ephemeral keys are agreed, saving a round trip; every other round is encrypted.
    Declare a round here only if nothing in it would matter to an eavesdropper."""

    def __init__(self, session_id: bytes, me: int) -> None:
        if len(session_id) != SESSION_ID_LEN:
            raise UsageError(f"session ids are {SESSION_ID_LEN} bytes")
        self.session_id = bytes(session_id)
        self.me = me
        self._rounds: dict[int, _RoundState] = {}
        self._current = 1
        self._started = False
        self._aborted: ProtocolAbort | None = None
        self._result: R | None = None

    # -- driving ----------------------------------------------------------------
    def start(self) -> list[Envelope]:
        self._check_alive()
        if self._started:
            raise UsageError("start() was already called")
        self._started = True
        return self._guard(lambda: self._on_start() + self._advance())

    def receive(self, env: Envelope) -> list[Envelope]:
        self._check_alive()
        if not self._started:
            raise UsageError("call start() before receive()")
        if self.done:
            # Refused, but the finished result stands: a replayed envelope from a
            # relay must not make a node throw away a good key share or signature.
            raise ProtocolAbort([env.sender], "message after the protocol finished")
        return self._guard(lambda: self._accept(env))

    @property
    def done(self) -> bool:
        return self._result is not None

    @property
    def aborted(self) -> ProtocolAbort | None:
        return self._aborted

    @property
    def result(self) -> R:
        if self._result is None:
            raise UsageError("the protocol has not finished")
        return self._result

    # -- for subclasses -----------------------------------------------------------
    @abstractmethod
    def _on_start(self) -> list[Envelope]: ...

    @abstractmethod
    def _on_round(self, rnd: int, envelopes: list[Envelope]) -> list[Envelope]: ...

    def _expect(self, rnd: int, senders: Iterable[int], broadcast: bool) -> None:
        self._rounds[rnd] = _RoundState(frozenset(senders), broadcast)

    def _envelope(self, rnd: int, recipient: int | None, payload: bytes) -> Envelope:
        return Envelope(self.session_id, self.protocol, rnd, self.me, recipient, payload)

    def _finish(self, result: R) -> None:
        self._result = result

    # -- internals ------------------------------------------------------------------
    def _check_alive(self) -> None:
        if self._aborted is not None:
            raise UsageError(f"this party has aborted and cannot be reused: {self._aborted.reason}")

    def _guard(self, fn: Any) -> list[Envelope]:
        """Run protocol code; any failure leaves the party dead, never half-advanced."""
        try:
            out: list[Envelope] = fn()
            return out
        except ProtocolAbort as abort:
            self._aborted = abort
            self._on_abort()
            raise
        except Exception as exc:
            self._aborted = ProtocolAbort([], f"internal error: {type(exc).__name__}: {exc}")
            self._on_abort()
            raise

    def _on_abort(self) -> None:
        """Drop secret state as soon as the party is dead, whatever killed it."""

    def _accept(self, env: Envelope) -> list[Envelope]:
        if env.session_id != self.session_id:
            raise ProtocolAbort([env.sender], "message belongs to another session (replay?)")
        if env.protocol != self.protocol:
            raise ProtocolAbort([env.sender], f"message is for protocol {env.protocol!r}, not {self.protocol!r}")
        state = self._rounds.get(env.round)
        if state is None:
            raise ProtocolAbort([env.sender], f"no round {env.round} in {self.protocol}")
        if env.sender not in state.expected:
            raise ProtocolAbort([env.sender], f"party {env.sender} is not a sender in round {env.round}")
        if state.broadcast and env.recipient is not None:
            raise ProtocolAbort([env.sender], f"round {env.round} is a broadcast round")
        if not state.broadcast and env.recipient != self.me:
            raise ProtocolAbort([env.sender], f"round {env.round} message addressed to {env.recipient}, not to us")
        if env.sender in state.received:
            raise ProtocolAbort([env.sender], f"second message from party {env.sender} in round {env.round}")
        state.received[env.sender] = env
        return self._advance()

    def _advance(self) -> list[Envelope]:
        """Run every round that is complete, in order (a round may expect no one)."""
        out: list[Envelope] = []
        while not self.done:
            cur = self._rounds.get(self._current)
            # received only ever holds expected senders, so equal sizes mean complete
            if cur is None or len(cur.received) != len(cur.expected):
                break
            rnd = self._current
            self._current += 1
            out.extend(self._on_round(rnd, [cur.received[s] for s in sorted(cur.received)]))
        return out
