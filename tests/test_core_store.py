"""The SQLite store: schema upgrades keep what older versions wrote."""

from __future__ import annotations

import sqlite3

from qnb import JobStatus
from qnb._store import Store

OLD_JOBS = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, target TEXT NOT NULL, user TEXT NOT NULL,
    shots INTEGER NOT NULL, status TEXT NOT NULL, time_added REAL NOT NULL,
    time_started REAL, time_finished REAL, error TEXT, parent_id TEXT,
    queue_seq REAL NOT NULL, owner TEXT, remote_id TEXT
);
CREATE TABLE items (
    job_id TEXT NOT NULL, idx INTEGER NOT NULL, label TEXT NOT NULL, circuit TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT, result TEXT, PRIMARY KEY (job_id, idx)
);
INSERT INTO jobs VALUES ('a' || hex(randomblob(15)), 'old', 'sim', 'ann', 10, 'completed',
                         1.0, 2.0, 3.0, NULL, NULL, 1.0, NULL, NULL);
"""


def test_a_store_without_priorities_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(OLD_JOBS)
    store = Store(path)
    try:
        (job,) = store.find_jobs()
        assert job.name == "old" and job.status is JobStatus.COMPLETED and job.priority == 0
    finally:
        store.close()
    Store(path).close()  # opening it again changes nothing
