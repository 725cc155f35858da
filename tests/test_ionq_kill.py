"""The kill test: a process submits a job to the IonQ stand-in and is SIGKILLed; a new
process (a fresh JobManager on the same QNB_HOME) lists the job, follows it again once the
target is registered, and gets its results, with no second job created at IonQ."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

import qnb
from qnb import JobStatus, _manager
from conftest import wait_until
from ionq_standin import StandIn

pytestmark = pytest.mark.slow

KEY = "sk-standin-kill-test-4242"

SUBMITTER = textwrap.dedent(
    """
    import sys, threading
    import cirq, qnb
    from qnb import _manager

    url, key = sys.argv[1:3]
    qnb.register_target("qpu", "ionq", backend="qpu.aria-1", api_key=key, remote_host=url,
                        poll_seconds=0.05)
    q = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
    flip = cirq.Circuit(cirq.X(q[1]), cirq.measure(*q, key="m"))
    job = qnb.submit({"bell": bell, "flip": flip}, target="qpu", shots=100, name="paid for")
    manager = _manager.get_manager()
    # Resolves once the vendor's id is in the store (waiters wait for the write).
    manager.when(job.id, lambda rec: rec.remote_id is not None).result(60)
    print("STORED", job.id, manager.store.load_job(job.id).remote_id, flush=True)
    threading.Event().wait(600)  # the kernel is busy when it is killed
    """
)


@pytest.fixture
def standin():
    stand = StandIn(KEY)
    stand.hold = True  # the job is still running at IonQ when its kernel dies
    stand.start()
    yield stand
    stand.stop()


def test_a_killed_kernels_ionq_job_is_followed_again_without_a_rerun(tmp_path, standin, monkeypatch):
    home = tmp_path / "home"
    for variable in ("IONQ_API_KEY", "CIRQ_IONQ_API_KEY", "IONQ_REMOTE_HOST", "CIRQ_IONQ_REMOTE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    env = {**os.environ, "QNB_HOME": str(home), "QNB_TARGETS": str(tmp_path / "none.toml")}
    child = subprocess.Popen(
        [sys.executable, "-c", SUBMITTER, standin.url, KEY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        line = child.stdout.readline()  # blocks until the job is stored (or the child dies)
        assert line.startswith("STORED"), (line, child.stderr.read() if child.poll() is not None else "")
        _, job_id, remote_id = line.split()
        assert remote_id.endswith("|batch|qpu.aria-1")
        wait_until(lambda: standin.status_of(remote_id.partition("|")[0]) == "running", what="IonQ to run it")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL

    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "none.toml"))
    fresh = _manager.JobManager(home)
    previous = _manager.set_manager(fresh)
    try:
        listed = qnb.jobs()
        assert [j.id for j in listed] == [job_id]
        assert listed[0].status in (JobStatus.QUEUED, JobStatus.RUNNING)  # not "interrupted"
        standin.release()
        target = qnb.register_target("qpu", "ionq", backend="qpu.aria-1", api_key=KEY,
                                     remote_host=standin.url, poll_seconds=0.05)  # fmt: skip
        try:
            job = qnb.get_job(job_id)
            result = job.result(timeout=60)
            assert result.counts(label="bell") == {"00": 50, "11": 50}
            assert result.counts(label="flip") == {"01": 100}
            assert standin.created == 1  # followed, not run again
            fresh.flush()
            for path in home.rglob("*"):
                if path.is_file():
                    assert KEY.encode() not in path.read_bytes(), path
        finally:
            target.close()
    finally:
        _manager.set_manager(previous)
        fresh.close()
