"""Helpers shared by the server and remote tests (no tests here): users, circuits, an
in-process app, and a real ``qnb serve`` subprocess on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import cirq
import httpx
import pytest

from qnb.server._auth import Users, add_user
from conftest import wait_until

Q = cirq.LineQubit.range(2)
# Native to the emulator (no compile needed): a Bell pair.
BELL = cirq.Circuit(cirq.Y(Q[0]) ** 0.5, cirq.Y(Q[1]) ** 0.5, cirq.CZ(*Q), cirq.Y(Q[1]) ** -0.5,
                    cirq.measure(*Q, key="m"))
# As Cirq itself writes them (a client need not be qnb; qnb's own client writes the
# same documents without the spaces).
BELL_JSON = cirq.to_json(BELL, indent=None)
FLIP = cirq.Circuit(cirq.X(Q[0]), cirq.measure(Q[0], key="m"))
FLIP_JSON = cirq.to_json(FLIP, indent=None)


def make_users(path: Path) -> dict[str, str]:
    """alice and bob (users) and root (admin); returns name -> token."""
    return {
        "alice": add_user(path, "alice"),
        "bob": add_user(path, "bob"),
        "root": add_user(path, "root", role="admin"),
    }


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def submit_body(circuit_json: str = BELL_JSON, *, shots: int = 50, **extra) -> dict:
    return {"circuits": {"c": circuit_json}, "shots": shots, **extra}


@pytest.fixture
def lab(tmp_path):
    """An in-process server (its own JobManager and SQLite) with users alice, bob, root."""
    from qnb._manager import JobManager
    from qnb.server._app import create_app

    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    manager = JobManager(tmp_path / "server", requeue_interrupted=True)
    app = create_app(manager, device="emulator", users=Users.from_file(users_file))
    try:
        yield app, manager, tokens
    finally:
        app.state.close()
        manager.close()


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """``qnb serve`` as a subprocess; ``start``/``kill``/``stop`` bounded by deadlines."""

    def __init__(self, tmp: Path, *, users_file: Path | None, device: str = "emulator",
                 port: int | None = None, env: dict | None = None):
        self.tmp = tmp
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = tmp / "server" / "queue.sqlite3"
        self.users_file = users_file
        self.device = device
        self.env = {**os.environ, "QNB_HOME": str(tmp / "server-home"), **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.log = tmp / f"serve-{self.port}.log"

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "qnb._cli", "serve", "--port", str(self.port),
               "--db", str(self.db), "--device", self.device, "--workers", "2"]
        if self.users_file is not None:
            cmd += ["--users", str(self.users_file)]
        return cmd

    def start(self, *, timeout: float = 60.0) -> ServeProcess:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.command(), env=self.env, stdout=log, stderr=log,
                                         start_new_session=True)
        # One client for every try: a client of its own each time cost ~25 ms of CPU
        # (its TLS context), a second of CPU for each server start.
        client = httpx.Client(timeout=1)

        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"qnb serve exited {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                return client.get(f"{self.url}/v1/health").status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_until(answers, timeout=timeout, interval=0.05, what="qnb serve to answer")
        except AssertionError:
            self.stop()
            raise AssertionError(f"qnb serve did not start:\n{self.log.read_text()}") from None
        finally:
            client.close()
        return self

    def kill(self) -> None:
        """SIGKILL the whole process group (server and its simulation workers)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()


# -- the processes of a server ---------------------------------------------------------------


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return text.rpartition(")")[2].split()


def session_members(session: int) -> dict[int, str]:
    """Live processes of ``session`` (``qnb serve`` starts one: every process it starts,
    and theirs, is in it), pid -> command line; zombies not counted."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = proc_stat(int(entry))
        if fields is None or fields[0] in ("Z", "X") or int(fields[3]) != session:
            continue
        with contextlib.suppress(OSError):
            found[int(entry)] = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    return found


def process_name(pid: int) -> str | None:
    """What ``ps`` calls the process (its ``comm``), or None once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
