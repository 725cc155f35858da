"""Scripts that use qnb exit promptly and quietly, and leave no process behind.

Each script runs as its own session (``start_new_session``) with its output piped, so
every process it started (forkserver, workers, multiprocessing's resource tracker)
can be found by session id after it exits, wherever it was reparented.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import BELL_QASM, wait_until

pytestmark = pytest.mark.slow

SLOW_JOB = textwrap.dedent(
    """
    import cirq, qnb, qnb._manager
    q = cirq.LineQubit.range(3)
    # A mid-circuit measurement: shot by shot, ~10 minutes for a million shots.
    slow = cirq.Circuit(cirq.H.on_each(*q), cirq.measure(q[0], key="mid"),
                        cirq.CNOT(q[0], q[1]), cirq.measure(*q, key="m"))
    job = qnb.submit(slow, target="cirq", shots=1_000_000, name="slow one")
    running = qnb._manager.get_manager().when(job.id, lambda rec: rec.status.value == "running")
    running.result(60)
    print(job.id, job.status.value, flush=True)
    """
)


def session_processes(session: int) -> list[str]:
    """``pid command`` of every live process in ``session``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                text = stat.read()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == session:
            found.append(f"{entry} {text[text.index('(') + 1 : text.rindex(')')]}")
    return found


def run_script(code: str, home, *, timeout: float = 90) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "QNB_HOME": str(home)}
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        out, err = proc.communicate()
        raise AssertionError(f"the script did not exit within {timeout} s; stderr:\n{err}")
    took = time.monotonic() - started
    wait_until(
        lambda: not session_processes(proc.pid),
        timeout=15,
        what=f"the script's processes to end: {session_processes(proc.pid)}",
    )
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), took


def assert_quiet(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr
    for noise in ("Traceback", "Error", "leaked", "resource_tracker"):
        assert noise not in done.stderr, done.stderr


# Three moments of the pool's start (at once, during the forkserver's imports, about when
# its workers start); a loaded machine moves each, so a finer grid bought little for the
# interpreters it cost (five points before).
@pytest.mark.parametrize("seconds", [0.0, 0.5, 1.2])
def test_a_script_that_lists_jobs_and_sleeps_exits_quietly(tmp_path, seconds):
    """It used to hang in multiprocessing's exit handler, or print the forkserver's
    SemLock traceback, depending on how far the pool had started. (A script's pool starts
    with its first local job, a kernel's at once: this one warms it as a kernel does.)"""
    code = ("import qnb, time; from qnb._targets._pool import get_pool; "
            f"get_pool().start_warming(); qnb.jobs(); time.sleep({seconds})")  # fmt: skip
    done, _ = run_script(code, tmp_path)
    assert_quiet(done)
    assert done.stderr == ""


def test_a_script_that_only_reads_starts_no_simulation_workers(tmp_path):
    code = textwrap.dedent(f"""
        import json, threading, qnb
        qnb.jobs()
        print(json.dumps([t.name for t in threading.enumerate()]))
        job = qnb.submit({BELL_QASM!r}, shots=10)  # a local job starts them
        job.result(timeout=120)
        print(json.dumps([t.name for t in threading.enumerate()]))
        """)  # fmt: skip
    done, _ = run_script(code, tmp_path)
    assert_quiet(done)
    reading, running = (json.loads(line) for line in done.stdout.splitlines())
    assert "qnb-pool" not in reading and "qnb-job-manager" in reading
    assert "qnb-pool" in running


@pytest.mark.parametrize("seconds", [0.0, 1.0])  # exiting while the job runs, or after it
def test_a_script_that_submits_and_exits_says_which_job_is_left(tmp_path, seconds):
    code = (
        "import qnb, time\n"
        f"job = qnb.submit({BELL_QASM!r}, shots=10, name='quick')\n"
        "print(job.id, flush=True)\n"
        f"time.sleep({seconds})\n"
    )
    done, _ = run_script(code, tmp_path)
    assert_quiet(done)
    job_id = done.stdout.split()[0]
    # The Bell job may have finished in time; if not, one message names it.
    if done.stderr:
        assert done.stderr.count("qnb:") == 1
        assert job_id[:8] in done.stderr and "'quick'" in done.stderr
        assert "marked failed (interrupted)" in done.stderr
    status = stored_status(tmp_path, job_id)
    assert status in ("completed", "failed")
    assert (status == "failed") == bool(done.stderr)


def test_a_running_simulation_does_not_keep_the_script_alive(tmp_path):
    done, took = run_script(SLOW_JOB, tmp_path)
    assert_quiet(done)
    job_id, status = done.stdout.split()
    assert status == "running"
    assert took < 30, f"the script took {took:.1f} s to exit"
    assert f"{job_id[:8]} 'slow one'" in done.stderr
    assert stored_status(tmp_path, job_id) == "failed"


def stored_status(home, job_id: str) -> str:
    from qnb._store import Store

    store = Store(home / "qnb.sqlite3")
    try:
        return store.load_job(job_id).status.value
    finally:
        store.close()

