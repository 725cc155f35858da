"""Histograms of results (matplotlib): order, top-k, rotation, probabilities, grids."""

from __future__ import annotations

import cirq
import matplotlib
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import qnb  # noqa: E402

Q = cirq.LineQubit.range(4)
SPREAD = cirq.Circuit(cirq.H.on_each(*Q), cirq.measure(*Q, key="m"))  # 16 outcomes
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(Q[0], Q[1]), cirq.measure(Q[0], Q[1], key="m"))


@pytest.fixture
def result(manager):
    return qnb.submit({"spread": SPREAD, "bell": BELL, "zero": cirq.Circuit(cirq.measure(Q[0], key="m"))},
                      shots=4000).result(timeout=120)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def tick_labels(ax) -> list[str]:
    return [t.get_text() for t in ax.get_xticklabels()]


def test_bitstrings_in_order_and_labels_rotate_with_many_outcomes(result):
    ax = result.plot("spread")
    labels = tick_labels(ax)
    assert labels == sorted(labels) and len(labels) == 16
    assert all(t.get_rotation() == 90 for t in ax.get_xticklabels())
    few = result.plot("bell")
    assert tick_labels(few) == sorted(tick_labels(few))
    assert all(t.get_rotation() == 0 for t in few.get_xticklabels())


def test_top_k_keeps_the_most_frequent_in_order(result):
    counts = result.counts("spread")
    ax = result.plot("spread", top=5)
    labels = tick_labels(ax)
    kept = sorted(counts, key=lambda b: (-counts[b], b))[:5]
    assert labels == sorted(kept)
    assert "top 5 of 16" in ax.get_title()


def test_probabilities_sum_to_one(result):
    ax = result.plot("bell", probabilities=True)
    heights = [bar.get_height() for bar in ax.patches]
    assert sum(heights) == pytest.approx(1.0)
    assert ax.get_ylabel() == "probability"


def test_a_batch_is_a_grid_of_small_multiples(result):
    axes = result.plot()
    visible = [ax for ax in axes.flat if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["spread", "bell", "zero"]
    assert axes.size >= 3  # the unused cells of the grid are hidden


def test_one_label_of_a_batch_and_a_clear_error_without_one(result):
    assert result.plot("zero").get_title() == "zero"
    with pytest.raises(qnb.QnbError, match="name one"):
        result.counts()


# -- sweeps, titles, axes --------------------------------------------------------------------

import sympy  # noqa: E402

THETA, PHI = sympy.Symbol("theta"), sympy.Symbol("phi")
TWO_D = cirq.Circuit(cirq.rx(THETA)(Q[0]), cirq.rz(PHI)(Q[0]), cirq.measure(Q[0], key="m"))


def test_a_2d_sweep_draws_one_line_per_value_of_the_other_parameter(manager):
    phis = [0.0, 0.5, 1.0]
    sweep = cirq.Product(cirq.Points("phi", phis), cirq.Linspace("theta", 0, 3.14159, 6))
    job = qnb.submit(TWO_D, params=sweep, shots=20, name="rabi-2d")
    ax = job.result(timeout=120).plot()
    lines = ax.get_lines()
    assert len(lines) == len(phis)  # not one zig-zag through every point
    assert [line.get_label() for line in lines] == [f"phi={p:.4g}" for p in phis]
    for line in lines:
        xs = list(line.get_xdata())
        assert len(xs) == 6 and xs == sorted(xs)  # each line walks theta once
    assert ax.get_xlabel() == "theta"
    assert ax.get_title() == "rabi-2d"
    assert ax.get_legend() is not None


def test_a_single_circuits_plot_is_titled_by_its_job_and_has_a_y_label(manager):
    job = qnb.submit(BELL, shots=200, name="bell pair")
    ax = job.result(timeout=120).plot()
    assert ax.get_title() == "bell pair"  # not "0", its index
    assert ax.get_ylabel() == "count" and ax.get_xlabel() == "outcome"
    assert job.result().plot(probabilities=True).get_ylabel() == "probability"


def test_a_batch_keeps_its_labels_as_titles_and_every_histogram_has_a_y_label(result):
    axes = [ax for ax in result.plot().flat if ax.get_visible()]
    assert [ax.get_ylabel() for ax in axes] == ["count"] * 3
