"""Which engine can run a circuit, checked against qsimcirq itself; refusals at submit
(unresolved parameters, qudits on qubit-only targets, inconsistent repeated keys)."""

from __future__ import annotations

import cirq
import numpy as np
import pytest
import qsimcirq
import sympy

import qnb
from qnb import _circuits
from qnb._errors import DeviceValidationError, InvalidCircuitError

Q = cirq.LineQubit.range(8)
QT = cirq.LineQid(0, dimension=3)
U7 = cirq.testing.random_unitary(2**7, random_state=1)


class SevenQubitUnitary(cirq.Gate):
    def _num_qubits_(self):
        return 7

    def _unitary_(self):
        return U7


# Each circuit is deterministic, so qsim's answer can be compared with cirq.Simulator's.
QSIM_RUNS = {
    "ghz-like": cirq.Circuit(cirq.X(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(*Q[:3], key="m")),
    "reset": cirq.Circuit(cirq.X(Q[0]), cirq.reset(Q[0]), cirq.measure(Q[0], key="m")),
    "mid-circuit measurement": cirq.Circuit(cirq.X(Q[0]), cirq.measure(Q[0], key="a"), cirq.X(Q[0]),
                                            cirq.measure(Q[0], key="b")),
    "key measured twice": cirq.Circuit(cirq.X(Q[0]), cirq.measure(Q[0], key="a"), cirq.X(Q[0]),
                                       cirq.measure(Q[0], key="a")),
    "subcircuit without measurements": cirq.Circuit(
        cirq.CircuitOperation(cirq.FrozenCircuit(cirq.X(Q[0]), cirq.CNOT(Q[0], Q[1]))),
        cirq.measure(*Q[:2], key="m")),
    "noise that does nothing": cirq.Circuit(cirq.X(Q[0]), cirq.amplitude_damp(0.0)(Q[0]),
                                            cirq.measure(Q[0], key="m")),
    "global phase and tags": cirq.Circuit(cirq.global_phase_operation(1j), cirq.X(Q[0]).with_tags("t"),
                                          cirq.measure(Q[0], key="m")),
    "6-qubit matrix": cirq.Circuit(cirq.MatrixGate(cirq.unitary(cirq.Circuit(cirq.X.on_each(*Q[:6]))))(*Q[:6]),
                                   cirq.measure(*Q[:6], key="m")),
    "inverted measurement": cirq.Circuit(cirq.measure(Q[0], key="m", invert_mask=(True,))),
}

QSIM_FAILS = {
    "classical control": (cirq.Circuit(cirq.X(Q[0]), cirq.measure(Q[0], key="a"),
                                       cirq.X(Q[1]).with_classical_controls("a"), cirq.measure(Q[1], key="b")),
                          "classical control"),
    "qutrit": (cirq.Circuit(cirq.MatrixGate(np.roll(np.eye(3), 1, axis=0), qid_shape=(3,))(QT),
                            cirq.measure(QT, key="m")), "qudit"),
    "measurement in a subcircuit": (cirq.Circuit(
        cirq.CircuitOperation(cirq.FrozenCircuit(cirq.X(Q[0]), cirq.measure(Q[0], key="m"))),
        cirq.measure(Q[1], key="z")), "inside a cirq.CircuitOperation"),
    "Pauli measurement": (cirq.Circuit(cirq.X(Q[0]), cirq.H(Q[0]),
                                       cirq.PauliMeasurementGate(cirq.DensePauliString("X"), key="m").on(Q[0])),
                          "PauliMeasurementGate"),
    "confusion map": (cirq.Circuit(cirq.X(Q[0]), cirq.measure(
        Q[0], key="m", confusion_map={(0,): np.array([[0.0, 1.0], [1.0, 0.0]])})), "confusion map"),
    "repeat until": (cirq.Circuit(cirq.CircuitOperation(
        cirq.FrozenCircuit(cirq.X(Q[0]), cirq.measure(Q[0], key="m")), use_repetition_ids=False,
        repeat_until=cirq.KeyCondition(cirq.MeasurementKey("m")))), "until"),
    "7-qubit matrix": (cirq.Circuit(cirq.MatrixGate(U7)(*Q[:7]), cirq.measure(*Q[:7], key="m")), "7-qubit"),
    "7-qubit unitary gate": (cirq.Circuit(SevenQubitUnitary()(*Q[:7]), cirq.measure(*Q[:7], key="m")), "7-qubit"),
}


def _records(result: cirq.Result) -> dict[str, list]:
    return {k: v.tolist() for k, v in result.records.items()}


@pytest.mark.parametrize("name", list(QSIM_RUNS))
def test_what_qsim_can_run_it_runs_as_cirq_does(name):
    circuit = QSIM_RUNS[name]
    assert _circuits.qsim_can_run(circuit) is None
    by_qsim = qsimcirq.QSimSimulator().run(circuit, repetitions=4)
    by_cirq = cirq.Simulator().run(circuit, repetitions=4)
    assert _records(by_qsim) == _records(by_cirq)


@pytest.mark.parametrize("name", list(QSIM_FAILS))
def test_what_qsim_cannot_run_it_gets_wrong_or_refuses(name):
    circuit, reason = QSIM_FAILS[name]
    assert reason in _circuits.qsim_can_run(circuit)
    try:
        by_qsim = qsimcirq.QSimSimulator().run(circuit, repetitions=4)
    except (ValueError, NotImplementedError, TypeError):
        return  # refused: cirq.Simulator must run it instead
    # Not refused: then qsim's answer is wrong (results missing or different).
    by_cirq = cirq.Simulator().run(circuit, repetitions=4)
    assert _records(by_qsim) != _records(by_cirq)


def test_unresolved_parameters_are_named():
    theta, phi = sympy.Symbol("theta"), sympy.Symbol("phi")
    circuit = cirq.Circuit(cirq.rx(theta)(Q[0]), cirq.rz(2 * phi + theta)(Q[0]), cirq.measure(Q[0]))
    with pytest.raises(InvalidCircuitError, match="circuit 'c' has unresolved parameters phi, theta; give values with params="):
        _circuits.check_resolved("c", circuit)
    _circuits.check_resolved("c", cirq.resolve_parameters(circuit, {"theta": 1, "phi": 2}))


def test_a_symbol_is_found_in_a_gate_type_already_seen_with_numbers():
    # The submit check skips Cirq's parameter protocol for Cirq's own gates whose
    # attributes are all numbers: the same gate types with a symbol must still be caught.
    theta = sympy.Symbol("theta")
    plain = cirq.Circuit(cirq.rx(0.3)(Q[0]), cirq.CZ(*Q[:2]) ** np.float64(0.5), cirq.measure(*Q[:2]))
    _circuits.check_serializable("plain", plain, resolved=True)
    _circuits.check_serializable("plain again", plain, resolved=True)  # now by the quick path
    swept = cirq.Circuit(cirq.rx(0.3)(Q[0]), cirq.CZ(*Q[:2]) ** theta, cirq.measure(*Q[:2]))
    with pytest.raises(InvalidCircuitError, match="circuit 's' has unresolved parameters theta"):
        _circuits.check_serializable("s", swept, resolved=True)
    _circuits.check_serializable("s", swept, resolved=False)  # a sweep gives theta its values
    tagged = cirq.Circuit(cirq.rx(theta)(Q[0]).with_tags("t"), cirq.measure(Q[0]))
    with pytest.raises(InvalidCircuitError, match="unresolved parameters theta"):
        _circuits.check_serializable("t", tagged, resolved=True)


def test_measurements_are_found_however_placed():
    # One walk finds the measurement and each key's width; a subcircuit takes the full path.
    inner = cirq.FrozenCircuit(cirq.X(Q[0]), cirq.measure(Q[0], Q[1], key="k"))
    _circuits.check_measured("sub", cirq.Circuit(cirq.CircuitOperation(inner, repetitions=2)))
    with pytest.raises(InvalidCircuitError, match="measures key 'k' on 2 qubits and again on 1"):
        _circuits.check_measured(
            "sub", cirq.Circuit(cirq.CircuitOperation(inner), cirq.measure(Q[0], key="k"))
        )
    with pytest.raises(InvalidCircuitError, match="has no measurements"):
        _circuits.check_measured("none", cirq.Circuit(cirq.X(Q[0])))
    _circuits.check_measured("pauli", cirq.Circuit(cirq.PauliMeasurementGate([cirq.X], key="p").on(Q[0])))
    _circuits.check_measured("first", cirq.Circuit(cirq.measure(Q[0], key="m"), cirq.X(Q[0])))


def test_qudits_are_refused_where_only_qubits_run():
    circuit = QSIM_FAILS["qutrit"][0]
    with pytest.raises(DeviceValidationError, match=r"circuit 't' uses qudits \(q\(0\) \(d=3\) of dimension 3\), but target 'x'"):
        _circuits.check_qubits_only("t", circuit, target="x")
    _circuits.check_qubits_only("fine", QSIM_RUNS["reset"])


def test_the_emulator_refuses_qudits_at_submit_and_simulators_run_them(manager):
    circuit = QSIM_FAILS["qutrit"][0]
    for compile in (False, True):
        with pytest.raises(DeviceValidationError, match="uses qudits.*target 'emulator' runs qubits only"):
            qnb.submit(circuit, target="emulator", compile=compile)
    # The qutrit's gate moves |0> to |1>, twice to |2>: counts show the digit.
    assert qnb.run(circuit, target="cirq", shots=5, timeout=60).counts() == {"1": 5}
    twice = cirq.Circuit(circuit[0], circuit[0], cirq.measure(QT, Q[0], key="m"))
    assert qnb.run(twice, target="density", shots=5, timeout=60).counts() == {"20": 5}


def test_a_key_measured_on_different_widths_is_refused():
    circuit = cirq.Circuit(cirq.measure(Q[0], key="a"), cirq.measure(Q[0], Q[1], key="a"))
    with pytest.raises(InvalidCircuitError, match="measures key 'a' on 1 qubits and again on 2"):
        _circuits.check_measured("w", circuit)
    _circuits.check_measured("same width", QSIM_RUNS["key measured twice"])
