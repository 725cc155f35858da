"""Code that runs inside the simulation pool's worker processes.

The forkserver preloads this module (and with it cirq and qsimcirq), so a new worker
starts in milliseconds instead of paying ~3 s of imports.
"""

from __future__ import annotations

import gc
import pickle
import time
from multiprocessing.connection import Connection

import cirq
import qsimcirq

from .. import _circuits
from ._child import init_worker

# Everything imported so far (cirq, sympy, numpy: hundreds of thousands of objects)
# lives as long as the worker. Freezing it keeps the cyclic collector from scanning
# it again and again: unpickling a 350-gate circuit fell from ~10 ms to ~1 ms.
gc.freeze()

_simulators: dict[tuple[str, float], cirq.Sampler] = {}


def _simulator(engine: str, noise: float) -> cirq.Sampler:
    key = (engine, noise)
    sim = _simulators.get(key)
    if sim is None:
        model = cirq.depolarize(noise) if noise else None
        if engine == "qsim":
            sim = qsimcirq.QSimSimulator(noise=model)
        elif engine == "cirq":
            sim = cirq.Simulator(noise=model)
        elif engine == "density":
            sim = cirq.DensityMatrixSimulator(noise=model)
        else:
            raise ValueError(f"unknown simulation engine {engine!r}")
        _simulators[key] = sim
    return sim


#: (engine, noise, the circuit or its Cirq JSON, shots, sweep point)
Task = tuple[str, float, "cirq.Circuit | str", int, "cirq.ParamResolver | None"]


def run_one(pickled_task: bytes) -> tuple[bool, str, str | None]:
    """Simulate one circuit: ``(True, result as Cirq JSON, engine)`` or ``(False,
    error, None)``.

    The result is serialized here, in parallel across workers, so the kernel only
    stores a string. A circuit qsim cannot run correctly (classical control, qudits,
    ...) runs on the matching Cirq simulator instead, and the engine says so; judging
    that here keeps it off the kernel and in parallel.
    """
    try:
        engine, noise, circuit, shots, params = pickle.loads(pickled_task)
        if isinstance(circuit, str):  # the text the kernel stored: not pickled twice
            circuit = _circuits.from_json(circuit)
        ran_on = engine
        if engine == "qsim":
            reason = _circuits.qsim_can_run(circuit)
            if reason is not None:
                engine = "density" if noise else "cirq"
                ran_on = f"{_ENGINE_NAMES[engine]} ({reason})"
        result = _simulator(engine, noise).run(circuit, param_resolver=params, repetitions=shots)
        return True, cirq.to_json(result, indent=None), ran_on
    except Exception as exc:  # reported per item; the other items still run
        return False, f"{type(exc).__name__}: {exc}", False  # the circuit's own: not retryable


_ENGINE_NAMES = {"cirq": "cirq.Simulator", "density": "cirq.DensityMatrixSimulator"}


def serve(conn: Connection) -> None:
    """A worker's life: take a chunk of pickled tasks, send back one outcome per task
    as soon as it is done (so the pool knows which task runs now), until told to stop.
    Each outcome carries the seconds the task took here (the estimator learns from
    them: measured here, they do not depend on when the pool reads the pipe).

    The pool ends a worker by killing it (a cancelled or overdue task), by sending
    None, or by closing its end of the pipe.
    """
    init_worker("qnb-simulation")
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        if chunk is None:
            return
        for pickled_task in chunk:
            started = time.perf_counter()
            outcome = run_one(pickled_task)
            conn.send((*outcome, time.perf_counter() - started))


