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
