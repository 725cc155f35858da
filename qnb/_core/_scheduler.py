"""The queues qnb keeps itself: one per scheduled target, in one order (higher priority
first, then queue order; :func:`qnb._store.queue_order`), with the operations of a
shared lab queue. A target runs at most ``max_running_jobs`` jobs at once; the next one
starts when one ends. Targets that own their queue (a queue server, a vendor) are not
here: their jobs go straight to them.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Callable, Iterable

from .. import _lifecycle
from .._errors import QueueConflictError, QueueError
from .._records import JobRecord, entry_at
from .._status import IN_QUEUE
from .._store import queue_order
from .._targets import Target
from ._context import Core


class Scheduler:
    def __init__(
        self,
        core: Core,
        *,
        changed: Callable[[JobRecord], None],
        start: Callable[[JobRecord, Target], None],
    ):
        """``changed``: a record changed (write-behind); ``start``: drive a job that
        leaves the queue to run (on the core's loop)."""
        self.core = core
        self._changed = changed
        self._start = start
        self._queues: dict[str, list[JobRecord]] = defaultdict(list)
        self._running: dict[str, int] = defaultdict(int)
        self._seq_back = 0.0
        self._seq_front = 0.0

    # -- into the queue (under the core's lock) -------------------------------------------

    def enqueue(self, rec: JobRecord, *, front: bool) -> None:
        """By priority, then at the end (or the head) of its priority's jobs."""
        if front:
            self._seq_front -= 1
            rec.queue_seq = self._seq_front
        else:
            self._seq_back += 1
            rec.queue_seq = self._seq_back
        bisect.insort(self._queues[rec.target], rec, key=queue_order)
        _lifecycle.enqueue(rec)
        self._changed(rec)

    def take_over(self, records: Iterable[JobRecord]) -> None:
        """Jobs taken over from a dead server process keep their place (in queue order)
        and start as their targets have room; new jobs go behind them (or, at the front,
        ahead of them)."""
        records = sorted(records, key=queue_order)
        for rec in records:
            self.core.records[rec.id] = rec
            self._queues[rec.target].append(rec)
        seqs = [rec.queue_seq for rec in records]
        self._seq_back = max([self._seq_back, *seqs])
        self._seq_front = min([self._seq_front, *seqs])
        loop = self.core.loop
        for name in {rec.target for rec in records}:
            loop.call_soon_threadsafe(self.schedule, self.core.targets.get(name))

    def has_room(self, target: Target) -> bool:
        return self._running[target.name] < target.max_running_jobs

    def waits(self, rec: JobRecord, target: Target) -> bool:
        """Whether ``rec`` waits in qnb's queue of ``target`` for a running job to end
        (it is not among the jobs the next :meth:`schedule` starts)."""
        position = self.position(rec)  # (None: not in qnb's queue)
        return position is not None and position > target.max_running_jobs - self._running[target.name]

    # -- running (on the loop) --------------------------------------------------------------

    def schedule(self, target: Target) -> None:
        """Start waiting jobs while ``target`` has room."""
        with self.core.lock:
            if self.core.closed:
                return
            queue = self._queues[target.name]
            while queue and self.has_room(target):
                rec = queue.pop(0)
                self._running[target.name] += 1
                _lifecycle.start(rec)
                self._changed(rec)
                self._start(rec, target)

    def ended(self, target: Target) -> None:
        """A job of ``target`` stopped running: the next may start."""
        with self.core.lock:
            self._running[target.name] -= 1
        self.schedule(target)

    # -- the queue operations (under the core's lock) -------------------------------------

    def is_queued(self, rec: JobRecord) -> bool:
        return rec.status in IN_QUEUE and rec in self._queues[rec.target]

    def discard(self, rec: JobRecord) -> None:
        queue = self._queues[rec.target]
        if rec in queue:
            queue.remove(rec)

    def cancel_queued(self, rec: JobRecord) -> None:
        # The queue is ours, so removing it from the queue is the confirmation.
        self._queues[rec.target].remove(rec)
        rec.live.circuits = rec.live.resolvers = rec.live.circuit_json = None  # it never runs
        _lifecycle.cancel_queued(rec)
        self._changed(rec)

    def pending(self, target: str) -> list[JobRecord]:
        """The target's queue, head first."""
        return list(self._queues[target])

    def queued_targets(self) -> list[str]:
        """The targets that have jobs waiting in qnb's queue."""
        return [name for name, queue in self._queues.items() if queue]

    def at_position(self, target: str, position: int) -> JobRecord:
        return entry_at(self._queues[target], position, target)

    def remove(self, target: str, rec: JobRecord) -> JobRecord:
        """Take ``rec`` out of ``target``'s queue (it ends ``cancelled``)."""
        if rec not in self._queues[target]:
            raise QueueError(
                f"job {rec.id[:8]} is not in the {target!r} queue (it is {rec.status.value}); "
                "use job.cancel() for a running job"
            )
        self.cancel_queued(rec)
        return rec

    def remove_at(self, target: str, position: int, expected_id: str | None) -> JobRecord:
        """Take out the job at ``position`` (1-based) if it is still ``expected_id``."""
        rec = self.at_position(target, position)
        if expected_id is not None and rec.id != expected_id:
            raise QueueConflictError(
                f"position {position} of the {target!r} queue now holds job "
                f"{rec.id[:8]} ({rec.name}), not {expected_id[:8]}; the queue moved. "
                "Nothing was removed; look at the queue again."
            )
        self.cancel_queued(rec)
        return rec

    def move_to_front(self, rec: JobRecord) -> None:
        queue = self._queues[rec.target]
        if rec not in queue:
            raise QueueError(
                f"job {rec.id[:8]} is not waiting in a queue (it is {rec.status.value})"
            )
        queue.remove(rec)
        # The very head: ahead of every priority too.
        rec.priority = max([rec.priority, *(r.priority for r in queue)])
        self._seq_front -= 1
        rec.queue_seq = self._seq_front
        queue.insert(0, rec)
        self._changed(rec)

    def position(self, rec: JobRecord) -> int | None:
        """The job's 1-based position in qnb's queue of its target, if it waits there."""
        queue = self._queues[rec.target]
        # The queue is sorted by queue_order: found in O(log n), not a scan.
        index = bisect.bisect_left(queue, queue_order(rec), key=queue_order)
        if index < len(queue) and queue[index] is rec:
            return index + 1
        return None
