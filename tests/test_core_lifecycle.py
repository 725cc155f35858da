"""The lifecycle table and status derivation (pure, no jobs run)."""

import pytest

from qnb import JobStatus
from qnb._status import (
    IN_QUEUE,
    TERMINAL,
    TRANSITIONS,
    WAITING,
    InvalidTransitionError,
    check_transition,
    derive_job_status,
    path_to,
)

S = JobStatus


def test_terminal_and_waiting_are_disjoint_and_total():
    assert TERMINAL.isdisjoint(WAITING)
    assert TERMINAL | WAITING == set(JobStatus)
    assert S.CANCELLING in WAITING  # waiting on a cancel is not an end
    assert IN_QUEUE <= WAITING


def test_table_follows_the_design_diagram():
    assert check_transition(S.PENDING, S.QUEUED) is None
    assert check_transition(S.QUEUED, S.RUNNING) is None
    assert check_transition(S.RUNNING, S.COMPLETED) is None
    for waiting in (S.PENDING, S.QUEUED, S.RUNNING):
        check_transition(waiting, S.CANCELLING)
        check_transition(waiting, S.FAILED)
    check_transition(S.CANCELLING, S.CANCELLED)


@pytest.mark.parametrize("final", sorted(TERMINAL))
def test_nothing_leaves_a_terminal_state(final):
    assert TRANSITIONS[final] == frozenset()
    for other in JobStatus:
        if other is not final:
            with pytest.raises(InvalidTransitionError):
                check_transition(final, other)


def test_no_regressions():
    with pytest.raises(InvalidTransitionError, match="cancelled to completed"):
        check_transition(S.CANCELLED, S.COMPLETED)
    with pytest.raises(InvalidTransitionError):
        check_transition(S.RUNNING, S.QUEUED)
    with pytest.raises(InvalidTransitionError):
        check_transition(S.QUEUED, S.CANCELLED)  # must pass through CANCELLING


def test_path_to_walks_the_table():
    assert path_to(S.PENDING, S.COMPLETED) == [S.RUNNING, S.COMPLETED]
    assert path_to(S.QUEUED, S.CANCELLED) == [S.CANCELLING, S.CANCELLED]
    assert path_to(S.RUNNING, S.RUNNING) == []
    with pytest.raises(InvalidTransitionError):
        path_to(S.CANCELLED, S.COMPLETED)


def test_derive_job_status_from_items():
    assert derive_job_status([S.PENDING, S.PENDING]) is S.QUEUED
    assert derive_job_status([S.COMPLETED, S.PENDING]) is S.RUNNING
    assert derive_job_status([S.COMPLETED, S.COMPLETED]) is S.COMPLETED
    assert derive_job_status([S.COMPLETED, S.FAILED]) is S.FAILED  # partial results kept
    assert derive_job_status([S.COMPLETED, S.CANCELLED]) is S.CANCELLED
    assert derive_job_status([S.RUNNING, S.PENDING], cancelling=True) is S.CANCELLING
    # Once every item is final, the outcome wins over the cancel request.
    assert derive_job_status([S.COMPLETED], cancelling=True) is S.COMPLETED
    with pytest.raises(ValueError):
        derive_job_status([])


def test_status_is_a_str_enum():
    assert S.COMPLETED == "completed"
    assert str(S.CANCELLING) == "cancelling"
    assert S("queued") is S.QUEUED
