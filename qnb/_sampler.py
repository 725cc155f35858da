"""qnb as a ``cirq.Sampler``: any Cirq code that takes a sampler runs through qnb's queue.

Each call is one qnb job — stored, visible in the monitor, cancellable — on any target
(a simulator, the emulator, a lab's queue server, hardware), and returns what Cirq's
samplers return. Cirq derives ``run``, ``sample`` and the rest from ``run_sweep``;
``run_batch`` is overridden so that a batch is one job, not one per circuit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import cirq

from . import _api, _circuits, _sweeps
from ._errors import InvalidOptionError
from ._job import Job


class Sampler(cirq.Sampler):
    """``qnb.Sampler(target="sim", **submit_options)``: a ``cirq.Sampler`` whose calls
    are qnb jobs. ``submit_options`` as for ``qnb.submit`` (``compile``, ``name``,
    ``priority``, ...); ``timeout`` bounds each wait for results (None: wait)."""

    def __init__(self, target: str = "sim", *, timeout: float | None = None, **submit_options):
        for fixed in ("shots", "params", "circuits"):
            if fixed in submit_options:
                raise InvalidOptionError(
                    f"qnb.Sampler takes {fixed!r} per call (repetitions= / params=), not "
                    "when it is made"
                )
        self.target = target
        self.timeout = timeout
        self.submit_options = submit_options
        #: The job of the last call (to cancel it, or to find it in the monitor).
        self.last_job: Job | None = None

    def _submit(self, programs: Sequence[cirq.AbstractCircuit], sweeps: Sequence, repetitions: int) -> tuple[Job, list[str]]:
        labelled = {str(i): _as_circuit(p) for i, p in enumerate(programs)}
        points = {label: _sweeps.resolvers(s if s is not None else cirq.UnitSweep)
                  for label, s in zip(labelled, sweeps)}  # fmt: skip
        options = {"name": None, "user": None, "front": False, "compile": False, "priority": 0}
        options.update(self.submit_options)
        job = _api._submit_items(
            labelled, target=self.target, shots=repetitions, sweeps=points, **options
        )
        self.last_job = job
        return job, list(labelled)

    def run_sweep(
        self, program: cirq.AbstractCircuit, params: cirq.Sweepable, repetitions: int = 1
    ) -> Sequence[cirq.Result]:
        return self.run_batch([program], [params], repetitions)[0]

    async def run_sweep_async(
        self, program: cirq.AbstractCircuit, params: cirq.Sweepable, repetitions: int = 1
    ) -> Sequence[cirq.Result]:
        return (await self.run_batch_async([program], [params], repetitions))[0]

    def run_batch(
        self,
        programs: Sequence[cirq.AbstractCircuit],
        params_list: Sequence[cirq.Sweepable] | None = None,
        repetitions: int | Sequence[int] = 1,
    ) -> Sequence[Sequence[cirq.Result]]:
        job, labels = self._submit_batch(programs, params_list, repetitions)
        result = job.result(timeout=self.timeout)
        return [result.sweep(label) for label in labels]

    async def run_batch_async(
        self,
        programs: Sequence[cirq.AbstractCircuit],
        params_list: Sequence[cirq.Sweepable] | None = None,
        repetitions: int | Sequence[int] = 1,
    ) -> Sequence[Sequence[cirq.Result]]:
        job, labels = self._submit_batch(programs, params_list, repetitions)
        result = await asyncio.wait_for(job._result_async(), self.timeout)
        return [result.sweep(label) for label in labels]

    def _submit_batch(self, programs, params_list, repetitions) -> tuple[Job, list[str]]:
        if params_list is None:
            params_list = [None] * len(programs)
        if len(params_list) != len(programs):
            raise InvalidOptionError(
                f"{len(programs)} programs but {len(params_list)} sweeps in params_list"
            )
        if not isinstance(repetitions, int):
            distinct = set(repetitions)
            if len(repetitions) != len(programs) or len(distinct) != 1:
                # One job has one shot count; Cirq's default batches differ per circuit.
                raise InvalidOptionError(
                    "qnb.Sampler.run_batch runs a batch as one job with one number of "
                    "repetitions; give an int (or call run_sweep per circuit)"
                )
            repetitions = distinct.pop()
        return self._submit(programs, params_list, repetitions)

    def __repr__(self) -> str:
        return f"qnb.Sampler(target={self.target!r})"


def _as_circuit(program: object) -> cirq.Circuit:
    if isinstance(program, cirq.FrozenCircuit):
        return program.unfreeze(copy=False)
    if isinstance(program, cirq.Circuit):
        return program
    return _circuits.normalize(program)["0"]
