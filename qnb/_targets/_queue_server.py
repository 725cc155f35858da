"""A ``qnb serve`` queue server as a target that owns its queue.

``qnb.connect("lab", url, token=...)`` registers a :class:`RemoteTarget`; after that
``qnb.submit(..., target="lab")``, ``qnb.queue("lab")`` and the widgets work as for a
local target. One ``httpx.AsyncClient`` per server runs on the JobManager's loop; job
status follows the server's long-poll event feed (one request in flight per server,
not a poll per job), and so does each job's ETA: the server estimates every job in its
queue (it sees every user's jobs) and sends the estimate with the job's view and events. Jobs keep the same id here and on the server, so the local store
finds them again after a kernel restart and ``connect`` resumes following them.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cirq
import httpx

from .. import _circuits
from .._device import DeviceSpec
from .._errors import QnbError, RemoteError, ServerUnreachableError, error_for_code
from .._estimate import CircuitFeatures, Estimate, TargetHistory
from .._records import QueueEntry, entry_at
from .._status import TERMINAL, JobStatus
from ._base import Backoff, FollowedItems, ItemOutcome, QueueOwningTarget, TargetJob
from ._queue_eta import JobFigures, estimate_left

logger = logging.getLogger("qnb")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
EVENT_WAIT_SECONDS = 20.0
MAX_BACKOFF_SECONDS = 2.0
# A job submitted while the server is away waits (queued here, "reconnecting") this long
# for it to come back before it fails; its idempotency key makes the retries safe.
SUBMIT_RETRY_SECONDS = 600.0
KEEP_UNCLAIMED_EVENTS = 10_000
BEHIND_A_RESTART = frozenset({JobStatus.PENDING, JobStatus.QUEUED})
# Queue positions for the widgets: read again when the feed shows a change, at most this
# often, and at least this often while jobs of ours wait (other users' changes reach us
# only once the feed is asked for everyone's, see _follow).
POSITIONS_MIN_INTERVAL = 0.2
POSITIONS_REFRESH_SECONDS = 2.0
#: A server's new estimate of a job is news (the core asks job_estimate again) when its
#: figures move by this many seconds or more, or its basis changes.
ESTIMATE_NEWS_SECONDS = 1.0
SERVER_BASIS = "the queue server's estimate"
ESTIMATE_RETRY_SECONDS = 5.0


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
    """The server's ``{"detail", "code"}`` as the QnbError class of that code."""
    status, detail = response.status_code, _detail(response)
    try:
        code = response.json().get("code")
    except Exception:
        code = None
    return error_for_code(code, f"server answered {status} to {path}: {detail}", status=status)


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
            except Exception:  # a broken widget must not stop the jobs; it is logged
                logger.exception("a connection listener of %s raised", self.url)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict | None = None,
        headers: dict | None = None,
        retry_for: float | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> dict:
        """The answer's JSON; retried until ``retry_for`` seconds have passed
        (``on_retry`` is told before the first retry)."""
        deadline = time.monotonic() + (self.retry_for if retry_for is None else retry_for)
        backoff = Backoff(0.05, MAX_BACKOFF_SECONDS)
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
                    backoff.delay = max(backoff.delay, min(float(retry_after), MAX_BACKOFF_SECONDS))
            if time.monotonic() + backoff.delay > deadline:
                raise ServerUnreachableError(
                    f"{problem}; gave up after retrying. Is `qnb serve` running there?"
                )
            if on_retry is not None:
                on_retry()
                on_retry = None
            await backoff.wait()

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


class _RemoteRun(FollowedItems):
    """The handle of one job on a server: item statuses as the event feed tells them
    (``report``; the lifecycle decides what they mean: a restarted server's "queued
    again" does not move a running item back)."""

    def __init__(self, remote_id: str, statuses: list[JobStatus]):
        super().__init__(statuses)
        self.remote_id = remote_id
        self.estimate: dict | None = None  # the server's, as last sent (Estimate.as_json)

    def note_estimate(self, said: object) -> None:
        """The server's estimate in a view or event (absent: none, or the job ended)."""
        said = said if isinstance(said, dict) else None
        if _estimate_moved(self.estimate, said):
            self.changed.set()  # the core hears of it as of a report
        self.estimate = said


def _estimate_moved(before: dict | None, after: dict | None) -> bool:
    if before is None or after is None:
        return before is not after
    if before.get("basis") != after.get("basis"):
        return True
    for key in ("finish", "wait_seconds", "run_seconds"):
        a, b = before.get(key), after.get(key)
        if (a is None) != (b is None) or (a is not None and abs(a - b) >= ESTIMATE_NEWS_SECONDS):
            return True
    return False


def _resolved_texts(job: TargetJob) -> list[str]:
    circuits = job.circuits or [_circuits.from_json(text) for text in job.circuit_json]
    return [
        _circuits.to_json(c if p is None else cirq.resolve_parameters(c, p))
        for c, p in zip(circuits, job.params)
    ]


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


class RemoteTarget(QueueOwningTarget):
    """A device behind a ``qnb serve`` queue server.

    ``loop`` is the JobManager's (all HTTP runs there); ``on_display_change()`` is
    called when how its jobs look changes outside their records (the server went away
    or came back, queue positions moved), so widgets redraw them.
    """

    takes_retries = True  # the server's own manager runs failed items again
    priced_by_server = True  # it estimates its jobs' cost and checks max_cost (qnb._prices)

    def __init__(
        self,
        name: str,
        url: str,
        *,
        token: str | None = None,
        loop: asyncio.AbstractEventLoop,
        on_display_change: Callable[[], None] = lambda: None,
        timeout: float = 10.0,
        retry_for: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ):
        self.name = name
        self.url = url
        self.loop = loop
        self._on_display_change = on_display_change
        self.client = ServerClient(
            url,
            token=token,
            loop=loop,
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
        self._on_display_change()

    # -- queue positions (widgets show them) -------------------------------------------

    def known_positions(self) -> Mapping[str, int]:
        """The server's queue positions (job id -> 1-based) as last read; empty while the
        server is away. Thread-safe and without I/O: the first call starts a watcher on
        the manager's loop that keeps them current while jobs of ours wait, and calls
        ``on_display_change`` when they change."""
        watcher = self._position_watcher
        if not self._closed and (watcher is None or watcher.done()):
            self._positions_wanted = True
            self.loop.call_soon_threadsafe(self._watch_positions)
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
                self._on_display_change()
            try:
                await asyncio.wait_for(self._queue_moved.wait(), POSITIONS_REFRESH_SECONDS)
            except asyncio.TimeoutError:
                pass
            await asyncio.sleep(POSITIONS_MIN_INTERVAL)  # a burst of events, one read
        self._positions = {}

    # -- the Target protocol ------------------------------------------------------------

    async def submit(self, job: TargetJob) -> _RemoteRun:
        if job.params is not None and any(p is not None for p in job.params):
            # The server takes no symbols from a client (untrusted expressions): each
            # point is resolved here, off the loop, and sent with its resolver.
            texts = await asyncio.to_thread(_resolved_texts, job)
        else:
            texts = job.circuit_json or [_circuits.to_json(c) for c in job.circuits]
        body = {
            "id": job.job_id,
            "name": job.name or None,
            "circuits": dict(zip(job.labels, texts)),
            "shots": job.shots,
            "position": "start" if job.front else "end",
            "priority": job.priority,
        }
        if job.tags:  # (only then: a server older than tags refuses fields it does not know)
            body["tags"] = list(job.tags)
        if job.retries:  # (the same: the server's own manager runs failed items again)
            body["retries"] = job.retries
        if job.max_cost is not None:
            body["max_cost"] = job.max_cost
        if job.params is not None and any(p is not None for p in job.params):
            body["params"] = {
                label: cirq.to_json(p, indent=None)
                for label, p in zip(job.labels, job.params)
                if p is not None
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
                on_retry=job.report_waiting,  # away: the job waits here, "reconnecting"
            )
        return self._register(view)

    def handle_id(self, handle: _RemoteRun) -> str:
        return handle.remote_id

    async def reattach(self, remote_id: str, n_items: int) -> _RemoteRun:
        view = await self.client.request("GET", f"/v1/jobs/{remote_id}")
        return self._register(view)

    async def poll(self, handle: _RemoteRun) -> list[JobStatus]:
        statuses = await handle.next_change()
        if handle.finished:
            self._runs.pop(handle.remote_id, None)
        return statuses

    async def results(self, handle: _RemoteRun, indices: Sequence[int]) -> dict[int, ItemOutcome]:
        outcomes: dict[int, ItemOutcome] = {}
        wanted = list(indices)
        while wanted:  # the server pages large results: "more" says what is left
            answer = await self.client.request(
                "GET",
                f"/v1/jobs/{handle.remote_id}/results",
                params={"items": ",".join(map(str, wanted))},
            )
            for i, o in answer["items"].items():
                outcomes[int(i)] = ItemOutcome(
                    JobStatus(o["status"]), result=o["result"], error=o["error"],
                    retryable=o.get("retryable"),  # a server before 'retryable': None
                    attempts=o.get("attempts", 0), history=tuple(o.get("history", ())),
                )
            wanted = [i for i in answer.get("more", ()) if i not in outcomes]
        return outcomes

    async def cancel(self, handle: _RemoteRun) -> bool:
        view = await self.client.request("POST", f"/v1/jobs/{handle.remote_id}/cancel")
        handle.report(_statuses(view))
        handle.note_estimate(view.get("estimate"))
        return JobStatus(view["status"]) in TERMINAL

    def job_estimate(self, handle: _RemoteRun, history: TargetHistory) -> Estimate | None:
        """The server's estimate of the job, as its feed last sent it (None: it sent none)."""
        if handle.estimate is None:
            return None
        said = Estimate.from_json(handle.estimate)
        return dataclasses.replace(said, basis=f"{SERVER_BASIS} ({said.basis})" if said.basis else SERVER_BASIS)

    async def estimate_submission(
        self, features: Sequence[CircuitFeatures], shots: int, history: TargetHistory
    ) -> Estimate | None:
        """The server's estimate (``POST /v1/estimate``: the circuits' features, nothing
        stored; it counts every user's jobs ahead); a server older than estimates: from
        ``history`` (qnb's waits and runs on this target)."""
        body = {"features": [dataclasses.asdict(f) for f in features], "shots": shots}
        try:
            # Retried briefly: the core waits seconds, not minutes, for an estimate.
            answer = await self.client.request("POST", "/v1/estimate", json=body, retry_for=ESTIMATE_RETRY_SECONDS)
        except QnbError as exc:
            if exc.status not in (404, 405):
                raise
            found = estimate_left("queue server", None, JobFigures(shots=shots, items=len(features)), history)
            note = "the server gives no estimates"
            return found and dataclasses.replace(found, basis=f"{found.basis} ({note})" if found.basis else note)
        said = Estimate.from_json(answer)
        return dataclasses.replace(said, basis=f"{SERVER_BASIS} ({said.basis})" if said.basis else SERVER_BASIS)

    def queue_backend(self) -> RemoteQueueBackend:
        return RemoteQueueBackend(self)

    # -- following the event feed -------------------------------------------------------

    def _register(self, view: dict) -> _RemoteRun:
        run = _RemoteRun(view["id"], _statuses(view))
        run.note_estimate(view.get("estimate"))
        early = self._unclaimed.pop(run.remote_id, None)
        if early is not None:
            run.report(early)
        self._runs[run.remote_id] = run
        if self._follower is None or self._follower.done():
            self._follower = asyncio.get_running_loop().create_task(self._follow())
        if self._positions_wanted:
            self._watch_positions()
        return run

    async def _follow(self) -> None:
        """Long-poll the feed while jobs are followed; through outages, with backoff."""
        away = Backoff(0.05, MAX_BACKOFF_SECONDS)
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
                await away.wait()
                continue
            away.reset()
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
                    run.report(statuses)
                    run.note_estimate(event.get("estimate"))
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
            run.report(_statuses(view))
            run.note_estimate(view.get("estimate"))
        self._queue_moved.set()

    def close(self) -> None:
        self._closed = True
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop)


# -- the queue of a server ------------------------------------------------------------------


def _queue_entry(view: dict) -> QueueEntry:
    return QueueEntry(
        view.get("position"), view["id"], view["user"], view["name"], view["time_added"],
        JobStatus(view["status"]), view.get("priority", 0),
    )  # fmt: skip


class RemoteQueueBackend:
    """A server's queue, read and changed through its API (blocking calls, made from
    the caller's thread; never from the manager's loop)."""

    def __init__(self, target: RemoteTarget):
        self._target = target

    def _call(self, method: str, path: str, **options) -> dict:
        return self._target.client.call(method, path, **options)

    def entries(self) -> list[QueueEntry]:
        return [_queue_entry(e) for e in self._call("GET", "/v1/queue")["entries"]]

    def entry(self, job_id: str) -> QueueEntry | None:
        return next((e for e in self.entries() if e.id == job_id), None)

    def remove(self, *, job_id=None, position=None, expected_id=None) -> QueueEntry:
        if position is None:
            return _queue_entry(self._call("DELETE", f"/v1/queue/jobs/{job_id}"))
        if expected_id is None:
            # The job seen there now is expected: the server still refuses
            # (QueueConflictError) if the queue moves before the removal.
            expected_id = entry_at(self.entries(), position, self._target.name).id
        view = self._call(
            "DELETE", f"/v1/queue/positions/{position}", params={"expected_id": expected_id}
        )
        return _queue_entry(view)

    def remove_user(self, user: str) -> list[QueueEntry]:
        seen = {e.id: e for e in self.entries()}
        removed = self._call("DELETE", f"/v1/queue/users/{user}")["removed"]
        return [
            dataclasses.replace(seen[i], position=None, status=JobStatus.CANCELLED)
            if i in seen
            else QueueEntry(None, i, user, "", 0.0, JobStatus.CANCELLED)
            for i in removed
        ]

    def move_to_front(self, job_id: str) -> QueueEntry:
        return _queue_entry(self._call("POST", f"/v1/queue/jobs/{job_id}/front"))

    def known_positions(self) -> Mapping[str, int]:
        return self._target.known_positions()
