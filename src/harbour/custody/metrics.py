"""What a custody service process measures, for Prometheus (served by :mod:`harbour.util.scrape`).

Two kinds of figure, and the difference matters when several processes serve one
PostgreSQL database (each exposes its own ``/metrics``):

- this process's own, kept as it works: signing latency (:attr:`ServiceMetrics.signing`,
  observed by the pipeline around each signing attempt), API requests by route
  template and status (:attr:`ServiceMetrics.requests`, counted by the API's
  request middleware), and the pipeline's queues. Add them up across processes.
- the deployment's, read when scraped: withdrawals by state (one grouped count
  over an indexed column), signed withdrawals not yet sent, and how far the
  deposit scanner is behind the chain's head. Every process reports the same
  figures: take one (``max``), never the sum.

Each :class:`ServiceMetrics` has a registry of its own (not the library's global
one), so two services in one process (the tests, the demo) never mix figures.
A dependency that is down makes its figures absent and its ``*_up`` gauge 0:
the scrape itself still answers, since the operator needs it most then.
The list of every metric is in docs/custody.md ("Observability").
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from harbour.chains.evm import EvmClient
from harbour.custody import models as m
from harbour.custody import outages, states
from harbour.custody.uow import UnitOfWork

SIGNING_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
"""Seconds: a 2-of-3 ECDSA signature over loopback takes about a second; a cold node's, minutes."""

UNMATCHED: Final = "unmatched"
"""The route label of a request no route matched: paths are the client's to choose, labels must stay few."""


class ServiceMetrics:
    """The registry of one service process, with the figures its parts observe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.signing = Histogram(
            "harbour_signing_seconds",
            "Time the signer nodes took over one signing attempt of a withdrawal, by outcome.",
            ["outcome"],
            buckets=SIGNING_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "harbour_api_requests",
            "API requests answered by this process, by method, route template and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self._watched = False

    def watch(self, uow: UnitOfWork, chain: EvmClient, queues: Callable[[], Mapping[str, int]]) -> None:
        """Read the deployment's figures from ``uow`` and ``chain``, and the pipeline's ``queues``, at each scrape."""
        if self._watched:
            raise RuntimeError("these metrics watch a service already")
        self._watched = True
        self.registry.register(_Snapshot(uow, chain, queues))


class _Snapshot(Collector):
    """The figures read when scraped: cheap queries only (a scrape every 15 s must cost nothing)."""

    def __init__(self, uow: UnitOfWork, chain: EvmClient, queues: Callable[[], Mapping[str, int]]) -> None:
        self.uow = uow
        self.chain = chain
        self.queues = queues

    def describe(self) -> list[GaugeMetricFamily]:
        return []  # the families depend on what answers; nothing to check at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = GaugeMetricFamily(
            "harbour_pipeline_queue_depth",
            "Withdrawals in this process's signing pipeline: submitted (waiting for a worker), in_flight (being "
            "prepared, signed or sent).",
            labels=["queue"],
        )
        for name, depth in sorted(self.queues().items()):
            queue.add_metric([name], depth)
        yield queue
        stored = self._read_database()
        yield _up("harbour_database_up", "Whether the database answered this scrape (1) or not (0).", stored)
        if stored is not None:
            counts, unsent, scanned = stored
            withdrawals = GaugeMetricFamily(
                "harbour_withdrawals",
                "Withdrawals of every organisation by state (the deployment's).",
                labels=["state"],
            )
            for state in states.STATES:
                withdrawals.add_metric([state], counts.get(state, 0))
            yield withdrawals
            yield GaugeMetricFamily(
                "harbour_pipeline_signed_unsent",
                "Withdrawals signed but not yet accepted by the chain (the deployment's; the ordered sender's queue).",
                value=unsent,
            )
        head = self._read_head()
        yield _up("harbour_chain_up", "Whether the chain answered this scrape (1) or not (0).", head)
        if head is None:
            return
        yield GaugeMetricFamily("harbour_chain_head_block", "The chain's latest block number.", value=head)
        scanned = stored[2] if stored is not None else None
        if scanned is not None:
            yield GaugeMetricFamily(
                "harbour_chain_scanned_block", "The last block the deposit scanner has read.", value=scanned
            )
            yield GaugeMetricFamily(
                "harbour_chain_lag_blocks",
                "Blocks between the chain's head and the last one the deposit scanner has read.",
                value=max(head - scanned, 0),
            )

    def _read_database(self) -> tuple[dict[str, int], int, int | None] | None:
        """Withdrawals by state, signed ones not sent, the scanner's last block; None if the database is down."""
        try:
            with self.uow.read() as s:
                counts = {
                    state: int(count)
                    for state, count in s.execute(
                        select(m.Transaction.state, func.count())
                        .where(m.Transaction.kind == "withdrawal")
                        .group_by(m.Transaction.state)
                    )
                }
                unsent = s.scalar(
                    select(func.count())
                    .select_from(m.Transaction)
                    .where(m.Transaction.state == states.SIGNING, m.Transaction.raw.is_not(None))
                )
                cursor = s.get(m.ChainCursor, "deposits")
                return counts, int(unsent or 0), None if cursor is None else cursor.block
        except Exception as exc:
            if outages.dependency_of(exc) is None:
                raise
            return None

    def _read_head(self) -> int | None:
        try:
            return self.chain.block_number()
        except Exception as exc:
            if outages.dependency_of(exc) is None:
                raise
            return None


def _up(name: str, documentation: str, answer: object) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=0 if answer is None else 1)
