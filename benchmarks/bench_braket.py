"""200 Braket tasks in flight against the stand-in of Braket's API and S3
(tests/braket_standin.py, in its own process), through the real amazon-braket-sdk and
boto3: the kernel's CPU per followed job, and the time from the stand-in marking a task
completed to qnb knowing it (goal: p50 <= 1.5 s).

    python benchmarks/bench_braket.py [--jobs 200] [--run-seconds 4] [--poll-seconds 1]

Runs twice: with the target's follower as shipped (one search for the device's unfinished
tasks once more than a few are followed; finished ones read by ARN) and reading every
task by ARN each round. What bounds the latency: the poll interval plus one round of
requests, then the task's results.json from S3; Braket pushes nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import cirq  # noqa: E402

import qnb  # noqa: E402
from qnb import JobStatus, _manager  # noqa: E402
from qnb._targets import _braket  # noqa: E402
from braket_standin import SV1, BraketStandIn  # noqa: E402
from ionq_standin import free_port  # noqa: E402


def start_standin(run_seconds: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "braket_standin.py"), "--port", str(port),
         "--queue-seconds", "0.5", "--run-seconds", str(run_seconds)],
    )  # fmt: skip
    stand = BraketStandIn()
    stand.port = port
    os.environ.update(stand.env())  # boto3's own endpoint variables and the dummy key
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{stand.url}/_standin/state", timeout=1).read()
            return proc, stand.url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the stand-in did not start")
            time.sleep(0.05)


def run(n_jobs: int, run_seconds: float, poll_seconds: float, *, search: bool) -> dict:
    proc, url = start_standin(run_seconds)
    manager = _manager.JobManager(tempfile.mkdtemp(prefix="bench-braket-"))
    previous = _manager.set_manager(manager)
    known: dict[str, float] = {}
    lock = threading.Lock()

    def listener(rec) -> None:
        if rec.status is JobStatus.COMPLETED:
            with lock:
                known.setdefault(rec.id, time.time())

    manager.add_listener(listener)
    saved = _braket.READ_EACH_UP_TO
    _braket.READ_EACH_UP_TO = saved if search else 10**9
    target = qnb.register_target(f"braket-{'search' if search else 'each'}", "braket", device=SV1,
                                 s3_destination="s3://bench/tasks", poll_seconds=poll_seconds)  # fmt: skip
    try:
        q = cirq.LineQubit.range(2)
        bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
        started = time.perf_counter()
        jobs = [qnb.submit(bell, target=target.name, shots=100) for _ in range(n_jobs)]
        submitted = time.perf_counter() - started
        cpu0, wall0 = time.process_time(), time.perf_counter()
        deadline = time.monotonic() + run_seconds * 3 + 120
        while len(known) < n_jobs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(known)} of {n_jobs} jobs completed in time")
            time.sleep(0.05)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        state = json.loads(urllib.request.urlopen(f"{url}/_standin/state", timeout=10).read())
        lags = sorted(known[job.id] - state["tasks"][manager.load(job.id).remote_id]["done_at"] for job in jobs)
        return {
            "mode": "search" if search else "GET per task",
            "jobs": n_jobs,
            "submit_ms_per_job": round(1000 * submitted / n_jobs, 1),
            "follow_wall_s": round(wall, 1),
            "kernel_cpu_ms_per_job": round(1000 * cpu / n_jobs, 2),
            "kernel_cpu_percent_while_following": round(100 * cpu / wall, 1),
            "lag_p50_s": round(statistics.median(lags), 3),
            "lag_p90_s": round(lags[max(0, int(0.9 * len(lags)) - 1)], 3),
            "lag_max_s": round(lags[-1], 3),
            "requests_to_aws": sum(state["requests"].values()),
            "tasks_created": state["created"],
        }
    finally:
        _braket.READ_EACH_UP_TO = saved
        target.close()
        _manager.set_manager(previous)
        manager.close()
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--run-seconds", type=float, default=4.0)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    for search in (True, False):
        print(json.dumps(run(args.jobs, args.run_seconds, args.poll_seconds, search=search)), flush=True)


if __name__ == "__main__":
    main()
