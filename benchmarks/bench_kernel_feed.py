"""How many items a second one kernel can hand out ("A kernel that can feed a cluster").

300 random 12-qubit, depth-20 brickwork circuits (those of bench_core_throughput), 1,000
shots, submitted with qnb.run to a simulator target whose executor does nothing but
what the local pool does on the kernel's side for an item (the task encoded for a
worker's pipe, as the pool encodes it) and answers at once with a 1,000-shot result.
So every guarantee is paid as for a real run: the circuits checked before storing,
their Cirq JSON in the store at submit, every result stored. What is left is the
kernel's own work per item: the goal is >= 1,000 items a second.

Two executors, in turn in one run: one that takes the stored Cirq JSON of each circuit
(``circuit_json``: the text travels to the workers, the kernel pickles no circuit), and
one without it (the circuit is pickled for the worker, as before serialize-once).

    python benchmarks/bench_kernel_feed.py [--circuits 300] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import threading
import time

os.environ.setdefault("QNB_HOME", tempfile.mkdtemp(prefix="qnb-bench-"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cirq  # noqa: E402

import qnb  # noqa: E402
from bench_core_throughput import brickwork  # noqa: E402
from qnb._device import DeviceSpec  # noqa: E402
from qnb._targets import SimulatorTarget  # noqa: E402
from qnb._targets._pool import task_of  # noqa: E402


class TextFeed:
    """Hands each item out as the local pool would, with the stored text; answers at once."""

    def __init__(self, result: str):
        self.result, self.texts, self.items = result, 0, 0

    async def run(self, engine, noise, circuit, shots, *, params=None, circuit_json=None):
        self.items += 1
        self.texts += circuit_json is not None
        pickle.dumps(task_of(engine, noise, circuit, shots, params, circuit_json), pickle.HIGHEST_PROTOCOL)
        return True, self.result, engine


class PickledFeed(TextFeed):
    """The same, for an executor that does not take the text: the circuit is pickled."""

    async def run(self, engine, noise, circuit, shots, *, params=None):
        return await super().run(engine, noise, circuit, shots, params=params)


def _cpu_by_thread() -> dict[str, float]:
    """CPU seconds of each thread of this process so far, by thread name."""
    found: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            found[thread.name] = found.get(thread.name, 0.0) + time.clock_gettime(
                time.pthread_getcpuclockid(thread.ident)
            )
        except (AttributeError, OSError, TypeError):  # (a thread that just ended; no such clock)
            pass
    return found


class Round:
    def __init__(self, fn, items: int):
        threads = _cpu_by_thread()
        cpu, start = time.process_time(), time.perf_counter()
        fn()
        self.wall = time.perf_counter() - start
        self.cpu = time.process_time() - cpu
        self.per_second = items / self.wall
        self.per_cpu_second = items / self.cpu
        #: Where the kernel's CPU went, ms an item, by thread (the main thread checks and
        #: writes the circuits, the job manager's drives the items, the store's copies its log).
        self.threads = {
            name: 1000 * (spent - threads.get(name, 0.0)) / items
            for name, spent in _cpu_by_thread().items()
            if spent - threads.get(name, 0.0) > 0
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--circuits", type=int, default=300)
    parser.add_argument("--shots", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5, help="rounds of each executor, in turn")
    args = parser.parse_args()
    circuits = [brickwork(seed) for seed in range(args.circuits)]
    result = cirq.to_json(cirq.Simulator(seed=1).run(circuits[0], repetitions=args.shots), indent=None)
    feeds = {"text": TextFeed(result), "pickled": PickledFeed(result)}
    for name, feed in feeds.items():
        device = DeviceSpec(name, max_qubits=30, description="no-op executor")
        qnb.register_target(name, SimulatorTarget(name, engine="qsim", device=device, executor=feed))
        qnb.run(circuits, target=name, shots=args.shots, timeout=600)  # warm: Cirq's caches, the store

    rounds: dict[str, list[Round]] = {name: [] for name in feeds}
    for _ in range(args.repeat):
        for name in feeds:
            run = lambda: qnb.run(circuits, target=name, shots=args.shots, timeout=600)  # noqa: E731
            rounds[name].append(Round(run, len(circuits)))

    def shown(name: str) -> str:
        rs = rounds[name]
        wall = statistics.median(r.per_second for r in rs)
        best = max(r.per_second for r in rs)
        cpu = statistics.median(r.per_cpu_second for r in rs)
        ms = 1000 * statistics.median(r.cpu for r in rs) / len(circuits)
        return (f"{wall:6.0f} items/s (median; best {best:.0f}), {cpu:6.0f} items per CPU second, "
                f"{ms:.2f} ms of kernel CPU an item")  # fmt: skip

    text_feed = feeds["text"]
    print(f"circuits: {args.circuits} x 12 qubits, depth 20, {args.shots} shots; {args.repeat} rounds each")
    print(f"stored text to the workers: {shown('text')}   (goal >= 1,000 items/s)")
    print(f"circuits pickled:           {shown('pickled')}")
    by_thread = {
        name: statistics.median(r.threads.get(name, 0.0) for r in rounds["text"])
        for name in {name for r in rounds["text"] for name in r.threads}
    }
    shown_threads = ", ".join(f"{name} {ms:.2f}" for name, ms in sorted(by_thread.items(), key=lambda kv: -kv[1]) if ms >= 0.005)
    print(f"stored text, kernel CPU by thread (ms an item, median): {shown_threads}")
    ratios = sorted(t.cpu / p.cpu for t, p in zip(rounds["text"], rounds["pickled"]))
    print(f"kernel CPU, text / pickled, round by round: {', '.join(f'{r:.2f}' for r in ratios)} "
          f"(median {statistics.median(ratios):.2f})")
    if text_feed.texts < text_feed.items:
        print(f"note: {text_feed.items - text_feed.texts} of {text_feed.items} items reached the "
              "executor without their stored text (the manager does not hand it to local targets)")


if __name__ == "__main__":
    main()
