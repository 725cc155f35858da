"""Results: a mapping label -> ``cirq.Result``, with counts and histograms."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping

import cirq
import numpy as np

from ._errors import QnbError


def counts_of(result: cirq.Result) -> dict[str, int]:
    """Bitstring -> count over all measurement keys, in key order, big-endian like Cirq.

    Sorted by bitstring.
    """
    keys = list(result.measurements)
    if not keys:
        return {}
    bits = np.concatenate([np.asarray(result.measurements[k], dtype=np.uint8) for k in keys], axis=1)
    width = bits.shape[1]
    if width <= 62:
        values = bits.astype(np.int64) @ (np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64))
        outcomes, counts = np.unique(values, return_counts=True)
        return {format(int(v), f"0{width}b"): int(c) for v, c in zip(outcomes, counts)}
    tally = Counter("".join(map(str, row)) for row in bits)
    return dict(sorted(tally.items()))


class JobResult(Mapping[str, cirq.Result]):
    """Results of a job: ``result[label]`` is a ``cirq.Result``.

    A failed batch keeps the results of its completed items; ``missing`` says which
    labels have none and why.
    """

    def __init__(self, job_id: str, labels: list[str], texts: dict[str, str], missing: dict[str, str]):
        self.job_id = job_id
        self.labels = labels
        self.missing = missing
        self._texts = texts
        self._parsed: dict[str, cirq.Result] = {}

    @property
    def complete(self) -> bool:
        return not self.missing

    def __getitem__(self, label: str) -> cirq.Result:
        if label in self.missing:
            raise KeyError(f"no result for {label!r}: {self.missing[label]}")
        if label not in self._texts:
            raise KeyError(f"no circuit labelled {label!r}; labels: {', '.join(self.labels)}")
        if label not in self._parsed:
            self._parsed[label] = cirq.read_json(json_text=self._texts[label])
        return self._parsed[label]

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

    def counts(self, label: str | None = None) -> dict[str, int]:
        """Bitstring -> count for one circuit (the only one if ``label`` is None)."""
        return counts_of(self[self._one_label(label)])

    def plot(
        self,
        label: str | None = None,
        ax=None,
        *,
        top: int | None = None,
        probabilities: bool = False,
    ):
        """A histogram of the counts; a batch without ``label`` becomes a grid.

        ``top``: keep the most frequent outcomes only (readable with many qubits).
        ``probabilities``: plot frequencies instead of counts.
        """
        from ._plot import plot_counts, plot_grid

        if label is None and len(self.labels) > 1:
            return plot_grid(
                {lb: self.counts(lb) for lb in self}, top=top, probabilities=probabilities
            )
        label = self._one_label(label)
        return plot_counts(self.counts(label), ax=ax, title=label, top=top, probabilities=probabilities)

    def __repr__(self) -> str:
        parts = [f"JobResult(job {self.job_id[:8]}, {len(self)} of {len(self.labels)} results"]
        if self.missing:
            parts.append(f", missing {', '.join(map(repr, self.missing))}")
        return "".join(parts) + ")"
