"""Coalesced job change streams for the widgets.

The JobManager calls its listeners on every change, from whatever thread made it, while
holding its lock. :class:`JobStream` only notes the id there; its own daemon thread turns
the noted ids into one *patch* (the rows of the jobs that changed) at most every
``interval`` seconds and hands it to its subscribers (the widgets), which send it to the
page. So the kernel's main thread never does this work, and updates keep flowing while a
cell sleeps or crunches numbers.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping

from .._errors import QnbError, QueueError
from .._manager import JobManager, get_manager
from .._status import IN_QUEUE
from .._targets import QueueOwningTarget

#: At most this many patches per second reach the page (the design's ~10 Hz).
DEFAULT_INTERVAL = 0.1


def job_row(rec, remote: Mapping | None = None) -> dict:
    """The JSON row of one job, as widgets show it.

    ``queue_seq`` orders waiting jobs inside their target's queue: the page derives
    positions from it, so a job leaving the queue does not force a patch of every job
    behind it. A queue server orders its own queue, so its jobs have no ``queue_seq``
    but the ``position`` last read from the server (None when unknown), and
    ``connection`` is ``"reconnecting"`` on the unfinished ones while it is away.
    ``remote``: target name -> :class:`RemoteState` (see :func:`row_view`).
    """
    row = rec.public_dict()
    state = remote.get(rec.target) if remote else None
    waiting = rec.status in IN_QUEUE
    if state is None:
        row["queue_seq"] = rec.queue_seq if waiting else None
        row["position"] = None
        row["connection"] = None
    else:
        row["queue_seq"] = None
        known = waiting and state.connected and rec.remote_id is not None
        row["position"] = state.positions.get(rec.remote_id) if known else None
        row["connection"] = None if state.connected or rec.done else "reconnecting"
    return row


def row_view(source, records: Iterable) -> Callable:
    """:func:`job_row` for ``records``, knowing the state of their queue servers.

    Called outside the source's lock: the states are read first (without I/O), then
    the rows under the lock.
    """
    if getattr(source, "targets", None) is None:  # a RecordSource: local jobs only
        return job_row
    waiting: dict[str, bool] = {}
    for rec in records:
        waiting[rec.target] = waiting.get(rec.target, False) or rec.status in IN_QUEUE
    states = {}
    for name, any_waiting in waiting.items():
        state = remote_state(name, manager=source, positions=any_waiting)
        if state is not None:
            states[name] = state
    return functools.partial(job_row, remote=states) if states else job_row


@dataclasses.dataclass(frozen=True)
class RemoteState:
    """What widgets show of a target that owns its queue, besides its jobs' records."""

    connected: bool
    positions: Mapping[str, int]  # job id on the target -> 1-based position


def remote_state(
    target: str, *, manager: JobManager | None = None, positions: bool = True
) -> RemoteState | None:
    """The state of a target that owns its queue (None for others), without I/O.
    ``positions=False`` when no job of it waits: no watcher is started then."""
    try:
        found = (manager or get_manager()).targets.get(target)
    except QnbError:
        return None
    if not isinstance(found, QueueOwningTarget):
        return None
    known: Mapping[str, int] = {}
    if positions:
        try:
            known = found.queue_backend().known_positions()
        except QueueError:  # a target that shows no queue
            pass
    return RemoteState(found.connected, known)


def connection_state(target: str, *, manager: JobManager | None = None) -> str | None:
    """``"connected"`` or ``"reconnecting"`` for a target that owns its queue, None for
    others (widgets show it on the jobs of that target)."""
    state = remote_state(target, manager=manager, positions=False)
    if state is None:
        return None
    return "connected" if state.connected else "reconnecting"


class JobStream:
    """Coalesces a manager's change notifications into patches on a background thread.

    ``source`` needs ``add_listener(fn)``, ``record(job_id)`` and ``snapshot(records,
    view)`` (a JobManager, or :class:`RecordSource`). Subscribers are called as ``subscriber(rows)`` with the rows of the
    jobs that changed since the last patch; they are held weakly, so a widget that is
    garbage collected stops receiving patches without unsubscribing.
    """

    def __init__(self, source, *, interval: float = DEFAULT_INTERVAL):
        self.source = source
        self.interval = interval
        self._changed: dict[str, None] = {}  # insertion-ordered set
        self._changed_lock = threading.Lock()  # a leaf lock: taken inside the manager's
        self._wake = threading.Event()
        self._subscribers: weakref.WeakSet = weakref.WeakSet()
        self._stopped = False
        self.patches_sent = 0
        #: CPU time this stream's thread spent building and handing out patches (it
        #: competes with the main thread for the GIL: the benchmark reports it).
        self.cpu_seconds = 0.0
        self._remove_listener = source.add_listener(self._note_change)
        self._thread = threading.Thread(target=self._run, name="qnb-widget-stream", daemon=True)
        self._thread.start()

    # Runs inside the manager's lock, on any thread: note the id and return.
    def _note_change(self, rec) -> None:
        with self._changed_lock:
            self._changed[rec.id] = None
        self._wake.set()

    def nudge(self, job_id: str) -> None:
        """Send ``job_id``'s row in the next patch even if it did not change (e.g. once
        its results are stored, which happens after its last status change)."""
        with self._changed_lock:
            self._changed[job_id] = None
        self._wake.set()

    def subscribe(self, subscriber) -> None:
        """``subscriber`` is an object with an ``on_patch(rows)`` method (held weakly)."""
        self._subscribers.add(subscriber)

    def unsubscribe(self, subscriber) -> None:
        self._subscribers.discard(subscriber)

    def stop(self) -> None:
        self._stopped = True
        if self._remove_listener is not None:
            self._remove_listener()
        self._wake.set()
        self._thread.join(timeout=2)

    def _take_changed(self) -> list[str]:
        with self._changed_lock:
            ids, self._changed = list(self._changed), {}
        return ids

    def _run(self) -> None:
        last_patch = 0.0
        while not self._stopped:
            self._wake.wait()
            # Coalesce: the changes of the rest of this interval join the same patch.
            # (A background thread waiting for its own timer, not a stand-in for a
            # synchronisation.)
            remaining = last_patch + self.interval - time.monotonic()
            if remaining > 0:
                time.sleep(remaining)
            self._wake.clear()
            if self._stopped:
                return
            started = time.thread_time()
            ids = self._take_changed()
            if not ids:
                continue
            rows = self.rows(ids)
            last_patch = time.monotonic()
            if rows:
                self.patches_sent += 1
                self._publish(rows)
            self.cpu_seconds += time.thread_time() - started

    def rows(self, ids: Iterable[str]) -> list[dict]:
        records = [rec for rec in map(self.source.record, ids) if rec is not None]
        # Read under the source's lock: a row never mixes two states of a job.
        return self.source.snapshot(records, row_view(self.source, records))

    def _publish(self, rows: list[dict]) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.on_patch(rows)
            except Exception:  # a broken view must not stop the others
                pass


_streams: dict[int, JobStream] = {}
_streams_lock = threading.Lock()


def stream_for(manager) -> JobStream:
    """The one stream of ``manager`` (created on first use)."""
    with _streams_lock:
        stream = _streams.get(id(manager))
        if stream is None or stream.source is not manager:
            stream = JobStream(manager)
            _streams[id(manager)] = stream
        return stream



class RecordSource:
    """A job source over records you hold, for tests and benchmarks of the widgets: what
    :class:`JobStream` and :class:`qnb.notebook._widgets.QueueMonitor` need from a JobManager.

    Change a record, then call :meth:`changed` (as the JobManager's ``_touch`` does).
    """

    def __init__(self, records):
        self._lock = threading.RLock()
        self.records = {rec.id: rec for rec in records}
        self._listeners: list = []

    def add_listener(self, listener):
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    def record(self, job_id: str):
        return self.records.get(job_id)

    def live_records(self) -> list:
        return list(self.records.values())

    def snapshot(self, records, view) -> list:
        with self._lock:
            return [view(rec) for rec in records]

    def changed(self, rec) -> None:
        with self._lock:
            for listener in list(self._listeners):
                listener(rec)
