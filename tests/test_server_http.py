"""The server's HTTP contract and its audit findings (issue 10): error codes, one auth
path, the Host check of open mode, a bounded event feed, the request log, and a
``qnb serve`` that stops promptly and says what is wrong in one line."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from conftest import wait_until
from qnb._errors import error_for_code
from qnb.server._cpu import PROCESS_NAME
from test_server_support import (FLIP_JSON, ServeProcess, auth, lab, make_users,  # noqa: F401
                                 process_name, session_members, submit_body)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


def client(app, base_url: str = "http://lab") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


async def test_every_error_answer_has_the_code_of_its_class(lab):
    app, _, tokens = lab
    alice, bob = auth(tokens["alice"]), auth(tokens["bob"])
    async with client(app) as http:
        job = (await http.post("/v1/jobs", json=submit_body(), headers=alice)).json()
        answers = {
            "unauthenticated": await http.get("/v1/queue"),
            "forbidden": await http.get(f"/v1/jobs/{job['id']}/results", headers=bob),
            "unknown_job": await http.get("/v1/jobs/" + "0" * 32 + "/circuits", headers=alice),
            "invalid_option": await http.post("/v1/jobs", json=submit_body(compile="yes"), headers=alice),
            "invalid_circuit": await http.post("/v1/jobs", json=submit_body("nonsense"), headers=alice),
        }
        await http.post(f"/v1/jobs/{job['id']}/cancel", headers=alice)
        answers["queue_error"] = await http.delete(f"/v1/queue/jobs/{job['id']}", headers=alice)
    for code, answer in answers.items():
        body = answer.json()
        assert body["code"] == code, (code, answer.status_code, body)
        # The client's table turns it back into the same class and status.
        error = error_for_code(body["code"], str(body["detail"]), status=answer.status_code)
        assert error.code == code and answer.status_code == type(error).http_status


@pytest.mark.parametrize("path", ["/v1/jobs/{job}", "/v1/queue", "/v1/jobs"])
async def test_two_authorization_headers_are_refused_everywhere(lab, path):
    app, _, tokens = lab
    async with client(app) as http:
        job = (await http.post("/v1/jobs", json=submit_body(), headers=auth(tokens["alice"]))).json()
        twice = [("Authorization", f"Bearer {tokens['alice']}"), ("Authorization", f"Bearer {tokens['root']}")]
        method = "POST" if path == "/v1/jobs" else "GET"
        answer = await http.request(method, path.format(job=job["id"]), headers=twice,
                                    json=submit_body() if method == "POST" else None)
    assert answer.status_code == 401 and answer.json()["code"] == "unauthenticated"
    assert "exactly one" in answer.json()["detail"]


async def test_open_mode_answers_loopback_host_names_only(tmp_path):
    from qnb._manager import JobManager
    from qnb.server._app import create_app

    manager = JobManager(tmp_path / "server", requeue_interrupted=True)
    app = create_app(manager, device="emulator")
    try:
        for url in ("http://127.0.0.1:8765", "http://localhost:8765", "http://[::1]:8765"):
            async with client(app, url) as http:
                me = await http.get("/v1/whoami")
                assert me.status_code == 200 and me.json() == {"user": "local", "role": "admin"}, url
        async with client(app, "http://rebound.example.com:8765") as http:
            for answer in (await http.get("/v1/whoami"), await http.get("/v1/jobs/" + "0" * 32),
                           await http.post("/v1/jobs", json=submit_body())):
                assert answer.status_code == 421 and answer.json()["code"] == "host_not_allowed"
                assert "loopback" in answer.json()["detail"]
        assert manager.find(limit=10) == []
    finally:
        app.state.close()
        manager.close()


async def test_events_carry_changes_and_stay_small(tmp_path):
    """145 jobs of 300 items once made the feed hold 1.7 GB; now an event holds what changed."""
    from qnb._manager import JobManager
    from qnb.server._app import create_app
    from qnb.server._auth import Users
    from qnb.server._events import ITEMS_PER_ANSWER

    tokens = make_users(tmp_path / "users.toml")
    manager = JobManager(tmp_path / "server", requeue_interrupted=True)
    app = create_app(manager, device="cirq", users=Users.from_file(tmp_path / "users.toml"))
    feed = app.state.feed
    try:
        async with client(app) as http:
            batch = {"circuits": {str(i): FLIP_JSON for i in range(300)}, "shots": 1}
            job = (await http.post("/v1/jobs", json=batch, headers=auth(tokens["alice"]))).json()
            # The feed publishes on this test's loop: wait without blocking it.
            deadline = time.monotonic() + 120
            while not any(f["id"] == job["id"] and f["status"] == "completed" for _, f, _ in feed._events):
                assert time.monotonic() < deadline, "the 300-item job did not complete"
                await asyncio.sleep(0.05)
            page = await http.get("/v1/events", params={"after": 0, "timeout": 0},
                                  headers=auth(tokens["alice"]))
        # Item entries kept: each item's few changes, not all items per event.
        kept = sum(len(changed) for _, _, changed in feed._events)
        assert kept <= 300 * 4, kept
        events = [e for e in page.json()["events"] if e["id"] == job["id"]]
        assert len(page.content) < 300_000, len(page.content)
        # What the client reads: the newest event of the job has all its items.
        assert [it["status"] for it in events[-1]["items"]] == ["completed"] * 300
        assert all("items" not in e for e in events[:-1])
        assert sum(len(e["changed_items"]) for e in events) <= 300 * 4
        assert ITEMS_PER_ANSWER < 100_000
    finally:
        app.state.close()
        manager.close()


async def test_requests_and_transitions_are_logged_without_tokens(lab, caplog):
    app, _, tokens = lab
    caplog.set_level(logging.INFO, logger="qnb.server")
    async with client(app) as http:
        job = (await http.post("/v1/jobs", json=submit_body(shots=5), headers=auth(tokens["alice"]))).json()
        await http.get("/v1/queue", headers=auth(tokens["alice"]))
        wait_until(lambda: any("completed" in r.getMessage() and job["id"][:8] in r.getMessage()
                               for r in caplog.records), what="the completion in the log")
    messages = [r.getMessage() for r in caplog.records if r.name == "qnb.server"]
    assert any(m.startswith("POST /v1/jobs 201 ") and m.endswith(" ms") for m in messages), messages
    assert any(m.startswith("GET /v1/queue 200 ") for m in messages), messages
    assert any(f"job {job['id'][:8]} queued" in m or f"job {job['id'][:8]} running" in m for m in messages)
    assert not any(token in m for m in messages for token in tokens.values())


# -- qnb serve, the process ----------------------------------------------------------------


def established_connections(port: int) -> int:
    """Open TCP connections to ``port`` on this machine (from /proc, no extra tools)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01":
                    count += 1
    return count


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_within_3_s_during_a_long_poll_without_a_traceback(tmp_path, sig):
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    server = ServeProcess(tmp_path, users_file=users_file, env={"QNB_WORKERS": "2"}).start()
    answers: list[httpx.Response | Exception] = []

    def long_poll() -> None:
        try:
            answers.append(httpx.get(f"{server.url}/v1/events", params={"after": last, "timeout": 60},
                                     headers=auth(tokens["alice"]), timeout=90))
        except httpx.HTTPError as exc:
            answers.append(exc)

    try:
        with httpx.Client(base_url=server.url) as http:
            last = http.get("/v1/health").json()["last"]
        poller = threading.Thread(target=long_poll)
        poller.start()
        wait_until(lambda: established_connections(server.port) >= 1, what="the long-poll connected")
        # The signal goes to the whole group, as Ctrl-C in a terminal and systemd's stop
        # send it: to the simulation workers and their forkserver too, once all are up
        # (its two simulation workers and the circuit worker it starts with).
        session = server.proc.pid  # start_new_session: the server leads its own group

        def all_started() -> bool:
            names = [process_name(pid) for pid in session_members(session)]
            return names.count("qnb-simulation") == 2 and names.count(PROCESS_NAME) == 1

        wait_until(all_started, timeout=60, interval=0.05, what="the server's workers")
        before = set(session_members(session))
        start = time.monotonic()
        os.killpg(session, sig)
        started_while_stopping: set[int] = set()

        def exited() -> bool:  # noting, until then, any process that starts
            started_while_stopping.update(set(session_members(session)) - before)
            return server.proc.poll() is not None

        wait_until(exited, timeout=30, interval=0.005, what="qnb serve to exit")
        took = time.monotonic() - start
        poller.join(timeout=30)
    finally:
        server.stop()
    log = server.log.read_text()
    assert took < 3.0, (took, log)
    # SIGTERM ended the workers and the forkserver: none is started again only to be
    # stopped (the forkserver's start is seconds of imports).
    assert started_while_stopping == set(), log
    assert server.proc.returncode == 0, log
    assert "Traceback" not in log and "CancelledError" not in log, log
    assert "Cancel" not in log, log  # uvicorn's "Cancel N running task(s)": none were left
    assert "leaked semaphore" not in log, log  # the pool uses pipes only
    assert answers and last >= 0


@pytest.mark.slow
def test_serve_with_a_bad_users_file_says_so_in_one_line(tmp_path):
    broken = tmp_path / "broken.toml"
    broken.write_text("[users.alice\n")
    for users in (tmp_path / "missing.toml", broken):
        run = subprocess.run(
            [sys.executable, "-m", "qnb._cli", "serve", "--users", str(users), "--port", "1"],
            capture_output=True, text=True, timeout=120,
        )
        assert run.returncode == 2, run.stderr
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("qnb serve: users file"), run.stderr
        assert "Traceback" not in run.stderr
