"""The JobManager: the one writer of job state in a process.

It owns an asyncio loop on a daemon thread, so jobs progress while the kernel's main
thread runs a cell. Public API calls come from any thread; they take the manager's
lock, change statuses only through :mod:`qnb._lifecycle` (the one writer of status
and timestamps), and hand anything slow to the loop.

State reaches SQLite write-behind: changes made in one loop iteration are written in
one transaction. Waiters (``job.result()``, ``wait_for_execution``) are woken only
after the state they wait for is in the store, so "done" always means "durable".
"""

from __future__ import annotations

import asyncio
import atexit
import bisect
import collections
import concurrent.futures
import logging
import os
import threading
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import cirq

from . import _circuits, _lifecycle, _sweeps
from ._errors import (
    JobStateError,
    QnbError,
    QnbWarning,
    QueueConflictError,
    QueueError,
    StoreError,
    UnknownJobError,
)
from ._core import _ownership
from ._core._ownership import default_home
from ._records import ItemRecord, JobRecord, entry_at
from ._status import IN_QUEUE, TERMINAL, JobStatus
from ._store import Store, changes_of, queue_order
from ._targets import QueueOwningTarget, ScheduledTarget, Target, TargetJob, TargetRegistry, registry
from ._targets._pool import get_pool

logger = logging.getLogger("qnb")

# How long changes may wait to be written together (job.result() waits this much more).
FLUSH_DELAY = 0.005
# After a failed write (disk full), how soon the changes kept in memory are written again.
STORE_RETRY_SECONDS = 1.0
# How long a submit to a target with its own queue waits for the target to take the job
# (a target that cannot be reached says so at once, and the job waits "reconnecting").
HAND_OVER_WAIT_SECONDS = 60.0
# Finished jobs held in memory besides the store (the newest; a widget shows them live).
MAX_FINISHED_RECORDS = 1000


Predicate = Callable[[JobRecord], bool]
T = TypeVar("T")


def is_done(rec: JobRecord) -> bool:
    return rec.status in TERMINAL


def has_left_queue(rec: JobRecord) -> bool:
    return rec.status not in IN_QUEUE


class JobManager:
    def __init__(
        self,
        home: str | Path,
        *,
        targets: TargetRegistry = registry,
        store_path: str | Path | None = None,
        requeue_interrupted: bool = False,
        warm_pool: bool = True,
    ):
        """``requeue_interrupted``: a queue server's manager runs again the jobs a
        killed predecessor left unfinished, instead of marking them failed.
        ``warm_pool``: start the local simulation workers now (a server whose device
        runs on a cluster needs none; the pool still starts if a local job comes)."""
        self.home = Path(home)
        try:
            self.home.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only home: the store says what can still be done
        self.targets = targets
        self.store = Store(store_path or self.home / _ownership.STORE_NAME)
        # Local jobs carry the id of the process that runs them. The process holds a
        # lock on a file of that name for its whole life, so a later process can tell
        # a dead owner from a live one, even across pid reuse.
        self.owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            self._owner_file = _ownership.claim_owner(self.home / "owners", self.owner)
        except OSError:
            if not self.store.read_only:
                raise
            self._owner_file = None  # reading only: this process runs no job

        self._lock = threading.RLock()
        self._records: dict[str, JobRecord] = {}
        self._queues: dict[str, list[JobRecord]] = defaultdict(list)
        self._running: dict[str, int] = defaultdict(int)
        self._seq_back = 0.0
        self._seq_front = 0.0
        self._dirty: dict[str, JobRecord] = {}
        self._flush_scheduled = False
        self._flush_lock = threading.Lock()
        self._listeners: list[Callable[[JobRecord], None]] = []
        self._closed = False
        self._finished: collections.deque[str] = collections.deque()  # ids, oldest first
        #: The last write that failed, while changes wait in memory to be written again.
        self.store_error: StoreError | None = None

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="qnb-job-manager", daemon=True
        )
        self._thread.start()
        _ownership.apply_kept_changes(self.store)
        if requeue_interrupted:
            self.interrupted_jobs: list[str] = []
            self.requeued_jobs = self._requeue_interrupted()
        else:
            # A read-only store is read as it is; the next writable process recovers.
            self.interrupted_jobs = [] if self.store.read_only else self._recover_interrupted()
            self._resume_following()
        if warm_pool:
            get_pool().start_warming()

    # -- lifecycle of the manager -------------------------------------------------------

    def close(self) -> None:
        """Stop the loop and release the store (tests; a kernel just exits)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Driving stops first, so that nothing the exit does (a vendor call cut short)
        # reads as a job's failure; then what is known is written.
        # Unfinished jobs stay unfinished in the store: like a kernel that exits, the
        # next manager on this store marks them interrupted (they keep their circuits),
        # and follows again those that a vendor or queue server runs.
        try:
            asyncio.run_coroutine_threadsafe(_cancel_all_tasks(), self._loop).result(timeout=5)
        except (concurrent.futures.TimeoutError, RuntimeError):
            pass
        self.flush()
        if self.store_error is not None:
            self._journal_unsaved()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self._loop.close()
        self.store.close()
        if self._owner_file is not None:
            _ownership.release_owner(self.home / "owners", self.owner, self._owner_file)

    def _journal_unsaved(self) -> None:
        """At close, with the store not writable (disk full): the changes not written
        are kept in a file beside it for the next process, and the user is told."""
        with self._lock:
            records = [r for r in self._dirty.values() if r.persisted]
            for rec in records:
                rec.dirty_items = set(range(len(rec.items)))
            changes = changes_of(records)
        if not records:
            return
        named = ", ".join(f"{rec.id[:8]} ({rec.status.value})" for rec in records[:10])
        try:
            path = self.store.keep_for_later(changes, self.owner)
        except OSError as exc:
            logger.error(
                "qnb: the job store %s cannot be written (%s) and neither can a file beside "
                "it (%s): the latest state of %d job(s) is lost: %s",
                self.store.path, self.store_error, exc, len(records), named,
            )  # fmt: skip
            return
        logger.error(
            "qnb: the job store %s cannot be written (%s); the latest state of %d job(s) "
            "(%s) is kept in %s and written by the next qnb process on this store",
            self.store.path, self.store_error, len(records), named, path,
        )  # fmt: skip

    def _recover_interrupted(self) -> list[str]:
        ids = _ownership.mark_interrupted(self.store, self.home, self.owner)
        if ids:
            warnings.warn(
                f"qnb: {len(ids)} job(s) were left unfinished by a process that ended and "
                "are now marked failed (interrupted). Their circuits and any completed "
                "results are kept: qnb.jobs(status='failed') lists them and "
                "job.resubmit() runs them again.",
                QnbWarning,
                stacklevel=4,
            )
        return ids

    def _requeue_interrupted(self) -> list[str]:
        records = sorted(_ownership.take_over(self.store, self.home, self.owner), key=queue_order)
        for rec in records:
            rec.circuits = _circuits_of(self.store.load_circuits(rec.id))
        with self._lock:
            for rec in records:
                self._records[rec.id] = rec
                self._queues[rec.target].append(rec)
            # New jobs go behind (or, at the front, ahead of) the ones taken over.
            seqs = [rec.queue_seq for rec in records]
            self._seq_back = max(seqs, default=0.0)
            self._seq_front = min(seqs, default=0.0)
            for name in {rec.target for rec in records}:
                self._loop.call_soon_threadsafe(self._schedule, self.targets.get(name))
        return [rec.id for rec in records]

    # -- submission -----------------------------------------------------------------------

    def submit(
        self,
        target: Target,
        circuits: dict[str, cirq.Circuit],
        *,
        shots: int,
        name: str,
        user: str,
        front: bool = False,
        parent_id: str | None = None,
        circuit_json: Sequence[str] | None = None,
        job_id: str | None = None,
        priority: int = 0,
        params: Sequence[str | None] | None = None,
        resolvers: Sequence[cirq.ParamResolver | None] | None = None,
    ) -> JobRecord:
        """Accept a validated job: queue it, store it, return once it is stored.

        The job may start running before its circuits are written: serializing a large
        batch to Cirq JSON takes as long as simulating it, so the two overlap. Results
        that arrive meanwhile wait in memory and are written with the job.
        """
        rec = JobRecord(
            id=job_id or uuid.uuid4().hex,
            name=name,
            target=target.name,
            user=user,
            shots=shots,
            items=[
                ItemRecord(label, params=None if params is None else params[i])
                for i, label in enumerate(circuits)
            ],
            time_added=time.time(),
            parent_id=parent_id,
            owner=self.owner if target.local else None,
            persisted=False,
            priority=priority,
        )
        rec.circuits = list(circuits.values())
        rec.resolvers = None if resolvers is None else list(resolvers)
        owns_queue = isinstance(target, QueueOwningTarget)
        with self._lock:
            self._check_open()
            self._records[rec.id] = rec
            if owns_queue:
                _lifecycle.enqueue(rec)  # in the target's queue, not ours
                self._changed(rec)
            else:
                self._enqueue(rec, front=front)
            # A busy target starts its next job when one ends: no need to wake the loop.
            wake = not owns_queue and self._running[target.name] < target.max_running_jobs
        if wake:
            self._loop.call_soon_threadsafe(self._schedule, target)
        try:
            # Not rec.circuits: a quick job may have finished and dropped them already.
            texts = circuit_json or _json_of_items(circuits.values())
            with self._lock:
                self.store.insert_job(rec, texts, rec.unsaved_results)
                # The insert wrote the record as it is now, including anything that
                # happened while it ran: nothing is left for a flush to write.
                rec.persisted = True
                rec.unsaved_results = {}
                rec.dirty_items.clear()
                rec.dirty = False
                self._dirty.pop(rec.id, None)
                ready = self._ready_waiters(rec)
                if rec.done:  # a quick job: it ended before its insert
                    self._finished.append(rec.id)
                    self._forget_old_finished()
                elif rec.status in IN_QUEUE and not owns_queue:
                    # It waits in the queue: its stored text is enough until it starts
                    # (_drive loads it). Parsed circuits held by queued jobs were memory
                    # any user could fill: ~90 MB a 75,000-operation job.
                    rec.circuits = rec.resolvers = None
        except BaseException:
            self._discard(rec)
            raise
        _resolve(ready)
        if owns_queue:
            # Handed over only once stored here, so a restarted kernel can always find
            # and follow (or submit again, under the same idempotency key) what it sent.
            self._hand_over_and_wait(rec, target, list(texts), front)
        return rec

    def _hand_over_and_wait(
        self, rec: JobRecord, target: Target, texts: list[str], front: bool
    ) -> None:
        """Return once the target has the job (so reads see it), or is away and the job
        waits "reconnecting". A refusal (a 4xx) raises here and leaves nothing behind."""
        answered: concurrent.futures.Future = concurrent.futures.Future()
        self._loop.call_soon_threadsafe(self._hand_over, rec, target, texts, front, answered)
        if _on_loop(self._loop):
            return  # the loop cannot wait for itself; the job follows as usual
        try:
            answered.result(HAND_OVER_WAIT_SECONDS)
        except concurrent.futures.TimeoutError:
            pass  # a target that neither answers nor says it is away: the job follows as usual
        except QnbError:
            self._forget(rec)
            raise

    def _hand_over(
        self,
        rec: JobRecord,
        target: Target,
        texts: list[str] | None,
        front: bool = False,
        answered: concurrent.futures.Future | None = None,
        resumed: bool = False,
    ) -> None:
        self._loop.create_task(self._drive(
            rec, target, circuit_json=texts, front=front, answered=answered, resumed=resumed
        ))

    def _forget(self, rec: JobRecord) -> None:
        """A job its target refused at hand-over: gone from memory and from the store."""
        with self._lock:
            self._records.pop(rec.id, None)
            self._dirty.pop(rec.id, None)
        self.flush()
        self.store.delete_job(rec.id)

    def follow_target_jobs(self, target: Target) -> list[str]:
        """Follow again the unfinished jobs that ``target`` (which owns its queue) runs
        for this store: after a kernel restart, once the target is connected again."""
        self.flush()
        unfinished = [s.value for s in JobStatus if not s.is_terminal]
        found = self.store.find_jobs(status=unfinished, target=target.name, limit=1_000_000)
        followed = []
        with self._lock:
            for rec in found:
                if rec.id not in self._records and rec.owner is None:
                    rec.cancel_requested = rec.status is JobStatus.CANCELLING
                    self._records[rec.id] = rec
                    followed.append(rec)
        for rec in followed:
            texts = None
            if rec.remote_id is None:
                # The process that sent it died before the target's id was stored: the
                # target may have the job or not. It looks first (an idempotency key, or
                # the qnb id in the job's name) and creates it only if it is not there.
                texts = self.store.load_circuits(rec.id)
                rec.circuits = _circuits_of(texts)
            self._loop.call_soon_threadsafe(self._hand_over, rec, target, texts, False, None, True)
        return [rec.id for rec in followed]

    def _resume_following(self) -> None:
        """Jobs that a target with its own queue runs for this store (a vendor's cloud
        from the targets file, a plug-in) are followed again without being asked: their
        targets load in the background (loading may ask the vendor for its device)."""
        followed = self.store.followed_targets()
        if not followed:
            return
        try:
            names = sorted(followed & set(self.targets.lazy()))
        except QnbError as exc:  # e.g. an unreadable targets file: said, never fatal here
            logger.warning("qnb: cannot look for targets to follow again: %s", exc)
            return
        if names:
            threading.Thread(
                target=self._follow_when_loaded, args=(names,), name="qnb-resume", daemon=True
            ).start()

    def _follow_when_loaded(self, names: list[str]) -> None:
        for name in names:
            try:
                target = self.targets.get(name)
                if isinstance(target, QueueOwningTarget) and not self._closed:
                    self.follow_target_jobs(target)
            except Exception:  # a target that cannot load now is followed once registered
                logger.warning("qnb: could not follow the jobs of target %r again", name, exc_info=True)

    def _discard(self, rec: JobRecord) -> None:
        """Undo an accepted-but-not-stored job (submit was interrupted)."""
        with self._lock:
            self._records.pop(rec.id, None)
            self._dirty.pop(rec.id, None)
            queue = self._queues[rec.target]
            if rec in queue:
                queue.remove(rec)
            rec.cancel_requested = True
            handle = rec.handle
        if handle is not None:
            target = self.targets.get(rec.target)
            asyncio.run_coroutine_threadsafe(target.cancel(handle), self._loop)

    def _enqueue(self, rec: JobRecord, *, front: bool) -> None:
        """Into its target's queue: by priority, then at the end (or the head) of its
        priority's jobs."""
        if front:
            self._seq_front -= 1
            rec.queue_seq = self._seq_front
        else:
            self._seq_back += 1
            rec.queue_seq = self._seq_back
        bisect.insort(self._queues[rec.target], rec, key=queue_order)
        _lifecycle.enqueue(rec)
        self._changed(rec)

    def _check_open(self) -> None:
        if self._closed:
            raise QnbError("this JobManager is closed")

    # -- running (on the loop) --------------------------------------------------------------

    def _schedule(self, target: Target) -> None:
        with self._lock:
            if self._closed:
                return
            queue = self._queues[target.name]
            while queue and self._running[target.name] < target.max_running_jobs:
                rec = queue.pop(0)
                self._running[target.name] += 1
                _lifecycle.start(rec)
                self._changed(rec)
                self._loop.create_task(self._drive(rec, target))

    async def _drive(
        self,
        rec: JobRecord,
        target: Target,
        *,
        circuit_json: list[str] | None = None,
        front: bool = False,
        answered: concurrent.futures.Future | None = None,
        resumed: bool = False,
    ) -> None:
        scheduled = isinstance(target, ScheduledTarget)
        try:
            if rec.remote_id is not None and isinstance(target, QueueOwningTarget):
                handle = await target.reattach(rec.remote_id, len(rec.items))
            else:
                if rec.circuits is None and scheduled:
                    # It waited in the queue as stored text (see submit). Parsing a large
                    # batch takes seconds: off this loop, which drives every job.
                    rec.circuits = await self._loop.run_in_executor(
                        None, self._stored_circuits, rec.id
                    )
                job = TargetJob(
                    rec.id,
                    rec.shots,
                    [it.label for it in rec.items],
                    rec.circuits,
                    circuit_json=circuit_json,
                    front=front,
                    name=rec.name,
                    priority=rec.priority,
                    params=rec.resolvers or _item_resolvers(rec),
                    report_waiting=lambda: _settle(answered),
                    maybe_created=resumed,
                )
                try:
                    handle = await target.submit(job)
                except QnbError as exc:
                    if answered is not None and not answered.done() and not exc.retryable:
                        answered.set_exception(exc)  # the submitter raises; nothing stays
                        return
                    raise
            with self._lock:
                rec.handle = handle
                stored_id = rec.remote_id
                if isinstance(target, QueueOwningTarget):
                    rec.remote_id = target.handle_id(handle)
                    if rec.remote_id != stored_id:
                        self._changed(rec)
                cancel_now = rec.cancel_requested
            if rec.remote_id != stored_id:
                # The target's id is on disk before the submitter hears of it: a process
                # killed right after submit() returned leaves a job the next one follows.
                self.flush()
            _settle(answered)
            if cancel_now:
                self._loop.create_task(self._cancel_on_target(rec, target))
            while not rec.done:
                statuses = await target.poll(handle)
                finished = [
                    i
                    for i, status in enumerate(statuses)
                    if status in TERMINAL and rec.items[i].status not in TERMINAL
                ]
                outcomes = await target.results(handle, finished) if finished else {}
                with self._lock:
                    _lifecycle.apply_report(rec, statuses, outcomes)
                    self._changed(rec)
        except Exception as exc:  # a broken target fails its job, never the manager
            if self._closed and not target.local:
                return  # exit, not the job's fault: the next process follows it again
            logger.warning("job %s on %s failed in its target", rec.id[:8], target.name, exc_info=True)
            with self._lock:
                _lifecycle.fail(rec, f"{type(exc).__name__}: {exc}")
                self._changed(rec)
        finally:
            _settle(answered)
            with self._lock:
                if scheduled:
                    self._running[target.name] -= 1
                rec.handle = None
                rec.circuits = rec.resolvers = None  # the store has them; don't hold memory
            if scheduled:
                self._schedule(target)

    def _stored_circuits(self, job_id: str) -> list[cirq.Circuit]:
        """A job's circuits from the store, each distinct text parsed once (a sweep's
        points share one circuit)."""
        return _circuits_of(self.store.load_circuits(job_id))

    async def _cancel_on_target(self, rec: JobRecord, target: Target) -> None:
        try:
            await target.cancel(rec.handle)
        except Exception as exc:
            # Stays CANCELLING: the job goes on and ends as the target decides.
            with self._lock:
                rec.error = f"cancel failed: {type(exc).__name__}: {exc}"
                self._changed(rec)

    # -- writes and notifications -------------------------------------------------------

    def _changed(self, rec: JobRecord) -> None:
        """Store (write-behind) and announce a change of ``rec`` (under the lock)."""
        rec.dirty = True
        rec.version += 1
        self._dirty[rec.id] = rec
        if not self._flush_scheduled and not self._closed:
            self._flush_scheduled = True
            # A short delay turns a burst of changes into one transaction.
            self._loop.call_soon_threadsafe(self._loop.call_later, FLUSH_DELAY, self.flush)
        self._notify(rec)

    def _notify(self, rec: JobRecord) -> None:
        for listener in self._listeners:
            try:
                listener(rec)
            except Exception:  # a broken widget must not stop the jobs; it is logged
                logger.exception("a job listener (%r) raised; the jobs go on", listener)

    def renotify(self, target: str) -> None:
        """Call the listeners again for the target's unfinished live jobs: how they look
        changed outside their records (their queue server went away or came back)."""
        with self._lock:
            for rec in self._records.values():
                if rec.target == target and not rec.done:
                    self._notify(rec)

    def flush(self) -> None:
        """Write every pending change now (called on the loop, or before reads).

        Rows are taken under the manager's lock and written outside it, so submits
        and cancels never wait for SQLite; the flush lock keeps writes in order.
        """
        with self._flush_lock:
            with self._lock:
                self._flush_scheduled = False
                # Records not yet persisted are written whole by their submit.
                records = [r for r in self._dirty.values() if r.persisted]
                self._dirty = {k: r for k, r in self._dirty.items() if not r.persisted}
                if not records:
                    return
                changes = changes_of(records)
                written = [(r, r.version) for r in records]
                taken = [(r.unsaved_results, set(r.dirty_items)) for r in records]
                for r in records:
                    r.unsaved_results = {}
                    r.dirty_items.clear()
            try:
                self.store.save(changes)
            except StoreError as exc:
                self._keep_unsaved(records, taken, exc)
                return
            with self._lock:
                if self.store_error is not None:
                    logger.warning("qnb: the job store %s is written again", self.store.path)
                    self.store_error = None
                ready = []
                for r, version in written:
                    if r.version == version:  # nothing changed while it was written
                        r.dirty = False
                        ready += self._ready_waiters(r)
                        if r.done:
                            self._finished.append(r.id)
                self._forget_old_finished()
        _resolve(ready)

    def _forget_old_finished(self) -> None:
        """Keep at most MAX_FINISHED_RECORDS finished jobs in memory (the oldest go; the
        store has them, and handles read them from there)."""
        while len(self._finished) > MAX_FINISHED_RECORDS:
            rec = self._records.get(self._finished.popleft())
            if rec is not None and rec.done and not rec.dirty and not rec.waiters:
                del self._records[rec.id]

    def _keep_unsaved(self, records: list[JobRecord], taken: list, exc: StoreError) -> None:
        """A failed write (disk full, ...): the changes stay in memory and are written
        again; whoever waits for them to be on disk is told why, never that they are."""
        failed = []
        with self._lock:
            for rec, (results, items) in zip(records, taken):
                rec.unsaved_results = {**results, **rec.unsaved_results}
                rec.dirty_items |= items
                rec.dirty = True
                self._dirty[rec.id] = rec
                keep = []
                for predicate, future in rec.waiters:
                    (failed if predicate(rec) else keep).append(future)
                rec.waiters = [(p, f) for p, f in rec.waiters if f not in failed]
            first = self.store_error is None
            self.store_error = exc
            if not self._closed:
                self._loop.call_soon_threadsafe(self._loop.call_later, STORE_RETRY_SECONDS, self.flush)
        if first:
            logger.error("qnb: %s; retrying every %s s", exc, STORE_RETRY_SECONDS)
        for future in failed:
            if not future.done():
                future.set_exception(exc)

    @staticmethod
    def _ready_waiters(rec: JobRecord) -> list[tuple[concurrent.futures.Future, JobStatus]]:
        ready, waiting = [], []
        for predicate, future in rec.waiters:
            if predicate(rec):
                ready.append((future, rec.status))
            else:
                waiting.append((predicate, future))
        rec.waiters = waiting
        return ready

    def add_listener(self, listener: Callable[[JobRecord], None]) -> Callable[[], None]:
        """Call ``listener(record)`` on every change (from any thread; keep it quick)."""
        with self._lock:
            self._listeners.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    # -- waiting ---------------------------------------------------------------------------

    def when(self, job_id: str, predicate: Predicate) -> concurrent.futures.Future:
        """A future that resolves (to the status) once ``predicate(record)`` holds and is stored."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            rec = self._records.get(job_id)
            if rec is not None:
                if predicate(rec) and rec.persisted and not rec.dirty:
                    future.set_result(rec.status)
                else:
                    if predicate(rec) and self.store_error is not None and not self._closed:
                        # Writes are failing: try again now; the waiter hears either way.
                        self._loop.call_soon_threadsafe(self.flush)
                    rec.waiters.append((predicate, future))
                return future
        stored = self.load(job_id)
        if predicate(stored):
            future.set_result(stored.status)
        else:  # run by another live process: follow it through the shared store
            asyncio.run_coroutine_threadsafe(
                self._follow_stored(job_id, predicate, future), self._loop
            )
        return future

    async def _follow_stored(
        self, job_id: str, predicate: Predicate, future: concurrent.futures.Future
    ) -> None:
        while not future.done():
            await asyncio.sleep(0.25)
            rec = self.store.load_job(job_id)
            if rec is not None and rec.owner and not rec.done:
                if not _ownership.owner_alive(self.home / "owners", rec.owner):
                    self._recover_interrupted()
                    rec = self.store.load_job(job_id)
            if rec is not None and predicate(rec):
                future.set_result(rec.status)

    # -- reads -----------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The manager's event loop (its own thread): layers above schedule work on it."""
        return self._loop

    def live_records(self) -> list[JobRecord]:
        """The records this manager holds (jobs of this process and those it follows)."""
        with self._lock:
            return list(self._records.values())

    def snapshot(self, records: Iterable[JobRecord], view: Callable[[JobRecord], T]) -> list[T]:
        """``view(record)`` for each record, all taken at one consistent moment."""
        with self._lock:
            return [view(rec) for rec in records]

    def record(self, job_id: str) -> JobRecord | None:
        """The live record if this process runs the job, else None."""
        with self._lock:
            return self._records.get(job_id)

    def load(self, job_id: str) -> JobRecord:
        rec = self.record(job_id)
        if rec is not None:
            return rec
        stored = self.store.load_job(job_id)
        if stored is None:
            raise UnknownJobError(
                f"no job with id {job_id!r} in the store at {self.store.path} "
                "(qnb.jobs() lists the jobs there)"
            )
        return stored

    def find(
        self,
        *,
        status: Sequence[str] | None = None,
        target: str | None = None,
        user: str | None = None,
        limit: int = 100,
    ) -> list[JobRecord]:
        self.flush()
        found = self.store.find_jobs(status=status, target=target, user=user, limit=limit)
        with self._lock:
            return [self._records.get(r.id, r) for r in found]

    def resolve_prefix(self, prefix: str) -> str:
        """A full job id from a unique prefix of it."""
        self.flush()
        return self.store.resolve(prefix).id

    def results(self, job_id: str) -> dict[int, str]:
        self.flush()
        return self.store.load_results(job_id)

    def circuits(self, job_id: str) -> list[str]:
        self.flush()
        return self.store.load_circuits(job_id)

    # -- cancelling and the queue -----------------------------------------------------------

    def cancel(self, job_id: str) -> JobStatus:
        """Ask to cancel; returns the status now. Never raises for a finished job."""
        with self._lock:
            rec = self._records.get(job_id)
            if rec is None:
                stored = self.load(job_id)
                if stored.done:
                    return stored.status
                raise JobStateError(
                    f"job {job_id} is run by another process ({stored.owner}); "
                    "cancel it from there"
                )
            if rec.done or rec.cancel_requested:
                return rec.status
            if rec.status in IN_QUEUE and rec in self._queues[rec.target]:
                self._cancel_queued(rec)
                return rec.status
            _lifecycle.request_cancel(rec)  # CANCELLING until the target confirms
            self._changed(rec)
            handle = rec.handle
        if handle is not None:
            target = self.targets.get(rec.target)
            asyncio.run_coroutine_threadsafe(self._cancel_on_target(rec, target), self._loop)
        # Without a handle yet, _drive cancels as soon as the target has accepted the job.
        return rec.status

    def _cancel_queued(self, rec: JobRecord) -> None:
        # The queue is ours, so removing it from the queue is the confirmation.
        self._queues[rec.target].remove(rec)
        rec.circuits = rec.resolvers = None  # it never runs: the store has them
        _lifecycle.cancel_queued(rec)
        self._changed(rec)

    def pending(self, target: str) -> list[JobRecord]:
        """The target's queue, head first."""
        with self._lock:
            return list(self._queues[target])

    def remove_queued(
        self,
        target: str,
        *,
        job_id: str | None = None,
        position: int | None = None,
        expected_id: str | None = None,
    ) -> JobRecord:
        """Take one job out of the queue (it ends ``cancelled``) by id or 1-based position."""
        with self._lock:
            queue = self._queues[target]
            if position is not None:
                rec = self._at_position(target, position)
                if expected_id is not None and rec.id != expected_id:
                    raise QueueConflictError(
                        f"position {position} of the {target!r} queue now holds job "
                        f"{rec.id[:8]} ({rec.name}), not {expected_id[:8]}; the queue moved. "
                        "Nothing was removed; look at the queue again."
                    )
            else:
                rec = next((r for r in queue if r.id == job_id), None)
                if rec is None:
                    status = self.load(job_id).status.value
                    raise QueueError(
                        f"job {job_id[:8]} is not in the {target!r} queue (it is {status}); "
                        "use job.cancel() for a running job"
                    )
            self._cancel_queued(rec)
            return rec

    def move_to_front(self, job_id: str) -> JobRecord:
        with self._lock:
            rec = self.load(job_id)
            queue = self._queues[rec.target]
            if rec not in queue:
                raise QueueError(
                    f"job {job_id[:8]} is not waiting in a queue (it is {rec.status.value})"
                )
            queue.remove(rec)
            # The very head: ahead of every priority too.
            rec.priority = max([rec.priority, *(r.priority for r in queue)])
            self._seq_front -= 1
            rec.queue_seq = self._seq_front
            queue.insert(0, rec)
            self._changed(rec)
            return rec

    def position(self, rec: JobRecord, *, ask: bool = False) -> int | None:
        """The job's 1-based queue position, None once it left the queue. For a target
        that owns its queue, the position last heard from it, or with ``ask`` (a user's
        explicit question, never a display) the target's answer now."""
        with self._lock:
            if rec.status not in IN_QUEUE:
                return None
            queue = self._queues[rec.target]
            # The queue is sorted by queue_order: found in O(log n), not a scan.
            index = bisect.bisect_left(queue, queue_order(rec), key=queue_order)
            if index < len(queue) and queue[index] is rec:
                return index + 1
        try:
            target = self.targets.get(rec.target)
        except QnbError:
            return None
        if not isinstance(target, QueueOwningTarget) or rec.remote_id is None:
            return None
        try:
            backend = target.queue_backend()
        except QueueError:
            return None
        if ask:  # outside the lock: this asks the target
            return next((e.position for e in backend.entries() if e.id == rec.remote_id), None)
        return backend.known_positions().get(rec.remote_id)

    def _at_position(self, target: str, position: int) -> JobRecord:
        return entry_at(self._queues[target], position, target)

    def at_position(self, target: str, position: int) -> JobRecord:
        with self._lock:
            return self._at_position(target, position)

    # -- resubmission -----------------------------------------------------------------------

    def resubmit(
        self, job_id: str, *, only_failed: bool = False, priority: int | None = None
    ) -> JobRecord:
        """A new job of a finished job's items (or its failed and cancelled ones only),
        linked by ``parent_id``; ``priority`` (default: the old job's) lets a queue server
        apply the resubmitter's own rights."""
        rec = self.load(job_id)
        if not rec.done:
            raise JobStateError(
                f"job {job_id[:8]} is still {rec.status.value}; resubmit a finished job "
                "(cancel it first if you want to run it again)"
            )
        redo = [
            i
            for i, item in enumerate(rec.items)
            if not only_failed or item.status in (JobStatus.FAILED, JobStatus.CANCELLED)
        ]
        if not redo:
            raise JobStateError(f"nothing to resubmit: every item of job {job_id[:8]} completed")
        texts = self.circuits(job_id)
        # The points of a sweep share one circuit: each distinct text is read once.
        parsed = {text: _circuits.from_json(text) for text in {texts[i] for i in redo}}
        circuits = {rec.items[i].label: parsed[texts[i]] for i in redo}
        return self.submit(
            self.targets.get(rec.target),
            circuits,
            shots=rec.shots,
            name=rec.name,
            user=rec.user,
            parent_id=rec.id,
            circuit_json=[texts[i] for i in redo],
            priority=rec.priority if priority is None else priority,
            params=[rec.items[i].params for i in redo],  # failed sweep points only
            resolvers=[None if rec.items[i].params is None else _sweeps.resolver_of(rec.items[i].params)
                       for i in redo],  # fmt: skip
        )

    # -- exit of the process (added with the CLI and pool work; atexit, see get_manager) --

    def shutdown_at_exit(self) -> None:
        """At exit: kill the simulation workers at once (their work cannot finish now),
        close, and mark this process's unfinished jobs failed (interrupted), saying once
        which they are. Registered after the pool's and multiprocessing's own handlers,
        so it runs before them: nothing waits for a simulation."""
        with self._lock:
            if self._closed:
                return
            left = [rec for rec in self._records.values() if not rec.done and rec.owner == self.owner]
        get_pool().shutdown()
        self.close()
        if not left:
            return
        try:
            store = Store(self.store.path)
        except StoreError as exc:
            logger.error("qnb: cannot mark the jobs left at exit as interrupted (%s); the next process will", exc)
            return
        try:
            # Some may have failed already, as the pool's shutdown ended their items:
            # the others are marked here. Either way they are the jobs left, named below.
            _ownership.interrupt(store, self.owner)
            # (A job that completed in the last moment is not one left.)
            left = [rec for rec in left if store.load_job(rec.id).status is not JobStatus.COMPLETED]
        except StoreError as exc:
            logger.error("qnb: cannot mark the jobs left at exit as interrupted (%s); the next process will", exc)
            return
        finally:
            store.close()
        if not left:
            return
        names = ", ".join(f"{rec.id[:8]} {rec.name!r}" for rec in left[:10])
        more = f" and {len(left) - 10} more" if len(left) > 10 else ""
        logger.warning(
            "qnb: %d job(s) had not finished when this process exited and are marked "
            "failed (interrupted): %s%s. job.resubmit() runs them again; to let jobs "
            "finish, call qnb.wait_all() (or job.result()) before the script ends.",
            len(left), names, more,
        )


async def _cancel_all_tasks() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


def _circuits_of(texts: Sequence[str]) -> list[cirq.Circuit]:
    """Circuits from stored Cirq JSON, each distinct text parsed once."""
    parsed = {text: _circuits.from_json(text) for text in set(texts)}
    return [parsed[text] for text in texts]


def _json_of_items(circuits: Iterable[cirq.Circuit]) -> list[str]:
    """Cirq JSON per item, each distinct circuit written once (a sweep's points share
    one circuit: writing it again per point would cost more than simulating it)."""
    circuits = list(circuits)
    distinct = list({id(c): c for c in circuits}.values())
    texts = dict(zip(map(id, distinct), _circuits.to_json_many(distinct)))
    return [texts[id(c)] for c in circuits]


def _item_resolvers(rec: JobRecord) -> list[cirq.ParamResolver | None] | None:
    """The sweep points of a record loaded from the store (None: not swept)."""
    if not rec.swept:
        return None
    return [None if it.params is None else _sweeps.resolver_of(it.params) for it in rec.items]


def _settle(future: concurrent.futures.Future | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


def _resolve(ready: list[tuple[concurrent.futures.Future, JobStatus]]) -> None:
    # Outside the manager's lock: done-callbacks run user code.
    for future, status in ready:
        if not future.done():
            future.set_result(status)


_manager: JobManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> JobManager:
    """The process's JobManager, started on first use (store under ``$QNB_HOME``)."""
    global _manager
    with _manager_lock:
        if _manager is None or _manager._closed:
            _manager = JobManager(default_home())
            atexit.register(_manager.shutdown_at_exit)
        return _manager


def set_manager(manager: JobManager | None) -> JobManager | None:
    """Swap the process's manager (tests); returns the previous one."""
    global _manager
    with _manager_lock:
        previous, _manager = _manager, manager
        return previous


__all__ = ["JobManager", "get_manager", "has_left_queue", "is_done"]
