"""The target seam: where jobs run, in three shapes.

- :class:`ScheduledTarget` — qnb schedules it: jobs wait in qnb's own queue and start
  when the target has room (``max_running_jobs``). Local simulators and the device
  emulator. It writes :meth:`~ScheduledTarget.start` (and may override ``cancel``); a
  :class:`RunState` gives ``poll`` and ``results`` for free.
- :class:`QueueOwningTarget` — the target keeps its own queue and job ids (a qnb queue
  server, a vendor's cloud). qnb hands a job over once it is stored, keeps the target's
  job id in the store before the first poll, and follows it again after a restart.
- An **executor** runs a scheduled target's circuits somewhere: the local process pool,
  or a cluster (:class:`Executor`).

Targets report what happened (item statuses, outcomes); the lifecycle decides the status.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import cirq

from .._device import DeviceSpec
from .._errors import QueueError
from .._estimate import CircuitFeatures, Estimate, TargetHistory
from .._records import QueueEntry
from .._status import TERMINAL, JobStatus


@dataclasses.dataclass
class TargetJob:
    """What the manager hands a target: one job's circuits, in item order."""

    job_id: str
    shots: int
    labels: list[str]
    circuits: list[cirq.Circuit]
    #: The circuits as compact Cirq JSON (the text the store keeps) when at hand, in item
    #: order: remote targets send it, executors send it to their workers.
    circuit_json: Sequence[str] | None = None
    #: Asked for the head of the queue (targets that own their queue place it there).
    front: bool = False
    name: str = ""
    #: Higher runs first (targets that own their queue order it so).
    priority: int = 0
    #: The user's tags (a queue server keeps them with its job).
    tags: tuple[str, ...] = ()
    #: Per item, the sweep point to run its circuit at (None: not swept, or that item
    #: has no parameters). Circuits are as written; the target resolves them.
    params: list[cirq.ParamResolver | None] | None = None
    #: Called by a target that owns its queue when it cannot reach it yet and keeps
    #: trying: the submitter stops waiting for the hand-over (the job is "reconnecting").
    report_waiting: Callable[[], None] = lambda: None
    #: Handed over again after a restart, before the target's id of it was stored: a
    #: target that owns its queue may have it already and must look before creating it.
    maybe_created: bool = False
    #: ``retries=`` at submit: a target that runs items again itself (``takes_retries``,
    #: a queue server) is told; for the others qnb's runner does it.
    retries: int = 0
    #: ``max_cost=`` at submit, for a target that prices its jobs itself (a queue server).
    max_cost: float | None = None


@dataclasses.dataclass
class ItemOutcome:
    status: JobStatus  # COMPLETED, FAILED or CANCELLED
    result: str | None = None  # cirq.Result as Cirq JSON
    error: str | None = None
    #: Which simulator or device ran it, when it was not the target's usual one.
    engine: str | None = None
    #: A failure's kind, said where it happens: True when running the item again may
    #: succeed (a lost worker, a time limit, a device or network fault, a cancel), False
    #: when it fails the same way every time (the circuit's own error); None: not said.
    retryable: bool | None = None
    #: Where the target ran it again itself (a queue server's retries): how many times,
    #: and what its failed runs said, oldest first.
    attempts: int = 0
    history: tuple[str, ...] = ()
    seconds: float | None = None  # what running it took on a worker (the estimator learns from it)


class Target(abc.ABC):
    """Where jobs run: the async protocol the JobManager drives on its loop.

    Subclass one of the shapes below, not this class.
    """

    name: str
    device: DeviceSpec
    #: Jobs run inside this process, so they die with it (see crash recovery).
    local: bool = True

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        self.device.validate(label, circuit)

    def compile(self, circuit: cirq.Circuit) -> cirq.Circuit:
        return self.device.compile(circuit)

    @abc.abstractmethod
    async def submit(self, job: TargetJob) -> Any:
        """Start running ``job``; return a handle for the other calls."""

    @abc.abstractmethod
    async def poll(self, handle: Any) -> list[JobStatus]:
        """The items' statuses, returned once they differ from the last poll."""

    @abc.abstractmethod
    async def results(self, handle: Any, indices: Sequence[int]) -> dict[int, ItemOutcome]:
        """Outcomes of the given finished items."""

    @abc.abstractmethod
    async def cancel(self, handle: Any) -> bool:
        """Stop the job's unfinished items. Idempotent; ``True`` once they are stopped."""

    def describe(self) -> str:
        """One line for ``qnb.targets()`` listings: the kind and what survives a restart."""
        return self.device.description

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class RunState:
    """A scheduled job's items as its target reports them: ``poll`` and ``results``
    for free. The target calls :meth:`set_running` and :meth:`finish`."""

    def __init__(self, n_items: int):
        self.statuses = [JobStatus.PENDING] * n_items
        self.outcomes: dict[int, ItemOutcome] = {}
        self.changed = asyncio.Event()
        #: Tasks the target started for this job; the default ``cancel`` cancels them.
        self.tasks: list[asyncio.Task] = []

    def set_running(self, index: int) -> None:
        self.statuses[index] = JobStatus.RUNNING
        self.changed.set()

    def finish(self, index: int, outcome: ItemOutcome) -> None:
        self.outcomes[index] = outcome
        self.statuses[index] = outcome.status
        self.changed.set()

    def finish_unfinished(self, indices: Sequence[int], outcome: ItemOutcome) -> None:
        for i in indices:
            if self.statuses[i] not in TERMINAL:
                self.finish(i, outcome)


class ScheduledTarget(Target):
    """A target qnb schedules: its jobs wait in qnb's queue, at most
    ``max_running_jobs`` run at once."""

    max_running_jobs: int = 1

    @abc.abstractmethod
    async def start(self, job: TargetJob, run: RunState) -> None:
        """Start the job's items (tasks in ``run.tasks``) and report through ``run``."""

    async def submit(self, job: TargetJob) -> RunState:
        run = RunState(len(job.circuits))
        await self.start(job, run)
        return run

    async def poll(self, handle: RunState) -> list[JobStatus]:
        await handle.changed.wait()
        handle.changed.clear()
        return list(handle.statuses)

    async def results(self, handle: RunState, indices: Sequence[int]) -> dict[int, ItemOutcome]:
        return {i: handle.outcomes[i] for i in indices}

    async def cancel(self, handle: RunState) -> bool:
        for task in handle.tasks:
            task.cancel()
        await asyncio.gather(*handle.tasks, return_exceptions=True)
        return True


class QueueBackend(Protocol):
    """The queue operations a queue of waiting jobs offers; ``qnb.Queue`` is written once
    over this, for qnb's own queues and for a target's (a queue server's)."""

    def entries(self) -> list[QueueEntry]:
        """Waiting jobs, head first, with their 1-based positions."""

    def entry(self, job_id: str) -> QueueEntry | None:
        """One waiting job's entry, or None when it is not waiting in this queue."""

    def remove(self, *, job_id: str | None = None, position: int | None = None,
               expected_id: str | None = None) -> QueueEntry:
        """Take one job out (it ends cancelled); by id, or by position when it is still
        ``expected_id`` (else ``QueueConflictError``)."""

    def remove_user(self, user: str) -> list[QueueEntry]:
        """Take out every waiting job of ``user``."""

    def move_to_front(self, job_id: str) -> QueueEntry:
        """Move a waiting job to the very head."""

    def known_positions(self) -> Mapping[str, int]:
        """Positions as last known, without I/O (for display)."""


class FollowedItems:
    """The items of a job that runs elsewhere (at a vendor, on a queue server) as last
    heard: the handle's part every target that owns its queue shares. ``report`` takes
    new statuses and ``next_change`` answers ``poll`` once they differ.

    Finished items keep their status: a vendor that marks a completed job cancelled, or
    a restarted server that says "queued again", must not move a finished item back.
    """

    def __init__(self, statuses: Sequence[JobStatus]):
        self.statuses = list(statuses)
        self.changed = asyncio.Event()
        self.changed.set()  # the first poll reports the state at hand-over

    @property
    def finished(self) -> bool:
        return all(s in TERMINAL for s in self.statuses)

    def report(self, statuses: Mapping[int, JobStatus] | Sequence[JobStatus]) -> None:
        """New statuses, for all items (a sequence) or some (index -> status)."""
        pairs = statuses.items() if isinstance(statuses, Mapping) else enumerate(statuses)
        updated = list(self.statuses)
        for i, status in pairs:
            if i < len(updated) and updated[i] not in TERMINAL:
                updated[i] = status
        if updated != self.statuses:
            self.statuses = updated
            self.changed.set()

    async def next_change(self) -> list[JobStatus]:
        await self.changed.wait()
        self.changed.clear()
        return list(self.statuses)


class Backoff:
    """Waits that double while something stays away, from ``first`` up to ``most``."""

    def __init__(self, first: float, most: float):
        self.first = self.delay = first
        self.most = most

    async def wait(self) -> None:
        await asyncio.sleep(self.delay)
        self.delay = min(self.delay * 2, self.most)

    def reset(self) -> None:
        self.delay = self.first


class QueueOwningTarget(Target):
    """A target with its own queue and job ids: a qnb queue server, a vendor's cloud."""

    local = False
    #: It takes ``retries=`` itself (``TargetJob.retries``): a queue server runs failed
    #: items again; a vendor's shape retries transient faults within the job. Others
    #: refuse ``retries`` at submit (qnb's rounds run on the targets it schedules only).
    takes_retries: bool = False

    @property
    def connected(self) -> bool:
        """False while the target cannot be reached (its jobs show "reconnecting")."""
        return True

    @abc.abstractmethod
    def handle_id(self, handle: Any) -> str:
        """The job's id on the target, stored before the first poll."""

    @abc.abstractmethod
    async def reattach(self, remote_id: str, n_items: int) -> Any:
        """A handle for a job submitted earlier (by a process that ended)."""

    def job_usage(self, handle: Any) -> dict | None:
        """What the target says the job used so far (quantum seconds, cost), kept on
        the job; None when it says nothing."""
        return None

    async def estimate_submission(
        self, features: Sequence[CircuitFeatures], shots: int, history: TargetHistory
    ) -> Estimate | None:
        """How long a job of these circuits would wait and run here, before it is
        submitted (``qnb.estimate``): the target's own figures (a vendor's queue depth or
        average queue time, a queue server's estimate), else ``history``'s; None when
        nothing can be said. The cost is added by the caller (``qnb._prices``)."""
        return None

    def job_estimate(self, handle: Any, history: TargetHistory) -> Estimate | None:
        """What is left of a job the target has (its queue position, its figures, as
        last read: no I/O here), combined with ``history``; None when nothing can be
        said. Called after each poll."""
        return None

    def queue_backend(self) -> QueueBackend:
        """The target's queue, when it shows one."""
        raise QueueError(
            f"target {self.name!r} does not show its queue; job.status and "
            "job.position_in_queue() still follow each job"
        )


class Executor(Protocol):
    """Runs one circuit of a scheduled target somewhere (the local pool, a cluster)."""

    async def run(
        self, engine: str, noise: float, circuit: cirq.Circuit, shots: int, *,
        params: cirq.ParamResolver | None = None, circuit_json: str | None = None,
    ) -> tuple[bool, str, str | bool | None]:
        """``(True, cirq.Result as Cirq JSON, engine that ran it)`` or ``(False, error,
        retryable)``: whether a rerun may succeed (a lost worker, a cluster away: True;
        the circuit's own error, its time limit: False; None: cannot say). ``params``:
        the sweep point to resolve the circuit at.

        ``circuit_json``: the circuit as the store keeps it (compact Cirq JSON), when the
        job has it: an executor that sends circuits elsewhere sends this text rather
        than pickling the circuit again (``qnb._circuits.from_json`` reads it quickly).
        Optional: an executor whose ``run`` does not take it is called without it."""
