"""A paid IonQ job is created exactly once, whatever goes wrong around its creation, and
followed to its results: regression tests of the attack on the IonQ target (the real
cirq-ionq client against the faulty stand-in of tests/ionq_standin.py).

The attack found: 12 answers of 429 on the read cirq-ionq makes right after its POST made
3 IonQ jobs, six 503s made 2, 60 s of 500s made 7 (none followed); garbage JSON on that
read deleted the record of a job IonQ had; a process killed right after ``submit()``
returned left a job without its IonQ id, which the next process failed with a TypeError.
"""

from __future__ import annotations

import signal
import textwrap

import pytest

import qnb
from qnb import JobStatus
from conftest import wait_until
from ionq_standin import StandIn
from vendor_support import kill_while_creating, new_process_manager, result_through, start_child
from test_ionq import BELL, KEY, no_ambient_key, standin, targets  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("quick_vendor_backoff")

READ = "/jobs/"  # GET /jobs/{id}: the read after the POST (and every later read)


def _completes_once(standin: StandIn, job, shots: int = 10) -> None:
    assert sum(job.result(timeout=60).counts().values()) == shots
    assert standin.created == 1


# Each failed read is waited out before the next (cirq-ionq's own client: 0.1 s doubling,
# 2 s a call): 12 take ~6 s and 20 ~10 s, so slow (test_ionq.py's 429 test is quick). 20
# 500s outlast several of the client's calls, as the attack's 60 s of 500s did.
@pytest.mark.parametrize("status, count", [pytest.param(429, 12, marks=pytest.mark.slow), (503, 6),
                                           pytest.param(500, 20, marks=pytest.mark.slow)])
def test_failed_reads_after_the_post_never_create_a_second_job(manager, standin, targets, status, count):
    target = targets(standin)
    standin.inject(status, count, method="GET", path=READ)
    job = qnb.submit(BELL, target=target.name, shots=10)
    _completes_once(standin, job)


def test_garbage_on_the_read_after_the_post_is_read_again(manager, standin, targets):
    target = targets(standin)
    standin.inject(200, 3, method="GET", path=READ, garbage=True)
    job = qnb.submit(BELL, target=target.name, shots=10)
    _completes_once(standin, job)


@pytest.mark.parametrize("garbage", [False, True], ids=["500", "garbage"])
def test_a_post_that_created_the_job_but_answered_badly_is_found_by_name(manager, standin, targets, garbage):
    target = targets(standin)
    standin.inject(500, 1, method="POST", after=True, garbage=garbage)
    job = qnb.submit(BELL, target=target.name, shots=10, name="paid")
    _completes_once(standin, job)
    rec = manager.load(job.id)
    assert rec.status is JobStatus.COMPLETED and rec.remote_id.startswith(next(iter(standin.jobs)))


def test_a_post_refused_for_now_is_sent_again_once_ionq_has_no_such_job(manager, standin, targets):
    target = targets(standin)
    standin.inject(429, 3, method="POST")  # not created: looked for, then sent again
    job = qnb.submit(BELL, target=target.name, shots=10)
    _completes_once(standin, job)
    assert standin.requests["POST /v0.4/jobs"] == 4


def test_retries_are_taken_and_5xx_on_create_and_reads_never_fail_the_job(manager, standin, targets):
    """retries=N on a vendor target: the transient faults it is for are retried within
    the job (the job completes, created once); nothing is run twice."""
    target = targets(standin)
    standin.inject(503, 2, method="POST")
    standin.inject(502, 3, method="GET", path=READ)
    job = qnb.submit(BELL, target=target.name, shots=10, retries=2)
    _completes_once(standin, job)
    assert manager.load(job.id).retries == 2
    assert all(item.attempts == 0 for item in job.items)


def test_a_post_that_answers_after_its_deadline_is_never_sent_again(manager, standin, targets):
    target = targets(standin, call_timeout=0.3)
    standin.delay_after_create = 1.5  # created at once, answered late
    job = qnb.submit(BELL, target=target.name, shots=10)
    wait_until(lambda: standin.created == 1, what="the job created at IonQ")
    _completes_once(standin, job)
    assert standin.requests["POST /v0.4/jobs"] == 1


def test_a_refusal_is_no_creation_in_doubt(manager, standin, targets):
    target = targets(standin)
    standin.inject(400, 1, method="POST")
    with pytest.raises(qnb.VendorRejectedError, match="400"):
        qnb.submit(BELL, target=target.name, shots=10)
    assert standin.created == 0 and qnb.jobs() == []


# -- kills and exits: separate processes on one QNB_HOME ----------------------------------------

SUBMIT_THEN = textwrap.dedent(
    """
    import os, signal, sys, time
    import cirq, qnb
    url, key, then = sys.argv[1:4]
    qnb.register_target("qpu", "ionq", api_key=key, remote_host=url, poll_seconds=0.05,
                        call_timeout=float(os.environ.get("CALL_TIMEOUT", "5")))
    q = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
    started = time.monotonic()
    job = qnb.submit(bell, target="qpu", shots=100, name="paid for")
    print("SUBMITTED", job.id, round(time.monotonic() - started, 2), flush=True)
    if then == "kill":
        os.kill(os.getpid(), signal.SIGKILL)  # 0 ms after submit() returned
    # "exit": the script ends here, its job still at IonQ
    """
)


def _run_script(tmp_path, standin: StandIn, then: str, **env_extra):
    return start_child(SUBMIT_THEN, tmp_path / "home", standin.url, KEY, then, **env_extra)


def _follow_in_a_new_process(tmp_path, standin: StandIn, job_id: str) -> dict:
    """A fresh manager on the same home follows the job to its end: its counts."""
    with new_process_manager(tmp_path / "home"):
        target = qnb.register_target("qpu", "ionq", api_key=KEY, remote_host=standin.url, poll_seconds=0.05)
        return result_through(target, job_id).counts()


@pytest.mark.slow
def test_killed_right_after_submit_the_job_is_followed_not_failed(tmp_path, standin, monkeypatch):
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "none.toml"))
    child = _run_script(tmp_path, standin, "kill")
    out, err = child.communicate(timeout=120)
    assert child.returncode == -signal.SIGKILL, err
    job_id = out.split()[1]
    assert sum(_follow_in_a_new_process(tmp_path, standin, job_id).values()) == 100
    assert standin.created == 1


@pytest.mark.slow
def test_killed_while_the_post_is_on_its_way_the_job_is_found_by_name(tmp_path, standin, monkeypatch):
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "none.toml"))
    standin.delay_after_create = 60.0  # IonQ has the job; its creator never hears so
    child = _run_script(tmp_path, standin, "wait", CALL_TIMEOUT="120")
    stored = kill_while_creating(child, standin, tmp_path / "home")  # asserted in doubt, not failed
    assert sum(_follow_in_a_new_process(tmp_path, standin, stored.id).values()) == 100
    assert standin.created == 1


@pytest.mark.slow
def test_a_script_ends_while_ionq_never_answers_and_its_job_stays_followable(tmp_path, standin, monkeypatch):
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "none.toml"))
    standin.hold = True
    child = _run_script(tmp_path, standin, "exit", CALL_TIMEOUT="1")
    first = child.stdout.readline()  # the job is created: IonQ stops answering
    assert first.startswith("SUBMITTED"), child.stderr.read() if child.poll() is not None else first
    standin.delay = 3600.0  # accepts connections, never answers
    child.communicate(timeout=60)  # the attack: killed after 175 s, never ended
    assert child.returncode == 0
    standin.delay = 0.0
    job_id = first.split()[1]
    standin.release()
    assert sum(_follow_in_a_new_process(tmp_path, standin, job_id).values()) == 100
    assert standin.created == 1


def test_a_key_with_a_newline_is_named_as_such(manager, standin):
    with pytest.raises(qnb.NotAuthenticatedError, match="newline"):
        qnb.register_target("nl", "ionq", api_key=KEY + "\n", remote_host=standin.url)
    assert standin.requests["GET /v0.4/jobs"] == 0  # refused before any call
