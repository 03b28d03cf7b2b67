"""What a signer node measures, for Prometheus (served by :mod:`harbour.util.scrape`, never on the node's port).

- sessions by kind (``keygen``, ``sign``, ``refresh``, ``reshare``, ...) and how
  they ended (``signed``, ``staged``, ``aborted``, ``refused``), and how long the
  ended ones ran, from the signing log's own entries (:meth:`NodeMetrics.recorded`
  is given each one as :class:`~harbour.node.sessions.RunningSessions` writes it);
- requests refused, by the refusal's reason code (the ``error`` code of the
  answer: ``approval``, ``unknown-key``, ``stale-session``, ``bad-request``, ...);
- key shares held, counted in the store when scraped.

Nothing here names a key, a session or a transaction: labels are kinds and codes
from fixed sets, so a scrape says how busy a node is and how often it says no,
not what it signs. The list of every metric is in docs/nodes.md ("Observability").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

SESSION_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0)
"""Seconds from a session's start to its end: a hot signing round trip is a fraction of a second."""

ENDINGS: Final = frozenset({"signed", "staged", "aborted", "refused"})
"""Signing-log outcomes that end a session (``started`` and ``progress`` do not)."""

MAX_OPEN: Final = 4096
"""Start times kept for sessions not yet ended: beyond this the oldest are forgotten (their latency unknown)."""

MAX_LABEL: Final = 40


def _label(value: str) -> str:
    """A label value from a fixed vocabulary, cut short in case a future code is long."""
    return value[:MAX_LABEL] if value.replace("-", "").replace("_", "").isalnum() else "other"


class NodeMetrics:
    """One node's registry and the figures its parts report."""

    def __init__(self, keys_held: Callable[[], int]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.sessions = Counter(
            "harbour_node_sessions",
            "Sessions this node ended since it started, by kind and outcome.",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.session_seconds = Histogram(
            "harbour_node_session_seconds",
            "Time from a session's start on this node to its end, by kind and outcome.",
            ["kind", "outcome"],
            buckets=SESSION_BUCKETS,
            registry=self.registry,
        )
        self.refusals = Counter(
            "harbour_node_refusals",
            "Requests this node answered with an error, by its reason code.",
            ["reason"],
            registry=self.registry,
        )
        self.registry.register(_Keys(keys_held))
        self._open: dict[bytes, float] = {}

    def recorded(self, session_id: bytes, kind: str, outcome: str) -> None:
        """A signing-log entry about a session was written: note its start, or count its end."""
        now = time.monotonic()
        if outcome == "started":
            self._open[session_id] = now
            while len(self._open) > MAX_OPEN:
                self._open.pop(next(iter(self._open)))
            return
        if outcome not in ENDINGS:
            return
        kind, outcome = _label(kind), _label(outcome)
        self.sessions.labels(kind, outcome).inc()
        began = self._open.pop(session_id, None)
        if began is not None:
            self.session_seconds.labels(kind, outcome).observe(now - began)

    def refused(self, reason: str) -> None:
        self.refusals.labels(_label(reason)).inc()


class _Keys(Collector):
    def __init__(self, keys_held: Callable[[], int]) -> None:
        self.keys_held = keys_held

    def describe(self) -> list[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("harbour_node_keys", "Key shares this node holds.", value=self.keys_held())
