"""Sending each address's signed transactions in nonce order, whichever process or thread signed them.

Signing runs in parallel, in one process or several, but a node may refuse a
nonce gap (the embedded chain does), so transactions from one address go out in
nonce order. What is next is read from the database every time, never remembered:
the lowest nonce of the address's transactions still waiting to be sent. When it
is signed, it and the signed ones right after it go out as one run; when it is
not, nothing from the address goes out until whoever signs it drains the address
again. A process that stops after sending an address's latest transaction
therefore leaves nothing behind that another process would wait for.

One drainer at a time per address: a lock in this process (threads) and the
database-wide lock given (processes, :func:`harbour.custody.claims.exclusive`).
This module is given a function that lists what waits, one that sends a run and
says what became of each entry, and the lock; it knows nothing of the database
or the chain, so it can be tested on its own (``tests/test_sender.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Final, NamedTuple

SENT: Final = "sent"
RETRY: Final = "retry"
OBSOLETE: Final = "obsolete"

MAX_ROUNDS: Final = 100
"""Runs one drain sends at most before it lets the next drainer (or the sweeper) go on: no thread loops forever."""


class Waiting(NamedTuple):
    """A transaction of the address that is not sent yet: its nonce, its id, whether its signature is committed."""

    nonce: int
    tx_id: str
    signed: bool


def next_run(waiting: list[Waiting]) -> list[tuple[int, str]]:
    """What can go out now: from the lowest waiting nonce, the signed transactions with consecutive nonces.

    Empty when the lowest is not signed yet: whoever signs it sends it, and the run behind it.
    """
    run: list[tuple[int, str]] = []
    for entry in sorted(waiting):
        if not entry.signed or (run and entry.nonce != run[-1][0] + 1):
            break
        run.append((entry.nonce, entry.tx_id))
    return run


class OrderedSender:
    """Drains an address: sends what is next in nonce order, as read from the database, until nothing is."""

    def __init__(
        self,
        send: Callable[[str, list[tuple[int, str]]], list[str]],
        waiting: Callable[[str], list[Waiting]],
        exclusive: Callable[[str], AbstractContextManager[object]],
    ) -> None:
        """``send(address, run)`` sends a run of ``(nonce, tx_id)`` in order and says what became of each one it
        tried: SENT, or a last RETRY (refused; the sweeper drains the address again) or OBSOLETE (it changed
        meanwhile; the list is read again); the rest of the run was not tried. ``waiting(address)`` lists the
        address's transactions not yet sent; ``exclusive(address)`` is the lock other processes take to send."""
        self._send = send
        self._waiting = waiting
        self._exclusive = exclusive
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def address_lock(self, address: str) -> threading.Lock:
        """This process's lock of the address; take it before the database-wide one (:meth:`exclusive`)."""
        with self._lock:
            return self._locks.setdefault(address, threading.Lock())

    def exclusive(self, address: str) -> AbstractContextManager[object]:
        """The database-wide lock of the address: hold it (after :meth:`address_lock`) to change what waits."""
        return self._exclusive(address)

    def drain(self, address: str) -> None:
        """Send everything from ``address`` that can go out now, in nonce order; return at a gap or a refusal."""
        with self.address_lock(address), self._exclusive(address):
            for _ in range(MAX_ROUNDS):
                run = next_run(self._waiting(address))
                if not run:
                    return
                outcomes = self._send(address, run)
                assert 0 < len(outcomes) <= len(run)
                if outcomes[-1] == RETRY:
                    return
