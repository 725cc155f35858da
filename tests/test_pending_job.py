"""A queue entry is one of two small classes: your own job (a full Job) or another
user's on a shared server (its entry only), chosen once when the entry is made."""

from __future__ import annotations

import pytest

import qnb
from conftest import BELL_QASM
from qnb._errors import QueueError
from qnb._queue import ForeignPendingJob, PendingJob, Queue
from qnb._records import QueueEntry
from qnb._status import JobStatus


class Backend:
    """A shared queue holding one job of this kernel and one of another user."""

    def __init__(self, mine: QueueEntry, theirs: QueueEntry):
        self.list = [mine, theirs]
        self.removed: list[str] = []

    def entries(self):
        return list(self.list)

    def entry(self, job_id):
        return next((e for e in self.list if e.id == job_id), None)

    def remove(self, *, job_id=None, position=None, expected_id=None):
        found = self.entry(job_id)
        self.list.remove(found)
        self.removed.append(job_id)
        return QueueEntry(None, found.id, found.user, found.name, found.time_added, JobStatus.CANCELLED)


def test_own_and_other_users_entries(manager):
    job = qnb.submit(BELL_QASM, shots=5, name="mine")
    job.result(timeout=60)
    mine = QueueEntry(1, job.id, job.user, "mine", job.time_added, JobStatus.QUEUED)
    theirs = QueueEntry(2, "f" * 32, "bob", "bob's", 5.0, JobStatus.QUEUED)
    backend = Backend(mine, theirs)
    queue = Queue("lab", manager=manager, backend=backend, submit=qnb.submit)
    own, other = queue.pending_jobs
    assert type(own) is PendingJob and own.job == job and own.name == "mine"
    assert type(other) is ForeignPendingJob and isinstance(other, PendingJob)
    assert (other.user, other.user_added, other.name, other.status, other.position) == (
        "bob", "bob", "bob's", JobStatus.QUEUED, 2,
    )
    assert other.job is None and other.position_in_queue() == 2
    assert "bob's" in repr(other) and "of bob" in other.summary()
    with pytest.raises(QueueError, match="belongs to bob"):
        other.shots
    assert other.cancel() is JobStatus.CANCELLED and backend.removed == [theirs.id]
    assert other.wait_for_execution(timeout=1) is other  # out of the queue now
