"""The vendor targets' calls on daemon threads with deadlines (qnb/_targets/_calls.py)."""

from __future__ import annotations

import threading

import pytest

from conftest import wait_until
from qnb._targets._calls import CallTimeout, DeadlineCalls


@pytest.fixture
def calls():
    made = DeadlineCalls("test-calls", threads=4)
    yield made
    made.close()


def test_calls_queued_at_once_run_at_once_beside_an_idle_thread(calls):
    calls.call(5, lambda: None)  # one thread, idle now
    release = threading.Event()
    started: list[int] = []
    futures = [calls.submit(lambda i=i: (started.append(i), release.wait(10))) for i in range(3)]
    try:
        # Each call has a thread: none waits behind another (it did: two calls queued
        # while one thread was idle both went to that thread).
        wait_until(lambda: len(started) == 3, timeout=5, what="three calls running together")
    finally:
        release.set()
    assert [f.result(timeout=5)[1] for f in futures] == [True, True, True]


def test_no_more_threads_than_allowed_and_every_call_answered(calls):
    release = threading.Event()
    running = []
    lock = threading.Lock()

    def work(i):
        with lock:
            running.append(i)
        release.wait(10)
        return i

    futures = [calls.submit(work, i) for i in range(10)]
    wait_until(lambda: len(running) == 4, timeout=5, what="four calls running")
    assert len(running) == 4  # the fifth waits for a thread
    release.set()
    assert sorted(f.result(timeout=5) for f in futures) == list(range(10))


def test_a_call_past_its_deadline_is_abandoned_and_another_takes_its_thread(calls):
    stuck = threading.Event()
    with pytest.raises(CallTimeout):
        calls.call(0.2, stuck.wait, 10)
    assert calls.abandoned == 1
    assert calls.call(5, lambda: "answered") == "answered"
    stuck.set()
    wait_until(lambda: calls.abandoned == 0, timeout=5, what="the abandoned call to end")
