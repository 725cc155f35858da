"""Sweeps (issue 8): a 12-qubit parameterised circuit x 200 sweep points, 1,000 shots each.

In one run: qnb.submit(..., params=sweep) on "sim" against
``qsimcirq.QSimSimulator().run_sweep`` directly (goal: qnb <= 1.0x; the pool's
parallelism pays for qnb's overhead), and ``qnb.Sampler("sim").run_sweep`` against
``cirq.Simulator().run_sweep`` (goal: >= 3x faster).

    python benchmarks/bench_sweep.py [--points 200] [--shots 1000]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("QNB_HOME", tempfile.mkdtemp(prefix="qnb-bench-"))

import cirq  # noqa: E402
import numpy as np  # noqa: E402
import qsimcirq  # noqa: E402
import sympy  # noqa: E402

import qnb  # noqa: E402
from qnb._targets._pool import get_pool  # noqa: E402


def ansatz(n_qubits: int = 12, layers: int = 10) -> cirq.Circuit:
    """A hardware-efficient ansatz: parameterised rotations and CZ ladders."""
    qubits = cirq.LineQubit.range(n_qubits)
    theta, phi = sympy.Symbol("theta"), sympy.Symbol("phi")
    rng = np.random.default_rng(7)
    circuit = cirq.Circuit()
    for layer in range(layers):
        circuit += cirq.Moment(cirq.ry(theta * rng.uniform(0.5, 1.5))(q) for q in qubits)
        circuit += cirq.Moment(cirq.rz(phi * rng.uniform(0.5, 1.5))(q) for q in qubits)
        circuit += cirq.Moment(cirq.CZ(qubits[i], qubits[i + 1]) for i in range(layer % 2, n_qubits - 1, 2))
    circuit += cirq.measure(*qubits, key="m")
    return circuit


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--points", type=int, default=200)
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2, help="best of N for qsim, qnb and the Sampler")
    args = parser.parse_args()
    circuit = ansatz()
    sweep = cirq.Zip(
        cirq.Linspace("theta", 0, np.pi, args.points), cirq.Linspace("phi", 0, 2 * np.pi, args.points)
    )
    pool = get_pool()
    assert pool.wait_ready(120), "pool did not start"
    qnb.run(cirq.resolve_parameters(circuit, {"theta": 0.1, "phi": 0.2}), shots=10, timeout=120)  # warm

    # Best of --repeat for each (this machine is noisy); the same sweep for all.
    def best(fn) -> float:
        return min(timed(fn)[0] for _ in range(args.repeat))

    qsim_time = best(lambda: qsimcirq.QSimSimulator().run_sweep(circuit, sweep, repetitions=args.shots))
    qnb_time = best(
        lambda: qnb.submit(circuit, params=sweep, shots=args.shots).result(timeout=600).sweep()
    )
    sampler_time = best(lambda: qnb.Sampler("sim").run_sweep(circuit, sweep, repetitions=args.shots))
    cirq_time, _ = timed(lambda: cirq.Simulator().run_sweep(circuit, sweep, repetitions=args.shots))

    print(f"{args.points} points x 12 qubits, {len(circuit)} moments, {args.shots} shots; pool workers: {pool.workers}")
    print(f"qsimcirq run_sweep (direct): {qsim_time:7.2f} s")
    print(f"qnb.submit(params=sweep):    {qnb_time:7.2f} s   ratio {qnb_time / qsim_time:.2f}x (goal <= 1.0)")
    print(f"cirq.Simulator run_sweep:    {cirq_time:7.2f} s")
    print(f"qnb.Sampler run_sweep:       {sampler_time:7.2f} s   {cirq_time / sampler_time:.1f}x faster (goal >= 3)")


if __name__ == "__main__":
    main()
