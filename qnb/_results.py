"""Results: a mapping label -> ``cirq.Result``, with counts and histograms."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence

import cirq
import numpy as np

from ._errors import QnbError
from ._options import base_label
from ._records import JobRecord
from ._status import JobStatus
from . import _sweeps
from ._plot import plot_counts, plot_grid, plot_sweep


def _natural(key: str) -> list:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", key)]


def measurement_keys(result: cirq.Result) -> list[str]:
    """The result's keys in the order :func:`counts_of` puts their bits: by name, with
    numbers in names compared as numbers (``c_2`` before ``c_10``), so the order does not
    depend on where in the circuit (or a compiled form of it) each key was measured."""
    return sorted(result.records, key=_natural)


def counts_of(result: cirq.Result, key: str | Sequence[str] | None = None) -> dict[str, int]:
    """Bitstring -> count, sorted by bitstring.

    Bit order, left to right: the measurement keys in :func:`measurement_keys` order (or
    ``key``: one key, or several in the order given); within a key, each time the
    circuit measured it, in circuit order (a key measured twice gives the bits of both
    measurements); within a measurement, its qubits in the order given to
    ``cirq.measure`` — big-endian, like ``cirq.Result.histogram``. A qudit gives its
    digit (``"2"`` for a qutrit in state 2). OpenQASM's
    ``measure q -> c`` gives keys ``c_0``, ``c_1``, ...: so ``c[0]`` is the leftmost bit.
    """
    records = result.records
    if key is None:
        keys = measurement_keys(result)
    else:
        keys = [key] if isinstance(key, str) else list(key)
        unknown = [k for k in keys if k not in records]
        if unknown:
            raise QnbError(
                f"no measurement key {', '.join(map(repr, unknown))} in this result; its keys: "
                f"{', '.join(map(repr, measurement_keys(result))) or 'none'}"
            )
    if not keys:
        return {}
    # records[k] is (repetitions, times measured, qubits): one row of bits per shot.
    bits = np.concatenate(
        [np.asarray(records[k], dtype=np.uint8).reshape(len(records[k]), -1) for k in keys], axis=1
    )
    width = bits.shape[1]
    if width <= 62 and bits.max(initial=0) <= 1:  # qudits' digits go the slow way
        values = bits.astype(np.int64) @ (np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64))
        outcomes, counts = np.unique(values, return_counts=True)
        return {format(int(v), f"0{width}b"): int(c) for v, c in zip(outcomes, counts)}
    tally = Counter("".join(map(str, row)) for row in bits)
    return dict(sorted(tally.items()))


def is_retryable(rec: JobRecord) -> bool:
    """Whether running the job's unfinished items again may succeed: it was cancelled,
    or a failure was one a rerun may cure (a lost worker, a cluster or vendor away, an
    interrupted run), as the place it happened said (``ItemOutcome.retryable``, kept as
    ``ItemRecord.retryable``). A circuit's own error fails the same way every time; a
    failure nobody classified (a sampler's own error, an item stored before the flag)
    promises nothing."""
    if rec.status is JobStatus.CANCELLED:
        return True
    return any(it.status is JobStatus.CANCELLED or (it.status is JobStatus.FAILED and it.retryable)
               for it in rec.items)  # fmt: skip


def resubmit_hint(rec: JobRecord) -> str:
    """``"; job.resubmit() runs it again"`` after a failure that is not deterministic,
    else ``""`` (a message should not promise what a rerun cannot give)."""
    return "; job.resubmit() runs it again" if is_retryable(rec) else ""


def _short(value) -> str:
    """A parameter's value in a legend: a float to 4 significant digits."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _sort_key(value):
    return (0, float(value), "") if isinstance(value, (int, float)) else (1, 0.0, str(value))


class JobResult(Mapping[str, cirq.Result]):
    """Results of a job: ``result[label]`` is a ``cirq.Result``.

    A failed batch keeps the results of its completed items; ``missing`` says which
    labels have none and why.
    """

    def __init__(
        self,
        job_id: str,
        labels: list[str],
        texts: dict[str, str],
        missing: dict[str, str],
        params: Mapping[str, str] | None = None,
        *,
        name: str | None = None,
    ):
        self.job_id = job_id
        #: The job's name, for plot titles (None: titles say "job <id>").
        self.name = name
        self.labels = labels
        self.missing = missing
        self._texts = texts
        self._parsed: dict[str, cirq.Result] = {}
        #: Item label -> its sweep point's resolver (Cirq JSON), for swept items only.
        self._params = dict(params or {})
        self._sweeps: dict[str, list[str]] = {}  # circuit label -> its points' labels
        for item in labels:
            if item in self._params:
                self._sweeps.setdefault(base_label(item), []).append(item)

    @property
    def complete(self) -> bool:
        return not self.missing

    def __getitem__(self, label: str) -> cirq.Result:
        if label in self.missing:
            raise KeyError(f"no result for {label!r}: {self.missing[label]}")
        if label not in self._texts:
            raise KeyError(f"no circuit labelled {label!r}; labels: {', '.join(self.labels)}")
        if label not in self._parsed:
            result = cirq.read_json(json_text=self._texts[label])
            if label in self._params:  # the point it ran at, as Cirq's samplers return it
                result = cirq.ResultDict(
                    params=_sweeps.resolver_of(self._params[label]), records=result.records
                )
            self._parsed[label] = result
        return self._parsed[label]

    # -- sweeps ---------------------------------------------------------------------------

    @property
    def swept(self) -> bool:
        return bool(self._sweeps)

    def _sweep_labels(self, label: str | None) -> list[str]:
        if not self._sweeps:
            raise QnbError("this job has no parameter sweep (submit with params=...)")
        if label is None:
            if len(self._sweeps) > 1:
                raise QnbError(
                    f"this job sweeps {len(self._sweeps)} circuits; name one: "
                    f"sweep(label=...) with one of {', '.join(map(repr, self._sweeps))}"
                )
            label = next(iter(self._sweeps))
        if label not in self._sweeps:
            raise QnbError(
                f"no swept circuit labelled {label!r}; swept: {', '.join(map(repr, self._sweeps))}"
            )
        return self._sweeps[label]

    def sweep(self, label: str | None = None) -> list[cirq.Result]:
        """One circuit's results in sweep order, each with its ``params`` (as
        ``cirq.Sampler.run_sweep`` returns them). ``label`` picks the circuit of a batch."""
        points = self._sweep_labels(label)
        lost = [p for p in points if p not in self._texts]
        if lost:
            raise QnbError(
                f"{len(lost)} of {len(points)} sweep points have no result "
                f"({lost[0]}: {self.missing.get(lost[0], 'no result')}); the others are "
                "result[label] for each point, and job.resubmit(only_failed=True) runs the "
                "missing points again"
            )
        return [self[p] for p in points]

    def data(self, label: str | None = None):
        """A tidy ``pandas.DataFrame``: a row per shot, a column per measurement key (as
        a big-endian integer, like ``cirq.Sampler.sample``) and per swept parameter.
        Without ``label``: every circuit, with a ``label`` column when there are several."""
        import pandas as pd  # heavy, and only needed here

        if label is not None:
            chosen = self._sweep_labels(label) if label in self._sweeps else [label]
        else:
            chosen = list(self)
        frames = []
        for item in chosen:
            result = self[item]
            frame = result.data.copy()
            for name, value in result.params.param_dict.items():
                frame.insert(0, str(name), value)
            if label is None and len(self._sweeps or self.labels) > 1:
                frame.insert(0, "label", base_label(item) if item in self._params else item)
            frames.append(frame)
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def __iter__(self) -> Iterator[str]:
        return (label for label in self.labels if label in self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def _one_label(self, label: str | None) -> str:
        if label is not None:
            return label
        if len(self.labels) == 1:
            return self.labels[0]
        raise QnbError(
            f"this job has {len(self.labels)} circuits; name one: "
            f"counts(label=...) with one of {', '.join(map(repr, self.labels[:10]))}"
        )

    def counts(self, label: str | None = None, *, key: str | Sequence[str] | None = None) -> dict[str, int]:
        """Bitstring -> count for one circuit (the only one if ``label`` is None).

        ``key``: only that measurement key's bits (or several keys, in the order given).
        Without it, all keys: see :func:`counts_of` for the bit order.
        """
        return counts_of(self[self._one_label(label)], key)

    def keys_of(self, label: str | None = None) -> list[str]:
        """The measurement keys of one circuit's result, in the order of their bits."""
        return measurement_keys(self[self._one_label(label)])

    def plot(
        self,
        label: str | None = None,
        ax=None,
        *,
        key: str | Sequence[str] | None = None,
        top: int | None = None,
        probabilities: bool = False,
        outcome: str | None = None,
    ):
        """A histogram of the counts; a batch without ``label`` becomes a grid.

        A swept circuit (``label`` names it, or it is the job's only circuit) plots a
        curve instead: against the parameter that varies, the probability of
        ``outcome`` (a bitstring of ``key``'s bits, e.g. ``"1"``) or, without it, the
        mean of the measured bits (P(1) for one qubit).

        ``key``: plot that measurement key only (as in :meth:`counts`).
        ``top``: keep the most frequent outcomes only (readable with many qubits).
        ``probabilities``: plot frequencies instead of counts.
        """
        only_one_swept = len(self._sweeps) == 1 and len(self._params) == len(self.labels)
        if label in self._sweeps or (label is None and only_one_swept):
            return self._plot_sweep(label, ax, key=key, outcome=outcome)
        if label is None and len(self.labels) > 1:
            return plot_grid(
                {lb: self.counts(lb, key=key) for lb in self}, top=top, probabilities=probabilities
            )
        label = self._one_label(label)
        title = self._title(label)
        if key is not None:
            title += f" [{key if isinstance(key, str) else ', '.join(key)}]"
        return plot_counts(
            self.counts(label, key=key), ax=ax, title=title, top=top, probabilities=probabilities
        )

    def _title(self, label: str) -> str:
        """A plot's title: the circuit's label, or for a job of one circuit whose label
        is only its index ("0"), the job's name (or "job <id>")."""
        if len(self.labels) == 1 and label.isdigit():
            return self.name or f"job {self.job_id[:8]}"
        return label

    def _plot_sweep(self, label: str | None, ax, *, key, outcome: str | None = None):
        results = self.sweep(label)
        names = list(results[0].params.param_dict)
        values = {name: [r.params.param_dict.get(name) for r in results] for name in names}
        varying = [name for name in names if len(set(values[name])) > 1] or names
        # x: the parameter with the most values; one line per value of the others (a 2-D
        # sweep is a family of curves, not one line zig-zagging between them).
        x_param = max(varying, key=lambda name: len(set(values[name]))) if varying else None
        others = [name for name in varying if name != x_param]
        ys = []
        for result in results:
            counts = counts_of(result, key)
            total = sum(counts.values()) or 1
            if outcome is not None:
                ys.append(counts.get(outcome, 0) / total)
            else:  # the mean of the measured bits: P(1) for one qubit
                width = len(next(iter(counts), "")) or 1
                ys.append(sum(bits.count("1") * n for bits, n in counts.items()) / (total * width))
        lines: dict[tuple, list[tuple[float, float]]] = {}
        for i, result in enumerate(results):
            x = float(values[x_param][i]) if x_param is not None else i
            group = tuple(values[name][i] for name in others)
            lines.setdefault(group, []).append((x, ys[i]))
        series = {
            ", ".join(f"{name}={_short(v)}" for name, v in zip(others, group)) or None: points
            for group, points in sorted(lines.items(), key=lambda kv: tuple(map(_sort_key, kv[0])))
        }
        what = f"P({outcome})" if outcome is not None else "mean of measured bits"
        swept = label or next(iter(self._sweeps))
        name = self.name if swept.isdigit() else None
        title = name or swept
        return plot_sweep(series, ax=ax, xlabel=str(x_param) if x_param is not None else "point",
                          ylabel=what, title=title + (f" [{key}]" if key else ""))  # fmt: skip

    def __repr__(self) -> str:
        parts = [f"JobResult(job {self.job_id[:8]}, {len(self)} of {len(self.labels)} results"]
        if self.missing:
            parts.append(f", missing {', '.join(map(repr, self.missing))}")
        return "".join(parts) + ")"
