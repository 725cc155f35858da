"""Amazon Braket as a target, through Amazon's own client (``amazon-braket-sdk``).

    qnb.register_target("sv1", "braket", device="arn:aws:braket:::device/quantum-simulator/amazon/sv1",
                        s3_destination="s3://amazon-braket-my-bucket/qnb")
    qnb.register_target("braket", "braket", device="local")   # Braket's LocalSimulator, no account

- **One Braket task per circuit** (Braket runs one program per task), created with
  ``AwsSession.create_quantum_task``; the stored remote id lists the task ARNs, and a
  process that follows the job after a restart reads each by ARN (``AwsQuantumTask``).
- **Created exactly once.** Each task carries tags ``qnb-job`` and ``qnb-items``: a task
  whose creation is in doubt is looked for among the device's tasks
  (``SearchQuantumTasks``) before any new request, and the request's ``clientToken`` is
  fixed by the job and item, so Braket itself answers a repeated request with the same
  task. Every boto3 call is one attempt with the call deadline: retries are the shape's.
- **Circuits** are rebuilt as Braket circuits (:mod:`._braket_convert`); the OpenQASM sent
  carries the measurement keys in a comment, which Braket's results give back: results
  read after a restart keep the user's keys.
- **Credentials** come from boto3's usual chain (``profile=`` names a profile); the device
  is read at ``register_target`` (``GetDevice``), which also checks them. Results go to
  ``s3_destination`` (``s3://bucket/prefix``), else to the SDK's default bucket.
- ``device="local"`` / ``"local:braket_dm"`` runs Braket's ``LocalSimulator`` in this
  process, as a ``cirq.Sampler`` target: no job ids, so like local simulations its jobs
  are not followed after a restart.
"""

from __future__ import annotations

from typing import Any

import boto3
import cirq
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError, ProfileNotFound
from braket import ipython_utils

# In a Jupyter kernel, importing braket.tasks applies nest_asyncio to all of asyncio
# (pure-Python tasks, re-entrant loops). qnb's loop stays asyncio's own: the SDK's calls
# here run on the target's threads, and the SDK's own result() polls on a thread of its
# own when a loop is running, so nothing needs the patch.
_in_jupyter, ipython_utils.running_in_jupyter = ipython_utils.running_in_jupyter, lambda: False
try:
    from braket.aws import AwsDevice, AwsQuantumTask, AwsSession
    from braket.device_schema import GateModelQpuParadigmProperties
    from braket.devices import LocalSimulator
    from braket.ir.openqasm import Program
    from braket.tasks import GateModelQuantumTaskResult
finally:
    ipython_utils.running_in_jupyter = _in_jupyter

from .._device import DeviceSpec
from .._errors import (
    DeviceValidationError, InvalidOptionError, NotAuthenticatedError, QnbError, RemoteError,
    ServerUnreachableError, VendorRejectedError,
)  # fmt: skip
from .._status import JobStatus
from ._base import ItemOutcome, TargetJob
from ._braket_convert import layout_of, to_braket, to_cirq_result, to_openqasm
from ._queue_eta import QueueFigures
from ._remote import VendorJobState, VendorTarget
from ._sampler import NOT_FOLLOWED, SamplerTarget

#: Braket's task statuses -> qnb's; ``NOT_FOUND`` is qnb's word for a task Braket does not know.
STATUS = {
    "CREATED": JobStatus.QUEUED, "QUEUED": JobStatus.QUEUED, "RUNNING": JobStatus.RUNNING,
    "COMPLETED": JobStatus.COMPLETED, "FAILED": JobStatus.FAILED,
    "CANCELLING": JobStatus.CANCELLING, "CANCELLED": JobStatus.CANCELLED, "NOT_FOUND": JobStatus.FAILED,
}  # fmt: skip
UNFINISHED = ["CREATED", "QUEUED", "RUNNING", "CANCELLING"]
#: Followed tasks read one by one (with their queue positions) up to this many; more,
#: through searches: the device's unfinished tasks, then the others ten at a time.
READ_EACH_UP_TO = 8
#: A task in doubt is looked for among this many of the device's tasks.
FIND_AMONG = 2000
LOOKED_FOR_CREDENTIALS = (
    "boto3's chain: profile=, $AWS_ACCESS_KEY_ID/$AWS_SECRET_ACCESS_KEY, $AWS_PROFILE, "
    "~/.aws/credentials and ~/.aws/config (SSO included), container and instance roles"
)
REFUSED_CREDENTIALS = {"UnrecognizedClientException", "InvalidSignatureException", "AccessDeniedException",
                       "ExpiredTokenException", "InvalidClientTokenId", "UnauthorizedException"}  # fmt: skip


def supported_operations(properties: Any, device: str) -> frozenset[str]:
    action = properties.action.get("braket.ir.openqasm.program")
    if action is None:  # annealing, analog Hamiltonian simulation, photonic devices
        raise InvalidOptionError(
            f"Braket device {device} does not run gate circuits (OpenQASM); qnb runs Cirq circuits"
        )
    return frozenset(op.lower() for op in action.supportedOperations)


class BraketTarget(VendorTarget):
    """A Braket device by ARN (QPUs, SV1, DM1, TN1) as a qnb target; ``device="local"``
    or ``"local:<backend>"`` makes a :class:`BraketLocalTarget` instead."""

    vendor = "Amazon Braket"
    STATUS = STATUS

    def __new__(cls, name: str, *, device: str = "local", **options: Any):
        if cls is BraketTarget and isinstance(device, str) and device.split(":")[0] == "local":
            return BraketLocalTarget(name, device=device, **options)
        return super().__new__(cls)

    def __init__(
        self, name: str, *, device: str, region: str | None = None, profile: str | None = None,
        s3_destination: str | None = None, poll_seconds: float = 1.0, call_timeout: float = 30.0,
        threads: int = 4, max_batch: int | None = None,
    ):  # fmt: skip
        super().__init__(name, poll_seconds=poll_seconds, call_timeout=call_timeout, threads=threads)
        self.device_arn = device
        try:
            self.session, self.s3, self.credentials_from = _session(name, device, region, profile, call_timeout, threads)
            aws_device = self.blocking_call("reading the device", AwsDevice, device, self.session)
            self.s3_folder = self._s3_folder(s3_destination)
            self.supported = supported_operations(aws_device.properties, device)
            self.device = _device_spec(name, aws_device, self.supported, max_batch)
        except BaseException:
            self.close()
            raise
        self.physical = self.device.qubits is not None  # a QPU: LineQubit(k) is its qubit k

    def _s3_folder(self, destination: str | None) -> tuple[str, str]:
        if destination is None:
            return self.blocking_call("the default S3 bucket", self.session.default_bucket), "tasks"
        if not isinstance(destination, str) or not AwsSession.is_s3_uri(destination):
            raise InvalidOptionError(
                f"Braket target {self.name!r}: s3_destination is 's3://bucket/prefix', got {destination!r}"
            )
        bucket, _, prefix = destination.removeprefix("s3://").partition("/")
        if not 3 <= len(bucket) <= 63:
            raise InvalidOptionError(
                f"Braket target {self.name!r}: S3 bucket names have 3 to 63 characters, got {bucket!r}"
            )
        return bucket, prefix.strip("/") or "tasks"

    def as_error(self, exc: Exception, what: str) -> QnbError:
        if isinstance(exc, ClientError):
            error, meta = exc.response.get("Error", {}), exc.response.get("ResponseMetadata", {})
            code, status = error.get("Code", ""), meta.get("HTTPStatusCode") or 0
            said = f"({status} {code}: {error.get('Message', '')})"
            if status in (401, 403) or code in REFUSED_CREDENTIALS:
                return NotAuthenticatedError(
                    f"Amazon Braket refused the AWS credentials qnb found ({self.credentials_from}) on {what} "
                    f"{said}; check them, or their permissions for Braket and the results bucket"
                )
            if status == 429 or status >= 500 or code == "ThrottlingException":
                return RemoteError(f"Amazon Braket cannot answer {what} now {said}", status=status)
            return VendorRejectedError(f"Amazon Braket refused {what} {said}", status=status)
        if isinstance(exc, NoCredentialsError):
            return NotAuthenticatedError(f"no AWS credentials for {what}; qnb looked in {LOOKED_FOR_CREDENTIALS}")
        if isinstance(exc, ParamValidationError):  # boto3 refuses it before sending: no retry helps
            return VendorRejectedError(f"Amazon Braket's client refuses {what}: {exc}")
        if isinstance(exc, BotoCoreError):  # no connection, timeouts, bad answers
            return ServerUnreachableError(f"Amazon Braket did not answer {what}: {exc}")
        if isinstance(exc, ValueError):  # the SDK's "device not found", bad ARNs
            return InvalidOptionError(f"Braket target {self.name!r}: {exc}")
        return super().as_error(exc, what)

    # ---- hooks ----

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        super().check(label, circuit)
        _translate(label, circuit, self.supported, self.physical, self.device.name)

    def parts(self, job: TargetJob) -> list[list[int]]:
        return [[i] for i in range(len(job.circuits))]

    def prepare(self, job: TargetJob, items: list[int]) -> Program:
        (i,) = items
        point = job.params[i] if job.params else None
        circuit = job.circuits[i] if point is None else cirq.resolve_parameters(job.circuits[i], point)
        program = _translate(job.labels[i], circuit, self.supported, self.physical, self.device.name)
        return Program(source=to_openqasm(program, point))

    def _tags(self, job: TargetJob, items: list[int], name: str) -> dict[str, str]:
        shown = "".join(ch if ch.isalnum() or ch in " _.:/=+-@" else "_" for ch in name)[:256]
        return {"qnb-job": job.job_id, "qnb-items": " ".join(map(str, items)), "qnb-name": shown}

    def create(self, program: Program, job: TargetJob, items: list[int], name: str) -> str:
        bucket, prefix = self.s3_folder
        return self.session.create_quantum_task(
            deviceArn=self.device_arn, outputS3Bucket=bucket, outputS3KeyPrefix=prefix, shots=job.shots,
            action=program.json(), tags=self._tags(job, items, name),
            clientToken=f"qnb-{job.job_id}-{'-'.join(map(str, items))}"[:64],
        )  # fmt: skip

    def _search(self, *filters: tuple[str, list[str]], most: int | None = None) -> list[dict]:
        """The device's tasks (summaries, tags included) that pass ``filters`` (name, values)."""
        pages = self.session.braket_client.get_paginator("search_quantum_tasks").paginate(
            filters=[{"name": "deviceArn", "operator": "EQUAL", "values": [self.device_arn]}]
            + [{"name": name, "operator": "EQUAL", "values": values} for name, values in filters],
            PaginationConfig={"MaxItems": most, "PageSize": 100},
        )
        return [task for page in pages for task in page["quantumTasks"]]

    def find(self, job: TargetJob, items: list[int], name: str) -> str | None:
        wanted = self._tags(job, items, name)
        for task in self._search(most=FIND_AMONG):
            tags = task.get("tags") or {}
            if tags.get("qnb-job") == wanted["qnb-job"] and tags.get("qnb-items") == wanted["qnb-items"]:
                return task["quantumTaskArn"]
        return None

    def read(self, vendor_id: str) -> VendorJobState:
        try:
            metadata = AwsQuantumTask(vendor_id, self.session, quiet=True).metadata()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
                raise
            why = "Amazon Braket does not know this task (another account or region?)"
            return VendorJobState("NOT_FOUND", error=why)
        position = (metadata.get("queueInfo") or {}).get("position")  # as AwsQuantumTask.queue_position() reads it
        return VendorJobState(metadata["status"], error=metadata.get("failureReason"), raw=metadata,
                              position=_queue_number(position))  # fmt: skip

    def queue_figures(self) -> QueueFigures | None:
        """The device's queue depth: its quantum tasks waiting, normal and priority (those
        of hybrid jobs, which run first), as ``AwsDevice.queue_depth()`` reads GetDevice."""
        queues = self.session.get_device(self.device_arn).get("deviceQueueInfo") or []
        sizes = [_queue_number(q.get("queueSize")) for q in queues if q.get("queue") == "QUANTUM_TASKS_QUEUE"]
        if not sizes or None in sizes:
            return None
        return QueueFigures(depth=sum(sizes), source="Braket")

    def read_many(self, vendor_ids: list[str]) -> dict[str, VendorJobState]:
        if len(vendor_ids) <= READ_EACH_UP_TO:
            return {i: self.read(i) for i in vendor_ids}
        listed = {task["quantumTaskArn"]: task for task in self._search(("status", UNFINISHED))}
        finished = [i for i in vendor_ids if i not in listed]
        for start in range(0, len(finished), 10):  # Braket takes 10 values a filter
            found = self._search(("quantumTaskArn", finished[start : start + 10]))
            listed.update((task["quantumTaskArn"], task) for task in found)
        # By ARN: a task too new to be listed, and a failed one (its reason is not in a listing).
        return {i: self.read(i) if listed.get(i, {}).get("status", "FAILED") == "FAILED"
                else VendorJobState(listed[i]["status"], raw=listed[i]) for i in vendor_ids}  # fmt: skip

    def outcomes(
        self, vendor_id: str, state: VendorJobState, items: list[int], params: list
    ) -> dict[int, ItemOutcome]:
        key = f"{state.raw['outputS3Directory']}/{AwsQuantumTask.RESULTS_FILENAME}"
        text = self.s3.get_object(Bucket=state.raw["outputS3Bucket"], Key=key)["Body"].read().decode()
        result = cirq.to_json(_cirq_result(GateModelQuantumTaskResult.from_string(text)), indent=None)
        return {items[0]: ItemOutcome(JobStatus.COMPLETED, result=result)}

    def cancel_remote(self, vendor_id: str) -> None:
        try:
            self.session.cancel_quantum_task(vendor_id)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConflictException":
                raise  # Conflict: it has just finished; the next read says how


def _queue_number(text: object) -> int | None:
    """Braket's queue figures are strings: ``"7"``, ``">2000"`` (read as one more), or
    ``"None"`` once a task has left the queue."""
    text = str(text)
    if text.startswith(">") and text[1:].isdigit():
        return int(text[1:]) + 1
    return int(text) if text.isdigit() else None


def _cirq_result(found: GateModelQuantumTaskResult) -> cirq.Result:
    """Braket's result as Cirq's, with the keys its program carries."""
    layout = layout_of(found.additional_metadata.action.source, found.measured_qubits)
    return to_cirq_result(layout, found.measured_qubits, found.measurements)


def _translate(label: str, circuit: cirq.Circuit, supported, physical: bool, where: str):
    try:
        return to_braket(circuit, supported=supported, physical=physical, where=where)
    except DeviceValidationError as exc:
        raise DeviceValidationError(f"circuit {label!r}: {exc}") from None


def _session(name: str, arn: str, region: str | None, profile: str | None, timeout: float, threads: int):
    """boto3's session (its credential chain) and Braket and S3 clients that try each call
    once, with the deadline: ``(AwsSession, S3 client, where the credentials came from)``."""
    arn_region = arn.split(":")[3] if arn.count(":") >= 5 else ""
    try:
        boto = boto3.Session(profile_name=profile, region_name=arn_region or region)
        if boto.region_name is None:  # simulators' ARNs name no region
            boto = boto3.Session(profile_name=profile, region_name="us-east-1")
    except ProfileNotFound as exc:
        raise NotAuthenticatedError(f"Braket target {name!r}: {exc} ($AWS_CONFIG_FILE, ~/.aws/config)") from None
    credentials = boto.get_credentials()
    if credentials is None:
        raise NotAuthenticatedError(
            f"Braket target {name!r} found no AWS credentials; qnb looked in {LOOKED_FOR_CREDENTIALS}"
        )
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=min(timeout, 10), read_timeout=timeout,
                    max_pool_connections=max(10, threads * 2))  # fmt: skip
    where = f"boto3: {credentials.method}" + (f", profile {profile!r}" if profile else "")
    # Results through one S3 client: the SDK's retrieve_s3_object_body makes a boto3
    # resource per call (~20 ms of CPU each, against ~3 ms).
    session = AwsSession(boto_session=boto, braket_client=boto.client("braket", config=config))
    return session, boto.client("s3", config=config), where


def _device_spec(name: str, device: AwsDevice, supported: frozenset[str], max_batch: int | None) -> DeviceSpec:
    properties = device.properties
    paradigm = properties.paradigm
    n, qubits, connectivity = int(paradigm.qubitCount), None, None
    native = sorted(supported)
    if isinstance(paradigm, GateModelQpuParadigmProperties):
        native = list(paradigm.nativeGateSet or native)
        graph = {int(a): [int(b) for b in bs] for a, bs in (paradigm.connectivity.connectivityGraph or {}).items()}
        if paradigm.connectivity.fullyConnected or not graph:
            qubits = tuple(cirq.LineQubit.range(n))
        else:
            qubits = tuple(cirq.LineQubit(k) for k in sorted(set(graph) | {b for bs in graph.values() for b in bs}))
            pairs = {tuple(sorted((a, b))) for a, bs in graph.items() for b in bs}
            connectivity = tuple((cirq.LineQubit(a), cirq.LineQubit(b)) for a, b in sorted(pairs))
    coupling = "any qubits" if connectivity is None else f"{len(connectivity)} couplings"
    extra = {} if max_batch is None else {"max_batch": max_batch}
    return DeviceSpec(
        name, max_qubits=n, qubits=qubits, connectivity=connectivity, native_gates=tuple(native),
        compile_to=cirq.CZTargetGateset() if qubits is not None and "cz" in supported else None,
        max_shots=int(properties.service.shotsRange[1]),
        description=(f"Amazon Braket {device.name} ({device.arn}, {device.status}; {n} qubits, {coupling}) via "
                     "amazon-braket-sdk; one task per circuit, followed again after a restart"),
        **extra,
    )  # fmt: skip


class BraketLocalSampler(cirq.Sampler):
    """Braket's ``LocalSimulator`` as a ``cirq.Sampler``, through the same translation
    and result reading as the cloud's tasks."""

    def __init__(self, simulator: LocalSimulator, supported: frozenset[str], where: str):
        self.simulator, self.supported, self.where = simulator, supported, where

    def run_sweep(
        self, program: cirq.AbstractCircuit, params: cirq.Sweepable, repetitions: int = 1
    ) -> list[cirq.Result]:
        results = []
        for point in cirq.to_resolvers(params):
            circuit = cirq.resolve_parameters(program, point)
            source = to_openqasm(to_braket(circuit, supported=self.supported, where=self.where), point)
            found = self.simulator.run(Program(source=source), shots=repetitions).result()
            results.append(_cirq_result(found))
        return results


class BraketLocalTarget(SamplerTarget):
    """Braket's ``LocalSimulator`` (``device="local"``: ``braket_sv``; ``"local:braket_dm"``)."""

    def __init__(self, name: str, *, device: str = "local", max_threads: int = 2, max_running_jobs: int = 2,
                 call_timeout: float = 3600.0, max_batch: int | None = None):  # fmt: skip
        backend = device.partition(":")[2] or "braket_sv"
        try:
            simulator = LocalSimulator(backend)
        except ValueError:
            raise InvalidOptionError(
                f"Braket target {name!r}: no local simulator {backend!r}; use 'local' (braket_sv) or 'local:braket_dm'"
            ) from None
        self.supported = supported_operations(simulator.properties, device)
        where = f"Braket's local simulator {backend}"
        spec = DeviceSpec(
            name, max_qubits=int(simulator.properties.paradigm.qubitCount), native_gates=tuple(sorted(self.supported)),
            description=f"Amazon Braket LocalSimulator {backend} (amazon-braket-sdk, in this process); {NOT_FOLLOWED}",
            **({} if max_batch is None else {"max_batch": max_batch}),
        )  # fmt: skip
        super().__init__(name, BraketLocalSampler(simulator, self.supported, where), device=spec,
                         max_threads=max_threads, max_running_jobs=max_running_jobs, call_timeout=call_timeout)  # fmt: skip

    def check(self, label: str, circuit: cirq.Circuit) -> None:
        super().check(label, circuit)
        _translate(label, circuit, self.supported, False, self.sampler.where)
