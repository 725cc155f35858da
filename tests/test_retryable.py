"""Whether a failure is worth a resubmit is said where it happens (ItemOutcome.retryable),
kept with the item (ItemRecord.retryable, a store column) and read by the results'
hint, instead of guessing from the message's words."""

from __future__ import annotations

import sqlite3

import pytest

from qnb import _lifecycle
from qnb._records import ItemRecord, JobRecord
from qnb._results import is_retryable, resubmit_hint
from qnb._status import JobStatus
from qnb._store import Store, changes_of
from qnb._targets import ItemOutcome

F, C, R = JobStatus.FAILED, JobStatus.COMPLETED, JobStatus.RUNNING


def job(*items: ItemRecord, status=F) -> JobRecord:
    return JobRecord(id="a" * 32, name="j", target="sim", user="u", shots=1, items=list(items),
                     time_added=0.0, status=status)  # fmt: skip


def test_the_flag_decides_not_the_words():
    # Words that used to promise a rerun, on a failure its place called deterministic.
    assert not is_retryable(job(ItemRecord("0", F, error="ValueError: timeout must be > 0", retryable=False)))
    # A circuit error's words, on a failure its place called transient (a lost worker).
    assert is_retryable(job(ItemRecord("0", F, error="ValueError: bad op", retryable=True)))
    assert resubmit_hint(job(ItemRecord("0", F, error="x", retryable=True))).endswith("runs it again")
    assert resubmit_hint(job(ItemRecord("0", F, error="x", retryable=False))) == ""
    # A cancelled item or job can always run again; completed ones say nothing.
    assert is_retryable(job(ItemRecord("0", C), ItemRecord("1", JobStatus.CANCELLED, error="cancelled")))
    assert is_retryable(job(ItemRecord("0", JobStatus.CANCELLED), status=JobStatus.CANCELLED))


def test_a_targets_report_carries_the_flag_into_the_record():
    rec = job(ItemRecord("0", R), ItemRecord("1", R), status=R)
    _lifecycle.apply_report(rec, [F, F], {
        0: ItemOutcome(F, error="worker died", retryable=True),
        1: ItemOutcome(F, error="ValueError: no", retryable=False),
    })  # fmt: skip
    assert [it.retryable for it in rec.items] == [True, False]
    assert is_retryable(rec)


def test_an_interrupted_run_is_retryable_and_fail_takes_the_callers_word():
    rec = job(ItemRecord("0", C), ItemRecord("1", R), status=R)
    _lifecycle.recover(rec, _lifecycle.Recovery.INTERRUPTED, "interrupted")
    assert [it.retryable for it in rec.items] == [None, True]
    rec = job(ItemRecord("0", R), status=R)
    _lifecycle.fail(rec, "TypeError: a bug in a target", retryable=False)
    assert rec.items[0].retryable is False and not is_retryable(rec)


def test_the_flag_is_stored_and_read_back(tmp_path):
    store = Store(tmp_path / "qnb.sqlite3")
    try:
        rec = job(ItemRecord("0", R), ItemRecord("1", R), ItemRecord("2", R), status=R)
        store.insert_job(rec, ["c0", "c1", "c2"], {})
        rec.items[0].status, rec.items[0].retryable = F, True
        rec.items[1].status, rec.items[1].retryable = F, False
        rec.live.dirty_items.update({0, 1})
        store.save(changes_of([rec]))
        assert [it.retryable for it in store.load_job(rec.id).items] == [True, False, None]
    finally:
        store.close()


def test_a_store_from_before_the_column_gains_it(tmp_path):
    path = tmp_path / "qnb.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as db:  # as an older qnb left it
        db.execute("ALTER TABLE items DROP COLUMN retryable")
    store = Store(path)
    try:
        rec = job(ItemRecord("0", F, error="e", retryable=True))
        store.insert_job(rec, ["c0"], {})
        assert store.load_job(rec.id).items[0].retryable is True
    finally:
        store.close()


@pytest.mark.parametrize("kept", [["completed", None, "qsim", "a" * 32, 0], ["failed", "e", None, True, "a" * 32, 0]])
def test_changes_kept_by_an_older_process_still_apply(tmp_path, kept):
    import json

    path = tmp_path / "qnb.sqlite3"
    store = Store(path)
    try:
        store.insert_job(job(ItemRecord("0", R), status=R), ["c0"], {})
        (tmp_path / "qnb.sqlite3.unsaved-old.json").write_text(
            json.dumps({"jobs": [], "items": [kept], "results": []})
        )
        assert len(store.apply_kept()) == 1
        assert store.load_job("a" * 32).items[0].status.value == kept[0]
    finally:
        store.close()
