"""qnb: run Cirq circuits as asynchronous jobs from Jupyter.

    import qnb
    job = qnb.submit(circuit, target="sim", shots=1000)   # returns at once
    ...                                                   # keep working
    job.result().counts()                                 # or: await job

Names load on first use (PEP 562), so ``import qnb`` and the ``qnb`` command stay
quick; ``qnb.submit`` brings in Cirq.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Public name -> the private module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        ["compile", "connect", "estimate", "get_job", "jobs", "queue", "register_target", "run",
         "submit", "targets", "wait_all"],
        "._api",
    ),
    **dict.fromkeys(["AsyncJobBackend", "ExecutionResult"], "._backend"),
    "DeviceSpec": "._device",
    "Estimate": "._estimate",
    **dict.fromkeys(
        ["DeviceValidationError", "DuplicateJobError", "ExecutionCancelledError",
         "CostLimitError", "InvalidCircuitError", "InvalidOptionError", "JobCancelledError", "JobFailedError",
         "JobNotFinishedError", "JobStateError", "LimitExceededError", "NotAuthenticatedError",
         "PayloadTooLargeError", "QnbError", "QnbWarning", "QueueConflictError", "QueueError",
         "RemoteAuthError", "RemoteError", "ServerUnreachableError", "StoreError",
         "UnknownJobError", "UnknownTargetError", "VendorRejectedError"],
        "._errors",
    ),
    **dict.fromkeys(["Job", "JobItem"], "._job"),
    **dict.fromkeys(["PendingJob", "Queue"], "._queue"),
    "JobResult": "._results",
    "Sampler": "._sampler",
    "JobStatus": "._status",
    **dict.fromkeys(
        ["ItemOutcome", "QueueOwningTarget", "RunState", "ScheduledTarget", "Target", "TargetJob",
         "VendorJobState", "VendorTarget"],
        "._targets",
    ),
}

__all__ = sorted([*_EXPORTS, "load_ipython_extension", "monitor"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qnb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # the next access is a plain attribute
    if "ipykernel" in sys.modules and "qnb.notebook" not in sys.modules:
        # In a kernel, jobs show as live widgets: the notebook layer installs that
        # display hook when it loads (anywidget is heavy: only in a kernel).
        importlib.import_module(".notebook", __name__)
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def monitor(*, target: str | None = None, user: str | None = None, status: str | None = None,
            tag: str | None = None):  # fmt: skip
    """The live queue monitor widget (one per kernel, updated in place), filtered as asked."""
    from .notebook._widgets import monitor as _monitor  # widgets load only in a notebook

    return _monitor(target=target, user=user, status=status, tag=tag)


def load_ipython_extension(ipython) -> None:
    """``%load_ext qnb``: the ``%%qsubmit`` and ``%q...`` magics."""
    from .notebook._magics import load_ipython_extension as _load

    _load(ipython)


if TYPE_CHECKING:  # for editors and type checkers: the names as they are
    from ._api import (
        compile, connect, estimate, get_job, jobs, queue, register_target, run, submit, targets,
        wait_all,
    )
    from ._backend import AsyncJobBackend, ExecutionResult
    from ._device import DeviceSpec
    from ._estimate import Estimate
    from ._errors import *  # noqa: F403
    from ._job import Job, JobItem
    from ._queue import PendingJob, Queue
    from ._results import JobResult
    from ._sampler import Sampler
    from ._status import JobStatus
    from ._targets import (
        ItemOutcome, QueueOwningTarget, RunState, ScheduledTarget, Target, TargetJob, VendorJobState,
        VendorTarget,
    )
