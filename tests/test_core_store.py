"""The SQLite store: schema upgrades keep what older versions wrote."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

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


SCHEMA_2 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '2');
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, target TEXT NOT NULL, user TEXT NOT NULL,
    shots INTEGER NOT NULL, status TEXT NOT NULL, time_added REAL NOT NULL,
    time_started REAL, time_finished REAL, error TEXT, parent_id TEXT,
    queue_seq REAL NOT NULL, owner TEXT, remote_id TEXT, priority INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE items (
    job_id TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE, idx INTEGER NOT NULL,
    label TEXT NOT NULL, circuit TEXT NOT NULL, status TEXT NOT NULL, error TEXT, result TEXT,
    params TEXT, engine TEXT, PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
INSERT INTO jobs VALUES ('j2', 'sweep', 'sim', 'ann', 10, 'failed', 1.0, 2.0, 3.0,
                         '1 of 3 items failed', NULL, 1.0, NULL, NULL, 0);
INSERT INTO items VALUES ('j2', 0, 'c[0]', '{"circuit": 0}', 'completed', NULL, '{"r": 0}', '{"p": 0}', 'qsim');
INSERT INTO items VALUES ('j2', 1, 'c[1]', '@0', 'completed', NULL, '{"r": 1}', '{"p": 1}', 'qsim');
INSERT INTO items VALUES ('j2', 2, 'd', '{"circuit": 2}', 'failed', 'boom', NULL, NULL, NULL);
"""


def test_circuits_move_to_their_own_table_and_everything_else_stays(tmp_path):
    # Schema 3: an item's row no longer holds its circuit, which every status or result
    # write used to copy again.
    path = tmp_path / "v2.sqlite3"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_2)
    for _ in range(2):  # the second opening finds it done
        store = Store(path)
        try:
            (job,) = store.find_jobs()
            assert [(it.label, it.status, it.error, it.params, it.engine) for it in job.items] == [
                ("c[0]", JobStatus.COMPLETED, None, '{"p": 0}', "qsim"),
                ("c[1]", JobStatus.COMPLETED, None, '{"p": 1}', "qsim"),
                ("d", JobStatus.FAILED, "boom", None, None),
            ]
            assert store.load_circuits("j2") == ['{"circuit": 0}', '{"circuit": 0}', '{"circuit": 2}']
            assert store.load_results("j2") == {0: '{"r": 0}', 1: '{"r": 1}'}
        finally:
            store.close()
    with sqlite3.connect(path) as db:
        assert "circuit" not in {row[1] for row in db.execute("PRAGMA table_info(items)")}
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == ("3",)
    store = Store(path)
    try:
        store.delete_job("j2")  # its circuits go with it
        assert store.find_jobs() == []
        assert store._query("SELECT count(*) FROM circuits") == [(0,)]
    finally:
        store.close()


@pytest.mark.slow
def test_an_old_store_that_cannot_be_upgraded_is_still_read(tmp_path):
    # A schema-2 store in a home this user may not write: read where its circuits are.
    if os.geteuid() != 0:
        pytest.fail("this test drops root privileges to make the home read-only; run as root (CI does)")
    folder = Path(tempfile.mkdtemp(prefix="qnb-old-readonly-"))  # /tmp: open to other users
    try:
        os.chmod(folder, 0o755)
        path = folder / "qnb.sqlite3"
        with sqlite3.connect(path) as db:
            db.executescript(SCHEMA_2)
        os.chmod(path, 0o644)
        script = (
            "import os; from qnb._store import Store; os.setuid(65534); "
            f"store = Store({str(path)!r}); "
            "print(store.read_only, store.load_circuits('j2'), store.load_results('j2')[1])"
        )
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        assert done.stdout.strip() == (
            "True ['{\"circuit\": 0}', '{\"circuit\": 0}', '{\"circuit\": 2}'] {\"r\": 1}"
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
