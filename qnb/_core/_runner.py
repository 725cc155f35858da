"""Driving jobs on their targets: starting them, handing them over to a target that owns
its queue, following what the targets report, cancelling on the target, and following
again after a restart the jobs a vendor or a queue server runs for this store.

Targets report (item statuses, outcomes); :mod:`qnb._lifecycle` decides what that means.
Everything here runs on the core's loop, except the calls that wait for it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import cirq

from .. import _circuits, _lifecycle, _sweeps
from .._errors import InvalidOptionError, QnbError, QueueError
from .._records import JobRecord
from .._status import TERMINAL, JobStatus
from .._targets import QueueOwningTarget, ScheduledTarget, Target, TargetJob, TargetRegistry
from ._context import Core
from ._persistence import WriteBehind
from ._scheduler import Scheduler

logger = logging.getLogger("qnb")

# How long a submit to a target with its own queue waits for the target to take the job
# (a target that cannot be reached says so at once, and the job waits "reconnecting").
HAND_OVER_WAIT_SECONDS = 60.0
# The wait before items that failed transiently run again (``retries=``): doubled for
# each attempt (1 s, 2 s, 4 s, ...) up to RETRY_MOST_SECONDS, so a worker that died of
# memory shortage is not replaced into the same squeeze at once.
RETRY_FIRST_SECONDS = 1.0
RETRY_MOST_SECONDS = 30.0


class Runner:
    def __init__(self, core: Core, persistence: WriteBehind):
        self.core = core
        self.persistence = persistence
        self.scheduler: Scheduler | None = None  # set by the manager (they point at each other)
        #: Called (under the core's lock) after each report a followed job's target
        #: gave: ``(record, target, handle)``; the estimator keeps ETAs current with it.
        self.after_report: Callable[[JobRecord, Target, Any], None] | None = None
        #: Jobs whose items wait to run again, by id: set to wake the wait (a cancel).
        self._retry_waits: dict[str, asyncio.Event] = {}

    def start(self, rec: JobRecord, target: Target) -> None:
        """Drive a job that left qnb's queue (on the loop, under the core's lock)."""
        self.core.loop.create_task(self._drive(rec, target))

    # -- hand-over to a target that owns its queue ------------------------------------------

    def hand_over_and_wait(self, rec: JobRecord, target: Target, texts: list[str], front: bool) -> None:
        """Return once the target has the job (so reads see it), or is away and the job
        waits "reconnecting". A refusal (a 4xx) raises here and leaves nothing behind."""
        answered: concurrent.futures.Future = concurrent.futures.Future()
        self.core.loop.call_soon_threadsafe(self.hand_over, rec, target, texts, front, answered)
        if on_loop(self.core.loop):
            return  # the loop cannot wait for itself; the job follows as usual
        try:
            answered.result(HAND_OVER_WAIT_SECONDS)
        except concurrent.futures.TimeoutError:
            pass  # a target that neither answers nor says it is away: the job follows as usual
        except QnbError:
            self._forget(rec)
            raise

    def _forget(self, rec: JobRecord) -> None:
        """A job its target refused at hand-over: gone from memory and from the store."""
        with self.core.lock:
            self.core.records.pop(rec.id, None)
            self.persistence.drop(rec)
        self.persistence.flush()
        self.core.store.delete_job(rec.id)

    def discard(self, rec: JobRecord) -> None:
        """Undo an accepted-but-not-stored job (its submit was interrupted)."""
        with self.core.lock:
            self.core.records.pop(rec.id, None)
            self.persistence.drop(rec)
            self.scheduler.discard(rec)
            rec.live.cancel_requested = True
            handle = rec.live.handle
        if handle is not None:
            self.cancel_soon(rec, self.core.targets.get(rec.target))

    def hand_over(
        self,
        rec: JobRecord,
        target: Target,
        texts: list[str] | None,
        front: bool = False,
        answered: concurrent.futures.Future | None = None,
        resumed: bool = False,
    ) -> None:
        self.core.loop.create_task(self._drive(
            rec, target, circuit_json=texts, front=front, answered=answered, resumed=resumed
        ))  # fmt: skip

    # -- driving ----------------------------------------------------------------------------

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
        try:
            job = None
            if rec.remote_id is not None and isinstance(target, QueueOwningTarget):
                handle = await target.reattach(rec.remote_id, len(rec.items))
            else:
                job = await self._target_job(rec, target, circuit_json, front, answered, resumed)
                try:
                    handle = await target.submit(job)
                except QnbError as exc:
                    if answered is not None and not answered.done() and not exc.retryable:
                        answered.set_exception(exc)  # the submitter raises; nothing stays
                        return
                    raise
            self._taken(rec, target, handle)
            settle(answered)
            await self._follow(rec, target, handle, range(len(rec.items)))
            if job is not None and self._reruns(target):
                await self._run_again(rec, target, job)
        except Exception as exc:  # a broken target fails its job, never the manager
            if self.core.closed and not target.local:
                return  # exit, not the job's fault: the next process follows it again
            logger.warning("job %s on %s failed in its target", rec.id[:8], target.name, exc_info=True)
            with self.core.lock:
                # A vendor or server away, a call past its deadline: a rerun may do.
                retryable = isinstance(exc, QnbError) and exc.retryable
                _lifecycle.fail(rec, f"{type(exc).__name__}: {exc}", retryable=retryable)
                self.persistence.changed(rec)
        finally:
            settle(answered)
            with self.core.lock:
                rec.live.handle = None
                rec.live.circuits = rec.live.resolvers = rec.live.circuit_json = None  # the store has them
            if isinstance(target, ScheduledTarget):
                self.scheduler.ended(target)

    async def _target_job(
        self, rec: JobRecord, target: Target, circuit_json: list[str] | None, front: bool,
        answered: concurrent.futures.Future | None, resumed: bool,
    ) -> TargetJob:  # fmt: skip
        # The texts the store keeps travel to the workers (serialize once).
        circuit_json = circuit_json or rec.live.circuit_json
        if rec.live.circuits is None:
            # It waited in the queue as stored text (see the manager's submit), or is
            # handed over again after a restart. Parsing a large batch takes seconds:
            # off this loop, which drives every job.
            circuit_json = circuit_json or self.core.store.load_circuits(rec.id)
            try:
                rec.live.circuits = await self.core.loop.run_in_executor(None, _circuits.from_json_many, circuit_json)
            except RuntimeError:  # the interpreter is exiting: its thread pools take nothing
                rec.live.circuits = _circuits.from_json_many(circuit_json)
        return TargetJob(
            rec.id,
            rec.shots,
            [it.label for it in rec.items],
            rec.live.circuits,
            circuit_json=circuit_json,
            front=front,
            name=rec.name,
            priority=rec.priority,
            tags=rec.tags,
            params=rec.live.resolvers or item_resolvers(rec),
            report_waiting=lambda: settle(answered),
            maybe_created=resumed,
            retries=rec.retries,
            max_cost=rec.live.max_cost,
        )

    def _taken(self, rec: JobRecord, target: Target, handle) -> None:
        """The target has the job: its id is on disk before the submitter hears of it (a
        process killed right after submit() returned leaves a job the next one follows)."""
        with self.core.lock:
            rec.live.handle = handle
            stored_id = rec.remote_id
            if isinstance(target, QueueOwningTarget):
                rec.remote_id = target.handle_id(handle)
                if rec.remote_id != stored_id:
                    self.persistence.changed(rec)
            cancel_now = rec.live.cancel_requested
        if rec.remote_id != stored_id:
            self.persistence.flush()
        if cancel_now:
            self.core.loop.create_task(self.cancel_on_target(rec, target))

    async def _follow(self, rec: JobRecord, target: Target, handle, indices: Sequence[int]) -> None:
        """Follow one run of the job's items ``indices`` (the handle's items, in its
        order: all of them, or a round of items run again) until each has finished
        there or the job has ended."""
        open_ = set(range(len(indices)))  # the handle's items not yet finished there
        while open_ and not rec.done:
            statuses = await target.poll(handle)
            ended = {j for j in open_ if statuses[j] in TERMINAL}
            # (An item the lifecycle ran again is pending in the record, yet its failed
            # run stays finished here: it is reported once, never again.)
            finished = [j for j in sorted(ended) if rec.items[indices[j]].status not in TERMINAL]
            outcomes = await target.results(handle, finished) if finished else {}
            usage = target.job_usage(handle) if isinstance(target, QueueOwningTarget) else None
            with self.core.lock:
                reported = [it.status for it in rec.items]
                for j in open_:
                    reported[indices[j]] = statuses[j]
                mapped = {indices[j]: outcome for j, outcome in outcomes.items()}
                # (Asked each time: items failing as the process closes are not run again.)
                _lifecycle.apply_report(rec, reported, mapped, may_retry=self._reruns(target))
                open_ -= ended
                if usage is not None:
                    rec.usage = usage
                if self.after_report is not None:
                    try:
                        self.after_report(rec, target, handle)
                    except Exception:  # an estimate never costs a job its report
                        logger.warning("qnb: no estimate for job %s", rec.id[:8], exc_info=True)
                self.persistence.changed(rec)

    # -- running again the items that failed transiently (retries=N) -----------------------

    def _reruns(self, target: Target) -> bool:
        """Whether this runner runs failed items again on ``target``: a target qnb
        schedules (its rounds are qnb's to start), not while the process closes. A target
        that owns its queue retries there, or is refused ``retries`` at submit
        (:func:`refuse_retries_where_unsupported`)."""
        return isinstance(target, ScheduledTarget) and not self.core.closed

    async def _run_again(self, rec: JobRecord, target: Target, job: TargetJob) -> None:
        """Rounds of the items waiting to run again, each a job of just those items on
        the same target, after a backoff, until none waits (or the job is cancelled)."""
        while True:
            with self.core.lock:
                again = _lifecycle.waiting_to_retry(rec)
                if not again or rec.done:
                    return
                attempt = max(rec.items[i].attempts for i in again)
                woken = self._retry_waits[rec.id] = asyncio.Event()
                if rec.live.cancel_requested:
                    woken.set()
            delay = min(RETRY_FIRST_SECONDS * 2 ** (attempt - 1), RETRY_MOST_SECONDS)
            try:
                await asyncio.wait_for(woken.wait(), delay)
            except asyncio.TimeoutError:
                pass
            finally:
                self._retry_waits.pop(rec.id, None)
            with self.core.lock:
                if rec.live.cancel_requested or self.core.closed:
                    if rec.live.cancel_requested:
                        _lifecycle.cancel_retrying(rec)  # qnb holds them: confirmed at once
                        self.persistence.changed(rec)
                    return
            handle = await target.submit(round_job(job, again))
            self._taken(rec, target, handle)
            await self._follow(rec, target, handle, again)

    async def cancel_on_target(self, rec: JobRecord, target: Target) -> None:
        woken = self._retry_waits.get(rec.id)
        if woken is not None:
            woken.set()  # its items wait to run again here, on no target: see _run_again
            return
        try:
            await target.cancel(rec.live.handle)
        except Exception as exc:
            # Stays CANCELLING: the job goes on and ends as the target decides.
            with self.core.lock:
                rec.error = f"cancel failed: {type(exc).__name__}: {exc}"
                self.persistence.changed(rec)

    def cancel_soon(self, rec: JobRecord, target: Target) -> None:
        """From any thread: ask the target to stop ``rec`` (which has a handle)."""
        asyncio.run_coroutine_threadsafe(self.cancel_on_target(rec, target), self.core.loop)

    # -- following again after a restart ----------------------------------------------------

    def follow_target_jobs(self, target: Target) -> list[str]:
        """Follow again the unfinished jobs that ``target`` (which owns its queue) runs
        for this store: after a kernel restart, once the target is connected again."""
        core = self.core
        self.persistence.flush()
        unfinished = [s.value for s in JobStatus if not s.is_terminal]
        found = core.store.find_jobs(status=unfinished, target=target.name, limit=1_000_000)
        followed = []
        with core.lock:
            for rec in found:
                if rec.id not in core.records and rec.owner is None:
                    rec.live.cancel_requested = rec.status is JobStatus.CANCELLING
                    core.records[rec.id] = rec
                    followed.append(rec)
        for rec in followed:
            texts = None
            if rec.remote_id is None:
                # The process that sent it died before the target's id was stored: the
                # target may have the job or not. It looks first (an idempotency key, or
                # the qnb id in the job's name) and creates it only if it is not there.
                texts = core.store.load_circuits(rec.id)
            core.loop.call_soon_threadsafe(self.hand_over, rec, target, texts, False, None, True)
        return [rec.id for rec in followed]

    def follow_here(self, target_name: str) -> bool:
        """Follow the jobs of a target that owns its queue, if this process can reach
        it (True): so that it can act on them itself."""
        try:
            target = self.core.targets.get(target_name)
        except QnbError:
            return False
        if not isinstance(target, QueueOwningTarget):
            return False
        self.follow_target_jobs(target)
        return True

    def resume_following(self) -> None:
        """Jobs that a target with its own queue runs for this store (a vendor's cloud
        from the targets file, a plug-in) are followed again without being asked: their
        targets load in the background (loading may ask the vendor for its device)."""
        followed = self.core.store.followed_targets()
        if not followed:
            return
        try:
            names = sorted(followed & set(self.core.targets.lazy()))
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
                target = self.core.targets.get(name)
                if isinstance(target, QueueOwningTarget) and not self.core.closed:
                    self.follow_target_jobs(target)
            except Exception:  # a target that cannot load now is followed once registered
                logger.warning("qnb: could not follow the jobs of target %r again", name, exc_info=True)


def refuse_retries_where_unsupported(target: Target, retries: int) -> None:
    """Refuse ``retries`` at submit, before anything is stored, where nothing would run
    a failed item again: a target that owns its queue and does not take ``retries``
    itself (``takes_retries``: a queue server and the vendor shape do)."""
    if retries and isinstance(target, QueueOwningTarget) and not target.takes_retries:
        refused = InvalidOptionError(
            f"target {target.name!r} cannot run failed items again (retries={retries}): "
            "submit with retries=0, and resubmit a job whose items failed "
            "(job.resubmit(only_failed=True))"
        )
        refused.field = ("retries",)  # type: ignore[attr-defined]  # (a server names it)
        raise refused


def round_job(job: TargetJob, indices: Sequence[int]) -> TargetJob:
    """The items ``indices`` of ``job`` as a job of their own (a round run again), in
    that order: its results map back by position."""
    texts = job.circuit_json
    return dataclasses.replace(
        job,
        labels=[job.labels[i] for i in indices],
        circuits=[job.circuits[i] for i in indices],
        circuit_json=None if texts is None else [texts[i] for i in indices],
        params=None if job.params is None else [job.params[i] for i in indices],
        front=False,
        maybe_created=False,
    )


def remote_position(targets: TargetRegistry, rec: JobRecord, *, ask: bool) -> int | None:
    """A job's position in the queue of a target that owns it: as last heard, or with
    ``ask`` the target's answer now (a user's explicit question, never a display)."""
    try:
        target = targets.get(rec.target)
    except QnbError:
        return None
    if not isinstance(target, QueueOwningTarget) or rec.remote_id is None:
        return None
    try:
        backend = target.queue_backend()
    except QueueError:
        return None
    if ask:
        return next((e.position for e in backend.entries() if e.id == rec.remote_id), None)
    return backend.known_positions().get(rec.remote_id)


def item_resolvers(rec: JobRecord) -> list[cirq.ParamResolver | None] | None:
    """The sweep points of a record loaded from the store (None: not swept)."""
    if not rec.swept:
        return None
    return [None if it.params is None else _sweeps.resolver_of(it.params) for it in rec.items]


def settle(future: concurrent.futures.Future | None) -> None:
    if future is not None and not future.done():
        future.set_result(None)


def on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False
