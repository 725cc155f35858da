"""A process that submitted jobs is killed with SIGKILL; a fresh one finds everything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import warnings

import cirq
import pytest

import qnb
from qnb import JobStatus
from qnb import _manager
from qnb._core._ownership import INTERRUPTED
from qnb._manager import JobManager
from conftest import wait_until

pytestmark = pytest.mark.slow

SUBMITTER = textwrap.dedent(
    """
    import json, threading
    import cirq, qnb
    from qnb._manager import get_manager

    a, b = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.measure(a, b, key="m"))
    ones = cirq.Circuit(cirq.X(a), cirq.X(b), cirq.measure(a, b, key="m"))

    done = [qnb.submit({"bell": bell, "ones": ones}, shots=100, name=f"done {i}") for i in range(3)]
    for job in done:
        job.result(timeout=120)
    # The emulator runs a batch's items one after another (~1.5 s each here): the
    # process is killed after two finished, while the third runs.
    half = qnb.submit({"first": ones, "second": ones, "third": bell}, target="emulator",
                      compile=True, shots=3000, name="half done")
    queued = qnb.submit(ones, target="emulator", compile=True, shots=100, name="queued")
    print(json.dumps({"done": [j.id for j in done], "half": half.id, "queued": queued.id}),
          flush=True)
    # Resolves once two items are done and that state is on disk.
    get_manager().when(half.id, lambda rec: rec.progress[0] >= 2).result(timeout=120)
    print("READY", half.progress, half.status, flush=True)
    threading.Event().wait(600)  # killed long before this ends
    """
)


def read_line(proc: subprocess.Popen) -> str:
    # The submitter bounds its own waits (120 s), so readline cannot hang forever.
    line = proc.stdout.readline()
    if not line:
        raise AssertionError(f"submitter ended early: {proc.stderr.read()}")
    return line


def test_sigkill_mid_run_loses_nothing(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "QNB_HOME": str(home), "QNB_EMULATOR_SECONDS_PER_SHOT": "0.0005"}
    proc = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        ids = json.loads(read_line(proc))
        ready = read_line(proc)
        assert ready.startswith("READY")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert proc.returncode == -signal.SIGKILL

    with pytest.warns(qnb.QnbWarning, match="2 job\\(s\\) were left unfinished.*resubmit"):
        fresh = JobManager(home)
    previous = _manager.set_manager(fresh)
    try:
        # Completed jobs, with their results.
        for job_id in ids["done"]:
            job = qnb.get_job(job_id)
            assert job.status is JobStatus.COMPLETED
            assert job.result(timeout=1).counts("ones") == {"11": 100}
        # The batch that was running: failed "interrupted", completed items kept.
        half = qnb.get_job(ids["half"])
        assert half.status is JobStatus.FAILED and half.error == INTERRUPTED
        statuses = [it.status for it in half.items]
        assert statuses[:2] == [JobStatus.COMPLETED, JobStatus.COMPLETED]
        partial = half.result(timeout=1)
        first = partial.counts("first")  # the emulator is noisy: mostly, not only, "11"
        assert sum(first.values()) == 3000 and first["11"] > 2700
        assert list(partial.missing) == ["third"]
        # The queued job: failed too, circuits kept, so it can run again.
        queued = qnb.get_job(ids["queued"])
        assert queued.status is JobStatus.FAILED and queued.items[0].error == INTERRUPTED
        with pytest.raises(qnb.JobFailedError, match="interrupted"):
            queued.result(timeout=1)
        rerun = queued.resubmit()
        assert rerun.parent_id == queued.id
        assert rerun.result(timeout=60).counts()["11"] > 80
        rest = half.resubmit(only_failed=True)
        assert [it.label for it in rest.items] == ["third"]
        assert sum(rest.result(timeout=60).counts("third").values()) == 3000
        assert len(qnb.jobs(limit=100)) == 7
    finally:
        _manager.set_manager(previous)
        fresh.close()

    # It says so once: the next process finds nothing left to mark.
    with warnings.catch_warnings():
        warnings.simplefilter("error", qnb.QnbWarning)
        JobManager(home).close()


def test_a_live_owner_is_not_marked_interrupted(manager):
    job = qnb.submit(cirq.Circuit(cirq.measure(cirq.LineQubit(0))), target="emulator", shots=20_000)
    other = JobManager(manager.home)  # a second process's view: the owner is alive
    try:
        assert other.interrupted_jobs == []
        assert other.load(job.id).status in (JobStatus.QUEUED, JobStatus.RUNNING)
    finally:
        other.close()
        job.cancel()


ORPHAN_MAKER = textwrap.dedent(
    """
    import cirq, qnb
    from qnb._targets._pool import get_pool

    qnb.run(cirq.Circuit(cirq.measure(cirq.LineQubit(0))), shots=5, timeout=120)
    pool = get_pool()
    pool.wait_ready(60)
    print(sorted(pool.worker_pids()), flush=True)
    import threading
    threading.Event().wait(600)  # killed long before this ends
    """
)


def test_workers_exit_when_their_kernel_is_killed(tmp_path):
    """Only the kernel's pid is killed (as the OOM killer would), not its group."""
    proc = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_MAKER],
        env={**os.environ, "QNB_HOME": str(tmp_path)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        workers = json.loads(read_line(proc))
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert workers

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        # A zombie waiting for its reaper counts as ended.
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] != "Z"

    wait_until(lambda: not any(alive(pid) for pid in workers), timeout=20, what="workers to exit")
