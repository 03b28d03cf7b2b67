"""The pipeline's ordered sender: runs of consecutive nonces, in order, each nonce once."""

from __future__ import annotations

import random
import threading

from harbour.custody.sender import OBSOLETE, RETRY, SENT, OrderedSender

ADDRESS = "0x" + "ab" * 20


class Chain:
    """Records every run it is handed; answers each entry from a script (default: sent)."""

    def __init__(self, first: int = 0) -> None:
        self.first = first
        self.runs: list[list[int]] = []
        self.script: dict[int, str] = {}
        self.lock = threading.Lock()

    def send(self, address: str, run: list[tuple[int, str]]) -> list[str]:
        assert address == ADDRESS
        with self.lock:
            self.runs.append([n for n, _ in run])
        outcomes = []
        for nonce, tx_id in run:
            assert tx_id == f"tx{nonce}"
            outcome = self.script.pop(nonce, SENT)
            outcomes.append(outcome)
            if outcome != SENT:
                break
        return outcomes

    def sender(self) -> OrderedSender:
        return OrderedSender(self.send, lambda address: self.first)


def test_a_gap_waits_and_the_run_behind_it_goes_out_together() -> None:
    chain = Chain(first=3)
    sender = chain.sender()
    sender.ready(ADDRESS, 5, "tx5")
    sender.ready(ADDRESS, 4, "tx4")
    assert chain.runs == []  # nonce 3 is not signed yet
    sender.ready(ADDRESS, 3, "tx3")
    assert chain.runs == [[3, 4, 5]]
    sender.ready(ADDRESS, 6, "tx6")
    assert chain.runs == [[3, 4, 5], [6]]


def test_a_refused_send_stops_the_run_and_the_rest_waits_for_it() -> None:
    chain = Chain()
    sender = chain.sender()
    sender.ready(ADDRESS, 1, "tx1")
    sender.ready(ADDRESS, 2, "tx2")
    chain.script[0] = SENT
    chain.script[1] = RETRY
    sender.ready(ADDRESS, 0, "tx0")
    assert chain.runs == [[0, 1, 2]]  # 1 refused: 2 was not tried
    sender.ready(ADDRESS, 1, "tx1")  # handed in again (the sweeper does this)
    assert chain.runs == [[0, 1, 2], [1, 2]]
    sender.ready(ADDRESS, 3, "tx3")
    assert chain.runs[-1] == [3]


def test_an_obsolete_entry_is_dropped_without_moving_the_next_nonce() -> None:
    chain = Chain()
    sender = chain.sender()
    sender.ready(ADDRESS, 1, "tx1")
    chain.script[0] = OBSOLETE  # abandoned meanwhile: nonce 0 is free again
    sender.ready(ADDRESS, 0, "tx0")
    assert chain.runs == [[0, 1]]  # 1 not tried: it cannot go out while 0 is unsent
    sender.ready(ADDRESS, 0, "tx0")  # nonce 0 given to a new withdrawal
    assert chain.runs == [[0, 1], [0, 1]]


def test_already_sent_nonces_do_not_block_the_queue() -> None:
    chain = Chain(first=0)
    sender = chain.sender()
    sender.ready(ADDRESS, 0, "tx0")
    sender.ready(ADDRESS, 0, "tx0")  # handed in twice (a retry after a restart): told to the chain, which says sent
    sender.ready(ADDRESS, 1, "tx1")
    assert chain.runs == [[0], [0], [1]]


def test_many_threads_in_any_order_send_each_nonce_once_in_order() -> None:
    chain = Chain()
    sender = chain.sender()
    nonces = list(range(300))
    random.Random(7).shuffle(nonces)
    chunks = [nonces[i::8] for i in range(8)]

    def hand_in(chunk: list[int]) -> None:
        for n in chunk:
            sender.ready(ADDRESS, n, f"tx{n}")

    threads = [threading.Thread(target=hand_in, args=(c,)) for c in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sent = [n for run in chain.runs for n in run]
    assert sent == list(range(300))
