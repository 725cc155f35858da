"""Widget state: the coalesced stream, the job card, the queue monitor, page actions."""

from __future__ import annotations

import threading
import time

import cirq
import pytest

import qnb
from qnb import JobStatus
from qnb._records import ItemRecord, JobRecord
from qnb.notebook._stream import JobStream
from record_source import RecordSource
from qnb.notebook._widgets import QueueMonitor, card_for, channel_for, JobCard
from conftest import wait_until

Q = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))
FLIP = cirq.Circuit(cirq.X(Q[0]), cirq.measure(*Q, key="m"))
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def long_emulator_job(**options) -> qnb.Job:
    return qnb.submit(BELL, target="emulator", compile=True, shots=20_000, **options)


def record_source(n: int) -> RecordSource:
    return RecordSource(
        JobRecord(id=f"job{i:05d}", name=f"job {i}", target="sim", user="u", shots=1,
                  items=[ItemRecord("0")], time_added=float(i))
        for i in range(n)
    )


class Recorder:
    def __init__(self):
        self.patches = []

    def on_patch(self, rows, positions):
        self.patches.append((time.monotonic(), [row["id"] for row in rows]))


def sent_messages(widget):
    """Capture what a widget sends to the page (its comm has no front end here)."""
    messages = []
    widget.send = lambda content, buffers=None: messages.append(content)
    return messages


def page_message(widget, content):
    """Deliver a custom message as the page would: through the widget's comm handler."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


# -- the stream ---------------------------------------------------------------------------


def test_stream_coalesces_changes_into_patches_of_changed_jobs_only():
    source = record_source(1000)
    stream = JobStream(source, interval=0.1)
    recorder = Recorder()
    stream.subscribe(recorder)
    try:
        start = time.monotonic()
        for i in range(400):  # 400 changes in ~0.8 s, to 200 distinct jobs
            source.changed(source.records[f"job{i % 200:05d}"])
            if i % 50 == 0:
                time.sleep(0.1)  # pacing the producer, not synchronisation
        wait_until(
            lambda: {i for _, ids in recorder.patches for i in ids} == {f"job{i:05d}" for i in range(200)},
            what="every changed job to reach a patch",
        )
        duration = recorder.patches[-1][0] - start
        assert len(recorder.patches) <= duration / 0.1 + 2
        gaps = [b[0] - a[0] for a, b in zip(recorder.patches, recorder.patches[1:])]
        assert min(gaps) >= 0.09
        assert all(len(ids) == len(set(ids)) <= 200 for _, ids in recorder.patches)
    finally:
        stream.stop()


def test_stream_holds_subscribers_weakly():
    source = record_source(3)
    stream = JobStream(source, interval=0.01)
    recorder = Recorder()
    stream.subscribe(recorder)
    del recorder
    source.changed(source.records["job00001"])
    wait_until(lambda: stream.patches_sent == 1, what="a patch with no one listening")
    assert len(stream._subscribers) == 0
    stream.stop()


# -- the job card ---------------------------------------------------------------------------


def test_card_follows_a_job_to_completed_with_counts(manager):
    job = qnb.submit({"bell": BELL, "flip": FLIP}, shots=100, name="card test")
    card = card_for(job)
    assert card is card_for(qnb.get_job(job.id))  # one card per job
    assert card.job["id"] == job.id and card.job["name"] == "card test"
    wait_until(lambda: card.job["status"] == "completed" and card.counts, what="card completed")
    assert card.job["done"] == card.job["total"] == 2
    assert card.counts["flip"] == {"10": 100}
    assert list(card.counts["bell"]) == sorted(card.counts["bell"])  # bitstrings in order


def test_card_tracks_queue_position_as_jobs_ahead_leave(manager):
    first = long_emulator_job(name="first")
    second = long_emulator_job(name="second")
    third = long_emulator_job(name="third")
    card = JobCard(third)
    try:
        wait_until(lambda: card.position == 2, what="third at position 2")
        second.cancel()
        wait_until(lambda: card.position == 1, what="third moves up to position 1")
        first.cancel()
        wait_until(lambda: card.job["status"] == "running" and card.position is None, what="third runs")
    finally:
        for job in (first, second, third):
            job.cancel()
    wait_until(lambda: card.job["status"] == "cancelled", what="third cancelled")


def test_card_and_job_fallbacks(manager):
    job = qnb.submit(BELL, shots=10, name="<b>fallback</b>")
    job.result(timeout=60)
    data, _ = card_for(job)._repr_mimebundle_()
    assert WIDGET_VIEW in data
    assert data["text/plain"].startswith("Job '<b>fallback</b>'") and "completed" in data["text/plain"]
    assert "&lt;b&gt;fallback" in data["text/html"]
    # Outside a kernel (terminal IPython, this test) a Job shows text and HTML only.
    data, _ = job._repr_mimebundle_()
    assert WIDGET_VIEW not in data and "completed" in data["text/plain"]


# -- the queue monitor ----------------------------------------------------------------------


def test_monitor_snapshot_then_patches_of_changed_jobs(manager):
    done = qnb.submit(BELL, shots=10, name="done before")
    done.result(timeout=60)
    monitor = QueueMonitor(manager=manager)
    messages = sent_messages(monitor)
    snapshot = monitor.snapshot()
    assert done.id in {row["id"] for row in snapshot["jobs"]}
    job = qnb.submit(BELL, shots=10, name="live")
    job.result(timeout=60)
    wait_until(
        lambda: any(r["id"] == job.id and r["status"] == "completed" for m in messages for r in m["jobs"]),
        what="a patch with the completed job",
    )
    assert all(m["type"] == "patch" for m in messages)
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))
    assert all({r["id"] for r in m["jobs"]} == {job.id} for m in messages)  # only what changed
    assert monitor.snapshot()["seq"] == len(messages)


def test_monitor_rows_carry_queue_order(manager):
    first = long_emulator_job(name="first")
    second = long_emulator_job(name="second")
    third = long_emulator_job(name="third", front=True)
    try:
        monitor = QueueMonitor(manager=manager)
        rows = {row["id"]: row for row in monitor.snapshot()["jobs"]}
        wait_until(lambda: first.status is JobStatus.RUNNING, what="first to run")
        rows = {row["id"]: row for row in monitor.snapshot()["jobs"]}
        assert rows[first.id]["queue_seq"] is None
        assert rows[third.id]["queue_seq"] < rows[second.id]["queue_seq"]
    finally:
        for job in (first, second, third):
            job.cancel()


def test_one_monitor_filtered_in_place_with_fallbacks(manager):
    job = qnb.submit(BELL, shots=10, name="shown")
    job.result(timeout=60)
    monitor = qnb.monitor()
    assert qnb.monitor(target="sim", user="tester", status="completed") is monitor
    assert (monitor.target_filter, monitor.user_filter, monitor.status_filter) == ("sim", "tester", "completed")
    data, _ = monitor._repr_mimebundle_()
    assert WIDGET_VIEW in data
    assert job.id[:8] in data["text/plain"] and job.id[:8] in data["text/html"]
    qnb.monitor(status="running")
    assert job.id[:8] not in monitor._repr_mimebundle_()[0]["text/plain"]
    with pytest.raises(qnb.UnknownTargetError):
        qnb.monitor(target="nowhere")
    with pytest.raises(qnb.InvalidOptionError):
        qnb.monitor(status="sleeping")


# -- page actions ---------------------------------------------------------------------------


def test_page_actions_go_to_the_manager_and_are_acknowledged(manager):
    channel = channel_for(manager)
    replies = sent_messages(channel)
    running = long_emulator_job(name="running")
    queued = long_emulator_job(name="queued")
    later = long_emulator_job(name="later")

    def act(action, job, request_id):
        page_message(channel, {"type": "action", "action": action, "job_id": job.id, "request_id": request_id})
        return next(r for r in replies if r.get("request_id") == request_id)

    assert act("move_to_front", later, "1")["ok"]
    assert later.position_in_queue() == 1
    assert act("remove", queued, "2") == {
        "type": "ack", "request_id": "2", "thread": threading.current_thread().name, "ok": True,
        "status": "cancelled",
    }
    refused = act("remove", running, "3")
    assert not refused["ok"] and "not in the 'emulator' queue" in refused["message"]
    assert act("cancel", running, "4")["status"] in ("cancelling", "cancelled")
    # "later" may have started meanwhile (the cancelled job freed the device).
    assert act("cancel", later, "5")["status"] in ("cancelling", "cancelled")
    wait_until(lambda: running.done() and later.done(), what="both jobs cancelled")
    assert act("cancel", running, "6") == {**replies[-1], "ok": True, "status": "cancelled"}
    unknown = act("explode", queued, "8")
    assert not unknown["ok"] and "unknown action" in unknown["message"]
    resubmitted = act("resubmit", queued, "7")
    assert resubmitted["ok"] and qnb.get_job(resubmitted["new_job_id"]).parent_id == queued.id
    qnb.get_job(resubmitted["new_job_id"]).cancel()
    assert [h[0] for h in channel.handled] == [
        "move_to_front", "remove", "remove", "cancel", "cancel", "cancel", "explode", "resubmit",
    ]


def test_channel_answers_hello_and_snapshot_requests(manager):
    channel = channel_for(manager)
    replies = sent_messages(channel)
    monitor = QueueMonitor(manager=manager, channel=channel)
    page_message(channel, {"type": "hello"})
    page_message(channel, {"type": "snapshot", "monitor": monitor.monitor_id})
    page_message(channel, {"type": "snapshot", "monitor": "no such monitor"})
    assert [r["type"] for r in replies] == ["hello", "snapshot"]
    assert replies[1]["monitor"] == monitor.model_id and replies[1]["seq"] == 0


def test_page_actions_are_safe_from_many_threads_at_once(manager):
    channel = channel_for(manager)
    replies = sent_messages(channel)
    jobs = [long_emulator_job(name=f"j{i}") for i in range(12)]
    barrier = threading.Barrier(len(jobs))

    def click(i, job):
        barrier.wait()
        page_message(channel, {"type": "action", "action": "cancel", "job_id": job.id, "request_id": str(i)})

    threads = [threading.Thread(target=click, args=(i, job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(int(r["request_id"]) for r in replies) == list(range(len(jobs)))
    assert all(r["ok"] for r in replies)
    wait_until(lambda: all(job.done() for job in jobs), what="every job cancelled")
    assert {job.status for job in jobs} == {JobStatus.CANCELLED}
