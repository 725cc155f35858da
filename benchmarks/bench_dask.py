"""Dask (issue 9): 300 circuits of 20 qubits on a 2-worker ``distributed.LocalCluster``
against the local ``sim`` target (the process pool), in the same run.

Prints both wall times and their ratio, and Dask's scheduling overhead per item: the
wall time less the simulation the workers measured (spread over their threads), per
item — and, as a check, the wall time per item of 300 Bell pairs, which is almost all
overhead (goal: <= 5 ms an item).

    python benchmarks/bench_dask.py [--circuits 300] [--qubits 20] [--layers 12] [--shots 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time

os.environ.setdefault("QNB_HOME", tempfile.mkdtemp(prefix="qnb-bench-"))

import cirq  # noqa: E402
import distributed  # noqa: E402
import numpy as np  # noqa: E402

import qnb  # noqa: E402
from qnb._manager import get_manager  # noqa: E402
from qnb._targets._pool import get_pool  # noqa: E402


def brickwork(seed: int, n_qubits: int, layers: int) -> cirq.Circuit:
    rng = np.random.default_rng(seed)
    qubits = cirq.LineQubit.range(n_qubits)
    circuit = cirq.Circuit()
    for layer in range(layers):
        circuit += cirq.Moment(cirq.PhasedXZGate(x_exponent=rng.uniform(), z_exponent=rng.uniform(),
                                                 axis_phase_exponent=rng.uniform())(q) for q in qubits)
        circuit += cirq.Moment(cirq.CZ(qubits[i], qubits[i + 1]) for i in range(layer % 2, n_qubits - 1, 2))
    return circuit + cirq.measure(*qubits, key="m")


def bell(seed: int) -> cirq.Circuit:
    a, b = cirq.LineQubit.range(2)
    return cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.measure(a, b, key="m"))


def timed(circuits: dict, target: str, shots: int) -> float:
    start = time.perf_counter()
    qnb.submit(circuits, target=target, shots=shots).result(timeout=3600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--circuits", type=int, default=300)
    parser.add_argument("--qubits", type=int, default=20)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--shots", type=int, default=100)
    args = parser.parse_args()
    heavy = {f"c{i}": brickwork(i, args.qubits, args.layers) for i in range(args.circuits)}
    small = {f"b{i}": bell(i) for i in range(args.circuits)}

    pool = get_pool()
    assert pool.wait_ready(120), "pool did not start"
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, silence_logs=40) as cluster:
        with distributed.Client(cluster) as client:
            client.run(__import__, "qnb._targets._worker")  # imports, as the pool's forkserver has
        target = qnb.register_target("cluster", "dask", address=cluster.scheduler_address, engine="qsim")
        executor = target.executor
        warm = dict(list(heavy.items())[:4])
        timed(warm, "sim", args.shots)
        timed(warm, "cluster", args.shots)

        sim_time = timed(heavy, "sim", args.shots)
        chunks0, items0, worker0 = executor.sent_chunks, executor.sent_items, executor.worker_seconds
        dask_time = timed(heavy, "cluster", args.shots)
        chunks, items = executor.sent_chunks - chunks0, executor.sent_items - items0
        worker = executor.worker_seconds - worker0
        overhead = max(0.0, dask_time - worker / 2) / args.circuits

        small_sim = timed(small, "sim", args.shots)
        chunks1 = executor.sent_chunks
        small_dask = timed(small, "cluster", args.shots)
        small_chunks = executor.sent_chunks - chunks1
        # The client closes on the manager's loop before its cluster goes away.
        manager = get_manager()
        asyncio.run_coroutine_threadsafe(executor.close(), manager._loop).result(30)

    print(f"{args.circuits} circuits x {args.qubits} qubits, {args.layers} layers, {args.shots} shots; "
          f"local pool: {pool.workers} workers; LocalCluster: 2 workers x 1 thread; cores: {os.cpu_count()}")
    print(f"local 'sim' (process pool):  {sim_time:7.2f} s")
    print(f"'dask' kind (LocalCluster):  {dask_time:7.2f} s   ratio dask/sim {dask_time / sim_time:.2f}x; "
          f"{chunks} Dask tasks for {items} items; workers simulated {worker:.2f} s")
    print(f"scheduling overhead:         {overhead * 1000:7.2f} ms an item (goal <= 5)")
    print(f"{args.circuits} Bell pairs: sim {small_sim:.2f} s, dask {small_dask:.2f} s in {small_chunks} tasks "
          f"= {small_dask / args.circuits * 1000:.2f} ms an item, all of it overhead (goal <= 5)")


if __name__ == "__main__":
    main()
