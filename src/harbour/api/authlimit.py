"""Failed authentications: logged, limited per credential id and per client address, bursts alerted.

Each failure (no or malformed token, unknown, revoked or expired credential, a
request from outside its networks, a bad signature) is logged on
``harbour.api.auth`` with the credential id when the token has the shape of one,
the client address and the reason, never the token or its secret. Each also
takes a token from two buckets, one for the credential id and one for the
client address; a request whose bucket is empty is refused with 429 and
``Retry-After`` before its token is even looked at, so guessing secrets costs
one try per :data:`REFILL_SECONDS` after the first :data:`BURST`, and a flood
from one address does not reach the database.

When a bucket empties, one WARNING line starting with :data:`ALERT_PREFIX`
names it (a stable prefix for alerting rules), and when it is a credential's,
its organisation's audit log records ``credential.auth-burst``; while it stays
empty the refusals are not logged one by one.

The buckets live in memory, per process, and at most :data:`MAX_KEYS` of each are
kept (the least recently used are forgotten first): a service run as several processes
allows each process its own burst, and a restart forgets them. The client
address is the socket's peer: behind a reverse proxy, that is the proxy, so run
the proxy's own limits there or serve clients directly.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

BURST: Final = 10
"""Failures allowed at once per credential id and per address."""
REFILL_SECONDS: Final = 6.0
"""After the burst, one more failure allowed per this many seconds (10 a minute)."""
MAX_KEYS: Final = 10_000
ALERT_PREFIX: Final = "AUTH-BURST"
_CREDENTIAL_ID = re.compile(r"hbk_([0-9a-f-]{1,36})_")

log = logging.getLogger("harbour.api.auth")


def credential_id_of(token: str | None) -> str | None:
    """The credential id a token names, when it has the shape of one (the id is not secret; the rest is)."""
    match = _CREDENTIAL_ID.match(token or "")
    return match.group(1) if match else None


@dataclass
class Bucket:
    tokens: float
    updated: float


class Buckets:
    """Token buckets by key: ``take`` spends one, ``wait`` says how long until one is there."""

    def __init__(self, burst: int, refill: float, clock: Callable[[], float]) -> None:
        self.burst = burst
        self.refill = refill
        self.clock = clock
        self._buckets: OrderedDict[str, Bucket] = OrderedDict()

    def _get(self, key: str) -> Bucket:
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = Bucket(float(self.burst), now)
            self._buckets[key] = bucket
            self._prune()
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.updated) / self.refill)
            bucket.updated = now
        self._buckets.move_to_end(key)
        return bucket

    def _prune(self) -> None:
        """Forget the least recently used keys beyond :data:`MAX_KEYS` (constant time: a flood of new
        addresses must not make each failure scan them all)."""
        while len(self._buckets) > MAX_KEYS:
            self._buckets.popitem(last=False)

    def wait(self, key: str) -> float:
        """Seconds until ``key`` may fail again (0: it may now)."""
        if key not in self._buckets:
            return 0.0
        bucket = self._get(key)
        return 0.0 if bucket.tokens >= 1 else (1 - bucket.tokens) * self.refill

    def take(self, key: str) -> bool:
        """Spend one token; True when this emptied the bucket (the moment to alert)."""
        bucket = self._get(key)
        had = bucket.tokens >= 1
        bucket.tokens = max(0.0, bucket.tokens - 1)
        return had and bucket.tokens < 1


class FailedAuthentications:
    """The per-process record of failed authentications (see the module docstring)."""

    def __init__(
        self, burst: int = BURST, refill: float = REFILL_SECONDS, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._credentials = Buckets(burst, refill, clock)
        self._addresses = Buckets(burst, refill, clock)
        self._lock = threading.Lock()

    def retry_after(self, credential_id: str | None, address: str) -> int:
        """Whole seconds the caller must wait before trying (0: go ahead)."""
        with self._lock:
            wait = self._addresses.wait(address)
            if credential_id is not None:
                wait = max(wait, self._credentials.wait(credential_id))
        return math.ceil(wait)

    def failed(self, credential_id: str | None, address: str, reason: str) -> bool:
        """Record one failure: log it, spend from both buckets, and alert if one ran dry.

        True when the credential's bucket ran dry now: the moment to record the burst in its
        organisation's audit log too.
        """
        log.warning("authentication failed: credential %s from %s: %s", credential_id or "-", address, reason)
        with self._lock:
            emptied = []
            if self._addresses.take(address):
                emptied.append(f"client address {address}")
            credential_dry = credential_id is not None and self._credentials.take(credential_id)
            if credential_dry:
                emptied.append(f"credential {credential_id}")
        for what in emptied:
            log.warning(
                "%s: %s failed to authenticate %d times in a burst; refusing it with 429 until it slows down",
                ALERT_PREFIX,
                what,
                self._addresses.burst,
            )
        return credential_dry
