"""The measuring loop the vendor benchmarks share (bench_ionq.py, bench_ibm.py,
bench_braket.py, bench_azure.py): the vendor's stand-in in a process of its own (its CPU
is not the kernel's), N jobs of a Bell pair submitted from threads, then followed until
qnb has each one's completion on disk. Each benchmark says only what is its own: its
stand-in's options, how its target is registered, how it follows many jobs.

Figures, one JSON line a mode: the submit time per job; the kernel's CPU per followed job
and its share of a core while following; the lag from the stand-in marking a job
completed to qnb's future for that job resolving (p50, p90, max); the requests the
stand-in counted; the jobs it created.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import cirq  # noqa: E402

import qnb  # noqa: E402
from qnb import JobStatus, _manager  # noqa: E402
from ionq_standin import free_port  # noqa: E402

Q = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))


@dataclasses.dataclass(frozen=True)
class Mode:
    """One way of following the jobs: ``label`` printed as ``mode`` (``None``: one way
    only, no ``mode`` printed); ``patch``: a module constant set for this run, e.g. the
    number of jobs read one by one before the target lists them."""

    label: str | None
    suffix: str = "bench"  # of the target's name
    patch: tuple[object, str, int] | None = None


def shipped_and_one_by_one(shipped: str, one_by_one: str, module: object, constant: str) -> tuple[Mode, Mode]:
    """Two runs: the target as shipped (many followed jobs read through one listing or
    search a round), and with ``module.constant`` (how many jobs it reads one by one)
    past any count, so that every job is read by id each round."""
    return Mode(shipped, "shipped"), Mode(one_by_one, "each", patch=(module, constant, 10**9))


@dataclasses.dataclass(frozen=True)
class VendorBench:
    vendor: str  # names the targets, the store's folder, the stand-in (tests/<vendor>_standin.py)
    #: (target name, stand-in URL, poll_seconds) -> the registered target.
    register: Callable[[str, str, float], object]
    standin_options: tuple[str, ...] = ()  # besides --port, --queue-seconds, --run-seconds
    modes: tuple[Mode, ...] = (Mode(None),)
    env: Callable[[str], dict[str, str]] = lambda url: {}  # set once the stand-in listens
    unset: tuple[str, ...] = ()  # the machine's own credentials, not used
    remote_key: Callable[[str], str] = lambda remote_id: remote_id  # qnb's remote id -> the stand-in's
    standin_jobs: str = "jobs"  # where /_standin/state keeps them
    requests_label: str = "requests"  # the figures' names
    created_label: str = "created"
    submitters: int = 1  # threads calling qnb.submit (overlapping creations that wait on the vendor)
    run_seconds: float = 4.0  # default: how long each job runs at the stand-in


def start_standin(bench: VendorBench, run_seconds: float) -> tuple[subprocess.Popen, str]:
    """The stand-in in a process of its own; its URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / f"{bench.vendor}_standin.py"), "--port", str(port),
         *bench.standin_options, "--queue-seconds", "0.5", "--run-seconds", str(run_seconds)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"{url}/_standin/state", timeout=1).read()
            return proc, url
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError(f"the {bench.vendor} stand-in did not start") from None
            time.sleep(0.05)


def run(bench: VendorBench, mode: Mode, n_jobs: int, run_seconds: float, poll_seconds: float) -> dict:
    proc, url = start_standin(bench, run_seconds)
    os.environ.update(bench.env(url))
    manager = _manager.JobManager(tempfile.mkdtemp(prefix=f"bench-{bench.vendor}-"))
    previous = _manager.set_manager(manager)
    saved = None
    if mode.patch is not None:
        module, name, value = mode.patch
        saved = getattr(module, name)
        setattr(module, name, value)
    target = bench.register(f"{bench.vendor}-{mode.suffix}", url, poll_seconds)
    try:
        return {**({} if mode.label is None else {"mode": mode.label}),
                **_measure(bench, manager, target.name, url, n_jobs, run_seconds)}  # fmt: skip
    finally:
        if mode.patch is not None:
            setattr(mode.patch[0], mode.patch[1], saved)
        target.close()
        _manager.set_manager(previous)
        manager.close()
        proc.terminate()
        proc.wait(timeout=30)


def _measure(bench: VendorBench, manager, target: str, url: str, n_jobs: int, run_seconds: float) -> dict:
    known: dict[str, float] = {}  # job id -> when qnb had its completion on disk

    def submit(_):
        job = qnb.submit(BELL, target=target, shots=100)
        waiting = manager.when(job.id, lambda rec: rec.status is JobStatus.COMPLETED)
        waiting.add_done_callback(lambda _, job_id=job.id: known.setdefault(job_id, time.time()))
        return job, waiting

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(bench.submitters) as pool:  # the creations overlap
        submitted = list(pool.map(submit, range(n_jobs)))
    submit_seconds = time.perf_counter() - started
    in_flight = sum(1 for job, _ in submitted if job.status is not JobStatus.COMPLETED)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    concurrent.futures.wait([waiting for _, waiting in submitted], timeout=run_seconds * 3 + 300)
    if len(known) < n_jobs:
        raise RuntimeError(f"only {len(known)} of {n_jobs} jobs completed in time")
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    state = json.loads(urllib.request.urlopen(f"{url}/_standin/state", timeout=10).read())
    done_at = state[bench.standin_jobs]
    lags = sorted(
        known[job.id] - done_at[bench.remote_key(manager.load(job.id).remote_id)]["done_at"] for job, _ in submitted
    )
    return {
        "jobs": n_jobs,
        "submit_ms_per_job": round(1000 * submit_seconds / n_jobs, 1),
        "in_flight_when_all_submitted": in_flight,
        "follow_wall_s": round(wall, 1),
        "kernel_cpu_ms_per_job": round(1000 * cpu / n_jobs, 2),
        "kernel_cpu_percent_while_following": round(100 * cpu / wall, 1),
        "lag_p50_s": round(statistics.median(lags), 3),
        "lag_p90_s": round(lags[max(0, int(0.9 * len(lags)) - 1)], 3),
        "lag_max_s": round(lags[-1], 3),
        bench.requests_label: sum(state["requests"].values()),
        bench.created_label: state["created"],
    }


def main(bench: VendorBench, doc: str) -> None:
    """The benchmark's command line: ``[--jobs 200] [--run-seconds S] [--poll-seconds 1]``;
    one JSON line of figures a mode."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--run-seconds", type=float, default=bench.run_seconds)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    args = parser.parse_args()
    for variable in bench.unset:
        os.environ.pop(variable, None)
    for mode in bench.modes:
        print(json.dumps(run(bench, mode, args.jobs, args.run_seconds, args.poll_seconds)), flush=True)
