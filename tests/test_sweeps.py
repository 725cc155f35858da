"""Parameter sweeps through every path (local, a queue server, AsyncJobBackend), and
qnb.Sampler against Cirq's own samplers and real Cirq experiment routines."""

from __future__ import annotations

import warnings

import cirq
import numpy as np
import pytest
import sympy

import qnb
from qnb import JobStatus
from conftest import wait_until
from test_remote import block_device, connect
from test_server_support import lab  # noqa: F401

Q = cirq.LineQubit(0)
THETA = sympy.Symbol("theta")
RABI = cirq.Circuit(cirq.rx(THETA)(Q), cirq.measure(Q, key="m"))
# Deterministic at every point: X**t for t in {0, 1} reads t.
FLIPS = cirq.Circuit(cirq.X(Q) ** sympy.Symbol("t"), cirq.measure(Q, key="m"))


@pytest.mark.parametrize(
    "sweep, points",
    [
        (cirq.Linspace("theta", 0, np.pi, 7), 7),
        (cirq.Points("theta", [0.1, 0.2]), 2),
        (cirq.Zip(cirq.Points("theta", [0, 1]), cirq.Points("phi", [2, 3])), 2),
        (cirq.Product(cirq.Points("theta", [0, 1]), cirq.Points("phi", [2, 3, 4])), 6),
        (cirq.ListSweep([{"theta": 0.5}, {"theta": 1.5}]), 2),
        ({"theta": 0.3}, 1),
        ([{"theta": 0.0}, {"theta": 3.0}], 2),
        (cirq.ParamResolver({"theta": 1.0}), 1),
    ],
    ids=["linspace", "points", "zip", "product", "listsweep", "dict", "list-of-dicts", "resolver"],
)
def test_any_cirq_sweepable_is_one_job_with_a_point_per_item(manager, sweep, points):
    job = qnb.submit(RABI, params=sweep, shots=20)
    assert len(job.items) == points and job.items[0].label == "0[0]"
    result = job.result(timeout=60)
    expected = list(cirq.to_resolvers(sweep))
    got = result.sweep()
    assert [r.params for r in got] == expected  # sweep order, params kept
    assert all(r.repetitions == 20 for r in got)


def test_sweep_results_table_and_plot(manager):
    job = qnb.submit(FLIPS, params=cirq.Points("t", [0, 1, 0, 1]), shots=30)
    result = job.result(timeout=60)
    assert [r.histogram(key="m") for r in result.sweep()] == [
        {0: 30}, {1: 30}, {0: 30}, {1: 30}
    ]
    table = result.data()
    assert list(table.columns) == ["t", "m"] and len(table) == 120
    assert (table["m"] == table["t"]).all()  # X**t reads t
    ax = result.plot()
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [0, 1, 0, 1] and list(line.get_ydata()) == [0, 1, 0, 1]
    assert ax.get_xlabel() == "t"


def test_a_batch_of_circuits_times_one_sweep(manager):
    result = qnb.run({"a": FLIPS, "b": FLIPS}, params=cirq.Points("t", [1, 0]), shots=10, timeout=60)
    assert result.labels == ["a[0]", "a[1]", "b[0]", "b[1]"]
    assert [r.histogram(key="m") for r in result.sweep("b")] == [{1: 10}, {0: 10}]
    with pytest.raises(qnb.QnbError, match="name one"):
        result.sweep()
    assert set(result.data()["label"]) == {"a", "b"}


def test_sweep_limits_and_symbols_are_checked_at_submit(manager):
    with pytest.raises(qnb.InvalidOptionError, match="301 items"):
        qnb.submit(RABI, params=cirq.Linspace("theta", 0, 1, 301))
    with pytest.raises(qnb.InvalidCircuitError, match="unresolved parameters theta"):
        qnb.submit(RABI)
    with pytest.raises(qnb.InvalidCircuitError, match="unresolved parameters theta"):
        qnb.submit(RABI, params={"phi": 1.0})  # a sweep that misses the circuit's symbol
    with pytest.raises(qnb.InvalidOptionError, match="not a Cirq sweep|must be a sweep"):
        qnb.submit(RABI, params="theta=1")
    assert qnb.jobs() == [] and manager.store.find_jobs() == []


@pytest.mark.slow  # seconds of simulation
def test_resubmitting_failed_points_runs_those_points_only(manager):
    # The emulator runs items one after another: cancel once two points are done.
    circuit = cirq.Circuit(cirq.X(cirq.q(0)) ** sympy.Symbol("t"), cirq.measure(cirq.q(0), key="m"))
    job = qnb.submit(circuit, target="emulator", compile=True, shots=2000,
                     params=cirq.Points("t", [0, 1, 0, 1, 0, 1]))  # fmt: skip
    wait_until(lambda: job.progress[0] >= 2, timeout=60, what="two points done")
    job.cancel()
    manager.when(job.id, lambda r: r.done).result(60)
    redo = [it for it in job.items if it.status is not JobStatus.COMPLETED]
    assert redo, "the cancel came too late to leave points undone"
    again = job.resubmit(only_failed=True)
    assert [it.label for it in again.items] == [it.label for it in redo]
    result = again.result(timeout=120)
    first = job.result()
    for label in result:
        assert result[label].params == cirq.ParamResolver({"t": [0, 1, 0, 1, 0, 1][int(label[2:-1])]})
    assert all(label not in result for label in first)


def test_a_sweep_through_a_queue_server(manager, lab):
    app, server, tokens = lab
    connect(app, tokens["alice"])
    q = cirq.LineQubit.range(2)
    circuit = cirq.Circuit(cirq.X(q[0]) ** sympy.Symbol("t"), cirq.measure(q[0], key="m"))
    job = qnb.submit(circuit, target="lab", compile=True, shots=200, params=cirq.Points("t", [0, 1]))
    result = job.result(timeout=60)
    low, high = result.sweep()
    assert low.params == cirq.ParamResolver({"t": 0}) and high.params == cirq.ParamResolver({"t": 1})
    assert low.histogram(key="m")[0] > 150 and high.histogram(key="m")[1] > 150  # noisy device
    on_server = server.load(job.id)
    assert len(on_server.items) == 2  # the server ran both points, and keeps them
    assert [cirq.read_json(json_text=it.params) for it in on_server.items] == [
        cirq.ParamResolver({"t": 0}), cirq.ParamResolver({"t": 1})
    ]


def test_a_sweep_through_async_job_backend(manager):
    backend = qnb.AsyncJobBackend(target="sim", shots=25)
    qasm = cirq.qasm(cirq.Circuit(cirq.rx(0.5)(Q), cirq.measure(Q, key="m")))
    # OpenQASM has no symbols: sweep a circuit of the API through the same backend.
    execution = backend.submit_circuits({"rabi": RABI}, params=cirq.Points("theta", [0.0, np.pi]))
    backend.poll_job_status(execution, loop_until_complete=True, verbose=False)
    result = backend.get_job_results(execution)
    assert [r.histogram(key="m") for r in result.sweep("rabi")] == [{0: 25}, {1: 25}]
    assert backend.submit_circuits({"plain": qasm}).job_id


# -- qnb.Sampler --------------------------------------------------------------------------------


def test_sampler_returns_what_cirqs_samplers_return(manager):
    sampler, reference = qnb.Sampler("sim"), cirq.Simulator()
    sweep = cirq.Points("t", [0, 1, 1])
    ours, theirs = sampler.run_sweep(FLIPS, sweep, repetitions=5), reference.run_sweep(FLIPS, sweep, repetitions=5)
    assert [r.params for r in ours] == [r.params for r in theirs]
    assert [r.measurements["m"].tolist() for r in ours] == [r.measurements["m"].tolist() for r in theirs]
    one = sampler.run(FLIPS, {"t": 1}, repetitions=4)
    assert isinstance(one, cirq.Result) and one.measurements["m"].tolist() == [[1]] * 4
    table, expected = sampler.sample(FLIPS, params=sweep, repetitions=3), reference.sample(FLIPS, params=sweep, repetitions=3)
    assert table.reset_index(drop=True).equals(expected.reset_index(drop=True))
    batch = sampler.run_batch([FLIPS, FLIPS], [cirq.Points("t", [0]), cirq.Points("t", [1, 0])], repetitions=2)
    assert [[r.measurements["m"].tolist() for r in rs] for rs in batch] == [[[[0], [0]]], [[[1], [1]], [[0], [0]]]]
    assert len(qnb.jobs()) == 4  # one job per call, the batch included
    assert sampler.last_job.status is JobStatus.COMPLETED


def test_sampler_async_forms(manager):
    import asyncio

    sampler = qnb.Sampler("sim", timeout=60)

    async def both():
        sweep = await sampler.run_sweep_async(FLIPS, cirq.Points("t", [1]), repetitions=3)
        batch = await sampler.run_batch_async([FLIPS], [cirq.Points("t", [0])], repetitions=3)
        return sweep, batch

    sweep, batch = asyncio.run(both())
    assert sweep[0].measurements["m"].tolist() == [[1]] * 3
    assert batch[0][0].measurements["m"].tolist() == [[0]] * 3


def test_cirq_experiment_routines_run_through_the_sampler(manager):
    sampler = qnb.Sampler("sim")
    q = cirq.LineQubit(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        rb = cirq.experiments.single_qubit_randomized_benchmarking(
            sampler, q, num_clifford_range=[1, 3], num_circuits=3, repetitions=50
        )
    assert [round(p, 6) for _, p in rb.data] == [1.0, 1.0]  # noiseless: ground state kept
    t1 = cirq.experiments.t1_decay(sampler, qubit=q, num_points=4, max_delay=cirq.Duration(nanos=100), repetitions=20)
    assert (t1.data["true_count"] == 20).all()  # no decay in a noiseless simulator
    assert len(qnb.jobs()) >= 2 and all(j.status is JobStatus.COMPLETED for j in qnb.jobs())


def test_sampler_refuses_what_a_job_cannot_be(manager):
    with pytest.raises(qnb.InvalidOptionError, match="per call"):
        qnb.Sampler("sim", shots=10)
    with pytest.raises(qnb.InvalidOptionError, match="one number of repetitions"):
        qnb.Sampler("sim").run_batch([FLIPS, FLIPS], [{"t": 0}, {"t": 1}], repetitions=[1, 2])
    assert qnb.jobs() == []
