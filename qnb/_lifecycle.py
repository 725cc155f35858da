"""The lifecycle: the only code that writes a job's or an item's status and timestamps.

Targets *report* what happened (item statuses, outcomes); the functions here decide
what that means for the record, through the one transition table of ``_status``:
``enqueue``, ``start``, ``apply_report``, ``fail``, ``request_cancel``, ``cancel_queued``,
``recover`` (the named recovery rules for a restart) and ``retry`` (the named move
that runs a transiently failed item again, ``retries=N`` at submit). ``time_started`` is
set when a job first runs, ``time_finished`` when it ends, whoever ran it (a local pool,
a queue server, a vendor's cloud).

Each function changes the record in place and notes the changed items in
``rec.live.dirty_items``; the caller (the JobManager, under its lock) then stores and
announces the change. The store saves what these produced and writes no status of its
own.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from ._records import ItemRecord, JobRecord
from ._status import (
    CA,
    CI,
    CO,
    TERMINAL,
    F,
    InvalidTransitionError,
    JobStatus,
    P,
    Q,
    R,
    check_transition,
    derive_job_status,
    path_to,
)


class Outcome(Protocol):
    """What a target reports for a finished item (``qnb.ItemOutcome``)."""

    status: JobStatus
    result: str | None
    error: str | None
    engine: str | None
    retryable: bool | None  # a failure running it again may cure (see ItemOutcome)


# -- the job ------------------------------------------------------------------------------


def enqueue(rec: JobRecord) -> None:
    """Accepted into a queue (qnb's own, or the target's)."""
    _set_job_status(rec, Q)


def start(rec: JobRecord) -> None:
    """qnb's scheduler hands the job to its target."""
    _set_job_status(rec, R)


def apply_report(
    rec: JobRecord,
    statuses: Sequence[JobStatus],
    outcomes: Mapping[int, Outcome],
    *,
    may_retry: bool = False,
) -> None:
    """A target's report of its items: statuses in item order, outcomes of finished ones.

    A finished item never changes again, except by :func:`retry`: with ``may_retry``
    (the caller can run items again), an item that failed transiently and has retries
    left goes back to pending before the job's status is derived, so the job does not
    end while it waits. A report that would move an item backwards is not news: a
    queue server that restarted puts a running item back in its queue to run again,
    and seen from here that item is still under way.
    """
    for i, reported in enumerate(statuses):
        item = rec.items[i]
        if reported is item.status or item.status in TERMINAL:
            continue
        outcome = outcomes.get(i)
        # A finished item's outcome is the last word: a vendor job that completed but
        # whose results cannot be read is a failed item, not a completed one.
        if outcome is not None and reported in TERMINAL and outcome.status in TERMINAL:
            reported = outcome.status
        try:
            steps = path_to(item.status, reported)
        except InvalidTransitionError:
            continue  # backwards (RUNNING -> QUEUED after a server restart): keep ours
        _walk_item(rec, i, steps, None if outcome is None else outcome.error)
        if outcome is not None:
            item.engine = getattr(outcome, "engine", None)
            item.retryable = getattr(outcome, "retryable", None)
            if getattr(outcome, "attempts", 0) > item.attempts:  # the target retried it (a queue server)
                item.attempts, item.history = outcome.attempts, tuple(outcome.history)
            if outcome.result is not None:
                rec.live.unsaved_results[i] = outcome.result
        if may_retry and retry_due(rec, i):
            retry(rec, i)
    _derive(rec)


def fail(rec: JobRecord, reason: str, *, retryable: bool | None = None) -> None:
    """The run broke (a target raised, the process is ending): every unfinished item
    fails with ``reason``; finished items keep their results. ``retryable``: whether
    running them again may succeed, as the caller knows from what broke (a
    ``QnbError``'s ``retryable``; the process ending: True)."""
    for i, item in enumerate(rec.items):
        if item.status not in TERMINAL:
            _walk_item(rec, i, path_to(item.status, F), reason)
            item.retryable = retryable
    if not rec.done:
        rec.error = reason
    _derive(rec)


def request_cancel(rec: JobRecord) -> None:
    """A cancel was asked for a job that has started: CANCELLING until the target
    confirms (never CANCELLED before that)."""
    rec.live.cancel_requested = True
    _derive(rec)


def cancel_queued(rec: JobRecord) -> None:
    """A job taken out of qnb's own queue: that is the confirmation, it ends CANCELLED."""
    rec.live.cancel_requested = True
    for i, item in enumerate(rec.items):
        if item.status not in TERMINAL:
            _walk_item(rec, i, path_to(item.status, CA), "cancelled")
    _derive(rec)


def _derive(rec: JobRecord) -> None:
    new = derive_job_status(
        (it.status for it in rec.items), cancelling=rec.live.cancel_requested, started=rec.status is R
    )
    if new is not rec.status:
        for step in path_to(rec.status, new):
            _set_job_status(rec, step)


def _set_job_status(rec: JobRecord, new: JobStatus, *, now: float | None = None) -> None:
    check_transition(rec.status, new)
    rec.status = new
    now = time.time() if now is None else now
    if new is R and rec.time_started is None:
        rec.time_started = now
    if new in TERMINAL:
        rec.time_finished = now
        if new is F and rec.error is None:
            failed = [it for it in rec.items if it.status is F]
            first = failed[0]
            rec.error = (
                f"{len(failed)} of {len(rec.items)} items failed; "
                f"{first.label!r}: {first.error}"
            )


def _walk_item(rec: JobRecord, index: int, steps: Sequence[JobStatus], error: str | None) -> None:
    item = rec.items[index]
    for step in steps:
        check_transition(item.status, step)
        item.status = step
    if error is not None:
        item.error = error
    rec.live.dirty_items.add(index)


# -- running a failed item again (retries=N) ------------------------------------------------

#: The retry move: a failed item runs again, pending until its next run starts. Like
#: the recovery table it is not a transition (a failed item is final everywhere else),
#: so it is a named move of its own, applied only by :func:`retry`.
RETRY: dict[JobStatus, JobStatus] = {F: P}


def retry_due(rec: JobRecord, index: int) -> bool:
    """Whether item ``index`` runs again: it failed, its target said a rerun may succeed
    (a lost worker, a cluster worker's death; never the circuit's own error, a
    validation refusal or a time limit, which say False or nothing), it has retries
    left, and nobody asked to cancel the job."""
    item = rec.items[index]
    return (
        item.status is F
        and item.retryable is True
        and item.attempts < rec.retries
        and not rec.live.cancel_requested
    )


def retry(rec: JobRecord, index: int) -> None:
    """Item ``index`` runs again: its failure goes to its history (oldest first), its
    attempts count one more, and it waits as pending (the job's status is derived by
    the caller). A move that is not in :data:`RETRY` is refused."""
    item = rec.items[index]
    new = RETRY.get(item.status)
    if new is None:
        raise InvalidTransitionError(f"an item cannot run again from {item.status.value}")
    item.history = (*item.history, item.error or "failed")
    item.attempts += 1
    item.status, item.error, item.retryable = new, None, None
    rec.live.dirty_items.add(index)


def waiting_to_retry(rec: JobRecord) -> list[int]:
    """The items that wait to run again (pending after a run of theirs failed)."""
    return [i for i, it in enumerate(rec.items) if it.status is P and it.attempts > 0]


def cancel_retrying(rec: JobRecord) -> None:
    """A cancel of a job whose items wait to run again: qnb holds them (no target has
    them), so the cancel is confirmed at once and they end cancelled."""
    cancel_queued(rec)


# -- recovery after a restart ----------------------------------------------------------------


class Recovery(enum.Enum):
    """What a process does with the unfinished jobs of one that ended (see ``recover``)."""

    #: A kernel's jobs: nothing runs them any more. Unfinished items fail "interrupted";
    #: completed items keep their results, so ``resubmit(only_failed=True)`` works.
    INTERRUPTED = "interrupted"
    #: A queue server's jobs: taken over and run again. Waiting jobs keep their place;
    #: jobs that were running go back to the head, their unfinished items pending again;
    #: jobs whose cancel was asked end cancelled.
    REQUEUE = "requeue"


#: The recovery table: for each rule, the job status each unfinished status becomes.
#: It is not a transition (the run was lost with its process), so it is a table of its
#: own, and these are the only moves that go "backwards".
RECOVERY: dict[Recovery, dict[JobStatus, JobStatus]] = {
    Recovery.INTERRUPTED: {P: F, Q: F, R: F, CI: F},
    Recovery.REQUEUE: {P: Q, Q: Q, R: Q, CI: CA},
}


def recover(rec: JobRecord, rule: Recovery, reason: str, *, now: float | None = None) -> None:
    """Apply a recovery rule to an unfinished job (loaded from the store)."""
    now = time.time() if now is None else now
    new = RECOVERY[rule][rec.status]
    if new is F:
        for i, item in enumerate(rec.items):
            if item.status not in TERMINAL:
                _force_item(rec, i, F, reason)
                item.retryable = True  # lost with its process: a rerun may well succeed
        rec.error = reason
    elif new is CA:
        for i, item in enumerate(rec.items):
            if item.status not in TERMINAL:
                _force_item(rec, i, CA, "cancelled")
    else:  # back in the queue: what had started runs again from the start
        for i, item in enumerate(rec.items):
            if item.status in (Q, R):
                _force_item(rec, i, P, None)
        if rec.status is not Q:
            rec.time_started = None
    rec.status = new
    if new in TERMINAL:
        rec.time_finished = rec.time_finished or now


def _force_item(rec: JobRecord, index: int, status: JobStatus, error: str | None) -> None:
    item: ItemRecord = rec.items[index]
    item.status = status
    item.error = error
    rec.live.dirty_items.add(index)
