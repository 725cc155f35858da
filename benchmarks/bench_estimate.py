"""Estimates and ETAs on local targets (issue 20), three figures:

1. ``qnb.estimate`` of a 300-circuit batch on the local ``sim`` target, ms (goal <= 50):
   the 12-qubit, depth-20 brickwork circuits of bench_core_throughput (350 gates each)
   and 300 Bell pairs; with where the time goes (the checks submit makes too, taking
   the circuits' features, the forecast).
2. What keeping ETAs current costs the kernel while 300 items run (goal <= 2% of its
   CPU): rounds of 300 items with the estimator on and off, in turn, in one run; the
   share is the estimator's own CPU (its hooks and ticks, timed where they run) over
   the kernel's, and the JobManager thread's CPU with and without is printed beside.
3. The accuracy of the finish forecast at submit for eight mixed jobs queued at once
   after a few have run (goal: median error <= 30%), as tests/test_eta.py runs it.

    python benchmarks/bench_estimate.py [--rounds 4]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("QNB_HOME", tempfile.mkdtemp(prefix="qnb-bench-"))
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(os.path.dirname(HERE), "tests")]

import cirq  # noqa: E402

import qnb  # noqa: E402
from bench_core_throughput import brickwork  # noqa: E402
from qnb import _api, _features, _prices  # noqa: E402
from qnb._manager import get_manager  # noqa: E402
from qnb._targets._pool import get_pool  # noqa: E402


def best_ms(fn, repeat: int) -> tuple[float, float]:
    """(median, best) of ``repeat`` calls, in ms."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times), min(times)


def estimate_speed(repeat: int) -> None:
    manager = get_manager()
    target = manager.targets.get("sim")
    bell = cirq.Circuit(cirq.H(cirq.LineQubit(0)), cirq.CNOT(*cirq.LineQubit.range(2)),
                        cirq.measure(*cirq.LineQubit.range(2), key="m"))  # fmt: skip
    for name, make in (("12-qubit brickwork (350 gates)", brickwork), ("Bell pairs", lambda seed: bell.copy())):
        fresh = [[make(seed + 1000 * r) for seed in range(300)] for r in range(repeat)]  # (caches see new circuits)
        rounds = iter(fresh)
        median, best = best_ms(lambda: qnb.estimate(next(rounds), target="sim", shots=1000), repeat)
        circuits = fresh[0]
        checks, _ = best_ms(lambda: _api.prepare_items(circuits, target, shots=1000, write=False), repeat)
        features = [_features.features_of(c) for c in circuits]
        taking, _ = best_ms(lambda: [_features.features_of(c) for c in circuits], repeat)
        forecast, _ = best_ms(lambda: manager.estimate_submission(target, features, 1000), repeat)
        price, _ = best_ms(lambda: _prices.cost_at_submit(target, features, 1000, max_cost=None, spent=None), repeat)
        print(f"qnb.estimate of 300 {name}: {median:.1f} ms (median; best {best:.1f})   (goal <= 50 ms)")
        print(f"    of which (circuits seen before): checks as at submit {checks:.1f} ms, features {taking:.1f} ms, "
              f"forecast {forecast:.2f} ms, price {price:.2f} ms")


class Timed:
    """Sums the CPU time (thread time) spent in the estimator's entry points (an entry
    point called inside another counts once)."""

    def __init__(self, estimator):
        self.seconds = 0.0
        self.by_name: dict[str, float] = {}
        self._inside = threading.local()
        for name in ("admit", "after_report", "_tick", "_soon"):
            setattr(estimator, name, self.wrap(getattr(estimator, name)))

    def wrap(self, fn):
        name = fn.__name__

        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if getattr(self._inside, "depth", 0):
                return fn(*args, **kwargs)
            self._inside.depth = 1
            start = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.thread_time() - start
                self.seconds += spent
                self.by_name[name] = self.by_name.get(name, 0.0) + spent
                self._inside.depth = 0

        return timed


def _manager_thread_cpu() -> float:
    for thread in threading.enumerate():
        if thread.name == "qnb-job-manager":
            return time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return 0.0


def upkeep_share(rounds: int) -> None:
    manager = get_manager()
    estimator = manager._estimator
    # The hooks are looked up at call time: the runner's and the scheduler's too.
    timed = Timed(estimator)
    manager._runner.after_report = estimator.after_report
    circuits = [brickwork(seed) for seed in range(300)]
    qnb.run(circuits, shots=1000, timeout=600)  # warm: the pool, the store, the model
    found = {True: [], False: []}
    for _ in range(rounds):
        for enabled in (True, False):
            estimator.enabled = enabled
            spent_before, thread_before, cpu_before = timed.seconds, _manager_thread_cpu(), time.process_time()
            qnb.run(circuits, shots=1000, timeout=600)
            time.sleep(2.5)  # (the idle tick after the run is part of the upkeep)
            kernel = time.process_time() - cpu_before
            found[enabled].append((timed.seconds - spent_before, _manager_thread_cpu() - thread_before, kernel))
    estimator.enabled = True
    own = statistics.median(s / k for s, _, k in found[True])
    with_eta = statistics.median(t for _, t, _ in found[True])
    without = statistics.median(t for _, t, _ in found[False])
    kernel = statistics.median(k for _, _, k in found[True])
    print(f"ETA upkeep while 300 items run: {100 * own:.2f}% of the kernel's CPU (the estimator's own "
          f"time; median of {rounds} rounds)   (goal <= 2%)")
    parts = ", ".join(f"{name} {1000 * spent / rounds:.1f} ms" for name, spent in timed.by_name.items())
    print(f"    the estimator a round (with ETAs): {parts}")
    print(f"    kernel CPU a round {1000 * kernel:.0f} ms; the JobManager thread {1000 * with_eta:.0f} ms with "
          f"ETAs, {1000 * without:.0f} ms without ({100 * (with_eta - without) / kernel:+.1f}% of the kernel's)")


def accuracy() -> None:
    from test_eta import forecast_errors

    found = forecast_errors(get_manager())
    errors = [abs(forecast - took) / took for _, forecast, took in found]
    for (spec, forecast, took), error in zip(found, errors):
        items, n_qubits, depth, shots, mid = spec
        what = f"{items:3d} x {n_qubits:2d} qubits, depth {depth:2d}, {shots:5d} shots{' (mid-circuit)' if mid else ''}"
        print(f"    {what}: forecast {forecast:5.2f} s, took {took:5.2f} s ({error:.0%})")
    print(f"accuracy, 8 mixed jobs queued at once: median error {statistics.median(errors):.0%}   (goal <= 30%)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=4, help="rounds of 300 items, ETAs on and off")
    parser.add_argument("--repeat", type=int, default=5, help="estimates of each batch")
    parser.add_argument("--only", choices=("speed", "upkeep", "accuracy"), help="one figure only")
    args = parser.parse_args()
    print(f"local target 'sim': {get_pool().workers} workers")
    if args.only in (None, "speed"):
        estimate_speed(args.repeat)
    if args.only in (None, "upkeep"):
        upkeep_share(args.rounds)
    if args.only in (None, "accuracy"):
        accuracy()


if __name__ == "__main__":
    main()
