"""What a job will take before it runs, and what is left of it while it runs.

:class:`Estimate` is the one shape every estimate has, whoever made it: the local time
model, a queue server (which sees every user's jobs), a vendor's own figures combined
with qnb's history of waits on that target. Its JSON form (:meth:`Estimate.as_json`) is
what views and the wire carry. :class:`CircuitFeatures` is what time models and price
tables read of a circuit, taken once (by ``_features.features_of``). Nothing here imports
Cirq: the command line prints estimates and costs without it.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import time
from collections.abc import Mapping


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
