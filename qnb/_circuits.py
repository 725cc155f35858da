"""Turning what a user submits into labelled Cirq circuits, and the circuit wire format.

The stable wire and store format is Cirq's own JSON, compact (``indent=None`` is ~2.5x
faster than the default). OpenQASM is parsed once, here, and never stored.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Mapping, Sequence

import cirq

from ._errors import InvalidCircuitError


def _make_encoder() -> type[json.JSONEncoder]:
    """Cirq's JSON encoder, with the checks that depend only on an object's type cached.

    For every object (a 350-gate circuit has ~1,200), Cirq's encoder asks a runtime
    ``typing.Protocol`` ``isinstance`` and rebuilds the type's ``cirq_type`` name:
    a third of the encoding time. Both depend on the type alone. The output is the
    same text (tests compare it with ``cirq.to_json``); if Cirq's internals move, the
    plain encoder is used.
    """
    try:
        from cirq.protocols import json_serialization as js

        base, by_key_protocol, type_name = js.CirqEncoder, js.SerializableByKey, js.json_cirq_type
    except (ImportError, AttributeError):  # pragma: no cover - a future Cirq
        return cirq.CirqEncoder if hasattr(cirq, "CirqEncoder") else json.JSONEncoder

    plain_types: dict[type, str] = {}  # type -> cirq_type, for types not serialized by key

    class CachedCirqEncoder(base):
        def default(self, o):
            kind = type(o)
            name = plain_types.get(kind)
            if name is None:
                if not hasattr(o, "_json_dict_") or isinstance(o, by_key_protocol):
                    return super().default(o)
                name = plain_types[kind] = type_name(kind)
            fields = o._json_dict_()
            if "cirq_type" in fields:
                return super().default(o)  # Cirq's own error message
            return {"cirq_type": name, **fields}

    return CachedCirqEncoder


_Encoder = _make_encoder()


def to_json(circuit: cirq.Circuit) -> str:
    return cirq.to_json(circuit, indent=None, cls=_Encoder)


def to_json_many(circuits: Iterable[cirq.Circuit]) -> list[str]:
    """Cirq JSON of a batch, with the cyclic garbage collector paused.

    The encoder allocates thousands of short-lived dicts per circuit, each round of
    them triggering a collection that scans the kernel's whole heap (cirq, numpy,
    the user's data): pausing it makes a large batch ~30% quicker. Nothing cyclic is
    created here, so there is nothing for the collector to find.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return [to_json(c) for c in circuits]
    finally:
        if was_enabled:
            gc.enable()


def from_json(text: str) -> cirq.Circuit:
    return cirq.read_json(json_text=text)


def looks_like_qasm(text: str) -> bool:
    return text.lstrip().startswith("OPENQASM")


def parse_qasm(text: str, *, label: str | None = None) -> cirq.Circuit:
    # Imported lazily: the QASM parser builds its grammar tables on first import.
    from cirq.contrib.qasm_import import QasmException, circuit_from_qasm

    where = f" in circuit {label!r}" if label is not None else ""
    try:
        return circuit_from_qasm(text)
    except QasmException as exc:  # its message names the line
        raise InvalidCircuitError(f"invalid OpenQASM 2.0{where}: {exc.message}") from None
    except Exception as exc:  # the lexer raises plain errors on stray characters
        raise InvalidCircuitError(f"invalid OpenQASM 2.0{where}: {exc}") from None


def _to_circuit(value: object, label: str) -> cirq.Circuit:
    if isinstance(value, cirq.Circuit):
        return value
    if isinstance(value, cirq.FrozenCircuit):
        return value.unfreeze(copy=False)
    if isinstance(value, str):
        if looks_like_qasm(value):
            return parse_qasm(value, label=label)
        raise InvalidCircuitError(
            f"circuit {label!r} is a string that is not OpenQASM 2.0 "
            "(it should start with 'OPENQASM 2.0;')"
        )
    raise InvalidCircuitError(
        f"circuit {label!r} is a {type(value).__name__}, not a cirq.Circuit or an "
        "OpenQASM 2.0 string"
    )


def normalize(circuits: object) -> dict[str, cirq.Circuit]:
    """One circuit, a list (labels "0", "1", ...) or a dict label -> circuit."""
    if isinstance(circuits, (cirq.Circuit, cirq.FrozenCircuit, str)):
        pairs = [("0", circuits)]
    elif isinstance(circuits, Mapping):
        pairs = []
        for label, value in circuits.items():
            if isinstance(label, bool) or not isinstance(label, (str, int)) or label == "":
                raise InvalidCircuitError(
                    f"circuit labels must be non-empty strings (or integers), got {label!r}"
                )
            pairs.append((str(label), value))
    elif isinstance(circuits, Sequence):
        pairs = [(str(i), c) for i, c in enumerate(circuits)]
    else:
        raise InvalidCircuitError(
            f"expected a cirq.Circuit, an OpenQASM 2.0 string, a list or a dict of them, "
            f"got {type(circuits).__name__}"
        )
    if not pairs:
        raise InvalidCircuitError("the batch is empty: give at least one circuit")
    labels = [label for label, _ in pairs]
    if len(set(labels)) != len(labels):
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        raise InvalidCircuitError(f"duplicate circuit labels: {', '.join(dupes)}")
    return {label: _to_circuit(value, label) for label, value in pairs}


def check_measured(label: str, circuit: cirq.Circuit) -> None:
    if not circuit.has_measurements():
        raise InvalidCircuitError(
            f"circuit {label!r} has no measurements, so a run would return nothing; "
            "add e.g. cirq.measure(*qubits, key='m')"
        )


# Operation types already seen to write and read back as Cirq JSON.
_storable_types: set[type] = set()


def _round_trips(op: cirq.Operation) -> bool:
    try:
        cirq.read_json(json_text=cirq.to_json(op, indent=None))
        return True
    except Exception:
        return False


def check_serializable(label: str, circuit: cirq.Circuit) -> None:
    """Refuse operations that Cirq's JSON cannot write and read back.

    Checked once per operation type in a process, so the store write that follows
    cannot fail half way through a batch.
    """
    for op in circuit.all_operations():
        kind = type(op.gate) if op.gate is not None else type(op)
        if kind in _storable_types:
            continue
        if not _round_trips(op):
            raise InvalidCircuitError(
                f"circuit {label!r}: operation {op} ({kind.__name__}) cannot be stored as "
                "Cirq JSON; use Cirq's built-in gates (cirq.decompose(circuit) often helps) "
                "or give the gate _json_dict_ and register its resolver"
            )
        _storable_types.add(kind)
