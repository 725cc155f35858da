"""What a server tells and keeps: the event feed bounded by bytes (a client that fell
behind re-reads its jobs and converges), no forged log lines from a request's path, no
store path in answers, and one Host header per request."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
import uuid

import cirq
import httpx
import pytest

import qnb
from qnb import JobStatus
from qnb._records import ItemRecord, JobRecord
from qnb.server._auth import User
from qnb.server._events import EventFeed
from conftest import wait_until
from test_server_support import FLIP, Q, ServeProcess, make_users

# One worker runs this file (loadgroup): its module-scoped fixtures start once.
pytestmark = pytest.mark.xdist_group("server-hygiene")

ITEMS = 300


@pytest.fixture
def anyio_backend():
    return "asyncio"


# -- the event feed -------------------------------------------------------------------------


class FeedOnly:
    """Just what EventFeed asks of a JobManager, so the feed can be fed records directly."""

    def __init__(self, loop):
        self.loop = loop

    def add_listener(self, listener):
        return lambda: None

    def flush(self) -> None:
        pass

    def snapshot(self, records, view):
        return [view(rec) for rec in records]


def retained(obj, seen: set) -> int:
    """Python's own size of ``obj`` and all it holds (each object once): an independent
    measure of what the feed keeps, not its own count."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(retained(k, seen) + retained(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set)):
        size += sum(retained(v, seen) for v in obj)
    elif hasattr(type(obj), "__slots__"):
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    size += retained(getattr(obj, name), seen)
    return size


async def publish(feed: EventFeed, rec: JobRecord) -> None:
    wanted = feed.seq + 1
    feed.note(rec)
    deadline = time.monotonic() + 10
    while feed.seq < wanted:
        assert time.monotonic() < deadline, "the feed did not publish"
        await asyncio.sleep(0)  # the publish is scheduled on this loop


async def run_job(feed: EventFeed, number: int) -> JobRecord:
    """A 300-item job through queued, running, half done and done: four events, each
    changing up to all 300 items."""
    rec = JobRecord(id=uuid.uuid4().hex, name=f"job {number}", target="emulator", user="alice",
                    shots=100, items=[ItemRecord(label=f"circuit-{i}") for i in range(ITEMS)],
                    time_added=time.time())
    for step in ("queued", "running", "half", "completed"):
        for i, item in enumerate(rec.items):
            item.status = JobStatus.COMPLETED if step == "half" and i % 2 else JobStatus(
                "running" if step == "half" else step)
        rec.status = JobStatus("running" if step == "half" else step)
        await publish(feed, rec)
    return rec


@pytest.mark.anyio
async def test_the_feed_keeps_under_its_byte_budget_and_events_stay_small():
    budget = 2_000_000
    loop = asyncio.get_running_loop()
    feed = EventFeed(FeedOnly(loop), max_bytes=budget)
    feed.bind(loop)
    for number in range(300):  # 1,200 events; the old feed kept ~60 KB each (72 MB)
        last = await run_job(feed, number)
    held = retained((feed._events, feed._costs, feed._items, feed._newest), set())
    assert feed.retained_bytes <= budget and held <= budget, (feed.retained_bytes, held)
    assert held > budget // 4  # it was full: the budget, not the workload, bounded it
    assert len(feed._events) < feed.seq
    # An event of a 300-item job is a few hundred bytes besides the job's item list.
    assert max(feed._costs) < 2_000, max(feed._costs)

    alice = User("alice")
    events, newest, lost = feed.since(feed.seq - 4, alice)
    assert not lost and newest == feed.seq and [e["id"] for e in events] == [last.id] * 4
    assert [len(e["changed_items"]) for e in events] == [ITEMS, ITEMS, ITEMS // 2, ITEMS // 2]
    assert events[2]["changed_items"]["1"] == {"label": "circuit-1", "status": "completed", "error": None}
    assert events[3]["changed_items"]["0"]["status"] == "completed" and "1" not in events[3]["changed_items"]
    assert [it["status"] for it in events[-1]["items"]] == ["completed"] * ITEMS
    assert events[-1]["items"][7]["label"] == "circuit-7"
    # A client that asks after a dropped event is told to re-read its jobs.
    assert feed.since(0, alice)[2] is True
    feed.close()


FEED_BYTES = 20_000


@pytest.fixture
def small_feed_lab(tmp_path, manager):  # manager: unregisters the target made here
    """An in-process server whose feed keeps 20 KB: a few 50-item jobs overflow it. Its
    device is the ideal simulator, one job at a time (the emulator's noisy simulation and
    device time would add seconds of CPU and nothing the feed needs)."""
    from qnb._manager import JobManager
    from qnb.server._app import create_app
    from qnb.server._auth import Users

    tokens = make_users(tmp_path / "users.toml")
    server = JobManager(tmp_path / "server", requeue_interrupted=True)
    qnb.register_target("sim-one-at-a-time", "sim", max_running_jobs=1)
    app = create_app(server, device="sim-one-at-a-time", users=Users.from_file(tmp_path / "users.toml"),
                     feed_bytes=FEED_BYTES)
    try:
        yield app, server, tokens
    finally:
        app.state.close()
        server.close()


# A mid-circuit measurement makes the simulator run shot by shot: a million shots hold
# the device for minutes.
HOLDS_THE_DEVICE = cirq.Circuit(cirq.X(Q[0]), cirq.measure(Q[0], key="mid"), cirq.measure(*Q, key="m"))


class CutTransport(httpx.AsyncBaseTransport):
    """The server's transport, which the test can cut (connection refused)."""

    def __init__(self, app):
        self.inner = httpx.ASGITransport(app=app)
        self.down = False
        self.requests: list[str] = []

    async def handle_async_request(self, request):
        if self.down:
            raise httpx.ConnectError("connection refused (test)")
        self.requests.append(f"{request.method} {request.url.path}")
        return await self.inner.handle_async_request(request)


@pytest.mark.slow  # seconds of events
def test_a_client_that_fell_behind_the_feed_converges(manager, small_feed_lab):
    app, server, tokens = small_feed_lab
    feed = app.state.feed
    transport = CutTransport(app)
    qnb.connect("lab", "http://lab", token=tokens["alice"], transport=transport, retry_for=10)
    # The batches wait behind a job that holds the device until the client is away: run
    # at once, they could be done before the cut (nothing missed, on an idle machine).
    blocker = qnb.submit(HOLDS_THE_DEVICE, target="lab", shots=1_000_000, name="blocker")
    jobs = [qnb.submit({f"c{i}": FLIP for i in range(50)}, target="lab", shots=5, name=f"batch {n}")
            for n in range(6)]
    transport.down = True
    cut_at = feed.seq
    assert {server.load(job.id).status for job in jobs} == {JobStatus.QUEUED}
    server.cancel(blocker.id)
    wait_until(lambda: all(server.load(job.id).status is JobStatus.COMPLETED for job in jobs),
               timeout=120, what="the server to finish the jobs")
    # What happened while the client was away is no longer in the feed.
    assert feed._events and feed._events[0][0] > cut_at + 1
    assert feed.retained_bytes <= FEED_BYTES
    transport.down = False
    for job in jobs:
        job.result(timeout=120)
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 6
    # The feed said "reset", and the client re-read its jobs.
    assert any(r.startswith("GET /v1/jobs/") and r.count("/") == 3 for r in transport.requests)


# -- a real qnb serve: log, answers, Host --------------------------------------------------


class LoggingServe(ServeProcess):
    def command(self) -> list[str]:
        return [*super().command(), "--log-level", "info"]


@pytest.fixture(scope="module")
def open_server(tmp_path_factory):
    """``qnb serve`` in open mode (no users file), logging requests."""
    server = LoggingServe(tmp_path_factory.mktemp("hygiene"), users_file=None).start()
    try:
        yield server
    finally:
        server.stop()


CLOSING = "Host: 127.0.0.1\r\nConnection: close\r\n\r\n"


def raw_request(port: int, head: bytes, *, timeout: float = 10) -> bytes:
    """One request written as given; the whole answer (the request asks to close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(head)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.mark.slow
def test_a_newline_in_a_path_forges_no_log_line(open_server):
    forged = "qnb.server INFO: job 12345678 cancelled (forged, user root, 0/0 items)"
    path = "/v1/jobs/x%0A2026-01-01%2000:00:00,000%20" + forged.replace(" ", "%20")
    for target in (path, "/v1/jobs/y%0D%1B%5B2J"):  # a newline; a return and a terminal escape
        raw_request(open_server.port, f"GET {target} HTTP/1.1\r\n{CLOSING}".encode())
    wait_until(lambda: "\\x0d\\x1b[2J" in open_server.log.read_text(), timeout=10,
               what="the request's log line")
    lines = open_server.log.read_text().splitlines()
    assert not any(line.startswith("2026-01-01") or line.startswith(forged) for line in lines), lines
    logged = [line for line in lines if "GET /v1/jobs/x" in line]
    assert len(logged) == 1 and "\\x0a2026-01-01 00:00:00,000 " + forged in logged[0], logged
    assert "\x1b" not in open_server.log.read_text()


@pytest.mark.slow
def test_answers_do_not_tell_where_the_store_is(open_server):
    answer = httpx.get(f"{open_server.url}/v1/jobs/{'0' * 32}", timeout=10)
    assert answer.status_code == 404 and answer.json()["code"] == "unknown_job"
    detail = answer.json()["detail"]
    assert "0" * 32 in detail and "the server's store" in detail, detail
    for private in (open_server.db, open_server.db.parent, open_server.tmp):
        assert str(private) not in answer.text
    for path in (f"/v1/jobs/{'1' * 32}/results", f"/v1/jobs/{'2' * 32}/circuits"):
        other = httpx.get(f"{open_server.url}{path}", timeout=10)
        assert other.status_code == 404 and str(open_server.tmp) not in other.text


@pytest.mark.slow
@pytest.mark.parametrize("hosts", [(b"127.0.0.1", b"rebound.example.com"),
                                   (b"rebound.example.com", b"127.0.0.1"),
                                   (b"127.0.0.1", b"127.0.0.1")])
def test_two_host_headers_are_refused(open_server, hosts):
    head = b"GET /v1/whoami HTTP/1.1\r\n" + b"".join(b"Host: " + h + b"\r\n" for h in hosts)
    answer = raw_request(open_server.port, head + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"2 Host headers" in answer
    one = raw_request(open_server.port, f"GET /v1/whoami HTTP/1.1\r\n{CLOSING}".encode())
    assert one.startswith(b"HTTP/1.1 200 ")


@pytest.mark.slow
def test_a_submit_without_a_login_is_refused_before_its_body_is_read(open_server):
    with socket.create_connection(("127.0.0.1", open_server.port), timeout=10) as sock:
        # A promised body that never comes: refused at once, not waited for.
        sock.sendall(b"POST /v1/jobs HTTP/1.1\r\nHost: rebound.example.com\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
        start = time.monotonic()
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 421 "), answer[:200]
    assert time.monotonic() - start < 5
