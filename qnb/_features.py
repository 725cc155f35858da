"""A circuit's :class:`~qnb._estimate.CircuitFeatures` (what time models and price tables
read of it), taken in one pass when it is submitted or estimated."""

from __future__ import annotations

import itertools
import operator

import cirq

from ._estimate import CircuitFeatures


def features_of(circuit: cirq.Circuit) -> CircuitFeatures:
    """One pass over the circuit's operations (repeated subcircuits counted as run).

    ``qnb.estimate`` and every submit take it of each circuit, so the common case (only
    plain gates on qubits) is counted over all operations at once, with C-level maps
    and searches: ~0.05 ms for a 350-gate circuit, where a protocol call per operation
    (``cirq.is_measurement``) cost ~1-3 ms. Anything else (tagged, controlled,
    classically controlled operations, subcircuits) is counted a moment at a time."""
    moments = circuit.moments
    flat = _count_flat(moments)
    if flat is not None:
        counts, terminal = flat
    else:
        counts, terminal = _count_moments(moments)
    return CircuitFeatures(
        qubits=len(circuit.all_qubits()),
        one_qubit_gates=counts[0],
        two_qubit_gates=counts[1],
        multi_qubit_gates=counts[2],
        measurements=counts[3],
        depth=len(moments),
        terminal=terminal,
    )


def _count_flat(moments) -> tuple[list[int], bool] | None:
    """The counts and terminality of a circuit of plain gate operations only, over all
    its operations at once (C-level maps and searches: no Python step per operation or
    per moment); None for any other circuit."""
    ops = list(itertools.chain.from_iterable(m.operations for m in moments))
    if not set(map(type, ops)) <= _PLAIN_OPERATIONS:
        return None
    gates = list(map(_gate_of, ops))
    kinds = list(map(type, gates))
    measuring = {t for t in set(kinds) if _is_measuring(t, gates)}
    widths = list(map(len, map(_qubits_of, ops)))
    counts = [widths.count(1), widths.count(2), 0, 0]
    first = len(ops)  # the first measurement's place
    for kind in measuring:  # (measurements are few: found by C-level searches)
        at = -1
        while True:
            try:
                at = kinds.index(kind, at + 1)
            except ValueError:
                break
            first = min(first, at)
            counts[3] += 1
            if widths[at] in (1, 2):  # counted as a gate above
                counts[widths[at] - 1] -= 1
    counts[2] = len(ops) - counts[0] - counts[1] - counts[3]
    if first == len(ops):
        return counts, True
    # Measured first in moment m: a gate in any later moment makes it mid-circuit.
    end, seen = 0, 0
    for moment in moments:
        seen += len(moment.operations)
        if seen > first:
            end = seen
            break
    return counts, set(kinds[end:]) <= measuring


def _count_moments(moments) -> tuple[list[int], bool]:
    """:func:`_count_flat` for any circuit: a moment at a time."""
    counts = [0, 0, 0, 0]  # 1q, 2q, 3q+, measurements
    mid_measurement = False
    measured_before = False
    for moment in moments:
        ops = moment.operations
        if set(map(type, ops)) <= _PLAIN_OPERATIONS:
            has_measure, has_gate = _count_plain(ops, counts)
        else:
            has_measure = has_gate = False
            for op in ops:
                _count(op, counts, 1)
                measures = cirq.is_measurement(op)
                has_measure = has_measure or measures
                has_gate = has_gate or not measures
        if measured_before and has_gate:
            mid_measurement = True
        measured_before = measured_before or has_measure
    return counts, not mid_measurement


# A gate on qubits, untagged (``cirq.X(q)`` is a Pauli string operation). Their own
# attributes are read in C (the public properties are Python calls: 40% longer); a
# Cirq whose operations lack them takes the general path.
_qubits_of = operator.attrgetter("_qubits")
_gate_of = operator.attrgetter("_gate")
_PLAIN_OPERATIONS = frozenset(
    kind
    for kind, example in (
        (cirq.GateOperation, cirq.H(cirq.LineQubit(0))),
        (cirq.SingleQubitPauliStringGateOperation, cirq.X(cirq.LineQubit(0))),
    )
    if type(example) is kind and hasattr(example, "_qubits") and hasattr(example, "_gate")
)
#: Gate type -> whether its operations are measurements (``cirq.is_measurement``,
#: asked once per type: it is the type's protocol method that answers).
_measuring: dict[type, bool] = {cirq.MeasurementGate: True}


def _count_plain(ops: tuple, counts: list[int]) -> tuple[bool, bool]:
    """Counts a moment of plain gate operations; (has a measurement, has a gate)."""
    gates = list(map(_gate_of, ops))
    kinds = set(map(type, gates))
    measuring = [t for t in kinds if _measuring.get(t) or (t not in _measuring and _is_measuring(t, gates))]
    if measuring:
        others = [op for op, gate in zip(ops, gates) if type(gate) not in measuring]
        counts[3] += len(ops) - len(others)
        ops = others
    if not ops:
        return bool(measuring), False
    widths = list(map(len, map(_qubits_of, ops)))
    ones, twos = widths.count(1), widths.count(2)
    counts[0] += ones
    counts[1] += twos
    counts[2] += len(widths) - ones - twos  # (none or three and more)
    return bool(measuring), True


def _is_measuring(gate_type: type, gates: list) -> bool:
    found = _measuring.get(gate_type)
    if found is None:
        found = _measuring[gate_type] = cirq.is_measurement(next(g for g in gates if type(g) is gate_type))
    return found


# An operation's qubit count -> its place in the counts (none or 3+: "multi").
_WIDTH_INDEX = {1: 0, 2: 1}


def _count(op: cirq.Operation, counts: list[int], times: int) -> None:
    if isinstance(op, cirq.CircuitOperation):
        inner = times * abs(int(op.repetitions)) if isinstance(op.repetitions, int) else times
        for inner_op in op.circuit.all_operations():
            _count(inner_op, counts, inner)
        return
    if cirq.is_measurement(op):
        counts[3] += times
    else:
        counts[_WIDTH_INDEX.get(len(op.qubits), 2)] += times
