"""The queue server behind ``qnb serve``: one device's queue over HTTP, shared by users.

A thin FastAPI layer over the same :class:`~qnb._manager.JobManager`, lifecycle table
and SQLite store a kernel uses. The manager (its own loop thread) runs the queue; the
request handlers only validate, authorise and call it. Most handlers are plain ``def``
(run in the thread pool); submit and status reads, the hot paths, run on the event
loop, as their store work is one short transaction.
"""

# No "from __future__ import annotations": FastAPI reads the handlers' annotations,
# and some name types local to create_app.
import asyncio
import hashlib
import json
import threading
import uuid
from typing import Annotated, Any, Literal

import cirq
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from .. import _circuits
from .._api import _default_name, prepare
from ._auth import User, Users
from .._errors import (
    DeviceValidationError,
    InvalidCircuitError,
    InvalidOptionError,
    QnbError,
    QueueConflictError,
    QueueError,
    UnknownJobError,
)
from .._manager import JobManager
from .._queue import Queue
from .._records import JobRecord
from .._status import JobStatus

API_VERSION = "v1"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
EVENTS_KEPT = 20_000
EVENTS_PER_ANSWER = 1000
MAX_EVENT_WAIT_SECONDS = 60.0
OPEN_MODE_USER = "local"


class HTTPProblem(QnbError):
    """An answer other than success, with its HTTP status and a message for the user."""

    def __init__(self, status: int, message: str, *, loc: "list | None" = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.loc = loc


# -- request bodies ---------------------------------------------------------------------

CircuitText = Annotated[str, Field(min_length=1, description="OpenQASM 2.0 or Cirq JSON")]


class SubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    circuits: dict[Annotated[str, Field(min_length=1, max_length=200)], CircuitText] = Field(
        min_length=1, description="label -> circuit (OpenQASM 2.0 or Cirq JSON)"
    )
    shots: int = Field(1000, ge=1)
    name: str | None = Field(None, max_length=200)
    position: Literal["end", "start"] = "end"
    priority: int = Field(
        0, ge=-100, le=100,
        description="higher runs first; above 0 only for admins",
    )
    compile: bool = False
    id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="a new job id chosen by the client (32 lowercase hex digits), so that "
        "the client's own records and the server use the same id",
    )


class ResubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    only_failed: bool = False


class CompileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    circuits: dict[Annotated[str, Field(min_length=1, max_length=200)], CircuitText] = Field(
        min_length=1
    )


# -- the event feed ----------------------------------------------------------------------


class EventFeed:
    """Numbered job changes for long-polling clients.

    The manager calls :meth:`note` on every change (on any thread, under its lock).
    Publishing writes pending changes to the store first, so a client never learns of a
    state the server could still lose. It runs on the server's own loop once that is
    known (:meth:`bind`): a submit then publishes without waking another thread, which
    costs more than the rest of the submit when threads compete for the GIL.
    """

    def __init__(self, manager: JobManager):
        self.manager = manager
        self.epoch = uuid.uuid4().hex  # a restarted server numbers its events afresh
        self.seq = 0
        # Event seq numbers are contiguous, so a list slices by seq in O(answer);
        # trimmed to the newest EVENTS_KEPT whenever it holds twice as many.
        self._events: list[tuple[int, dict]] = []
        self._lock = threading.Lock()
        self._noted: dict[str, JobRecord] = {}
        self._publish_scheduled = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop = manager._loop
        self._remove_listener = manager.add_listener(self.note)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Publish on ``loop`` (the server's) from now on."""
        self._loop = loop

    def close(self) -> None:
        self._remove_listener()

    def note(self, rec: JobRecord) -> None:
        with self._lock:
            self._noted[rec.id] = rec
            if self._publish_scheduled:
                return
            self._publish_scheduled = True
        loop = self._loop
        if _running_loop() is loop:
            loop.call_soon(self._publish)
            return
        try:
            loop.call_soon_threadsafe(self._publish)
        except RuntimeError:  # the server's loop has ended (tests): the manager's goes on
            self._loop = self.manager._loop
            self._loop.call_soon_threadsafe(self._publish)

    def _publish(self) -> None:
        self.manager.flush()
        with self.manager._lock:
            with self._lock:
                noted, self._noted = self._noted, {}
                self._publish_scheduled = False
            snapshots = [job_view(rec, items=True) for rec in noted.values()]
        with self._lock:
            for snapshot in snapshots:
                self.seq += 1
                self._events.append((self.seq, snapshot))
            if len(self._events) > 2 * EVENTS_KEPT:
                del self._events[:-EVENTS_KEPT]
            waiters, self._waiters = self._waiters, []
        here = _running_loop()
        for loop, future in waiters:
            if loop is here:
                _wake(future)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_wake, future)

    def since(
        self, after: int, user: User, *, only_mine: bool = False
    ) -> tuple[list[dict], int, bool]:
        """Events after ``after`` as ``user`` may see them (at most EVENTS_PER_ANSWER),
        the seq to ask after next, and whether some events after ``after`` are lost."""
        with self._lock:
            oldest = self._events[0][0] if self._events else self.seq + 1
            lost = after > self.seq or after < oldest - 1
            start = max(0, after - oldest + 1)
            found = self._events[start : start + EVENTS_PER_ANSWER]
            last = found[-1][0] if found else self.seq
        if only_mine:
            found = [(seq, ev) for seq, ev in found if user.may_act_on(ev["user"])]
        return [_event_for(seq, ev, user) for seq, ev in found], last, lost

    async def wait(self, after: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self.seq > after:
                return
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


PUBLIC_FIELDS = ("id", "user", "name", "status", "time_added")


def _event_for(seq: int, snapshot: dict, user: User) -> dict:
    if user.may_act_on(snapshot["user"]):
        return {"seq": seq, **snapshot}
    return {"seq": seq, **{k: snapshot[k] for k in PUBLIC_FIELDS}}


def job_view(rec: JobRecord, *, items: bool = False, position: int | None = None) -> dict:
    view = rec.public_dict()
    view["position"] = position
    if items:
        view["items"] = [
            {"label": it.label, "status": it.status.value, "error": it.error} for it in rec.items
        ]
    return view


def entry_view(rec: JobRecord, position: int | None) -> dict:
    """A queue entry as every user may see it."""
    return {
        "position": position,
        "id": rec.id,
        "user": rec.user,
        "name": rec.name,
        "time_added": rec.time_added,
        "status": rec.status.value,
    }


# -- the app -------------------------------------------------------------------------------


def create_app(
    manager: JobManager,
    *,
    device: str = "emulator",
    users: Users | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The queue server of ``device`` (a target of ``manager``'s registry).

    ``users=None`` is open mode (every caller is the admin ``local``): ``qnb serve``
    allows it on loopback only.
    """
    target = manager.targets.get(device)
    queue = Queue(device, manager=manager, submit=None)
    feed = EventFeed(manager)
    submit_lock = threading.Lock()
    app = FastAPI(
        title="qnb queue server",
        version=API_VERSION,
        description=f"The shared queue of device {device!r}.",
    )
    app.state.manager = manager
    app.state.feed = feed
    app.add_middleware(_BodyLimit, max_bytes=max_body_bytes)

    @app.exception_handler(HTTPProblem)
    async def _problem(request: Request, exc: HTTPProblem) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        if exc.loc is not None:
            detail: Any = [{"loc": exc.loc, "msg": exc.message, "type": "value_error"}]
        else:
            detail = exc.message
        return JSONResponse({"detail": detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(QnbError)
    async def _qnb_error(request: Request, exc: QnbError) -> JSONResponse:
        return await _problem(request, _as_problem(exc))

    # Reads the header itself: FastAPI's Header() parameters cost more than the rest of
    # a status read. HTTPBearer documents the scheme in the OpenAPI description.
    bearer = HTTPBearer(auto_error=False, description="a token from the server's users file")

    async def current_user(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> User:
        if users is None:
            return User(request.headers.get("x-qnb-user") or OPEN_MODE_USER, "admin")
        if credentials is None or not credentials.credentials:
            raise HTTPProblem(401, "a bearer token is required: Authorization: Bearer <token>")
        user = users.authenticate(credentials.credentials.strip())
        if user is None:
            raise HTTPProblem(401, "unknown token; ask the server's admin for yours")
        return user

    Caller = Annotated[User, Depends(current_user)]

    def load(job_id: str) -> JobRecord:
        try:
            return manager.load(job_id)
        except UnknownJobError:
            raise HTTPProblem(404, f"no job {job_id!r} on this server") from None

    def own(user: User, job_id: str, action: str) -> JobRecord:
        rec = load(job_id)
        if not user.may_act_on(rec.user):
            raise HTTPProblem(
                403, f"job {job_id[:8]} belongs to {rec.user}; only they or an admin may {action}"
            )
        return rec

    def full_view(rec: JobRecord) -> dict:
        return job_view(rec, items=True, position=manager.position(rec))

    def status_read(headers: dict[bytes, bytes], job_id: str) -> bytes | None:
        """GET /v1/jobs/{id} in the common case (a known token reading its own job), or
        None to let the FastAPI route answer (and document) everything else."""
        user = _bearer_user(users, headers.get(b"authorization"))
        if user is None:
            return None
        rec = manager.record(job_id)
        if rec is None or not user.may_act_on(rec.user):
            return None  # finished jobs come from the store: rarely polled, route does it
        return json.dumps(full_view(rec)).encode()


    # -- open ------------------------------------------------------------------------------

    @app.get("/v1/health")
    async def health() -> dict:
        return {"status": "ok", "device": device, "epoch": feed.epoch, "last": feed.seq}

    # -- jobs ------------------------------------------------------------------------------

    def accept(body: SubmitBody, user: User, idempotency_key: str | None) -> dict:
        """Queue a job (or find the one a retried key made); its view once it is stored."""
        feed.bind(asyncio.get_running_loop())
        if idempotency_key is not None and len(idempotency_key) > 200:
            raise HTTPProblem(422, "at most 200 characters", loc=["header", "idempotency-key"])
        if body.position == "start" and not user.is_admin:
            raise HTTPProblem(403, "only an admin may put a job at the head of the queue")
        if body.priority > 0 and not user.is_admin:
            raise HTTPProblem(403, "only an admin may give a job a priority above 0")
        labelled, texts = _parse_circuits(body.circuits)
        try:
            labelled = prepare(labelled, target, shots=body.shots, compile=body.compile)
        except InvalidOptionError as exc:
            field = "shots" if "shots" in str(exc) else "circuits"
            raise HTTPProblem(422, str(exc), loc=["body", field]) from None
        job_id = body.id or uuid.uuid4().hex
        with submit_lock:  # one claim of a key or an id at a time
            if idempotency_key is not None:
                digest = hashlib.sha256(
                    json.dumps(body.model_dump(), sort_keys=True).encode()
                ).hexdigest()
                job_id, bound_digest = manager.store.claim_idempotency_key(
                    user.name, idempotency_key, job_id, digest
                )
                if bound_digest != digest:
                    raise HTTPProblem(
                        409,
                        "this Idempotency-Key was used for a different submission; use a "
                        "new key for a new job",
                    )
            # A fresh server-made id needs no look-up; a given id or a bound key may
            # name a job that exists.
            chosen = idempotency_key is not None or body.id is not None
            existing = chosen and (manager.record(job_id) or manager.store.load_job(job_id))
            if existing:
                if idempotency_key is None or existing.user != user.name:
                    raise HTTPProblem(409, f"a job with id {job_id} exists already")
                return full_view(existing)  # the retry of a submit that got through
            rec = manager.submit(
                target,
                labelled,
                shots=body.shots,
                name=body.name or _default_name(labelled),
                user=user.name,
                front=body.position == "start",
                priority=body.priority,
                circuit_json=None if body.compile else texts,
                job_id=job_id,
            )
        return full_view(rec)

    @app.post("/v1/jobs", status_code=201, response_class=JSONResponse)
    async def submit_job(
        body: SubmitBody,
        user: Caller,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> JSONResponse:
        """Queue a job; it is in the database before this answers.

        A retry with the same ``Idempotency-Key`` returns the job the first try created.
        """
        return JSONResponse(accept(body, user, idempotency_key), status_code=201)

    def fast_submit(headers: dict[bytes, bytes], raw: bytes) -> bytes | None:
        """POST /v1/jobs when all is well; None lets the route answer (every error)."""
        user = _bearer_user(users, headers.get(b"authorization"))
        if user is None:
            return None
        try:
            body = SubmitBody.model_validate_json(raw)
            key = headers.get(b"idempotency-key")
            return json.dumps(accept(body, user, None if key is None else key.decode("latin-1"))).encode()
        except (ValueError, QnbError):  # pydantic's ValidationError is a ValueError
            return None

    @app.get("/v1/jobs")
    def list_jobs(
        user: Caller,
        status: Annotated[list[JobStatus] | None, Query()] = None,
        owner: Annotated[str | None, Query(alias="user", max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> dict:
        """Jobs, newest first: your own (an admin: everybody's, or ``user``'s)."""
        if owner is None and not user.is_admin:
            owner = user.name
        if owner is not None and not user.may_act_on(owner):
            raise HTTPProblem(403, f"only an admin may list the jobs of {owner}")
        wanted = None if not status else [s.value for s in status]
        found = manager.find(status=wanted, target=device, user=owner, limit=limit)
        return {"jobs": [job_view(rec, items=False) for rec in found]}

    # The two hot paths run on the event loop: they only read memory or do one short
    # SQLite transaction (~0.1 ms), cheaper than a hop to the thread pool.
    @app.get("/v1/jobs/{job_id}", response_class=JSONResponse)
    async def get_job(job_id: str, user: Caller) -> JSONResponse:
        return JSONResponse(full_view(own(user, job_id, "read it")))

    @app.get("/v1/jobs/{job_id}/results")
    def get_results(
        job_id: str,
        user: Caller,
        items: Annotated[str | None, Query(pattern=r"^\d+(,\d+)*$", max_length=4000)] = None,
    ) -> dict:
        """Finished items' outcomes (``items``: comma-separated indices; all if absent)."""
        rec = own(user, job_id, "read its results")
        texts = manager.results(job_id)
        wanted = range(len(rec.items)) if items is None else [int(i) for i in items.split(",")]
        outcomes = {}
        for i in wanted:
            if not 0 <= i < len(rec.items):
                raise HTTPProblem(
                    422, f"item {i} does not exist (0 to {len(rec.items) - 1})", loc=["query", "items"]
                )
            item = rec.items[i]
            if item.status.is_terminal:
                outcomes[str(i)] = {
                    "label": item.label,
                    "status": item.status.value,
                    "result": texts.get(i),
                    "error": item.error,
                }
        return {"id": job_id, "status": rec.status.value, "items": outcomes}

    @app.get("/v1/jobs/{job_id}/circuits")
    def get_circuits(job_id: str, user: Caller) -> dict:
        rec = own(user, job_id, "read its circuits")
        texts = manager.circuits(job_id)
        return {"id": job_id, "circuits": {it.label: t for it, t in zip(rec.items, texts)}}

    @app.post("/v1/jobs/{job_id}/cancel")
    def cancel_job(job_id: str, user: Caller) -> dict:
        """Idempotent: a finished job answers with its final state."""
        own(user, job_id, "cancel it")
        manager.cancel(job_id)
        return full_view(load(job_id))

    @app.post("/v1/jobs/{job_id}/resubmit", status_code=201)
    def resubmit_job(job_id: str, user: Caller, body: ResubmitBody | None = None) -> dict:
        own(user, job_id, "resubmit it")
        rec = manager.resubmit(job_id, only_failed=bool(body and body.only_failed))
        return full_view(rec)

    # -- the queue -------------------------------------------------------------------------

    @app.get("/v1/queue")
    def get_queue(user: Caller) -> dict:
        """Waiting jobs head first (1-based positions), and the running ones."""
        pending = manager.pending(device)
        running = manager.find(status=["running", "cancelling"], target=device, limit=1000)
        return {
            "device": device,
            "entries": [entry_view(rec, pos) for pos, rec in enumerate(pending, start=1)],
            "running": [entry_view(rec, None) for rec in running],
        }

    @app.delete("/v1/queue/jobs/{job_id}")
    def remove_by_id(job_id: str, user: Caller) -> dict:
        own(user, job_id, "remove it")
        rec = manager.remove_queued(device, job_id=job_id)
        return job_view(rec)

    @app.delete("/v1/queue/positions/{position}")
    def remove_by_position(
        position: int,
        user: Caller,
        expected_id: Annotated[str, Query(min_length=1, max_length=64)],
    ) -> dict:
        """Remove the job at ``position`` only if it is still ``expected_id`` (else 409)."""
        own(user, expected_id, "remove it")
        rec = manager.remove_queued(device, position=position, expected_id=expected_id)
        return job_view(rec)

    @app.delete("/v1/queue/users/{owner}")
    def remove_by_user(owner: str, user: Caller) -> dict:
        if not user.may_act_on(owner):
            raise HTTPProblem(403, f"only {owner} or an admin may remove {owner}'s jobs")
        removed = queue.remove_by_user_id(owner)
        return {"removed": [entry.id for entry in removed]}

    @app.post("/v1/queue/jobs/{job_id}/front")
    def move_to_front(job_id: str, user: Caller) -> dict:
        """Admins only: moving ahead of everybody else is the queue keeper's call."""
        if not user.is_admin:
            raise HTTPProblem(403, "only an admin may move a job to the front of the queue")
        load(job_id)
        rec = manager.move_to_front(job_id)
        return entry_view(rec, manager.position(rec))

    # -- the device ------------------------------------------------------------------------

    @app.get("/v1/device")
    def get_device(user: Caller) -> dict:
        spec = target.device
        return {**spec.summary(), "cirq_json": _device_json(spec)}

    @app.post("/v1/compile")
    def compile_circuits(body: CompileBody, user: Caller) -> dict:
        labelled, _ = _parse_circuits(body.circuits)
        try:
            compiled = {label: target.compile(c) for label, c in labelled.items()}
        except (DeviceValidationError, ValueError) as exc:
            raise HTTPProblem(422, f"cannot compile: {exc}", loc=["body", "circuits"]) from None
        return {"circuits": {label: _circuits.to_json(c) for label, c in compiled.items()}}

    @app.get("/v1/whoami")
    def whoami(user: Caller) -> dict:
        return {"user": user.name, "role": user.role}

    # -- events ----------------------------------------------------------------------------

    @app.get("/v1/events")
    async def events(
        user: Caller,
        after: Annotated[int, Query(ge=0)] = 0,
        timeout: Annotated[float, Query(ge=0, le=MAX_EVENT_WAIT_SECONDS)] = 20.0,
        only_mine: bool = False,
    ) -> dict:
        """Job changes after ``after``; waits up to ``timeout`` s when there are none.

        Ask again with ``after=last``. ``reset`` is true when events after ``after`` are
        no longer known (the server restarted, see ``epoch``, or the client fell far
        behind): re-read your jobs. ``only_mine``: your jobs' events only (an admin's:
        all). Other users' jobs show only id, user, name, status and time added.
        """
        feed.bind(asyncio.get_running_loop())
        found, last, lost = feed.since(after, user, only_mine=only_mine)
        if last == after and not lost and timeout > 0:
            await feed.wait(after, timeout)
            found, last, lost = feed.since(after, user, only_mine=only_mine)
        return {"epoch": feed.epoch, "last": last, "reset": lost, "events": found}

    # Outermost: the two hot requests skip FastAPI's routing and dependency solving,
    # which cost several times a status read and a third of a submit.
    app.add_middleware(
        _FastPaths, status_read=status_read, submit=fast_submit, max_body_bytes=max_body_bytes
    )
    return app


def _bearer_user(users: Users | None, authorization: bytes | None) -> User | None:
    if users is None or authorization is None:
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    return users.authenticate(token.strip()) if scheme.lower() == "bearer" else None


def _parse_circuits(circuits: dict[str, str]) -> tuple[dict[str, cirq.Circuit], list[str] | None]:
    """Circuits from OpenQASM 2.0 or Cirq JSON; also the texts when all were Cirq JSON
    (stored as they came, which saves serialising them again on the hot path)."""
    labelled: dict[str, cirq.Circuit] = {}
    all_json = True
    for label, text in circuits.items():
        loc = ["body", "circuits", label]
        if _circuits.looks_like_qasm(text):
            all_json = False
            try:
                labelled[label] = _circuits.parse_qasm(text, label=label)
            except InvalidCircuitError as exc:
                raise HTTPProblem(422, str(exc), loc=loc) from None
            continue
        try:
            value = _circuits.from_json(text)
        except Exception as exc:
            raise HTTPProblem(
                422,
                f"circuit {label!r} is neither OpenQASM 2.0 (starting 'OPENQASM 2.0;') nor "
                f"Cirq JSON ({type(exc).__name__}: {str(exc)[:200]})",
                loc=loc,
            ) from None
        if isinstance(value, cirq.FrozenCircuit):
            value = value.unfreeze(copy=False)
        if not isinstance(value, cirq.Circuit):
            raise HTTPProblem(
                422, f"circuit {label!r} is Cirq JSON of a {type(value).__name__}, not a Circuit", loc=loc
            )
        labelled[label] = value
    return labelled, (list(circuits.values()) if all_json else None)


def _device_json(spec) -> dict:
    """What a client needs to check and compile circuits itself, as Cirq JSON."""
    dump = lambda value: None if value is None else cirq.to_json(value, indent=None)  # noqa: E731
    return {
        "qubits": dump(list(spec.qubits) if spec.qubits is not None else None),
        "connectivity": dump(
            [list(edge) for edge in spec.connectivity] if spec.connectivity is not None else None
        ),
        "gateset": dump(spec.gateset),
        "compile_to": dump(spec.compile_to),
    }


def _as_problem(exc: QnbError) -> HTTPProblem:
    if isinstance(exc, HTTPProblem):
        return exc
    if isinstance(exc, (InvalidCircuitError, DeviceValidationError)):
        return HTTPProblem(422, str(exc), loc=["body", "circuits"])
    if isinstance(exc, InvalidOptionError):
        return HTTPProblem(422, str(exc), loc=["body"])
    if isinstance(exc, UnknownJobError):
        return HTTPProblem(404, str(exc))
    if isinstance(exc, QueueConflictError):
        return HTTPProblem(409, str(exc))
    if isinstance(exc, QueueError):
        return HTTPProblem(409, str(exc))
    return HTTPProblem(409, str(exc))


class _FastPaths:
    """``GET /v1/jobs/{id}`` and ``POST /v1/jobs`` answered by ``status_read(headers,
    job_id)`` and ``submit(headers, body)`` when these give a body. Anything else, and
    every error (which the FastAPI routes answer and document), passes on; a submit's
    body, already read, is handed on as it came."""

    JOBS = "/v1/jobs"

    def __init__(self, app, *, status_read, submit, max_body_bytes: int):
        self.app = app
        self.status_read = status_read
        self.submit = submit
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        method: str = scope["method"]
        if method == "GET" and path.startswith(self.JOBS + "/"):
            job_id = path[len(self.JOBS) + 1 :]
            if job_id and "/" not in job_id:
                body = self.status_read(dict(scope["headers"]), job_id)
                if body is not None:
                    return await _send_json(send, 200, body)
        elif method == "POST" and path == self.JOBS:
            headers = dict(scope["headers"])
            length = headers.get(b"content-length", b"")
            if length.isdigit() and int(length) <= self.max_body_bytes:
                raw = await _read_body(receive)
                answer = self.submit(headers, raw)
                if answer is not None:
                    return await _send_json(send, 201, answer)
                receive = _replay(raw, receive)
        await self.app(scope, receive, send)


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(raw: bytes, receive):
    """A ``receive`` that gives the body read already, then listens to the client."""
    sent = False

    async def replaying_receive():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        return await receive()

    return replaying_receive


async def _send_json(send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _BodyTooLarge(BaseException):
    """Not an Exception: FastAPI turns errors while reading a body into 400."""


class _BodyLimit:
    """413 for request bodies above ``max_bytes``, counted as they arrive (a missing or
    false Content-Length does not get a larger body through)."""

    def __init__(self, app, *, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._too_large(send)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _BodyTooLarge
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._too_large(send)

    async def _too_large(self, send):
        body = json.dumps(
            {"detail": f"request body above the server's limit of {self.max_bytes} bytes; "
             "split the batch into several jobs"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
