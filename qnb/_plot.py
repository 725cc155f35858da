"""Histograms of counts, drawn with Cirq's ``plot_state_histogram`` on matplotlib."""

from __future__ import annotations

import math

import cirq

ROTATE_LABELS_ABOVE = 8


def select_top(counts: dict[str, int], top: int | None) -> dict[str, int]:
    """The ``top`` most frequent outcomes (all when None), bitstrings in order."""
    if top is None or len(counts) <= top:
        return dict(sorted(counts.items()))
    kept = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    return dict(sorted(kept))  # bitstrings stay in order on the axis


def plot_counts(
    counts: dict[str, int],
    *,
    ax=None,
    title: str | None = None,
    top: int | None = None,
    probabilities: bool = False,
):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 0.35 * min(len(counts), 64) + 2), 3.2))
    shown = select_top(counts, top)
    total = sum(counts.values()) or 1
    values = [v / total if probabilities else v for v in shown.values()]
    cirq.plot_state_histogram(
        values,
        ax,
        tick_label=list(shown),
        xlabel="outcome",
        ylabel="probability" if probabilities else "count",
        title=title,
    )
    if len(shown) > ROTATE_LABELS_ABOVE:
        ax.tick_params(axis="x", labelrotation=90)
    if len(shown) < len(counts):
        ax.set_title(f"{title or ''} (top {len(shown)} of {len(counts)} outcomes)".strip())
    return ax


def plot_grid(
    counts_by_label: dict[str, dict[str, int]],
    *,
    top: int | None = None,
    probabilities: bool = False,
    columns: int = 3,
):
    """Small multiples, one histogram per label; returns the array of Axes."""
    import matplotlib.pyplot as plt

    n = len(counts_by_label)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (label, counts) in zip(axes.flat, counts_by_label.items()):
        plot_counts(counts, ax=ax, title=label, top=top, probabilities=probabilities)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.tight_layout()
    return axes


def plot_sweep(series, *, ax=None, xlabel: str, ylabel: str, title: str | None = None):
    """One measured quantity against a swept parameter (a Rabi or Ramsey curve).

    ``series``: legend label (None for a 1-D sweep) -> ``[(x, y), ...]``, one line each:
    a 2-D sweep draws one curve per value of its other parameter."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, points in series.items():
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        ax.plot(xs, ys, marker="o", markersize=3, label=name)
    if any(name is not None for name in series):
        ax.legend(fontsize="small", title=None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax
