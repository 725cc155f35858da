"""The remote-job shape every vendor adapter subclasses (:class:`VendorTarget`), and the
part of it that matters most: creating a job exactly once (:class:`Creation`).

A vendor job costs money, so once a vendor *may* have a job it is never created again
without first looking for it. The creating request (the POST) is kept apart from
everything after it: it answers the vendor's id and nothing else, its client does not
retry it by itself, and any failure other than a clear refusal leaves the creation "in
doubt". A job in doubt shows "reconnecting" (``TargetJob.report_waiting``) and is looked
for (``find``: by idempotency key, or by the qnb id the job's name carries) before any
new POST; while an earlier POST may still be on its way (its call passed its deadline
but has not ended), nothing is sent again at all.

A hand-over after a restart (the process that sent it died before the vendor's id was
stored) starts in doubt: ``TargetJob.maybe_created``.

:class:`VendorTarget` does the rest of what every vendor needs (the handle, one follower
task per target with backoff, deadline calls on the target's own threads, ``connected``,
re-attach, outcomes, positions); an adapter writes its hooks only.
"""

from __future__ import annotations

import abc
import asyncio
import collections
import concurrent.futures
import dataclasses
import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import cirq

from .._errors import InvalidCircuitError, QnbError, QueueError, RemoteError, ServerUnreachableError
from .._estimate import CircuitFeatures, Estimate, TargetHistory
from .._records import QueueEntry
from .._status import TERMINAL, JobStatus
from ._base import Backoff, FollowedItems, ItemOutcome, QueueOwningTarget, TargetJob
from ._calls import CallsRefused, CallTimeout, DeadlineCalls
from ._queue_eta import JobFigures, QueueFigures, QueueWatch, estimate_left, wake_waiting

T = TypeVar("T")

logger = logging.getLogger("qnb")

#: A job whose creation is in doubt and cannot be settled (the vendor neither lists it
#: nor lets a POST end) waits this long before it fails, naming how to find it.
DOUBT_LIMIT_SECONDS = 600.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0
#: How many finished jobs' usage a vendor target keeps (``VendorTarget.usage``).
KEEP_USAGE_OF = 10_000


class Creation:
    """One job's creation at a vendor. ``post()`` sends the creating request and returns
    the vendor's id, raising :class:`QnbError` (``retryable`` False for a refusal: then
    nothing was created). It may hand back the call's future as ``self.in_flight`` while
    the request is still running past its deadline. ``find()`` returns the id of the
    job if the vendor has it, else None."""

    def __init__(
        self,
        job: TargetJob,
        *,
        vendor: str,
        post: Callable[[Creation], Awaitable[str]],
        find: Callable[[], Awaitable[str | None]],
        doubt_limit: float = DOUBT_LIMIT_SECONDS,
    ):
        self.job = job
        self.vendor = vendor
        self._post = post
        self._find = find
        self.doubt_limit = doubt_limit
        #: The future of a POST that passed its deadline and may still reach the vendor.
        self.in_flight: concurrent.futures.Future | None = None
        self.posts = 0

    async def run(self) -> str:
        """The vendor's id of the job, created at most once."""
        in_doubt = self.job.maybe_created
        deadline = time.monotonic() + self.doubt_limit
        backoff = Backoff(FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)
        last_error: QnbError | None = None
        while True:
            if in_doubt:
                found, absent = await self._settle_doubt()
                if found is not None:
                    return found
                in_doubt = not absent
            if not in_doubt:
                try:
                    self.posts += 1
                    return await self._post(self)
                except QnbError as exc:
                    if not exc.retryable:
                        raise  # a refusal: the vendor created nothing
                    last_error, in_doubt = exc, True
            self.job.report_waiting()
            if time.monotonic() + backoff.delay > deadline:
                raise self._gave_up(last_error)
            await backoff.wait()

    async def _settle_doubt(self) -> tuple[str | None, bool]:
        """``(id, False)`` if an earlier POST ended with one or the vendor lists the job;
        ``(None, True)`` only when the vendor, asked after every POST had ended, does
        not have it (a POST may be sent); else ``(None, False)``: still in doubt."""
        all_ended = True
        if self.in_flight is not None:
            if self.in_flight.done():
                future, self.in_flight = self.in_flight, None
                if not future.cancelled() and future.exception() is None:
                    return future.result(), False
            else:
                all_ended = False  # it may land after the vendor is asked: no POST yet
        try:
            found = await self._find()
        except RemoteError as exc:  # the vendor cannot answer now: still in doubt
            logger.info("qnb: looking for job %s at %s: %s", self.job.job_id, self.vendor, exc)
            return None, False
        return found, found is None and all_ended

    def _gave_up(self, error: QnbError | None) -> QnbError:
        return ServerUnreachableError(
            f"{self.vendor} did not settle the creation of job {self.job.job_id} within "
            f"{self.doubt_limit:g} s ({error}); it was never created twice, and may exist "
            f"there all the same: its name ends in '(qnb {self.job.job_id})'"
        )


def qnb_name(job: TargetJob) -> str:
    """The vendor-side name of a job: the user's name and the qnb id, by which the job
    is found again when its creation is in doubt."""
    return (f"{job.name} " if job.name else "") + qnb_marker(job.job_id)


def qnb_marker(job_id: str) -> str:
    return f"(qnb {job_id})"


# -- the shape every vendor adapter subclasses -------------------------------------------------


@dataclasses.dataclass
class VendorJobState:
    """A vendor's word on one of its jobs, as read."""

    status: str  # the vendor's own status word, e.g. "QUEUED", "DONE"
    error: str | None = None  # the vendor's reason, when failed / cancelled
    position: int | None = None  # the job's queue position when the vendor says it
    usage: dict | None = None  # kept on the job: {"quantum_seconds": 2.1}, {"cost_usd": 0.3}
    raw: Any = None  # the adapter's own object (e.g. for outcomes())
    run_seconds: float | None = None  # the vendor's estimate of its device time, when it gives one


@dataclasses.dataclass(eq=False)
class VendorPart:
    """One vendor job of a qnb job: the items it runs and what was last read of it."""

    vendor_id: str
    items: list[int]
    mapped: JobStatus = JobStatus.QUEUED  # the vendor's word through STATUS, as the items last heard it
    state: VendorJobState | None = None
    outcomes: dict[int, ItemOutcome] | None = None  # once finished and read
    reading: asyncio.Lock = dataclasses.field(default_factory=asyncio.Lock)

    @property
    def finished(self) -> bool:
        return self.mapped in TERMINAL


class VendorRun(FollowedItems):
    """The handle of one qnb job at a vendor: its vendor jobs and its items' statuses."""

    def __init__(
        self, parts: list[VendorPart], n_items: int, *,
        params: list[cirq.ParamResolver | None] | None = None, job_id: str | None = None, name: str = "",
        shots: int | None = None,
    ):  # fmt: skip
        super().__init__([JobStatus.QUEUED] * n_items)
        self.parts = parts
        self.params = params
        self.job_id = job_id  # qnb's id, when submitted by this process
        self.name = name
        self.shots = shots  # None when followed again after a restart
        self.time_added = time.time()
        self.running_since: float | None = None  # when the vendor first said it runs

    @property
    def vendor_run(self) -> float | None:
        """The vendor's estimate of the job's device time (its parts'), when it gives one."""
        said = [p.state.run_seconds for p in self.parts if p.state is not None]
        return sum(said) if said and None not in said and len(said) == len(self.parts) else None

    @property
    def remote_id(self) -> str:
        return stored_id(self.parts, len(self.statuses))

    @property
    def vendor_status(self) -> str:
        """The vendor's own status word(s) as last read ("" before the first read)."""
        return ", ".join(dict.fromkeys(p.state.status for p in self.parts if p.state))

    @property
    def usage(self) -> dict | None:
        """What the vendor says the job used, summed over its vendor jobs."""
        return merged_usage(p.state.usage for p in self.parts if p.state)


def merged_usage(usages: Iterable[dict | None]) -> dict | None:
    total: dict = {}
    for usage in usages:
        for key, value in (usage or {}).items():
            summable = isinstance(value, (int, float)) and isinstance(total.get(key, 0), (int, float))
            total[key] = total.get(key, 0) + value if summable else value
    return total or None


def stored_id(parts: Sequence[VendorPart], n_items: int) -> str:
    """The remote id kept in the store: the vendor's id for one vendor job; for several,
    a JSON list of ids (one per item, in item order) or of ``[id, items]`` pairs."""
    if len(parts) == 1 and parts[0].items == list(range(n_items)):
        return parts[0].vendor_id
    if [p.items for p in parts] == [[i] for i in range(n_items)]:
        return json.dumps([p.vendor_id for p in parts])
    return json.dumps([[p.vendor_id, p.items] for p in parts])


def parts_from(remote_id: str, n_items: int) -> list[VendorPart]:
    """The vendor jobs a stored remote id names (see :func:`stored_id`)."""
    if not remote_id.startswith("["):
        return [VendorPart(remote_id, list(range(n_items)))]
    listed = json.loads(remote_id)
    if all(isinstance(entry, str) for entry in listed):
        if len(listed) != n_items:
            raise QnbError(f"stored remote id {remote_id!r} names {len(listed)} vendor jobs for {n_items} items")
        return [VendorPart(vendor_id, [i]) for i, vendor_id in enumerate(listed)]
    return [VendorPart(str(vendor_id), [int(i) for i in items]) for vendor_id, items in listed]


class VendorTarget(QueueOwningTarget):
    """A vendor's cloud as a target. An adapter writes hooks only; the shape does the
    rest: the handle, one follower task per target with backoff, calls on the target's
    own daemon threads with deadlines (DeadlineCalls), ``connected``, finished items
    keeping their status, re-attach from the stored vendor id(s), creation exactly once
    per vendor job (:class:`Creation`: find by name before any second create), outcomes
    read once per finished vendor job (retried while the vendor is away), queue
    positions.

    Hooks run on the target's own threads, each with ``call_timeout``; they are blocking
    and raise the vendor client's exceptions, which :meth:`as_error` turns into qnb's.
    A vendor that cannot answer (retryable errors) never fails a job by itself: its jobs
    show "reconnecting" and are read again with backoff. A vendor job the vendor no
    longer knows is the adapter's to say: :meth:`read` returns a state for it (e.g. a
    status word that maps to CANCELLED), or the job is read again for ever.
    """

    vendor: ClassVar[str]  # "IBM Quantum" (messages)
    #: The vendor's status words -> qnb's. An unknown word leaves the state as it was.
    STATUS: ClassVar[Mapping[str, JobStatus]]
    poll_seconds: float = 1.0
    call_timeout: float = 30.0
    #: ``retries=`` taken: the transient faults it is for (5xx, timeouts, 429) never fail
    #: items here, each call retried with backoff; a vendor's own "failed" is final.
    takes_retries = True

    def __init__(self, name: str, *, poll_seconds: float = 1.0, call_timeout: float = 30.0, threads: int = 4):
        self.name = name
        self.poll_seconds = poll_seconds
        self.call_timeout = call_timeout
        # Daemon threads: a call the vendor never answers must not keep a script alive.
        self._calls = DeadlineCalls(f"qnb-{name}", threads=threads)
        self._following: dict[str, tuple[VendorRun, VendorPart]] = {}
        self._follower: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._connected = True
        # Replaced whole, never changed in place: read from other threads without a lock.
        self._positions: Mapping[str, int] = {}
        self._entries: list[QueueEntry] = []
        self._queued_here: Mapping[str, str] = {}  # qnb's job id -> stored remote id
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._slots_free: asyncio.Semaphore | None = None
        self._usage: collections.OrderedDict[str, dict] = collections.OrderedDict()
        overridden = type(self).queue_figures is not VendorTarget.queue_figures
        read = functools.partial(self._call, "the device's queue", self.queue_figures)
        self._queue = QueueWatch(self.vendor, read if overridden else None)

    # ---- hooks: all blocking, each run on the target's own threads with the deadline ----

    def parts(self, job: TargetJob) -> list[list[int]]:
        """Item indices per vendor job. Default: one vendor job for all items."""
        return [list(range(len(job.circuits)))]

    def prepare(self, job: TargetJob, items: list[int]) -> Any:
        """The program to send for these items (circuit conversion; sweeps: resolve
        ``job.params`` per item before converting). Raise InvalidCircuitError naming the
        gate. Default: the items' circuits, resolved."""
        params = job.params or [None] * len(job.circuits)
        return [
            job.circuits[i] if params[i] is None else cirq.resolve_parameters(job.circuits[i], params[i])
            for i in items
        ]

    @abc.abstractmethod
    def create(self, program: Any, job: TargetJob, items: list[int], name: str) -> str:
        """The creating request alone (the vendor client must not retry it by itself);
        returns the vendor's id. Send ``name`` as the vendor job's name / tag /
        idempotency key so that :meth:`find` can see it."""

    @abc.abstractmethod
    def find(self, job: TargetJob, items: list[int], name: str) -> str | None:
        """The vendor's id of the job created with ``name``, if the vendor has it."""

    @abc.abstractmethod
    def read(self, vendor_id: str) -> VendorJobState:
        """The vendor's word on one of its jobs."""

    def read_many(self, vendor_ids: list[str]) -> dict[str, VendorJobState]:
        """Default: :meth:`read` each (the shape runs them concurrently when this is not
        overridden). Override when the vendor lists many at once; ids left out of the
        answer are read again next time."""
        return {vendor_id: self.read(vendor_id) for vendor_id in vendor_ids}

    @abc.abstractmethod
    def outcomes(
        self, vendor_id: str, state: VendorJobState, items: list[int],
        params: list[cirq.ParamResolver | None],
    ) -> dict[int, ItemOutcome]:  # fmt: skip
        """Only for a vendor job whose status maps to COMPLETED: item index -> outcome,
        results as Cirq JSON of a ``cirq.Result`` with the user's measurement keys."""

    @abc.abstractmethod
    def cancel_remote(self, vendor_id: str) -> None:
        """Ask the vendor to cancel one of its jobs."""

    def as_error(self, exc: Exception, what: str) -> QnbError:
        """The vendor client's exception as a QnbError: retryable for 429, 5xx, timeouts
        and no connection; a refusal (``retryable`` False, the vendor's reason) for 4xx.
        Default: retryable, naming the vendor and ``what``."""
        return ServerUnreachableError(f"{self.vendor} did not answer {what}: {type(exc).__name__}: {exc}")

    def shown_id(self, vendor_id: str) -> str:
        """How messages name a vendor job (optional hook; default: its id as stored)."""
        return vendor_id

    def queue_figures(self) -> QueueFigures | None:
        """The device's queue as the vendor tells it (depth, average queue time), for
        ETAs; read at most every minute. Optional hook; default: none."""
        return None

    # ---- calls on the target's threads ----

    def _qnb_error(self, exc: Exception, what: str) -> QnbError:
        if isinstance(exc, (CallTimeout, CallsRefused)):
            return ServerUnreachableError(f"no answer from {self.vendor} to {what} within {self.call_timeout:g} s")
        if isinstance(exc, QnbError):
            return exc
        return self.as_error(exc, what)

    def _slots(self) -> asyncio.Semaphore:
        """One place per thread: a call waits here for its turn, so its deadline counts
        its own run only (200 reads queued behind 4 threads would pass theirs waiting).
        Per loop: a target may outlive the manager whose loop first used it."""
        loop = asyncio.get_running_loop()
        if self._slots_loop is not loop:
            self._slots_loop, self._slots_free = loop, asyncio.Semaphore(self._calls.threads)
        return self._slots_free

    async def _call(self, what: str, fn: Callable[..., T], *args) -> T:
        async with self._slots():
            try:
                return await self._calls.acall(self.call_timeout, fn, *args)
            except Exception as exc:
                raise self._qnb_error(exc, what) from None

    def blocking_call(self, what: str, fn: Callable[..., T], *args) -> T:
        """A call from the caller's thread (set-up: the device, a credential check)."""
        try:
            return self._calls.call(self.call_timeout, fn, *args)
        except Exception as exc:
            raise self._qnb_error(exc, what) from None

    @property
    def connected(self) -> bool:
        return self._connected

    # ---- the Target protocol ----

    async def submit(self, job: TargetJob) -> VendorRun:
        groups = self.parts(job)
        programs = [await self._prepare(job, items) for items in groups]
        names = [qnb_name(job) + (f" #{k + 1}" if len(groups) > 1 else "") for k in range(len(groups))]
        created = await asyncio.gather(
            *(self._create_once(job, program, items, name) for program, items, name in zip(programs, groups, names)),
            return_exceptions=True,
        )
        problems = [c for c in created if isinstance(c, BaseException)]
        if problems:
            # One vendor job refused (or never settled): the job is not taken, so the
            # vendor jobs made for its other parts would run unfollowed.
            for vendor_id in created:
                if isinstance(vendor_id, str):
                    await self._cancel_quietly(vendor_id)
            raise problems[0]
        self._connected = True
        run = VendorRun(
            [VendorPart(vendor_id, items) for vendor_id, items in zip(created, groups)],
            len(job.circuits), params=job.params, job_id=job.job_id, name=job.name, shots=job.shots,
        )  # fmt: skip
        self._follow(run)
        return run

    async def _prepare(self, job: TargetJob, items: list[int]) -> Any:
        try:
            async with self._slots():
                return await self._calls.acall(self.call_timeout, self.prepare, job, items)
        except QnbError:
            raise
        except CallTimeout:
            raise InvalidCircuitError(
                f"preparing this job for {self.vendor} took more than {self.call_timeout:g} s; "
                "submit fewer or smaller circuits"
            ) from None
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise InvalidCircuitError(f"{self.vendor} cannot take this job: {exc}") from None

    async def _create_once(self, job: TargetJob, program: Any, items: list[int], name: str) -> str:
        creation = Creation(
            job, vendor=self.vendor,
            post=functools.partial(self._post, program, job, items, name),
            find=functools.partial(self._call, "the job listing", self.find, job, items, name),
        )  # fmt: skip
        return await creation.run()

    async def _post(self, program: Any, job: TargetJob, items: list[int], name: str, creation: Creation) -> str:
        """The creating request alone. Past the call deadline it may still arrive: the
        creation keeps its future and sends nothing again."""
        async with self._slots():
            future = self._calls.submit(self.create, program, job, items, name)
            wrapped = asyncio.wrap_future(future)
            done, _ = await asyncio.wait({wrapped}, timeout=self.call_timeout)
        if not done:
            wrapped.add_done_callback(lambda f: f.cancelled() or f.exception())  # heard later, by the creation
            self._calls.abandon(future)
            creation.in_flight = future
            self._connected = False
            raise ServerUnreachableError(
                f"no answer from {self.vendor} to the job's creation within {self.call_timeout:g} s"
            )
        try:
            vendor_id = str(wrapped.result())  # (the asyncio side: its error counts as heard)
        except Exception as exc:
            error = self._qnb_error(exc, "the job's creation")
            self._connected = not error.retryable
            raise error from None
        self._connected = True
        return vendor_id

    async def _cancel_quietly(self, vendor_id: str) -> None:
        try:
            await self._call("the cancellation", self.cancel_remote, vendor_id)
        except QnbError as exc:
            logger.warning("qnb: %s job %s (of a job not taken) could not be cancelled: %s",
                           self.vendor, self.shown_id(vendor_id), exc)  # fmt: skip

    def handle_id(self, handle: VendorRun) -> str:
        return handle.remote_id

    async def reattach(self, remote_id: str, n_items: int) -> VendorRun:
        """No I/O: the follower reads the job (a vendor that is away now is no failure)."""
        run = VendorRun(parts_from(remote_id, n_items), n_items)
        self._follow(run)
        return run

    async def poll(self, handle: VendorRun) -> list[JobStatus]:
        return await handle.next_change()

    async def results(self, handle: VendorRun, indices: Sequence[int]) -> dict[int, ItemOutcome]:
        wanted = set(indices)
        found: dict[int, ItemOutcome] = {}
        for part in handle.parts:
            if wanted.isdisjoint(part.items):
                continue
            async with part.reading:
                if part.outcomes is None:
                    part.outcomes = await self._read_outcomes(handle, part)
            found.update((i, part.outcomes[i]) for i in part.items if i in wanted)
        return found

    async def cancel(self, handle: VendorRun) -> bool:
        for part in handle.parts:
            if part.finished:
                continue
            # Read first: a vendor may mark a job that has just completed cancelled too.
            self._apply(handle, part, await self._call("the job", self.read, part.vendor_id))
            if not part.finished:
                await self._call("the cancellation", self.cancel_remote, part.vendor_id)
                self._apply(handle, part, await self._call("the job", self.read, part.vendor_id))
        return True

    def job_usage(self, handle: VendorRun) -> dict | None:
        return handle.usage

    def job_estimate(self, handle: VendorRun, history: TargetHistory) -> Estimate | None:
        return estimate_left(self.vendor, self._queue.figures, self._queue.job_figures(handle), history)

    async def estimate_submission(
        self, features: Sequence[CircuitFeatures], shots: int, history: TargetHistory
    ) -> Estimate | None:
        await self._queue.refresh()  # one read at most (a minute old figures do), with the deadline
        job = JobFigures(shots=shots, items=len(features), drain=self._queue.drain)
        return estimate_left(self.vendor, self._queue.figures, job, history)

    def usage(self, remote_id: str) -> dict | None:
        """What the vendor says a job (by its stored remote id) used, as last read by
        this process: kept after the job ends, for the newest jobs."""
        return self._usage.get(remote_id)

    def close(self) -> None:
        self._calls.close()
        follower, loop = self._follower, self._loop
        if follower is not None and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(follower.cancel)

    # ---- following: one task per target ----

    def _follow(self, run: VendorRun) -> None:
        for part in run.parts:
            if not part.finished:
                self._following[part.vendor_id] = (run, part)
        if not self._following:
            return
        if self._follower is None or self._follower.done():
            self._loop = asyncio.get_running_loop()
            self._wake = asyncio.Event()
            self._follower = self._loop.create_task(self._poll_forever())
        else:
            self._wake.set()

    async def _poll_forever(self) -> None:
        away = Backoff(min(2 * self.poll_seconds, MAX_BACKOFF_SECONDS), MAX_BACKOFF_SECONDS)
        while self._following:
            started = time.monotonic()
            try:
                await self._poll_once()
            except QnbError as exc:
                # The vendor away, slow, or refusing us for now: the jobs stay as they are.
                if self._connected:
                    logger.warning("qnb: %s target %r cannot read its jobs now (%s); retrying",
                                   self.vendor, self.name, exc)  # fmt: skip
                self._connected = False
                await away.wait()
                continue
            except Exception:  # a bug here must not stop following the other jobs
                logger.exception("qnb: %s target %r: reading its jobs failed", self.vendor, self.name)
                await asyncio.sleep(MAX_BACKOFF_SECONDS)
                continue
            self._connected = True
            away.reset()
            self._queue.refresh_soon(lambda: wake_waiting(run for run, _ in self._following.values()))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(0.0, self.poll_seconds - (time.monotonic() - started)))
            except asyncio.TimeoutError:
                pass

    async def _poll_once(self) -> None:
        ids = list(self._following)
        if type(self).read_many is VendorTarget.read_many:
            answers = await asyncio.gather(*(self._call("the job", self.read, i) for i in ids), return_exceptions=True)
            states = {i: a for i, a in zip(ids, answers) if isinstance(a, VendorJobState)}
            problems = [a for a in answers if isinstance(a, BaseException)]
        else:
            states, problems = await self._call("the jobs", self.read_many, ids), []
        for vendor_id, state in states.items():
            followed = self._following.get(vendor_id)
            if followed is not None:
                self._apply(*followed, state)
        self._note_positions()
        if problems:
            raise problems[0]

    def _apply(self, run: VendorRun, part: VendorPart, state: VendorJobState) -> None:
        """The vendor's word on one of its jobs (the lifecycle decides what it means)."""
        if part.state is None or state.status != part.state.status:
            logger.debug("qnb: %s job %s is %r", self.vendor, self.shown_id(part.vendor_id), state.status)
        part.state = state
        if state.usage:
            self._keep_usage(run)
        mapped = self.STATUS.get(state.status)
        if (mapped is JobStatus.RUNNING or mapped in TERMINAL) and run.running_since is None:
            # Out of the vendor's queue (a short task may be seen done, never running).
            run.running_since = time.time()
        if self._queue.seen(part.vendor_id, state.position, waiting=mapped is JobStatus.QUEUED):
            run.changed.set()  # its ETA moved: the core hears of it as of a report
        if mapped is None or part.finished:
            return  # unknown: keep the last known state; finished: it stays so
        part.mapped = mapped
        if mapped in TERMINAL:
            self._following.pop(part.vendor_id, None)
        run.report(dict.fromkeys(part.items, mapped))

    def _keep_usage(self, run: VendorRun) -> None:
        self._usage[run.remote_id] = run.usage
        self._usage.move_to_end(run.remote_id)
        while len(self._usage) > KEEP_USAGE_OF:
            self._usage.popitem(last=False)

    def _note_positions(self) -> None:
        runs = {id(run): run for run, _ in self._following.values()}.values()
        self._entries, self._positions, self._queued_here = queue_view(runs)

    def queue_backend(self) -> VendorQueueBackend:
        return VendorQueueBackend(self)

    # ---- outcomes ----

    async def _read_outcomes(self, run: VendorRun, part: VendorPart) -> dict[int, ItemOutcome]:
        shown = f"{self.vendor} job {self.shown_id(part.vendor_id)}"
        if part.mapped is not JobStatus.COMPLETED:
            word = part.state.status if part.state else ""
            reason = part.state.error if part.state else None
            text = f"{self.vendor} status {word!r}" + (f": {reason}" if reason else "") + f" ({shown})"
            return {i: ItemOutcome(part.mapped, error=text) for i in part.items}
        params = [run.params[i] if run.params else None for i in part.items]
        away = Backoff(FIRST_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS)
        while True:  # completed and paid for: read until the vendor answers
            try:
                found = await self._call("the results", self.outcomes, part.vendor_id, part.state, part.items, params)
                break
            except QnbError as exc:
                if not exc.retryable:
                    text = f"{shown} completed but its results cannot be read: {exc}"
                    return {i: ItemOutcome(JobStatus.FAILED, error=text) for i in part.items}
                self._connected = False
                await away.wait()
        self._connected = True
        missing = ItemOutcome(JobStatus.FAILED, error=f"{shown} returned no result for this circuit")
        return {i: found.get(i, missing) for i in part.items}


def queue_view(runs: Iterable[VendorRun]) -> tuple[list[QueueEntry], dict[str, int], dict[str, str]]:
    """The waiting jobs whose position the vendor tells: their entries (head first),
    positions by stored remote id, and remote ids by qnb id (jobs submitted here). A job
    split into several vendor jobs is as far ahead as its foremost one."""
    entries, positions, queued_here = [], {}, {}
    for run in runs:
        known = [p.state.position for p in run.parts
                 if not p.finished and p.state is not None and p.state.position is not None]  # fmt: skip
        if known and all(s in (JobStatus.PENDING, JobStatus.QUEUED) for s in run.statuses):
            positions[run.remote_id] = min(known)
            entries.append(QueueEntry(min(known), run.remote_id, "", run.name, run.time_added, JobStatus.QUEUED))
            if run.job_id is not None:
                queued_here[run.job_id] = run.remote_id
    return sorted(entries, key=lambda e: e.position), positions, queued_here


class VendorQueueBackend:
    """A vendor's queue as qnb sees it: read-only, the jobs this process follows whose
    position the vendor tells, keyed by their stored remote id. Nothing here does I/O."""

    def __init__(self, target: VendorTarget):
        self._target = target

    def entries(self) -> list[QueueEntry]:
        return list(self._target._entries)

    def entry(self, job_id: str) -> QueueEntry | None:
        """By the stored remote id, or by qnb's job id for a job submitted here."""
        wanted = self._target._queued_here.get(job_id, job_id)
        return next((e for e in self.entries() if e.id == wanted), None)

    def known_positions(self) -> Mapping[str, int]:
        return self._target._positions

    def _refuse(self) -> QueueError:
        return QueueError(
            f"{self._target.vendor}'s queue cannot be reordered or edited from qnb "
            f"(target {self._target.name!r}); cancel a job instead (job.cancel())"
        )

    def remove(self, *, job_id=None, position=None, expected_id=None) -> QueueEntry:
        raise self._refuse()

    def remove_user(self, user: str) -> list[QueueEntry]:
        raise self._refuse()

    def move_to_front(self, job_id: str) -> QueueEntry:
        raise self._refuse()
