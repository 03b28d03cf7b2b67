"""Fold repeated identical log lines: the first one, then a count per interval.

When the database or the chain is down, every request fails the same way; a
line per request would bury the one line an operator needs (and fill the disk:
hundreds of tracebacks a minute). :class:`RepeatFilter` lets the first record of
a kind through, drops the identical ones that follow within ``interval``
seconds, and lets the next one through after the interval with how many it
dropped (``... [repeated 542 times in the last 60 s]``), so the log still says
that the outage went on, and for how long.

Two records are the same kind when they come from the same logger at the same
level with the same message once formatted, and the same exception type. The
filter keeps at most :data:`MAX_KINDS` kinds (the oldest are forgotten), so a
flood of distinct messages cannot grow it without bound.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

MAX_KINDS: Final = 1024
DEFAULT_INTERVAL: Final = 60.0


@dataclass
class _Seen:
    since: float
    suppressed: int = 0


class RepeatFilter(logging.Filter):
    """A :class:`logging.Filter` passing one record per kind per ``interval`` seconds, counting the rest."""

    def __init__(self, interval: float = DEFAULT_INTERVAL, *, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval = interval
        self.clock = clock
        self._seen: OrderedDict[tuple[str, int, str, str], _Seen] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        exc_type = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        kind = (record.name, record.levelno, record.getMessage(), exc_type)
        now = self.clock()
        with self._lock:
            seen = self._seen.get(kind)
            if seen is not None and now - seen.since < self.interval:
                seen.suppressed += 1
                return False
            suppressed = seen.suppressed if seen is not None else 0
            self._seen[kind] = _Seen(now)
            self._seen.move_to_end(kind)
            while len(self._seen) > MAX_KINDS:
                self._seen.popitem(last=False)
        if suppressed:
            record.msg = f"{record.getMessage()} [repeated {suppressed} times in the last {self.interval:g} s]"
            record.args = None
        return True


def install(names: Iterable[str], interval: float = DEFAULT_INTERVAL) -> RepeatFilter:
    """One shared filter on each named logger (records those loggers emit; children need their own entry)."""
    shared = RepeatFilter(interval)
    for name in names:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RepeatFilter) for f in logger.filters):
            logger.addFilter(shared)
    return shared
