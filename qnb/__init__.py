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
from ._results import JobResult
from ._status import JobStatus
from ._targets import ItemOutcome, Target, TargetJob, register_target

__version__ = "0.1.0"

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
    "Target",
    "TargetJob",
    "UnknownJobError",
    "UnknownTargetError",
    "compile",
    "get_job",
    "jobs",
    "queue",
    "register_target",
    "run",
    "submit",
    "targets",
]
