"""FastAPI routers, one per resource, over the queue service.

Each route turns a request into one :class:`~qnb.server._service.QueueService` call.
Blocking routes are plain ``def`` (FastAPI runs them in its thread pool); the few
``async`` ones do no CPU or disk work on the loop: they hand it to a lane
(:func:`off_loop`) or only read memory.
"""

# No "from __future__ import annotations": FastAPI reads the handlers' annotations.
import asyncio
import concurrent.futures
import threading
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from .. import _options
from .._errors import InvalidOptionError
from .._estimate import CircuitFeatures
from .._status import JobStatus
from ._auth import User, caller
from ._cpu import MAX_WAITING, lane
from ._events import EventFeed
from ._intake import field
from ._service import QueueService, Submission

MAX_EVENT_WAIT_SECONDS = 60.0

class _Lanes(concurrent.futures.Executor):
    """Threads for the async routes' blocking work (submits, reads from SQLite).

    At most ``width`` of them work at once: decoding a body and checking a few circuits
    is CPU work under the GIL, beside the event loop. A request that goes to wait for a
    circuit worker (seconds, behind other users' compiles) gives its lane back first
    (``_cpu.lane``) and waits on a spare thread, so cheap requests never queue behind
    heavy ones. Spare threads: one per heavy request the CPU pool lets wait at once."""

    def __init__(self, width: int, spare: int):
        self._gate = threading.Semaphore(width)
        self._threads = concurrent.futures.ThreadPoolExecutor(
            max_workers=width + spare, thread_name_prefix="qnb-server"
        )

    def submit(self, fn, /, *args, **kwargs) -> concurrent.futures.Future:
        return self._threads.submit(self._in_lane, fn, args, kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._threads.shutdown(wait=wait, cancel_futures=cancel_futures)

    def _in_lane(self, fn, args, kwargs):
        self._gate.acquire()
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                self._gate.release()

        try:
            with lane(give_back):
                return fn(*args, **kwargs)
        finally:
            give_back()


_threads = _Lanes(width=2, spare=MAX_WAITING)


async def off_loop(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a lane, awaited: the loop stays free."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_threads, lambda: fn(*args, **kwargs))


# -- dependencies ---------------------------------------------------------------------------


def service(request: Request) -> QueueService:
    return request.app.state.service


def current_user(request: Request) -> User:
    """The caller, by the same function the fast paths use (``_auth.caller``)."""
    return caller(request.app.state.users, request.scope["headers"])


Caller = Annotated[User, Depends(current_user)]
Service = Annotated[QueueService, Depends(service)]


# -- request bodies -------------------------------------------------------------------------

CircuitText = Annotated[str, Field(description="OpenQASM 2.0 or Cirq JSON")]
Label = Annotated[str, Field(description=f"1 to {_options.MAX_NAME_LENGTH} characters")]


class SubmitBody(BaseModel):
    """The body's shape and types (strict: "yes" is not true and "5" is not 5). Its
    values are checked by the service, with the checks ``qnb.submit`` uses
    (``qnb/_options.py``); the limits below are documented here, not checked twice."""

    model_config = ConfigDict(extra="forbid", strict=True)

    circuits: dict[Label, CircuitText] = Field(
        description="label -> circuit (OpenQASM 2.0 or Cirq JSON), at least one"
    )
    shots: int = Field(1000, description="at least 1, at most the device's max_shots")
    name: str | None = Field(
        None, description=f"at most {_options.MAX_NAME_LENGTH} characters"
    )
    position: str = Field("end", description=" or ".join(map(repr, _options.POSITIONS)))
    priority: int = Field(
        0,
        description=f"{_options.MIN_PRIORITY} to {_options.MAX_PRIORITY}, higher runs "
        "first; above 0 only for admins",
    )
    compile: bool = False
    id: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{32}$",
        description="a new job id chosen by the client (32 lowercase hex digits), so that "
        "the client's own records and the server use the same id",
    )
    params: dict[Label, Annotated[str, Field(max_length=10_000)]] | None = Field(
        None,
        description="label -> the sweep point the (resolved) circuit was made at: a "
        "cirq.ParamResolver of plain numbers as Cirq JSON, kept with the item",
    )

    tags: list[str] | None = Field(
        None,
        description=f"at most {_options.MAX_TAGS} tags of 1 to {_options.MAX_TAG_LENGTH} "
        "characters, to find the job again (GET /v1/jobs?tag=...)",
    )
    retries: int | None = Field(
        None,
        description=f"0 to {_options.MAX_RETRIES}: how many times an item whose failure "
        "is transient (a lost worker) runs again on the server",
    )
    max_cost: float | None = Field(
        None,
        description="refuse the job (402, code cost_limit) if its cost as the server "
        "estimates it is above this, in the server's currency",
    )

    def submission(self) -> Submission:
        return Submission(**self.model_dump())


Count = Annotated[int, Field(ge=0, le=10**9)]


class FeaturesBody(BaseModel):
    """One circuit as a time model and a price table read it (``qnb.CircuitFeatures``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    qubits: Count
    one_qubit_gates: Count = 0
    two_qubit_gates: Count = 0
    multi_qubit_gates: Count = 0
    measurements: Count = 0
    depth: Count = 0
    terminal: bool = Field(True, description="every measurement at the end")


class EstimateBody(SubmitBody):
    """A submit's body (nothing is stored), or instead of ``circuits`` only their
    ``features`` (what a kernel's ``qnb.estimate`` sends)."""

    circuits: dict[Label, CircuitText] | None = None
    features: list[FeaturesBody] | None = Field(None, max_length=10_000)

    def submission(self) -> Submission:
        return Submission(**self.model_dump(exclude={"features"}))

    def circuit_features(self) -> list[CircuitFeatures]:
        return [CircuitFeatures(**f.model_dump()) for f in self.features or ()]


class ResubmitBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    only_failed: bool = False


class CompileBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    circuits: dict[Label, CircuitText] = Field(description="label -> circuit, at least one")


# -- health ---------------------------------------------------------------------------------

health = APIRouter(tags=["health"])


@health.get("/v1/health")
async def get_health(request: Request) -> dict:
    feed: EventFeed = request.app.state.feed
    return {"status": "ok", "device": request.app.state.service.device, "epoch": feed.epoch,
            "last": feed.seq}


# -- jobs -----------------------------------------------------------------------------------

jobs = APIRouter(tags=["jobs"])


@jobs.post("/v1/jobs", status_code=201, response_class=JSONResponse)
async def submit_job(
    body: SubmitBody,
    user: Caller,
    svc: Service,
    idempotency_key: Annotated[str | None, Header(description=f"at most {_options.MAX_NAME_LENGTH} characters")] = None,
) -> JSONResponse:
    """Queue a job; it is in the database before this answers.

    A retry with the same ``Idempotency-Key`` returns the job the first try created.
    """
    view = await off_loop(svc.accept, user, body.submission(), idempotency_key=idempotency_key)
    return JSONResponse(view, status_code=201)


@jobs.post("/v1/estimate")
async def estimate_job(body: EstimateBody, user: Caller, svc: Service) -> dict:
    """What a job would take if submitted now: ``run_seconds``, ``wait_seconds`` (behind
    every user's jobs in the queue), ``finish`` (Unix seconds), ``cost``, ``currency``,
    ``basis``. The body is a submit's (its circuits checked as a submit's), or
    ``features`` and ``shots``; nothing is stored."""
    if (body.circuits is None) == (body.features is None):
        raise field(InvalidOptionError("give either circuits or features"), "circuits")
    if body.features is not None:
        return await off_loop(svc.estimate, user, features=body.circuit_features(), shots=body.shots)
    return await off_loop(svc.estimate, user, body.submission())


@jobs.get("/v1/jobs")
def list_jobs(
    user: Caller,
    svc: Service,
    status: Annotated[list[JobStatus] | None, Query()] = None,
    owner: Annotated[str | None, Query(alias="user", max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    tag: Annotated[list[str] | None, Query(max_length=_options.MAX_TAG_LENGTH)] = None,
) -> dict:
    """Jobs, newest first: your own (an admin: everybody's, or ``user``'s); with
    ``tag``, only those carrying it (repeated: all of them)."""
    wanted = None if not status else [s.value for s in status]
    return svc.list_jobs(user, status=wanted, owner=owner, limit=limit, tags=tag or ())


@jobs.get("/v1/jobs/{job_id}")
def get_job(job_id: str, user: Caller, svc: Service) -> dict:
    return svc.view(user, job_id)


@jobs.get("/v1/jobs/{job_id}/results")
def get_results(
    job_id: str,
    user: Caller,
    svc: Service,
    items: Annotated[str | None, Query(pattern=r"^\d+(,\d+)*$", max_length=4000)] = None,
) -> dict:
    """Finished items' outcomes (``items``: comma-separated indices; all if absent).

    An answer holds at most the server's ``results_bytes`` of results; ``more`` then
    lists the finished items left out: ask again with ``items=`` those.
    """
    wanted = None if items is None else [int(i) for i in items.split(",")]
    return svc.results(user, job_id, items=wanted)


@jobs.get("/v1/jobs/{job_id}/circuits")
def get_circuits(job_id: str, user: Caller, svc: Service) -> dict:
    return svc.circuits(user, job_id)


@jobs.post("/v1/jobs/{job_id}/cancel")
def cancel_job(job_id: str, user: Caller, svc: Service) -> dict:
    """Idempotent: a finished job answers with its final state."""
    return svc.cancel(user, job_id)


@jobs.post("/v1/jobs/{job_id}/resubmit", status_code=201)
def resubmit_job(job_id: str, user: Caller, svc: Service, body: ResubmitBody | None = None) -> dict:
    return svc.resubmit(user, job_id, only_failed=bool(body and body.only_failed))


@jobs.get("/v1/whoami")
def whoami(user: Caller, svc: Service) -> dict:
    return svc.whoami(user)


# -- the queue ------------------------------------------------------------------------------

queue = APIRouter(tags=["queue"])


@queue.get("/v1/queue")
def get_queue(user: Caller, svc: Service) -> dict:
    """Waiting jobs head first (1-based positions), and the running ones."""
    return svc.queue(user)


@queue.delete("/v1/queue/jobs/{job_id}")
def remove_by_id(job_id: str, user: Caller, svc: Service) -> dict:
    return svc.remove_by_id(user, job_id)


@queue.delete("/v1/queue/positions/{position}")
def remove_by_position(
    position: int,
    user: Caller,
    svc: Service,
    expected_id: Annotated[str, Query(min_length=1, max_length=64)],
) -> dict:
    """Remove the job at ``position`` only if it is still ``expected_id`` (else 409)."""
    return svc.remove_by_position(user, position, expected_id=expected_id)


@queue.delete("/v1/queue/users/{owner}")
def remove_by_user(owner: str, user: Caller, svc: Service) -> dict:
    return svc.remove_by_user(user, owner)


@queue.post("/v1/queue/jobs/{job_id}/front")
def move_to_front(job_id: str, user: Caller, svc: Service) -> dict:
    """Admins only: moving ahead of everybody else is the queue keeper's call."""
    return svc.move_to_front(user, job_id)


# -- the device -----------------------------------------------------------------------------

device = APIRouter(tags=["device"])


@device.get("/v1/device")
def get_device(user: Caller, svc: Service) -> dict:
    return svc.device_info(user)


@device.post("/v1/compile")
def compile_circuits(body: CompileBody, user: Caller, svc: Service) -> dict:
    return svc.compile(user, body.circuits)


# -- events ---------------------------------------------------------------------------------

events = APIRouter(tags=["events"])


@events.get("/v1/events")
async def get_events(
    request: Request,
    user: Caller,
    after: Annotated[int, Query(ge=0)] = 0,
    timeout: Annotated[float, Query(ge=0, le=MAX_EVENT_WAIT_SECONDS)] = 20.0,
    only_mine: bool = False,
) -> dict:
    """Job changes after ``after``; waits up to ``timeout`` s when there are none.

    Ask again with ``after=last``. ``reset`` is true when events after ``after`` are
    no longer known (the server restarted, see ``epoch``, or the client fell far
    behind): re-read your jobs. ``only_mine``: your jobs' events only (an admin's:
    all). Other users' jobs show only id, user, name, status and time added. Your own
    jobs' events carry ``changed_items`` (index -> item) and, on a job's newest event
    in the answer, all its ``items``.
    """
    feed: EventFeed = request.app.state.feed
    found, last, lost = feed.since(after, user, only_mine=only_mine)
    if last == after and not lost and timeout > 0:
        await feed.wait(after, timeout)
        found, last, lost = feed.since(after, user, only_mine=only_mine)
    return {"epoch": feed.epoch, "last": last, "reset": lost, "events": found}


ROUTERS = (health, jobs, queue, device, events)
