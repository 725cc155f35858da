"""Every job of this user, kept current for the jobs panel: the shared store (every
kernel, script and command line on this machine writes it) and the queue servers of the
targets file.

The store is watched cheaply: ``PRAGMA data_version`` on an open connection (the file's
size and mtime where the store has no such method), every :data:`STORE_SECONDS`; only a
change reads the jobs again, off the server's event loop. Queue servers are asked for
this user's jobs every :data:`SERVER_SECONDS`, each with a deadline; one that does not
answer is shown as unreachable. Rows carry the version of their last change, so a page
asks for "everything after version v" (a long poll) and gets a patch. Nothing here
imports Cirq: the Jupyter server starts as quickly as before.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import time
from pathlib import Path

import httpx

from .. import _config, _views
from .._core import _ownership
from .._records import JobRecord
from .._status import JobStatus

logger = logging.getLogger("qnb")

#: How often the store's change counter is read (a SQLite pragma: microseconds).
STORE_SECONDS = 0.25
#: How often the queue servers of the targets file are asked for this user's jobs.
SERVER_SECONDS = 1.0
#: The deadline of one question to a queue server.
SERVER_TIMEOUT = 2.0
#: How often dead processes' unfinished jobs are looked for (they end "interrupted").
RECOVER_SECONDS = 5.0
#: With no page asking for this long, watching stops (it starts again on the next ask).
IDLE_STOP_SECONDS = 60.0
#: The newest jobs shown, at most.
LIMIT = 10_000
#: Removed rows remembered for patches; a page further behind gets a full snapshot.
KEPT_REMOVALS = 5_000


def process_of(owner: str | None) -> int | None:
    """The process id in an owner name (``"<pid>-<random>"``), if there is one."""
    if not owner:
        return None
    head = owner.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def panel_row(rec: JobRecord, *, servers: set[str]) -> dict:
    """A job as the panel shows it: its fields (``qnb._views.job_fields``), its items'
    outcomes, and where it came from as far as the store knows."""
    row = _views.job_fields(rec)
    counted = collections.Counter(item.status.value for item in rec.items)
    row.update({outcome: counted[outcome] for outcome in ("completed", "failed", "cancelled")})
    again = _views.retrying(rec)
    if again is not None:
        row["retrying"] = again
    pid = process_of(rec.owner)
    row["owner"] = rec.owner
    row["pid"] = pid
    row["server"] = rec.target if rec.target in servers else None
    row["source"] = "store"
    if rec.origin:
        row["origin"] = rec.origin if pid is None else f"{rec.origin} (process {pid})"
    elif rec.owner:
        row["origin"] = f"process {pid}" if pid is not None else rec.owner
    elif row["server"]:
        row["origin"] = f"sent to {rec.target}"
    else:
        row["origin"] = ""
    return row


def server_row(view: dict, server: str) -> dict:
    """A queue server's job (``GET /v1/jobs``) as a panel row. The server lists jobs
    without their items: a finished job's items are counted by its status."""
    done, total, status = int(view.get("done") or 0), int(view.get("total") or 0), view.get("status")
    row = {key: view.get(key) for key in (
        "id", "name", "target", "user", "shots", "status", "time_added", "time_started",
        "time_finished", "error", "parent_id", "priority", "done", "total", "unit",
    )}  # fmt: skip
    row["target"] = server  # the server calls its device by its own name
    row["completed"] = done if status == "completed" else 0
    row["failed"] = done if status == "failed" else 0
    row["cancelled"] = done if status == "cancelled" else 0
    if status in ("running", "cancelling"):
        row["completed"] = done
    row.update(owner=None, pid=None, server=server, source="server", origin=f"queue server {server}")
    row["total"] = total
    # The server's estimate of what is left (it sees every user's queue) and the cost.
    row.update({key: view[key] for key in ("estimate", "cost", "currency", "tags") if view.get(key) is not None})
    return row


def merged(store_rows: dict[str, dict], server_rows: dict[str, dict]) -> dict[str, dict]:
    """Store rows, with a queue server's word on a job's state where the store's copy is
    unfinished (no process may be following it now); the server's other jobs added."""
    out = dict(store_rows)
    for job_id, srow in server_rows.items():
        mine = out.get(job_id)
        if mine is None:
            out[job_id] = srow
        elif JobStatus(mine["status"]).is_terminal:
            continue
        elif srow["status"] == mine["status"]:
            if "estimate" in srow and srow["estimate"] != mine.get("estimate"):
                # The server estimates every job in its queue; this process has none.
                out[job_id] = {**mine, "estimate": srow["estimate"]}
        else:
            fresher = dict(mine)
            for key in ("status", "time_started", "time_finished", "error", "done"):
                fresher[key] = srow[key]
            fresher.pop("estimate", None)  # the server's estimate, or none: never a stale one
            if "estimate" in srow:
                fresher["estimate"] = srow["estimate"]
            if srow["status"] in ("completed", "failed", "cancelled") and fresher["done"] == fresher["total"]:
                fresher[srow["status"]] = fresher["total"] - sum(
                    fresher[s] for s in ("completed", "failed", "cancelled") if s != srow["status"]
                )
            out[job_id] = fresher
    return out


class ServerWatch:
    """One queue server of the targets file: its jobs for this user, or why not."""

    def __init__(self, name: str, entry: dict):
        self.name = name
        self.url = str(entry.get("url", "")).rstrip("/")
        token = entry.get("token")
        if token is None and "token_env" in entry:
            token = os.environ.get(entry["token_env"])
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.AsyncClient(base_url=self.url, headers=headers, timeout=SERVER_TIMEOUT)
        self.user: str | None = None
        self.rows: dict[str, dict] = {}
        self.state = {"name": name, "url": self.url, "reachable": None, "error": None, "checked": None}

    async def read(self) -> bool:
        """Ask once (within :data:`SERVER_TIMEOUT`); True if anything shown changed."""
        before = (dict(self.state), self.rows)
        try:
            jobs = await asyncio.wait_for(self._jobs(), SERVER_TIMEOUT)
            self.rows = {view["id"]: server_row(view, self.name) for view in jobs}
            self.state.update(reachable=True, error=None)
        except Exception as exc:  # noqa: BLE001 - any failure: shown as unreachable, never raised
            self.state.update(reachable=False, error=_why(exc))
            # Its jobs stay listed as last seen (the store has those sent from here).
        self.state["checked"] = time.time()
        return (before[0]["reachable"], before[0]["error"]) != (self.state["reachable"], self.state["error"]) or before[1] != self.rows

    async def _jobs(self) -> list[dict]:
        if self.user is None:
            self.user = (await self._get("/v1/whoami"))["user"]
        return (await self._get("/v1/jobs", params={"limit": LIMIT, "user": self.user}))["jobs"]

    async def _get(self, path: str, params: dict | None = None) -> dict:
        response = await self.client.get(path, params=params)
        if response.is_error:
            try:
                detail = response.json().get("detail")
            except ValueError:
                detail = response.text[:200]
            raise RuntimeError(f"{self.url} answered {response.status_code}: {detail}")
        return response.json()

    async def aclose(self) -> None:
        await self.client.aclose()


def _why(exc: BaseException) -> str:
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError)):
        return f"no answer in {SERVER_TIMEOUT:g} s"
    text = str(exc) or type(exc).__name__
    return text[:300]


class JobFeed:
    """The panel's rows and their versions; ``wait(after)`` for a long poll."""

    def __init__(self, home: Path | None = None, *, limit: int = LIMIT):
        self.home = home
        self.limit = limit
        self.version = 0
        self.rows: dict[str, dict] = {}
        self._row_version: dict[str, int] = {}
        self._removed: dict[str, int] = {}  # id -> version of its removal
        self._forgotten = 0  # removals older than this version are no longer kept
        self._store_rows: dict[str, dict] = {}
        self._servers: dict[str, ServerWatch] = {}
        self._store = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._last_asked = time.monotonic()
        self.error: str | None = None
        self.store_path: str | None = None

    # -- what the handlers call --------------------------------------------------------

    async def snapshot(self) -> dict:
        await self._ensure_running()
        return {
            "version": self.version,
            "jobs": list(self.rows.values()),
            "servers": self.server_states(),
            "store": self.store_path,
            "error": self.error,
        }

    async def updates(self, after: int, timeout: float) -> dict:
        """Rows changed after version ``after`` (waiting up to ``timeout`` s for one);
        a full snapshot (``reset``) when ``after`` is older than what is kept."""
        await self._ensure_running()
        deadline = time.monotonic() + timeout
        while self.version <= after:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._last_asked = time.monotonic()
            event = self._changed
            try:
                await asyncio.wait_for(event.wait(), left)
            except (TimeoutError, asyncio.TimeoutError):
                break
        self._last_asked = time.monotonic()
        if after > self.version or after < self._forgotten:
            return {"reset": True, **(await self.snapshot())}
        return {
            "version": self.version,
            "changed": [self.rows[i] for i, v in self._row_version.items() if v > after],
            "removed": [i for i, v in self._removed.items() if v > after],
            "servers": self.server_states(),
            "error": self.error,
        }

    def server_states(self) -> list[dict]:
        return [watch.state for watch in self._servers.values()]

    def row(self, job_id: str) -> dict | None:
        return self.rows.get(job_id)

    async def refresh(self) -> None:
        """Read the store now (after an action, so its answer shows at once)."""
        if self._store is not None:
            await self._read_store()

    # -- watching -----------------------------------------------------------------------

    async def _ensure_running(self) -> None:
        self._last_asked = time.monotonic()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
            await self._first_read()

    async def _first_read(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            if self._store is None:
                self._store = await loop.run_in_executor(None, _ownership.open_for_reading, self.home)
                self.store_path = str(self._store.path)
            await self._read_store()
        except Exception as exc:  # noqa: BLE001 - a broken store is shown, never raised
            self.error = f"cannot read the job store: {exc}"
            logger.warning("qnb jobs panel: %s", self.error)
        self._configure_servers()
        if self._servers:
            await asyncio.gather(*(self._read_server(w) for w in list(self._servers.values())))

    def _configure_servers(self) -> None:
        try:
            wanted = _config.configured_targets()
        except Exception as exc:  # noqa: BLE001 - a bad targets file is shown
            self.error = f"cannot read the targets file: {exc}"
            wanted = {}
        for name in set(self._servers) - set(wanted):
            asyncio.get_running_loop().create_task(self._servers.pop(name).aclose())
        for name, entry in wanted.items():
            if name not in self._servers and "url" in entry:
                self._servers[name] = ServerWatch(name, entry)

    async def _run(self) -> None:
        next_server = next_recover = next_config = time.monotonic()
        stamp = self._stamp()
        try:
            while time.monotonic() - self._last_asked < IDLE_STOP_SECONDS:
                await asyncio.sleep(STORE_SECONDS)
                now = time.monotonic()
                try:
                    if now >= next_config:
                        self._configure_servers()
                        next_config = now + 5.0
                    seen = self._stamp()
                    if seen != stamp:
                        stamp = seen
                        await self._read_store()
                    if now >= next_recover:
                        next_recover = now + RECOVER_SECONDS
                        await self._recover()
                    if self._servers and now >= next_server:
                        next_server = now + SERVER_SECONDS
                        for watch in list(self._servers.values()):
                            asyncio.get_running_loop().create_task(self._read_server(watch))
                except Exception:  # noqa: BLE001 - the watch carries on; the log says why
                    logger.exception("qnb jobs panel: watching the store failed")
        finally:
            self._task = None

    def _stamp(self):
        store = self._store
        if store is None:
            return None
        counter = getattr(store, "data_version", None)
        if counter is not None:
            try:
                return counter()
            except Exception:  # noqa: BLE001 - fall back to the files
                pass
        stamps = []
        for suffix in ("", "-wal"):
            try:
                st = os.stat(f"{store.path}{suffix}")
                stamps.append((st.st_mtime_ns, st.st_size))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    async def _recover(self) -> None:
        store = self._store
        if store is None or store.read_only:
            return
        home = store.path.parent
        loop = asyncio.get_running_loop()
        ids = await loop.run_in_executor(None, _ownership.mark_interrupted, store, home, None)
        if ids:
            await self._read_store()

    async def _read_store(self) -> None:
        loop = asyncio.get_running_loop()
        servers = set(self._servers)
        records = await loop.run_in_executor(None, lambda: self._store.find_jobs(limit=self.limit))
        self._store_rows = {rec.id: panel_row(rec, servers=servers) for rec in records}
        self.error = None if self.error and self.error.startswith("cannot read the job store") else self.error
        self._publish()

    async def _read_server(self, watch: ServerWatch) -> None:
        if await watch.read():
            self._publish(force=True)

    def _publish(self, force: bool = False) -> None:
        server_rows: dict[str, dict] = {}
        for watch in self._servers.values():
            server_rows.update(watch.rows)
        rows = merged(self._store_rows, server_rows)
        version = self.version + 1
        touched = False
        for job_id, row in rows.items():
            if self.rows.get(job_id) != row:
                self._row_version[job_id] = version
                self._removed.pop(job_id, None)
                touched = True
        for job_id in set(self.rows) - set(rows):
            self._row_version.pop(job_id, None)
            self._removed[job_id] = version
            touched = True
        if len(self._removed) > KEPT_REMOVALS:
            for job_id, v in sorted(self._removed.items(), key=lambda kv: kv[1])[: len(self._removed) - KEPT_REMOVALS]:
                self._forgotten = max(self._forgotten, v)
                del self._removed[job_id]
        if not (touched or force):
            return
        self.rows = rows
        self.version = version
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for watch in self._servers.values():
            await watch.aclose()
        if self._store is not None:
            self._store.close()
