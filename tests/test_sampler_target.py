"""Any ``cirq.Sampler`` as a target: a vendor's sampler that runs locally
(``cirq_aqt.AQTSamplerLocalSimulator``) and users' own samplers; sweeps in one
``run_sweep`` call, the vendor's device, failures per item, cancel, and restarts."""

from __future__ import annotations

import threading

import cirq
import cirq_aqt
import pytest
import sympy

import qnb
from qnb import JobStatus, _manager
from qnb._targets import registry
from qnb._targets._sampler import NOT_FOLLOWED, SamplerTarget
from conftest import wait_until


@pytest.fixture
def names():
    """Names the test registers, taken out of the process's registry afterwards."""
    taken: list[str] = []
    yield taken
    for name in taken:
        registry._targets.pop(name, None)


def flip(q: cirq.Qid) -> cirq.Operation:
    return cirq.PhasedXPowGate(phase_exponent=0.0)(q)  # X, in AQT's native gates


class Recording(cirq.Sampler):
    """A user's own sampler: a Cirq simulator that records its calls."""

    def __init__(self):
        self.calls: list[int] = []  # points per run_sweep call
        self._sim = cirq.Simulator(seed=1)

    def run_sweep(self, program, params, repetitions=1):
        points = list(cirq.to_resolvers(params))
        self.calls.append(len(points))
        return self._sim.run_sweep(program, points, repetitions=repetitions)


class Blocking(cirq.Sampler):
    """Holds every call until ``release`` is set."""

    def __init__(self):
        self.release = threading.Event()
        self.started = 0
        self._lock = threading.Lock()

    def run_sweep(self, program, params, repetitions=1):
        with self._lock:
            self.started += 1
        assert self.release.wait(60), "never released"
        return cirq.Simulator().run_sweep(program, params, repetitions=repetitions)


class Broken(cirq.Sampler):
    def run_sweep(self, program, params, repetitions=1):
        if any("boom" in str(op) for op in program.all_operations()):
            raise RuntimeError("the vendor refused it")
        return cirq.Simulator().run_sweep(program, params, repetitions=repetitions)


def test_a_vendor_sampler_runs_jobs_with_its_device(manager, names):
    device, qubits = cirq_aqt.aqt_device.get_aqt_device(3)
    names.append("aqt")
    qnb.register_target("aqt", cirq_aqt.AQTSamplerLocalSimulator(simulate_ideal=True), device=device)
    spec = qnb.targets()["aqt"]
    assert spec.max_qubits == 3 and len(spec.connectivity) == 3
    assert NOT_FOLLOWED in spec.description and "AQTSamplerLocalSimulator" in spec.description

    a, b, c = qubits
    circuit = cirq.Circuit(flip(a), flip(c), cirq.measure(a, b, c, key="m"))
    job = qnb.submit({"101": circuit, "010": cirq.Circuit(flip(b), cirq.measure(a, b, c, key="m"))},
                     target="aqt", shots=40)  # fmt: skip
    result = job.result(timeout=60)
    assert result.counts(label="101") == {"101": 40}
    assert result.counts(label="010") == {"010": 40}
    # The device's gate set is checked at submit: nothing is stored.
    with pytest.raises(qnb.DeviceValidationError, match="not native"):
        qnb.submit(cirq.Circuit(cirq.H(a), cirq.measure(a, key="m")), target="aqt")
    assert len(qnb.jobs()) == 1


def test_a_vendor_sampler_runs_sweeps(manager, names):
    device, (a, b, c) = cirq_aqt.aqt_device.get_aqt_device(3)
    names.append("aqt")
    qnb.register_target("aqt", cirq_aqt.AQTSamplerLocalSimulator(simulate_ideal=True), device=device)
    t = sympy.Symbol("t")
    circuit = cirq.Circuit(cirq.PhasedXPowGate(phase_exponent=0.0, exponent=t)(a), cirq.measure(a, b, c, key="m"))
    points = qnb.submit(circuit, target="aqt", params=cirq.Points("t", [0.0, 1.0]), shots=30).result(timeout=60).sweep()
    assert [dict(p.histogram(key="m")) for p in points] == [{0: 30}, {4: 30}]
    assert [p.params["t"] for p in points] == [0.0, 1.0]


def test_a_users_sampler_gets_a_sweep_in_one_call(manager, names):
    sampler = Recording()
    names.append("mine")
    target = qnb.register_target("mine", sampler)
    assert isinstance(target, SamplerTarget) and target.local
    assert qnb.targets()["mine"].max_qubits >= 30 and "Recording" in qnb.targets()["mine"].description
    q = cirq.LineQubit(0)
    theta = sympy.Symbol("theta")
    swept = cirq.Circuit(cirq.rx(theta)(q), cirq.measure(q, key="m"))
    job = qnb.submit(swept, target="mine", params=cirq.Linspace("theta", 0, 3.141592653589793, 5), shots=20)
    points = job.result(timeout=60).sweep()
    assert sampler.calls == [5]
    assert dict(points[0].histogram(key="m")) == {0: 20} and dict(points[-1].histogram(key="m")) == {1: 20}
    plain = {f"x{i}": cirq.Circuit(cirq.X(q) ** i, cirq.measure(q, key="m")) for i in range(3)}
    result = qnb.run(plain, target="mine", shots=10, timeout=60)
    assert sampler.calls == [5, 1, 1, 1]
    assert result.counts(label="x1") == {"1": 10} and result.counts(label="x2") == {"0": 10}


def test_a_sampler_that_raises_fails_its_items_only(manager, names):
    names.append("broken")
    qnb.register_target("broken", Broken())
    q = cirq.LineQubit(0)
    boom = cirq.Circuit(cirq.X(q).with_tags("boom"), cirq.measure(q, key="m"))
    fine = cirq.Circuit(cirq.X(q), cirq.measure(q, key="m"))
    job = qnb.submit({"boom": boom, "fine": fine}, target="broken", shots=5)
    result = job.result(timeout=60)
    assert job.status is JobStatus.FAILED  # partial results kept
    assert result.counts(label="fine") == {"1": 5}
    error = {item.label: item.error for item in job.items}["boom"]
    assert "Broken: RuntimeError: the vendor refused it" in error


def test_cancel_stops_the_calls_that_have_not_started(manager, names):
    sampler = Blocking()
    names.append("slow")
    qnb.register_target("slow", sampler, max_threads=2)
    q = cirq.LineQubit(0)
    job = qnb.submit({f"c{i}": cirq.Circuit(cirq.X(q) ** (i / 7), cirq.measure(q, key="m")) for i in range(6)},
                     target="slow", shots=5)  # fmt: skip
    try:
        wait_until(lambda: sampler.started == 2, timeout=30, what="two calls running")
        wait_until(lambda: sum(i.status is JobStatus.RUNNING for i in job.items) == 2, timeout=10,
                   what="two items running")  # fmt: skip
        job.cancel()
        wait_until(lambda: job.status is JobStatus.CANCELLED, timeout=10, what="the job cancelled")
    finally:
        sampler.release.set()
    qnb.run(cirq.Circuit(cirq.X(q), cirq.measure(q, key="m")), target="slow", shots=3, timeout=30)
    assert sampler.started == 3  # the four waiting calls never reached the sampler


def test_a_sampler_offering_a_processor_device(manager, names):
    a, b, c = cirq.GridQubit.rect(1, 3)

    class Chip(cirq.Device):
        metadata = cirq.GridDeviceMetadata(
            qubit_pairs=[(a, b), (b, c)], gateset=cirq.Gateset(cirq.CZ, cirq.PhasedXZGate, cirq.MeasurementGate)
        )

        def validate_operation(self, operation):
            pass

    class Processor:
        def get_device(self):
            return Chip()

    class ProcessorSampler(Recording):
        processor = Processor()

    names.append("chip")
    spec = qnb.register_target("chip", ProcessorSampler()).device
    assert spec.max_qubits == 3 and spec.graph.number_of_edges() == 2
    with pytest.raises(qnb.DeviceValidationError, match="not connected"):
        qnb.submit(cirq.Circuit(cirq.CZ(a, c), cirq.measure(a, c, key="m")), target="chip")
    ok = cirq.Circuit(cirq.PhasedXZGate(x_exponent=1, z_exponent=0, axis_phase_exponent=0)(a),
                      cirq.CZ(a, b), cirq.measure(a, b, key="m"))  # fmt: skip
    assert qnb.run(ok, target="chip", shots=10, timeout=60).counts() == {"10": 10}


def test_sampler_options_are_checked(manager):
    with pytest.raises(TypeError):
        qnb.register_target("bad", Recording(), colour="blue")
    with pytest.raises(qnb.InvalidOptionError, match="not with a target"):
        qnb.register_target("bad", registry.get("sim"), max_threads=2)
    with pytest.raises(qnb.InvalidOptionError, match="must be a qnb Target or a cirq.Sampler"):
        qnb.register_target("bad", object())
    assert "bad" not in qnb.targets()


def test_sampler_jobs_are_marked_interrupted_after_a_restart(tmp_path, names):
    sampler = Blocking()
    names.append("held")
    first = _manager.JobManager(tmp_path / "home")
    previous = _manager.set_manager(first)
    try:
        qnb.register_target("held", sampler)
        q = cirq.LineQubit(0)
        job_id = qnb.submit(cirq.Circuit(cirq.X(q), cirq.measure(q, key="m")), target="held", shots=5).id
        wait_until(lambda: sampler.started == 1, timeout=30, what="the call running")
        first.close()  # the kernel ends; the sampler's call has no id to follow later
        with pytest.warns(Warning, match="marked failed \\(interrupted\\)"):
            second = _manager.JobManager(tmp_path / "home")
        _manager.set_manager(second)
        try:
            assert job_id in second.interrupted_jobs
            job = qnb.get_job(job_id)
            assert job.status is JobStatus.FAILED and "interrupted" in job.error
        finally:
            second.close()
    finally:
        sampler.release.set()
        _manager.set_manager(previous)
