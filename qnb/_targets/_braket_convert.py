"""Cirq circuits as Amazon Braket runs them, and Braket's measurements as ``cirq.Result``s.

Cirq's own OpenQASM 3 is refused by Braket's simulators (``include "stdgates.inc"`` and
``cx`` are unknown there: Braket names the gate ``cnot``), so circuits are rebuilt as a
``braket.circuits.Circuit`` operation by operation through :data:`GATES`. An operation
not in the table is decomposed by Cirq until it is; one that cannot be becomes Braket's
``unitary`` where the device takes it, else it is refused, named, with the device's
operations. Braket measures once, at the end: measurements must be terminal and each
qubit measured at most once. Global phases are dropped: nothing measured sees them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Collection

import cirq
import numpy as np
from braket.circuits import Circuit, Instruction, gates
from braket.circuits.serialization import IRType

from .._errors import DeviceValidationError

LAYOUT_MARK = "// qnb layout: "

def _by_exponent(fixed: dict[float, type], *general: Callable[[float], gates.Gate]):
    """A gate family: the Braket gates that run ``gate`` in order of preference, a fixed
    one for its exponent ``e`` first, then each ``general(pi * e)``."""

    def translate(gate: cirq.EigenGate) -> list[gates.Gate]:
        exponent = gate.exponent
        if not isinstance(exponent, (int, float)):
            return []  # a symbol left unresolved
        found = [g() for value, g in fixed.items() if math.isclose(exponent, value, abs_tol=1e-12)]
        return found + [g(math.pi * exponent) for g in general]

    return translate


#: Cirq gate type -> the Braket gates that run it; the first the device takes is used,
#: none: Cirq decomposes it. Exact up to a global phase: ``XPowGate(e)`` is
#: ``rx(pi*e)``, ``ZPowGate(e)`` is ``phaseshift(pi*e)`` or ``rz(pi*e)``,
#: ``ISwapPowGate(e)`` is ``xy(pi*e)``, ``XXPowGate(e)`` is ``xx(pi*e)`` (tested).
GATES: dict[type, Callable[[cirq.Gate], list[gates.Gate]]] = {
    cirq.HPowGate: _by_exponent({1: gates.H}),
    cirq.XPowGate: _by_exponent({1: gates.X, 0.5: gates.V, -0.5: gates.Vi}, gates.Rx),
    cirq.YPowGate: _by_exponent({1: gates.Y}, gates.Ry),
    cirq.ZPowGate: _by_exponent(
        {1: gates.Z, 0.5: gates.S, -0.5: gates.Si, 0.25: gates.T, -0.25: gates.Ti}, gates.PhaseShift, gates.Rz
    ),
    cirq.CZPowGate: _by_exponent({1: gates.CZ}, gates.CPhaseShift),
    cirq.CXPowGate: _by_exponent({1: gates.CNot}),
    cirq.SwapPowGate: _by_exponent({1: gates.Swap}),
    cirq.ISwapPowGate: _by_exponent({1: gates.ISwap}, gates.XY),
    cirq.XXPowGate: _by_exponent({}, gates.XX),
    cirq.YYPowGate: _by_exponent({}, gates.YY),
    cirq.ZZPowGate: _by_exponent({}, gates.ZZ),
    cirq.CCXPowGate: _by_exponent({1: gates.CCNot}),
    cirq.CSwapGate: lambda gate: [gates.CSwap()],
}


@dataclasses.dataclass
class BraketProgram:
    """A circuit as Braket runs it, and how to read its measurements back."""

    circuit: Circuit
    #: Per measurement key: Braket's qubit indices, in the order Cirq measured them.
    keys: dict[str, list[int]]
    invert: dict[str, list[bool]]


def qubit_indices(circuit: cirq.Circuit, *, physical: bool) -> dict[cirq.Qid, int]:
    """Braket's qubit numbers: ``LineQubit(k)`` is qubit ``k`` on a device (``physical``),
    else the circuit's qubits in order, from 0 (a simulator allocates the highest index)."""
    qubits = sorted(circuit.all_qubits())
    qudits = [q for q in qubits if q.dimension != 2]
    if qudits:
        raise DeviceValidationError(f"{qudits[0]} has dimension {qudits[0].dimension}: Braket runs qubits only")
    if physical and all(isinstance(q, cirq.LineQubit) for q in qubits):
        return {q: q.x for q in qubits}
    return {q: i for i, q in enumerate(qubits)}


def to_braket(
    circuit: cirq.Circuit, *, supported: Collection[str], physical: bool = False, where: str = "Braket"
) -> BraketProgram:
    """``circuit`` (parameters resolved) as a Braket circuit using only ``supported``
    operations (the device's OpenQASM names); :class:`DeviceValidationError` names what
    cannot be run."""
    circuit = cirq.unroll_circuit_op(circuit, deep=True, tags_to_check=None)
    index = qubit_indices(circuit, physical=physical)
    keys, invert = _measurements(circuit, index, where)
    braket = Circuit()
    for op in circuit.all_operations():
        if not cirq.is_measurement(op):
            for gate, qubits in _translate(op, supported, where):
                braket.add_instruction(Instruction(gate, [index[q] for q in qubits]))
    measured = [q for qubits in keys.values() for q in qubits]
    if measured:
        braket.measure(measured)
    return BraketProgram(braket, keys, invert)


def _translate(op: cirq.Operation, supported: Collection[str], where: str) -> list[tuple[gates.Gate, tuple]]:
    if isinstance(op.gate, cirq.GlobalPhaseGate) or not op.qubits:
        return []
    if isinstance(op.gate, cirq.IdentityGate):
        return [(gates.I(), (q,)) for q in op.qubits]
    translate = next((GATES[t] for t in type(op.untagged.gate).__mro__ if t in GATES), None)
    for gate in translate(op.untagged.gate) if translate is not None else ():
        if gate._qasm_name in supported:
            return [(gate, op.qubits)]
    parts = cirq.decompose_once(op, default=None)
    if parts is not None:
        return [found for part in parts for found in _translate(part, supported, where)]
    if "unitary" in supported and cirq.has_unitary(op) and len(op.qubits) <= 10:
        return [(gates.Unitary(cirq.unitary(op)), op.qubits)]
    if cirq.is_parameterized(op):
        names = sorted(map(str, cirq.parameter_names(op)))
        raise DeviceValidationError(f"{op} has unresolved parameters {names}: give them values (a sweep)")
    raise DeviceValidationError(
        f"gate {op} ({type(op.untagged.gate or op.untagged).__name__}) cannot run on {where}: "
        f"it takes {', '.join(sorted(supported))}; rewrite it into those (compile=True does so for a device)"
    )


def _measurements(circuit: cirq.Circuit, index: dict, where: str) -> tuple[dict, dict]:
    keys: dict[str, list[int]] = {}
    invert: dict[str, tuple[bool, ...]] = {}
    seen: set[cirq.Qid] = set()
    for op in circuit.all_operations():
        if isinstance(op.untagged, cirq.ClassicallyControlledOperation):
            raise DeviceValidationError(f"{op} depends on a measurement: {where} measures only at the end")
        if not cirq.is_measurement(op):
            continue
        gate = op.gate
        if not isinstance(gate, cirq.MeasurementGate):
            raise DeviceValidationError(f"{op} is a measurement {where} cannot take; use cirq.measure")
        key = gate.key
        if key in keys or seen.intersection(op.qubits):
            raise DeviceValidationError(
                f"{op} measures a key or a qubit a second time: {where} measures each qubit once, at the end"
            )
        if gate.confusion_map:
            raise DeviceValidationError(f"{op} has a confusion map, which {where} does not apply")
        seen.update(op.qubits)
        keys[key] = [index[q] for q in op.qubits]
        invert[key] = [bool(b) for b in gate.full_invert_mask()]
    if not circuit.are_all_measurements_terminal():
        raise DeviceValidationError(f"a measurement is followed by other gates: {where} measures only at the end")
    return keys, invert


def to_openqasm(program: BraketProgram, params: cirq.ParamResolver | None) -> str:
    """Braket's OpenQASM 3 for the program, with the measurement keys (and the sweep
    point) in a comment: Braket's results carry the program, so a process that follows
    the task after a restart reads the keys back from them (:func:`layout_of`)."""
    source = program.circuit.to_ir(ir_type=IRType.OPENQASM).source
    layout = {"keys": program.keys, "invert": program.invert}
    if params is not None and params.param_dict:
        layout["params"] = {str(k): float(v) for k, v in params.param_dict.items()}
    header, _, body = source.partition("\n")
    return f"{header}\n{LAYOUT_MARK}{json.dumps(layout, separators=(',', ':'))}\n{body}"


def layout_of(source: str, measured_qubits: list[int]) -> dict:
    """The layout :func:`to_openqasm` wrote into a program's source; for a program
    without one (not sent by qnb), every measured qubit under the key ``m``."""
    for line in source.splitlines():
        if line.startswith(LAYOUT_MARK):
            return json.loads(line[len(LAYOUT_MARK) :])
    return {"keys": {"m": list(measured_qubits)}, "invert": {"m": [False] * len(measured_qubits)}}


def to_cirq_result(layout: dict, measured_qubits: list[int], measurements: np.ndarray) -> cirq.ResultDict:
    """Braket's measurements (shots x ``measured_qubits``) as Cirq's, key by key, each
    key's bits in the order its measurement named its qubits."""
    column = {q: i for i, q in enumerate(measured_qubits)}
    data = np.asarray(measurements, dtype=np.int8).reshape(-1, len(measured_qubits))
    found = {}
    for key, qubits in layout["keys"].items():
        bits = data[:, [column[q] for q in qubits]]
        found[key] = bits ^ np.asarray(layout["invert"][key], dtype=np.int8)
    return cirq.ResultDict(params=cirq.ParamResolver(layout.get("params", {})), measurements=found)
