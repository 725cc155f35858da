"""The submit/poll/fetch/cancel protocol for orchestration tools."""

from __future__ import annotations

import threading

import pytest

import qnb
from qnb import JobStatus
from conftest import BELL_QASM

ONES_QASM = BELL_QASM.replace("h q[0];\ncx q[0],q[1];", "x q[0];\nx q[1];")


def test_submit_poll_fetch(manager, capsys):
    backend = qnb.AsyncJobBackend(target="sim", shots=200)
    execution = backend.submit_circuits({"bell": BELL_QASM, "ones": ONES_QASM})
    assert isinstance(execution, qnb.ExecutionResult)
    assert execution.labels == ("bell", "ones") and len(execution.job_id) == 32
    attempts: list[tuple[int, str]] = []
    completed: list[qnb.ExecutionResult] = []
    status = backend.poll_job_status(
        execution,
        loop_until_complete=True,
        on_complete=completed.append,
        progress_callback=lambda attempt, s: attempts.append((attempt, s)),
    )
    assert status is JobStatus.COMPLETED
    assert completed == [execution]
    assert attempts[-1][1] == "completed" and [a for a, _ in attempts] == list(range(1, len(attempts) + 1))
    assert "completed" in capsys.readouterr().out  # verbose by default
    results = backend.get_job_results(execution)
    assert results.counts("ones") == {"11": 200}
    assert set(results.counts("bell")) <= {"00", "11"}


def test_results_only_after_completion_and_cancel_is_idempotent(manager):
    backend = qnb.AsyncJobBackend(target="emulator", shots=20_000)
    native = BELL_QASM.replace("h q[0];\ncx q[0],q[1];", "x q[0];\nz q[1];")
    execution = backend.submit_circuits({"x": native}, compile=True)
    status = backend.poll_job_status(execution, verbose=False)
    assert status in (JobStatus.QUEUED, JobStatus.RUNNING)
    with pytest.raises(qnb.JobNotFinishedError, match="results exist only after it completes"):
        backend.get_job_results(execution)
    backend.cancel_job(execution)
    final = backend.poll_job_status(execution, loop_until_complete=True, verbose=False)
    assert final is JobStatus.CANCELLED
    assert backend.cancel_job(execution) is JobStatus.CANCELLED


def test_cancellation_event_ends_the_loop(manager):
    backend = qnb.AsyncJobBackend(target="emulator", shots=20_000, poll_interval=0.05)
    native = BELL_QASM.replace("h q[0];\ncx q[0],q[1];", "x q[0];")
    execution = backend.submit_circuits({"x": native}, compile=True)
    event = threading.Event()
    polls = []

    def progress(attempt, status):
        polls.append(status)
        if attempt == 3:
            event.set()

    with pytest.raises(qnb.ExecutionCancelledError, match="the job goes on"):
        backend.poll_job_status(
            execution, loop_until_complete=True, verbose=False,
            progress_callback=progress, cancellation_event=event,
        )
    assert len(polls) == 3
    assert not execution.job.done()  # ending the wait does not cancel the job
    backend.cancel_job(execution)


def test_set_event_before_submission_submits_nothing(manager):
    event = threading.Event()
    event.set()
    with pytest.raises(qnb.ExecutionCancelledError, match="nothing was submitted"):
        qnb.AsyncJobBackend().submit_circuits({"a": BELL_QASM}, cancellation_event=event)
    assert qnb.jobs() == []


def test_bad_qasm_through_the_backend(manager):
    with pytest.raises(qnb.InvalidCircuitError, match="line 5"):
        qnb.AsyncJobBackend().submit_circuits({"a": BELL_QASM.replace("h q[0];", "hh q[0];")})
    assert qnb.jobs() == []
