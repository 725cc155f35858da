"""Every user mistake gets a clear QnbError and leaves nothing stored or queued."""

from __future__ import annotations

import cirq
import pytest

import qnb

Q = cirq.LineQubit.range(8)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(Q[0], Q[1], key="m"))
NATIVE_BELL = cirq.Circuit(
    cirq.PhasedXZGate(x_exponent=0.5, z_exponent=0, axis_phase_exponent=-0.5)(Q[0]),
    cirq.CZ(Q[0], Q[1]),
    cirq.measure(Q[0], Q[1], key="m"),
)


class Unstorable(cirq.Gate):
    """A user gate without Cirq JSON support."""

    def _num_qubits_(self):
        return 1

    def _unitary_(self):
        return cirq.unitary(cirq.X)


def bad_qasm(line5: str) -> str:
    return f'OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n{line5}\nmeasure q -> c;\n'


CASES = [
    ("not a circuit", dict(circuits=42), qnb.InvalidCircuitError, "expected a cirq.Circuit.*got int"),
    ("not a circuit in a batch", dict(circuits=[BELL, "hello"]), qnb.InvalidCircuitError,
     "circuit '1' is a string that is not OpenQASM"),
    ("empty batch", dict(circuits=[]), qnb.InvalidCircuitError, "batch is empty"),
    ("empty dict", dict(circuits={}), qnb.InvalidCircuitError, "batch is empty"),
    ("duplicate labels", dict(circuits={0: BELL, "0": BELL}), qnb.InvalidCircuitError,
     "duplicate circuit labels: 0"),
    ("bad label", dict(circuits={("a",): BELL}), qnb.InvalidCircuitError, "labels must be"),
    ("no measurements", dict(circuits={"x": cirq.Circuit(cirq.X(Q[0]))}),
     qnb.InvalidCircuitError, "circuit 'x' has no measurements"),
    ("too many qubits", dict(circuits=cirq.Circuit(cirq.measure(*Q, key="m")), target="emulator"),
     qnb.DeviceValidationError, "uses 8 qubits but target 'emulator' has 6"),
    ("too many qubits for density", dict(
        circuits=cirq.Circuit(cirq.measure(*cirq.LineQubit.range(13), key="m")), target="density"),
     qnb.DeviceValidationError, "has 12"),
    ("non-native gate", dict(circuits=BELL, target="emulator"), qnb.DeviceValidationError,
     "gate H\\(q\\(0\\)\\) is not native to 'emulator'.*compile=True"),
    ("unconnected pair", dict(
        circuits=cirq.Circuit(cirq.CZ(Q[0], Q[2]), cirq.measure(Q[0], Q[2], key="m")),
        target="emulator"), qnb.DeviceValidationError,
     "acts on q\\(0\\) and q\\(2\\), which are not connected.*compile=True"),
    ("qubit not on device", dict(
        circuits=cirq.Circuit(cirq.measure(cirq.NamedQubit("a"), key="m")), target="emulator"),
     qnb.DeviceValidationError, "uses qubits a that 'emulator' does not have"),
    ("zero shots", dict(circuits=BELL, shots=0), qnb.InvalidOptionError, "positive whole number"),
    ("negative shots", dict(circuits=BELL, shots=-5), qnb.InvalidOptionError, "positive"),
    ("float shots", dict(circuits=BELL, shots=10.5), qnb.InvalidOptionError, "whole number"),
    ("too many shots", dict(circuits=NATIVE_BELL, shots=100_001, target="emulator"),
     qnb.InvalidOptionError, "above the maximum of target 'emulator' \\(100000\\)"),
    ("batch above max_batch", dict(circuits=[BELL] * 301), qnb.InvalidOptionError,
     "batch of 301 circuits is above the max_batch of target 'sim' \\(300\\)"),
    ("invalid qasm", dict(circuits=bad_qasm("foo q[0];")), qnb.InvalidCircuitError,
     "invalid OpenQASM 2.0 in circuit '0': Unknown gate \"foo\" at line 5"),
    ("invalid qasm syntax", dict(circuits={"k": bad_qasm("h q[0")}), qnb.InvalidCircuitError,
     "invalid OpenQASM 2.0 in circuit 'k'"),
    ("unknown target", dict(circuits=BELL, target="ibm"), qnb.UnknownTargetError,
     "unknown target 'ibm'; known targets: sim, cirq, density, emulator"),
    ("unstorable gate", dict(circuits=cirq.Circuit(Unstorable()(Q[0]), cirq.measure(Q[0]))),
     qnb.InvalidCircuitError, "cannot be stored as Cirq JSON"),
    ("one bad circuit in a good batch", dict(
        circuits={"fine": BELL, "broken": cirq.Circuit(cirq.X(Q[0]))}),
     qnb.InvalidCircuitError, "'broken' has no measurements"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_submission_is_refused_and_nothing_is_stored(manager, case):
    _, kwargs, error, message = case
    kwargs = dict(kwargs)
    circuits = kwargs.pop("circuits")
    with pytest.raises(error, match=message):
        qnb.submit(circuits, **kwargs)
    assert qnb.jobs() == []
    assert manager.store.find_jobs() == []
    for target in qnb.targets():
        assert len(qnb.queue(target)) == 0


def test_errors_share_one_base_class():
    for _, _, error, _ in CASES:
        assert issubclass(error, qnb.QnbError)


def test_unknown_job_id(manager):
    with pytest.raises(qnb.UnknownJobError, match="no job id starts with 'feedbeef'"):
        qnb.get_job("feedbeef")
    with pytest.raises(qnb.UnknownJobError, match="no job with id"):
        qnb.Job("0" * 32)


def test_ambiguous_prefix(manager):
    jobs = [qnb.submit(BELL, shots=1) for _ in range(40)]
    for job in jobs:
        job.result(timeout=60)
    first = {j.id[0] for j in jobs}
    shared = next(c for c in first if sum(j.id[0] == c for j in jobs) > 1)
    with pytest.raises(qnb.UnknownJobError, match="ambiguous"):
        qnb.get_job(shared)


def test_unknown_target_for_queue_and_compile(manager):
    with pytest.raises(qnb.UnknownTargetError, match="known targets"):
        qnb.queue("nowhere")
    with pytest.raises(qnb.UnknownTargetError):
        qnb.compile(BELL, "nowhere")


def test_compile_refuses_circuits_larger_than_the_device():
    with pytest.raises(qnb.DeviceValidationError, match="cannot be compiled"):
        qnb.compile(cirq.Circuit(cirq.measure(*Q, key="m")), "emulator")
