"""Queue positions reach the page from the kernel, in its one queue order (priority
first, then queue order): in each row, and in a patch's ``positions`` for the jobs
whose place moved without a change of their own. The page (js/queue_monitor.js) shows
them and derives none; a copy of the order there once put a prioritised job behind
older ones."""

from __future__ import annotations


import cirq

import qnb
from conftest import wait_until
from qnb._records import ItemRecord, JobRecord
from qnb._status import JobStatus
from qnb.notebook._stream import JobStream
from qnb.notebook._widgets import JobCard, QueueMonitor
from record_source import RecordSource

Q = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))


class Page:
    """What js/queue_monitor.js's JobTable does with a snapshot and patches."""

    def __init__(self):
        self.jobs: dict[str, dict] = {}
        self.seq = None

    def snapshot(self, message: dict) -> None:
        self.jobs = {row["id"]: row for row in message["jobs"]}
        self.seq = message["seq"]

    def patch(self, message: dict) -> None:
        if self.seq is None or message["seq"] <= self.seq:
            return
        for row in message["jobs"]:
            self.jobs[row["id"]] = row
        for job_id, position in message.get("positions", {}).items():
            if job_id in self.jobs:
                self.jobs[job_id] = {**self.jobs[job_id], "position": position}

    def positions(self) -> dict[str, int]:
        return {i: row["position"] for i, row in self.jobs.items() if isinstance(row["position"], int)}


def record(i: int, *, priority: int = 0, status=JobStatus.QUEUED) -> JobRecord:
    return JobRecord(id=f"job{i}", name=f"job {i}", target="sim", user="u", shots=1,
                     items=[ItemRecord("0")], time_added=float(i), status=status,
                     queue_seq=float(i), priority=priority)  # fmt: skip


class Recorder:
    def __init__(self):
        self.patches: list[tuple[list[dict], dict]] = []

    def on_patch(self, rows, positions):
        self.patches.append((rows, positions))


def test_a_patch_sends_the_kernels_positions_priority_first():
    source = RecordSource([record(1), record(2), record(3)])
    stream = JobStream(source, interval=0.01)
    recorder = Recorder()
    stream.subscribe(recorder)
    try:
        source.changed(source.records["job1"])
        wait_until(lambda: len(recorder.patches) == 1, what="the first patch")
        rows, positions = recorder.patches[0]
        assert [(r["id"], r["position"]) for r in rows] == [("job1", 1)]
        assert positions == {"job2": 2, "job3": 3}  # the rest of the queue, as first seen

        # A later job with a priority goes ahead of the two older ones.
        with source.lock:
            source.records["job4"] = record(4, priority=5)
            source.changed(source.records["job4"])
        wait_until(lambda: len(recorder.patches) == 2, what="the patch of the new job")
        rows, positions = recorder.patches[1]
        assert [(r["id"], r["position"], r["queue_seq"]) for r in rows] == [("job4", 1, 4.0)]
        assert positions == {"job1": 2, "job2": 3, "job3": 4}

        # The head leaves: everyone behind moves up; it has a row of its own.
        with source.lock:
            source.records["job4"].status = JobStatus.RUNNING
            source.changed(source.records["job4"])
        wait_until(lambda: len(recorder.patches) == 3, what="the patch of the start")
        rows, positions = recorder.patches[2]
        assert [(r["id"], r["position"], r["queue_seq"]) for r in rows] == [("job4", None, None)]
        assert positions == {"job1": 1, "job2": 2, "job3": 3}

        # A change that moves nobody sends no positions.
        source.changed(source.records["job2"])
        wait_until(lambda: len(recorder.patches) == 4, what="a patch without moves")
        assert recorder.patches[3][1] == {}
    finally:
        stream.stop()


def test_the_monitor_and_a_card_show_a_prioritised_job_ahead(manager):
    running = qnb.submit(BELL, target="emulator", compile=True, shots=20_000, name="running")
    older = qnb.submit(BELL, target="emulator", compile=True, shots=20_000, name="older")
    monitor = QueueMonitor(manager=manager)
    messages: list[dict] = []
    monitor.send = lambda content, buffers=None: messages.append(content)
    page = Page()
    try:
        wait_until(lambda: running.status is JobStatus.RUNNING, what="the first job to run")
        page.snapshot(monitor.snapshot())
        assert page.positions().get(older.id) == 1
        card = JobCard(older)
        assert card.position == 1
        urgent = qnb.submit(BELL, target="emulator", compile=True, shots=20_000, name="urgent",
                            priority=10)  # fmt: skip

        def seen() -> dict:
            for message in list(messages):
                page.patch(message)
            return page.positions()

        wait_until(lambda: seen().get(urgent.id) == 1 and seen().get(older.id) == 2,
                   what="the prioritised job at 1, the older one moved to 2")
        assert page.jobs[urgent.id]["queue_seq"] > page.jobs[older.id]["queue_seq"]
        wait_until(lambda: card.position == 2, what="the older job's card at 2")
        # The older job had no change of its own: its place came in `positions`.
        assert any(older.id in m.get("positions", {}) for m in messages)
        assert not any(row["id"] == older.id for m in messages for row in m["jobs"])

        urgent.cancel()
        wait_until(lambda: seen().get(older.id) == 1 and urgent.id not in seen(),
                   what="back to 1 once the prioritised job left")
        wait_until(lambda: card.position == 1, what="the card back at 1")
        # A fresh snapshot agrees with the patches.
        wait_until(lambda: {i: p for i, p in positions_in(monitor.snapshot()).items()
                            if i in (older.id, urgent.id)} == {older.id: 1},
                   what="a fresh snapshot agreeing with the patches")  # fmt: skip
    finally:
        for job in (running, older):
            job.cancel()


def positions_in(snapshot: dict) -> dict[str, int]:
    page = Page()
    page.snapshot(snapshot)
    return page.positions()
