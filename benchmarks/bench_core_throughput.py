"""Benchmark 1 (issue 2): 300 random 12-qubit, depth-20 circuits, 1000 shots each.

qnb.run on "sim" (warm pool) against the same circuits run one by one with qsimcirq
directly and with cirq.Simulator directly, all in this one run. Goals: qnb <= 1.0x the
qsimcirq loop's time, and >= 3x faster than the cirq.Simulator loop.

Circuits: brickwork random circuits (the structure of random-circuit sampling): each
of the 20 layers is a random PhasedXZ on every qubit, then CZs on alternating pairs.

    python benchmarks/bench_core_throughput.py [--circuits 300] [--repeat 2]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

os.environ.setdefault("QNB_HOME", tempfile.mkdtemp(prefix="qnb-bench-"))

import cirq  # noqa: E402
import numpy as np  # noqa: E402
import qsimcirq  # noqa: E402

import qnb  # noqa: E402
from qnb._targets._pool import get_pool  # noqa: E402


def brickwork(seed: int, n_qubits: int = 12, depth: int = 20) -> cirq.Circuit:
    rng = np.random.default_rng(seed)
    qubits = cirq.LineQubit.range(n_qubits)
    moments = []
    for layer in range(depth):
        moments.append(
            cirq.Moment(
                cirq.PhasedXZGate(
                    x_exponent=rng.random(), z_exponent=rng.random(), axis_phase_exponent=rng.random()
                )(q)
                for q in qubits
            )
        )
        moments.append(cirq.Moment(cirq.CZ(qubits[i], qubits[i + 1]) for i in range(layer % 2, n_qubits - 1, 2)))
    moments.append(cirq.Moment(cirq.measure(*qubits, key="m")))
    return cirq.Circuit(moments)


def _run_one(circuit: cirq.Circuit, shots: int) -> int:
    return len(_QSIM.run(circuit, repetitions=shots).measurements["m"])


_QSIM = qsimcirq.QSimSimulator()


def bare_pool_time(circuits, shots: int, workers: int) -> float:
    """The same circuits through a plain 2-process pool: what the hardware allows."""
    import concurrent.futures
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # this script has no threads yet when forking
    # gc.freeze as in qnb's workers, or unpickling each circuit costs ~10 ms more.
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=ctx, initializer=gc.freeze
    ) as pool:
        list(pool.map(_run_one, circuits[:workers], [10] * workers))  # workers started
        return timed(lambda: list(pool.map(_run_one, circuits, [shots] * len(circuits))))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--circuits", type=int, default=300)
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N for the qsim loop and qnb")
    args = parser.parse_args()
    circuits = [brickwork(seed) for seed in range(args.circuits)]
    shots = args.shots
    bare = bare_pool_time(circuits, shots, workers=get_pool().workers)

    pool = get_pool()
    assert pool.wait_ready(120), "pool did not start"
    qnb.run(circuits[:4], shots=10, timeout=120)  # warm: workers have simulated once

    qsim = qsimcirq.QSimSimulator()
    plain = cirq.Simulator()
    qsim_loop = min(timed(lambda: [qsim.run(c, repetitions=shots) for c in circuits]) for _ in range(args.repeat))
    qnb_runs = []
    for _ in range(args.repeat):
        qnb_runs.append(timed(lambda: qnb.run(circuits, shots=shots, timeout=600)))
    qnb_time = min(qnb_runs)
    cirq_loop = timed(lambda: [plain.run(c, repetitions=shots) for c in circuits])

    print(f"circuits: {args.circuits} x 12 qubits, depth 20, {shots} shots; pool workers: {pool.workers}")
    print(f"qsimcirq loop (direct):    {qsim_loop:7.2f} s")
    print(f"cirq.Simulator loop:       {cirq_loop:7.2f} s")
    print(f"bare process pool, qsim:   {bare:7.2f} s  ({bare / qsim_loop:.2f}x the loop: parallelism alone)")
    print(f"qnb.run on 'sim':          {qnb_time:7.2f} s  (runs: {', '.join(f'{t:.2f}' for t in qnb_runs)})")
    print(f"ratio qnb / qsimcirq loop: {qnb_time / qsim_loop:.2f}x   (goal <= 1.0)")
    print(f"ratio qnb / bare pool:     {qnb_time / bare:.2f}x   (goal <= 1.1; "
          f"qnb's own cost {1000 * (qnb_time - bare) / len(circuits):.1f} ms an item)")
    print(f"speed-up vs cirq loop:     {cirq_loop / qnb_time:.2f}x   (goal >= 3.0)")


if __name__ == "__main__":
    main()
