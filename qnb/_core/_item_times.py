"""How long one item takes on a local simulator: a model learnt from what ran.

Why this shape. A simulator's time for one circuit is the sum of a few costs whose
sizes physics and the simulators' code fix, and whose constants a machine fixes:

- a fixed part (the task travelling to a worker, the circuit read, the result written);
- a part per gate, once (qsimcirq translates each operation in Python, ~40 us);
- a part per gate per pass, and per gate per pass per amplitude (the state-vector
  work: ``2**qubits`` amplitudes, ``4**qubits`` for a density matrix). A circuit whose
  measurements are all at the end is simulated once and sampled (one pass); one that
  measures mid-circuit, or a noisy one on a state-vector engine, runs once per shot;
- a part per shot and qubit (sampling, and the result's size).

So the cold start is that sum with constants measured on a small machine (2 cores) for
each engine (qsim, cirq.Simulator, the density-matrix simulator): finite and the right
order of magnitude from the first job. What ran then corrects it, per engine, in the
only way few and noisy timings allow: one multiplier per part, fitted by least squares
on relative errors (a 1 ms item weighs as much as a 1 s one), held toward the engine's
overall scale where the runs say little about a part (a ridge: a batch of small
circuits cannot teach what 20 qubits cost, so that part keeps the scale the runs do
show). Outliers (a run slowed by a busy machine) are dropped once; the newest runs
weigh most. With fewer than ``FULL_FIT_RUNS`` runs of an engine only the overall scale
is learnt (a median in log space). A fit is a 5x5 solve over at most ``KEEP_RUNS``
rows: well under a millisecond, done at most once per estimator tick.

Nearest neighbours were the other candidate: they need no physics but say nothing
outside what ran (a new qubit count is the common case) and cost a search per item.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
from collections.abc import Iterable, Sequence

import numpy as np

from .._estimate import CircuitFeatures

ENGINES = ("qsim", "cirq", "density")
#: Seconds per unit of each part (see the module's docstring), per engine:
#: (fixed, per gate once, per gate per pass, per gate per pass per amplitude,
#: per shot per qubit). Measured through the pool (qsimcirq 0.22, Cirq 1.4) on a quiet
#: 2-core machine; a busy one took 2-3x as long, which the learnt scale takes in.
COLD_START: dict[str, tuple[float, ...]] = {
    "qsim": (2e-4, 4e-5, 6e-7, 2e-10, 2.5e-7),
    "cirq": (3e-3, 1e-4, 5e-5, 3e-9, 5e-7),
    "density": (2.5e-3, 8e-5, 4e-5, 2.5e-9, 4e-7),
}
#: Runs kept (in the store and in memory): the newest.
KEEP_RUNS = 2000
#: Runs of an engine from which every part is fitted (fewer: the overall scale only).
FULL_FIT_RUNS = 6
# How strongly each part's multiplier is held toward the engine's overall scale: about
# as much as this many runs dominated by that part. Timings on a busy machine vary by
# 2x for one circuit: with a weaker hold, fits followed that noise (tried: 1 and 5 were
# worse than 20 on 248 qsim runs, cross-validated).
PRIOR_RUNS = 20.0
# Runs whose time is this far from the first fit (a factor) are dropped for the second.
OUTLIER_FACTOR = 3.0
# A run this many runs older than the newest weighs half as much.
HALF_WEIGHT_AGE = 500
# A multiplier stays within this factor of the engine's overall scale.
MOST_CORRECTION = 30.0


@dataclasses.dataclass(frozen=True, slots=True)
class ItemRun:
    """One item that ran: what it was, on which engine, and how long it took."""

    engine: str
    features: CircuitFeatures
    shots: int
    noisy: bool
    seconds: float

    def row(self, recorded: float) -> tuple:
        """As :meth:`qnb._store.Store.add_item_times` takes it."""
        f = self.features
        return (self.engine, f.qubits, f.one_qubit_gates, f.two_qubit_gates, f.multi_qubit_gates,
                f.measurements, f.depth, int(f.terminal), int(self.noisy), self.shots, self.seconds,
                recorded)  # fmt: skip

    @classmethod
    def from_row(cls, row: Sequence) -> ItemRun:
        engine, qubits, one, two, multi, measurements, depth, terminal, noisy, shots, seconds = row[:11]
        features = CircuitFeatures(qubits, one, two, multi, measurements, depth, bool(terminal))
        return cls(engine, features, int(shots), bool(noisy), float(seconds))


def engine_key(engine: str | None, asked: str) -> str:
    """The model's engine for what ran: the engine an item names (qsim hands what it
    cannot run to ``cirq.Simulator (why)``), else the one asked for."""
    if not engine:
        return asked
    if engine.startswith("cirq.DensityMatrixSimulator"):
        return "density"
    if engine.startswith("cirq.Simulator"):
        return "cirq"
    return engine if engine in ENGINES else asked


def parts(engine: str, features: CircuitFeatures, shots: int, noisy: bool) -> tuple[float, ...]:
    """The sizes of the cost's parts (see the module's docstring)."""
    gates = features.gates + features.measurements
    once = features.terminal and not (noisy and engine != "density")
    passes = 1 if once else max(shots, 1)
    amplitudes = 4.0 ** min(features.qubits, 40) if engine == "density" else 2.0 ** min(features.qubits, 60)
    return (1.0, gates, passes * gates, passes * gates * amplitudes, shots * max(features.qubits, 1))


class ItemTimeModel:
    """Per engine, the cold start's constants times learnt multipliers. Learnt runs are
    kept as their parts' sizes (taken once), so a fit is array arithmetic only."""

    def __init__(self, runs: Iterable[ItemRun] = ()):
        self._lock = threading.Lock()
        self._runs: dict[str, _Runs] = collections.defaultdict(_Runs)
        self._coefficients: dict[str, np.ndarray] = {}  # seconds per unit of each part
        self.learn(runs)

    def learnt(self, engine: str | None = None) -> int:
        """Runs learnt from (of ``engine``, or of all engines)."""
        if engine is not None:
            found = self._runs.get(engine)
            return 0 if found is None else found.count
        return sum(runs.count for runs in self._runs.values())

    def learn(self, runs: Iterable[ItemRun]) -> None:
        """Take these runs in and fit again the engines they ran on."""
        touched = set()
        with self._lock:
            for run in runs:
                if run.seconds > 0 and math.isfinite(run.seconds):
                    self._runs[run.engine].add(parts(run.engine, run.features, run.shots, run.noisy), run.seconds)
                    touched.add(run.engine)
            found = {engine: self._runs[engine].oldest_first() for engine in touched}
        for engine, (sizes, seconds) in found.items():
            constants = np.array(COLD_START.get(engine, COLD_START["qsim"]))
            # (One assignment: readers see the old coefficients or the new.)
            self._coefficients[engine] = constants * fit(sizes * constants, seconds)

    def coefficients(self, engine: str) -> np.ndarray:
        """Seconds per unit of each part (see :func:`parts`)."""
        found = self._coefficients.get(engine)
        return np.array(COLD_START.get(engine, COLD_START["qsim"])) if found is None else found

    def predict(self, engine: str, features: CircuitFeatures, shots: int, noisy: bool = False) -> float:
        """Seconds one item takes on a worker."""
        return float(np.dot(self.coefficients(engine), parts(engine, features, shots, noisy)))

    def typical(self, engine: str) -> float:
        """The median time of the engine's learnt runs (an item whose circuit is not at
        hand, e.g. a job taken over from a dead server); a small circuit's when none."""
        found = self._runs.get(engine)
        if found is None or not found.count:
            return self.predict(engine, CircuitFeatures(4, 8, 4, 0, 1, 6, True), 1000)
        return float(np.median(found.oldest_first()[1]))


class _Runs:
    """One engine's newest KEEP_RUNS runs as arrays (a ring): a fit reads them as they
    are, with no list of tuples to convert (~1 ms for 2,000 runs)."""

    def __init__(self):
        self.sizes = np.zeros((KEEP_RUNS, 5))
        self.seconds = np.zeros(KEEP_RUNS)
        self.count = 0
        self._next = 0

    def add(self, sizes: tuple[float, ...], seconds: float) -> None:
        self.sizes[self._next] = sizes
        self.seconds[self._next] = seconds
        self._next = (self._next + 1) % KEEP_RUNS
        self.count = min(self.count + 1, KEEP_RUNS)

    def oldest_first(self) -> tuple[np.ndarray, np.ndarray]:
        if self.count < KEEP_RUNS:
            return self.sizes[: self.count].copy(), self.seconds[: self.count].copy()
        order = np.roll(np.arange(KEEP_RUNS), -self._next)
        return self.sizes[order], self.seconds[order]


def sizes_of(engine: str, features: Sequence[CircuitFeatures], shots: int, noisy: bool) -> np.ndarray:
    """:func:`parts` of many circuits, as rows (predictions are then one product)."""
    return np.array([parts(engine, f, shots, noisy) for f in features]).reshape(len(features), 5)


def fit(contributions: np.ndarray, seconds: np.ndarray) -> np.ndarray:
    """The multipliers of the cold start's parts (``contributions``: each run's parts
    at the cold start's constants) that best explain ``seconds`` (see the module's
    docstring)."""
    relative = contributions / seconds[:, None]  # each row: sum(m * relative) should be 1
    k = contributions.shape[1]
    age = np.arange(len(seconds))[::-1]  # 0: the newest
    weights = 0.5 ** (age / HALF_WEIGHT_AGE)
    scale = float(np.exp(-np.median(np.log(relative.sum(axis=1)))))
    if len(seconds) < FULL_FIT_RUNS:
        return np.full(k, scale)
    multipliers = _ridge(relative, weights, scale)
    errors = np.abs(np.log(relative @ multipliers))
    kept = errors < math.log(OUTLIER_FACTOR)
    if kept.sum() >= FULL_FIT_RUNS and not kept.all():
        multipliers = _ridge(relative[kept], weights[kept], scale)
        errors = np.abs(np.log(relative @ multipliers))
    scale_only = np.abs(np.log(relative.sum(axis=1) * scale))
    # The scale alone where the parts do no better (few runs, all alike).
    return multipliers if np.median(errors) < np.median(scale_only) else np.full(k, scale)


def _ridge(relative: np.ndarray, weights: np.ndarray, scale: float) -> np.ndarray:
    rows = relative * np.sqrt(weights)[:, None]
    k = relative.shape[1]
    lhs = rows.T @ rows + PRIOR_RUNS * np.eye(k)
    rhs = rows.T @ np.sqrt(weights) + PRIOR_RUNS * scale
    try:
        multipliers = np.linalg.solve(lhs, rhs)
    except np.linalg.LinAlgError:
        return np.full(k, scale)
    return np.clip(multipliers, scale / MOST_CORRECTION, scale * MOST_CORRECTION)
