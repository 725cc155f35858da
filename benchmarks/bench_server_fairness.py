"""Benchmark: one user's cheap submit while other users' heavy submits are in flight.

A real ``qnb serve`` on loopback, three users. ``--heavy`` users (two by default) each
send one 300-circuit OpenQASM batch with ``compile=true`` (seconds of Cirq work each);
meanwhile a third user sends small submits one after another: a 2-qubit OpenQASM
circuit (compiled: its named qubits are not the device's), and a Cirq JSON circuit
without compiling. Printed: the small submits' latency
on the idle server and while the heavy ones are in flight, the heavy submits' own
time, and the ratios (small in flight / small idle, small / heavy).

    python benchmarks/bench_server_fairness.py [--heavy 2] [--circuits 300]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

BELL_QASM = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""
USERS = ("carol", "alice", "bob", "dave", "erin")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(tmp: Path, users_file: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "QNB_HOME": str(tmp / "home"), "QNB_EMULATOR_SECONDS_PER_SHOT": "0.0001"}
    log = open(tmp / "serve.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "qnb._cli", "serve", "--port", str(port), "--db",
         str(tmp / "queue.sqlite3"), "--users", str(users_file), "--workers", "1",
         "--log-level", "warning"],
        env=env, stdout=log, stderr=log, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"qnb serve exited {proc.returncode}: {(tmp / 'serve.log').read_text()}")
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    raise SystemExit("qnb serve did not answer within 120 s")


def small_bodies() -> dict[str, dict]:
    import cirq

    q = cirq.LineQubit.range(2)
    bell = cirq.Circuit(cirq.Y(q[0]) ** 0.5, cirq.Y(q[1]) ** 0.5, cirq.CZ(*q),
                        cirq.Y(q[1]) ** -0.5, cirq.measure(*q, key="m"))
    return {
        "qasm": {"circuits": {"c": BELL_QASM}, "shots": 10, "compile": True},
        "json": {"circuits": {"c": cirq.to_json(bell, indent=None)}, "shots": 10},
    }


def timed_post(client: httpx.Client, body: dict, token: str) -> float:
    start = time.perf_counter()
    got = client.post("/v1/jobs", json=body, headers={"Authorization": f"Bearer {token}"})
    took = time.perf_counter() - start
    if got.status_code != 201:
        raise SystemExit(f"submit answered {got.status_code}: {got.text[:300]}")
    return took


def idle_latency(url: str, token: str, bodies: dict, rounds: int) -> dict[str, list[float]]:
    with httpx.Client(base_url=url, timeout=600) as client:
        return {kind: [timed_post(client, body, token) for _ in range(rounds)]
                for kind, body in bodies.items()}


def under_load(url: str, tokens: dict[str, str], bodies: dict, heavy_users: list[str],
               circuits: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    batch = {"circuits": {str(i): BELL_QASM for i in range(circuits)}, "shots": 10, "compile": True}
    heavy_took: dict[str, float] = {}

    def heavy(user: str) -> None:
        with httpx.Client(base_url=url, timeout=900) as client:
            heavy_took[user] = timed_post(client, batch, tokens[user])

    threads = [threading.Thread(target=heavy, args=(u,)) for u in heavy_users]
    for thread in threads:
        thread.start()
    small: dict[str, list[float]] = {kind: [] for kind in bodies}

    def cheap(kind: str) -> None:  # each kind on its own connection, one after another
        with httpx.Client(base_url=url, timeout=900) as client:
            while any(t.is_alive() for t in threads):
                small[kind].append(timed_post(client, bodies[kind], tokens["carol"]))
                time.sleep(0.2)

    time.sleep(1.0)  # a benchmark, not a test: let the heavy requests reach the server
    cheap_threads = [threading.Thread(target=cheap, args=(kind,)) for kind in bodies]
    for thread in cheap_threads:
        thread.start()
    for thread in [*threads, *cheap_threads]:
        thread.join()
    return small, heavy_took


def describe(values: list[float]) -> str:
    if not values:
        return "none"
    return (f"n={len(values)} median {statistics.median(values) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heavy", type=int, default=2, help="users sending a heavy batch (1-4)")
    parser.add_argument("--circuits", type=int, default=300, help="circuits per heavy batch")
    parser.add_argument("--rounds", type=int, default=5, help="small submits of each kind, idle")
    args = parser.parse_args()
    from qnb.server._auth import add_user

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        users_file = tmp / "users.toml"
        tokens = {name: add_user(users_file, name) for name in USERS[: args.heavy + 1]}
        proc, url = start_server(tmp, users_file)
        try:
            bodies = small_bodies()
            idle = idle_latency(url, tokens["carol"], bodies, args.rounds)
            small, heavy = under_load(url, tokens, bodies, list(tokens)[1:], args.circuits)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    slowest_heavy = max(heavy.values())
    print(f"heavy submits ({args.heavy} users x {args.circuits} OpenQASM circuits, compile=true): "
          + ", ".join(f"{u} {t:.1f} s" for u, t in heavy.items()))
    for kind in bodies:
        worst = max(small[kind]) if small[kind] else float("nan")
        print(f"small {kind:4s} submit, idle server: {describe(idle[kind])}")
        print(f"small {kind:4s} submit, heavy in flight: {describe(small[kind])}")
        print(f"  ratio worst-in-flight / median-idle: {worst / statistics.median(idle[kind]):.1f}x; "
              f"worst small / slowest heavy: {worst / slowest_heavy:.3f}")


if __name__ == "__main__":
    main()
