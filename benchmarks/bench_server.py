"""Benchmark of the queue server, measured in one run on this machine.

1. Throughput with 50 concurrent connections, driven by ``wrk`` (one httpx client
   would be the bottleneck): a bare Starlette ``/ping`` served by uvicorn the same way
   (one process, no access log) as the baseline; ``POST /v1/jobs`` (compact Cirq JSON,
   with a bearer token); ``GET /v1/jobs/{id}``. Printed as requests/s and as ratios.
2. Event latency: job completion on the server (its ``time_finished``) to the kernel
   knowing it (the local job turns ``completed``, results fetched), over the event feed,
   against clients polling every 1 s and 2 s, for the same jobs in the same run.

    python benchmarks/bench_server.py [--seconds 5] [--connections 50] [--jobs 40]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PING_APP = '''
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

async def ping(request):
    return JSONResponse({"ok": True})

app = Starlette(routes=[Route("/ping", ping)])
'''


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit(f"{url} not ready after {timeout} s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(url: str, *, seconds: int, connections: int, server_pid: int,
        script: Path | None = None) -> tuple[float, float]:
    """Requests/s, and the server process's CPU milliseconds per request."""
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        cmd[1:1] = ["-s", str(script)]
    cpu_before = cpu_seconds(server_pid)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    cpu = cpu_seconds(server_pid) - cpu_before
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise SystemExit(f"wrk saw {errors.group(1)} error answers from {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    return rate, cpu * 1000 / max(total, 1)


def lua(path: Path, *, method: str, token: str, body: str | None = None) -> Path:
    lines = [f'wrk.method = "{method}"', f'wrk.headers["Authorization"] = "Bearer {token}"']
    if body is not None:
        lines += [f"wrk.body = {json.dumps(body)}", 'wrk.headers["Content-Type"] = "application/json"']
    path.write_text("\n".join(lines) + "\n")
    return path


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def poller(url: str, token: str, interval: float, ids: set[str], seen: dict[str, float],
           stop: threading.Event) -> None:
    """A client that asks for its finished jobs every ``interval`` seconds."""
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
        while not stop.is_set() and len(seen) < len(ids):
            listed = http.get("/v1/jobs", params={"status": "completed", "limit": 10_000}).json()
            now = time.time()
            for job in listed["jobs"]:
                if job["id"] in ids:
                    seen.setdefault(job["id"], now)
            stop.wait(interval)


def main() -> None:
    options = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    options.add_argument("--seconds", type=int, default=5)
    options.add_argument("--connections", type=int, default=50)
    options.add_argument("--jobs", type=int, default=40)
    args = options.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    work = Path(tempfile.mkdtemp(prefix="qnb-bench-"))
    sys.path.insert(0, str(ROOT))
    import cirq

    from qnb import _circuits
    from qnb.server._auth import add_user

    # An admin: the submit run queues thousands of jobs, above a user's queued-jobs limit.
    token = add_user(work / "users.toml", "bench", role="admin")
    env = {**os.environ, "QNB_HOME": str(work / "home"), "QNB_EMULATOR_SECONDS_PER_SHOT": "0.001"}
    (work / "ping_app.py").write_text(PING_APP)
    ping_port, qnb_port = free_port(), free_port()
    ping = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "ping_app:app", "--port", str(ping_port),
         "--log-level", "warning", "--no-access-log"], cwd=work, env=env, start_new_session=True,
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "qnb._cli", "serve", "--port", str(qnb_port), "--db",
         str(work / "queue.sqlite3"), "--users", str(work / "users.toml"), "--device", "emulator"],
        env=env, start_new_session=True,
    )
    ping_url, url = f"http://127.0.0.1:{ping_port}", f"http://127.0.0.1:{qnb_port}"
    try:
        wait_ready(f"{ping_url}/ping", ping)
        wait_ready(f"{url}/v1/health", server)
        q = cirq.LineQubit(0)
        flip = _circuits.to_json(cirq.Circuit(cirq.X(q), cirq.measure(q, key="m")))
        body = json.dumps({"circuits": {"c": flip}, "shots": 10})
        post = lua(work / "post.lua", method="POST", token=token, body=body)
        get = lua(work / "get.lua", method="GET", token=token)
        first = httpx.post(f"{url}/v1/jobs", content=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"}).json()

        run = dict(seconds=args.seconds, connections=args.connections)
        print("measuring throughput ...", flush=True)
        (bare, bare_cpu) = wrk(f"{ping_url}/ping", server_pid=ping.pid, **run)
        (submits, submit_cpu) = wrk(f"{url}/v1/jobs", script=post, server_pid=server.pid, **run)
        (reads, read_cpu) = wrk(f"{url}/v1/jobs/{first['id']}", script=get, server_pid=server.pid, **run)
        (bare_after, _) = wrk(f"{ping_url}/ping", server_pid=ping.pid, **run)
        bare_mean = (bare + bare_after) / 2

        # Event latency: let the submissions drain first (cancel what wrk queued).
        admin = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        removed = admin.delete("/v1/queue/users/bench").json()["removed"]
        print("measuring event latency ...", flush=True)
        latency = event_latency(url, token, flip, args.jobs)
        admin.close()
    finally:
        for proc in (ping, server):  # their process groups: workers included
            os.killpg(proc.pid, signal.SIGTERM)
        for proc in (ping, server):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)

    print()
    print(f"qnb queue server benchmark ({args.connections} connections via wrk, {args.seconds:g} s each;"
          f" {os.cpu_count()} cores)")
    print(f"  bare Starlette /ping           {bare_mean:9.0f} req/s  (before {bare:.0f}, after {bare_after:.0f})")
    print(f"  POST /v1/jobs (submit)         {submits:9.0f} req/s  = {submits / bare_mean:.2f} x bare"
          f"   (goal >= 500/s)")
    print(f"  GET /v1/jobs/{{id}} (status)     {reads:9.0f} req/s  = {reads / bare_mean:.2f} x bare"
          f"   (goal >= 0.30 x)")
    print("  server CPU per request (what one idle core would allow):")
    for name, ms in (("bare /ping", bare_cpu), ("submit", submit_cpu), ("status read", read_cpu)):
        print(f"    {name:<12} {ms:6.2f} ms  -> {1000 / ms:7.0f} req/s per core")
    load = os.getloadavg()[0]
    print(f"  (load average {load:.1f} on {os.cpu_count()} cores while measuring: other work shares them)")
    print(f"  (cancelled {len(removed)} jobs queued by the submit run before measuring latency)")
    print(f"  event latency, completion on the server -> kernel knows it, {args.jobs} jobs:")
    for name, values in latency.items():
        print(f"    {name:<22} p50 {percentile(values, 0.5) * 1000:7.1f} ms   "
              f"p99 {percentile(values, 0.99) * 1000:7.1f} ms")
    print("    (goals for the event feed: p50 <= 50 ms, p99 <= 250 ms)")


def event_latency(url: str, token: str, circuit_json: str, n_jobs: int) -> dict[str, list[float]]:
    import qnb
    from qnb._manager import JobManager, set_manager

    home = Path(tempfile.mkdtemp(prefix="qnb-bench-kernel-"))
    manager = JobManager(home)
    set_manager(manager)
    known: dict[str, float] = {}

    def listener(rec) -> None:
        if rec.status.value == "completed":
            known.setdefault(rec.id, time.time())

    manager.add_listener(listener)
    try:
        qnb.connect("lab", url, token=token)
        circuit = _from_json(circuit_json)
        jobs = [qnb.submit(circuit, target="lab", shots=100) for _ in range(n_jobs)]
        ids = {job.id for job in jobs}
        stop = threading.Event()
        polled: dict[float, dict[str, float]] = {1.0: {}, 2.0: {}}
        threads = [threading.Thread(target=poller, args=(url, token, interval, ids, seen, stop))
                   for interval, seen in polled.items()]
        for thread in threads:
            thread.start()
        for job in jobs:
            job.result(timeout=300)
        for thread in threads:
            thread.join(timeout=30)
        stop.set()
        http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
        finished = {job_id: http.get(f"/v1/jobs/{job_id}").json()["time_finished"] for job_id in ids}
        http.close()
    finally:
        set_manager(None)
        manager.close()
        shutil.rmtree(home, ignore_errors=True)
    return {
        "event feed (qnb)": [known[i] - finished[i] for i in ids],
        "polling every 1 s": [polled[1.0][i] - finished[i] for i in ids if i in polled[1.0]],
        "polling every 2 s": [polled[2.0][i] - finished[i] for i in ids if i in polled[2.0]],
    }


def _from_json(text: str):
    from qnb import _circuits

    return _circuits.from_json(text)


if __name__ == "__main__":
    main()
