"""Store faults read as a StoreError naming the file and the fix, never raw SQLite; a
failed write keeps the state in memory and writes it again; a read-only home still
lets you read."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import qnb
from qnb import JobStatus
from qnb._store import SCHEMA_VERSION, Store
from conftest import BELL_QASM, new_process_manager, wait_until


def test_a_corrupt_store_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / "qnb.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(qnb.StoreError, match=rf"{path}.*damaged.*mv .*\.bad"):
        Store(path)


def test_a_store_from_a_newer_qnb_is_refused(tmp_path):
    path = tmp_path / "qnb.sqlite3"
    Store(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    with pytest.raises(qnb.StoreError, match="newer qnb.*upgrade qnb"):
        Store(path)


def test_an_older_store_is_upgraded_in_place(tmp_path):
    path = tmp_path / "qnb.sqlite3"
    with sqlite3.connect(path) as db:  # the schema of version 1, before sweeps
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
            "INSERT INTO meta VALUES ('schema_version', '1');"
            "CREATE TABLE items (job_id TEXT NOT NULL, idx INTEGER NOT NULL, label TEXT NOT NULL,"
            " circuit TEXT NOT NULL, status TEXT NOT NULL, error TEXT, result TEXT,"
            " PRIMARY KEY (job_id, idx)) WITHOUT ROWID;"
        )
    Store(path).close()
    with sqlite3.connect(path) as db:
        columns = {row[1] for row in db.execute("PRAGMA table_info(items)")}
        version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    assert {"params", "engine"} <= columns and "circuit" not in columns
    assert version == str(SCHEMA_VERSION)


def test_a_full_disk_keeps_results_in_memory_and_says_so(manager):
    db = manager.store._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    job = qnb.submit([BELL_QASM] * 40, shots=2000)  # ~40 results of 2000 shots
    db.execute(f"PRAGMA max_page_count = {pages + 20}")  # the disk fills up
    with pytest.raises(qnb.StoreError, match=rf"{manager.store.path}.*full"):
        job.result(timeout=60)
    assert manager.store_error is not None
    stored = manager.store.load_job(job.id)
    assert stored.status is not JobStatus.COMPLETED or len(manager.store.load_results(job.id)) == 40
    db.execute("PRAGMA max_page_count = 1073741823")  # space again: the retry writes it all
    result = job.result(timeout=60)
    assert len(result) == 40
    wait_until(lambda: manager.store_error is None, timeout=10, what="the store written again")
    assert manager.store.load_job(job.id).status is JobStatus.COMPLETED
    assert len(manager.store.load_results(job.id)) == 40


@pytest.mark.slow
def test_a_read_only_home_can_still_be_read():
    # Under /tmp itself: pytest's own tmp folders are closed to other users.
    folder = Path(tempfile.mkdtemp(prefix="qnb-readonly-"))
    try:
        _read_only_home(folder / "home")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _read_only_home(home: Path) -> None:
    env = {**os.environ, "QNB_HOME": str(home)}
    with new_process_manager(home):  # the job is made here, read by another process
        assert sum(qnb.run(BELL_QASM, shots=7, timeout=60).counts().values()) == 7
    os.chmod(home, 0o755)
    os.chmod(home.parent, 0o755)
    # As another user (the test runs as root, whom permissions do not stop): everything
    # is imported first, then the process gives up root and opens the store.
    script = textwrap.dedent(
        """
        import os, cirq, qnb, qnb._api, qnb._manager, qnb._job, qnb._results, qnb._store
        os.setuid(65534)
        manager = qnb._manager.JobManager(os.environ["QNB_HOME"])
        qnb._manager.set_manager(manager)
        job = qnb._api.jobs()[0]
        print(manager.store.read_only, job.status.value, sum(job.result().counts().values()))
        try:
            qnb._api.submit(cirq.Circuit(cirq.measure(cirq.q(0))), shots=1)
        except qnb.StoreError as exc:
            print("refused:", exc)
        """
    )
    if os.geteuid() != 0:
        pytest.fail("this test drops root privileges to make the home read-only; run as root (CI does)")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0] == "True completed 7"
    assert lines[1].startswith("refused:") and "read-only" in lines[1] and str(home) in lines[1]


def test_finished_jobs_in_memory_are_bounded(manager, monkeypatch):
    from qnb._core import _persistence

    monkeypatch.setattr(_persistence, "MAX_FINISHED_RECORDS", 5)
    jobs = [qnb.submit(BELL_QASM, shots=5) for _ in range(12)]
    for job in jobs:
        job.result(timeout=60)
    wait_until(lambda: len(manager.live_records()) <= 6, timeout=10, what="old records dropped")
    # Dropped from memory, not from the store: every job still reads in full.
    assert [j.status for j in qnb.jobs(limit=20)].count(JobStatus.COMPLETED) == 12
    assert sum(jobs[0].result().counts().values()) == 5


def test_idempotency_keys_expire(tmp_path):
    store = Store(tmp_path / "qnb.sqlite3")
    claim = store.claim_idempotency_key
    assert claim("alice", "old", "a" * 32, "h1", now=1000.0) == ("a" * 32, "h1")
    assert claim("alice", "old", "b" * 32, "h2", now=1001.0) == ("a" * 32, "h1")  # a retry
    for i in range(300):  # a day later: the old key is pruned on the way
        claim("alice", f"k{i}", f"{i:032x}", "h", now=1000.0 + 86_400 + 10 + i, keep_most=100)
    # The old key is free again; at most the newest 100 (and those since the prune) stay.
    assert claim("alice", "old", "c" * 32, "h3", now=1000.0 + 90_000) == ("c" * 32, "h3")
    count = store._query("SELECT COUNT(*) FROM idempotency_keys")[0][0]
    assert count <= 100 + 256
