"""The JobManager: the one writer of job state in a process, a thin façade over the
job core (:mod:`qnb._core`).

It owns an asyncio loop on a daemon thread, so jobs progress while the kernel's main
thread runs a cell. Public API calls come from any thread; they take the core's lock,
change statuses only through :mod:`qnb._lifecycle` (the one writer of status and
timestamps), and hand anything slow to the loop. The parts, one concern each:

- :mod:`qnb._core._ownership` — owner lock files, recovery of a dead process's jobs;
- :mod:`qnb._core._persistence` — write-behind to the store, waiters, listeners;
- :mod:`qnb._core._scheduler` — qnb's own per-target queues and their operations;
- :mod:`qnb._core._runner` — driving jobs on targets, hand-over, following again.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import cirq

from . import _circuits, _lifecycle, _prices
from ._core import _ownership
from ._core._context import Core
from ._core._ownership import default_home
from ._core._control import Control, Elsewhere
from ._core._eta import Estimator
from ._core._persistence import Predicate, WriteBehind, resolve
from ._core._resubmit import resubmission
from ._core._runner import Runner, refuse_retries_where_unsupported, remote_position
from ._core._scheduler import Scheduler
from ._core._watch import StoreWatch
from ._errors import StoreError, UnknownJobError
from ._estimate import CircuitFeatures, Estimate
from ._features import features_of
from ._records import ItemRecord, JobRecord, JobRuntime
from ._status import IN_QUEUE, TERMINAL, JobStatus
from ._store import Store
from ._targets import QueueOwningTarget, Target, TargetRegistry, registry
from ._targets._pool import get_pool

logger = logging.getLogger("qnb")

T = TypeVar("T")


def is_done(rec: JobRecord) -> bool:
    return rec.status in TERMINAL


def has_left_queue(rec: JobRecord) -> bool:
    return rec.status not in IN_QUEUE


class _Reads:
    """What the layers above read: live records, and the store once written (the
    JobManager's reads, apart for its size; ``flush`` is the JobManager's)."""

    _core: Core
    store: Store

    def live_records(self) -> list[JobRecord]:
        """The records this manager holds (jobs of this process and those it follows)."""
        with self._core.lock:
            return list(self._core.records.values())

    def snapshot(self, records: Iterable[JobRecord], view: Callable[[JobRecord], T]) -> list[T]:
        """``view(record)`` for each record, all taken at one consistent moment."""
        with self._core.lock:
            return [view(rec) for rec in records]

    def record(self, job_id: str) -> JobRecord | None:
        """The live record if this process runs the job, else None."""
        with self._core.lock:
            return self._core.records.get(job_id)

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
        **search,  # tags, name, since: see Store.find_jobs
    ) -> list[JobRecord]:
        self.flush()
        found = self.store.find_jobs(status=status, target=target, user=user, limit=limit, **search)
        with self._core.lock:
            return [self._core.records.get(r.id, r) for r in found]

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


class JobManager(_Reads):
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
        home = Path(home)
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only home: the store says what can still be done
        store = Store(store_path or home / _ownership.STORE_NAME)
        owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        try:
            self._owner_file = _ownership.claim_owner(home / "owners", owner)
        except OSError:
            if not store.read_only:
                raise
            self._owner_file = None  # reading only: this process runs no job
        self._core = core = Core(home, store, targets, owner, asyncio.new_event_loop())
        self.home, self.store, self.targets = home, store, targets
        self.owner = owner  # local jobs this process runs carry it (see _core._ownership)
        self._origin = _ownership.origin()
        self._persistence = WriteBehind(core)
        self._runner = Runner(core, self._persistence)
        # ETAs: the estimator forecasts again when a queue changes and learns from reports.
        self._estimator = Estimator(core, announce=self._persistence.changed)
        self._scheduler = Scheduler(core, changed=self._estimator.watching(self._persistence.changed),
                                    start=self._runner.start)  # fmt: skip
        self._runner.scheduler = self._estimator.scheduler = self._scheduler
        self._runner.after_report = self._estimator.after_report
        self._watch = StoreWatch(core, recover=self._recover_interrupted)
        control = Control(core, carry_out=self._carry_out)
        self._elsewhere = Elsewhere(core, control, recover=self._recover_interrupted,
                                    follow_here=self._runner.follow_here)  # fmt: skip
        self._thread = threading.Thread(target=core.loop.run_forever, name="qnb-job-manager", daemon=True)
        self._thread.start()
        _ownership.apply_kept_changes(store)
        if requeue_interrupted:
            self.interrupted_jobs: list[str] = []
            self.requeued_jobs = self._requeue_interrupted()
        else:
            # A read-only store is read as it is; the next writable process recovers.
            self.interrupted_jobs = [] if store.read_only else self._recover_interrupted()
            self._runner.resume_following()
        if not store.read_only:  # carry out what other processes ask of this one's jobs
            core.loop.call_soon_threadsafe(lambda: core.loop.create_task(control.watch()))
        if warm_pool:
            get_pool().start_warming()

    # -- what the layers above read -----------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._core.closed

    @property
    def store_error(self) -> StoreError | None:
        """The last write that failed, while changes wait in memory to be written again."""
        return self._persistence.store_error

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The manager's event loop (its own thread): layers above schedule work on it."""
        return self._core.loop

    # -- lifecycle of the manager -------------------------------------------------------

    def close(self) -> None:
        """Stop the loop and release the store (tests; a kernel just exits)."""
        core = self._core
        with core.lock:
            if core.closed:
                return
            core.closed = True
        # Driving stops first, so that nothing the exit does (a vendor call cut short)
        # reads as a job's failure; then what is known is written. Unfinished jobs stay
        # unfinished in the store: the next manager marks local ones interrupted (they
        # keep their circuits) and follows again those a vendor or queue server runs.
        _stop_driving(core.loop)
        self.flush()
        self._estimator.close()  # (what it learnt, for the next process)
        if self.store_error is not None:
            self._persistence.keep_unsaved_for_next_process()
        _stop_loop(core.loop, self._thread)
        core.store.close()
        if self._owner_file is not None:
            _ownership.release_owner(core.home / "owners", core.owner, self._owner_file)

    def _recover_interrupted(self) -> list[str]:
        return _ownership.mark_interrupted(self.store, self.home, self.owner, warn=True)

    def _requeue_interrupted(self) -> list[str]:
        # Their circuits stay in the store until each starts (the runner loads them).
        records = _ownership.take_over(self.store, self.home, self.owner)
        with self._core.lock:
            self._scheduler.take_over(records)
            self._estimator.adopt(records)
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
        tags: Sequence[str] = (),
        cost: float | None = None,
        currency: str | None = None,
        retries: int = 0,
        features: Sequence[CircuitFeatures] | None = None,
        max_cost: float | None = None,
    ) -> JobRecord:
        """Accept a validated job: queue it, store it, return once it is stored.

        Circuits without ``circuit_json`` (qnb.submit's checks write most) are written
        here, while the job may already run; results arriving meanwhile wait in memory
        and are written with the job. ``features``: the items' (``features_of``), when
        the caller has them (they are taken here otherwise, for the job's estimate).
        """
        refuse_retries_where_unsupported(target, retries)  # before anything is stored
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
            origin=self._origin,
            live=JobRuntime(persisted=False),
            priority=priority,
            tags=tuple(tags),
            cost=cost,
            currency=currency,
            retries=retries,
        )
        rec.live.circuits = list(circuits.values())
        rec.live.resolvers = None if resolvers is None else list(resolvers)
        rec.live.max_cost = max_cost  # (a target that prices its jobs checks it)
        # One text per circuit, for the store and for the workers alike (serialize once):
        # the executor takes an item's text as it leaves, the insert all of them.
        texts = rec.live.circuit_json = circuit_json or _circuits.CircuitTexts(rec.live.circuits)
        self._accept(rec, target, front, self._estimator.features(target, rec.live.circuits, features))
        try:
            # Not rec.live.circuit_json: a quick job may have finished and dropped it.
            if isinstance(texts, _circuits.CircuitTexts):
                texts = texts.written()
            self._insert(rec, target, texts)
        except BaseException:
            self._runner.discard(rec)
            raise
        if isinstance(target, QueueOwningTarget):
            # Handed over only once stored here, so a restarted kernel can always find
            # and follow (or submit again, under the same idempotency key) what it sent.
            self._runner.hand_over_and_wait(rec, target, list(texts), front)
        return rec

    def _accept(self, rec: JobRecord, target: Target, front: bool, features) -> None:
        """Into memory and a queue: qnb's own, or the target's (handed over once stored),
        with its estimate."""
        core = self._core
        owns_queue = isinstance(target, QueueOwningTarget)
        with core.lock:
            core.check_open()
            core.records[rec.id] = rec
            if owns_queue:
                _lifecycle.enqueue(rec)  # in the target's queue, not ours
                self._persistence.changed(rec)
            else:
                try:
                    self._estimator.admit(rec, target, features, front=front)
                except Exception:  # an estimate never stands between a job and its queue
                    logger.warning("qnb: no estimate for job %s", rec.id[:8], exc_info=True)
                self._scheduler.enqueue(rec, front=front)
            # A busy target starts its next job when one ends: no need to wake the loop.
            wake = not owns_queue and self._scheduler.has_room(target)
        if wake:
            core.loop.call_soon_threadsafe(self._scheduler.schedule, target)

    def _insert(self, rec: JobRecord, target: Target, texts: Sequence[str]) -> None:
        with self._core.lock:
            self.store.insert_job(rec, texts, rec.live.unsaved_results)
            ready = self._persistence.inserted(rec)
            if self._scheduler.waits(rec, target):
                # Its stored text is enough until it starts (the runner loads it): parsed
                # circuits of queued jobs were memory any user could fill (~90 MB a
                # 75,000-operation job). One about to start keeps them (parsing them
                # again costs ~2 ms of kernel CPU a circuit).
                rec.live.circuits = rec.live.resolvers = rec.live.circuit_json = None
        resolve(ready)

    def estimate_submission(self, target: Target, features: Sequence[CircuitFeatures], shots: int) -> Estimate:
        """How long a job of these circuits would wait and run on ``target`` (no cost:
        the API adds it; see :mod:`qnb._core._eta`)."""
        return self._estimator.estimate_submission(target, features, shots)

    def follow_target_jobs(self, target: Target) -> list[str]:
        """Follow again the unfinished jobs that ``target`` (which owns its queue) runs
        for this store: after a kernel restart, once the target is connected again."""
        return self._runner.follow_target_jobs(target)

    # -- writes, listeners, waiting ------------------------------------------------------------

    def flush(self) -> None:
        """Write every pending change now (called on the loop, or before reads)."""
        self._persistence.flush()

    def add_listener(self, listener: Callable[[JobRecord], None]) -> Callable[[], None]:
        """Call ``listener(record)`` on every change (from any thread; keep it quick)."""
        return self._persistence.add_listener(listener)

    def renotify(self, target: str) -> None:
        """Call the listeners again for the target's unfinished live jobs: how they look
        changed outside their records (their queue server went away or came back)."""
        with self._core.lock:
            for rec in self._core.records.values():
                if rec.target == target and not rec.done:
                    self._persistence.notify(rec)

    def when(self, job_id: str, predicate: Predicate) -> concurrent.futures.Future:
        """A future that resolves (to the status) once ``predicate(record)`` holds and is stored."""
        with self._core.lock:
            rec = self._core.records.get(job_id)
            if rec is not None:
                return self._persistence.wait(rec, predicate)
        return self._watch.when(self.load(job_id), predicate)

    # -- cancelling and the queue -----------------------------------------------------------

    def cancel(self, job_id: str) -> JobStatus:
        """Ask to cancel; returns the status now. Never raises for a finished job."""
        with self._core.lock:
            rec = self._core.records.get(job_id)
        if rec is None:
            stored = self.load(job_id)
            if stored.done:
                return stored.status
            status = self._elsewhere.act(stored, "cancel")  # None: followed here now
            return status if status is not None or self.record(job_id) is None else self.cancel(job_id)
        with self._core.lock:
            if rec.done or rec.live.cancel_requested:
                return rec.status
            if self._scheduler.is_queued(rec):
                self._scheduler.cancel_queued(rec)
                return rec.status
            _lifecycle.request_cancel(rec)  # CANCELLING until the target confirms
            self._persistence.changed(rec)
            handle = rec.live.handle
        if handle is not None:
            self._runner.cancel_soon(rec, self.targets.get(rec.target))
        # Without a handle yet, the runner cancels as soon as the target has the job.
        return rec.status

    def pending(self, target: str) -> list[JobRecord]:
        """The target's queue, head first."""
        with self._core.lock:
            return self._scheduler.pending(target)

    def remove_queued(
        self,
        target: str,
        *,
        job_id: str | None = None,
        position: int | None = None,
        expected_id: str | None = None,
    ) -> JobRecord:
        """Take one job out of the queue (it ends ``cancelled``) by id or 1-based position."""
        with self._core.lock:
            if position is not None:
                return self._scheduler.remove_at(target, position, expected_id)
            rec = self.load(job_id)
            if rec.owner in (self.owner, None) or rec.done:
                return self._scheduler.remove(target, rec)
        self._elsewhere.act(rec, "remove")  # waiting in another process's queue
        return self.load(job_id)

    def move_to_front(self, job_id: str) -> JobRecord:
        with self._core.lock:
            rec = self.load(job_id)
            if rec.owner in (self.owner, None) or rec.done:
                self._scheduler.move_to_front(rec)
                return rec
        self._elsewhere.act(rec, "front")  # waiting in another process's queue
        return self.load(job_id)

    def _carry_out(self, job_id: str, action: str) -> JobStatus:
        """What another process asked of a job this one runs (on the loop): done, and
        on disk before the answer, so the requester reads the outcome it is told."""
        rec = self.load(job_id)
        if action == "cancel":
            self.cancel(job_id)
        elif action == "remove":
            self.remove_queued(rec.target, job_id=job_id)
        else:
            self.move_to_front(job_id)
        self.flush()
        return rec.status

    def position(self, rec: JobRecord, *, ask: bool = False) -> int | None:
        """The job's 1-based queue position, None once it left the queue. For a target
        that owns its queue, the position last heard from it, or with ``ask`` (a user's
        explicit question, never a display) the target's answer now."""
        with self._core.lock:
            if rec.status not in IN_QUEUE:
                return None
            position = self._scheduler.position(rec)
            if position is not None:
                return position
        return remote_position(self.targets, rec, ask=ask)

    def at_position(self, target: str, position: int) -> JobRecord:
        with self._core.lock:
            return self._scheduler.at_position(target, position)

    # -- resubmission -----------------------------------------------------------------------

    def resubmit(
        self, job_id: str, *, only_failed: bool = False, priority: int | None = None
    ) -> JobRecord:
        """A new job of a finished job's items (or its failed and cancelled ones only),
        linked by ``parent_id``; ``priority`` (default: the old job's) lets a queue server
        apply the resubmitter's own rights."""
        rec = self.load(job_id)
        again = resubmission(rec, self.circuits(job_id), only_failed=only_failed)
        target = self.targets.get(rec.target)
        # Paid again: priced and held to the target's budget as a new submission is.
        features = [features_of(c) for c in again.circuits.values()]
        cost = _prices.cost_at_submit(
            target, features, rec.shots, max_cost=None, spent=lambda: self.store.spent(rec.target),
        )  # fmt: skip
        return self.submit(
            target, again.circuits, shots=rec.shots, name=rec.name,
            user=rec.user, parent_id=rec.id, circuit_json=again.texts,
            priority=rec.priority if priority is None else priority,
            params=again.params, resolvers=again.resolvers, tags=rec.tags, retries=rec.retries,
            cost=cost.amount, currency=cost.currency, features=features,
        )  # fmt: skip

    # -- exit of the process (atexit, see get_manager) --------------------------------------

    def shutdown_at_exit(self) -> None:
        """At exit: kill the simulation workers at once (their work cannot finish now),
        close, and mark this process's unfinished jobs failed (interrupted), saying once
        which they are. Registered after the pool's and multiprocessing's own handlers,
        so it runs before them: nothing waits for a simulation."""
        with self._core.lock:
            if self.closed:
                return
            left = [rec for rec in self._core.records.values() if not rec.done and rec.owner == self.owner]
        get_pool().shutdown()
        self.close()
        if left:
            _ownership.interrupt_at_exit(self.store.path, self.owner, left)


def _stop_driving(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel every task on the loop (driving, following, watching), waiting at most 5 s."""
    try:
        asyncio.run_coroutine_threadsafe(_cancel_all_tasks(), loop).result(timeout=5)
    except (concurrent.futures.TimeoutError, RuntimeError):
        pass


def _stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=5)
    if not thread.is_alive():
        loop.close()


async def _cancel_all_tasks() -> None:
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in others:
        task.cancel()
    await asyncio.gather(*others, return_exceptions=True)


_manager: JobManager | None = None
_manager_lock = threading.Lock()


def get_manager() -> JobManager:
    """The process's JobManager, started on first use (store under ``$QNB_HOME``).

    In a kernel it starts the simulation workers at once (a submit is coming, and the
    user is waiting for it); a script's or a command's workers start with its first
    local job, so one that only reads, waits or follows a vendor's jobs never pays for
    them (a forkserver importing Cirq and qsimcirq: ~1.5 s of CPU, ~200 MB)."""
    global _manager
    with _manager_lock:
        if _manager is None or _manager.closed:
            _manager = JobManager(default_home(), warm_pool="ipykernel" in sys.modules)
            atexit.register(_manager.shutdown_at_exit)
        return _manager


def set_manager(manager: JobManager | None) -> JobManager | None:
    """Swap the process's manager (tests); returns the previous one."""
    global _manager
    with _manager_lock:
        previous, _manager = _manager, manager
        return previous


__all__ = ["JobManager", "default_home", "get_manager", "has_left_queue", "is_done"]
