"""Any ``cirq.Sampler`` as a target: cirq-google's ``ProcessorSampler``, ``cirq_aqt``'s
samplers, ``cirq_pasqal.PasqalSampler``, a user's own.

Items run through the sampler's ``run_sweep`` on a small thread pool the target owns
(samplers are synchronous, and a vendor's may wait on the network): the sweep points of
one circuit go in one ``run_sweep`` call, other items one call each. A cancel stops the
calls that have not started; one that is running finishes and is dropped.

Every call has a deadline (``call_timeout``, an hour by default): past it the items fail
("no answer from the sampler") and the call is abandoned on its thread. The threads are
daemons, so a sampler stuck in ``run_sweep`` never keeps a finished script from exiting.

A sampler has no job id, so its jobs live only as long as the process that runs them:
like local simulations, a job that has not finished when the kernel ends is marked
failed (interrupted) by the next one, and ``job.resubmit()`` runs it again.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable, Sequence

import cirq

from .._device import DeviceSpec
from .._errors import DeviceValidationError
from .._status import JobStatus
from ._base import ItemOutcome, RunState, ScheduledTarget, TargetJob
from ._calls import CallsRefused, CallTimeout, DeadlineCalls

#: Said wherever a sampler target is described (``qnb.targets()``, the README).
NOT_FOLLOWED = (
    "no job id: its jobs cannot be followed after a restart and are marked interrupted, "
    "like local ones"
)
# Where a sampler says nothing about its device: qnb does not limit it, the sampler does.
PERMISSIVE_MAX_QUBITS = 1000
#: The default deadline of one run_sweep call (a vendor's sampler may wait in a queue).
SAMPLER_CALL_SECONDS = 3600.0


class SamplerTarget(ScheduledTarget):
    """A target that runs its items through ``sampler.run_sweep``."""

    local = True  # no job id to follow after a restart: see the module's docstring

    def __init__(
        self,
        name: str,
        sampler: cirq.Sampler,
        *,
        device: cirq.Device | DeviceSpec | None = None,
        max_threads: int = 2,
        max_running_jobs: int = 4,
        call_timeout: float = SAMPLER_CALL_SECONDS,
    ):
        """``device``: what the sampler runs on, when it does not say itself
        (``sampler.processor.get_device()``, ``sampler.device``); ``max_threads``: how many
        ``run_sweep`` calls run at once; ``call_timeout``: the deadline of one call."""
        if not isinstance(sampler, cirq.Sampler):
            raise TypeError(f"expected a cirq.Sampler, got {type(sampler).__name__}")
        self.name = name
        self.sampler = sampler
        self.max_running_jobs = max_running_jobs
        if device is None:
            device = device_of(sampler)
        self.cirq_device = device if isinstance(device, cirq.Device) else None
        self.device = device if isinstance(device, DeviceSpec) else device_spec(name, sampler, device)
        self.call_timeout = call_timeout
        self._threads = DeadlineCalls(f"qnb-sampler-{name}", threads=max_threads)

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        super().check(label, circuit)
        if self.cirq_device is not None:
            try:
                self.cirq_device.validate_circuit(circuit)
            except ValueError as exc:
                raise DeviceValidationError(
                    f"circuit {label!r} does not fit the device of {self.name!r}: {exc}"
                ) from None

    async def start(self, job: TargetJob, run: RunState) -> None:
        run.tasks = [
            asyncio.create_task(self._run_group(run, indices, job))
            for indices in _groups(job)
        ]

    async def _run_group(self, run: RunState, indices: list[int], job: TargetJob) -> None:
        loop = asyncio.get_running_loop()
        circuit = job.circuits[indices[0]]
        points = [
            cirq.ParamResolver(None if job.params is None else job.params[i]) for i in indices
        ]

        def started() -> None:
            for i in indices:
                if run.statuses[i] is JobStatus.PENDING:  # not cancelled meanwhile
                    run.set_running(i)

        call = functools.partial(
            _sample, self.sampler, circuit, points, job.shots,
            lambda: loop.call_soon_threadsafe(started),
        )  # fmt: skip
        retryable = None  # the sampler's own error: it does not say which kind
        try:
            ok, payloads = await self._threads.acall(self.call_timeout, call)
        except asyncio.CancelledError:
            # Not started: the thread pool drops it. Running: it ends and is ignored.
            run.finish_unfinished(indices, ItemOutcome(JobStatus.CANCELLED, error="cancelled"))
            raise
        except (CallTimeout, CallsRefused) as exc:
            why = f"no answer from the sampler of {self.name!r} within {self.call_timeout:g} s"
            if isinstance(exc, CallsRefused):
                why = f"the sampler of {self.name!r} has too many calls stuck past their deadline"
            ok, payloads, retryable = False, [why] * len(indices), True
        for i, payload in zip(indices, payloads):
            if ok:
                run.finish(i, ItemOutcome(JobStatus.COMPLETED, result=payload))
            else:
                run.finish(i, ItemOutcome(JobStatus.FAILED, error=payload, retryable=retryable))

    def describe(self) -> str:
        return self.device.description


def _groups(job: TargetJob) -> list[list[int]]:
    """Item indices by circuit: a sweep's points share one circuit object (one
    ``run_sweep`` call); items that are not swept run one call each."""
    if job.params is None:
        return [[i] for i in range(len(job.circuits))]
    by_circuit: dict[int, list[int]] = {}
    for i, circuit in enumerate(job.circuits):
        by_circuit.setdefault(id(circuit), []).append(i)
    return list(by_circuit.values())


def _sample(
    sampler: cirq.Sampler,
    circuit: cirq.Circuit,
    points: list[cirq.ParamResolver],
    shots: int,
    started: Callable[[], None],
) -> tuple[bool, list[str]]:
    """In a thread of the target's pool: one ``run_sweep`` call; results as Cirq JSON
    (in the thread too: serializing is not the loop's work)."""
    started()
    try:
        adapt = _adapter(sampler)
        program, records_of = adapt(circuit) if adapt else (circuit, lambda r: r.records)
        results = sampler.run_sweep(program, points, repetitions=shots)
        if len(results) != len(points):
            raise RuntimeError(
                f"{type(sampler).__name__}.run_sweep returned {len(results)} results "
                f"for {len(points)} sweep points"
            )
        # Vendors' Result classes need not be Cirq-serializable: their records are.
        payloads = [
            cirq.to_json(cirq.ResultDict(params=point, records=records_of(result)), indent=None)
            for point, result in zip(points, results)
        ]
        return True, payloads
    except Exception as exc:  # reported per item: the other calls still run
        error = f"{type(sampler).__name__}: {type(exc).__name__}: {exc}"
        return False, [error] * len(points)


# -- vendors' quirks, in one place ---------------------------------------------------------

Records = dict
Adapter = Callable[[cirq.Circuit], tuple[cirq.Circuit, Callable[[cirq.Result], Records]]]


def _adapter(sampler: cirq.Sampler) -> Adapter | None:
    """How to hand a circuit to a sampler that does not take Cirq circuits as written
    (by class name, so that no vendor package is imported to ask)."""
    for cls in type(sampler).__mro__:
        if cls.__module__.startswith("cirq_aqt") and cls.__name__ == "AQTSampler":
            return _aqt_measure_all
    return None


def _aqt_measure_all(circuit: cirq.Circuit) -> tuple[cirq.Circuit, Callable[[cirq.Result], Records]]:
    """cirq-aqt's samplers take no measurement gates: they measure every ion, in line
    order, under the key ``m``, and size the register by the qubits the circuit uses.
    Terminal measurements are taken off (and their keys rebuilt from ``m``), and every
    line qubit up to the highest one measured is made part of the circuit."""
    measurements = [op for _, op in circuit.findall_operations(cirq.is_measurement)]
    if not circuit.are_all_measurements_terminal():
        raise ValueError("cirq-aqt measures at the end only; this circuit measures midway")
    body = cirq.Circuit(op for op in circuit.all_operations() if not cirq.is_measurement(op))
    highest = max((q.x for q in circuit.all_qubits()), default=0)
    idle = [q for q in cirq.LineQubit.range(highest + 1) if q not in body.all_qubits()]
    if idle:
        body.append([cirq.ZPowGate(exponent=0.0).on(q) for q in idle], strategy=cirq.InsertStrategy.EARLIEST)

    def records_of(result: cirq.Result) -> Records:
        bits = result.measurements["m"].astype(bool)
        records = {}
        for op in measurements:
            gate = op.gate
            columns = bits[:, [q.x for q in op.qubits]]
            mask = [bool(b) for b in getattr(gate, "full_invert_mask", lambda: ())()]
            if any(mask):
                columns = columns ^ mask
            records[gate.key] = columns.astype(int)[:, None, :]
        return records

    return body, records_of


# -- the device a sampler runs on ----------------------------------------------------------


def device_of(sampler: cirq.Sampler) -> cirq.Device | None:
    """The device a sampler offers: its processor's (cirq-google) or its own."""
    processor = getattr(sampler, "processor", None)
    get_device = getattr(processor, "get_device", None)
    if callable(get_device):
        device = get_device()
        if isinstance(device, cirq.Device):
            return device
    device = getattr(sampler, "device", None)
    return device if isinstance(device, cirq.Device) else None


def device_spec(name: str, sampler: cirq.Sampler, device: cirq.Device | None) -> DeviceSpec:
    """A :class:`DeviceSpec` from a Cirq device's metadata (qubits, couplings, gate
    set), or a permissive one that leaves the checks to the sampler."""
    about = f"cirq.Sampler {type(sampler).__name__} (run_sweep on a thread pool); {NOT_FOLLOWED}"
    metadata = getattr(device, "metadata", None) if device is not None else None
    qubits = getattr(metadata, "qubit_set", None)
    if not qubits:
        return DeviceSpec(name, max_qubits=PERMISSIVE_MAX_QUBITS, description=about)
    ordered = tuple(sorted(qubits))
    graph = getattr(metadata, "nx_graph", None)
    edges = None if graph is None else tuple(tuple(sorted(edge)) for edge in graph.edges)
    gateset = getattr(metadata, "gateset", None)
    compile_to: Sequence = getattr(metadata, "compilation_target_gatesets", ()) or ()
    return DeviceSpec(
        name,
        max_qubits=len(ordered),
        qubits=ordered,
        connectivity=edges,
        gateset=gateset if isinstance(gateset, cirq.Gateset) else None,
        compile_to=next(iter(compile_to), None),
        native_gates=tuple(_gate_names(gateset)),
        description=f"{about}; device {type(device).__name__}, {len(ordered)} qubits",
    )


def _gate_names(gateset: object) -> list[str]:
    gates = getattr(gateset, "gates", None) or ()
    names = (getattr(g, "name", None) or str(g) for g in gates)
    return sorted(set(itertools.islice(names, 40)))
