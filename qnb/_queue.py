"""The shared-lab queue API over a target's pending jobs. Positions are 1-based."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator

from ._errors import QueueError
from ._job import Job
from ._manager import JobManager, has_left_queue


class PendingJob(Job):
    """A queue entry: a :class:`Job` with the queue's vocabulary."""

    @property
    def user_added(self) -> str:
        return self.user

    def wait_for_execution(self, timeout: float | None = None) -> Job:
        """Block until the job starts running (or ends); returns it as a :class:`Job`."""
        waiting = self._manager.when(self.id, has_left_queue)
        try:
            waiting.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"job {self.id[:8]} is still waiting at position {self.position_in_queue()} "
                f"after {timeout} s"
            ) from None
        return Job(self.id, manager=self._manager)


class Queue:
    """The ordered pending jobs of one target (head first)."""

    def __init__(self, target: str, *, manager: JobManager, submit):
        self.target = target
        self._manager = manager
        self._submit = submit

    def _entry(self, job_id: str) -> PendingJob:
        return PendingJob(job_id, manager=self._manager)

    def add(self, circuits, **options) -> PendingJob:
        """Submit at the end of the queue (``options`` as for ``qnb.submit``)."""
        job = self._submit(circuits, target=self.target, front=False, **options)
        return self._entry(job.id)

    def add_to_start(self, circuits, **options) -> PendingJob:
        """Submit at the head of the queue."""
        job = self._submit(circuits, target=self.target, front=True, **options)
        return self._entry(job.id)

    @property
    def pending_jobs(self) -> list[PendingJob]:
        return [self._entry(r.id) for r in self._manager.pending(self.target)]

    @property
    def count(self) -> int:
        return len(self._manager.pending(self.target))

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[PendingJob]:
        return iter(self.pending_jobs)

    def get_at(self, position: int) -> PendingJob:
        """The job at a 1-based position."""
        return self._entry(self._manager.at_position(self.target, position).id)

    def __getitem__(self, position: int) -> PendingJob:
        return self.get_at(position)

    def get(self, job_id: str) -> PendingJob | None:
        """The queue entry of ``job_id``, or None when it is not waiting in this queue."""
        found = any(r.id == job_id for r in self._manager.pending(self.target))
        return self._entry(job_id) if found else None

    def get_by_user_id(self, user: str) -> list[PendingJob]:
        return [self._entry(r.id) for r in self._manager.pending(self.target) if r.user == user]

    def remove_by_id(self, job_id: str) -> PendingJob:
        """Take a waiting job out of the queue; it ends ``cancelled``."""
        rec = self._manager.remove_queued(self.target, job_id=job_id)
        return self._entry(rec.id)

    def remove_by_position(self, position: int, expected_id: str | None = None) -> PendingJob:
        """Remove the job at a 1-based position.

        With ``expected_id`` it refuses (``QueueConflictError``) when another job has
        moved into that position meanwhile.
        """
        rec = self._manager.remove_queued(
            self.target, position=position, expected_id=expected_id
        )
        return self._entry(rec.id)

    def remove_by_user_id(self, user: str) -> list[PendingJob]:
        """Remove every waiting job of ``user``; returns them."""
        removed = []
        for rec in self._manager.pending(self.target):
            if rec.user != user:
                continue
            try:
                self._manager.remove_queued(self.target, job_id=rec.id)
            except QueueError:
                continue  # it started running meanwhile: no longer in the queue
            removed.append(self._entry(rec.id))
        return removed

    def move_to_front(self, job_id: str) -> PendingJob:
        return self._entry(self._manager.move_to_front(job_id).id)

    def __repr__(self) -> str:
        lines = [f"Queue {self.target!r}: {self.count} pending"]
        for pos, rec in enumerate(self._manager.pending(self.target), start=1):
            lines.append(f"  {pos:>3}. {rec.id[:8]}  {rec.user:<12} {rec.name}")
        return "\n".join(lines)
