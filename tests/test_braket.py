"""The Braket target through the real amazon-braket-sdk / boto3 clients: Braket's
LocalSimulator (no account), and a stand-in of Braket's, S3's and STS's HTTP APIs on
127.0.0.1 (tests/braket_standin.py) that boto3 is pointed at by its own endpoint
variables (``AWS_ENDPOINT_URL_BRAKET`` / ``_S3`` / ``_STS``) with dummy credentials:
results with several keys, sweeps, refused gates, credentials, 401/403, 429, 5xx, slow
answers, a failing task, cancel, queue positions, and following tasks after a restart
or a SIGKILL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import cirq
import numpy as np
import pytest
import sympy

import qnb
from qnb import JobStatus, _manager
from qnb._targets import _braket, _braket_convert
from braket_standin import ACCESS_KEY, QPU, SV1, BraketStandIn
from conftest import wait_until
from vendor_support import (check_slow_answers_never_fail_a_job, failed_job, kill_once, kill_while_creating,
                            new_process_manager, result_through, running_held_job, served, start_child,
                            submitter_script, target_maker)  # fmt: skip

pytestmark = pytest.mark.usefixtures("quick_vendor_backoff")

Q = cirq.LineQubit.range(3)
# Several keys, a key measured against line order, an inverted bit: deterministic.
KEYS = cirq.Circuit(
    cirq.X(Q[0]), cirq.X(Q[2]),
    cirq.measure(Q[1], Q[0], key="ba"), cirq.measure(Q[2], key="c", invert_mask=(True,)),
)  # fmt: skip
KEYS_COUNTS = {"010": 20}  # ba = (q1=0, q0=1), c = not 1
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(Q[0], Q[1], key="m"))
NOISY = cirq.Circuit(cirq.amplitude_damp(0.1).on(Q[0]), cirq.measure(Q[0], key="m"))
THETA = sympy.Symbol("theta")
SWEPT = cirq.Circuit(cirq.X(Q[0]) ** THETA, cirq.measure(Q[0], key="m"))


@pytest.fixture(autouse=True)
def no_ambient_aws(monkeypatch, tmp_path):
    """No credentials, profile or endpoint of the machine's: only what a test sets."""
    for variable in [v for v in os.environ if v.startswith("AWS_") or v.startswith("AMZN_BRAKET")]:
        monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))


@pytest.fixture
def local_target(manager):
    return qnb.register_target("braket-local-tests", "braket", device="local")  # unregistered by manager


@pytest.fixture
def standin(monkeypatch):
    yield from served(BraketStandIn(), monkeypatch, BraketStandIn.env)


@pytest.fixture
def targets():
    """``targets(device=SV1, **options)``: a Braket target, boto3 pointed at the stand-in."""
    yield from target_maker("braket", "braket", lambda device=SV1: {
        "device": device, "s3_destination": "s3://qnb-results/tests", "poll_seconds": 0.05,
        "call_timeout": 5.0})  # fmt: skip


def task_arns(job) -> list[str]:
    rec = _manager.get_manager().record(job.id) or _manager.get_manager().load(job.id)
    stored = rec.remote_id
    return json.loads(stored) if stored.startswith("[") else [stored]


# -- translation -----------------------------------------------------------------------------


def test_every_translated_gate_is_exact_up_to_a_global_phase():
    a, b, c = cirq.LineQubit.range(3)
    operations = [
        cirq.H(a), cirq.X(a), cirq.Y(b), cirq.Z(c), cirq.S(a), cirq.S(a) ** -1, cirq.T(b), cirq.T(b) ** -1,
        cirq.X(a) ** 0.5, cirq.X(a) ** -0.5, cirq.X(b) ** 0.3, cirq.Y(c) ** 0.7, cirq.Z(a) ** 0.2,
        cirq.rx(0.4)(a), cirq.ry(1.1)(b), cirq.rz(-0.3)(c), cirq.H(b) ** 0.5,
        cirq.CNOT(a, b), cirq.CZ(b, c), cirq.CZ(a, c) ** 0.3, cirq.CNOT(c, a) ** 0.4, cirq.SWAP(a, b),
        cirq.SWAP(b, c) ** 0.5, cirq.ISWAP(a, b), cirq.ISWAP(b, c) ** 0.3, cirq.XX(a, b) ** 0.2,
        cirq.YY(b, c) ** 0.6, cirq.ZZ(a, c) ** 0.9, cirq.CCX(a, b, c), cirq.CSWAP(a, b, c),
        cirq.CCZ(a, b, c) ** 0.5, cirq.PhasedXZGate(x_exponent=0.3, z_exponent=0.1, axis_phase_exponent=0.7)(a),
        cirq.MatrixGate(cirq.unitary(cirq.H(a))).on(b), cirq.ControlledGate(cirq.Y).on(c, a),
        cirq.GlobalPhaseGate(1j).on(), cirq.I(b),
    ]  # fmt: skip
    supported = _braket.supported_operations(_braket.LocalSimulator().properties, "local")
    for op in operations:
        circuit = cirq.Circuit(cirq.I.on_each(a, b, c), op)
        program = _braket_convert.to_braket(circuit, supported=supported)
        assert "unitary" not in program.circuit.to_ir(ir_type=_braket_convert.IRType.OPENQASM).source, op
        cirq.testing.assert_allclose_up_to_global_phase(
            program.circuit.to_unitary(), cirq.unitary(circuit), atol=1e-8, err_msg=str(op)
        )


def test_a_gate_the_device_lacks_is_decomposed_or_refused_by_name():
    a, b = cirq.LineQubit.range(2)
    few = {"rx", "ry", "rz", "cz"}
    circuit = cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.Z(b) ** 0.3)
    program = _braket_convert.to_braket(circuit, supported=few)
    assert {i.operator.name for i in program.circuit.instructions} == {"Rx", "Ry", "Rz", "CZ"}
    cirq.testing.assert_allclose_up_to_global_phase(program.circuit.to_unitary(), cirq.unitary(circuit), atol=1e-8)
    with pytest.raises(qnb.DeviceValidationError, match=r"gate Y\*\*0\.5\(q\(0\)\) \(YPowGate\) cannot run on Braket: it takes cz, rx;"):
        _braket_convert.to_braket(cirq.Circuit(cirq.Y(a) ** 0.5), supported={"cz", "rx"})
    for bad, why in [
        (cirq.Circuit(cirq.measure(a, key="m"), cirq.X(a)), "measures only at the end"),
        (cirq.Circuit(cirq.measure(a, key="m"), cirq.measure(a, key="n")), "a second time"),
        (cirq.Circuit(cirq.MatrixGate(np.eye(3), qid_shape=(3,)).on(cirq.LineQid(0, 3))), "dimension 3"),
    ]:
        with pytest.raises(qnb.DeviceValidationError, match=why):
            _braket_convert.to_braket(bad, supported={"x"})


# -- Braket's LocalSimulator -----------------------------------------------------------------


def test_local_simulator_keeps_several_keys_in_cirqs_bit_order(manager, local_target):
    assert isinstance(local_target, _braket.BraketLocalTarget)
    job = qnb.submit({"keys": KEYS, "bell": BELL}, target=local_target.name, shots=20)
    result = job.result(timeout=120)
    assert result.counts(label="keys") == KEYS_COUNTS
    assert result.counts(label="keys", key="ba") == {"01": 20}
    assert result["keys"].measurements["c"].tolist() == [[0]] * 20
    assert set(result.counts(label="bell")) <= {"00", "11"}
    assert "LocalSimulator braket_sv" in qnb.targets()[local_target.name].description


def test_local_simulator_runs_a_sweep_and_the_density_matrix_backend(manager, local_target):
    job = qnb.submit(SWEPT, target=local_target.name, shots=30, params=cirq.Points("theta", [0.0, 1.0]))
    assert [r.histogram(key="m") for r in job.result(timeout=120).sweep()] == [{0: 30}, {1: 30}]
    dm = qnb.register_target("braket-dm-tests", "braket", device="local:braket_dm")
    assert qnb.submit(KEYS, target=dm.name, shots=20).result(timeout=120).counts() == KEYS_COUNTS


def test_local_simulator_refuses_what_braket_cannot_take_at_submit(manager, local_target):
    with pytest.raises(qnb.DeviceValidationError, match=r"circuit '0': gate amplitude_damp.*AmplitudeDampingChannel"):
        qnb.submit(NOISY, target=local_target.name, shots=10)
    midway = cirq.Circuit(cirq.measure(Q[0], key="m"), cirq.X(Q[0]), cirq.measure(Q[1], key="n"))
    with pytest.raises(qnb.DeviceValidationError, match="measures only at the end"):
        qnb.submit(midway, target=local_target.name, shots=10)
    assert qnb.jobs(target=local_target.name) == []
    with pytest.raises(qnb.InvalidOptionError, match="no local simulator 'braket_qsim'"):
        qnb.register_target("nope", "braket", device="local:braket_qsim")
    with pytest.raises(qnb.InvalidOptionError, match="does not run gate circuits"):
        qnb.register_target("ahs", "braket", device="local:braket_ahs")


def test_qnb_sampler_runs_on_the_local_simulator(manager, local_target):
    sampler = qnb.Sampler(target=local_target.name, timeout=120)
    results = sampler.run_sweep(SWEPT, cirq.Points("theta", [1.0, 0.0]), repetitions=10)
    assert [r.histogram(key="m") for r in results] == [{1: 10}, {0: 10}]


IN_A_KERNEL = textwrap.dedent(
    """
    import asyncio, sys, types
    fake = types.ModuleType("IPython")  # what braket asks to know it runs in Jupyter
    fake.get_ipython = lambda: types.SimpleNamespace(kernel=object())
    sys.modules["IPython"] = fake
    import qnb
    qnb.targets()
    print(sorted(m for m in sys.modules if m.startswith("braket")))
    qnb.register_target("here", "braket", device="local")
    import _asyncio  # the C tasks, which nest_asyncio swaps for pure-Python ones
    print(hasattr(asyncio, "_nest_patched"), asyncio.Task is _asyncio.Task)
    """
)


@pytest.mark.slow  # a process of its own
def test_the_kind_is_listed_without_importing_braket_and_leaves_asyncio_alone_in_a_kernel():
    """braket.tasks applies nest_asyncio to all of asyncio when imported in a Jupyter
    kernel; qnb's loop must stay asyncio's own."""
    out = subprocess.run([sys.executable, "-c", IN_A_KERNEL], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "False True"]


# -- against the stand-in of Braket's API ------------------------------------------------------


def test_submit_status_and_results_one_task_per_circuit(manager, standin, targets):
    target = targets()
    assert target.device.max_qubits == 34 and target.device.qubits is None  # SV1, from GetDevice
    assert "Amazon Braket SV1" in qnb.targets()[target.name].description
    seen = []
    job = qnb.submit({"keys": KEYS, "bell": BELL}, target=target.name, shots=20)
    wait_until(lambda: seen.append(job.status) or job.status.is_terminal, what="the job to end")
    result = job.result(timeout=30)
    assert result.counts(label="keys") == KEYS_COUNTS and set(result.counts(label="bell")) <= {"00", "11"}
    assert JobStatus.COMPLETED in seen and standin.created == 2
    arns = task_arns(job)
    assert len(arns) == 2 and all(standin.status_of(a) == "COMPLETED" for a in arns)
    assert {t.body["outputS3Bucket"] for t in standin.tasks.values()} == {"qnb-results"}
    assert all(t.body["outputS3KeyPrefix"] == "tests" for t in standin.tasks.values())
    assert all(t.body["tags"]["qnb-job"] == job.id for t in standin.tasks.values())


def test_a_qpus_device_comes_from_braket_and_compile_maps_onto_it(manager, standin, targets):
    qpu = targets(QPU, s3_destination=None)  # the SDK's default bucket: STS, then S3
    assert qpu.s3_folder == ("amazon-braket-us-east-1-123456789012", "tasks")
    assert qpu.device.qubits == tuple(cirq.LineQubit(k) for k in range(1, 7))
    assert len(qpu.device.connectivity) == 5 and qpu.device.native_gates == ("cz", "prx")
    far = cirq.Circuit(cirq.H(cirq.LineQubit(1)), cirq.CNOT(cirq.LineQubit(1), cirq.LineQubit(4)),
                       cirq.measure(cirq.LineQubit(1), cirq.LineQubit(4), key="m"))  # fmt: skip
    with pytest.raises(qnb.DeviceValidationError, match="not connected"):
        qnb.submit(far, target=qpu.name, shots=10)
    with pytest.raises(qnb.DeviceValidationError, match="AmplitudeDampingChannel"):
        qnb.submit(NOISY.transform_qubits(lambda q: cirq.LineQubit(q.x + 1)), target=qpu.name, shots=10)
    assert standin.created == 0 and qnb.jobs(target=qpu.name) == []
    job = qnb.submit(far, target=qpu.name, shots=20, compile=True)
    assert set(job.result(timeout=30).counts()) <= {"00", "11"}


def test_a_sweep_is_resolved_before_braket_sees_it_and_qnb_sampler_runs(manager, standin, targets):
    target = targets()
    job = qnb.submit(SWEPT, target=target.name, shots=10, params=cirq.Points("theta", [0.0, 1.0]))
    assert [r.histogram(key="m") for r in job.result(timeout=30).sweep()] == [{0: 10}, {1: 10}]
    sources = [json.loads(t.body["action"])["source"] for t in standin.tasks.values()]
    assert all("theta" not in s.split("\n", 2)[2] for s in sources)  # only in the layout comment
    results = qnb.Sampler(target=target.name, timeout=30).run(KEYS, repetitions=5)
    assert results.histogram(key="ba") == {1: 5}


def test_missing_or_refused_credentials_raise_at_register_naming_where_qnb_looked(manager, standin, targets, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(qnb.NotAuthenticatedError, match=r"no AWS credentials.*\$AWS_ACCESS_KEY_ID.*~/.aws/credentials"):
        targets()
    monkeypatch.setenv("AWS_PROFILE", "lab")
    with pytest.raises(qnb.NotAuthenticatedError, match="profile"):
        targets()
    monkeypatch.delenv("AWS_PROFILE")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONG")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(qnb.NotAuthenticatedError, match=r"refused the AWS credentials qnb found \(boto3: env\).*403") as caught:
        targets()
    assert "wrong" not in str(caught.value).replace("AKIAWRONG", "")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    for status in (401, 403):
        standin.inject(status, 1, path="/device/")
        with pytest.raises(qnb.NotAuthenticatedError, match=str(status)):
            targets()
    with pytest.raises(qnb.InvalidOptionError, match="3 to 63 characters"):
        targets(s3_destination="s3://b/prefix")
    assert not any(name.startswith("braket-") for name in qnb.targets())
    assert standin.created == 0

    # Credentials that stop working after registering: submit raises, nothing is stored.
    target = targets()
    standin.access_key = "AKIAROTATED"
    with pytest.raises(qnb.NotAuthenticatedError, match="403"):
        qnb.submit(BELL, target=target.name, shots=10)
    assert qnb.jobs(target=target.name) == [] and standin.created == 0


def test_qsubmit_sends_a_qasm_cell_and_a_cirq_cell(manager, standin, targets):
    from conftest import BELL_QASM, ipython_shell

    target = targets()
    ip = ipython_shell()
    ip.run_cell_magic("qsubmit", f"--qasm --target {target.name} --shots 30 --wait", BELL_QASM)
    assert set(ip.user_ns["_qjob"].result().counts()) <= {"00", "11"}
    cell = "import cirq\nq = cirq.LineQubit.range(2)\nflip = cirq.Circuit(cirq.X(q[1]), cirq.measure(*q, key='m'))\n"
    job = ip.run_cell_magic("qsubmit", f"--target {target.name} --shots 30", cell)
    assert job.result(timeout=60).counts("flip") == {"01": 30} and standin.created == 2


@pytest.mark.slow  # over 2 s (a process / backoffs waited out)
def test_429_and_5xx_are_waited_out_and_each_task_is_created_once(manager, standin, targets):
    target = targets()
    standin.inject(429, 2, method="POST", path="/quantum-task$")  # ThrottlingException: nothing created
    standin.inject(503, 4, method="GET", path="/quantum-task/")
    standin.inject(500, 2, service="s3")
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.created == 1
    assert standin.requests["braket POST /quantum-task"] == 3  # looked for before each new POST
    assert standin.requests["braket POST /quantum-tasks"] >= 2


def test_a_task_created_but_answered_badly_is_found_by_its_tags(manager, standin, targets):
    target = targets()
    standin.honour_client_token = False  # the tags alone must find it
    standin.inject(500, 1, method="POST", path="/quantum-task$", after=True)
    job = qnb.submit({"a": BELL, "b": KEYS}, target=target.name, shots=10, name="paid (v2) #1")
    assert job.result(timeout=60).counts(label="b") == {"010": 10}
    assert standin.created == 2 and standin.requests["braket POST /quantum-task"] == 2
    assert {t.body["tags"]["qnb-name"] for t in standin.tasks.values()} >= {f"paid _v2_ _1 _qnb {job.id}_ _1"}


@pytest.mark.slow  # over 2 s (a process / backoffs waited out)
def test_a_create_answered_late_is_never_sent_again(manager, standin, targets):
    target = targets(call_timeout=0.5)
    standin.delay_after_create = 1.5  # created at once, answered after the call's deadline
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.created == 1 and standin.requests["braket POST /quantum-task"] == 1


def test_a_search_that_lags_is_covered_by_the_client_token(manager, standin, targets):
    target = targets()
    standin.search_hides_newer_than = 3600.0  # the search does not show the new task yet
    standin.inject(500, 1, method="POST", path="/quantum-task$", after=True)
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.requests["braket POST /quantum-task"] == 2  # sent again, answered with the same task
    assert standin.created == 1


def test_a_refused_create_fails_the_submit_with_brakets_reason_and_leaves_nothing(manager, standin, targets):
    target = targets()
    standin.inject(400, 1, method="POST", path="/quantum-task$")  # ValidationException
    with pytest.raises(qnb.VendorRejectedError, match="400 ValidationException"):
        qnb.submit({"a": BELL, "b": KEYS}, target=target.name, shots=10)
    assert qnb.jobs(target=target.name) == []
    # The other circuit's task, made meanwhile, is not left to run (and be paid for) unfollowed.
    assert standin.created == 1
    (arn,) = standin.tasks
    wait_until(lambda: standin.status_of(arn) == "CANCELLED", what="the orphan task to be cancelled")


def test_slow_answers_never_fail_a_job(manager, standin, targets):
    check_slow_answers_never_fail_a_job(standin, targets(call_timeout=0.5), BELL, vendor="Braket")


def test_a_failing_task_fails_its_item_with_brakets_reason(manager, standin, targets):
    target = targets()
    # Both tasks are made at once: either fails.
    job = failed_job(standin, target, {"a": KEYS, "b": KEYS}, "QPU calibration drifted")
    (failed,) = [i for i, item in enumerate(job.items) if item.error]
    assert "Amazon Braket status 'FAILED': QPU calibration drifted" in job.items[failed].error
    kept = "ab"[1 - failed]
    assert job.result(timeout=5).counts(label=kept) == {"010": 10}  # the other item's results stay


def test_results_that_cannot_be_read_fail_the_item_naming_why(manager, standin, targets):
    target = targets()
    standin.inject(403, 1, service="s3")
    job = qnb.submit(BELL, target=target.name, shots=10)
    wait_until(lambda: job.items[0].error is not None, what="the results to be given up")
    assert "completed but its results cannot be read" in job.items[0].error and "403" in job.items[0].error
    wait_until(lambda: job.status.is_terminal, what="the job to end")
    assert job.items[0].status is JobStatus.FAILED and job.status is JobStatus.FAILED
    with pytest.raises(qnb.JobFailedError, match="cannot be read"):
        job.result(timeout=5)


def test_cancel_through_qnb(manager, standin, targets):
    target = targets()
    job = running_held_job(standin, target, BELL, what="the task to run")
    job.cancel()
    wait_until(lambda: job.status is JobStatus.CANCELLED, what="Braket to confirm the cancel")
    (arn,) = task_arns(job)
    assert standin.status_of(arn) == "CANCELLED"
    assert "Amazon Braket status 'CANCELLED'" in job.items[0].error
    assert job.cancel() is JobStatus.CANCELLED  # idempotent
    assert standin.requests["braket PUT /quantum-task/{arn}/cancel"] == 1


def test_queue_positions_are_brakets(manager, standin, targets):
    standin.queue_seconds = 3600.0
    target = targets()
    jobs = [qnb.submit(BELL, target=target.name, shots=10) for _ in range(3)]
    wait_until(lambda: [j.position_in_queue() for j in jobs] == [1, 2, 3], what="Braket's positions")
    assert [e.position for e in target.queue_backend().entries()] == [1, 2, 3]
    with pytest.raises(qnb.QueueError, match="Amazon Braket's queue cannot be reordered"):
        qnb.queue(target.name).move_to_front(jobs[2].id)
    jobs[0].cancel()
    wait_until(lambda: [j.position_in_queue() for j in jobs[1:]] == [1, 2], what="the queue to move")


@pytest.mark.slow  # over 2 s (a process / backoffs waited out)
def test_many_tasks_are_followed_through_one_search(manager, standin, targets):
    target = targets()
    standin.hold = True
    jobs = [qnb.submit(KEYS, target=target.name, shots=20) for _ in range(_braket.READ_EACH_UP_TO + 4)]
    wait_until(lambda: all(j.status is JobStatus.RUNNING for j in jobs), what="every task to run")
    reads = standin.requests["braket GET /quantum-task/{arn}"]
    standin.release()
    for job in jobs:
        assert job.result(timeout=60).counts() == KEYS_COUNTS
    assert standin.requests["braket POST /quantum-tasks"] >= 1
    assert standin.requests["braket GET /quantum-task/{arn}"] == reads  # completed tasks seen in searches


def test_a_job_is_followed_again_by_a_new_manager(tmp_path, standin, targets):
    """A kernel that ends leaves the tasks at Braket; a new one on the same store reads
    them by ARN, keys and sweep points included (they travel in the program)."""
    home = tmp_path / "home"
    first = _manager.JobManager(home)
    previous = _manager.set_manager(first)
    try:
        standin.hold = True
        target = targets()
        job = qnb.submit(SWEPT, target=target.name, shots=10, params=cirq.Points("theta", [0.0, 1.0]))
        wait_until(lambda: job.status is JobStatus.RUNNING, what="the tasks to run")
        first.close()
        second = _manager.JobManager(home)
        _manager.set_manager(second)
        standin.release()
        again = qnb.register_target(target.name, "braket", device=SV1, s3_destination="s3://qnb-results/tests",
                                    poll_seconds=0.05)  # fmt: skip
        try:
            sweep = qnb.get_job(job.id).result(timeout=30).sweep()
            assert [r.histogram(key="m") for r in sweep] == [{0: 10}, {1: 10}]
            assert [r.params.value_of("theta") for r in sweep] == [0.0, 1.0]
            assert standin.created == 2
        finally:
            again.close()
            second.close()
    finally:
        _manager.set_manager(previous)


SUBMITTER = submitter_script(
    """
    qnb.register_target("aws", "braket", device="%s", s3_destination="s3://qnb-results/kill", poll_seconds=0.05,
                        call_timeout=float(os.environ.get("CALL_TIMEOUT", "5")))
    q = cirq.LineQubit.range(3)
    keys = cirq.Circuit(cirq.X(q[0]), cirq.X(q[2]), cirq.measure(q[1], q[0], key="ba"), cirq.measure(q[2], key="c"))
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q[:2]), cirq.measure(*q[:2], key="m"))
    job = qnb.submit({"keys": keys, "bell": bell}, target="aws", shots=100, name="paid for")
    """
    % SV1
)


def _follow_in_a_new_process(home, standin: BraketStandIn, job_id: str) -> None:
    """A fresh manager on the same home follows the job to its end, with no new task."""
    with new_process_manager(home):
        (listed,) = qnb.jobs()
        assert listed.id == job_id and not listed.status.is_terminal  # not "interrupted"
        standin.release()
        target = qnb.register_target("aws", "braket", device=SV1, s3_destination="s3://qnb-results/kill",
                                     poll_seconds=0.05)  # fmt: skip
        result = result_through(target, job_id)
        assert result.counts(label="keys") == {"011": 100}
        assert set(result.counts(label="bell")) <= {"00", "11"}
        assert standin.created == 2 and standin.requests["braket POST /quantum-task"] == 2


@pytest.mark.slow
def test_killed_submitter_the_tasks_are_followed_by_a_new_process_and_created_once(tmp_path, standin):
    standin.hold = True  # still running at Braket when the kernel dies
    child = start_child(SUBMITTER, tmp_path / "home")
    _, job_id, _ = kill_once(child, lambda line: standin.created == 2, what="both tasks at Braket")
    _follow_in_a_new_process(tmp_path / "home", standin, job_id)


@pytest.mark.slow
def test_killed_while_the_creates_are_on_their_way_the_tasks_are_found_by_their_tags(tmp_path, standin):
    standin.delay_after_create = 60.0  # Braket has the tasks; their creator never hears so
    standin.honour_client_token = False  # found by the tags alone
    child = start_child(SUBMITTER, tmp_path / "home", CALL_TIMEOUT="120")
    # Both tasks created at Braket (the child starts first); the job asserted in doubt, not failed.
    stored = kill_while_creating(child, standin, tmp_path / "home", created=2, timeout=120)
    _follow_in_a_new_process(tmp_path / "home", standin, stored.id)


def test_cirq_results_keep_the_bit_order_of_each_key():
    layout = {"keys": {"b": [2, 0], "a": [1]}, "invert": {"b": [False, True], "a": [False]}}
    made = _braket_convert.to_cirq_result(layout, [0, 1, 2], np.array([[1, 0, 0], [0, 1, 1]]))
    assert made.measurements["b"].tolist() == [[0, 0], [1, 1]]
    assert made.measurements["a"].tolist() == [[0], [1]]
    # A task qnb did not send (no keys in its program): every measured qubit under "m".
    assert _braket_convert.layout_of("OPENQASM 3.0;\nqubit[2] q;", [1, 0]) == {"keys": {"m": [1, 0]}, "invert": {"m": [False, False]}}
