"""End to end with a real ``qnb serve`` subprocess on 127.0.0.1: the CLI, the SIGKILL
test, and the load test."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

import qnb
from qnb import JobStatus
from qnb._store import Store
from conftest import wait_until
from test_server_support import BELL, FLIP_JSON, ServeProcess, auth, make_users, submit_body

pytestmark = pytest.mark.slow


def test_serve_refuses_other_hosts_without_a_users_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "qnb._cli", "serve", "--host", "0.0.0.0", "--db", str(tmp_path / "q.db")],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "without a users file" in done.stderr and "--users" in done.stderr
    assert not (tmp_path / "q.db").exists()


def test_add_user_prints_a_token_that_the_server_accepts(tmp_path):
    users_file = tmp_path / "users.toml"
    made = subprocess.run(
        [sys.executable, "-m", "qnb._cli", "add-user", "carol", "--users", str(users_file)],
        capture_output=True, text=True, timeout=60, check=True,
    )
    token = made.stdout.strip()
    assert token.startswith("qnb_") and token not in users_file.read_text()
    again = subprocess.run(
        [sys.executable, "-m", "qnb._cli", "add-user", "carol", "--users", str(users_file)],
        capture_output=True, text=True, timeout=60,
    )
    assert again.returncode == 2 and "already" in again.stderr
    server = ServeProcess(tmp_path, users_file=users_file).start()
    try:
        assert httpx.get(f"{server.url}/v1/whoami", headers=auth(token)).json() == {
            "user": "carol", "role": "user"}
        assert httpx.get(f"{server.url}/v1/whoami", headers=auth("qnb_wrong")).status_code == 401
    finally:
        server.stop()


def test_sigkill_while_running_loses_nothing_and_the_client_resumes(manager, tmp_path):
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    # 100 shots at 1 ms: ~0.12 s of device time per job, ~6 s for all 50.
    env = {"QNB_EMULATOR_SECONDS_PER_SHOT": "0.001"}
    server = ServeProcess(tmp_path, users_file=users_file, env=env).start()
    try:
        qnb.connect("lab", server.url, token=tokens["alice"], retry_for=60)
        jobs = [qnb.submit(BELL, target="lab", shots=100, name=f"j{i:02d}") for i in range(50)]
        wait_until(lambda: all(manager.store.load_job(j.id).remote_id for j in jobs), timeout=60,
                   what="all 50 jobs handed to the server")
        wait_until(lambda: sum(j.done() for j in jobs) >= 5, timeout=60, what="some jobs done")
        watcher = Store(server.db)
        try:  # kill the moment the database shows a job running (each runs ~0.12 s)
            wait_until(lambda: watcher.find_jobs(status=["running"], limit=1), timeout=30,
                       interval=0.001, what="a running job in the server's database")
            server.kill()
        finally:
            watcher.close()
        kill_time = time.time()

        before = Store(server.db)
        try:
            stored = {rec.id: rec for rec in before.find_jobs(limit=1000)}
        finally:
            before.close()
        assert set(stored) == {j.id for j in jobs}  # every accepted job is in the database
        finished_before = {i: r.time_finished for i, r in stored.items() if r.status is JobStatus.COMPLETED}
        assert any(r.status is JobStatus.RUNNING for r in stored.values())
        assert 5 <= len(finished_before) < 50

        server.start()  # same port, same database
        # The client resumes by itself: every job completes, with its results.
        for job in jobs:
            assert sum(job.result(timeout=120).counts().values()) == 100
        after = Store(server.db)
        try:
            final = {rec.id: rec for rec in after.find_jobs(limit=1000)}
            results = {job_id: after.load_results(job_id) for job_id in final}
        finally:
            after.close()
        assert set(final) == set(stored)  # none lost, none added
        assert all(r.status is JobStatus.COMPLETED for r in final.values())
        assert all(len(results[i]) == 1 for i in final)  # one result per item
        # Jobs finished before the kill were not run again.
        assert all(final[i].time_finished == t < kill_time for i, t in finished_before.items())
        # Queue order kept: they started in the order they were submitted.
        started = sorted(final.values(), key=lambda r: r.time_started)
        assert [r.name for r in started] == [f"j{i:02d}" for i in range(50)]
        assert "50 unfinished" not in server.log.read_text()
        assert f"{50 - len(finished_before)} unfinished job(s) taken over" in server.log.read_text()
    finally:
        server.stop()


@pytest.mark.load
def test_load_20_clients_x_100_submissions(tmp_path):
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    server = ServeProcess(tmp_path, users_file=users_file, device="sim").start()
    n_clients, per_client = 20, 100
    accepted: list[list[str]] = [[] for _ in range(n_clients)]
    errors: list[str] = []
    body = submit_body(FLIP_JSON, shots=10)

    def one_client(index: int) -> None:
        token = tokens[("alice", "bob", "root")[index % 3]]
        with httpx.Client(base_url=server.url, headers=auth(token), timeout=30) as http:
            for _ in range(per_client):
                key = uuid.uuid4().hex
                for _attempt in range(5):  # bounded retries, reusing the idempotency key
                    try:
                        answer = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": key})
                    except httpx.TransportError as exc:
                        errors.append(f"transport: {exc}")
                        continue
                    if answer.status_code == 201:
                        accepted[index].append(answer.json()["id"])
                    else:
                        errors.append(f"{answer.status_code}: {answer.text[:200]}")
                    break

    try:
        started = time.monotonic()
        threads = [threading.Thread(target=one_client, args=(i,)) for i in range(n_clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        submit_seconds = time.monotonic() - started
        assert not any(t.is_alive() for t in threads)
        assert errors == []
        ids = [job_id for batch in accepted for job_id in batch]
        assert len(ids) == len(set(ids)) == n_clients * per_client

        admin = httpx.Client(base_url=server.url, headers=auth(tokens["root"]), timeout=30)

        def completed() -> int:
            listed = admin.get("/v1/jobs", params={"status": "completed", "limit": 10_000}).json()
            return len(listed["jobs"])

        wait_until(lambda: completed() == 2000, timeout=120, interval=0.5, what="2000 completed jobs")
        everything = admin.get("/v1/jobs", params={"limit": 10_000}).json()["jobs"]
        assert len(everything) == 2000 and {j["id"] for j in everything} == set(ids)
        admin.close()
        print(f"load: 2000 submissions from 20 clients in {submit_seconds:.1f} s")
    finally:
        server.stop()
