"""One session as a node holds it: the job, whom it runs with, and its message state.

A plain record: :class:`~harbour.node.sessions.RunningSessions` drives it, and a cold
node writes it out between two request files (:mod:`harbour.node.coldstate`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harbour.mpc.envelope import Envelope
from harbour.node.handshake import SessionKeys
from harbour.node.identity import NodeDescriptor
from harbour.node.jobs import Job


@dataclass
class Session:
    session_id: bytes
    kind: str
    key_id: str
    path: str
    digests: list[bytes]
    certificate: bytes
    job: Job
    roster: dict[int, NodeDescriptor]
    me: int
    deadline: float
    staging: dict[str, Any] = field(default_factory=dict)
    seq: dict[tuple[bytes, str], int] = field(default_factory=dict)
    note: str = ""
    """What the ``started`` log entry says about the approval (the evidence's transaction and approvers)."""
    keys: SessionKeys | None = None
    """This session's ephemeral keys; None until the session is accepted, forgotten when it ends."""
    outbox: list[tuple[Envelope, int]] = field(default_factory=list)
    """Secret envelopes (and the party each is for) waiting for that peer's hello."""
    recording: Any = None
    """A cold node's :class:`~harbour.node.coldstate.Recording` of the job's inputs; None on an online node."""

    @property
    def node_roster(self) -> dict[str, int]:
        return {d.node_id: p for p, d in self.roster.items()}

    @property
    def peers(self) -> dict[str, NodeDescriptor]:
        """The other nodes this session exchanges messages with, by node id (from our own roster)."""
        return {self.roster[p].node_id: self.roster[p] for p in self.job.everyone if p != self.me}
