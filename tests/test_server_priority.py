"""Priority on the queue server: admins may raise it, the queue takes it first."""

from __future__ import annotations

import httpx
import pytest

from test_server_support import FLIP_JSON, auth, lab, submit_body  # noqa: F401

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


async def test_priority_orders_the_server_queue(lab):
    app, manager, tokens = lab
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://lab") as http:
        async def submit(user, name, **extra):
            answer = await http.post("/v1/jobs", json=submit_body(FLIP_JSON, shots=20_000, name=name, **extra),
                                     headers=auth(tokens[user]))
            return answer

        # The first job takes the device; the rest wait.
        assert (await submit("alice", "running")).status_code == 201
        refused = await submit("alice", "pushy", priority=1)
        assert refused.status_code == 403 and "priority above 0" in refused.text
        assert (await submit("bob", "background", priority=-5)).status_code == 201
        assert (await submit("alice", "normal")).status_code == 201
        urgent = await submit("root", "urgent", priority=10)
        assert urgent.status_code == 201 and urgent.json()["priority"] == 10
        bad = await submit("root", "too much", priority=1000)
        assert bad.status_code == 422 and "priority" in bad.text

        queue = (await http.get("/v1/queue", headers=auth(tokens["bob"]))).json()
        assert [e["name"] for e in queue["entries"]] == ["urgent", "normal", "background"]
        assert [e["position"] for e in queue["entries"]] == [1, 2, 3]
        names = {j.name for j in manager.find(limit=100)}
        assert "pushy" not in names and "too much" not in names  # refused: nothing stored
        for rec in manager.find(limit=100):
            manager.cancel(rec.id)


def test_a_restarted_server_keeps_priority_order(tmp_path):
    import cirq

    from qnb._manager import JobManager
    from qnb._targets._simulators import registry
    from conftest import wait_until

    emulator = registry.get("emulator")
    flip = {"f": cirq.Circuit(cirq.X(cirq.LineQubit(0)), cirq.measure(cirq.LineQubit(0)))}
    first = JobManager(tmp_path / "server", requeue_interrupted=True)
    try:
        def submit(name, priority=0):
            return first.submit(emulator, flip, shots=20_000, name=name, user="u", priority=priority)

        running = submit("was running")
        wait_until(lambda: running.status == "running", what="the first job running")
        for name, priority in [("p0", 0), ("p5", 5), ("low", -1), ("p5 later", 5)]:
            submit(name, priority)
    finally:
        first.close()  # its owner lock goes: like a killed server
    second = JobManager(tmp_path / "server", requeue_interrupted=True)
    try:
        # The job that was running goes first (it starts as soon as the loop turns).
        wait_until(lambda: second.find(status=["running"]), what="a job running again")
        order = [r.name for r in [*second.find(status=["running"]), *second.pending("emulator")]]
        assert order == ["was running", "p5", "p5 later", "p0", "low"]
    finally:
        for rec in second.find(limit=100):
            second.cancel(rec.id)
        second.close()
