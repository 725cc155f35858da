"""ETAs for jobs on a vendor's queue: the vendor's own figures (a job's queue position,
the device's queue depth, an average queue time, the vendor's run estimate) combined
with qnb's own history of waits and runs on that target (:class:`TargetHistory`).

Nobody gives a time for *my* job: Braket tells a task's place in the queue and the
device's queue depth, IonQ and Azure an average queue time per device, IBM the jobs
pending on a backend and (per job) an estimate of its device time. :func:`estimate_left`
turns whichever of these a vendor gives into an :class:`~qnb.Estimate`, and its
``basis`` says which figures it used. A queue position becomes a time through how fast
the position moved while qnb followed the job (the queue's drain), else through the
run pace of past jobs on the target.

:class:`QueueWatch` keeps a target's device-level figures (read by the adapter's
``queue_figures()`` hook, at most every :data:`FIGURES_MAX_AGE` seconds, with the
target's call deadline) and what was seen of each followed job's position.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .._errors import QnbError
from .._estimate import Estimate, TargetHistory, duration_text

logger = logging.getLogger("qnb")

#: Device-level figures (queue depth, average queue time) are read again after this long.
FIGURES_MAX_AGE = 60.0


@dataclasses.dataclass(frozen=True)
class QueueFigures:
    """What a vendor says of a device's queue (any figure may be None): ``depth``, jobs
    or tasks waiting there; ``average_wait``, the vendor's average queue time (seconds);
    ``source``, how ``basis`` names where they come from (``"IonQ qpu.aria-1"``)."""

    depth: int | None = None
    average_wait: float | None = None
    source: str = ""


@dataclasses.dataclass(frozen=True)
class JobFigures:
    """What is known of one job for its ETA: ``position`` (1-based, its foremost waiting
    part, when the vendor tells it); ``drain`` (queue places per second as seen, or
    None); ``vendor_run`` (the vendor's estimate of its device time); ``waited`` (seconds
    since it was handed over); ``running_for`` (seconds since it started; None while it
    waits); ``shots`` per circuit and ``items`` circuits."""

    shots: int | None  # None: not known here (a job followed again after a restart)
    items: int
    position: int | None = None
    drain: float | None = None
    vendor_run: float | None = None
    waited: float = 0.0
    running_for: float | None = None


def estimate_left(
    vendor: str, figures: QueueFigures | None, job: JobFigures, history: TargetHistory
) -> Estimate | None:
    """What is left of ``job`` (or, with nothing waited or run, a job about to be
    submitted), from the vendor's figures and ``history``; None when nothing can be
    said."""
    run, run_basis = _run_seconds(job, history)
    if job.running_for is not None:
        wait, wait_basis = 0.0, ""
        run = None if run is None else max(run - job.running_for, 0.0)
    else:
        wait, wait_basis = _wait_seconds(vendor, figures or QueueFigures(), job, history)
    if run is None and wait is None:
        return None
    basis = "; ".join(part for part in (wait_basis, run_basis) if part)
    return Estimate.starting_now(run, wait, basis=basis)


def _run_seconds(job: JobFigures, history: TargetHistory) -> tuple[float | None, str]:
    if job.vendor_run is not None:
        return job.vendor_run, "run time: the vendor's own estimate"
    run = None if job.shots is None else history.run_seconds(job.items * job.shots)
    if run is None:
        return None, ""
    return run, f"run time from {len(history.runs)} past jobs on this target"


def _wait_seconds(
    vendor: str, figures: QueueFigures, job: JobFigures, history: TargetHistory
) -> tuple[float | None, str]:
    """The wait before the job starts, from the most specific figure there is: its own
    queue position, the vendor's average queue time, the device's queue depth, qnb's
    median wait on this target."""
    # A task ahead is taken to run like one circuit of ours.
    per_task = None if job.shots is None else history.run_seconds(job.shots)
    of = f" of {figures.depth}" if figures.depth is not None else ""
    source = figures.source or vendor
    if job.position is not None:
        place = f"{source} queue position {job.position}{of}"
        found = _places_as_time(job.position, place, job.drain, per_task, "a task")
        if found is not None:
            return found
    if figures.average_wait is not None:
        left = max(figures.average_wait - job.waited, 0.0)
        return left, f"{source}'s average queue time {duration_text(figures.average_wait)}"
    if figures.depth is not None:
        found = _places_as_time(figures.depth, f"{figures.depth} waiting at {source}", job.drain, per_task, "each")
        if found is not None:
            return found
    median = history.median_wait
    if median is not None:
        return max(median - job.waited, 0.0), f"median wait of {len(history.waits)} past jobs on this target"
    return None, ""


def _places_as_time(
    places: int, said: str, drain: float | None, per_task: float | None, each: str
) -> tuple[float, str] | None:
    """A number of queue places as a wait: at the pace the queue moved while followed,
    else at the run pace of past jobs here (each place taken as one of our circuits)."""
    if drain:
        return places / drain, f"{said}, moving a place every {duration_text(1 / drain)}"
    if per_task is not None:
        return places * per_task, f"{said} at {duration_text(per_task)} {each} (past runs here)"
    return None


@dataclasses.dataclass
class PositionSeen:
    """A followed job part's queue position: as first seen and as last read."""

    first: tuple[float, int]  # (monotonic time, position)
    last: tuple[float, int]

    @property
    def drain(self) -> float | None:
        """Places per second the position moved since first seen (None until it moved)."""
        (t0, p0), (t1, p1) = self.first, self.last
        return (p0 - p1) / (t1 - t0) if p1 < p0 and t1 > t0 else None


class QueueWatch:
    """A vendor target's queue figures: the device's (refreshed by the follower at most
    every :data:`FIGURES_MAX_AGE` s, on the target's threads with its deadline) and the
    positions of the job parts it follows. No I/O in :meth:`job_figures`."""

    def __init__(self, vendor: str, read: Callable[[], Awaitable[QueueFigures | None]] | None):
        self.vendor = vendor
        self._read = read  # None: the adapter gives no device figures
        self.figures: QueueFigures | None = None
        self._read_at = -FIGURES_MAX_AGE
        self._reading: asyncio.Task | None = None
        self._seen: dict[str, PositionSeen] = {}  # vendor id -> its position as followed
        #: The queue's drain as last measured on any followed part (for submissions).
        self.drain: float | None = None

    def stale(self) -> bool:
        return self._read is not None and time.monotonic() - self._read_at >= FIGURES_MAX_AGE

    def refresh_soon(self, changed: Callable[[], None]) -> None:
        """Read the device's figures in a task of their own when they are stale (a slow
        read never holds the jobs' reads); ``changed()`` once they differ."""
        if not self.stale() or (self._reading is not None and not self._reading.done()):
            return

        async def read() -> None:
            if await self.refresh():
                changed()

        self._reading = asyncio.get_running_loop().create_task(read())

    async def refresh(self) -> bool:
        """Read the figures now if stale; whether they changed. A vendor that cannot
        answer keeps the figures as last read (an ETA is never worth a failure)."""
        if not self.stale():
            return False
        self._read_at = time.monotonic()
        try:
            figures = await self._read()
        except QnbError as exc:
            logger.debug("qnb: %s queue figures not read: %s", self.vendor, exc)
            return False
        changed, self.figures = figures != self.figures, figures
        return changed

    def seen(self, vendor_id: str, position: int | None, *, waiting: bool) -> bool:
        """A part's position as read; whether it moved (its job's ETA changes)."""
        if position is None or not waiting:
            return self._seen.pop(vendor_id, None) is not None
        now = (time.monotonic(), position)
        seen = self._seen.get(vendor_id)
        if seen is None:
            self._seen[vendor_id] = PositionSeen(now, now)
            return True
        moved, seen.last = seen.last[1] != position, now
        if seen.drain is not None:
            self.drain = seen.drain
        return moved

    def drain_of(self, vendor_ids: list[str]) -> float | None:
        rates = [s.drain for s in map(self._seen.get, vendor_ids) if s is not None and s.drain is not None]
        return max(rates) if rates else self.drain

    def job_figures(self, run: Any) -> JobFigures:
        """A :class:`~qnb._targets._remote.VendorRun`'s figures, from what was last read."""
        waiting = [p for p in run.parts if not p.finished and p.state is not None and p.state.position is not None]
        now = time.time()
        return JobFigures(
            shots=run.shots, items=len(run.statuses),
            position=min((p.state.position for p in waiting), default=None),
            drain=self.drain_of([p.vendor_id for p in waiting]), vendor_run=run.vendor_run,
            waited=max(now - run.time_added, 0.0),
            running_for=None if run.running_since is None else max(now - run.running_since, 0.0),
        )  # fmt: skip


def wake_waiting(runs: Any) -> None:
    """Wake the polls of the followed runs still waiting: their ETAs moved (the core
    hears of it as of a report, and asks ``job_estimate`` again)."""
    for run in {id(r): r for r in runs}.values():
        if run.running_since is None and not run.finished:
            run.changed.set()
