"""qnb's own scheduled targets: Cirq simulators run by an executor (the process pool by
default), and the device emulator. The registry holds them by name."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import math
import os
from collections.abc import Callable
from typing import Any

import cirq

from .._device import DeviceSpec, linear_chain
from .._errors import LimitExceededError
from .._status import JobStatus
from .._target_catalog import (
    BUILT_IN,
    EMULATOR_MAX_SHOTS,
    EMULATOR_NOISE,
    EMULATOR_QUBITS,
    emulator_description,
)
from ._base import Executor, ItemOutcome, RunState, ScheduledTarget, Target, TargetJob
from ._pool import available_memory, get_pool
from ._registry import register_kind, registry


class SimulatorTarget(ScheduledTarget):
    """A Cirq simulator run in the process pool; items run in parallel."""

    #: Whether a job's items run one after another (a device), not side by side.
    sequential_items = False

    def __init__(
        self,
        name: str,
        *,
        engine: str,
        device: DeviceSpec,
        noise: float = 0.0,
        max_running_jobs: int = 64,
        executor: Executor | None = None,
        item_time_limit: float | None = None,
    ):
        self.name = name
        self.engine = engine
        self.noise = noise
        self.device = device
        self.max_running_jobs = max_running_jobs
        #: Where circuits run; None: the local process pool, started on first use.
        self.executor = executor
        #: Seconds one circuit may run before it fails and its worker is replaced
        #: (None: the pool's default, ``QNB_ITEM_TIME_LIMIT`` or 1 h).
        self.item_time_limit = item_time_limit

    def device_seconds(self, shots: int) -> float:
        """What an item takes besides its simulation (a device's own time): none here."""
        return 0.0

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        super().check(label, circuit)
        if self.executor is None:  # the local pool: this machine's memory
            check_memory(label, circuit, density=self.engine == "density")

    async def start(self, job: TargetJob, run: RunState) -> None:
        run.tasks = [
            asyncio.create_task(self._run_items(run, [i], job))
            for i in range(len(job.circuits))
        ]

    async def _run_items(self, run: RunState, indices: list[int], job: TargetJob) -> None:
        for i in indices:
            run.set_running(i)
            point = None if job.params is None else job.params[i]
            # (Looked up as the item leaves: see _execute.)
            text = None if job.circuit_json is None else functools.partial(job.circuit_json.__getitem__, i)
            try:
                ok, payload, engine, *timing = await self._execute(job.circuits[i], job.shots, point, text)
            except asyncio.CancelledError:
                run.finish_unfinished(indices, ItemOutcome(JobStatus.CANCELLED, error="cancelled"))
                raise
            if ok:
                # (The pool says how long a worker took; other executors may not.)
                seconds = timing[0] if timing else None
                run.finish(i, ItemOutcome(JobStatus.COMPLETED, result=payload, engine=engine, seconds=seconds))
            else:
                # An executor's third answer on failure: whether a rerun may do.
                retryable = engine if isinstance(engine, bool) else None
                run.finish(i, ItemOutcome(JobStatus.FAILED, error=payload, retryable=retryable))

    async def _execute(
        self,
        circuit: cirq.Circuit,
        shots: int,
        params: cirq.ParamResolver | None,
        circuit_json: Callable[[], str] | None = None,
    ) -> tuple:
        """Run one circuit: ``(ok, result or error, engine or retryable)``, and from the
        local pool the seconds a worker took as a fourth. Its stored Cirq JSON, when
        the job has it, travels to the workers instead of the pickled circuit.
        ``circuit_json`` gives that text: the local pool asks for it as the item leaves
        for a worker (a batch's texts may still be being written for the store
        meanwhile: each is written once)."""
        if self.executor is not None:
            if circuit_json is not None and takes_circuit_json(self.executor):
                return await self.executor.run(
                    self.engine, self.noise, circuit, shots, params=params, circuit_json=circuit_json()
                )
            return await self.executor.run(self.engine, self.noise, circuit, shots, params=params)
        return await get_pool().run(
            self.engine, self.noise, circuit, shots, params=params,
            time_limit=self.item_time_limit, circuit_json=circuit_json, timed=True,
        )  # fmt: skip


def takes_circuit_json(executor: Executor) -> bool:
    """Whether ``executor.run`` takes ``circuit_json`` (executors written before it was
    added to the protocol are called without it)."""
    kind = type(executor)
    found = _takes_json.get(kind)
    if found is None:
        try:
            parameters = inspect.signature(executor.run).parameters
        except (TypeError, ValueError):
            parameters = {}
        found = _takes_json[kind] = "circuit_json" in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        )
    return found


_takes_json: dict[type, bool] = {}


def check_memory(label: str, circuit: cirq.Circuit, *, density: bool) -> None:
    """Refuse a simulation whose state this machine cannot hold (a 30-qubit state vector
    is 8 GiB; its density matrix would be 8 EiB)."""
    amplitudes = math.prod(q.dimension for q in circuit.all_qubits())
    needed = BYTES_PER_AMPLITUDE * (amplitudes**2 if density else amplitudes)
    if needed < ALWAYS_FITS_BYTES:
        return  # reading the memory left costs more than such a simulation
    available = available_memory()
    if available is not None and needed > available:
        what = "density matrix" if density else "state vector"
        raise LimitExceededError(
            f"circuit {label!r} needs about {_gib(needed)} for its {what}, and this machine "
            f"has {_gib(available)} available; use fewer qubits, a state-vector target "
            "('sim') rather than a density-matrix one, or a cluster target"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


# complex64, as qsim and Cirq's simulators hold a state.
BYTES_PER_AMPLITUDE = 8
# States smaller than this are not checked against the memory left.
ALWAYS_FITS_BYTES = 64 << 20


EMULATOR_GATESET = cirq.Gateset(
    cirq.XPowGate,
    cirq.YPowGate,
    cirq.ZPowGate,
    cirq.PhasedXPowGate,
    cirq.PhasedXZGate,
    cirq.CZ,
    cirq.MeasurementGate,
    unroll_circuit_op=False,
)


class EmulatorTarget(SimulatorTarget):
    """A small superconducting QPU: 6 qubits in a chain, CZ + single-qubit rotations,
    depolarizing noise, and device time per shot, one job at a time.

    The noisy simulation runs in the pool while the device time passes on the loop, so
    a cancel takes effect at once, as it would between shots on hardware.
    """

    def __init__(
        self,
        name: str = "emulator",
        *,
        n_qubits: int = EMULATOR_QUBITS,
        noise: float = EMULATOR_NOISE,
        seconds_per_shot: float | None = None,
        seconds_per_circuit: float = 0.02,
    ):
        qubits, edges = linear_chain(n_qubits)
        device = DeviceSpec(
            name=name,
            max_qubits=n_qubits,
            qubits=qubits,
            connectivity=edges,
            gateset=EMULATOR_GATESET,
            compile_to=cirq.CZTargetGateset(),
            native_gates=("X/Y/Z rotations", "PhasedXZ", "PhasedX", "CZ", "measure"),
            max_shots=EMULATOR_MAX_SHOTS,
            description=emulator_description(n_qubits, noise),
        )
        super().__init__(name, engine="density", device=device, noise=noise, max_running_jobs=1)
        if seconds_per_shot is None:
            seconds_per_shot = float(os.environ.get("QNB_EMULATOR_SECONDS_PER_SHOT", "0.001"))
        self.seconds_per_shot = seconds_per_shot
        self.seconds_per_circuit = seconds_per_circuit

    sequential_items = True

    def device_seconds(self, shots: int) -> float:
        return self.seconds_per_circuit + shots * self.seconds_per_shot

    async def start(self, job: TargetJob, run: RunState) -> None:
        # One device: the items run one after another.
        indices = list(range(len(job.circuits)))
        run.tasks = [asyncio.create_task(self._run_items(run, indices, job))]

    async def _execute(
        self,
        circuit: cirq.Circuit,
        shots: int,
        params: cirq.ParamResolver | None,
        circuit_json: Callable[[], str] | None = None,
    ) -> tuple:
        simulation = asyncio.ensure_future(super()._execute(circuit, shots, params, circuit_json))
        try:
            await asyncio.sleep(self.seconds_per_circuit + shots * self.seconds_per_shot)
            return await simulation
        finally:
            simulation.cancel()


def _built_in_targets() -> dict[str, Target]:
    """The built-in targets, from their facts in ``_target_catalog`` (which ``qnb
    targets`` lists without importing Cirq)."""
    made: dict[str, Target] = {}
    for name, facts in BUILT_IN.items():  # in the catalog's order: listings keep it
        if name == "emulator":
            made[name] = EmulatorTarget()
            continue
        device = DeviceSpec(name, max_qubits=facts.max_qubits, max_shots=facts.max_shots,
                            max_batch=facts.max_batch, description=facts.description)  # fmt: skip
        made[name] = SimulatorTarget(name, engine=facts.engine, device=device)
    return made


for _name, _target in _built_in_targets().items():
    registry.register(_name, _target)


def _simulator_kind(engine_of: str):
    def make(name: str, *, noise: float = 0.0, **options: Any) -> SimulatorTarget:
        base = _built_in_targets()[engine_of]
        assert isinstance(base, SimulatorTarget)
        description = base.device.description + (f", noise {noise}" if noise else "")
        device = dataclasses.replace(base.device, name=name, description=description)
        return SimulatorTarget(name, engine=base.engine, device=device, noise=noise, **options)

    return make


for _kind in ("sim", "cirq", "density"):
    register_kind(_kind, _simulator_kind(_kind))
register_kind(
    "emulator",
    lambda name, *, noise=0.0, **options: EmulatorTarget(name, noise=noise or EMULATOR_NOISE, **options),
)
