"""A stand-in for Amazon Braket's API, S3 and STS, as much of them as the real
``amazon-braket-sdk`` / boto3 clients call: the tests point boto3 at it with its own
endpoint overrides (``AWS_ENDPOINT_URL_BRAKET``, ``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL_STS``; :meth:`BraketStandIn.env`) and dummy credentials.

One server on 127.0.0.1 answers all three: a request goes to the service named in its
SigV4 credential scope (``Credential=KEY/date/region/SERVICE/aws4_request``); the access
key must be the stand-in's (403 otherwise, as AWS answers; the signature itself is not
checked).

- Braket (REST-JSON): ``GET /device/{arn}``, ``POST /quantum-task`` (``clientToken`` is
  honoured as AWS does: the same token answers the same task), ``GET
  /quantum-task/{arn}`` (with ``queueInfo``), ``PUT /quantum-task/{arn}/cancel``,
  ``GET /device/{arn}`` with ``deviceQueueInfo`` (the queue depth, as AwsDevice.queue_depth() reads it),
  ``POST /quantum-tasks`` (search: ``deviceArn``, ``status``, ``quantumTaskArn``
  filters, pages, tags in the summaries). Errors carry ``x-amzn-ErrorType``.
- S3 (path-style): ``PUT /{bucket}`` and ``GET /{bucket}/{key}``; a completed task's
  ``results.json`` is there, computed by Braket's own state-vector simulator from the
  OpenQASM the task was created with. STS: ``GetCallerIdentity`` (the SDK's default bucket).

Tasks run on a clock: QUEUED for ``queue_seconds``, RUNNING for ``run_seconds``, then
COMPLETED (or FAILED). :meth:`BraketStandIn.queue_others` puts other accounts' tasks ahead
of every new one, leaving the queue one at a time: positions and the queue depth count them,
and a task created behind them stays QUEUED until they are gone. Faults to inject: answers with a status (401, 403, 429, 500,
503, ...), slow answers, a task that fails, held tasks, an answer lost after its
request was carried out (``after=True``). ``GET /_standin/state`` (unsigned) tells how
many tasks were created and when each completed.

Run alone: ``python tests/braket_standin.py --port 8798``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import threading
import time
import types
import uuid
from collections import Counter
from urllib.parse import unquote

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ionq_standin import Fault, StandIn, serve_from_command_line

ACCESS_KEY = "AKIASTANDIN000000000"
SECRET_KEY = "standin-secret-key-0123456789"
ACCOUNT = "123456789012"
REGION = "us-east-1"
SV1 = "arn:aws:braket:::device/quantum-simulator/amazon/sv1"
QPU = f"arn:aws:braket:{REGION}::device/qpu/standin/Chain-6"
UNFINISHED = ("CREATED", "QUEUED", "RUNNING", "CANCELLING")
_SCOPE = re.compile(r"Credential=([^/]+)/[^/]+/[^/]+/([^/]+)/aws4_request")
_ERROR_CODES = {400: "ValidationException", 401: "UnauthorizedException", 403: "AccessDeniedException",
                404: "ResourceNotFoundException", 409: "ConflictException", 429: "ThrottlingException"}  # fmt: skip


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


def _capabilities(qpu: bool) -> str:
    """GetDevice's ``deviceCapabilities``: a simulator like SV1, or a 6-qubit chain QPU
    with IQM's schema (qubits numbered from 1, as IQM's are)."""
    from braket.devices import LocalSimulator  # (braket's SDK: seconds to import, where it is used)

    simulator = json.loads(LocalSimulator("braket_sv").properties.json())
    simulator["paradigm"]["qubitCount"] = 34
    simulator["service"]["shotsRange"] = [0, 100_000]
    if not qpu:
        return json.dumps(simulator)
    action = simulator["action"]["braket.ir.openqasm.program"]
    action["supportedOperations"] = ["cz", "prx", "rx", "ry", "rz", "x", "y", "z", "h", "cnot", "s", "si",
                                     "t", "ti", "swap", "phaseshift", "cphaseshift", "i"]  # fmt: skip
    return json.dumps({
        "braketSchemaHeader": {"name": "braket.device_schema.iqm.iqm_device_capabilities", "version": "1"},
        "service": {**simulator["service"], "shotsRange": [1, 20_000]},
        "action": {"braket.ir.openqasm.program": action},
        "deviceParameters": {},
        "paradigm": {
            "braketSchemaHeader": {"name": "braket.device_schema.gate_model_qpu_paradigm_properties", "version": "1"},
            "qubitCount": 6, "nativeGateSet": ["cz", "prx"],
            "connectivity": {"fullyConnected": False,
                             "connectivityGraph": {str(k): [str(k + 1)] for k in range(1, 6)}},
        },
    })  # fmt: skip


@dataclasses.dataclass
class StandInTask:
    arn: str
    device: str
    body: dict
    created: float
    run_at: float
    done_at: float
    result: str | None  # results.json
    held: bool = False
    fail_reason: str | None = None
    forced: str | None = None  # CANCELLING / CANCELLED, whatever the clock says

    def status(self, now: float) -> str:
        if self.forced == "CANCELLING" and now >= self.done_at:
            self.forced = "CANCELLED"
        if self.forced:
            return self.forced
        if now < self.run_at:
            return "QUEUED"
        if self.held or now < self.done_at:
            return "RUNNING"
        return "FAILED" if self.fail_reason else "COMPLETED"

    @property
    def directory(self) -> str:
        return f"{self.body['outputS3KeyPrefix']}/{self.arn.rpartition('/')[2]}"

    def summary(self, now: float) -> dict:
        return {
            "quantumTaskArn": self.arn, "status": self.status(now), "deviceArn": self.device,
            "shots": self.body["shots"], "outputS3Bucket": self.body["outputS3Bucket"],
            "outputS3Directory": self.directory, "createdAt": _iso(self.created),
            "tags": self.body.get("tags") or {},
        }  # fmt: skip


class BraketStandIn:
    """The stand-in's state (tasks, S3 objects, faults, counters) and its uvicorn server."""

    def __init__(self, *, queue_seconds: float = 0.05, run_seconds: float = 0.15):
        self.access_key = ACCESS_KEY  # the one key accepted (change it: credentials "rotated")
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.tasks: dict[str, StandInTask] = {}
        self.tokens: dict[str, str] = {}  # clientToken -> task ARN
        self.objects: dict[tuple[str, str], bytes] = {}
        self.buckets: set[str] = set()
        self.lock = threading.Lock()
        self.created = 0
        self.requests: Counter[str] = Counter()  # "service METHOD route" -> how many
        self.faults: dict[str, list[Fault]] = {"braket": [], "s3": [], "sts": []}
        self.delay = 0.0  # seconds before every answer
        self.delay_after_create = 0.0
        self.hold = False
        self.fail_next: str | None = None
        self.honour_client_token = True
        self.search_hides_newer_than = 0.0  # seconds: a search that lags behind creations
        self.devices = {SV1: ("SV1", "SIMULATOR", _capabilities(False)), QPU: ("Chain-6", "QPU", _capabilities(True))}
        self._others = (0, 1.0, 0.0)  # other accounts' tasks queued: (how many, seconds each, since)
        self.app = self._make_app()
        self.port: int | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    url = StandIn.url

    def env(self) -> dict[str, str]:
        """What points boto3 (and so the Braket SDK) here, with the stand-in's key."""
        return {
            "AWS_ENDPOINT_URL_BRAKET": self.url, "AWS_ENDPOINT_URL_S3": self.url, "AWS_ENDPOINT_URL_STS": self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
            "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        }  # fmt: skip

    # -- control (tests) -----------------------------------------------------------------

    def inject(self, status: int, count: int = 1, *, method: str | None = None, path: str | None = None,
               service: str = "braket", after: bool = False) -> None:  # fmt: skip
        with self.lock:
            self.faults[service].append(Fault(status, count, method, path, after))

    def release(self) -> None:
        now = time.time()
        with self.lock:
            for task in self.tasks.values():
                if task.held:
                    task.held, task.done_at = False, max(now, task.run_at)

    def queue_others(self, count: int, seconds_each: float) -> None:
        """``count`` tasks of other accounts wait ahead of every new task, one leaving the
        queue every ``seconds_each``."""
        with self.lock:
            self._others = (count, seconds_each, time.time())

    def _others_left(self, now: float) -> int:
        count, each, since = self._others
        return max(0, count - int((now - since) / each))

    def _others_gone_at(self) -> float:
        count, each, since = self._others
        return since + count * each

    def status_of(self, arn: str) -> str:
        with self.lock:
            return self.tasks[arn].status(time.time())

    def state(self) -> dict:
        now = time.time()
        with self.lock:
            return {
                "created": self.created, "requests": dict(self.requests),
                "tasks": {t.arn: {"status": t.status(now), "done_at": None if t.held else t.done_at}
                          for t in self.tasks.values()},
            }  # fmt: skip

    # -- HTTP ------------------------------------------------------------------------------

    def _fault_for(self, service: str, method: str, path: str) -> Fault | None:
        """The next injected fault for this request (IonQ's stand-in's matching, per
        service; the path ends in ``$``: ``path="/quantum-task$"`` is the create alone)."""
        shim = types.SimpleNamespace(faults=self.faults[service], lock=self.lock)
        return StandIn._fault_for(shim, method, path + "$")

    def _make_app(self) -> FastAPI:
        app = FastAPI()
        standin = self

        @app.get("/_standin/state")
        async def state():
            return standin.state()

        @app.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "DELETE", "HEAD"])
        async def any_call(request: Request, rest: str):
            body = await request.body()  # the request arrives whole; only its answer is slow
            if standin.delay:
                await asyncio.sleep(standin.delay)
            found = _SCOPE.search(request.headers.get("authorization", ""))
            key, service = found.groups() if found else ("", "braket")
            path = unquote(request.url.path)
            route = re.sub(r"^/(device|quantum-task)/.+?(/cancel)?$", r"/\1/{arn}\2", path)
            with standin.lock:
                standin.requests[f"{service} {request.method} {route}"] += 1
            fault = standin._fault_for(service, request.method, path)
            if fault is not None and not fault.after:
                return _error(service, fault.status, _ERROR_CODES.get(fault.status, "InternalServiceException"), "injected")
            if key != standin.access_key:
                return _error(service, 403, "UnrecognizedClientException", "The security token included in the request is invalid.")
            answer = await asyncio.to_thread(standin._answer, service, request.method, path, body)
            if request.method == "POST" and path == "/quantum-task" and standin.delay_after_create:
                until = time.monotonic() + standin.delay_after_create
                while standin.delay_after_create and time.monotonic() < until:
                    await asyncio.sleep(0.02)
            if fault is not None:
                return _error(service, fault.status, _ERROR_CODES.get(fault.status, "InternalServiceException"), "injected")
            return answer

        return app

    def _answer(self, service: str, method: str, path: str, body: bytes) -> Response:
        if service == "s3":
            return self._s3(method, path)
        if service == "sts":
            return Response(_CALLER_IDENTITY, media_type="text/xml")
        data = json.loads(body) if body else {}
        if method == "GET" and path.startswith("/device/"):
            found = self.devices.get(path.removeprefix("/device/"))
            if found is None:
                return _error("braket", 404, "ResourceNotFoundException", "Braket device not found")
            name, kind, capabilities = found
            return JSONResponse({"deviceArn": path.removeprefix("/device/"), "deviceName": name, "providerName": "standin",
                                 "deviceType": kind, "deviceStatus": "ONLINE", "deviceCapabilities": capabilities,
                                 "deviceQueueInfo": self._queue_info(path.removeprefix("/device/"))})  # fmt: skip
        if method == "POST" and path == "/quantum-task":
            return self._create(data)
        if method == "POST" and path == "/quantum-tasks":
            return self._search(data)
        if path.startswith("/quantum-task/"):
            arn = path.removeprefix("/quantum-task/").removesuffix("/cancel")
            with self.lock:
                task = self.tasks.get(arn)
            if task is None:
                return _error("braket", 404, "ResourceNotFoundException", f"quantum task {arn} not found")
            return self._cancel(task) if method == "PUT" else JSONResponse(self._view(task))
        return _error("braket", 400, "ValidationException", f"the stand-in has no {method} {path}")

    def _queue_info(self, device: str) -> list[dict]:
        """GetDevice's ``deviceQueueInfo``: normal and priority task queues, hybrid jobs."""
        now = time.time()
        with self.lock:
            waiting = sum(1 for t in self.tasks.values() if t.device == device and t.status(now) == "QUEUED")
            waiting += self._others_left(now)
        return [
            {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": str(waiting), "queuePriority": "Normal"},
            {"queue": "QUANTUM_TASKS_QUEUE", "queueSize": "0", "queuePriority": "Priority"},
            {"queue": "JOBS_QUEUE", "queueSize": "0"},
        ]

    def _create(self, data: dict) -> Response:
        token = data.get("clientToken")
        with self.lock:
            if self.honour_client_token and token in self.tokens:
                return JSONResponse({"quantumTaskArn": self.tokens[token]}, status_code=201)
            fail_reason, self.fail_next = self.fail_next, None
        if data.get("deviceArn") not in self.devices:
            return _error("braket", 400, "ValidationException", f"no device {data.get('deviceArn')}")
        arn = f"arn:aws:braket:{REGION}:{ACCOUNT}:quantum-task/{uuid.uuid4()}"
        try:
            from braket.default_simulator import StateVectorSimulator
            from braket.ir.openqasm import Program

            program = Program(source=json.loads(data["action"])["source"])
            result = StateVectorSimulator().run_openqasm(program, shots=data["shots"])
        except Exception as exc:  # Braket validates the program at creation
            return _error("braket", 400, "ValidationException", f"invalid program: {exc}")
        result.taskMetadata.id, result.taskMetadata.deviceId = arn, data["deviceArn"]
        now = time.time()
        run_at = max(now + self.queue_seconds, self._others_gone_at())  # behind other accounts' tasks
        task = StandInTask(arn, data["deviceArn"], data, now, run_at, run_at + self.run_seconds, result.json(),
                           held=self.hold, fail_reason=fail_reason)  # fmt: skip
        with self.lock:
            self.tasks[arn] = task
            self.tokens[token] = arn
            self.created += 1
        return JSONResponse({"quantumTaskArn": arn}, status_code=201)

    def _view(self, task: StandInTask) -> dict:
        now = time.time()
        view = task.summary(now)
        status = view["status"]
        if status == "QUEUED":
            with self.lock:
                ahead = sum(1 for t in self.tasks.values()
                            if t.device == task.device and t.created < task.created and t.status(now) == "QUEUED")  # fmt: skip
                ahead += self._others_left(now)
            view["queueInfo"] = {"queue": "QUANTUM_TASKS_QUEUE", "position": str(ahead + 1), "queuePriority": "Normal"}
        else:
            view["queueInfo"] = {"queue": "QUANTUM_TASKS_QUEUE", "position": "None", "queuePriority": "Normal",
                                 "message": f"Task is in {status} status."}  # fmt: skip
        if status == "FAILED":
            view["failureReason"] = task.fail_reason
        view["deviceParameters"] = "{}"
        return view

    def _cancel(self, task: StandInTask) -> Response:
        now = time.time()
        with self.lock:
            status = task.status(now)
            if status in ("COMPLETED", "FAILED", "CANCELLED"):
                return _error("braket", 409, "ConflictException", f"quantum task is {status}")
            task.forced, task.done_at = "CANCELLING", now + 0.1
        return JSONResponse({"quantumTaskArn": task.arn, "cancellationStatus": "CANCELLING"})

    def _search(self, data: dict) -> Response:
        now = time.time()
        with self.lock:
            found = [t.summary(now) for t in reversed(self.tasks.values())
                     if t.created <= now - self.search_hides_newer_than]  # newest first
        for f in data.get("filters", []):
            if f["operator"] != "EQUAL" or f["name"] not in ("deviceArn", "status", "quantumTaskArn"):
                return _error("braket", 400, "ValidationException", f"the stand-in filters {f['name']} EQUAL only")
            found = [s for s in found if s[f["name"]] in f["values"]]
        start, size = int(data.get("nextToken") or 0), int(data.get("maxResults") or 100)
        answer: dict = {"quantumTasks": found[start : start + size]}
        if start + size < len(found):
            answer["nextToken"] = str(start + size)
        return JSONResponse(answer)

    def _s3(self, method: str, path: str) -> Response:
        bucket, _, key = path.lstrip("/").partition("/")
        if method == "PUT" and not key:
            with self.lock:
                self.buckets.add(bucket)
            return Response(status_code=200, headers={"Location": f"/{bucket}"})
        with self.lock:
            body = self.objects.get((bucket, key))
            if body is None:
                now = time.time()
                body = next((t.result.encode() for t in self.tasks.values()
                             if t.body["outputS3Bucket"] == bucket and f"{t.directory}/results.json" == key
                             and t.status(now) == "COMPLETED"), None)  # fmt: skip
        if body is None:
            return _error("s3", 404, "NoSuchKey", "The specified key does not exist.")
        return Response(body, media_type="application/json")

    # The server: IonQ's stand-in's (uvicorn on a thread; stop, start again on the same port).
    start = StandIn.start
    stop = StandIn.stop


_CALLER_IDENTITY = (
    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><GetCallerIdentityResult>'
    f"<Arn>arn:aws:iam::{ACCOUNT}:user/standin</Arn><UserId>AIDASTANDIN</UserId><Account>{ACCOUNT}</Account>"
    "</GetCallerIdentityResult><ResponseMetadata><RequestId>standin</RequestId></ResponseMetadata>"
    "</GetCallerIdentityResponse>"
)


def _error(service: str, status: int, code: str, message: str) -> Response:
    if service == "braket":
        return JSONResponse({"message": message}, status_code=status, headers={"x-amzn-ErrorType": code})
    text = f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    if service == "sts":
        text = f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error></ErrorResponse>"
    return Response(text, status_code=status, media_type="text/xml")


if __name__ == "__main__":
    serve_from_command_line(__doc__, BraketStandIn, port=8798, key=False)
