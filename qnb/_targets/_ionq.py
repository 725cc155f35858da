"""IonQ's cloud as a vendor target (:class:`~qnb._targets._remote.VendorTarget`), through
IonQ's own client (``cirq-ionq``).

    qnb.register_target("qpu", "ionq", backend="qpu.aria-1")     # key: $IONQ_API_KEY
    job = qnb.submit(circuit, target="qpu", shots=1000)

Every HTTP call is ``cirq_ionq.Service`` / ``cirq_ionq.Job``: no REST client or serializer
of ours. The shape does the following, creation exactly once and the rest; here are
IonQ's hooks and what is particular to IonQ:

- **The stored id** is ``"<IonQ job id>|single|<backend>"`` or ``"...|batch|..."``: a
  batch is one multi-circuit IonQ job, and cirq-ionq reads a batch's results from another
  address than a single circuit's, chosen by a ``batch_mode`` flag on the whole client
  that only its last ``create_job`` sets; so the target keeps one ``Service`` per mode and
  sets the batch one's flag itself: a fresh process reads both right.
- **Creation**: IonQ has no idempotency key, so the job's name carries its qnb id. The
  POST goes through a client of its own with no retries (cirq-ionq's would POST again
  after a 500) and answers only the id: cirq-ionq's ``create_job`` reads the job back
  right after its POST, and treating a failed read as a failed creation made 3 paid jobs
  out of 12 rate-limited reads. The other calls keep a short ``max_retry_seconds`` (its
  default retries for about an hour).
- **Reading**: up to :data:`GET_EACH_UP_TO` followed jobs one by one, more through IonQ's
  listing (one request per unfinished status); jobs that left it are read by id. A job
  IonQ no longer knows (404) reads as ``"deleted"``.
- **Cancel**: the shape reads first, since IonQ marks even a completed job canceled.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import cirq
import cirq_ionq
import requests
from cirq_ionq import ionq_exceptions

from .. import _config
from .._secrets import Secret
from .._device import DeviceSpec, check_qubits_only
from .._errors import (
    DeviceValidationError,
    InvalidCircuitError,
    InvalidOptionError,
    NotAuthenticatedError,
    QnbError,
    RemoteError,
    ServerUnreachableError,
    UnknownJobError,
    VendorRejectedError,
)
from .._status import JobStatus
from ._base import ItemOutcome, TargetJob
from ._queue_eta import QueueFigures
from ._remote import VendorJobState, VendorTarget

logger = logging.getLogger("qnb")

#: IonQ's job statuses (v0.4) -> qnb's. The one table; a status not in it is not terminal.
VENDOR_STATUS: dict[str, JobStatus] = {
    "ready": JobStatus.QUEUED,
    "submitted": JobStatus.QUEUED,
    "running": JobStatus.RUNNING,
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "canceled": JobStatus.CANCELLED,
    "deleted": JobStatus.CANCELLED,  # removed at IonQ (console or API): its results are gone
}
UNFINISHED_AT_IONQ = ("ready", "submitted", "running")
#: Followed jobs read one by one up to this many; more, through the listing.
GET_EACH_UP_TO = 3
#: The IonQ simulator's size; a QPU's comes from its calibration.
SIMULATOR_QUBITS = 29
#: A job in doubt is looked for among this many of the account's newest jobs.
FIND_AMONG = 1000
NATIVE_GATES = (
    "x", "y", "z", "h", "s", "si", "t", "ti", "v", "vi", "rx", "ry", "rz", "cnot", "swap",
    "xx", "yy", "zz", "pauliexp", "gpi", "gpi2", "ms", "zz (native)", "measure",
)  # fmt: skip


def _api_dict(job: cirq_ionq.Job) -> dict:
    """The API's last answer about ``job`` as cirq-ionq keeps it (``job.status()`` would
    ask IonQ again for an unfinished job; a listing already brought the status)."""
    return job._job


def parse_remote_id(remote_id: str, n_items: int) -> tuple[str, bool, str | None]:
    """``(IonQ job id, batch?, backend)`` from a stored remote id (a bare IonQ id, as a
    user may have, is a batch when it has several items)."""
    ionq_id, _, rest = remote_id.partition("|")
    mode, _, backend = rest.partition("|")
    batch = mode == "batch" if mode else n_items > 1
    return ionq_id, batch, backend or None


def _secret(text: str | None) -> Secret | None:
    return Secret(text) if text and not isinstance(text, Secret) else text


def _key_from(name: str, variable: str | None) -> str | None:
    if variable is None:
        return None
    key = _secret(os.getenv(variable))
    if not key:
        raise NotAuthenticatedError(
            f"IonQ target {name!r} reads its API key from ${variable}, which is not set"
        )
    return key


def _resolve_options(
    name: str, backend, api_key, api_key_env, remote_host
) -> tuple[str, str, str | None]:
    """Key and host: the arguments (``api_key_env`` names a variable), else cirq-ionq's
    environment variables, else the targets file's ``[targets.NAME]`` table with
    ``kind = "ionq"`` (``backend``, ``api_key_env`` or ``api_key``, ``remote_host``)."""
    api_key = api_key or _key_from(name, api_key_env)
    api_key = api_key or _secret(os.getenv("CIRQ_IONQ_API_KEY") or os.getenv("IONQ_API_KEY"))
    remote_host = remote_host or os.getenv("CIRQ_IONQ_REMOTE_HOST") or os.getenv("IONQ_REMOTE_HOST")
    if not (api_key and remote_host and backend):
        kind, configured = _config.configured_kinds().get(name, ("", {}))
        if kind == "ionq":
            api_key = api_key or _secret(configured.get("api_key")) or _key_from(name, configured.get("api_key_env"))
            remote_host = remote_host or configured.get("remote_host")
            backend = backend or configured.get("backend")
    backend = backend or "simulator"
    if not isinstance(backend, str) or not (backend == "simulator" or backend.startswith("qpu.")):
        raise InvalidOptionError(
            f"IonQ target {name!r}: backend must be 'simulator' or 'qpu.<name>' "
            f"(e.g. 'qpu.aria-1'), got {backend!r}"
        )
    if not api_key:
        raise NotAuthenticatedError(
            f"IonQ target {name!r} has no API key: pass api_key=..., set $IONQ_API_KEY, or "
            f"add api_key_env to [targets.{name}] (kind = \"ionq\") in {_config.targets_file()}"
        )
    api_key = _secret(api_key)  # never a plain str in a frame (tracebacks with locals)
    if any(ch.isspace() or not ch.isprintable() for ch in api_key):
        # requests refuses such a header, and cirq-ionq retries that as if IonQ were away.
        raise NotAuthenticatedError(
            f"IonQ target {name!r}: the API key contains a space, newline or control "
            "character (often copied with the key); remove it where the key is set"
        )
    return backend, api_key, remote_host


def _as_qnb_error(exc: BaseException, what: str, host: str) -> QnbError:
    """cirq-ionq's exceptions as qnb's (never with the key: cirq-ionq's messages carry
    the request body at most, not its headers)."""
    if isinstance(exc, QnbError):
        return exc
    if isinstance(exc, ionq_exceptions.IonQNotFoundException):
        return UnknownJobError(f"IonQ at {host} does not know this {what} (404)")
    if isinstance(exc, ionq_exceptions.IonQException):
        status = exc.status_code
        if status == 401:
            return NotAuthenticatedError(
                f"IonQ at {host} refused the API key (401) on {what}: check api_key= or "
                "$IONQ_API_KEY"
            )
        text = str(exc)
        if len(text) > 600:
            text = text[:600] + " …"
        if status is not None and 400 <= status < 500:
            return VendorRejectedError(f"IonQ refused {what} ({status}): {text}", status=status)
        return RemoteError(f"IonQ failed {what}: {text}", status=status)
    if isinstance(exc, TimeoutError):  # cirq-ionq's retries ran out (429, 5xx, no answer)
        return ServerUnreachableError(f"IonQ at {host} did not answer {what}: {exc}")
    return RemoteError(f"IonQ call {what} failed: {type(exc).__name__}: {exc}")


class IonQTarget(VendorTarget):
    """An IonQ backend (``"simulator"`` or ``"qpu.<name>"``) as a qnb target.

    ``poll_seconds``: how often followed jobs are read (cirq-ionq's own ``results()``
    polls every second). ``call_timeout``: the deadline of one call to IonQ.
    ``max_retry_seconds``: cirq-ionq's retries of one call (429, 5xx, no connection).
    ``seed``: for sampling the simulator's probabilities (cirq-ionq samples client-side).
    """

    vendor = "IonQ"
    STATUS = VENDOR_STATUS

    def __init__(
        self,
        name: str,
        *,
        backend: str | None = None,
        api_key: str | None = None,
        api_key_env: str | None = None,
        remote_host: str | None = None,
        poll_seconds: float = 1.0,
        call_timeout: float = 30.0,
        max_retry_seconds: int = 2,
        threads: int = 4,
        max_shots: int = 100_000,
        max_batch: int | None = None,
        job_settings: dict | None = None,
        seed: int | None = None,
    ):
        super().__init__(name, poll_seconds=poll_seconds, call_timeout=call_timeout, threads=threads)
        self.backend, api_key, remote_host = _resolve_options(
            name, backend, api_key, api_key_env, remote_host
        )
        self.seed = seed
        self.job_settings = job_settings

        def service(retry_seconds: int) -> cirq_ionq.Service:
            return cirq_ionq.Service(
                remote_host=remote_host, api_key=api_key.reveal(), max_retry_seconds=retry_seconds,
                job_settings=job_settings,
            )  # fmt: skip

        # One Service per mode: cirq-ionq reads results by its client's batch_mode flag,
        # which only its last create_job sets (see the module's notes).
        self._single = service(max_retry_seconds)
        self._batch = service(max_retry_seconds)
        self._batch._client.batch_mode = True
        # The creating POST alone, never retried by cirq-ionq (see "Created exactly once").
        self._creator = service(0)._client
        self.host = self._single.remote_host
        self.device = self._device_from_ionq(max_shots, max_batch)

    def _device_from_ionq(self, max_shots: int, max_batch: int | None) -> DeviceSpec:
        connectivity = None
        if self.backend == "simulator":
            # A cheap authenticated call: a wrong key is found here, not at the first job.
            self.blocking_call("the job listing", lambda: self._single.list_jobs(limit=1, batch_size=1))
            n_qubits, source = SIMULATOR_QUBITS, "simulator's size"
        else:
            calibration = self.blocking_call("the current calibration", self._single.get_current_calibration)
            n_qubits = calibration.num_qubits()
            pairs = {frozenset(p) for p in calibration.connectivity() if p[0] != p[1]}
            if len(pairs) < n_qubits * (n_qubits - 1) // 2:  # not all-to-all
                connectivity = tuple(tuple(sorted(p)) for p in pairs)
            source = f"calibration of {calibration.target()}"
        coupling = "all-to-all" if connectivity is None else f"{len(connectivity)} pairs"
        extra = {} if max_batch is None else {"max_batch": max_batch}
        return DeviceSpec(
            name=self.name,
            max_qubits=n_qubits,
            qubits=tuple(cirq.LineQubit.range(n_qubits)),
            connectivity=connectivity,
            compile_to=cirq_ionq.IonQTargetGateset(),
            native_gates=NATIVE_GATES,
            max_shots=max_shots,
            description=(
                f"IonQ {self.backend} via cirq-ionq at {self.host} ({n_qubits} qubits, "
                f"{coupling}, from the {source}); jobs are followed again after a restart"
            ),
            **extra,
        )

    # -- circuits: IonQ's own serializer decides -----------------------------------------------

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        self.device.validate(label, circuit)  # qubits: LineQubits 0..n-1, no qudits
        try:
            cirq_ionq.Serializer().serialize_single_circuit(circuit)
        except Exception as exc:
            gate = _refused_gate(circuit)
            named = f"gate {gate} ({type(gate.gate).__name__})" if gate is not None else "it"
            raise DeviceValidationError(
                f"circuit {label!r}: IonQ's serializer (cirq-ionq) refuses {named}: {exc}; "
                "submit with compile=True to rewrite it into IonQ's gates"
            ) from None

    def compile(self, circuit: cirq.Circuit) -> cirq.Circuit:
        """Onto ``LineQubit(0..n-1)`` (IonQ numbers its qubits; any two couple), then into
        IonQ's gates."""
        check_qubits_only(None, circuit, target=self.name)
        qubits = sorted(circuit.all_qubits())
        if not all(isinstance(q, cirq.LineQubit) and 0 <= q.x < self.device.max_qubits for q in qubits):
            circuit = circuit.transform_qubits(dict(zip(qubits, cirq.LineQubit.range(len(qubits)))))
        compiled = self.device.compile(circuit)
        # The serializer takes no global phase, which cannot change what is measured.
        return cirq.Circuit(
            cirq.Moment(op for op in moment if not isinstance(op.gate, cirq.GlobalPhaseGate))
            for moment in compiled
        )

    # -- the hooks of the remote-job shape -------------------------------------------------

    def prepare(self, job: TargetJob, items: list[int]) -> tuple[Any, bool]:
        circuits = super().prepare(job, items)
        serializer = cirq_ionq.Serializer()
        batch = len(circuits) > 1
        try:
            if batch:
                return serializer.serialize_many_circuits(circuits, job_settings=self.job_settings), True
            return serializer.serialize_single_circuit(circuits[0], job_settings=self.job_settings), False
        except (ValueError, ionq_exceptions.IonQSerializerMixedGatesetsException) as exc:
            raise InvalidCircuitError(f"IonQ's serializer refuses this job: {exc}") from None

    def create(self, program: tuple[Any, bool], job: TargetJob, items: list[int], name: str) -> str:
        serialized, batch = program
        answer = self._creator.create_job(
            serialized_program=serialized, repetitions=job.shots, target=self.backend,
            name=name, batch_mode=batch,
        )  # fmt: skip
        return self._stored(str(answer["id"]), batch)

    def find(self, job: TargetJob, items: list[int], name: str) -> str | None:
        listed = self._single._client.list_jobs(limit=FIND_AMONG, batch_size=FIND_AMONG)
        found = next((j["id"] for j in listed if str(j.get("name") or "") == name), None)
        if found is not None:
            logger.info("qnb: job %s found at IonQ as %s after a creation in doubt", job.job_id, found)
            return self._stored(found, len(items) > 1)
        return None

    def _stored(self, ionq_id: str, batch: bool) -> str:
        """The remote id kept in the store: IonQ's id, the mode and the backend (enough
        to read the job right in a fresh process, see the module's notes)."""
        return f"{ionq_id}|{'batch' if batch else 'single'}|{self.backend}"

    async def reattach(self, remote_id: str, n_items: int):
        ionq_id, batch, backend = parse_remote_id(remote_id, n_items)
        full = f"{ionq_id}|{'batch' if batch else 'single'}|{backend or self.backend}"
        return await super().reattach(full, n_items)

    def shown_id(self, vendor_id: str) -> str:
        return vendor_id.partition("|")[0]

    def read(self, vendor_id: str) -> VendorJobState:
        ionq_id, batch, _ = parse_remote_id(vendor_id, 1)
        try:
            job = (self._batch if batch else self._single).get_job(ionq_id)
        except ionq_exceptions.IonQNotFoundException:
            return VendorJobState("deleted", error="IonQ no longer knows this job")
        answer = _api_dict(job)
        return VendorJobState(answer.get("status", ""), error=_failure_reason(answer), raw=job)

    def read_many(self, vendor_ids: list[str]) -> dict[str, VendorJobState]:
        """Up to :data:`GET_EACH_UP_TO` jobs one by one; more through IonQ's listing (one
        request per unfinished status), then by id those that left it (finished)."""
        states: dict[str, VendorJobState] = {}
        if len(vendor_ids) > GET_EACH_UP_TO:
            listed = {}
            for status in UNFINISHED_AT_IONQ:
                listed.update((j.job_id(), j) for j in self._single.list_jobs(status=status, limit=1_000_000))
            for vendor_id in vendor_ids:
                job = listed.get(self.shown_id(vendor_id))
                if job is not None:
                    states[vendor_id] = VendorJobState(_api_dict(job).get("status", ""), raw=job)
        for vendor_id in vendor_ids:
            if vendor_id not in states:
                states[vendor_id] = self.read(vendor_id)
        return states

    def outcomes(self, vendor_id, state, items, params) -> dict[int, ItemOutcome]:
        texts = _results_json(state.raw, self.shown_id(vendor_id), params, self.seed)
        engine = f"ionq {vendor_id.rpartition('|')[2]}"
        return {
            i: ItemOutcome(JobStatus.COMPLETED, result=text, engine=engine)
            for i, text in zip(items, texts)
            if text is not None
        }

    def cancel_remote(self, vendor_id: str) -> None:
        self._single._client.cancel_job(self.shown_id(vendor_id))

    def queue_figures(self) -> QueueFigures | None:
        """The backend's average queue time from IonQ's ``GET /backends`` (cirq-ionq has
        no call for it: its client's address, key and retries, with the deadline).
        IonQ gives it in milliseconds (its example: 1181215, about 20 minutes)."""
        client = self._single._client
        url = f"{client.url}/backends"
        answer = client._make_request(lambda: requests.get(url, headers=client.headers, timeout=self.call_timeout), {})
        listed = answer.json()
        listed = listed.get("backends", []) if isinstance(listed, dict) else listed
        mine = next((b for b in listed if isinstance(b, dict) and b.get("backend") == self.backend), {})
        average = mine.get("average_queue_time")
        if isinstance(average, bool) or not isinstance(average, (int, float)) or average < 0:
            return None
        return QueueFigures(average_wait=average / 1000, source=f"IonQ {self.backend}")

    def as_error(self, exc: Exception, what: str) -> QnbError:
        return _as_qnb_error(exc, what, self.host)


def _results_json(job: cirq_ionq.Job, ionq_id: str, params, seed: int | None) -> list[str | None]:
    """On the target's threads: cirq-ionq reads the probabilities (counts for a QPU,
    sampled for the simulator with ``seed``) and makes the ``cirq.Result``; then Cirq
    JSON, off the loop."""
    answer = _api_dict(job)
    for message in (answer.pop("warning", None) or {}).get("messages", []):
        logger.info("qnb: IonQ job %s: %s", ionq_id, message)  # not printed from here
    found = job.results(timeout_seconds=0)
    found = found if isinstance(found, list) else [found]
    texts: list[str | None] = []
    for result, point in zip(found, list(params) + [None] * (len(found) - len(params))):
        resolver = point or cirq.ParamResolver({})
        if isinstance(result, cirq_ionq.SimulatorResult):
            made = result.to_cirq_result(params=resolver, seed=seed)
        else:
            made = result.to_cirq_result(params=resolver)
        texts.append(cirq.to_json(made, indent=None))
    return texts


def _failure_reason(answer: dict) -> str | None:
    failure = answer.get("failure") or {}
    if isinstance(failure, dict):
        return str(failure.get("error") or failure.get("message") or "") or None
    return str(failure) or None


def _refused_gate(circuit: cirq.Circuit) -> cirq.Operation | None:
    """The first operation IonQ's serializer refuses, to name it."""
    serializer = cirq_ionq.Serializer()
    for op in circuit.all_operations():
        if cirq.is_measurement(op):
            continue
        try:
            serializer.serialize_single_circuit(cirq.Circuit(op))
        except Exception:
            return op
    return None
