"""Memory a user controls on the server: a queued job keeps only its stored form (the
circuits' Cirq JSON in SQLite), parsed again when it starts; a removed or cancelled job
keeps none; the circuit text a user's waiting jobs hold is bounded. And, against a real
``qnb serve``, four large queued jobs no longer grow the server by their parsed
circuits (before: ~60 MB a job, kept after their removal)."""

from __future__ import annotations

import contextlib
from pathlib import Path

import cirq
import httpx
import numpy as np
import pytest

from conftest import BELL_QASM, wait_until
from qnb._errors import LimitExceededError
from qnb._status import JobStatus
from qnb.server._auth import User
from qnb.server._intake import Limits
from qnb.server._service import QueueService, Submission
from test_server_support import BELL_JSON, FLIP_JSON, ServeProcess, auth, make_users

ALICE, ROOT = User("alice"), User("root", "admin")
Q = cirq.LineQubit.range(6)
#: 12 circuits of 6,250 operations: a 75,000-operation job (~12 MB of Cirq JSON).
LARGE_JOB_CIRCUITS, LARGE_CIRCUIT_OPERATIONS, LARGE_JOBS = 12, 6_250, 3
#: What three such queued jobs may add to the server's resident memory: each passes
#: through the server parsed once (the allocator keeps some of that), but none stays.
#: Measured with eight: +101 MB now; +480 MB before (+725 MB in the report's run), kept
#: after removal — so three held ~180 MB before, 1.5 times this bound.
QUEUED_GROWTH_MB = 120


@pytest.fixture
def service(manager):
    svc = QueueService(manager, device="emulator")
    yield svc
    for rec in manager.find(limit=100):
        manager.cancel(rec.id)
    svc.close()


def block_the_device(service: QueueService) -> str:
    """A long job of the admin's, running: the jobs after it wait in the queue."""
    blocker = service.accept(ROOT, Submission({"c": FLIP_JSON}, shots=100_000, name="blocker"))
    wait_until(lambda: service.view(ROOT, blocker["id"])["status"] == "running", what="the blocker")
    return blocker["id"]


def test_queued_jobs_hold_no_parsed_circuits_and_run_from_the_store(service, manager):
    blocker = block_the_device(service)
    json_job = service.accept(ALICE, Submission({"a": BELL_JSON, "b": BELL_JSON}, shots=50))
    qasm_job = service.accept(ALICE, Submission({"q": BELL_QASM}, shots=50, compile=True))
    removed = service.accept(ALICE, Submission({"c": BELL_JSON}, shots=50))
    cancelled = service.accept(ALICE, Submission({"c": BELL_JSON}, shots=50))
    for view in (json_job, qasm_job, removed, cancelled):
        rec = manager.record(view["id"])
        assert rec.status is JobStatus.QUEUED
        assert rec.live.circuits is None and rec.live.resolvers is None, "a queued job holds its circuits"
    service.remove_by_id(ALICE, removed["id"])
    service.cancel(ALICE, cancelled["id"])
    for view in (removed, cancelled):
        rec = manager.record(view["id"])
        assert rec.status is JobStatus.CANCELLED and rec.live.circuits is None
    service.cancel(ROOT, blocker)
    # The queued jobs start, load their circuits from the store, and run them right.
    for view in (json_job, qasm_job):
        wait_until(lambda: service.view(ALICE, view["id"])["status"] == "completed", timeout=60,
                   what=f"job {view['name']} to complete")
        answer = service.results(ALICE, view["id"])
        for item in answer["items"].values():
            result = cirq.read_json(json_text=item["result"])
            bits = np.hstack(list(result.measurements.values()))  # shots x 2, any keys
            # Bell pairs, on a noisy emulator: mostly 00 and 11.
            assert bits.shape == (50, 2) and (bits[:, 0] == bits[:, 1]).sum() >= 40, bits


def test_the_circuit_text_of_a_users_waiting_jobs_is_bounded(manager):
    size = len(BELL_JSON)
    svc = QueueService(manager, device="emulator",
                       limits=Limits(queued_circuit_bytes_per_user=int(2.5 * size)))
    try:
        blocker = block_the_device(svc)
        first = svc.accept(ALICE, Submission({"c": BELL_JSON}, shots=10))
        svc.accept(ALICE, Submission({"c": BELL_JSON}, shots=10))
        with pytest.raises(LimitExceededError, match="bytes of circuits"):
            svc.accept(ALICE, Submission({"c": BELL_JSON}, shots=10))
        svc.accept(ROOT, Submission({"c": BELL_JSON}, shots=10))  # the queue keeper is not bounded
        svc.remove_by_id(ALICE, first["id"])  # room again
        svc.accept(ALICE, Submission({"c": BELL_JSON}, shots=10))
        svc.cancel(ROOT, blocker)
    finally:
        for rec in manager.find(limit=100):
            manager.cancel(rec.id)
        svc.close()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def large_job() -> dict:
    def circuit(seed: int) -> str:
        ops = [cirq.Y(Q[(i + seed) % 6]) ** 0.5 for i in range(LARGE_CIRCUIT_OPERATIONS - 1)]
        return cirq.to_json(cirq.Circuit(ops + [cirq.measure(*Q, key="m")]), indent=None)

    return {"circuits": {str(i): circuit(i) for i in range(LARGE_JOB_CIRCUITS)}, "shots": 10}


@pytest.mark.slow
def test_large_queued_jobs_do_not_stay_in_the_servers_memory(tmp_path):
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    # A slow device: the admin's blocker runs for the whole test, the others wait.
    server = ServeProcess(tmp_path, users_file=users_file,
                          env={"QNB_EMULATOR_SECONDS_PER_SHOT": "0.01"}).start()
    body = large_job()
    try:
        with httpx.Client(base_url=server.url, timeout=600) as client:
            blocker = client.post("/v1/jobs", headers=auth(tokens["root"]), json={
                "circuits": {"c": FLIP_JSON}, "shots": 100_000})
            assert blocker.status_code == 201, blocker.text
            # The first submit warms what every later one reuses (the circuit workers'
            # answer path, SQLite's cache): measured from after it.
            ids = [submit(client, body, tokens["alice"])]
            before = rss_mb(server.proc.pid)
            ids += [submit(client, body, tokens["alice"]) for _ in range(LARGE_JOBS)]
            queued = rss_mb(server.proc.pid)
            for job_id in ids:
                gone = client.delete(f"/v1/queue/jobs/{job_id}", headers=auth(tokens["alice"]))
                assert gone.status_code == 200, gone.text
            after = rss_mb(server.proc.pid)
    finally:
        with contextlib.suppress(Exception):
            server.kill()
    figures = f"RSS {before:.0f} MB, {queued:.0f} MB with {LARGE_JOBS} more queued, {after:.0f} MB after removal"
    print(figures)
    assert queued - before < QUEUED_GROWTH_MB, figures
    assert after - before < QUEUED_GROWTH_MB, figures


def submit(client: httpx.Client, body: dict, token: str) -> str:
    answer = client.post("/v1/jobs", json=body, headers=auth(token))
    assert answer.status_code == 201, answer.text[:300]
    assert answer.json()["status"] == "queued", answer.json()["status"]
    return answer.json()["id"]
