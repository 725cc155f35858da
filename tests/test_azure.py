"""The Azure Quantum target through the real azure-quantum client (its Workspace, Job and
blob storage), against a stand-in of a workspace and its storage (tests/azure_standin.py)
on a real uvicorn on 127.0.0.1: IonQ and Quantinuum formats, results with the user's keys
and Cirq's bit order, sweeps, qnb.Sampler, status, cancel, 401, 429, 5xx, slow answers, a
failing job, refused gates, creation exactly once, and a killed submitter's job followed
by a new process."""

from __future__ import annotations

import json
import logging
import subprocess
import textwrap

import cirq
import numpy as np
import pytest
import sympy
from azure.quantum._client.models import JobStatus as AzureStatus

import qnb
from qnb import JobStatus, _manager
from qnb._targets import _azure
from conftest import wait_until
from azure_standin import GROUP, LOCATION, SUBSCRIPTION, WORKSPACE, AzureStandIn
from vendor_support import (assert_nowhere_in, failed_job, kill_once, kill_while_creating, new_process_manager,
                            result_through, served, start_child, submitter_script, target_maker)  # fmt: skip

pytestmark = pytest.mark.usefixtures("quick_vendor_backoff")

KEY = "azure-standin-key-0123456789"
Q = cirq.LineQubit.range(4)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(Q[0], Q[1], key="m"))
#: Two keys, one of them no QASM name, and bits that differ: Cirq's bit order shows.
KEYS = cirq.Circuit(cirq.X.on_each(Q[1:]), cirq.measure(*Q[:3], key="abc"), cirq.measure(Q[3], key="x y"))
JOB_PATH = "/jobs/"


def connection_string(key: str = KEY) -> str:
    return (f"SubscriptionId={SUBSCRIPTION};ResourceGroupName={GROUP};WorkspaceName={WORKSPACE};ApiKey={key};"
            f"QuantumEndpoint=https://{LOCATION}.quantum.azure.com/;")  # fmt: skip


class Opaque(cirq.Gate):
    """A gate no provider takes: a unitary without a decomposition or QASM."""

    def _num_qubits_(self) -> int:
        return 3

    def _unitary_(self):
        return np.eye(8)


@pytest.fixture
def standin():
    yield from served(AzureStandIn(KEY))


@pytest.fixture(autouse=True)
def no_ambient_workspace(monkeypatch, tmp_path):
    for variable in ("AZURE_QUANTUM_CONNECTION_STRING", "AZURE_QUANTUM_WORKSPACE_NAME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "no-targets.toml"))


@pytest.fixture
def targets():
    """``targets(standin, backend="ionq.simulator", **options)``: an Azure target against the stand-in."""
    yield from target_maker("azure", "az", lambda standin, backend="ionq.simulator": {
        "backend": backend, "connection_string": connection_string(), "endpoint": standin.url + "/",
        "poll_seconds": 0.05, "call_timeout": 5.0})  # fmt: skip


def azure_ids(job) -> list[str]:
    remote_id = _manager.get_manager().load(job.id).remote_id
    return json.loads(remote_id) if remote_id.startswith("[") else [remote_id]


def test_the_status_table_covers_every_azure_status():
    words = {status.value for status in AzureStatus}
    waiting = {"CancellationRequested", "Cancelling"}  # keep the last state until "Cancelled"
    assert set(_azure.AzureTarget.STATUS) == words - waiting | {"Deleted"}
    for word in ("Succeeded", "Completed", "Failed", "Cancelled"):
        assert _azure.AzureTarget.STATUS[word].is_terminal
    assert set(_azure.UNFINISHED) == {w for w in words if w not in _azure.AzureTarget.STATUS
                                      or not _azure.AzureTarget.STATUS[w].is_terminal}  # fmt: skip


def test_ionq_simulator_and_qpu_with_several_keys(manager, standin, targets):
    sim = targets(standin, seed=7)
    qpu = targets(standin, backend="ionq.qpu.aria-1")
    assert sim.device.max_qubits == 29 and qpu.device.max_qubits == 25  # the workspace's numQubits
    assert targets(standin, backend="ionq.qpu.forte-1").device.max_qubits == 35  # not said: azure-quantum's
    assert "ionq.qpu.aria-1" in qnb.targets()[qpu.name].description

    counts = qnb.submit(BELL, target=sim.name, shots=200).result(timeout=30).counts()
    assert set(counts) <= {"00", "11"} and sum(counts.values()) == 200

    batch = qnb.submit({"bell": BELL, "keys": KEYS}, target=qpu.name, shots=100)
    result = batch.result(timeout=30)
    assert result.counts(label="bell") == {"00": 50, "11": 50}  # a QPU's counts: p * shots
    keys = result["keys"]
    assert keys.histogram(key="abc") == {0b011: 100} and keys.histogram(key="x y") == {1: 100}
    assert batch.engines == {"azure ionq.qpu.aria-1"}
    ids = azure_ids(batch)
    assert len(ids) == 2 and standin.created == 3  # one Azure job per circuit
    body = standin.jobs[ids[0]].body
    assert (body["inputDataFormat"], body["outputDataFormat"], body["providerId"]) == (
        "ionq.circuit.v1", "ionq.quantum-results.v1", "IonQ")
    assert body["name"].endswith(f"(qnb {batch.id}) #1") and body["inputParams"] == {"shots": 100}
    assert qpu.usage(manager.load(batch.id).remote_id) == {"cost_usd": pytest.approx(0.06)}
    assert batch.usage == {"cost_usd": pytest.approx(0.06)}  # kept on the job, in the store


def test_quantinuum_registers_come_back_in_cirqs_bit_order(manager, standin, targets):
    h2 = targets(standin, backend="quantinuum.sim.h2-1e")
    assert h2.device.max_qubits == 56
    job = qnb.submit({"keys": KEYS, "bell": BELL}, target=h2.name, shots=40)
    result = job.result(timeout=30)
    assert result["keys"].histogram(key="abc") == {0b011: 40}  # q1 and q2: 011 in Cirq's order (Quantinuum wrote "110")
    assert result["keys"].histogram(key="x y") == {1: 40}
    assert set(result.counts(label="bell")) <= {"00", "11"}
    body = standin.jobs[azure_ids(job)[0]].body
    assert body["inputDataFormat"] == "honeywell.openqasm.v1" and body["providerId"] == "quantinuum"
    assert json.loads(body["metadata"]["qnb_registers"]) == {"m_abc": "abc", "m0": "x y"}


@pytest.mark.parametrize("backend", ["ionq.simulator", "quantinuum.sim.h2-1e"])
def test_sweeps_are_resolved_before_azure_sees_them(manager, standin, targets, backend):
    target = targets(standin, backend=backend)
    theta = sympy.Symbol("theta")
    circuit = cirq.Circuit(cirq.X(Q[0]) ** theta, cirq.measure(Q[0], key="m"))
    job = qnb.submit(circuit, target=target.name, shots=30, params=cirq.Points("theta", [0.0, 1.0]))
    result = job.result(timeout=30)
    assert [r.histogram(key="m") for r in result.sweep()] == [{0: 30}, {1: 30}]
    assert standin.created == 2


def test_qnb_sampler_runs_a_sweep_on_azure(manager, standin, targets):
    target = targets(standin, backend="quantinuum.sim.h2-1e")
    theta = sympy.Symbol("t")
    circuit = cirq.Circuit(cirq.X(Q[1]) ** theta, cirq.measure(Q[1], key="q1"))
    results = qnb.Sampler(target=target.name, timeout=30).run_sweep(circuit, cirq.Points("t", [1.0, 0.0]), repetitions=20)
    assert [r.histogram(key="q1") for r in results] == [{1: 20}, {0: 20}]
    assert [r.params["t"] for r in results] == [1.0, 0.0]


@pytest.mark.parametrize("backend, bad", [
    ("ionq.simulator", Opaque().on(*Q[:3])),
    ("quantinuum.sim.h2-1e", cirq.depolarize(0.1).on(Q[0])),
])  # fmt: skip
def test_a_gate_the_provider_cannot_take_is_refused_at_submit(manager, standin, targets, backend, bad):
    target = targets(standin, backend=backend)
    circuit = cirq.Circuit(cirq.H(Q[0]), bad, cirq.measure(*Q, key="m"))
    with pytest.raises(qnb.DeviceValidationError, match=rf"gate .*\({type(bad.gate).__name__}\) cannot be taken"):
        qnb.submit(circuit, target=target.name, shots=10)
    assert qnb.jobs() == [] and standin.created == 0


def test_a_wrong_key_is_refused_at_register_and_nothing_is_stored(manager, standin, targets):
    with pytest.raises(qnb.NotAuthenticatedError, match="refused the credential"):
        targets(standin, connection_string=connection_string("not-the-key"))
    assert standin.seen_keys == {"not-the-key"} and qnb.jobs() == []


def test_missing_or_malformed_workspace_settings_say_where_qnb_looked(manager, standin, targets, monkeypatch):
    with pytest.raises(qnb.NotAuthenticatedError, match="AZURE_QUANTUM_CONNECTION_STRING"):
        qnb.register_target("nowhere", "azure", backend="ionq.simulator")
    with pytest.raises(qnb.NotAuthenticatedError, match=r"\$MY_AZURE, which is not set"):
        qnb.register_target("unset", "azure", backend="ionq.simulator", connection_string_env="MY_AZURE")
    with pytest.raises(qnb.InvalidOptionError, match="Access keys") as caught:
        targets(standin, connection_string=f"ApiKey={KEY};garbage")
    assert KEY not in str(caught.value)
    with pytest.raises(qnb.InvalidOptionError, match="it has: ionq.qpu.aria-1, ionq.qpu.forte-1, ionq.simulator, "):
        targets(standin, backend="ionq.qpu.nowhere-9")
    with pytest.raises(qnb.InvalidOptionError, match="IonQ or Quantinuum"):
        targets(standin, backend="rigetti.sim.qvm")
    monkeypatch.setenv("AZURE_QUANTUM_CONNECTION_STRING", connection_string())
    found = qnb.register_target("from-env", "azure", backend="ionq.simulator", endpoint=standin.url + "/")
    found.close()  # the vendor's own variable is enough
    assert standin.created == 0


def test_resource_id_with_an_api_key(manager, standin, targets):
    resource_id = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Quantum/"
                   f"Workspaces/{WORKSPACE}")  # fmt: skip
    target = targets(standin, connection_string=None, resource_id=resource_id, location="West US", api_key=KEY)
    assert qnb.submit(BELL, target=target.name, shots=10).result(timeout=30).counts().keys() <= {"00", "11"}


@pytest.mark.parametrize("status, count", [(429, 4), (503, 3), (500, 3)])
def test_failed_reads_never_fail_the_job_nor_create_twice(manager, standin, targets, status, count):
    target = targets(standin)
    standin.inject(status, count, method="GET", path=JOB_PATH)
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.created == 1


def test_an_output_blob_that_cannot_be_read_now_is_read_again(manager, standin, targets):
    target = targets(standin)
    standin.inject(503, 2, method="GET", path="rawOutputData")  # storage away for a moment
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.requests["GET /<blob>"] == 3 and standin.created == 1


@pytest.mark.parametrize("garbage", [False, True], ids=["500", "garbage"])
def test_a_put_that_created_the_job_but_answered_badly_is_found_by_its_id(manager, standin, targets, garbage):
    target = targets(standin)
    standin.inject(500, 1, method="PUT", path=JOB_PATH, after=True, garbage=garbage)
    job = qnb.submit(BELL, target=target.name, shots=10, name="paid")
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.created == 1 and azure_ids(job) == standin.job_ids()
    assert standin.requests["PUT /jobs/{id}"] == 1


def test_a_put_refused_for_now_is_sent_again_once_azure_has_no_such_job(manager, standin, targets):
    target = targets(standin)
    standin.inject(429, 2, method="PUT", path=JOB_PATH)
    job = qnb.submit(BELL, target=target.name, shots=10)
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.created == 1 and standin.requests["PUT /jobs/{id}"] == 3


def test_a_put_answered_after_its_deadline_is_never_sent_again(manager, standin, targets):
    target = targets(standin, call_timeout=0.5)
    standin.delay_after_create = 2.0  # created at once, answered late
    job = qnb.submit(BELL, target=target.name, shots=10)
    wait_until(lambda: standin.created == 1, what="the job created at Azure")
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert standin.created == 1 and standin.requests["PUT /jobs/{id}"] == 1


@pytest.mark.parametrize("status, error", [(400, qnb.VendorRejectedError), (401, qnb.NotAuthenticatedError)])
def test_a_refusal_fails_the_submit_and_stores_nothing(manager, standin, targets, status, error):
    target = targets(standin)
    standin.inject(status, 1, method="PUT", path=JOB_PATH)  # a 401: the key was revoked since
    with pytest.raises(error, match=f"{status}|credential"):
        qnb.submit(BELL, target=target.name, shots=10)
    assert standin.created == 0 and qnb.jobs() == []


def test_slow_answers_make_the_job_wait_not_fail(manager, standin, targets):
    target = targets(standin, call_timeout=0.5)
    standin.hold = True
    job = qnb.submit(BELL, target=target.name, shots=10)
    standin.delay = 3.0  # longer than every call's deadline
    wait_until(lambda: not target.connected, what="the target to notice Azure is slow")
    standin.release()
    assert job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
    standin.delay = 0.0
    assert sum(job.result(timeout=60).counts().values()) == 10
    assert target.connected


def test_a_failing_job_fails_with_azures_reason(manager, standin, targets):
    target = targets(standin)
    job = failed_job(standin, target, {"a": BELL, "b": BELL}, "the H2 emulator ran out of memory")
    failed = [item for item in job.items if item.error]
    assert len(failed) == 1, [item.error for item in job.items]  # one Azure job per circuit
    assert "Azure Quantum status 'Failed': InvalidInputData: the H2 emulator ran out" in failed[0].error
    result = job.result(timeout=5)  # the other circuit's results are kept
    (completed,) = {"a", "b"} - {failed[0].label}
    assert sum(result.counts(label=completed).values()) == 10 and list(result.missing) == [failed[0].label]


def test_cancel_and_a_cancel_at_the_portal(manager, standin, targets):
    target = targets(standin)
    standin.hold = True
    job = qnb.submit(BELL, target=target.name, shots=10)
    wait_until(lambda: standin.job_ids(), what="the job at Azure")
    job.cancel()
    wait_until(lambda: job.status is JobStatus.CANCELLED, what="the job to be cancelled")
    (azure_id,) = standin.job_ids()
    assert standin.status_of(azure_id) == "Cancelled"
    other = qnb.submit(BELL, target=target.name, shots=10)
    wait_until(lambda: len(standin.job_ids()) == 2, what="the second job at Azure")
    standin.cancel_at_console(azure_ids(other)[0])
    wait_until(lambda: other.status is JobStatus.CANCELLED, what="the portal's cancel to be seen")
    assert "Azure Quantum status 'Cancelled'" in other.items[0].error


def test_many_jobs_are_followed_through_one_listing(manager, standin, targets):
    target = targets(standin, poll_seconds=0.2)
    standin.hold = True
    jobs = [qnb.submit(BELL, target=target.name, shots=10) for _ in range(6)]
    wait_until(lambda: standin.requests["GET /jobs"] >= 2, what="the listing of unfinished jobs")
    reads = standin.requests["GET /jobs/{id}"]
    wait_until(lambda: standin.requests["GET /jobs"] >= 4, what="two more listings")
    assert standin.requests["GET /jobs/{id}"] == reads  # unfinished jobs are not read one by one
    standin.release()
    assert all(sum(j.result(timeout=30).counts().values()) == 10 for j in jobs)


def test_the_key_is_never_stored_nor_logged(manager, standin, targets, caplog):
    caplog.set_level(logging.DEBUG)
    target = targets(standin)
    job = qnb.submit({"a": BELL, "b": KEYS}, target=target.name, shots=10)
    job.result(timeout=30)
    manager.flush()
    assert KEY not in caplog.text and KEY not in repr(target.__dict__)
    assert_nowhere_in(manager.store.path.parent, KEY)


# -- a killed submitter: separate processes on one QNB_HOME ------------------------------------

SUBMITTER = submitter_script(
    """
    url, cs, labels = sys.argv[1:4]
    qnb.register_target("az", "azure", backend="quantinuum.sim.h2-1e", connection_string=cs,
                        endpoint=url + "/", poll_seconds=0.05, call_timeout=120)
    q = cirq.LineQubit.range(2)
    flip = cirq.Circuit(cirq.X(q[1]), cirq.measure(*q, key="m"))
    bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
    circuits = {"flip": flip, "bell": bell}
    job = qnb.submit({label: circuits[label] for label in labels.split(",")}, target="az", shots=100, name="paid for")
    """
)


def _start_submitter(tmp_path, standin: AzureStandIn, labels: str) -> subprocess.Popen:
    return start_child(SUBMITTER, tmp_path / "home", standin.url, connection_string(), labels)


def _follow_in_a_new_process(tmp_path, standin: AzureStandIn, job_id: str, n_circuits: int) -> None:
    """A fresh manager on the killed process's home follows the job to its results."""
    with new_process_manager(tmp_path / "home"):
        (listed,) = qnb.jobs()
        assert listed.id == job_id and not listed.status.is_terminal  # not "interrupted"
        standin.release()
        target = qnb.register_target("az", "azure", backend="quantinuum.sim.h2-1e", connection_string=connection_string(),
                                     endpoint=standin.url + "/", poll_seconds=0.05)  # fmt: skip
        try:
            result = result_through(target, job_id)
        finally:
            qnb._targets.registry.unregister("az")
        assert result.counts(label="flip") == {"01": 100}
        assert n_circuits == 1 or set(result.counts(label="bell")) <= {"00", "11"}
        assert standin.created == n_circuits == standin.requests["PUT /jobs/{id}"]  # followed, not run again


@pytest.mark.slow
def test_a_killed_submitters_jobs_are_followed_by_a_new_process(tmp_path, standin):
    standin.hold = True  # still running at Azure when the kernel dies
    child = _start_submitter(tmp_path, standin, "flip,bell")
    line = kill_once(child, lambda _: [standin.status_of(i) for i in standin.job_ids()] == ["Executing"] * 2,
                     what="Azure to run both")  # fmt: skip
    _follow_in_a_new_process(tmp_path, standin, line[1], 2)


@pytest.mark.slow
def test_killed_while_its_put_is_on_its_way_the_job_is_found_by_its_id(tmp_path, standin):
    standin.delay_after_create = 60.0  # Azure has the job; its creator never hears so
    child = _start_submitter(tmp_path, standin, "flip")
    stored = kill_while_creating(child, standin, tmp_path / "home")  # asserted in doubt, not failed
    _follow_in_a_new_process(tmp_path, standin, stored.id, 1)


@pytest.mark.parametrize("backend", ["ionq.simulator", "quantinuum.sim.h2-1e"])
def test_compile_rewrites_any_qubits_and_gates_for_the_provider(manager, standin, targets, backend):
    target = targets(standin, backend=backend)
    a, b, c = cirq.GridQubit.rect(1, 3)
    circuit = cirq.Circuit(cirq.X(a), cirq.X(b), cirq.CCX(a, b, c), cirq.ISWAP(a, b) ** 0.5,
                           cirq.measure(c, key="c"))  # fmt: skip
    if backend.startswith("ionq"):
        with pytest.raises(qnb.DeviceValidationError, match="compile=True"):
            qnb.submit(circuit, target=target.name, shots=10)
    job = qnb.submit(circuit, target=target.name, shots=10, compile=True)
    assert job.result(timeout=30).counts() == {"1": 10}


def test_a_job_azure_no_longer_knows_ends_cancelled(manager, standin, targets):
    target = targets(standin)
    standin.hold = True
    job = qnb.submit(BELL, target=target.name, shots=10)
    wait_until(lambda: job.status is JobStatus.QUEUED or job.status is JobStatus.RUNNING, what="the job followed")
    standin.jobs[azure_ids(job)[0]].forced = "deleted"  # the stand-in answers 404 from now on
    wait_until(lambda: job.status is JobStatus.CANCELLED, what="the job to end")
    assert "Azure Quantum status 'Deleted': Azure Quantum no longer knows this job" in job.items[0].error


def test_a_targets_file_table_makes_the_target_on_first_use(manager, standin, monkeypatch, tmp_path):
    targets_file = tmp_path / "targets.toml"
    targets_file.write_text(textwrap.dedent(f"""
        [targets.h2]
        kind = "azure"
        backend = "quantinuum.sim.h2-1e"
        connection_string_env = "LAB_AZURE"
        endpoint = "{standin.url}/"
        poll_seconds = 0.05
    """))  # fmt: skip
    monkeypatch.setenv("QNB_TARGETS", str(targets_file))
    monkeypatch.setenv("LAB_AZURE", connection_string())
    qnb._targets.registry.rescan()  # the targets file is read once per process otherwise
    job = qnb.submit(KEYS, target="h2", shots=10)
    try:
        assert job.result(timeout=30)["0"].histogram(key="x y") == {1: 10}
    finally:
        qnb._targets.registry.get("h2").close()
