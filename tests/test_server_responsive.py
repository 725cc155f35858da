"""A real ``qnb serve`` stays responsive while one user's submit needs seconds of CPU:
parsing, compiling and checking run off the server's event loop, in a worker process.
Here: another user's status reads answer, and correctly, while a 60-circuit compile is
in flight. How quickly (the goal: every read under 100 ms) is measured by
``benchmarks/bench_server_responsive.py``, which prints the figures against it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from conftest import BELL_QASM, SHARED_SERVE_GROUP, wait_until
from qnb import JobStatus
from test_server_support import auth, submit_body

pytestmark = pytest.mark.load

STATUSES = {status.value for status in JobStatus}
FINISHED = {"completed", "failed", "cancelled"}


@SHARED_SERVE_GROUP
def test_status_reads_answer_while_a_big_batch_compiles(shared_serve):
    server, tokens = shared_serve
    answer: dict[str, httpx.Response] = {}
    # Bell pairs in OpenQASM with H and CX: not native, so compile=True rewrites every
    # one (~20 ms of Cirq each: a second or more for the batch; the benchmark sends 300).
    batch = {"circuits": {str(i): BELL_QASM for i in range(60)}, "shots": 10, "compile": True}

    def submit_batch() -> None:
        with httpx.Client(base_url=server.url, timeout=600) as alice:
            answer["batch"] = alice.post("/v1/jobs", json=batch, headers=auth(tokens["alice"]))

    def read(client: httpx.Client, path: str, token: str) -> dict:
        got = client.get(path, headers=auth(token))
        assert got.status_code == 200, got.text
        return got.json()

    with httpx.Client(base_url=server.url, timeout=30) as bob, \
            httpx.Client(base_url=server.url, timeout=30) as alice_reads:
        mine = bob.post("/v1/jobs", json=submit_body(shots=20), headers=auth(tokens["bob"]))
        assert mine.status_code == 201, mine.text
        mine_id = mine.json()["id"]
        heavy = threading.Thread(target=submit_batch)
        heavy.start()
        # Read back to back during the submit...
        while_in_flight = 0  # reads answered before the batch's submit was
        deadline = time.monotonic() + 600
        while heavy.is_alive() and time.monotonic() < deadline:
            job = read(bob, f"/v1/jobs/{mine_id}", tokens["bob"])
            assert job["id"] == mine_id and job["status"] in STATUSES, job
            assert read(bob, "/v1/health", tokens["bob"])["last"] >= 0
            while_in_flight += 1
        heavy.join(timeout=60)
        assert "batch" in answer, "the submit raised (see the output above)"
        assert answer["batch"].status_code == 201, answer["batch"].text[:300]
        # ... then, less often, until the batch has run.
        batch_path = f"/v1/jobs/{answer['batch'].json()['id']}"
        view = wait_until(lambda: (v := read(alice_reads, batch_path, tokens["alice"]))["status"] in FINISHED and v,
                          timeout=600, interval=0.05, what="the batch to finish")
    assert view.get("status") == "completed", view
    assert answer["batch"].json()["total"] == 60 and view["total"] == 60
    # A loop held by the compile would have answered none of them until the submit's
    # answer (then a read or two at once); off the loop, reads go on throughout.
    assert while_in_flight >= 10, f"only {while_in_flight} reads answered while the batch was submitted"
