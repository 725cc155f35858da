"""Benchmark 2 (issue 2): 1,000 jobs of one Bell circuit (100 shots), back to back.

Measures the time for each qnb.submit to return (goal: median <= 2 ms) and the time
until all 1,000 jobs are done, against a plain loop of cirq.Simulator().run over the
same 1,000 circuits, in this one run (goal: <= 1.5x the plain loop).

    python benchmarks/bench_core_submit.py [--jobs 1000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("QNB_HOME", tempfile.mkdtemp(prefix="qnb-bench-"))

import cirq  # noqa: E402

import qnb  # noqa: E402
from qnb._targets._pool import get_pool  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--shots", type=int, default=100)
    args = parser.parse_args()
    a, b = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.measure(a, b, key="m"))

    assert get_pool().wait_ready(120), "pool did not start"
    qnb.run(bell, shots=10, timeout=120)  # warm: manager, store, workers

    simulator = cirq.Simulator()
    start = time.perf_counter()
    for _ in range(args.jobs):
        simulator.run(bell, repetitions=args.shots)
    plain = time.perf_counter() - start

    submit_times = []
    jobs = []
    start = time.perf_counter()
    for _ in range(args.jobs):
        t0 = time.perf_counter()
        jobs.append(qnb.submit(bell, shots=args.shots))
        submit_times.append(time.perf_counter() - t0)
    submitted = time.perf_counter() - start
    for job in jobs:
        job.result(timeout=600)
    total = time.perf_counter() - start
    assert all(j.status == "completed" for j in jobs)

    ms = sorted(t * 1e3 for t in submit_times)
    print(f"{args.jobs} Bell jobs x {args.shots} shots, pool workers: {get_pool().workers}")
    print(f"submit: median {statistics.median(ms):.3f} ms, p90 {ms[int(0.9 * len(ms))]:.3f} ms, "
          f"max {ms[-1]:.2f} ms  (goal: median <= 2 ms); all submitted in {submitted:.2f} s")
    print(f"plain cirq.Simulator loop: {plain:.2f} s")
    print(f"qnb, all {args.jobs} done:    {total:.2f} s")
    print(f"ratio qnb / plain loop:    {total / plain:.2f}x  (goal <= 1.5)")


if __name__ == "__main__":
    main()
