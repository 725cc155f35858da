"""The queue service without HTTP: a real JobManager and SQLite file, called as plain
Python, as the routers call it. Also the server-side audit findings that need no
HTTP: inputs refused before parsing, limits, paging, resubmit rights."""

from __future__ import annotations

import json
import time

import cirq
import pytest

from conftest import BELL_QASM, wait_until
from qnb._errors import (
    DuplicateJobError,
    InvalidCircuitError,
    InvalidOptionError,
    JobStateError,
    LimitExceededError,
    RemoteAuthError,
    UnknownJobError,
)
from qnb._targets._pool import _stop_forkserver
from qnb.server._auth import User
from qnb.server._cpu import CpuWorker
from qnb.server._intake import Limits
from qnb.server._service import QueueService, Submission
from test_server_support import BELL_JSON, FLIP_JSON

ALICE, BOB, ROOT = User("alice"), User("bob"), User("root", "admin")


@pytest.fixture
def service(manager):
    svc = QueueService(manager, device="emulator")
    yield svc
    svc.close()


def limited(manager, **limits) -> QueueService:
    return QueueService(manager, device="emulator", limits=Limits(**limits))


def done(service: QueueService, job_id: str) -> dict:
    wait_until(lambda: service.view(ROOT, job_id)["status"] in ("completed", "failed", "cancelled"),
               what=f"job {job_id} to end")
    return service.view(ROOT, job_id)


def test_accept_view_results_and_circuits(service, manager):
    job = service.accept(ALICE, Submission({"a": BELL_JSON, "b": FLIP_JSON}, shots=20, name="pair"))
    assert job["user"] == "alice" and job["name"] == "pair" and len(job["items"]) == 2
    assert manager.store.load_job(job["id"]) is not None  # stored before accept returns
    finished = done(service, job["id"])
    assert finished["status"] == "completed"
    results = service.results(ALICE, job["id"])
    assert set(results["items"]) == {"0", "1"} and "more" not in results
    assert service.circuits(ALICE, job["id"])["circuits"] == {"a": BELL_JSON, "b": FLIP_JSON}
    assert [j["id"] for j in service.list_jobs(ALICE)["jobs"]] == [job["id"]]
    assert service.list_jobs(BOB)["jobs"] == []


def test_errors_are_qnb_errors_with_their_codes(service):
    job = service.accept(ALICE, Submission({"c": BELL_JSON}, shots=10))
    with pytest.raises(RemoteAuthError, match="only they or an admin"):
        service.view(BOB, job["id"])
    with pytest.raises(UnknownJobError):
        service.view(ALICE, "0" * 32)
    with pytest.raises(RemoteAuthError, match="admin"):
        service.accept(ALICE, Submission({"c": BELL_JSON}, position="start"))
    with pytest.raises(RemoteAuthError, match="admin"):
        service.move_to_front(ALICE, job["id"])
    with pytest.raises(JobStateError, match="still"):
        service.resubmit(ALICE, service.accept(ALICE, Submission({"c": BELL_JSON}, shots=50_000))["id"])
    # Booleans and names are checked, not coerced: "yes" is not true.
    with pytest.raises(InvalidOptionError, match="compile"):
        service.accept(ALICE, Submission({"c": BELL_JSON}, compile="yes"))
    with pytest.raises(InvalidOptionError, match="name"):
        service.accept(ALICE, Submission({"c": BELL_JSON}, name=object()))
    with pytest.raises(InvalidOptionError, match="name"):
        service.accept(ALICE, Submission({"c": BELL_JSON}, name="x" * 10_000_000))
    first = service.accept(ALICE, Submission({"c": BELL_JSON}), idempotency_key="k")
    assert service.accept(ALICE, Submission({"c": BELL_JSON}), idempotency_key="k")["id"] == first["id"]
    with pytest.raises(DuplicateJobError, match="different submission"):
        service.accept(ALICE, Submission({"c": BELL_JSON}, shots=7), idempotency_key="k")
    for rec in service.manager.find(limit=100):
        service.manager.cancel(rec.id)


def test_queue_operations(service):
    blocker = service.accept(ROOT, Submission({"c": FLIP_JSON}, shots=100_000, name="blocker"))
    wait_until(lambda: service.view(ROOT, blocker["id"])["status"] == "running", what="the blocker")
    a = service.accept(ALICE, Submission({"c": BELL_JSON}, name="a"))
    b = service.accept(BOB, Submission({"c": BELL_JSON}, name="b"))
    assert [e["name"] for e in service.queue(BOB)["entries"]] == ["a", "b"]
    assert service.move_to_front(ROOT, b["id"])["position"] == 1
    with pytest.raises(RemoteAuthError):
        service.remove_by_id(BOB, a["id"])
    assert service.remove_by_position(ALICE, 2, expected_id=a["id"])["status"] == "cancelled"
    assert service.remove_by_user(BOB, "bob")["removed"] == [b["id"]]
    assert service.cancel(ROOT, blocker["id"])["status"] in ("cancelling", "cancelled")


# -- audit (issue 10): refused before parsing, cheaply -------------------------------------


def sympy_pow_json() -> str:
    """683 bytes that took 32 s of CPU: an exponent of 10**(3*10**7)."""
    q = {"cirq_type": "LineQubit", "x": 0}
    gate = {"cirq_type": "XPowGate", "global_shift": 0.0, "exponent": {
        "cirq_type": "sympy.Pow", "args": [{"cirq_type": "sympy.Integer", "i": 10},
                                           {"cirq_type": "sympy.Integer", "i": 3 * 10**7}]}}
    op = {"cirq_type": "GateOperation", "gate": gate, "qubits": [q]}
    measure = json.loads(FLIP_JSON)["moments"][-1]
    return json.dumps({"cirq_type": "Circuit", "moments": [
        {"cirq_type": "Moment", "operations": [op]}, measure]})


def nested_repetitions_json(depth: int) -> str:
    """CircuitOperations nested ``depth`` deep, each repeated twice: 2**depth runs."""
    q = cirq.LineQubit(0)
    inner = cirq.FrozenCircuit(cirq.X(q))
    for _ in range(depth):
        inner = cirq.FrozenCircuit(cirq.CircuitOperation(inner, repetitions=2))
    return cirq.to_json(cirq.Circuit(cirq.CircuitOperation(inner), cirq.measure(q)), indent=None)


@pytest.mark.parametrize(
    ("text", "error", "words"),
    [
        (sympy_pow_json(), InvalidCircuitError, "symbolic value (sympy.Pow)"),
        (FLIP_JSON.replace('"exponent": 1.0', '"exponent": ' + "9" * 5000), InvalidCircuitError,
         "Cirq JSON"),
        (FLIP_JSON.replace('"exponent": 1.0', '"exponent": ' + "9" * 40), InvalidCircuitError,
         "above the server's limit"),
        (FLIP_JSON.replace('"exponent": 1.0', '"exponent": 1e400'), InvalidCircuitError,
         "holds the number inf"),
        (nested_repetitions_json(30), LimitExceededError, "repeats a sub-circuit"),
        ("OPENQASM 2.0;\n" + "x q[0];\n" * 2_000_000, LimitExceededError, "bytes"),
    ],
    ids=["sympy-pow", "5000-digit-exponent", "40-digit-exponent", "1e400", "nested-repetitions",
         "16-MB-qasm"],  # the texts themselves make ids of up to 16 MB
)
def test_dangerous_circuits_are_refused_before_parsing(service, text, error, words):
    start = time.monotonic()
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")) as caught:
        service.accept(ALICE, Submission({"c": text}, shots=10))
    assert time.monotonic() - start < 2.0
    assert caught.value.field == ("circuits", "c")
    assert service.manager.find(limit=10) == []


def test_too_many_labels_are_refused_before_any_is_parsed(service, monkeypatch):
    from qnb.server import _intake

    def parse(*args, **kwargs):
        raise AssertionError("parsed a refused batch")

    monkeypatch.setattr(_intake, "parse_one", parse)
    start = time.monotonic()
    with pytest.raises(InvalidOptionError, match="max_batch"):
        service.accept(ALICE, Submission({str(i): BELL_QASM for i in range(5000)}))
    assert time.monotonic() - start < 1.0


@pytest.mark.slow  # starts CPU worker processes
def test_a_request_past_its_cpu_deadline_is_refused_and_the_worker_replaced(manager):
    cpu = CpuWorker(processes=1)
    svc = QueueService(manager, device="emulator", limits=Limits(cpu_seconds=0.5), cpu=cpu)
    # Three circuits to compile are past what a request checks in its own thread: a
    # service on the same pool, without the tight limit, starts the one worker and has it
    # compile (its first compile loads Cirq's transformers), so the refusal below is timed
    # from a warm worker, whatever the load on the machine.
    unhurried = QueueService(manager, device="emulator", limits=Limits(cpu_seconds=120), cpu=cpu)
    warm_up = {str(i): BELL_QASM for i in range(3)}
    try:
        first = unhurried.accept(ALICE, Submission(warm_up, shots=10, compile=True))
        killed = cpu.pids()
        assert killed, "the warm-up did not reach the worker pool"
        batch = {str(i): BELL_QASM for i in range(300)}
        start = time.monotonic()
        with pytest.raises(LimitExceededError, match="more than 0.5 s"):
            svc.accept(ALICE, Submission(batch, shots=10, compile=True))
        assert time.monotonic() - start < 10
        assert [rec.id for rec in manager.find(limit=10)] == [first["id"]]  # nothing of the batch
        again = unhurried.accept(ALICE, Submission(warm_up, shots=10, compile=True))
        assert again["total"] == 3 and cpu.pids() and cpu.pids() != killed  # a new worker took over
        # Workers are forked from the simulation pool's forkserver, but do not hang on it
        # (the pool stops it at exit, a test's pool when it shuts down).
        survivors = cpu.pids()
        _stop_forkserver()
        third = unhurried.accept(ALICE, Submission(warm_up, shots=10, compile=True))
        assert third["total"] == 3 and cpu.pids() == survivors
    finally:
        svc.close()
        unhurried.close()
        cpu.close()


def test_limits_per_job_and_per_user(manager):
    svc = limited(manager, qubit_shots_per_job=1000, queued_jobs_per_user=2)
    try:
        with pytest.raises(LimitExceededError, match="qubit-shots"):
            svc.accept(ALICE, Submission({"c": BELL_JSON}, shots=501))  # 2 qubits x 501
        blocker = svc.accept(ROOT, Submission({"c": FLIP_JSON}, shots=1000))
        wait_until(lambda: svc.view(ROOT, blocker["id"])["status"] == "running", what="the blocker")
        svc.accept(ALICE, Submission({"c": BELL_JSON}, shots=10))
        svc.accept(ALICE, Submission({"c": BELL_JSON}, shots=10))
        with pytest.raises(LimitExceededError, match="2 jobs waiting"):
            svc.accept(ALICE, Submission({"c": BELL_JSON}, shots=10))
        svc.accept(BOB, Submission({"c": BELL_JSON}, shots=10))  # bob has room
        svc.accept(ROOT, Submission({"c": BELL_JSON}, shots=10))  # admins are not counted
    finally:
        for rec in manager.find(limit=100):
            manager.cancel(rec.id)
        svc.close()


def test_results_are_paged(manager):
    svc = limited(manager, results_bytes=1)
    try:
        job = svc.accept(ALICE, Submission({"a": FLIP_JSON, "b": FLIP_JSON, "c": FLIP_JSON}, shots=5))
        done(svc, job["id"])
        first = svc.results(ALICE, job["id"])
        assert list(first["items"]) == ["0"] and first["more"] == [1, 2]
        rest = svc.results(ALICE, job["id"], items=first["more"])
        assert list(rest["items"]) == ["1"] and rest["more"] == [2]
    finally:
        svc.close()


def test_resubmit_takes_the_callers_own_rights(service, manager):
    target = manager.targets.get("emulator")
    flip = {"f": cirq.read_json(json_text=FLIP_JSON)}
    # As an admin's move to the front leaves it: alice's job at priority 50.
    raised = manager.submit(target, flip, shots=10, name="raised", user="alice", priority=50)
    done(service, raised.id)
    again = service.resubmit(ALICE, raised.id)
    assert again["priority"] == 0 and again["parent_id"] == raised.id
    done(service, again["id"])
    assert service.resubmit(ROOT, raised.id)["priority"] == 50


def test_sweep_points_are_kept_with_their_items(service, manager):
    point = cirq.to_json(cirq.ParamResolver({"theta": 0.5}), indent=None)
    job = service.accept(ALICE, Submission({"a[0]": BELL_JSON, "b": FLIP_JSON}, shots=5,
                                           params={"a[0]": point}))  # fmt: skip
    assert [it.get("params") for it in job["items"]] == [point, None]
    assert [it.params for it in manager.store.load_job(job["id"]).items] == [point, None]
    for params, words in [
        ({"zz": point}, "not circuits"),
        ({"b": '{"cirq_type": "ParamResolver", "param_dict": [["t", {"cirq_type": "sympy.Symbol", "name": "x"}]]}'},
         "plain numbers"),
        ({"b": "not json"}, "plain numbers"),
    ]:
        before = len(manager.find(limit=100))
        with pytest.raises(InvalidOptionError, match=words):
            service.accept(ALICE, Submission({"b": FLIP_JSON}, shots=5, params=params))
        assert len(manager.find(limit=100)) == before
