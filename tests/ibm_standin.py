"""A stand-in for IBM Quantum Platform's HTTP APIs, as much of them as the real
``qiskit-ibm-runtime`` client calls: the tests point ``QiskitRuntimeService`` at it.

Where the client is pointed (its own overrides; nothing below the client is patched):

- the Runtime API (``/api/v1``): the ``url_resolver=`` argument of
  ``QiskitRuntimeService`` (qnb's ``api_url=`` option);
- IBM Cloud IAM's token exchange (``POST /identity/token``): ``$IAM_URL``, read by the
  client (``api/auth.py``, ``accounts/account.py``);
- IBM Cloud's Global Search and Global Catalog (the client lists the account's instances
  at start-up): ``$GLOBAL_SEARCH_URL`` and ``$GLOBAL_CATALOG_URL``, read by the IBM Cloud
  SDK core (``BaseService.configure_service``) that the client uses.

:func:`client_env` gives those variables. The backend is a 5-qubit device whose
configuration and properties are FakeManila's (as the API sends them), named
``ibm_standin``. Jobs take the executor's input (``program_id = "executor"``, a QPY
quantum program: what the client-side Sampler sends), run on a clock (``Queued``,
``Running``, then ``Completed``) and answer the executor's result schema with shots of a
state-vector simulation. The fault controls are the IonQ stand-in's (its ``StandIn`` is
the base class): statuses to answer with, slow answers, a failing job, held jobs, a
cancel "at IBM's console", a server that disappears and comes back.

Run alone: ``python tests/ibm_standin.py --port 8797 --key KEY [--run-seconds 30]``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.parse
import uuid
from pathlib import Path

import jwt
import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

import ionq_standin
from ionq_standin import StandInJob, _iso, serve_from_command_line

API = "/api/v1"
CRN = "crn:v1:bluemix:public:quantum-computing:us-east:a/standin::instance-standin"
BACKEND = "ibm_standin"
IBM_WORDS = {"submitted": "Queued", "running": "Running", "completed": "Completed",
             "failed": "Failed", "canceled": "Cancelled"}  # fmt: skip
QUANTUM_SECONDS = 2.5  # what every finished job "used"
_JOB_ID = re.compile(r"\bd[0-9a-f]{19}\b")  # IBM's job ids: 20 characters
_SIGNING_KEY = "the IBM stand-in signs its IAM tokens with this"


def client_env(url: str) -> dict[str, str]:
    """The environment that points qiskit-ibm-runtime's IBM Cloud hosts at the stand-in
    at ``url``."""
    return {"IAM_URL": url, "GLOBAL_SEARCH_URL": url, "GLOBAL_CATALOG_URL": f"{url}/catalog"}


def _device_json() -> tuple[dict, dict]:
    from qiskit_ibm_runtime.fake_provider.backends import manila

    folder = Path(manila.__file__).parent
    config = json.loads((folder / "conf_manila.json").read_text())
    properties = json.loads((folder / "props_manila.json").read_text())
    config["backend_name"] = properties["backend_name"] = BACKEND
    return config, properties


def _run(model, seed: int) -> list[dict[str, np.ndarray]]:
    """The executor's work: every circuit item sampled (classified bits per register, ``(shots, bits)``,
    mid-circuit measurements too, column ``i`` register bit ``i``)."""
    from qiskit.primitives import BackendSamplerV2
    from qiskit.providers.basic_provider import BasicSimulator

    program = model.quantum_program
    circuits = program.circuits.to_python()
    for item in program.items:
        if item.item_type != "circuit":
            raise ValueError(f"the stand-in runs circuit items only, not {item.item_type!r}")
    sampler = BackendSamplerV2(backend=BasicSimulator(), options={"seed_simulator": seed})
    answers = sampler.run(circuits, shots=program.shots).result()
    return [
        {name: np.asarray(bits.to_bool_array(order="little"), dtype=bool) for name, bits in pub.data.items()}
        for pub in answers
    ]


def _result_json(model, data: list[dict[str, np.ndarray]]) -> str:
    from ibm_quantum_schemas.common.tensor import CompressedTensorModel
    from ibm_quantum_schemas.executor.version_2_0 import models

    result = models.QuantumProgramResultModel(
        data=[
            models.QuantumProgramResultItemModel(
                results={name: CompressedTensorModel.from_numpy(array) for name, array in item.items()},
                metadata=models.ItemMetadataModel(),
            )
            for item in data
        ],
        metadata=models.MetadataModel(chunk_timing=[]),
        passthrough_data=model.quantum_program.passthrough_data,
        semantic_role=model.quantum_program.semantic_role,
    )
    return result.model_dump_json()


class IBMStandIn(ionq_standin.StandIn):
    """The stand-in's state and server (see the module's notes)."""

    def __init__(self, api_key: str = "standin-key", **kwargs):
        self.tokens: set[str] = set()  # IAM access tokens handed out
        self.results: dict[str, str] = {}  # job id -> the executor's result (JSON)
        self.seed = 11
        self.config, self.properties = _device_json()
        self.others_pending = 0  # other users' jobs the backend's status counts as pending
        super().__init__(api_key, **kwargs)

    def _route(self, path: str) -> str | None:
        return None if path.startswith("/_standin") else _JOB_ID.sub("{id}", path)

    def _creates(self, request: Request) -> bool:
        return request.method == "POST" and request.url.path == f"{API}/jobs"

    def _add_routes(self, app: FastAPI) -> None:
        standin = self

        @app.post("/identity/token")
        async def token(request: Request):
            form = urllib.parse.parse_qs((await request.body()).decode())  # no python-multipart needed
            if form.get("apikey") != [standin.api_key]:
                refusal = {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found."}
                return JSONResponse(refusal, status_code=400)
            now = int(time.time())
            access = jwt.encode({"iat": now, "exp": now + 3600, "sub": "standin"}, _SIGNING_KEY, algorithm="HS256")
            with standin.lock:
                standin.tokens.add(access)
            return {"access_token": access, "refresh_token": "not-used", "token_type": "Bearer",
                    "expires_in": 3600, "expiration": now + 3600}  # fmt: skip

        @app.post("/v3/resources/search")
        async def search():
            return {"items": [{"crn": CRN, "name": "standin-instance", "service_plan_unique_id": "plan-open",
                               "doc": {"extensions": {"allocation": "open"}}, "tags": []}],
                    "search_cursor": None}  # fmt: skip

        @app.get("/catalog/{plan_id}")
        async def catalog(plan_id: str):
            return {"id": plan_id, "overview_ui": {"en": {"display_name": "Open"}},
                    "metadata": {"pricing": {"type": "free"}}}  # fmt: skip

        @app.get(f"{API}/backends")
        async def backends():
            return {"devices": [{"name": BACKEND, "status": {"name": "online"}, "qubits": 5}]}

        @app.get(f"{API}/backends/{{name}}/configuration")
        async def configuration(name: str):
            return standin.config if name == BACKEND else JSONResponse({"errors": []}, status_code=404)

        @app.get(f"{API}/backends/{{name}}/properties")
        async def properties(name: str):
            return standin.properties

        @app.get(f"{API}/backends/{{name}}/status")
        async def status(name: str):
            now = time.time()  # IBM's pending jobs: those not started, and other users' (others_pending)
            with standin.lock:
                waiting = sum(1 for j in standin.jobs.values() if j.status(now) == "submitted")
            return {"state": True, "status": "active", "message": "", "length_queue": waiting + standin.others_pending}

        @app.get(f"{API}/instances/usage")
        async def usage():
            return {"usage_consumed_seconds": 0, "usage_limit_reached": False}

        @app.post(f"{API}/jobs")
        async def create(request: Request):
            body = await request.json()
            if body.get("program_id") != "executor" or body.get("backend") != BACKEND:
                wrong = f"bad job {body.get('program_id')!r} on {body.get('backend')!r}"
                return JSONResponse({"errors": [{"message": wrong}]}, status_code=400)
            return await asyncio.to_thread(standin._create, body)

        @app.get(f"{API}/jobs")
        async def listing(request: Request):
            query = request.query_params
            tags = set(query.getlist("tags"))
            limit, offset = int(query.get("limit", 10)), int(query.get("offset", 0))
            now = time.time()
            with standin.lock:
                jobs = [j for j in reversed(standin.jobs.values()) if tags <= set(j.body.get("tags") or [])]
                views = [standin._view(j, now) for j in jobs]
            if query.get("pending") is not None:
                pending = query["pending"] == "true"
                views = [v for v in views if (v["state"]["status"] in ("Queued", "Running")) == pending]
            return {"jobs": views[offset : offset + limit], "count": len(views)}

        @app.get(f"{API}/jobs/{{job_id}}")
        async def get_job(job_id: str):
            job = standin._job(job_id)
            if job is None:
                return JSONResponse({"errors": [{"code": 1291, "message": "Job not found"}]}, status_code=404)
            return standin._view(job, time.time())

        @app.get(f"{API}/jobs/{{job_id}}/results")
        async def results(job_id: str):
            job = standin._job(job_id)
            if job is None:
                return JSONResponse({"errors": [{"message": "Job not found"}]}, status_code=404)
            status = job.status(time.time())
            if status == "failed":
                return PlainTextResponse(f"Traceback (most recent call last):\nRuntimeError: {job.fail_reason}")
            if status != "completed":
                return JSONResponse({"errors": [{"message": "Job has no results yet"}]}, status_code=404)
            return Response(standin.results[job_id], media_type="application/json")

        @app.get(f"{API}/jobs/{{job_id}}/metrics")
        async def metrics(job_id: str):
            job = standin._job(job_id)
            finished = job is not None and job.status(time.time()) in ("completed", "failed", "canceled")
            return {"timestamps": {"created": _iso(job.created) if job else None},
                    "usage": {"quantum_seconds": QUANTUM_SECONDS if finished else 0,
                              "qpu_charge_time_seconds": QUANTUM_SECONDS if finished else 0,
                              "status": "complete" if finished else "pending"}}  # fmt: skip

        @app.post(f"{API}/jobs/{{job_id}}/cancel")
        async def cancel(job_id: str):
            job = standin._job(job_id)
            if job is None:
                return JSONResponse({"errors": [{"message": "Job not found"}]}, status_code=404)
            if job.status(time.time()) in ("completed", "failed", "canceled"):
                return JSONResponse({"errors": [{"code": 3209, "message": "Job already in final state"}]},
                                    status_code=409)  # fmt: skip
            with standin.lock:
                job.forced = "canceled"
            return Response(status_code=204)

    def _refuse(self, request: Request) -> Response | None:
        """IAM's token exchange is open; every other call needs a token IAM handed out
        (and, on the Runtime API, the instance's CRN)."""
        if request.url.path == "/identity/token":
            return None
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        with self.lock:
            known = bearer in self.tokens
        crn_ok = not request.url.path.startswith(API) or request.headers.get("service-crn") == CRN
        if known and crn_ok:
            return None
        return JSONResponse({"errors": [{"code": "unauthorized", "message": "Invalid token"}]}, status_code=401)

    def _view(self, job: StandInJob, now: float) -> dict:
        status = IBM_WORDS[job.status(now)]
        state: dict = {"status": status}
        if status == "Failed":
            state.update(reason=job.fail_reason, reason_code=1517)
        elif status == "Cancelled":
            state["reason"] = "Cancelled by the user"
        return {
            "id": job.id, "backend": BACKEND, "state": state, "status": status,
            "program": {"id": "executor"}, "created": _iso(job.created), "runtime": "",
            "tags": job.body.get("tags") or [], "session_id": None, "private": False,
            "estimated_running_time_seconds": QUANTUM_SECONDS,
        }  # fmt: skip

    def _create(self, body: dict) -> dict:
        from ibm_quantum_schemas.executor.version_2_0 import models

        now = time.time()
        with self.lock:
            fail_reason, self.fail_next = self.fail_next, None
            seed, self.seed = self.seed, self.seed + 1
        model = models.ParamsModel.model_validate(body["params"])
        job = StandInJob(
            id=f"d{uuid.uuid4().hex[:19]}", body=body, created=now, run_at=now + self.queue_seconds,
            done_at=now + self.queue_seconds + self.run_seconds, held=self.hold, fail_reason=fail_reason,
        )  # fmt: skip
        if fail_reason is None:
            self.results[job.id] = _result_json(model, _run(model, seed))
        with self.lock:
            self.jobs[job.id] = job
            self.created += 1
        return {"id": job.id, "backend": BACKEND}


if __name__ == "__main__":
    serve_from_command_line(__doc__, IBMStandIn, port=8797)
