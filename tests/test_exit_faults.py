"""Every process ends, and loses nothing as it does: a script whose sampler is stuck in
``run_sweep`` exits (the attack killed it after 30 s), and a job that finished while the
store could not be written (disk full) is not lost at exit: the next process writes it
(the attack found it marked interrupted)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import qnb
from qnb import JobStatus, _manager

pytestmark = pytest.mark.slow

STUCK_SAMPLER = textwrap.dedent(
    """
    import threading, cirq, qnb
    from qnb import _manager

    class Stuck(cirq.Sampler):
        def run_sweep(self, program, params, repetitions=1):
            threading.Event().wait()  # never answers, like a vendor that hangs

    qnb.register_target("stuck", Stuck())
    q = cirq.LineQubit(0)
    job = qnb.submit(cirq.Circuit(cirq.X(q), cirq.measure(q, key="m")), target="stuck", shots=1)
    _manager.get_manager().when(job.id, lambda rec: rec.status.value == "running").result(60)
    print(job.id, flush=True)
    """
)

FULL_DISK_AT_EXIT = textwrap.dedent(
    """
    import time, cirq, qnb
    from qnb import _manager

    manager = _manager.get_manager()
    db = manager.store._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    q = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
    job = qnb.submit([bell] * 20, shots=2000)
    db.execute(f"PRAGMA max_page_count = {pages + 5}")  # the disk fills up
    deadline = time.monotonic() + 60  # done in memory; the store refuses to take it
    while manager.record(job.id).status.value != "completed" or manager.store_error is None:
        assert time.monotonic() < deadline, manager.record(job.id).status
        time.sleep(0.01)
    print(job.id, flush=True)
    """
)


def _run(code: str, home, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "QNB_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=timeout
    )


def _fresh(home) -> _manager.JobManager:
    return _manager.JobManager(home, warm_pool=False)


def test_a_sampler_stuck_in_run_sweep_does_not_keep_a_script_alive(tmp_path):
    done = _run(STUCK_SAMPLER, tmp_path / "home", timeout=60)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[0]
    assert "interrupted" in done.stderr  # said once, at exit
    fresh = _fresh(tmp_path / "home")
    try:
        stored = fresh.load(job_id)
        assert stored.status is JobStatus.FAILED and "interrupted" in stored.error
    finally:
        fresh.close()


def test_a_result_that_could_not_be_written_at_exit_is_written_by_the_next_process(tmp_path):
    home = tmp_path / "home"
    done = _run(FULL_DISK_AT_EXIT, home)
    assert done.returncode == 0, done.stderr
    job_id = done.stdout.split()[0]
    assert "kept in" in done.stderr and job_id[:8] in done.stderr  # said, with where
    assert list(home.glob("qnb.sqlite3.unsaved-*.json"))
    fresh = _fresh(home)
    previous = _manager.set_manager(fresh)
    try:
        job = qnb.get_job(job_id)
        assert job.status is JobStatus.COMPLETED  # not "interrupted"
        assert len(job.result(timeout=5)) == 20
        assert not list(home.glob("qnb.sqlite3.unsaved-*.json"))
    finally:
        _manager.set_manager(previous)
        fresh.close()
