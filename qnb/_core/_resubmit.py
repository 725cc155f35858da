"""What a resubmission runs again: all of a finished job's items, or only its failed and
cancelled ones, from the circuits the store keeps (a new job, linked by ``parent_id``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import cirq

from .. import _circuits, _sweeps
from .._errors import JobStateError
from .._records import JobRecord
from .._status import JobStatus


@dataclasses.dataclass
class Resubmission:
    circuits: dict[str, cirq.Circuit]
    texts: list[str]
    params: list[str | None]
    resolvers: list[cirq.ParamResolver | None]


def resubmission(rec: JobRecord, texts: Sequence[str], *, only_failed: bool) -> Resubmission:
    """The items of ``rec`` to run again (``texts``: its stored circuits, per item)."""
    if not rec.done:
        raise JobStateError(
            f"job {rec.id[:8]} is still {rec.status.value}; resubmit a finished job "
            "(cancel it first if you want to run it again)"
        )
    redo = [
        i
        for i, item in enumerate(rec.items)
        if not only_failed or item.status in (JobStatus.FAILED, JobStatus.CANCELLED)
    ]
    if not redo:
        raise JobStateError(f"nothing to resubmit: every item of job {rec.id[:8]} completed")
    parsed = _circuits.from_json_many([texts[i] for i in redo])
    params = [rec.items[i].params for i in redo]  # failed sweep points only
    return Resubmission(
        circuits={rec.items[i].label: circuit for i, circuit in zip(redo, parsed)},
        texts=[texts[i] for i in redo],
        params=params,
        resolvers=[None if p is None else _sweeps.resolver_of(p) for p in params],
    )
