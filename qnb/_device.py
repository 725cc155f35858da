"""What a target can run: :class:`DeviceSpec`, its checks, and compilation onto it.

Compilation is Cirq's own: ``cirq.RouteCQC`` for connectivity and
``cirq.optimize_for_target_gateset`` for native gates.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import cirq
import networkx as nx

from ._circuits import check_qubits_only
from ._errors import DeviceValidationError
from ._target_catalog import DEFAULT_MAX_BATCH, DEFAULT_MAX_SHOTS


@dataclasses.dataclass(frozen=True)
class DeviceSpec:
    """The shape of a target.

    ``qubits``/``connectivity``/``gateset`` are ``None`` where the target takes anything
    (simulators): then only ``max_qubits`` limits the circuit.
    """

    name: str
    max_qubits: int
    qubits: tuple[cirq.Qid, ...] | None = None
    connectivity: tuple[tuple[cirq.Qid, cirq.Qid], ...] | None = None
    gateset: cirq.Gateset | None = None  # what validation accepts
    compile_to: cirq.CompilationTargetGateset | None = None  # what compile produces
    native_gates: tuple[str, ...] = ()  # human-readable names for messages and specs
    max_batch: int = DEFAULT_MAX_BATCH
    max_shots: int = DEFAULT_MAX_SHOTS
    description: str = ""

    @functools.cached_property
    def _edges(self) -> set[frozenset] | None:
        if self.connectivity is None:
            return None
        return {frozenset(edge) for edge in self.connectivity}

    @property
    def takes_qudits(self) -> bool:
        """Simulators (no fixed qubits, no native gates) take qudits; devices do not."""
        return self.qubits is None and self.gateset is None

    @property
    def graph(self) -> nx.Graph | None:
        if self.qubits is None or self.connectivity is None:
            return None
        graph = nx.Graph()
        graph.add_nodes_from(self.qubits)
        graph.add_edges_from(self.connectivity)
        return graph

    def summary(self) -> dict:
        """A JSON-friendly description (used by ``qnb.targets()`` and the server)."""
        return {
            "name": self.name,
            "max_qubits": self.max_qubits,
            "qubits": None if self.qubits is None else [str(q) for q in self.qubits],
            "connectivity": None
            if self.connectivity is None
            else [[str(a), str(b)] for a, b in self.connectivity],
            "native_gates": list(self.native_gates) or None,
            "max_batch": self.max_batch,
            "max_shots": self.max_shots,
            "description": self.description,
        }

    # -- checks ---------------------------------------------------------------------

    def validate(self, label: str, circuit: cirq.Circuit) -> None:
        n = len(circuit.all_qubits())
        if n > self.max_qubits:
            raise DeviceValidationError(
                f"circuit {label!r} uses {n} qubits but target {self.name!r} has "
                f"{self.max_qubits}"
            )
        if not self.takes_qudits:
            check_qubits_only(label, circuit, target=self.name)
        hint = "; submit with compile=True to map it onto the device"
        if self.qubits is not None:
            allowed = set(self.qubits)
            stray = sorted(q for q in circuit.all_qubits() if q not in allowed)
            if stray:
                raise DeviceValidationError(
                    f"circuit {label!r} uses qubits {', '.join(map(str, stray))} that "
                    f"{self.name!r} does not have (it has {_qubit_range(self.qubits)}){hint}"
                )
        edges = self._edges
        if self.gateset is None and edges is None:
            return  # a simulator: any gate between any qubits
        for op in circuit.all_operations():
            if cirq.is_measurement(op) and not isinstance(op.untagged, cirq.CircuitOperation):
                continue  # read out qubit by qubit: any qubits, connected or not
            if self.gateset is not None and op not in self.gateset:
                raise DeviceValidationError(
                    f"circuit {label!r}: gate {op} is not native to {self.name!r} "
                    f"(native: {', '.join(self.native_gates)}){hint}"
                )
            if edges is not None and len(op.qubits) == 2 and frozenset(op.qubits) not in edges:
                a, b = op.qubits
                raise DeviceValidationError(
                    f"circuit {label!r}: {op} acts on {a} and {b}, which are not connected "
                    f"on {self.name!r} (a chain: only neighbours couple){hint}"
                )
            if edges is not None and len(op.qubits) > 2:
                raise DeviceValidationError(
                    f"circuit {label!r}: {op} acts on {len(op.qubits)} qubits; "
                    f"{self.name!r} runs one- and two-qubit gates only{hint}"
                )

    def compile(self, circuit: cirq.Circuit) -> cirq.Circuit:
        """Route onto the connectivity, then rewrite into the native gate set."""
        if len(circuit.all_qubits()) > self.max_qubits:
            raise DeviceValidationError(
                f"a circuit with {len(circuit.all_qubits())} qubits cannot be compiled "
                f"for {self.name!r}, which has {self.max_qubits}"
            )
        if not self.takes_qudits:
            check_qubits_only(None, circuit, target=self.name)
        graph = self.graph
        if graph is not None:
            circuit = _route(circuit, graph, self.qubits or ())
        if self.compile_to is not None:
            circuit = cirq.optimize_for_target_gateset(circuit, gateset=self.compile_to)
            circuit = cirq.drop_negligible_operations(circuit)
            circuit = cirq.drop_empty_moments(circuit)
        return circuit


def _route(circuit: cirq.Circuit, graph: nx.Graph, device_qubits: Sequence[cirq.Qid]) -> cirq.Circuit:
    """Map ``circuit`` onto the device's connectivity with Cirq's router.

    Terminal measurements are taken off first and put back, all in the last moment, on
    the physical qubits where the router left their logical qubits. Routed as they are,
    a measurement of an idle qubit (early in the circuit) can end up before a SWAP
    through its position: the measurements are then no longer terminal and a simulator
    runs every shot on its own (a 3-qubit Toffoli took ~10x longer), and the router
    refuses an "intermediate" measurement of three or more qubits with its own key.
    """
    measurements = [op for op in circuit.all_operations() if cirq.is_measurement(op)]
    splittable = (
        measurements
        and all(isinstance(op.gate, cirq.MeasurementGate) for op in measurements)
        and circuit.are_all_measurements_terminal()
    )
    # The router needs one- and two-qubit gates; measurements it keeps in place.
    router = cirq.RouteCQC(graph)
    if not splittable:
        circuit = cirq.optimize_for_target_gateset(circuit, gateset=cirq.CZTargetGateset())
        return router.route_circuit(circuit)[0]
    body = cirq.Circuit(
        cirq.Moment(op for op in moment if not cirq.is_measurement(op)) for moment in circuit
    )
    body = cirq.optimize_for_target_gateset(body, gateset=cirq.CZTargetGateset())
    placed: dict[cirq.Qid, cirq.Qid] = {}
    routed = cirq.Circuit()
    if body.all_qubits():
        routed, initial, swaps = router.route_circuit(body)
        # initial: logical -> physical at the start; swaps: where each physical
        # qubit's state is at the end.
        placed = {logical: swaps.get(physical, physical) for logical, physical in initial.items()}
    # Qubits that are only measured sit in |0>: any free device qubit will do.
    free = iter(q for q in device_qubits if q not in set(placed.values()))
    for q in sorted({q for op in measurements for q in op.qubits} - placed.keys()):
        placed[q] = next(free)
    last = cirq.Moment(op.with_qubits(*(placed[q] for q in op.qubits)) for op in measurements)
    return cirq.drop_empty_moments(routed) + cirq.Circuit(last)


def _qubit_range(qubits: Sequence[cirq.Qid]) -> str:
    if len(qubits) > 3:
        return f"{qubits[0]} .. {qubits[-1]}"
    return ", ".join(map(str, qubits))


def linear_chain(n: int) -> tuple[tuple[cirq.LineQubit, ...], tuple[tuple[cirq.Qid, cirq.Qid], ...]]:
    qubits = tuple(cirq.LineQubit.range(n))
    return qubits, tuple(zip(qubits, qubits[1:]))
