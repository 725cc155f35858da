"""Turning what a user submits into labelled Cirq circuits, and the circuit wire format.

The stable wire and store format is Cirq's own JSON, compact (no indentation, no
spaces), written by orjson with Cirq's encoder deciding what each object becomes.
OpenQASM is parsed once, here, and never stored.
"""

from __future__ import annotations

import gc
import json
import operator
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import NamedTuple

import cirq
import numpy as np
import orjson
import sympy

from ._errors import DeviceValidationError, InvalidCircuitError, LimitExceededError


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
    # Qubits are few and named again by every operation on them: their dicts are kept
    # (a 12-qubit, 350-gate circuit names them ~470 times).
    qubit_types = (cirq.LineQubit, cirq.GridQubit, cirq.NamedQubit)
    qubit_dicts: dict[cirq.Qid, dict] = {}
    direct = _DIRECT_FIELDS  # the types most circuits are made of (see below)

    class CachedCirqEncoder(base):
        def default(self, o):
            kind = type(o)
            fields_of = direct.get(kind)
            if fields_of is not None:
                found = fields_of(o)
                if found is not None:
                    return found
            if kind in qubit_types:
                found = qubit_dicts.get(o)
                if found is None:
                    found = qubit_dicts[o] = {"cirq_type": type_name(kind), **o._json_dict_()}
                    if len(qubit_dicts) > 100_000:  # bounded: a long session's many qubits
                        qubit_dicts.clear()
                return found
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


def _eigen_gate_fields(name: str):
    return lambda gate: {"cirq_type": name, "exponent": gate.exponent, "global_shift": gate.global_shift}


def _checked_against_cirq(writers: Mapping[type, Callable]) -> dict[type, Callable]:
    """The writers that give what Cirq's own ``_json_dict_`` gives for an example of
    their type (a future Cirq that writes a type differently gets its own way)."""
    q0, q1 = cirq.LineQubit.range(2)
    examples = {
        cirq.GateOperation: cirq.CZ(q0, q1),
        cirq.Moment: cirq.Moment(cirq.X(q0)),
        cirq.Circuit: cirq.Circuit(cirq.X(q0)),
        cirq.PhasedXZGate: cirq.PhasedXZGate(x_exponent=0.1, z_exponent=0.2, axis_phase_exponent=0.3),
    }
    kept = {}
    for kind, write in writers.items():
        try:
            example = examples.get(kind) or kind(exponent=0.5, global_shift=0.25)
            cirqs_own = {"cirq_type": kind.__name__, **example._json_dict_()}
        except Exception:  # noqa: BLE001 - an example this Cirq cannot make: not ours to write
            continue
        if write(example) == cirqs_own:
            kept[kind] = write
    return kept


# The types most circuits are made of, written straight from their public properties
# rather than through ``_json_dict_`` and a second dict: a 350-gate circuit is written in
# ~30% less time. Each is what Cirq's own ``_json_dict_`` writes (None: ask Cirq, e.g.
# for tags, which Cirq writes only when there are some), checked on an example when this
# module loads; the tests compare them on every type of Cirq's JSON test data.
_DIRECT_FIELDS: dict[type, Callable] = _checked_against_cirq({
    cirq.GateOperation: lambda op: {"cirq_type": "GateOperation", "gate": op.gate, "qubits": op.qubits},
    cirq.Moment: lambda m: None if m.tags else {"cirq_type": "Moment", "operations": m.operations},
    cirq.Circuit: lambda c: None if c.tags else {"cirq_type": "Circuit", "moments": c.moments},
    cirq.PhasedXZGate: lambda g: {
        "cirq_type": "PhasedXZGate",
        "axis_phase_exponent": g.axis_phase_exponent,
        "x_exponent": g.x_exponent,
        "z_exponent": g.z_exponent,
    },
    # Gates that keep EigenGate's own _json_dict_ (XPowGate, ZPowGate, ... add a qudit's
    # dimension to theirs, so they are asked).
    **{
        kind: _eigen_gate_fields(kind.__name__)
        for kind in (cirq.CZPowGate, cirq.CXPowGate, cirq.HPowGate, cirq.SwapPowGate,
                     cirq.ISwapPowGate, cirq.CCZPowGate, cirq.CCXPowGate, cirq.XXPowGate,
                     cirq.YYPowGate, cirq.ZZPowGate)
        if kind._json_dict_ is cirq.EigenGate._json_dict_
    },
})  # fmt: skip


_Encoder = _make_encoder()


# orjson writes the JSON text itself, ~2.5x quicker than the standard library here (a
# 350-gate circuit: ~1 ms instead of ~2.3 ms, paid per circuit while the batch runs).
# Cirq's encoder still decides what every Cirq object becomes; dataclasses and datetimes
# go to it too, as the standard library would send them.
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATACLASS | orjson.OPT_PASSTHROUGH_DATETIME


def to_json(circuit: cirq.Circuit) -> str:
    """Cirq JSON of ``circuit`` (or any Cirq object), compact; ``cirq.read_json`` reads it.

    The same document as ``cirq.to_json(circuit, indent=None)``, but without spaces after
    separators. Where orjson would write something else (NaN, which it writes as null;
    integers beyond 64 bits), the standard library's encoder writes it instead.
    """
    encode = _Encoder().default
    tree = circuit
    if type(circuit) is cirq.Circuit and not circuit.tags:
        text = _circuit_text(circuit, encode) if _TEXT_WRITER_MATCHES else None
        if text is not None:
            return text
        tree = _circuit_tree(circuit, encode)
    try:
        text = orjson.dumps(tree, default=encode, option=_ORJSON_OPTIONS)
    except TypeError:  # (orjson.JSONEncodeError is one): an int beyond 64 bits, ...
        text = None
    if text is None or b"null" in text:  # null: maybe a NaN (Cirq's JSON writes NaN)
        return cirq.to_json(circuit, indent=None, cls=_Encoder)
    return text.decode()


# -- a circuit's structure built here ----------------------------------------------------
#
# Moments, gate operations and their qubits are built as dicts here, in one loop, and
# orjson writes the whole tree: ~30% quicker for a 350-gate circuit than orjson calling
# the encoder back for each of its ~1,200 objects. Gates go to the same direct writers
# and anything else (a tagged moment, another kind of operation, another gate) to the
# encoder, as before: the document is the same.

_qubit_dicts: dict[cirq.Qid, dict] = {}


def _circuit_tree(circuit: cirq.Circuit, encode: Callable) -> dict:
    direct, qubit_dicts = _DIRECT_FIELDS, _qubit_dicts
    moments: list = []
    for moment in circuit.moments:
        if moment.tags:
            moments.append(moment)
            continue
        ops: list = []
        for op in moment.operations:
            if type(op) is cirq.GateOperation:
                gate = op.gate
                write = direct.get(type(gate))
                fields = None if write is None else write(gate)
                if fields is not None:
                    qubits = []
                    for q in op.qubits:
                        found = qubit_dicts.get(q)
                        if found is None:
                            if len(qubit_dicts) > 100_000:  # bounded, as the encoder's
                                qubit_dicts.clear()
                            found = qubit_dicts[q] = encode(q)
                        qubits.append(found)
                    ops.append({"cirq_type": "GateOperation", "gate": fields, "qubits": qubits})
                    continue
            ops.append(op)
        moments.append({"cirq_type": "Moment", "operations": ops})
    return {"cirq_type": "Circuit", "moments": moments}


# -- a circuit's text written here --------------------------------------------------------
#
# Quicker still (~2x for a 350-gate circuit): the text itself is written here. An
# operation of a common gate is a fixed text but for its numbers (``%s``), kept per gate
# type; its qubits' text is kept per qubit (or tuple of qubits); orjson writes all the
# numbers of a circuit in one call (a float ~30x quicker than ``repr``), and they go into
# their places with one ``%``. Other gates and operations are written by orjson with the
# encoder, one each. Whatever this writer does not take (a tagged moment; NaN or an int
# beyond 64 bits among the numbers) is left to the tree above. It writes bytes, as orjson
# does: ``bytes % values`` is ~3x quicker than ``str % values`` with 700 values.

_OPERATION_TEXT = b'{"cirq_type":"GateOperation","gate":'
_NEXT_OPERATION_TEXT = b"," + _OPERATION_TEXT
_QUBITS_TEXT = b',"qubits":'
_MOMENT_TEXT = b'{"cirq_type":"Moment","operations":['


def _eigen_template(kind: type, *, qubits_only: bool = False) -> tuple[str, Callable]:
    text = f'{{"cirq_type":"{kind.__name__}","exponent":%s,"global_shift":%s}}'
    if qubits_only:  # (X, Y, Z: a qudit's dimension is written too; anything else is refused)
        return text, lambda g: (g._exponent, g._global_shift) if g._dimension == 2 else (_NOT_WRITTEN_HERE,)
    return text, operator.attrgetter("_exponent", "_global_shift")


_NOT_WRITTEN_HERE = object()  # orjson cannot write it: the tree writes the circuit


def _template_example(kind: type) -> cirq.Gate:
    if kind is cirq.PhasedXZGate:
        return kind(x_exponent=0.125, z_exponent=0.25, axis_phase_exponent=0.375)
    return kind(exponent=0.5, global_shift=0.25)


_SHARED_GATES = (cirq.CZ, cirq.CNOT, cirq.H, cirq.SWAP, cirq.ISWAP, cirq.CCZ, cirq.CCX, cirq.XX, cirq.YY, cirq.ZZ)


def _checked_templates() -> dict[type, tuple]:
    """gate type -> (its text with ``%s`` for each number, what reads the numbers), for
    the types whose text, on an example, is the document Cirq writes."""
    templates: dict[type, tuple[str, Callable]] = {
        cirq.PhasedXZGate: (
            '{"cirq_type":"PhasedXZGate","axis_phase_exponent":%s,"x_exponent":%s,"z_exponent":%s}',
            operator.attrgetter("_axis_phase_exponent", "_x_exponent", "_z_exponent"),
        ),
        **{kind: _eigen_template(kind) for kind in (
            cirq.CZPowGate, cirq.CXPowGate, cirq.HPowGate, cirq.SwapPowGate, cirq.ISwapPowGate,
            cirq.CCZPowGate, cirq.CCXPowGate, cirq.XXPowGate, cirq.YYPowGate, cirq.ZZPowGate)},
        **{kind: _eigen_template(kind, qubits_only=True) for kind in (cirq.XPowGate, cirq.YPowGate, cirq.ZPowGate)},
    }  # fmt: skip
    kept = {}
    for kind, (text, numbers) in templates.items():
        try:
            example = _template_example(kind)
            written = json.loads(text % tuple(map(repr, numbers(example))))
            if written == {"cirq_type": kind.__name__, **example._json_dict_()}:
                # (With what starts its operation: first in its moment, or after a comma;
                # and whether Cirq has shared gate objects of the type, see below.)
                shared = any(type(gate) is kind for gate in _SHARED_GATES)
                kept[kind] = (text, numbers, _OPERATION_TEXT + text.encode(), _NEXT_OPERATION_TEXT + text.encode(), shared)
        except Exception:  # noqa: BLE001 - a type this Cirq makes otherwise: the tree writes it
            continue
    return kept


_GATE_TEMPLATES = _checked_templates()


def _shared_gate_texts() -> dict[int, tuple[cirq.Gate, bytes, bytes]]:
    """Cirq's own gate objects that circuits use again and again (``cirq.CZ``, ...), by
    id: their operations' start with their numbers written in (a third of a brickwork
    circuit's numbers are cirq.CZ's). The gates are kept: their ids stay theirs."""
    shared = {}
    for gate in _SHARED_GATES:
        template = _GATE_TEMPLATES.get(type(gate))
        if template is None:
            continue
        numbers = orjson.dumps(list(template[1](gate)))
        if b"null" in numbers:  # pragma: no cover - Cirq's own gates hold finite numbers
            continue
        text = template[0].encode() % tuple(numbers[1:-1].split(b","))
        shared[id(gate)] = (gate, _OPERATION_TEXT + text, _NEXT_OPERATION_TEXT + text)
    return shared


_SHARED_GATE_TEXTS = _shared_gate_texts()
_scanned: dict[type, tuple] | None = None


def _scanned_templates() -> dict[type, tuple]:
    """The templates of gate types that store: an example of each round-trips through
    Cirq's JSON (once a process, on first use; as :func:`check_serializable` would
    find), so that a gate of them with plain numbers needs no other check."""
    global _scanned
    if _scanned is None:
        kept = {}
        for kind, template in _GATE_TEMPLATES.items():
            example = _template_example(kind)
            op = example.on(*cirq.LineQubit.range(example.num_qubits()))
            if _round_trips(op):
                _storable_kinds.add((kind,))
                _plain_storable.add(kind)
                kept[kind] = template
        _scanned = kept
    return _scanned

_qubits_texts: dict[object, tuple[tuple, bytes]] = {}  # id(s) of qubits -> (them, their text)


def _circuit_text(circuit: cirq.Circuit, encode: Callable) -> str | None:
    """The circuit's Cirq JSON, or None if the tree must write it (see above)."""
    written = _written(circuit, encode, _GATE_TEMPLATES)
    return None if written is None else written.text


class _Written(NamedTuple):
    text: str
    #: The operations not written from a template (in order), and whether every number
    #: of those that were is a plain number (no symbol, nothing written as an object).
    others: list[cirq.Operation]
    plain_numbers: bool


def _written(circuit: cirq.Circuit, encode: Callable, templates: Mapping[type, tuple]) -> _Written | None:
    qubits_texts, gate_operation, shared_texts = _qubits_texts, cirq.GateOperation, _SHARED_GATE_TEXTS
    parts = [b'{"cirq_type":"Circuit","moments":[']
    add = parts.append
    numbers: list = []
    add_numbers = numbers.extend
    others: list[cirq.Operation] = []
    other_gates: dict[int, bytes] = {}  # id(gate) -> its text, for gates without a template
    moment_start = _MOMENT_TEXT
    for moment in circuit.moments:
        if moment.tags:
            return None
        add(moment_start)
        moment_start = b"]}," + _MOMENT_TEXT
        following = 0  # (1 after the moment's first operation: a comma before the next)
        for op in moment.operations:
            if type(op) is not gate_operation:
                others.append(op)
                text = _escaped(orjson.dumps(op, default=encode, option=_ORJSON_OPTIONS))
                if text is None:
                    return None
                add(b"," + text if following else text)
                following = 1
                continue
            gate, qubits = op._gate, op._qubits
            template = templates.get(type(gate))
            if template is not None:
                shared = shared_texts.get(id(gate)) if template[4] else None  # (cirq.CZ, ...: numbers written in)
                if shared is None:
                    add_numbers(template[1](gate))
                    gate_text = template[2 + following]
                else:
                    gate_text = shared[1 + following]
            else:
                others.append(op)
                gate_text = other_gates.get(id(gate))
                if gate_text is None:
                    gate_text = _escaped(orjson.dumps(gate, default=encode, option=_ORJSON_OPTIONS))
                    if gate_text is None:
                        return None
                    other_gates[id(gate)] = gate_text
                gate_text = (_NEXT_OPERATION_TEXT if following else _OPERATION_TEXT) + gate_text
            n = len(qubits)
            key = id(qubits[0]) if n == 1 else (id(qubits[0]), id(qubits[1])) if n == 2 else tuple(map(id, qubits))
            found = qubits_texts.get(key)
            if found is None:
                found = _qubits_text(key, qubits, encode)
                if found is None:
                    return None
            add(gate_text + found[1])
            following = 1
    add(b"]}]}" if circuit.moments else b"]}")
    values = _number_texts(numbers, encode)
    if values is None:
        return None
    return _Written((b"".join(parts) % values[0]).decode(), others, values[1])


def _escaped(text: bytes) -> bytes | None:
    """Text written by orjson, ready for ``%`` (None: a null, maybe a NaN: the tree writes it)."""
    if b"null" in text:
        return None
    return text.replace(b"%", b"%%")


def _qubits_text(key: object, qubits: tuple, encode: Callable) -> tuple[tuple, bytes] | None:
    text = _escaped(orjson.dumps(list(qubits), default=encode, option=_ORJSON_OPTIONS))
    if text is None:
        return None
    if len(_qubits_texts) > 100_000:  # bounded: a long session's many qubits
        _qubits_texts.clear()
    # The qubits are kept with their text, so their ids name them while it is kept.
    found = _qubits_texts[key] = (qubits, _QUBITS_TEXT + text + b"}")
    return found


def _number_texts(numbers: list, encode: Callable) -> tuple[tuple[bytes, ...], bool] | None:
    """Each value's text as orjson writes it (numbers in one call), and whether all are
    plain numbers; None where the tree must write the circuit (NaN, which orjson writes
    as null; an int beyond 64 bits)."""
    if not numbers:
        return (), True
    try:
        text = orjson.dumps(numbers, default=encode, option=_ORJSON_OPTIONS)
    except TypeError:
        return None
    if b"null" in text:
        return None
    inner = text[1:-1]
    if not (b'"' in inner or b"{" in inner or b"[" in inner):  # plain numbers: no commas inside
        return tuple(inner.split(b",")), True
    # Not numbers only (a parameter's sympy expression): each written on its own.
    try:
        each = [_escaped(orjson.dumps(v, default=encode, option=_ORJSON_OPTIONS)) for v in numbers]
    except TypeError:
        return None
    return None if None in each else (tuple(each), False)


def _text_writer_matches() -> bool:
    """Whether the writer above gives Cirq's document for an example of what it writes
    (a future Cirq that keeps operations otherwise gets the tree)."""
    a, b = cirq.LineQubit.range(2)
    g, n = cirq.GridQubit(0, 1), cirq.NamedQubit("n%s")
    example = cirq.Circuit(
        cirq.Moment(cirq.PhasedXZGate(x_exponent=0.5, z_exponent=-1, axis_phase_exponent=0.25)(a), cirq.X(g)),
        cirq.Moment(cirq.CZ(a, b) ** 0.5, cirq.rx(0.125)(n)),
        cirq.Moment(),
        cirq.Moment(cirq.H(a).with_tags("tag"), cirq.measure(b, g, n, key="m%")),
    )
    try:
        text = _circuit_text(example, _Encoder().default)
        return text is not None and json.loads(text) == json.loads(cirq.to_json(example))
    except Exception:  # noqa: BLE001
        return False


_TEXT_WRITER_MATCHES = _text_writer_matches()


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


class CircuitTexts(Sequence[str]):
    """A job's circuits as Cirq JSON, in item order: each distinct circuit (a sweep's
    points share one) written once, when first asked for.

    One object serves both readers of the text, so a circuit is serialized once: the
    store's insert (:meth:`written`, all of them, in the submitting thread) and the
    executor that sends an item to a worker (``texts[i]``, on the JobManager's side: a
    job starts before its insert, and its first items should not wait for the whole
    batch to be written). A thread that asks for an item another is writing waits for
    that text rather than writing it again.
    """

    def __init__(self, circuits: Iterable[cirq.Circuit], written: Sequence[str | None] | None = None):
        """``written``: the texts already written (by :func:`scan`), None where not."""
        self._circuits = list(circuits)
        self._texts: list[str | None] = [None] * len(self._circuits) if written is None else list(written)
        self._by_circuit: dict[int, str] = {}  # id(circuit) -> text, for shared circuits
        self._writing: dict[int, threading.Lock] = {}  # id(circuit) -> its writer's lock
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, index):  # type: ignore[override]
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        text = self._texts[index]
        if text is None:
            text = self._texts[index] = self._text_of(self._circuits[index])
        return text

    def _text_of(self, circuit: cirq.Circuit) -> str:
        key = id(circuit)
        with self._lock:
            text = self._by_circuit.get(key)
            if text is not None:
                return text
            writing = self._writing.get(key)
            mine = writing is None
            if mine:
                writing = self._writing[key] = threading.Lock()
                writing.acquire()
        if not mine:
            with writing:  # written by the other thread meanwhile (unless it failed)
                text = self._by_circuit.get(key)
            return text if text is not None else to_json(circuit)
        try:
            text = self._by_circuit[key] = to_json(circuit)
        finally:
            writing.release()
        return text

    def written(self) -> list[str]:
        """Every item's text (those not written yet written now, the garbage collector
        paused as in :func:`to_json_many`)."""
        if None in self._texts:
            was_enabled = gc.isenabled()
            gc.disable()
            try:
                for i in range(len(self._texts)):
                    self[i]
            finally:
                if was_enabled:
                    gc.enable()
        return list(self._texts)  # type: ignore[arg-type]


def from_json_many(texts: Sequence[str]) -> list[cirq.Circuit]:
    """Circuits from stored Cirq JSON, each distinct text parsed once (a sweep's points
    share one circuit), in order."""
    parsed = {text: from_json(text) for text in set(texts)}
    return [parsed[text] for text in texts]


def from_json(text: str) -> cirq.Circuit:
    """The object (a circuit) that ``cirq.read_json`` reads from ``text``.

    Read here for the common case (orjson, then what Cirq's reader would call for each
    object, with a gate operation of a common gate on qubits checked once per gate type
    and number of qubits): ~3x quicker than ``cirq.read_json`` for a 350-gate circuit,
    paid per item by the simulation workers. Whatever this reader does not take (NaN,
    Cirq's references between objects, an error of any kind) is read by
    ``cirq.read_json``, which also gives the error.
    """
    try:
        return _read(orjson.loads(text))
    except Exception:  # noqa: BLE001 - Cirq's reader decides, and says what is wrong
        return cirq.read_json(json_text=text)


# -- reading Cirq JSON ----------------------------------------------------------------------

_cirq_classes: dict[str, type] = {}
# Cirq's reader keeps state across objects for these (references, legacy contexts).
_READ_BY_CIRQ_ONLY = frozenset({"VAL", "REF", "_ContextualSerialization", "_SerializedKey",
                                "_SerializedContext"})  # fmt: skip


class _ReadByCirq(Exception):
    pass


def _cirq_class(name: str) -> type:
    cls = _cirq_classes.get(name)
    if cls is None:
        if name in _READ_BY_CIRQ_ONLY:
            raise _ReadByCirq(name)
        from cirq.protocols.json_serialization import DEFAULT_RESOLVERS, factory_from_json

        cls = _cirq_classes[name] = factory_from_json(name, resolvers=DEFAULT_RESOLVERS)
    return cls


def _read(value: object) -> object:
    """What Cirq's reader makes of a parsed JSON value: each object with a ``cirq_type``
    made after its fields, as ``cirq.read_json``'s object hook makes it."""
    kind = type(value)
    if kind is list:
        return [_read(v) if type(v) in _CONTAINERS else v for v in value]
    if kind is not dict:
        return value
    name = value.get("cirq_type")
    if name == "GateOperation" and len(value) == 3:
        qubits = [
            _line_qubit(q["x"]) if q.get("cirq_type") == "LineQubit" and len(q) == 2 and type(q["x"]) is int
            else _read(q)
            for q in value["qubits"]
        ]  # fmt: skip
        return _operation(_read_gate(value["gate"]), qubits)
    if name == "LineQubit" and len(value) == 2 and type(value["x"]) is int:
        return _line_qubit(value["x"])
    if name == "Moment" and len(value) == 2:
        ops = _read(value["operations"])
        if all(type(op) is cirq.GateOperation for op in ops):  # (no trees to flatten)
            return cirq.Moment(*ops, _flatten_contents=False)
        return cirq.Moment(*ops)
    if name is None:
        return {k: _read(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    if all(type(v) not in _CONTAINERS for v in value.values()):  # (most gates)
        fields = dict(value)
    else:
        fields = {k: _read(v) if type(v) in _CONTAINERS else v for k, v in value.items()}
    cls = _cirq_class(name)
    read = getattr(cls, "_from_json_dict_", None)
    if read is not None:
        return read(**fields)
    del fields["cirq_type"]
    return cls(**fields)


_CONTAINERS = (dict, list)
_NUMBERS = (float, int)


def _read_gate(value: object) -> object:
    """:func:`_read` for a gate, the most common ones made directly: a PhasedXZGate, and
    the EigenGates written with exponent and global shift (one object for each value:
    a brickwork circuit's CZs are one gate, as ``cirq.CZ`` is). Each is what Cirq's
    reader makes: ``cls(**fields)``, as these types have no ``_from_json_dict_``."""
    if type(value) is dict:
        name = value.get("cirq_type")
        if name == "PhasedXZGate" and len(value) == 4:
            x, z, a = value.get("x_exponent"), value.get("z_exponent"), value.get("axis_phase_exponent")
            if type(x) in _NUMBERS and type(z) in _NUMBERS and type(a) in _NUMBERS and _PLAIN_PHASED_XZ:
                return cirq.PhasedXZGate(x_exponent=x, z_exponent=z, axis_phase_exponent=a)
        elif name in _PLAIN_EIGEN_GATES and len(value) == 3:
            exponent, shift = value.get("exponent"), value.get("global_shift")
            # (The types too: 1 == 1.0 == True, but each reads back as itself.)
            key = (name, type(exponent), exponent, type(shift), shift)
            found = _eigen_gates.get(key)
            if found is not None:
                return found
            if type(exponent) in _NUMBERS and type(shift) in _NUMBERS:
                if len(_eigen_gates) > 10_000:  # bounded: a long session's many exponents
                    _eigen_gates.clear()
                found = _eigen_gates[key] = _PLAIN_EIGEN_GATES[name](exponent=exponent, global_shift=shift)
                return found
    return _read(value)


def _made_as_cirq_makes(kind: type) -> bool:
    """Cirq's reader makes ``kind`` from its fields with its constructor, and finds it
    by its name."""
    try:
        return not hasattr(kind, "_from_json_dict_") and _cirq_class(kind.__name__) is kind
    except Exception:  # noqa: BLE001
        return False


_PLAIN_PHASED_XZ = _made_as_cirq_makes(cirq.PhasedXZGate)
_PLAIN_EIGEN_GATES = {
    kind.__name__: kind
    for kind in (cirq.CZPowGate, cirq.CXPowGate, cirq.HPowGate, cirq.SwapPowGate, cirq.ISwapPowGate,
                 cirq.CCZPowGate, cirq.CCXPowGate, cirq.XXPowGate, cirq.YYPowGate, cirq.ZZPowGate,
                 cirq.XPowGate, cirq.YPowGate, cirq.ZPowGate)
    if _made_as_cirq_makes(kind)
}  # fmt: skip
_eigen_gates: dict[tuple, object] = {}
_line_qubits: dict[int, cirq.LineQubit] = {}


def _line_qubit(x: int) -> cirq.LineQubit:
    found = _line_qubits.get(x)
    if found is None:
        if len(_line_qubits) > 100_000:  # bounded: a long session's many qubits
            _line_qubits.clear()
        found = _line_qubits[x] = cirq.LineQubit(x)
    return found


# (gate type, qubit count) whose operations Cirq has checked once on qubits of dimension 2:
# the gate's shape depends on its type alone (the X/Y/Z gates, whose dimension is a
# field, are checked every time).
_checked_operations: set[tuple[type, int]] = set()
_SHAPE_BY_TYPE = (cirq.PhasedXZGate, cirq.PhasedXPowGate, cirq.CZPowGate, cirq.CXPowGate,
                  cirq.HPowGate, cirq.SwapPowGate, cirq.ISwapPowGate, cirq.CCZPowGate,
                  cirq.CCXPowGate, cirq.XXPowGate, cirq.YYPowGate, cirq.ZZPowGate, cirq.FSimGate)  # fmt: skip
_QUBITS = (cirq.LineQubit, cirq.GridQubit)  # always of dimension 2


def _operation(gate: object, qubits: list) -> cirq.GateOperation:
    """``cirq.GateOperation(gate, qubits)``, as Cirq's reader makes it; its checks (the
    qubits' number, dimensions, no repeats) are done once per gate type and count."""
    key = (type(gate), len(qubits))
    if (
        key in _checked_operations
        and all(type(q) in _QUBITS for q in qubits)
        and (len(qubits) == 1 or len(set(qubits)) == len(qubits))
    ):
        op = _new_operation(cirq.GateOperation)
        op._gate, op._qubits = gate, tuple(qubits)
        return op
    op = cirq.GateOperation(gate, qubits)
    if _FAST_OPERATIONS and key[0] in _SHAPE_BY_TYPE and all(type(q) in _QUBITS for q in qubits):
        _checked_operations.add(key)
    return op


_new_operation = object.__new__


def _fast_operations_match() -> bool:
    """Whether an operation made without its constructor is what the constructor makes
    (a future Cirq may keep other attributes: then every operation is constructed)."""
    try:
        q0, q1 = cirq.LineQubit.range(2)
        made = cirq.GateOperation(cirq.CZ, [q0, q1])
        fast = _new_operation(cirq.GateOperation)
        fast._gate, fast._qubits = cirq.CZ, (q0, q1)
        return vars(fast) == vars(made) and fast == made and hash(fast) == hash(made)
    except Exception:  # noqa: BLE001
        return False


_FAST_OPERATIONS = _fast_operations_match()


# -- OpenQASM 2.0 ----------------------------------------------------------------------
#
# Cirq's importer (``cirq.contrib.qasm_import``) parses the language; what it lacks is
# handled here, on the text, keeping every line where it was so that its messages and
# ours name the user's own line numbers: comments are blanked (``/* */`` too),
# ``barrier`` is dropped (it changes nothing in a simulation), ``opaque`` declarations are
# dropped when unused, and ``if`` on a whole register is spelled out per qubit (the
# importer would keep the first qubit's gate only). After parsing, ``if`` conditions on
# classical bits that nothing has measured yet read them as 0, as OpenQASM's registers
# start (Cirq would fail at run time). What the importer cannot take is refused with
# the line and the construct named.

_LEADING_NOISE = re.compile(r"(?:\s+|//[^\n]*|/\*.*?\*/)*", re.S)
_COMMENT_OR_STRING = re.compile(r'"[^"\n]*"|//[^\n]*|/\*.*?\*/', re.S)
_BARRIER = re.compile(r"\bbarrier\b[^;{}]*;")
_OPAQUE = re.compile(r"\bopaque\s+([A-Za-z_]\w*)[^;{}]*;")
_INCLUDE = re.compile(r'\binclude\s*"([^"\n]*)"\s*;')
_QREG = re.compile(r"\bqreg\s+([A-Za-z_]\w*)\s*\[\s*(\d+)\s*\]\s*;")
_IF = re.compile(r"\bif\s*\(([^()]*)\)\s*([A-Za-z_]\w*)\s*(\(.*?\)\s*)?([^;(){}]*);", re.S)
_KNOWN_INCLUDES = ("qelib1.inc", "stdgates.inc")
_SHOWN = 60


def looks_like_qasm(text: str) -> bool:
    """Whether ``text`` is meant as OpenQASM: after whitespace and comments it begins
    with ``OPENQASM``. The queue server uses it to tell OpenQASM from Cirq JSON; the
    parse that follows says what is wrong with a program that is not valid."""
    body = text[1:] if text.startswith("\ufeff") else text
    return body.startswith("OPENQASM", _LEADING_NOISE.match(body).end())


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def _blank(text: str) -> str:
    return re.sub(r"[^\n]", " ", text)


def _qasm_problem(where: str, line: int, what: str) -> InvalidCircuitError:
    return InvalidCircuitError(f"invalid OpenQASM 2.0{where}: line {line}: {what}")


def _prepare_qasm(text: str, where: str) -> str:
    """The program as Cirq's importer can take it, line numbers unchanged."""
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _COMMENT_OR_STRING.sub(
        lambda m: m.group(0) if m.group(0).startswith('"') else _blank(m.group(0)), text
    )
    start = len(text) - len(text.lstrip())
    if not text.startswith("OPENQASM", start):
        found = text[start:].split("\n", 1)[0].strip()[:_SHOWN]
        raise _qasm_problem(
            where,
            _line_of(text, start),
            "a program must begin with 'OPENQASM 2.0;' (after any comments), found "
            + (repr(found) if found else "nothing"),
        )
    for match in _INCLUDE.finditer(text):
        if match.group(1) not in _KNOWN_INCLUDES:
            raise _qasm_problem(
                where,
                _line_of(text, match.start()),
                f'include "{match.group(1)}": only "qelib1.inc" can be included; '
                "paste the file's gate definitions into the program instead",
            )
    # The importer's lexer wants exactly `include "qelib1.inc";` with a space.
    text = _INCLUDE.sub(lambda m: f'include "{m.group(1)}";'.ljust(len(m.group(0))), text)
    text = _BARRIER.sub(lambda m: _blank(m.group(0)), text)
    opaque: dict[str, int] = {}
    for match in _OPAQUE.finditer(text):
        opaque[match.group(1)] = _line_of(text, match.start())
    text = _OPAQUE.sub(lambda m: _blank(m.group(0)), text)
    for name, declared in opaque.items():
        use = re.search(rf"\b{re.escape(name)}\b", text)
        if use is not None:
            raise _qasm_problem(
                where,
                _line_of(text, use.start()),
                f"gate {name!r} is declared opaque (line {declared}), so it has no "
                f"definition to simulate; define it with 'gate {name} ... {{ ... }}'",
            )
    return _IF.sub(lambda m: _spell_out_if(m, text, where), text)


def _spell_out_if(match: re.Match, text: str, where: str) -> str:
    condition, gate, params, args = match.group(1), match.group(2), match.group(3) or "", match.group(4)
    if gate in ("measure", "reset"):
        raise _qasm_problem(
            where,
            _line_of(text, match.start()),
            f"'if ({condition.strip()}) {gate} ...': Cirq's importer takes only gates "
            f"under 'if', not {gate}",
        )
    operands = [a.strip() for a in args.split(",")]
    sizes = {name: int(n) for name, n in _QREG.findall(text)}
    widths = {sizes[a] for a in operands if "[" not in a and a in sizes}
    if not widths or len(widths) > 1:
        return match.group(0)  # one gate, or a mistake the importer names
    (width,) = widths
    statements = []
    for i in range(width):
        spelled = [a if "[" in a or a not in sizes else f"{a}[{i}]" for a in operands]
        statements.append(f"if({condition}) {gate}{params.strip()} {','.join(spelled)};")
    # Same lines as before: the spelled-out statements share the `if`'s first line.
    return " ".join(statements) + "\n" * match.group(0).count("\n")


def _zero_unmeasured_conditions(circuit: cirq.Circuit) -> cirq.Circuit:
    """``if (c==v)`` reads bits measured earlier; OpenQASM registers start at 0, so a
    bit nothing has measured yet is 0 (Cirq would stop at run time, 'key missing')."""
    measured: set[str] = set()
    changed = False
    moments = []
    for moment in circuit:
        ops = []
        for op in moment:
            if isinstance(op, cirq.ClassicallyControlledOperation):
                op = _read_unmeasured_as_zero(op, measured)
                changed = True
                if op is None:
                    continue  # its condition can never hold
            ops.append(op)
        moments.append(cirq.Moment(ops))
        measured |= {str(k) for op in moment for k in cirq.measurement_key_objs(op)}
    return cirq.Circuit(moments) if changed else circuit


def _read_unmeasured_as_zero(
    op: cirq.ClassicallyControlledOperation, measured: set[str]
) -> cirq.Operation | None:
    kept = []
    for condition in op.classical_controls:
        missing = [k for k in condition.keys if str(k) not in measured]
        if not missing or not isinstance(condition, cirq.SympyCondition):
            kept.append(condition)
            continue
        expr = condition.expr.subs({sympy.Symbol(str(k)): 0 for k in missing})
        if expr is sympy.false:
            return None
        if expr is not sympy.true:
            kept.append(cirq.SympyCondition(expr))
    plain = op.without_classical_controls()
    return plain.with_classical_controls(*kept) if kept else plain


def parse_qasm(text: str, *, label: str | None = None) -> cirq.Circuit:
    """An OpenQASM 2.0 program as a Cirq circuit (once per submit: nothing reparses it).

    Raises :class:`InvalidCircuitError` naming the line and the construct.
    """
    # Imported lazily: the QASM parser builds its grammar tables on first import.
    from cirq.contrib.qasm_import import QasmException, circuit_from_qasm

    where = f" in circuit {label!r}" if label is not None else ""
    program = _prepare_qasm(text, where)
    try:
        circuit = circuit_from_qasm(program)
    except QasmException as exc:  # its message names the line
        raise InvalidCircuitError(f"invalid OpenQASM 2.0{where}: {exc.message}") from None
    except Exception as exc:  # the lexer raises plain errors on stray characters
        raise InvalidCircuitError(f"invalid OpenQASM 2.0{where}: {exc}") from None
    return _zero_unmeasured_conditions(_spell_out_custom_gates(circuit))


def _spell_out_custom_gates(circuit: cirq.Circuit) -> cirq.Circuit:
    """A custom ``gate`` comes from Cirq's importer as a ``cirq.CircuitOperation`` whose
    parameters are expressions Cirq's JSON cannot store (``Mod``): spelled out, under its
    ``if`` too, it is plain gates with numbers."""

    def unroll(op: cirq.Operation, _: int) -> cirq.OP_TREE:
        if isinstance(op, cirq.ClassicallyControlledOperation):
            inner = op.without_classical_controls()
            if isinstance(inner, cirq.CircuitOperation):
                plain = cirq.unroll_circuit_op(cirq.Circuit(inner), deep=True, tags_to_check=None)
                return [o.with_classical_controls(*op.classical_controls) for o in plain.all_operations()]
        return op

    circuit = cirq.unroll_circuit_op(circuit, deep=True, tags_to_check=None)
    return cirq.map_operations_and_unroll(circuit, unroll, deep=False)


def _to_circuit(value: object, label: str) -> cirq.Circuit:
    if isinstance(value, cirq.Circuit):
        return value
    if isinstance(value, cirq.FrozenCircuit):
        return value.unfreeze(copy=False)
    if isinstance(value, str):
        if looks_like_qasm(value):
            return parse_qasm(value, label=label)
        body = value[_LEADING_NOISE.match(value).end():]
        if body.startswith(("{", "[")):
            hint = "it looks like Cirq JSON: pass cirq.read_json(json_text=...) instead"
        else:
            found = body.split("\n", 1)[0].strip()[:_SHOWN]
            hint = (
                "a program must begin with 'OPENQASM 2.0;' (after any comments), found "
                + (repr(found) if found else "nothing")
            )
        raise InvalidCircuitError(f"circuit {label!r} is a string that is not OpenQASM 2.0: {hint}")
    raise InvalidCircuitError(
        f"circuit {label!r} is a {type(value).__name__}, not a cirq.Circuit or an "
        "OpenQASM 2.0 string"
    )


def normalize(circuits: object) -> dict[str, cirq.Circuit]:
    """One circuit, a list (labels "0", "1", ...) or a dict label -> circuit."""
    if isinstance(circuits, (bytes, bytearray)):
        raise InvalidCircuitError(
            "got bytes; give OpenQASM as text (e.g. data.decode('utf-8')) or a cirq.Circuit"
        )
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


class Scan(NamedTuple):
    """What :func:`scan` found in one walk of a circuit."""

    text: str  # its Cirq JSON, as the store keeps it and the workers read it
    #: What :func:`check_serializable` must still look at (None: every operation).
    unchecked: list[cirq.Operation] | None


def scan(label: str, circuit: cirq.Circuit) -> Scan | None:
    """:func:`check_measured`'s checks and the circuit's Cirq JSON, in one walk.

    Refuses what ``check_measured`` refuses, and returns the text with the operations
    ``check_serializable`` must still look at: all but those written from a template
    with plain numbers (gate types that store, see :func:`_scanned_templates`). The
    checks' two walks and the writing's cost ~0.2 and ~0.4 ms for a 350-gate circuit,
    before a job can start; this walk costs about the writing's. None: not a circuit
    this walk takes (a tagged moment, NaN, ...): check and write it the usual way.
    """
    if type(circuit) is not cirq.Circuit or circuit.tags or not _TEXT_WRITER_MATCHES:
        return None
    try:
        written = _written(circuit, _Encoder().default, _scanned_templates())
    except Exception:  # noqa: BLE001 - what Cirq's JSON cannot write: the usual checks say why
        return None
    if written is None:
        return None
    if all(type(op) is cirq.GateOperation for op in written.others):
        # No subcircuit, nothing tagged: the measurements are among the others (no
        # template is of a measurement gate), in order.
        _check_some_measured(label, circuit, bool(_check_widths(label, written.others)))
    else:
        check_measured(label, circuit)
    return Scan(written.text, written.others if written.plain_numbers else None)


def check_measured(label: str, circuit: cirq.Circuit) -> None:
    """Refuse a circuit that measures nothing, or measures one key on different numbers
    of qubits (every simulator stops on that at run time)."""
    # One walk for the common case, a circuit without subcircuits (each walk of a
    # 350-gate circuit costs ~0.1 ms, paid before a job can start).
    measured = _check_widths(label, _operations(circuit))
    if measured is None:  # it has subcircuits
        check_expansion(label, circuit)  # before anything unrolls its repetitions
        measured = _check_widths(label, _flat_operations(circuit))
    _check_some_measured(label, circuit, measured)


def _check_some_measured(label: str, circuit: cirq.Circuit, measured: bool) -> None:
    if not measured and not circuit.has_measurements():  # (measured by other gates?)
        raise InvalidCircuitError(
            f"circuit {label!r} has no measurements, so a run would return nothing; "
            "add e.g. cirq.measure(*qubits, key='m')"
        )


def _check_widths(label: str, operations: Iterable[cirq.Operation]) -> bool | None:
    """Whether ``operations`` hold a ``cirq.MeasurementGate``, refusing a key measured
    on different numbers of qubits; None at the first subcircuit met."""
    widths: dict[str, int] = {}
    for op in operations:
        gate = op.gate
        if gate is None and isinstance(op.untagged, cirq.CircuitOperation):
            return None
        if _is_measurement_gate(gate):
            key, n = gate.key, len(op.qubits)
            if widths.setdefault(key, n) != n:
                raise InvalidCircuitError(
                    f"circuit {label!r} measures key {key!r} on {widths[key]} qubits and "
                    f"again on {n}; a key measured twice must have the same width each "
                    "time (use another key for the second measurement)"
                )
    return bool(widths)


_measurement_gate_types: dict[type, bool] = {}


def _is_measurement_gate(gate: cirq.Gate | None) -> bool:
    # isinstance on Cirq's gates goes through ABCMeta (~0.3 us); by type, once.
    kind = type(gate)
    found = _measurement_gate_types.get(kind)
    if found is None:
        found = _measurement_gate_types[kind] = isinstance(gate, cirq.MeasurementGate)
    return found


def _operations(circuit: cirq.AbstractCircuit) -> list[cirq.Operation]:
    """``circuit.all_operations()`` as a list: built in C, quicker to walk than Cirq's
    generator (the checks walk every operation of every circuit before a job starts)."""
    return [op for moment in circuit.moments for op in moment.operations]


def _flat_operations(circuit: cirq.AbstractCircuit) -> Iterator[cirq.Operation]:
    """Every operation, looking inside ``cirq.CircuitOperation``s (keys as mapped)."""
    for op in circuit.all_operations():
        untagged = op.untagged
        if isinstance(untagged, cirq.CircuitOperation):
            yield from _flat_operations(untagged.mapped_circuit(deep=False))
        else:
            yield op


#: Operations a circuit may expand to once its repeated subcircuits are unrolled. Nested
#: ``CircuitOperation(repetitions=2)`` 30 deep is 12 KB of JSON and 2^30 runs of its
#: body: it would hold a worker for good.
MAX_EXPANDED_OPERATIONS = 10**7


def expanded_size(circuit: cirq.AbstractCircuit, *, limit: int = MAX_EXPANDED_OPERATIONS) -> int:
    """How many operations ``circuit`` runs with its subcircuits' repetitions unrolled
    (counting stops past ``limit``)."""
    total = 0
    for op in circuit.all_operations():
        untagged = op.untagged
        if isinstance(untagged, cirq.CircuitOperation):
            inner = expanded_size(untagged.circuit, limit=limit)
            total += inner * abs(untagged.repetitions)
        else:
            total += 1
        if total > limit:
            return total
    return total


def check_expansion(label: str, circuit: cirq.Circuit) -> None:
    """Refuse a circuit whose repeated subcircuits expand beyond any sensible run."""
    size = expanded_size(circuit)
    if size > MAX_EXPANDED_OPERATIONS:
        raise LimitExceededError(
            f"circuit {label!r} expands to more than {MAX_EXPANDED_OPERATIONS:,} operations "
            "once its repeated subcircuits (cirq.CircuitOperation repetitions) are unrolled; "
            "lower the repetitions, or loop in Python and submit several jobs"
        )


def check_resolved(label: str, circuit: cirq.Circuit) -> None:
    """Refuse a circuit with free parameters when no values are given for them."""
    names = sorted(cirq.parameter_names(circuit))
    if names:
        raise InvalidCircuitError(
            f"circuit {label!r} has unresolved parameters {', '.join(names)}; give values "
            "with params= (e.g. params={" + ", ".join(f"{n!r}: 0.5" for n in names[:3])
            + "}) or resolve them first with cirq.resolve_parameters(circuit, {...})"
        )


def check_qubits_only(label: str | None, circuit: cirq.Circuit, *, target: str | None = None) -> None:
    """Refuse qudits (a qid of dimension other than 2) for targets that run qubits only
    (devices and their emulators; the simulators take qudits)."""
    qudits = sorted(q for q in circuit.all_qubits() if q.dimension != 2)
    if qudits:
        which = f"circuit {label!r}" if label is not None else "the circuit"
        on = f"target {target!r}" if target else "this target"
        shown = ", ".join(f"{q} of dimension {q.dimension}" for q in qudits[:3])
        raise DeviceValidationError(
            f"{which} uses qudits ({shown}), but {on} runs qubits only; the 'cirq' and "
            "'density' targets simulate qudits"
        )


#: Cirq's qsim translator takes gates of at most this many qubits (as matrices).
QSIM_MAX_MATRIX_QUBITS = 6


def qsim_can_run(circuit: cirq.Circuit) -> str | None:
    """``None`` if qsimcirq runs ``circuit`` correctly, else why not (for a message such
    as "ran on cirq.Simulator: <reason>").

    Each reason was seen in qsimcirq 0.22: some raise ("unparseable op"), some silently
    lose results (measurements inside a ``CircuitOperation`` or non-``MeasurementGate``
    measurements come back missing), so routing them elsewhere is a matter of
    correctness, not speed. Parameters are not judged here (see :func:`check_resolved`).
    """
    for q in circuit.all_qubits():
        if q.dimension != 2:
            return f"it uses a qudit ({q} has dimension {q.dimension}); qsim runs qubits only"
    return _qsim_problem(circuit.all_operations(), top=True)


# (gate type, qubit count) of plain gates that passed every check below: for these
# types the verdict depends on the type alone, so a 350-gate circuit is judged in ~0.1 ms
# instead of ~6 ms (it runs per item, in the pool's workers).
_QSIM_FINE: set[tuple[type, int]] = set()
_TYPE_DECIDES = (cirq.EigenGate, cirq.PhasedXZGate, cirq.PhasedXPowGate)


def _qsim_problem(operations: Iterable[cirq.Operation], *, top: bool) -> str | None:
    for op in operations:
        if type(op) is cirq.GateOperation and (type(op.gate), len(op.qubits)) in _QSIM_FINE:
            continue
        untagged = op.untagged
        if isinstance(untagged, cirq.ClassicallyControlledOperation):
            return f"it has classical control ({op}); qsim cannot condition on measurements"
        if isinstance(untagged, cirq.CircuitOperation):
            if untagged.repeat_until is not None:
                return f"it repeats a subcircuit until a condition holds ({op})"
            if cirq.is_measurement(untagged):
                return (
                    "it measures inside a cirq.CircuitOperation; qsim would drop those "
                    "results (cirq.unroll_circuit_op(circuit) lets qsim run it)"
                )
            inner = _qsim_problem(untagged.mapped_circuit(deep=False).all_operations(), top=False)
            if inner is not None:
                return inner
            continue
        gate = untagged.gate
        if isinstance(gate, cirq.MeasurementGate):
            if gate.confusion_map:
                return f"a measurement has a confusion map ({op}), which qsim does not support"
            continue
        if cirq.is_measurement(untagged):
            return f"it measures with {type(gate or untagged).__name__} ({op}); qsim drops such results"
        n = len(untagged.qubits)
        if n > QSIM_MAX_MATRIX_QUBITS and (
            isinstance(gate, cirq.MatrixGate) or cirq.decompose_once(untagged, None) is None
        ):
            return (
                f"it has a {n}-qubit gate given only as a matrix ({type(gate or untagged).__name__}); "
                f"qsim takes matrices of up to {QSIM_MAX_MATRIX_QUBITS} qubits"
            )
        if not (
            cirq.has_unitary(untagged)
            or cirq.has_mixture(untagged)
            or cirq.has_kraus(untagged)
            or cirq.is_parameterized(untagged)
        ):
            return f"qsim cannot simulate {op} (no unitary, mixture or Kraus operators)"
        if type(op) is cirq.GateOperation and isinstance(gate, _TYPE_DECIDES) and n <= QSIM_MAX_MATRIX_QUBITS:
            _QSIM_FINE.add((type(gate), n))
    return None


# What is already known to write and read back as Cirq JSON: a gate type, with the kinds
# of sympy expression in its parameters for parameterised gates (Cirq's JSON writes
# Symbol, Add, Mul, Pow and numbers, not e.g. Mod).
_storable_kinds: set[tuple] = set()


def _round_trips(op: cirq.Operation) -> bool:
    try:
        cirq.read_json(json_text=cirq.to_json(op, indent=None))
        return True
    except Exception:
        return False


# Cirq's own gate types that have stored as Cirq JSON with plain numbers for parameters.
# A gate of one of them whose attributes are all plain numbers holds no symbol, so it
# needs neither cirq.is_parameterized (Cirq's protocol costs ~2 us a gate, ~1 ms for a
# 350-gate circuit, paid before a job can start) nor another round trip.
_plain_storable: set[type] = set()
_PLAIN_VALUES = frozenset(
    {float, int, bool, complex, str, type(None), np.float64, np.float32, np.int64, np.int32, np.complex128}
)


def _cirqs_own(gate: cirq.Gate | None) -> bool:
    # Cirq's gates keep their parameters in their attributes; a user's gate may not.
    return gate is not None and type(gate).__module__.startswith("cirq.")


def _plain(gate: cirq.Gate) -> bool:
    try:
        attributes = vars(gate)
    except TypeError:  # no __dict__ (slots)
        return False
    if _PLAIN_VALUES.issuperset(map(type, attributes.values())):
        return True
    # Cirq's method caches hold values derived from the others (cirq.CZ's hash).
    return all(
        type(value) in _PLAIN_VALUES or name.startswith("_method_cache_")
        for name, value in attributes.items()
    )


def _storable_kind(op: cirq.Operation, parameterized: bool) -> tuple | None:
    """What decides whether ``op`` can be stored, or None if only trying it tells
    (subcircuits, parameterised gates whose parameters cannot be listed)."""
    if isinstance(op.untagged, cirq.CircuitOperation):
        return None
    kind = type(op.gate) if op.gate is not None else type(op)
    if not parameterized:
        return (kind,)
    if op.gate is None or not hasattr(op.gate, "__dict__"):
        return None
    shapes = {
        type(node)
        for value in vars(op.gate).values()
        if isinstance(value, sympy.Basic)
        for node in sympy.preorder_traversal(value)
    }
    return (kind, frozenset(shapes))


def _shown(op: cirq.Operation) -> str:
    """``str(op)``, or what can be said of it when its values cannot even be printed
    (an exponent of 10**5000 exceeds Python's digits limit)."""
    try:
        text = str(op)
    except (ValueError, OverflowError, RecursionError):
        return f"on {', '.join(map(str, op.qubits))} with a value too large to print"
    return text if len(text) <= 200 else text[:200] + "..."


def check_serializable(
    label: str,
    circuit: cirq.Circuit,
    *,
    resolved: bool = False,
    operations: list[cirq.Operation] | None = None,
) -> None:
    """Refuse operations that Cirq's JSON cannot write and read back; with ``resolved``,
    also free parameters (as :func:`check_resolved`, in the same pass: each walk over a
    350-gate circuit costs about a millisecond of the kernel's time). ``operations``:
    only these need looking at (a :class:`Scan`'s ``unchecked``).

    Checked once per gate type (and kind of parameter expression) in a process, so the
    store write that follows cannot fail half way through a batch.
    """
    plain_gates: set[int] = set()  # in this circuit (cirq.CZ is one object, used everywhere)
    plain_storable, plain_values = _plain_storable, _PLAIN_VALUES
    for op in _operations(circuit) if operations is None else operations:
        gate = op.gate  # (a property: read once on this hot path)
        if type(op) is cirq.GateOperation and type(gate) in plain_storable:
            if id(gate) in plain_gates:
                continue
            # (_plain's common case inline: a call per gate was a tenth of this walk)
            attributes = getattr(gate, "__dict__", None)
            if (attributes is not None and plain_values.issuperset(map(type, attributes.values()))) or _plain(gate):
                plain_gates.add(id(gate))
                continue
        parameterized = cirq.is_parameterized(op)
        if parameterized and resolved:
            check_resolved(label, circuit)  # names every free symbol of the circuit
        kind = _storable_kind(op, parameterized)
        if kind is not None and kind in _storable_kinds:
            continue
        if not _round_trips(op):
            name = type(op.gate).__name__ if op.gate is not None else type(op).__name__
            raise InvalidCircuitError(
                f"circuit {label!r}: operation {_shown(op)} ({name}) cannot be stored as "
                "Cirq JSON; use Cirq's built-in gates (cirq.decompose(circuit) often helps), "
                "parameters that are ordinary numbers or built from + - * / ** only, "
                "or give the gate _json_dict_ and register its resolver"
            )
        if kind is not None:
            _storable_kinds.add(kind)
        if not parameterized and type(op) is cirq.GateOperation and _cirqs_own(gate):
            _plain_storable.add(type(gate))
