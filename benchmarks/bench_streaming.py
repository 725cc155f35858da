"""Kernel-side cost of streaming job changes to the queue monitor.

10,000 tracked jobs, 200 status changes per second for 20 s, in a real IPython kernel
(started with jupyter_client). The changes go through qnb's own JobStream and
QueueMonitor; the comm messages are counted and measured where a front end would get
them, on the kernel's IOPub channel. The main thread runs a busy loop meanwhile, once
without the stream and once with it, to measure the stall.

    python benchmarks/bench_streaming.py [--seconds 20] [--jobs 10000] [--rate 200]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

TESTS = str(Path(__file__).resolve().parent.parent / "tests")

SETUP = r"""
import json, random, threading, time
from qnb._records import ItemRecord, JobRecord
from qnb._status import JobStatus
import sys; sys.path.insert(0, TESTS)  # the stand-in for a JobManager lives with the tests
from record_source import RecordSource

source = RecordSource(
    JobRecord(id=f"{i:032x}", name=f"sweep point {i}", target="emulator", user=f"user{i % 7}",
              shots=1000, items=[ItemRecord("0")], time_added=time.time() - N_JOBS + i,
              status=JobStatus.QUEUED, queue_seq=float(i))
    for i in range(N_JOBS)
)
ids = list(source.records)
changes = 0

def produce(stop):
    '''RATE status changes per second, paced like a busy device queue.'''
    global changes
    rng = random.Random(1)
    period = 1 / RATE
    next_at = time.perf_counter()
    while not stop.is_set():
        rec = source.records[rng.choice(ids)]
        with source.lock:
            rec.status = JobStatus.RUNNING if rec.status is JobStatus.QUEUED else JobStatus.QUEUED
            rec.time_started = time.time()
            source.changed(rec)
        changes += 1
        next_at += period
        time.sleep(max(0.0, next_at - time.perf_counter()))

def busy_loop(seconds):
    '''Iterations per second of a pure-Python loop on the main thread.'''
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(1000):
            n += 1
    return n / seconds
"""

# Rounds alternate between "no stream" and "stream on" so that the load of a shared
# machine hits both alike; the producer runs in both.
PHASES = r"""
from qnb.notebook._stream import JobStream
from qnb.notebook._widgets import ActionChannel, QueueMonitor
monitor = QueueMonitor(manager=source, stream=JobStream(source), channel=ActionChannel(source))
monitor._stream.stop()
snapshot_rows = len(monitor.snapshot()["jobs"])
print("COMM " + monitor.comm.comm_id + " " + str(snapshot_rows), flush=True)
stop = threading.Event()
producer = threading.Thread(target=produce, args=(stop,), daemon=True)
producer.start()
loops = {"off": 0.0, "on": 0.0}
ratios = []
changes_on = 0
stream_cpu = 0.0
for _ in range(ROUNDS):
    off = busy_loop(SECONDS / ROUNDS)
    loops["off"] += off
    stream = JobStream(source)
    stream.subscribe(monitor)
    before = changes
    on = busy_loop(SECONDS / ROUNDS)
    loops["on"] += on
    ratios.append(on / off)
    changes_on += changes - before
    stream.stop()
    stream_cpu += stream.cpu_seconds
stop.set(); producer.join()
print("RESULT " + json.dumps({"off": loops["off"] / ROUNDS, "on": loops["on"] / ROUNDS, "changes": changes_on, "stream_cpu": stream_cpu, "ratios": ratios}))
"""


def run(kc, code: str, *, timeout: float) -> tuple[list[str], list[dict]]:
    """Execute ``code``; return its printed lines and every comm_msg seen meanwhile."""
    msg_id = kc.execute(code)
    lines, comm_msgs = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = kc.get_iopub_msg(timeout=timeout)
        if msg["parent_header"].get("msg_id") != msg_id and msg["msg_type"] != "comm_msg":
            continue
        kind = msg["msg_type"]
        if kind == "comm_msg":
            msg["received"] = time.monotonic()
            comm_msgs.append(msg)
        elif kind == "stream":
            lines += msg["content"]["text"].splitlines()
        elif kind == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return lines, comm_msgs
    raise TimeoutError(code[:80])


def result_of(lines: list[str]) -> dict:
    return json.loads(next(line for line in lines if line.startswith("RESULT "))[7:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--rate", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10, help="alternations of off/on")
    args = parser.parse_args()
    km, kc = start_new_kernel(kernel_name="python3")
    try:
        params = f"N_JOBS={args.jobs}\nRATE={args.rate}\nSECONDS={args.seconds}\nTESTS={TESTS!r}\n"
        run(kc, params + SETUP, timeout=120)
        lines, comm_msgs = run(kc, f"ROUNDS={args.rounds}\n" + PHASES, timeout=2 * args.seconds + 120)
        comm_id, snapshot_rows = next(l for l in lines if l.startswith("COMM ")).split()[1:]
        measured = result_of(lines)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    patches = [
        m for m in comm_msgs
        if m["content"]["comm_id"] == comm_id and m["content"]["data"].get("content", {}).get("type") == "patch"
    ]
    sizes = [len(json.dumps(m["content"]["data"])) for m in patches]
    jobs_per = [len(m["content"]["data"]["content"]["jobs"]) for m in patches]
    per_job = [s / j for s, j in zip(sizes, jobs_per) if j]
    stall = 1 - measured["on"] / measured["off"]
    print(f"tracked jobs: {args.jobs} (snapshot {snapshot_rows} rows); "
          f"status changes while streaming: {measured['changes']} in {args.seconds:g} s "
          f"({measured['changes'] / args.seconds:.0f}/s)")
    print(f"patch messages: {len(patches)} -> {len(patches) / args.seconds:.2f} per second "
          f"(goal <= 10)")
    print(f"jobs per patch: mean {statistics.mean(jobs_per):.1f}, min {min(jobs_per)}, max {max(jobs_per)}")
    print(f"bytes per patch: mean {statistics.mean(sizes):.0f}, min {min(sizes)}, max {max(sizes)}")
    print(f"bytes per changed job: mean {statistics.mean(per_job):.1f}, min {min(per_job):.1f}, "
          f"max {max(per_job):.1f}  (constant => bytes proportional to changed jobs, not to {args.jobs})")
    print(f"main-thread busy loop: {measured['off']:.0f}/s without the stream, "
          f"{measured['on']:.0f}/s with it -> slowed {stall * 100:.1f}% (goal < 5%; "
          f"{args.rounds} alternating rounds; per-round slowdown from "
          f"{(1 - max(measured['ratios'])) * 100:.1f}% to {(1 - min(measured['ratios'])) * 100:.1f}%: "
          "the spread is the machine's noise)")
    median = 1 - statistics.median(measured["ratios"])
    print(f"median of the per-round slowdowns: {median * 100:.1f}% (goal < 5%; robust to a few "
          "noisy rounds, unlike the mean above)")
    cpu = measured["stream_cpu"] / args.seconds
    print(f"stream thread CPU (patches built and sent): {cpu * 1000:.1f} ms per second = "
          f"{cpu * 100:.2f}% of one core, the most it can take from the main thread")


if __name__ == "__main__":
    main()
