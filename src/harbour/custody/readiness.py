"""Whether the service can do its work now: the database, the chain node and the signer nodes, each asked.

Liveness (``/v1/health``) says the process answers; readiness says whether a
request that needs the service's dependencies can succeed. Each is asked
directly and briefly (a ``SELECT 1``, the chain's block number, a ``describe``
to every signer node), and the answer says which is down and why in a word, so
a load balancer can stop routing to the process and an operator can see where
to look (the probe needs no credential, so the errors' own words, which name
hosts and ports, go to the log instead). It is not ready when the database or the chain cannot be reached, or
when no signer node answers; some nodes down is reported (``degraded``) but
still ready, since a threshold of them signs.

Nobody needs a credential to ask, so nobody may make the service ask its
dependencies once per request: :class:`Cached` answers from the last probe
while it is younger than :data:`MAX_AGE`, and runs one probe at a time (a
single flight). Callers that arrive while a probe is in flight get the last
answer, or, before there is one, wait for that probe's; however many ask, the
nodes, the chain and the database see at most one probe per :data:`MAX_AGE`
and each node one connection for it.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from harbour.chains.evm import EvmClient
from harbour.custody.signer import Signer

NODE_TIMEOUT: Final = 2.0
"""Seconds a signer node has to answer the readiness probe."""
MAX_AGE: Final = 1.0
"""Seconds a readiness answer is reused, counted from the end of the probe that gave it."""
Status = Literal["ok", "degraded", "down"]
log = logging.getLogger("harbour.custody.readiness")


@dataclass(frozen=True)
class Check:
    status: Status
    detail: str

    def document(self) -> dict[str, Any]:
        return {"status": self.status, "detail": self.detail}


def _down(what: str, exc: BaseException) -> Check:
    """The probe's answer names the dependency only; the error's own words (hosts, ports) go to the log."""
    lines = str(exc).strip().splitlines()
    log.warning("readiness: %s: %s", what, (lines[0] if lines else type(exc).__name__)[:300])
    return Check("down", what)


def database(sessions: sessionmaker[Session]) -> Check:
    try:
        with sessions() as s:
            s.execute(text("SELECT 1"))
    except Exception as exc:  # any failure to answer is "down"; the reason is shown
        return _down("the database does not answer", exc)
    return Check("ok", "the database answers")


def chain(client: EvmClient) -> Check:
    try:
        height = client.block_number()
    except Exception as exc:
        return _down("the chain node does not answer", exc)
    return Check("ok", f"chain {client.chain_id} at block {height}")


def nodes(signer: Signer) -> tuple[Check, dict[str, bool]]:
    try:
        live = signer.live(NODE_TIMEOUT)
    except Exception as exc:
        return _down("the signer nodes could not be asked", exc), {}
    up = sorted(name for name, ok in live.items() if ok)
    down = sorted(name for name, ok in live.items() if not ok)
    if not live:
        return Check("down", "no signer node is configured"), live
    if not up:
        return Check("down", f"no signer node answers ({', '.join(down)})"), live
    if down:
        return Check("degraded", f"{', '.join(down)} do(es) not answer; {', '.join(up)} do"), live
    return Check("ok", f"all {len(up)} signer node(s) answer"), live


def readiness(sessions: sessionmaker[Session], client: EvmClient, signer: Signer) -> dict[str, Any]:
    """``{ready, checks: {database, chain, nodes}}``; ``nodes`` also lists each node's answer."""
    node_check, live = nodes(signer)
    checks = {"database": database(sessions), "chain": chain(client), "nodes": node_check}
    ready = all(check.status != "down" for check in checks.values())
    documents = {name: check.document() for name, check in checks.items()}
    documents["nodes"]["nodes"] = [{"name": name, "answers": ok} for name, ok in sorted(live.items())]
    return {"ready": ready, "checks": documents}


class Cached:
    """A probe's answer, reused while younger than ``max_age`` seconds, with one probe in flight at a time.

    The age counts from the probe's end, so a slow probe (a node that does not
    answer takes :data:`NODE_TIMEOUT`) does not hand out an answer already
    stale. A caller that finds the answer expired and no probe running runs the
    next one. One that finds a probe running gets the last answer at once when
    the probe followed it closely (it had expired less than ``max_age`` before:
    callers keep coming), so a flood of callers does not hold worker threads for
    a slow probe; otherwise (the first answer, or one left unasked a while) it
    waits for the probe's. An answer is thus at most twice ``max_age`` plus one
    probe's duration old.
    """

    def __init__(
        self, probe: Callable[[], dict[str, Any]], max_age: float = MAX_AGE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._probe = probe
        self._max_age = max_age
        self._clock = clock
        self._state = threading.Condition()
        self._last: tuple[float, dict[str, Any]] | None = None
        """When the last probe ended (``clock``) and its answer."""
        self._flight: float | None = None
        """When the probe in flight started; None when none is."""

    def answer(self) -> dict[str, Any]:
        """The readiness document: the last one while fresh, else a new probe's (the last, while one runs)."""
        with self._state:
            while True:
                last, now = self._last, self._clock()
                if last is not None and now - last[0] < self._max_age:
                    return copy.deepcopy(last[1])  # callers own what they get; the answer stays as probed
                if self._flight is None:
                    self._flight = now
                    break
                if last is not None and self._flight - last[0] < 2 * self._max_age:
                    return copy.deepcopy(last[1])  # a probe is in flight right after it: the last answer meanwhile
                self._state.wait()  # the probe in flight's answer (or, if it failed, the next probe's turn)
        try:
            document = self._probe()
            with self._state:
                self._last = (self._clock(), document)
            return copy.deepcopy(document)
        finally:
            with self._state:
                self._flight = None
                self._state.notify_all()
