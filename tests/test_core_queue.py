"""The shared-lab queue API on the emulator (one job runs at a time, so jobs queue)."""

from __future__ import annotations

import threading

import cirq
import pytest

import qnb
from qnb import JobStatus
from conftest import wait_until

a, b = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.measure(a, b, key="m"))


@pytest.fixture
def queue(manager):
    """The emulator's queue with a long job running at its head (cancelled at the end)."""
    q = qnb.queue("emulator")
    blocker = q.add(BELL, compile=True, shots=20_000, name="blocker")
    wait_until(lambda: blocker.status is JobStatus.RUNNING, what="blocker running")
    yield q
    for entry in q.pending_jobs:
        entry.cancel()
    blocker.cancel()


def add(q, name, **options):
    options.setdefault("shots", 50)
    return q.add(BELL, compile=True, name=name, **options)


def test_positions_are_one_based_and_in_queue_order(queue):
    first, second = add(queue, "first"), add(queue, "second")
    urgent = queue.add_to_start(BELL, compile=True, shots=50, name="urgent")
    assert [e.name for e in queue.pending_jobs] == ["urgent", "first", "second"]
    assert queue.count == len(queue) == 3
    assert [urgent.position_in_queue(), first.position_in_queue(), second.position_in_queue()] == [1, 2, 3]
    assert queue.get_at(1) == urgent and queue[2] == first and queue[3] == second
    assert queue.get(second.id) == second
    assert queue.get("not-a-queued-id") is None
    assert isinstance(queue[1], qnb.PendingJob) and isinstance(queue[1], qnb.Job)
    assert urgent.user_added == "tester" and urgent.time_added >= first.time_added


@pytest.mark.parametrize("position", [0, 4, -1])
def test_positions_out_of_range(queue, position):
    for name in ("a", "b", "c"):
        add(queue, name)
    with pytest.raises(qnb.QueueError, match=f"position {position} is out of range.*valid now: 1 to 3"):
        queue.get_at(position)
    with pytest.raises(qnb.QueueError, match="out of range"):
        queue.remove_by_position(position)
    assert queue.count == 3


def test_empty_queue_says_so(manager):
    with pytest.raises(qnb.QueueError, match="the queue is empty"):
        qnb.queue("emulator")[1]


def test_remove_by_position_checks_the_expected_job(queue):
    first, second = add(queue, "first"), add(queue, "second")
    seen_at_1 = queue[1]
    assert seen_at_1 == first
    queue.add_to_start(BELL, compile=True, shots=50, name="jumped in")  # the queue moves
    with pytest.raises(qnb.QueueConflictError, match="the queue moved. Nothing was removed"):
        queue.remove_by_position(1, expected_id=seen_at_1.id)
    assert queue.count == 3 and first.status is JobStatus.QUEUED
    removed = queue.remove_by_position(2, expected_id=first.id)
    assert removed == first and first.status is JobStatus.CANCELLED
    assert [e.name for e in queue.pending_jobs] == ["jumped in", "second"]
    assert second.position_in_queue() == 2


def test_remove_by_id_and_by_user(queue):
    mine = [add(queue, f"mine {i}") for i in range(3)]
    theirs = add(queue, "theirs", user="alice")
    assert queue.remove_by_id(mine[1].id) == mine[1]
    assert mine[1].status is JobStatus.CANCELLED
    assert [e.name for e in queue.get_by_user_id("tester")] == ["mine 0", "mine 2"]
    assert queue.get_by_user_id("alice") == [theirs]
    removed = queue.remove_by_user_id("tester")
    assert removed == [mine[0], mine[2]]
    assert queue.pending_jobs == [theirs]
    assert all(job.status is JobStatus.CANCELLED for job in mine)


def test_remove_refuses_a_job_not_in_the_queue(queue):
    running = queue.pending_jobs  # the blocker runs, so it is not pending
    assert running == []
    blocker = qnb.jobs(status="running")[0]
    with pytest.raises(qnb.QueueError, match="is not in the 'emulator' queue \\(it is running\\)"):
        queue.remove_by_id(blocker.id)


def test_move_to_front(queue):
    first, second = add(queue, "first"), add(queue, "second")
    queue.move_to_front(second.id)
    assert queue.pending_jobs == [second, first]
    with pytest.raises(qnb.QueueError, match="not waiting in a queue"):
        queue.move_to_front(qnb.jobs(status="running")[0].id)


def test_wait_for_execution_returns_when_the_job_starts(manager):
    q = qnb.queue("emulator")
    head = q.add(BELL, compile=True, shots=600, name="head")  # ~0.3 s
    waiting = q.add(BELL, compile=True, shots=50, name="next")
    assert waiting.position_in_queue() == 1
    with pytest.raises(TimeoutError, match="still waiting at position 1"):
        waiting.wait_for_execution(timeout=0.01)
    job = waiting.wait_for_execution(timeout=30)
    assert job.status in (JobStatus.RUNNING, JobStatus.COMPLETED)
    assert head.done()  # one job at a time: the head had finished
    assert waiting.position_in_queue() is None
    assert job.result(timeout=30)


def test_queue_runs_jobs_in_order(queue):
    jobs = [add(queue, f"j{i}", shots=20) for i in range(3)]
    front = queue.add_to_start(BELL, compile=True, shots=20, name="front")
    blocker = qnb.jobs(status="running")[0]
    blocker.cancel()  # frees the device: the queue drains in its order
    for job in [*jobs, front]:
        job.result(timeout=60)
    by_start = sorted([*jobs, front], key=lambda j: j.time_started)
    assert [j.name for j in by_start] == ["front", "j0", "j1", "j2"]
    assert blocker.time_finished <= front.time_started


def test_priority_then_order(queue):
    low = add(queue, "low", priority=-1)
    normal = [add(queue, f"n{i}") for i in range(2)]
    high = add(queue, "high", priority=5)
    high_front = queue.add_to_start(BELL, compile=True, shots=50, name="high front", priority=5)
    normal_front = queue.add_to_start(BELL, compile=True, shots=50, name="n front")
    assert [e.name for e in queue.pending_jobs] == [
        "high front", "high", "n front", "n0", "n1", "low"
    ]
    assert high.position_in_queue() == 2 and low.position_in_queue() == 6
    # To front means the very head, ahead of every priority.
    queue.move_to_front(low.id)
    assert queue[1] == low and low.position_in_queue() == 1
    assert [normal_front.position_in_queue(), high_front.position_in_queue()] == [4, 2]
    assert all(j.status is JobStatus.QUEUED for j in [*normal, high])


def test_priority_runs_first_and_is_kept_by_resubmit_and_the_store(queue):
    jobs = [add(queue, "later"), add(queue, "sooner", priority=3)]
    qnb.jobs(status="running")[0].cancel()  # free the device
    for job in jobs:
        job.result(timeout=60)
    assert jobs[1].time_started < jobs[0].time_started
    again = jobs[1].resubmit()
    assert again.result(timeout=60) and qnb.get_job(again.id).items
    from qnb._manager import get_manager

    assert get_manager().store.load_job(again.id).priority == 3


@pytest.mark.parametrize("priority", [101, -101, 1.5, "high", True])
def test_bad_priority(manager, priority):
    with pytest.raises(qnb.InvalidOptionError, match="priority must be a whole number from -100 to 100"):
        qnb.submit(BELL, priority=priority)
    assert qnb.jobs() == []
