"""The IBM target through the real qiskit-ibm-runtime client: its local testing mode on
fake backends (Aer noise), and the real client against a stand-in of IBM Quantum
Platform's HTTP APIs on 127.0.0.1 (tests/ibm_standin.py): submit, status, results,
usage, cancel, 401, 429, 5xx, slow answers, a failing job, credentials from each place,
bad input, and a kill test (a new process follows a killed one's job; one creation)."""

from __future__ import annotations

import subprocess

import cirq
import numpy as np
import pytest
import sympy

import qnb
from qnb import JobStatus, _manager
from qnb._targets import _ibm_convert as convert
from qnb.notebook._stream import connection_state
from conftest import wait_until
from ibm_standin import BACKEND, CRN, QUANTUM_SECONDS, IBMStandIn, client_env
from vendor_support import (assert_nowhere_in, kill_once, kill_while_creating, new_process_manager, only_job_in,
                            result_through, running_held_job, served, start_child, submitter_script,
                            target_maker)  # fmt: skip

pytestmark = pytest.mark.usefixtures("quick_vendor_backoff")

KEY = "ibm-standin-key-0123456789abcdef"
Q = cirq.LineQubit.range(3)
# Deterministic on an ideal device: key "ab" reads (1, 0), key "c d" reads 1.
FLIPS = cirq.Circuit(cirq.X(Q[0]), cirq.X(Q[2]), cirq.measure(Q[0], Q[1], key="ab"), cirq.measure(Q[2], key="c d"))
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(Q[0], Q[1], key="m"))
JOBS = "/api/v1/jobs"


@pytest.fixture(autouse=True)
def no_ambient_account(monkeypatch, tmp_path):
    from qiskit_ibm_runtime.accounts import management

    for variable in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE", "QISKIT_IBM_URL", "QISKIT_IBM_CHANNEL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(management, "_DEFAULT_ACCOUNT_CONFIG_JSON_FILE", str(tmp_path / "qiskit-ibm.json"))
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))


@pytest.fixture
def standin(monkeypatch):
    yield from served(IBMStandIn(KEY), monkeypatch, lambda stand: client_env(stand.url))


@pytest.fixture
def targets():
    """``targets(standin, **options)``: an IBM target against the stand-in."""
    yield from target_maker("ibm", "ibm", lambda standin: {
        "backend": BACKEND, "token": KEY, "instance": CRN, "api_url": f"{standin.url}/api/v1",
        "poll_seconds": 0.05, "call_timeout": 5.0})  # fmt: skip


def _ibm_id(job) -> str:
    return _manager.get_manager().load(job.id).remote_id


# -- conversion ----------------------------------------------------------------------------------


def test_keys_travel_as_registers_and_come_back_in_cirqs_bit_order():
    from qiskit.primitives import BackendSamplerV2
    from qiskit.providers.basic_provider import BasicSimulator

    circuit = cirq.Circuit(cirq.X(Q[1]), cirq.measure(Q[0], Q[1], Q[2], key="a b", invert_mask=(True,)),
                           cirq.measure(Q[1], key="m_x"))  # fmt: skip
    loaded = convert.to_qiskit("0", circuit)
    assert loaded.metadata[convert.KEYS_METADATA] == {"m0": "a b", "m_m_x": "m_x"}
    pub = BackendSamplerV2(backend=BasicSimulator()).run([loaded], shots=5).result()[0]
    pub.metadata["circuit_metadata"] = loaded.metadata  # as IBM's Sampler hands it back
    result = cirq.read_json(json_text=convert.to_cirq_json(pub, cirq.ParamResolver({"t": 1})))
    np.testing.assert_array_equal(result.measurements["a b"], [[1, 1, 0]] * 5)  # inverted q0, then q1
    np.testing.assert_array_equal(result.measurements["m_x"], [[1]] * 5)
    assert result.params == cirq.ParamResolver({"t": 1})


def test_the_road_through_openqasm_keeps_every_circuits_unitary():
    from qiskit.quantum_info import Operator

    for seed in range(20):
        circuit = cirq.testing.random_circuit(Q, n_moments=6, op_density=0.8, random_state=seed)
        loaded = convert.to_qiskit("0", circuit + cirq.measure(*Q, key="m"))
        # Qiskit numbers qubit 0 as the lowest bit, Cirq as the highest.
        ours = Operator(loaded.remove_final_measurements(inplace=False)).reverse_qargs().data
        assert cirq.allclose_up_to_global_phase(ours, cirq.unitary(circuit + cirq.I.on_each(*Q)),
                                                atol=1e-6), seed  # fmt: skip


@pytest.mark.parametrize(
    "circuit, words",
    [
        (cirq.Circuit(cirq.depolarize(0.1).on(Q[0]), cirq.measure(Q[0], key="k")), "depolarize"),
        (cirq.Circuit(cirq.measure(Q[0], key="k"), cirq.measure(Q[1], key="k")), "more than once"),
        (cirq.Circuit(cirq.H(Q[0])), "measures nothing"),
        (cirq.Circuit(cirq.measure(cirq.LineQid(0, 3), key="k")), "qubits"),
    ],
    ids=["noise", "key-twice", "no-measurement", "qutrit"],
)
def test_what_openqasm_2_cannot_say_is_refused_naming_it(circuit, words):
    with pytest.raises(qnb.DeviceValidationError, match=words):
        convert.check("0", circuit, 5, "ibm-x")


def test_a_sweeps_symbols_are_checked_at_a_placeholder_angle():
    convert.check("0", cirq.Circuit(cirq.rx(sympy.Symbol("t")).on(Q[0]), cirq.measure(Q[0], key="k")), 5, "x")
    with pytest.raises(qnb.DeviceValidationError, match="uses 3 qubits but target 'x' has 2"):
        convert.check("0", FLIPS, 2, "x")


def test_the_status_table_covers_the_clients_words():
    from qiskit_ibm_runtime.runtime_job_v2 import API_TO_JOB_STATUS

    from qnb._targets._ibm import IBMTarget

    assert set(API_TO_JOB_STATUS.values()) <= set(IBMTarget.STATUS)
    assert {IBMTarget.STATUS[w] for w in ("DONE", "ERROR", "CANCELLED")} == {
        JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED}  # fmt: skip


# -- the local testing mode: fake backends, no account -------------------------------------------


@pytest.mark.slow
def test_a_fake_backend_runs_keys_a_sweep_and_refuses_a_gate(manager):
    target = qnb.register_target("ibm-fake-manila", "ibm", backend="fake_manila", seed=3, poll_seconds=0.05)
    try:
        assert target.local and target.device.max_qubits == 5 and "sx" in target.device.native_gates
        result = qnb.submit(FLIPS, target=target.name, shots=400).result(timeout=120)["0"]
        assert result.histogram(key="ab").most_common(1)[0] == (0b10, pytest.approx(400, rel=0.15))
        assert result.histogram(key="c d").most_common(1)[0][0] == 1
        swept = cirq.Circuit(cirq.X(Q[0]) ** sympy.Symbol("t"), cirq.measure(Q[0], key="z"))
        job = qnb.submit(swept, target=target.name, shots=300, params=cirq.Points("t", [0, 1]))
        points = job.result(timeout=120).sweep()
        assert [r.params["t"] for r in points] == [0, 1]
        assert [r.histogram(key="z").most_common(1)[0][0] for r in points] == [0, 1]
        with pytest.raises(qnb.DeviceValidationError, match="depolarize"):
            qnb.submit(cirq.Circuit(cirq.depolarize(0.2).on(Q[0]), cirq.measure(Q[0], key="k")), target=target.name)
        q4 = cirq.LineQubit(4)  # not coupled to q0 on Manila
        far = cirq.Circuit(cirq.X(Q[0]), cirq.CNOT(Q[0], q4), cirq.measure(Q[0], q4, key="k"))
        compiled = qnb.submit(far, target=target.name, shots=200, compile=True).result(timeout=120)["0"]
        assert compiled.histogram(key="k").most_common(1)[0][0] == 0b11
    finally:
        target.close()


@pytest.mark.slow
def test_a_bell_pair_on_fake_brisbane_through_qnb_sampler(manager):
    target = qnb.register_target("ibm-fake", "ibm", backend="fake_brisbane", seed=5, poll_seconds=0.05)
    try:
        assert target.device.max_qubits == 127 and len(target.device.connectivity) == 144
        result = qnb.Sampler("ibm-fake", timeout=120).run(BELL, repetitions=1000)
        counts = result.histogram(key="m")
        assert (counts[0] + counts[3]) / 1000 > 0.85  # the device's noise, not an ideal 100%
        assert counts[1] + counts[2] > 0
    finally:
        target.close()


def test_a_fake_backend_instance_and_bad_names(manager, monkeypatch):
    import importlib.util

    from qiskit_ibm_runtime.fake_provider import FakeManilaV2

    target = qnb.register_target("ibm-instance", "ibm", backend=FakeManilaV2())
    try:
        assert target.local and target.device.max_qubits == 5
        assert "fake_manila in qiskit-ibm-runtime's local testing mode" in qnb.targets()["ibm-instance"].description
    finally:
        target.close()
    with pytest.raises(qnb.InvalidOptionError, match="no fake backend 'fake_nowhere'.*fake_brisbane"):
        qnb.register_target("bad", "ibm", backend="fake_nowhere")
    with pytest.raises(qnb.InvalidOptionError, match="needs backend="):
        qnb.register_target("bad", "ibm")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "qiskit_aer" else find_spec(n, *a))
    with pytest.raises(qnb.InvalidOptionError, match="Qiskit Aer, which is not installed: pip install qiskit-aer"):
        qnb.register_target("bad", "ibm", backend="fake_manila")
    assert "bad" not in qnb.targets()


# -- the real client against the stand-in ----------------------------------------------------------


def test_submit_status_results_and_usage(manager, standin, targets):
    target = targets(standin)
    assert not target.local and target.device.max_qubits == 5 and len(target.device.connectivity) == 4
    swept = cirq.Circuit(cirq.X(Q[0]) ** sympy.Symbol("t"), cirq.measure(Q[0], key="z"))
    job = qnb.submit({"flips": FLIPS, "s": swept}, target=target.name, shots=50, name="paid",
                     params=cirq.Points("t", [0, 1]))  # fmt: skip
    result = job.result(timeout=60)
    assert result["flips[0]"].histogram(key="ab") == {0b10: 50}
    assert result["flips[1]"].histogram(key="c d") == {1: 50}
    assert [r.histogram(key="z") for r in result.sweep("s")] == [{0: 50}, {1: 50}]
    assert standin.created == 1
    (created,) = standin.jobs.values()
    assert created.body["tags"] == [f"paid (qnb {job.id})"]  # how a creation in doubt is found
    assert target.usage(_ibm_id(job)) == {"quantum_seconds": QUANTUM_SECONDS}
    assert job.usage == {"quantum_seconds": QUANTUM_SECONDS}  # kept on the job, in the store
    assert job.status is JobStatus.COMPLETED


def test_qsubmit_sends_a_qasm_cell_and_a_cirq_cell(manager, standin, targets):
    from conftest import BELL_QASM, ipython_shell

    target = targets(standin)
    ip = ipython_shell()
    ip.run_cell_magic("qsubmit", f"--qasm --target {target.name} --shots 30 --wait", BELL_QASM)
    assert sum(ip.user_ns["_qjob"].result().counts().values()) == 30  # OpenQASM in, OpenQASM out
    cell = "import cirq\nq = cirq.LineQubit.range(2)\nflip = cirq.Circuit(cirq.X(q[1]), cirq.measure(*q, key='m'))\n"
    job = ip.run_cell_magic("qsubmit", f"--target {target.name} --shots 30", cell)
    assert job.result(timeout=60).counts("flip") == {"01": 30} and standin.created == 2


def test_a_failing_job_fails_with_ibms_reason(manager, standin, targets):
    target = targets(standin)
    standin.fail_next = "Qubit 3 is being recalibrated"
    job = qnb.submit(BELL, target=target.name, shots=10)
    with pytest.raises(qnb.JobFailedError, match="IBM Quantum status 'ERROR'.*recalibrated"):
        job.result(timeout=60)


def test_cancel_a_cancel_at_ibms_console_and_a_deletion(manager, standin, targets):
    target = targets(standin)
    job = running_held_job(standin, target, BELL, what="the job to run at IBM")
    job.cancel()
    wait_until(lambda: job.status is JobStatus.CANCELLED, what="the cancel to be confirmed")
    assert standin.requests[f"POST {JOBS}/{{id}}/cancel"] == 1
    other = qnb.submit(BELL, target=target.name, shots=10)
    wait_until(lambda: other.status is JobStatus.RUNNING, what="the second job to run")
    standin.cancel_at_console(_ibm_id(other))
    wait_until(lambda: other.status is JobStatus.CANCELLED, what="IBM's cancel to be seen")
    assert "Cancelled by the user" in (manager.load(other.id).items[0].error or "")
    gone = qnb.submit(BELL, target=target.name, shots=10)
    wait_until(lambda: gone.status is JobStatus.RUNNING, what="the third job to run")
    standin.jobs[_ibm_id(gone)].forced = "deleted"  # deleted at IBM: its reads answer 404
    wait_until(lambda: gone.status is JobStatus.CANCELLED, what="the deletion to be seen")
    assert "no longer knows this job" in (manager.load(gone.id).items[0].error or "")


@pytest.mark.parametrize("status", [429, 500, 503])
def test_a_post_refused_for_now_waits_and_is_created_once(manager, standin, targets, status):
    target = targets(standin)
    standin.inject(status, 2, method="POST", path=JOBS)
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.created == 1 and standin.requests[f"POST {JOBS}"] == 3


def test_a_post_that_created_the_job_but_answered_500_is_found_by_its_tag(manager, standin, targets):
    target = targets(standin)
    standin.inject(500, 1, method="POST", path=JOBS, after=True)
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.created == 1 and standin.requests[f"POST {JOBS}"] == 1  # the client did not retry it


def test_a_401_at_submit_or_a_refusal_stores_nothing(manager, standin, targets):
    target = targets(standin)
    standin.inject(401, 1, method="POST", path=JOBS)
    with pytest.raises(qnb.NotAuthenticatedError, match="refused the token"):
        qnb.submit(BELL, target=target.name, shots=10)
    standin.inject(400, 1, method="POST", path=JOBS)
    with pytest.raises(qnb.VendorRejectedError, match="400"):
        qnb.submit(BELL, target=target.name, shots=10)
    assert standin.created == 0 and qnb.jobs() == []


@pytest.mark.slow
def test_slow_or_failing_reads_show_reconnecting_and_never_fail_the_job(manager, standin, targets):
    target = targets(standin)
    target.call_timeout = 0.5  # after the set-up, which makes several calls
    job = running_held_job(standin, target, BELL, what="the job to run at IBM")
    standin.delay = 2.0  # every answer later than the call deadline
    wait_until(lambda: not target.connected, what="the target to see IBM as slow")
    assert connection_state(target.name, manager=manager) == "reconnecting"
    standin.delay = 0.0
    standin.inject(503, 3, method="GET", path=JOBS)
    standin.inject(200, 2, method="GET", path=JOBS, garbage=True)  # a proxy's page, not IBM's JSON
    standin.release()
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert target.connected and standin.created == 1


# -- credentials -----------------------------------------------------------------------------------


def test_a_missing_or_refused_credential_raises_at_register_naming_where(manager, standin, targets):
    with pytest.raises(qnb.NotAuthenticatedError, match=r"no account.*QISKIT_IBM_TOKEN.*save_account.*token_env"):
        qnb.register_target("nokey", "ibm", backend=BACKEND, api_url=f"{standin.url}/api/v1")
    with pytest.raises(qnb.NotAuthenticatedError, match=r"refused the account from token= for target") as raised:
        targets(standin, token="not-the-key")
    assert "not-the-key" not in str(raised.value)
    with pytest.raises(qnb.NotAuthenticatedError, match=r"\$IBM_KEY_UNSET, which is not set"):
        targets(standin, token=None, token_env="IBM_KEY_UNSET")
    with pytest.raises(qnb.NotAuthenticatedError, match="does not have access to the instance"):
        targets(standin, instance=CRN.replace("instance-standin", "someone-elses"))
    with pytest.raises(qnb.InvalidOptionError, match="no backend 'ibm_nowhere' in this account.*ibm_standin"):
        targets(standin, backend="ibm_nowhere")
    assert not {"nokey"} & set(qnb.targets()) and standin.created == 0


@pytest.mark.slow
def test_credentials_from_the_environment_a_saved_account_and_the_targets_file(manager, standin, tmp_path,
                                                                                monkeypatch):
    from qiskit_ibm_runtime import QiskitRuntimeService
    from qiskit_ibm_runtime.accounts import management

    api = f"{standin.url}/api/v1"
    monkeypatch.setenv("QISKIT_IBM_TOKEN", KEY)
    monkeypatch.setenv("QISKIT_IBM_INSTANCE", CRN)
    from_env = qnb.register_target("from-env", "ibm", backend=BACKEND, api_url=api)
    monkeypatch.delenv("QISKIT_IBM_TOKEN")
    saved_file = management._DEFAULT_ACCOUNT_CONFIG_JSON_FILE  # the test's own (see no_ambient_account)
    QiskitRuntimeService.save_account(token=KEY, instance=CRN, name="lab", filename=saved_file)
    saved = qnb.register_target("saved", "ibm", backend=BACKEND, account="lab", api_url=api)
    targets_file = tmp_path / "targets.toml"
    targets_file.write_text(f'[targets.filed]\nkind = "ibm"\nbackend = "{BACKEND}"\ntoken_env = "LAB_IBM_KEY"\n'
                            f'instance = "{CRN}"\napi_url = "{api}"\n')  # fmt: skip
    monkeypatch.setenv("QNB_TARGETS", str(targets_file))
    monkeypatch.setenv("LAB_IBM_KEY", KEY)
    filed = qnb.register_target("filed", "ibm")
    try:
        for name in ("from-env", "saved", "filed"):
            job = qnb.submit(BELL, target=name, shots=4)
            assert sum(job.result(timeout=60).counts().values()) == 4
        assert standin.created == 3
    finally:
        from_env.close(), saved.close(), filed.close()
    manager.flush()
    assert_nowhere_in(tmp_path / "home", KEY)


# -- the kill test ---------------------------------------------------------------------------------

SUBMITTER = submitter_script(
    """
    url, key, crn, call_timeout = sys.argv[1:5]
    qnb.register_target("eagle", "ibm", backend="ibm_standin", token=key, instance=crn,
                        api_url=url + "/api/v1", poll_seconds=0.05, call_timeout=float(call_timeout))
    q = cirq.LineQubit.range(2)
    flip = cirq.Circuit(cirq.X(q[1]), cirq.measure(*q, key="m"))
    job = qnb.submit({"flip": flip, "zero": cirq.Circuit(cirq.measure(q[0], key="z"))}, target="eagle",
                     shots=100, name="paid for")
    """
)


def _submitter(tmp_path, standin: IBMStandIn, call_timeout: float = 5.0) -> subprocess.Popen:
    return start_child(SUBMITTER, tmp_path / "home", standin.url, KEY, CRN, str(call_timeout))


def _follow_in_a_new_process(tmp_path, standin: IBMStandIn, job_id: str):
    """A fresh manager on the same home registers the target and follows the job: its result."""
    with new_process_manager(tmp_path / "home"):
        target = qnb.register_target("eagle", "ibm", backend=BACKEND, token=KEY, instance=CRN,
                                     api_url=f"{standin.url}/api/v1", poll_seconds=0.05)  # fmt: skip
        return result_through(target, job_id)


@pytest.mark.slow
def test_a_killed_kernels_ibm_job_is_followed_again_without_a_rerun(tmp_path, standin):
    standin.hold = True  # still running at IBM when its kernel dies
    child = _submitter(tmp_path, standin)
    _, job_id, _ = kill_once(child, lambda line: standin.status_of(line[2]) == "running", what="IBM to run it")
    assert only_job_in(tmp_path / "home").status in (JobStatus.QUEUED, JobStatus.RUNNING)  # not interrupted
    standin.release()
    result = _follow_in_a_new_process(tmp_path, standin, job_id)
    assert result.counts(label="flip") == {"01": 100} and result.counts(label="zero") == {"0": 100}
    assert standin.created == 1  # followed, not run again


@pytest.mark.slow
def test_killed_while_the_post_is_on_its_way_the_job_is_found_by_its_tag(tmp_path, standin):
    standin.delay_after_create = 60.0  # IBM has the job; its creator never hears so
    child = _submitter(tmp_path, standin, call_timeout=120.0)
    stored = kill_while_creating(child, standin, tmp_path / "home", timeout=60)  # asserted in doubt, not failed
    result = _follow_in_a_new_process(tmp_path, standin, stored.id)
    assert result.counts(label="flip") == {"01": 100}
    assert standin.created == 1 and standin.requests[f"POST {JOBS}"] == 1
