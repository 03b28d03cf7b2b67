"""The readiness answer's cache: reused while fresh, one probe at a time, never a probe per caller.

In process, with a probe that counts its calls and a clock the test moves
(``/v1/ready`` over a real socket against a node that does not answer is in
``test_attack_operator``).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from harbour.custody.readiness import MAX_AGE, Cached


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Probe:
    """Answers ``{"ready": True, "probe": n}`` for its n-th call; waits for ``go`` when ``hold`` is set."""

    def __init__(self, clock: Clock | None = None, takes: float = 0.0) -> None:
        self.calls = 0
        self.clock = clock
        self.takes = takes
        self.hold = False
        self.go = threading.Event()
        self.started = threading.Event()
        self.failing = 0
        """How many calls, from the first, fail."""

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        self.started.set()
        if self.hold:
            assert self.go.wait(10)
        if self.clock is not None:
            self.clock.now += self.takes
        if self.calls <= self.failing:
            raise RuntimeError("probe failed")
        return {"ready": True, "probe": self.calls}


def test_an_answer_is_reused_while_fresh_and_replaced_after() -> None:
    clock = Clock()
    probe = Probe()
    cached = Cached(probe, max_age=MAX_AGE, clock=clock)
    assert cached.answer()["probe"] == 1
    clock.now += MAX_AGE * 0.9
    assert cached.answer()["probe"] == 1 and probe.calls == 1
    clock.now += MAX_AGE * 0.1
    assert cached.answer()["probe"] == 2 and probe.calls == 2


def test_the_age_counts_from_the_end_of_a_slow_probe() -> None:
    clock = Clock()
    probe = Probe(clock, takes=5 * MAX_AGE)  # a node that does not answer: the probe outlasts the cache
    cached = Cached(probe, max_age=MAX_AGE, clock=clock)
    assert cached.answer()["probe"] == 1
    assert cached.answer()["probe"] == 1 and probe.calls == 1


def test_callers_own_their_copy() -> None:
    cached = Cached(Probe(), max_age=60)
    cached.answer()["ready"] = False
    assert cached.answer()["ready"] is True


def test_many_callers_at_once_cause_one_probe_and_all_get_its_answer() -> None:
    probe = Probe()
    probe.hold = True
    cached = Cached(probe, max_age=60)
    answers: list[dict[str, Any]] = []
    callers = [threading.Thread(target=lambda: answers.append(cached.answer())) for _ in range(16)]
    for caller in callers:
        caller.start()
    assert probe.started.wait(10)
    probe.go.set()
    for caller in callers:
        caller.join(10)
    assert probe.calls == 1
    assert answers == [{"ready": True, "probe": 1}] * 16


def test_while_a_probe_runs_right_after_the_last_answer_callers_get_that_answer_at_once() -> None:
    clock = Clock()
    probe = Probe()
    cached = Cached(probe, max_age=MAX_AGE, clock=clock)
    cached.answer()
    clock.now += MAX_AGE * 1.5  # expired, but callers kept coming: a probe starts now
    probe.hold, probe.started = True, threading.Event()
    prober = threading.Thread(target=cached.answer)
    prober.start()
    assert probe.started.wait(10)
    try:
        assert cached.answer() == {"ready": True, "probe": 1}  # does not wait for the probe in flight
        assert probe.calls == 2
    finally:
        probe.go.set()
        prober.join(10)
    assert cached.answer() == {"ready": True, "probe": 2}


def test_an_answer_left_unasked_a_while_is_not_handed_out_while_its_replacement_runs() -> None:
    clock = Clock()
    probe = Probe()
    cached = Cached(probe, max_age=MAX_AGE, clock=clock)
    cached.answer()
    clock.now += 60 * MAX_AGE  # nobody asked for a minute: that answer says nothing of now
    probe.hold, probe.started = True, threading.Event()
    prober = threading.Thread(target=cached.answer)
    prober.start()
    assert probe.started.wait(10)
    answers: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: answers.append(cached.answer()))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and not answers  # it waits for the probe in flight
    probe.go.set()
    prober.join(10)
    waiter.join(10)
    assert answers == [{"ready": True, "probe": 2}] and probe.calls == 2


def test_when_the_probe_in_flight_fails_a_waiting_caller_runs_the_next() -> None:
    probe = Probe()
    probe.hold, probe.failing = True, 1
    cached = Cached(probe, max_age=60)
    failures: list[BaseException] = []

    def first() -> None:
        with pytest.raises(RuntimeError) as raised:
            cached.answer()
        failures.append(raised.value)

    prober = threading.Thread(target=first)
    prober.start()
    assert probe.started.wait(10)
    answers: list[dict[str, Any]] = []
    waiter = threading.Thread(target=lambda: answers.append(cached.answer()))
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive()
    probe.go.set()
    prober.join(10)
    waiter.join(10)
    assert len(failures) == 1 and answers == [{"ready": True, "probe": 2}]
