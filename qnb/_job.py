"""Handles for talking to jobs: :class:`Job` and :class:`JobItem`.

A handle holds only the job id. It reads the live record when this process runs the
job, and the store otherwise, so a ``Job`` from ``qnb.get_job`` in a new kernel works.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import time
from collections.abc import Callable

import cirq

from ._errors import JobCancelledError, JobFailedError
from ._estimate import Estimate
from ._manager import JobManager, get_manager, is_done
from ._records import JobRecord
from ._results import JobResult, resubmit_hint
from ._status import JobStatus
from ._views import job_fields, job_html


#: Set by the notebook layer (``qnb.notebook``): ``hook(job) -> mimebundle`` shows a
#: job as a live widget. The job core knows no widget.
display_hook: Callable[[Job], dict] | None = None


def set_display_hook(hook: Callable[[Job], dict] | None) -> None:
    global display_hook
    display_hook = hook


@dataclasses.dataclass(frozen=True)
class JobItem:
    """One circuit of a job."""

    label: str
    status: JobStatus
    error: str | None
    _job: Job = dataclasses.field(repr=False, compare=False)
    #: What ran it: the target's simulator (``"qsim"``), or the one it was handed to
    #: and why (``"cirq.Simulator (it has classical control ...)"``), or the device.
    engine: str | None = None
    #: How many times it ran again after a transient failure (``retries=`` at submit).
    attempts: int = 0
    #: What those failed runs said, oldest first.
    history: tuple[str, ...] = ()

    @property
    def result(self) -> cirq.Result | None:
        """This circuit's ``cirq.Result`` once it completed, else None."""
        if self.status is not JobStatus.COMPLETED:
            return None
        return self._job._collect()[self.label]


class Job:
    """A submitted job. Cheap to create; compares equal by id."""

    def __init__(self, job_id: str, *, manager: JobManager | None = None):
        self._id = job_id
        self._manager = manager or get_manager()
        self._final: JobRecord | None = None
        self._result_cache: JobResult | None = None
        self._manager.load(job_id)  # unknown ids fail here, with a clear message

    def _rec(self) -> JobRecord:
        if self._final is not None:
            return self._final
        rec = self._manager.load(self._id)
        if rec.done and self._manager.record(self._id) is None:
            self._final = rec  # from the store and finished: never changes again
        return rec

    # -- what the job is ----------------------------------------------------------------

    @property
    def id(self) -> str:
        return self._id

    name = property(lambda self: self._rec().name)
    target = property(lambda self: self._rec().target)
    user = property(lambda self: self._rec().user)
    shots = property(lambda self: self._rec().shots)
    time_added = property(lambda self: self._rec().time_added)
    time_started = property(lambda self: self._rec().time_started)
    time_finished = property(lambda self: self._rec().time_finished)
    error = property(lambda self: self._rec().error)
    parent_id = property(lambda self: self._rec().parent_id)
    #: The tags given at submit (a tuple: they are fixed once the job is stored).
    tags = property(lambda self: self._rec().tags)

    @property
    def status(self) -> JobStatus:
        return self._rec().status

    @property
    def items(self) -> list[JobItem]:
        return [
            JobItem(it.label, it.status, it.error, self, it.engine, it.attempts, it.history)
            for it in self._rec().items
        ]

    @property
    def engines(self) -> set[str]:
        """Which simulators or devices ran the job's items (see ``JobItem.engine``)."""
        return {it.engine for it in self._rec().items if it.engine is not None}

    @property
    def usage(self) -> dict | None:
        """What the vendor says the job used, as last read and kept in the store:
        IBM Quantum's ``{"quantum_seconds": ...}``, Azure's ``{"cost_usd": ...}``; None
        where the target says nothing (local targets, IonQ, Braket)."""
        return self._rec().usage

    @property
    def cost(self) -> float | None:
        """The cost estimated at submit, in ``job.currency`` (``0.0`` on local targets;
        None where no price was known). What the vendor then billed is in ``usage``."""
        return self._rec().cost

    currency = property(lambda self: self._rec().currency)

    @property
    def estimate(self) -> Estimate | None:
        """What is left of the job (a :class:`qnb.Estimate`: run and wait seconds, the
        finish, the cost), updated as it progresses; None once it finished, or where
        nothing can be said (a job this process neither runs nor follows)."""
        rec = self._manager.record(self._id)
        if rec is None or rec.done:
            return None
        return rec.live.estimate

    @property
    def progress(self) -> tuple[int, int]:
        """(items finished, items in all)."""
        return self._rec().progress

    @property
    def elapsed(self) -> float | None:
        """Seconds from start to finish (or to now, while running)."""
        rec = self._rec()
        if rec.time_started is None:
            return None
        return (rec.time_finished or time.time()) - rec.time_started

    def position_in_queue(self) -> int | None:
        """1-based position in the target's queue; None once the job left the queue.

        For a queue server's job this asks the server (the widgets and ``repr`` show the
        position last heard instead, without waiting on the network)."""
        rec = self._manager.record(self._id)
        return None if rec is None else self._manager.position(rec, ask=True)

    def done(self) -> bool:
        return self._rec().done

    # -- waiting and results ------------------------------------------------------------

    def result(self, timeout: float | None = None) -> JobResult:
        """Wait for the job to end and return its results.

        Raises ``TimeoutError`` after ``timeout`` seconds (the job carries on),
        ``JobFailedError``/``JobCancelledError`` when no circuit completed. A failed
        batch returns the results it has; ``result.missing`` names the rest.
        """
        waiting = self._manager.when(self._id, is_done)
        try:
            waiting.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(
                f"job {self._id[:8]} is still {self.status.value} after {timeout} s; it "
                "carries on: call result() again later, or job.cancel()"
            ) from None
        return self._collect()

    def __await__(self):
        return self._result_async().__await__()

    async def _result_async(self) -> JobResult:
        await asyncio.wrap_future(self._manager.when(self._id, is_done))
        return self._collect()

    def _collect(self) -> JobResult:
        if self._result_cache is not None:
            return self._result_cache
        rec = self._rec()
        if rec.done:
            # Read results only once the end is stored: a job can finish in memory a
            # moment before its results (or, for a quick job, its whole row) land.
            self._manager.when(self._id, is_done).result(timeout=60)
        labels = [it.label for it in rec.items]
        texts = {labels[i]: text for i, text in self._manager.results(self._id).items()}
        missing = {
            it.label: it.error or it.status.value for it in rec.items if it.label not in texts
        }
        if not texts and rec.done:
            if rec.status is JobStatus.CANCELLED:
                raise JobCancelledError(
                    f"job {self._id[:8]} was cancelled before any circuit completed"
                    f"{resubmit_hint(rec)}"
                )
            # "resubmit" only where a rerun can help (not for a circuit that cannot run).
            raise JobFailedError(f"job {self._id[:8]} failed: {rec.error}{resubmit_hint(rec)}")
        params = {it.label: it.params for it in rec.items if it.params is not None}
        result = JobResult(self._id, labels, texts, missing, params, name=rec.name)
        if rec.done:
            self._result_cache = result
        return result

    def add_done_callback(self, fn: Callable[[Job], object]) -> None:
        """Call ``fn(job)`` once the job has ended (at once if it has; from qnb's thread
        otherwise, so keep it quick and do not print from it in a notebook)."""
        self._manager.when(self._id, is_done).add_done_callback(lambda _: fn(self))

    # -- actions -------------------------------------------------------------------------

    def cancel(self) -> JobStatus:
        """Ask to cancel. Idempotent: on a finished job it returns the final status.

        A queued job ends ``cancelled`` at once; a running one is ``cancelling`` until
        the target confirms.
        """
        return self._manager.cancel(self._id)

    def resubmit(self, only_failed: bool = False) -> Job:
        """A new job with this job's circuits (or only its failed/cancelled ones)."""
        rec = self._manager.resubmit(self._id, only_failed=only_failed)
        return Job(rec.id, manager=self._manager)

    # -- display --------------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def summary(self) -> str:
        rec = self._rec()
        done, total = rec.progress
        where = ""
        live = self._manager.record(self._id)
        position = None if live is None else self._manager.position(live)  # no I/O
        if position is not None:
            where = f", position {position}"
        return (
            f"{rec.name!r} {self._id[:8]} on {rec.target}: {rec.status.value} "
            f"{done}/{total}{where}"
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.summary()}>"

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        """In a notebook kernel: the live job card widget (the display hook the notebook
        layer installs); elsewhere text and HTML."""
        if display_hook is not None:
            return display_hook(self)
        return {"text/plain": repr(self), "text/html": self._repr_html_()}

    def _repr_html_(self) -> str:
        return job_html(job_fields(self._rec()))


# For the faces (magics, widgets, the backend): what they need of a handle, by name.


def manager_of(job: Job) -> JobManager:
    """The JobManager ``job`` talks to (widgets are one per manager and job)."""
    return job._manager


def when(job: Job, predicate: Callable[[JobRecord], bool] = is_done) -> concurrent.futures.Future:
    """A future that resolves (to the status) once ``predicate`` holds for ``job``'s
    record and is stored; by default once the job has ended."""
    return job._manager.when(job.id, predicate)


def results_so_far(job: Job) -> JobResult:
    """``job``'s results as stored now, without waiting for it to end (a card's
    histogram); a failed or cancelled job without any raises as ``result()`` does."""
    return job._collect()
