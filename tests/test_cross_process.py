"""Control from any process: a job that another live process runs can be cancelled,
removed from its queue, moved to the front and resubmitted from here (a second kernel,
a script, the command line). The request goes through the shared store; the owning
process carries it out and answers. Before, every such call answered "job ... is run by
another process (...); cancel it from there" (for a server job: "(None)")."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import qnb
from qnb import JobStatus, _manager
from conftest import wait_until

# One worker runs this file (loadgroup): its one owner process serves every test.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cross-process")]

OWNER = textwrap.dedent(
    """
    import sys, cirq, qnb
    q = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
    for line in sys.stdin:  # "start" a test's jobs; at its end, "stop" them (and say so)
        if line.strip() == "start":
            long = qnb.submit(bell, target="emulator", compile=True, shots=60_000, name="long")
            jobs = [qnb.submit(bell, target="emulator", compile=True, shots=200, name=f"w{i}") for i in range(3)]
            print(long.id, *(j.id for j in jobs), flush=True)
        else:
            for job in (long, *jobs):
                job.cancel()
            qnb.wait_all(timeout=60)
            print("stopped", flush=True)
    """
)


@pytest.fixture(scope="module")
def owner_process(tmp_path_factory):
    """Another live process on one store, shared by this file's tests (each gets jobs
    of its own from it): an interpreter and a simulation pool a test would cost."""
    base = tmp_path_factory.mktemp("cross-process")
    env = {**os.environ, "QNB_HOME": str(base / "home"), "QNB_TARGETS": str(base / "none.toml")}
    child = subprocess.Popen([sys.executable, "-c", OWNER], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        yield child, base
    finally:
        child.stdin.close()
        child.kill()
        child.wait(timeout=30)


@pytest.fixture
def owner(owner_process, monkeypatch):
    """A long emulator job running in the other process with three waiting behind it;
    and this process's own manager on that store."""
    child, base = owner_process
    monkeypatch.setenv("QNB_TARGETS", str(base / "none.toml"))
    child.stdin.write("start\n")
    child.stdin.flush()
    line = child.stdout.readline()
    assert line, child.stderr.read()
    ids = line.split()
    here = _manager.JobManager(base / "home", warm_pool=False)
    previous = _manager.set_manager(here)
    try:
        wait_until(lambda: here.store.load_job(ids[0]).status is JobStatus.RUNNING,
                   timeout=60, what="the long job running in the other process")  # fmt: skip
        yield here, ids
    finally:
        _manager.set_manager(previous)
        here.close()
        child.stdin.write("stop\n")  # the next test's long job runs at once
        child.stdin.flush()
        assert child.stdout.readline().strip() == "stopped", child.stderr.read()


def test_cancel_a_running_job_of_another_process(owner):
    here, (long_id, *_) = owner
    job = qnb.get_job(long_id)
    started = time.monotonic()
    status = job.cancel()
    assert status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    assert time.monotonic() - started < 5  # the owner answered (a benchmark measures p95)
    wait_until(lambda: job.status is JobStatus.CANCELLED, timeout=30, what="the job cancelled")
    with pytest.raises(qnb.JobCancelledError):
        job.result(timeout=10)  # waits across processes


def test_remove_and_move_to_front_in_another_process_queue(owner):
    here, (long_id, first, second, third) = owner
    removed = here.remove_queued("emulator", job_id=second)
    assert removed.status is JobStatus.CANCELLED
    assert here.store.load_job(second).status is JobStatus.CANCELLED
    moved = here.move_to_front(third)
    assert moved.queue_seq < here.store.load_job(first).queue_seq
    qnb.get_job(long_id).cancel()
    # The owner runs the moved job before the one that was ahead of it.
    wait_until(lambda: qnb.get_job(first).status is JobStatus.COMPLETED, timeout=60, what="both run")
    assert qnb.get_job(third).time_finished <= qnb.get_job(first).time_started


def test_a_refusal_of_the_owner_comes_back_as_its_error(owner):
    here, (long_id, *_) = owner
    with pytest.raises(qnb.QueueError, match="not in the 'emulator' queue"):
        here.remove_queued("emulator", job_id=long_id)  # it runs: only cancel stops it
    assert here.store.load_job(long_id).status is JobStatus.RUNNING


def test_the_cli_cancels_another_process_job(owner, tmp_path):
    here, (long_id, *_) = owner
    env = {**os.environ, "QNB_HOME": str(here.home), "QNB_TARGETS": str(tmp_path / "none.toml")}
    done = subprocess.run([sys.executable, "-m", "qnb", "cancel", long_id[:8]], env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"{long_id[:8]}  cancelled" in done.stdout


def test_a_server_job_without_a_targets_file_says_what_to_configure(manager, tmp_path, monkeypatch):
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "none.toml"))
    from qnb._records import ItemRecord, JobRecord

    stored = JobRecord(id="f" * 32, name="remote", target="lab", user="me", shots=10,
                       items=[ItemRecord("c")], time_added=time.time(), remote_id="abc")  # fmt: skip
    manager.store.insert_job(stored, ["{}"], {})
    with pytest.raises(qnb.JobStateError, match=r"\[targets\.lab\].*none\.toml") as caught:
        qnb.get_job(stored.id).cancel()
    assert "(None)" not in str(caught.value)


def test_a_job_says_where_it_was_submitted_from(tmp_path):
    script = tmp_path / "my_experiment.py"
    script.write_text("import cirq, qnb\nq = cirq.LineQubit(0)\n"
                      "qnb.run(cirq.Circuit(cirq.X(q), cirq.measure(q, key='m')), shots=3)\n")
    env = {**os.environ, "QNB_HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=120)
    env["JPY_SESSION_NAME"] = str(tmp_path / "analysis.ipynb")  # as Jupyter tells a kernel
    subprocess.run([sys.executable, str(script)], env=env, check=True, timeout=120)
    from qnb._core import _ownership

    store = _ownership.open_for_reading(tmp_path / "home")
    assert sorted(rec.origin for rec in store.find_jobs()) == [
        str(tmp_path / "analysis.ipynb"), "my_experiment.py"]


def test_resubmit_a_job_another_process_ran(owner):
    here, (long_id, first, *_) = owner
    here.remove_queued("emulator", job_id=first)  # ends cancelled in its owner's process
    again = qnb.get_job(first).resubmit()  # a new job, linked, run by this process
    assert again.parent_id == first
    assert sum(again.result(timeout=120).counts().values()) == 200
