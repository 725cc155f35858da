"""Targets: where jobs run.

A target is a small async protocol driven by the JobManager on its loop:
``submit`` starts a job's items and returns a handle, ``poll`` returns the items'
statuses once something changed, ``results`` returns finished items' outcomes, and
``cancel`` stops what can be stopped (idempotent; ``True`` once confirmed). Local
simulators, the device emulator, remote queue servers and cloud APIs all fit it.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import os
import threading
from collections.abc import Sequence
from typing import Any

import cirq

from .._device import DeviceSpec, linear_chain
from .._errors import UnknownTargetError
from ._pool import get_pool
from .._status import TERMINAL, JobStatus


@dataclasses.dataclass
class TargetJob:
    """What the manager hands a target: one job's circuits, in item order."""

    job_id: str
    shots: int
    labels: list[str]
    circuits: list[cirq.Circuit]
    #: The circuits as compact Cirq JSON when already at hand (remote targets send it).
    circuit_json: list[str] | None = None
    #: Asked for the head of the queue (targets that own their queue place it there).
    front: bool = False
    name: str = ""
    #: Higher runs first (targets that own their queue order it so).
    priority: int = 0


@dataclasses.dataclass
class ItemOutcome:
    status: JobStatus  # COMPLETED, FAILED or CANCELLED
    result: str | None = None  # cirq.Result as Cirq JSON
    error: str | None = None


class Target(abc.ABC):
    """Where jobs run. Subclasses implement the four coroutines below."""

    name: str
    device: DeviceSpec
    #: How many jobs of this target's queue may run at once.
    max_running_jobs: int = 1
    #: Jobs run inside this process, so they die with it (see crash recovery).
    local: bool = True
    #: The target keeps its own queue (a queue server): the manager hands jobs over at
    #: once and their status and queue position follow the target, not a local queue.
    owns_queue: bool = False

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        self.device.validate(label, circuit)

    def compile(self, circuit: cirq.Circuit) -> cirq.Circuit:
        return self.device.compile(circuit)

    @abc.abstractmethod
    async def submit(self, job: TargetJob) -> Any:
        """Start running ``job``; return a handle for the other calls."""

    @abc.abstractmethod
    async def poll(self, handle: Any) -> list[JobStatus]:
        """The items' statuses, returned once they differ from the last poll."""

    @abc.abstractmethod
    async def results(self, handle: Any, indices: Sequence[int]) -> dict[int, ItemOutcome]:
        """Outcomes of the given finished items."""

    @abc.abstractmethod
    async def cancel(self, handle: Any) -> bool:
        """Stop the job's unfinished items. Idempotent; ``True`` once they are stopped."""

    # -- for targets that own their queue (see ``owns_queue``) ---------------------------

    def handle_id(self, handle: Any) -> str | None:
        """The job's id on the target, kept in the store to follow it after a restart."""
        return None

    async def reattach(self, remote_id: str, n_items: int) -> Any:
        """A handle for a job submitted earlier (by a previous kernel)."""
        raise NotImplementedError(f"target {self.name!r} cannot follow jobs across restarts")

    def queue_position(self, remote_id: str) -> int | None:
        """The job's 1-based position in the target's own queue (blocking call)."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class _LocalRun:
    """A handle for a job running on a local target."""

    def __init__(self, n_items: int):
        self.statuses = [JobStatus.PENDING] * n_items
        self.outcomes: dict[int, ItemOutcome] = {}
        self.changed = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def set_running(self, index: int) -> None:
        self.statuses[index] = JobStatus.RUNNING
        self.changed.set()

    def finish(self, index: int, outcome: ItemOutcome) -> None:
        self.outcomes[index] = outcome
        self.statuses[index] = outcome.status
        self.changed.set()


class SimulatorTarget(Target):
    """A Cirq simulator run in the process pool; items run in parallel."""

    def __init__(
        self,
        name: str,
        *,
        engine: str,
        device: DeviceSpec,
        noise: float = 0.0,
        max_running_jobs: int = 64,
    ):
        self.name = name
        self.engine = engine
        self.noise = noise
        self.device = device
        self.max_running_jobs = max_running_jobs

    async def submit(self, job: TargetJob) -> _LocalRun:
        run = _LocalRun(len(job.circuits))
        run.tasks = [
            asyncio.create_task(self._run_items(run, [i], job.circuits, job.shots))
            for i in range(len(job.circuits))
        ]
        return run

    async def _run_items(
        self, run: _LocalRun, indices: list[int], circuits: list[cirq.Circuit], shots: int
    ) -> None:
        for i in indices:
            run.set_running(i)
            try:
                ok, payload = await self._execute(circuits[i], shots)
            except asyncio.CancelledError:
                for j in indices:
                    if run.statuses[j] not in TERMINAL:
                        run.finish(j, ItemOutcome(JobStatus.CANCELLED, error="cancelled"))
                raise
            if ok:
                run.finish(i, ItemOutcome(JobStatus.COMPLETED, result=payload))
            else:
                run.finish(i, ItemOutcome(JobStatus.FAILED, error=payload))

    async def _execute(self, circuit: cirq.Circuit, shots: int) -> tuple[bool, str]:
        return await get_pool().run(self.engine, self.noise, circuit, shots)

    async def poll(self, handle: _LocalRun) -> list[JobStatus]:
        await handle.changed.wait()
        handle.changed.clear()
        return list(handle.statuses)

    async def results(self, handle: _LocalRun, indices: Sequence[int]) -> dict[int, ItemOutcome]:
        return {i: handle.outcomes[i] for i in indices}

    async def cancel(self, handle: _LocalRun) -> bool:
        # A circuit already inside a worker finishes there, but its result is dropped:
        # locally, that is as good as stopped.
        for task in handle.tasks:
            task.cancel()
        await asyncio.gather(*handle.tasks, return_exceptions=True)
        return True


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
        n_qubits: int = 6,
        noise: float = 0.005,
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
            max_shots=100_000,
            description=(
                f"device emulator: {n_qubits} qubits in a line, depolarizing noise {noise}"
            ),
        )
        super().__init__(name, engine="density", device=device, noise=noise, max_running_jobs=1)
        if seconds_per_shot is None:
            seconds_per_shot = float(os.environ.get("QNB_EMULATOR_SECONDS_PER_SHOT", "0.001"))
        self.seconds_per_shot = seconds_per_shot
        self.seconds_per_circuit = seconds_per_circuit

    async def submit(self, job: TargetJob) -> _LocalRun:
        run = _LocalRun(len(job.circuits))
        # One device: the items run one after another.
        indices = list(range(len(job.circuits)))
        run.tasks = [asyncio.create_task(self._run_items(run, indices, job.circuits, job.shots))]
        return run

    async def _execute(self, circuit: cirq.Circuit, shots: int) -> tuple[bool, str]:
        simulation = asyncio.ensure_future(super()._execute(circuit, shots))
        try:
            await asyncio.sleep(self.seconds_per_circuit + shots * self.seconds_per_shot)
            return await simulation
        finally:
            simulation.cancel()


def _builtin_targets() -> dict[str, Target]:
    return {
        "sim": SimulatorTarget(
            "sim",
            engine="qsim",
            device=DeviceSpec("sim", max_qubits=30, description="qsimcirq state vector (fast)"),
        ),
        "cirq": SimulatorTarget(
            "cirq",
            engine="cirq",
            device=DeviceSpec("cirq", max_qubits=26, description="cirq.Simulator state vector"),
        ),
        "density": SimulatorTarget(
            "density",
            engine="density",
            device=DeviceSpec(
                "density", max_qubits=12, description="cirq.DensityMatrixSimulator, noiseless"
            ),
        ),
        "emulator": EmulatorTarget(),
    }


class TargetRegistry:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._targets: dict[str, Target] = _builtin_targets()

    def get(self, name: str) -> Target:
        with self._lock:
            target = self._targets.get(name)
            known = ", ".join(self._targets)
        if target is None:
            raise UnknownTargetError(
                f"unknown target {name!r}; known targets: {known} "
                "(qnb.targets() describes them, qnb.register_target() adds one)"
            )
        return target

    def register(self, name: str, target: Target) -> None:
        if not isinstance(target, Target):
            raise TypeError(f"expected a qnb Target, got {type(target).__name__}")
        with self._lock:
            self._targets[name] = target

    def all(self) -> dict[str, Target]:
        with self._lock:
            return dict(self._targets)


registry = TargetRegistry()


def register_target(
    name: str, target: Target | str, *, noise: float = 0.0, **options: Any
) -> Target:
    """Add a target under ``name``: a :class:`Target`, or a built-in kind with options.

    ``qnb.register_target("noisy", "density", noise=0.01)`` adds a density-matrix
    simulator with depolarizing noise; ``"emulator"`` takes the emulator's options
    (``n_qubits``, ``noise``, ``seconds_per_shot``).
    """
    if isinstance(target, str):
        if target == "emulator":
            target = EmulatorTarget(name, noise=noise or 0.005, **options)
        elif target in ("sim", "cirq", "density"):
            base = registry.get(target)
            assert isinstance(base, SimulatorTarget)
            device = dataclasses.replace(
                base.device, name=name, description=f"{base.device.description}, noise {noise}"
            )
            target = SimulatorTarget(name, engine=base.engine, device=device, noise=noise, **options)
        else:
            raise UnknownTargetError(
                f"unknown target kind {target!r}; kinds: sim, cirq, density, emulator"
            )
    registry.register(name, target)
    return target
