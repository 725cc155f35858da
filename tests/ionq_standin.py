"""A stand-in for IonQ's cloud API (v0.4), as much of it as the real ``cirq-ionq`` client
calls: the tests point ``cirq_ionq.Service(remote_host=...)`` at it.

Endpoints (all under ``/v0.4``, all checking ``Authorization: apiKey <key>``):
``POST /jobs``, ``GET /jobs`` (``status``, ``next``; the page size comes in the body, as
cirq-ionq sends it), ``GET /jobs/{id}``, ``GET /jobs/{id}/results/probabilities`` and
``.../probabilities/aggregated`` (a multi-circuit job), ``PUT /jobs/{id}/status/cancel``,
``DELETE /jobs/{id}``, ``GET /calibrations/current``, ``GET /calibrations`` and ``GET
/backends`` (each backend's ``average_queue_time``, in milliseconds as IonQ gives it:
:attr:`StandIn.average_queue_seconds`).

Jobs run on a clock: ``submitted`` for ``queue_seconds``, ``running`` for ``run_seconds``,
then ``completed`` with the probabilities of a state-vector simulation of the circuits
(keyed by little-endian integers, as IonQ does). Faults to inject: answers with a status
(401, 429, 503, ...), slow answers, a job that fails, held jobs (run until released),
cancelling a job at "IonQ's console", and a server that disappears and comes back
(:meth:`StandIn.stop` / :meth:`StandIn.start` on the same port, same jobs).

Run alone: ``python tests/ionq_standin.py --port 8799 --key KEY``; ``GET /_standin/state``
(no key) tells how many jobs were created and when each completed.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import math
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import cirq
import numpy as np
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

API = "/v0.4"
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class _Server(uvicorn.Server):
    """uvicorn's server, saying when its startup has ended (listening, or failed)."""

    def __init__(self, config: uvicorn.Config):
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets=None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            self.ready.set()


@dataclasses.dataclass
class Fault:
    status: int
    count: int
    method: str | None = None
    path: str | None = None  # a substring of the path
    #: The request is carried out first and only its answer replaced (a job created
    #: whose creator hears an error: the creation is in doubt).
    after: bool = False
    garbage: bool = False  # answer 200 with a body that is not JSON


@dataclasses.dataclass
class StandInJob:
    id: str
    body: dict
    created: float
    run_at: float
    done_at: float
    held: bool = False
    fail_reason: str | None = None
    forced: str | None = None  # canceled / deleted / failed, whatever the clock says
    child_ids: list[str] = dataclasses.field(default_factory=list)
    probabilities: list[dict[str, float]] | None = None

    def status(self, now: float) -> str:
        if self.forced:
            return self.forced
        if now < self.run_at:
            return "submitted"
        if self.held or now < self.done_at:
            return "running"
        return "failed" if self.fail_reason else "completed"

    def view(self, now: float) -> dict:
        status = self.status(now)
        answer: dict[str, Any] = {
            "id": self.id,
            "status": status,
            "backend": self.body.get("backend"),
            "type": self.body.get("type"),
            "name": self.body.get("name", ""),
            "metadata": self.body.get("metadata", {}),
            "shots": self.body.get("shots"),
            "stats": {"qubits": self.body["input"].get("qubits", 0)},
            "submitted_at": _iso(self.created),
        }
        if self.child_ids:
            answer["child_job_ids"] = list(self.child_ids)
        if status == "failed":
            answer["failure"] = {"error": self.fail_reason or "failed", "code": "SimulationError"}
        return answer


def _fault_answer(fault: Fault) -> Response:
    if fault.garbage:
        return Response("<html>502 Bad Gateway</html>", status_code=200, media_type="application/json")
    return JSONResponse({"error": {"message": f"injected {fault.status}"}}, status_code=fault.status)


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


# -- the simulation behind "completed" --------------------------------------------------------

_ONE = {
    "x": cirq.X, "y": cirq.Y, "z": cirq.Z, "h": cirq.H, "s": cirq.S, "si": cirq.S**-1,
    "t": cirq.T, "ti": cirq.T**-1, "v": cirq.X**0.5, "vi": cirq.X**-0.5,
}  # fmt: skip


def _ops(gate: dict) -> list[cirq.Operation]:
    import cirq_ionq  # the native gates, to read native circuits back

    name = gate["gate"]
    q = cirq.LineQubit
    targets = gate.get("targets")
    if targets is None and "target" in gate:
        targets = [gate["target"]]
    if name in _ONE:
        return [_ONE[name](q(t)) for t in targets]
    if name in ("rx", "ry", "rz"):
        rotation = {"rx": cirq.rx, "ry": cirq.ry, "rz": cirq.rz}[name](gate["rotation"])
        return [rotation(q(t)) for t in targets]
    if name == "cnot":
        return [cirq.CNOT(q(gate["control"]), q(gate["target"]))]
    if name == "swap":
        return [cirq.SWAP(q(targets[0]), q(targets[1]))]
    if name in ("xx", "yy", "zz") and "rotation" in gate:
        kind = {"xx": cirq.XXPowGate, "yy": cirq.YYPowGate, "zz": cirq.ZZPowGate}[name]
        return [kind(exponent=gate["rotation"] / math.pi)(q(targets[0]), q(targets[1]))]
    if name == "gpi":
        return [cirq_ionq.GPIGate(phi=gate["phase"])(q(targets[0]))]
    if name == "gpi2":
        return [cirq_ionq.GPI2Gate(phi=gate["phase"])(q(targets[0]))]
    if name == "ms":
        phases = gate["phases"]
        return [cirq_ionq.MSGate(phi0=phases[0], phi1=phases[1], theta=gate.get("angle", 0.25))(
            q(targets[0]), q(targets[1]))]  # fmt: skip
    if name == "zz":
        return [cirq_ionq.ZZGate(theta=gate["phase"])(q(targets[0]), q(targets[1]))]
    raise ValueError(f"the stand-in does not simulate gate {name!r}")


def probabilities(gates: list[dict], n_qubits: int) -> dict[str, float]:
    """IonQ's answer: probabilities keyed by little-endian integers (qubit 0 the lowest bit)."""
    qubits = cirq.LineQubit.range(n_qubits)
    circuit = cirq.Circuit([cirq.I(q) for q in qubits], *(op for g in gates for op in _ops(g)))
    state = cirq.final_state_vector(circuit, qubit_order=qubits, dtype=np.complex128)
    found = {}
    for index, amplitude in enumerate(state):
        p = float(abs(amplitude) ** 2)
        if p > 1e-12:
            bits = format(index, f"0{n_qubits}b")  # qubit 0 first (big-endian)
            found[str(int(bits[::-1], 2))] = p
    return found


# -- the service ---------------------------------------------------------------------------------


class StandIn:
    """The stand-in's state (jobs, faults, counters) and its uvicorn server."""

    def __init__(
        self,
        api_key: str = "standin-key",
        *,
        queue_seconds: float = 0.05,
        run_seconds: float = 0.15,
        qpu_qubits: int = 25,
    ):
        self.api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.qpu_qubits = qpu_qubits
        self.jobs: dict[str, StandInJob] = {}
        self.children: dict[str, str] = {}
        self.lock = threading.Lock()
        self.created = 0  # job creations (POST /jobs that made a job)
        self.requests: Counter[str] = Counter()  # "METHOD route" -> how many
        self.seen_keys: set[str] = set()
        self.faults: list[Fault] = []
        self.delay = 0.0  # seconds before every /v0.4 answer
        self.delay_after_create = 0.0  # seconds between creating a job and answering the POST
        self.hold = False  # new jobs run until released
        self.fail_next: str | None = None  # the next job created fails with this reason
        self.average_queue_seconds = 0.0  # what GET /backends says of every backend
        self.app = self._make_app()
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- control (tests) -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(
        self, status: int, count: int = 1, *, method: str | None = None, path: str | None = None,
        after: bool = False, garbage: bool = False,
    ) -> None:
        """The next ``count`` matching requests are answered with ``status`` (or, with
        ``garbage``, 200 and a body that is not JSON); ``after``: once carried out."""
        with self.lock:
            self.faults.append(Fault(status, count, method, path, after, garbage))

    def release(self, job_id: str | None = None) -> None:
        """Held jobs (all, or one) complete now."""
        now = time.time()
        with self.lock:
            for job in self.jobs.values():
                if job_id in (None, job.id) and job.held:
                    job.held = False
                    job.done_at = max(now, job.run_at)

    def cancel_at_console(self, job_id: str) -> None:
        """Someone cancels the job at IonQ, not through qnb."""
        with self.lock:
            self.jobs[job_id].forced = "canceled"

    def status_of(self, job_id: str) -> str:
        with self.lock:
            return self.jobs[job_id].status(time.time())

    def state(self) -> dict:
        now = time.time()
        with self.lock:
            return {
                "created": self.created,
                "requests": dict(self.requests),
                "jobs": {
                    j.id: {"status": j.status(now), "done_at": None if j.held else j.done_at}
                    for j in self.jobs.values()
                },
            }

    # -- the HTTP API ------------------------------------------------------------------------

    async def _counted_call(self, request: Request, call_next, route: str) -> Response:
        """What every call to the vendor's API goes through: the test's ``delay``, the
        count under ``"METHOD route"``, an injected fault (answered instead of the call,
        or once it is carried out with ``after``), the vendor's check of the caller, and
        ``delay_after_create`` on a call that creates a job (created; answered late)."""
        await self._wait_out("delay")
        with self.lock:
            self.requests[f"{request.method} {route}"] += 1
        fault = self._fault_for(request.method, request.url.path)
        if fault is not None and not fault.after:
            return self._fault_answer(fault)
        refused = self._refuse(request)
        if refused is not None:
            return refused
        answer = await call_next(request)
        if self._creates(request):
            await self._wait_out("delay_after_create")
        return answer if fault is None else self._fault_answer(fault)

    async def _wait_out(self, delay: str) -> None:
        """Wait the seconds ``self.<delay>`` says, or less once the test sets it to 0."""
        until = time.monotonic() + getattr(self, delay)
        while getattr(self, delay) and time.monotonic() < until:
            await asyncio.sleep(0.02)

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if (fault.method in (None, method)) and (fault.path is None or fault.path in path):
                    fault.count -= 1
                    if fault.count <= 0:
                        self.faults.remove(fault)
                    return fault
        return None

    def _make_app(self) -> FastAPI:
        """The app: every call to the vendor's API counted and checked (:meth:`_counted_call`),
        ``GET /_standin/state``, and the vendor's routes (:meth:`_add_routes`)."""
        app = FastAPI()

        @app.middleware("http")
        async def checks(request: Request, call_next):
            route = self._route(request.url.path)
            if route is None:  # not the vendor's API: open, not counted
                return await call_next(request)
            return await self._counted_call(request, call_next, route)

        @app.get("/_standin/state")
        async def state():
            return self.state()

        self._add_routes(app)
        return app

    # What a stand-in of another vendor says of its own (the stand-ins of IBM and Azure).

    def _route(self, path: str) -> str | None:
        """The name a call is counted under (ids as ``{id}``); None: not the vendor's API."""
        return _ID.sub("{id}", path) if path.startswith(API) else None

    def _creates(self, request: Request) -> bool:
        """Whether the call creates a job (``delay_after_create`` holds its answer back)."""
        return request.method == "POST"

    def _refuse(self, request: Request) -> Response | None:
        """The vendor's check of the caller: an answer to refuse with, or None."""
        header = request.headers.get("authorization", "")
        with self.lock:
            self.seen_keys.add(header.removeprefix("apiKey "))
        if header != f"apiKey {self.api_key}":
            return JSONResponse({"error": {"type": "UnauthorizedError", "message": "Invalid key provided"}},
                                status_code=401)  # fmt: skip
        return None

    def _fault_answer(self, fault: Fault) -> Response:
        return _fault_answer(fault)

    def _add_routes(self, app: FastAPI) -> None:
        standin = self

        @app.post(f"{API}/jobs")
        async def create(request: Request):
            body = await request.json()
            kind = body.get("type")
            if kind not in ("ionq.circuit.v1", "ionq.multi-circuit.v1") or "input" not in body:
                return JSONResponse({"error": {"message": f"bad job type {kind!r}"}}, status_code=400)
            return standin._create(body)

        @app.get(f"{API}/jobs")
        async def listing(request: Request, status: str | None = None, next: str | None = None):
            raw = await request.body()
            limit = int((json.loads(raw) if raw else {}).get("limit", 1000))
            now = time.time()
            with standin.lock:
                jobs = [j for j in standin.jobs.values() if j.forced != "deleted"]
                views = [j.view(now) for j in reversed(jobs)]  # newest first
            if status:
                views = [v for v in views if v["status"] == status]
            start = int(next or 0)
            page = views[start : start + limit]
            answer: dict[str, Any] = {"jobs": page}
            if start + limit < len(views):
                answer["next"] = str(start + limit)
            return answer

        @app.get(f"{API}/jobs/{{job_id}}")
        async def get_job(job_id: str):
            job = standin._job(job_id)
            if job is None:
                return JSONResponse({"error": {"message": "not found"}}, status_code=404)
            return job.view(time.time())

        @app.get(f"{API}/jobs/{{job_id}}/results/probabilities")
        async def results(job_id: str):
            job = standin._job(job_id)
            if job is None or job.status(time.time()) != "completed":
                return JSONResponse({"error": {"message": "no results"}}, status_code=404)
            if job.child_ids:
                # A multi-circuit job read as a single one (a client that lost batch_mode):
                # like IonQ, this answers something else than one histogram per circuit.
                return JSONResponse({"error": {"message": "multi-circuit job: use /aggregated"}}, status_code=400)
            return job.probabilities[0]

        @app.get(f"{API}/jobs/{{job_id}}/results/probabilities/aggregated")
        async def aggregated(job_id: str):
            job = standin._job(job_id)
            if job is None or job.status(time.time()) != "completed":
                return JSONResponse({"error": {"message": "no results"}}, status_code=404)
            if not job.child_ids:
                return {job.id: job.probabilities[0]}
            return dict(zip(job.child_ids, job.probabilities))

        @app.put(f"{API}/jobs/{{job_id}}/status/cancel")
        async def cancel(job_id: str):
            return standin._force(job_id, "canceled")  # like IonQ: even a completed job

        @app.delete(f"{API}/jobs/{{job_id}}")
        async def delete(job_id: str):
            return standin._force(job_id, "deleted")

        @app.get(f"{API}/calibrations/current")
        async def calibration():
            return standin._calibration()

        @app.get(f"{API}/calibrations")
        async def calibrations():
            return {"calibrations": [standin._calibration()]}

        @app.get(f"{API}/backends")
        async def backends():
            average = int(standin.average_queue_seconds * 1000)  # IonQ says milliseconds
            return [
                {"backend": name, "status": "available", "degraded": False, "qubits": qubits,
                 "average_queue_time": average, "last_updated": _iso(time.time())}
                for name, qubits in (("simulator", 29), ("qpu.aria-1", standin.qpu_qubits))
            ]  # fmt: skip

    def _calibration(self) -> dict:
        n = self.qpu_qubits
        return {
            "id": "cal-1",
            "target": "qpu.aria-1",
            "date": _iso(time.time()),
            "qubits": n,
            "connectivity": [[a, b] for a in range(n) for b in range(a + 1, n)],
            "fidelity": {"1q": {"mean": 0.9998}, "2q": {"mean": 0.98}, "spam": {"mean": 0.995}},
            "timing": {"1q": 0.000135, "2q": 0.0006, "readout": 0.0003, "reset": 0.00002},
        }

    def _force(self, job_id: str, status: str):
        job = self._job(job_id)
        if job is None:
            return JSONResponse({"error": {"message": "not found"}}, status_code=404)
        with self.lock:
            job.forced = status
        return {"id": job.id, "status": status}

    def _job(self, job_id: str) -> StandInJob | None:
        with self.lock:
            job = self.jobs.get(job_id)
            return None if job is None or job.forced == "deleted" else job

    def _create(self, body: dict) -> dict:
        program = body["input"]
        metadata = body.get("metadata", {})
        if body["type"] == "ionq.multi-circuit.v1":
            sizes = json.loads(metadata.get("qubit_numbers", "[]")) or [program["qubits"]] * len(program["circuits"])
            circuits = [(c["circuit"], n) for c, n in zip(program["circuits"], sizes)]
        else:
            circuits = [(program["circuit"], program["qubits"])]
        now = time.time()
        with self.lock:
            fail_reason, self.fail_next = self.fail_next, None
        try:
            probs = [probabilities(gates, n) for gates, n in circuits]
        except ValueError as exc:
            probs, fail_reason = None, fail_reason or str(exc)
        job = StandInJob(
            id=str(uuid.uuid4()),
            body=body,
            created=now,
            run_at=now + self.queue_seconds,
            done_at=now + self.queue_seconds + self.run_seconds,
            held=self.hold,
            fail_reason=fail_reason,
            probabilities=probs,
        )
        if body["type"] == "ionq.multi-circuit.v1":
            job.child_ids = [str(uuid.uuid4()) for _ in circuits]
        with self.lock:
            self.jobs[job.id] = job
            self.created += 1
        return {"id": job.id, "status": "submitted"}

    # -- the server: start, stop (it "disappears"), start again on the same port -------------

    def start(self, port: int | None = None) -> str:
        if port is None:
            port = self.port or free_port()
        self.port = port
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
            access_log=False,
        )  # fmt: skip
        self._server = _Server(config)
        self._server.install_signal_handlers = lambda: None  # in a thread
        self._thread = threading.Thread(target=self._server.run, name="ionq-standin", daemon=True)
        self._thread.start()
        if not self._server.ready.wait(20) or not self._server.started:
            raise RuntimeError(f"the IonQ stand-in did not start on port {port}")
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
            self._server = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_from_command_line(doc: str, make: Callable[..., Any], *, port: int, key: bool = True) -> None:
    """A stand-in alone, in the foreground (benchmarks run one in a process of its own):
    ``--port``, ``--key`` (with ``key``), ``--queue-seconds``, ``--run-seconds``; it
    prints ``... at URL`` once it listens, and runs until the process is ended."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--port", type=int, default=port)
    if key:
        parser.add_argument("--key", default="standin-key")
    parser.add_argument("--queue-seconds", type=float, default=0.05)
    parser.add_argument("--run-seconds", type=float, default=0.15)
    args = parser.parse_args()
    clock = {"queue_seconds": args.queue_seconds, "run_seconds": args.run_seconds}
    standin = make(args.key, **clock) if key else make(**clock)
    standin.start(args.port)
    print(f"{type(standin).__name__} at {standin.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    serve_from_command_line(__doc__, StandIn, port=8799)
