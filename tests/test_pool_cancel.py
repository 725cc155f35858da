"""Cancelling a running item stops its worker, and an item past its time limit fails:
either way the worker is replaced and other work runs at once."""

from __future__ import annotations

import asyncio
import multiprocessing.forkserver
import os
import pickle
import signal
import threading
import time

import cirq
import numpy as np
import pytest
import qnb
from qnb._targets._pool import SimulationPool, get_pool
from qnb._status import JobStatus

from conftest import BELL_QASM, wait_until

QUBITS = cirq.LineQubit.range(3)
# A mid-circuit measurement makes the simulator run shot by shot: ~0.5 ms a shot, so a
# million shots keep a worker busy for minutes, in little memory.
SLOW = cirq.Circuit(
    cirq.H.on_each(*QUBITS),
    cirq.measure(QUBITS[0], key="mid"),
    cirq.CNOT(QUBITS[0], QUBITS[1]),
    cirq.measure(*QUBITS, key="m"),
)
BELL = cirq.Circuit(
    cirq.H(QUBITS[0]), cirq.CNOT(QUBITS[0], QUBITS[1]), cirq.measure(*QUBITS[:2], key="m")
)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def busy_workers(pool: SimulationPool) -> int:
    with pool._lock:
        return sum(1 for w in pool._workers if w.items)


def test_cancel_kills_the_running_workers_and_the_next_job_runs_at_once(manager):
    pool = get_pool()
    assert pool.wait_ready(120)
    hog = qnb.submit([SLOW] * pool.workers, target="cirq", shots=1_000_000, user="hog")
    wait_until(lambda: busy_workers(pool) == pool.workers, timeout=30, what="every worker busy")
    before = pool.worker_pids()

    hog.cancel()
    started = time.monotonic()
    bell = qnb.submit(BELL_QASM, target="sim", shots=100, user="other")
    assert sum(bell.result(timeout=15).counts().values()) == 100
    took = time.monotonic() - started

    assert hog.status is JobStatus.CANCELLED
    assert took < 5, f"the next job waited {took:.1f} s for a worker"
    wait_until(lambda: not any(alive(pid) for pid in before), timeout=10, what="old workers to end")
    wait_until(lambda: len(pool.worker_pids()) == pool.workers, timeout=30, what="replacements")
    assert set(pool.worker_pids()).isdisjoint(before)


def test_an_item_past_its_time_limit_fails_and_its_worker_is_replaced():
    pool = get_pool()
    assert pool.wait_ready(120)
    before = set(pool.worker_pids())

    async def both():
        return await asyncio.gather(
            pool.run("cirq", 0.0, SLOW, 1_000_000, time_limit=0.5),
            pool.run("qsim", 0.0, BELL, 50),
        )

    (ok, error, _), (bell_ok, bell, engine) = asyncio.run(both())
    assert not ok and "time limit of 0.5 s" in error and "QNB_ITEM_TIME_LIMIT" in error
    assert bell_ok and '"m"' in bell and engine == "qsim"
    wait_until(lambda: len(pool.worker_pids()) == pool.workers, timeout=30, what="a replacement")
    assert set(pool.worker_pids()) != before


def test_the_time_limit_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("QNB_ITEM_TIME_LIMIT", "12.5")
    assert SimulationPool(1).time_limit == 12.5
    monkeypatch.setenv("QNB_ITEM_TIME_LIMIT", "not a number")
    assert SimulationPool(1).time_limit == 3600


def test_once_the_pool_shut_down_at_exit_no_start_brings_the_forkserver_back(monkeypatch):
    """A start that waited for the pool's shutdown (a server's circuit worker, a pool
    worker) forked again once it got its turn: the forkserver came back and its socket
    file landed in multiprocessing's temporary folder as the exit handler removed it
    ("OSError: Directory not empty" in qnb serve's log)."""
    from qnb._targets import _pool

    monkeypatch.setattr(_pool, "_stopping", False)  # this test's worker goes on after it
    stops = []
    monkeypatch.setattr(_pool, "_stop_forkserver", lambda: stops.append("stopped"))
    forkserver_before = multiprocessing.forkserver._forkserver._forkserver_pid
    SimulationPool(1).shutdown()
    assert stops == ["stopped"]
    with pytest.raises(RuntimeError, match="stopping"):
        _pool.start_forked(_pool._serve_in_worker, name="qnb-worker")
    assert multiprocessing.forkserver._forkserver._forkserver_pid == forkserver_before


def test_a_forked_worker_ignores_ctrl_c_from_its_first_instruction():
    """Jupyter's "interrupt" sends SIGINT to the kernel's whole process group: a worker
    caught before ``init_worker`` ran would die of KeyboardInterrupt."""
    from forked_probe import report_sigint
    from qnb._targets import _pool

    process, conn = _pool.start_forked(report_sigint, name="qnb-probe")
    try:
        assert conn.poll(60), "the forked process did not report"
        assert conn.recv() is True
    finally:
        conn.close()
        process.join(10)


@pytest.mark.parametrize(
    "sig, then_stopping, in_a_stop",
    [(signal.SIGTERM, True, True), (signal.SIGTERM, False, False), (signal.SIGKILL, False, False)],
)
def test_a_worker_dead_of_the_groups_stop_signal_waits_for_this_process_to_stop_too(
    monkeypatch, sig, then_stopping, in_a_stop
):
    """A group's SIGTERM reaches a worker and its server at once, but the server's handler
    runs a moment later on its main thread: the thread that sees the worker die must not
    replace it (or log its failed start) in that moment. A worker killed otherwise
    (SIGKILL: the OOM killer, a cancel) is news at once."""
    from forked_probe import wait_until_killed
    from qnb._targets import _pool

    monkeypatch.setattr(_pool, "_stopping", False)  # this test's worker goes on after it
    process, conn = _pool.start_forked(wait_until_killed, name="qnb-probe")
    try:
        assert conn.poll(60) and conn.recv() == "ready"
        os.kill(process.pid, sig)
        # The server's handler, running later than the worker's death is seen.
        handler = threading.Timer(0.2, _pool.stop_starting) if then_stopping else None
        if handler:
            handler.start()
        started = time.monotonic()
        assert _pool.died_in_a_stop(process) is in_a_stop
        took = time.monotonic() - started
        if handler:
            handler.join()
    finally:
        conn.close()
        process.join(10)
    assert process.exitcode == -sig
    if sig == signal.SIGKILL:  # not a stop signal: no waiting for one
        assert took < _pool.STOP_NEWS_SECONDS / 2, took


def test_the_default_worker_count_fits_memory(monkeypatch):
    from qnb._targets import _pool

    monkeypatch.delenv("QNB_WORKERS", raising=False)
    monkeypatch.setattr(_pool, "available_memory", lambda: 3 * _pool.MEMORY_PER_WORKER // 2)
    assert _pool.default_workers() == 1
    monkeypatch.setattr(_pool, "available_memory", lambda: 64 * _pool.MEMORY_PER_WORKER)
    assert _pool.default_workers() == len(os.sched_getaffinity(0))
    monkeypatch.setenv("QNB_WORKERS", "7")
    assert _pool.default_workers() == 7
    assert _pool.available_memory() > 0  # this machine's answer is readable


class _UnpicklableGate(cirq.Gate):
    """A gate holding a lambda: it cannot travel to a worker process."""

    def __init__(self):
        self.rule = lambda x: x

    def _num_qubits_(self):
        return 1

    def _unitary_(self):
        return cirq.unitary(cirq.X)


def test_an_item_that_cannot_be_pickled_fails_alone_and_the_rest_of_its_chunk_runs():
    # Items are pickled as they leave for a worker: a small batch travels as one chunk,
    # and the bad item must fail by itself, not take its chunk (or the pool) down.
    pool = get_pool()
    assert pool.wait_ready(120)
    bad = cirq.Circuit(_UnpicklableGate()(QUBITS[0]), cirq.measure(QUBITS[0], key="m"))

    async def together():
        return await asyncio.gather(
            pool.run("qsim", 0.0, BELL, 20),
            pool.run("qsim", 0.0, bad, 20),
            pool.run("qsim", 0.0, BELL, 20),
        )

    (first_ok, _, _), (bad_ok, error, engine), (last_ok, last, _) = asyncio.run(together())
    assert first_ok and last_ok and '"m"' in last
    assert not bad_ok and engine is False  # failed where it happened: not retryable
    assert "pickle" in error.lower() or "lambda" in error, error


@pytest.mark.slow  # a long item
def test_a_worker_busy_with_a_long_item_does_not_hold_up_the_others():
    # A send to a busy worker that its pipe cannot hold would wait, in the pool's one
    # thread, until that worker has finished its current item: the other workers'
    # outcomes and next chunks would wait with it (0 of 12 items ended here before).
    # So a busy worker is sent only what its pipe holds; the rest waits for a free one.
    pool = get_pool()
    assert pool.wait_ready(120)
    assert pool.workers >= 2, "this machine's pool has one worker: nothing to hold up"
    with pool._lock:  # pipes as small as some systems give (here they hold megabytes)
        for worker in pool._workers:
            worker.pipe_bytes = 20_000
    pair = cirq.LineQubit.range(2)
    rng = np.random.default_rng(7)  # distinct angles: the pickle cannot shrink them
    big = cirq.Circuit(
        [cirq.PhasedXZGate(x_exponent=x, z_exponent=z, axis_phase_exponent=a)(q)
         for x, z, a in rng.random((600, 3)) for q in pair],
        cirq.measure(*pair, key="m"),
    )  # fmt: skip
    assert len(pickle.dumps(big)) > 60_000  # more than such a pipe holds

    async def scenario():
        slow = [
            asyncio.ensure_future(pool.run("cirq", 0.0, SLOW, 1_000_000, time_limit=600))
            for _ in range(pool.workers - 1)
        ]
        await asyncio.to_thread(
            wait_until, lambda: busy_workers(pool) == len(slow), timeout=30, what="slow items running"
        )
        quick = [asyncio.ensure_future(pool.run("qsim", 0.0, big, 10)) for _ in range(12)]
        try:
            deadline = time.monotonic() + 60
            while not all(f.done() for f in quick) and time.monotonic() < deadline:
                await asyncio.wait(quick, timeout=deadline - time.monotonic(),
                                   return_when=asyncio.FIRST_COMPLETED)  # fmt: skip
            finished = [f.result() for f in quick if f.done()]
            still_slow = sum(not f.done() for f in slow)
        finally:
            for f in slow + quick:
                f.cancel()
            await asyncio.gather(*slow, *quick, return_exceptions=True)
        return finished, still_slow

    finished, still_slow = asyncio.run(scenario())
    assert still_slow == pool.workers - 1
    # None of them was sent to wait behind a slow item: the free worker ran them all.
    assert len(finished) == 12, f"only {len(finished)} of 12 items ended beside the slow ones"
    assert all(ok for ok, _, _ in finished)
    wait_until(lambda: len(pool.worker_pids()) == pool.workers, timeout=30, what="replacements")


def test_a_lost_worker_fails_its_item_as_retryable_where_it_happens(manager):
    import os
    import signal

    pool = get_pool()
    assert pool.wait_ready(120)
    wait_until(lambda: busy_workers(pool) == 0, timeout=60, what="the pool idle (earlier tests' items)")
    job = qnb.submit(SLOW, target="cirq", shots=1_000_000, name="lost")
    wait_until(lambda: busy_workers(pool) == 1, timeout=30, what="a worker busy with it")
    with pool._lock:
        (busy,) = [w for w in pool._workers if w.items]
    os.kill(busy.process.pid, signal.SIGKILL)  # out of memory, say
    wait_until(lambda: job.status is JobStatus.FAILED, timeout=60, what="its item failed")
    item = manager.load(job.id).items[0]
    assert item.retryable is True  # the pool said so where the worker was lost
    try:
        job.result(timeout=5)
    except qnb.JobFailedError as exc:
        assert "job.resubmit() runs it again" in str(exc)
    else:
        raise AssertionError("a job whose only item failed gave a result")
