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
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from IPython import get_ipython

from .._errors import QnbError, QueueError
from .._api import JobManager, get_manager
from .._records import JobRecord
from .._status import IN_QUEUE
from .._targets import QueueOwningTarget
from .._views import widget_row

#: At most this many patches per second reach the page (the design's ~10 Hz).
DEFAULT_INTERVAL = 0.1


def row_view(source, records: Iterable) -> Callable:
    """The widget row (:func:`qnb._views.widget_row`) of each of ``records``, knowing
    the state of their queue servers. Call the result inside ``source.snapshot`` (under
    the source's lock), so a row never mixes two states of a job.

    A job waiting in this kernel's own queue has its position from the kernel's queue
    order (``source.position``, the one order the scheduler runs) and its
    ``queue_seq``; a queue server orders its own queue, so its jobs have no
    ``queue_seq`` but the ``position`` last read from the server (None when unknown),
    and ``connection`` is ``"reconnecting"`` on the unfinished ones while it is away.
    The servers' states are read here, before the lock, without I/O.
    """
    waiting: dict[str, bool] = {}
    for rec in records:
        waiting[rec.target] = waiting.get(rec.target, False) or rec.status in IN_QUEUE
    states = {}
    for name, any_waiting in waiting.items():
        state = remote_state(name, manager=source, positions=any_waiting)
        if state is not None:
            states[name] = state

    def view(rec) -> dict:
        waiting = rec.status in IN_QUEUE
        state = states.get(rec.target)
        if state is None:
            return widget_row(
                rec,
                position=source.position(rec) if waiting else None,
                queue_seq=rec.queue_seq if waiting else None,
                connection=None,
            )
        known = waiting and state.connected and rec.remote_id is not None
        return widget_row(
            rec,
            position=state.positions.get(rec.remote_id) if known else None,
            queue_seq=None,
            connection=None if state.connected or rec.done else "reconnecting",
        )

    return view


class JobSource(Protocol):
    """What the widgets need of a JobManager (and all a test's stand-in provides)."""

    targets: Any  # ``.get(name)``: the target of that name (or a QnbError)

    def add_listener(self, listener: Callable) -> Callable[[], None]: ...
    def record(self, job_id: str) -> JobRecord | None: ...
    def live_records(self) -> list[JobRecord]: ...
    def snapshot(self, records: Iterable[JobRecord], view: Callable) -> list: ...
    def find(self, *, status=None, target=None, user=None, limit: int = 100) -> list[JobRecord]: ...
    def pending(self, target: str) -> list[JobRecord]: ...
    def position(self, rec: JobRecord) -> int | None: ...


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

    ``source`` is a :class:`JobSource` (a JobManager; tests use a stand-in over records
    they hold). Subscribers are called as ``subscriber.on_patch(rows, positions)``:
    the rows of the jobs that changed since the last patch, and the new 1-based queue
    positions (None: out of the queue) of other jobs whose position in this kernel's
    queues changed meanwhile (a job ahead left, a job of higher priority came in). So
    the page shows the kernel's own queue order and never derives one. Subscribers are
    held weakly: a widget that is garbage collected stops receiving patches without
    unsubscribing.
    """

    def __init__(self, source, *, interval: float = DEFAULT_INTERVAL):
        self.source = source
        self.interval = interval
        self._changed: dict[str, None] = {}  # insertion-ordered set
        self._changed_lock = threading.Lock()  # a leaf lock: taken inside the manager's
        # One sender at a time (the stream's thread, or a flush at a cell's end): patches
        # reach the page in the order their changes were taken.
        self._send_lock = threading.Lock()
        self._wake = threading.Event()
        self._subscribers: weakref.WeakSet = weakref.WeakSet()
        self._stopped = False
        self._stopping = threading.Event()  # ends the wait between patches at once
        self.patches_sent = 0
        #: CPU time this stream's thread spent building and handing out patches (it
        #: competes with the main thread for the GIL: the benchmark reports it).
        self.cpu_seconds = 0.0
        # The positions of waiting jobs as last sent, by target: a patch sends the
        # positions that differ (read and written on the stream's thread; read by a
        # snapshot under the lock).
        self._positions: dict[str, dict[str, int]] = {}
        self._positions_lock = threading.Lock()
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
        self._stopping.set()
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
                self._stopping.wait(remaining)
            self._wake.clear()
            if self._stopped:
                return
            started = time.thread_time()
            if self._send_changes():
                last_patch = time.monotonic()
            self.cpu_seconds += time.thread_time() - started

    def flush(self) -> None:
        """Send what changed now, not at the next interval. Called when a cell ends, so
        that a notebook saved then (nbclient, ``jupyter execute``) holds each widget's
        state as of the cell's end: a job that ended during the cell shows ended."""
        self._send_changes()

    def _send_changes(self) -> bool:
        with self._send_lock:
            ids = self._take_changed()
            if not ids:
                return False
            rows = self.rows(ids)
            positions = self._moved_positions(rows)
            if rows or positions:
                self.patches_sent += 1
                self._publish(rows, positions)
            return True

    def rows(self, ids: Iterable[str]) -> list[dict]:
        records = [rec for rec in map(self.source.record, ids) if rec is not None]
        # Read under the source's lock: a row never mixes two states of a job.
        return self.source.snapshot(records, row_view(self.source, records))

    def _moved_positions(self, rows: list[dict]) -> dict[str, int | None]:
        """Positions in this kernel's queues of the changed rows' targets that differ
        from the ones last sent, except where the patch's rows say them already."""
        in_rows = {row["id"]: row["position"] for row in rows}
        moved: dict[str, int | None] = {}
        for target in {row["target"] for row in rows}:
            if remote_state(target, manager=self.source, positions=False) is not None:
                continue  # a queue server's positions come in its jobs' rows
            now = {rec.id: i for i, rec in enumerate(self.source.pending(target), 1)}
            with self._positions_lock:
                before = self._positions.get(target, {})
                self._positions[target] = now
            for job_id, position in now.items():
                if before.get(job_id) != position:
                    moved[job_id] = position
            for job_id in before.keys() - now.keys():
                moved[job_id] = None
        return {job_id: p for job_id, p in moved.items() if in_rows.get(job_id, 0) != p}

    def sent_positions(self) -> dict[str, int]:
        """job id -> the queue position last sent, for a snapshot to agree with the
        patches that follow it (they send what changed since)."""
        with self._positions_lock:
            return {job_id: p for queue in self._positions.values() for job_id, p in queue.items()}

    def _publish(self, rows: list[dict], positions: dict[str, int | None]) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.on_patch(rows, positions)
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
            _flush_at_cell_end()
        return stream


def _flush_streams(*_result) -> None:
    with _streams_lock:
        streams = list(_streams.values())
    for stream in streams:
        try:
            stream.flush()
        except Exception:  # a closed manager's stream: its thread sends nothing more either
            pass


def _flush_at_cell_end() -> None:
    """In IPython, every stream sends its changes when a cell ends (before the kernel
    answers the cell), once per shell."""
    shell = get_ipython()
    if shell is None or getattr(shell, "_qnb_flushes_streams", False):
        return
    shell.events.register("post_run_cell", _flush_streams)
    shell._qnb_flushes_streams = True
