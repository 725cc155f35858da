"""The widgets show a queue server's jobs like local ones: their rows appear and update,
with the positions the server gives (never ones derived from the kernel's queue order),
and "reconnecting" while the server is away, until it is back and the jobs go on."""

from __future__ import annotations

import httpx
import pytest

import qnb
from qnb._targets._simulators import registry
from qnb.notebook._widgets import JobCard, QueueMonitor
from conftest import wait_until
from test_remote import block_device, connect
from test_server_support import BELL, FLIP, ServeProcess, auth, lab, make_users, submit_body  # noqa: F401
from test_widgets import sent_messages


def latest_rows(messages: list[dict]) -> dict[str, dict]:
    """Each job's newest row among the patches a monitor sent to the page."""
    rows: dict[str, dict] = {}
    for message in messages:
        if message.get("type") == "patch":
            rows.update((row["id"], row) for row in message["jobs"])
    return rows


def test_remote_rows_carry_the_servers_positions_and_update_like_local_ones(manager, lab):
    app, server, tokens = lab
    blocker = block_device(server)  # root's long job holds the device
    bobs = server.submit(registry.get("emulator"), {"b": BELL}, shots=10, name="bob's", user="bob")
    target, transport = connect(app, tokens["alice"])
    monitor = QueueMonitor(manager=manager)
    messages = sent_messages(monitor)
    jobs = [qnb.submit(FLIP, target="lab", shots=20, name=f"r{i}") for i in range(3)]
    ids = [job.id for job in jobs]
    card = JobCard(jobs[2])

    def positions() -> list:
        rows = latest_rows(messages)
        return [rows.get(job_id, {}).get("position") for job_id in ids]

    # Behind bob's job: 2, 3, 4 on the server (the kernel's queue order would say 1, 2, 3).
    wait_until(lambda: positions() == [2, 3, 4], timeout=20, what="the server's positions in the rows")
    wait_until(lambda: card.position == 4, timeout=20, what="the card at position 4")
    rows = latest_rows(messages)
    assert all(rows[i]["status"] == "queued" and rows[i]["queue_seq"] is None for i in ids)
    assert all(rows[i]["connection"] is None for i in ids)
    snapshot = {row["id"]: row for row in monitor.snapshot()["jobs"]}
    assert [snapshot[i]["position"] for i in ids] == [2, 3, 4]
    assert "position 4" in card._text() and "reconnecting" not in card._text()

    server.cancel(bobs.id)  # another user's job leaves the queue: ours move up
    wait_until(lambda: positions() == [1, 2, 3], timeout=20, what="positions after bob's job left")
    wait_until(lambda: card.position == 3, timeout=20, what="the card at position 3")

    server.cancel(blocker.id)
    for job in jobs:
        job.result(timeout=60)
    wait_until(lambda: all(latest_rows(messages)[i]["status"] == "completed" for i in ids),
               timeout=20, what="completed rows")
    rows = latest_rows(messages)
    assert all(rows[i]["done"] == rows[i]["total"] == 1 and rows[i]["position"] is None for i in ids)
    wait_until(lambda: card.job["status"] == "completed" and card.counts, timeout=20,
               what="the card completed with counts")
    assert card.position is None and sum(card.counts["0"].values()) == 20
    # Positions came from queue reads of the whole queue, never a request per job.
    assert not any(r in transport.requests for r in (f"GET /v1/jobs/{i}" for i in ids)), transport.requests
    assert 2 <= transport.requests.count("GET /v1/queue") < 100


@pytest.mark.slow
def test_rows_show_reconnecting_while_the_server_is_away_and_resume_when_it_is_back(manager, tmp_path):
    users_file = tmp_path / "users.toml"
    tokens = make_users(users_file)
    server = ServeProcess(tmp_path, users_file=users_file).start()
    try:
        blocker = httpx.post(f"{server.url}/v1/jobs", json=submit_body(shots=100_000, name="blocker"),
                             headers=auth(tokens["root"]), timeout=10).json()
        qnb.connect("lab", server.url, token=tokens["alice"], retry_for=60)
        monitor = QueueMonitor(manager=manager)
        messages = sent_messages(monitor)
        job = qnb.submit(FLIP, target="lab", shots=20, name="waits")
        card = JobCard(job)

        def row(job_id: str) -> dict:
            return latest_rows(messages).get(job_id, {})

        wait_until(lambda: row(job.id).get("position") == 1 and card.position == 1, timeout=20,
                   what="the job waiting at position 1")

        server.kill()
        wait_until(lambda: row(job.id)["connection"] == "reconnecting"
                   and card.job["connection"] == "reconnecting", timeout=30,
                   what="the rows to show reconnecting")
        assert row(job.id)["status"] == "queued" and row(job.id)["position"] is None
        assert card.position is None  # none rather than a stale one
        assert "queued (reconnecting)" in card._text() and "reconnecting" in card._html()
        assert "reconnecting" in monitor._text() and "reconnecting" in monitor._html()
        snapshot = {r["id"]: r for r in monitor.snapshot()["jobs"]}
        assert snapshot[job.id]["connection"] == "reconnecting"
        # Submitted while the server is away: it waits here, reconnecting too.
        later = qnb.submit(FLIP, target="lab", shots=20, name="during the outage")
        wait_until(lambda: row(later.id).get("connection") == "reconnecting", timeout=20,
                   what="the new job's row reconnecting")

        server.start()  # same port, same database
        wait_until(lambda: row(job.id)["connection"] is None and row(later.id)["connection"] is None
                   and card.job["connection"] is None, timeout=30,
                   what="the rows back to connected")
        cancelled = httpx.post(f"{server.url}/v1/jobs/{blocker['id']}/cancel",
                               headers=auth(tokens["root"]), timeout=10)
        assert cancelled.status_code == 200, cancelled.text
        # The jobs complete without user action, and their rows and card follow.
        assert sum(job.result(timeout=60).counts().values()) == 20
        assert sum(later.result(timeout=60).counts().values()) == 20
        wait_until(lambda: row(job.id)["status"] == row(later.id)["status"] == "completed",
                   timeout=20, what="completed rows")
        wait_until(lambda: card.job["status"] == "completed" and card.counts, timeout=20,
                   what="the card completed")
        assert row(job.id)["connection"] is None and card.position is None
        assert "reconnecting" not in card._text()
    finally:
        server.stop()


def test_page_actions_on_remote_queued_jobs_go_to_the_server(manager, lab):
    from qnb.notebook._widgets import perform_action

    app, server, tokens = lab
    blocker = block_device(server)
    target, _ = connect(app, tokens["alice"])
    first, second = (qnb.submit(FLIP, target="lab", shots=20, name=n) for n in ("first", "second"))
    wait_until(lambda: second.position_in_queue() == 2, timeout=20, what="both queued on the server")

    assert perform_action(manager, "remove", first.id) == {"status": "cancelled"}
    assert [r.id for r in server.pending("emulator")] == [second.id]  # gone from the server's queue
    wait_until(lambda: first.status == "cancelled", timeout=20, what="the kernel to learn it")
    with pytest.raises(qnb.QnbError, match="admin"):
        perform_action(manager, "move_to_front", second.id)  # alice is no admin
    assert second.status == "queued"
    server.cancel(blocker.id)
    assert second.result(timeout=60)


def test_qsubmit_magic_sends_to_a_queue_server(manager, lab):
    from conftest import ipython_shell

    app, server, tokens = lab
    connect(app, tokens["alice"])
    ip = ipython_shell()
    ip.user_ns["cirq"] = __import__("cirq")
    job = ip.run_cell_magic(
        "qsubmit", "--target lab --shots 30 --name flip-remote",
        "q = cirq.LineQubit(0)\ncirq.Circuit(cirq.X(q), cirq.measure(q, key='m'))",
    )
    assert isinstance(job, qnb.Job) and job.target == "lab" and job.user == "alice"
    assert job.result(timeout=60).counts()["1"] > 20  # the emulator is noisy
    assert server.load(job.id).name == "flip-remote"  # the same job, on the server
    ip.run_line_magic("qcancel", job.id)  # idempotent on a finished remote job
    assert job.status == "completed"
