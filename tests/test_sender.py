"""The pipeline's ordered sender: runs of consecutive nonces, in order, each nonce once, whichever process signed it.

The database is a dict here (nonce -> unsigned, signed or sent) that two senders
share, as two service processes share one PostgreSQL database; a lock per address
stands in for the database-wide one.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator

from harbour.custody.sender import OBSOLETE, RETRY, SENT, OrderedSender, Waiting, next_run

ADDRESS = "0x" + "ab" * 20


class Database:
    """What the senders read (the waiting transactions) and what the chain they send to records."""

    def __init__(self) -> None:
        self.state: dict[int, str] = {}  # nonce -> "unsigned" | "signed" | "sent"
        self.runs: list[list[int]] = []
        self.script: dict[int, str] = {}
        self.lock = threading.Lock()
        self.exclusive_lock = threading.Lock()

    def waiting(self, address: str) -> list[Waiting]:
        assert address == ADDRESS
        with self.lock:
            return [Waiting(n, f"tx{n}", s == "signed") for n, s in self.state.items() if s != "sent"]

    def send(self, address: str, run: list[tuple[int, str]]) -> list[str]:
        with self.lock:
            self.runs.append([n for n, _ in run])
            outcomes = []
            for nonce, tx_id in run:
                assert tx_id == f"tx{nonce}"
                outcome = self.script.pop(nonce, SENT)
                outcomes.append(outcome)
                if outcome == SENT:
                    assert self.state[nonce] == "signed", "only committed signatures are sent"
                    self.state[nonce] = "sent"
                else:
                    break
            return outcomes

    @contextlib.contextmanager
    def exclusive(self, address: str) -> Iterator[None]:
        with self.exclusive_lock:
            yield

    def sender(self) -> OrderedSender:
        return OrderedSender(self.send, self.waiting, self.exclusive)

    def sign(self, sender: OrderedSender, *nonces: int) -> None:
        for n in nonces:
            with self.lock:
                self.state[n] = "signed"
            sender.drain(ADDRESS)


def test_the_run_is_the_signed_consecutive_nonces_from_the_lowest_waiting() -> None:
    assert next_run([Waiting(4, "b", True), Waiting(3, "a", True), Waiting(6, "d", True)]) == [(3, "a"), (4, "b")]
    assert next_run([Waiting(3, "a", False), Waiting(4, "b", True)]) == []
    assert next_run([Waiting(3, "a", True), Waiting(4, "b", False), Waiting(5, "c", True)]) == [(3, "a")]
    assert next_run([]) == []


def test_a_gap_waits_and_the_run_behind_it_goes_out_together() -> None:
    db = Database()
    sender = db.sender()
    db.state.update({3: "unsigned", 4: "unsigned", 5: "unsigned", 6: "unsigned"})
    db.sign(sender, 5, 4)
    assert db.runs == []  # nonce 3 is not signed yet
    db.sign(sender, 3)
    assert db.runs == [[3, 4, 5]]
    db.sign(sender, 6)
    assert db.runs == [[3, 4, 5], [6]]


def test_a_refused_send_stops_the_run_and_the_next_drain_sends_it_again() -> None:
    db = Database()
    sender = db.sender()
    db.state.update({0: "unsigned", 1: "signed", 2: "signed"})
    db.script[1] = RETRY
    db.sign(sender, 0)
    assert db.runs == [[0, 1, 2]]  # 1 refused: 2 was not tried
    sender.drain(ADDRESS)  # the sweeper drains again
    assert db.runs == [[0, 1, 2], [1, 2]]
    assert db.state == {0: "sent", 1: "sent", 2: "sent"}


def test_an_obsolete_entry_makes_the_sender_read_again() -> None:
    db = Database()
    sender = db.sender()
    db.state.update({0: "signed", 1: "signed"})
    db.script[0] = OBSOLETE  # it changed between the read and the send: read again, send what is there now
    sender.drain(ADDRESS)
    assert db.runs == [[0, 1], [0, 1]]
    assert db.state == {0: "sent", 1: "sent"}


def test_a_process_sends_after_another_sent_the_nonces_before_it() -> None:
    """The rolling deploy: process b's next nonce is whatever the database says now, not what it saw first."""
    db = Database()
    a, b = db.sender(), db.sender()
    db.state.update({0: "unsigned", 1: "unsigned", 2: "unsigned", 3: "unsigned"})
    b.drain(ADDRESS)  # b looks first: nothing can go out
    db.sign(a, 0, 1, 2)  # a signs and sends 0..2, then stops
    db.sign(b, 3)  # b signs 3: it goes out, with nothing remembered from before
    assert db.runs == [[0], [1], [2], [3]]
    assert all(s == "sent" for s in db.state.values())


def test_many_threads_of_two_processes_in_any_order_send_each_nonce_once_in_order() -> None:
    db = Database()
    senders = [db.sender(), db.sender()]
    nonces = list(range(300))
    db.state.update(dict.fromkeys(nonces, "unsigned"))
    random.Random(7).shuffle(nonces)
    chunks = [nonces[i::8] for i in range(8)]

    def sign(index: int, chunk: list[int]) -> None:
        db.sign(senders[index % 2], *chunk)

    threads = [threading.Thread(target=sign, args=(i, c)) for i, c in enumerate(chunks)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [n for run in db.runs for n in run]
    assert sent == list(range(300))
