"""Write-behind persistence, and whoever waits for it.

Changes made in one loop iteration reach SQLite in one transaction (a short delay turns
a burst into one write). Waiters (``job.result()``, ``wait_for_execution``) are woken
only once the state they wait for is in the store, so "done" always means "durable". A
failed write (disk full) keeps the changes in memory and tries again; at close, what
still cannot be written is kept in a file beside the store for the next process.
"""

from __future__ import annotations

import collections
import concurrent.futures
import logging
import threading
from collections.abc import Callable

from .._errors import StoreError
from .._records import JobRecord
from .._status import JobStatus
from .._store import changes_of
from ._context import Core

logger = logging.getLogger("qnb")

# How long changes may wait to be written together (job.result() waits this much more).
FLUSH_DELAY = 0.005
# After a failed write (disk full), how soon the changes kept in memory are written again.
STORE_RETRY_SECONDS = 1.0
# Finished jobs held in memory besides the store (the newest; a widget shows them live).
MAX_FINISHED_RECORDS = 1000

Predicate = Callable[[JobRecord], bool]
Ready = list[tuple[concurrent.futures.Future, JobStatus]]


class WriteBehind:
    def __init__(self, core: Core):
        self.core = core
        self._dirty: dict[str, JobRecord] = {}
        self._scheduled = False
        self._flush_lock = threading.Lock()
        self._listeners: list[Callable[[JobRecord], None]] = []
        self._finished: collections.deque[str] = collections.deque()  # ids, oldest first
        #: The last write that failed, while changes wait in memory to be written again.
        self.store_error: StoreError | None = None

    # -- changes (under the core's lock) ----------------------------------------------------

    def changed(self, rec: JobRecord) -> None:
        """Store (write-behind) and announce a change of ``rec``."""
        rec.live.dirty = True
        rec.live.version += 1
        self._dirty[rec.id] = rec
        if not self._scheduled and not self.core.closed:
            self._scheduled = True
            loop = self.core.loop
            loop.call_soon_threadsafe(loop.call_later, FLUSH_DELAY, self.flush)
        self.notify(rec)

    def inserted(self, rec: JobRecord) -> Ready:
        """``rec`` was written whole by its insert, as it is now: nothing is left for a
        flush to write. Returns the waiters to wake (outside the lock)."""
        rec.live.persisted = True
        rec.live.unsaved_results = {}
        rec.live.dirty_items.clear()
        rec.live.dirty = False
        self._dirty.pop(rec.id, None)
        if rec.done:  # a quick job: it ended before its insert
            self._finished.append(rec.id)
            self._forget_old_finished()
        return ready_waiters(rec)

    def drop(self, rec: JobRecord) -> None:
        self._dirty.pop(rec.id, None)

    # -- listeners ------------------------------------------------------------------------

    def notify(self, rec: JobRecord) -> None:
        for listener in self._listeners:
            try:
                listener(rec)
            except Exception:  # a broken widget must not stop the jobs; it is logged
                logger.exception("a job listener (%r) raised; the jobs go on", listener)

    def add_listener(self, listener: Callable[[JobRecord], None]) -> Callable[[], None]:
        with self.core.lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self.core.lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    # -- writing --------------------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending change now (called on the loop, or before reads).

        Rows are taken under the core's lock and written outside it, so submits and
        cancels never wait for SQLite; the flush lock keeps writes in order."""
        core = self.core
        with self._flush_lock:
            with core.lock:
                self._scheduled = False
                # Records not yet persisted are written whole by their submit.
                records = [r for r in self._dirty.values() if r.live.persisted]
                self._dirty = {k: r for k, r in self._dirty.items() if not r.live.persisted}
                if not records:
                    return
                changes = changes_of(records)
                written = [(r, r.live.version) for r in records]
                taken = [(r.live.unsaved_results, set(r.live.dirty_items)) for r in records]
                for r in records:
                    r.live.unsaved_results = {}
                    r.live.dirty_items.clear()
            try:
                core.store.save(changes)
            except StoreError as exc:
                self._keep_unsaved(records, taken, exc)
                return
            with core.lock:
                if self.store_error is not None:
                    logger.warning("qnb: the job store %s is written again", core.store.path)
                    self.store_error = None
                ready: Ready = []
                for r, version in written:
                    if r.live.version == version:  # nothing changed while it was written
                        r.live.dirty = False
                        ready += ready_waiters(r)
                        if r.done:
                            self._finished.append(r.id)
                self._forget_old_finished()
        resolve(ready)

    def _forget_old_finished(self) -> None:
        """Keep at most MAX_FINISHED_RECORDS finished jobs in memory (the oldest go; the
        store has them, and handles read them from there)."""
        records = self.core.records
        while len(self._finished) > MAX_FINISHED_RECORDS:
            rec = records.get(self._finished.popleft())
            if rec is not None and rec.done and not rec.live.dirty and not rec.live.waiters:
                del records[rec.id]

    def _keep_unsaved(self, records: list[JobRecord], taken: list, exc: StoreError) -> None:
        """A failed write (disk full, ...): the changes stay in memory and are written
        again; whoever waits for them to be on disk is told why, never that they are."""
        core = self.core
        failed = []
        with core.lock:
            for rec, (results, items) in zip(records, taken):
                rec.live.unsaved_results = {**results, **rec.live.unsaved_results}
                rec.live.dirty_items |= items
                rec.live.dirty = True
                self._dirty[rec.id] = rec
                for predicate, future in rec.live.waiters:
                    if predicate(rec):
                        failed.append(future)
                rec.live.waiters = [(p, f) for p, f in rec.live.waiters if f not in failed]
            first = self.store_error is None
            self.store_error = exc
            if not core.closed:
                core.loop.call_soon_threadsafe(core.loop.call_later, STORE_RETRY_SECONDS, self.flush)
        if first:
            logger.error("qnb: %s; retrying every %s s", exc, STORE_RETRY_SECONDS)
        for future in failed:
            if not future.done():
                future.set_exception(exc)

    # -- waiting --------------------------------------------------------------------------

    def wait(self, rec: JobRecord, predicate: Predicate) -> concurrent.futures.Future:
        """A future that resolves (to the status) once ``predicate(rec)`` holds and is
        stored (under the core's lock)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        if predicate(rec) and rec.live.persisted and not rec.live.dirty:
            future.set_result(rec.status)
            return future
        if predicate(rec) and self.store_error is not None and not self.core.closed:
            # Writes are failing: try again now; the waiter hears either way.
            self.core.loop.call_soon_threadsafe(self.flush)
        rec.live.waiters.append((predicate, future))
        return future

    # -- at close -------------------------------------------------------------------------

    def keep_unsaved_for_next_process(self) -> None:
        """At close, with the store not writable (disk full): the changes not written
        are kept in a file beside it for the next process, and the user is told."""
        core = self.core
        with core.lock:
            records = [r for r in self._dirty.values() if r.live.persisted]
            for rec in records:
                rec.live.dirty_items = set(range(len(rec.items)))
            changes = changes_of(records)
        if not records:
            return
        named = ", ".join(f"{rec.id[:8]} ({rec.status.value})" for rec in records[:10])
        try:
            path = core.store.keep_for_later(changes, core.owner)
        except OSError as exc:
            logger.error(
                "qnb: the job store %s cannot be written (%s) and neither can a file beside "
                "it (%s): the latest state of %d job(s) is lost: %s",
                core.store.path, self.store_error, exc, len(records), named,
            )  # fmt: skip
            return
        logger.error(
            "qnb: the job store %s cannot be written (%s); the latest state of %d job(s) "
            "(%s) is kept in %s and written by the next qnb process on this store",
            core.store.path, self.store_error, len(records), named, path,
        )  # fmt: skip


def ready_waiters(rec: JobRecord) -> Ready:
    ready, waiting = [], []
    for predicate, future in rec.live.waiters:
        if predicate(rec):
            ready.append((future, rec.status))
        else:
            waiting.append((predicate, future))
    rec.live.waiters = waiting
    return ready


def resolve(ready: Ready) -> None:
    # Outside the core's lock: done-callbacks run user code.
    for future, status in ready:
        if not future.done():
            future.set_result(status)
