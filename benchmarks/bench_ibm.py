"""200 IBM Quantum jobs in flight against the stand-in of IBM's APIs (tests/ibm_standin.py,
in its own process), through the real qiskit-ibm-runtime client: the kernel's CPU per
followed job, and the time from the stand-in marking a job completed to qnb knowing it
(goal: p50 <= 1.5 s).

    python benchmarks/bench_ibm.py [--jobs 200] [--run-seconds 30] [--poll-seconds 1]

What bounds the latency: the poll interval (``poll_seconds``), plus one round of reads
(one GET per followed job, on the target's threads), plus reading the finished job's
usage and results; IBM pushes nothing. More than a few followed jobs are read through
IBM's listing of unfinished jobs, one request a round. The submit time per job includes
Qiskit's transpilation, the client-side Sampler's preparation of the program and the
client's four requests per creation (backends, usage, backend status, the POST); jobs
run ``--run-seconds`` at the stand-in, long enough for all of them to be in flight.
"""

from __future__ import annotations

import argparse
import concurrent.futures
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
from ibm_standin import BACKEND, CRN, client_env  # noqa: E402
from ionq_standin import free_port  # noqa: E402

KEY = "bench-key"
#: Threads calling qnb.submit: each waits for its job's creation at IBM (four requests).
SUBMITTERS = 8


def start_standin(run_seconds: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "ibm_standin.py"), str(port), KEY, str(run_seconds)])
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_standin/state", timeout=1).read()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("the stand-in did not start")
            time.sleep(0.05)


def run(n_jobs: int, run_seconds: float, poll_seconds: float) -> dict:
    proc, url = start_standin(run_seconds)
    os.environ.update(client_env(url))
    home = tempfile.mkdtemp(prefix="bench-ibm-")
    manager = _manager.JobManager(home)
    previous = _manager.set_manager(manager)
    known: dict[str, float] = {}
    lock = threading.Lock()

    def listener(rec) -> None:
        if rec.status is JobStatus.COMPLETED:
            with lock:
                known.setdefault(rec.id, time.time())

    manager.add_listener(listener)
    target = qnb.register_target("ibm-bench", "ibm", backend=BACKEND, token=KEY, instance=CRN,
                                 api_url=f"{url}/api/v1", poll_seconds=poll_seconds)  # fmt: skip
    try:
        q = cirq.LineQubit.range(2)
        bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(SUBMITTERS) as pool:  # the creations overlap
            jobs = list(pool.map(lambda _: qnb.submit(bell, target=target.name, shots=100), range(n_jobs)))
        submitted = time.perf_counter() - started
        in_flight = sum(1 for job in jobs if job.status is not JobStatus.COMPLETED)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        deadline = time.monotonic() + run_seconds * 3 + 300
        while len(known) < n_jobs:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {len(known)} of {n_jobs} jobs completed in time")
            time.sleep(0.05)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        state = json.loads(urllib.request.urlopen(f"{url}/_standin/state", timeout=10).read())
        lags = sorted(known[job.id] - state["jobs"][manager.load(job.id).remote_id]["done_at"] for job in jobs)
        return {
            "jobs": n_jobs,
            "submit_ms_per_job": round(1000 * submitted / n_jobs, 1),
            "in_flight_when_all_submitted": in_flight,
            "follow_wall_s": round(wall, 1),
            "kernel_cpu_ms_per_job": round(1000 * cpu / n_jobs, 2),
            "kernel_cpu_percent_while_following": round(100 * cpu / wall, 1),
            "lag_p50_s": round(statistics.median(lags), 3),
            "lag_p90_s": round(lags[max(0, int(0.9 * len(lags)) - 1)], 3),
            "lag_max_s": round(lags[-1], 3),
            "requests_to_ibm": sum(state["requests"].values()),
            "created_at_ibm": state["created"],
        }
    finally:
        target.close()
        _manager.set_manager(previous)
        manager.close()
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--run-seconds", type=float, default=30.0)  # all jobs in flight at once
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    for variable in ("QISKIT_IBM_TOKEN", "QISKIT_IBM_INSTANCE"):
        os.environ.pop(variable, None)
    print(json.dumps(run(args.jobs, args.run_seconds, args.poll_seconds)), flush=True)


if __name__ == "__main__":
    main()
