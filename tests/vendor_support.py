"""What the vendor targets' tests share (IonQ, IBM, Braket, Azure: one ``VendorTarget``
shape, each tested against its stand-in): the stand-in served for a test, a maker of
targets against it, and the kill tests' pieces: a child process that submits a paid job
and is SIGKILLed, the job as the killed process left it in its store, and a fresh
manager on that store (a new kernel) that follows the job again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import qnb
from qnb import JobStatus, _manager
from conftest import new_process_manager, wait_until  # noqa: F401 (new_process_manager: for the vendor tests)


def served(standin, monkeypatch=None, env: Callable[[object], dict[str, str]] | None = None) -> Iterator:
    """A stand-in fixture's body (``yield from served(...)``): the stand-in started, the
    variables ``env(standin)`` names set for the test (what points the vendor's client at
    it), and stopped after."""
    standin.start()
    for variable, value in (env(standin) if env else {}).items():
        monkeypatch.setenv(variable, value)
    try:
        yield standin
    finally:
        standin.stop()


def target_maker(kind: str, prefix: str, defaults: Callable[..., dict]) -> Iterator[Callable]:
    """A ``targets`` fixture's body: ``register(*args, **options)`` registers a target of
    ``kind`` under a fresh name with ``defaults(*args)`` and the test's ``options`` over
    them; every target made is closed after the test."""
    made = []

    def register(*args, **options):
        target = qnb.register_target(f"{prefix}-{uuid.uuid4().hex[:6]}", kind, **{**defaults(*args), **options})
        made.append(target)
        return target

    try:
        yield register
    finally:
        for target in made:
            target.close()


def running_held_job(standin, target, circuit, *, what: str = "the job to run"):
    """A job the stand-in holds running (until ``standin.release()``), once qnb has seen it run."""
    standin.hold = True
    job = qnb.submit(circuit, target=target.name, shots=10)
    wait_until(lambda: job.status is JobStatus.RUNNING, what=what)
    return job


def failed_job(standin, target, circuits, reason: str):
    """A job whose vendor job (the next one the stand-in creates) fails with ``reason``,
    once it has ended, asserted FAILED."""
    standin.fail_next = reason
    job = qnb.submit(circuits, target=target.name, shots=10)
    wait_until(lambda: job.status.is_terminal, what="the job to end")
    assert job.status is JobStatus.FAILED
    return job


def check_slow_answers_never_fail_a_job(standin, target, circuit, *, vendor: str) -> None:
    """Every answer later than the call's deadline (the create's too; ``target`` has a
    short ``call_timeout``): the submit returns, the job waits and the target shows the
    vendor as away; once answers come in time the job completes, created once."""
    standin.hold = True
    standin.delay = 1.0
    job = qnb.submit(circuit, target=target.name, shots=10)  # returns: the job waits for the vendor
    wait_until(lambda: standin.created == 1, what="the slow create to land")
    wait_until(lambda: not target.connected, what=f"the target to see {vendor} as away")
    assert not job.status.is_terminal
    standin.delay = 0.0
    standin.release()
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert target.connected and standin.created == 1


def assert_nowhere_in(folder: Path, secret: str) -> None:
    """No file under ``folder`` (a store, its log) holds ``secret`` (a key)."""
    for path in folder.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


# -- kill tests: separate processes on one QNB_HOME ---------------------------------------------


def submitter_script(submit: str) -> str:
    """A child's script: ``submit`` (Python, dedented) registers the target and sets ``job``;
    the script then waits for the vendor's id to be stored, prints ``STORED <job id>
    <remote id>`` and stays busy, as a kernel would, until it is killed."""
    head = "import os, sys, threading\nimport cirq, qnb\nfrom qnb import _manager\n"
    tail = """
        manager = _manager.get_manager()
        # Resolves once the vendor's id is in the store (waiters wait for the write).
        manager.when(job.id, lambda rec: rec.remote_id is not None).result(60)
        print("STORED", job.id, manager.store.load_job(job.id).remote_id.replace(" ", ""), flush=True)
        threading.Event().wait(600)  # the kernel is busy when it is killed
    """
    return head + textwrap.dedent(submit) + textwrap.dedent(tail)


def start_child(script: str, home: Path, *args: str, **env: str) -> subprocess.Popen:
    """``python -c script args...`` on the store at ``home`` with no targets file, its
    output piped; ``env``: more variables."""
    env = {**os.environ, "QNB_HOME": str(home), "QNB_TARGETS": str(home.parent / "none.toml"), **env}
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)  # fmt: skip


def stored_line(child: subprocess.Popen) -> list[str]:
    """The child's ``STORED`` line, split: blocks until its job is stored (or it dies)."""
    line = child.stdout.readline()
    assert line.startswith("STORED"), (line, child.stderr.read() if child.poll() is not None else "")
    return line.split()


def kill(child: subprocess.Popen) -> int:
    """SIGKILL, at once: the child's return code."""
    child.send_signal(signal.SIGKILL)
    child.communicate(timeout=60)
    return child.returncode


def kill_once(child: subprocess.Popen, ready: Callable[[list[str]], object], *, what: str) -> list[str]:
    """Kills the child once its job is stored and ``ready(its STORED line)`` holds (the
    vendor runs the job), asserting it died of the SIGKILL: the line, split."""
    try:
        line = stored_line(child)
        wait_until(lambda: ready(line), what=what)
    finally:
        returncode = kill(child)
    assert returncode == -signal.SIGKILL
    return line


def only_job_in(home: Path):
    """The one job in the store at ``home``, as the killed process left it (read without
    a pool of workers)."""
    peek = _manager.JobManager(home, warm_pool=False)
    try:
        (stored,) = peek.find()
        return stored
    finally:
        peek.close()


def kill_while_creating(child: subprocess.Popen, standin, home: Path, *, created: int = 1, timeout: float = 30.0):
    """Kills the child once the stand-in has made ``created`` jobs whose answer it holds
    back (the test set ``standin.delay_after_create``), asserting it died of the SIGKILL,
    then lets the stand-in answer again: the job as the killed process left it, asserted
    in doubt (no vendor id, not done: not failed)."""
    try:
        wait_until(lambda: standin.created == created, timeout=timeout, what=f"{created} created at the vendor")
    finally:
        returncode = kill(child)
    assert returncode == -signal.SIGKILL
    standin.delay_after_create = 0.0
    stored = only_job_in(home)
    assert stored.remote_id is None and not stored.done  # in doubt, not failed
    return stored


def result_through(target, job_id: str, timeout: float = 60.0):
    """The job's result, followed by ``target`` (closed after)."""
    try:
        return qnb.get_job(job_id).result(timeout=timeout)
    finally:
        target.close()
