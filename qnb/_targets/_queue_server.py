"""Remote targets: a ``qnb serve`` queue server used from a kernel.

``qnb.connect("lab", url, token=...)`` registers a :class:`RemoteTarget`; after that
``qnb.submit(..., target="lab")``, ``qnb.queue("lab")`` and the widgets work as for a
local target. One ``httpx.AsyncClient`` per server runs on the JobManager's loop; job
status follows the server's long-poll event feed (one request in flight per server,
not a poll per job). Jobs keep the same id here and on the server, so the local store
finds them again after a kernel restart and ``connect`` resumes following them.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import os
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cirq
import httpx

from .. import _circuits
from .._device import DeviceSpec
from .._errors import (
    RemoteAuthError,
    RemoteError,
    ServerUnreachableError,
    InvalidCircuitError,
    InvalidOptionError,
    QnbError,
    QueueConflictError,
    QueueError,
    UnknownJobError,
)
from .._manager import JobManager, entry_at, get_manager
from .._status import TERMINAL, JobStatus
from ._simulators import ItemOutcome, Target, TargetJob

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
EVENT_WAIT_SECONDS = 20.0
MAX_BACKOFF_SECONDS = 2.0
# A job submitted while the server is away waits (queued here, "reconnecting") this long
# for it to come back before it fails; its idempotency key makes the retries safe.
SUBMIT_RETRY_SECONDS = 600.0
KEEP_UNCLAIMED_EVENTS = 10_000
BEHIND_A_RESTART = frozenset({JobStatus.PENDING, JobStatus.QUEUED})
STARTED = frozenset({JobStatus.RUNNING, JobStatus.CANCELLING})
# Queue positions for the widgets: read again when the feed shows a change, at most this
# often, and at least this often while jobs of ours wait (other users' changes reach us
# only once the feed is asked for everyone's, see _follow).
POSITIONS_MIN_INTERVAL = 0.2
POSITIONS_REFRESH_SECONDS = 2.0


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except Exception:
        return response.text[:300] or response.reason_phrase
    if isinstance(detail, list):  # FastAPI's validation errors name the field
        return "; ".join(
            f"{'.'.join(str(x) for x in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
        )
    return str(detail)


def _error_for(response: httpx.Response, path: str) -> QnbError:
    status, detail = response.status_code, _detail(response)
    message = f"server answered {status} to {path}: {detail}"
    if status in (401, 403):
        return RemoteAuthError(message, status=status)
    if status == 404:
        return UnknownJobError(message)
    if status == 409 and "/queue/" in path:
        return QueueConflictError(message) if "moved" in detail else QueueError(message)
    if status == 422:
        return InvalidCircuitError(message) if "circuit" in detail else InvalidOptionError(message)
    return RemoteError(message, status=status)


class ServerClient:
    """HTTP to one server: an ``httpx.AsyncClient`` used on the manager's loop, with
    timeouts, and retries with backoff on connection errors, 5xx and 429."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None,
        loop: asyncio.AbstractEventLoop,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.url = url.rstrip("/")
        self.loop = loop
        self.retry_for = retry_for
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, read=EVENT_WAIT_SECONDS + timeout),
            transport=transport,
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        self.connected = True
        self._listeners: list[Callable[[bool], None]] = []

    def on_connection_change(self, listener: Callable[[bool], None]) -> None:
        self._listeners.append(listener)

    def _set_connected(self, connected: bool) -> None:
        if connected is self.connected:
            return
        self.connected = connected
        for listener in list(self._listeners):
            try:
                listener(connected)
            except Exception:  # a broken widget must not stop the jobs
                pass

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict | None = None,
        headers: dict | None = None,
        retry_for: float | None = None,
    ) -> dict:
        """The answer's JSON; retried until ``retry_for`` seconds have passed."""
        deadline = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        delay = 0.05
        while True:
            try:
                response = await self.http.request(
                    method, path, json=json, params=params, headers=headers
                )
            except httpx.TransportError as exc:
                self._set_connected(False)
                problem = f"cannot reach the qnb server at {self.url} ({type(exc).__name__}: {exc})"
            else:
                self._set_connected(True)
                if response.status_code not in RETRY_STATUSES:
                    if response.is_error:
                        raise _error_for(response, path)
                    return response.json()
                problem = f"server answered {response.status_code}: {_detail(response)}"
                retry_after = response.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    delay = max(delay, min(float(retry_after), MAX_BACKOFF_SECONDS))
            if time.monotonic() + delay > deadline:
                raise ServerUnreachableError(
                    f"{problem}; gave up after retrying. Is `qnb serve` running there?"
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF_SECONDS)

    def call(self, method: str, path: str, *, timeout: float | None = None, **options) -> dict:
        """:meth:`request` from a thread other than the loop's (the kernel's main thread)."""
        if _on_loop(self.loop):
            raise RuntimeError("ServerClient.call() would block the JobManager's own loop")
        future = asyncio.run_coroutine_threadsafe(self.request(method, path, **options), self.loop)
        try:
            return future.result(timeout if timeout is not None else self.retry_for + 30)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise ServerUnreachableError(f"no answer from {self.url}{path} in time") from None

    async def aclose(self) -> None:
        await self.http.aclose()


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:
        return False


class _RemoteRun:
    """The handle of one job on a server: item statuses as the event feed tells them."""

    def __init__(self, remote_id: str, statuses: list[JobStatus]):
        self.remote_id = remote_id
        self.statuses = statuses
        self.changed = asyncio.Event()
        self.changed.set()  # the first poll reports the state at hand-over

    def apply(self, statuses: Sequence[JobStatus]) -> None:
        changed = False
        for i, new in enumerate(statuses[: len(self.statuses)]):
            old = self.statuses[i]
            if old in TERMINAL or new is old:
                continue
            # A server restart puts a running item back in its queue to run again; seen
            # from here it is still under way, and statuses never go backwards.
            if new in BEHIND_A_RESTART and old in STARTED:
                continue
            self.statuses[i] = new
            changed = True
        if changed:
            self.changed.set()


def _statuses(view: dict) -> list[JobStatus]:
    return [JobStatus(item["status"]) for item in view["items"]]


def _spec_from(name: str, view: dict) -> DeviceSpec:
    """The server's device as a local DeviceSpec, so circuits are checked (and compiled)
    in the kernel before anything is sent."""
    encoded = view.get("cirq_json") or {}
    load = lambda key: None if encoded.get(key) is None else cirq.read_json(json_text=encoded[key])  # noqa: E731
    qubits = load("qubits")
    connectivity = load("connectivity")
    return DeviceSpec(
        name=name,
        max_qubits=view["max_qubits"],
        qubits=None if qubits is None else tuple(qubits),
        connectivity=None if connectivity is None else tuple(tuple(e) for e in connectivity),
        gateset=load("gateset"),
        compile_to=load("compile_to"),
        native_gates=tuple(view.get("native_gates") or ()),
        max_batch=view["max_batch"],
        max_shots=view["max_shots"],
        description=f"queue server: {view.get('description', '')}",
    )


class RemoteTarget(Target):
    """A device behind a ``qnb serve`` queue server."""

    local = False
    owns_queue = True
    max_running_jobs = 1 << 30  # the server's queue decides what runs

    def __init__(
        self,
        name: str,
        url: str,
        *,
        token: str | None = None,
        manager: JobManager,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.name = name
        self.url = url
        self.manager = manager
        self.client = ServerClient(
            url,
            token=token,
            loop=manager._loop,
            timeout=timeout,
            retry_for=retry_for,
            transport=transport,
        )
        me = self.client.call("GET", "/v1/whoami")
        self.remote_user: str = me["user"]
        self.role: str = me["role"]
        self.device = _spec_from(name, self.client.call("GET", "/v1/device"))
        health = self.client.call("GET", "/v1/health")
        self._epoch: str = health["epoch"]
        self._after: int = health.get("last", 0)
        self._runs: dict[str, _RemoteRun] = {}
        # Events that arrive before their job's submit has answered (rare, but the feed
        # and the submit race): kept briefly and applied when the handle appears.
        self._unclaimed: collections.OrderedDict[str, list[JobStatus]] = collections.OrderedDict()
        self._follower: asyncio.Task | None = None
        self._closed = False
        # The server's queue positions (job id -> 1-based), as last read, for widgets:
        # read by one watcher task while widgets ask for them and jobs of ours wait,
        # never by a request per job. Replaced whole, never changed in place.
        self._positions: Mapping[str, int] = {}
        self._positions_wanted = False
        self._position_watcher: asyncio.Task | None = None
        self._queue_moved = asyncio.Event()
        # Widgets redraw this target's jobs when the server goes away or comes back.
        self.client.on_connection_change(self._connection_changed)
        # One submit in flight at a time, so jobs reach the server's queue in the order
        # they were submitted here (asyncio.Lock serves waiters first come, first served).
        self._submit_lock = asyncio.Lock()

    # -- connection state (widgets show "reconnecting") --------------------------------

    @property
    def connected(self) -> bool:
        return self.client.connected

    def on_connection_change(self, listener: Callable[[bool], None]) -> None:
        """Call ``listener(connected)`` when the server goes away or comes back."""
        self.client.on_connection_change(listener)

    def _connection_changed(self, connected: bool) -> None:
        self._queue_moved.set()
        self.manager.renotify(self.name)

    # -- queue positions (widgets show them) -------------------------------------------

    def known_positions(self) -> Mapping[str, int]:
        """The server's queue positions (job id -> 1-based) as last read; empty while the
        server is away. Thread-safe and without I/O: the first call starts a watcher on
        the manager's loop that keeps them current while jobs of ours wait, and calls
        ``manager.renotify`` when they change."""
        watcher = self._position_watcher
        if not self._closed and (watcher is None or watcher.done()):
            self._positions_wanted = True
            self.manager._loop.call_soon_threadsafe(self._watch_positions)
        return self._positions if self.client.connected else {}

    def _watch_positions(self) -> None:
        if self._closed or not self._waiting():
            return
        if self._position_watcher is None or self._position_watcher.done():
            self._position_watcher = asyncio.get_running_loop().create_task(self._read_positions())

    def _waiting(self) -> bool:
        """Whether a job of ours is (as far as the feed told) still in the server's queue."""
        return any(all(s in BEHIND_A_RESTART for s in run.statuses) for run in self._runs.values())

    def _watching_positions(self) -> bool:
        return self._position_watcher is not None and not self._position_watcher.done()

    async def _read_positions(self) -> None:
        while not self._closed and self._waiting():
            self._queue_moved.clear()
            try:
                answer = await self.client.request("GET", "/v1/queue", retry_for=0)
                positions = {e["id"]: e["position"] for e in answer["entries"]}
            except (RemoteError, httpx.HTTPError):
                positions = {}  # none rather than stale ones; the follower reconnects
            if positions != self._positions:
                self._positions = positions
                self.manager.renotify(self.name)
            try:
                await asyncio.wait_for(self._queue_moved.wait(), POSITIONS_REFRESH_SECONDS)
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(POSITIONS_MIN_INTERVAL)  # a burst of events, one read
        self._positions = {}

    # -- the Target protocol ------------------------------------------------------------

    async def submit(self, job: TargetJob) -> _RemoteRun:
        texts = job.circuit_json or [_circuits.to_json(c) for c in job.circuits]
        body = {
            "id": job.job_id,
            "name": job.name or None,
            "circuits": dict(zip(job.labels, texts)),
            "shots": job.shots,
            "position": "start" if job.front else "end",
            "priority": job.priority,
        }
        # The job id is also the idempotency key: a retry, or a restarted kernel
        # sending it again, finds the job the first attempt created.
        async with self._submit_lock:
            view = await self.client.request(
                "POST",
                "/v1/jobs",
                json=body,
                headers={"Idempotency-Key": job.job_id},
                retry_for=max(self.client.retry_for, SUBMIT_RETRY_SECONDS),
            )
        return self._register(view)

    def handle_id(self, handle: _RemoteRun) -> str:
        return handle.remote_id

    async def reattach(self, remote_id: str, n_items: int) -> _RemoteRun:
        view = await self.client.request("GET", f"/v1/jobs/{remote_id}")
        return self._register(view)

    async def poll(self, handle: _RemoteRun) -> list[JobStatus]:
        await handle.changed.wait()
        handle.changed.clear()
        statuses = list(handle.statuses)
        if all(s in TERMINAL for s in statuses):
            self._runs.pop(handle.remote_id, None)
        return statuses

    async def results(self, handle: _RemoteRun, indices: Sequence[int]) -> dict[int, ItemOutcome]:
        answer = await self.client.request(
            "GET",
            f"/v1/jobs/{handle.remote_id}/results",
            params={"items": ",".join(map(str, indices))},
        )
        return {
            int(i): ItemOutcome(JobStatus(o["status"]), result=o["result"], error=o["error"])
            for i, o in answer["items"].items()
        }

    async def cancel(self, handle: _RemoteRun) -> bool:
        view = await self.client.request("POST", f"/v1/jobs/{handle.remote_id}/cancel")
        handle.apply(_statuses(view))
        return JobStatus(view["status"]) in TERMINAL

    def queue_position(self, remote_id: str) -> int | None:
        return self.client.call("GET", f"/v1/jobs/{remote_id}")["position"]

    def queue(self) -> RemoteQueue:
        return RemoteQueue(self)

    # -- following the event feed -------------------------------------------------------

    def _register(self, view: dict) -> _RemoteRun:
        run = _RemoteRun(view["id"], _statuses(view))
        early = self._unclaimed.pop(run.remote_id, None)
        if early is not None:
            run.apply(early)
        self._runs[run.remote_id] = run
        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(self._follow())
        if self._positions_wanted:
            self._watch_positions()
        return run

    async def _follow(self) -> None:
        """Long-poll the feed while jobs are followed; through outages, with backoff."""
        delay = 0.05
        while self._runs and not self._closed:
            # While widgets show positions, everyone's events: another user's job
            # leaving the queue moves ours up.
            only_mine = not self._watching_positions()
            try:
                page = await self.client.request(
                    "GET",
                    "/v1/events",
                    params={"after": self._after, "timeout": EVENT_WAIT_SECONDS, "only_mine": only_mine},
                    retry_for=0,
                )
            except (RemoteError, httpx.HTTPError):
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_SECONDS)
                continue
            delay = 0.05
            if page["epoch"] != self._epoch or page["reset"]:
                # A restarted server numbers its events afresh; what happened while we
                # could not listen is read from the jobs themselves.
                self._epoch = page["epoch"]
                self._after = page["last"]
                await self._resync()
                continue
            self._after = page["last"]
            if page["events"]:
                self._queue_moved.set()
            for event in page["events"]:
                if "items" not in event:
                    continue  # another user's job
                statuses = [JobStatus(item["status"]) for item in event["items"]]
                run = self._runs.get(event["id"])
                if run is not None:
                    run.apply(statuses)
                else:
                    self._unclaimed[event["id"]] = statuses
                    while len(self._unclaimed) > KEEP_UNCLAIMED_EVENTS:
                        self._unclaimed.popitem(last=False)

    async def _resync(self) -> None:
        for remote_id, run in list(self._runs.items()):
            try:
                view = await self.client.request("GET", f"/v1/jobs/{remote_id}", retry_for=5)
            except RemoteError:
                return  # gone again: the follower retries and resyncs once back
            run.apply(_statuses(view))
        self._queue_moved.set()

    def close(self) -> None:
        self._closed = True
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.manager._loop)


# -- the queue of a server ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RemoteQueueEntry:
    """A job waiting in a server's queue. Other users' entries show only these fields."""

    position: int | None
    id: str
    user: str
    name: str
    time_added: float
    status: JobStatus
    _queue: RemoteQueue = dataclasses.field(repr=False, compare=False)

    @property
    def user_added(self) -> str:
        return self.user

    def position_in_queue(self) -> int | None:
        return self._queue._position_of(self.id)

    def cancel(self) -> JobStatus:
        """Take it out of the queue (your own job, or any as an admin)."""
        view = self._queue._call("POST", f"/v1/jobs/{self.id}/cancel")
        return JobStatus(view["status"])

    def wait_for_execution(self, timeout: float | None = None):
        """Block until your job leaves the queue; returns it as a :class:`qnb.Job`."""
        from .._queue import PendingJob

        return PendingJob(self.id, manager=self._queue._target.manager).wait_for_execution(timeout)

    @property
    def job(self):
        """The :class:`qnb.Job` when this kernel's store has it (your own jobs), else None."""
        from .._job import Job

        manager = self._queue._target.manager
        if manager.record(self.id) is None and manager.store.load_job(self.id) is None:
            return None
        return Job(self.id, manager=manager)


class RemoteQueue:
    """A server's queue with the same operations as a local :class:`qnb.Queue`."""

    def __init__(self, target: RemoteTarget):
        self._target = target
        self.target = target.name

    def _call(self, method: str, path: str, **options) -> dict:
        return self._target.client.call(method, path, **options)

    def _entries(self) -> list[RemoteQueueEntry]:
        answer = self._call("GET", "/v1/queue")
        return [
            RemoteQueueEntry(
                e["position"], e["id"], e["user"], e["name"], e["time_added"],
                JobStatus(e["status"]), self,
            )
            for e in answer["entries"]
        ]

    def _position_of(self, job_id: str) -> int | None:
        return next((e.position for e in self._entries() if e.id == job_id), None)

    def add(self, circuits, **options):
        """Submit at the end of the queue (``options`` as for ``qnb.submit``)."""
        from .._api import submit
        from .._queue import PendingJob

        job = submit(circuits, target=self.target, front=False, **options)
        return PendingJob(job.id, manager=self._target.manager)

    def add_to_start(self, circuits, **options):
        """Submit at the head of the queue (admins only on a server)."""
        from .._api import submit
        from .._queue import PendingJob

        job = submit(circuits, target=self.target, front=True, **options)
        return PendingJob(job.id, manager=self._target.manager)

    @property
    def pending_jobs(self) -> list[RemoteQueueEntry]:
        return self._entries()

    @property
    def count(self) -> int:
        return len(self._entries())

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return iter(self._entries())

    def get_at(self, position: int) -> RemoteQueueEntry:
        return entry_at(self._entries(), position, self.target)

    def __getitem__(self, position: int) -> RemoteQueueEntry:
        return self.get_at(position)

    def get(self, job_id: str) -> RemoteQueueEntry | None:
        return next((e for e in self._entries() if e.id == job_id), None)

    def get_by_user_id(self, user: str) -> list[RemoteQueueEntry]:
        return [e for e in self._entries() if e.user == user]

    def remove_by_id(self, job_id: str) -> dict:
        """Take a waiting job out of the queue; it ends ``cancelled``."""
        return self._call("DELETE", f"/v1/queue/jobs/{job_id}")

    def remove_by_position(self, position: int, expected_id: str | None = None) -> dict:
        """Remove the job at a 1-based position, only if it is ``expected_id``.

        Without ``expected_id`` the job seen there now is expected: the server still
        refuses (``QueueConflictError``) if the queue moves before the removal.
        """
        if expected_id is None:
            expected_id = self.get_at(position).id
        return self._call(
            "DELETE", f"/v1/queue/positions/{position}", params={"expected_id": expected_id}
        )

    def remove_by_user_id(self, user: str) -> list[str]:
        """Remove every waiting job of ``user``; returns their ids."""
        return self._call("DELETE", f"/v1/queue/users/{user}")["removed"]

    def move_to_front(self, job_id: str) -> dict:
        """Admins only on a server."""
        return self._call("POST", f"/v1/queue/jobs/{job_id}/front")

    def __repr__(self) -> str:
        entries = self._entries()
        lines = [f"Queue {self.target!r} at {self._target.url}: {len(entries)} pending"]
        for e in entries:
            lines.append(f"  {e.position:>3}. {e.id[:8]}  {e.user:<12} {e.name}")
        return "\n".join(lines)


# -- connecting ------------------------------------------------------------------------------


def connection_state(target: str, *, manager: JobManager | None = None) -> str | None:
    """``"connected"`` or ``"reconnecting"`` for a queue server's target, None for
    others (widgets show it on the jobs of that target)."""
    state = remote_state(target, manager=manager, positions=False)
    if state is None:
        return None
    return "connected" if state.connected else "reconnecting"


@dataclasses.dataclass(frozen=True)
class RemoteState:
    """What widgets show of a queue server's target besides its jobs' records."""

    connected: bool
    positions: Mapping[str, int]  # job id on the server -> 1-based position


def remote_state(
    target: str, *, manager: JobManager | None = None, positions: bool = True
) -> RemoteState | None:
    """The state of a queue server's target (None for other targets), without I/O.
    ``positions=False`` when no job of it waits: no watcher is started then."""
    try:
        found = (manager or get_manager()).targets.get(target)
    except QnbError:
        return None
    if not isinstance(found, RemoteTarget):
        return None
    return RemoteState(found.connected, found.known_positions() if positions else {})


def _configured(name: str) -> tuple[str, str | None]:
    """``url`` and token of ``name`` from the targets file (``$QNB_TARGETS``)."""
    path = Path(os.environ.get("QNB_TARGETS", "~/.config/qnb/targets.toml")).expanduser()
    if not path.exists():
        raise QnbError(
            f"qnb.connect({name!r}) without a url needs a targets file; {path} does not "
            "exist (set QNB_TARGETS, or pass the url)"
        )
    entry = tomllib.loads(path.read_text()).get("targets", {}).get(name)
    if not isinstance(entry, dict) or "url" not in entry:
        raise QnbError(f"no [targets.{name}] table with a url in {path}")
    token = entry.get("token")
    if token is None and "token_env" in entry:
        token = os.environ.get(entry["token_env"])
        if token is None:
            raise QnbError(f"[targets.{name}] in {path} reads the token from ${entry['token_env']}, which is not set")
    return entry["url"], token


_connect_lock = threading.Lock()


def connect(
    name: str,
    url: str | None = None,
    *,
    token: str | None = None,
    timeout: float = 10.0,
    retry_for: float = 30.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RemoteTarget:
    """Use the queue server at ``url`` as target ``name``.

    Without ``url`` it is read (with its token) from the targets file: ``$QNB_TARGETS``
    or ``~/.config/qnb/targets.toml``, tables ``[targets.NAME]`` with ``url`` and
    ``token`` or ``token_env``. Unfinished jobs of ``name`` in the local store (from a
    kernel that ended) are followed again.
    """
    if url is None:
        url, configured_token = _configured(name)
        token = token or configured_token
    manager = get_manager()
    with _connect_lock:
        target = RemoteTarget(
            name,
            url,
            token=token,
            manager=manager,
            timeout=timeout,
            retry_for=retry_for,
            transport=transport,
        )
        manager.targets.register(name, target)
    manager.follow_target_jobs(target)
    return target
