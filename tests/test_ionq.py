"""The IonQ target through the real cirq-ionq client, against a stand-in of IonQ's API
(tests/ionq_standin.py) on a real uvicorn on 127.0.0.1: results, batches, the status
table, faults (401, 429, 503, slow answers, a failing job, a job cancelled at IonQ, a
server that disappears), refused gates, keys, and following jobs after a restart."""

from __future__ import annotations

import logging
import uuid

import cirq
import cirq_ionq
import pytest

import qnb
from qnb import JobStatus, _manager
from qnb._targets import _ionq
from conftest import wait_until
from ionq_standin import StandIn
from vendor_support import (assert_nowhere_in, check_slow_answers_never_fail_a_job, failed_job, running_held_job,
                            served, target_maker)  # fmt: skip

pytestmark = pytest.mark.usefixtures("quick_vendor_backoff")

KEY = "sk-standin-0123456789abcdef"
Q = cirq.LineQubit.range(3)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(Q[0], Q[1], key="m"))
FLIP = cirq.Circuit(cirq.X(Q[1]), cirq.measure(Q[0], Q[1], key="m"))


@pytest.fixture
def standin():
    yield from served(StandIn(KEY))


@pytest.fixture
def targets():
    """``targets(standin, **options)``: an IonQ target against the stand-in."""
    yield from target_maker("ionq", "ionq", lambda standin: {
        "api_key": KEY, "remote_host": standin.url, "poll_seconds": 0.05, "call_timeout": 5.0})  # fmt: skip


@pytest.fixture(autouse=True)
def no_ambient_key(monkeypatch, tmp_path):
    for variable in ("IONQ_API_KEY", "CIRQ_IONQ_API_KEY", "IONQ_REMOTE_HOST", "CIRQ_IONQ_REMOTE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))


def ionq_id(job) -> str:
    rec = _manager.get_manager().record(job.id) or _manager.get_manager().load(job.id)
    return rec.remote_id.partition("|")[0]


def test_the_status_table_covers_every_ionq_status_and_unknown_ones_wait():
    assert set(_ionq.VENDOR_STATUS) == set(cirq_ionq.Job.ALL_STATES)
    for status in cirq_ionq.Job.TERMINAL_STATES:
        assert _ionq.VENDOR_STATUS[status].is_terminal, status
    for status in cirq_ionq.Job.NON_TERMINAL_STATES:
        assert not _ionq.VENDOR_STATUS[status].is_terminal, status
    assert _ionq.parse_remote_id("abc|batch|qpu.aria-1", 2) == ("abc", True, "qpu.aria-1")
    assert _ionq.parse_remote_id("abc", 1) == ("abc", False, None)  # a bare IonQ id
    assert _ionq.parse_remote_id("abc", 3)[1] is True


def test_bell_and_a_batch_on_the_simulator_and_a_qpu(manager, standin, targets):
    sim = targets(standin, backend="simulator", seed=7)
    qpu = targets(standin, backend="qpu.aria-1")
    assert sim.device.max_qubits == 29 and qpu.device.max_qubits == 25  # from the calibration
    assert qpu.device.connectivity is None  # all-to-all
    assert "ionq" in qnb.targets()[qpu.name].description.lower()

    counts = qnb.submit(BELL, target=sim.name, shots=200).result(timeout=30).counts()
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 200

    batch = qnb.submit({"bell": BELL, "flip": FLIP}, target=qpu.name, shots=100)
    result = batch.result(timeout=30)
    assert result.counts(label="bell") == {"00": 50, "11": 50}  # a QPU's counts: p * shots
    assert result.counts(label="flip") == {"01": 100}
    assert batch.engines == {"ionq qpu.aria-1"}
    rec = manager.load(batch.id)
    assert rec.remote_id.endswith("|batch|qpu.aria-1")
    assert standin.created == 2


def test_sweeps_are_resolved_before_ionq_sees_them(manager, standin, targets):
    import sympy

    sim = targets(standin)
    theta = sympy.Symbol("theta")
    circuit = cirq.Circuit(cirq.X(Q[0]) ** theta, cirq.measure(Q[0], key="m"))
    job = qnb.submit(circuit, target=sim.name, shots=50, params=cirq.Points("theta", [0.0, 1.0]))
    result = job.result(timeout=30)
    assert [r.histogram(key="m") for r in result.sweep()] == [{0: 50}, {1: 50}]


def test_the_key_is_never_stored_nor_logged(manager, standin, targets, caplog):
    caplog.set_level(logging.DEBUG)
    target = targets(standin)
    job = qnb.submit({"a": BELL, "b": FLIP}, target=target.name, shots=10)
    job.result(timeout=30)
    manager.flush()
    assert_nowhere_in(manager.home, KEY)
    assert KEY not in caplog.text
    assert KEY not in repr(target) and KEY not in target.describe()


def test_a_wrong_or_missing_key_is_a_clear_error_and_nothing_is_stored(manager, standin, targets, monkeypatch):
    with pytest.raises(qnb.NotAuthenticatedError, match="refused the API key") as caught:
        targets(standin, api_key="sk-wrong-key")
    assert "sk-wrong-key" not in str(caught.value)
    with pytest.raises(qnb.NotAuthenticatedError, match="no API key"):
        qnb.register_target("nokey", "ionq", remote_host=standin.url)
    assert "nokey" not in qnb.targets()

    # The key stops working after registering: submit raises, and nothing stays.
    target = targets(standin)
    standin.api_key = "sk-rotated"
    with pytest.raises(qnb.NotAuthenticatedError):
        qnb.submit(BELL, target=target.name, shots=10)
    assert qnb.jobs(target=target.name) == []
    assert standin.created == 0

    # cirq-ionq's own variables work too.
    standin.api_key = KEY
    monkeypatch.setenv("IONQ_API_KEY", KEY)
    monkeypatch.setenv("IONQ_REMOTE_HOST", standin.url)
    env_target = qnb.register_target(f"env-{uuid.uuid4().hex[:6]}", "ionq", poll_seconds=0.05)
    try:
        assert qnb.submit(FLIP, target=env_target.name, shots=5).result(timeout=30).counts() == {"01": 5}
    finally:
        env_target.close()


def test_the_targets_file_gives_backend_host_and_key(manager, standin, monkeypatch, tmp_path):
    file = tmp_path / "targets.toml"
    file.write_text(
        f'[targets.filed]\nkind = "ionq"\nbackend = "qpu.aria-1"\nremote_host = "{standin.url}"\n'
        'api_key_env = "MY_IONQ_KEY"\npoll_seconds = 0.05\n'
    )
    monkeypatch.setenv("QNB_TARGETS", str(file))
    monkeypatch.setenv("MY_IONQ_KEY", KEY)
    target = qnb.register_target("filed", "ionq")
    try:
        assert target.backend == "qpu.aria-1" and target.host == standin.url
        assert qnb.submit(FLIP, target="filed", shots=10).result(timeout=30).counts() == {"01": 10}
    finally:
        target.close()


def test_refused_gates_are_named_at_submit_and_compile_fixes_them(manager, standin, targets):
    target = targets(standin)
    toffoli = cirq.Circuit(cirq.X(Q[0]), cirq.X(Q[1]), cirq.CCX(*Q), cirq.measure(*Q, key="m"))
    with pytest.raises(qnb.DeviceValidationError, match=r"refuses gate TOFFOLI.*compile=True"):
        qnb.submit(toffoli, target=target.name, shots=10)
    grid = cirq.Circuit(cirq.X(cirq.GridQubit(1, 1)), cirq.measure(cirq.GridQubit(1, 1), key="m"))
    with pytest.raises(qnb.DeviceValidationError, match="compile=True"):
        qnb.submit(grid, target=target.name, shots=10)
    assert standin.created == 0 and qnb.jobs(target=target.name) == []

    job = qnb.submit({"toffoli": toffoli, "grid": grid}, target=target.name, shots=20, compile=True)
    result = job.result(timeout=30)
    assert result.counts(label="toffoli") == {"111": 20}
    assert result.counts(label="grid") == {"1": 20}


def test_429_and_503_are_retried_and_the_job_is_created_once(manager, standin, targets):
    target = targets(standin)
    standin.inject(429, 2, method="POST")
    standin.inject(503, 4, method="GET")
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=30).counts().values()) == 10
    assert standin.created == 1


def test_slow_answers_never_fail_a_job(manager, standin, targets):
    check_slow_answers_never_fail_a_job(standin, targets(standin, call_timeout=0.5), BELL, vendor="IonQ")


def test_a_job_that_fails_at_ionq_shows_the_vendors_reason(manager, standin, targets):
    target = targets(standin)
    job = failed_job(standin, target, {"a": BELL, "b": FLIP}, "ion chain lost during run")
    errors = [item.error for item in job.items]
    assert all("IonQ status 'failed': ion chain lost during run" in e for e in errors), errors


def test_cancelled_at_ionq_while_running(manager, standin, targets):
    target = targets(standin)
    job = running_held_job(standin, target, BELL)
    standin.cancel_at_console(ionq_id(job))
    wait_until(lambda: job.status is JobStatus.CANCELLED, what="the cancel to be seen")
    assert "IonQ status 'canceled'" in job.items[0].error


def test_cancel_through_qnb_and_cancel_reads_the_state_first(manager, standin, targets):
    target = targets(standin)
    job = running_held_job(standin, target, BELL)
    job.cancel()
    wait_until(lambda: job.status is JobStatus.CANCELLED, what="the job to be cancelled")
    assert standin.status_of(ionq_id(job)) == "canceled"
    assert job.cancel() is JobStatus.CANCELLED  # idempotent

    # Finished at IonQ before qnb has read it: cancel reads first and keeps the results
    # (IonQ would mark a completed job canceled).
    slow = targets(standin, poll_seconds=3600)
    standin.hold = False
    done = qnb.submit(BELL, target=slow.name, shots=10)
    wait_until(lambda: standin.status_of(ionq_id(done)) == "completed", what="IonQ to finish")
    done.cancel()
    assert sum(done.result(timeout=30).counts().values()) == 10
    assert done.status is JobStatus.COMPLETED
    assert standin.status_of(ionq_id(done)) == "completed"
    assert standin.requests.get("PUT /v0.4/jobs/{id}/status/cancel") == 1  # only the first job's


def test_a_server_that_disappears_and_comes_back(manager, standin, targets):
    target = targets(standin, call_timeout=2.0)
    standin.hold = True
    job = qnb.submit({"a": BELL, "b": FLIP}, target=target.name, shots=10)
    wait_until(lambda: job.status is JobStatus.RUNNING, what="the job to run")
    standin.stop()
    wait_until(lambda: not target.connected, timeout=30, what="the target to notice")
    assert job.status is JobStatus.RUNNING  # not failed: it runs on at IonQ
    standin.start()  # the same port, the same jobs
    standin.release()
    result = job.result(timeout=60)
    assert result.counts(label="b") == {"01": 10}
    assert target.connected and standin.created == 1


def test_an_unknown_status_is_not_terminal(manager, standin, targets):
    target = targets(standin)
    job = running_held_job(standin, target, BELL)
    with standin.lock:
        standin.jobs[ionq_id(job)].forced = "calibrating"  # a status IonQ may add one day
    handle = manager.record(job.id).live.handle
    wait_until(lambda: handle.vendor_status == "calibrating", what="the new status to be read")
    assert job.status is JobStatus.RUNNING
    with standin.lock:
        standin.jobs[ionq_id(job)].forced = None
    standin.release()
    assert sum(job.result(timeout=30).counts().values()) == 10


def test_many_jobs_are_followed_through_the_listing(manager, standin, targets):
    target = targets(standin)
    jobs = [qnb.submit(FLIP, target=target.name, shots=5) for _ in range(_ionq.GET_EACH_UP_TO + 5)]
    for job in jobs:
        assert job.result(timeout=60).counts() == {"01": 5}
    assert standin.requests.get("GET /v0.4/jobs", 0) >= 1  # the listing, not a GET per job


def test_a_job_is_followed_again_by_a_new_manager(tmp_path, standin, targets):
    """A kernel that ends (here: its manager closes) leaves the job at IonQ; a new one
    on the same store follows it again once the target is registered. (The kill test,
    tests/test_ionq_kill.py, does this across a SIGKILL.)"""
    home = tmp_path / "home"
    first = _manager.JobManager(home)
    previous = _manager.set_manager(first)
    try:
        standin.hold = True
        target = targets(standin)
        job = qnb.submit({"a": BELL, "b": FLIP}, target=target.name, shots=10)
        wait_until(lambda: job.status is JobStatus.RUNNING, what="the job to run")
        first.close()
        second = _manager.JobManager(home)
        _manager.set_manager(second)
        assert [j.id for j in qnb.jobs()] == [job.id]
        standin.release()
        again = qnb.register_target(target.name, "ionq", api_key=KEY, remote_host=standin.url, poll_seconds=0.05)
        try:
            result = qnb.get_job(job.id).result(timeout=30)
            assert result.counts(label="b") == {"01": 10}  # a batch, read right by a fresh client
            assert standin.created == 1
        finally:
            again.close()
            second.close()
    finally:
        _manager.set_manager(previous)
