"""Sweeps too large or not finite are refused at submit, before anything is made or
stored: a 10^6-point sweep was refused only after making every point (5 s, +550 MB;
10^7 ran out of memory), and NaN or an infinity gave "completed" jobs with meaningless
counts on ``sim``."""

from __future__ import annotations

import math
import time
import tracemalloc

import cirq
import numpy as np
import pytest
import sympy

import qnb
from qnb import _sweeps

THETA = sympy.Symbol("theta")


def rotation() -> cirq.Circuit:
    q = cirq.LineQubit(0)
    return cirq.Circuit(cirq.rx(THETA).on(q), cirq.measure(q, key="m"))


@pytest.mark.parametrize(
    ("sweep", "points"),
    [
        (cirq.Linspace("theta", 0, 1, 10**6), 10**6),
        (cirq.Linspace("theta", 0, 1, 10**7), 10**7),
        (cirq.Product(cirq.Linspace("theta", 0, 1, 10**4), cirq.Points("phi", range(10**3))), 10**7),
        (cirq.Zip(cirq.Linspace("theta", 0, 1, 10**6), cirq.Linspace("phi", 0, 1, 10**6)), 10**6),
    ],
    ids=["linspace-1e6", "linspace-1e7", "product-1e7", "zip-1e6"],
)
def test_a_huge_sweep_is_refused_before_its_points_are_made(manager, sweep, points):
    qnb.run(rotation(), params={"theta": 0.0}, shots=1, timeout=60)  # the manager is warm
    tracemalloc.start()
    start = time.monotonic()
    try:
        with pytest.raises(qnb.InvalidOptionError) as caught:
            qnb.submit(rotation(), params=sweep, shots=10)
        seconds, peak = time.monotonic() - start, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert f"a batch of {points} items (circuits x sweep points) is above the max_batch" in str(caught.value)
    assert seconds < 0.5 and peak < 5_000_000, (seconds, peak)  # made: 5 s and 550 MB a 10^6
    assert len(qnb.jobs()) == 1  # only the warm-up: nothing stored for it


def test_a_sweep_too_large_to_count_with_len_is_refused(manager):
    grid = cirq.Product(*(cirq.Linspace(f"x{i}", 0, 1, 1000) for i in range(10)))  # 10^30 points
    with pytest.raises(OverflowError):
        len(grid)  # Python's own len() cannot say it
    with pytest.raises(qnb.InvalidOptionError, match="above the max_batch"):
        qnb.submit(rotation(), params=grid, shots=10)
    assert qnb.jobs() == []


def test_a_sampler_s_huge_sweep_is_refused_the_same_way(manager):
    start = time.monotonic()
    with pytest.raises(qnb.InvalidOptionError, match="a batch of 1000000 items"):
        qnb.Sampler("sim").run_sweep(rotation(), cirq.Linspace("theta", 0, 1, 10**6), repetitions=5)
    assert time.monotonic() - start < 5
    assert qnb.jobs() == []


@pytest.mark.parametrize(
    ("sweep", "said"),
    [
        (cirq.Points("theta", [0.5, math.nan]), "sweep point 1 gives theta the value nan"),
        (cirq.Points("theta", [math.inf]), "sweep point 0 gives theta the value inf"),
        (cirq.Points("theta", [0.0, 1.0, -math.inf]), "sweep point 2 gives theta the value -inf"),
        (cirq.Points("theta", [np.float32("nan")]), "sweep point 0 gives theta the value nan"),
        ({"theta": sympy.oo}, "sweep point 0 gives theta the value oo"),
        ([{"theta": 0.1}, {"theta": complex(1, math.inf)}], "sweep point 1 gives theta the value (1+infj)"),
        (cirq.Linspace("theta", 0, math.inf, 3), "sweep point 0 gives theta the value nan"),
    ],
    ids=["nan", "inf", "-inf", "numpy-nan", "sympy-oo", "complex-inf", "linspace-to-inf"],
)
def test_a_value_that_is_not_finite_is_refused_at_submit(manager, sweep, said):
    with pytest.raises(qnb.InvalidOptionError, match="not a finite number") as caught:
        qnb.submit(rotation(), params=sweep, shots=10)
    assert said in str(caught.value)
    assert qnb.jobs() == []  # nothing half done


def test_finite_values_of_every_kind_still_run(manager):
    sweep = [{"theta": 0}, {"theta": np.float64(math.pi)}, {"theta": sympy.pi}, {"theta": sympy.Rational(1, 2)}]
    results = qnb.run(rotation(), params=sweep, shots=20, timeout=60).sweep()
    assert [r.histogram(key="m")[1] for r in results[:3]] == [0, 20, 20]
    assert len(results) == 4


def test_the_points_are_counted_before_they_are_made():
    points = _sweeps.resolvers(cirq.Product(cirq.Linspace("theta", 0, 1, 10**5), cirq.Points("phi", [1, 2])))
    assert len(points) == 2 * 10**5 and repr(points) == "SweepPoints(200000 points)"
    small = _sweeps.resolvers(cirq.Linspace("theta", 0, 1, 3))
    assert list(small) == list(cirq.to_resolvers(cirq.Linspace("theta", 0, 1, 3))) and small[2]["theta"] == 1
    with pytest.raises(qnb.InvalidOptionError, match="empty sweep"):
        _sweeps.resolvers(cirq.Points("theta", []))
