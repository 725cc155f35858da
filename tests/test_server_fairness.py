"""One user's heavy submit never holds another user's cheap one.

Against a real ``qnb serve``: two users' 150-circuit OpenQASM compiles in flight (and
a second one of the first user's waiting for its turn), a third user's small submits
(a 2-qubit OpenQASM circuit, compiled; a Cirq JSON circuit) answer before the heavy
ones. How quickly (the goal: in a small share of their time) is measured by
``benchmarks/bench_server_fairness.py``, which prints the figures and ratios. And the pool's rules on their own: one request
per user in a worker at a time, a turn for every user, a bounded line per user.
"""

from __future__ import annotations

import os
import threading
import time

import httpx
import pytest

from conftest import BELL_QASM, SHARED_SERVE_GROUP, wait_until
from qnb._errors import LimitExceededError
from qnb.server._cpu import WAITING_PER_USER, CpuPool
from test_server_orphans import circuit_workers, cpu_ticks
from test_server_support import BELL_JSON, auth

# The pool's tests run on one worker (loadgroup): their module-scoped pool starts once.
POOL_GROUP = pytest.mark.xdist_group("server-fairness")


class Timed:
    """A POST in its own thread; when it answered, and with what."""

    def __init__(self, url: str, body: dict, token: str):
        self.start = self.end = 0.0
        self.response: httpx.Response | None = None
        self.thread = threading.Thread(target=self._post, args=(url, body, token), daemon=True)

    def _post(self, url: str, body: dict, token: str) -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            self.start = time.monotonic()
            self.response = client.post("/v1/jobs", json=body, headers=auth(token))
            self.end = time.monotonic()

    def begin(self) -> Timed:
        self.thread.start()
        return self

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def done(self) -> bool:
        return not self.thread.is_alive()


def busy_workers(since: dict[int, int]) -> int:
    """Circuit workers that have used 0.2 s of CPU or more since ``since`` (pid -> ticks)."""
    return sum(cpu_ticks(pid) > ticks + 20 for pid, ticks in since.items())


@pytest.mark.load
@SHARED_SERVE_GROUP
def test_a_small_submit_answers_while_two_users_compile_big_batches(shared_serve):
    server, tokens = shared_serve
    session = server.proc.pid
    # 150 circuits: seconds of Cirq work each (the benchmark sends 300).
    heavy = {"circuits": {str(i): BELL_QASM for i in range(150)}, "shots": 10, "compile": True}
    sent: list[Timed] = []
    try:
        workers = wait_until(lambda: circuit_workers(session), timeout=120, interval=0.1,
                             what="the server's circuit workers")
        ticks = {pid: cpu_ticks(pid) for pid in workers}
        alice = Timed(server.url, heavy, tokens["alice"]).begin()
        bob = Timed(server.url, heavy, tokens["bob"]).begin()
        sent += [alice, bob]
        # Both compiles running (or, on a one-core pool, the only worker busy)...
        wait_until(lambda: busy_workers(ticks) >= min(2, len(workers)), timeout=120, interval=0.1,
                   what="the heavy submits to be compiling")
        # ... and alice's second waiting for her turn, not for a thread.
        again = Timed(server.url, {**heavy, "circuits": dict(list(heavy["circuits"].items())[:30])},
                      tokens["alice"]).begin()
        sent.append(again)
        small = [Timed(server.url, {"circuits": {"c": BELL_QASM}, "shots": 10, "compile": True},
                       tokens["carol"]),
                 Timed(server.url, {"circuits": {"c": BELL_JSON}, "shots": 10}, tokens["carol"])]
        for request in small:
            sent.append(request.begin())
            request.thread.join(timeout=120)
            assert request.response is not None and request.response.status_code == 201, (
                request.response.text if request.response else "no answer")
            assert not (alice.done() and bob.done()), "a small submit waited for the heavy ones"
        for request in (alice, bob, again):
            request.thread.join(timeout=600)
            assert request.response is not None and request.response.status_code == 201, (
                request.response.text[:300] if request.response else "no answer")
    finally:
        # The server is shared: its device is not left busy with these jobs.
        for request in sent:
            request.thread.join(timeout=600)
            if request.response is not None and request.response.status_code == 201:
                httpx.post(f"{server.url}/v1/jobs/{request.response.json()['id']}/cancel",
                           headers=auth(tokens["root"]), timeout=30)
    figures = (f"small {[round(r.seconds, 3) for r in small]} s, heavy alice {alice.seconds:.1f} s, "
               f"bob {bob.seconds:.1f} s, alice's second {again.seconds:.1f} s")
    print(figures)
    for request in small:
        assert request.end < min(alice.end, bob.end), figures
    # Her second one ran after her first, not beside it.
    assert again.end > alice.end, figures


# -- the pool's rules, in one process ---------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    """Two workers for both tests (each test ends with every request done); one starts
    now, as a server starts it, the other with the first request."""
    pool = CpuPool(processes=2)
    try:
        pool.warm(1)
        assert pool.started() == 1
        yield pool
    finally:
        pool.close()


def both_workers(pool: CpuPool) -> None:
    """Both workers ready: the warm one, and the one the first request starts."""
    assert pool.run("carol", 60, os.getpid) in pool.pids()
    wait_until(lambda: len(pool.pids()) == 2, timeout=120, what="the second worker, started by a request")


def run_in_thread(pool: CpuPool, user: str, seconds: float, done: list[str], name: str):
    def work() -> None:
        pool.run(user, 60, time.sleep, seconds)
        done.append(name)

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


@pytest.mark.slow
@POOL_GROUP
def test_one_request_per_user_in_a_worker_and_others_take_their_turn(pool):
    done: list[str] = []
    both_workers(pool)
    first = run_in_thread(pool, "alice", 1.5, done, "alice 1")
    wait_until(lambda: pool.waiting() == {}, what="alice's first in a worker")
    second = run_in_thread(pool, "alice", 0.01, done, "alice 2")
    wait_until(lambda: pool.waiting() == {"alice": 1}, what="alice's second to wait")
    # A worker is free, but not for alice: bob takes it and is done first.
    other = run_in_thread(pool, "bob", 0.01, done, "bob")
    for thread in (first, second, other):
        thread.join(timeout=60)
    assert done == ["bob", "alice 1", "alice 2"]


@pytest.mark.slow
@POOL_GROUP
def test_a_user_may_have_only_a_few_requests_waiting(pool):
    done: list[str] = []
    both_workers(pool)
    threads = [run_in_thread(pool, "alice", 1.0, done, str(i)) for i in range(WAITING_PER_USER)]
    # All in: one in a worker, the rest in her line.
    wait_until(lambda: sum(pool.waiting().values()) >= WAITING_PER_USER - 1,
               timeout=120, what="alice's requests to be in")
    with pytest.raises(LimitExceededError, match="limit per user"):
        pool.run("alice", 60, time.sleep, 0)
    pool.run("bob", 60, time.sleep, 0)  # others are not held by her line
    for thread in threads:
        thread.join(timeout=60)
    assert len(done) == WAITING_PER_USER
