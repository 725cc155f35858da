"""The server's processes die with it: a SIGKILLed ``qnb serve`` leaves no circuit
worker, no simulation worker and no multiprocessing helper behind, even while a worker
is busy with another user's compile (a busy worker reads no pipe)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import httpx
import pytest

from conftest import BELL_QASM, wait_until
from qnb.server._cpu import PROCESS_NAME
from test_server_support import ServeProcess, auth, make_users, proc_stat, process_name, session_members

pytestmark = pytest.mark.slow

GONE_WITHIN_SECONDS = 20.0


def cpu_ticks(pid: int) -> int:
    fields = proc_stat(pid)
    return 0 if fields is None else int(fields[11]) + int(fields[12])


def circuit_workers(session: int) -> list[int]:
    """The server's circuit worker processes (by the name ``ps`` shows)."""
    return [pid for pid in session_members(session) if process_name(pid) == PROCESS_NAME]


def test_sigkill_of_the_server_leaves_no_process_behind(tmp_path):
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    server = ServeProcess(tmp_path, users_file=users_file).start()
    session = server.proc.pid  # start_new_session: the server leads its own session
    answer: dict[str, object] = {}
    try:
        workers = wait_until(lambda: circuit_workers(session), timeout=120, interval=0.1,
                             what="the server's circuit worker")
        before = {pid: cpu_ticks(pid) for pid in workers}
        batch = {"circuits": {str(i): BELL_QASM for i in range(300)}, "shots": 10, "compile": True}

        def heavy() -> None:
            with contextlib.suppress(httpx.TransportError):
                answer["r"] = httpx.post(f"{server.url}/v1/jobs", json=batch,
                                         headers=auth(tokens["alice"]), timeout=120)

        thread = threading.Thread(target=heavy, daemon=True)
        thread.start()
        # A worker is busy with the compile once its CPU time grows.
        wait_until(lambda: any(cpu_ticks(pid) > before[pid] + 20 for pid in workers),
                   timeout=60, interval=0.1, what="a circuit worker to be busy compiling")
        members = session_members(session)
        # The server, its busy circuit worker, and the simulation pool's processes.
        assert len(members) >= 4, members
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        deadline = time.monotonic() + GONE_WITHIN_SECONDS
        left = session_members(session)
        while left and time.monotonic() < deadline:
            time.sleep(0.1)
            left = session_members(session)
        assert left == {}, f"alive {GONE_WITHIN_SECONDS} s after the server's SIGKILL: {left}"
        thread.join(timeout=30)
        assert "r" not in answer, "the heavy submit was answered by a killed server"
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(session, signal.SIGKILL)  # whatever is left, so it does not outlive the test
