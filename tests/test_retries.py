"""Retries of transient failures (``qnb.submit(..., retries=N)``, issue 20): an item whose
run failed in a way a rerun may cure (a lost pool worker, a sampler past its deadline)
runs again, in a new round on the same target, and keeps the history of its failures;
a deterministic failure (the circuit's own error) never runs again; a job waiting to
retry shows it, can be cancelled, and ends only when no retry is left."""

from __future__ import annotations

import os
import signal
import threading

import cirq
import pytest
import qnb
from qnb import _lifecycle
from qnb._core import _runner
from qnb._device import DeviceSpec
from qnb._errors import InvalidTransitionError
from qnb._records import ItemRecord, JobRecord
from qnb._status import JobStatus
from qnb._targets import ItemOutcome, registry
from qnb._targets._base import QueueOwningTarget
from qnb._targets._pool import get_pool
from qnb._targets._sampler import SamplerTarget
from qnb._targets._simulators import SimulatorTarget
from qnb._views import item_view, server_job

from conftest import new_process_manager, wait_until

F, P, R, CO, CA = (JobStatus.FAILED, JobStatus.PENDING, JobStatus.RUNNING,
                   JobStatus.COMPLETED, JobStatus.CANCELLED)  # fmt: skip
Q2 = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q2[0]), cirq.CNOT(*Q2), cirq.measure(*Q2, key="m"))
ONES = cirq.Circuit(cirq.X.on_each(*Q2), cirq.measure(*Q2, key="m"))
BOOM = cirq.NamedQubit("boom")
FLAKY = cirq.Circuit(cirq.X(BOOM), cirq.measure(BOOM, key="m"))  # the one Scripted fails
LOST = "the simulation worker process died (killed, or out of memory)"


@pytest.fixture
def quick_backoff(monkeypatch):
    monkeypatch.setattr(_runner, "RETRY_FIRST_SECONDS", 0.05)


class Scripted:
    """An executor whose first ``fail`` runs of circuits on the qubit "boom" fail as a lost worker
    would (retryable), or as the circuit's own error would (``deterministic``); the
    others run in the pool."""

    def __init__(self, fail: int, *, deterministic: bool = False):
        self.fail, self.deterministic = fail, deterministic
        self.runs = 0

    async def run(self, engine, noise, circuit, shots, *, params=None):
        if BOOM in circuit.all_qubits():
            self.runs += 1
            if self.runs <= self.fail:
                if self.deterministic:
                    return False, "ValueError: this circuit is wrong", False
                return False, f"{LOST} (run {self.runs})", True
        return await get_pool().run(engine, noise, circuit, shots, params=params)


def scripted_target(name: str, executor: Scripted) -> SimulatorTarget:
    target = SimulatorTarget(name, engine="cirq", device=DeviceSpec(name, max_qubits=8), executor=executor)
    qnb.register_target(name, target)
    return target


# -- the named move ------------------------------------------------------------------------


def record(*statuses: JobStatus, retries: int = 2, status: JobStatus = R) -> JobRecord:
    items = [ItemRecord(str(i), s) for i, s in enumerate(statuses)]
    return JobRecord(id="r" * 32, name="j", target="sim", user="u", shots=1, items=items,
                     time_added=0.0, status=status, retries=retries)  # fmt: skip


def test_the_retry_move_is_named_and_refuses_anything_but_a_failed_item():
    assert _lifecycle.RETRY == {F: P}
    rec = record(R, R)
    _lifecycle.apply_report(
        rec, [F, CO], {0: ItemOutcome(F, error="lost", retryable=True), 1: ItemOutcome(CO, result="{}")},
        may_retry=True,
    )
    item = rec.items[0]
    assert (item.status, item.attempts, item.history, item.error) == (P, 1, ("lost",), None)
    assert rec.status is R  # started: it stays running while its item waits to run again
    assert _lifecycle.waiting_to_retry(rec) == [0]
    with pytest.raises(InvalidTransitionError):
        _lifecycle.retry(rec, 1)  # a completed item never runs again
    with pytest.raises(InvalidTransitionError):
        _lifecycle.retry(rec, 0)  # nor one that already waits to


def test_only_transient_failures_with_retries_left_run_again_and_never_under_a_cancel():
    rec = record(R, R, R, R, retries=1)
    rec.items[3].attempts = 1  # its one retry was spent
    _lifecycle.apply_report(rec, [F, F, F, F], {
        0: ItemOutcome(F, error="lost", retryable=True),
        1: ItemOutcome(F, error="ValueError: bad circuit", retryable=False),
        2: ItemOutcome(F, error="no word on it", retryable=None),
        3: ItemOutcome(F, error="lost again", retryable=True),
    }, may_retry=True)  # fmt: skip
    assert [it.status for it in rec.items] == [P, F, F, F]
    assert rec.status is R
    # Without may_retry (a target that retries itself, a process closing) nothing moves.
    held = record(R, retries=3)
    _lifecycle.apply_report(held, [F], {0: ItemOutcome(F, error="lost", retryable=True)})
    assert held.status is F and held.items[0].attempts == 0
    # A job being cancelled: its failed item stays failed.
    cancelling = record(R, R, retries=3)
    _lifecycle.request_cancel(cancelling)
    _lifecycle.apply_report(cancelling, [F, R], {0: ItemOutcome(F, error="lost", retryable=True)}, may_retry=True)
    assert cancelling.items[0].status is F


def test_the_item_view_says_attempts_and_retries_and_the_full_view_its_history():
    rec = record(P, CO, retries=3)
    rec.items[0].attempts, rec.items[0].history = 2, ("lost", "lost again")
    assert item_view(rec.items[1], retries=3) == {"label": "1", "status": "completed", "error": None}
    assert item_view(rec.items[0], retries=3) == {
        "label": "0", "status": "pending", "error": None, "attempts": 2, "retries": 3,
    }  # fmt: skip
    full = server_job(rec, items=True)["items"]
    assert full[0]["history"] == ["lost", "lost again"] and full[0]["retries"] == 3
    assert "attempts" not in full[1] and "history" not in full[1]


# -- through the runner, on real targets -------------------------------------------------------


@pytest.mark.slow  # a worker killed and replaced, the item run again: 3-12 s
def test_a_lost_pool_worker_is_run_again_and_the_job_completes(manager, quick_backoff):
    pool = get_pool()
    assert pool.wait_ready(120)
    wait_until(lambda: not busy(pool), timeout=60, what="the pool idle (earlier tests' items)")
    # A gate after a mid-circuit measurement: shot by shot (~1 ms a shot), a second or so.
    q = cirq.LineQubit.range(3)
    slow = cirq.Circuit(cirq.H.on_each(*q), cirq.measure(q[0], key="mid"), cirq.CNOT(q[0], q[1]),
                        cirq.measure(*q, key="m"))  # fmt: skip
    job = qnb.submit({"slow": slow, "bell": BELL}, target="cirq", shots=1000, retries=2)
    worker = wait_until(
        lambda: job.items[1].status is CO and busy(pool), timeout=30, what="a worker busy with the slow item"
    )
    os.kill(worker.process.pid, signal.SIGKILL)  # out of memory, say
    result = job.result(timeout=120)
    assert sum(result.counts("slow").values()) == 1000
    slow_item, bell_item = job.items
    assert slow_item.status is CO and slow_item.attempts >= 1
    assert slow_item.history[0].startswith(LOST)
    assert bell_item.attempts == 0 and bell_item.history == ()
    # Kept in the store: a new process on the same home reads them.
    attempts = slow_item.attempts
    manager.close()
    with new_process_manager(manager.home):
        again = qnb.get_job(job.id).items[0]
        assert (again.status, again.attempts, again.history[0].startswith(LOST)) == (CO, attempts, True)


def busy(pool):
    """A worker busy with an item, or None."""
    with pool._lock:
        return next((w for w in pool._workers if w.items), None)


def test_a_transient_failure_runs_again_on_the_same_target_and_completes(manager, quick_backoff):
    executor = Scripted(fail=2)
    scripted_target("flaky2", executor)
    job = qnb.submit({"a": BELL, "b": FLAKY}, target="flaky2", shots=50, retries=3)
    result = job.result(timeout=60)
    assert result.counts("b") == {"1": 50}
    item = job.items[1]
    assert item.attempts == 2 and executor.runs == 3
    assert item.history == (f"{LOST} (run 1)", f"{LOST} (run 2)")
    assert job.items[0].attempts == 0
    stored = manager.store.load_job(job.id).items[1]
    assert (stored.attempts, stored.history) == (2, item.history)


def test_a_deterministic_failure_is_not_run_again(manager, quick_backoff):
    executor = Scripted(fail=5, deterministic=True)
    scripted_target("wrong", executor)
    job = qnb.submit({"a": BELL, "b": FLAKY}, target="wrong", shots=20, retries=3)
    assert list(job.result(timeout=60).missing) == ["b"]  # partial results kept
    assert job.status is F and executor.runs == 1
    item = job.items[1]
    assert (item.status, item.attempts, item.history) == (F, 0, ())


def test_a_circuit_that_raises_in_the_simulator_is_not_run_again(manager, quick_backoff):
    q = cirq.LineQubit(0)
    # Controlled by a key nothing measures: the simulator raises, every time.
    bad = cirq.Circuit(cirq.X(q).with_classical_controls("k"), cirq.measure(q, key="m"))
    job = qnb.submit({"bad": bad}, target="cirq", shots=10, retries=2)
    with pytest.raises(qnb.JobFailedError):
        job.result(timeout=60)
    item = job.items[0]
    assert item.status is F and item.attempts == 0 and item.history == ()
    assert "Measurement key k missing" in item.error
    assert manager.load(job.id).items[0].retryable is False


def test_retries_exhausted_end_failed_with_every_failure_kept(manager, quick_backoff):
    executor = Scripted(fail=10)
    scripted_target("flaky10", executor)
    job = qnb.submit({"a": BELL, "b": FLAKY}, target="flaky10", shots=20, retries=2)
    assert list(job.result(timeout=60).missing) == ["b"]
    item = job.items[1]
    assert job.status is F and executor.runs == 3  # the first run and two retries
    assert item.attempts == 2
    # N + 1 failures: the N that were run again (history), the last one (its error).
    assert [*item.history, item.error] == [f"{LOST} (run {k})" for k in (1, 2, 3)]
    assert item_view(manager.load(job.id).items[1], retries=2)["attempts"] == 2
    # Resubmitted, it keeps retries=2 (and fails 3 times more here): a new job, whose
    # items start with no attempts.
    again = job.resubmit(only_failed=True)
    wait_until(again.done, timeout=60, what="the resubmitted job to end")
    assert manager.load(again.id).retries == 2 and executor.runs == 6


def test_waiting_to_retry_is_visible_and_a_cancel_then_ends_it_cancelled(manager, monkeypatch):
    monkeypatch.setattr(_runner, "RETRY_FIRST_SECONDS", 60.0)  # it waits until the cancel
    executor = Scripted(fail=1)
    scripted_target("waits", executor)
    job = qnb.submit({"a": BELL, "b": FLAKY}, target="waits", shots=20, retries=2)

    def waiting() -> dict | None:
        rec = manager.load(job.id)
        view = item_view(rec.items[1], retries=rec.retries)
        return view if view.get("attempts") == 1 and rec.items[0].status is CO else None

    view = wait_until(waiting, timeout=60, what="item b waiting to retry")
    assert view["status"] == "pending" and view["retries"] == 2  # faces: "retrying (1/2)"
    assert job.status is R and not job.done()
    # Stored while it waits (another process, the jobs panel, reads it there).
    manager.flush()
    assert manager.store.load_job(job.id).items[1].attempts == 1

    job.cancel()
    wait_until(lambda: job.status is CA, timeout=10, what="the job cancelled")
    assert executor.runs == 1  # never run again
    assert job.items[1].status is CA and job.items[1].history == (f"{LOST} (run 1)",)
    assert job.items[0].status is CO


def test_a_kernel_ending_while_an_item_waits_to_retry_keeps_its_attempts_and_history(manager, monkeypatch):
    monkeypatch.setattr(_runner, "RETRY_FIRST_SECONDS", 60.0)
    scripted_target("ends", Scripted(fail=1))
    job = qnb.submit({"a": BELL, "b": FLAKY}, target="ends", shots=20, retries=2)
    wait_until(lambda: [(it.status, it.attempts) for it in manager.load(job.id).items] == [(CO, 0), (P, 1)],
               timeout=60, what="a completed and b waiting to retry")  # fmt: skip
    manager.close()  # the kernel ends; nothing runs its jobs any more
    with pytest.warns(qnb.QnbWarning, match="interrupted"), new_process_manager(manager.home) as next_kernel:
        rec = next_kernel.load(job.id)
        item = rec.items[1]
        # Recovered as every interrupted job is (failed, retryable: resubmit runs it
        # again), with what it went through kept.
        assert rec.status is F and item.status is F and item.retryable is True
        assert (item.attempts, item.history) == (1, (f"{LOST} (run 1)",))
        assert rec.items[0].status is CO and rec.retries == 2


def test_a_sampler_past_its_deadline_is_asked_again(manager, quick_backoff):
    released = threading.Event()

    class SlowOnce(cirq.Sampler):
        calls = 0

        def run_sweep(self, program, params, repetitions=1):
            SlowOnce.calls += 1
            if SlowOnce.calls == 1:
                released.wait(30)  # past its deadline: the target says so (retryable)
            return cirq.Simulator().run_sweep(program, params, repetitions)

    target = SamplerTarget("slow-once", SlowOnce(), device=DeviceSpec("slow-once", max_qubits=4),
                           call_timeout=0.5)  # fmt: skip
    qnb.register_target("slow-once", target)
    try:
        job = qnb.submit(ONES, target="slow-once", shots=10, retries=1)
        assert job.result(timeout=60).counts() == {"11": 10}
        item = job.items[0]
        assert item.attempts == 1 and "no answer from the sampler" in item.history[0]
    finally:
        released.set()


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [-1, 2.5, "3", True, 11, None])
def test_bad_retries_are_refused_with_nothing_stored(manager, bad):
    with pytest.raises(qnb.InvalidOptionError, match="retries"):
        qnb.submit(BELL, target="sim", shots=10, retries=bad)
    assert manager.find(limit=10) == []


def test_a_target_that_cannot_run_items_again_refuses_retries_with_nothing_stored(manager):
    class Vendorish(QueueOwningTarget):
        name, device = "vendorish", DeviceSpec("vendorish", max_qubits=4)

        async def submit(self, job):
            raise AssertionError("never handed a job it cannot retry")

        poll = results = cancel = reattach = submit

        def handle_id(self, handle):
            return "x"

    registry.register("vendorish", Vendorish())
    with pytest.raises(qnb.InvalidOptionError, match="cannot run failed items again"):
        qnb.submit(BELL, target="vendorish", shots=10, retries=2)
    assert manager.find(limit=10) == []


# -- a queue server runs them again itself ------------------------------------------------------


def test_a_queue_server_runs_failed_items_again_and_the_kernel_sees_the_attempts(manager, quick_backoff, tmp_path):
    import httpx
    from qnb import _manager
    from qnb.server._app import create_app
    from qnb.server._auth import Users
    from test_eta_remote import Served
    from test_server_support import auth, make_users

    executor = Scripted(fail=1)
    scripted_target("served-flaky", executor)
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    server_manager = _manager.JobManager(tmp_path / "server", requeue_interrupted=True)
    app = create_app(server_manager, device="served-flaky", users=Users.from_file(users_file))
    served = Served(app)
    try:
        qnb.connect("retry-lab", served.url, token=tokens["alice"], retry_for=10)
        job = qnb.submit({"a": BELL, "b": FLAKY}, target="retry-lab", shots=30, retries=2)
        assert job.result(timeout=60).counts("b") == {"1": 30}
        assert executor.runs == 2  # run again on the server, by the server's manager
        item = job.items[1]
        assert (item.attempts, item.history) == (1, (f"{LOST} (run 1)",))
        assert server_manager.load(job.id).retries == 2
        with httpx.Client(base_url=served.url, headers=auth(tokens["alice"]), timeout=30) as http:
            view = http.get(f"/v1/jobs/{job.id}").json()["items"][1]
            assert (view["attempts"], view["retries"], view["history"]) == (1, 2, [f"{LOST} (run 1)"])
            refused = http.post("/v1/jobs", json={"circuits": {"c": cirq.to_json(BELL, indent=None)},
                                                  "shots": 10, "retries": 11})  # fmt: skip
            assert refused.status_code == 422 and "retries" in refused.text
    finally:
        app.state.close()
        served.stop()
        server_manager.close()


# A Dask worker's death the cluster gives up on, run again by qnb: tests/test_dask.py (on
# its cluster).
