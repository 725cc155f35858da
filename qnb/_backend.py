"""The submit / poll / fetch / cancel protocol used by orchestration tools.

Circuits come as label -> OpenQASM 2.0 text. Polling waits on the job's completion
future between attempts, so a finished job is seen at once, not at the next tick.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Mapping

from . import _api
from ._errors import ExecutionCancelledError, JobNotFinishedError
from ._job import Job, when
from ._results import JobResult
from ._status import JobStatus


@dataclasses.dataclass(frozen=True)
class ExecutionResult:
    """What ``submit_circuits`` returns: where to find the job, no results yet."""

    job_id: str
    target: str
    labels: tuple[str, ...]

    @property
    def job(self) -> Job:
        return _api.get_job(self.job_id)


class AsyncJobBackend:
    """Submit / poll / fetch / cancel over label -> OpenQASM circuits, for orchestration
    tools that drive jobs themselves (one qnb job per ``submit_circuits``)."""

    def __init__(self, target: str = "sim", shots: int = 1000, *, poll_interval: float = 0.5):
        self.target = target
        self.shots = shots
        self.poll_interval = poll_interval

    def submit_circuits(
        self,
        circuits: Mapping[str, str],
        *,
        cancellation_event: threading.Event | None = None,
        **kwargs,
    ) -> ExecutionResult:
        """Submit label -> OpenQASM circuits as one job. ``kwargs`` as for ``qnb.submit``."""
        if cancellation_event is not None and cancellation_event.is_set():
            raise ExecutionCancelledError("cancelled before submission; nothing was submitted")
        kwargs.setdefault("shots", self.shots)
        kwargs.setdefault("target", self.target)
        job = _api.submit(dict(circuits), **kwargs)
        return ExecutionResult(job.id, job.target, tuple(it.label for it in job.items))

    def poll_job_status(
        self,
        execution_result: ExecutionResult,
        loop_until_complete: bool = False,
        on_complete: Callable[[ExecutionResult], object] | None = None,
        verbose: bool = True,
        progress_callback: Callable[[int, str], object] | None = None,
        cancellation_event: threading.Event | None = None,
    ) -> JobStatus:
        """The job's status; with ``loop_until_complete`` wait until it is final.

        ``progress_callback(poll_attempt, status)`` is called on every attempt. A set
        ``cancellation_event`` ends the loop with ``ExecutionCancelledError`` (the job
        itself goes on; ``cancel_job`` stops it).
        """
        job = _api.get_job(execution_result.job_id)
        done = when(job)
        attempt = 0
        while True:
            attempt += 1
            status = job.status
            if progress_callback is not None:
                progress_callback(attempt, status.value)
            if verbose:
                done_items, total = job.progress
                print(f"qnb job {job.id[:8]}: {status.value} ({done_items}/{total}), poll {attempt}")
            if status.is_terminal:
                if on_complete is not None:
                    on_complete(execution_result)
                return status
            if not loop_until_complete:
                return status
            if cancellation_event is not None and cancellation_event.is_set():
                raise ExecutionCancelledError(
                    f"stopped waiting for job {job.id[:8]} (cancellation event set); "
                    "the job goes on unless cancel_job() is called"
                )
            try:
                done.result(timeout=self.poll_interval)
            except concurrent.futures.TimeoutError:
                pass

    def get_job_results(self, execution_result: ExecutionResult) -> JobResult:
        job = _api.get_job(execution_result.job_id)
        if not job.done():
            raise JobNotFinishedError(
                f"job {job.id[:8]} is {job.status.value}; results exist only after it "
                "completes (poll_job_status(..., loop_until_complete=True) waits)"
            )
        return job.result()

    def cancel_job(self, execution_result: ExecutionResult) -> JobStatus:
        """Idempotent: on a finished job it returns the final status."""
        return _api.get_job(execution_result.job_id).cancel()
