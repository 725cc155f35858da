"""The remote target against an in-process server (httpx ASGI transport): the same
qnb API as for local targets, the server's queue, outages and kernel restarts."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import qnb
from qnb import JobStatus
from qnb._manager import JobManager, set_manager
from qnb import RemoteAuthError
from qnb._targets._queue_server import RemoteTarget
from qnb.notebook._stream import connection_state
from conftest import wait_until
from test_server_support import BELL, FLIP, lab  # noqa: F401


class SwitchableTransport(httpx.AsyncBaseTransport):
    """The server's transport, which a test can take down (connection refused) and
    bring back, or make answer 503 a number of times."""

    def __init__(self, app):
        self.inner = httpx.ASGITransport(app=app)
        self.down = False
        self.fail_next = 0
        self.requests: list[str] = []
        self.senders: list[str] = []  # for each request, the coroutine whose task sent it

    async def handle_async_request(self, request):
        self.requests.append(f"{request.method} {request.url.path}")
        task = asyncio.current_task()
        self.senders.append(task.get_coro().__qualname__ if task else "")
        if self.down:
            raise httpx.ConnectError("connection refused (test)")
        if self.fail_next > 0:
            self.fail_next -= 1
            return httpx.Response(503, json={"detail": "busy (test)"})
        return await self.inner.handle_async_request(request)


def mostly_ones(counts: dict, shots: int) -> bool:
    """The emulator is noisy: an X then measure reads 1 nearly always."""
    return sum(counts.values()) == shots and counts.get("1", 0) >= 0.8 * shots


def connect(app, token, name="lab"):
    transport = SwitchableTransport(app)
    target = qnb.connect(name, "http://lab", token=token, transport=transport, retry_for=10)
    return target, transport


def block_device(server_manager):
    """A long job of root's on the server's device, so that later jobs wait."""
    from qnb._targets._simulators import registry

    return server_manager.submit(registry.get("emulator"), {"b": BELL}, shots=100_000,
                                 name="blocker", user="root")


def test_submit_and_results_as_for_a_local_target(manager, lab):
    app, server, tokens = lab
    target, transport = connect(app, tokens["alice"])
    assert isinstance(target, RemoteTarget) and target.remote_user == "alice"
    assert "lab" in qnb.targets() and qnb.targets()["lab"].max_qubits == 6
    job = qnb.submit({"bell": BELL, "flip": FLIP}, target="lab", shots=100, name="pair")
    result = job.result(timeout=60)
    assert mostly_ones(result.counts("flip"), 100)
    assert set(result.counts("bell")) <= {"00", "11", "01", "10"}
    assert job.status is JobStatus.COMPLETED and job.user == "alice" and job.target == "lab"
    # The same id on both sides; the server ran it for alice.
    assert server.load(job.id).user == "alice"
    assert [j.id for j in qnb.jobs(target="lab")] == [job.id]
    # Status followed the event feed: no per-job polling of GET /v1/jobs/{id}.
    assert not any(r == f"GET /v1/jobs/{job.id}" for r in transport.requests)


def test_invalid_circuits_fail_in_the_kernel_before_sending(manager, lab):
    import cirq

    app, server, tokens = lab
    connect(app, tokens["alice"])
    q = cirq.LineQubit.range(3)
    far = cirq.Circuit(cirq.CZ(q[0], q[2]), cirq.measure(*q))
    with pytest.raises(qnb.DeviceValidationError, match="not connected"):
        qnb.submit(far, target="lab")
    with pytest.raises(qnb.InvalidOptionError, match="maximum"):
        qnb.submit(BELL, target="lab", shots=10**7)
    assert server.find(limit=10) == []
    ok = qnb.submit(far, target="lab", shots=10, compile=True)
    assert ok.result(timeout=60).counts()


def test_the_queue_shows_everybody_and_guards_other_users_jobs(manager, lab):
    app, server, tokens = lab
    blocker = block_device(server)
    connect(app, tokens["alice"])
    connect(app, tokens["bob"], name="lab-bob")
    mine = qnb.submit(BELL, target="lab", name="alice-1")
    bobs = qnb.submit(BELL, target="lab-bob", name="bob-1")
    wait_until(lambda: qnb.queue("lab").count == 2, timeout=20, what="two queued jobs")
    queue = qnb.queue("lab")
    entries = queue.pending_jobs
    assert [(e.position, e.user, e.name) for e in entries] == [(1, "alice", "alice-1"), (2, "bob", "bob-1")]
    assert entries[0].id == mine.id and entries[0].job == mine
    assert mine.position_in_queue() == 1 and queue.get_at(2).id == bobs.id
    assert [e.id for e in queue.get_by_user_id("bob")] == [bobs.id]
    with pytest.raises(RemoteAuthError, match="403"):
        queue.remove_by_id(bobs.id)
    with pytest.raises(qnb.QueueConflictError, match="409"):
        queue.remove_by_position(2, expected_id=mine.id)  # position 2 is bob's now
    with pytest.raises(RemoteAuthError, match="403"):
        queue.remove_by_position(2, expected_id=bobs.id)
    with pytest.raises(RemoteAuthError, match="only an admin"):
        queue.move_to_front(bobs.id)
    assert queue.count == 2  # nothing was removed by the refused calls
    queue.remove_by_position(1, expected_id=mine.id)
    wait_until(lambda: mine.status is JobStatus.CANCELLED, timeout=20, what="alice's job cancelled")
    assert "bob-1" in repr(queue)
    qnb.queue("lab-bob").remove_by_user_id("bob")
    wait_until(lambda: bobs.done(), timeout=20, what="bob's job removed")
    server.cancel(blocker.id)


def test_cancel_of_a_queued_remote_job(manager, lab):
    app, server, tokens = lab
    blocker = block_device(server)
    connect(app, tokens["alice"])
    job = qnb.submit(BELL, target="lab")
    wait_until(lambda: server.record(job.id) is not None, timeout=20, what="the job on the server")
    assert job.cancel() in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    wait_until(lambda: job.status is JobStatus.CANCELLED, timeout=20, what="the cancel confirmed")
    assert server.load(job.id).status is JobStatus.CANCELLED
    assert job.cancel() is JobStatus.CANCELLED  # idempotent
    with pytest.raises(qnb.JobCancelledError):
        job.result(timeout=5)
    server.cancel(blocker.id)


def test_retries_on_503_and_shows_reconnecting_while_the_server_is_away(manager, lab):
    app, server, tokens = lab
    target, transport = connect(app, tokens["alice"])
    changes = []
    target.on_connection_change(changes.append)
    redrawn = []
    manager.add_listener(lambda rec: redrawn.append((rec.id, connection_state("lab"))))
    transport.fail_next = 2
    first = qnb.submit(BELL, target="lab", shots=20)
    first.result(timeout=60)
    assert len(server.find(limit=10)) == 1  # retried, not submitted twice

    blocker = block_device(server)
    job = qnb.submit(FLIP, target="lab", shots=20)
    wait_until(lambda: server.record(job.id) is not None, timeout=20, what="the job on the server")
    transport.down = True
    # The follower's next long-poll fails: wake it by an event on the server.
    server.cancel(blocker.id)
    wait_until(lambda: not target.connected, timeout=30, what="the target to show reconnecting")
    assert not job.done() and connection_state("lab") == "reconnecting"
    assert (job.id, "reconnecting") in redrawn  # widgets were told to redraw the job
    transport.down = False
    assert mostly_ones(job.result(timeout=60).counts(), 20)  # resumed without user action
    assert target.connected and changes[-2:] == [False, True]
    assert connection_state("lab") == "connected" and connection_state("sim") is None


def test_jobs_are_followed_again_after_a_kernel_restart(manager, lab, tmp_path):
    app, server, tokens = lab
    blocker = block_device(server)
    connect(app, tokens["alice"])
    jobs = [qnb.submit(FLIP, target="lab", shots=10, name=f"j{i}") for i in range(3)]
    wait_until(lambda: all(server.record(j.id) for j in jobs), timeout=20, what="jobs on the server")
    wait_until(lambda: all(manager.store.load_job(j.id).remote_id for j in jobs), timeout=20,
               what="remote ids stored")
    ids = [j.id for j in jobs]
    manager.close()  # the kernel ends while its jobs wait on the server

    kernel2 = JobManager(manager.home)
    set_manager(kernel2)
    try:
        listed = qnb.jobs(target="lab")
        assert sorted(j.id for j in listed) == sorted(ids)
        assert all(not j.done() for j in listed)
        assert kernel2.interrupted_jobs == []  # remote jobs are not this kernel's to fail
        server.cancel(blocker.id)
        connect(app, tokens["alice"])
        for job_id in ids:
            assert mostly_ones(qnb.get_job(job_id).result(timeout=60).counts(), 10)
        assert len(server.find(limit=100)) == 4  # nothing submitted twice
    finally:
        set_manager(manager)
        kernel2.close()


def test_connect_reads_url_and_token_from_the_targets_file(manager, lab, tmp_path, monkeypatch):
    app, _, tokens = lab
    targets_file = tmp_path / "targets.toml"
    targets_file.write_text('[targets.lab]\nurl = "http://lab"\ntoken_env = "LAB_TOKEN"\n')
    monkeypatch.setenv("QNB_TARGETS", str(targets_file))
    monkeypatch.delenv("LAB_TOKEN", raising=False)
    with pytest.raises(qnb.QnbError, match="LAB_TOKEN"):
        qnb.connect("lab", transport=SwitchableTransport(app))
    with pytest.raises(qnb.QnbError, match=r"no \[targets.other\]"):
        qnb.connect("other", transport=SwitchableTransport(app))
    monkeypatch.setenv("LAB_TOKEN", tokens["bob"])
    target = qnb.connect("lab", transport=SwitchableTransport(app))
    assert target.remote_user == "bob" and target.url == "http://lab"
    with pytest.raises(RemoteAuthError, match="401"):
        qnb.connect("lab", "http://lab", token="qnb_wrong", transport=SwitchableTransport(app))


def test_jobs_of_a_target_that_loads_on_first_use_are_followed_after_a_restart(manager, lab):
    """A target from the targets file or a plug-in (here: a queue server registered as a
    lazy entry) is loaded by the next kernel itself, and its unfinished jobs followed."""
    from qnb._targets import registry

    app, server, tokens = lab
    blocker = block_device(server)
    connect(app, tokens["alice"])
    job = qnb.submit(FLIP, target="lab", shots=10)
    wait_until(lambda: manager.store.load_job(job.id).remote_id, timeout=20, what="remote id stored")
    manager.close()
    registry.unregister("lab")
    made = []

    def load():
        target = RemoteTarget("lab", "http://lab", token=tokens["alice"], loop=kernel2.loop,
                              transport=SwitchableTransport(app))  # fmt: skip
        made.append(target)
        return target

    kernel2 = JobManager.__new__(JobManager)  # the loader needs its loop: made below
    registry.register_lazy("lab", load, origin="test")
    kernel2.__init__(manager.home)
    set_manager(kernel2)
    try:
        wait_until(lambda: made, timeout=20, what="the lazy target loaded by the new kernel")
        server.cancel(blocker.id)
        assert mostly_ones(qnb.get_job(job.id).result(timeout=60).counts(), 10)
    finally:
        set_manager(manager)
        kernel2.close()
