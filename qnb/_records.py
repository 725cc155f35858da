"""Plain data for what a job is. Handles (:class:`qnb.Job`) read these; only the
JobManager changes them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, TypeVar

from ._errors import QueueError
from ._status import TERMINAL, JobStatus

T = TypeVar("T")


@dataclasses.dataclass(slots=True)
class ItemRecord:
    label: str
    status: JobStatus = JobStatus.PENDING
    error: str | None = None
    params: str | None = None  # the sweep point's resolver (Cirq JSON), None if not swept
    engine: str | None = None  # what ran it (e.g. "qsim", or "cirq.Simulator (why)")
    #: Whether running it again may succeed (a lost worker, a time limit, a device or
    #: network fault), as the target that ran it said; None where nothing said.
    retryable: bool | None = None
    #: Runs of it that failed transiently and were tried again (``retries=N`` at submit).
    attempts: int = 0
    #: What those runs failed with, oldest first (it keeps its history when retried).
    history: tuple[str, ...] = ()


@dataclasses.dataclass(slots=True, eq=False)
class JobRuntime:
    """A job's state in the process that runs or follows it, beside its stored record:
    write-behind bookkeeping, waiters, the target's handle, the parsed circuits."""

    persisted: bool = True  # False until its submit has inserted it
    dirty: bool = False
    version: int = 0  # bumped on every change, so a flush knows what it wrote
    dirty_items: set[int] = dataclasses.field(default_factory=set)
    cancel_requested: bool = False
    circuits: list[Any] | None = None  # cirq.Circuit objects until the run ends
    circuit_json: Any = None  # their Cirq JSON (a Sequence[str]) until the run ends
    resolvers: list[Any] | None = None  # their sweep points (cirq.ParamResolver), if swept
    unsaved_results: dict[int, str] = dataclasses.field(default_factory=dict)
    waiters: list[tuple[Any, Any]] = dataclasses.field(default_factory=list)
    handle: Any = None
    #: What is left of the job, as last estimated (``qnb.Estimate``; None: not known).
    #: Set by the core's estimator or from what the target sends (a queue server's).
    estimate: Any = None
    #: ``max_cost=`` at submit, sent with the job to a target that prices it (not stored).
    max_cost: float | None = None


@dataclasses.dataclass(slots=True, eq=False)
class JobRecord:
    id: str
    name: str
    target: str
    user: str
    shots: int
    items: list[ItemRecord]
    time_added: float
    status: JobStatus = JobStatus.PENDING
    time_started: float | None = None
    time_finished: float | None = None
    error: str | None = None
    parent_id: str | None = None
    queue_seq: float = 0.0
    priority: int = 0  # higher runs first; queue order within a priority
    owner: str | None = None  # the process that runs it (local targets), see _manager
    remote_id: str | None = None  # the job's id on a remote target, if any
    origin: str | None = None  # where it was submitted from (a notebook's path, a script)
    #: What a vendor says the job used, as last read: {"quantum_seconds": 2.1}, {"cost_usd": 0.3}.
    usage: dict | None = None
    #: The user's labels for finding it again (``qnb.jobs(tag=...)``), checked at submit.
    tags: tuple[str, ...] = ()
    #: The cost estimated at submit (None where no price is known) and its currency.
    cost: float | None = None
    currency: str | None = None
    #: How many times a transiently failed item runs again (``retries=`` at submit).
    retries: int = 0
    #: What is left of it as the process that runs it last estimated and stored
    #: (``Estimate.as_json()``; read from the store). That process's own is ``live.estimate``.
    saved_estimate: dict | None = None

    #: What the process that runs or follows the job holds besides (never stored).
    live: JobRuntime = dataclasses.field(default_factory=lambda: JobRuntime(), repr=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def progress(self) -> tuple[int, int]:
        return sum(1 for it in self.items if it.status in TERMINAL), len(self.items)

    @property
    def swept(self) -> bool:
        """The items are points of parameter sweeps."""
        return any(it.params is not None for it in self.items)


@dataclasses.dataclass(frozen=True, slots=True)
class QueueEntry:
    """One waiting job as any user of its queue may see it (other users' jobs on a
    shared server show only these fields)."""

    position: int | None  # None once it left the queue
    id: str
    user: str
    name: str
    time_added: float
    status: JobStatus
    priority: int = 0


def entry_at(entries: Sequence[T], position: object, target: str) -> T:
    """The entry at a 1-based queue position, or a QueueError saying what is valid."""
    if isinstance(position, bool) or not isinstance(position, int):
        raise QueueError(f"queue positions are whole numbers from 1, got {position!r}")
    if not 1 <= position <= len(entries):
        size = f"1 to {len(entries)}" if entries else "none: the queue is empty"
        raise QueueError(
            f"position {position} is out of range for the {target!r} queue "
            f"(positions are 1-based; valid now: {size})"
        )
    return entries[position - 1]
