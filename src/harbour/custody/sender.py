"""Sending each address's signed transactions in nonce order, whichever signing finishes first.

Signing runs in parallel, but a node may refuse a nonce gap (the embedded chain
does), so transactions from one address go out in nonce order. This is the one
piece of the pipeline that knows about that order; it is given a function that
sends a run and says what became of each entry, and knows nothing of the
database or the chain, so it can be tested on its own (``tests/test_sender.py``).
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from typing import Final

SENT: Final = "sent"
RETRY: Final = "retry"
OBSOLETE: Final = "obsolete"


class OrderedSender:
    """Sends each address's signed transactions in nonce order, whichever signing finishes first.

    Whoever hands in a transaction drains the address's queue under that address's
    lock, so nothing handed in is left behind; a send that fails stops the queue
    there (the sweeper hands the transaction in again), and an entry whose
    withdrawal was abandoned meanwhile is dropped.
    """

    def __init__(
        self, send: Callable[[str, list[tuple[int, str]]], list[str]], first_nonce: Callable[[str], int]
    ) -> None:
        """``send(address, run)`` sends a run of ``(nonce, tx_id)`` in order and says what became of each one it
        tried: SENT, or a last RETRY (refused; the sweeper hands it in again) or OBSOLETE (dropped); the rest of
        the run was not tried and waits for its turn again."""
        self._send = send
        self._first_nonce = first_nonce
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._next: dict[str, int] = {}
        self._ready: dict[str, list[tuple[int, str]]] = {}

    def address_lock(self, address: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(address, threading.Lock())

    def ready(self, address: str, nonce: int, tx_id: str) -> None:
        with self._lock:
            heapq.heappush(self._ready.setdefault(address, []), (nonce, tx_id))
        with self.address_lock(address):
            if address not in self._next:
                self._next[address] = self._first_nonce(address)
            while True:
                # every entry that is next in line if the ones before it go out: one run, sent and committed together
                run: list[tuple[int, str]] = []
                with self._lock:
                    heap, expect = self._ready[address], self._next[address]
                    while heap and heap[0][0] <= expect:
                        entry = heapq.heappop(heap)
                        run.append(entry)
                        expect = max(expect, entry[0] + 1)
                if not run:
                    return
                outcomes = self._send(address, run)
                assert 0 < len(outcomes) <= len(run)
                for (nonce, _), outcome in zip(run, outcomes, strict=False):
                    if outcome == SENT:
                        self._next[address] = max(self._next[address], nonce + 1)
                with self._lock:
                    for entry in run[len(outcomes) :]:  # not tried: after a refusal, or an obsolete entry
                        heapq.heappush(heap, entry)
                if outcomes[-1] == RETRY:
                    return

    def rewind_locked(self, address: str, nonce: int) -> None:
        """Nonces from ``nonce`` on were released (never sent): send from there again. Hold address_lock."""
        if address in self._next:
            self._next[address] = min(self._next[address], nonce)
