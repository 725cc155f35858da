"""The shared-lab queue API: one :class:`Queue` and one :class:`PendingJob` over a queue
backend — qnb's own queue of a scheduled target, or the queue a target keeps itself (a
``qnb serve`` queue server). The ten operations are written once, with the same return
types and errors for both. Positions are 1-based."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Iterator, Mapping

from ._errors import QueueError, UnknownJobError
from ._job import Job
from ._manager import JobManager, has_left_queue, is_done
from ._records import JobRecord, QueueEntry, entry_at
from ._targets import QueueBackend

#: How often a wait on another user's job (not in this kernel's store) asks the target.
FOREIGN_WAIT_INTERVAL = 0.5
#: How long a removal waits for this kernel's record to show it (a server's event feed
#: tells within milliseconds; the removal itself has succeeded either way).
READ_YOUR_WRITES_SECONDS = 10.0


class LocalQueueBackend:
    """qnb's own queue of a scheduled target, held by the JobManager."""

    def __init__(self, manager: JobManager, target: str):
        self._manager = manager
        self._target = target

    def entries(self) -> list[QueueEntry]:
        return [_entry(rec, pos) for pos, rec in enumerate(self._manager.pending(self._target), 1)]

    def entry(self, job_id: str) -> QueueEntry | None:
        # The queue is sorted: the job's position by bisection, not a list of everyone.
        rec = self._manager.record(job_id)
        if rec is None or rec.target != self._target:
            return None
        position = self._manager.position(rec)
        return None if position is None else _entry(rec, position)

    def remove(self, *, job_id=None, position=None, expected_id=None) -> QueueEntry:
        rec = self._manager.remove_queued(
            self._target, job_id=job_id, position=position, expected_id=expected_id
        )
        return _entry(rec, None)

    def remove_user(self, user: str) -> list[QueueEntry]:
        removed = []
        for rec in self._manager.pending(self._target):
            if rec.user != user:
                continue
            try:
                removed.append(self.remove(job_id=rec.id))
            except QueueError:
                continue  # it started running meanwhile: no longer in the queue
        return removed

    def move_to_front(self, job_id: str) -> QueueEntry:
        rec = self._manager.move_to_front(job_id)
        return _entry(rec, self._manager.position(rec))

    def known_positions(self) -> Mapping[str, int]:
        return {rec.id: pos for pos, rec in enumerate(self._manager.pending(self._target), 1)}


def _entry(rec: JobRecord, position: int | None) -> QueueEntry:
    return QueueEntry(
        position, rec.id, rec.user, rec.name, rec.time_added, rec.status, rec.priority
    )


class PendingJob(Job):
    """A queue entry: a :class:`Job` with the queue's vocabulary.

    Your own jobs (in this kernel's store) are full jobs. Another user's job on a
    shared server is a :class:`ForeignPendingJob`: what the queue shows of it.
    """

    def __init__(self, entry: QueueEntry, queue: Queue, *, manager: JobManager):
        self._entry = entry
        self._queue = queue
        super().__init__(entry.id, manager=manager)

    @property
    def user_added(self) -> str:
        return self._entry.user

    user = user_added
    time_added = property(lambda self: self._entry.time_added)

    @property
    def job(self) -> Job | None:
        """The plain :class:`Job` when this kernel's store has it (your own jobs)."""
        return Job(self.id, manager=self._manager)

    @property
    def position(self) -> int | None:
        """The 1-based position when the queue was read (``position_in_queue()``: now)."""
        return self._entry.position

    def position_in_queue(self) -> int | None:
        return self._queue._position_of(self.id)

    def wait_for_execution(self, timeout: float | None = None) -> Job | PendingJob:
        """Block until the job starts running (or ends); returns it as a :class:`Job`."""
        waiting = self._manager.when(self.id, has_left_queue)
        try:
            waiting.result(timeout)
        except concurrent.futures.TimeoutError:
            self._timed_out(timeout)
        return Job(self.id, manager=self._manager)

    def _timed_out(self, timeout: float | None):
        raise TimeoutError(
            f"job {self.id[:8]} is still waiting at position {self.position_in_queue()} "
            f"after {timeout} s"
        ) from None

    def _settled(self) -> PendingJob:
        """This entry once this kernel's record shows a removal the target answered
        (reads see the caller's own writes)."""
        try:
            self._manager.when(self.id, is_done).result(READ_YOUR_WRITES_SECONDS)
        except concurrent.futures.TimeoutError:
            pass  # the target answered; the record follows when its feed tells it
        return self


class ForeignPendingJob(PendingJob):
    """Another user's job on a shared server: its queue entry (id, user, name, time
    added, status) and position; it can be waited for, or removed (by an admin)."""

    def __init__(self, entry: QueueEntry, queue: Queue, *, manager: JobManager):
        # Not Job.__init__: this kernel's store does not have the job.
        self._entry, self._queue = entry, queue
        self._id, self._manager = entry.id, manager
        self._final = self._result_cache = None

    def _rec(self) -> JobRecord:
        raise QueueError(
            f"job {self.id[:8]} belongs to {self._entry.user}; this kernel sees only "
            "its queue entry (id, user, name, time_added, status, position)"
        )

    job = property(lambda self: None)
    name = property(lambda self: self._entry.name)
    status = property(lambda self: self._entry.status)

    def cancel(self):
        """Taken out of the queue (admins only)."""
        return self._queue.remove_by_id(self.id).status

    def wait_for_execution(self, timeout: float | None = None) -> PendingJob:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.position_in_queue() is not None:
            if deadline is not None and time.monotonic() >= deadline:
                self._timed_out(timeout)
            time.sleep(FOREIGN_WAIT_INTERVAL)  # another user's job: only the server knows
        return self

    def _settled(self) -> PendingJob:
        return self  # no record of it here to wait for

    def summary(self) -> str:
        e = self._entry
        return f"{e.name!r} {e.id[:8]} of {e.user} on {self._queue.target}: {e.status.value}"


class Queue:
    """The ordered pending jobs of one target (head first)."""

    def __init__(
        self,
        target: str,
        *,
        manager: JobManager,
        backend: QueueBackend,
        submit: Callable[..., Job],
    ):
        self.target = target
        self._manager = manager
        self._backend = backend
        self._submit = submit

    def _pending(self, entry: QueueEntry) -> PendingJob:
        try:
            return PendingJob(entry, self, manager=self._manager)
        except UnknownJobError:  # another user's job on a shared server
            return ForeignPendingJob(entry, self, manager=self._manager)

    def _removed(self, entry: QueueEntry) -> PendingJob:
        """The entry a removal answered with, once this kernel's record of it (if it has
        one) shows the removal too."""
        return self._pending(entry)._settled()

    def _entries(self) -> list[QueueEntry]:
        return self._backend.entries()

    def _position_of(self, job_id: str) -> int | None:
        found = self._backend.entry(job_id)
        return None if found is None else found.position

    def _added(self, job: Job) -> PendingJob:
        # Submit returned once the target had the job, so the queue shows it now (or it
        # has started already, and the entry says so).
        found = self._backend.entry(job.id)
        if found is None:
            found = QueueEntry(None, job.id, job.user, job.name, job.time_added, job.status)
        return self._pending(found)

    def add(self, circuits, **options) -> PendingJob:
        """Submit at the end of the queue (``options`` as for ``qnb.submit``)."""
        return self._added(self._submit(circuits, target=self.target, front=False, **options))

    def add_to_start(self, circuits, **options) -> PendingJob:
        """Submit at the head of the queue (admins only on a shared server)."""
        return self._added(self._submit(circuits, target=self.target, front=True, **options))

    @property
    def pending_jobs(self) -> list[PendingJob]:
        return [self._pending(e) for e in self._entries()]

    @property
    def count(self) -> int:
        return len(self._entries())

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[PendingJob]:
        return iter(self.pending_jobs)

    def get_at(self, position: int) -> PendingJob:
        """The job at a 1-based position."""
        return self._pending(entry_at(self._entries(), position, self.target))

    def __getitem__(self, position: int) -> PendingJob:
        return self.get_at(position)

    def get(self, job_id: str) -> PendingJob | None:
        """The queue entry of ``job_id``, or None when it is not waiting in this queue."""
        found = self._backend.entry(job_id)
        return None if found is None else self._pending(found)

    def get_by_user_id(self, user: str) -> list[PendingJob]:
        return [self._pending(e) for e in self._entries() if e.user == user]

    def remove_by_id(self, job_id: str) -> PendingJob:
        """Take a waiting job out of the queue; it ends ``cancelled``."""
        return self._removed(self._backend.remove(job_id=job_id))

    def remove_by_position(self, position: int, expected_id: str | None = None) -> PendingJob:
        """Remove the job at a 1-based position.

        With ``expected_id`` it refuses (``QueueConflictError``) when another job has
        moved into that position meanwhile.
        """
        return self._removed(self._backend.remove(position=position, expected_id=expected_id))

    def remove_by_user_id(self, user: str) -> list[PendingJob]:
        """Remove every waiting job of ``user``; returns them."""
        return [self._removed(e) for e in self._backend.remove_user(user)]

    def move_to_front(self, job_id: str) -> PendingJob:
        """Move a waiting job to the very head, ahead of any priority (admins only on a
        shared server)."""
        return self._pending(self._backend.move_to_front(job_id))

    def __repr__(self) -> str:
        entries = self._entries()
        lines = [f"Queue {self.target!r}: {len(entries)} pending"]
        for e in entries:
            lines.append(f"  {e.position:>3}. {e.id[:8]}  {e.user:<12} {e.name}")
        return "\n".join(lines)
