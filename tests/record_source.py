"""A job source over records a test holds: what the widgets need of a JobManager
(:class:`qnb.notebook._stream.JobSource`), for tests and benchmarks of the widgets
without a manager, a store or targets.

Change a record under ``source.lock``, then call :meth:`RecordSource.changed` (as the
JobManager does on every change).
"""

from __future__ import annotations

import threading

from qnb._status import IN_QUEUE


def queue_order(rec) -> tuple[int, float]:
    # The kernel's order (qnb._store.queue_order): higher priority first, then queue order.
    return (-rec.priority, rec.queue_seq)


class RecordSource:
    """Every record is a job of this process on a local target (no queue servers)."""

    #: No target here owns its queue: ``targets.get(name)`` finds none.
    targets: dict = {}

    def __init__(self, records):
        self.lock = threading.RLock()
        self.records = {rec.id: rec for rec in records}
        self._listeners: list = []
        self._queues: dict[str, tuple[list, dict]] = {}  # target -> (queue, id -> position)

    def add_listener(self, listener):
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def record(self, job_id: str):
        return self.records.get(job_id)

    def live_records(self) -> list:
        return list(self.records.values())

    def find(self, *, status=None, target=None, user=None, limit: int = 100) -> list:
        found = [
            rec for rec in self.records.values()
            if (status is None or rec.status.value in status)
            and (target is None or rec.target == target)
            and (user is None or rec.user == user)
        ]  # fmt: skip
        return sorted(found, key=lambda rec: -rec.time_added)[:limit]

    def _queue(self, target: str) -> tuple[list, dict]:
        with self.lock:  # sorted once per change, not once per row
            if target not in self._queues:
                waiting = [r for r in self.records.values() if r.target == target and r.status in IN_QUEUE]
                waiting.sort(key=queue_order)
                self._queues[target] = (waiting, {r.id: i for i, r in enumerate(waiting, 1)})
            return self._queues[target]

    def pending(self, target: str) -> list:
        return list(self._queue(target)[0])

    def position(self, rec) -> int | None:
        return self._queue(rec.target)[1].get(rec.id) if rec.status in IN_QUEUE else None

    def snapshot(self, records, view) -> list:
        with self.lock:
            return [view(rec) for rec in records]

    def changed(self, rec) -> None:
        with self.lock:
            self._queues.pop(rec.target, None)
            for listener in list(self._listeners):
                listener(rec)
