"""A stand-in for an Azure Quantum workspace, as much of it as the real ``azure-quantum``
client calls, plus the blob storage it uploads inputs to and reads outputs from: the
tests point ``azure.quantum.Workspace`` at it.

Where the client is pointed: the workspace's data-plane endpoint is the one setting the
client takes for it (``Workspace(..., _quantum_endpoint=URL)``, what
``Workspace.from_connection_string`` passes; a connection string itself only takes
``https://<region>.quantum.azure.com/``), with an API key (``AzureKeyCredential``, sent
as ``x-ms-quantum-api-key``), so no Azure AD and no ARM call. Storage needs no setting:
the client writes to and reads from whatever SAS URLs the workspace hands out
(``POST .../storage/sasUri``), and this one hands out its own
(``http://127.0.0.1:PORT/<account>/<container>?<sas>``, path-style like Azurite).

Workspace endpoints (under ``/subscriptions/{s}/resourceGroups/{g}/providers/
Microsoft.Quantum/workspaces/{w}``, all checking the key): ``GET providerStatus``,
``POST storage/sasUri``, ``PUT jobs/{id}`` (409 when the id exists), ``GET jobs/{id}``,
``GET jobs`` (``filter`` on Target / State / Name, ``top``, ``skip``, ``nextLink``),
``POST jobs/{id}:cancel``. Blob endpoints (checking the SAS signature): ``PUT`` and
``GET``/``HEAD`` of a blob.

Jobs run on a clock: ``Waiting`` for ``queue_seconds``, ``Executing`` for
``run_seconds``, then ``Succeeded`` with an output blob: IonQ's probabilities
(``ionq.circuit.v1`` in, ``{"histogram": ...}`` out, little-endian integer keys, as
IonQ answers) or Quantinuum's per-shot registers (OpenQASM 2 in, ``{"<creg>":
["<bits>", ...]}`` out, each string the register's highest bit first). Faults: those of
:class:`ionq_standin.StandIn` (answers with a status, slow answers, a failing job, held
jobs, a cancel "at the portal", a server that goes away and comes back).
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import urllib.parse
from typing import Any

import cirq
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ionq_standin import StandIn, StandInJob, _iso, probabilities, serve_from_command_line

SUBSCRIPTION = "00000000-1111-2222-3333-444444444444"
GROUP = "rg-standin"
WORKSPACE = "ws-standin"
LOCATION = "westus"
ACCOUNT = "standinstore"
WORKSPACE_PATH = (
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Quantum/workspaces/{WORKSPACE}"
)
BLOB_PREFIX = f"/{ACCOUNT}/"  # path-style blob URLs, like Azurite
SIGNATURE = "standin-sas-signature"
_SAS = f"sv=2023-11-03&se=2099-01-01T00%3A00%3A00Z&sr=c&sp=racw&sig={SIGNATURE}"
_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CREG = re.compile(r"^\s*creg\s+(\w+)\[(\d+)\];", re.MULTILINE)
TARGETS = {"IonQ": {"ionq.simulator": 29, "ionq.qpu.aria-1": 25, "ionq.qpu.forte-1": None},  # None: size not said
           "quantinuum": {"quantinuum.sim.h2-1e": 56, "quantinuum.qpu.h2-1": 56}}  # fmt: skip


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@dataclasses.dataclass
class AzureJob(StandInJob):
    """A job in the workspace; ``body`` is the JobDetails the client PUT."""

    output: bytes | None = None
    cancelled_at: float | None = None

    def status(self, now: float) -> str:
        if self.forced:
            return self.forced
        if now < self.run_at:
            return "Waiting"
        if self.held or now < self.done_at:
            return "Executing"
        return "Failed" if self.fail_reason else "Succeeded"

    def view(self, now: float, base_url: str) -> dict:
        status = self.status(now)
        answer = {key: value for key, value in self.body.items() if key != "status"}
        answer.update(id=self.id, status=status, itemType="Job", creationTime=_iso(self.created))
        if status != "Waiting":
            answer["beginExecutionTime"] = _iso(self.run_at)
        if status in ("Succeeded", "Failed"):
            answer["endExecutionTime"] = _iso(self.done_at)
        if status == "Succeeded":
            # Without a SAS, as the service answers: the client asks storage/sasUri for one.
            answer["outputDataUri"] = f"{base_url}/{ACCOUNT}/job-{self.id}/rawOutputData"
            shots = int((self.body.get("inputParams") or {}).get("shots", 0))
            answer["costEstimate"] = {
                "currencyCode": "USD", "estimatedTotal": round(0.0003 * shots, 4),
                "events": [{"dimensionId": "gs1q", "dimensionName": "1Q Gate Shot", "measureUnit": "1q gate shot",
                            "amountBilled": shots, "amountConsumed": shots, "unitPrice": 0.0003}],
            }  # fmt: skip
        if status == "Failed":
            answer["errorData"] = {"code": "InvalidInputData", "message": self.fail_reason}
        if status == "Cancelled":
            answer["cancellationTime"] = _iso(self.cancelled_at or now)
        return answer


def _run_program(body: dict, data: bytes, seed: int) -> bytes:
    """The job's output blob, as the provider answers (raises ValueError for bad input)."""
    shots = int((body.get("inputParams") or {}).get("shots", 0))
    if body.get("inputDataFormat") == "ionq.circuit.v1":
        program = json.loads(data)
        return json.dumps({"histogram": probabilities(program["circuit"], int(program["qubits"]))}).encode()
    if body.get("inputDataFormat") == "honeywell.openqasm.v1":
        return json.dumps(_quantinuum_shots(data.decode(), shots, seed)).encode()
    raise ValueError(f"the stand-in does not run input format {body.get('inputDataFormat')!r}")


def _quantinuum_shots(qasm: str, shots: int, seed: int) -> dict[str, list[str]]:
    from cirq.contrib.qasm_import import QasmException, circuit_from_qasm

    try:
        circuit = circuit_from_qasm(qasm)
    except QasmException as exc:
        raise ValueError(f"OpenQASM 2 not accepted: {exc}") from None
    measured = cirq.Simulator(seed=seed).run(circuit, repetitions=shots).measurements
    registers = {}
    for name, size in _CREG.findall(qasm):
        bits = np.zeros((shots, int(size)), dtype=int)
        for i in range(int(size)):
            if f"{name}_{i}" in measured:
                bits[:, i] = measured[f"{name}_{i}"][:, 0]
        registers[name] = ["".join(str(b) for b in row[::-1]) for row in bits]  # c[n-1] first
    return registers


class AzureStandIn(StandIn):
    """The workspace and its storage; ``created`` counts jobs made (PUTs of a new id)."""

    def __init__(self, api_key: str = "standin-key", **clock: float):
        self.blobs: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.seed = 1
        self.average_queue_seconds = 5  # every target's averageQueueTime (seconds, as Azure says it)
        super().__init__(api_key, **clock)

    def cancel_at_console(self, job_id: str) -> None:
        with self.lock:
            self.jobs[job_id].forced = "Cancelled"

    def job_ids(self) -> list[str]:
        with self.lock:
            return list(self.jobs)

    def _route(self, path: str) -> str | None:
        if path.startswith(WORKSPACE_PATH):
            return _ID.sub("{id}", path.removeprefix(WORKSPACE_PATH))
        return "/<blob>" if path.startswith(BLOB_PREFIX) else None

    def _creates(self, request: Request) -> bool:
        return request.method == "PUT" and "/jobs/" in request.url.path

    def _fault_answer(self, fault) -> Response:
        if fault.garbage:  # a proxy's page, not the workspace's JSON
            return super()._fault_answer(fault)
        return _error(fault.status, "Injected", f"injected {fault.status}")

    def _add_routes(self, app: FastAPI) -> None:
        standin = self

        @app.get(f"{WORKSPACE_PATH}/providerStatus")
        async def provider_status():
            return {"value": [
                {"id": provider, "currentAvailability": "Available", "targets": [
                    {"id": name, "currentAvailability": "Available", "averageQueueTime": standin.average_queue_seconds,
                     **({} if n is None else {"numQubits": n})}
                    for name, n in targets.items()]}
                for provider, targets in TARGETS.items()]}  # fmt: skip

        @app.post(f"{WORKSPACE_PATH}/storage/sasUri")
        async def sas_uri(request: Request):
            body = await request.json()
            blob = f"/{body['blobName']}" if body.get("blobName") else ""
            return {"sasUri": f"{standin.url}/{ACCOUNT}/{body['containerName']}{blob}?{_SAS}"}

        @app.put(f"{WORKSPACE_PATH}/jobs/{{job_id}}")
        async def create(job_id: str, request: Request):
            return standin._create(job_id, await request.json())

        @app.get(f"{WORKSPACE_PATH}/jobs/{{job_id}}")
        async def get_job(job_id: str):
            job = standin._job(job_id)
            if job is None:
                return _error(404, "JobNotFound", f"job {job_id} not found")
            return job.view(time.time(), standin.url)

        @app.get(f"{WORKSPACE_PATH}/jobs")
        async def listing(filter: str | None = None, top: int = 100, skip: int = 0):
            now = time.time()
            with standin.lock:
                views = [j.view(now, standin.url) for j in standin.jobs.values()]
            views = [v for v in views if _matches(filter, v)]
            answer: dict[str, Any] = {"value": views[skip : skip + top]}
            if skip + top < len(views):
                query = urllib.parse.urlencode({"filter": filter or "", "top": top, "skip": skip + top})
                answer["nextLink"] = f"{standin.url}{WORKSPACE_PATH}/jobs?{query}"
            return answer

        @app.post(f"{WORKSPACE_PATH}/jobs/{{job_id}}:cancel")
        async def cancel(job_id: str):
            return standin._cancel(job_id)

        @app.put(f"{BLOB_PREFIX}{{container}}/{{blob:path}}")
        async def put_blob(container: str, blob: str, request: Request):
            if request.headers.get("if-none-match") == "*" and (container, blob) in standin.blobs:
                return _error(409, "BlobAlreadyExists", "The specified blob already exists.")
            data = await request.body()
            with standin.lock:
                standin.blobs[container, blob] = (data, request.headers.get("x-ms-blob-content-type", ""))
            return Response(status_code=201, headers=_blob_headers(data))

        @app.api_route(f"{BLOB_PREFIX}{{container}}/{{blob:path}}", methods=["GET", "HEAD"])
        async def get_blob(container: str, blob: str, request: Request):
            found = standin.blobs.get((container, blob))
            if found is None:
                return _error(404, "BlobNotFound", "The specified blob does not exist.")
            return _blob_answer(found[0], found[1], request)

    def _refuse(self, request: Request) -> Response | None:
        """The workspace checks its API key; storage, the SAS's signature."""
        if request.url.path.startswith(WORKSPACE_PATH):
            key = request.headers.get("x-ms-quantum-api-key", "")
            with self.lock:
                self.seen_keys.add(key)
            if key != self.api_key:
                return _error(401, "Unauthorized", "The API key is not valid for this workspace.")
        elif request.query_params.get("sig") != SIGNATURE:
            return _error(403, "AuthenticationFailed", "Server failed to authenticate the request.")
        return None

    def _create(self, job_id: str, body: dict) -> Response | dict:
        if self._job(job_id) is not None:
            return _error(409, "Conflict", f"a job with id {job_id} already exists")
        blob = urllib.parse.urlparse(body.get("inputDataUri", "")).path.removeprefix(f"/{ACCOUNT}/")
        container, _, name = blob.partition("/")
        found = self.blobs.get((container, name))
        if found is None:
            return _error(400, "InvalidJobDefinition", f"the input blob {blob!r} does not exist")
        now = time.time()
        with self.lock:
            fail_reason, self.fail_next = self.fail_next, None
            self.seed += 1
            seed = self.seed
        output = None
        try:
            output = _run_program(body, found[0], seed)
        except (ValueError, KeyError) as exc:
            fail_reason = fail_reason or str(exc)
        job = AzureJob(
            id=job_id, body=body, created=now, run_at=now + self.queue_seconds,
            done_at=now + self.queue_seconds + self.run_seconds, held=self.hold,
            fail_reason=fail_reason, output=output,
        )  # fmt: skip
        with self.lock:
            self.jobs[job_id] = job
            self.created += 1
            if output is not None:
                self.blobs[f"job-{job_id}", "rawOutputData"] = (output, "application/json")
        return job.view(now, self.url)

    def _cancel(self, job_id: str) -> Response | dict:
        job = self._job(job_id)
        if job is None:
            return _error(404, "JobNotFound", f"job {job_id} not found")
        now = time.time()
        with self.lock:
            if job.status(now) in ("Succeeded", "Failed", "Cancelled"):
                return _error(409, "InvalidJobState", f"job {job_id} has already finished")
            job.forced, job.cancelled_at = "Cancelled", now
        return job.view(now, self.url)


def _matches(odata_filter: str | None, view: dict) -> bool:
    """The part of OData the client writes (``_create_filter``): ``Field eq 'v'`` terms,
    or-ed within a field and and-ed across fields, and ``startswith(Name, 'v')``."""
    if not odata_filter:
        return True
    wanted: dict[str, set[str]] = {}
    for field, value in re.findall(r"(\w+) eq '([^']*)'", odata_filter):
        wanted.setdefault(field, set()).add(value)
    fields = {"Target": "target", "State": "status", "ProviderId": "providerId", "Name": "name"}
    for field, values in wanted.items():
        if field in fields and view.get(fields[field]) not in values:
            return False
    prefix = re.search(r"startswith\(Name, '([^']*)'\)", odata_filter)
    return prefix is None or str(view.get("name", "")).startswith(prefix.group(1))


def _blob_headers(data: bytes) -> dict[str, str]:
    return {
        "ETag": f'"0x{abs(hash(data)) & 0xFFFFFFFF:08X}"',
        "Last-Modified": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()),
        "x-ms-request-server-encrypted": "true",
        "x-ms-version": "2023-11-03",
    }


def _blob_answer(data: bytes, content_type: str, request: Request) -> Response:
    headers = {**_blob_headers(data), "x-ms-blob-type": "BlockBlob", "Accept-Ranges": "bytes",
               "x-ms-creation-time": time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime())}  # fmt: skip
    ranged = request.headers.get("x-ms-range") or request.headers.get("range")
    status, body = 200, data
    if ranged and data:
        start, _, end = ranged.removeprefix("bytes=").partition("-")
        first, last = int(start), min(int(end or len(data) - 1), len(data) - 1)
        status, body = 206, data[first : last + 1]
        headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
    headers["Content-Length"] = str(len(body))
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers, media_type=content_type or None)
    return Response(body, status_code=status, headers=headers, media_type=content_type or None)


if __name__ == "__main__":
    serve_from_command_line(__doc__, AzureStandIn, port=8798)
