"""A real ``qnb serve`` stays responsive while one user's submit needs seconds of CPU:
parsing, compiling and checking run off the server's event loop, in a worker process."""

from __future__ import annotations

import gc
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import BELL_QASM
from test_server_support import ServeProcess, auth, make_users, submit_body

pytestmark = pytest.mark.load

READ_LIMIT_SECONDS = 0.100
# And as measured from outside, wait for a core included: a loaded shared machine may
# delay a read now and then, but never near the seconds the loop was once held for.
WALL_SHARE_OVER_LIMIT = 0.01
WALL_LIMIT_SECONDS = 1.0


class RunqueueWait:
    """Time a thread spent ready to run while no core was given to it (Linux's
    ``schedstat``): the reading thread here, and the server's event loop (its main
    thread). Other work on the machine decides that, not the server: on a shared 2-core
    machine with other test suites running (load 3-6), single waits of 100-470 ms were
    measured, for this test's own thread as often as for the server's loop, while the
    rest of every read took at most ~20 ms. When the server's own work runs on its loop
    or holds its GIL, the loop is busy or blocked, not waiting for a core: that time
    stays in the read. Where ``schedstat`` does not exist, nothing is subtracted."""

    def __init__(self, server_pid: int):
        self.paths = [Path("/proc/thread-self/schedstat"),
                      Path(f"/proc/{server_pid}/task/{server_pid}/schedstat")]
        self.available = all(path.exists() for path in self.paths)

    def now(self) -> int:
        if not self.available:
            return 0
        return sum(int(path.read_text().split()[1]) for path in self.paths)


def test_every_status_read_answers_within_100_ms_while_300_circuits_compile(tmp_path):
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    server = ServeProcess(tmp_path, users_file=users_file).start()
    waits = RunqueueWait(server.proc.pid)
    reads: list[tuple[str, float, float]] = []  # path, seconds, seconds waiting for a core
    collecting = gc.isenabled()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as bob, \
                httpx.Client(base_url=server.url, timeout=30) as alice_reads:
            mine = bob.post("/v1/jobs", json=submit_body(shots=20), headers=auth(tokens["bob"]))
            assert mine.status_code == 201, mine.text
            # Bell pairs in OpenQASM with H and CX: not native, so compile=True rewrites
            # every one (~20 ms of Cirq each: seconds for the batch).
            batch = {"circuits": {str(i): BELL_QASM for i in range(300)}, "shots": 10, "compile": True}
            answer: dict[str, httpx.Response] = {}

            def submit_batch() -> None:
                with httpx.Client(base_url=server.url, timeout=600) as alice:
                    answer["batch"] = alice.post("/v1/jobs", json=batch, headers=auth(tokens["alice"]))

            def read(client: httpx.Client, path: str, token: str) -> dict:
                waited = waits.now()
                start = time.perf_counter()
                got = client.get(path, headers=auth(token))
                took = time.perf_counter() - start
                reads.append((path, took, (waits.now() - waited) / 1e9))
                assert got.status_code == 200, got.text
                return got.json()

            # A full collection in this process (its heap holds Cirq, the test modules)
            # would pause a read here for 100+ ms: the server is measured, not this.
            gc.disable()
            heavy = threading.Thread(target=submit_batch)
            heavy.start()
            # Read during the submit, then on until the batch has run: right after the
            # answer the server takes the 300 circuits in and its manager runs them.
            batch_done = False
            deadline = time.monotonic() + 600
            while not batch_done and time.monotonic() < deadline:
                read(bob, f"/v1/jobs/{mine.json()['id']}", tokens["bob"])
                read(bob, "/v1/health", tokens["bob"])
                if not heavy.is_alive():
                    assert "batch" in answer, "the submit raised (see the output above)"
                    assert answer["batch"].status_code == 201, answer["batch"].text[:300]
                    view = read(alice_reads, f"/v1/jobs/{answer['batch'].json()['id']}",
                                tokens["alice"])
                    batch_done = view["status"] in ("completed", "failed", "cancelled")
            heavy.join(timeout=60)
    finally:
        if collecting:
            gc.enable()
        server.stop()
    assert batch_done, "the batch did not finish within 600 s"
    assert answer["batch"].json()["total"] == 300
    assert view["status"] == "completed", view
    assert len(reads) >= 40, f"only {len(reads)} reads overlapped the batch"
    server_side = sorted(((took - waited, path, took, waited) for path, took, waited in reads),
                         reverse=True)
    slow = [r for r in server_side if r[0] >= READ_LIMIT_SECONDS]
    walls = sorted(took for _, took, _ in reads)
    summary = (f"{len(reads)} reads; wall time max {walls[-1] * 1000:.1f} ms, "
               f"p99 {walls[int(0.99 * len(walls))] * 1000:.1f} ms; "
               f"without the waits for a core, max {server_side[0][0] * 1000:.1f} ms")
    print(summary)
    assert slow == [], (summary, slow[:10])
    over = [took for took in walls if took >= READ_LIMIT_SECONDS]
    assert len(over) <= WALL_SHARE_OVER_LIMIT * len(walls), (summary, over[-10:])
    assert walls[-1] < WALL_LIMIT_SECONDS, summary
