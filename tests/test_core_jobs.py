"""Jobs end to end on real targets: a real process pool and a real SQLite file."""

from __future__ import annotations

import asyncio
import threading
import time

import cirq
import numpy as np
import pytest

import qnb
from qnb import JobStatus
from qnb._device import DeviceSpec
from qnb._manager import JobManager
from qnb._targets._pool import get_pool
from qnb._targets._simulators import SimulatorTarget
from conftest import BELL_QASM, wait_until

Q = cirq.LineQubit.range(3)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(Q[0], Q[1], key="m"))
X_ALL = cirq.Circuit(cirq.X.on_each(*Q), cirq.measure(*Q, key="m"))
BOOM = cirq.NamedQubit("boom")


def long_emulator_job(**options) -> qnb.Job:
    """An emulator job that runs for ~10 s of device time unless cancelled."""
    return qnb.submit(BELL, target="emulator", compile=True, shots=20_000, **options)


class FlakyExecutor:
    """Runs circuits in the pool, except that those on a qubit named "boom" fail."""

    async def run(self, engine, noise, circuit, shots, *, params=None):
        if BOOM in circuit.all_qubits():
            return False, "RuntimeError: boom", None
        return await get_pool().run(engine, noise, circuit, shots, params=params)


def FlakyTarget(name: str) -> SimulatorTarget:
    """A simulator whose circuits on a qubit named "boom" fail, for partial results."""
    return SimulatorTarget(
        name, engine="cirq", device=DeviceSpec(name, max_qubits=8), executor=FlakyExecutor()
    )


def test_submit_returns_at_once_and_results_are_cirq_results(manager):
    job = qnb.submit(BELL, shots=400, name="bell")
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED)
    result = job.result(timeout=60)
    assert job.status is JobStatus.COMPLETED and job.done()
    assert isinstance(result["0"], cirq.Result)
    counts = result.counts()
    assert sum(counts.values()) == 400
    assert set(counts) <= {"00", "11"} and len(counts) == 2
    assert result["0"].histogram(key="m").keys() <= {0, 3}
    assert job.progress == (1, 1)
    assert job.time_added <= job.time_started <= job.time_finished
    assert job.position_in_queue() is None
    assert job.user == "tester" and job.name == "bell" and job.target == "sim"


def test_batches_keep_their_labels(manager):
    listed = qnb.run([BELL, X_ALL], shots=50, timeout=60)
    assert list(listed) == ["0", "1"]
    assert listed.counts("1") == {"111": 50}
    named = qnb.run({"bell": BELL, "ones": X_ALL, "qasm": BELL_QASM}, shots=50, timeout=60)
    assert list(named) == ["bell", "ones", "qasm"]
    assert named.counts("ones") == {"111": 50}
    # QASM measures into c[0], c[1]: big-endian over the keys in order, like Cirq.
    assert set(named.counts("qasm")) <= {"00", "11"}
    with pytest.raises(qnb.QnbError, match="name one"):
        named.counts()


@pytest.mark.parametrize("target", ["sim", "cirq", "density"])
def test_every_simulator_target_runs(manager, target):
    assert qnb.run(X_ALL, target=target, shots=20, timeout=60).counts() == {"111": 20}


def test_noisy_density_target(manager):
    qnb.register_target("noisy-density", "density", noise=0.2)
    counts = qnb.run(X_ALL, target="noisy-density", shots=500, timeout=60).counts()
    assert counts.get("111", 0) < 500 and len(counts) > 1


def test_the_async_jobs_pattern_keeps_working_while_jobs_run(manager):
    """Submit, compute something else on the main thread, then fetch."""
    job = qnb.submit(BELL, target="emulator", compile=True, shots=1000)
    seen_while_busy = set()
    deadline = time.monotonic() + 30
    total = 0.0
    while not job.done() and time.monotonic() < deadline:
        total += float(np.linalg.norm(np.random.default_rng(1).random((200, 200))))
        seen_while_busy.add(job.status)
    assert job.done(), "the job did not progress while the main thread computed"
    assert JobStatus.COMPLETED in seen_while_busy
    assert total > 0
    assert sum(job.result(timeout=1).counts().values()) == 1000


def test_await_job_in_async_code(manager):
    async def main():
        job = qnb.submit(BELL, shots=100)
        result = await job
        return job, result

    job, result = asyncio.run(main())
    assert job.status is JobStatus.COMPLETED
    assert sum(result.counts().values()) == 100


def test_result_timeout_raises_and_the_job_carries_on(manager):
    job = qnb.submit(BELL, target="emulator", compile=True, shots=2000)  # ~1 s
    with pytest.raises(TimeoutError, match="carries on"):
        job.result(timeout=0.05)
    assert not job.status.is_terminal
    assert sum(job.result(timeout=60).counts().values()) == 2000


def test_done_callbacks_fire_once_done(manager):
    fired = []
    event = threading.Event()
    job = qnb.submit(BELL, shots=10)
    job.add_done_callback(lambda j: (fired.append(j.status), event.set()))
    assert event.wait(60)
    assert fired == [JobStatus.COMPLETED]
    late = []
    job.add_done_callback(late.append)  # already done: called at once
    assert late == [job]


def test_cancel_a_queued_job_is_immediate_and_idempotent(manager):
    running = long_emulator_job()
    queued = qnb.submit(BELL, target="emulator", compile=True, shots=100)
    assert queued.status is JobStatus.QUEUED
    assert queued.cancel() is JobStatus.CANCELLED
    assert queued.cancel() is JobStatus.CANCELLED
    with pytest.raises(qnb.JobCancelledError, match="resubmit"):
        queued.result(timeout=5)
    running.cancel()


def test_cancel_a_running_job_goes_through_cancelling(manager):
    job = long_emulator_job()
    wait_until(lambda: job.status is JobStatus.RUNNING, what="job running")
    changes = []
    manager.add_listener(lambda rec: rec.id == job.id and changes.append(rec.status))
    first = job.cancel()
    assert first in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    wait_until(lambda: job.status is JobStatus.CANCELLED, timeout=10, what="cancelled")
    assert JobStatus.CANCELLING in changes and changes[-1] is JobStatus.CANCELLED
    assert job.cancel() is JobStatus.CANCELLED  # idempotent, no error
    assert job.time_finished - job.time_started < 5  # it did not run its 10 s


def test_cancel_a_finished_job_returns_its_state(manager):
    job = qnb.submit(BELL, shots=10)
    job.result(timeout=60)
    assert job.cancel() is JobStatus.COMPLETED
    assert job.status is JobStatus.COMPLETED


def test_failed_items_keep_partial_results_and_resubmit_only_failed(manager):
    qnb.register_target("flaky", FlakyTarget("flaky"))
    bad = cirq.Circuit(cirq.X(BOOM), cirq.measure(BOOM, key="b"))
    job = qnb.submit({"good": X_ALL, "bad": bad, "also-good": BELL}, target="flaky", shots=30)
    result = job.result(timeout=60)
    assert job.status is JobStatus.FAILED
    assert "1 of 3 items failed" in job.error and "boom" in job.error
    assert not result.complete and list(result.missing) == ["bad"]
    assert result.counts("good") == {"111": 30}
    with pytest.raises(KeyError, match="boom"):
        result["bad"]
    statuses = {it.label: it.status for it in job.items}
    assert statuses == {"good": "completed", "bad": "failed", "also-good": "completed"}
    assert job.items[0].result is not None and job.items[1].result is None

    retry = job.resubmit(only_failed=True)
    assert retry.parent_id == job.id
    assert [it.label for it in retry.items] == ["bad"]
    with pytest.raises(qnb.JobFailedError, match="boom"):
        retry.result(timeout=60)  # no completed item: a clear error
    again = job.resubmit()
    assert [it.label for it in again.items] == ["good", "bad", "also-good"]


def test_resubmit_all_of_a_completed_job(manager):
    job = qnb.submit({"a": X_ALL}, shots=5)
    job.result(timeout=60)
    with pytest.raises(qnb.QnbError, match="nothing to resubmit"):
        job.resubmit(only_failed=True)
    child = job.resubmit()
    assert child.result(timeout=60).counts("a") == {"111": 5}
    assert child.parent_id == job.id and child.id != job.id


def test_resubmit_refuses_a_running_job(manager):
    job = long_emulator_job()
    with pytest.raises(qnb.QnbError, match="still"):
        job.resubmit()
    job.cancel()


def test_jobs_and_get_job_read_the_store_from_a_new_manager(manager, tmp_path):
    job = qnb.submit({"ones": X_ALL}, shots=7, name="persisted")
    job.result(timeout=60)
    manager.close()
    fresh = JobManager(manager.home)
    try:
        from qnb import _manager

        _manager.set_manager(fresh)
        again = qnb.get_job(job.id)
        assert again.status is JobStatus.COMPLETED and again.name == "persisted"
        assert again.result(timeout=1).counts("ones") == {"111": 7}
        assert qnb.get_job(job.id[:10]) == again  # a unique prefix works
        listed = qnb.jobs(status="completed")
        assert [j.id for j in listed] == [job.id]
        assert qnb.jobs(status=["failed", "cancelled"]) == []
        assert qnb.jobs(user="somebody-else") == []
        assert len(qnb.jobs(target="sim", limit=5)) == 1
    finally:
        fresh.close()


def test_jobs_filters_validate_status(manager):
    with pytest.raises(qnb.InvalidOptionError, match="statuses: pending"):
        qnb.jobs(status="done")


def test_many_small_jobs_from_many_threads(manager):
    jobs: list[qnb.Job] = []
    lock = threading.Lock()

    def submit_some():
        for _ in range(25):
            job = qnb.submit(BELL, shots=20)
            with lock:
                jobs.append(job)

    threads = [threading.Thread(target=submit_some) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len({j.id for j in jobs}) == 100
    for job in jobs:
        assert sum(job.result(timeout=60).counts().values()) == 20
    assert len(qnb.jobs(limit=1000)) == 100


def test_targets_describe_their_devices():
    specs = qnb.targets()
    assert {"sim", "cirq", "density", "emulator"} <= set(specs)
    emulator = specs["emulator"]
    assert emulator.max_qubits == 6 and len(emulator.connectivity) == 5
    assert "CZ" in emulator.native_gates and emulator.max_batch == 300
    assert specs["sim"].connectivity is None and specs["sim"].max_qubits >= 20
    summary = emulator.summary()
    assert summary["qubits"][0] == "q(0)" and summary["max_shots"] == emulator.max_shots


def test_compile_maps_onto_the_emulator_and_keeps_the_distribution(manager):
    a, b, c = cirq.NamedQubit.range(3, prefix="n")
    ghz = cirq.Circuit(cirq.H(a), cirq.CNOT(a, c), cirq.CNOT(a, b), cirq.measure(a, b, c, key="m"))
    compiled = qnb.compile({"ghz": ghz}, "emulator")["ghz"]
    qnb.targets()  # the spec validates the compiled circuit without error:
    from qnb._targets._simulators import registry

    registry.get("emulator").check("ghz", compiled)
    counts = qnb.run({"ghz": ghz}, target="emulator", compile=True, shots=400, timeout=60).counts()
    assert counts.get("000", 0) + counts.get("111", 0) > 350  # noisy, but a GHZ state


def test_counts_are_big_endian_over_keys_in_order():
    from qnb._results import counts_of

    a, b, c = cirq.LineQubit.range(3)
    circuit = cirq.Circuit(
        cirq.Moment(cirq.X(a)),
        cirq.Moment(cirq.measure(a, key="first")),
        cirq.Moment(cirq.measure(b, c, key="second")),
    )
    result = cirq.Simulator().run(circuit, repetitions=5)
    assert list(result.data.columns) == ["first", "second"]  # Cirq's order: the circuit's
    assert counts_of(result) == {"100": 5}
    wide = cirq.LineQubit.range(70)  # wider than an int64: still exact
    many = cirq.Circuit(cirq.X(wide[0]), cirq.measure(*wide, key="w"))
    assert counts_of(cirq.Simulator().run(many, repetitions=2)) == {"1" + "0" * 69: 2}


def test_plots_are_histograms_in_bitstring_order(manager):
    import matplotlib

    matplotlib.use("Agg")
    qs = cirq.LineQubit.range(4)
    spread = cirq.Circuit(cirq.H.on_each(*qs), cirq.measure(*qs, key="m"))
    result = qnb.run({"spread": spread, "ones": X_ALL}, shots=2000, timeout=60)
    ax = result.plot("spread")
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == sorted(labels) and len(labels) == 16
    assert sum(p.get_height() for p in ax.patches) == 2000
    assert ax.get_xticklabels()[0].get_rotation() == 90  # many outcomes: readable labels
    top = result.plot("spread", top=3, probabilities=True)
    assert len(top.patches) == 3 and all(p.get_height() < 1 for p in top.patches)
    assert "top 3 of 16" in top.get_title()
    grid = result.plot()  # a batch: one histogram per label
    visible = [a for a in grid.flat if a.get_visible()]
    assert [a.get_title() for a in visible] == ["spread", "ones"]


def test_an_interrupt_of_the_kernel_does_not_kill_the_workers(manager):
    """Jupyter sends SIGINT to the kernel's whole process group on "interrupt"."""
    import os
    import signal

    pool = get_pool()
    assert pool.wait_ready(60)
    pids = set(pool.worker_pids())
    assert pids
    for pid in pids:
        os.kill(pid, signal.SIGINT)
    assert qnb.run(X_ALL, shots=10, timeout=60).counts() == {"111": 10}
    for pid in pids:
        os.kill(pid, 0)  # still alive: raises ProcessLookupError otherwise
