"""The circuit wire format: Cirq's JSON, written faster (by orjson) to the same document."""

from __future__ import annotations

import datetime
import json
import pathlib

import cirq
import numpy as np
import pandas as pd
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


def as_cirq_writes_it(text: str) -> str:
    """Our compact text as Cirq's own encoder spells the same document (a space after
    each separator, non-ASCII escaped): floats and integers come back exactly."""
    return json.dumps(json.loads(text))


@pytest.mark.parametrize("label", list(CIRCUITS))
def test_same_document_as_cirq_and_round_trips(label):
    circuit = CIRCUITS[label]
    text = _circuits.to_json(circuit)
    assert as_cirq_writes_it(text) == cirq.to_json(circuit, indent=None)
    assert _circuits.from_json(text) == circuit


def _cirq_json_examples() -> list[tuple[str, object]]:
    """Every object of Cirq's own JSON test data (one per serializable Cirq type)."""
    folder = pathlib.Path(cirq.protocols.__file__).parent / "json_test_data"
    names = {"cirq": cirq, "np": np, "sympy": sympy, "pd": pd, "datetime": datetime}
    examples = []
    for path in sorted(folder.glob("*.repr")):
        try:
            examples.append((path.stem, eval(path.read_text(), dict(names))))  # noqa: S307
        except Exception:  # a type from a Cirq module not installed (cirq_google, ...)
            continue
    return examples


def test_every_cirq_type_is_written_as_cirq_writes_it():
    # orjson writes the text; Cirq's encoder must still decide every object, exactly as
    # cirq.to_json would: dataclasses, enums, numpy and sympy values, keyed references.
    compared = 0
    for name, value in _cirq_json_examples():
        try:
            expected = cirq.to_json(value, indent=None)
        except Exception:  # noqa: BLE001 - what Cirq itself cannot write is not ours to
            continue
        assert as_cirq_writes_it(_circuits.to_json(value)) == expected, name
        compared += 1
    assert compared >= 200, compared  # the data set was found and read (209 in Cirq 1.7)


def test_what_orjson_cannot_write_is_written_by_cirqs_encoder():
    huge = cirq.Circuit(cirq.X(q[0]) ** sympy.Integer(2**70), cirq.measure(q[0]))  # > 64 bits
    not_a_number = cirq.Circuit(cirq.X(q[0]) ** float("nan"), cirq.measure(q[0]))
    for circuit in (huge, not_a_number):
        assert _circuits.to_json(circuit) == cirq.to_json(circuit, indent=None)
    exponent = _circuits.from_json(_circuits.to_json(huge)).moments[0].operations[0].gate.exponent
    assert exponent == 2**70
    exponent = _circuits.from_json(_circuits.to_json(not_a_number)).moments[0].operations[0].gate.exponent
    assert np.isnan(exponent)  # not None, as orjson would have written it (null)


def test_batches_are_written_with_the_collector_restored():
    import gc

    assert gc.isenabled()
    texts = _circuits.to_json_many(CIRCUITS.values())
    assert gc.isenabled()
    assert [as_cirq_writes_it(t) for t in texts] == [cirq.to_json(c, indent=None) for c in CIRCUITS.values()]


def test_results_round_trip():
    result = cirq.Simulator().run(CIRCUITS["gates"], repetitions=7)
    assert cirq.read_json(json_text=cirq.to_json(result, indent=None)) == result


def test_a_type_written_directly_is_checked_against_cirq_and_left_to_cirq_if_it_differs(monkeypatch):
    # The hot types (operations, moments, common gates) are written from their public
    # properties; a Cirq whose _json_dict_ says something else must still get its own
    # document.
    wrong = dict(_circuits._DIRECT_FIELDS)
    wrong[cirq.PhasedXZGate] = lambda g: {"cirq_type": "PhasedXZGate", "x_exponent": g.x_exponent}
    checked = _circuits._checked_against_cirq(wrong)
    assert cirq.PhasedXZGate not in checked and cirq.GateOperation in checked
    monkeypatch.setattr(_circuits, "_DIRECT_FIELDS", checked)
    monkeypatch.setattr(_circuits, "_Encoder", _circuits._make_encoder())
    circuit = CIRCUITS["phased"]
    assert as_cirq_writes_it(_circuits.to_json(circuit)) == cirq.to_json(circuit, indent=None)


def test_the_directly_written_types_are_the_ones_cirq_writes():
    examples = [
        cirq.Circuit(cirq.Moment(cirq.CZ(q[0], q[1])), cirq.Moment(cirq.XPowGate(exponent=0.3, global_shift=0.1)(q[2]))),
        cirq.Moment(cirq.H(q[0])).with_tags("t"),  # tags: asked of Cirq
        cirq.Circuit(cirq.X(q[0]), tags=("tagged",)),
        *[kind(exponent=0.5).on(*q[: kind().num_qubits()]) for kind in _circuits._DIRECT_FIELDS
          if issubclass(kind, cirq.EigenGate)],
    ]  # fmt: skip
    for value in examples:
        assert as_cirq_writes_it(_circuits.to_json(value)) == cirq.to_json(value, indent=None), value
