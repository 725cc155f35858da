"""Benchmark 3 (issue 2): memory of 10,000 finished jobs held by the JobManager.

Goal: <= 150 MB of extra resident memory (RSS) once all are done.

    python benchmarks/bench_core_memory.py [--jobs 10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time

os.environ.setdefault("QNB_HOME", tempfile.mkdtemp(prefix="qnb-bench-"))

import cirq  # noqa: E402

import qnb  # noqa: E402
from qnb._manager import get_manager  # noqa: E402
from qnb._targets._pool import get_pool  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    a, b = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.measure(a, b, key="m"))
    assert get_pool().wait_ready(120)
    qnb.run(bell, shots=100, timeout=120)
    gc.collect()
    before = rss_mb()

    start = time.perf_counter()
    jobs = [qnb.submit(bell, shots=100) for _ in range(args.jobs)]
    last = jobs[-1].id
    for job in jobs:
        job.result(timeout=600)
    elapsed = time.perf_counter() - start
    del jobs  # the handles are the user's; the manager keeps its records
    gc.collect()
    after = rss_mb()
    held = sum(1 for r in get_manager().live_records() if r.done)
    assert get_manager().record(last) is not None
    print(f"{held} finished jobs held by the manager (ran in {elapsed:.1f} s)")
    print(f"RSS before {before:.0f} MB, after {after:.0f} MB: extra {after - before:.1f} MB "
          f"= {(after - before) * 1024 / held:.1f} KB per job  (goal <= 150 MB)")


if __name__ == "__main__":
    main()
