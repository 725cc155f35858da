"""ETAs: what a job would take before it is submitted (``qnb.estimate``), and what is
left of a job while it waits and runs (``job.estimate``).

Local simulator targets. Each item's time comes from a model learnt from what ran
(:mod:`._item_times`). A *forecast* then plays the pool forward: items wait in one
first-in-first-out line (the pool's) and take the first of the pool's N workers to be
free; a job waiting in qnb's queue joins that line when its target has room (a target
runs at most ``max_running_jobs`` jobs, the next starts when one ends). The forecast
gives each job its start and its last item's end: wait = start - now, run = end - start.
A worker takes an item at most once per N x ``KERNEL_SECONDS_PER_ITEM`` (the kernel
hands out about a thousand items a second, so tiny circuits are bound by it, not by
the workers). The emulator's items run one after another with its device's time.
A forecast of a few hundred items costs well under a millisecond.

Targets that own their queue (a queue server, a vendor) say themselves
(``estimate_submission``, ``job_estimate``), with qnb's history of the target's jobs to
combine with their own figures; where they say nothing, that history alone.

Upkeep. Everything runs under the core's lock — on the JobManager's loop, or for a
submit's own estimate on the submitting thread — except a model fit and a store write.
A target's report only notes that a job has new outcomes and asks for a *tick* (one
timer: at most every ``TICK_SECONDS`` after reports, sooner after a queue changed). The
tick takes the new items' times, fits the model when a job ended (else at most every
``FIT_SECONDS``), forecasts every local job again, and announces (to widgets, a
server's events) only jobs whose finish moved materially. Learnt times
reach the store in batches, at most every ``SAVE_SECONDS`` and at close. Measured: ~2%
of the kernel's CPU while 300 items run (benchmarks/bench_estimate.py).

Known limit: a burst of submits holds the kernel (its checks, its writes) while the
first of the burst's jobs runs, and the pool is fed slower meanwhile: the first job of
such a burst can take ~3x its forecast (the later ones are forecast with what ran).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from .._errors import QnbError, StoreError
from .._estimate import CircuitFeatures, Estimate, TargetHistory
from .._features import features_of
from .._records import JobRecord
from .._status import IN_QUEUE, TERMINAL, JobStatus
from .._targets import QueueOwningTarget, SimulatorTarget, Target
from .._targets._pool import get_pool
from ._context import Core
from ._item_times import KEEP_RUNS, ItemRun, ItemTimeModel, engine_key, sizes_of
from ._scheduler import Scheduler

logger = logging.getLogger("qnb")

#: After a report, a forecast of every local job at most this often (a burst of reports
#: is one tick); after a queue changed (a job queued, started, moved, cancelled), sooner.
TICK_SECONDS = 1.0
QUEUE_TICK_SECONDS = 0.5
#: While local jobs run, a tick this often even without reports (an item running past
#: its forecast pushes its job's finish on).
IDLE_TICK_SECONDS = 2.0
#: The model learns what ran when a job ends, else at most this often.
FIT_SECONDS = 5.0
#: Learnt item times are written to the store at most this often (and at close).
SAVE_SECONDS = 10.0
#: How long ``qnb.estimate`` waits for a target that owns its queue.
REMOTE_DEADLINE_SECONDS = 10.0
#: A target's history (from the store) is read again at most this often.
HISTORY_SECONDS = 30.0
#: The kernel's own share of an item (about a thousand items a second).
KERNEL_SECONDS_PER_ITEM = 0.001
#: A submit forecasts its job at once while no more items than this are live (beyond,
#: the next tick does: a forecast per submit of many small jobs would grow as n^2).
IMMEDIATE_FORECAST_ITEMS = 2000
#: ... and no more jobs than this (each forecast walks every live job: a burst of a
#: thousand one-circuit submits paid ~0.3 ms each for it; theirs come with the tick).
IMMEDIATE_FORECAST_JOBS = 64
#: A job is announced again when its finish moved by more than this many seconds, or by
#: more than this share of what was left (and more than JITTER_SECONDS).
MATERIAL_SECONDS = 5.0
MATERIAL_SHARE = 0.1
JITTER_SECONDS = 0.5


@dataclasses.dataclass(eq=False, slots=True)
class _Plan:
    """A local job as the forecast sees it."""

    rec: JobRecord | None  # None: a job not submitted (qnb.estimate)
    target: SimulatorTarget
    features: Sequence[CircuitFeatures] | None  # per item (None: not at hand, nothing learnt)
    shots: int
    sizes: np.ndarray | None  # per item, the model's parts (None: the features are not at hand)
    seconds: list[float]  # per item, as the model predicts
    order: int
    seen: int = 0  # the target's outcomes already learnt from
    handle: object = None  # the target's handle (a RunState: its outcomes) once reported
    announced: float | None = None  # the finish last announced


@dataclasses.dataclass(slots=True)
class _Placed:
    start: float
    end: float
    ahead: int  # unfinished jobs before it in its line
    workers: int | None  # None: a device's one line


class _Line:
    """Workers that take items first in, first out: the pool's, or an executor's."""

    def __init__(self, workers: int, now: float, busy_since: float):
        self.workers = workers
        self.free = [now] * workers  # when each worker is next free (a heap)
        self.now = now
        self.busy_since = busy_since  # the latest outcome here: running items began since
        self.in_service = workers  # the first running items are on the workers already
        self.floor = workers * KERNEL_SECONDS_PER_ITEM
        self.jobs = 0

    def place(self, seconds: Iterable[float], release: float, running: float | None) -> _Placed:
        """Items released at ``release``; ``running``: the job's start, if it runs."""
        ahead, self.jobs = self.jobs, self.jobs + 1
        first, last = None, release
        free, floor = self.free, self.floor
        for s in seconds:
            s = max(s, floor)
            if running is not None and self.in_service > 0:
                self.in_service -= 1
                s = max(s - (self.now - max(running, self.busy_since)), 0.1 * s)
            begin = max(free[0], release)
            end = begin + s
            heapq.heapreplace(free, end)
            first = begin if first is None else first
            last = max(last, end)
        return _Placed(release if first is None else first, last, ahead, self.workers)


class Estimator:
    """The JobManager's estimates (see the module's docstring)."""

    def __init__(self, core: Core, *, announce: Callable[[JobRecord], None]):
        """``announce``: tell the listeners (widgets, a server's events) that a record
        changed (its estimate); called under the core's lock."""
        self.core = core
        self.scheduler: Scheduler | None = None  # set by the manager (it watches the scheduler)
        self._announce = announce
        self.model = ItemTimeModel(ItemRun.from_row(row) for row in core.store.item_times(KEEP_RUNS))
        self._plans: dict[str, _Plan] = {}
        self._orders = itertools.count()
        # Runs not learnt yet, as ItemRun's fields (a tuple is cheaper on each report).
        self._new_runs: list[tuple] = []
        self._fit_due = False  # a job ended: learn from its items at the next tick
        self._fitted_at = time.monotonic()
        self._unsaved: list[tuple] = []
        self._saved_at = time.monotonic()
        self._due: float | None = None  # when the next tick is armed for (monotonic)
        self._timer: asyncio.TimerHandle | None = None
        self._busy_since: dict[int, float] = {}  # a line's latest outcome (by executor id)
        self._histories: dict[str, tuple[float, TargetHistory, int]] = {}
        self._refreshing: set[str] = set()
        self._device_jobs: dict[str, int] = {}
        #: Off: no estimate of live jobs is kept (the benchmark measures what they cost).
        self.enabled = True

    # -- hooks (under the core's lock) --------------------------------------------------

    def watching(self, changed: Callable[[JobRecord], None]) -> Callable[[JobRecord], None]:
        """``changed`` (the scheduler's: a job queued, started, cancelled, moved), which
        also asks for a forecast."""

        def changed_and_forecast(rec: JobRecord) -> None:
            changed(rec)
            if self.enabled:
                self._soon(QUEUE_TICK_SECONDS)

        return changed_and_forecast

    @staticmethod
    def features(target: Target, circuits: Sequence, given: Sequence[CircuitFeatures] | None):
        """What :meth:`admit` needs of a job's circuits (taken before the core's lock:
        ~0.2 ms a 350-gate circuit); None where it needs nothing."""
        if given is not None or not isinstance(target, SimulatorTarget):
            return given
        return [features_of(c) for c in circuits]

    def admit(self, rec: JobRecord, target: Target, features: Sequence[CircuitFeatures] | None, *,
              front: bool) -> None:  # fmt: skip
        """A job about to enter qnb's queue (before it is announced): its estimate now."""
        if not self.enabled:
            return
        if not isinstance(target, SimulatorTarget):
            found = self._from_history(target.name, len(rec.items), rec.shots, read=False)
            if found.run_seconds is not None or found.wait_seconds is not None:
                rec.live.estimate = found  # (a sampler's jobs: qnb's history of the target)
            return
        if features is not None and len(features) != len(rec.items):
            features = None
        plan = self._plans[rec.id] = self._plan(rec, target, features, rec.shots, len(rec.items))
        plans = self._plans  # (the items counted only when few jobs are live: a submit's hot path)
        if len(plans) <= IMMEDIATE_FORECAST_JOBS and (
            sum(len(p.seconds) for p in plans.values()) <= IMMEDIATE_FORECAST_ITEMS
        ):
            now = time.time()
            placed = self._forecast(now, extra=plan, front=front).get(plan)
            if placed is not None:
                rec.live.estimate = self._estimate(plan, placed, now)
                plan.announced = placed.end
        self._soon(QUEUE_TICK_SECONDS)

    def adopt(self, records: Iterable[JobRecord]) -> None:
        """Jobs taken over from a dead server process (their circuits are in the store
        only): forecast with the engine's typical item time."""
        for rec in records:
            try:
                target = self.core.targets.get(rec.target)
            except QnbError:  # (a target not registered yet: its jobs wait unestimated)
                continue
            if isinstance(target, SimulatorTarget):
                self._plans[rec.id] = self._plan(rec, target, None, rec.shots, len(rec.items))
        self._soon(QUEUE_TICK_SECONDS)

    def after_report(self, rec: JobRecord, target: Target, handle) -> None:
        """The runner's hook after each report of a followed job's target."""
        if not self.enabled:
            return
        plan = self._plans.get(rec.id)
        if plan is None:  # (local jobs have a plan: this is the path of few reports)
            if isinstance(target, QueueOwningTarget):
                self._follow_remote(rec, target, handle)
            elif rec.done:
                rec.live.estimate = None
            return
        if plan.handle is not None and handle is not plan.handle:
            # A round of items run again (retries) numbers them anew: what the first run
            # left is learnt, the round's own times are not (they would meet the wrong
            # circuits' features).
            self._learn(plan)
            plan.features, plan.seen = None, 0
        outcomes = getattr(handle, "outcomes", None)
        if outcomes is None or len(outcomes) <= plan.seen:
            return  # items started: the forecast already has them running
        plan.handle = handle  # (the tick takes the new outcomes: one pass for many reports)
        self._busy_since[id(plan.target.executor)] = time.time()
        if rec.done:
            self._learn(plan)
            del self._plans[rec.id]
            rec.live.estimate = None
            self._fit_due = True
        self._soon(TICK_SECONDS)

    def _learn(self, plan: _Plan) -> None:
        """Take the times of the plan's items that finished since it last looked."""
        outcomes = getattr(plan.handle, "outcomes", None)
        if outcomes is None or len(outcomes) <= plan.seen:
            return
        new = itertools.islice(outcomes.items(), plan.seen, None)
        plan.seen = len(outcomes)
        target = plan.target
        if plan.features is None:
            return
        noisy, asked, new_runs = bool(target.noise), target.engine, self._new_runs
        for i, outcome in new:
            seconds = getattr(outcome, "seconds", None)
            if seconds is not None and outcome.status is JobStatus.COMPLETED:
                engine = asked if outcome.engine == asked else engine_key(outcome.engine, asked)
                new_runs.append((engine, plan.features[i], plan.shots, noisy, seconds))

    def _follow_remote(self, rec: JobRecord, target: QueueOwningTarget, handle) -> None:
        if rec.done:
            rec.live.estimate = None
            return
        try:
            found = target.job_estimate(handle, self._cached_history(target.name))
        except Exception:  # a target's estimate never stops its job being followed
            logger.warning("qnb: target %r could not estimate job %s", target.name, rec.id[:8], exc_info=True)
            return
        if found is not None:  # (None: the previous estimate stands)
            rec.live.estimate = found

    # -- estimates before submitting (any thread) -----------------------------------------

    def estimate_submission(self, target: Target, features: Sequence[CircuitFeatures], shots: int) -> Estimate:
        if isinstance(target, QueueOwningTarget):
            return self._remote_submission(target, features, shots)
        if not isinstance(target, SimulatorTarget):
            return self._from_history(target.name, len(features), shots, read=True)
        with self.core.lock:
            plan = self._plan(None, target, features, shots, len(features))
            now = time.time()
            placed = self._forecast(now, extra=plan, front=False)[plan]
            return self._estimate(plan, placed, now)

    def _remote_submission(self, target: QueueOwningTarget, features: Sequence[CircuitFeatures], shots: int) -> Estimate:
        history = self._history(target.name)
        loop = self.core.loop
        found = None
        if not _on(loop):  # (the loop cannot wait for itself: history alone then)
            asked = asyncio.wait_for(target.estimate_submission(list(features), shots, history), REMOTE_DEADLINE_SECONDS)
            future = asyncio.run_coroutine_threadsafe(asked, loop)
            try:
                found = future.result(REMOTE_DEADLINE_SECONDS + 1)
            except Exception as exc:  # (past the deadline, or the target failed): history alone
                future.cancel()
                logger.info("qnb: target %r gave no estimate (%s: %s)", target.name, type(exc).__name__, exc)
        return found if found is not None else self._from_history(target.name, len(features), shots, read=False)

    # -- history of a target (jobs that ran there) ------------------------------------------

    def _from_history(self, name: str, items: int, shots: int, *, read: bool) -> Estimate:
        history = self._history(name) if read else self._cached_history(name)
        jobs = self._histories.get(name, (0.0, None, 0))[2]
        wait, run = history.median_wait, history.run_seconds(items * shots)
        if wait is None and run is None:
            return Estimate(None, None, None, basis="nothing known yet")
        return Estimate.starting_now(run, wait, basis=f"qnb's history of {jobs} jobs on this target")

    def _history(self, name: str) -> TargetHistory:
        """The target's history, read again if older than HISTORY_SECONDS (a store read:
        never under the core's lock)."""
        found = self._histories.get(name)
        if found is None or time.monotonic() - found[0] > HISTORY_SECONDS:
            self._read_history(name)
        return self._histories[name][1]

    def _cached_history(self, name: str) -> TargetHistory:
        """The history as last read (under the core's lock: no I/O); an old one is read
        again soon, on the loop."""
        found = self._histories.get(name)
        if (found is None or time.monotonic() - found[0] > HISTORY_SECONDS) and name not in self._refreshing:
            self._refreshing.add(name)
            self.core.loop.call_soon_threadsafe(self._read_history, name)
        return TargetHistory() if found is None else found[1]

    def _read_history(self, name: str) -> None:
        try:
            rows = self.core.store.target_history(name)
        except StoreError:
            rows = []
        waits = tuple(started - added for added, started, _, _, _ in rows)
        runs = tuple((finished - started, items * shots) for _, started, finished, items, shots in rows
                     if finished is not None)  # fmt: skip
        self._histories[name] = (time.monotonic(), TargetHistory(waits, runs), len(rows))
        self._refreshing.discard(name)

    # -- the forecast (under the core's lock) -----------------------------------------------

    def _plan(self, rec: JobRecord | None, target: SimulatorTarget, features, shots: int, n_items: int) -> _Plan:
        sizes = None if features is None else sizes_of(target.engine, features, shots, bool(target.noise))
        plan = _Plan(rec, target, features, shots, sizes, [], next(self._orders))
        self._predict(plan, n_items)
        return plan

    def _predict(self, plan: _Plan, n_items: int) -> None:
        """The plan's item times, as the model says now."""
        if plan.sizes is None:
            plan.seconds = [self.model.typical(plan.target.engine)] * n_items
        else:
            plan.seconds = (plan.sizes @ self.model.coefficients(plan.target.engine)).tolist()

    def _forecast(self, now: float, extra: _Plan | None = None, front: bool = False) -> dict[_Plan, _Placed]:
        """Every local job's start and end (and ``extra``'s, as if it joined its
        target's queue now)."""
        lines: dict[int, _Line] = {}
        self._device_jobs: dict[str, int] = {}  # jobs placed so far on each device
        placed: dict[_Plan, _Placed] = {}
        slots: dict[str, list[float]] = defaultdict(list)  # targets' running jobs' ends
        running = [p for p in self._plans.values() if p.rec is not None and p.rec.status not in IN_QUEUE
                   and not p.rec.done and not p.rec.live.cancel_requested]  # fmt: skip
        running.sort(key=lambda p: (p.rec.time_started or now, p.order))
        for plan in running:
            items = plan.rec.items
            left = [s for s, item in zip(plan.seconds, items) if item.status not in TERMINAL]
            started = plan.rec.time_started or now
            placed[plan] = self._place(lines, plan, left, now, now, running=started)
            slots[plan.target.name].append(placed[plan].end)
        waiting = self._waiting(extra, front)
        targets = {plan.target.name: plan.target for plans in waiting.values() for plan in plans}
        releases: list[tuple[float, str]] = []
        for name, target in targets.items():
            ends = slots[name] + [now] * max(0, target.max_running_jobs - len(slots[name]))
            heapq.heapify(ends)
            slots[name] = ends
            releases.append((ends[0], name))
        heapq.heapify(releases)
        while releases:  # the job whose target frees first joins the line next
            release, name = heapq.heappop(releases)
            plan = waiting[name].pop(0)
            placed[plan] = self._place(lines, plan, plan.seconds, now, max(release, now), running=None)
            heapq.heapreplace(slots[name], placed[plan].end)
            if waiting[name]:
                heapq.heappush(releases, (slots[name][0], name))
        return placed

    def _waiting(self, extra: _Plan | None, front: bool) -> dict[str, list[_Plan]]:
        """Per target, the jobs waiting in qnb's queue (head first) that have a plan."""
        waiting: dict[str, list[_Plan]] = {}
        for name in self.scheduler.queued_targets():
            plans = [self._plans.get(rec.id) for rec in self.scheduler.pending(name)]
            waiting[name] = [p for p in plans if p is not None and not p.rec.live.cancel_requested]
        if extra is not None:
            queue = waiting.setdefault(extra.target.name, [])
            queue.insert(0, extra) if front else queue.append(extra)
        return {name: plans for name, plans in waiting.items() if plans}

    def _place(self, lines: dict[int, _Line], plan: _Plan, seconds: list[float], now: float, release: float,
               *, running: float | None) -> _Placed:  # fmt: skip
        target = plan.target
        if target.sequential_items:  # a device: one item after another, its own time
            device = target.device_seconds(plan.shots)
            total = sum(max(s, device) for s in seconds)
            if running is not None and seconds:
                total = max(total - (now - running), 0.1 * total)
            ahead = self._device_jobs[target.name] = self._device_jobs.get(target.name, -1) + 1
            return _Placed(release, release + total, ahead, None)
        key = id(target.executor)
        line = lines.get(key)
        if line is None:
            workers = get_pool().workers if target.executor is None else getattr(target.executor, "threads", None)
            busy_since = self._busy_since.get(key, 0.0)
            line = lines[key] = _Line(max(1, workers or get_pool().workers), now, busy_since)
        return line.place(seconds, release, running)

    def _estimate(self, plan: _Plan, placed: _Placed, now: float) -> Estimate:
        engine = plan.target.engine
        learnt = self.model.learnt(engine)
        basis = f"learnt from {learnt} local runs" if learnt else "cold start: no runs learnt yet"
        ahead = f"{placed.ahead} job{'' if placed.ahead == 1 else 's'} ahead"
        if placed.workers is None:
            basis += f"; {ahead} on the device"
        else:
            basis += f"; {ahead} on {placed.workers} worker{'' if placed.workers == 1 else 's'}"
        rec = plan.rec
        return Estimate.starting_now(
            placed.end - placed.start, max(placed.start - now, 0.0), now=now, basis=basis,
            cost=rec.cost if rec is not None else None, currency=rec.currency if rec is not None else None,
        )  # fmt: skip

    # -- the tick (on the loop) -----------------------------------------------------------

    def _soon(self, delay: float) -> None:
        """Ask for a tick in ``delay`` seconds unless one is due by then (any thread)."""
        due = time.monotonic() + delay
        if (self._due is not None and self._due <= due) or self.core.closed:
            return
        self._due = due
        if _on(self.core.loop):
            self._arm(delay)
            return
        try:
            self.core.loop.call_soon_threadsafe(self._arm, delay)
        except RuntimeError:  # the loop has closed (the manager is closing)
            pass

    def _arm(self, delay: float) -> None:
        """(On the loop.) One timer: an earlier tick replaces a later one."""
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.core.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        core = self.core
        with core.lock:
            self._due = self._timer = None
            if core.closed:
                return
            for plan in self._plans.values():
                self._learn(plan)
            runs = []
            # A fit when a job ended, else at most every FIT_SECONDS (fits are the cost).
            if self._fit_due or time.monotonic() - self._fitted_at > FIT_SECONDS:
                runs, self._new_runs = [ItemRun(*fields) for fields in self._new_runs], []
                self._fit_due, self._fitted_at = False, time.monotonic()
        if runs:
            self.model.learn(runs)  # (a fit: outside the lock)
        with core.lock:
            now = time.time()
            self._unsaved += [run.row(now) for run in runs]
            if runs:
                for plan in self._plans.values():
                    self._predict(plan, len(plan.seconds))
            self._update(now)
            live = bool(self._plans)
        if live:
            self._soon(IDLE_TICK_SECONDS)
        if self._unsaved and (not live or time.monotonic() - self._saved_at > SAVE_SECONDS):
            self.save()

    def _update(self, now: float) -> None:
        for job_id, plan in list(self._plans.items()):
            if plan.rec.done or plan.rec.live.cancel_requested:
                del self._plans[job_id]
                plan.rec.live.estimate = None
        for plan, placed in self._forecast(now).items():
            plan.rec.live.estimate = self._estimate(plan, placed, now)
            if _moved(plan.announced, placed.end, now):
                plan.announced = placed.end
                self._announce(plan.rec)

    def save(self) -> None:
        """Write the learnt item times not yet in the store (the loop's tick, or close)."""
        with self.core.lock:
            rows, self._unsaved = self._unsaved, []
            self._saved_at = time.monotonic()
        if not rows or self.core.store.read_only:
            return
        try:
            self.core.store.add_item_times(rows, KEEP_RUNS)
        except StoreError as exc:  # (disk full): the times are worth less than the jobs
            logger.info("qnb: item times not stored (%s)", exc)

    def close(self) -> None:
        """At the manager's close: what was learnt goes to the store."""
        with self.core.lock:
            runs, self._new_runs = self._new_runs, []
            self._unsaved += [ItemRun(*fields).row(time.time()) for fields in runs]
        self.save()


def _moved(announced: float | None, finish: float, now: float) -> bool:
    """Whether a finish moved enough from the one announced to announce it again."""
    if announced is None:
        return True
    moved = abs(finish - announced)
    left = max(announced - now, 0.0)
    return moved > MATERIAL_SECONDS or (moved > MATERIAL_SHARE * left and moved > JITTER_SECONDS)


def _on(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False

