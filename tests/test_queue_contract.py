"""One Queue, two backends: the same contract runs against qnb's own queue (the emulator,
one job at a time) and a queue server's (``qnb.connect`` to an in-process server, as
its admin, so that the same operations are allowed on both)."""

from __future__ import annotations

import time

import pytest

import qnb
from qnb import JobStatus, PendingJob
from conftest import wait_until
from test_remote import block_device, connect
from test_server_support import BELL, lab  # noqa: F401


@pytest.fixture(params=["local", "server"])
def backend(request, manager):
    """(queue, who submits, cancel the blocker) with the device busy, so jobs wait."""
    if request.param == "local":
        blocker = qnb.submit(BELL, target="emulator", shots=100_000, name="blocker")
        wait_until(lambda: blocker.status is JobStatus.RUNNING, what="the blocker running")
        yield qnb.queue("emulator"), "tester", blocker.cancel
    else:
        app, server, tokens = request.getfixturevalue("lab")
        blocker = block_device(server)
        connect(app, tokens["root"])
        wait_until(lambda: server.load(blocker.id).status is JobStatus.RUNNING, what="blocker")
        yield qnb.queue("lab"), "root", lambda: server.cancel(blocker.id)


def test_the_queue_contract(backend):
    queue, user, release = backend
    added = [queue.add(BELL, shots=10, name=f"job-{i}") for i in range(3)]
    assert all(isinstance(entry, PendingJob) for entry in added)
    # Reads see the caller's own writes: no waiting for the queue to catch up.
    assert [e.id for e in queue.pending_jobs] == [e.id for e in added]
    assert [e.position for e in queue.pending_jobs] == [1, 2, 3]
    assert queue.count == len(queue) == 3 and [e.id for e in queue] == [e.id for e in added]
    assert queue.get_at(2).id == queue[2].id == added[1].id
    assert queue.get(added[2].id).name == "job-2" and queue.get("f" * 32) is None
    assert [e.id for e in queue.get_by_user_id(user)] == [e.id for e in added]
    assert added[1].user_added == user and added[1].position_in_queue() == 2

    head = queue.add_to_start(BELL, shots=10, name="urgent")
    assert isinstance(head, PendingJob) and queue.get_at(1).id == head.id

    with pytest.raises(qnb.QueueConflictError):
        queue.remove_by_position(2, expected_id=added[2].id)  # position 2 holds job-0
    assert queue.count == 4  # nothing was removed

    removed = queue.remove_by_position(2, expected_id=added[0].id)
    assert isinstance(removed, PendingJob) and removed.id == added[0].id
    assert removed.status is JobStatus.CANCELLED
    assert queue.get(added[0].id) is None

    moved = queue.move_to_front(added[2].id)
    assert isinstance(moved, PendingJob) and queue.get_at(1).id == added[2].id

    gone = queue.remove_by_id(head.id)
    assert gone.status is JobStatus.CANCELLED and queue.get(head.id) is None
    with pytest.raises(qnb.QueueError):
        queue.remove_by_id(head.id)  # not waiting any more
    with pytest.raises(qnb.QueueError, match="1-based"):
        queue.get_at(99)

    rest = queue.remove_by_user_id(user)
    assert sorted(e.id for e in rest) == sorted([added[1].id, added[2].id])
    assert all(e.status is JobStatus.CANCELLED for e in rest)
    assert queue.count == 0 and queue.pending_jobs == []
    release()


def test_a_remote_queue_reads_its_own_writes(manager, lab):
    app, server, tokens = lab
    block_device(server)
    connect(app, tokens["alice"])
    queue = qnb.queue("lab")
    for round_ in range(3):
        ids = [queue.add(BELL, shots=10, name=f"r{round_}-{i}").id for i in range(16)]
        seen = [e.id for e in queue.pending_jobs]
        assert all(i in seen for i in ids), f"round {round_}: {len(set(ids) - set(seen))} missing"


def test_a_refused_submit_raises_at_once_and_leaves_nothing(manager, lab):
    app, server, tokens = lab
    block_device(server)
    connect(app, tokens["alice"])
    before = len(server.find(limit=100))
    started = time.monotonic()
    with pytest.raises(qnb.RemoteAuthError, match="403"):
        qnb.queue("lab").add_to_start(BELL, shots=10)  # only an admin may
    assert time.monotonic() - started < 10
    assert qnb.jobs(target="lab") == []
    assert len(server.find(limit=100)) == before


def test_a_remote_job_has_its_start_and_elapsed_time(manager, lab):
    app, server, tokens = lab
    connect(app, tokens["alice"])
    job = qnb.submit(BELL, target="lab", shots=200)
    job.result(timeout=60)
    assert job.time_started is not None and job.elapsed is not None
    assert job.time_added <= job.time_started <= job.time_finished
    stored = manager.store.load_job(job.id)
    assert stored.time_started == job.time_started


def test_repr_of_a_remote_job_does_no_network_io(manager, lab):
    app, server, tokens = lab
    block_device(server)
    _, transport = connect(app, tokens["alice"])
    job = qnb.submit(BELL, target="lab", shots=10)
    transport.down = True  # any request would now fail or retry for seconds
    before = len(transport.requests)
    started = time.monotonic()
    text = repr(job) + job._repr_html_()
    assert time.monotonic() - started < 0.5 and "lab" in text
    # Nothing read for the repr. (The queue positions a display shows are read by a
    # watcher on the manager's loop, in the background, which the display may start: its
    # GET /v1/queue can land in this moment, but nothing waits for it.)
    sent = zip(transport.requests[before:], transport.senders[before:])
    assert [r for r, sender in sent if r.startswith(("GET /v1/jobs", "GET /v1/queue"))
            and sender != "RemoteTarget._read_positions"] == []
    transport.down = False
