"""Circuits from untrusted text: sized up before parsing, parsed once, then checked.

A submit's circuit texts are counted first (labels, bytes, statements, operations,
nested repetitions, symbolic values) with cheap scans, so a request that would take
a minute to parse, or that hides an astronomically large number inside 700 bytes of
Cirq JSON, is refused before Cirq sees it. What passes is parsed (and compiled) and
checked against the target by :func:`check`, a plain function of picklable arguments
so it can run in a worker process (see ``_cpu.py``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping

import cirq

from .. import _circuits
from .._api import prepare
from .._device import DeviceSpec
from .._errors import DeviceValidationError, InvalidCircuitError, InvalidOptionError, LimitExceededError, QnbError
from .._targets import Target


def field(exc: QnbError, *where: str) -> QnbError:
    """``exc``, marked with the request field it is about (the HTTP layer names it)."""
    exc.field = where  # type: ignore[attr-defined]
    return exc


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one request or one user may ask of the server (``create_app(limits=...)``)."""

    #: Bytes of one circuit's text.
    circuit_bytes: int = 1_000_000
    #: Statements of one OpenQASM circuit, operations of one Cirq JSON circuit (each
    #: repetition of a nested CircuitOperation counted).
    operations_per_circuit: int = 20_000
    #: Operations of all circuits of one request, counted as above.
    operations_per_request: int = 300_000
    #: The largest whole number in Cirq JSON (exponents, repetitions, qubit indices).
    largest_number: int = 10**9
    #: qubits x shots x items of one job, a measure of its memory and device time.
    qubit_shots_per_job: int = 300 * 16 * 100_000
    #: Jobs one (non-admin) user may have waiting in the queue at once.
    queued_jobs_per_user: int = 1000
    #: Bytes of stored circuit text (Cirq JSON) of one (non-admin) user's waiting jobs:
    #: the store's disk, and the memory a job takes again when it starts.
    queued_circuit_bytes_per_user: int = 200_000_000
    #: Seconds of CPU work (parsing, checks, compiling) one request may take.
    cpu_seconds: float = 300.0
    #: Result texts of one answer, in bytes; more are left for the next page.
    results_bytes: int = 8_000_000
    #: Idempotency keys kept, newest first (older retries would make a second job).
    idempotency_keys: int = 100_000


# Cirq JSON of these sympy types is a plain number; every other sympy value (Pow, Mul,
# Symbol, ...) is an expression Cirq would evaluate, or could not simulate, so refused.
_SYMPY_NUMBERS = {"sympy.Integer", "sympy.Float", "sympy.Rational", "sympy.Zero", "sympy.One",
                  "sympy.NegativeOne", "sympy.Half"}


# What makes Cirq JSON worth a full scan: a sympy value, a nested circuit (its
# repetitions multiply), a whole part of 10 digits or more, an exponent of 3 digits,
# an infinity or NaN. (Fractions such as 0.09549296585513721 are not.)
_PLAIN = re.compile(r'sympy\.|CircuitOperation|(?<![.\d])\d{10}|[eE][+-]?\d{3}|Infinity|NaN')


@dataclasses.dataclass
class Counted:
    """What the scans found, before parsing."""

    operations: int = 0
    qasm: bool = False  # some circuit is OpenQASM (slow to parse: ~10 ms each)
    json_labels: set[str] = dataclasses.field(default_factory=set)


def count(circuits: Mapping[str, str], limits: Limits, *, max_batch: int) -> Counted:
    """Refuse what is too big to parse, from the texts alone (no Cirq)."""
    if len(circuits) > max_batch:
        raise InvalidOptionError(
            f"a batch of {len(circuits)} circuits is above the device's max_batch "
            f"({max_batch}); submit it as several jobs"
        )
    counted = Counted()
    for label, text in circuits.items():
        try:
            operations = _count_one(label, text, limits, counted)
        except QnbError as exc:
            raise field(exc, "circuits", label) from None
        counted.operations += operations
        if counted.operations > limits.operations_per_request:
            raise field(LimitExceededError(
                f"the batch has more than {limits.operations_per_request} operations "
                "(repetitions counted), the server's limit per job; split it into several jobs"
            ), "circuits")
    return counted


def _count_one(label: str, text: str, limits: Limits, counted: Counted) -> int:
    size = len(text.encode("utf-8", "surrogatepass")) if not text.isascii() else len(text)
    if size > limits.circuit_bytes:
        raise LimitExceededError(
            f"circuit {label!r} is {size} bytes, above the server's limit of "
            f"{limits.circuit_bytes}; split it or simplify it"
        )
    if _circuits.looks_like_qasm(text):
        counted.qasm = True
        operations = text.count(";")
    else:
        counted.json_labels.add(label)
        if _PLAIN.search(text) is None:
            # No sympy value, no nested circuit, no long number, no infinity: the
            # common case is counted from the text (a full scan costs more than the
            # rest of a small submit).
            operations = text.count('Operation"')
        else:
            operations = _scan_json(label, _decode(label, text), limits)
    if operations > limits.operations_per_circuit:
        raise LimitExceededError(
            f"circuit {label!r} has {operations} operations (repetitions counted), "
            f"above the server's limit of {limits.operations_per_circuit} per circuit"
        )
    return operations


def _decode(label: str, text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # ints above 4300 digits raise ValueError
        raise InvalidCircuitError(
            f"circuit {label!r} is neither OpenQASM 2.0 (starting 'OPENQASM 2.0;') nor "
            f"Cirq JSON ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def _scan_json(label: str, tree: object, limits: Limits) -> int:
    """Operations in a Cirq JSON tree, repetitions of nested CircuitOperations
    multiplied out; refuses numbers that are not small and sympy expressions."""
    # An explicit stack: a deeply nested document must not exhaust Python's.
    operations = 0
    stack: list[tuple[object, int]] = [(tree, 1)]
    while stack:
        node, times = stack.pop()
        if isinstance(node, dict):
            kind = node.get("cirq_type")
            if isinstance(kind, str):
                if kind.startswith("sympy.") and kind not in _SYMPY_NUMBERS:
                    raise InvalidCircuitError(
                        f"circuit {label!r} holds a symbolic value ({kind}); the server "
                        "runs circuits with plain numbers only: resolve the parameters "
                        "first (cirq.resolve_parameters)"
                    )
                if kind.endswith("Operation"):
                    operations += times
                if kind == "CircuitOperation":
                    repetitions = node.get("repetitions", 1)
                    if isinstance(repetitions, int) and repetitions > 1:
                        times *= repetitions
                        if times > limits.operations_per_circuit:
                            raise LimitExceededError(
                                f"circuit {label!r} repeats a sub-circuit {times} times or "
                                f"more, above the server's limit of "
                                f"{limits.operations_per_circuit} operations per circuit"
                            )
            stack.extend((value, times) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, times) for value in node)
        elif isinstance(node, bool) or node is None or isinstance(node, str):
            continue
        elif isinstance(node, int):
            if abs(node) > limits.largest_number:
                raise InvalidCircuitError(
                    f"circuit {label!r} holds the number {_short(node)}, above the server's "
                    f"limit of {limits.largest_number}"
                )
        elif isinstance(node, float) and not math.isfinite(node):
            raise InvalidCircuitError(f"circuit {label!r} holds the number {node}")
    return operations


def _short(number: int) -> str:
    digits = number.bit_length() * 0.30103
    return str(number) if digits < 30 else f"~10^{digits:.0f}"


def check(
    circuits: dict[str, str],
    json_labels: set[str],
    device: DeviceSpec,
    target: Target | None,
    *,
    shots: int,
    compile: bool,
) -> tuple[dict[str, cirq.Circuit], list[str] | None]:
    """:func:`parse` (with the Cirq JSON), then the target's own checks
    (:func:`checked`), in one call that can run in the worker process: the checks are
    Cirq work too (60-85 ms for 300 compiled circuits), which in the server's process
    would hold the GIL its event loop needs. ``target`` None: it cannot travel to
    another process (it holds a cluster client, a connection); the caller checks."""
    labelled, texts = parse(circuits, json_labels, device, compile=compile, serialize=True)
    if target is not None:
        labelled = checked(labelled, target, shots=shots)
    return labelled, texts


def checked(
    labelled: dict[str, cirq.Circuit], target: Target, *, shots: int
) -> dict[str, cirq.Circuit]:
    """The circuits as they will run on ``target``, checked by :func:`qnb._api.prepare`."""
    try:
        return prepare(labelled, target, shots=shots, compile=False)
    except (InvalidCircuitError, DeviceValidationError) as exc:
        raise field(exc, "circuits") from None


def parse(
    circuits: dict[str, str],
    json_labels: set[str],
    device: DeviceSpec,
    *,
    compile: bool,
    serialize: bool = False,
    measured: bool = True,
) -> tuple[dict[str, cirq.Circuit], list[str] | None]:
    """The circuits parsed (and, with ``compile``, compiled onto ``device``), and their
    Cirq JSON: the texts as they came when all were Cirq JSON and not compiled (no
    second serialisation), else written here if ``serialize`` (in the worker process,
    so the server's own process does not spend its GIL on it), else None.

    The target's own checks are :func:`check`'s. ``json_labels``: the circuits
    :func:`count` found to be Cirq JSON (the others are OpenQASM). ``measured``: refuse
    circuits without measurements before compiling them (a job needs them).
    """
    labelled = {}
    for label, text in circuits.items():
        try:
            circuit = parse_one(label, text, is_json=label in json_labels)
            if compile:
                if measured:  # checked before the costly part (compiling keeps them)
                    _circuits.check_measured(label, circuit)
                circuit = _compile(label, circuit, device)
        except QnbError as exc:
            raise field(exc, "circuits", label) from None
        labelled[label] = circuit
    if not compile and len(json_labels) == len(circuits):
        return labelled, list(circuits.values())
    if serialize:
        return labelled, _circuits.to_json_many(labelled.values())
    return labelled, None


def _compile(label: str, circuit: cirq.Circuit, device: DeviceSpec) -> cirq.Circuit:
    try:
        return device.compile(circuit)
    except QnbError:
        raise
    except ValueError as exc:  # Cirq's router and gateset optimiser
        raise DeviceValidationError(
            f"circuit {label!r} cannot be compiled for {device.name!r}: {exc}"
        ) from None


def parse_one(label: str, text: str, *, is_json: bool) -> cirq.Circuit:
    if not is_json:
        return _circuits.parse_qasm(text, label=label)
    try:
        value = _circuits.from_json(text)
    except Exception as exc:
        raise InvalidCircuitError(
            f"circuit {label!r} is neither OpenQASM 2.0 (starting 'OPENQASM 2.0;') nor "
            f"Cirq JSON ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    if isinstance(value, cirq.FrozenCircuit):
        value = value.unfreeze(copy=False)
    if not isinstance(value, cirq.Circuit):
        raise InvalidCircuitError(
            f"circuit {label!r} is Cirq JSON of a {type(value).__name__}, not a Circuit"
        )
    return value
