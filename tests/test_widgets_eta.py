"""What is left of a job, in the widgets' state (issue 20): a job's estimate travels in
the card's ``job`` and the monitor's rows while it is unfinished and is gone once it
ends; a job's cost when known; an item waiting to run again makes the row say
"retrying (k/N)"; the saved HTML says the same."""

from __future__ import annotations

import cirq
import pytest

import qnb
from qnb._core import _runner
from qnb._estimate import Estimate
from qnb.notebook._stream import stream_for
from qnb.notebook._widgets import QueueMonitor, card_for
from conftest import wait_until
from test_retries import FLAKY, Scripted, scripted_target

Q = cirq.LineQubit.range(2)
BELL = cirq.Circuit(cirq.H(Q[0]), cirq.CNOT(*Q), cirq.measure(*Q, key="m"))


def estimate_of(manager, job_id: str, estimate: Estimate | None = None) -> Estimate:
    """The record's estimate; set to ``estimate`` first where the kernel has none yet
    (before the local estimator, or between its reports), as the estimator sets it:
    under the core lock, then the stream told."""
    with manager._core.lock:
        rec = manager.record(job_id)
        if rec.live.estimate is None and estimate is not None:
            rec.live.estimate = estimate
        found = rec.live.estimate
    stream_for(manager).nudge(job_id)
    return found


def test_the_estimate_travels_while_the_job_is_unfinished_and_goes_when_it_ends(manager):
    job = qnb.submit(BELL, target="emulator", compile=True, shots=20_000)  # ~10 s of device time
    card = card_for(job)
    monitor = QueueMonitor(manager=manager)
    ours = Estimate.starting_now(8.0, 0.0, basis="set by the test")
    wait_until(lambda: estimate_of(manager, job.id, ours) and "estimate" in card.job,
               timeout=30, what="the card's row to carry an estimate")  # fmt: skip
    row = card.job
    assert set(row["estimate"]) == {"run_seconds", "wait_seconds", "finish", "cost", "currency", "basis"}
    assert isinstance(row["estimate"]["finish"], float) and row["estimate"]["finish"] > row["time_added"]
    shown = {r["id"]: r for r in monitor.snapshot()["jobs"]}
    assert shown[job.id]["estimate"]["finish"] == pytest.approx(
        manager.record(job.id).live.estimate.finish.timestamp(), abs=60
    )
    assert "done by ~" in card._html()  # the saved view says when, as of its saving
    assert "done by ~" in repr(card) and "done by ~" in monitor._html()  # (the text and table fallbacks too)
    assert job.estimate is not None  # the same thing through the Python API

    job.cancel()
    wait_until(lambda: card.job["status"] == "cancelled", timeout=30, what="the card to show it cancelled")
    assert "estimate" not in card.job and "done by" not in card._html()
    assert job.estimate is None


def test_a_local_job_costs_nothing_and_the_card_keeps_that_quiet(manager):
    job = qnb.submit(BELL, shots=10)
    card = card_for(job)
    job.result(timeout=60)
    wait_until(lambda: card.job["status"] == "completed", timeout=30, what="the card completed")
    assert card.job["cost"] == 0.0  # known, and nothing: the page shows no cost
    assert "$" not in card._html() and "no cost" not in card._html()


def test_an_item_waiting_to_run_again_makes_the_row_say_retrying(manager, monkeypatch):
    monkeypatch.setattr(_runner, "RETRY_FIRST_SECONDS", 60.0)  # it waits until the cancel
    scripted_target("flaky-widgets", Scripted(fail=1))
    job = qnb.submit({"a": BELL, "b": FLAKY}, target="flaky-widgets", shots=20, retries=2)
    card = card_for(job)
    monitor = QueueMonitor(manager=manager)
    wait_until(lambda: card.job.get("retrying"), timeout=60, what="the card's row to say retrying")
    assert card.job["retrying"] == {"count": 1, "attempt": 1, "retries": 2}
    assert "retrying (1/2)" in card._html()
    assert {r["id"]: r for r in monitor.snapshot()["jobs"]}[job.id]["retrying"]["attempt"] == 1
    job.cancel()
    wait_until(lambda: card.job["status"] == "cancelled", timeout=30, what="the card cancelled")
    assert "retrying" not in card.job and "retrying" not in card._html()
