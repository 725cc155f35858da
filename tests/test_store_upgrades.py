"""Stores written by an older qnb (issue 20 added columns: jobs' cost, currency, retries
and estimate, items' attempts and history): opened for writing they gain them; opened
read-only they are read as they are; changes an older process kept beside the store
still apply."""

from __future__ import annotations

import json
import sqlite3

import pytest

from qnb._records import ItemRecord, JobRecord
from qnb._status import JobStatus
from qnb._store import Store

NEW_COLUMNS = {"jobs": ("cost", "currency", "retries", "estimate", "usage"), "items": ("attempts", "history")}


def job(job_id: str = "a" * 32) -> JobRecord:
    return JobRecord(job_id, "old", "sim", "alice", 10, [ItemRecord("0", JobStatus.RUNNING)], 1.0,
                     status=JobStatus.RUNNING, time_started=2.0)  # fmt: skip


def older_store(path) -> None:
    """A store with one running job, as a qnb before these columns left it."""
    store = Store(path)
    store.insert_job(job(), ["c0"], {})
    store.close()
    with sqlite3.connect(path) as db:  # each table rebuilt without the newer columns
        db.execute("DROP INDEX IF EXISTS jobs_by_target")
        keys = {"jobs": "PRIMARY KEY (id)", "items": "PRIMARY KEY (job_id, idx)"}
        for table, newer in NEW_COLUMNS.items():
            kept = [(row[1], row[2]) for row in db.execute(f"PRAGMA table_info({table})") if row[1] not in newer]
            columns = ", ".join(f"{name} {kind}" for name, kind in kept)
            db.execute(f"CREATE TABLE old_{table} ({columns}, {keys[table]})")
            names = ", ".join(name for name, _ in kept)
            db.execute(f"INSERT INTO old_{table} ({names}) SELECT {names} FROM {table}")
            db.execute(f"DROP TABLE {table}")
            db.execute(f"ALTER TABLE old_{table} RENAME TO {table}")
    with sqlite3.connect(path) as db:  # all in the file itself (a read-only open ignores the log)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def test_an_older_store_opened_read_only_is_read_as_it_is(tmp_path, monkeypatch):
    path = tmp_path / "qnb.sqlite3"
    older_store(path)

    def refused(self, db):  # what SQLite says in a home this user may not write
        raise sqlite3.OperationalError("attempt to write a readonly database")

    monkeypatch.setattr(Store, "_set_up", refused)
    store = Store(path)
    try:
        assert store.read_only
        (found,) = store.find_jobs()
        assert (found.id, found.cost, found.retries, found.saved_estimate) == ("a" * 32, None, 0, None)
        assert found.items[0].attempts == 0 and found.items[0].history == ()
        assert store.load_job("a" * 32).usage is None and store.spent("sim") == {}
    finally:
        store.close()


def test_an_older_store_opened_for_writing_gains_the_columns(tmp_path):
    path = tmp_path / "qnb.sqlite3"
    older_store(path)
    store = Store(path)
    try:
        rec = store.load_job("a" * 32)
        assert rec.cost is None and rec.items[0].attempts == 0
        newer = job("b" * 32)
        newer.cost, newer.currency, newer.retries = 2.5, "USD", 3
        store.insert_job(newer, ["c0"], {})
        assert store.spent("sim") == {"USD": 2.5} and store.load_job("b" * 32).retries == 3
    finally:
        store.close()


@pytest.mark.parametrize("row", [
    ["completed", 2.0, 3.0, None, 1.0, 0, None, "a" * 32],  # before vendors' usage
    ["completed", 2.0, 3.0, None, 1.0, 0, None, None, "a" * 32],  # before stored estimates
], ids=["8-values", "9-values"])  # fmt: skip
def test_job_changes_kept_by_an_older_process_still_apply(tmp_path, row):
    path = tmp_path / "qnb.sqlite3"
    store = Store(path)
    try:
        store.insert_job(job(), ["c0"], {})
        (tmp_path / "qnb.sqlite3.unsaved-old.json").write_text(json.dumps({"jobs": [row], "items": [], "results": []}))
        assert len(store.apply_kept()) == 1
        assert store.load_job("a" * 32).status is JobStatus.COMPLETED
    finally:
        store.close()
