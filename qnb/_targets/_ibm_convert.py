"""Cirq circuits to what IBM's Sampler runs, and its answers back to ``cirq.Result``.

The road is Cirq's own OpenQASM 2 writer, then Qiskit's reader (``qiskit.qasm2.loads``),
then Qiskit's preset pass manager for the backend's ISA (its native gates and coupling).
Cirq names the classical register of measurement key ``k`` ``m_k`` (``m0``, ``m1``, ...
when ``m_k`` is no OpenQASM name, e.g. for ``"a b"``); the map from register to key
travels with the circuit as its metadata, which IBM's Sampler hands back with each
result, so a process that re-attaches to a job after a restart reads its keys from IBM.
Register bit ``i`` is qubit ``i`` of the measurement, which is Cirq's order.
"""

from __future__ import annotations

import collections
import importlib.util
import inspect
import threading
import warnings
from collections.abc import Sequence

import cirq
import numpy as np

from .._circuits import check_qubits_only
from .._device import DeviceSpec
from .._errors import DeviceValidationError, InvalidOptionError

#: The circuit metadata entry holding ``{register name: measurement key}``.
KEYS_METADATA = "qnb_measurement_keys"
#: What stands for a sweep's symbols when a circuit is only checked (any number will do:
#: which gates OpenQASM can say does not depend on the angle).
_CHECK_ANGLE = 0.123

# Cirq's writer warns on every gate whose decomposition has a global phase, which no
# measurement can see: said once here, not once per circuit in a user's notebook.
warnings.filterwarnings("ignore", message="OpenQASM 2.0 does not support global phase")


def to_qasm(label: str, circuit: cirq.Circuit) -> tuple[str, dict[str, str]]:
    """OpenQASM 2 text of a resolved circuit and ``{register: key}``; refuses what
    OpenQASM 2 (hence IBM) cannot take, naming it."""
    circuit = cirq.unroll_circuit_op(circuit, deep=True, tags_to_check=None)
    keys = collections.Counter(
        cirq.measurement_key_name(op) for op in circuit.all_operations() if isinstance(op.gate, cirq.MeasurementGate)
    )
    if not keys or keys.most_common(1)[0][1] > 1:
        raise DeviceValidationError(
            f"circuit {label!r} measures key {keys.most_common(1)[0][0]!r} more than once; IBM's sampler "
            "keeps one register per key: give each measurement its own key" if keys else
            f"circuit {label!r} measures nothing, and IBM's sampler returns only measured bits: "
            "add cirq.measure(...) at the end"
        )  # fmt: skip
    output = cirq.QasmOutput(circuit.all_operations(), tuple(sorted(circuit.all_qubits())))
    try:
        text = str(output)
    except (ValueError, TypeError) as exc:  # Cirq's message names the operation
        raise DeviceValidationError(
            f"circuit {label!r}: OpenQASM 2 (the road to IBM) cannot say it: {exc}; replace the "
            "operation by gates (noise channels run only on simulators)"
        ) from None
    return text, {register: key for key, register in output.args.meas_key_id_map.items()}


def to_qiskit(label: str, circuit: cirq.Circuit):
    """A resolved Cirq circuit as a Qiskit ``QuantumCircuit`` carrying its key map."""
    from qiskit import qasm2

    text, registers = to_qasm(label, circuit)
    try:
        loaded = qasm2.loads(text, custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS)
    except Exception as exc:  # Qiskit's reader refusing Cirq's writer: name both
        raise DeviceValidationError(
            f"circuit {label!r}: Qiskit cannot read Cirq's OpenQASM 2 for it ({exc})"
        ) from None
    loaded.metadata = {KEYS_METADATA: registers}
    return loaded


def check(label: str, circuit: cirq.Circuit, max_qubits: int, target: str) -> None:
    """At submit: qubits only, not too many, and every operation sayable in OpenQASM 2
    (a sweep's symbols stand at a placeholder angle)."""
    check_qubits_only(label, circuit, target=target)
    n = len(circuit.all_qubits())
    if n > max_qubits:
        raise DeviceValidationError(
            f"circuit {label!r} uses {n} qubits but target {target!r} has {max_qubits}"
        )
    symbols = cirq.parameter_names(circuit)
    if symbols:
        circuit = cirq.resolve_parameters(circuit, {s: _CHECK_ANGLE for s in symbols})
    to_qasm(label, circuit)


class Transpiler:
    """Onto the backend's ISA with Qiskit's preset pass manager (layout, routing, native
    gates); the key map stays in each circuit's metadata. Making the pass manager costs
    ~0.1 s, so each thread keeps one (a pass manager is not shared between threads:
    its passes hold the run's state while they run)."""

    def __init__(self, backend, optimization_level: int):
        self.backend = backend
        self.optimization_level = optimization_level
        self._local = threading.local()

    def __call__(self, circuits: Sequence) -> list:
        manager = getattr(self._local, "manager", None)
        if manager is None:
            from qiskit.transpiler.preset_passmanagers import generate_preset_pass_manager

            manager = generate_preset_pass_manager(backend=self.backend, optimization_level=self.optimization_level)
            self._local.manager = manager
        out = manager.run(list(circuits))
        return out if isinstance(out, list) else [out]


def to_cirq_json(pub_result, params: cirq.ParamResolver | None) -> str:
    """One Sampler pub result as Cirq JSON of a ``cirq.Result`` with the user's keys."""
    registers = (pub_result.metadata.get("circuit_metadata") or {}).get(KEYS_METADATA)
    if registers is None:
        raise ValueError("the result does not carry qnb's measurement keys (not a qnb job?)")
    measurements = {}
    for register, bits in pub_result.data.items():
        key = registers.get(register, register)
        # Little-endian: column i is register bit i, which is Cirq's qubit i of the key.
        measurements[key] = np.asarray(bits.to_bool_array(order="little"), dtype=np.int8)
    result = cirq.ResultDict(params=params or cirq.ParamResolver({}), measurements=measurements)
    return cirq.to_json(result, indent=None)


def fake_backend(name_or_backend):
    """A fake backend of ``qiskit_ibm_runtime.fake_provider`` by name (``"fake_brisbane"``),
    or the instance given; ``None`` when it is neither (a real backend's name)."""
    from qiskit_ibm_runtime import fake_provider
    from qiskit_ibm_runtime.fake_provider.fake_backend import FakeBackendV2

    if not isinstance(name_or_backend, FakeBackendV2) and not str(name_or_backend).startswith("fake_"):
        return None
    if importlib.util.find_spec("qiskit_aer") is None:  # the local testing mode's simulator
        raise InvalidOptionError(
            "a rehearsal on a fake IBM backend runs on Qiskit Aer, which is not installed: "
            "pip install qiskit-aer (the extra qnb[ibm] brings it)"
        )
    if isinstance(name_or_backend, FakeBackendV2):
        return name_or_backend
    classes = {
        cls.backend_name: cls
        for cls in vars(fake_provider).values()
        if inspect.isclass(cls) and issubclass(cls, FakeBackendV2) and cls is not FakeBackendV2
    }
    if name_or_backend not in classes:
        known = ", ".join(sorted(classes))
        raise InvalidOptionError(
            f"no fake backend {name_or_backend!r} in qiskit_ibm_runtime.fake_provider; known: {known}"
        )
    return classes[name_or_backend]()


def device_from(name: str, backend, where: str, max_batch: int | None) -> DeviceSpec:
    """The device as the backend's target says it: qubits, coupling, native gates.
    Validation does not insist on them: Qiskit's transpiler maps every circuit onto
    the ISA before it is sent (``compile=True`` also maps it in Cirq, to CZ gates)."""
    target = backend.target
    n = target.num_qubits
    qubits = tuple(cirq.LineQubit.range(n))
    coupling = target.build_coupling_map()
    connectivity = None
    if coupling is not None:
        pairs = {tuple(sorted(edge)) for edge in coupling.get_edges() if edge[0] != edge[1]}
        connectivity = tuple((qubits[a], qubits[b]) for a, b in sorted(pairs))
    config = backend.configuration() if hasattr(backend, "configuration") else None
    max_shots = int(getattr(config, "max_shots", 0) or 100_000)
    batch = max_batch or min(int(getattr(config, "max_experiments", 0) or 300), 300)
    control = ("delay", "for_loop", "if_else", "switch_case")  # instructions, not gates
    natives = tuple(sorted(g for g in target.operation_names if g not in control))
    return DeviceSpec(
        name=name, max_qubits=n, qubits=qubits, connectivity=connectivity,
        compile_to=cirq.CZTargetGateset(), native_gates=natives,
        max_batch=batch, max_shots=max_shots,
        description=f"{where}: {n} qubits, {len(connectivity or ())} couplings, native gates {', '.join(natives)}",
    )  # fmt: skip
