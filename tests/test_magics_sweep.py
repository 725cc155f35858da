"""%%qsubmit with parameter sweeps: --sweep NAME=VALUES (several make a grid) and
--params VAR."""

from __future__ import annotations

import cirq
import pytest
from IPython.core.error import UsageError

from conftest import ipython_shell

CELL = 'cirq.Circuit(cirq.X(q) ** sympy.Symbol("t"), cirq.measure(q, key="m"))'


@pytest.fixture
def shell(manager):
    shell = ipython_shell()
    shell.run_cell("import cirq, sympy\nq = cirq.LineQubit(0)")
    return shell


def run(shell, line: str, cell: str = CELL):
    outcome = shell.run_cell(f"%%qsubmit {line}\n{cell}")
    if outcome.error_in_exec is not None:
        raise outcome.error_in_exec
    return shell.user_ns["_qjob"]


def test_sweep_option_makes_one_job_of_points(shell):
    job = run(shell, '--shots 10 --sweep "t=linspace(0, 1, 3)"')
    results = job.result(timeout=60).sweep()
    assert [r.params for r in results] == list(cirq.Linspace("t", 0, 1, 3))
    assert job.result().sweep()[2].histogram(key="m") == {1: 10}


def test_several_sweeps_make_a_grid_and_params_names_a_variable(shell):
    grid = run(shell, '--shots 5 --sweep "t=[0, 1]" --sweep "u=points(0.25, 0.5, 1)"')
    assert len(grid.items) == 6
    shell.run_cell("flips = cirq.Points('t', [1, 0])")
    named = run(shell, "--shots 5 --params flips")
    assert [r.histogram(key="m") for r in named.result(timeout=60).sweep()] == [{1: 5}, {0: 5}]


@pytest.mark.parametrize(
    "line, message",
    [
        ('--sweep "t"', "NAME=VALUES"),
        ('--sweep "t=nothing_here(1)"', "NameError"),
        ('--sweep "t={1: 2}.items"', "give numbers"),
        ("--params missing_var", "not defined"),
        ('--params flips --sweep "t=[1]"', "not both"),
    ],
)
def test_bad_sweeps_are_usage_errors_and_submit_nothing(shell, manager, line, message):
    shell.run_cell("flips = cirq.Points('t', [1, 0])")
    with pytest.raises(UsageError, match=message):
        run(shell, line)
    assert manager.store.find_jobs() == []
