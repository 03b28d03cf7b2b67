"""The replay guard: per session and sender, the next sequence number a node accepts.

Authentication says who wrote a message, not that this is the first time it
arrives: the relay could deliver it twice, hold one back or reorder them. The
guard turns each sender's stream into a strict sequence, and it is the one piece
of receiving state a node keeps (and a cold node persists, :meth:`ReplayGuard.to_bytes`).
"""

from __future__ import annotations

from collections.abc import Iterable

import cbor2

from harbour.mpc.envelope import SESSION_ID_LEN
from harbour.node.identity import is_node_id
from harbour.node.sealed.errors import SealedError
from harbour.node.sealed.wire import MAX_SEQ
from harbour.util import cbor

GUARD_FORMAT = "harbour-replay-guard"
GUARD_VERSION = 1


class ReplayGuard:
    """Per session and sender, the next sequence number this node will accept.

    Only the exact next number is accepted (contiguous, hence strictly increasing):
    a lower one is a replay, a higher one means messages in between are missing. The
    refused message is not recorded, so once the missing one arrives the relay may
    deliver it again. One integer per (session, sender) is the whole state, so it is
    small enough to persist after every message; a node that restarts from an older
    copy would accept replays of what it accepted since, so persist before acting.
    """

    __slots__ = ("_next",)

    def __init__(self) -> None:
        self._next: dict[tuple[bytes, str], int] = {}

    def expected(self, session_id: bytes, sender: str) -> int:
        """The next seq accepted from ``sender`` in the session: also how many were accepted."""
        return self._next.get((bytes(session_id), sender), 0)

    def check(self, session_id: bytes, sender: str, seq: int) -> None:
        """Raise SealedError unless ``seq`` is the next one; records nothing."""
        want = self.expected(session_id, sender)
        if seq < want:
            raise SealedError(
                "replay", f"message {seq} from node {sender} in this session was already accepted (replayed)"
            )
        if seq > want:
            raise SealedError(
                "out-of-order",
                f"message {seq} from node {sender} arrived while {want} is expected: "
                f"{seq - want} message(s) before it are missing (dropped or reordered)",
            )

    def accept(self, session_id: bytes, sender: str, seq: int) -> None:
        """Record ``seq`` as accepted; SealedError if it is not the next one."""
        self.check(session_id, sender, seq)
        self._next[(bytes(session_id), sender)] = seq + 1

    def forget(self, session_id: bytes) -> None:
        """Drop a finished session's state.

        Only safe once the session is also refused as unknown (out of the rosters
        given to :func:`open_sealed`); otherwise its old messages would be new again.
        """
        for key in [k for k in self._next if k[0] == session_id]:
            del self._next[key]

    def subset(self, session_ids: Iterable[bytes]) -> ReplayGuard:
        """A copy holding only these sessions' state (to persist one session on its own)."""
        wanted = {bytes(s) for s in session_ids}
        guard = ReplayGuard()
        guard._next = {k: v for k, v in self._next.items() if k[0] in wanted}
        return guard

    def merge(self, other: ReplayGuard) -> None:
        """Take over ``other``'s state (a persisted session brought back)."""
        for key, nxt in other._next.items():
            self._next[key] = max(nxt, self._next.get(key, 0))

    def to_bytes(self) -> bytes:
        """``{"format", "v": 1, "next": [[session_id, sender, next_seq], ...]}`` in canonical CBOR, sorted."""
        entries = [[sid, sender, nxt] for (sid, sender), nxt in sorted(self._next.items())]
        return cbor2.dumps({"format": GUARD_FORMAT, "v": GUARD_VERSION, "next": entries}, canonical=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> ReplayGuard:
        """Strict inverse of :meth:`to_bytes` (ValueError on anything else)."""
        data = bytes(data)
        try:
            decoded = cbor.decode(data)
        except cbor.InvalidCbor as exc:
            raise ValueError("replay guard state is truncated or corrupted (not valid CBOR)") from exc
        obj, canonical = decoded.value, decoded.canonical
        if type(obj) is not dict or obj.get("format") != GUARD_FORMAT:
            raise ValueError("not a Harbour replay guard state")
        if type(obj.get("v")) is not int or obj["v"] != GUARD_VERSION:
            raise ValueError(f"unsupported replay guard version {obj.get('v')!r}")
        if set(obj) != {"format", "v", "next"} or type(obj["next"]) is not list or not canonical:
            raise ValueError("replay guard state is malformed")
        guard = cls()
        previous: tuple[bytes, str] | None = None
        for entry in obj["next"]:
            if type(entry) is not list or len(entry) != 3:
                raise ValueError("replay guard entry is not [session_id, sender, next_seq]")
            sid, sender, nxt = entry
            if type(sid) is not bytes or len(sid) != SESSION_ID_LEN or not is_node_id(sender):
                raise ValueError("replay guard entry has a malformed session id or node id")
            if type(nxt) is not int or not 1 <= nxt <= MAX_SEQ + 1:
                raise ValueError("replay guard entry has an out-of-range sequence number")
            if previous is not None and (sid, sender) <= previous:
                raise ValueError("replay guard entries are not sorted or repeat")
            previous = (sid, sender)
            guard._next[(sid, sender)] = nxt
        return guard
