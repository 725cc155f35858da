"""Cirq circuits in Azure Quantum providers' own input formats, and their answers back as
``cirq.Result``s with the user's measurement keys and Cirq's bit order.

- **IonQ** (``ionq.circuit.v1``): the JSON of cirq-ionq's own serializer. IonQ answers
  probabilities keyed by little-endian integers (``{"histogram": {"3": 0.5, ...}}``);
  cirq-ionq's result classes read them back (sampled with a seed on the simulator, as
  cirq-ionq does; ``round(p * shots)`` counts on a QPU).
- **Quantinuum** (``honeywell.openqasm.v1``): Cirq's OpenQASM 2. Quantinuum answers each
  classical register shot by shot (``{"m_key": ["01", ...]}``), each string with the
  register's highest bit first (as pytket-quantinuum reads it). Cirq names the register
  of key ``k`` ``m_k`` (or ``m0``, ``m1``, ... when ``k`` is no QASM name), so the map
  back travels with the job, in its metadata at Azure.

What is needed to read an answer is kept in the Azure job's metadata (strings only), so
a new process reads a job it did not submit.
"""

from __future__ import annotations

import dataclasses
import json
import re
import warnings

import cirq
import cirq_ionq
import numpy as np
from cirq_ionq import results as ionq_results

#: The OpenQASM 2 instructions Quantinuum takes (qelib1.inc and its own), of those Cirq writes.
QUANTINUUM_QASM = frozenset(
    "u3 u2 u1 u p x y z h s sdg t tdg sx sxdg rx ry rz cx cy cz ch swap ccx cswap crx cry "
    "crz cu1 cu3 cp rxx rzz zz u1q rzzyyxx id measure reset barrier if".split()
)
_INSTRUCTION = re.compile(r"^\s*([a-z_][a-z0-9_]*)", re.IGNORECASE)
_DECLARATIONS = {"OPENQASM", "include", "qreg", "creg", "gate", "opaque"}
#: Metadata key of the register -> measurement key map (Quantinuum).
REGISTERS = "qnb_registers"


@dataclasses.dataclass
class Program:
    """One circuit in a provider's input format: the input blob, and what reading its
    answer needs (kept as the Azure job's metadata)."""

    data: bytes
    metadata: dict[str, str]


def to_program(provider: str, circuit: cirq.Circuit, shots: int) -> Program:
    """``circuit`` (resolved) as ``provider`` takes it; ValueError when it cannot."""
    if provider == "ionq":
        serialized = cirq_ionq.Serializer().serialize_single_circuit(circuit)
        metadata = {key: str(value) for key, value in serialized.metadata.items()}
        metadata.update(qubits=str(serialized.input["qubits"]), shots=str(shots))
        return Program(json.dumps(serialized.input).encode(), metadata)
    qasm, registers = _qasm(circuit)
    return Program(qasm.encode(), {REGISTERS: json.dumps(registers), "shots": str(shots)})


def _qasm(circuit: cirq.Circuit) -> tuple[str, dict[str, str]]:
    """Cirq's OpenQASM 2 of ``circuit`` and its registers' measurement keys."""
    if cirq.is_parameterized(circuit):
        raise ValueError(f"unresolved parameters {sorted(cirq.parameter_names(circuit))}")
    output = cirq.QasmOutput(circuit.all_operations(), tuple(sorted(circuit.all_qubits())), version="2.0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "OpenQASM 2.0 does not support global phase": harmless
        text = str(output)
    for line in text.splitlines():
        found = _INSTRUCTION.match(line)
        if found and found.group(1) not in _DECLARATIONS and found.group(1).lower() not in QUANTINUUM_QASM:
            raise ValueError(f"Quantinuum does not take the OpenQASM instruction {line.strip()!r}")
    return text, {register: key for key, register in output.args.meas_key_id_map.items()}


def refusal(provider: str, circuit: cirq.Circuit) -> str | None:
    """Why ``provider`` cannot take ``circuit`` (naming the first gate it refuses), or None.
    Parameters are set to a sample value first: a gate's kind does not depend on its angle."""
    try:
        to_program(provider, _sampled(circuit), 1)
        return None
    except Exception as exc:  # noqa: BLE001 - the converter's reason, whatever it is
        whole = str(exc)
    for op in circuit.all_operations():
        if cirq.is_measurement(op):
            continue
        try:
            to_program(provider, _sampled(cirq.Circuit(op)), 1)
        except Exception as exc:  # noqa: BLE001
            return f"gate {op} ({type(op.gate).__name__}) cannot be taken: {exc}"
    return whole


def _sampled(circuit: cirq.Circuit) -> cirq.Circuit:
    if not cirq.is_parameterized(circuit):
        return circuit
    return cirq.resolve_parameters(circuit, {name: 0.25 for name in cirq.parameter_names(circuit)})


def to_result(
    provider: str, payload: object, metadata: dict, params: cirq.ParamResolver | None, *,
    simulator: bool, seed: int,
) -> cirq.Result:  # fmt: skip
    """The provider's answer (the output blob, parsed) as a ``cirq.Result``."""
    if not isinstance(payload, dict):
        raise ValueError(f"the job's output is not a JSON object: {str(payload)[:200]!r}")
    resolver = params or cirq.ParamResolver({})
    if provider == "ionq":
        return _ionq_result(payload, metadata, resolver, simulator=simulator, seed=seed)
    return _quantinuum_result(payload, metadata, resolver)


def _ionq_result(payload: dict, metadata: dict, resolver, *, simulator: bool, seed: int) -> cirq.Result:
    if "histogram" not in payload:
        raise ValueError("IonQ's output has no 'histogram'")
    n_qubits, shots = int(metadata["qubits"]), int(metadata["shots"])
    # cirq-ionq's own reading of the measurement keys it wrote into the metadata.
    keys = cirq_ionq.Job(None, {"id": "", "status": "completed", "metadata": metadata}).measurement_dict()
    big_endian = {_reversed_bits(int(k), n_qubits): float(p) for k, p in payload["histogram"].items()}
    if simulator:
        made = ionq_results.SimulatorResult(big_endian, n_qubits, keys, shots)
        return made.to_cirq_result(params=resolver, seed=seed)
    counts = {state: round(shots * p) for state, p in big_endian.items()}
    return ionq_results.QPUResult(counts, n_qubits, keys).to_cirq_result(params=resolver)


def _reversed_bits(value: int, n_bits: int) -> int:
    """IonQ's little-endian state number as Cirq's (qubit 0 the highest bit)."""
    return cirq.big_endian_bits_to_int(cirq.big_endian_int_to_bits(value, bit_count=n_bits)[::-1])


def _quantinuum_result(payload: dict, metadata: dict, resolver) -> cirq.Result:
    registers: dict[str, str] = json.loads(metadata[REGISTERS])
    measurements = {}
    for register, key in registers.items():
        shots = payload.get(register)
        if not isinstance(shots, list):
            raise ValueError(f"Quantinuum's output has no register {register!r} (measurement key {key!r})")
        # Each string is the register's highest bit first: Cirq's bit j is character -1-j.
        measurements[key] = np.array([[int(bit) for bit in reversed(s)] for s in shots], dtype=np.int8)
    return cirq.ResultDict(params=resolver, measurements=measurements)
