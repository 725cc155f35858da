"""The job lifecycle: statuses, the one transition table, and status derivation.

Everything that changes a job's or item's status goes through :func:`check_transition`;
a job's status is derived from its items by :func:`derive_job_status`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from ._errors import InvalidTransitionError


class JobStatus(str, enum.Enum):
    """A job's or an item's place in the lifecycle (compares equal to its string)."""

    PENDING = "pending"
    QUEUED = "queued"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL


P, Q, R, CI, CO, F, CA = (
    JobStatus.PENDING,
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.CANCELLING,
    JobStatus.COMPLETED,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
)

TERMINAL: frozenset[JobStatus] = frozenset({CO, F, CA})
WAITING: frozenset[JobStatus] = frozenset({P, Q, R, CI})
# Jobs that are still in a queue, i.e. have a position.
IN_QUEUE: frozenset[JobStatus] = frozenset({P, Q})
assert TERMINAL.isdisjoint(WAITING) and TERMINAL | WAITING == set(JobStatus)

# The one table of allowed transitions, for jobs and items alike.
# CANCELLING -> COMPLETED is allowed on purpose: when a cancel request loses the race
# against completion, the honest outcome is the results, not a false "cancelled".
TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    P: frozenset({Q, R, CI, F}),
    Q: frozenset({R, CI, F}),
    R: frozenset({CO, CI, F}),
    CI: frozenset({CA, CO, F}),
    CO: frozenset(),
    F: frozenset(),
    CA: frozenset(),
}


def check_transition(old: JobStatus, new: JobStatus) -> None:
    if new not in TRANSITIONS[old]:
        raise InvalidTransitionError(f"job status cannot go from {old.value} to {new.value}")


_ORDER = {status: i for i, status in enumerate(JobStatus)}


def path_to(old: JobStatus, new: JobStatus) -> list[JobStatus]:
    """The shortest chain of allowed transitions from ``old`` to ``new`` (without ``old``).

    A target may report an item COMPLETED that was PENDING at the last poll: it ran in
    between, and the path makes that explicit (PENDING -> RUNNING -> COMPLETED).
    """
    if old is new:
        return []
    frontier, came_from = [old], {old: old}
    while frontier:
        nxt = []
        for status in frontier:
            # In declaration order, so that of two equally short paths the lifecycle's
            # own wins (PENDING -> RUNNING -> COMPLETED, not through CANCELLING).
            for step in sorted(TRANSITIONS[status], key=_ORDER.__getitem__):
                if step not in came_from:
                    came_from[step] = status
                    nxt.append(step)
        frontier = nxt
    if new not in came_from:
        raise InvalidTransitionError(f"job status cannot go from {old.value} to {new.value}")
    path = [new]
    while came_from[path[-1]] is not old:
        path.append(came_from[path[-1]])
    return path[::-1]


def derive_job_status(
    items: Iterable[JobStatus], *, cancelling: bool = False, started: bool = False
) -> JobStatus:
    """The status a job has given its items' statuses.

    ``cancelling``: a cancel was requested and not yet confirmed for every item.
    ``started``: the job has run; it stays RUNNING while items that failed transiently
    wait to run again (``retries=``), rather than looking queued again.
    """
    items = list(items)
    if not items:
        raise ValueError("a job has at least one item")
    if all(s in TERMINAL for s in items):
        if all(s is CO for s in items):
            return CO
        if any(s is F for s in items):
            return F  # partial results of completed items are kept
        return CA
    if cancelling:
        return CI
    if started or any(s is not P and s is not Q for s in items):
        return R
    return Q
