"""qnb: run Cirq circuits as asynchronous jobs from Jupyter.

    import qnb
    job = qnb.submit(circuit, target="sim", shots=1000)   # returns at once
    ...                                                   # keep working
    job.result().counts()                                 # or: await job
"""

from ._api import compile, get_job, jobs, queue, run, submit, targets
from ._backend import AsyncJobBackend, ExecutionResult
from ._device import DeviceSpec
from ._errors import (
    DeviceValidationError,
    ExecutionCancelledError,
    InvalidCircuitError,
    InvalidOptionError,
    JobCancelledError,
    JobFailedError,
    JobNotFinishedError,
    QnbError,
    QnbWarning,
    QueueConflictError,
    QueueError,
    UnknownJobError,
    UnknownTargetError,
)
from ._job import Job, JobItem
from ._queue import PendingJob, Queue
from ._remote import RemoteError, connect
from ._results import JobResult
from ._status import JobStatus
from ._targets import ItemOutcome, Target, TargetJob, register_target

__version__ = "0.1.0"


def monitor(*, target: str | None = None, user: str | None = None, status: str | None = None):
    """The live queue monitor widget (one per kernel, updated in place), filtered as asked."""
    from ._widgets import monitor as _monitor  # widgets load only when a notebook asks

    return _monitor(target=target, user=user, status=status)


def load_ipython_extension(ipython) -> None:
    """``%load_ext qnb``: the ``%%qsubmit`` and ``%q...`` magics."""
    from ._magics import load_ipython_extension as _load

    _load(ipython)

__all__ = [
    "AsyncJobBackend",
    "DeviceSpec",
    "DeviceValidationError",
    "ExecutionCancelledError",
    "ExecutionResult",
    "InvalidCircuitError",
    "InvalidOptionError",
    "ItemOutcome",
    "Job",
    "JobCancelledError",
    "JobFailedError",
    "JobItem",
    "JobNotFinishedError",
    "JobResult",
    "JobStatus",
    "PendingJob",
    "QnbError",
    "QnbWarning",
    "Queue",
    "QueueConflictError",
    "QueueError",
    "RemoteError",
    "Target",
    "TargetJob",
    "UnknownJobError",
    "UnknownTargetError",
    "compile",
    "connect",
    "get_job",
    "jobs",
    "monitor",
    "queue",
    "register_target",
    "run",
    "submit",
    "targets",
]
