"""Failed authentications: logged, limited per client address and per credential from it, bursts alerted.

Each failure (no or malformed token, unknown, revoked or expired credential, a
request from outside its networks, a bad signature) is logged on
``harbour.api.auth`` with the credential id when the token has the shape of one,
the client address and the reason, never the token or its secret. Each also
takes a token from two buckets, one for the client address and one for the
credential id *from that address*; a request whose bucket is empty is refused
with 429 and ``Retry-After`` before its token is even looked at, so guessing
secrets costs one try per :data:`REFILL_SECONDS` after the first :data:`BURST`,
and a flood from one address does not reach the database.

The credential's bucket is keyed by the address too because credential ids are
not secret (a token starts with one, logs name them): keyed by the id alone, anyone
could send a few bad tokens naming a victim's id and lock its holder out from
everywhere. The secrets are long enough that spreading guesses over many
addresses gains nothing.

When a bucket empties, one WARNING line starting with :data:`ALERT_PREFIX`
names it (a stable prefix for alerting rules), and when it is a credential's,
its organisation's audit log records ``credential.auth-burst``, at most once per
credential in :data:`AUDIT_INTERVAL` seconds (``auth_burst_interval`` in
custody.json), so that one address cannot fill the audit log; while a bucket stays
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
AUDIT_INTERVAL: Final = 3600.0
"""Seconds between two ``credential.auth-burst`` audit events of one credential (per process)."""
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
        self,
        burst: int = BURST,
        refill: float = REFILL_SECONDS,
        *,
        audit_interval: float = AUDIT_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._credentials = Buckets(burst, refill, clock)
        self._addresses = Buckets(burst, refill, clock)
        self._audited: OrderedDict[str, float] = OrderedDict()
        self.audit_interval = audit_interval
        self.clock = clock
        self._lock = threading.Lock()

    @staticmethod
    def _key(credential_id: str, address: str) -> str:
        return f"{credential_id} {address}"

    def retry_after(self, credential_id: str | None, address: str) -> int:
        """Whole seconds the caller must wait before trying (0: go ahead)."""
        with self._lock:
            wait = self._addresses.wait(address)
            if credential_id is not None:
                wait = max(wait, self._credentials.wait(self._key(credential_id, address)))
        return math.ceil(wait)

    def _audit_due(self, credential_id: str) -> bool:
        """True at most once per :attr:`audit_interval` for a credential (the caller holds the lock)."""
        now = self.clock()
        last = self._audited.get(credential_id)
        if last is not None and now - last < self.audit_interval:
            return False
        self._audited[credential_id] = now
        self._audited.move_to_end(credential_id)
        while len(self._audited) > MAX_KEYS:
            self._audited.popitem(last=False)
        return True

    def failed(self, credential_id: str | None, address: str, reason: str) -> bool:
        """Record one failure: log it, spend from both buckets, and alert if one ran dry.

        True when the credential's bucket for this address ran dry now and its burst was not
        recorded within :attr:`audit_interval`: the moment to record it in its organisation's
        audit log too.
        """
        log.warning("authentication failed: credential %s from %s: %s", credential_id or "-", address, reason)
        with self._lock:
            emptied = []
            if self._addresses.take(address):
                emptied.append(f"client address {address}")
            credential_dry = credential_id is not None and self._credentials.take(self._key(credential_id, address))
            if credential_dry:
                emptied.append(f"credential {credential_id} from {address}")
            audit = credential_dry and credential_id is not None and self._audit_due(credential_id)
        for what in emptied:
            log.warning(
                "%s: %s failed to authenticate %d times in a burst; refusing it with 429 until it slows down",
                ALERT_PREFIX,
                what,
                self._addresses.burst,
            )
        return audit
