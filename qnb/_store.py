"""Persistence of jobs, items and results in SQLite (WAL). All of qnb's SQL is here.

Circuits and results are stored as compact Cirq JSON text. One connection serves the
process; a lock serialises it (SQLite releases the GIL while it works).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from ._errors import StoreError, UnknownJobError
from ._records import ItemRecord, JobRecord
from ._status import JobStatus

# 2: items carry a sweep point (params) and the engine that ran them.
# 3: circuits have a table of their own. SQLite rewrites a whole row on every update, and
#    an item's row is updated as it runs and when its result lands: with its circuit in
#    it (~70 KB of JSON for 350 gates) each of those writes copied the circuit again.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    target        TEXT NOT NULL,
    user          TEXT NOT NULL,
    shots         INTEGER NOT NULL,
    status        TEXT NOT NULL,
    time_added    REAL NOT NULL,
    time_started  REAL,
    time_finished REAL,
    error         TEXT,
    parent_id     TEXT,
    queue_seq     REAL NOT NULL,
    owner         TEXT,
    remote_id     TEXT,
    priority      INTEGER NOT NULL DEFAULT 0,
    origin        TEXT, -- where it was submitted from: a notebook's path, a script
    usage         TEXT, -- JSON: what a vendor says the job used (quantum seconds, cost)
    cost          REAL, -- the cost estimated at submit (NULL: no price known)
    currency      TEXT,
    retries       INTEGER NOT NULL DEFAULT 0, -- runs again of a transiently failed item
    estimate      TEXT  -- JSON: what is left of it, as its runner last estimated (unfinished jobs)
);
CREATE INDEX IF NOT EXISTS jobs_by_time ON jobs (time_added);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, owner);
-- A target's history and spending (ETAs, budgets) are read by target, newest first.
CREATE INDEX IF NOT EXISTS jobs_by_target ON jobs (target, time_added);
CREATE TABLE IF NOT EXISTS circuits (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    circuit TEXT NOT NULL,  -- Cirq JSON, or "@k": the same circuit as item k (sweeps)
    PRIMARY KEY (job_id, idx)
);
-- A job's tags, one row each (a table, not a column, so a search by tag uses an index).
-- Stores written before tags existed gain it empty.
CREATE TABLE IF NOT EXISTS job_tags (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    tag     TEXT NOT NULL,
    idx     INTEGER NOT NULL,  -- the order the user gave them in
    PRIMARY KEY (job_id, tag)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS job_tags_by_tag ON job_tags (tag, job_id);
-- A queue server's submissions by (user, Idempotency-Key): a retried submit finds its job.
CREATE TABLE IF NOT EXISTS idempotency_keys (
    user      TEXT NOT NULL,
    key       TEXT NOT NULL,
    job_id    TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    created   REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (user, key)
) WITHOUT ROWID;
"""

_ITEMS_TABLE = """
CREATE TABLE IF NOT EXISTS {name} (
    job_id  TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    idx     INTEGER NOT NULL,
    label   TEXT NOT NULL,
    status  TEXT NOT NULL,
    error   TEXT,
    result  TEXT,
    params  TEXT,  -- a sweep point's cirq.ParamResolver (Cirq JSON); NULL if not swept
    engine  TEXT,  -- the simulator or device that ran it
    retryable INTEGER,  -- 1: running it again may succeed (a lost worker, a timeout); NULL: not said
    attempts INTEGER NOT NULL DEFAULT 0,  -- transient failures run again (retries=N)
    history  TEXT,  -- JSON list: what those runs failed with, oldest first
    PRIMARY KEY (job_id, idx)
) WITHOUT ROWID;
"""
_ITEM_COLUMNS = "job_id, idx, label, status, error, result, params, engine, retryable, attempts, history"

_JOB_COLUMNS = (
    "id, name, target, user, shots, status, time_added, time_started, time_finished, "
    "error, parent_id, queue_seq, owner, remote_id, priority, origin, usage, cost, currency, retries, estimate"
)
# Actions asked of the process that runs a job, by another process of the same user
# (cancel, remove, move to front); the owner carries them out and writes the outcome.
# A table of its own, created if missing: older qnb versions simply ignore it.
_REQUESTS_TABLE = """
CREATE TABLE IF NOT EXISTS requests (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id    TEXT NOT NULL,
    action    TEXT NOT NULL,
    requested REAL NOT NULL,
    done      REAL,  -- when it was carried out, refused or given up
    outcome   TEXT   -- the job's status after it, or "error:<code>:<message>", or "expired"
);
CREATE INDEX IF NOT EXISTS requests_open ON requests (done);
"""
# What local items took to run (qnb._core._item_times learns from the newest rows, so a
# new process starts calibrated). A table of its own, created if missing.
_ITEM_TIMES_TABLE = """
CREATE TABLE IF NOT EXISTS item_times (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    engine    TEXT NOT NULL,  -- qsim, cirq, density
    qubits    INTEGER NOT NULL,
    one_qubit_gates INTEGER NOT NULL,
    two_qubit_gates INTEGER NOT NULL,
    multi_qubit_gates INTEGER NOT NULL,
    measurements INTEGER NOT NULL,
    depth     INTEGER NOT NULL,
    terminal  INTEGER NOT NULL,  -- 1: every measurement at the end
    noisy     INTEGER NOT NULL,
    shots     INTEGER NOT NULL,
    seconds   REAL NOT NULL,
    recorded  REAL NOT NULL
);
"""
# Requests answered are kept this long (the requester has read the outcome by then).
REQUESTS_KEPT_SECONDS = 3600.0

# Idempotency keys are kept this long, at most this many, pruned every so many claims.
KEYS_KEPT_SECONDS = 24 * 3600.0
KEYS_KEPT_MOST = 100_000
KEYS_PRUNE_EVERY = 256

# The write-ahead log is copied into the store file (a checkpoint) once about this much
# was written to it, by a thread of its own (see _Checkpoints); SQLite's own checkpoint,
# in the writing thread, stays for a log this long (in pages of 4 KB: 200 MB).
CHECKPOINT_BYTES = 4 << 20
WAL_BACKSTOP_PAGES = 50_000
_PAGE_BYTES = 4096

# A circuit column of "@k": the same circuit as item k of the job (never valid Cirq JSON).
_SAME_AS = "@"
_UNFINISHED = tuple(s.value for s in JobStatus if not s.is_terminal)

logger = logging.getLogger("qnb")


class _ForEstimates:
    """What estimates read (the :class:`Store`'s, apart for its size): the cost spent on a
    target, the history of its jobs, and the ``item_times`` table (what local items
    took: the local time model learns from it)."""

    def spent(self, target: str) -> dict[str | None, float]:
        """The cost estimated at submit of the jobs on ``target``, summed per currency:
        what a ``budget`` counts as spent. Jobs that ended without starting (cancelled in
        the queue, refused) cost nothing."""
        rows = self._query(
            "SELECT currency, SUM(cost) FROM jobs WHERE target=? AND cost IS NOT NULL "
            "AND NOT (time_started IS NULL AND time_finished IS NOT NULL) GROUP BY currency",
            (target,),
        )
        return {currency: total for currency, total in rows}

    def target_history(self, target: str, limit: int = 50) -> list[tuple[float, float, float | None, int, int]]:
        """``(time_added, time_started, time_finished, items, shots)`` of the newest
        ``limit`` jobs on ``target`` that started, newest first (what ETAs learn from)."""
        return self._query(
            "SELECT time_added, time_started, time_finished, "
            "(SELECT COUNT(*) FROM items WHERE items.job_id = jobs.id), shots FROM jobs "
            "WHERE target=? AND time_started IS NOT NULL ORDER BY time_added DESC LIMIT ?",
            (target, limit),
        )

    def add_item_times(self, rows: Sequence[tuple], keep: int) -> None:
        """Append rows (``ItemRun.row``), keeping only the newest ``keep``."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO item_times (engine, qubits, one_qubit_gates, two_qubit_gates, "
                "multi_qubit_gates, measurements, depth, terminal, noisy, shots, seconds, recorded) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                rows,
            )
            db.execute("DELETE FROM item_times WHERE id <= (SELECT MAX(id) FROM item_times) - ?", (keep,))

    def item_times(self, limit: int) -> list[tuple]:
        """The newest ``limit`` rows, oldest first (none in an old store read as it is)."""
        try:
            rows = self._query(
                "SELECT engine, qubits, one_qubit_gates, two_qubit_gates, multi_qubit_gates, "
                "measurements, depth, terminal, noisy, shots, seconds, recorded FROM item_times "
                "ORDER BY id DESC LIMIT ?",
                (limit,),
            )
        except StoreError:
            return []
        return rows[::-1]


class Store(_ForEstimates):
    def __init__(self, path: str | Path):
        self.path = Path(path)
        #: True when the store could be opened for reading only (a read-only home):
        #: jobs can be listed and read, not submitted.
        self.read_only = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError:
            pass  # a read-only home: reading may still work, see _open
        self._lock = threading.Lock()
        self._claims = 0
        self._circuits_in_items = False  # an old store opened read-only (not upgraded)
        self._has_tags = True  # False: an old store opened read-only, without job_tags
        with self._faults("open"):
            self._db = self._open()
        self._checkpoints = _Checkpoints(f"file:{self.path}")

    def _open(self) -> sqlite3.Connection:
        try:
            db = self._connect(f"file:{self.path}")
            self._set_up(db)
            return db
        except sqlite3.OperationalError as exc:
            if not _is_read_only(exc) or not self.path.exists():
                raise
        # A home we may not write: read what is there.
        self.read_only = True
        db = self._connect(f"file:{self.path}?mode=ro&immutable=1")
        self._check_schema(db)
        self._circuits_in_items = "circuit" in _columns(db, "items")  # not upgraded: read as is
        self._has_tags = bool(_columns(db, "job_tags"))
        _show_missing_columns(db)
        return db

    def _connect(self, uri: str) -> sqlite3.Connection:
        return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)

    def _set_up(self, db: sqlite3.Connection) -> None:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA wal_autocheckpoint={WAL_BACKSTOP_PAGES}")  # (see _Checkpoints)
        # NORMAL in WAL mode: a commit survives a process crash (SIGKILL); only an
        # OS crash or power loss can lose the last transactions.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=10000")
        db.execute("PRAGMA foreign_keys=ON")
        self._check_schema(db)
        db.executescript(_SCHEMA + _ITEMS_TABLE.format(name="items") + _REQUESTS_TABLE + _ITEM_TIMES_TABLE)  # idempotent
        _add_missing_columns(db)
        if "created" not in _columns(db, "idempotency_keys"):  # keys written before they expired
            db.execute("ALTER TABLE idempotency_keys ADD COLUMN created REAL NOT NULL DEFAULT 0")
        db.execute("CREATE INDEX IF NOT EXISTS keys_by_age ON idempotency_keys (created)")
        db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )

    def _check_schema(self, db: sqlite3.Connection) -> None:
        """Refuse a store written by a newer qnb: its rows may mean what this code
        does not know."""
        try:
            row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.OperationalError:
            return  # a new file: no meta table yet
        if row is None:
            return
        version = _schema_version(self.path, row[0])
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the job store {self.path} was written by a newer qnb (schema {row[0]}; "
                f"this qnb knows {SCHEMA_VERSION}): upgrade qnb (pip install -U qnb), or "
                "set QNB_HOME to another folder"
            )

    @contextlib.contextmanager
    def _faults(self, doing: str) -> Iterator[None]:
        """SQLite's errors as a StoreError that names the file and the fix."""
        try:
            yield
        except StoreError:
            raise
        except sqlite3.DatabaseError as exc:
            raise StoreError(_explain(self.path, doing, exc)) from exc

    def close(self) -> None:
        self._checkpoints.close()
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _transaction(self, written: int = 0) -> Iterator[sqlite3.Connection]:
        """``written``: about how many bytes of text it writes (circuits, results)."""
        if self.read_only:
            raise StoreError(
                f"the job store {self.path} is read-only here: jobs can be listed and read, "
                "not changed; make its folder writable, or set QNB_HOME to a writable folder"
            )
        with self._lock, self._faults("write"):
            with _immediate(self._db) as db:
                yield db
            self._checkpoints.wrote(written + _PAGE_BYTES * 2)

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        with self._lock, self._faults("read"):
            return self._db.execute(sql, params).fetchall()

    # -- writes ---------------------------------------------------------------------

    def insert_job(
        self, job: JobRecord, circuits: Sequence[str], results: dict[int, str]
    ) -> None:
        """Insert a job and all its items in one transaction (all or nothing).

        A circuit that several items share (the points of a sweep) is written once."""
        # Shared by identity: the items of one circuit hold one text (CircuitTexts, a
        # stored job's texts). Comparing by value would hash every text: ~40 us for
        # 70 KB, a quarter of what writing it costs.
        texts = list(circuits)  # (held: an id is an object's only while it lives)
        first: dict[int, int] = {}
        stored = [
            text if first.setdefault(id(text), i) == i else f"{_SAME_AS}{first[id(text)]}"
            for i, text in enumerate(texts)
        ]
        with self._transaction(written=sum(map(len, stored))) as db:
            db.execute(
                f"INSERT INTO jobs ({_JOB_COLUMNS}) VALUES ({','.join('?' * _JOB_COLUMNS.count(','))},?)",
                _job_row(job),
            )
            db.executemany(
                f"INSERT INTO items ({_ITEM_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (job.id, i, it.label, it.status.value, it.error, results.get(i), it.params,
                     it.engine, it.retryable, it.attempts, _history_text(it.history))
                    for i, it in enumerate(job.items)
                ],
            )
            db.executemany(
                "INSERT INTO circuits (job_id, idx, circuit) VALUES (?,?,?)",
                [(job.id, i, text) for i, text in enumerate(stored)],
            )
            db.executemany("INSERT INTO job_tags (job_id, tag, idx) VALUES (?,?,?)",
                           [(job.id, tag, i) for i, tag in enumerate(job.tags)])  # fmt: skip

    def save(self, changes: Changes) -> None:
        """Write changes taken by :func:`changes_of` (one transaction)."""
        with self._transaction(written=sum(len(row[0]) for row in changes.results)) as db:
            db.executemany(
                "UPDATE jobs SET status=?, time_started=?, time_finished=?, error=?, "
                "queue_seq=?, priority=?, remote_id=?, usage=?, estimate=? WHERE id=?",
                changes.jobs,
            )
            db.executemany(
                "UPDATE items SET status=?, error=?, engine=?, retryable=?, attempts=?, history=? "
                "WHERE job_id=? AND idx=?",
                changes.items,
            )
            db.executemany("UPDATE items SET result=? WHERE job_id=? AND idx=?", changes.results)

    def save_whole(self, jobs: Sequence[JobRecord]) -> None:
        """Write jobs' rows and all their items' statuses as they are now (a restart's
        recovery, decided by the lifecycle), in one transaction."""
        with self._transaction() as db:
            db.executemany(
                "UPDATE jobs SET status=?, time_started=?, time_finished=?, error=?, "
                "queue_seq=?, priority=?, remote_id=?, usage=?, estimate=?, owner=? WHERE id=?",
                [(*_job_changes(job)[:-1], job.owner, job.id) for job in jobs],
            )
            db.executemany(
                "UPDATE items SET status=?, error=?, retryable=?, attempts=?, history=? "
                "WHERE job_id=? AND idx=?",
                [(it.status.value, it.error, it.retryable, it.attempts, _history_text(it.history), job.id, i)
                 for job in jobs for i, it in enumerate(job.items)],
            )

    # -- changes kept beside the store when it cannot be written (disk full at exit) ----

    def keep_for_later(self, changes: Changes, owner: str) -> Path:
        """Write ``changes`` to a file beside the store, for the next process to apply
        (:meth:`apply_kept`): a process that exits while the store cannot be written
        loses no finished job. Raises ``OSError`` when that file cannot be written either."""
        path = self.path.with_name(f"{self.path.name}.unsaved-{owner}.json")
        partial = path.with_suffix(".part")
        partial.write_text(json.dumps(dataclasses.asdict(changes)))
        partial.replace(path)  # whole or not at all
        return path

    def apply_kept(self) -> list[Path]:
        """Apply (then delete) the changes earlier processes kept beside the store."""
        applied = []
        for path in sorted(self.path.parent.glob(f"{self.path.name}.unsaved-*.json")):
            try:
                kept = json.loads(path.read_text())
                changes = Changes(*([tuple(row) for row in kept[k]] for k in ("jobs", "items", "results")))
                # Kept before items said whether they are retryable: (status, error, engine, id, idx);
                # before retries: (status, error, engine, retryable, id, idx).
                changes.items[:] = [_item_change_now(r) for r in changes.items]
                changes.jobs[:] = [_job_change_now(r) for r in changes.jobs]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise StoreError(
                    f"cannot read {path}, the changes a process kept when the job store "
                    f"could not be written ({exc}); move it away to go on without them"
                ) from None
            self.save(changes)
            path.unlink(missing_ok=True)
            applied.append(path)
        return applied

    def delete_job(self, job_id: str) -> None:
        """Remove a job its target refused before it ever ran (items go with it)."""
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE id=?", (job_id,))

    def claim_idempotency_key(
        self,
        user: str,
        key: str,
        job_id: str,
        body_hash: str,
        *,
        now: float | None = None,
        keep_seconds: float = KEYS_KEPT_SECONDS,
        keep_most: int = KEYS_KEPT_MOST,
    ) -> tuple[str, str]:
        """Bind ``key`` to ``job_id`` unless it is bound already; the binding that holds.

        Keys expire: those older than ``keep_seconds``, and beyond the newest
        ``keep_most``, are forgotten (a retry comes within minutes, not days)."""
        now = time.time() if now is None else now
        with self._transaction() as db:
            self._claims += 1
            if self._claims % KEYS_PRUNE_EVERY == 1:
                db.execute("DELETE FROM idempotency_keys WHERE created < ?", (now - keep_seconds,))
                db.execute(
                    "DELETE FROM idempotency_keys WHERE created <= (SELECT created FROM "
                    "idempotency_keys ORDER BY created DESC LIMIT 1 OFFSET ?)",
                    (keep_most,),
                )
            db.execute(
                "INSERT OR IGNORE INTO idempotency_keys (user, key, job_id, body_hash, created) "
                "VALUES (?,?,?,?,?)",
                (user, key, job_id, body_hash, now),
            )
            row = db.execute(
                "SELECT job_id, body_hash FROM idempotency_keys WHERE user=? AND key=?",
                (user, key),
            ).fetchone()
        return row[0], row[1]

    # -- reads ----------------------------------------------------------------------

    def unfinished_owners(self) -> set[str]:
        marks = ",".join("?" * len(_UNFINISHED))
        rows = self._query(
            f"SELECT DISTINCT owner FROM jobs WHERE owner IS NOT NULL AND status IN ({marks})",
            _UNFINISHED,
        )
        return {r[0] for r in rows}

    def followed_targets(self) -> set[str]:
        """Targets with unfinished jobs that no process runs here (a server or vendor
        runs them; this store follows them)."""
        marks = ",".join("?" * len(_UNFINISHED))
        rows = self._query(
            f"SELECT DISTINCT target FROM jobs WHERE owner IS NULL AND status IN ({marks})",
            _UNFINISHED,
        )
        return {r[0] for r in rows}

    def unfinished_jobs(self, owners: Sequence[str]) -> list[JobRecord]:
        """The unfinished jobs of ``owners``, in queue order."""
        marks = ",".join("?" * len(owners))
        unfinished = ",".join("?" * len(_UNFINISHED))
        rows = self._query(
            f"SELECT {_JOB_COLUMNS} FROM jobs WHERE owner IN ({marks}) "
            f"AND status IN ({unfinished}) ORDER BY priority DESC, queue_seq",
            (*owners, *_UNFINISHED),
        )
        return self._with_items(rows)

    def load_job(self, job_id: str) -> JobRecord | None:
        rows = self._query(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,))
        if not rows:
            return None
        return self._with_items(rows)[0]

    def find_jobs(
        self, *, status: Sequence[str] | None = None, target: str | None = None,
        user: str | None = None, tags: Sequence[str] = (), name: str | None = None,
        since: float | None = None, limit: int = 100,
    ) -> list[JobRecord]:  # fmt: skip
        """Newest first, filtered as :func:`_search` says."""
        if tags and not self._has_tags:
            return []  # an old store opened read-only: no job has tags
        where, params = _search(status=status, target=target, user=user, tags=tags, name=name, since=since)
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs{where} ORDER BY time_added DESC, rowid DESC LIMIT ?"
        return self._with_items(self._query(sql, (*params, limit)))

    def ids_with_prefix(self, prefix: str, limit: int = 2) -> list[str]:
        # Ids are lowercase hex, so LIKE's wildcards cannot appear in a valid prefix.
        if not prefix or any(ch in prefix for ch in "%_"):
            return []
        rows = self._query("SELECT id FROM jobs WHERE id LIKE ? LIMIT ?", (prefix + "%", limit))
        return [r[0] for r in rows]

    # -- actions asked across processes -----------------------------------------------------

    def data_version(self) -> int:
        """Changes when another connection (another process) commits to the store: a
        cheap way to notice that there may be something new to read."""
        return self._query("PRAGMA data_version")[0][0]

    def add_request(self, job_id: str, action: str) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO requests (job_id, action, requested) VALUES (?,?,?)",
                (job_id, action, time.time()),
            )
            # Old answered requests go as new ones come: the table stays small.
            db.execute("DELETE FROM requests WHERE done < ?", (time.time() - REQUESTS_KEPT_SECONDS,))
            return cursor.lastrowid

    def open_requests(self) -> list[tuple[int, str, str]]:
        """``(request id, job id, action)`` of requests nobody has answered, oldest first."""
        return self._query("SELECT id, job_id, action FROM requests WHERE done IS NULL ORDER BY id")

    def answer_request(self, request_id: int, outcome: str) -> bool:
        """Answer a request once: False when it was answered (or given up) already."""
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE requests SET done=?, outcome=? WHERE id=? AND done IS NULL",
                (time.time(), outcome, request_id),
            )
            return cursor.rowcount == 1

    def request_outcome(self, request_id: int) -> str | None:
        rows = self._query("SELECT outcome FROM requests WHERE id=? AND done IS NOT NULL", (request_id,))
        return rows[0][0] if rows else None

    def resolve(self, reference: str) -> JobRecord:
        """A job by its id or a unique prefix of it."""
        found = self.load_job(reference)
        if found is not None:
            return found
        ids = self.ids_with_prefix(reference.lower())
        if not ids:
            raise UnknownJobError(f"no job id starts with {reference!r}")
        if len(ids) > 1:
            raise UnknownJobError(f"job id prefix {reference!r} is ambiguous; give more characters")
        return self.load_job(ids[0])

    def load_results(self, job_id: str) -> dict[int, str]:
        rows = self._query(
            "SELECT idx, result FROM items WHERE job_id=? AND result IS NOT NULL", (job_id,)
        )
        return dict(rows)

    def load_circuits(self, job_id: str) -> list[str]:
        table = "items" if self._circuits_in_items else "circuits"
        rows = self._query(f"SELECT circuit FROM {table} WHERE job_id=? ORDER BY idx", (job_id,))
        texts = [r[0] for r in rows]
        return [texts[int(t[1:])] if t.startswith(_SAME_AS) else t for t in texts]

    def _with_items(self, job_rows: list[tuple]) -> list[JobRecord]:
        if not job_rows:
            return []
        ids = [r[0] for r in job_rows]
        items: dict[str, list[ItemRecord]] = {i: [] for i in ids}
        # Chunked: SQLite limits the number of bound parameters.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for job_id, label, status, error, params, engine, retryable, attempts, history in self._query(
                "SELECT job_id, label, status, error, params, engine, retryable, attempts, history FROM items "
                f"WHERE job_id IN ({','.join('?' * len(chunk))}) ORDER BY job_id, idx",
                chunk,
            ):
                items[job_id].append(ItemRecord(
                    label, JobStatus(status), error, params, engine,
                    None if retryable is None else bool(retryable),
                    attempts or 0, tuple(json.loads(history)) if history else (),
                ))  # fmt: skip
        tags = _tags_of(self._query, ids) if self._has_tags else {}
        return [_record_from_row(row, items[row[0]], tags.get(row[0], ())) for row in job_rows]


def _tags_of(query, ids: list[str]) -> dict[str, tuple[str, ...]]:
    """The tags of jobs ``ids``, in the order given (jobs without tags are left out)."""
    found: dict[str, list[str]] = {}
    for start in range(0, len(ids), 500):  # (SQLite limits the number of bound parameters)
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for job_id, tag in query(f"SELECT job_id, tag FROM job_tags WHERE job_id IN ({marks}) ORDER BY job_id, idx", chunk):
            found.setdefault(job_id, []).append(tag)
    return {job_id: tuple(tags) for job_id, tags in found.items()}


def _search(
    *, status: Sequence[str] | None, target: str | None, user: str | None,
    tags: Sequence[str], name: str | None, since: float | None,
) -> tuple[str, list]:  # fmt: skip
    """The WHERE clause (with its parameters) of a search: ``status`` one of these,
    ``tags`` every one of them (by the tags' index), ``name`` containing this text (any
    case), ``since`` added at or after (epoch seconds)."""
    where, params = [], []
    if status:
        where.append(f"status IN ({','.join('?' * len(status))})")
        params.extend(status)
    for column, value in (("target", target), ("user", user)):
        if value is not None:
            where.append(f"{column}=?")
            params.append(value)
    if tags:
        where.append(f"id IN (SELECT job_id FROM job_tags WHERE tag IN ({','.join('?' * len(tags))}) "
                     "GROUP BY job_id HAVING COUNT(*) = ?)")  # fmt: skip
        params.extend([*tags, len(tags)])
    if name:
        where.append("instr(lower(name), ?) > 0")
        params.append(name.lower())
    if since is not None:
        where.append("time_added >= ?")
        params.append(since)
    return (" WHERE " + " AND ".join(where) if where else ""), params


#: Columns added since the first schema: (table, column, its SQL type), in the order
#: they came. A store written before one gains it (empty) when opened for writing.
_ADDED_COLUMNS = (
    ("jobs", "priority", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "origin", "TEXT"),  # where it was submitted from
    ("jobs", "usage", "TEXT"),  # what a vendor says it used
    ("jobs", "cost", "REAL"),
    ("jobs", "currency", "TEXT"),
    ("jobs", "retries", "INTEGER NOT NULL DEFAULT 0"),
    ("jobs", "estimate", "TEXT"),
    ("items", "params", "TEXT"),  # sweeps
    ("items", "engine", "TEXT"),
    ("items", "retryable", "INTEGER"),  # failures say whether a rerun may cure them
    ("items", "attempts", "INTEGER NOT NULL DEFAULT 0"),  # retries
    ("items", "history", "TEXT"),
)


def _show_missing_columns(db: sqlite3.Connection) -> None:
    """A store an older qnb wrote, opened read-only (it cannot gain columns): temporary
    views of its tables with today's columns, empty (SQLite finds a temporary view
    before the file's table of the same name), so every query reads it as it is."""
    for table in ("jobs", "items"):
        present = _columns(db, table)
        missing = [(column, kind) for t, column, kind in _ADDED_COLUMNS if t == table and column not in present]
        if missing:
            added = ", ".join(f"{'0' if 'DEFAULT 0' in kind else 'NULL'} AS {column}" for column, kind in missing)
            db.execute(f"CREATE TEMP VIEW {table} AS SELECT *, {added} FROM main.{table}")


def _add_missing_columns(db: sqlite3.Connection) -> None:
    """Bring a store written by an older qnb up to today's columns (schema 1-2 stores
    also have their circuits moved out of the items' rows)."""
    present = {table: _columns(db, table) for table in ("jobs", "items")}
    for table, column, kind in _ADDED_COLUMNS:
        if column not in present[table]:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
    if "circuit" in present["items"]:  # schema 1-2: circuits inside the items' rows
        _move_circuits_out(db)


def _schema_version(path: Path, value: object) -> int:
    """The store's schema version; one that is not a whole number >= 1 means the file
    was damaged or written by something else: said, never read on as if it were ours."""
    try:
        version = int(value) if isinstance(value, (str, int)) else 0
    except ValueError:
        version = 0
    if version < 1:
        raise StoreError(
            f"the job store {path} has the schema version {value!r}, which no qnb writes "
            f"(a whole number, {SCHEMA_VERSION} today): the file is damaged or not qnb's. "
            f"Move it aside (mv {path} {path}.bad) and qnb starts a new store, or set "
            "QNB_HOME to another folder"
        )
    return version


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def _move_circuits_out(db: sqlite3.Connection) -> None:
    """Schema 3: the circuits of a store written before it move to their own table and
    the items' table is rebuilt without them (all in one transaction; SQLite's own way
    to drop a column on any version)."""
    with _immediate(db):
        if "circuit" in _columns(db, "items"):  # (another process may have done it)
            # (Items of no job, which the first schema did not prevent, go with the table.)
            db.execute("INSERT OR IGNORE INTO circuits (job_id, idx, circuit) SELECT job_id, "
                       "idx, circuit FROM items WHERE job_id IN (SELECT id FROM jobs)")
            db.execute(_ITEMS_TABLE.format(name="items_without_circuits"))
            db.execute(f"INSERT INTO items_without_circuits ({_ITEM_COLUMNS}) SELECT "
                       f"{_ITEM_COLUMNS} FROM items WHERE job_id IN (SELECT id FROM jobs)")
            db.execute("DROP TABLE items")
            db.execute("ALTER TABLE items_without_circuits RENAME TO items")


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction on ``db``, taking the write lock at once: committed at the
    end, rolled back on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _is_read_only(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def _explain(path: Path, doing: str, exc: sqlite3.DatabaseError) -> str:
    text = str(exc)
    lowered = text.lower()
    if "full" in lowered:
        fix = "free disk space (the changes are kept in memory and written again)"
    elif "not a database" in lowered or "malformed" in lowered or "corrupt" in lowered:
        fix = (f"it is damaged: move it aside (mv {path} {path}.bad) and qnb starts a new "
               "store, or set QNB_HOME to another folder")  # fmt: skip
    elif "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        fix = "make its folder writable, or set QNB_HOME to a writable folder"
    elif "locked" in lowered or "busy" in lowered:
        fix = "another process holds it locked; try again"
    else:
        fix = "check the file and its folder, or set QNB_HOME to another folder"
    return f"cannot {doing} the job store {path} ({text}): {fix}"


class _Checkpoints:
    """Checkpoints of a store's write-ahead log, on a thread of their own.

    SQLite copies the log into the store file in the transaction that takes it past its
    threshold (1,000 pages), and waits for the disk twice: the submit of a 300-circuit
    job (21 MB of circuits) paid ~0.1 ms of CPU and ~0.1-0.3 ms of waiting a circuit for
    it, before its job could be acknowledged. Here a thread with its own connection
    copies the log (PASSIVE: never in the way of a writer or a reader) once about
    ``CHECKPOINT_BYTES`` were written since the last copy. Durability is unchanged: a
    commit is on disk in the log either way."""

    def __init__(self, uri: str):
        self._uri = uri
        self._written = 0  # (changed under the store's lock only)
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None

    def wrote(self, nbytes: int) -> None:
        self._written += nbytes
        if self._written < CHECKPOINT_BYTES or self._closing:
            return
        self._written = 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qnb-store-checkpoints", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        db = sqlite3.connect(self._uri, uri=True, check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA synchronous=NORMAL")  # (as the store's: the log, then the file)
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closing:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.DatabaseError as exc:  # the next one (or SQLite's own) copies it
                    logger.debug("qnb: a checkpoint of %s failed: %s", self._uri, exc)
        finally:
            db.close()

    def close(self) -> None:
        """Stop the thread (a checkpoint under way ends first; the last connection to
        close checkpoints what is left)."""
        self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


@dataclasses.dataclass
class Changes:
    """Rows to write, taken from records at one moment (see :func:`changes_of`)."""

    jobs: list[tuple]
    items: list[tuple]
    results: list[tuple]


def queue_order(job: JobRecord) -> tuple[int, float]:
    """The sort key of a queue: higher priority first, then queue order."""
    return (-job.priority, job.queue_seq)


def changes_of(jobs: Iterable[JobRecord]) -> Changes:
    """The rows for ``jobs``' current state, their ``dirty_items`` and unsaved results.

    Taken under the JobManager's lock; written later, outside it, by :meth:`Store.save`.
    """
    changes = Changes([], [], [])
    for job in jobs:
        changes.jobs.append(_job_changes(job))
        changes.items.extend(
            (job.items[i].status.value, job.items[i].error, job.items[i].engine,
             job.items[i].retryable, job.items[i].attempts, _history_text(job.items[i].history),
             job.id, i)
            for i in job.live.dirty_items
        )
        changes.results.extend((text, job.id, i) for i, text in job.live.unsaved_results.items())
    return changes


def _job_changes(job: JobRecord) -> tuple:
    return (job.status.value, job.time_started, job.time_finished, job.error,
            job.queue_seq, job.priority, job.remote_id, _usage_text(job.usage),
            _estimate_text(job), job.id)  # fmt: skip


def _estimate_text(job: JobRecord) -> str | None:
    """The job's latest estimate for other processes (the CLI, the jobs panel) to show;
    cleared once it ends."""
    estimate = job.live.estimate
    return None if estimate is None or job.done else json.dumps(estimate.as_json())


def _usage_text(usage: dict | None) -> str | None:
    return None if usage is None else json.dumps(usage, sort_keys=True)


def _history_text(history: Sequence[str]) -> str | None:
    return json.dumps(list(history)) if history else None


def _job_change_now(row: Sequence) -> tuple:
    """A job's row of kept changes in today's form (written by an older qnb): before
    vendors' usage (status .. remote_id, id), before stored estimates (.. usage, id)."""
    if len(row) == 8:
        row = (*row[:7], None, row[7])
    if len(row) == 9:
        row = (*row[:8], None, row[8])
    return tuple(row)


def _item_change_now(row: Sequence) -> tuple:
    """An item's row of kept changes in today's form (written by an older qnb)."""
    if len(row) == 5:  # (status, error, engine, id, idx)
        row = (*row[:3], None, *row[3:])
    if len(row) == 6:  # (status, error, engine, retryable, id, idx)
        row = (*row[:4], 0, None, *row[4:])
    return tuple(row)


def _job_row(job: JobRecord) -> tuple:
    return (
        job.id,
        job.name,
        job.target,
        job.user,
        job.shots,
        job.status.value,
        job.time_added,
        job.time_started,
        job.time_finished,
        job.error,
        job.parent_id,
        job.queue_seq,
        job.owner,
        job.remote_id,
        job.priority,
        job.origin,
        _usage_text(job.usage),
        job.cost,
        job.currency,
        job.retries,
        _estimate_text(job),
    )


def _record_from_row(row: tuple, items: list[ItemRecord], tags: tuple[str, ...] = ()) -> JobRecord:
    (job_id, name, target, user, shots, status, t_add, t_start, t_end, error, parent,
     seq, owner, remote_id, priority, origin, usage, cost, currency, retries, estimate) = row  # fmt: skip
    return JobRecord(
        id=job_id,
        name=name,
        target=target,
        user=user,
        shots=shots,
        items=items,
        time_added=t_add,
        status=JobStatus(status),
        time_started=t_start,
        time_finished=t_end,
        error=error,
        parent_id=parent,
        queue_seq=seq,
        owner=owner,
        remote_id=remote_id,
        priority=priority,
        origin=origin,
        usage=None if usage is None else json.loads(usage),
        tags=tags,
        cost=cost,
        currency=currency,
        retries=retries or 0,
        saved_estimate=json.loads(estimate) if estimate else None,
    )
