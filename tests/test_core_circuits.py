"""The circuit wire format: Cirq's JSON, written faster but to the same text."""

from __future__ import annotations

import cirq
import numpy as np
import pytest
import sympy

from qnb import _circuits

q = cirq.LineQubit.range(3)
g = cirq.GridQubit(2, 3)
sub = cirq.FrozenCircuit(cirq.H(q[0]), cirq.CZ(q[0], q[1]))

CIRCUITS = {
    "gates": cirq.Circuit(cirq.H(q[0]), cirq.CNOT(q[0], q[1]), cirq.SWAP(q[1], q[2]) ** 0.5,
                          cirq.measure(*q, key="m", invert_mask=(True,))),
    "phased": cirq.Circuit(cirq.PhasedXZGate(x_exponent=0.25, z_exponent=0.5, axis_phase_exponent=0.1)(g),
                           cirq.measure(g)),
    "symbols": cirq.Circuit(cirq.rx(sympy.Symbol("theta") * 2 + 1)(q[0]), cirq.measure(q[0])),
    "matrix": cirq.Circuit(cirq.MatrixGate(np.array([[0, 1], [1, 0]], dtype=complex))(q[0]),
                           cirq.measure(q[0], key="x")),
    "noise": cirq.Circuit(cirq.depolarize(0.1)(q[0]), cirq.amplitude_damp(0.2)(q[1]), cirq.measure(*q[:2])),
    "by key": cirq.Circuit(cirq.CircuitOperation(sub), cirq.CircuitOperation(sub).repeat(2),
                           cirq.measure(q[0], q[1], key="k")),
    "named": cirq.Circuit(cirq.X(cirq.NamedQubit("alice")), cirq.measure(cirq.NamedQubit("alice"))),
    "qasm": _circuits.parse_qasm('OPENQASM 2.0;\ninclude "qelib1.inc";\nqreg q[2];\ncreg c[2];\n'
                                 'u3(0.1,0.2,0.3) q[0];\ncx q[0],q[1];\nmeasure q -> c;\n'),
    "tagged": cirq.Circuit(cirq.X(q[0]).with_tags("calibrated"), cirq.measure(q[0])),
}


@pytest.mark.parametrize("label", list(CIRCUITS))
def test_same_text_as_cirq_and_round_trips(label):
    circuit = CIRCUITS[label]
    text = _circuits.to_json(circuit)
    assert text == cirq.to_json(circuit, indent=None)
    assert _circuits.from_json(text) == circuit


def test_batches_are_written_with_the_collector_restored():
    import gc

    assert gc.isenabled()
    texts = _circuits.to_json_many(CIRCUITS.values())
    assert gc.isenabled()
    assert texts == [cirq.to_json(c, indent=None) for c in CIRCUITS.values()]


def test_results_round_trip():
    result = cirq.Simulator().run(CIRCUITS["gates"], repetitions=7)
    assert cirq.read_json(json_text=cirq.to_json(result, indent=None)) == result
