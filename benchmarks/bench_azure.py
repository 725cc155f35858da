"""200 Azure Quantum jobs in flight against the stand-in of a workspace and its storage
(tests/azure_standin.py, in its own process): the kernel's CPU per followed job, and the
time from the stand-in marking a job completed to qnb knowing it (goal: p50 <= 1.5 s).

    python benchmarks/bench_azure.py [--jobs 200] [--run-seconds 4] [--poll-seconds 1]

Runs twice: with the target as shipped (one listing of the target's unfinished jobs once
more than a few are followed, then each finished job read once by id) and reading every
job by id each round. What bounds the latency: the poll interval (``poll_seconds``), one
round of requests, and the finished job's reads (its details, a SAS for its output, the
output blob); Azure pushes nothing.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
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
from qnb._targets import _azure  # noqa: E402
from azure_standin import GROUP, LOCATION, SUBSCRIPTION, WORKSPACE  # noqa: E402
from ionq_standin import free_port  # noqa: E402

KEY = "bench-key"
CONNECTION_STRING = (f"SubscriptionId={SUBSCRIPTION};ResourceGroupName={GROUP};WorkspaceName={WORKSPACE};"
                     f"ApiKey={KEY};QuantumEndpoint=https://{LOCATION}.quantum.azure.com/;")  # fmt: skip


def start_standin(run_seconds: float) -> tuple[subprocess.Popen, str]:
    """The stand-in in a process of its own (its CPU is not the kernel's); its URL once it listens."""
    command = [sys.executable, str(ROOT / "tests" / "azure_standin.py"), "--port", str(free_port()), "--key", KEY,
               "--queue-seconds", "0.5", "--run-seconds", str(run_seconds)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    timer = threading.Timer(30, proc.kill)  # a stand-in that never says it listens
    timer.start()
    line = proc.stdout.readline()
    timer.cancel()
    if " at http://" not in line:
        raise RuntimeError(f"the stand-in did not start: {line!r}")
    return proc, line.split(" at ")[1].split()[0]


def run(n_jobs: int, run_seconds: float, poll_seconds: float, *, listing: bool) -> dict:
    proc, url = start_standin(run_seconds)
    manager = _manager.JobManager(tempfile.mkdtemp(prefix="bench-azure-"))
    previous = _manager.set_manager(manager)
    saved = _azure.GET_EACH_UP_TO
    _azure.GET_EACH_UP_TO = saved if listing else 10**9
    target = qnb.register_target(
        f"azure-{'list' if listing else 'each'}", "azure", backend="ionq.qpu.aria-1",
        connection_string=CONNECTION_STRING, endpoint=url + "/", poll_seconds=poll_seconds,
    )  # fmt: skip
    try:
        q = cirq.LineQubit.range(2)
        bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
        known: dict[str, float] = {}  # job id -> when qnb had its completion on disk
        jobs, waits = [], []
        started = time.perf_counter()
        for _ in range(n_jobs):
            jobs.append(job := qnb.submit(bell, target=target.name, shots=100))
            waits.append(waiting := manager.when(job.id, lambda rec: rec.status is JobStatus.COMPLETED))
            waiting.add_done_callback(lambda _, job_id=job.id: known.setdefault(job_id, time.time()))
        submitted = time.perf_counter() - started
        cpu0, wall0 = time.process_time(), time.perf_counter()
        concurrent.futures.wait(waits, timeout=run_seconds * 3 + 180)
        if len(known) < n_jobs:
            raise RuntimeError(f"only {len(known)} of {n_jobs} jobs completed in time")
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        state = json.loads(urllib.request.urlopen(f"{url}/_standin/state", timeout=10).read())
        lags = sorted(known[job.id] - state["jobs"][manager.load(job.id).remote_id]["done_at"] for job in jobs)
        return {
            "mode": "listing" if listing else "GET per job",
            "jobs": n_jobs,
            "submit_ms_per_job": round(1000 * submitted / n_jobs, 1),
            "follow_wall_s": round(wall, 1),
            "kernel_cpu_ms_per_job": round(1000 * cpu / n_jobs, 2),
            "kernel_cpu_percent_while_following": round(100 * cpu / wall, 1),
            "lag_p50_s": round(statistics.median(lags), 3),
            "lag_p90_s": round(lags[max(0, int(0.9 * len(lags)) - 1)], 3),
            "lag_max_s": round(lags[-1], 3),
            "requests_to_azure": sum(state["requests"].values()),
            "created": state["created"],
        }
    finally:
        _azure.GET_EACH_UP_TO = saved
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
    for listing in (True, False):
        print(json.dumps(run(args.jobs, args.run_seconds, args.poll_seconds, listing=listing)), flush=True)


if __name__ == "__main__":
    main()
