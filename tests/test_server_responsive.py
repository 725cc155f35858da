"""A real ``qnb serve`` stays responsive while one user's submit needs seconds of CPU:
parsing and compiling run off the server's event loop."""

from __future__ import annotations

import threading
import time

import httpx

from conftest import BELL_QASM
from test_server_support import ServeProcess, auth, make_users, submit_body

READ_LIMIT_SECONDS = 0.100
# On a shared 2-core machine (load 5-13 while other test suites run) the OS scheduler
# alone delays a read past 100 ms now and then, with or without the batch: measured
# standalone at load 5-6, the slowest of ~30,000 reads took 33-66 ms; inside a busy
# test session single reads reached 230 ms. So: 99% of the reads within 100 ms, and
# none near the seconds the loop was once held for (4.8 s for 20 circuits).
NOISE_SHARE = 0.01
NOISE_LIMIT_SECONDS = 1.0


def test_status_reads_answer_within_100_ms_while_300_circuits_compile(tmp_path):
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    server = ServeProcess(tmp_path, users_file=users_file).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as bob:
            mine = bob.post("/v1/jobs", json=submit_body(shots=20), headers=auth(tokens["bob"]))
            assert mine.status_code == 201, mine.text
            # Bell pairs in OpenQASM with H and CX: not native, so compile=True rewrites
            # every one (~20 ms of Cirq each: seconds for the batch).
            batch = {"circuits": {str(i): BELL_QASM for i in range(300)}, "shots": 10, "compile": True}
            answer: dict[str, httpx.Response] = {}

            def submit_batch() -> None:
                with httpx.Client(base_url=server.url, timeout=600) as alice:
                    answer["batch"] = alice.post("/v1/jobs", json=batch, headers=auth(tokens["alice"]))

            heavy = threading.Thread(target=submit_batch)
            heavy.start()
            took_all: list[float] = []
            deadline = time.monotonic() + 600
            while heavy.is_alive() and time.monotonic() < deadline:
                for path in (f"/v1/jobs/{mine.json()['id']}", "/v1/health"):
                    start = time.perf_counter()
                    read = bob.get(path, headers=auth(tokens["bob"]))
                    took = time.perf_counter() - start
                    assert read.status_code == 200, read.text
                    took_all.append(took)
            heavy.join(timeout=60)
        assert answer["batch"].status_code == 201, answer["batch"].text[:300]
        assert answer["batch"].json()["total"] == 300
        assert len(took_all) >= 40, f"only {len(took_all)} reads overlapped the batch"
        slow = sorted(t for t in took_all if t >= READ_LIMIT_SECONDS)
        assert len(slow) <= NOISE_SHARE * len(took_all), (len(took_all), slow)
        assert max(took_all) < NOISE_LIMIT_SECONDS, max(took_all)
    finally:
        server.stop()
