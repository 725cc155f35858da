"""What a job will take before it runs, and what is left of it while it runs.

:class:`Estimate` is the one shape every estimate has, whoever made it: the local time
model, a queue server (which sees every user's jobs), a vendor's own figures combined
with qnb's history of waits on that target. Its JSON form (:meth:`Estimate.as_json`) is
what views and the wire carry. :class:`CircuitFeatures` is what time models and price
tables read of a circuit, taken once.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import operator
import time
from collections.abc import Mapping

import cirq


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A job's time and cost, estimated before it runs (``qnb.estimate``) or for what is
    left of it (``job.estimate``).

    ``run_seconds``: time on the device (or simulator); ``wait_seconds``: the wait before
    it would start (0 once running); ``finish``: when it would be done (an aware
    ``datetime``); ``cost``: in ``currency`` (``0.0`` on local targets; None where the
    price is unknown); ``basis``: one line saying how this was estimated. Any figure may
    be None where nothing can be said."""

    run_seconds: float | None
    wait_seconds: float | None
    finish: datetime.datetime | None
    cost: float | None = None
    currency: str | None = None
    basis: str = ""

    @classmethod
    def starting_now(
        cls,
        run_seconds: float | None,
        wait_seconds: float | None,
        *,
        cost: float | None = None,
        currency: str | None = None,
        basis: str = "",
        now: float | None = None,
    ) -> Estimate:
        """An estimate whose ``finish`` is now + wait + run (None if either is)."""
        now = time.time() if now is None else now
        finish = (
            None if run_seconds is None or wait_seconds is None
            else at(now + wait_seconds + run_seconds)
        )  # fmt: skip
        return cls(run_seconds, wait_seconds, finish, cost, currency, basis)

    def as_json(self) -> dict:
        """The wire form (views, the queue server): ``finish`` as Unix seconds."""
        return {
            "run_seconds": self.run_seconds,
            "wait_seconds": self.wait_seconds,
            "finish": None if self.finish is None else self.finish.timestamp(),
            "cost": self.cost,
            "currency": self.currency,
            "basis": self.basis,
        }

    @classmethod
    def from_json(cls, data: Mapping) -> Estimate:
        """The inverse of :meth:`as_json` (a queue server's answer); unknown keys are
        ignored, missing ones are None."""
        finish = data.get("finish")
        return cls(
            run_seconds=_number(data.get("run_seconds")),
            wait_seconds=_number(data.get("wait_seconds")),
            finish=None if _number(finish) is None else at(float(finish)),
            cost=_number(data.get("cost")),
            currency=data.get("currency") if isinstance(data.get("currency"), str) else None,
            basis=str(data.get("basis") or ""),
        )

    def __str__(self) -> str:
        parts = []
        if self.run_seconds is not None:
            parts.append(f"runs {duration_text(self.run_seconds)}")
        if self.wait_seconds is not None:
            parts.append("starts now" if self.wait_seconds < 1 else f"starts in {duration_text(self.wait_seconds)}")
        if self.finish is not None:
            parts.append(f"done by {self.finish.astimezone().strftime('%H:%M:%S %Z').strip()}")
        parts.append(cost_text(self.cost, self.currency))
        text = ", ".join(parts)
        return f"{text} ({self.basis})" if self.basis else text


def at(timestamp: float) -> datetime.datetime:
    """Unix seconds as an aware datetime (UTC)."""
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc)


def duration_text(seconds: float) -> str:
    """``"~40 s"``, ``"~3 min"``, ``"~2.5 h"``: how estimates show a duration."""
    if seconds < 60:
        return f"~{max(seconds, 0):.2g} s" if seconds < 10 else f"~{seconds:.0f} s"
    if seconds < 3600:
        return f"~{seconds / 60:.0f} min"
    return f"~{seconds / 3600:.2g} h"


def cost_text(cost: float | None, currency: str | None) -> str:
    if cost is None:
        return "cost unknown"
    if cost == 0:
        return "no cost"
    symbol = "$" if currency == "USD" else f"{currency or ''} "
    return f"{symbol}{cost:,.2f}"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


@dataclasses.dataclass(frozen=True, slots=True)
class CircuitFeatures:
    """What time models and price tables read of one circuit (taken once)."""

    qubits: int
    one_qubit_gates: int
    two_qubit_gates: int
    multi_qubit_gates: int  # three or more qubits (IonQ prices them as several)
    measurements: int
    depth: int
    #: Every measurement is at the end (a simulator samples the final state once;
    #: otherwise it runs the circuit once per shot).
    terminal: bool

    @property
    def gates(self) -> int:
        return self.one_qubit_gates + self.two_qubit_gates + self.multi_qubit_gates


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


@dataclasses.dataclass(frozen=True)
class TargetHistory:
    """What qnb saw of the latest jobs that ran on one target (from the store): how long
    each waited before it started, and how long it ran for how many item-shots. Targets
    that own their queue combine it with their own figures (a vendor's queue position,
    average queue time); ``basis`` says which they used."""

    waits: tuple[float, ...] = ()  # seconds from submit to start, newest first
    runs: tuple[tuple[float, int], ...] = ()  # (seconds from start to finish, items x shots)

    @property
    def median_wait(self) -> float | None:
        return _median(self.waits)

    def run_seconds(self, item_shots: int) -> float | None:
        """A run of ``item_shots`` (items x shots) at the median pace of past runs (a
        fixed part per job and a part per shot are not told apart: the median of
        seconds per item-shot, scaled)."""
        paces = [seconds / max(n, 1) for seconds, n in self.runs]
        pace = _median(paces)
        return None if pace is None else pace * item_shots


def _median(values) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
