"""A cold node's open sessions between two request files: an explicit record, replayed.

A node with no network answers one request file per run of ``harbour node offline``,
so a session's state must outlive the process between its rounds. No protocol party
is ever serialised: the record holds what the session's job was built from, the
seed of its randomness, and every envelope it received, and the job is rebuilt by
running it again on the same inputs (every :class:`~harbour.node.jobs.Job` is
deterministic given those). A digest of everything the job sent is kept too; a
replay that sends anything else (another version of the code, another key share)
is refused instead of being used. Besides the job, the record holds the session's
ephemeral keys (:mod:`harbour.node.handshake`), message counters, held messages
and replay-guard state: all of it secret, so it only ever lives encrypted in the
node's store.

Each record carries the value of the node's rollback counter
(:mod:`harbour.node.counter`) it was written under; a node resumes a session only
from a record whose value is the counter's current one, so a copy of the directory
put back later (which would replay nonces already used) is refused. Without a
counter the node keeps only sessions for which a replay reveals nothing
(:func:`~harbour.node.jobs.replays_secrets`).

The encoding is canonical CBOR (RFC 8949 section 4.2), versioned, with every field
checked on the way back in.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import cbor2

from harbour.mpc.envelope import Envelope, ProtocolAbort, UsageError
from harbour.mpc.keyshare import KeyShare
from harbour.node import rpc
from harbour.node.handshake import SessionKeys
from harbour.node.identity import NodeDescriptor, NodeIdentity
from harbour.node.jobs import Job, job_params, rebuild_job
from harbour.node.sealed import ReplayGuard
from harbour.node.session import Session
from harbour.util import cbor

FORMAT: Final = "harbour-cold-session"
VERSION: Final = 1
SEED_LEN: Final = 32
DRBG_DOMAIN: Final = b"harbour/cold-session/drbg/v1\x00"
OUTPUT_DOMAIN: Final = b"harbour/cold-session/outputs/v1\x00"

_KEYS: Final = frozenset(
    {
        "format",
        "v",
        "counter",
        "session_id",
        "kind",
        "key_id",
        "path",
        "digests",
        "certificate",
        "me",
        "roster",
        "deadline_ms",
        "staging",
        "note",
        "job",
        "share",
        "seed",
        "inputs",
        "outputs",
        "keys",
        "seq",
        "outbox",
        "guard",
    }
)


class ColdStateError(ValueError):
    """A record that cannot be resumed: malformed, behind the counter, or replaying differently."""


class Drbg:
    """Deterministic bytes from a secret seed: block ``i`` is SHAKE-256(domain || seed || u64(i)) (FIPS 202).

    A cold session's parties draw their randomness from it, so the same seed gives the
    same draws when the session is rebuilt. Each call takes a new block, so draws
    never overlap; the parties hedge what they draw with their own secrets as well.
    """

    __slots__ = ("_calls", "_seed")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_LEN:
            raise ValueError(f"a seed is {SEED_LEN} bytes")
        self._seed = bytes(seed)
        self._calls = 0

    def __call__(self, n: int) -> bytes:
        block = hashlib.shake_256(DRBG_DOMAIN + self._seed + self._calls.to_bytes(8, "big")).digest(n)
        self._calls += 1
        return block

    def __repr__(self) -> str:
        return "Drbg(...)"


@dataclass
class Recording:
    """What a cold session's job was fed and what it sent, to rebuild it by replay."""

    seed: bytes = field(repr=False)
    inputs: list[bytes] = field(default_factory=list)
    outputs: bytes = b""

    @classmethod
    def new(cls) -> Recording:
        return cls(secrets.token_bytes(SEED_LEN))

    @property
    def rng(self) -> Drbg:
        return Drbg(self.seed)

    def sent(self, envelopes: list[Envelope]) -> None:
        self.outputs = _chain(self.outputs, envelopes)

    def received(self, envelope: Envelope) -> None:
        self.inputs.append(envelope.encode())


def _chain(digest: bytes, envelopes: list[Envelope]) -> bytes:
    for env in envelopes:
        digest = hashlib.sha256(OUTPUT_DOMAIN + digest + env.encode()).digest()
    return digest


def share_digest(share: KeyShare | None) -> bytes:
    """Names the exact key share a job was built on (a share changed since means another job)."""
    return b"" if share is None else hashlib.sha256(b"harbour/cold-session/share\x00" + share.serialize()).digest()


# -- writing ---------------------------------------------------------------------------------------


def encode(session: Session, *, counter: int | None, root_share: KeyShare | None, guard: ReplayGuard) -> bytes:
    """The session as canonical CBOR, bound to ``counter``; SECRET (encrypt before storing).

    ``root_share`` is the stored share the job was built on (None for a key
    generation); ``guard`` the replay state of this session's phases.
    """
    recording = session.recording
    keys = session.keys
    if not isinstance(recording, Recording) or keys is None:
        raise ValueError("only a started cold session can be recorded")
    staging = session.staging
    obj = {
        "format": FORMAT,
        "v": VERSION,
        "counter": counter,
        "session_id": session.session_id,
        "kind": session.kind,
        "key_id": session.key_id,
        "path": session.path,
        "digests": list(session.digests),
        "certificate": session.certificate,
        "me": session.me,
        "roster": rpc.roster_value(session.roster),
        "deadline_ms": round(session.deadline * 1000),
        "staging": {"roster": rpc.roster_value(staging["roster"]), "base": staging["base"]} if staging else {},
        "note": session.note,
        "job": job_params(session.job),
        "share": share_digest(root_share),
        "seed": recording.seed,
        "inputs": list(recording.inputs),
        "outputs": recording.outputs,
        "keys": keys.to_cbor(),
        "seq": [[phase, node, n] for (phase, node), n in sorted(session.seq.items())],
        "outbox": [[env.encode(), party] for env, party in session.outbox],
        "guard": guard.subset(session.job.session_ids).to_bytes(),
    }
    return bytes(cbor2.dumps(obj, canonical=True))


# -- reading ---------------------------------------------------------------------------------------


def _require(ok: bool, what: str) -> None:
    if not ok:
        raise ColdStateError(f"cold session record: {what}")


def _is(value: object, kind: type) -> bool:
    return type(value) is kind


def decode(
    data: bytes,
    *,
    identity: NodeIdentity,
    counter: int | None,
    load_share: Callable[[str], KeyShare],
    hedge_key: bytes = b"",
) -> tuple[Session, ReplayGuard]:
    """Rebuild a session from its record and check it against everything it claims.

    ``counter`` is the node's rollback counter now (None without one); the record
    must carry exactly that value. ``load_share`` gives the node's stored key share
    by key id. The job is rebuilt and its inputs replayed; what it sends must hash
    to what the record says was sent.
    """
    try:
        decoded = cbor.decode(data)
    except cbor.InvalidCbor as exc:
        raise ColdStateError("cold session record is not valid CBOR") from exc
    obj = decoded.value
    _require(type(obj) is dict and set(obj) == _KEYS and decoded.canonical, "wrong fields or not canonical")
    _require(obj["format"] == FORMAT and obj["v"] == VERSION, f"unsupported version {obj.get('v')!r}")
    if obj["counter"] != counter or type(obj["counter"]) is not type(counter):
        raise ColdStateError(
            f"the saved session is bound to rollback counter {obj['counter']!r} but the counter is at {counter!r}: "
            "an older copy of the node was put back, or the node stopped between two writes"
        )
    sid, kind, key_id, path = obj["session_id"], obj["kind"], obj["key_id"], obj["path"]
    _require(_is(sid, bytes) and len(sid) == 32, "session id")
    _require(kind in rpc.KINDS and _is(key_id, str) and _is(path, str), "kind, key id or path")
    _require(_is(obj["digests"], list) and all(_is(d, bytes) for d in obj["digests"]), "digests")
    _require(_is(obj["certificate"], bytes) and _is(obj["me"], int) and _is(obj["note"], str), "header fields")
    _require(_is(obj["deadline_ms"], int), "deadline")
    try:
        roster = rpc.parse_roster(obj["roster"])
        staging_obj = obj["staging"]
        _require(_is(staging_obj, dict) and set(staging_obj) in (set(), {"roster", "base"}), "staging")
        staging: dict[str, Any] = {}
        if staging_obj:
            _require(_is(staging_obj["base"], bytes), "staging base")
            staging = {"roster": rpc.parse_roster(staging_obj["roster"]), "base": staging_obj["base"]}
    except rpc.RequestError as exc:
        raise ColdStateError(f"cold session record: {exc}") from exc
    me = obj["me"]
    _require(me in roster and roster[me].node_id == identity.node_id, "this node is not its own party")
    seed, inputs, outputs = obj["seed"], obj["inputs"], obj["outputs"]
    _require(_is(seed, bytes) and len(seed) == SEED_LEN, "seed")
    _require(_is(inputs, list) and all(_is(i, bytes) for i in inputs), "inputs")
    _require(_is(outputs, bytes) and len(outputs) in (0, 32), "outputs")
    _require(_is(obj["job"], dict) and _is(obj["share"], bytes), "job")

    share: KeyShare | None = None
    if obj["share"]:
        share = load_share(key_id)
        if share_digest(share) != obj["share"]:
            raise ColdStateError(f"key {key_id}'s share changed since the session began (a refresh committed?)")
    recording = Recording(seed, list(inputs), b"")
    try:
        job = rebuild_job(kind, sid, me, obj["job"], share=share, rng=recording.rng, hedge_key=hedge_key)
        recording.sent(job.start())
        for raw in inputs:
            recording.sent(job.receive(Envelope.decode(raw)))
    except (ProtocolAbort, UsageError, ValueError) as exc:
        raise ColdStateError(f"the saved session does not replay: {exc}") from exc
    if recording.outputs != outputs:
        raise ColdStateError("the saved session replays to other messages than it sent: it cannot be resumed")

    node_roster = {d.node_id: p for p, d in roster.items()}
    peers: Mapping[str, NodeDescriptor] = {roster[p].node_id: roster[p] for p in job.everyone if p != me}
    try:
        keys = SessionKeys.from_cbor(obj["keys"], identity, sid, node_roster, peers)
    except ValueError as exc:
        raise ColdStateError(f"cold session record: session keys: {exc}") from exc
    seq: dict[tuple[bytes, str], int] = {}
    _require(_is(obj["seq"], list), "seq")
    for entry in obj["seq"]:
        _require(_is(entry, list) and len(entry) == 3, "seq entry")
        phase, node, n = entry
        _require(_is(phase, bytes) and node in node_roster and _is(n, int) and n >= 0, "seq entry")
        seq[(phase, node)] = n
    outbox: list[tuple[Envelope, int]] = []
    _require(_is(obj["outbox"], list), "outbox")
    for entry in obj["outbox"]:
        _require(_is(entry, list) and len(entry) == 2 and _is(entry[0], bytes) and entry[1] in roster, "outbox")
        try:
            outbox.append((Envelope.decode(entry[0]), entry[1]))
        except ValueError as exc:
            raise ColdStateError(f"cold session record: held envelope: {exc}") from exc
    try:
        guard = ReplayGuard.from_bytes(obj["guard"])
    except (ValueError, TypeError) as exc:
        raise ColdStateError(f"cold session record: replay guard: {exc}") from exc
    session = Session(
        sid,
        kind,
        key_id,
        path,
        list(obj["digests"]),
        obj["certificate"],
        job,
        roster,
        me,
        obj["deadline_ms"] / 1000,
        staging,
        seq,
        obj["note"],
        keys,
        outbox,
        recording,
    )
    return session, guard


def run(session: Session, action: Callable[[Job], list[Envelope]], received: Envelope | None = None) -> list[Envelope]:
    """Call the job and keep the cold session's recording up to date (a no-op recording online)."""
    out = action(session.job)
    recording = session.recording
    if isinstance(recording, Recording):
        if received is not None:
            recording.received(received)
        recording.sent(out)
    return out
