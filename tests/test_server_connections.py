"""Connections against a real ``qnb serve`` with a 1,024-descriptor limit: half-sent
requests (slowloris) neither starve authenticated reads nor stay open, stalled bodies
and oversized heads are cut, and the server never runs out of descriptors."""

from __future__ import annotations

import os
import resource
import selectors
import socket
import sys
import threading
import time

import httpx
import pytest

from conftest import wait_until
from qnb.server._serve import HEAD_TIMEOUT_SECONDS, MAX_HEAD_BYTES
from test_server_support import ServeProcess, auth, make_users

# One worker runs this file (loadgroup): its module-scoped fixtures start once.
pytestmark = [pytest.mark.load, pytest.mark.xdist_group("server-connections")]

DESCRIPTORS = 1024
HALF_SENT = 1100
HALF_HEAD = b"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
READ_EVERY_SECONDS = 0.02
# Closing happens on the server's loop after the deadline; a busy 2-core machine adds to it.
SLACK_SECONDS = 10.0


class LimitedServe(ServeProcess):
    """``qnb serve`` started under a 1,024-descriptor limit (soft and hard)."""

    def command(self) -> list[str]:
        limit = ("import os, resource, sys; "
                 f"resource.setrlimit(resource.RLIMIT_NOFILE, ({DESCRIPTORS}, {DESCRIPTORS})); "
                 "os.execv(sys.executable, [sys.executable] + sys.argv[1:])")
        return [sys.executable, "-c", limit, *super().command()[1:], "--log-level", "info"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < HALF_SENT + 200:
        pytest.fail(f"this process may open only {hard} files; the attack needs {HALF_SENT + 200}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tmp_path_factory.mktemp("connections")
    tokens = make_users(tmp / "users.toml")
    server = LimitedServe(tmp, users_file=tmp / "users.toml").start()
    try:
        yield server, tokens
    finally:
        server.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Reader:
    """Authenticated reads in a thread, one new connection each, until stopped; notes
    each answer and the server's open descriptors. Paced (:data:`READ_EVERY_SECONDS`):
    back to back they cost both sides seconds of CPU and showed nothing more."""

    def __init__(self, server: ServeProcess, token: str):
        self.server, self.token = server, token
        self.outcomes: list[tuple[object, float]] = []
        self.peak_descriptors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Reader:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        # One client (making one costs ~30 ms of CPU: its TLS context), a new connection
        # for each read all the same: each asks the server to close it.
        headers = {**auth(self.token), "Connection": "close"}
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=10) as client:
            while not self._stop.is_set() and len(self.outcomes) < 2000:
                start = time.monotonic()
                try:
                    outcome: object = client.get("/v1/jobs").status_code
                except httpx.HTTPError as exc:
                    outcome = type(exc).__name__
                self.outcomes.append((outcome, time.monotonic() - start))
                self.peak_descriptors = max(self.peak_descriptors, open_descriptors(self.server.proc.pid))
                self._stop.wait(READ_EVERY_SECONDS)


def half_sent(port: int, count: int) -> list[socket.socket]:
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(HALF_HEAD)
            socks.append(sock)
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


def wait_closed_by_server(socks: list[socket.socket], *, timeout: float) -> float:
    """Seconds until the server has closed every socket (read EOF or reset); fails after
    ``timeout``."""
    start = time.monotonic()
    selector = selectors.DefaultSelector()
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    open_ = set(socks)
    try:
        while open_:
            left = start + timeout - time.monotonic()
            assert left > 0, f"{len(open_)} of {len(socks)} connections still open after {timeout} s"
            for key, _ in selector.select(min(left, 1.0)):
                try:
                    data = key.fileobj.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    open_.discard(key.fileobj)
                    selector.unregister(key.fileobj)
        return time.monotonic() - start
    finally:
        selector.close()


def test_half_sent_connections_neither_starve_reads_nor_stay_open(served):
    server, tokens = served
    with Reader(server, tokens["alice"]) as reader:
        socks = half_sent(server.port, HALF_SENT)
        try:
            # Reads while all of them are held: the newest are far from their deadline.
            opened_at, before = time.monotonic(), len(reader.outcomes)
            wait_until(lambda: len(reader.outcomes) >= before + 10, timeout=30, interval=0.02,
                       what="reads answered while the connections are held")
            assert time.monotonic() < opened_at + HEAD_TIMEOUT_SECONDS
            # Every one is closed by the server: shed for room, or at its deadline.
            wait_closed_by_server(socks, timeout=HEAD_TIMEOUT_SECONDS + SLACK_SECONDS)
        finally:
            for sock in socks:
                sock.close()
    codes = [outcome for outcome, _ in reader.outcomes]
    assert codes and all(code == 200 for code in codes), {c: codes.count(c) for c in set(codes)}
    # A full accept queue delays a connection by SYN retries (1 s, then 2 s more).
    assert max(seconds for _, seconds in reader.outcomes) < 8
    assert reader.peak_descriptors < DESCRIPTORS - 64, reader.peak_descriptors
    log = server.log.read_text()
    assert "Too many open files" not in log
    assert "at most" in log and "descriptor limit 1024" in log


def test_a_head_trickled_byte_by_byte_is_cut_at_its_deadline(served):
    server, _ = served
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        start = time.monotonic()
        closed_at = None
        sock.settimeout(0.2)  # paces the trickle, and notices the close
        for byte in (HALF_HEAD * 100)[:500]:  # far longer than the deadline allows
            if time.monotonic() > start + HEAD_TIMEOUT_SECONDS + SLACK_SECONDS:
                break
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(1) == b"":
                    closed_at = time.monotonic()
                    break
            except socket.timeout:
                continue
            except OSError:
                closed_at = time.monotonic()
                break
        assert closed_at is not None, "the trickled head was never cut"
        assert HEAD_TIMEOUT_SECONDS - 1 < closed_at - start < HEAD_TIMEOUT_SECONDS + SLACK_SECONDS
    finally:
        sock.close()


def test_a_stalled_body_without_a_login_is_cut(served):
    server, _ = served
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(b"POST /v1/compile HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n{\"circuits\": ")
        took = wait_closed_by_server([sock], timeout=HEAD_TIMEOUT_SECONDS + SLACK_SECONDS)
        assert took > HEAD_TIMEOUT_SECONDS - 1
    finally:
        sock.close()


def test_an_oversized_head_is_cut_at_once(served):
    server, tokens = served
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    try:
        sock.sendall(b"GET /v1/whoami HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        header = b"X-Pad: " + b"a" * 1000 + b"\r\n"
        try:
            for _ in range(MAX_HEAD_BYTES // len(header) + 10):
                sock.sendall(header)
        except OSError:
            pass  # cut while sending: what is wanted
        took = wait_closed_by_server([sock], timeout=SLACK_SECONDS)
        assert took < HEAD_TIMEOUT_SECONDS - 1
    finally:
        sock.close()
    # Ordinary clients on kept-alive connections are unaffected.
    with httpx.Client(base_url=server.url, headers=auth(tokens["bob"]), timeout=10) as http:
        assert [http.get("/v1/whoami").status_code for _ in range(5)] == [200] * 5
